//! An oracle that is not the code under test: the test computes every bucket, sum, count,
//! native bucket, schema and exemplar from the events it posts, and reads the pages with
//! parsers the project did not write: the `prometheus-parse` crate for the text format, prost
//! for protobuf, and a line split by the OpenMetrics grammar for the exemplars. The same oracle
//! checks random histories recorded through the public API: chat ids of any length in several
//! scripts (past the 23 bytes kept in place, past the 128-character exemplar limit) and values up
//! to the 30-day limit.

mod common;

use std::collections::{BTreeMap, HashMap};

use acquire_exporter::config::Settings;
use std::sync::Arc;

use acquire_exporter::event::{Admitted, ChatEvent, ChatKind};
use acquire_exporter::expose::{Exposition, Format};
use acquire_exporter::record::Metrics;
use common::{Exporter, OPENMETRICS, TEXT, close_event, dto};
use proptest::prelude::*;

/// The README's default bounds.
const WAIT_BOUNDS: &[f64] = &[
    1.0, 2.0, 5.0, 10.0, 15.0, 20.0, 30.0, 45.0, 60.0, 90.0, 120.0, 180.0, 300.0, 600.0, 900.0,
    1200.0, 1800.0,
];
const DURATION_BOUNDS: &[f64] = &[
    30.0, 60.0, 120.0, 180.0, 300.0, 450.0, 600.0, 900.0, 1200.0, 1800.0, 2700.0, 3600.0, 5400.0,
    7200.0, 10800.0, 14400.0,
];
/// `bucket_factor: 1.1` is schema 3 (2^(1/8) = 1.09); at most 160 buckets a series.
const SCHEMA: i32 = 3;
const MAX_BUCKETS: usize = 160;
/// 2^-128: only an exact 0 s falls in the zero bucket.
const ZERO_THRESHOLD: f64 = 2.938_735_877_055_719e-39;

/// One series' observations, in the order they were posted.
#[derive(Default, Debug)]
struct Observed {
    values: Vec<(String, f64)>,
}

impl Observed {
    fn count(&self) -> u64 {
        self.values.len() as u64
    }

    fn sum(&self) -> f64 {
        self.values.iter().map(|(_, v)| v).sum()
    }

    fn cumulative(&self, bound: f64) -> u64 {
        self.values.iter().filter(|(_, v)| *v <= bound).count() as u64
    }

    /// The native bucket of each observation at `schema`: bucket i holds (2^((i-1)/2^s), 2^(i/2^s)].
    fn native(&self, schema: i32) -> (u64, BTreeMap<i64, u64>) {
        let mut zero = 0;
        let mut buckets = BTreeMap::new();
        for (_, v) in &self.values {
            if *v <= ZERO_THRESHOLD {
                zero += 1;
            } else {
                let index = (v.log2() * 2f64.powi(schema)).ceil() as i64;
                *buckets.entry(index).or_insert(0) += 1;
            }
        }
        (zero, buckets)
    }

    /// The finest schema at which the populated buckets fit the limit.
    fn schema(&self) -> i32 {
        let mut schema = SCHEMA;
        while self.native(schema).1.len() > MAX_BUCKETS {
            schema -= 1;
        }
        schema
    }

    /// The chat id and value of the last observation in each classic bucket whose id fits an
    /// exemplar: not empty, and with the label name at most 128 characters.
    fn exemplars(&self, bounds: &[f64]) -> BTreeMap<usize, (String, f64)> {
        let mut out = BTreeMap::new();
        let fits = |id: &str| !id.is_empty() && "chat_id".len() + id.chars().count() <= 128;
        for (id, v) in self.values.iter().filter(|(id, _)| fits(id)) {
            let bucket = bounds.iter().position(|b| v <= b).unwrap_or(bounds.len());
            out.insert(bucket, (id.clone(), *v));
        }
        out
    }
}

/// (department, agent_role) as labelled.
type Key = (String, String);

#[derive(Default)]
struct Expected {
    wait: HashMap<Key, Observed>,
    duration: HashMap<Key, Observed>,
    unanswered: HashMap<String, u64>,
}

