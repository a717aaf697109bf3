//! The staffing gauges as exported over HTTP, against what the test computes from the events it
//! posted: arrivals per second, mean handle time, offered load, agents required per target
//! (Erlang C, written here anew from its textbook definition), agents seen, and the
//! concurrency setting.

mod common;

use std::collections::BTreeSet;
use std::time::Instant;

use common::{Exporter, sample};

/// The staffing window of the test: ten hours in 60 slots, so one slot lasts ten minutes and
/// the window covers one slot for as long as the test runs.
const WINDOW: &str = "10h";
const SLOT: f64 = 600.0;
const TARGETS: [(f64, f64, &str); 3] = [
    (0.8, 60.0, "80%/60s"),
    (0.9, 20.0, "90%/20s"),
    (0.95, 30.0, "95%/30s"),
];

/// Erlang C's answer for `load` Erlangs, handle time `aht` and one target: the fewest agents N
/// (N > load) for which 1 - C(N, A)·e^(-(N-A)·T/AHT) reaches the share.
fn erlang_c_agents(load: f64, aht: f64, share: f64, wait: f64) -> u32 {
    if load == 0.0 {
        return 0;
    }
    let mut n = load.floor() as u32 + 1;
    loop {
        let mut b = 1.0;
        for k in 1..=n {
            b = load * b / (f64::from(k) + load * b);
        }
        let nf = f64::from(n);
        let c = nf * b / (nf - load * (1.0 - b));
        let level = 1.0 - c * (-(nf - load) * wait / aht).exp();
        if level >= share {
            return n;
        }
        n += 1;
    }
}

fn close(id: &str, department: &str, agent: Option<(&str, &str)>, duration: u32) -> Vec<u8> {
    let (users, by, wait) = match agent {
        Some((role, agent)) => (
            serde_json::json!({"agent": {"role": role}}).to_string(),
            agent.to_owned(),
            "12",
        ),
        None => ("{}".to_owned(), "visitor-61111".to_owned(), "null"),
    };
    serde_json::json!({
        "id": id, "account_id": "1", "department_id": department,
        "chat_wait_time": wait, "chat_duration": duration.to_string(),
        "users": users, "by": by, "event": "CHAT_ON_CLOSE",
    })
    .to_string()
    .into_bytes()
}

fn start(id: &str, department: &str) -> Vec<u8> {
    serde_json::json!({"data": {" id": id, "department_id": department}, "event": "CHAT_ON_START"})
        .to_string()
        .into_bytes()
}

fn accept(id: &str, agent: &str) -> Vec<u8> {
    serde_json::json!({"id": id, "user": {"id": agent, "type": "agent"}, "event": "CHAT_ON_ACCEPT"})
        .to_string()
        .into_bytes()
}

/// What the test posted to one department, and what follows from it.
#[derive(Default)]
struct Expected {
    arrivals: u32,
    handle_times: Vec<f64>,
    agents: BTreeSet<String>,
}

impl Expected {
    fn mean_handle_time(&self) -> f64 {
        self.handle_times.iter().sum::<f64>() / self.handle_times.len() as f64
    }
}

fn post(exporter: &Exporter, body: &[u8]) {
    let (status, answer) = exporter.post_json(body);
    assert_eq!(status, 200, "{answer}");
}

