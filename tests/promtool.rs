//! The Prometheus side of the kit checked by the real promtool: the scrape config, the rule files
//! and their unit tests, and a real exposition; and checked by reading them: every alert has a
//! severity and a routing category, is documented in the runbook and unit-tested both firing and
//! quiet, every recording rule is unit-tested, bucket matchers hold on Prometheus 3, and the 3.x
//! config does not drift from the 2.x one.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_yaml_ng::Value;

const RUNBOOK_URL: &str =
    "https://github.com/acquire-exporter/acquire-exporter/blob/main/docs/runbook.md#";

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The `.yml` files of a folder of the repository, sorted.
fn yaml_files(dir: &str) -> Vec<PathBuf> {
    let dir = repo().join(dir);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yml"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no .yml files in {}", dir.display());
    files
}

fn load(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_yaml_ng::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Run promtool from the repository's root and fail with its output unless it succeeds.
fn promtool(args: &[&str], files: &[PathBuf]) {
    let output = Command::new(common::promtool())
        .current_dir(repo())
        .args(args)
        .args(files)
        .output()
        .expect("run promtool");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        output.status.success(),
        "promtool {} failed ({}):\n{said}",
        args.join(" "),
        output.status
    );
}

/// Every rule of the rule files, each with the file it came from.
fn rules() -> Vec<(PathBuf, Value)> {
    let mut all = Vec::new();
    for file in yaml_files("prometheus/rules") {
        let doc = load(&file);
        let groups = doc["groups"].as_sequence().expect("groups");
        for group in groups {
            for rule in group["rules"].as_sequence().expect("rules") {
                all.push((file.clone(), rule.clone()));
            }
        }
    }
    all
}

fn alerts() -> Vec<Value> {
    let alerts: Vec<Value> = rules()
        .into_iter()
        .map(|(_, r)| r)
        .filter(|r| r.get("alert").is_some())
        .collect();
    assert!(!alerts.is_empty(), "no alerts in prometheus/rules");
    alerts
}

fn string<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key).and_then(Value::as_str)
}

/// The anchor GitHub gives a Markdown heading: lower case, punctuation dropped, spaces as `-`.
fn github_anchor(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || matches!(c, ' ' | '-' | '_'))
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

#[test]
fn promtool_accepts_the_prometheus_config_and_the_rule_files_it_loads() {
    // `check config` also checks every rule file the config's `rule_files` glob finds.
    promtool(
        &["check", "config"],
        &[repo().join("prometheus/prometheus.yml")],
    );
}

#[test]
fn promtool_accepts_every_rule_file() {
    promtool(&["check", "rules"], &yaml_files("prometheus/rules"));
}

#[test]
fn promtool_rule_unit_tests_pass() {
    promtool(&["test", "rules"], &yaml_files("prometheus/tests"));
}

#[test]
fn the_config_scrapes_the_compose_exporter_and_loads_the_rules_beside_it() {
    let config = load(&repo().join("prometheus/prometheus.yml"));
    assert_eq!(string(&config["global"], "scrape_interval"), Some("15s"));
    assert_eq!(
        config["rule_files"],
        serde_yaml_ng::from_str::<Value>("[rules/*.yml]").unwrap(),
        "relative to the config file, so it works mounted at /etc/prometheus/"
    );
    let jobs = config["scrape_configs"]
        .as_sequence()
        .expect("scrape_configs");
    let acquire = jobs
        .iter()
        .find(|j| string(j, "job_name") == Some("acquire"))
        .expect("a job named acquire (the alerts select job=\"acquire\")");
    assert_eq!(
        acquire["static_configs"][0]["targets"],
        serde_yaml_ng::from_str::<Value>("[exporter:9867]").unwrap()
    );
}

#[test]
fn the_v3_config_is_the_v2_config_plus_native_histograms_and_classic_buckets() {
    let v2 = load(&repo().join("prometheus/prometheus.yml"));
    let mut v3 = load(&repo().join("prometheus/prometheus-v3.yml"));
    let jobs = v3["scrape_configs"]
        .as_sequence_mut()
        .expect("scrape_configs");
    for job in jobs {
        let job = job.as_mapping_mut().expect("a scrape config");
        for key in [
            "scrape_native_histograms",
            "always_scrape_classic_histograms",
        ] {
            assert_eq!(
                job.remove(key),
                Some(Value::Bool(true)),
                "{key}: true in every job of prometheus-v3.yml"
            );
        }
    }
    assert_eq!(
        v3, v2,
        "apart from the two histogram keys, prometheus-v3.yml must equal prometheus.yml"
    );
}