/// A small linear congruential generator: the same events on every run.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) % n
    }
}

fn post_all(exporter: &Exporter) -> Expected {
    let mut expected = Expected::default();
    let mut rng = Lcg(18);
    let departments = [("3", "3"), ("8", "8"), ("", "none")];
    let roles = [
        (Some("Operator"), "operator"),
        (Some("Administrator"), "administrator"),
        (None, "none"),
    ];
    let mut post = |id: String, department: usize, role: usize, wait: String, duration: String| {
        let ((dep_raw, dep), (role_raw, role)) = (departments[department], roles[role]);
        let body = close_event(&id, dep_raw, role_raw, &wait, &duration);
        let (status, answer) = exporter.post_json(&body);
        assert_eq!(status, 200, "{answer}");
        let key = (dep.to_owned(), role.to_owned());
        let wait: Option<f64> = wait.parse().ok();
        match wait {
            Some(w) if w > 0.0 || role_raw.is_some() => {
                expected
                    .wait
                    .entry(key.clone())
                    .or_default()
                    .values
                    .push((id.clone(), w));
            }
            _ => *expected.unanswered.entry(dep.to_owned()).or_default() += 1,
        }
        if let Ok(d) = duration.parse::<f64>() {
            expected
                .duration
                .entry(key)
                .or_default()
                .values
                .push((id, d));
        }
    };
    for i in 0..360u64 {
        // Values on a bucket's bound belong to that bucket (`le` is inclusive).
        let wait = match rng.next(11) {
            0 => "null".to_owned(),
            1 => "0".to_owned(),
            2 => format!("{}", 2_000_000 + rng.next(592_000)),
            3 => format!("{}.{:03}", rng.next(60), rng.next(1000)),
            4 => format!(
                "{}",
                WAIT_BOUNDS[rng.next(WAIT_BOUNDS.len() as u64) as usize]
            ),
            _ => format!("{}", 1 + rng.next(3000)),
        };
        let duration = match rng.next(12) {
            0 => "null".to_owned(),
            1 => format!(
                "{}",
                DURATION_BOUNDS[rng.next(DURATION_BOUNDS.len() as u64) as usize]
            ),
            _ => format!("{}", 1 + rng.next(20_000)),
        };
        // Round-robin over the nine series, so one series' events are never back to back.
        post(
            format!("o{i}"),
            (i % 3) as usize,
            (i / 3 % 3) as usize,
            wait,
            duration,
        );
    }
    // One series past its bucket limit: 443 waits 5 % apart, from 1 ms to about 30 days.
    let mut wait = 0.001f64;
    for i in 0..443 {
        post(
            format!("spread-{i}"),
            0,
            0,
            format!("{wait:.6}"),
            "null".to_owned(),
        );
        wait *= 1.05;
    }
    expected
}

fn labels_of(sample: &prometheus_parse::Sample) -> Key {
    (
        sample.labels.get("department").unwrap_or("?").to_owned(),
        sample.labels.get("agent_role").unwrap_or("?").to_owned(),
    )
}

