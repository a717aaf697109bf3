//! The webhook over HTTP against the real binary: every vendor fixture, hostile bodies,
//! retries and content negotiation (promtool's check of the exposition is in tests/promtool.rs).

mod common;

use std::process::Command;

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

/// What the vendor's close example becomes in a protobuf page: one series of each histogram with
/// the documented values, native buckets, and the chat id as the only exemplar label.
fn assert_documented_close_in_protobuf(families: &[common::dto::MetricFamily], what: &str) {
    let family = |name: &str| {
        families
            .iter()
            .find(|f| f.name == name)
            .unwrap_or_else(|| panic!("{what}: no {name}"))
    };
    for (name, count, sum) in [
        ("acquire_chat_wait_time_seconds", 1, 2.0),
        ("acquire_chat_duration_seconds", 1, 25.0),
    ] {
        let f = family(name);
        assert_eq!(
            f.r#type,
            common::dto::MetricType::Histogram as i32,
            "{what}: {name}"
        );
        assert_eq!(f.metric.len(), 1, "{what}: {name}");
        let m = &f.metric[0];
        assert_eq!(common::label(m, "agent_role"), Some("administrator"));
        assert_eq!(common::label(m, "department"), Some("none"));
        assert_eq!(m.label.len(), 2, "{what}: {name}");
        let h = m.histogram.as_ref().expect("a histogram");
        assert_eq!(
            (h.sample_count, h.sample_sum),
            (count, sum),
            "{what}: {name}"
        );
        assert_eq!(h.schema, 3, "{what}: factor 1.1 is schema 3");
        let native: u64 = h.positive_delta.iter().map(|d| *d as u64).sum();
        assert_eq!(native, 1, "{what}: {name}: one native observation");
        let exemplars: Vec<_> = h
            .bucket
            .iter()
            .filter_map(|b| b.exemplar.as_ref())
            .collect();
        assert_eq!(exemplars.len(), 1, "{what}: {name}: the newest exemplar");
        let labels: Vec<(&str, &str)> = exemplars[0]
            .label
            .iter()
            .map(|l| (l.name.as_str(), l.value.as_str()))
            .collect();
        assert_eq!(
            labels,
            [("chat_id", "104111")],
            "{what}: {name}: the full label set"
        );
        assert_eq!(exemplars[0].value, sum, "{what}: {name}");
    }
    let wait = &family("acquire_chat_wait_time_seconds").metric[0];
    let buckets: Vec<(f64, u64)> = wait
        .histogram
        .as_ref()
        .unwrap()
        .bucket
        .iter()
        .map(|b| (b.upper_bound, b.cumulative_count))
        .take(3)
        .collect();
    assert_eq!(buckets, [(1.0, 0), (2.0, 1), (5.0, 1)], "{what}");
}

