//! Bounded resources: label caps against 100,000 distinct department ids.

mod common;

use common::{Exporter, close_event, sample};

#[test]
fn distinct_department_ids_stop_at_the_cap_and_memory_stays_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let exporter = Exporter::spawn(&[&format!("--storage.path={}", dir.path().display())]);
    let total = 100_000u32;
    let threads = 4;
    let senders: Vec<_> = (0..threads)
        .map(|t| {
            let url = exporter.url("/webhook");
            std::thread::spawn(move || {
                let agent = common::agent();
                for i in (t..total).step_by(threads as usize) {
                    let body = close_event(
                        &format!("c{i}"),
                        &format!("d{i}"),
                        Some("Operator"),
                        "5",
                        "60",
                    );
                    let (status, answer) = common::post_with(
                        &agent,
                        &url,
                        &[("Content-Type", "application/json")],
                        &body,
                    );
                    assert_eq!(status, 200, "{answer}");
                }
            })
        })
        .collect();
    let mut peak = 0;
    for s in senders {
        while !s.is_finished() {
            peak = peak.max(exporter.rss_kib());
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
        s.join().unwrap();
    }
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
