//! Native histograms and exemplars, proven on a real Prometheus: the Debian server with
//! `--enable-feature=native-histograms,exemplar-storage` scrapes the exporter over protobuf, and a
//! second server without the feature scrapes the same exporter in the text formats.

mod common;

use std::time::Duration;

use common::prometheus::{Prometheus, scrape_config, value};
use common::{Exporter, close_event};

#[test]
fn native_histograms_and_exemplars_reach_prometheus_and_classic_scrapers_are_unchanged() {
    let exporter = Exporter::spawn(&["--storage.in-memory"]);
    let target = exporter.base.trim_start_matches("http://").to_owned();
    // Waits of 3 s for nine chats and 100 s for one: the median is 3 s, the 95th percentile 100 s.
    for i in 0..10 {
        let wait = if i == 9 { "100" } else { "3" };
        let (status, body) = exporter.post_json(&close_event(
            &format!("chat-{i}"),
            "7",
            Some("Operator"),
            wait,
            "300",
        ));
        assert_eq!(status, 200, "{body}");
    }

    let native = Prometheus::start(
        &scrape_config(&target),
        &["--enable-feature=native-histograms,exemplar-storage"],
    );
    let classic = Prometheus::start(&scrape_config(&target), &[]);

    let series = r#"acquire_chat_wait_time_seconds{department="7",agent_role="operator"}"#;
    let count = native.wait_for(
        &format!("histogram_count({series})"),
        Duration::from_secs(30),
    );
    assert_eq!(
        value(&count[0]),
        10.0,
        "the native histogram holds every observation"
    );
    let sum = native.wait_for(&format!("histogram_sum({series})"), Duration::from_secs(5));
    assert_eq!(value(&sum[0]), 127.0);
    let median = value(
        &native.wait_for(
            &format!("histogram_quantile(0.5, {series})"),
            Duration::from_secs(5),
        )[0],
    );
    assert!(
        (median - 3.0).abs() / 3.0 < 0.1,
        "median {median} is within the 10 % resolution of 3 s"
    );
    let p95 = value(
        &native.wait_for(
            &format!("histogram_quantile(0.95, {series})"),
            Duration::from_secs(5),
        )[0],
    );
    assert!(
        (p95 - 100.0).abs() / 100.0 < 0.1,
        "p95 {p95} is within the 10 % resolution of 100 s"
    );

    let exemplars = wait_for_exemplars(&native);
    assert!(
        exemplars
            .iter()
            .any(|(id, v)| id == "chat-9" && *v == 100.0),
        "the long wait's chat id is an exemplar: {exemplars:?}"
    );
    assert!(
        exemplars.iter().all(|(id, _)| id.starts_with("chat-")),
        "{exemplars:?}"
    );

    let buckets = classic.wait_for(
        r#"acquire_chat_wait_time_seconds_bucket{department="7",agent_role="operator",le=~"5(\\.0)?"}"#,
        Duration::from_secs(30),
    );
    assert_eq!(
        value(&buckets[0]),
        9.0,
        "the classic scraper sees the classic buckets"
    );
    let p50 = classic.wait_for(
        r#"histogram_quantile(0.5, sum by (le) (acquire_chat_wait_time_seconds_bucket))"#,
        Duration::from_secs(5),
    );
    assert!(value(&p50[0]) > 2.0 && value(&p50[0]) <= 5.0, "{p50:?}");
}

/// The issue's promise in full: one protobuf scrape, and Prometheus keeps both the native
/// histogram and the classic `_bucket`/`_sum`/`_count` series of the same exporter series. Needs
/// Prometheus 2.45 or newer (`scrape_classic_histograms`); Debian trixie's 2.53 is used.
#[test]
fn one_scrape_stores_native_and_classic_series() {
    let exporter = Exporter::spawn(&["--storage.in-memory"]);
    let target = exporter.base.trim_start_matches("http://").to_owned();
    for (i, wait) in ["4", "4", "4", "50"].iter().enumerate() {
        let (status, body) = exporter.post_json(&close_event(
            &format!("both-{i}"),
            "3",
            Some("Administrator"),
            wait,
            "120",
        ));
        assert_eq!(status, 200, "{body}");
    }
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("prometheus.yml");
    std::fs::write(
        &config,
        scrape_config(&target) + "    scrape_classic_histograms: true\n",
    )
    .unwrap();
    let prometheus = Prometheus::start_binary(
        &common::prometheus::newer_prometheus(),
        &config,
        dir,
        &["--enable-feature=native-histograms,exemplar-storage"],
    );
    let series = r#"acquire_chat_wait_time_seconds{department="3",agent_role="administrator"}"#;
    let count = prometheus.wait_for(
        &format!("histogram_count({series})"),
        Duration::from_secs(30),
    );
    assert_eq!(value(&count[0]), 4.0, "the native histogram is stored");
    let median = value(
        &prometheus.wait_for(
            &format!("histogram_quantile(0.5, {series})"),
            Duration::from_secs(5),
        )[0],
    );
    assert!((median - 4.0).abs() / 4.0 < 0.1, "native median {median}");
    let classic = prometheus.wait_for(
        r#"acquire_chat_wait_time_seconds_bucket{department="3",agent_role="administrator",le=~"5(\\.0)?"}"#,
        Duration::from_secs(5),
    );
    assert_eq!(
        value(&classic[0]),
        3.0,
        "the classic buckets are stored too"
    );
    let classic_count = prometheus.wait_for(
        r#"acquire_chat_wait_time_seconds_count{department="3",agent_role="administrator"}"#,
        Duration::from_secs(5),
    );
    assert_eq!(value(&classic_count[0]), 4.0);
    let classic_sum = prometheus.wait_for(
        r#"acquire_chat_wait_time_seconds_sum{department="3",agent_role="administrator"}"#,
        Duration::from_secs(5),
    );
    assert_eq!(value(&classic_sum[0]), 62.0);
    let exemplars = wait_for_exemplars(&prometheus);
    assert!(
        exemplars.iter().any(|(id, v)| id == "both-3" && *v == 50.0),
        "the newest chat is the exemplar: {exemplars:?}"
    );
}

/// The exemplars of the wait histogram that Prometheus holds for the last ten minutes, as (chat
/// id, value), once there are any (at most 30 s). Each must carry exactly one label, `chat_id`.
fn wait_for_exemplars(prometheus: &Prometheus) -> Vec<(String, f64)> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let (start, end) = ((now - 600).to_string(), (now + 600).to_string());
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let data = prometheus
            .api(
                "/api/v1/query_exemplars",
                &[
                    ("query", "acquire_chat_wait_time_seconds"),
                    ("start", &start),
                    ("end", &end),
                ],
            )
            .expect("exemplar query");
        let found: Vec<(String, f64)> = data
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|s| s["exemplars"].as_array().cloned().unwrap_or_default())
            .map(|e| {
                let labels = e["labels"].as_object().cloned().unwrap_or_default();
                let names: Vec<&String> = labels.keys().collect();
                assert_eq!(
                    names,
                    ["chat_id"],
                    "an exemplar carries the chat id and nothing else: {e}"
                );
                (
                    e["labels"]["chat_id"].as_str().unwrap_or("").to_owned(),
                    e["value"]
                        .as_str()
                        .and_then(|v| v.parse().ok())
                        .unwrap_or(f64::NAN),
                )
            })
            .collect();
        if !found.is_empty() || std::time::Instant::now() > deadline {
            return found;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}