#[test]
fn every_alert_has_a_severity_a_summary_a_description_and_a_runbook_section() {
    let runbook_path = repo().join("docs/runbook.md");
    let runbook = std::fs::read_to_string(&runbook_path).expect("docs/runbook.md");
    let anchors: BTreeSet<String> = runbook
        .lines()
        .filter_map(|l| l.strip_prefix("## "))
        .map(github_anchor)
        .collect();
    let mut problems = Vec::new();
    for alert in alerts() {
        let name = string(&alert, "alert").unwrap();
        match string(&alert["labels"], "severity") {
            Some("critical" | "warning" | "info") => {}
            other => problems.push(format!(
                "{name}: severity {other:?}, not critical, warning or info"
            )),
        }
        match string(&alert["labels"], "category") {
            Some("support" | "exporter") => {}
            other => problems.push(format!(
                "{name}: category {other:?}, not support or exporter (the routing label)"
            )),
        }
        for key in ["summary", "description", "runbook_url"] {
            if string(&alert["annotations"], key).is_none_or(|s| s.trim().is_empty()) {
                problems.push(format!("{name}: no annotation {key}"));
            }
        }
        let Some(url) = string(&alert["annotations"], "runbook_url") else {
            continue;
        };
        match url.strip_prefix(RUNBOOK_URL) {
            Some(anchor) if anchor == name.to_lowercase() && anchors.contains(anchor) => {}
            Some(anchor) if anchor != name.to_lowercase() => problems.push(format!(
                "{name}: runbook anchor #{anchor} is not the alert's name in lower case"
            )),
            Some(anchor) => problems.push(format!(
                "{name}: docs/runbook.md has no heading `## {name}` for #{anchor}"
            )),
            None => problems.push(format!(
                "{name}: runbook_url {url} is not under {RUNBOOK_URL}"
            )),
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn every_alert_is_unit_tested_firing_and_quiet() {
    // alert name -> (cases where it must fire, cases where it must not)
    let mut cases: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    for file in yaml_files("prometheus/tests") {
        let doc = load(&file);
        for test in doc["tests"].as_sequence().expect("tests") {
            let Some(checks) = test.get("alert_rule_test").and_then(Value::as_sequence) else {
                continue;
            };
            for check in checks {
                let name = string(check, "alertname").expect("alertname").to_owned();
                let fires = check
                    .get("exp_alerts")
                    .and_then(Value::as_sequence)
                    .is_some_and(|a| !a.is_empty());
                let entry = cases.entry(name).or_default();
                if fires {
                    entry.0 += 1;
                } else {
                    entry.1 += 1;
                }
            }
        }
    }
    let mut missing = Vec::new();
    for alert in alerts() {
        let name = string(&alert, "alert").unwrap();
        let (firing, quiet) = cases.get(name).copied().unwrap_or_default();
        if firing == 0 {
            missing.push(format!("{name}: no unit test where it fires"));
        }
        if quiet == 0 {
            missing.push(format!("{name}: no unit test where it must not fire"));
        }
    }
    assert!(missing.is_empty(), "{}", missing.join("\n"));
}

#[test]
fn every_recording_rule_is_named_by_the_convention_and_unit_tested() {
    let mut tested = String::new();
    for file in yaml_files("prometheus/tests") {
        let doc = load(&file);
        for test in doc["tests"].as_sequence().expect("tests") {
            for check in test
                .get("promql_expr_test")
                .and_then(Value::as_sequence)
                .into_iter()
                .flatten()
            {
                tested.push_str(string(check, "expr").expect("expr"));
                tested.push('\n');
            }
        }
    }
    let mut problems = Vec::new();
    for (_, rule) in rules() {
        let Some(name) = string(&rule, "record") else {
            continue;
        };
        // level:metric:operations, the metric one of the exporter's (without `_total`).
        let parts: Vec<&str> = name.split(':').collect();
        let well_named = parts.len() == 3
            && parts.iter().all(|p| {
                !p.is_empty()
                    && p.chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
            })
            && parts[1].starts_with("acquire_")
            && !parts[1].ends_with("_total");
        if !well_named {
            problems.push(format!("{name}: not level:acquire_metric:operations"));
        }
        let used = tested
            .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
            .any(|word| word == name);
        if !used {
            problems.push(format!("{name}: no promql_expr_test queries it"));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn bucket_matchers_hold_on_prometheus_3() {
    // Prometheus 3 stores `le="60"` as `le="60.0"`: an exact matcher would match nothing there.
    let mut exact = Vec::new();
    for (file, rule) in rules() {
        let expr = string(&rule, "expr").expect("expr");
        let compact: String = expr.chars().filter(|c| !c.is_whitespace()).collect();
        if compact.contains("le=\"") || compact.contains("le!=\"") {
            let name = string(&rule, "alert")
                .or_else(|| string(&rule, "record"))
                .unwrap();
            exact.push(format!("{}: {name}", file.display()));
        }
    }
    assert!(
        exact.is_empty(),
        "exact le matchers (write le=~\"60(\\\\.0)?\"):\n{}",
        exact.join("\n")
    );
}

#[test]
fn promtool_accepts_the_exposition() {
    let promtool = common::promtool();
    let exporter = common::Exporter::spawn(&["--storage.in-memory"]);
    // Every kind of series: an answered close with a custom role, an unanswered one, a refusal,
    // a chat waiting in the live queue.
    for (body, want) in [
        (common::fixture("chat-close-users-as-json-string.json"), 200),
        (
            common::close_event("9", "4", Some("Support Lead"), "30", "100"),
            200,
        ),
        (common::close_event("10", "4", None, "null", "100"), 200),
        (
            br#"{"data": {"id": "w1", "department_id": "4"}, "event": "CHAT_ON_START"}"#.to_vec(),
            200,
        ),
        (b"not json".to_vec(), 400),
    ] {
        let (status, answer) = exporter.post_json(&body);
        assert_eq!(status, want, "{answer}");
    }
    let m = exporter.metrics();
    for family in [
        "acquire_chat_wait_time_seconds_bucket",
        "acquire_chat_duration_seconds_bucket",
        "acquire_chats_unanswered_total",
        "acquire_chats_waiting",
        "acquire_webhook_rejections_total",
        "process_start_time_seconds",
    ] {
        assert!(
            m.lines().any(|l| l.starts_with(family)),
            "no {family} on the page:\n{m}"
        );
    }
    let mut child = Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(m.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && said.trim().is_empty(),
        "promtool check metrics said:\n{said}\n---\n{m}"
    );
}