#[test]
fn metrics_negotiate_the_format_by_accept_and_gzip_by_accept_encoding() {
    use std::io::Read as _;
    let exporter = memory();
    exporter.post_json(&fixture("chat-close-users-as-json-string.json"));
    let text = "text/plain; version=0.0.4; charset=utf-8";
    let openmetrics = "application/openmetrics-text; version=1.0.0; charset=utf-8";
    let protobuf = "application/vnd.google.protobuf; proto=io.prometheus.client.MetricFamily; encoding=delimited";
    // (name, Accept, Content-Type of the answer)
    let cases = [
        ("text", common::TEXT, text),
        ("any", "*/*", text),
        ("openmetrics", common::OPENMETRICS, openmetrics),
        (
            "prometheus_2_scrape",
            "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1",
            openmetrics,
        ),
        ("protobuf", common::PROTOBUF, protobuf),
        (
            "prometheus_native_scrape",
            "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited;q=0.8,application/openmetrics-text;version=1.0.0;q=0.5,text/plain;version=0.0.4;q=0.1",
            protobuf,
        ),
    ];
    for (name, accept, content_type) in cases {
        for gzip in [false, true] {
            let what = format!("{name}, gzip {gzip}");
            let page = common::scrape(&exporter.url("/metrics"), accept, gzip);
            assert_eq!(page.status, 200, "{what}");
            assert_eq!(page.content_type.as_deref(), Some(content_type), "{what}");
            let body = if gzip {
                assert_eq!(page.content_encoding.as_deref(), Some("gzip"), "{what}");
                let mut unpacked = Vec::new();
                flate2::read::GzDecoder::new(&page.body[..])
                    .read_to_end(&mut unpacked)
                    .expect("gzip");
                unpacked
            } else {
                assert_eq!(page.content_encoding, None, "{what}");
                page.body
            };
            if content_type == protobuf {
                assert_documented_close_in_protobuf(&common::decode_protobuf(&body), &what);
                continue;
            }
            let page = String::from_utf8(body).unwrap();
            assert_eq!(sample(&page, WAIT_COUNT), Some(1.0), "{what}");
            assert_eq!(sample(&page, DURATION_SUM), Some(25.0), "{what}");
            if content_type == openmetrics {
                assert!(page.ends_with("# EOF\n"), "{what}");
                let exemplars: Vec<&str> = page
                    .lines()
                    .filter_map(|l| l.split_once(" # ").map(|(_, e)| e))
                    .collect();
                assert_eq!(exemplars.len(), 2, "{what}: one per histogram");
                for e in exemplars {
                    let labels = e.strip_prefix('{').and_then(|e| e.split_once('}'));
                    assert_eq!(
                        labels.map(|(l, _)| l),
                        Some(r#"chat_id="104111""#),
                        "{what}: the exemplar's full label set: {e}"
                    );
                }
            } else {
                assert!(
                    !page.contains("# EOF") && !page.contains("chat_id"),
                    "{what}: classic text stays classic"
                );
            }
        }
    }
}

#[test]
fn a_zero_wait_without_an_agent_is_unanswered_and_with_an_agent_an_instant_answer() {
    let exporter = memory();
    let mut as_number: serde_json::Value =
        serde_json::from_slice(&close_event("zero-number", "3", None, "0", "45")).unwrap();
    as_number["chat_wait_time"] = 0.into();
    for body in [
        close_event("zero-text", "3", None, "0", "45"),
        as_number.to_string().into_bytes(),
        close_event("instant", "3", Some("Operator"), "0", "50"),
    ] {
        let (status, answer) = exporter.post_json(&body);
        assert_eq!(status, 200, "{answer}");
    }
    let m = exporter.metrics();
    assert_eq!(
        sample(&m, r#"acquire_chats_unanswered_total{department="3"}"#),
        Some(2.0),
        "\"0\" and 0 with no agent in `users`"
    );
    assert_eq!(
        sample(
            &m,
            r#"acquire_chat_wait_time_seconds_count{agent_role="none",department="3"}"#
        ),
        None,
        "an unanswered chat has no wait observation"
    );
    assert_eq!(
        sample(
            &m,
            r#"acquire_chat_duration_seconds_sum{agent_role="none",department="3"}"#
        ),
        Some(90.0),
        "their durations are observed"
    );
    for (series, want) in [
        (
            r#"acquire_chat_wait_time_seconds_count{agent_role="operator",department="3"}"#,
            1.0,
        ),
        (
            r#"acquire_chat_wait_time_seconds_sum{agent_role="operator",department="3"}"#,
            0.0,
        ),
        (
            r#"acquire_chat_wait_time_seconds_bucket{agent_role="operator",department="3",le="1"}"#,
            1.0,
        ),
    ] {
        assert_eq!(
            sample(&m, series),
            Some(want),
            "an instant answer: {series}"
        );
    }
}

#[test]
fn in_memory_retries_are_recognised_for_the_dedup_window_then_forgotten() {
    let window = std::time::Duration::from_secs(2);
    let mut exporter = Exporter::spawn(&["--storage.in-memory", "--storage.dedup-window=2s"]);
    let event = close_event("windowed", "2", Some("Operator"), "5", "60");
    let first = std::time::Instant::now();
    assert!(exporter.post_json(&event).1.contains("observed"));
    assert!(exporter.post_json(&event).1.contains("duplicate"));
    // The key tables rotate as deliveries come: other events keep coming while the retry does.
    let mut other = 0;
    exporter.wait_until("the retry to be forgotten", |e| {
        other += 1;
        let body = close_event(&format!("other-{other}"), "9", Some("Operator"), "5", "60");
        assert_eq!(e.post_json(&body).0, 200);
        e.post_json(&event).1.contains("observed")
    });
    let forgotten = first.elapsed();
    assert!(
        forgotten >= window,
        "forgotten after {forgotten:?}, within the window of {window:?}"
    );
    assert_eq!(
        sample(
            &exporter.metrics(),
            r#"acquire_chat_wait_time_seconds_count{agent_role="operator",department="2"}"#
        ),
        Some(2.0),
        "counted once in the window and once after it"
    );
}

#[test]
fn exemplars_and_native_histograms_follow_their_switches() {
    let dir = tempfile::tempdir().unwrap();
    // (name, config, exemplars, native buckets)
    let cases = [
        ("defaults", "", true, true),
        (
            "no_exemplars",
            "exemplars:\n  enabled: false\n",
            false,
            true,
        ),
        (
            "no_native_histograms",
            "native_histograms:\n  enabled: false\n",
            true,
            false,
        ),
    ];
    let mut texts = Vec::new();
    for (name, config, exemplars, native) in cases {
        let path = dir.path().join(format!("{name}.yml"));
        std::fs::write(&path, config).unwrap();
        let exporter = Exporter::spawn(&[
            "--storage.in-memory",
            &format!("--config.file={}", path.display()),
        ]);
        exporter.post_json(&fixture("chat-close-users-as-json-string.json"));
        exporter.post_json(&close_event(
            "second",
            "",
            Some("Administrator"),
            "40",
            "700",
        ));
        let om = exporter.scrape(common::OPENMETRICS).text();
        assert_eq!(
            om.contains(" # {chat_id=\""),
            exemplars,
            "{name}: OpenMetrics"
        );
        let families = exporter.protobuf();
        let wait = families
            .iter()
            .find(|f| f.name == "acquire_chat_wait_time_seconds")
            .expect("the wait family");
        let h = wait.metric[0].histogram.as_ref().unwrap();
        assert_eq!(h.sample_count, 2, "{name}");
        assert_eq!(!h.positive_span.is_empty(), native, "{name}: native spans");
        let with_exemplar = h.bucket.iter().filter(|b| b.exemplar.is_some()).count();
        let want = match (exemplars, native) {
            (false, _) => 0,
            // Native: the newest only, as Prometheus keeps a series' exemplars in time order.
            (true, true) => 1,
            (true, false) => 2,
        };
        assert_eq!(with_exemplar, want, "{name}: protobuf exemplars");
        texts.push(histogram_lines(&exporter.metrics()));
    }
    assert!(
        texts.iter().all(|t| *t == texts[0]),
        "the classic text page is the same under every switch"
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
