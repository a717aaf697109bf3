//! Tests of the generic encoders, the negotiation and the gzip output.

use super::output::*;
use super::text::{write_float, write_seconds};
use super::*;
use crate::config::Settings;
use crate::event::Admitted;
use crate::record::Metrics;
use crate::record::histogram::{ChatHistogram, Exemplar, HistogramLayout, NativeLayout};
use prometheus_client::encoding::prometheus_protobuf;
use prometheus_client::metrics::{counter::Counter, family::Family, gauge::Gauge, info::Info};
use prometheus_client::registry::Registry;
use std::io::{Read as _, Write as _};
use std::time::{Duration, UNIX_EPOCH};

const PROMETHEUS_2_42: &str = "application/openmetrics-text;version=1.0.0,\
        application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
const PROMETHEUS_2_42_NATIVE: &str = "application/vnd.google.protobuf;\
        proto=io.prometheus.client.MetricFamily;encoding=delimited,\
        application/openmetrics-text;version=1.0.0;q=0.8,\
        application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
const PROMETHEUS_3: &str = "application/openmetrics-text;version=1.0.0;escaping=allow-utf-8;\
        q=0.5,application/openmetrics-text;version=0.0.1;q=0.4,\
        text/plain;version=1.0.0;escaping=allow-utf-8;q=0.3,text/plain;version=0.0.4;q=0.2,*/*;q=0.1";

fn label(name: &str, value: &str) -> dto::LabelPair {
    dto::LabelPair {
        name: name.to_owned(),
        value: value.to_owned(),
    }
}

fn family(name: &str, help: &str, kind: dto::MetricType) -> dto::MetricFamily {
    dto::MetricFamily {
        name: name.to_owned(),
        help: help.to_owned(),
        r#type: kind as i32,
        ..Default::default()
    }
}

fn exemplar(chat_id: &str, value: f64, seconds: i64, nanos: i32) -> dto::Exemplar {
    let mut e = dto::Exemplar {
        label: vec![label("chat_id", chat_id)],
        value,
        timestamp: None,
    };
    let ts = e.timestamp.get_or_insert_with(Default::default);
    ts.seconds = seconds;
    ts.nanos = nanos;
    e
}

