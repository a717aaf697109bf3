//! The generated rule files on a real Prometheus (the Debian server) scraping real exporters.
//!
//! Two exporters with durable stores are scraped as two replicas of job `acquire` and fed the same
//! events, as replicas that follow one event log are; a third, job `other`, is not selected by the
//! kit's job selector and gets chats that would alert. Prometheus runs the repository's
//! `prometheus/prometheus.yml`, rewritten for the test: the targets, scrapes and evaluations every
//! second, and `rule_files` the recording rules (unchanged) and a test copy of the alerts. The
//! copy differs in two ways only: no `for:` (an alert fires at its first true evaluation), and
//! `AcquireOldestWaitingChatTooOld` fires above 3 s instead of 120 s. Windows are kept: `rate`
//! over a window works with the seconds of data it holds.
//!
//! Then every rule expression of the repository's files, unchanged, is evaluated through
//! `/api/v1/query`: every expression parses; every recording rule returns data (rules over the
//! metrics the exporter does not expose yet are only parsed), and so does its recorded series; an
//! alert the scenario makes true returns data as it is, thresholds included, and its test copy
//! fires with the labels the README promises (`severity`, `category`, `job`); an alert that must
//! stay quiet returns nothing, and each operand listed for it, verbatim from its expression,
//! returns data. Along the way the store of one replica is locked by another connection (it
//! cannot commit: 503, `/-/ready` 503, the storage alert fires) and released (it recovers), a
//! waiting chat expires, one replica stops (the replica alert) and then both (the down alert).

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_yaml_ng::Value;

use common::prometheus::{Prometheus, listening_address, value};
use common::{Exporter, close_event, get};

const TOKEN: &str = "e2e-rules-token";

/// How an alert's expression is checked against the scenario's data.
struct AlertCheck {
    alert: &'static str,
    /// The scenario makes it true (with the repository's thresholds): the whole expression
    /// returns data, and the test copy fires, with this category.
    fires: bool,
    category: &'static str,
    /// Operands of a quiet alert, verbatim from its expression, that must return data.
    data: &'static [&'static str],
    /// Operands verbatim from the expression that cannot have data here: parsed only.
    parse_only: &'static [&'static str],
}

const fn fires(alert: &'static str, category: &'static str) -> AlertCheck {
    AlertCheck {
        alert,
        fires: true,
        category,
        data: &[],
        parse_only: &[],
    }
}

const fn quiet(
    alert: &'static str,
    category: &'static str,
    data: &'static [&'static str],
    parse_only: &'static [&'static str],
) -> AlertCheck {
    AlertCheck {
        alert,
        fires: false,
        category,
        data,
        parse_only,
    }
}

