//! Durable state against the real binary: what a restart keeps (after SIGTERM and after kill -9)
//! and what it resets, every acknowledged chat id after kill -9 in a load, the two sync modes,
//! a changed bucket layout, and the live queue across a restart.
//!
//! The promise (README, "State"): every family derived from the stored events shows after a
//! restart exactly what it showed before, in all three formats, native buckets and exemplars
//! included. The exporter's own process counters (deliveries received, rejections, commits,
//! `process_*`) start again from zero, as Prometheus expects of a restarted process. The gauges
//! measured against the time of the scrape (oldest wait, arrivals per second and what follows
//! from it) are compared as far as time allows.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{Exporter, OPENMETRICS, TEXT, close_event, dto, sample};

/// Families derived from the stored events alone: equal after a restart, to the byte.
const FROM_EVENTS: &[&str] = &[
    "acquire_chat_wait_time_seconds",
    "acquire_chat_duration_seconds",
    "acquire_chats_unanswered",
    "acquire_label_overflow",
    "acquire_chats_waiting",
    "acquire_chat_accept_time_seconds",
    "acquire_chats_expired",
    "acquire_chat_mean_handle_time_seconds",
    "acquire_agents_seen",
    "acquire_exporter_storage_events",
];

/// Derived from the events and divided by the time the staffing window covers at the scrape:
/// equal while both scrapes fall in the window's first slot, which the test's configuration
/// makes ten minutes long.
const PER_COVERED_TIME: &[&str] = &[
    "acquire_chat_arrivals_per_second",
    "acquire_offered_load_erlangs",
    "acquire_agents_required",
];
const FIRST_SLOT: Duration = Duration::from_secs(600);

/// The process's own counters: zero after a restart.
const PROCESS_COUNTERS: &[&str] = &[
    "acquire_webhooks_received",
    "acquire_webhook_rejections",
    "acquire_exporter_storage_commits",
    "acquire_exporter_storage_commit_duration_seconds",
];

const CONFIG: &str = "staffing:\n  window: 10h\n  targets: [\"80%/60s\", \"90%/20s\"]\nlimits:\n  max_agent_roles: 4\n";

