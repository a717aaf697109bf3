//! The hardened edge, over HTTP against the real binary: what happens to deliveries whose
//! senders misbehave (hang up, stall, send a chunked body past the limit), and to deliveries in
//! flight at SIGTERM.

mod common;

use std::io::Read;
use std::io::Write;
use std::net::TcpStream;
use std::time::Duration;

use common::{Exporter, close_event, sample};

/// Once the server side holds no connection of the test's senders (each is served or dropped),
/// one more delivery is committed after every event they queued: its answer fences them all.
fn settled(exporter: &mut Exporter) -> String {
    let port = exporter.port();
    exporter.wait_until("the server to close every connection", |_| {
        common::server_connections(port) == 0
    });
    let fence = close_event("fence", "7", Some("Operator"), "3", "60");
    assert_eq!(exporter.post_json(&fence).0, 200);
    exporter.metrics()
}

#[test]
fn a_committed_event_is_counted_when_its_sender_hangs_up() {
    let dir = tempfile::tempdir().unwrap();
    let storage = format!("--storage.path={}", dir.path().display());
    let mut exporter = Exporter::spawn(&[&storage]);
    let addr = exporter.address().to_owned();
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
    let live = settled(&mut exporter);
    let stored = sample(&live, "acquire_exporter_storage_events").expect("storage events");
    let live_count = common::total(&live, "acquire_chat_wait_time_seconds_count", &[]);
    assert!(stored > 0.0, "some deliveries were committed");
    assert_eq!(
        live_count, stored,
        "every committed close is counted live, though its sender hung up"
    );
    assert_eq!(exporter.terminate(), Some(0));

    let restarted = Exporter::spawn(&[&storage]);
    let rebuilt = restarted.metrics();
    assert_eq!(
        common::total(&rebuilt, "acquire_chat_wait_time_seconds_count", &[]),
        live_count,
        "a restart shows what the live metrics showed"
    );
    assert_eq!(
        common::histogram_lines(&rebuilt),
        common::histogram_lines(&live),
        "the chat histograms are the same after the restart"
    );
}

/// Write `head` and then `body` on a fresh connection (the body from another thread, as the
/// server may answer before it is all sent); the status line's code and the answer's body.
fn exchange(addr: &str, head: String, body: Vec<u8>) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(120)))
        .unwrap();
    stream.write_all(head.as_bytes()).unwrap();
    let mut writer = stream.try_clone().unwrap();
    let sending = std::thread::spawn(move || {
        let _ = writer.write_all(&body);
    });
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    let _ = sending.join();
    parse_answer(&answer)
}

fn parse_answer(answer: &[u8]) -> (u16, String) {
    let text = String::from_utf8_lossy(answer);
    let status = text.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0);
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_owned());
    (status, body.unwrap_or_default())
}

/// `body` in chunks of `size` bytes, as `Transfer-Encoding: chunked` frames them.
fn chunked(body: &[u8], size: usize) -> Vec<u8> {
    let mut out = Vec::new();
    for chunk in body.chunks(size) {
        out.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        out.extend_from_slice(chunk);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"0\r\n\r\n");
    out
}

