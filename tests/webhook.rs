//! The webhook over HTTP against the real binary: every vendor fixture, hostile bodies,
//! retries, and the exposition checked by promtool.

mod common;

use std::io::Write;
use std::process::{Command, Stdio};

use common::{Exporter, close_event, fixture, histogram_lines, sample};

const WAIT_COUNT: &str =
    r#"acquire_chat_wait_time_seconds_count{agent_role="administrator",department="none"}"#;
const WAIT_SUM: &str =
    r#"acquire_chat_wait_time_seconds_sum{agent_role="administrator",department="none"}"#;
const DURATION_COUNT: &str =
    r#"acquire_chat_duration_seconds_count{agent_role="administrator",department="none"}"#;
const DURATION_SUM: &str =
    r#"acquire_chat_duration_seconds_sum{agent_role="administrator",department="none"}"#;

fn memory() -> Exporter {
    Exporter::spawn(&["--storage.in-memory"])
}

#[test]
fn every_close_fixture_adds_one_observation_to_both_histograms() {
    for name in [
        "chat-close-doc-example-verbatim.json",
        "chat-close-users-as-json-string.json",
        "chat-close-users-as-object.json",
        "chat-close-data-envelope.json",
    ] {
        let exporter = memory();
        let (status, body) = exporter.post_json(&fixture(name));
        assert_eq!(status, 200, "{name}: {body}");
        assert!(body.contains("observed"), "{name}: {body}");
        let m = exporter.metrics();
        assert_eq!(sample(&m, WAIT_COUNT), Some(1.0), "{name}");
        assert_eq!(sample(&m, WAIT_SUM), Some(2.0), "{name}");
        assert_eq!(sample(&m, DURATION_COUNT), Some(1.0), "{name}");
        assert_eq!(sample(&m, DURATION_SUM), Some(25.0), "{name}");
        let bucket = |le: &str| {
            sample(
                &m,
                &format!(
                    r#"acquire_chat_wait_time_seconds_bucket{{agent_role="administrator",department="none",le="{le}"}}"#
                ),
            )
        };
        assert_eq!(bucket("1"), Some(0.0), "{name}: 2 s is above the 1 s bound");
        assert_eq!(
            bucket("2"),
            Some(1.0),
            "{name}: 2 s is inside the 2 s bound"
        );
        assert_eq!(
            sample(
                &m,
                r#"acquire_webhooks_received_total{event="chat_close",outcome="observed"}"#
            ),
            Some(1.0),
            "{name}"
        );
    }
}

#[test]
fn other_events_answer_200_and_change_no_histogram() {
    let exporter = memory();
    let cases = [
        (
            "chat-start-doc-example-verbatim.json",
            "chat_start",
            "observed",
        ),
        (
            "chat-accept-doc-example-verbatim.json",
            "chat_accept",
            "observed",
        ),
        (
            "chat-message-doc-example-verbatim.json",
            "chat_message",
            "ignored",
        ),
    ];
    for (name, event, outcome) in cases {
        let (status, body) = exporter.post_json(&fixture(name));
        assert_eq!(status, 200, "{name}: {body}");
        let m = exporter.metrics();
        assert_eq!(
            sample(
                &m,
                &format!(
                    r#"acquire_webhooks_received_total{{event="{event}",outcome="{outcome}"}}"#
                )
            ),
            Some(1.0),
            "{name}"
        );
        assert!(
            histogram_lines(&m).is_empty(),
            "{name} created a chat histogram series"
        );
    }
    let (status, _) = exporter.post_json(br#"{"id":"1","event":"CHAT_ON_TRANSFER"}"#);
    assert_eq!(status, 200);
    assert_eq!(
        sample(
            &exporter.metrics(),
            r#"acquire_webhooks_received_total{event="unknown",outcome="ignored"}"#
        ),
        Some(1.0)
    );
}

#[test]
fn the_format_doc_example_is_refused_with_the_place_of_its_trailing_comma() {
    let exporter = memory();
    let (status, body) = exporter.post_json(&fixture("format-doc-example-verbatim.json"));
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("line"), "{body}");
    assert_eq!(
        sample(
            &exporter.metrics(),
            r#"acquire_webhook_rejections_total{reason="malformed_body"}"#
        ),
        Some(1.0)
    );
}