#[test]
fn the_text_page_parsed_by_prometheus_parse_holds_what_was_posted() {
    let exporter = Exporter::spawn(&["--storage.in-memory"]);
    let expected = post_all(&exporter);
    let page = exporter.scrape(TEXT).text();
    let scrape = prometheus_parse::Scrape::parse(page.lines().map(|l| Ok(l.to_owned())))
        .expect("prometheus-parse reads the page");
    for (name, observed, bounds) in [
        (
            "acquire_chat_wait_time_seconds",
            &expected.wait,
            WAIT_BOUNDS,
        ),
        (
            "acquire_chat_duration_seconds",
            &expected.duration,
            DURATION_BOUNDS,
        ),
    ] {
        let histograms: Vec<_> = scrape.samples.iter().filter(|s| s.metric == name).collect();
        assert_eq!(
            histograms.len(),
            observed.len(),
            "{name}: one histogram per series"
        );
        for sample in histograms {
            let key = labels_of(sample);
            let want = &observed[&key];
            let prometheus_parse::Value::Histogram(buckets) = &sample.value else {
                panic!("{name} {key:?} is not a histogram");
            };
            let mut got: Vec<(f64, f64)> = buckets.iter().map(|b| (b.less_than, b.count)).collect();
            got.sort_by(|a, b| a.0.total_cmp(&b.0));
            let mut wanted: Vec<(f64, f64)> = bounds
                .iter()
                .map(|b| (*b, want.cumulative(*b) as f64))
                .collect();
            wanted.push((f64::INFINITY, want.count() as f64));
            assert_eq!(got, wanted, "{name} {key:?}: buckets");
            let scalar = |suffix: &str| {
                scrape
                    .samples
                    .iter()
                    .find(|s| s.metric == format!("{name}_{suffix}") && labels_of(s) == key)
                    .map(|s| match s.value {
                        prometheus_parse::Value::Untyped(v)
                        | prometheus_parse::Value::Counter(v)
                        | prometheus_parse::Value::Gauge(v) => v,
                        _ => f64::NAN,
                    })
            };
            assert_eq!(scalar("count"), Some(want.count() as f64), "{name} {key:?}");
            assert_eq!(scalar("sum"), Some(want.sum()), "{name} {key:?}");
        }
    }
    for (department, n) in &expected.unanswered {
        let counted = scrape.samples.iter().find(|s| {
            s.metric == "acquire_chats_unanswered_total"
                && s.labels.get("department") == Some(department.as_str())
        });
        assert_eq!(
            counted.map(|s| s.value.clone()),
            Some(prometheus_parse::Value::Counter(*n as f64)),
            "unanswered in {department}"
        );
    }
}

/// The native buckets of a protobuf histogram: zero count, and index -> count of the populated
/// buckets, decoded from the spans and deltas.
fn native_buckets(h: &dto::Histogram) -> (u64, BTreeMap<i64, u64>) {
    let mut buckets = BTreeMap::new();
    let (mut index, mut count, mut deltas) = (0i64, 0i64, h.positive_delta.iter());
    // The first span's offset is its first index; each later one's counts from the end of the
    // span before it.
    for span in &h.positive_span {
        index += i64::from(span.offset);
        for _ in 0..span.length {
            count += deltas.next().expect("a delta per bucket");
            if count > 0 {
                buckets.insert(index, count as u64);
            }
            index += 1;
        }
    }
    assert!(deltas.next().is_none(), "no delta beyond the spans");
    (h.zero_count, buckets)
}

