//! The store's own fault, made real: the exporter's file size limit is lowered to zero while it
//! runs (`prlimit --fsize`, with SIGXFSZ ignored), so every write of SQLite fails with EFBIG as
//! on a full disk, then lifted again.
//!
//! The promise (README, "Pointing Acquire at it" and "Endpoints"): a delivery the store cannot
//! commit gets 503 and changes no chat metric, it is counted as
//! `acquire_webhooks_received_total{outcome="error"}`, `/-/ready` answers 503 while the store
//! cannot commit and 200 again by itself once it can, and the sender's retry after that is
//! counted exactly once.

mod common;

use std::process::Command;

use common::{Exporter, close_event, histogram_lines, sample};

fn prlimit_fsize(pid: u32, soft: &str) {
    let status = Command::new("prlimit")
        .args([
            "--pid",
            &pid.to_string(),
            &format!("--fsize={soft}:unlimited"),
        ])
        .status()
        .expect("prlimit (util-linux) runs");
    assert!(status.success(), "prlimit --fsize={soft}");
}

fn ready(exporter: &Exporter) -> (u16, String) {
    common::get(&exporter.url("/-/ready"))
}

const ERRORS: &str = r#"acquire_webhooks_received_total{event="chat_close",outcome="error"}"#;
const OBSERVED: &str = r#"acquire_webhooks_received_total{event="chat_close",outcome="observed"}"#;
const COUNT: &str = r#"acquire_chat_wait_time_seconds_count{agent_role="operator",department="8"}"#;

#[test]
fn a_store_that_cannot_write_answers_503_changes_nothing_and_recovers_by_itself() {
    let dir = tempfile::tempdir().unwrap();
    let storage = format!("--storage.path={}", dir.path().display());
    let mut exporter =
        Exporter::spawn_ignoring_sigxfsz(&[&storage, "--log.level=info,acquire_exporter=debug"]);
    for i in 0..3 {
        let body = close_event(&format!("before-{i}"), "8", Some("Operator"), "7", "60");
        assert_eq!(exporter.post_json(&body).0, 200);
    }
    let before = exporter.metrics();
    assert_eq!(sample(&before, COUNT), Some(3.0));
    assert_eq!(ready(&exporter).0, 200);

    prlimit_fsize(exporter.pid(), "0");
    let retried = close_event("retried", "8", Some("Operator"), "40", "300");
    for delivery in 0..2 {
        let (status, answer) = exporter.post_json(&retried);
        assert_eq!(status, 503, "delivery {delivery}: {answer}");
        let answer: serde_json::Value = serde_json::from_str(&answer).expect("a JSON answer");
        assert!(
            answer["error"]
                .as_str()
                .is_some_and(|e| e.contains("retry")),
            "{answer}"
        );
    }
    exporter.assert_alive();
    assert_eq!(
        ready(&exporter),
        (503, "Not ready: the store cannot commit\n".to_owned())
    );
    let failing = exporter.metrics();
    assert_eq!(
        histogram_lines(&failing),
        histogram_lines(&before),
        "a delivery the store could not commit changed a chat histogram"
    );
    assert_eq!(
        sample(&failing, "acquire_exporter_storage_events"),
        sample(&before, "acquire_exporter_storage_events")
    );
    assert_eq!(sample(&failing, ERRORS), Some(2.0));
    assert_eq!(sample(&failing, OBSERVED), Some(3.0));
    for line in failing
        .lines()
        .filter(|l| l.starts_with("acquire_webhook_rejections_total{"))
    {
        assert!(line.ends_with(" 0"), "a 503 is not a rejection: {line}");
    }
    // The probe every second fails too while the limit holds: still not ready.
    exporter.wait_until("a failed probe", |e| {
        e.logs
            .try_iter()
            .any(|line| line.contains("storage probe failed"))
    });
    assert_eq!(ready(&exporter).0, 503);

    prlimit_fsize(exporter.pid(), "unlimited");
    exporter.wait_until("/-/ready to answer 200 again", |e| {
        common::get(&e.url("/-/ready")).0 == 200
    });
    let (status, answer) = exporter.post_json(&retried);
    assert_eq!(status, 200, "{answer}");
    assert!(answer.contains("observed"), "{answer}");
    let (status, answer) = exporter.post_json(&retried);
    assert_eq!(status, 200);
    assert!(answer.contains("duplicate"), "{answer}");
    let recovered = exporter.metrics();
    assert_eq!(
        sample(&recovered, COUNT),
        Some(4.0),
        "the retry counted once"
    );
    assert_eq!(
        sample(
            &recovered,
            r#"acquire_chat_wait_time_seconds_sum{agent_role="operator",department="8"}"#
        ),
        Some(3.0 * 7.0 + 40.0)
    );
    assert_eq!(sample(&recovered, ERRORS), Some(2.0));
    assert_eq!(sample(&recovered, OBSERVED), Some(4.0));

    assert_eq!(exporter.terminate(), Some(0));
    let restarted = Exporter::spawn(&[&storage]);
    assert_eq!(
        histogram_lines(&restarted.metrics()),
        histogram_lines(&recovered),
        "the store holds the retry once"
    );
}

#[test]
fn a_retry_of_a_stored_event_during_the_failure_leaves_the_exporter_unready() {
    let dir = tempfile::tempdir().unwrap();
    let storage = format!("--storage.path={}", dir.path().display());
    let mut exporter = Exporter::spawn_ignoring_sigxfsz(&[&storage]);
    let stored = close_event("stored", "8", Some("Operator"), "7", "60");
    assert_eq!(exporter.post_json(&stored).0, 200);
    prlimit_fsize(exporter.pid(), "0");
    let new = close_event("new", "8", Some("Operator"), "7", "60");
    assert_eq!(exporter.post_json(&new).0, 503);
    assert_eq!(ready(&exporter).0, 503);
    // A retry of the event stored before the failure writes nothing: its answer may be the
    // duplicate's 200, but the store still cannot commit a new event.
    let (status, answer) = exporter.post_json(&stored);
    assert!(
        status == 503 || answer.contains("duplicate"),
        "{status} {answer}"
    );
    assert_eq!(
        ready(&exporter).0,
        503,
        "ready again although the store still cannot commit"
    );
    assert_eq!(exporter.post_json(&new).0, 503);
    prlimit_fsize(exporter.pid(), "unlimited");
    exporter.wait_until("/-/ready to answer 200 again", |e| {
        common::get(&e.url("/-/ready")).0 == 200
    });
    assert!(exporter.post_json(&new).1.contains("observed"));
}