#[test]
fn hostile_bodies_get_4xx_are_counted_by_reason_and_change_no_histogram() {
    let exporter = memory();
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    let garbage: Vec<u8> = (0..10 * 1024 * 1024u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    // (name, body, content type, expected status, counted reason)
    type Case<'a> = (&'a str, Vec<u8>, &'a str, u16, &'a str);
    let cases: Vec<Case> = vec![
        (
            "truncated_json",
            fixture("chat-close-users-as-json-string.json")[..300].to_vec(),
            "application/json",
            400,
            "malformed_body",
        ),
        (
            "ten_megabytes_of_garbage",
            garbage,
            "application/json",
            413,
            "payload_too_large",
        ),
        (
            "deep_nesting",
            deep.into_bytes(),
            "application/json",
            413,
            "payload_too_large",
        ),
        (
            "deep_nesting_under_the_limit",
            format!("{}{}", "[".repeat(20_000), "]".repeat(20_000)).into_bytes(),
            "application/json",
            400,
            "malformed_body",
        ),
        (
            "wait_is_an_object",
            close_json("chat_wait_time", serde_json::json!({"a": 1})),
            "application/json",
            400,
            "invalid_field",
        ),
        (
            "wait_is_negative",
            close_json("chat_wait_time", serde_json::json!("-5")),
            "application/json",
            400,
            "invalid_field",
        ),
        (
            "wait_is_nan",
            close_json("chat_wait_time", serde_json::json!("NaN")),
            "application/json",
            400,
            "invalid_field",
        ),
        (
            "wait_is_infinite",
            close_json("chat_wait_time", serde_json::json!("inf")),
            "application/json",
            400,
            "invalid_field",
        ),
        (
            "duration_over_30_days",
            close_json("chat_duration", serde_json::json!(2_592_001)),
            "application/json",
            400,
            "invalid_field",
        ),
        (
            "no_id",
            close_json("id", serde_json::Value::Null),
            "application/json",
            400,
            "missing_field",
        ),
        (
            "not_an_object",
            b"[1,2,3]".to_vec(),
            "application/json",
            400,
            "malformed_body",
        ),
        (
            "xml",
            b"<event>CHAT_ON_CLOSE</event>".to_vec(),
            "application/xml",
            415,
            "unsupported_media_type",
        ),
        (
            "invalid_utf8",
            vec![0xff, 0xfe, b'{', b'}'],
            "application/json",
            400,
            "malformed_body",
        ),
    ];
    let mut expected: std::collections::HashMap<&str, f64> = Default::default();
    for (name, body, content_type, want_status, reason) in cases {
        let (status, answer) = common::post_raw(&exporter.base, "/webhook", content_type, body);
        assert_eq!(status, want_status, "{name}: {answer}");
        let v: serde_json::Value =
            serde_json::from_str(&answer).unwrap_or_else(|_| panic!("{name}: not JSON: {answer}"));
        assert!(
            v["error"].as_str().is_some_and(|e| !e.is_empty()),
            "{name}: {answer}"
        );
        *expected.entry(reason).or_default() += 1.0;
    }
    let m = exporter.metrics();
    for (reason, n) in expected {
        assert_eq!(
            sample(
                &m,
                &format!(r#"acquire_webhook_rejections_total{{reason="{reason}"}}"#)
            ),
            Some(n),
            "{reason}"
        );
    }
    assert!(
        histogram_lines(&m).is_empty(),
        "a refused body changed a histogram"
    );
    let (status, _) = exporter.post_json(&fixture("chat-close-users-as-json-string.json"));
    assert_eq!(status, 200, "the exporter still serves after hostile input");
}

fn close_json(field: &str, value: serde_json::Value) -> Vec<u8> {
    let mut v: serde_json::Value =
        serde_json::from_slice(&fixture("chat-close-users-as-json-string.json")).unwrap();
    if value.is_null() {
        v.as_object_mut().unwrap().remove(field);
    } else {
        v[field] = value;
    }
    v.to_string().into_bytes()
}

#[test]
fn the_415_answer_says_to_choose_json_in_the_vendor_settings() {
    let exporter = memory();
    let (status, body) = exporter.post("/webhook", "application/xml", b"<x/>");
    assert_eq!(status, 415);
    assert!(body.to_lowercase().contains("json"), "{body}");
    assert!(body.contains("webhook settings"), "{body}");
}

#[test]
fn form_encoded_close_events_are_observed() {
    let exporter = memory();
    let users = r#"{"agent":{"role":" Operator "}}"#;
    let body = format!(
        "id=77&account_id=1&department_id=&chat_wait_time=4&chat_duration=60&event=CHAT_ON_CLOSE&users={}",
        users
            .bytes()
            .map(|b| format!("%{b:02X}"))
            .collect::<String>()
    );
    let (status, answer) = exporter.post(
        "/webhook",
        "application/x-www-form-urlencoded",
        body.as_bytes(),
    );
    assert_eq!(status, 200, "{answer}");
    let m = exporter.metrics();
    assert_eq!(
        sample(
            &m,
            r#"acquire_chat_wait_time_seconds_sum{agent_role="operator",department="none"}"#
        ),
        Some(4.0)
    );
}

#[test]
fn six_deliveries_of_one_event_count_once() {
    let exporter = memory();
    for i in 0..6 {
        let (status, body) = exporter.post_json(&fixture("chat-close-users-as-json-string.json"));
        assert_eq!(status, 200, "delivery {i}: {body}");
        assert!(
            body.contains(if i == 0 { "observed" } else { "duplicate" }),
            "delivery {i}: {body}"
        );
    }
    let m = exporter.metrics();
    assert_eq!(sample(&m, WAIT_COUNT), Some(1.0));
    assert_eq!(
        sample(
            &m,
            r#"acquire_webhooks_received_total{event="chat_close",outcome="duplicate"}"#
        ),
        Some(5.0)
    );
}

#[test]
fn a_chat_nobody_answered_counts_without_a_wait_time() {
    let exporter = memory();
    for wait in ["null", ""] {
        let id = format!("unanswered-{}", wait.len());
        let (status, body) = exporter.post_json(&close_event(&id, "", None, wait, "40"));
        assert_eq!(status, 200, "{body}");
    }
    let m = exporter.metrics();
    assert_eq!(
        sample(&m, r#"acquire_chats_unanswered_total{department="none"}"#),
        Some(2.0)
    );
    assert_eq!(
        sample(
            &m,
            r#"acquire_chat_duration_seconds_count{agent_role="none",department="none"}"#
        ),
        Some(2.0)
    );
    assert_eq!(
        sample(
            &m,
            r#"acquire_chat_wait_time_seconds_count{agent_role="none",department="none"}"#
        ),
        None,
        "no wait time, no wait observation"
    );
}

#[test]
fn departments_are_named_from_the_config_file() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.yml");
    std::fs::write(&config, "departments:\n  \"12\": Sales\n").unwrap();
    let exporter = Exporter::spawn(&[
        "--storage.in-memory",
        &format!("--config.file={}", config.display()),
    ]);
    exporter.post_json(&close_event("1", "12", Some("Operator"), "3", "30"));
    exporter.post_json(&close_event("2", "13", Some("Operator"), "3", "30"));
    let m = exporter.metrics();
    assert_eq!(
        sample(
            &m,
            r#"acquire_chat_wait_time_seconds_count{agent_role="operator",department="Sales"}"#
        ),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &m,
            r#"acquire_chat_wait_time_seconds_count{agent_role="operator",department="13"}"#
        ),
        Some(1.0)
    );
}

