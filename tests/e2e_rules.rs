//! The rule files on a real Prometheus (the Debian server) scraping the real exporter.
//!
//! Prometheus runs the repository's `prometheus/prometheus.yml`, rewritten for the test: the
//! target is the exporter's ephemeral address, scrapes and rule evaluations every second, and
//! `rule_files` the absolute paths of the recording rules (unchanged) and of a test copy of the
//! alerts. The copy differs from the repository's file in two ways only: no `for:` (an alert fires
//! at its first true evaluation instead of after minutes), and `AcquireOldestWaitingChatTooOld`
//! fires above 3 s instead of 120 s (a chat cannot wait two minutes in a test). The 15-minute
//! windows are kept: `rate` over a window works with the seconds of data it holds.
//!
//! Then, with the events posted, every rule expression of the repository's files, unchanged, is
//! evaluated through `/api/v1/query`:
//! - every expression parses (the query succeeds);
//! - every recording rule returns data, and so does its recorded series;
//! - an alert the scenario makes true returns data as it is, thresholds included;
//! - an alert that must stay quiet returns nothing because its comparison filters everything out,
//!   so instead each operand it compares is evaluated alone: the test lists those operands, checks
//!   that each appears verbatim in the alert's expression, and that each returns data. Operands that
//!   cannot have data in a test (a week ago; an expiry, which takes at least a minute) are only
//!   parsed, and their alerts are proven by the promtool unit tests in prometheus/tests/.

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_yaml_ng::Value;

use common::prometheus::{Prometheus, value};
use common::{Exporter, close_event};

const TOKEN: &str = "e2e-rules-token";

/// How an alert's expression is checked against the scenario's data.
struct AlertCheck {
    alert: &'static str,
    /// The scenario makes it true (with the repository's thresholds): the whole expression
    /// returns data, and the test copy fires.
    fires: bool,
    /// Operands of a quiet alert, verbatim from its expression, that must return data.
    data: &'static [&'static str],
    /// Operands verbatim from the expression that cannot have data here: parsed only.
    parse_only: &'static [&'static str],
}

