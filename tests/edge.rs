//! The hardened edge, over HTTP against the real binary: what happens to deliveries whose
//! senders misbehave.

mod common;

use std::io::Write;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::{Exporter, close_event, sample};

/// The sum of every sample of `name` (all label sets).
fn total(metrics: &str, name: &str) -> f64 {
    metrics
        .lines()
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Poll `/metrics` until `acquire_exporter_storage_events` has not moved for a second.
fn settled(exporter: &Exporter) -> String {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut last = None;
    let mut since = Instant::now();
    loop {
        let page = exporter.metrics();
        let stored = sample(&page, "acquire_exporter_storage_events");
        if stored != last {
            last = stored;
            since = Instant::now();
        } else if since.elapsed() > Duration::from_secs(1) {
            return page;
        }
        assert!(Instant::now() < deadline, "the store never settled");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_committed_event_is_counted_when_its_sender_hangs_up() {
    let dir = tempfile::tempdir().unwrap();
    let storage = format!("--storage.path={}", dir.path().display());
    let exporter = Exporter::spawn(&[&storage]);
    let addr = exporter.base.trim_start_matches("http://").to_owned();
    // Each close is written whole on its own connection, which is closed at once: the request is
    // dropped while its event is on its way to the commit.
    let senders: Vec<_> = (0..8)
        .map(|t| {
            let addr = addr.clone();
            std::thread::spawn(move || {
                for i in 0..500 {
                    let body = close_event(&format!("hang-{t}-{i}"), "7", Some("Operator"), "3", "60");
                    let head = format!(
                        "POST /webhook HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
                        body.len()
                    );
                    let mut stream = TcpStream::connect(&addr).expect("connect");
                    stream.write_all(head.as_bytes()).unwrap();
                    stream.write_all(&body).unwrap();
                    drop(stream);
                }
            })
        })
        .collect();
    for s in senders {
        s.join().unwrap();
    }
    let live = settled(&exporter);
    let stored = sample(&live, "acquire_exporter_storage_events").expect("storage events");
    let live_count = total(&live, "acquire_chat_wait_time_seconds_count");
    assert!(stored > 0.0, "some deliveries were committed");
    assert_eq!(
        live_count, stored,
        "every committed close is counted live, though its sender hung up"
    );
    assert_eq!(exporter.terminate(), Some(0));

    let restarted = Exporter::spawn(&[&storage]);
    let rebuilt = restarted.metrics();
    assert_eq!(
        total(&rebuilt, "acquire_chat_wait_time_seconds_count"),
        live_count,
        "a restart shows what the live metrics showed"
    );
    assert_eq!(
        common::histogram_lines(&rebuilt),
        common::histogram_lines(&live),
        "the chat histograms are the same after the restart"
    );
}