#[test]
fn promtool_accepts_the_exposition() {
    let promtool = common::promtool();
    let exporter = memory();
    exporter.post_json(&fixture("chat-close-users-as-json-string.json"));
    exporter.post_json(&close_event("9", "4", Some("Support Lead"), "null", "100"));
    exporter.post_json(b"not json");
    let m = exporter.metrics();
    let mut child = Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(m.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && said.trim().is_empty(),
        "promtool check metrics said:\n{said}\n---\n{m}"
    );
}

#[test]
fn landing_page_and_health_endpoints() {
    let exporter = memory();
    let (status, page) = common::get(&exporter.url("/"));
    assert_eq!(status, 200);
    assert!(page.contains("href=\"/metrics\""), "{page}");
    assert_eq!(common::get(&exporter.url("/-/healthy")).0, 200);
    assert_eq!(common::get(&exporter.url("/-/ready")).0, 200);
    let m = exporter.metrics();
    assert!(m.contains("acquire_exporter_build_info{"), "{m}");
}

#[test]
fn metrics_negotiate_openmetrics_and_gzip() {
    let exporter = memory();
    exporter.post_json(&fixture("chat-close-users-as-json-string.json"));
    let (status, om) = common::get_with(
        &exporter.url("/metrics"),
        &[(
            "Accept",
            "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5",
        )],
    );
    assert_eq!(status, 200);
    assert!(om.trim_end().ends_with("# EOF"), "{om}");
    assert!(
        om.contains(r#"# {chat_id="104111"} 2"#),
        "the wait bucket carries the chat id as an exemplar:\n{om}"
    );
    let classic = exporter.metrics();
    assert!(
        !classic.contains("# EOF") && !classic.contains("chat_id"),
        "classic text stays classic"
    );
}

/// The length-delimited MetricFamily messages of a protobuf page, as bytes, less `process_*`.
fn without_process_families(mut page: &[u8]) -> Vec<Vec<u8>> {
    use prost::Message as _;
    let mut families = Vec::new();
    while !page.is_empty() {
        let length = prost::encoding::decode_varint(&mut page).expect("a length") as usize;
        let (message, rest) = page.split_at(length);
        page = rest;
        let family = prometheus_client::encoding::prometheus_protobuf::prometheus_data_model::MetricFamily::decode(message)
            .expect("a MetricFamily");
        if !family.name.starts_with("process_") {
            families.push(message.to_vec());
        }
    }
    families
}

#[test]
fn a_large_page_reads_the_same_gzipped_in_every_format() {
    use std::io::Read as _;
    let exporter = memory();
    // 750 series of both histograms: a page of about three megabytes, compressed in many chunks.
    for i in 0..750 {
        let body = close_event(
            &format!("{}", 200_000 + i),
            &format!("{}", i % 150),
            Some(
                [
                    "Operator",
                    "Administrator",
                    "Supervisor",
                    "Agent",
                    "Manager",
                ][i / 150 % 5],
            ),
            &format!("{}", i % 97),
            "300",
        );
        assert_eq!(exporter.post_json(&body).0, 200);
    }
    let openmetrics = "application/openmetrics-text;version=1.0.0";
    let protobuf = "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited";
    for accept in ["text/plain;version=0.0.4", openmetrics, protobuf] {
        let get = |gzip: bool| {
            let mut req = common::agent()
                .get(exporter.url("/metrics"))
                .header("Accept", accept);
            if gzip {
                req = req.header("Accept-Encoding", "gzip");
            }
            let mut resp = req.call().expect("GET /metrics");
            assert_eq!(resp.status().as_u16(), 200);
            let encoding = resp
                .headers()
                .get("content-encoding")
                .map(|v| v.to_str().unwrap().to_owned());
            let length: usize = resp
                .headers()
                .get("content-length")
                .expect("a length")
                .to_str()
                .unwrap()
                .parse()
                .unwrap();
            let body = resp
                .body_mut()
                .with_config()
                .limit(1 << 30)
                .read_to_vec()
                .expect("body");
            assert_eq!(body.len(), length, "{accept}: Content-Length is the body's");
            (encoding, body)
        };
        let (encoding, plain) = get(false);
        assert_eq!(encoding, None);
        assert!(
            plain.len() > 500_000 || accept == protobuf,
            "{accept}: {} bytes",
            plain.len()
        );
        let (encoding, compressed) = get(true);
        assert_eq!(encoding.as_deref(), Some("gzip"), "{accept}");
        assert!(
            compressed.len() < plain.len() / 4,
            "{accept}: {} of {}",
            compressed.len(),
            plain.len()
        );
        let mut unpacked = Vec::new();
        flate2::read::GzDecoder::new(&compressed[..])
            .read_to_end(&mut unpacked)
            .expect("one valid gzip member");
        if accept == protobuf {
            // Byte for byte, but for the process metrics, which move between the two scrapes.
            assert_eq!(
                without_process_families(&unpacked),
                without_process_families(&plain),
                "{accept}"
            );
        } else {
            let (plain, unpacked) = (
                String::from_utf8(plain).unwrap(),
                String::from_utf8(unpacked).unwrap(),
            );
            assert_eq!(
                histogram_lines(&unpacked),
                histogram_lines(&plain),
                "{accept}"
            );
            assert_eq!(
                histogram_lines(&plain)
                    .iter()
                    .filter(|l| l.contains("_count{"))
                    .count(),
                1500,
                "{accept}"
            );
        }
    }
}

#[test]
fn sigterm_stops_cleanly() {
    let exporter = memory();
    assert_eq!(exporter.terminate(), Some(0));
}

#[test]
fn a_bad_config_file_exits_1_naming_the_file_and_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("bad.yml");
    std::fs::write(&config, "buckets:\n  wait_time: [5, 1]\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_acquire-exporter"))
        .args([
            "--check-config",
            &format!("--config.file={}", config.display()),
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("bad.yml") && err.contains("buckets.wait_time"),
        "{err}"
    );

    std::fs::write(&config, "departments:\n  \"1\": Sales\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_acquire-exporter"))
        .args([
            "--check-config",
            &format!("--config.file={}", config.display()),
        ])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