#[test]
fn the_protobuf_page_decoded_by_prost_holds_what_was_posted_native_buckets_included() {
    let exporter = Exporter::spawn(&["--storage.in-memory"]);
    let expected = post_all(&exporter);
    let families = exporter.protobuf();
    let openmetrics = exporter.scrape(OPENMETRICS).text();
    let mut reduced = 0;
    for (name, observed, bounds) in [
        (
            "acquire_chat_wait_time_seconds",
            &expected.wait,
            WAIT_BOUNDS,
        ),
        (
            "acquire_chat_duration_seconds",
            &expected.duration,
            DURATION_BOUNDS,
        ),
    ] {
        let family = families
            .iter()
            .find(|f| f.name == name)
            .unwrap_or_else(|| panic!("no {name}"));
        assert_eq!(family.metric.len(), observed.len(), "{name}");
        for metric in &family.metric {
            let key = (
                common::label(metric, "department").unwrap().to_owned(),
                common::label(metric, "agent_role").unwrap().to_owned(),
            );
            let want = &observed[&key];
            let h = metric.histogram.as_ref().expect("a histogram");
            assert_eq!(h.sample_count, want.count(), "{name} {key:?}");
            assert_eq!(h.sample_sum, want.sum(), "{name} {key:?}");
            let classic: Vec<(f64, u64)> = h
                .bucket
                .iter()
                .filter(|b| b.upper_bound.is_finite())
                .map(|b| (b.upper_bound, b.cumulative_count))
                .collect();
            let wanted: Vec<(f64, u64)> =
                bounds.iter().map(|b| (*b, want.cumulative(*b))).collect();
            assert_eq!(classic, wanted, "{name} {key:?}: classic buckets");

            let schema = want.schema();
            reduced += usize::from(schema < SCHEMA);
            assert_eq!(h.schema, schema, "{name} {key:?}: schema");
            assert_eq!(h.zero_threshold, ZERO_THRESHOLD, "{name} {key:?}");
            assert_eq!(
                native_buckets(h),
                want.native(schema),
                "{name} {key:?}: native buckets"
            );
            assert!(h.negative_span.is_empty(), "{name} {key:?}");

            // Every classic bucket's exemplar is its newest chat, the chat id its only label;
            // the protobuf page keeps the newest of them for Prometheus's native ingestion.
            let shown = exemplars_in_openmetrics(&openmetrics, name, &key);
            let newest = want.exemplars(bounds);
            assert_eq!(shown.len(), newest.len(), "{name} {key:?}: {shown:?}");
            for ((le, labels, value, at), (bucket, (id, v))) in shown.iter().zip(&newest) {
                let le_wanted = bounds.get(*bucket).copied().unwrap_or(f64::INFINITY);
                assert_eq!(*le, le_wanted, "{name} {key:?}");
                assert_eq!(labels, &format!("chat_id=\"{id}\""), "{name} {key:?}");
                assert_eq!(value, v, "{name} {key:?}");
                assert!(*at > 1.7e9, "{name} {key:?}: a timestamp in seconds: {at}");
            }
            let in_protobuf: Vec<&dto::Exemplar> = h
                .bucket
                .iter()
                .filter_map(|b| b.exemplar.as_ref())
                .collect();
            assert_eq!(in_protobuf.len(), 1, "{name} {key:?}: the newest only");
            let e = in_protobuf[0];
            let latest = shown
                .iter()
                .map(|(_, _, _, at)| *at)
                .fold(f64::MIN, f64::max);
            let ts = e.timestamp.as_ref().unwrap();
            let e_at = ts.seconds as f64 + f64::from(ts.nanos) / 1e9;
            assert!(
                (e_at - latest).abs() < 1e-3,
                "{name} {key:?}: {e_at} is the newest"
            );
            assert!(
                shown.iter().any(|(_, labels, value, _)| {
                    *labels == format!("chat_id=\"{}\"", e.label[0].value) && *value == e.value
                }),
                "{name} {key:?}"
            );
            assert_eq!(e.label.len(), 1, "{name} {key:?}");
            assert_eq!(e.label[0].name, "chat_id", "{name} {key:?}");
        }
    }
    assert_eq!(reduced, 1, "one series outgrew its bucket limit");
}

/// The exemplars of one series in an OpenMetrics page: (le, label set, value, timestamp) of
/// each bucket line that has one, in page order.
fn exemplars_in_openmetrics(page: &str, name: &str, key: &Key) -> Vec<(f64, String, f64, f64)> {
    let prefix = format!(
        "{name}_bucket{{agent_role=\"{}\",department=\"{}\",le=\"",
        key.1, key.0
    );
    page.lines()
        .filter_map(|line| {
            let rest = line.strip_prefix(&prefix)?;
            let (le, rest) = rest.split_once('"')?;
            let (_, exemplar) = rest.split_once(" # {")?;
            let (labels, rest) = exemplar.split_once("} ")?;
            let mut numbers = rest.split(' ');
            let value = numbers.next()?.parse().ok()?;
            let at = numbers.next()?.parse().ok()?;
            let le = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().ok()?
            };
            Some((le, labels.to_owned(), value, at))
        })
        .collect()
}

/// Chat ids: empty, short, past 23 bytes, past the exemplar limit; several scripts.
fn chat_id() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        "[0-9]{1,6}",
        "[a-z0-9é€漢🙂 _.-]{20,30}",
        "[a-zé漢🙂0-9]{115,130}",
        "[a-z0-9]{180,200}",
    ]
}

