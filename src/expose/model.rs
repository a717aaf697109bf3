//! The reference: the chat histograms as the protobuf data model (`dto::MetricFamily`), which
//! the generic encoders write in every format. The fast paths ([`super::text::HistogramText`],
//! [`super::protobuf::write_histogram`]) are held byte for byte to it by tests.

use prometheus_client::encoding::prometheus_protobuf::prometheus_data_model as dto;

use super::chats::family_meta;
use super::protobuf::spans_and_deltas_into;
use super::unix_parts;
use crate::record::chats::{CHAT_LABELS, ChatFamily, ChatSeries, ChatVisitor, Series};
use crate::record::histogram::{
    ChatHistogram, EXEMPLAR_LABEL, Exemplar, HistogramLayout, NativeBuckets,
};

/// A series as a [`dto::Metric`] with the given label pairs: classic buckets cumulative with
/// their exemplars (an explicit `+Inf` bucket only when it has an exemplar, as client_golang
/// does), and, when the layout has native buckets, schema, zero bucket, spans and deltas, with
/// the classic exemplars also listed as native exemplars.
pub fn histogram(
    h: &ChatHistogram,
    layout: &HistogramLayout,
    labels: Vec<dto::LabelPair>,
) -> dto::Metric {
    let bounds = layout.bounds();
    let counts = h.bucket_counts();
    let mut bucket = Vec::with_capacity(bounds.len() + 1);
    let mut cumulative: u64 = 0;
    for (i, upper_bound) in bounds.iter().enumerate() {
        cumulative = cumulative.saturating_add(counts.get(i).copied().unwrap_or(0));
        bucket.push(dto::Bucket {
            cumulative_count: cumulative,
            cumulative_count_float: 0.0,
            upper_bound: *upper_bound,
            exemplar: h.exemplar(i).map(exemplar),
        });
    }
    if let Some(e) = h.exemplar(bounds.len()) {
        bucket.push(dto::Bucket {
            cumulative_count: h.count(),
            cumulative_count_float: 0.0,
            upper_bound: f64::INFINITY,
            exemplar: Some(exemplar(e)),
        });
    }
    let mut histogram = dto::Histogram {
        sample_count: h.count(),
        sample_sum: h.sum(),
        bucket,
        ..Default::default()
    };
    if let (Some(native), Some(_)) = (h.native(), layout.native()) {
        fill_native(native, &mut histogram);
        histogram.exemplars = histogram
            .bucket
            .iter()
            .filter_map(|b| b.exemplar.clone())
            .collect();
    }
    dto::Metric {
        label: labels,
        histogram: Some(histogram),
        ..Default::default()
    }
}

fn exemplar(e: &Exemplar) -> dto::Exemplar {
    let mut exemplar = dto::Exemplar {
        label: vec![dto::LabelPair {
            name: EXEMPLAR_LABEL.to_owned(),
            value: e.chat_id.to_string(),
        }],
        value: e.value,
        timestamp: None,
    };
    let (seconds, nanos) = unix_parts(e.timestamp);
    let timestamp = exemplar.timestamp.get_or_insert_with(Default::default);
    timestamp.seconds = seconds;
    timestamp.nanos = nanos;
    exemplar
}

fn fill_native(n: &NativeBuckets, histogram: &mut dto::Histogram) {
    histogram.schema = n.schema();
    histogram.zero_threshold = n.zero_threshold();
    histogram.zero_count = n.zero_count();
    (histogram.positive_span, histogram.positive_delta) = spans_and_deltas(n.positive());
    (histogram.negative_span, histogram.negative_delta) = spans_and_deltas(n.negative());
    if n.needs_noop_span() {
        histogram.positive_span.push(dto::BucketSpan {
            offset: 0,
            length: 0,
        });
    }
}

/// Spans and count deltas of sorted buckets, as [`spans_and_deltas_into`] computes them.
fn spans_and_deltas(buckets: &[(i32, u64)]) -> (Vec<dto::BucketSpan>, Vec<i64>) {
    let mut spans = Vec::new();
    let mut deltas = Vec::with_capacity(buckets.len());
    spans_and_deltas_into(buckets, &mut spans, &mut deltas);
    let spans = spans
        .into_iter()
        .map(|(offset, length)| dto::BucketSpan { offset, length })
        .collect();
    (spans, deltas)
}

/// Both chat families in the data model, by the same walk the direct encoders take.
pub fn chat_families(chats: &ChatSeries) -> Vec<dto::MetricFamily> {
    let mut sink = ModelSink::default();
    chats.walk(&mut sink);
    sink.families
}

#[derive(Default)]
struct ModelSink {
    families: Vec<dto::MetricFamily>,
}