/// Post the scenario; what each department (`4` and `none`) should show.
fn scenario(exporter: &Exporter) -> [(&'static str, Expected); 2] {
    let mut busy = Expected::default();
    let mut quiet = Expected::default();
    for i in 0..30u32 {
        let agent = format!("agent-{}", i % 5);
        let duration = 100 + 37 * i;
        post(
            exporter,
            &close(&format!("c{i}"), "4", Some(("Operator", &agent)), duration),
        );
        busy.arrivals += 1;
        busy.handle_times.push(f64::from(duration));
        busy.agents.insert(agent);
    }
    // Closed without an agent: an arrival with no handle time, closed "by" the visitor.
    for i in 0..5 {
        post(exporter, &close(&format!("u{i}"), "4", None, 20));
        busy.arrivals += 1;
    }
    // Accepted from the queue: the accepting agents are seen too; an accept of a chat that never
    // waited is not a chat of the department.
    for (chat, agent) in [("s1", "agent-6"), ("s2", "agent-7")] {
        post(exporter, &start(chat, "4"));
        post(exporter, &accept(chat, agent));
        busy.agents.insert(agent.to_owned());
    }
    post(exporter, &accept("never-started", "agent-8"));
    for i in 0..3u32 {
        post(
            exporter,
            &close(
                &format!("q{i}"),
                "",
                Some(("Administrator", "agent-1")),
                400,
            ),
        );
        quiet.arrivals += 1;
        quiet.handle_times.push(400.0);
        quiet.agents.insert("agent-1".to_owned());
    }
    [("4", busy), ("none", quiet)]
}

fn spawn(dir: &std::path::Path, concurrency: u32) -> Exporter {
    let config = dir.join(format!("staffing-{concurrency}.yml"));
    let targets: Vec<String> = TARGETS.iter().map(|t| format!("\"{}\"", t.2)).collect();
    std::fs::write(
        &config,
        format!(
            "staffing:\n  window: {WINDOW}\n  targets: [{}]\n  concurrency: {concurrency}\n",
            targets.join(", ")
        ),
    )
    .unwrap();
    Exporter::spawn(&[
        "--storage.in-memory",
        &format!("--config.file={}", config.display()),
    ])
}

fn close_to(actual: f64, expected: f64) -> bool {
    (actual - expected).abs() <= 1e-9 * expected.abs().max(1.0)
}

#[test]
fn the_staffing_gauges_follow_the_posted_events() {
    let dir = tempfile::tempdir().unwrap();
    for concurrency in [1, 2] {
        let spawned = Instant::now();
        let exporter = spawn(dir.path(), concurrency);
        let departments = scenario(&exporter);
        let m = exporter.metrics();
        // The window covers the time since the start, and never less than one slot.
        let covered = (spawned.elapsed().as_secs_f64() + 1.0).max(SLOT);
        for (department, expected) in &departments {
            let what = format!("department {department}, concurrency {concurrency}");
            let gauge = |name: &str| {
                sample(&m, &format!(r#"{name}{{department="{department}"}}"#))
                    .unwrap_or_else(|| panic!("{what}: no {name}:\n{m}"))
            };
            let rate = gauge("acquire_chat_arrivals_per_second");
            let arrivals = f64::from(expected.arrivals);
            assert!(
                rate <= arrivals / SLOT && rate >= arrivals / covered,
                "{what}: {rate}/s for {arrivals} chats"
            );
            let aht = gauge("acquire_chat_mean_handle_time_seconds");
            assert!(
                close_to(aht, expected.mean_handle_time()),
                "{what}: mean handle time {aht}, want {}",
                expected.mean_handle_time()
            );
            let load = gauge("acquire_offered_load_erlangs");
            assert!(close_to(load, rate * aht), "{what}: load {load}");
            assert_eq!(
                gauge("acquire_agents_seen"),
                expected.agents.len() as f64,
                "{what}: {:?}",
                expected.agents
            );
            let c = f64::from(concurrency);
            for (share, wait, label) in TARGETS {
                let required = sample(
                    &m,
                    &format!(
                        r#"acquire_agents_required{{department="{department}",target="{label}"}}"#
                    ),
                );
                let want = erlang_c_agents(load / c, aht / c, share, wait);
                assert_eq!(required, Some(f64::from(want)), "{what}, {label}");
            }
        }
        assert_eq!(
            sample(
                &m,
                r#"acquire_chat_accept_time_seconds_count{department="4"}"#
            ),
            Some(2.0)
        );
        let required = |department: &str| {
            sample(
                &m,
                &format!(
                    r#"acquire_agents_required{{department="{department}",target="80%/60s"}}"#
                ),
            )
            .unwrap()
        };
        assert!(
            required("4") > required("none"),
            "the busier department needs more"
        );
    }
}