const ALERTS: &[AlertCheck] = &[
    AlertCheck {
        alert: "AcquireChatWaitTooLong",
        fires: true,
        data: &[],
        parse_only: &[],
    },
    AlertCheck {
        alert: "AcquireChatWaitP90High",
        fires: true,
        data: &[],
        parse_only: &[],
    },
    AlertCheck {
        alert: "AcquireNoChatsClosed",
        fires: false,
        data: &[
            "sum by (department) (increase(acquire_chat_wait_time_seconds_count[30m]) or increase(acquire_chats_unanswered_total[30m]))",
        ],
        // No week-old data in a fresh server.
        parse_only: &[
            "sum by (department) (increase(acquire_chat_wait_time_seconds_count[30m] offset 1w) or increase(acquire_chats_unanswered_total[30m] offset 1w))",
        ],
    },
    AlertCheck {
        // The test copy fires (above 3 s); with the real 120 s the gauge is only compared.
        alert: "AcquireOldestWaitingChatTooOld",
        fires: false,
        data: &["max by (department) (acquire_chat_oldest_wait_seconds)"],
        parse_only: &[],
    },
    AlertCheck {
        // The counter appears with the first expiry, at least a minute after a start.
        alert: "AcquireChatsExpiring",
        fires: false,
        data: &[],
        parse_only: &[
            "sum by (department) (increase(acquire_chats_expired_total[1h]))",
            "sum by (department) (acquire_chats_expired_total unless acquire_chats_expired_total offset 1h)",
        ],
    },
    AlertCheck {
        // Fires at the end, once the exporter is stopped.
        alert: "AcquireExporterDown",
        fires: false,
        data: &["up{job=\"acquire\"}"],
        parse_only: &["absent(up{job=\"acquire\"})"],
    },
    AlertCheck {
        alert: "AcquireWebhookRejectionsHigh",
        fires: true,
        data: &[],
        parse_only: &[],
    },
    AlertCheck {
        alert: "AcquireWebhookAuthFailures",
        fires: true,
        data: &[],
        parse_only: &[],
    },
];

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn load(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_yaml_ng::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Every rule of a rule file.
fn rules_of(doc: &Value) -> Vec<Value> {
    doc["groups"]
        .as_sequence()
        .expect("groups")
        .iter()
        .flat_map(|g| g["rules"].as_sequence().expect("rules").clone())
        .collect()
}

fn expr(rule: &Value) -> String {
    rule["expr"].as_str().expect("expr").to_owned()
}

fn squeeze(s: &str) -> String {
    s.chars().filter(|c| !c.is_whitespace()).collect()
}

/// The alerts file for the test: no `for:`, and the oldest-wait threshold at 3 s.
fn test_copy_of_alerts(doc: &Value) -> Value {
    let mut doc = doc.clone();
    for group in doc["groups"].as_sequence_mut().expect("groups") {
        for rule in group["rules"].as_sequence_mut().expect("rules") {
            let rule = rule.as_mapping_mut().expect("a rule");
            rule.remove("for");
            if rule.get("alert").and_then(Value::as_str) == Some("AcquireOldestWaitingChatTooOld") {
                let e = rule.get("expr").and_then(Value::as_str).expect("expr");
                assert_eq!(e.matches("> 120").count(), 1, "the threshold to lower: {e}");
                let lowered = e.replace("> 120", "> 3");
                rule.insert("expr".into(), lowered.into());
            }
        }
    }
    doc
}

/// The repository's prometheus.yml pointed at `target`, every second, with these rule files.
fn test_config(target: &str, rule_files: &[&Path]) -> String {
    let mut config = load(&repo().join("prometheus/prometheus.yml"));
    config["global"]["scrape_interval"] = "1s".into();
    config["global"]["evaluation_interval"] = "1s".into();
    config["rule_files"] = Value::Sequence(
        rule_files
            .iter()
            .map(|p| p.display().to_string().into())
            .collect(),
    );
    let jobs = config["scrape_configs"]
        .as_sequence_mut()
        .expect("scrape_configs");
    let job = jobs
        .iter_mut()
        .find(|j| j["job_name"].as_str() == Some("acquire"))
        .expect("job acquire");
    job["static_configs"] =
        serde_yaml_ng::from_str(&format!("[{{targets: ['{target}']}}]")).unwrap();
    serde_yaml_ng::to_string(&config).unwrap()
}

fn start(id: &str, department: &str) -> Vec<u8> {
    serde_json::json!({"data": {" id": id, "account_id": "1", "status": "pending", "department_id": department}, "event": "CHAT_ON_START"})
        .to_string()
        .into_bytes()
}

fn accept(id: &str) -> Vec<u8> {
    serde_json::json!({"id": id, "account_id": "1", "chat_wait_time": "null", "user": {"id": "agent-3", "type": "agent", "name": "Agent"}, "event": "CHAT_ON_ACCEPT"})
        .to_string()
        .into_bytes()
}

/// POST with the token; must be accepted.
fn deliver(exporter: &Exporter, body: &[u8]) {
    let (status, answer) =
        exporter.post(&format!("/webhook?token={TOKEN}"), "application/json", body);
    assert_eq!(status, 200, "{answer}");
}

/// The alerts Prometheus holds now: (name, state, labels).
fn alerts(prometheus: &Prometheus) -> Vec<(String, String, serde_json::Value)> {
    let data = prometheus.api("/api/v1/alerts", &[]).expect("alerts");
    data["alerts"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .map(|a| {
            (
                a["labels"]["alertname"].as_str().unwrap_or("").to_owned(),
                a["state"].as_str().unwrap_or("").to_owned(),
                a["labels"].clone(),
            )
        })
        .collect()
}

/// Wait until every alert of `names` is firing; the alerts then.
fn wait_firing(
    prometheus: &Prometheus,
    names: &[&str],
    timeout: Duration,
) -> Vec<(String, String, serde_json::Value)> {
    let deadline = Instant::now() + timeout;
    loop {
        let now = alerts(prometheus);
        let firing: BTreeSet<&str> = now
            .iter()
            .filter(|(_, state, _)| state == "firing")
            .map(|(name, _, _)| name.as_str())
            .collect();
        if names.iter().all(|n| firing.contains(n)) {
            return now;
        }
        if Instant::now() > deadline {
            let rules = prometheus.api("/api/v1/rules", &[]).unwrap_or_default();
            panic!(
                "not all of {names:?} fired within {timeout:?}; alerts: {now:?}\nrules: {rules}"
            );
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

#[test]
fn the_rules_evaluate_on_a_real_prometheus_and_the_long_wait_alerts_fire() {
    let recording_path = repo().join("prometheus/rules/acquire-recording.yml");
    let alerts_path = repo().join("prometheus/rules/acquire-alerts.yml");
    let recording = rules_of(&load(&recording_path));
    let alert_doc = load(&alerts_path);
    let alert_rules = rules_of(&alert_doc);

    let names: BTreeSet<&str> = alert_rules
        .iter()
        .map(|r| r["alert"].as_str().expect("alert"))
        .collect();
    let checked: BTreeSet<&str> = ALERTS.iter().map(|c| c.alert).collect();
    assert_eq!(names, checked, "every alert of the file has a check here");

    let exporter = Exporter::spawn(&["--storage.in-memory", &format!("--webhook.token={TOKEN}")]);
    let target = exporter.base.trim_start_matches("http://").to_owned();

    let dir = tempfile::tempdir().unwrap();
    let alerts_copy = dir.path().join("acquire-alerts.yml");
    std::fs::write(
        &alerts_copy,
        serde_yaml_ng::to_string(&test_copy_of_alerts(&alert_doc)).unwrap(),
    )
    .unwrap();
    let prometheus =
        Prometheus::start(&test_config(&target, &[&recording_path, &alerts_copy]), &[]);
    prometheus.wait_for(r#"up{job="acquire"} == 1"#, Duration::from_secs(30));

    // First, one event of each kind, so that every series exists before the bulk comes: a counter's
    // first value is not an increase, and the alerts look at increases.
    // Department 11 is short of agents, department 12 is not.
    for (id, department, role) in [
        ("first-11-op", "11", "Operator"),
        ("first-11-admin", "11", "Administrator"),
        ("first-12-op", "12", "Operator"),
    ] {
        deliver(
            &exporter,
            &close_event(id, department, Some(role), "10", "120"),
        );
    }
    for department in ["11", "12"] {
        deliver(
            &exporter,
            &close_event(
                &format!("first-unanswered-{department}"),
                department,
                None,
                "null",
                "30",
            ),
        );
    }
    deliver(&exporter, &start("first-accepted-12", "12"));
    deliver(&exporter, &accept("first-accepted-12"));
    // A chat of department 11 that nobody accepts: the oldest-wait alert's.
    deliver(&exporter, &start("never-accepted-11", "11"));
    for series in [
        r#"acquire_chat_wait_time_seconds_count{department="12"}"#,
        r#"acquire_chats_unanswered_total{department="12"}"#,
        r#"acquire_chat_accept_time_seconds_count{department="12"}"#,
    ] {
        prometheus.wait_for(series, Duration::from_secs(30));
    }
    std::thread::sleep(Duration::from_millis(1500));

    // The bulk: department 11's chats waited 300 s, department 12's 5 s.
    for i in 0..20 {
        let role = if i % 2 == 0 {
            "Operator"
        } else {
            "Administrator"
        };
        deliver(
            &exporter,
            &close_event(&format!("long-11-{i}"), "11", Some(role), "300", "600"),
        );
        deliver(
            &exporter,
            &close_event(&format!("quick-12-{i}"), "12", Some("Operator"), "5", "300"),
        );
    }
    for i in 0..5 {
        deliver(
            &exporter,
            &close_event(&format!("unanswered-11-{i}"), "11", None, "null", "45"),
        );
        deliver(&exporter, &start(&format!("accepted-12-{i}"), "12"));
        deliver(&exporter, &accept(&format!("accepted-12-{i}")));
    }
    // Refused deliveries: broken bodies, and requests without the token.
    for _ in 0..10 {
        let (status, _) = exporter.post(
            &format!("/webhook?token={TOKEN}"),
            "application/json",
            b"{not json",
        );
        assert_eq!(status, 400);
    }
    for i in 0..12 {
        let (status, _) = exporter.post_json(&close_event(
            &format!("no-token-{i}"),
            "11",
            Some("Operator"),
            "5",
            "60",
        ));
        assert_eq!(status, 401);
    }

    let firing = wait_firing(
        &prometheus,
        &[
            "AcquireChatWaitTooLong",
            "AcquireChatWaitP90High",
            "AcquireOldestWaitingChatTooOld",
            "AcquireWebhookRejectionsHigh",
            "AcquireWebhookAuthFailures",
        ],
        Duration::from_secs(40),
    );
    for (name, _, labels) in &firing {
        match name.as_str() {
            "AcquireChatWaitTooLong"
            | "AcquireChatWaitP90High"
            | "AcquireOldestWaitingChatTooOld" => {
                assert_eq!(
                    labels["department"], "11",
                    "{name} only for department 11: {labels}"
                );
            }
            "AcquireWebhookRejectionsHigh" => {
                assert_eq!(labels["reason"], "malformed_body", "{labels}");
            }
            "AcquireWebhookAuthFailures" => {}
            other => panic!("{other} must not fire here: {labels}"),
        }
        assert!(
            labels["severity"].is_string(),
            "{name} carries its severity: {labels}"
        );
    }

    // Every rule loaded and evaluated without error.
    let groups = prometheus.api("/api/v1/rules", &[]).expect("rules");
    let mut loaded = 0;
    for group in groups["groups"].as_array().expect("groups") {
        for rule in group["rules"].as_array().expect("rules") {
            loaded += 1;
            assert_eq!(rule["health"], "ok", "{rule}");
        }
    }
    assert_eq!(loaded, recording.len() + alert_rules.len());

    // Recording rules: the expression from the file returns data, and so does what was recorded.
    for rule in &recording {
        let name = rule["record"].as_str().expect("record");
        let e = expr(rule);
        let result = prometheus
            .query(&e)
            .unwrap_or_else(|err| panic!("{name}: {e}: {err}"));
        assert!(!result.is_empty(), "{name}: {e} returned no data");
        prometheus.wait_for(name, Duration::from_secs(10));
    }
    let sample = |q: &str| {
        let r = prometheus.query(q).unwrap_or_else(|e| panic!("{q}: {e}"));
        assert_eq!(r.len(), 1, "{q}: {r:?}");
        value(&r[0])
    };
    assert_eq!(
        sample(r#"department:acquire_chats_answered_within_60s:ratio_rate5m{department="12"}"#),
        1.0
    );
    assert!(
        sample(r#"department:acquire_chats_answered_within_60s:ratio_rate5m{department="11"}"#)
            < 0.2
    );
    let p90 = sample(r#"department:acquire_chat_wait_time_seconds:p90_5m{department="11"}"#);
    assert!(
        (180.0..=300.0).contains(&p90),
        "p90 {p90} in the 180-300 s bucket"
    );

    // Alerts: the repository's expressions, unchanged.
    for check in ALERTS {
        let rule = alert_rules
            .iter()
            .find(|r| r["alert"].as_str() == Some(check.alert))
            .unwrap();
        let e = expr(rule);
        let result = prometheus
            .query(&e)
            .unwrap_or_else(|err| panic!("{}: {e}: {err}", check.alert));
        if check.fires {
            assert!(
                !result.is_empty(),
                "{}: {e} is true for the scenario",
                check.alert
            );
        } else {
            assert!(
                result.is_empty(),
                "{}: {e} must be false here: {result:?}",
                check.alert
            );
        }
        for (operand, wants_data) in check
            .data
            .iter()
            .map(|o| (o, true))
            .chain(check.parse_only.iter().map(|o| (o, false)))
        {
            assert!(
                squeeze(&e).contains(&squeeze(operand)),
                "{}: `{operand}` is not in its expression {e}",
                check.alert
            );
            let result = prometheus
                .query(operand)
                .unwrap_or_else(|err| panic!("{}: {operand}: {err}", check.alert));
            if wants_data {
                assert!(
                    !result.is_empty(),
                    "{}: {operand} returned no data",
                    check.alert
                );
            }
        }
    }

    // The exporter stops: its down alert fires.
    exporter.kill9();
    let firing = wait_firing(
        &prometheus,
        &["AcquireExporterDown"],
        Duration::from_secs(20),
    );
    let down = firing
        .iter()
        .find(|(name, _, _)| name == "AcquireExporterDown")
        .unwrap();
    assert_eq!(down.2["instance"], target.as_str(), "{:?}", down.2);
}