impl ChatVisitor for ModelSink {
    fn begin(&mut self, family: ChatFamily, _: &HistogramLayout, series: usize) {
        let (name, help) = family_meta(family);
        self.families.push(dto::MetricFamily {
            name: name.to_owned(),
            help: help.to_owned(),
            r#type: dto::MetricType::Histogram as i32,
            metric: Vec::with_capacity(series),
            ..Default::default()
        });
    }

    fn series(&mut self, family: ChatFamily, layout: &HistogramLayout, series: &mut Series) {
        let labels = CHAT_LABELS
            .iter()
            .zip(series.label_values())
            .map(|(name, value)| dto::LabelPair {
                name: (*name).to_owned(),
                value: value.to_owned(),
            })
            .collect();
        if let Some(f) = self.families.last_mut() {
            f.metric
                .push(histogram(series.histogram(family), layout, labels));
        }
    }

    fn end(&mut self, _: ChatFamily) {}
}

/// The bucket whose exemplar is the newest, of (bucket, exemplar time) pairs; the last of
/// equals. The one rule for which exemplar a native series keeps, in the data model and in the
/// direct protobuf encoder alike.
pub(crate) fn newest_exemplar(
    exemplars: impl Iterator<Item = (usize, (i64, i32))>,
) -> Option<usize> {
    exemplars.max_by_key(|&(_, t)| t).map(|(i, _)| i)
}

/// For a protobuf scrape: keep only the newest exemplar of each native histogram series.
///
/// A native histogram is one series, and Prometheus keeps a series' exemplars only in increasing
/// time order; Prometheus 2.x also reads just the first bucket exemplar of a native histogram per
/// scrape. With the newest alone, every scrape hands over the latest chat.
pub fn newest_exemplar_only(families: &mut [dto::MetricFamily]) {
    for metric in families.iter_mut().flat_map(|f| f.metric.iter_mut()) {
        newest_exemplar_of(metric);
    }
}