const ALERTS: &[AlertCheck] = &[
    // Department 11 answers late, 13 answers nobody.
    fires("AcquireServiceLevelFastBurn", "support"),
    fires("AcquireServiceLevelSlowBurn", "support"),
    fires("AcquireChatAbandonmentHigh", "support"),
    quiet(
        "AcquireNoChatsClosed",
        "support",
        &[
            r#"sum by (job, department) (max without (instance, pod) (increase(acquire_chat_wait_time_seconds_count{job="acquire"}[30m])) or max without (instance, pod) (increase(acquire_chats_unanswered_total{job="acquire"}[30m])))"#,
        ],
        // No week-old data in a fresh server.
        &[
            r#"sum by (job, department) (max without (instance, pod) (increase(acquire_chat_wait_time_seconds_count{job="acquire"}[30m] offset 1w)) or max without (instance, pod) (increase(acquire_chats_unanswered_total{job="acquire"}[30m] offset 1w)))"#,
        ],
    ),
    // With the real 120 s, the expression must agree with the gauge (checked apart).
    quiet(
        "AcquireOldestWaitingChatTooOld",
        "support",
        &[
            r#"max by (job, department) (max without (instance, pod) (acquire_chat_oldest_wait_seconds{job="acquire"}))"#,
        ],
        &[],
    ),
    // Fires once the never-accepted chat expired (checked then).
    fires("AcquireChatsExpiring", "support"),
    fires("AcquireAgentsBelowRequired", "support"),
    // Department 12's seeded weeks forecast more agents than take its chats.
    fires("AcquireAgentsBelowForecast", "support"),
    fires("AcquireWebhookRejectionsHigh", "exporter"),
    fires("AcquireWebhookBodiesUnreadable", "exporter"),
    fires("AcquireWebhookAuthFailures", "exporter"),
    // Department 12's chats are accepted.
    quiet(
        "AcquireAcceptEventsMissing",
        "exporter",
        &[
            r#"sum by (job) (increase(acquire_webhooks_received_total{job="acquire",event="chat_start",outcome="observed"}[30m]))"#,
        ],
        &[],
    ),
    // Fire at the end, when the replicas stop (checked then).
    fires("AcquireExporterDown", "exporter"),
    fires("AcquireExporterReplicaDown", "exporter"),
    // Fires while one replica's store is locked (checked then).
    fires("AcquireExporterStorageFailing", "exporter"),
    // Both replicas' stores take their snapshots.
    quiet(
        "AcquireExporterSnapshotsFailing",
        "exporter",
        &[r#"increase(acquire_exporter_storage_snapshot_failures_total{job="acquire"}[1h])"#],
        &[],
    ),
    quiet(
        "AcquireExporterRestarting",
        "exporter",
        &[r#"changes(process_start_time_seconds{job="acquire"}[1h])"#],
        &[],
    ),
    quiet(
        "AcquireExporterFdsNearLimit",
        "exporter",
        &[r#"process_open_fds{job="acquire"} / process_max_fds{job="acquire"}"#],
        &[],
    ),
    // Department 14 is past the cap of 3 departments.
    fires("AcquireLabelOverflow", "exporter"),
    quiet(
        "AcquireExporterScrapeSlow",
        "exporter",
        &[r#"avg_over_time(scrape_duration_seconds{job="acquire"}[15m])"#],
        &[],
    ),
    quiet(
        "AcquireExporterScrapeNearSampleLimit",
        "exporter",
        &[r#"scrape_samples_scraped{job="acquire"}"#],
        &[],
    ),
];

/// Alerts whose expression is true only at one moment of the scenario, checked then.
const CHECKED_APART: &[&str] = &[
    "AcquireChatsExpiring",
    "AcquireExporterDown",
    "AcquireExporterReplicaDown",
    "AcquireExporterStorageFailing",
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

/// The repository's prometheus.yml with job acquire on `targets`, a job `other` on `other`, every
/// second, with these rule files. Everything else (the sample limit) is kept.
fn test_config(targets: &[&str], other: &str, rule_files: &[&Path]) -> String {
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
        serde_yaml_ng::from_str(&format!("[{{targets: {targets:?}}}]")).unwrap();
    let mut other_job = job.clone();
    other_job["job_name"] = "other".into();
    other_job["static_configs"] =
        serde_yaml_ng::from_str(&format!("[{{targets: ['{other}']}}]")).unwrap();
    jobs.push(other_job);
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

fn message(id: &str) -> Vec<u8> {
    serde_json::json!({"id": id, "account_id": "1", "message": "{}", "event": "CHAT_ON_MESSAGE"})
        .to_string()
        .into_bytes()
}

/// POST with the token to every exporter; each must accept it.
fn deliver(exporters: &[&Exporter], body: &[u8]) {
    for exporter in exporters {
        let (status, answer) =
            exporter.post(&format!("/webhook?token={TOKEN}"), "application/json", body);
        assert_eq!(status, 200, "{answer}");
    }
}

/// POST with the token; the status.
fn post_status(exporter: &Exporter, body: &[u8]) -> u16 {
    exporter
        .post(&format!("/webhook?token={TOKEN}"), "application/json", body)
        .0
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

/// Poll until `done` holds (no sleeps as synchronisation).
fn wait_until(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !done() {
        assert!(Instant::now() < deadline, "{what}: not within {timeout:?}");
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// The one sample of `q`.
fn only(prometheus: &Prometheus, q: &str) -> f64 {
    let r = prometheus.query(q).unwrap_or_else(|e| panic!("{q}: {e}"));
    assert_eq!(r.len(), 1, "{q}: {r:?}");
    value(&r[0])
}

/// The newest sample of a one-series expression: its timestamp, as the API spells it, and its
/// value.
fn last_sample(prometheus: &Prometheus, q: &str) -> (String, f64) {
    let range = format!("{q}[1m]");
    let r = prometheus
        .query(&range)
        .unwrap_or_else(|e| panic!("{range}: {e}"));
    assert_eq!(r.len(), 1, "{range}: {r:?}");
    let last = r[0]["values"]
        .as_array()
        .and_then(|v| v.last())
        .unwrap_or_else(|| panic!("{range}: no samples: {r:?}"));
    let at = last[0].as_f64().expect("timestamp").to_string();
    let v = last[1].as_str().expect("value").parse().expect("a number");
    (at, v)
}

/// An alert's expression from the repository's file.
fn alert_expr(alert_rules: &[Value], name: &str) -> String {
    expr(
        alert_rules
            .iter()
            .find(|r| r["alert"].as_str() == Some(name))
            .unwrap_or_else(|| panic!("no alert {name}")),
    )
}

/// The repository's expression of `name` returns data now.
fn assert_true_now(prometheus: &Prometheus, alert_rules: &[Value], name: &str) {
    let e = alert_expr(alert_rules, name);
    let r = prometheus
        .query(&e)
        .unwrap_or_else(|err| panic!("{name}: {e}: {err}"));
    assert!(!r.is_empty(), "{name}: {e} is true for the scenario");
}

#[test]
fn the_listening_address_is_read_from_prometheus_s_log() {
    let cases = [
        (
            r#"ts=2026-12-01T20:43:46.257Z caller=tls_config.go:232 level=info component=web msg="Listening on" address=127.0.0.1:43753"#,
            Some("127.0.0.1:43753"),
        ),
        (
            r#"ts=x level=info component=web msg="Start listening for connections" address=127.0.0.1:0"#,
            None,
        ),
        ("", None),
    ];
    for (line, want) in cases {
        assert_eq!(listening_address(line), want, "{line}");
    }
}

#[test]
fn the_rules_evaluate_on_a_real_prometheus_and_the_alerts_fire_as_documented() {
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

    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("exporter.yml");
    // A waiting chat expires after a minute; a fourth department overflows.
    std::fs::write(
        &config,
        "queue:\n  expire_after: 1m\nlimits:\n  max_departments: 3\n",
    )
    .unwrap();
    let config_arg = format!("--config.file={}", config.display());
    let token_arg = format!("--webhook.token={TOKEN}");
    let store_a = dir.path().join("store-a");
    let store_b = dir.path().join("store-b");
    // The coming hour of the past five weeks in department 12, in both replicas' stores: the
    // forecast has data.
    for store in [&store_a, &store_b] {
        common::history::seed(
            store,
            "12",
            &common::history::coming_hours_of_past_weeks(),
            30,
            &[],
        );
    }
    let a = Exporter::spawn(&[
        &format!("--storage.path={}", store_a.display()),
        &config_arg,
        &token_arg,
    ]);
    let b = Exporter::spawn(&[
        &format!("--storage.path={}", store_b.display()),
        &config_arg,
        &token_arg,
    ]);
    let other = Exporter::spawn(&["--storage.in-memory", &token_arg]);
    let target = |e: &Exporter| e.base.trim_start_matches("http://").to_owned();
    let (target_a, target_b) = (target(&a), target(&b));

    let alerts_copy = dir.path().join("acquire-alerts.yml");
    std::fs::write(
        &alerts_copy,
        serde_yaml_ng::to_string(&test_copy_of_alerts(&alert_doc)).unwrap(),
    )
    .unwrap();
    let prometheus = Prometheus::start(
        &test_config(
            &[&target_a, &target_b],
            &target(&other),
            &[&recording_path, &alerts_copy],
        ),
        &[],
    );
    prometheus.wait_for(
        r#"count(up{job=~"acquire|other"} == 1) == 3"#,
        Duration::from_secs(60),
    );

    let replicas = [&a, &b];
    // First, one event of each kind, so that every series exists before the bulk comes: a
    // counter's first value is not an increase, and the alerts look at increases.
    // Department 11 answers late, 12 quickly, 13 never.
    deliver(
        &replicas,
        &close_event("first-11", "11", Some("Operator"), "300", "600"),
    );
    deliver(
        &replicas,
        &close_event("first-11-unanswered", "11", None, "null", "30"),
    );
    deliver(
        &replicas,
        &close_event("first-12", "12", Some("Operator"), "5", "300"),
    );
    deliver(
        &replicas,
        &close_event("first-13", "13", None, "null", "30"),
    );
    deliver(&replicas, &start("first-accepted-12", "12"));
    deliver(&replicas, &accept("first-accepted-12"));
    // A chat of department 11 that nobody accepts: it waits, then expires.
    deliver(&replicas, &start("never-accepted-11", "11"));
    let never_accepted_at = Instant::now();
    deliver(
        &[&other],
        &close_event("first-other", "11", Some("Operator"), "300", "600"),
    );
    // Until Prometheus holds two samples of each first series.
    for series in [
        r#"acquire_chat_wait_time_seconds_count{job="acquire",department="12"}"#,
        r#"acquire_chats_unanswered_total{job="acquire",department="13"}"#,
        r#"acquire_chat_accept_time_seconds_count{job="acquire",department="12"}"#,
        r#"acquire_chat_wait_time_seconds_count{job="other",department="11"}"#,
    ] {
        prometheus.wait_for(
            &format!("min(count_over_time({series}[1m])) >= 2"),
            Duration::from_secs(60),
        );
    }

    // The bulk.
    for i in 0..20 {
        deliver(
            &replicas,
            &close_event(
                &format!("long-11-{i}"),
                "11",
                Some("Operator"),
                "300",
                "600",
            ),
        );
        deliver(
            &replicas,
            &close_event(&format!("quick-12-{i}"), "12", Some("Operator"), "5", "300"),
        );
        deliver(
            &[&other],
            &close_event(
                &format!("long-other-{i}"),
                "11",
                Some("Operator"),
                "300",
                "600",
            ),
        );
    }
    for i in 0..10 {
        deliver(
            &replicas,
            &close_event(&format!("unanswered-13-{i}"), "13", None, "null", "45"),
        );
        deliver(
            &[&other],
            &close_event(&format!("unanswered-other-{i}"), "13", None, "null", "45"),
        );
    }
    for i in 0..4 {
        deliver(
            &replicas,
            &close_event(&format!("unanswered-11-{i}"), "11", None, "null", "45"),
        );
        deliver(&replicas, &start(&format!("accepted-12-{i}"), "12"));
        deliver(&replicas, &accept(&format!("accepted-12-{i}")));
        deliver(&replicas, &message(&format!("accepted-12-{i}")));
    }
    // A fourth department: past the cap of 3, recorded as "other".
    deliver(
        &replicas,
        &close_event("overflow-14", "14", Some("Operator"), "5", "60"),
    );
    // Refused deliveries, each received by one replica: closes without their id (event known),
    // bodies that are not JSON (event unknown), and requests without the token.
    for i in 0..15 {
        let mut close: serde_json::Value =
            serde_json::from_slice(&close_event(&format!("x{i}"), "12", None, "5", "60")).unwrap();
        close.as_object_mut().unwrap().remove("id");
        assert_eq!(post_status(&a, close.to_string().as_bytes()), 400);
        assert_eq!(post_status(&a, b"{not json"), 400);
    }
    for i in 0..12 {
        let (status, _) = a.post_json(&close_event(
            &format!("no-token-{i}"),
            "11",
            Some("Operator"),
            "5",
            "60",
        ));
        assert_eq!(status, 401);
    }

    let firing_now = [
        "AcquireServiceLevelFastBurn",
        "AcquireServiceLevelSlowBurn",
        "AcquireChatAbandonmentHigh",
        "AcquireOldestWaitingChatTooOld",
        "AcquireAgentsBelowRequired",
        "AcquireAgentsBelowForecast",
        "AcquireWebhookRejectionsHigh",
        "AcquireWebhookBodiesUnreadable",
        "AcquireWebhookAuthFailures",
        "AcquireLabelOverflow",
    ];
    let firing = wait_firing(&prometheus, &firing_now, Duration::from_secs(180));
    for (name, state, labels) in &firing {
        if state != "firing" {
            continue;
        }
        assert_eq!(
            labels["job"], "acquire",
            "{name}: only the selected job: {labels}"
        );
        let check = ALERTS.iter().find(|c| c.alert == name).unwrap();
        assert_eq!(labels["category"], check.category, "{name}: {labels}");
        assert!(labels["severity"].is_string(), "{name}: {labels}");
        match name.as_str() {
            "AcquireServiceLevelFastBurn" | "AcquireServiceLevelSlowBurn" => assert!(
                labels["department"] == "11" || labels["department"] == "13",
                "{name}: late (11) or unanswered (13), never 12: {labels}"
            ),
            "AcquireChatAbandonmentHigh" => assert_eq!(labels["department"], "13", "{labels}"),
            "AcquireOldestWaitingChatTooOld" => assert_eq!(labels["department"], "11", "{labels}"),
            "AcquireWebhookRejectionsHigh" => assert_eq!(labels["event"], "chat_close", "{labels}"),
            "AcquireLabelOverflow" => assert_eq!(labels["label"], "department", "{labels}"),
            "AcquireAgentsBelowForecast" => assert_eq!(labels["department"], "12", "{labels}"),
            _ => {}
        }
    }
    for name in ["AcquireServiceLevelFastBurn", "AcquireChatAbandonmentHigh"] {
        assert!(
            firing
                .iter()
                .any(|(n, s, l)| n == name && s == "firing" && l["department"] == "13"),
            "{name} fires for the department nobody answers: {firing:?}"
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
        prometheus.wait_for(name, Duration::from_secs(30));
    }
    assert_eq!(
        only(
            &prometheus,
            r#"job_department:acquire_chats_answered_within_60s_per_closed:ratio_rate5m{department="12"}"#
        ),
        1.0
    );
    // Late or never answered: all of 11's and 13's chats fail the SLO.
    for department in ["11", "13"] {
        assert_eq!(
            only(
                &prometheus,
                &format!(
                    r#"job_department:acquire_chats_not_answered_within_60s_per_closed:ratio_rate5m{{department="{department}"}}"#
                )
            ),
            1.0,
            "department {department}"
        );
    }
    assert_eq!(
        only(
            &prometheus,
            r#"job_department:acquire_chats_unanswered_per_closed:ratio_rate5m{department="13"}"#
        ),
        1.0
    );
    let p90 = only(
        &prometheus,
        r#"job_department:acquire_chat_wait_time_seconds:p90_rate5m{department="11"}"#,
    );
    assert!(
        (180.0..=300.0).contains(&p90),
        "p90 {p90} in the 180-300 s bucket"
    );
    // Two replicas expose the same chats: the recorded rate is one replica's, not the sum.
    // Compared at the recorded sample's own timestamp: a 5m rate over the few seconds this
    // scenario has run moves with every scrape, and the two replicas are scraped at different
    // offsets, so only rates taken at the same instant are comparable.
    let (at, recorded) = last_sample(
        &prometheus,
        r#"job_department:acquire_chats_closed:rate5m{department="12"}"#,
    );
    let replica_rate = |target: &str| {
        let q = format!(
            r#"sum(rate(acquire_chat_wait_time_seconds_count{{instance="{target}",department="12"}}[5m]))"#
        );
        let rows = prometheus
            .query_at(&q, &at)
            .unwrap_or_else(|e| panic!("{q}: {e}"));
        assert_eq!(rows.len(), 1, "{q} at {at}: {rows:?}");
        value(&rows[0])
    };
    let (one, other_one) = (replica_rate(&target_a), replica_rate(&target_b));
    let busiest = one.max(other_one);
    assert!(
        recorded > 0.0 && (recorded / busiest - 1.0).abs() < 0.25,
        "de-duplicated over replicas: recorded {recorded} at {at}, the replicas {one} and {other_one}"
    );
    // The other job is not the kit's: nothing of it is recorded or alerted.
    let other_rows = prometheus
        .query(r#"{__name__=~"job_.+", job="other"}"#)
        .unwrap();
    assert!(other_rows.is_empty(), "job other recorded: {other_rows:?}");

    // Alerts: the repository's expressions, unchanged.
    for check in ALERTS {
        if CHECKED_APART.contains(&check.alert) {
            continue;
        }
        let e = alert_expr(&alert_rules, check.alert);
        let result = prometheus
            .query(&e)
            .unwrap_or_else(|err| panic!("{}: {e}: {err}", check.alert));
        if check.fires {
            assert!(
                !result.is_empty(),
                "{}: {e} is true for the scenario",
                check.alert
            );
        } else if check.alert == "AcquireOldestWaitingChatTooOld" {
            // True exactly when the oldest wait is above 120 s, however slow this machine is.
            let oldest = only(
                &prometheus,
                r#"max(acquire_chat_oldest_wait_seconds{job="acquire",department="11"})"#,
            );
            assert_eq!(
                !result.is_empty(),
                oldest > 120.0 && never_accepted_at.elapsed() > Duration::from_secs(120),
                "{}: oldest wait {oldest}, result {result:?}",
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

    // Replica a's store cannot commit: another connection holds the write lock. Its deliveries
    // are answered 503 (after the store's 5 s busy timeout), counted as outcome="error", and its
    // readiness fails; the storage alert fires for that instance only.
    let lock = rusqlite::Connection::open(store_a.join("acquire-exporter.sqlite"))
        .expect("open a's store");
    lock.execute_batch("BEGIN EXCLUSIVE")
        .expect("lock a's store");
    for i in 0..2 {
        assert_eq!(
            post_status(
                &a,
                &close_event(&format!("locked-{i}"), "12", Some("Operator"), "5", "60")
            ),
            503
        );
    }
    assert_eq!(
        get(&a.url("/-/ready")).0,
        503,
        "not ready while the store cannot commit"
    );
    let firing = wait_firing(
        &prometheus,
        &["AcquireExporterStorageFailing"],
        Duration::from_secs(60),
    );
    let failing: Vec<_> = firing
        .iter()
        .filter(|(n, s, _)| n == "AcquireExporterStorageFailing" && s == "firing")
        .collect();
    assert_eq!(failing.len(), 1, "{failing:?}");
    assert_eq!(failing[0].2["instance"], target_a.as_str());
    assert_eq!(failing[0].2["severity"], "critical");
    assert_eq!(failing[0].2["category"], "exporter");
    assert_true_now(&prometheus, &alert_rules, "AcquireExporterStorageFailing");
    lock.execute_batch("ROLLBACK").expect("release a's store");
    drop(lock);
    wait_until("replica a ready again", Duration::from_secs(60), || {
        get(&a.url("/-/ready")).0 == 200
    });

    // The never-accepted chat expires (a minute after its start, checked every 10 s): a first
    // expiry in a process that was scraped before it, so the alert fires.
    let firing = wait_firing(
        &prometheus,
        &["AcquireChatsExpiring"],
        Duration::from_secs(180),
    );
    assert!(never_accepted_at.elapsed() >= Duration::from_secs(60));
    let expiring = firing
        .iter()
        .find(|(n, s, _)| n == "AcquireChatsExpiring" && s == "firing")
        .unwrap();
    assert_eq!(expiring.2["department"], "11", "{:?}", expiring.2);
    assert_eq!(expiring.2["job"], "acquire");
    assert_true_now(&prometheus, &alert_rules, "AcquireChatsExpiring");

    // Replica b stops: a replica is down, the job is not.
    b.kill9();
    let firing = wait_firing(
        &prometheus,
        &["AcquireExporterReplicaDown"],
        Duration::from_secs(60),
    );
    let down = firing
        .iter()
        .find(|(n, s, _)| n == "AcquireExporterReplicaDown" && s == "firing")
        .unwrap();
    assert_eq!(down.2["instance"], target_b.as_str(), "{:?}", down.2);
    assert!(
        !firing
            .iter()
            .any(|(n, s, _)| n == "AcquireExporterDown" && s == "firing"),
        "one replica answers: the job is not down: {firing:?}"
    );
    assert_true_now(&prometheus, &alert_rules, "AcquireExporterReplicaDown");

    // Then a: the job is down.
    a.kill9();
    let firing = wait_firing(
        &prometheus,
        &["AcquireExporterDown"],
        Duration::from_secs(60),
    );
    let down = firing
        .iter()
        .find(|(n, s, _)| n == "AcquireExporterDown" && s == "firing")
        .unwrap();
    assert_eq!(down.2["job"], "acquire", "{:?}", down.2);
    assert_eq!(down.2["severity"], "critical");
    assert_true_now(&prometheus, &alert_rules, "AcquireExporterDown");
    drop(other);
}