fn chunked_head(addr: &str) -> String {
    format!(
        "POST /webhook HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    )
}

#[test]
fn a_chunked_body_over_the_limit_gets_413_without_a_content_length() {
    let exporter = Exporter::spawn(&["--storage.in-memory"]);
    let addr = exporter.address().to_owned();
    let mut big = close_event("big", "7", Some("Operator"), "3", "60");
    big.truncate(big.len() - 1);
    big.extend_from_slice(format!(r#","padding":"{}"}}"#, "x".repeat(100 * 1024)).as_bytes());
    let (status, answer) = exchange(&addr, chunked_head(&addr), chunked(&big, 8 * 1024));
    assert_eq!(status, 413, "{answer}");
    assert!(answer.contains("--webhook.max-body-bytes"), "{answer}");
    let small = close_event("small", "7", Some("Operator"), "3", "60");
    let (status, answer) = exchange(&addr, chunked_head(&addr), chunked(&small, 64));
    assert_eq!(status, 200, "a chunked body under the limit: {answer}");
    let m = exporter.metrics();
    assert_eq!(
        sample(
            &m,
            r#"acquire_webhook_rejections_total{reason="payload_too_large"}"#
        ),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &m,
            r#"acquire_chat_wait_time_seconds_count{agent_role="operator",department="7"}"#
        ),
        Some(1.0),
        "only the small one counts"
    );
}

#[test]
fn a_body_that_stalls_past_the_request_timeout_gets_408() {
    let exporter = Exporter::spawn(&["--storage.in-memory", "--web.request-timeout=1s"]);
    let addr = exporter.address().to_owned();
    let body = close_event("stalled", "7", Some("Operator"), "3", "60");
    let mut stream = TcpStream::connect(&addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(120)))
        .unwrap();
    let head = format!(
        "POST /webhook HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).unwrap();
    stream.write_all(&body[..body.len() / 2]).unwrap();
    // The rest never comes: the answer is the timeout's.
    let mut answer = [0u8; 512];
    let n = stream.read(&mut answer).unwrap_or(0);
    let (status, _) = parse_answer(&answer[..n]);
    assert_eq!(status, 408, "{}", String::from_utf8_lossy(&answer[..n]));
    let m = exporter.metrics();
    assert!(
        common::histogram_lines(&m).is_empty(),
        "the stalled delivery changed a histogram"
    );
    let (status, _) = exporter.post_json(&body);
    assert_eq!(status, 200, "a whole delivery is served");
}

#[test]
fn sigterm_drains_in_flight_webhooks_and_commits_them() {
    let dir = tempfile::tempdir().unwrap();
    let storage = format!("--storage.path={}", dir.path().display());
    let mut exporter = Exporter::spawn(&[&storage]);
    let (addr, port) = (exporter.address().to_owned(), exporter.port());
    // Four deliveries whose bodies are half sent: the server has read what came and waits for
    // the rest.
    let mut in_flight: Vec<(TcpStream, Vec<u8>)> = (0..4)
        .map(|i| {
            let body = close_event(&format!("draining-{i}"), "5", Some("Operator"), "9", "60");
            let mut stream = TcpStream::connect(&addr).expect("connect");
            stream
                .set_read_timeout(Some(Duration::from_secs(120)))
                .unwrap();
            let head = format!(
                "POST /webhook HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            stream.write_all(head.as_bytes()).unwrap();
            stream.write_all(&body[..body.len() / 2]).unwrap();
            let rest = body[body.len() / 2..].to_vec();
            (stream, rest)
        })
        .collect();
    for (stream, _) in &in_flight {
        let client = stream.local_addr().unwrap().port();
        exporter.wait_until("the server to read the head and half the body", |_| {
            common::unread_by_server(port, client) == Some(0)
        });
    }
    common::signal(exporter.pid(), "TERM");
    exporter.wait_until("the listener to close", |_| {
        TcpStream::connect(&addr).is_err()
    });
    for (stream, rest) in &mut in_flight {
        stream.write_all(rest).unwrap();
    }
    for (i, (stream, _)) in in_flight.iter_mut().enumerate() {
        let mut answer = Vec::new();
        let _ = stream.read_to_end(&mut answer);
        let (status, body) = parse_answer(&answer);
        assert_eq!(status, 200, "delivery {i}: {body}");
        assert!(body.contains("observed"), "delivery {i}: {body}");
    }
    let exited = exporter.child.wait().unwrap();
    assert_eq!(exited.code(), Some(0), "a clean exit after the drain");
    let restarted = Exporter::spawn(&[&storage]);
    assert_eq!(
        sample(
            &restarted.metrics(),
            r#"acquire_chat_wait_time_seconds_count{agent_role="operator",department="5"}"#
        ),
        Some(4.0),
        "every drained delivery was committed"
    );
}
