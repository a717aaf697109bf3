//! Durable state against the real binary: restarts, kill -9 in the middle of a load, a changed
//! bucket layout, and the live queue across a restart.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use common::{Exporter, close_event, histogram_lines, sample};

fn durable(dir: &std::path::Path, extra: &[&str]) -> Exporter {
    let mut args = vec![format!("--storage.path={}", dir.display())];
    args.extend(extra.iter().map(|s| s.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    Exporter::spawn(&args)
}

fn total_wait_count(metrics: &str) -> f64 {
    metrics
        .lines()
        .filter(|l| l.starts_with("acquire_chat_wait_time_seconds_count{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[test]
fn a_restart_shows_exactly_the_histograms_from_before() {
    let dir = tempfile::tempdir().unwrap();
    let exporter = durable(dir.path(), &[]);
    let roles = [Some("Administrator"), Some("Operator"), None];
    for i in 0..60 {
        let wait = if i % 7 == 0 {
            "null".to_owned()
        } else {
            format!("{}", i * 3 % 400)
        };
        let body = close_event(
            &i.to_string(),
            &(i % 4).to_string(),
            roles[i % 3],
            &wait,
            &format!("{}", 30 + i * 11),
        );
        assert_eq!(exporter.post_json(&body).0, 200);
    }
    let before = exporter.metrics();
    assert_eq!(exporter.terminate(), Some(0));

    let exporter = durable(dir.path(), &[]);
    let after = exporter.metrics();
    assert!(!histogram_lines(&before).is_empty());
    assert_eq!(histogram_lines(&before), histogram_lines(&after));
    assert_eq!(
        sample(&before, r#"acquire_chats_unanswered_total{department="0"}"#),
        sample(&after, r#"acquire_chats_unanswered_total{department="0"}"#)
    );
    let (status, body) = exporter.post_json(&close_event("5", "1", Some("Operator"), "15", "30"));
    assert_eq!(status, 200);
    assert!(
        body.contains("duplicate"),
        "de-duplication remembers events from before the restart: {body}"
    );
}

#[test]
fn after_kill_9_in_a_load_every_acknowledged_event_is_counted_once() {
    let dir = tempfile::tempdir().unwrap();
    let exporter = durable(dir.path(), &[]);
    let acked = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let unanswered = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let senders: Vec<_> = (0..8)
        .map(|t| {
            let url = exporter.url("/webhook");
            let (acked, unanswered, stop) = (acked.clone(), unanswered.clone(), stop.clone());
            std::thread::spawn(move || {
                let agent = common::agent();
                let mut i = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let id = format!("{t}-{i}");
                    i += 1;
                    let body = close_event(&id, &(i % 9).to_string(), Some("Operator"), "12", "60");
                    let sent = agent
                        .post(&url)
                        .header("Content-Type", "application/json")
                        .send(&body[..]);
                    match sent {
                        Ok(r) if r.status().as_u16() == 200 => acked.lock().unwrap().push(id),
                        _ => {
                            unanswered.fetch_add(1, Ordering::Relaxed);
                            return;
                        }
                    }
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(1500));
    exporter.kill9();
    stop.store(true, Ordering::Relaxed);
    for s in senders {
        s.join().unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    let in_flight = unanswered.load(Ordering::Relaxed) as f64;
    assert!(
        acked.len() > 100,
        "the load ran ({} acknowledged)",
        acked.len()
    );

    let exporter = durable(dir.path(), &[]);
    let counted = total_wait_count(&exporter.metrics());
    let acked_n = acked.len() as f64;
    assert!(
        counted >= acked_n && counted <= acked_n + in_flight,
        "{counted} counted, {acked_n} acknowledged, {in_flight} in flight at the kill"
    );
    // None twice: every acknowledged event sent again is a duplicate and changes nothing.
    let agent = common::agent();
    for id in acked.iter().step_by(7) {
        let body = close_event(id, "0", Some("Operator"), "12", "60");
        let (status, answer) = common::post_with(
            &agent,
            &exporter.url("/webhook"),
            &[("Content-Type", "application/json")],
            &body,
        );
        assert_eq!(status, 200);
        assert!(answer.contains("duplicate"), "{id}: {answer}");
    }
    assert_eq!(total_wait_count(&exporter.metrics()), counted);
}

#[test]
fn a_changed_bucket_layout_applies_to_stored_events_on_restart() {
    let dir = tempfile::tempdir().unwrap();
    let exporter = durable(dir.path(), &[]);
    for (i, wait) in ["3", "40", "700"].iter().enumerate() {
        exporter.post_json(&close_event(
            &i.to_string(),
            "",
            Some("Operator"),
            wait,
            "60",
        ));
    }
    assert_eq!(exporter.terminate(), Some(0));
    let config = dir.path().join("config.yml");
    std::fs::write(&config, "buckets:\n  wait_time: [10, 100]\n").unwrap();
    let exporter = durable(
        dir.path(),
        &[&format!("--config.file={}", config.display())],
    );
    let m = exporter.metrics();
    let bucket = |le: &str| {
        sample(
            &m,
            &format!(
                r#"acquire_chat_wait_time_seconds_bucket{{agent_role="operator",department="none",le="{le}"}}"#
            ),
        )
    };
    assert_eq!(bucket("10"), Some(1.0));
    assert_eq!(bucket("100"), Some(2.0));
    assert_eq!(bucket("+Inf"), Some(3.0));
    assert_eq!(bucket("60"), None, "the old bounds are gone");
}

fn start(id: &str, department: &str) -> Vec<u8> {
    serde_json::json!({"data": {" id": id, "account_id": "1", "status": "pending", "department_id": department}, "event": "CHAT_ON_START"})
        .to_string()
        .into_bytes()
}

fn accept(id: &str) -> Vec<u8> {
    serde_json::json!({"id": id, "account_id": "1", "chat_wait_time": "null", "user": {"id": "agent-3", "type": "agent", "name": "A"}, "event": "CHAT_ON_ACCEPT"})
        .to_string()
        .into_bytes()
}

#[test]
fn the_live_queue_follows_start_accept_close_and_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let exporter = durable(dir.path(), &[]);
    let waiting =
        |m: &str, d: &str| sample(m, &format!(r#"acquire_chats_waiting{{department="{d}"}}"#));
    for id in ["a", "b", "c"] {
        assert_eq!(exporter.post_json(&start(id, "5")).0, 200);
    }
    assert_eq!(exporter.post_json(&start("d", "6")).0, 200);
    assert_eq!(
        exporter.post_json(&start("a", "5")).0,
        200,
        "a repeated start"
    );
    let m = exporter.metrics();
    assert_eq!(waiting(&m, "5"), Some(3.0));
    assert_eq!(waiting(&m, "6"), Some(1.0));
    assert!(
        sample(&m, r#"acquire_chat_oldest_wait_seconds{department="5"}"#).is_some_and(|s| s >= 0.0)
    );

    assert_eq!(exporter.post_json(&accept("a")).0, 200);
    let mut close =
        serde_json::from_slice::<serde_json::Value>(&close_event("b", "5", None, "null", "30"))
            .unwrap();
    close["account_id"] = "1".into();
    assert_eq!(exporter.post_json(close.to_string().as_bytes()).0, 200);
    assert_eq!(
        exporter.post_json(&accept("z")).0,
        200,
        "an accept for a chat never started"
    );
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
    assert_eq!(exporter.post_json(&accept("c")).0, 200);
    assert_eq!(waiting(&exporter.metrics(), "5"), Some(0.0));
}