fn counter(labels: Vec<dto::LabelPair>, value: f64) -> dto::Metric {
    dto::Metric {
        label: labels,
        counter: Some(dto::Counter {
            value,
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn gauge(labels: Vec<dto::LabelPair>, value: f64) -> dto::Metric {
    dto::Metric {
        label: labels,
        gauge: Some(dto::Gauge { value }),
        ..Default::default()
    }
}

fn bucket(upper_bound: f64, cumulative_count: u64, ex: Option<dto::Exemplar>) -> dto::Bucket {
    dto::Bucket {
        cumulative_count,
        upper_bound,
        exemplar: ex,
        ..Default::default()
    }
}

/// Counter, gauges with escapes, an info-style gauge, histograms (classic with an exemplar,
/// native-only), a counter with an exemplar, and an empty family.
fn sample_families() -> Vec<dto::MetricFamily> {
    use dto::MetricType as T;
    let mut received = family(
        "acquire_webhooks_received_total",
        "Webhooks received.",
        T::Counter,
    );
    received.metric = vec![
        counter(
            vec![label("event", "chat_close"), label("outcome", "observed")],
            3.0,
        ),
        counter(
            vec![label("event", "unknown"), label("outcome", "rejected")],
            1e6,
        ),
    ];
    let help = "Chats waiting \\ queued.\nSecond line \"quoted\".";
    let mut waiting = family("acquire_chats_waiting", help, T::Gauge);
    waiting.metric = vec![
        gauge(vec![label("department", "sales\\ \"east\"\nline")], 2.5),
        gauge(vec![label("department", "none")], 0.0),
    ];
    let mut build = family("acquire_exporter_build_info", "Build.", T::Gauge);
    build.metric = vec![gauge(
        vec![label("version", "0.1.0"), label("revision", "abc123")],
        1.0,
    )];
    let mut wait = family("acquire_chat_wait_time_seconds", "Chat wait.", T::Histogram);
    wait.unit = "seconds".to_owned();
    wait.metric = vec![dto::Metric {
        label: vec![label("department", "sales"), label("agent_role", "agent")],
        histogram: Some(dto::Histogram {
            sample_count: 5,
            sample_sum: 7.25,
            bucket: vec![
                bucket(0.5, 1, None),
                bucket(
                    1.0,
                    2,
                    Some(exemplar("104111", 0.75, 1_700_000_000, 123_000_000)),
                ),
                bucket(2.5, 4, None),
            ],
            schema: 3,
            zero_threshold: 2.938_735_877_055_719e-39,
            positive_span: vec![dto::BucketSpan {
                offset: -8,
                length: 1,
            }],
            positive_delta: vec![1],
            ..Default::default()
        }),
        ..Default::default()
    }];
    let mut duration = family(
        "acquire_chat_duration_seconds",
        "Chat duration.",
        T::Histogram,
    );
    duration.metric = vec![dto::Metric {
        histogram: Some(dto::Histogram {
            sample_count: 2,
            sample_sum: 90.0,
            schema: 0,
            zero_threshold: 2.938_735_877_055_719e-39,
            positive_span: vec![dto::BucketSpan {
                offset: 6,
                length: 1,
            }],
            positive_delta: vec![2],
            ..Default::default()
        }),
        ..Default::default()
    }];
    let mut commits = family("acquire_exporter_storage_commits_total", "", T::Counter);
    let mut with_exemplar = counter(vec![], 12.0);
    if let Some(c) = with_exemplar.counter.as_mut() {
        c.exemplar = Some(exemplar("1", 1.0, 5, 0));
    }
    commits.metric = vec![with_exemplar];
    let expired = family("acquire_chats_expired_total", "Expired.", T::Counter);
    vec![received, waiting, build, wait, duration, commits, expired]
}

fn encoded(families: &[dto::MetricFamily], f: Format) -> String {
    let mut out = Vec::new();
    encode(families, f, &mut out);
    String::from_utf8(out).expect("UTF-8")
}

#[test]
fn negotiation_follows_client_golang() {
    let protobuf_delimited = "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited";
    let cases: [(&str, Option<&str>, Format); 20] = [
        (
            "Prometheus 2.42",
            Some(PROMETHEUS_2_42),
            Format::OpenMetrics,
        ),
        (
            "Prometheus 2.42 with native histograms",
            Some(PROMETHEUS_2_42_NATIVE),
            Format::Protobuf,
        ),
        ("Prometheus 3", Some(PROMETHEUS_3), Format::OpenMetrics),
        ("curl", Some("*/*"), Format::Text),
        ("no header", None, Format::Text),
        ("empty header", Some(""), Format::Text),
        ("text without version", Some("text/plain"), Format::Text),
        (
            "text 0.0.4",
            Some("text/plain; version=0.0.4"),
            Format::Text,
        ),
        (
            "OpenMetrics without version",
            Some("application/openmetrics-text"),
            Format::OpenMetrics,
        ),
        (
            "OpenMetrics 0.0.1",
            Some("application/openmetrics-text; version=0.0.1"),
            Format::OpenMetrics,
        ),
        (
            "unknown OpenMetrics version",
            Some("application/openmetrics-text;version=2.0.0"),
            Format::Text,
        ),
        (
            "protobuf delimited",
            Some(protobuf_delimited),
            Format::Protobuf,
        ),
        (
            "protobuf text encoding is not offered",
            Some(
                "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=text",
            ),
            Format::Text,
        ),
        (
            "protobuf of another message",
            Some("application/vnd.google.protobuf;proto=other.Message;encoding=delimited"),
            Format::Text,
        ),
        (
            "higher q wins over order",
            Some("application/openmetrics-text;q=0.3,text/plain;version=0.0.4;q=0.9"),
            Format::Text,
        ),
        (
            "protobuf preferred by q",
            Some(
                "application/openmetrics-text;q=0.5,application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited;q=0.7",
            ),
            Format::Protobuf,
        ),
        (
            "q=0 refuses a format",
            Some("application/openmetrics-text;version=1.0.0;q=0,*/*;q=0.1"),
            Format::Text,
        ),
        (
            "unreadable q counts as 0",
            Some("application/openmetrics-text;q=high"),
            Format::Text,
        ),
        ("garbage", Some("garbage;;;,,/,a/b/c;=;q"), Format::Text),
        (
            "case-insensitive type",
            Some("Application/OpenMetrics-Text; Version=1.0.0"),
            Format::OpenMetrics,
        ),
    ];
    for (name, accept, want) in cases {
        assert_eq!(negotiate(accept), want, "{name}");
    }
}

#[test]
fn content_types_name_the_format_and_version() {
    let cases = [
        (Format::Text, "text/plain; version=0.0.4; charset=utf-8"),
        (
            Format::OpenMetrics,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        ),
        (
            Format::Protobuf,
            "application/vnd.google.protobuf; proto=io.prometheus.client.MetricFamily; encoding=delimited",
        ),
    ];
    for (f, want) in cases {
        assert_eq!(content_type(f), want, "{f:?}");
    }
}

#[test]
fn text_format_golden() {
    let want = r#"# HELP acquire_webhooks_received_total Webhooks received.
# TYPE acquire_webhooks_received_total counter
acquire_webhooks_received_total{event="chat_close",outcome="observed"} 3
acquire_webhooks_received_total{event="unknown",outcome="rejected"} 1e+06
# HELP acquire_chats_waiting Chats waiting \\ queued.\nSecond line "quoted".
# TYPE acquire_chats_waiting gauge
acquire_chats_waiting{department="sales\\ \"east\"\nline"} 2.5
acquire_chats_waiting{department="none"} 0
# HELP acquire_exporter_build_info Build.
# TYPE acquire_exporter_build_info gauge
acquire_exporter_build_info{version="0.1.0",revision="abc123"} 1
# HELP acquire_chat_wait_time_seconds Chat wait.
# TYPE acquire_chat_wait_time_seconds histogram
acquire_chat_wait_time_seconds_bucket{department="sales",agent_role="agent",le="0.5"} 1
acquire_chat_wait_time_seconds_bucket{department="sales",agent_role="agent",le="1"} 2
acquire_chat_wait_time_seconds_bucket{department="sales",agent_role="agent",le="2.5"} 4
acquire_chat_wait_time_seconds_bucket{department="sales",agent_role="agent",le="+Inf"} 5
acquire_chat_wait_time_seconds_sum{department="sales",agent_role="agent"} 7.25
acquire_chat_wait_time_seconds_count{department="sales",agent_role="agent"} 5
# HELP acquire_chat_duration_seconds Chat duration.
# TYPE acquire_chat_duration_seconds histogram
acquire_chat_duration_seconds_bucket{le="+Inf"} 2
acquire_chat_duration_seconds_sum 90
acquire_chat_duration_seconds_count 2
# TYPE acquire_exporter_storage_commits_total counter
acquire_exporter_storage_commits_total 12
"#;
    assert_eq!(encoded(&sample_families(), Format::Text), want);
}

#[test]
fn openmetrics_format_golden() {
    let want = r#"# HELP acquire_webhooks_received Webhooks received.
# TYPE acquire_webhooks_received counter
acquire_webhooks_received_total{event="chat_close",outcome="observed"} 3.0
acquire_webhooks_received_total{event="unknown",outcome="rejected"} 1e+06
# HELP acquire_chats_waiting Chats waiting \\ queued.\nSecond line \"quoted\".
# TYPE acquire_chats_waiting gauge
acquire_chats_waiting{department="sales\\ \"east\"\nline"} 2.5
acquire_chats_waiting{department="none"} 0.0
# HELP acquire_exporter_build_info Build.
# TYPE acquire_exporter_build_info gauge
acquire_exporter_build_info{version="0.1.0",revision="abc123"} 1.0
# HELP acquire_chat_wait_time_seconds Chat wait.
# TYPE acquire_chat_wait_time_seconds histogram
# UNIT acquire_chat_wait_time_seconds seconds
acquire_chat_wait_time_seconds_bucket{department="sales",agent_role="agent",le="0.5"} 1
acquire_chat_wait_time_seconds_bucket{department="sales",agent_role="agent",le="1.0"} 2 # {chat_id="104111"} 0.75 1700000000.123
acquire_chat_wait_time_seconds_bucket{department="sales",agent_role="agent",le="2.5"} 4
acquire_chat_wait_time_seconds_bucket{department="sales",agent_role="agent",le="+Inf"} 5
acquire_chat_wait_time_seconds_sum{department="sales",agent_role="agent"} 7.25
acquire_chat_wait_time_seconds_count{department="sales",agent_role="agent"} 5
# HELP acquire_chat_duration_seconds Chat duration.
# TYPE acquire_chat_duration_seconds histogram
acquire_chat_duration_seconds_bucket{le="+Inf"} 2
acquire_chat_duration_seconds_sum 90.0
acquire_chat_duration_seconds_count 2
# TYPE acquire_exporter_storage_commits counter
acquire_exporter_storage_commits_total 12.0 # {chat_id="1"} 1.0 5.0
# EOF
"#;
    assert_eq!(encoded(&sample_families(), Format::OpenMetrics), want);
}

#[test]
fn families_a_format_cannot_express_are_left_out() {
    use dto::MetricType as T;
    let mut unknown_type = family("a", "", T::Gauge);
    unknown_type.r#type = 42;
    unknown_type.metric = vec![gauge(vec![], 1.0)];
    let mut gauge_histogram = family("b", "", T::GaugeHistogram);
    gauge_histogram.metric = vec![dto::Metric::default()];
    let mut counter_without_total = family("c", "", T::Counter);
    counter_without_total.metric = vec![counter(vec![], 1.0), gauge(vec![], 2.0)];
    let mut no_name = family("", "", T::Gauge);
    no_name.metric = vec![gauge(vec![], 1.0)];
    let families = [
        unknown_type,
        gauge_histogram,
        counter_without_total,
        no_name,
    ];
    assert_eq!(encoded(&families, Format::Text), "# TYPE c counter\nc 1\n");
    assert_eq!(
        encoded(&families, Format::OpenMetrics),
        "# TYPE c unknown\nc 1.0\n# EOF\n"
    );
}

#[test]
fn samples_with_timestamps() {
    let mut f = family("g", "", dto::MetricType::Gauge);
    let mut m = gauge(vec![], 1.5);
    m.timestamp_ms = 1_700_000_000_123;
    f.metric = vec![m];
    let families = [f];
    assert_eq!(
        encoded(&families, Format::Text),
        "# TYPE g gauge\ng 1.5 1700000000123\n"
    );
    assert_eq!(
        encoded(&families, Format::OpenMetrics),
        "# TYPE g gauge\ng 1.5 1.700000000123e+09\n# EOF\n"
    );
}

#[test]
fn floats_are_written_like_go() {
    let cases = [
        (0.0, "0", "0.0"),
        (-0.0, "0", "0.0"),
        (1.0, "1", "1.0"),
        (-1.0, "-1", "-1.0"),
        (0.5, "0.5", "0.5"),
        (2.5, "2.5", "2.5"),
        (100_000.0, "100000", "100000.0"),
        (999_999.0, "999999", "999999.0"),
        (1e6, "1e+06", "1e+06"),
        (1_234_567.0, "1.234567e+06", "1.234567e+06"),
        (1_234_567.5, "1.2345675e+06", "1.2345675e+06"),
        (123.456, "123.456", "123.456"),
        (0.0001, "0.0001", "0.0001"),
        (0.00001, "1e-05", "1e-05"),
        (1.5e-7, "1.5e-07", "1.5e-07"),
        (-2.25e-5, "-2.25e-05", "-2.25e-05"),
        (1e21, "1e+21", "1e+21"),
        (1.7e9, "1.7e+09", "1.7e+09"),
        (0.1 + 0.2, "0.30000000000000004", "0.30000000000000004"),
        (
            f64::MAX,
            "1.7976931348623157e+308",
            "1.7976931348623157e+308",
        ),
        (5e-324, "5e-324", "5e-324"),
        (
            2.938_735_877_055_719e-39,
            "2.938735877055719e-39",
            "2.938735877055719e-39",
        ),
        (f64::NAN, "NaN", "NaN"),
        (f64::INFINITY, "+Inf", "+Inf"),
        (f64::NEG_INFINITY, "-Inf", "-Inf"),
    ];
    for (v, text, om) in cases {
        let mut out = Vec::new();
        write_float(&mut out, v, false);
        assert_eq!(String::from_utf8_lossy(&out), text, "text {v:?}");
        out.clear();
        write_float(&mut out, v, true);
        assert_eq!(String::from_utf8_lossy(&out), om, "OpenMetrics {v:?}");
    }
}

#[test]
fn exemplar_timestamps_are_exact_decimal_seconds() {
    let cases = [
        ((1_700_000_000, 123_000_000), "1700000000.123"),
        ((5, 0), "5.0"),
        ((0, 5), "0.000000005"),
        ((-1, 500_000_000), "-0.5"),
        ((-2, 0), "-2.0"),
        ((-3, 250_000_000), "-2.75"),
        ((0, 0), "0.0"),
        ((i64::MIN, 0), "-9223372036854775808.0"),
        // Not valid timestamps, written as the sum they stand for.
        ((1, 1_500_000_000), "2.5"),
        ((1, -250_000_000), "0.75"),
    ];
    for ((seconds, nanos), want) in cases {
        let mut out = Vec::new();
        write_seconds(&mut out, seconds, nanos);
        assert_eq!(String::from_utf8_lossy(&out), want);
    }
}

#[test]
fn protobuf_is_length_delimited_families() {
    let families = sample_families();
    let mut out = Vec::new();
    encode(&families, Format::Protobuf, &mut out);
    let mut rest = out.as_slice();
    let mut decoded = Vec::new();
    while !rest.is_empty() {
        decoded.push(dto::MetricFamily::decode_length_delimited(&mut rest).expect("decodes"));
    }
    // The empty family is left out, as client_golang's gathering does.
    assert_eq!(decoded, families[..families.len() - 1]);
}

#[test]
fn gzip_is_accepted_when_offered() {
    let cases = [
        ("none", None, false),
        ("empty", Some(""), false),
        ("browser", Some("gzip, deflate, br"), true),
        ("Prometheus", Some("gzip"), true),
        ("with q", Some("gzip;q=0.5"), true),
        ("refused", Some("gzip;q=0, deflate"), false),
        ("x-gzip", Some("x-gzip"), true),
        ("wildcard", Some("*"), true),
        ("wildcard but not gzip", Some("gzip;q=0, *"), false),
        ("identity only", Some("identity"), false),
        ("upper case", Some("GZIP"), true),
    ];
    for (name, header, want) in cases {
        assert_eq!(accepts_gzip(header), want, "{name}");
    }
}

#[test]
fn a_gzip_stream_holds_what_was_written() {
    // Written as the encoders write: pieces with boundaries between them, and a few slices
    // longer than a chunk; several chunks in all.
    let piece = encoded(&sample_families(), Format::OpenMetrics);
    let long = piece.repeat(CHUNK / piece.len() + 2);
    let write = |out: &mut Output| {
        out.reserve(1 << 20);
        for i in 0..400 {
            if i % 100 == 7 {
                out.extend(long.as_bytes());
            } else {
                out.buf().extend_from_slice(piece.as_bytes());
                out.boundary();
            }
        }
    };
    let mut whole = Output::whole(b"head ".to_vec());
    write(&mut whole);
    let whole = whole.into_vec();
    assert!(whole.starts_with(b"head "));
    let expected = &whole[5..];
    assert!(expected.len() > 4 * CHUNK, "{}", expected.len());

    let mut compressed = Output::gzip();
    write(&mut compressed);
    let compressed = compressed.into_vec();
    assert!(compressed.len() < expected.len() / 5);
    let mut back = Vec::new();
    // GzDecoder reads one member only: all of it is in the first.
    flate2::read::GzDecoder::new(&compressed[..])
        .read_to_end(&mut back)
        .expect("valid gzip");
    assert_eq!(back, expected);
}

#[test]
fn gzip_round_trips() {
    let body = encoded(&sample_families(), Format::Text).repeat(50);
    let mut out = Output::gzip();
    out.extend(body.as_bytes());
    let compressed = out.into_vec();
    assert!(compressed.len() < body.len() / 5);
    let mut back = String::new();
    flate2::read::GzDecoder::new(compressed.as_slice())
        .read_to_string(&mut back)
        .expect("valid gzip");
    assert_eq!(back, body);
}

/// Families as the exporter builds them: a registry (counters carry `_total` in the data
/// model already, info gauges `_info`) plus chat histograms with native buckets.
fn exporter_families() -> Vec<dto::MetricFamily> {
    let mut registry = Registry::default();
    let unanswered = Family::<Vec<(String, String)>, Counter>::default();
    registry.register(
        "acquire_chats_unanswered",
        "Close events with no wait time",
        unanswered.clone(),
    );
    unanswered
        .get_or_create(&vec![("department".to_owned(), "sales".to_owned())])
        .inc_by(2);
    let waiting = Family::<Vec<(String, String)>, Gauge>::default();
    registry.register(
        "acquire_chats_waiting",
        "Chats started and not yet accepted",
        waiting.clone(),
    );
    waiting
        .get_or_create(&vec![(
            "department".to_owned(),
            "a \"quoted\"\\name".to_owned(),
        )])
        .set(3);
    registry.register(
        "acquire_exporter_build",
        "Version of the exporter",
        Info::new(vec![("version", "0.1.0"), ("revision", "abc123")]),
    );
    let mut families = prometheus_protobuf::encode(&registry).expect("registry encodes");
    let native = NativeLayout::new(1.1, 160).expect("valid");
    let wait_bounds = [
        1.0, 2.0, 5.0, 10.0, 15.0, 20.0, 30.0, 45.0, 60.0, 90.0, 120.0, 180.0, 300.0, 600.0, 900.0,
        1200.0, 1800.0,
    ];
    let layout = HistogramLayout::new(&wait_bounds, Some(native)).expect("valid");
    let mut wait = family(
        "acquire_chat_wait_time_seconds",
        "Time from chat start to first agent answer.",
        dto::MetricType::Histogram,
    );
    for (department, role) in [("sales", "agent"), ("support", "none")] {
        let mut h = ChatHistogram::new(&layout);
        for i in 0..200u32 {
            let v = f64::from(i * i % 2100) / 3.0;
            let e = Exemplar {
                chat_id: (104_000 + i).to_string().as_str().into(),
                value: v,
                timestamp: UNIX_EPOCH + Duration::from_millis(1_700_000_000_000 + u64::from(i)),
            };
            h.observe(&layout, v, Some(e));
        }
        let labels = vec![label("department", department), label("agent_role", role)];
        wait.metric.push(model::histogram(&h, &layout, labels));
    }
    families.push(wait);
    families
}

#[test]
fn registry_counters_already_end_in_total() {
    let families = exporter_families();
    let names: Vec<&str> = families.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "acquire_chats_unanswered_total",
            "acquire_chats_waiting",
            "acquire_exporter_build_info",
            "acquire_chat_wait_time_seconds"
        ]
    );
    let text = encoded(&families, Format::Text);
    assert!(text.contains("\nacquire_chats_unanswered_total{department=\"sales\"} 2\n"));
    let om = encoded(&families, Format::OpenMetrics);
    assert!(om.contains("# TYPE acquire_chats_unanswered counter\n"));
    assert!(om.contains("\nacquire_chats_unanswered_total{department=\"sales\"} 2.0\n"));
}

/// Checks the classic text with Prometheus's own linter; needs `promtool` on the PATH
/// (Debian: `apt-get install prometheus`, which the README's test command does).
#[test]
fn promtool_accepts_the_text_format() {
    use std::process::{Command, Stdio};
    let text = encoded(&exporter_families(), Format::Text);
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool is not installed: apt-get install -y prometheus (scripts/test does it)");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("writes");
    let output = child.wait_with_output().expect("promtool finishes");
    let said = String::from_utf8_lossy(&output.stdout).into_owned()
        + &String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "promtool failed: {said}\n{text}");
    assert_eq!(said, "", "promtool complained:\n{text}");
}

fn close(chat: &str, department: &str, role: Option<&str>, wait: Option<f64>, ms: i64) -> Admitted {
    Admitted {
        seq: ms as u64,
        event: crate::event::ChatEvent {
            kind: crate::event::ChatKind::Close,
            account_id: "1".into(),
            chat_id: chat.into(),
            received_ms: ms,
            department_id: department.into(),
            agent_role: role.map(str::to_owned),
            agent_id: None,
            wait_seconds: wait,
            duration_seconds: Some(125.5),
        },
    }
}

/// The text formats write the chat histograms straight from their state; this guards that
/// they stay byte for byte what the reference encoder makes of the full data model.
#[test]
fn direct_text_encoding_equals_the_reference_encoder() {
    let mut settings = Settings::default();
    settings
        .departments
        .insert("7".into(), "Sales \"EU\"\\north\nline".into());
    let metrics = Arc::new(Metrics::new(&settings));
    let events = [
        close("a", "7", Some("operator"), Some(3.0), 1_700_000_000_123),
        close("b", "7", Some("operator"), Some(0.25), 1_700_000_001_000),
        close("c", "8", None, None, 1_700_000_002_000),
        close("d", "", Some("admin"), Some(1e7), 1_700_000_003_500),
        close("e\"q", "9", Some("operator"), Some(45.0), 1_700_000_004_000),
    ];
    for e in &events {
        metrics.apply(e);
    }
    let exposition = Exposition::new(metrics.clone());
    let mut direct = Vec::new();
    exposition.encode(Format::Protobuf, &mut direct);
    let mut families = exposition.gather();
    model::newest_exemplar_only(&mut families);
    let mut reference = Vec::new();
    encode(&families, Format::Protobuf, &mut reference);
    assert!(direct.len() > 1000, "{}", direct.len());
    assert!(
        direct == reference,
        "protobuf differs from the reference encoder"
    );
    for format in [Format::Text, Format::OpenMetrics] {
        let mut direct = Vec::new();
        exposition.encode(format, &mut direct);
        let mut reference = Vec::new();
        encode(&exposition.gather(), format, &mut reference);
        let (direct, reference) = (
            String::from_utf8(direct).unwrap(),
            String::from_utf8(reference).unwrap(),
        );
        assert!(
            direct.contains("acquire_chat_wait_time_seconds_bucket"),
            "{direct}"
        );
        assert!(
            !direct.contains("..\n"),
            "help texts end in one period: {direct}"
        );
        assert_eq!(direct, reference, "{format:?}");
    }
}

#[test]
fn families_without_observations_are_left_out_of_the_text() {
    let metrics = Arc::new(Metrics::new(&Settings::default()));
    // A chat nobody answered has a duration but no wait.
    metrics.apply(&close("a", "7", None, None, 1_700_000_000_000));
    let exposition = Exposition::new(metrics.clone());
    let mut text = Vec::new();
    exposition.encode(Format::Text, &mut text);
    let text = String::from_utf8(text).unwrap();
    assert!(
        text.contains("acquire_chat_duration_seconds_count"),
        "{text}"
    );
    assert!(!text.contains("acquire_chat_wait_time_seconds"), "{text}");
}