/// Waits: 0, the bucket bounds, up to the 30-day limit in milliseconds, near the limit, and
/// spread evenly over the octaves from 1 ms to 30 days (which fills native buckets).
fn wait() -> impl Strategy<Value = f64> {
    prop_oneof![
        Just(0.0),
        (-10.0f64..21.3).prop_map(|octave| octave.exp2()),
        (-10.0f64..21.3).prop_map(|octave| octave.exp2()),
        prop::sample::select(WAIT_BOUNDS.to_vec()),
        Just(2_592_000.0),
        (0u64..=2_592_000_000).prop_map(|ms| ms as f64 / 1000.0),
        (0u64..=100_000).prop_map(|ms| ms as f64 / 1000.0),
        (2_590_000_000u64..=2_592_000_000).prop_map(|ms| ms as f64 / 1000.0),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn recorded_histories_expose_what_the_oracle_computes(
        history in prop::collection::vec((chat_id(), wait()), 1..300),
    ) {
        let metrics = Arc::new(Metrics::new(&Settings::default()));
        let exposition = Exposition::new(metrics.clone());
        let mut observed = Observed::default();
        for (i, (id, v)) in history.iter().enumerate() {
            metrics.apply(&Admitted {
                seq: i as u64 + 1,
                event: ChatEvent {
                    kind: ChatKind::Close,
                    account_id: "1".into(),
                    chat_id: id.clone(),
                    received_ms: 1_700_000_000_000 + 1000 * i as i64,
                    department_id: "1".into(),
                    agent_role: Some("operator".into()),
                    agent_id: None,
                    wait_seconds: Some(*v),
                    duration_seconds: None,
                },
            });
            observed.values.push((id.clone(), *v));
        }
        let mut page = Vec::new();
        exposition.encode(Format::Protobuf, &mut page);
        let families = common::decode_protobuf(&page);
        let wait = families.iter().find(|f| f.name == "acquire_chat_wait_time_seconds").unwrap();
        prop_assert_eq!(wait.metric.len(), 1);
        let h = wait.metric[0].histogram.as_ref().unwrap();
        prop_assert_eq!(h.sample_count, observed.count());
        prop_assert_eq!(h.sample_sum, observed.sum());
        let classic: Vec<(f64, u64)> = h
            .bucket
            .iter()
            .filter(|b| b.upper_bound.is_finite())
            .map(|b| (b.upper_bound, b.cumulative_count))
            .collect();
        let wanted: Vec<(f64, u64)> =
            WAIT_BOUNDS.iter().map(|b| (*b, observed.cumulative(*b))).collect();
        prop_assert_eq!(classic, wanted);
        let schema = observed.schema();
        prop_assert_eq!(h.schema, schema);
        prop_assert_eq!(native_buckets(h), observed.native(schema));

        let newest = observed.exemplars(WAIT_BOUNDS);
        let mut text = Vec::new();
        exposition.encode(Format::OpenMetrics, &mut text);
        let text = String::from_utf8(text).unwrap();
        let key = ("1".to_owned(), "operator".to_owned());
        let shown = exemplars_in_openmetrics(&text, "acquire_chat_wait_time_seconds", &key);
        prop_assert_eq!(shown.len(), newest.len());
        for ((le, labels, value, _), (bucket, (id, v))) in shown.iter().zip(&newest) {
            prop_assert_eq!(*le, WAIT_BOUNDS.get(*bucket).copied().unwrap_or(f64::INFINITY));
            prop_assert_eq!(labels, &format!("chat_id=\"{id}\""));
            prop_assert_eq!(value, v);
        }
        // The protobuf page keeps the newest exemplar whose id fits, the id whole.
        let in_protobuf: Vec<(String, f64)> = h
            .bucket
            .iter()
            .filter_map(|b| b.exemplar.as_ref())
            .map(|e| {
                assert_eq!(e.label.len(), 1);
                (e.label[0].value.clone(), e.value)
            })
            .collect();
        // The last observation whose id fits is its bucket's exemplar, and the newest of all.
        let last_fitting = observed
            .values
            .iter()
            .rev()
            .find(|(id, _)| !id.is_empty() && 7 + id.chars().count() <= 128)
            .cloned();
        prop_assert_eq!(in_protobuf, last_fitting.into_iter().collect::<Vec<_>>());
    }
}
