//! Bounded resources over HTTP: the department cap against 100,000 distinct ids, the role cap
//! and the role length limit, and the cap of the live queue.

mod common;

use common::{Exporter, close_event, sample};

#[test]
fn distinct_department_ids_stop_at_the_cap_and_memory_stays_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let exporter = Exporter::spawn(&[&format!("--storage.path={}", dir.path().display())]);
    let total = 100_000u32;
    let bodies: Vec<Vec<u8>> = (0..total)
        .map(|i| {
            close_event(
                &format!("c{i}"),
                &format!("d{i}"),
                Some("Operator"),
                "5",
                "60",
            )
        })
        .collect();
    let addr = exporter.address().to_owned();
    let sending = std::thread::spawn(move || common::post_all(&addr, bodies, 4));
    let mut peak = 0;
    while !sending.is_finished() {
        peak = peak.max(exporter.rss_kib());
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    sending.join().unwrap();
    let m = exporter.metrics();
    let series = m
        .lines()
        .filter(|l| l.starts_with("acquire_chat_wait_time_seconds_count{"))
        .count();
    assert_eq!(series, 201, "200 departments and `other`");
    let other = sample(
        &m,
        r#"acquire_chat_wait_time_seconds_count{agent_role="operator",department="other"}"#,
    );
    assert_eq!(other, Some(f64::from(total - 200)));
    assert_eq!(
        sample(&m, r#"acquire_label_overflow_total{label="department"}"#),
        Some(f64::from(total - 200))
    );
    peak = peak.max(exporter.rss_kib());
    assert!(peak < 64 * 1024, "resident memory peaked at {peak} KiB");
}

#[test]
fn roles_stop_at_50_and_a_role_over_128_bytes_is_other() {
    let exporter = Exporter::spawn(&["--storage.in-memory"]);
    let count = |m: &str, role: &str| {
        sample(
            m,
            &format!(
                r#"acquire_chat_wait_time_seconds_count{{agent_role="{role}",department="1"}}"#
            ),
        )
    };
    // The decoder takes roles of up to 100 characters; in bytes, 128 is a role, more is `other`.
    let longest = "é".repeat(64);
    let too_long = "é".repeat(65);
    for (i, role) in [longest.as_str(), too_long.as_str()].iter().enumerate() {
        let body = close_event(&format!("long-{i}"), "1", Some(role), "5", "60");
        assert_eq!(exporter.post_json(&body).0, 200);
    }
    let body = close_event("refused", "1", Some(&"r".repeat(101)), "5", "60");
    let (status, answer) = exporter.post_json(&body);
    assert_eq!(status, 400, "{answer}");
    assert!(answer.contains("longer than 100 characters"), "{answer}");
    let m = exporter.metrics();
    assert_eq!(count(&m, &longest), Some(1.0));
    assert_eq!(count(&m, "other"), Some(1.0), "a role over 128 bytes");
    assert_eq!(
        sample(&m, r#"acquire_label_overflow_total{label="agent_role"}"#),
        Some(1.0)
    );
    // 49 roles more reach the cap of 50; the ten after them are `other`.
    for i in 0..59 {
        let body = close_event(
            &format!("role-{i}"),
            "1",
            Some(&format!("Role {i}")),
            "5",
            "60",
        );
        assert_eq!(exporter.post_json(&body).0, 200);
    }
    // A role seen before the cap keeps its series.
    let body = close_event("again", "1", Some("ROLE 3"), "5", "60");
    assert_eq!(exporter.post_json(&body).0, 200);
    let m = exporter.metrics();
    let roles: std::collections::BTreeSet<&str> = m
        .lines()
        .filter(|l| l.starts_with("acquire_chat_wait_time_seconds_count{"))
        .filter_map(|l| l.split("agent_role=\"").nth(1)?.split('"').next())
        .collect();
    assert_eq!(roles.len(), 51, "50 roles and `other`: {roles:?}");
    assert!(
        roles.contains("role 48") && !roles.contains("role 49"),
        "{roles:?}"
    );
    assert_eq!(
        count(&m, "role 3"),
        Some(2.0),
        "lower-cased to the same role"
    );
    assert_eq!(count(&m, "other"), Some(11.0));
    assert_eq!(
        sample(&m, r#"acquire_label_overflow_total{label="agent_role"}"#),
        Some(11.0)
    );
}

fn start(id: &str) -> Vec<u8> {
    serde_json::json!({"data": {" id": id, "department_id": "2"}, "event": "CHAT_ON_START"})
        .to_string()
        .into_bytes()
}

#[test]
fn the_live_queue_holds_at_most_100000_waiting_chats() {
    let exporter = Exporter::spawn(&["--storage.in-memory"]);
    let cap = 100_000;
    let bodies: Vec<Vec<u8>> = (0..cap + 50).map(|i| start(&format!("w{i}"))).collect();
    common::post_all(exporter.address(), bodies, 4);
    let waiting = || {
        sample(
            &exporter.metrics(),
            r#"acquire_chats_waiting{department="2"}"#,
        )
    };
    assert_eq!(
        waiting(),
        Some(f64::from(cap)),
        "starts past the cap are not queued"
    );
    // An accept frees a place for the next start.
    let accept = serde_json::json!({"id": "w0", "user": {"id": "agent-1", "type": "agent"}, "event": "CHAT_ON_ACCEPT"});
    assert_eq!(exporter.post_json(accept.to_string().as_bytes()).0, 200);
    assert_eq!(waiting(), Some(f64::from(cap - 1)));
    assert_eq!(exporter.post_json(&start("after-the-accept")).0, 200);
    assert_eq!(waiting(), Some(f64::from(cap)));
}
