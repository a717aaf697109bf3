//! `acquire-exporter plan --history FILE` on a generated file of close events with known
//! hourly rates: the real binary must print the grid those rates imply.

use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;

use acquire_exporter::staffing::Target;
use acquire_exporter::staffing::erlang_a::Model;
use serde_json::Value;

/// Seconds since the epoch of 2024-01-01 00:00, a Monday, as a clock reads it.
const MONDAY: i64 = 19_723 * 86_400;
const WEEK: i64 = 7 * 86_400;
/// Weeks generated; the plan reads the last four.
const WEEKS: i64 = 5;

/// Department 12: business hours (Monday to Friday, 09:00 to 17:00) get 20 + 2·day + (hour − 9)
/// chats, Monday 10:00 varying by week; 07:00, 08:00 and 17:00 to 19:00 get 4; the night none.
fn sales(day: i64, hour: i64, week: i64) -> u64 {
    if day == 0 && hour == 10 {
        return (17 + 2 * week) as u64;
    }
    if day < 5 && (9..17).contains(&hour) {
        return (20 + 2 * day + hour - 9) as u64;
    }
    if (7..9).contains(&hour) || (17..20).contains(&hour) {
        return 4;
    }
    0
}

/// No department: 3 chats every hour, and Saturday 12:00 gets the golden Erlang C case, 200 chats
/// of 180 s.
fn unassigned(day: i64, hour: i64) -> u64 {
    if day == 5 && hour == 12 { 200 } else { 3 }
}

/// The handle time of a department's chats in an hour.
fn handle_of(department: &str, day: i64, hour: i64) -> f64 {
    match department {
        "12" => SALES_HANDLE,
        _ if day == 5 && hour == 12 => GOLDEN_HANDLE,
        _ => UNASSIGNED_HANDLE,
    }
}

fn in_business_hours(day: i64, hour: i64) -> bool {
    day < 5 && (9..17).contains(&hour)
}

/// Abandoned chats per hour in business hours (the first two of the hour), half with a `"null"`
/// wait, half with a zero wait and no agent.
const ABANDONED: u64 = 2;
const ABANDONED_AFTER: f64 = 55.0;
const WAIT: f64 = 5.0;
const SALES_HANDLE: f64 = 180.0;
const UNASSIGNED_HANDLE: f64 = 600.0;
const GOLDEN_HANDLE: f64 = 180.0;

fn date(seconds: i64) -> String {
    let days = seconds.div_euclid(86_400);
    let of_day = seconds.rem_euclid(86_400);
    // Civil from days (H. Hinnant), for the generator's own dates.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}",
        of_day / 3600,
        of_day / 60 % 60,
        of_day % 60
    )
}

