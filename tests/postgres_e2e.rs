//! Two replicas over one PostgreSQL behind a real haproxy, against one exporter alone: the same
//! simulated traffic (one seed) goes to both setups at once, a real Prometheus scrapes each
//! (the pair as two targets), and every query of every dashboard (`grafana/dashboards/*.json`)
//! and every rule (`prometheus/rules/*.yml`) gives the same answer on both.

mod common;
#[path = "common/haproxy.rs"]
mod haproxy;
mod kit;
#[path = "common/postgres.rs"]
mod pg;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::Exporter;
use common::prometheus::Prometheus;
use pg::free_port;
use serde_json::Value;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn files(dir: &str, ext: &str) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(root().join(dir))
        .unwrap_or_else(|e| panic!("{dir}: {e}"))
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == ext))
        .collect();
    out.sort();
    out
}

/// Every `expr` in a dashboard, panels nested in rows included: (where, expression).
fn dashboard_queries(path: &Path) -> Vec<(String, String)> {
    fn walk(v: &Value, at: &str, out: &mut Vec<(String, String)>) {
        match v {
            Value::Object(m) => {
                let here = m
                    .get("title")
                    .and_then(Value::as_str)
                    .map_or(at.to_owned(), |t| format!("{at} / {t}"));
                if let Some(Value::String(expr)) = m.get("expr") {
                    let id = m.get("refId").and_then(Value::as_str).unwrap_or("");
                    out.push((format!("{here} {id}"), expr.clone()));
                }
                for (k, v) in m {
                    // Template variables query label values, not series to compare.
                    if k != "templating" {
                        walk(v, &here, out);
                    }
                }
            }
            Value::Array(a) => a.iter().for_each(|v| walk(v, at, out)),
            _ => {}
        }
    }
    let text = std::fs::read_to_string(path).unwrap();
    let v: Value = serde_json::from_str(&text).unwrap();
    let mut out = Vec::new();
    walk(&v, &path.file_name().unwrap().to_string_lossy(), &mut out);
    out
}

/// Every rule's `expr` (recording and alerting): (name, expression).
fn rule_queries(path: &Path) -> Vec<(String, String)> {
    let text = std::fs::read_to_string(path).unwrap();
    let v: serde_yaml_ng::Value = serde_yaml_ng::from_str(&text).unwrap();
    let mut out = Vec::new();
    for g in v["groups"].as_sequence().into_iter().flatten() {
        for r in g["rules"].as_sequence().into_iter().flatten() {
            let name = r["record"]
                .as_str()
                .or_else(|| r["alert"].as_str())
                .unwrap_or("?");
            out.push((
                format!("{}: {name}", path.file_name().unwrap().to_string_lossy()),
                r["expr"].as_str().expect("expr").to_owned(),
            ));
        }
    }
    out
}

/// Grafana's variables as a user with every value selected sees them.
fn substitute(expr: &str) -> String {
    let value_of = |name: &str| -> String {
        match name {
            "job" => "acquire".into(),
            "instance" | "department" | "agent_role" => ".*".into(),
            "threshold" => "60".into(),
            "__rate_interval" => "1m".into(),
            "__interval" => "15s".into(),
            "__range" => "5m".into(),
            other => panic!("unknown variable ${other} in {expr}"),
        }
    };
    kit::substitute_with(expr, value_of)
}

/// A result as label sets (without the replica labels) to values.
fn by_labels(result: &[Value]) -> BTreeMap<String, f64> {
    result
        .iter()
        .map(|s| {
            let mut labels: Vec<(String, String)> = s["metric"]
                .as_object()
                .into_iter()
                .flatten()
                .filter(|(k, _)| !["instance", "pod"].contains(&k.as_str()))
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or("").to_owned()))
                .collect();
            labels.sort();
            (format!("{labels:?}"), common::prometheus::value(s))
        })
        .collect()
}

