//! Protobuf: the chat histograms written straight from their state as length-delimited
//! `io.prometheus.client.MetricFamily` messages, byte for byte what prost writes for their data
//! model ([`super::model`]), without building it: a scrape of thousands of series is mostly this.

use prometheus_client::encoding::prometheus_protobuf::prometheus_data_model as dto;
use prost::Message as _;

use super::model::newest_exemplar;
use super::unix_parts;
use crate::record::histogram::{
    ChatHistogram, EXEMPLAR_LABEL, Exemplar, HistogramLayout, NativeBuckets,
};

/// Reused buffers for [`write_histogram`], one set per scrape.
#[derive(Debug, Default)]
pub struct ProtobufScratch {
    histogram: Vec<u8>,
    bucket: Vec<u8>,
    exemplar: Vec<u8>,
    small: Vec<u8>,
    spans: Vec<(i32, u32)>,
    deltas: Vec<i64>,
}

/// The `Exemplar` message (without its key and length) into `out`, cleared first; `scratch` is
/// overwritten.
fn write_exemplar(e: &Exemplar, out: &mut Vec<u8>, scratch: &mut Vec<u8>) {
    out.clear();
    wire::label_pair(out, 1, EXEMPLAR_LABEL, &e.chat_id, scratch);
    wire::double(out, 2, e.value);
    // Timestamp { seconds = 1 (int64), nanos = 2 (int32) }, written even when empty.
    let (seconds, nanos) = unix_parts(e.timestamp);
    scratch.clear();
    wire::int64(scratch, 1, seconds);
    wire::int64(scratch, 2, i64::from(nanos));
    wire::message(out, 3, scratch);
}

/// Appends one series as a length-delimited protobuf `Metric` with the given label pairs: byte
/// for byte what prost writes for [`super::model::histogram`] when a native series keeps only
/// its newest bucket exemplar (Prometheus keeps a series' exemplars only in time order).
pub fn write_histogram(
    h: &ChatHistogram,
    layout: &HistogramLayout,
    labels: &[(&str, &str)],
    scratch: &mut ProtobufScratch,
    out: &mut Vec<u8>,
) {
    let native =
        layout.native().is_some() && h.native().is_some_and(NativeBuckets::reads_as_native);
    let bounds = layout.bounds();
    let inf_bucket = h.exemplars().last().is_some_and(|(i, _)| i == bounds.len());
    // A native series keeps the newest bucket exemplar only (the last of equals, as max_by_key).
    let newest = native
        .then(|| newest_exemplar(h.exemplars().map(|(i, e)| (i, unix_parts(e.timestamp)))))
        .flatten();
    let mut exemplars = h.exemplars().peekable();
    let ProtobufScratch {
        histogram: body,
        bucket,
        exemplar,
        small,
        spans,
        deltas,
    } = scratch;
    body.clear();
    wire::uint64(body, 1, h.count());
    wire::double(body, 2, h.sum());
    let counts = h.bucket_counts();
    let mut cumulative: u64 = 0;
    let buckets = bounds.len() + usize::from(inf_bucket);
    for i in 0..buckets {
        let (count, upper_bound) = match bounds.get(i) {
            Some(&bound) => {
                cumulative = cumulative.saturating_add(counts.get(i).copied().unwrap_or(0));
                (cumulative, bound)
            }
            None => (h.count(), f64::INFINITY),
        };
        bucket.clear();
        wire::uint64(bucket, 1, count);
        wire::double(bucket, 2, upper_bound);
        if let Some((_, e)) = exemplars.next_if(|&(j, _)| j == i) {
            if !native || newest == Some(i) {
                write_exemplar(e, exemplar, small);
                wire::message(bucket, 3, exemplar);
            }
        }
        wire::message(body, 3, bucket);
    }
    if let (Some(n), true) = (h.native(), layout.native().is_some()) {
        wire::sint32(body, 5, n.schema());
        wire::double(body, 6, n.zero_threshold());
        wire::uint64(body, 7, n.zero_count());
        spans_and_deltas_into(n.negative(), spans, deltas);
        wire::spans_and_deltas(body, 9, 10, spans, deltas, bucket);
        spans_and_deltas_into(n.positive(), spans, deltas);
        if n.needs_noop_span() {
            spans.push((0, 0));
        }
        wire::spans_and_deltas(body, 12, 13, spans, deltas, bucket);
        for (_, e) in h.exemplars() {
            write_exemplar(e, exemplar, small);
            wire::message(body, 16, exemplar);
        }
    }
    // The Metric: label pairs (field 1), then the histogram (field 7).
    bucket.clear();
    for (name, value) in labels {
        wire::label_pair(bucket, 1, name, value, exemplar);
    }
    let len = bucket.len() + 1 + wire::varint_len(body.len() as u64) + body.len();
    wire::varint(out, len as u64);
    out.extend_from_slice(bucket);
    wire::message(out, 7, body);
}