fn durable(dir: &std::path::Path, extra: &[&str]) -> Exporter {
    let mut args = vec![format!("--storage.path={}", dir.display())];
    args.extend(extra.iter().map(|s| s.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    Exporter::spawn(&args)
}

/// The family of a line of a text page (`# HELP name`, or a sample's name).
fn line_name(line: &str) -> &str {
    if line.starts_with('#') {
        line.split_whitespace().nth(2).unwrap_or("")
    } else {
        line.split(['{', ' ']).next().unwrap_or("")
    }
}

/// Whether the sample or family `name` belongs to one of `families`.
fn belongs(name: &str, families: &[&str]) -> bool {
    families.iter().any(|f| {
        name == *f
            || name
                .strip_prefix(f)
                .and_then(|r| r.strip_prefix('_'))
                .is_some_and(|suffix| {
                    ["bucket", "sum", "count", "total", "created"].contains(&suffix)
                })
    })
}

fn lines_of(page: &str, families: &[&str]) -> Vec<String> {
    page.lines()
        .filter(|l| belongs(line_name(l), families))
        .map(str::to_owned)
        .collect()
}

fn families_of(page: &[dto::MetricFamily], families: &[&str]) -> Vec<dto::MetricFamily> {
    page.iter()
        .filter(|f| belongs(&f.name, families))
        .cloned()
        .collect()
}

/// One moment's page in every format.
struct Pages {
    text: String,
    openmetrics: String,
    protobuf: Vec<dto::MetricFamily>,
    at: Instant,
}

fn pages(exporter: &Exporter) -> Pages {
    let text = exporter.scrape(TEXT);
    let openmetrics = exporter.scrape(OPENMETRICS);
    assert_eq!((text.status, openmetrics.status), (200, 200));
    Pages {
        text: text.text(),
        openmetrics: openmetrics.text(),
        protobuf: exporter.protobuf(),
        at: Instant::now(),
    }
}

/// The oldest-wait gauge of every department.
fn oldest_waits(page: &str) -> Vec<(String, f64)> {
    page.lines()
        .filter(|l| l.starts_with("acquire_chat_oldest_wait_seconds{"))
        .map(|l| {
            let (series, value) = l.rsplit_once(' ').unwrap();
            (series.to_owned(), value.parse().unwrap())
        })
        .collect()
}

/// `after` (a restarted exporter's first page) shows what `before` showed; `started` is when
/// the first exporter of the test started.
fn assert_restart_keeps_the_state(before: &Pages, after: &Pages, started: Instant, how: &str) {
    for (format, b, a) in [
        ("text", &before.text, &after.text),
        ("OpenMetrics", &before.openmetrics, &after.openmetrics),
    ] {
        let (b_lines, a_lines) = (lines_of(b, FROM_EVENTS), lines_of(a, FROM_EVENTS));
        assert!(b_lines.len() > 100, "{format}: the scenario fills the page");
        if let Some(i) =
            (0..b_lines.len().max(a_lines.len())).find(|&i| b_lines.get(i) != a_lines.get(i))
        {
            panic!(
                "{how}, {format}: line {i} was {:?}, is {:?}",
                b_lines.get(i),
                a_lines.get(i)
            );
        }
    }
    assert!(
        before.openmetrics.contains("# {chat_id=\""),
        "the OpenMetrics page carries exemplars"
    );
    let (b, a) = (
        families_of(&before.protobuf, FROM_EVENTS),
        families_of(&after.protobuf, FROM_EVENTS),
    );
    let names = |families: &[dto::MetricFamily]| -> Vec<String> {
        families.iter().map(|f| f.name.clone()).collect()
    };
    assert_eq!(names(&b), names(&a), "{how}: the protobuf page's families");
    // Every family with a series (none expired in the scenario).
    assert_eq!(b.len(), FROM_EVENTS.len() - 1, "{:?}", names(&b));
    for (b, a) in b.iter().zip(&a) {
        assert!(b == a, "{how}, protobuf: {} differs:\n{b:?}\n{a:?}", b.name);
    }
    let wait = b
        .iter()
        .find(|f| f.name == "acquire_chat_wait_time_seconds")
        .unwrap();
    let native = wait
        .metric
        .iter()
        .filter_map(|m| m.histogram.as_ref())
        .filter(|h| !h.positive_span.is_empty())
        .count();
    assert!(native > 0, "the protobuf page carries native buckets");
    let lowered = wait.metric.iter().any(|m| {
        common::label(m, "department") == Some("9")
            && m.histogram.as_ref().is_some_and(|h| h.schema < 3)
    });
    assert!(
        lowered,
        "the spread series outgrew its buckets and lowered its resolution"
    );

    if after.at.duration_since(started) < FIRST_SLOT {
        for (format, b, a) in [
            ("text", &before.text, &after.text),
            ("OpenMetrics", &before.openmetrics, &after.openmetrics),
        ] {
            assert_eq!(
                lines_of(b, PER_COVERED_TIME),
                lines_of(a, PER_COVERED_TIME),
                "{how}, {format}: within the window's first slot the rates are the same"
            );
        }
        assert_eq!(
            families_of(&before.protobuf, PER_COVERED_TIME),
            families_of(&after.protobuf, PER_COVERED_TIME),
            "{how}, protobuf"
        );
    }
    // The oldest wait grows with the time between the two scrapes, no more.
    let between = after.at.duration_since(before.at).as_secs_f64() + 1.0;
    let (b, a) = (oldest_waits(&before.text), oldest_waits(&after.text));
    assert_eq!(
        b.iter().map(|(s, _)| s).collect::<Vec<_>>(),
        a.iter().map(|(s, _)| s).collect::<Vec<_>>(),
        "{how}: the same departments have an oldest wait"
    );
    for ((series, b), (_, a)) in b.iter().zip(&a) {
        if *b == 0.0 {
            assert_eq!(*a, 0.0, "{how}: {series}");
        } else {
            assert!(
                *a >= *b && *a <= *b + between,
                "{how}: {series} was {b}, is {a}, {between} s later"
            );
        }
    }

    // The process's own counters start again from zero.
    for line in lines_of(&after.text, PROCESS_COUNTERS)
        .iter()
        .filter(|l| !l.starts_with('#'))
    {
        assert!(
            line.ends_with(" 0"),
            "{how}: a process counter does not start from zero: {line}"
        );
    }
    let started_at = |page: &str| sample(page, "process_start_time_seconds").expect("start time");
    assert!(started_at(&after.text) >= started_at(&before.text), "{how}");
}

fn post(exporter: &Exporter, body: &[u8]) {
    let (status, answer) = exporter.post_json(body);
    assert_eq!(status, 200, "{answer}");
}

fn start(id: &str, department: &str) -> Vec<u8> {
    serde_json::json!({"data": {" id": id, "account_id": "1", "status": "pending", "department_id": department}, "event": "CHAT_ON_START"})
        .to_string()
        .into_bytes()
}

fn accept(id: &str, agent: &str) -> Vec<u8> {
    serde_json::json!({"id": id, "account_id": "1", "chat_wait_time": "null", "user": {"id": agent, "type": "agent", "name": "A"}, "event": "CHAT_ON_ACCEPT"})
        .to_string()
        .into_bytes()
}

/// A scenario that reaches every family: six roles past a cap of four, waits from 0 s to near
/// the 30-day limit (one series with 200 values a bucket apart, past its native bucket limit,
/// so its resolution is lowered), chat ids short, over 23 bytes and near the decoder's limit of
/// 100 characters, unanswered chats, and a live queue with accepted, closed and waiting chats.
fn scenario(exporter: &Exporter, phase: &str) {
    let roles = [
        Some("Operator"),
        Some("Administrator"),
        Some("Supervisor"),
        Some("Trainee"),
        Some("Lead"),
        None,
    ];
    for i in 0..90usize {
        let id = match i % 3 {
            0 => format!("{phase}{i}"),
            1 => format!("{phase}-a-chat-id-longer-than-23-bytes-{i}"),
            _ => format!("{phase}{i}-{}", "9".repeat(90)),
        };
        let wait = match i % 9 {
            0 => "null".to_owned(),
            1 => "0".to_owned(),
            2 => "2591999".to_owned(),
            _ => format!("{}", (i * 37) % 2000),
        };
        let role = roles[i % roles.len()];
        let body = close_event(
            &id,
            &(i % 4).to_string(),
            role,
            &wait,
            &format!("{}", 20 + i * 61),
        );
        post(exporter, &body);
    }
    let mut wait = 0.01f64;
    for i in 0..200 {
        let body = close_event(
            &format!("{phase}-spread-{i}"),
            "9",
            Some("Operator"),
            &format!("{wait:.6}"),
            "60",
        );
        post(exporter, &body);
        wait *= 1.1;
    }
    for q in 0..6 {
        post(
            exporter,
            &start(&format!("{phase}-q{q}"), ["5", "6"][q % 2]),
        );
    }
    post(exporter, &accept(&format!("{phase}-q0"), "agent-7"));
    post(exporter, &accept(&format!("{phase}-q1"), "agent-8"));
    let mut close: serde_json::Value = serde_json::from_slice(&close_event(
        &format!("{phase}-q2"),
        "5",
        Some("Operator"),
        "4",
        "90",
    ))
    .unwrap();
    close["account_id"] = "1".into();
    post(exporter, close.to_string().as_bytes());
}

#[test]
fn a_restart_shows_every_family_from_the_events_as_before_after_sigterm_and_after_kill_9() {
    let started = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.yml");
    std::fs::write(&config, CONFIG).unwrap();
    let config = format!("--config.file={}", config.display());
    let store = dir.path().join("data");
    let exporter = durable(&store, &[&config]);
    scenario(&exporter, "a");
    // Counted before the restart, so that the restart visibly resets them.
    exporter.post_json(b"not json");
    let before = pages(&exporter);
    assert!(
        sample(
            &before.text,
            r#"acquire_label_overflow_total{label="agent_role"}"#
        )
        .is_some_and(|n| n > 0.0),
        "the role cap was reached"
    );
    assert_eq!(exporter.terminate(), Some(0));

    let exporter = durable(&store, &[&config]);
    let after = pages(&exporter);
    assert_restart_keeps_the_state(&before, &after, started, "after SIGTERM");

    scenario(&exporter, "b");
    post(&exporter, &accept("a-q3", "agent-9"));
    let before = pages(&exporter);
    exporter.kill9();
    let exporter = durable(&store, &[&config]);
    let after = pages(&exporter);
    assert_restart_keeps_the_state(&before, &after, started, "after kill -9");
}

/// What became of one delivery during the load.
#[derive(Clone, Copy, PartialEq)]
enum Sent {
    Acknowledged,
    Unanswered,
}

#[test]
fn after_kill_9_in_a_load_every_acknowledged_chat_id_is_there_once() {
    let dir = tempfile::tempdir().unwrap();
    let mut exporter = durable(dir.path(), &[]);
    let sent = Arc::new(Mutex::new(Vec::<(String, Sent)>::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let senders: Vec<_> = (0..8)
        .map(|t| {
            let url = exporter.url("/webhook");
            let (sent, stop) = (sent.clone(), stop.clone());
            std::thread::spawn(move || {
                let agent = common::agent();
                let mut i = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let id = format!("{t}-{i}");
                    i += 1;
                    let body = close_event(&id, &(i % 9).to_string(), Some("Operator"), "12", "60");
                    let answer = agent
                        .post(&url)
                        .header("Content-Type", "application/json")
                        .send(&body[..]);
                    let acknowledged = matches!(answer, Ok(r) if r.status().as_u16() == 200);
                    let outcome = if acknowledged {
                        Sent::Acknowledged
                    } else {
                        Sent::Unanswered
                    };
                    sent.lock().unwrap().push((id, outcome));
                    if !acknowledged {
                        return;
                    }
                }
            })
        })
        .collect();
    exporter.wait_until("500 acknowledged deliveries", |_| {
        sent.lock().unwrap().len() >= 500
    });
    exporter.kill9();
    stop.store(true, Ordering::Relaxed);
    for s in senders {
        s.join().unwrap();
    }
    let sent = sent.lock().unwrap().clone();

    let exporter = durable(dir.path(), &[]);
    let counted = total_wait_count(&exporter.metrics());
    // Each id sent again: a stored one is a duplicate; one the kill took before its commit is
    // new now. Every acknowledged id must be stored, and the count is exactly the stored ids.
    let agent = common::agent();
    let mut stored = 0.0;
    for (id, outcome) in &sent {
        let body = close_event(id, "0", Some("Operator"), "12", "60");
        let (status, answer) = common::post_with(
            &agent,
            &exporter.url("/webhook"),
            &[("Content-Type", "application/json")],
            &body,
        );
        assert_eq!(status, 200, "{id}: {answer}");
        let duplicate = answer.contains("duplicate");
        if *outcome == Sent::Acknowledged {
            assert!(duplicate, "acknowledged {id} was lost: {answer}");
        }
        if duplicate {
            stored += 1.0;
        }
    }
    assert_eq!(counted, stored, "the histograms count each stored id once");
    assert_eq!(
        total_wait_count(&exporter.metrics()),
        sent.len() as f64,
        "every id once, now that the lost ones came again"
    );
}

fn total_wait_count(metrics: &str) -> f64 {
    metrics
        .lines()
        .filter(|l| l.starts_with("acquire_chat_wait_time_seconds_count{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// The fsync and fdatasync calls of the exporter while it commits `events` deliveries one at a
/// time, traced with strace.
fn syncs_per_commit(sync: &str, events: usize) -> usize {
    let found = std::process::Command::new("strace")
        .arg("-V")
        .output()
        .is_ok();
    assert!(
        found,
        "strace is not installed: apt-get install -y strace (the README's test command does it)"
    );
    let dir = tempfile::tempdir().unwrap();
    let mut exporter = durable(
        &dir.path().join("data"),
        &[&format!("--storage.sync={sync}")],
    );
    // The database and its log exist before the trace starts.
    post(
        &exporter,
        &close_event("warm-up", "1", Some("Operator"), "1", "60"),
    );
    let trace = dir.path().join("trace");
    let mut strace = std::process::Command::new("strace")
        .args(["-f", "-e", "trace=fsync,fdatasync", "-o"])
        .arg(&trace)
        .args(["-p", &exporter.pid().to_string()])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start strace");
    // With -f and -p, strace reports "Process N attached with K threads" once all are.
    let stderr = std::io::BufReader::new(strace.stderr.take().unwrap());
    let said: Vec<String> = std::io::BufRead::lines(stderr)
        .map_while(Result::ok)
        .take_while(|line| !line.contains("attached"))
        .collect();
    assert!(strace.try_wait().unwrap().is_none(), "strace: {said:?}");
    for i in 0..events {
        post(
            &exporter,
            &close_event(&format!("synced-{i}"), "1", Some("Operator"), "1", "60"),
        );
    }
    exporter.assert_alive();
    common::signal(strace.id(), "INT");
    strace.wait().unwrap();
    std::fs::read_to_string(&trace)
        .unwrap()
        .lines()
        .filter(|l| l.contains("fsync(") || l.contains("fdatasync("))
        .count()
}

#[test]
fn storage_sync_full_flushes_every_commit_to_disk_and_normal_does_not() {
    let events = 5;
    let full = syncs_per_commit("full", events);
    assert!(
        full >= events,
        "--storage.sync=full: {full} flushes for {events} commits"
    );
    let normal = syncs_per_commit("normal", events);
    assert!(
        normal < events,
        "--storage.sync=normal: {normal} flushes for {events} commits"
    );
}

#[test]
fn storage_sync_full_keeps_every_acknowledged_event_across_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let exporter = durable(dir.path(), &["--storage.sync=full"]);
    for i in 0..20 {
        post(
            &exporter,
            &close_event(&i.to_string(), "3", Some("Operator"), &i.to_string(), "60"),
        );
    }
    let before = common::histogram_lines(&exporter.metrics());
    exporter.kill9();
    let exporter = durable(dir.path(), &["--storage.sync=full"]);
    assert_eq!(common::histogram_lines(&exporter.metrics()), before);
    assert_eq!(
        sample(
            &exporter.metrics(),
            r#"acquire_chat_wait_time_seconds_count{agent_role="operator",department="3"}"#
        ),
        Some(20.0)
    );
}

#[test]
fn the_live_queue_follows_start_accept_close_and_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let exporter = durable(dir.path(), &[]);
    let waiting =
        |m: &str, d: &str| sample(m, &format!(r#"acquire_chats_waiting{{department="{d}"}}"#));
    for id in ["a", "b", "c"] {
        post(&exporter, &start(id, "5"));
    }
    post(&exporter, &start("d", "6"));
    post(&exporter, &start("a", "5"));
    let m = exporter.metrics();
    assert_eq!(waiting(&m, "5"), Some(3.0), "a repeated start counts once");
    assert_eq!(waiting(&m, "6"), Some(1.0));
    assert!(
        sample(&m, r#"acquire_chat_oldest_wait_seconds{department="5"}"#).is_some_and(|s| s >= 0.0)
    );

    post(&exporter, &accept("a", "agent-3"));
    let mut close =
        serde_json::from_slice::<serde_json::Value>(&close_event("b", "5", None, "null", "30"))
            .unwrap();
    close["account_id"] = "1".into();
    post(&exporter, close.to_string().as_bytes());
    // An accept for a chat never started.
    post(&exporter, &accept("z", "agent-3"));
    let m = exporter.metrics();
    assert_eq!(waiting(&m, "5"), Some(1.0));
    assert_eq!(
        sample(
            &m,
            r#"acquire_chat_accept_time_seconds_count{department="5"}"#
        ),
        Some(1.0)
    );
    assert_eq!(exporter.terminate(), Some(0));

    let exporter = durable(dir.path(), &[]);
    let m = exporter.metrics();
    assert_eq!(waiting(&m, "5"), Some(1.0), "after a restart");
    assert_eq!(waiting(&m, "6"), Some(1.0), "after a restart");
    assert_eq!(
        sample(
            &m,
            r#"acquire_chat_accept_time_seconds_count{department="5"}"#
        ),
        Some(1.0)
    );
    post(&exporter, &accept("c", "agent-3"));
    assert_eq!(waiting(&exporter.metrics(), "5"), Some(0.0));
}

#[test]
fn a_start_that_arrives_after_its_chats_close_does_not_queue_it() {
    let exporter = Exporter::spawn(&["--storage.in-memory"]);
    let waiting = |d: &str| {
        sample(
            &exporter.metrics(),
            &format!(r#"acquire_chats_waiting{{department="{d}"}}"#),
        )
    };
    post(&exporter, &start("first", "4"));
    let mut close: serde_json::Value =
        serde_json::from_slice(&close_event("late", "4", Some("Operator"), "3", "30")).unwrap();
    close["account_id"] = "1".into();
    post(&exporter, close.to_string().as_bytes());
    // The start of the chat that closed, delivered late (a retry).
    post(&exporter, &start("late", "4"));
    assert_eq!(
        waiting("4"),
        Some(1.0),
        "only the chat that did not close waits"
    );
    // And after its accept, too.
    post(&exporter, &accept("accepted-first", "agent-1"));
    post(&exporter, &start("accepted-first", "4"));
    assert_eq!(waiting("4"), Some(1.0));
}

#[test]
fn the_memory_only_mode_starts_from_zero_after_a_restart() {
    let exporter = Exporter::spawn(&["--storage.in-memory"]);
    post(
        &exporter,
        &close_event("1", "3", Some("Operator"), "5", "60"),
    );
    assert!(!common::histogram_lines(&exporter.metrics()).is_empty());
    assert_eq!(exporter.terminate(), Some(0));
    let exporter = Exporter::spawn(&["--storage.in-memory"]);
    assert!(common::histogram_lines(&exporter.metrics()).is_empty());
    let (status, answer) = exporter.post_json(&close_event("1", "3", Some("Operator"), "5", "60"));
    assert_eq!(status, 200);
    assert!(
        answer.contains("observed"),
        "nothing is remembered: {answer}"
    );
}