/// One close event in the vendor's shape, `users` as a JSON text inside a string.
fn close(id: u64, department: &str, at: i64, answered: Option<f64>, duration: f64) -> String {
    let (wait, users, by) = match answered {
        Some(wait) => (
            format!("{wait}"),
            r#"{\"agent\":{\"name\":\"A\",\"role\":\"Operator\"},\"visitor\":{\"name\":\"V\"}}"#,
            "agent-15111",
        ),
        None if id % 2 == 0 => ("null".to_owned(), r#"{\"visitor\":{\"name\":\"V\"}}"#, ""),
        None => ("0".to_owned(), r#"{\"visitor\":{\"name\":\"V\"}}"#, ""),
    };
    format!(
        r#"{{"id":"{id}","account_id":"10111","department_id":"{department}","chat_wait_time":"{wait}","chat_duration":"{duration}","date_created":"{}","users":"{users}","by":"{by}","event":"CHAT_ON_CLOSE"}}"#,
        date(at)
    )
}

/// The file: five weeks of both departments, a start event and a blank line on the way, and
/// a last chat in the hour after the five weeks (which the plan leaves out).
fn history_file(dir: &Path) -> std::path::PathBuf {
    let mut text = String::new();
    let mut id = 0u64;
    for week in 0..WEEKS {
        for day in 0..7 {
            for hour in 0..24 {
                let start = MONDAY + week * WEEK + day * 86_400 + hour * 3600;
                for (department, n) in [("12", sales(day, hour, week)), ("", unassigned(day, hour))]
                {
                    let handle = handle_of(department, day, hour);
                    for i in 0..n {
                        id += 1;
                        let at = start + (i as i64 * 3600) / n as i64;
                        let gave_up =
                            department == "12" && in_business_hours(day, hour) && i < ABANDONED;
                        let line = if gave_up {
                            close(id, department, at, None, ABANDONED_AFTER)
                        } else {
                            close(id, department, at, Some(WAIT), handle)
                        };
                        text.push_str(&line);
                        text.push('\n');
                    }
                }
            }
        }
        text.push_str(r#"{"data":{" id":"9","status":"pending","department_id":"12"},"event":"CHAT_ON_START"}"#);
        text.push_str("\n\n");
    }
    text.push_str(&close(
        id + 1,
        "12",
        MONDAY + WEEKS * WEEK + 600,
        Some(WAIT),
        SALES_HANDLE,
    ));
    text.push('\n');
    let path = dir.join("closes.jsonl");
    std::fs::write(&path, text).unwrap_or_else(|e| panic!("{e}"));
    path
}

fn plan(args: &[&str]) -> (i32, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_acquire-exporter"))
        .arg("plan")
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("run the exporter: {e}"));
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

fn targets() -> [Target; 2] {
    [
        Target {
            share: 0.8,
            wait_seconds: 20.0,
        },
        Target {
            share: 0.9,
            wait_seconds: 60.0,
        },
    ]
}

/// What a cell must hold: arrivals, handle time, patience, model, agents per target.
struct Expected {
    arrivals: f64,
    handle: f64,
    patience: Option<f64>,
    agents: [u32; 2],
}

fn expected(department: &str, day: i64, hour: i64, arrivals: f64) -> Expected {
    let handle = handle_of(department, day, hour);
    let patience = (department == "12" && in_business_hours(day, hour)).then(|| {
        let answered = arrivals - ABANDONED as f64;
        (answered * WAIT + ABANDONED as f64 * ABANDONED_AFTER) / ABANDONED as f64
    });
    let model = Model::for_patience(patience, handle, 1.0);
    let agents = targets().map(|target| {
        model
            .agents_required(arrivals / 3600.0, handle, target, 1.0)
            .unwrap_or_else(|e| panic!("{department} {day} {hour}: {e}"))
    });
    Expected {
        arrivals,
        handle,
        patience,
        agents,
    }
}

const DAYS: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];

#[test]
fn plan_history_prints_the_grid_the_hourly_rates_imply() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let file = history_file(dir.path());
    let file = file.to_string_lossy();
    let common = [
        "--history",
        &file,
        "--utc-offset",
        "+02:00",
        "--target",
        "80%/20s",
        "--target",
        "90%/60s",
    ];
    let (code, json, stderr) = plan(&[&common[..], &["--format", "json"]].concat());
    assert_eq!(code, 0, "{stderr}");
    let report: Value = serde_json::from_str(&json).unwrap_or_else(|e| panic!("{e}: {json}"));
    let sales_chats: u64 = (0..WEEKS)
        .flat_map(|w| (0..7).flat_map(move |d| (0..24).map(move |h| sales(d, h, w))))
        .sum();
    let unassigned_chats: u64 = (0..7)
        .flat_map(|d| (0..24).map(move |h| unassigned(d, h)))
        .sum::<u64>()
        * WEEKS as u64;
    assert_eq!(report["closes"], sales_chats + unassigned_chats + 1);
    assert_eq!(report["other_events"], WEEKS);
    assert_eq!(report["utc_offset"], "+02:00");
    assert_eq!(report["until"], "2024-02-05 00:00");
    assert_eq!(report["from"], "2024-01-08 00:00");
    assert_eq!(report["targets"], serde_json::json!(["80%/20s", "90%/60s"]));
    let departments = report["departments"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let names: Vec<&str> = departments
        .iter()
        .map(|d| d["department"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(names, ["12", "none"]);
    let number = |v: &Value| v.as_f64().unwrap_or(f64::NAN);
    for department in &departments {
        let name = department["department"].as_str().unwrap_or("");
        let cells = department["cells"].as_array().cloned().unwrap_or_default();
        assert_eq!(cells.len(), 168, "{name}");
        for (index, cell) in cells.iter().enumerate() {
            let (day, hour) = ((index / 24) as i64, (index % 24) as i64);
            let what = format!("{name} {} {hour:02}:00: {cell}", DAYS[day as usize]);
            assert_eq!(cell["day"], DAYS[day as usize], "{what}");
            assert_eq!(cell["hour"], hour, "{what}");
            assert_eq!(cell["weeks"], 4, "{what}");
            let arrivals = if name == "12" {
                // The last four weeks: 1 to 4.
                (1..WEEKS).map(|w| sales(day, hour, w) as f64).sum::<f64>() / 4.0
            } else {
                unassigned(day, hour) as f64
            };
            let want = expected(if name == "12" { "12" } else { "" }, day, hour, arrivals);
            assert_eq!(number(&cell["arrivals_per_hour"]), want.arrivals, "{what}");
            assert_eq!(number(&cell["handle_time_seconds"]), want.handle, "{what}");
            match want.patience {
                Some(p) => {
                    assert!(
                        (number(&cell["patience_seconds"]) - p).abs() < 1e-9,
                        "{what}"
                    );
                    assert_eq!(cell["model"], "erlang_a", "{what}");
                }
                None => {
                    assert_eq!(cell["patience_seconds"], Value::Null, "{what}");
                    assert_eq!(cell["model"], "erlang_c", "{what}");
                }
            }
            assert_eq!(cell["agents_required"]["80%/20s"], want.agents[0], "{what}");
            assert_eq!(cell["agents_required"]["90%/60s"], want.agents[1], "{what}");
        }
    }
    // Monday 10:00 grew by 2 a week: 19, 21, 23, 25.
    let monday_ten = &departments[0]["cells"][10];
    assert_eq!(monday_ten["arrivals_per_hour"], 22.0);
    // The golden Erlang C case (issue 6): 200 chats an hour of 180 s, 80 % in 20 s: 14 agents.
    let saturday_noon = &departments[1]["cells"][5 * 24 + 12];
    assert_eq!(saturday_noon["arrivals_per_hour"], 200.0);
    assert_eq!(saturday_noon["handle_time_seconds"], 180.0);
    assert_eq!(saturday_noon["model"], "erlang_c");
    assert_eq!(saturday_noon["agents_required"]["80%/20s"], 14);
    // The night plans for nobody.
    assert_eq!(departments[0]["cells"][3]["agents_required"]["80%/20s"], 0);

    // CSV carries the same cells.
    let (code, csv, stderr) = plan(&[&common[..], &["--format", "csv"]].concat());
    assert_eq!(code, 0, "{stderr}");
    let rows: Vec<&str> = csv.lines().collect();
    assert_eq!(
        rows[0],
        "department,day,hour,start,weeks,arrivals_per_hour,handle_time_seconds,\
         patience_seconds,model,agents_required 80%/20s,agents_required 90%/60s"
    );
    assert_eq!(rows.len(), 1 + 2 * 168);
    for (row, (department, cell)) in rows[1..].iter().zip(departments.iter().flat_map(|d| {
        d["cells"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .map(move |c| (d["department"].clone(), c))
    })) {
        let fields: Vec<&str> = row.split(',').collect();
        let text = |v: &Value| match v {
            Value::Null => String::new(),
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        let want = [
            text(&department),
            text(&cell["day"]),
            text(&cell["hour"]),
            text(&cell["start"]),
            text(&cell["weeks"]),
            number(&cell["arrivals_per_hour"]).to_string(),
            number(&cell["handle_time_seconds"]).to_string(),
            cell["patience_seconds"]
                .as_f64()
                .map(|p| p.to_string())
                .unwrap_or_default(),
            text(&cell["model"]),
            text(&cell["agents_required"]["80%/20s"]),
            text(&cell["agents_required"]["90%/60s"]),
        ];
        assert_eq!(fields, want, "{row}");
    }

    // The text report prints the same grids.
    let (code, report, stderr) = plan(&common);
    assert_eq!(code, 0, "{stderr}");
    assert!(report.contains("\nDepartment 12\n"), "{report}");
    assert!(report.contains("\nDepartment none\n"), "{report}");
    let mut table = String::from("Agents required for 80%/20s\n     ");
    for day in DAYS {
        let _ = write!(table, "  {day:>6}");
    }
    table.push('\n');
    for hour in 0..24 {
        let _ = write!(table, "{hour:02}:00");
        for day in 0..7 {
            let arrivals = (1..WEEKS).map(|w| sales(day, hour, w) as f64).sum::<f64>() / 4.0;
            let agents = expected("12", day, hour, arrivals).agents[0];
            let _ = write!(table, "  {agents:>6}");
        }
        table.push('\n');
    }
    assert!(report.contains(&table), "{table}\nnot in\n{report}");
    let mut arrivals = String::from("Arrivals per hour\n     ");
    for day in DAYS {
        let _ = write!(arrivals, "  {day:>6}");
    }
    arrivals.push('\n');
    for hour in 0..24 {
        let _ = write!(arrivals, "{hour:02}:00");
        for day in 0..7 {
            let _ = write!(arrivals, "  {:>6.1}", unassigned(day, hour) as f64);
        }
        arrivals.push('\n');
    }
    assert!(report.contains(&arrivals), "{arrivals}\nnot in\n{report}");
}

#[test]
fn plan_history_percentile_and_weeks_choose_what_is_read() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let file = history_file(dir.path());
    let file = file.to_string_lossy();
    let monday_ten = |extra: &[&str]| {
        let args = [
            &[
                "--history",
                &*file,
                "--utc-offset",
                "+02:00",
                "--format",
                "json",
            ],
            extra,
        ]
        .concat();
        let (code, json, stderr) = plan(&args);
        assert_eq!(code, 0, "{stderr}");
        let report: Value = serde_json::from_str(&json).unwrap_or_else(|e| panic!("{e}"));
        let cell = report["departments"][0]["cells"][10].clone();
        (
            cell["arrivals_per_hour"].as_f64().unwrap_or(f64::NAN),
            cell["weeks"].clone(),
        )
    };
    let cases: [(&str, &[&str], f64, u64); 5] = [
        ("mean of four weeks", &[], 22.0, 4),
        ("the busiest of four", &["--percentile", "100"], 25.0, 4),
        ("the 75th percentile", &["--percentile", "75"], 23.5, 4),
        ("two weeks", &["--weeks", "2"], 24.0, 2),
        ("more weeks than the history", &["--weeks", "8"], 21.0, 5),
    ];
    for (name, extra, arrivals, weeks) in cases {
        assert_eq!(monday_ten(extra), (arrivals, Value::from(weeks)), "{name}");
    }
}

#[test]
fn plan_history_names_the_line_it_cannot_read() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let cases = [
        (
            "not JSON",
            "{\"id\":\"1\",\n",
            "line 2: body is not valid JSON",
        ),
        (
            "no date_created",
            r#"{"id":"1","chat_wait_time":"2","chat_duration":"20","event":"CHAT_ON_CLOSE"}"#,
            "line 2: field `date_created` is missing",
        ),
        (
            "a date in another format",
            r#"{"id":"1","chat_duration":"20","date_created":"23/07/2018 05:17","event":"CHAT_ON_CLOSE"}"#,
            "line 2: field `date_created`: \"23/07/2018 05:17\" is not a date and time",
        ),
    ];
    let good = close(1, "12", MONDAY, Some(WAIT), SALES_HANDLE);
    for (name, line, message) in cases {
        let path = dir.path().join("bad.jsonl");
        std::fs::write(&path, format!("{good}\n{line}\n")).unwrap_or_else(|e| panic!("{e}"));
        let (code, stdout, stderr) = plan(&["--history", &path.to_string_lossy()]);
        assert_eq!(code, 2, "{name}: {stdout}");
        assert!(
            stderr.starts_with("acquire-exporter plan: --history "),
            "{name}: {stderr}"
        );
        assert!(stderr.contains(message), "{name}: {stderr}");
    }
    let missing = dir.path().join("missing.jsonl");
    let (code, _, stderr) = plan(&["--history", &missing.to_string_lossy()]);
    assert_eq!(code, 2);
    assert!(stderr.contains("No such file"), "{stderr}");
}