/// A family's head: its length (of the head and the `Metric` fields after it) and its name,
/// help and type, for a family whose series are written by [`write_histogram`] into `body`.
pub fn write_family_head(name: &str, help: &str, body_len: usize, out: &mut Vec<u8>) {
    let header = dto::MetricFamily {
        name: name.to_owned(),
        help: help.to_owned(),
        r#type: dto::MetricType::Histogram as i32,
        ..Default::default()
    };
    prost::encoding::encode_varint((header.encoded_len() + body_len) as u64, out);
    // A Vec grows as needed: encoding into it only fails past isize::MAX bytes.
    let _ = header.encode(out);
}

/// The key of a `MetricFamily.metric` field (4, length-delimited), which [`write_histogram`]'s
/// output follows.
pub fn write_metric_key(out: &mut Vec<u8>) {
    prost::encoding::encode_key(4, prost::encoding::WireType::LengthDelimited, out);
}

/// Spans and count deltas of sorted buckets into reused buffers, spans as (offset, length). Gaps
/// of one or two empty buckets are filled with zeros inside a span rather than opening a new one
/// (cheaper to encode; as client_golang does).
pub(crate) fn spans_and_deltas_into(
    buckets: &[(i32, u64)],
    spans: &mut Vec<(i32, u32)>,
    deltas: &mut Vec<i64>,
) {
    spans.clear();
    deltas.clear();
    let mut previous: i64 = 0;
    let mut next_index: i32 = 0;
    for &(index, count) in buckets {
        let gap = index.saturating_sub(next_index);
        let filled = if spans.is_empty() || gap > 2 {
            spans.push((gap, 0));
            0
        } else {
            for _ in 0..gap {
                deltas.push(-previous);
                previous = 0;
            }
            gap.unsigned_abs()
        };
        let count = i64::try_from(count).unwrap_or(i64::MAX);
        deltas.push(count - previous);
        previous = count;
        if let Some(span) = spans.last_mut() {
            span.1 += filled + 1;
        }
        next_index = index.saturating_add(1);
    }
}

/// Protobuf wire format, as prost writes proto3 fields: scalars equal to their default are left
/// out, fields in the order of their numbers.
mod wire {
    /// Appends a base-128 varint.
    pub fn varint(out: &mut Vec<u8>, mut v: u64) {
        while v >= 0x80 {
            out.push((v as u8) | 0x80);
            v >>= 7;
        }
        out.push(v as u8);
    }

    /// The length of `v` as a varint.
    pub fn varint_len(v: u64) -> usize {
        // One byte per started group of 7 bits, at least one.
        (64 - (v | 1).leading_zeros() as usize).div_ceil(7)
    }

    fn key(out: &mut Vec<u8>, field: u32, wire_type: u32) {
        varint(out, u64::from(field << 3 | wire_type));
    }

    /// A `uint64` field.
    pub fn uint64(out: &mut Vec<u8>, field: u32, v: u64) {
        if v != 0 {
            key(out, field, 0);
            varint(out, v);
        }
    }

    /// An `int64` or `int32` field (an `int32` is sign-extended to 64 bits).
    pub fn int64(out: &mut Vec<u8>, field: u32, v: i64) {
        if v != 0 {
            key(out, field, 0);
            varint(out, v as u64);
        }
    }

    /// A `sint32` field (zigzag).
    pub fn sint32(out: &mut Vec<u8>, field: u32, v: i32) {
        if v != 0 {
            key(out, field, 0);
            varint(out, u64::from(((v << 1) ^ (v >> 31)) as u32));
        }
    }

    /// A `double` field. Like prost, -0.0 counts as the default and is left out.
    pub fn double(out: &mut Vec<u8>, field: u32, v: f64) {
        if v != 0.0 {
            key(out, field, 1);
            out.extend_from_slice(&v.to_le_bytes());
        }
    }

    /// A message field (always written, even when empty).
    pub fn message(out: &mut Vec<u8>, field: u32, body: &[u8]) {
        key(out, field, 2);
        varint(out, body.len() as u64);
        out.extend_from_slice(body);
    }