/// [`newest_exemplar_only`] for one series.
pub fn newest_exemplar_of(metric: &mut dto::Metric) {
    let Some(h) = metric.histogram.as_mut() else {
        return;
    };
    if h.positive_span.is_empty() && h.negative_span.is_empty() && h.zero_count == 0 {
        return;
    }
    let newest = newest_exemplar(h.bucket.iter().enumerate().filter_map(|(i, b)| {
        let t = b.exemplar.as_ref()?.timestamp.as_ref()?;
        Some((i, (t.seconds, t.nanos)))
    }));
    for (i, b) in h.bucket.iter_mut().enumerate() {
        if Some(i) != newest {
            b.exemplar = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::histogram::{DEFAULT_ZERO_THRESHOLD, NativeLayout};
    use prost::Message;
    use std::time::{Duration, SystemTime, UNIX_EPOCH};

    /// The contract's wait-time buckets.
    const WAIT_BOUNDS: [f64; 17] = [
        1.0, 2.0, 5.0, 10.0, 15.0, 20.0, 30.0, 45.0, 60.0, 90.0, 120.0, 180.0, 300.0, 600.0, 900.0,
        1200.0, 1800.0,
    ];

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    fn exemplar(chat_id: &str, value: f64, secs: u64) -> Exemplar {
        Exemplar {
            chat_id: chat_id.into(),
            value,
            timestamp: at(secs),
        }
    }

    fn layout(bounds: &[f64], factor: f64, max_buckets: usize) -> HistogramLayout {
        let native = NativeLayout::new(factor, max_buckets).expect("valid native layout");
        HistogramLayout::new(bounds, Some(native)).expect("valid layout")
    }

    #[test]
    fn to_dto_has_cumulative_buckets_exemplars_and_native_spans() {
        let layout = layout(&[1.0, 5.0, 10.0], 2.0, 100);
        let mut h = ChatHistogram::new(&layout);
        for v in [0.0, 0.5, 3.0, 4.0, 7.0] {
            h.observe(&layout, v, None);
        }
        h.observe(&layout, 3.0, Some(exemplar("104111", 3.0, 1_700_000_000)));
        h.observe(
            &layout,
            100.0,
            Some(exemplar("104112", 100.0, 1_700_000_001)),
        );
        let labels = vec![dto::LabelPair {
            name: "department".into(),
            value: "sales".into(),
        }];
        let metric = histogram(&h, &layout, labels.clone());
        assert_eq!(metric.label, labels);
        let hist = metric.histogram.expect("histogram");
        assert_eq!(hist.sample_count, 7);
        assert_eq!(hist.sample_sum, 117.5);
        let buckets: Vec<(f64, u64, Option<&str>)> = hist
            .bucket
            .iter()
            .map(|b| {
                let id = b.exemplar.as_ref().map(|e| e.label[0].value.as_str());
                (b.upper_bound, b.cumulative_count, id)
            })
            .collect();
        assert_eq!(
            buckets,
            [
                (1.0, 2, None),
                (5.0, 5, Some("104111")),
                (10.0, 6, None),
                // Explicit only because it holds an exemplar.
                (f64::INFINITY, 7, Some("104112")),
            ]
        );
        let first = hist.bucket[1].exemplar.as_ref().expect("exemplar");
        assert_eq!(first.label[0].name, "chat_id");
        assert_eq!(first.value, 3.0);
        let ts = first.timestamp.as_ref().expect("timestamp");
        assert_eq!((ts.seconds, ts.nanos), (1_700_000_000, 0));
        assert_eq!(hist.schema, 0);
        assert_eq!(hist.zero_threshold, DEFAULT_ZERO_THRESHOLD);
        assert_eq!(hist.zero_count, 1);
        // Populated: -1 (0.5), 2 (3, 4, 3), 3 (7), 7 (100). The gap 0..=1 is filled with
        // zeros; the gap 4..=6 is three wide and opens a new span.
        let spans: Vec<(i32, u32)> = hist
            .positive_span
            .iter()
            .map(|s| (s.offset, s.length))
            .collect();
        assert_eq!(spans, [(-1, 5), (3, 1)]);
        assert_eq!(hist.positive_delta, [1, -1, 0, 3, -2, 0]);
        assert!(hist.negative_span.is_empty());
        let native_ids: Vec<&str> = hist
            .exemplars
            .iter()
            .map(|e| e.label[0].value.as_str())
            .collect();
        assert_eq!(native_ids, ["104111", "104112"]);
    }

    #[test]
    fn classic_only_layout_has_no_native_fields() {
        let layout = HistogramLayout::new(&WAIT_BOUNDS, None).expect("valid");
        let mut h = ChatHistogram::new(&layout);
        h.observe(&layout, 12.0, Some(exemplar("1", 12.0, 5)));
        let hist = histogram(&h, &layout, vec![]).histogram.expect("histogram");
        assert_eq!(hist.bucket.len(), WAIT_BOUNDS.len());
        assert_eq!(hist.zero_threshold, 0.0);
        assert!(hist.positive_span.is_empty() && hist.exemplars.is_empty());
    }

    #[test]
    fn empty_native_histogram_with_zero_threshold_zero_has_a_no_op_span() {
        let native_layout = NativeLayout::new(1.1, 10)
            .and_then(|n| n.with_zero_threshold(0.0))
            .expect("valid");
        let layout = HistogramLayout::new(&[], Some(native_layout)).expect("valid");
        let hist = histogram(&ChatHistogram::new(&layout), &layout, vec![])
            .histogram
            .expect("histogram");
        assert_eq!(
            hist.positive_span,
            [dto::BucketSpan {
                offset: 0,
                length: 0
            }]
        );
        assert!(hist.positive_delta.is_empty());
    }

    #[test]
    fn dto_round_trips_through_protobuf() {
        let layout = layout(&WAIT_BOUNDS, 1.1, 160);
        let mut h = ChatHistogram::new(&layout);
        for (i, v) in waits(500).into_iter().enumerate() {
            h.observe(&layout, v, Some(exemplar(&i.to_string(), v, 1_700_000_000)));
        }
        h.observe(&layout, -2.5, None);
        let labels = vec![dto::LabelPair {
            name: "agent_role".into(),
            value: "agent".into(),
        }];
        let metric = histogram(&h, &layout, labels);
        let decoded = dto::Metric::decode(metric.encode_to_vec().as_slice()).expect("decodes");
        assert_eq!(decoded, metric);
    }

    #[test]
    fn exemplar_timestamps_before_the_epoch_keep_nanos_positive() {
        let before = UNIX_EPOCH - Duration::from_millis(1500);
        assert_eq!(unix_parts(before), (-2, 500_000_000));
        assert_eq!(unix_parts(UNIX_EPOCH - Duration::from_secs(3)), (-3, 0));
        assert_eq!(unix_parts(at(7) + Duration::from_nanos(5)), (7, 5));
    }

    /// A deterministic spread of wait-like values (0 s to about 40 min, a few exact zeros).
    fn waits(n: u64) -> Vec<f64> {
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                match x % 10 {
                    0 => 0.0,
                    _ => (x >> 11) as f64 / (1u64 << 53) as f64 * 2400.0,
                }
            })
            .collect()
    }
}