fn close_enough(a: f64, b: f64) -> bool {
    (a.is_nan() && b.is_nan()) || (a - b).abs() <= 0.15 * a.abs().max(b.abs()) + 1e-6
}

fn config(targets: &[&str], rules: &[PathBuf]) -> String {
    let rules: String = rules
        .iter()
        .map(|p| format!("  - '{}'\n", p.display()))
        .collect();
    let targets: Vec<String> = targets.iter().map(|t| format!("'{t}'")).collect();
    format!(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files:\n{rules}scrape_configs:\n  - job_name: acquire\n    static_configs:\n      - targets: [{}]\n",
        targets.join(", ")
    )
}

struct Simulator(std::process::Child);

impl Drop for Simulator {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn simulate(webhook: &str) -> Simulator {
    Simulator(
        Command::new(env!("CARGO_BIN_EXE_acquire-simulator"))
            .arg(format!("--url={webhook}"))
            .args([
                "--speed=60",
                "--peak-per-hour=900",
                "--start-hour=10",
                "--duration=40s",
                "--report-every=60s",
                "--seed=7",
                "--duplicate-share=0.05",
                "--invalid-share=0.01",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the simulator"),
    )
}

fn chats(metrics: &str) -> f64 {
    metrics
        .lines()
        .filter(|l| l.starts_with("acquire_chat_duration_seconds_count{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

fn wait_until(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !done() {
        assert!(Instant::now() < deadline, "{what}: not within {timeout:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// One query on both servers at `at`: `Ok(true)` when both gave the same data, `Ok(false)` when
/// both gave none, the differences otherwise.
fn compare(
    one: &Prometheus,
    two: &Prometheus,
    name: &str,
    expr: &str,
    at: f64,
) -> Result<bool, Vec<String>> {
    let at = format!("{at}");
    let run = |p: &Prometheus| -> Result<Vec<Value>, String> {
        let data = p.api("/api/v1/query", &[("query", expr), ("time", &at)])?;
        Ok(match &data["result"] {
            Value::Array(a) => a.clone(),
            // A scalar result.
            v => vec![serde_json::json!({"metric": {}, "value": v.clone()})],
        })
    };
    let (r1, r2) = match (run(one), run(two)) {
        (Ok(r1), Ok(r2)) => (r1, r2),
        (e1, e2) => return Err(vec![format!("{name}: {e1:?} / {e2:?}")]),
    };
    if r1.iter().any(|s| s["metric"].get("instance").is_some()) {
        // A panel per replica (CPU, memory, up): one series per replica in the pair.
        return if r2.len() == 2 * r1.len() {
            Ok(false)
        } else {
            Err(vec![format!(
                "{name}: per-replica query with {} series alone, {} for two\n  {expr}",
                r1.len(),
                r2.len()
            )])
        };
    }
    let (m1, m2) = (by_labels(&r1), by_labels(&r2));
    if m1.len() != r1.len() || m2.len() != r2.len() {
        return Err(vec![format!(
            "{name}: series differ only by replica: not de-duplicated\n  {expr}"
        )]);
    }
    if m1.keys().ne(m2.keys()) {
        return Err(vec![format!(
            "{name}: label sets differ\n  one: {:?}\n  two: {:?}\n  {expr}",
            m1.keys().collect::<Vec<_>>(),
            m2.keys().collect::<Vec<_>>()
        )]);
    }
    let differences: Vec<String> = m1
        .iter()
        .filter(|(labels, v1)| !close_enough(**v1, m2[*labels]))
        .map(|(labels, v1)| {
            format!(
                "{name} {labels}: {v1} alone, {} from two replicas\n  {expr}",
                m2[labels]
            )
        })
        .collect();
    if differences.is_empty() {
        Ok(!m1.is_empty())
    } else {
        Err(differences)
    }
}

#[test]
fn every_dashboard_query_and_rule_gives_two_replicas_behind_haproxy_the_numbers_of_one() {
    let mut queries = Vec::new();
    for d in files("grafana/dashboards", "json") {
        queries.extend(dashboard_queries(&d));
    }
    let dashboards = queries.len();
    let rules = files("prometheus/rules", "yml");
    for r in &rules {
        queries.extend(rule_queries(r));
    }
    assert!(
        dashboards >= 10 && queries.len() > dashboards,
        "{dashboards} dashboard queries, {} in all",
        queries.len()
    );

    let server = pg::Postgres::start();
    server.create_database("ha");
    let url = format!("--storage.url={}", server.url("ha"));
    let store = tempfile::tempdir().unwrap();
    let alone = Exporter::spawn(&[&format!("--storage.path={}", store.path().display())]);
    let a = Exporter::spawn_on(&format!("127.0.0.1:{}", free_port()), &[&url]);
    let b = Exporter::spawn_on(&format!("127.0.0.1:{}", free_port()), &[&url]);
    let addr = |e: &Exporter| e.base.trim_start_matches("http://").to_owned();
    let (addr_a, addr_b) = (addr(&a), addr(&b));
    let balancer = haproxy::Haproxy::start(&[&addr_a, &addr_b]);
    let one = Prometheus::start(&config(&[&addr(&alone)], &rules), &[]);
    let two = Prometheus::start(&config(&[&addr_a, &addr_b], &rules), &[]);
    // Both scrape before the traffic starts.
    for (p, n) in [(&one, 1), (&two, 2)] {
        p.wait_for(&format!("count(up == 1) == {n}"), Duration::from_secs(30));
    }

    let sims = [
        simulate(&alone.url("/webhook")),
        simulate(&balancer.url("/webhook")),
    ];
    for mut s in sims {
        let status = s.0.wait().unwrap();
        assert!(status.success(), "the simulator failed: {status}");
    }
    let done = alone.metrics();
    let expected = chats(&done);
    assert!(expected > 50.0, "{expected} chats");
    for r in [&a, &b] {
        wait_until(
            "both replicas hold every chat",
            Duration::from_secs(20),
            || chats(&r.metrics()) == expected,
        );
    }
    // Each handled part of the traffic.
    for r in [&a, &b] {
        let m = r.metrics();
        let observed = common::sample(
            &m,
            r#"acquire_webhooks_received_total{event="chat_close",outcome="observed"}"#,
        )
        .unwrap_or(0.0);
        assert!(observed > 0.0, "haproxy sent this replica nothing");
    }
    // Three more scrapes and rule evaluations of the final state.
    let end = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    for p in [&one, &two] {
        p.wait_for(
            &format!("min(timestamp(up)) > {}", end + 3.0),
            Duration::from_secs(30),
        );
    }
    // Every query at one instant; one that differs is asked again at two later instants, and
    // fails only when it differs at all three: an edge of a rate window that one setup's scrape
    // caught a moment before the other's moves on, a query that is not de-duplicated does not.
    let mut failures = Vec::new();
    let mut compared = 0;
    for (name, expr) in &queries {
        let expr = substitute(expr);
        let mut outcome = compare(&one, &two, name, &expr, end + 3.0);
        for later in [5.0, 7.0] {
            if outcome.is_ok() {
                break;
            }
            for p in [&one, &two] {
                p.wait_for(
                    &format!("min(timestamp(up)) > {}", end + later),
                    Duration::from_secs(30),
                );
            }
            outcome = compare(&one, &two, name, &expr, end + later);
        }
        match outcome {
            Ok(true) => compared += 1,
            Ok(false) => {}
            Err(e) => failures.extend(e),
        }
    }
    assert!(
        failures.is_empty(),
        "{} differences over {} queries:\n{}",
        failures.len(),
        queries.len(),
        failures.join("\n")
    );
    assert!(
        compared >= queries.len() / 2,
        "only {compared} of {} queries returned data to compare",
        queries.len()
    );
    eprintln!(
        "{} queries, {compared} with data, equal for one exporter and two replicas",
        queries.len()
    );
}