    /// A `LabelPair` message field; `scratch` is overwritten.
    pub fn label_pair(
        out: &mut Vec<u8>,
        field: u32,
        name: &str,
        value: &str,
        scratch: &mut Vec<u8>,
    ) {
        scratch.clear();
        for (number, s) in [(1, name), (2, value)] {
            if !s.is_empty() {
                message(scratch, number, s.as_bytes());
            }
        }
        message(out, field, scratch);
    }

    /// `BucketSpan` messages (field `span_field`) and packed `sint64` deltas (`delta_field`);
    /// `scratch` is overwritten.
    pub fn spans_and_deltas(
        out: &mut Vec<u8>,
        span_field: u32,
        delta_field: u32,
        spans: &[(i32, u32)],
        deltas: &[i64],
        scratch: &mut Vec<u8>,
    ) {
        for &(offset, length) in spans {
            scratch.clear();
            sint32(scratch, 1, offset);
            uint64(scratch, 2, u64::from(length));
            message(out, span_field, scratch);
        }
        if !deltas.is_empty() {
            let zigzag = |d: i64| ((d << 1) ^ (d >> 63)) as u64;
            let len: usize = deltas.iter().map(|&d| varint_len(zigzag(d))).sum();
            key(out, delta_field, 2);
            varint(out, len as u64);
            for &d in deltas {
                varint(out, zigzag(d));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::expose::model::{histogram, newest_exemplar_of};
    use crate::record::histogram::NativeLayout;
    use std::time::{Duration, UNIX_EPOCH};

    /// prost's bytes for the series: `to_dto`, then only the newest bucket exemplar of a native
    /// series, as a protobuf scrape gives it (`record::newest_exemplar_of`).
    fn prost_metric(
        h: &ChatHistogram,
        layout: &HistogramLayout,
        labels: &[(&str, &str)],
    ) -> Vec<u8> {
        let labels = labels
            .iter()
            .map(|(name, value)| dto::LabelPair {
                name: name.to_string(),
                value: value.to_string(),
            })
            .collect();
        let mut metric = histogram(h, layout, labels);
        newest_exemplar_of(&mut metric);
        metric.encode_length_delimited_to_vec()
    }

    proptest::proptest! {
        #[test]
        fn direct_protobuf_equals_prost(
            values in proptest::collection::vec(
                proptest::prop_oneof![
                    -5_000.0..5_000.0f64,
                    proptest::strategy::Just(0.0),
                    proptest::strategy::Just(-0.0),
                    proptest::strategy::Just(1e-300),
                    proptest::strategy::Just(1.0),
                    proptest::strategy::Just(f64::INFINITY),
                ],
                0..60,
            ),
            times in proptest::collection::vec(-3i64..3, 60),
            nanos in proptest::collection::vec(proptest::prop_oneof![proptest::strategy::Just(0u32), 0u32..1_000_000_000], 60),
            ids in proptest::collection::vec("[a-z0-9\"]{0,6}", 60),
            bounds in proptest::collection::btree_set(-10i32..2_000, 0..8),
            native in proptest::option::of((1.01f64..8.0, 1usize..20, proptest::prop_oneof![proptest::strategy::Just(0.0), 0.0..2.0f64])),
            department in "[a-z ]{0,5}",
        ) {
            let bounds: Vec<f64> = bounds.into_iter().map(f64::from).collect();
            let native = native.map(|(factor, max, zero)| {
                NativeLayout::new(factor, max).and_then(|n| n.with_zero_threshold(zero)).expect("native layout")
            });
            let layout = HistogramLayout::new(&bounds, native).expect("layout");
            let mut h = ChatHistogram::new(&layout);
            for (i, v) in values.iter().enumerate() {
                let t = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
                let t = match times[i] {
                    s if s >= 0 => t + Duration::new(s as u64, nanos[i]),
                    s => UNIX_EPOCH - Duration::new(s.unsigned_abs(), nanos[i]),
                };
                let e = Exemplar { chat_id: ids[i].as_str().into(), value: *v, timestamp: t };
                h.observe(&layout, *v, (i % 3 != 2).then_some(e));
            }
            let labels = [("agent_role", "operator"), ("department", department.as_str())];
            let mut direct = Vec::new();
            write_histogram(&h, &layout, &labels, &mut ProtobufScratch::default(), &mut direct);
            proptest::prop_assert_eq!(direct, prost_metric(&h, &layout, &labels));
        }
    }
}
