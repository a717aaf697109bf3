//! One histogram series of chat wait or duration: classic buckets with one exemplar each, plus
//! native (sparse exponential) buckets, exported as a protobuf [`dto::Metric`].
//!
//! The state depends only on the observations and their order, never on the clock: the exporter
//! rebuilds its histograms from stored events on restart and must show the same `_bucket`, `_sum`
//! and `_count` afterwards. So when the native buckets outgrow their limit the resolution is
//! reduced (schema - 1, neighbouring buckets merged); the histogram is never reset.
//!
//! Native bucketing follows the Prometheus native histogram specification: for schema `s` the
//! positive bucket `i` covers `(base^(i-1), base^i]` with `base = 2^(2^-s)`. The index is computed
//! from the binary exponent of the value (as `frexp` gives it), so powers of two are exact, and
//! for schemas above 0 from a table of the bucket boundaries within one power of two, each the
//! largest `f64` not above the exact boundary, so every `f64` lands in the bucket the exact
//! formula gives.

use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

use prometheus_client::encoding::prometheus_protobuf::prometheus_data_model as dto;

/// Default zero bucket threshold, 2^-128: a bucket boundary at every schema, and small enough
/// that only a wait of exactly 0 s (and nothing a clock can measure) falls into it.
pub const DEFAULT_ZERO_THRESHOLD: f64 = 2.938_735_877_055_719e-39;

/// The label name of every exemplar.
pub const EXEMPLAR_LABEL: &str = "chat_id";

/// OpenMetrics caps the label names and values of one exemplar at 128 UTF-8 characters together.
pub const MAX_EXEMPLAR_LABEL_CHARS: usize = 128;

/// Lowest standard schema (growth factor 2^16 between buckets).
const MIN_SCHEMA: i32 = -4;
/// Highest standard schema (growth factor 2^(1/256) between buckets).
const MAX_SCHEMA: i32 = 8;

/// Why a histogram layout was refused.
#[derive(Debug, Clone, Copy, PartialEq, thiserror::Error)]
pub enum LayoutError {
    /// A classic bucket bound is NaN or infinite (a trailing `+Inf` is allowed and dropped).
    #[error("bucket bound {0} is not a finite number")]
    BoundNotFinite(f64),
    /// Classic bucket bounds must increase strictly.
    #[error("bucket bounds must increase strictly, but {prev} is followed by {next}")]
    BoundsNotIncreasing {
        /// The earlier bound.
        prev: f64,
        /// The bound that is not above it.
        next: f64,
    },
    /// The native bucket factor must be a finite number above 1.
    #[error("native bucket factor must be a finite number greater than 1, got {0}")]
    BucketFactor(f64),
    /// At least one native bucket must be allowed.
    #[error("native max buckets must be at least 1")]
    ZeroMaxBuckets,
    /// The zero bucket threshold must be a finite number, 0 or above.
    #[error("native zero threshold must be a finite number of 0 or more, got {0}")]
    ZeroThreshold(f64),
}

/// Result alias of this module.
pub type Result<T, E = LayoutError> = std::result::Result<T, E>;

/// Shared, immutable layout of every series of one histogram metric.
#[derive(Debug, Clone, PartialEq)]
pub struct HistogramLayout {
    bounds: Vec<f64>,
    native: Option<NativeLayout>,
}

impl HistogramLayout {
    /// A layout with the given classic upper bounds (strictly increasing, finite; the `+Inf`
    /// bucket is implicit, an explicit trailing `+Inf` is dropped) and optional native buckets.
    pub fn new(bounds: &[f64], native: Option<NativeLayout>) -> Result<Self> {
        let bounds = match bounds.split_last() {
            Some((last, rest)) if *last == f64::INFINITY => rest,
            _ => bounds,
        };
        if let Some(bound) = bounds.iter().find(|bound| !bound.is_finite()) {
            return Err(LayoutError::BoundNotFinite(*bound));
        }
        if let Some(pair) = bounds.windows(2).find(|pair| pair[1] <= pair[0]) {
            return Err(LayoutError::BoundsNotIncreasing {
                prev: pair[0],
                next: pair[1],
            });
        }
        Ok(Self {
            bounds: bounds.to_vec(),
            native,
        })
    }

    /// The classic upper bounds, without the implicit `+Inf`.
    pub fn bounds(&self) -> &[f64] {
        &self.bounds
    }

    /// The native bucket layout, if the histogram has native buckets.
    pub fn native(&self) -> Option<&NativeLayout> {
        self.native.as_ref()
    }

    /// Index of the classic bucket of `v`; `bounds.len()` is the `+Inf` bucket (NaN lands there).
    fn classic_index(&self, v: f64) -> usize {
        if v.is_nan() {
            return self.bounds.len();
        }
        self.bounds.partition_point(|bound| *bound < v)
    }
}

/// Native (sparse exponential) buckets of a histogram: starting schema, bucket limit, zero bucket.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct NativeLayout {
    schema: i32,
    max_buckets: usize,
    zero_threshold: f64,
}

impl NativeLayout {
    /// Native buckets whose growth factor is the largest standard one not above `bucket_factor`
    /// (schema -4 to 8; below 2^(2^-8) the finest, schema 8, is used), holding at most
    /// `max_buckets` populated buckets before the resolution is halved.
    pub fn new(bucket_factor: f64, max_buckets: usize) -> Result<Self> {
        if !(bucket_factor.is_finite() && bucket_factor > 1.0) {
            return Err(LayoutError::BucketFactor(bucket_factor));
        }
        if max_buckets == 0 {
            return Err(LayoutError::ZeroMaxBuckets);
        }
        Ok(Self {
            schema: pick_schema(bucket_factor),
            max_buckets,
            zero_threshold: DEFAULT_ZERO_THRESHOLD,
        })
    }

    /// The same layout with another zero bucket threshold (values with `|v| <= threshold` count
    /// in the zero bucket; 0 keeps only exact zeros there).
    pub fn with_zero_threshold(self, threshold: f64) -> Result<Self> {
        if !(threshold.is_finite() && threshold >= 0.0) {
            return Err(LayoutError::ZeroThreshold(threshold));
        }
        Ok(Self {
            zero_threshold: threshold,
            ..self
        })
    }

    /// The schema every series starts with.
    pub fn schema(&self) -> i32 {
        self.schema
    }

    /// The most populated native buckets (positive and negative together) a series keeps before
    /// it halves its resolution.
    pub fn max_buckets(&self) -> usize {
        self.max_buckets
    }

    /// The zero bucket threshold.
    pub fn zero_threshold(&self) -> f64 {
        self.zero_threshold
    }
}

/// A chat id as an exemplar keeps it: up to 23 bytes in place (the vendor's ids are short
/// numbers), longer ones shared on the heap. A scrape reads thousands of exemplars; an id in
/// place is read with the exemplar rather than from another allocation.
#[derive(Clone, PartialEq, Eq)]
pub enum ChatId {
    /// An id of up to 23 bytes: its length and bytes.
    Inline(u8, [u8; 23]),
    /// A longer id.
    Shared(std::sync::Arc<str>),
}

impl From<&str> for ChatId {
    fn from(id: &str) -> Self {
        let mut bytes = [0u8; 23];
        match (bytes.get_mut(..id.len()), u8::try_from(id.len())) {
            (Some(place), Ok(len)) => {
                place.copy_from_slice(id.as_bytes());
                Self::Inline(len, bytes)
            }
            _ => Self::Shared(id.into()),
        }
    }
}

impl std::ops::Deref for ChatId {
    type Target = str;

    fn deref(&self) -> &str {
        match self {
            // Always the UTF-8 a &str gave: the check cannot fail.
            Self::Inline(len, bytes) => {
                std::str::from_utf8(&bytes[..usize::from(*len)]).unwrap_or_default()
            }
            Self::Shared(id) => id,
        }
    }
}

impl std::fmt::Debug for ChatId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(&**self, f)
    }
}

/// An exemplar: the chat behind one observation. Its only label is the chat id (never personal
/// data).
#[derive(Debug, Clone, PartialEq)]
pub struct Exemplar {
    /// The chat id, the value of the `chat_id` label.
    pub chat_id: ChatId,
    /// The observed value.
    pub value: f64,
    /// When the observed event happened.
    pub timestamp: SystemTime,
}

impl Exemplar {
    /// Whether the label set is exposable: a non-empty id within the OpenMetrics limit of 128
    /// characters for names and values together. Others are dropped, not truncated: a cut id
    /// would point at another chat or at none.
    fn fits(&self) -> bool {
        !self.chat_id.is_empty()
            && EXEMPLAR_LABEL.len() + self.chat_id.chars().count() <= MAX_EXEMPLAR_LABEL_CHARS
    }

    fn to_dto(&self) -> dto::Exemplar {
        let mut exemplar = dto::Exemplar {
            label: vec![dto::LabelPair {
                name: EXEMPLAR_LABEL.to_owned(),
                value: self.chat_id.to_string(),
            }],
            value: self.value,
            timestamp: None,
        };
        let (seconds, nanos) = unix_parts(self.timestamp);
        let timestamp = exemplar.timestamp.get_or_insert_with(Default::default);
        timestamp.seconds = seconds;
        timestamp.nanos = nanos;
        exemplar
    }
}

/// Reused buffers for [`ChatHistogram::write_protobuf`], one set per scrape.
#[derive(Debug, Default)]
pub struct ProtobufScratch {
    histogram: Vec<u8>,
    bucket: Vec<u8>,
    exemplar: Vec<u8>,
    small: Vec<u8>,
    spans: Vec<(i32, u32)>,
    deltas: Vec<i64>,
}

impl Exemplar {
    /// The `Exemplar` message (without its key and length) into `out`, cleared first; `scratch`
    /// is overwritten.
    fn write_protobuf(&self, out: &mut Vec<u8>, scratch: &mut Vec<u8>) {
        out.clear();
        wire::label_pair(out, 1, EXEMPLAR_LABEL, &self.chat_id, scratch);
        wire::double(out, 2, self.value);
        // Timestamp { seconds = 1 (int64), nanos = 2 (int32) }, written even when empty.
        let (seconds, nanos) = unix_parts(self.timestamp);
        scratch.clear();
        wire::int64(scratch, 1, seconds);
        wire::int64(scratch, 2, i64::from(nanos));
        wire::message(out, 3, scratch);
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

/// Seconds and non-negative nanoseconds since the Unix epoch, saturating far outside it.
pub(crate) fn unix_parts(t: SystemTime) -> (i64, i32) {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => (
            i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
            i32::try_from(d.subsec_nanos()).unwrap_or(0),
        ),
        Err(before) => {
            let d = before.duration();
            let seconds = i64::try_from(d.as_secs()).unwrap_or(i64::MAX);
            match i32::try_from(d.subsec_nanos()).unwrap_or(0) {
                0 => (seconds.saturating_neg(), 0),
                nanos => (
                    seconds.saturating_neg().saturating_sub(1),
                    1_000_000_000 - nanos,
                ),
            }
        }
    }
}

/// One histogram series. Plain data: callers wrap it in a `Mutex`, and always pass the layout it
/// was created with.
#[derive(Debug, Clone, PartialEq)]
pub struct ChatHistogram {
    /// Observations per classic bucket (not cumulative); the last one is `+Inf`.
    counts: Vec<u64>,
    /// Newest exemplar per classic bucket (`+Inf` included) that has one, as (bucket index,
    /// exemplar) sorted by index: most buckets have none, and a scrape reads only these.
    exemplars: Vec<(usize, Exemplar)>,
    count: u64,
    sum: f64,
    native: Option<NativeBuckets>,
}

impl ChatHistogram {
    /// An empty series of the given layout.
    pub fn new(layout: &HistogramLayout) -> Self {
        let buckets = layout.bounds.len() + 1;
        Self {
            counts: vec![0; buckets],
            exemplars: Vec::new(),
            count: 0,
            sum: 0.0,
            native: layout.native.as_ref().map(NativeBuckets::new),
        }
    }

    /// Records one observation, with the chat behind it as exemplar of its classic bucket (kept
    /// if it is at least as new as the bucket's current one). NaN is counted (in `+Inf`, and it
    /// makes the sum NaN, as in client_golang) but not in the native buckets: callers should not
    /// observe it.
    pub fn observe(&mut self, layout: &HistogramLayout, v: f64, exemplar: Option<Exemplar>) {
        let bucket = layout.classic_index(v);
        if let Some(count) = self.counts.get_mut(bucket) {
            *count = count.saturating_add(1);
        }
        self.count = self.count.saturating_add(1);
        self.sum += v;
        if let (Some(native), Some(native_layout)) = (self.native.as_mut(), layout.native()) {
            if !v.is_nan() {
                native.observe(v, native_layout.max_buckets);
            }
        }
        if let Some(exemplar) = exemplar.filter(Exemplar::fits) {
            match self.exemplars.binary_search_by_key(&bucket, |&(i, _)| i) {
                Ok(at) => {
                    let slot = &mut self.exemplars[at].1;
                    if exemplar.timestamp >= slot.timestamp {
                        *slot = exemplar;
                    }
                }
                Err(at) => self.exemplars.insert(at, (bucket, exemplar)),
            }
        }
    }

    /// Number of observations.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// Sum of the observations, added in the order they were observed.
    pub fn sum(&self) -> f64 {
        self.sum
    }

    /// The series as a [`dto::Metric`] with the given label pairs: classic buckets cumulative
    /// with their exemplars (an explicit `+Inf` bucket only when it has an exemplar, as
    /// client_golang does), and, when the layout has native buckets, schema, zero bucket, spans
    /// and deltas, with the classic exemplars also listed as native exemplars.
    pub fn to_dto(&self, layout: &HistogramLayout, labels: Vec<dto::LabelPair>) -> dto::Metric {
        let mut bucket = Vec::with_capacity(layout.bounds.len() + 1);
        let mut cumulative: u64 = 0;
        for (i, upper_bound) in layout.bounds.iter().enumerate() {
            cumulative = cumulative.saturating_add(self.counts.get(i).copied().unwrap_or(0));
            bucket.push(dto::Bucket {
                cumulative_count: cumulative,
                cumulative_count_float: 0.0,
                upper_bound: *upper_bound,
                exemplar: self.exemplar(i).map(Exemplar::to_dto),
            });
        }
        if let Some(exemplar) = self.exemplar(layout.bounds.len()) {
            bucket.push(dto::Bucket {
                cumulative_count: self.count,
                cumulative_count_float: 0.0,
                upper_bound: f64::INFINITY,
                exemplar: Some(exemplar.to_dto()),
            });
        }
        let mut histogram = dto::Histogram {
            sample_count: self.count,
            sample_sum: self.sum,
            bucket,
            ..Default::default()
        };
        if let (Some(native), Some(_)) = (&self.native, layout.native()) {
            native.fill_dto(&mut histogram);
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

    /// Observations per classic bucket, not cumulative, the `+Inf` bucket last.
    pub fn bucket_counts(&self) -> &[u64] {
        &self.counts
    }

    /// The newest exemplar of a classic bucket (index as in [`Self::bucket_counts`]).
    pub fn exemplar(&self, bucket: usize) -> Option<&Exemplar> {
        self.exemplars
            .binary_search_by_key(&bucket, |&(i, _)| i)
            .ok()
            .map(|at| &self.exemplars[at].1)
    }

    /// The buckets that have an exemplar, with it, in bucket order.
    pub fn exemplars(&self) -> impl Iterator<Item = (usize, &Exemplar)> {
        self.exemplars.iter().map(|(i, e)| (*i, e))
    }

    /// Appends the series as a length-delimited protobuf `Metric` with the given label pairs:
    /// byte for byte what prost writes for [`Self::to_dto`] when a native series keeps only its
    /// newest bucket exemplar (Prometheus keeps a series' exemplars only in time order), but
    /// without building the data model: a scrape of thousands of series is mostly this.
    pub fn write_protobuf(
        &self,
        layout: &HistogramLayout,
        labels: &[(&str, &str)],
        scratch: &mut ProtobufScratch,
        out: &mut Vec<u8>,
    ) {
        let native = layout.native().is_some()
            && self
                .native
                .as_ref()
                .is_some_and(NativeBuckets::reads_as_native);
        let bounds = layout.bounds();
        let inf_bucket = self
            .exemplars
            .last()
            .is_some_and(|&(i, _)| i == bounds.len());
        // A native series keeps the newest bucket exemplar only (the last of equals, as max_by_key).
        let newest = native
            .then(|| {
                self.exemplars()
                    .map(|(i, e)| (i, unix_parts(e.timestamp)))
                    .max_by_key(|&(_, t)| t)
                    .map(|(i, _)| i)
            })
            .flatten();
        let mut exemplars = self.exemplars().peekable();
        let ProtobufScratch {
            histogram: h,
            bucket,
            exemplar,
            small,
            spans,
            deltas,
        } = scratch;
        h.clear();
        wire::uint64(h, 1, self.count);
        wire::double(h, 2, self.sum);
        let mut cumulative: u64 = 0;
        let buckets = bounds.len() + usize::from(inf_bucket);
        for i in 0..buckets {
            let (count, upper_bound) = match bounds.get(i) {
                Some(&bound) => {
                    cumulative =
                        cumulative.saturating_add(self.counts.get(i).copied().unwrap_or(0));
                    (cumulative, bound)
                }
                None => (self.count, f64::INFINITY),
            };
            bucket.clear();
            wire::uint64(bucket, 1, count);
            wire::double(bucket, 2, upper_bound);
            if let Some((_, e)) = exemplars.next_if(|&(j, _)| j == i) {
                if !native || newest == Some(i) {
                    e.write_protobuf(exemplar, small);
                    wire::message(bucket, 3, exemplar);
                }
            }
            wire::message(h, 3, bucket);
        }
        if let (Some(n), true) = (&self.native, layout.native().is_some()) {
            wire::sint32(h, 5, n.schema);
            wire::double(h, 6, n.zero_threshold);
            wire::uint64(h, 7, n.zero_count);
            spans_and_deltas_into(&n.negative, spans, deltas);
            wire::spans_and_deltas(h, 9, 10, spans, deltas, bucket);
            spans_and_deltas_into(&n.positive, spans, deltas);
            if n.needs_noop_span() {
                spans.push((0, 0));
            }
            wire::spans_and_deltas(h, 12, 13, spans, deltas, bucket);
            for (_, e) in self.exemplars() {
                e.write_protobuf(exemplar, small);
                wire::message(h, 16, exemplar);
            }
        }
        // The Metric: label pairs (field 1), then the histogram (field 7).
        bucket.clear();
        for (name, value) in labels {
            wire::label_pair(bucket, 1, name, value, exemplar);
        }
        let len = bucket.len() + 1 + wire::varint_len(h.len() as u64) + h.len();
        wire::varint(out, len as u64);
        out.extend_from_slice(bucket);
        wire::message(out, 7, h);
    }
}

/// The native part of one series.
#[derive(Debug, Clone, PartialEq)]
struct NativeBuckets {
    schema: i32,
    zero_threshold: f64,
    zero_count: u64,
    /// Populated positive buckets as (index, count), sorted by index.
    positive: Vec<(i32, u64)>,
    /// Populated negative buckets as (index of the absolute value, count), sorted by index.
    negative: Vec<(i32, u64)>,
}

impl NativeBuckets {
    fn new(layout: &NativeLayout) -> Self {
        Self {
            schema: layout.schema,
            zero_threshold: layout.zero_threshold,
            zero_count: 0,
            positive: Vec::new(),
            negative: Vec::new(),
        }
    }

    /// Adds a non-NaN value, then halves the resolution until at most `max_buckets` are
    /// populated (or the lowest schema is reached).
    fn observe(&mut self, v: f64, max_buckets: usize) {
        if v > self.zero_threshold {
            add_to_bucket(&mut self.positive, bucket_index(v, self.schema));
        } else if v < -self.zero_threshold {
            add_to_bucket(&mut self.negative, bucket_index(-v, self.schema));
        } else {
            self.zero_count = self.zero_count.saturating_add(1);
        }
        while self.positive.len() + self.negative.len() > max_buckets && self.schema > MIN_SCHEMA {
            self.halve_resolution();
        }
    }

    /// Schema - 1: bucket `i` becomes bucket `ceil(i / 2)`, so buckets `2j-1` and `2j` merge.
    fn halve_resolution(&mut self) {
        self.schema -= 1;
        for buckets in [&mut self.positive, &mut self.negative] {
            let mut merged: Vec<(i32, u64)> = Vec::with_capacity(buckets.len());
            for &(index, count) in buckets.iter() {
                // Arithmetic shift floors, so (i + 1) >> 1 is ceil(i / 2) for negative i too.
                let index = (index + 1) >> 1;
                match merged.last_mut() {
                    Some((last, total)) if *last == index => *total = total.saturating_add(count),
                    _ => merged.push((index, count)),
                }
            }
            *buckets = merged;
        }
    }

    /// Without a bucket, a zero count or a zero threshold the series would read as a classic
    /// histogram: a no-op span marks it native (as client_golang does).
    fn needs_noop_span(&self) -> bool {
        self.zero_threshold == 0.0
            && self.zero_count == 0
            && self.positive.is_empty()
            && self.negative.is_empty()
    }

    /// Whether Prometheus reads the protobuf form as a native histogram: it has a span (a
    /// bucket, or the no-op one) or a zero bucket count.
    fn reads_as_native(&self) -> bool {
        self.zero_count != 0
            || !self.positive.is_empty()
            || !self.negative.is_empty()
            || self.needs_noop_span()
    }

    fn fill_dto(&self, histogram: &mut dto::Histogram) {
        histogram.schema = self.schema;
        histogram.zero_threshold = self.zero_threshold;
        histogram.zero_count = self.zero_count;
        (histogram.positive_span, histogram.positive_delta) = spans_and_deltas(&self.positive);
        (histogram.negative_span, histogram.negative_delta) = spans_and_deltas(&self.negative);
        if self.needs_noop_span() {
            histogram.positive_span.push(dto::BucketSpan {
                offset: 0,
                length: 0,
            });
        }
    }
}

fn add_to_bucket(buckets: &mut Vec<(i32, u64)>, index: i32) {
    match buckets.binary_search_by_key(&index, |&(i, _)| i) {
        Ok(at) => buckets[at].1 = buckets[at].1.saturating_add(1),
        Err(at) => buckets.insert(at, (index, 1)),
    }
}

/// Spans and count deltas of sorted buckets. Gaps of one or two empty buckets are filled with
/// zeros inside a span rather than opening a new one (cheaper to encode; as client_golang does).
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

/// [`spans_and_deltas`] into reused buffers: spans as (offset, length).
fn spans_and_deltas_into(
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

/// Index of the native bucket holding `v` (> 0, not NaN) at `schema`.
fn bucket_index(v: f64, schema: i32) -> i32 {
    // +Inf gets the bucket after the one of the largest finite value.
    let (finite, overflow) = if v.is_infinite() {
        (f64::MAX, 1)
    } else {
        (v, 0)
    };
    let (frac, exp) = frexp(finite);
    let index = if schema > 0 {
        let bounds = frac_bounds(schema);
        let within = bounds.partition_point(|bound| *bound < frac);
        // At most 256 bounds per power of two, so both conversions are lossless.
        within as i32 + (exp - 1) * bounds.len() as i32
    } else {
        // A power of two is the upper bound of its bucket, not the start of the next one.
        let index0 = if frac == 0.5 { exp - 1 } else { exp };
        let shift = -schema;
        (index0 + (1 << shift) - 1) >> shift
    };
    index + overflow
}

/// `v = frac * 2^exp` with `frac` in [0.5, 1), for finite `v > 0`.
fn frexp(v: f64) -> (f64, i32) {
    const EXP_MASK: u64 = 0x7ff << 52;
    let bits = v.to_bits();
    let biased = ((bits & EXP_MASK) >> 52) as i32;
    if biased == 0 {
        // Subnormal: scale into the normal range by an exact power of two, 2^54.
        let (frac, exp) = frexp(v * f64::from_bits((1023 + 54) << 52));
        return (frac, exp - 54);
    }
    (
        f64::from_bits((bits & !EXP_MASK) | (1022 << 52)),
        biased - 1022,
    )
}

/// Upper bounds, scaled into [0.5, 1), of the `2^schema` buckets within one power of two, for
/// schema 1 to 8: `bounds[k]` is the largest `f64` not above `2^(k / 2^schema) / 2`.
fn frac_bounds(schema: i32) -> &'static [f64] {
    static TABLES: OnceLock<Vec<Vec<f64>>> = OnceLock::new();
    let tables = TABLES.get_or_init(|| {
        let finest = finest_bounds();
        (0..=MAX_SCHEMA)
            .map(|s| {
                // Every schema takes every 2^(8-s)-th bound of schema 8, so coarser boundaries
                // are exactly finer ones and halving the resolution stays consistent.
                finest
                    .iter()
                    .step_by(1 << (MAX_SCHEMA - s))
                    .copied()
                    .collect()
            })
            .collect()
    });
    let schema = schema.clamp(0, MAX_SCHEMA) as usize;
    tables.get(schema).map_or(&[], Vec::as_slice)
}

/// The 256 bounds of schema 8, from double-double arithmetic (about 100 significant bits), each
/// rounded down to `f64`.
fn finest_bounds() -> Vec<f64> {
    let factors = growth_factors();
    (0..256u32)
        .map(|k| {
            // 2^(k/256) as the product of 2^(2^j / 256) over the bits j set in k.
            let mut product = Dd::new(0.5);
            for (bit, factor) in (0..8).zip(factors.iter().rev()) {
                if k & (1 << bit) != 0 {
                    product = product.mul(*factor);
                }
            }
            product.round_down()
        })
        .collect()
}

/// Growth factors `2^(2^-s)` for schema s = 0 to 8, by repeated square roots of 2.
fn growth_factors() -> [Dd; 9] {
    let mut factors = [Dd::new(2.0); 9];
    for s in 1..factors.len() {
        factors[s] = factors[s - 1].sqrt();
    }
    factors
}

/// The schema whose growth factor is the largest standard one not above `bucket_factor`.
fn pick_schema(bucket_factor: f64) -> i32 {
    let factors = growth_factors();
    (MIN_SCHEMA..=MAX_SCHEMA)
        .find(|&schema| {
            if schema <= 0 {
                // 2^(2^-s) is an integer power of two here: exact.
                let factor = f64::powi(2.0, 1 << -schema);
                factor <= bucket_factor
            } else {
                factors[schema as usize].le(bucket_factor)
            }
        })
        .unwrap_or(MAX_SCHEMA)
}

/// A double-double number `hi + lo` with `|lo| <= ulp(hi) / 2`, for the boundary table.
#[derive(Debug, Clone, Copy)]
struct Dd {
    hi: f64,
    lo: f64,
}

impl Dd {
    fn new(v: f64) -> Self {
        Self { hi: v, lo: 0.0 }
    }

    /// Normalises `a + b` for `|a| >= |b|`.
    fn fast_two_sum(a: f64, b: f64) -> Self {
        let hi = a + b;
        Self {
            hi,
            lo: b - (hi - a),
        }
    }

    /// The exact product of two `f64`, with a fused multiply-add for the error term.
    fn two_prod(a: f64, b: f64) -> Self {
        let hi = a * b;
        Self {
            hi,
            lo: a.mul_add(b, -hi),
        }
    }

    fn mul(self, other: Self) -> Self {
        let p = Self::two_prod(self.hi, other.hi);
        Self::fast_two_sum(p.hi, p.lo + (self.hi * other.lo + self.lo * other.hi))
    }

    /// One Newton step from the `f64` root doubles its precision.
    fn sqrt(self) -> Self {
        let root = self.hi.sqrt();
        let square = Self::two_prod(root, root);
        // self.hi and square.hi are within a few ulps: the difference is exact.
        let residual = (self.hi - square.hi) - square.lo + self.lo;
        Self::fast_two_sum(root, residual / (2.0 * root))
    }

    /// The largest `f64` not above the value (for positive values).
    fn round_down(self) -> f64 {
        if self.lo < 0.0 {
            f64::from_bits(self.hi.to_bits() - 1)
        } else {
            self.hi
        }
    }

    /// Whether the value is at most `v`.
    fn le(self, v: f64) -> bool {
        self.hi < v || (self.hi == v && self.lo <= 0.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;
    use std::f64::consts::SQRT_2;
    use std::time::Duration;

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

    fn native(h: &ChatHistogram) -> &NativeBuckets {
        h.native.as_ref().expect("native buckets")
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

    #[test]
    fn layout_errors_name_the_bad_setting() {
        let nan = f64::NAN;
        let inf = f64::INFINITY;
        let cases: Vec<(&str, Result<()>, &str)> = vec![
            (
                "NaN bound",
                HistogramLayout::new(&[1.0, nan], None).map(drop),
                "bucket bound NaN is not a finite number",
            ),
            (
                "-Inf bound",
                HistogramLayout::new(&[-inf, 1.0], None).map(drop),
                "bucket bound -inf is not a finite number",
            ),
            (
                "+Inf before the last bound",
                HistogramLayout::new(&[1.0, inf, 2.0], None).map(drop),
                "bucket bound inf is not a finite number",
            ),
            (
                "repeated bound",
                HistogramLayout::new(&[1.0, 2.0, 2.0], None).map(drop),
                "bucket bounds must increase strictly, but 2 is followed by 2",
            ),
            (
                "decreasing bounds",
                HistogramLayout::new(&[5.0, 1.0], None).map(drop),
                "bucket bounds must increase strictly, but 5 is followed by 1",
            ),
            (
                "bucket factor of 1",
                NativeLayout::new(1.0, 100).map(drop),
                "native bucket factor must be a finite number greater than 1, got 1",
            ),
            (
                "NaN bucket factor",
                NativeLayout::new(nan, 100).map(drop),
                "native bucket factor must be a finite number greater than 1, got NaN",
            ),
            (
                "infinite bucket factor",
                NativeLayout::new(inf, 100).map(drop),
                "native bucket factor must be a finite number greater than 1, got inf",
            ),
            (
                "no native buckets allowed",
                NativeLayout::new(1.1, 0).map(drop),
                "native max buckets must be at least 1",
            ),
            (
                "negative zero threshold",
                NativeLayout::new(1.1, 100)
                    .and_then(|n| n.with_zero_threshold(-1.0))
                    .map(drop),
                "native zero threshold must be a finite number of 0 or more, got -1",
            ),
            (
                "NaN zero threshold",
                NativeLayout::new(1.1, 100)
                    .and_then(|n| n.with_zero_threshold(nan))
                    .map(drop),
                "native zero threshold must be a finite number of 0 or more, got NaN",
            ),
        ];
        for (name, result, want) in cases {
            match result {
                Err(err) => assert_eq!(err.to_string(), want, "{name}"),
                Ok(()) => panic!("{name}: accepted"),
            }
        }
    }

    #[test]
    fn layout_drops_a_trailing_inf_and_allows_no_classic_buckets() {
        let cases: [(&str, &[f64], &[f64]); 3] = [
            ("trailing +Inf", &[1.0, 2.0, f64::INFINITY], &[1.0, 2.0]),
            ("only +Inf", &[f64::INFINITY], &[]),
            ("none", &[], &[]),
        ];
        for (name, bounds, want) in cases {
            let layout = HistogramLayout::new(bounds, None).expect(name);
            assert_eq!(layout.bounds(), want, "{name}");
        }
    }

    #[test]
    fn schema_is_the_largest_growth_factor_not_above_the_bucket_factor() {
        let cases = [
            ("1.1 (client_golang's usual choice)", 1.1, 3),
            ("exactly 2", 2.0, 0),
            ("between 2^(1/2) and 2", 1.5, 1),
            ("exactly 4", 4.0, -1),
            ("just under 4", 3.99, 0),
            ("exactly 2^16", 65536.0, -4),
            ("far above 2^16", 1e9, -4),
            ("between 2^(1/256) and 2^(1/128)", 1.003, 8),
            ("just above 2^(1/128)", 1.006, 7),
            ("below 2^(1/256): the finest schema", 1.0001, 8),
            // The f64 nearest 2^(1/4) lies below it, the one nearest 2^(1/8) above it.
            ("f64 nearest 2^(1/4)", 1.189_207_115_002_721, 3),
            ("f64 nearest 2^(1/8)", 1.090_507_732_665_257_7, 3),
        ];
        for (name, factor, want) in cases {
            let layout = NativeLayout::new(factor, 100).expect(name);
            assert_eq!(layout.schema(), want, "{name}");
        }
    }

    #[test]
    fn native_bucket_index_follows_the_spec_formula() {
        let below_sqrt2 = f64::from_bits(SQRT_2.to_bits() - 1);
        // Expected: ceil(2^s * log2(v)), worked out with 60-digit decimal arithmetic; e.g. 3 at
        // schema 3: 8 * log2(3) = 12.68, so bucket 13 = (2^(12/8), 2^(13/8)] = (2.83, 3.08].
        let cases = [
            ("1 is the upper bound of bucket 0", 1.0, [0, 0, 0]),
            ("2 is a power of two", 2.0, [1, 8, 256]),
            ("0.5 is a power of two", 0.5, [-1, -8, -256]),
            ("1024 is a power of two", 1024.0, [10, 80, 2560]),
            ("3", 3.0, [2, 13, 406]),
            ("1.1", 1.1, [1, 2, 36]),
            ("12.5 s", 12.5, [4, 30, 933]),
            ("600 s", 600.0, [10, 74, 2363]),
            ("1e9", 1e9, [30, 240, 7654]),
            ("0.001", 0.001, [-9, -79, -2551]),
            ("1e-300", 1e-300, [-996, -7972, -255_124]),
            ("2^-127", f64::powi(2.0, -127), [-127, -1016, -32512]),
            ("smallest subnormal", 5e-324, [-1074, -8592, -274_944]),
            ("largest finite", f64::MAX, [1024, 8192, 262_144]),
            (
                "+Inf overflows the largest",
                f64::INFINITY,
                [1025, 8193, 262_145],
            ),
            // The two f64 around sqrt(2), the boundary between buckets 4 and 5 at schema 3.
            ("f64 SQRT_2, just above sqrt(2)", SQRT_2, [1, 5, 129]),
            ("f64 just below sqrt(2)", below_sqrt2, [1, 4, 128]),
        ];
        for (name, v, want) in cases {
            let got = [0, 3, 8].map(|schema| bucket_index(v, schema));
            assert_eq!(got, want, "{name}");
        }
    }

    #[test]
    fn native_bucket_index_at_negative_schemas() {
        let cases = [
            ("2^-5 at base 4", f64::powi(2.0, -5), -1, -2),
            ("2^-4 = 4^-2 is an upper bound", f64::powi(2.0, -4), -1, -2),
            ("3 at base 4", 3.0, -1, 1),
            ("4 = 4^1 is an upper bound", 4.0, -1, 1),
            ("5 at base 4", 5.0, -1, 2),
            ("3 at base 2^16", 3.0, -4, 1),
            ("1e9 at base 2^16", 1e9, -4, 2),
            ("2^-17 at base 2^16", f64::powi(2.0, -17), -4, -1),
        ];
        for (name, v, schema, want) in cases {
            assert_eq!(bucket_index(v, schema), want, "{name}");
        }
    }

    #[test]
    fn boundary_tables_are_the_exact_boundaries_rounded_down() {
        // floor(2^(k/8) / 2) as f64, from 60-digit decimal arithmetic.
        let schema3 = [
            0.5,
            0.545_253_866_332_628_7,
            0.594_603_557_501_360_5,
            0.648_419_777_325_504_8,
            0.707_106_781_186_547_5,
            0.771_105_412_703_970_4,
            0.840_896_415_253_714_5,
            0.917_004_043_204_671_2,
        ];
        assert_eq!(frac_bounds(3), schema3);
        assert_eq!(frac_bounds(1), [0.5, 0.707_106_781_186_547_5]);
        for schema in 1..=MAX_SCHEMA {
            let fine = frac_bounds(schema);
            let coarse = frac_bounds(schema - 1);
            assert_eq!(fine.len(), 1 << schema, "schema {schema}");
            assert!(fine.windows(2).all(|w| w[0] < w[1]), "schema {schema}");
            let every_other: Vec<f64> = fine.iter().step_by(2).copied().collect();
            assert_eq!(
                every_other,
                coarse,
                "schema {schema} nests in {}",
                schema - 1
            );
        }
    }

    #[test]
    fn zero_bucket_takes_values_up_to_the_threshold() {
        let layout = layout(&[], 2.0, 100);
        let cases = [
            ("a wait of exactly 0 s", 0.0, true),
            ("negative zero", -0.0, true),
            ("the threshold 2^-128 itself", DEFAULT_ZERO_THRESHOLD, true),
            ("minus the threshold", -DEFAULT_ZERO_THRESHOLD, true),
            ("a subnormal", 5e-324, true),
            ("2^-127, the next bucket", f64::powi(2.0, -127), false),
            ("a millisecond", 0.001, false),
        ];
        for (name, v, zero) in cases {
            let mut h = ChatHistogram::new(&layout);
            h.observe(&layout, v, None);
            let n = native(&h);
            assert_eq!(n.zero_count == 1, zero, "{name}");
            assert_eq!(n.positive.len() + n.negative.len() == 1, !zero, "{name}");
        }
        assert_eq!(DEFAULT_ZERO_THRESHOLD, f64::powi(2.0, -128));
    }

    #[test]
    fn negative_values_use_the_mirrored_buckets() {
        let layout = layout(&[], 2.0, 100);
        let mut h = ChatHistogram::new(&layout);
        h.observe(&layout, -3.0, None);
        assert_eq!(native(&h).negative, [(2, 1)]);
        assert!(native(&h).positive.is_empty());
    }

    #[test]
    fn zero_threshold_of_zero_keeps_only_exact_zeros() {
        let native_layout = NativeLayout::new(2.0, 100)
            .and_then(|n| n.with_zero_threshold(0.0))
            .expect("valid");
        let layout = HistogramLayout::new(&[], Some(native_layout)).expect("valid");
        let mut h = ChatHistogram::new(&layout);
        h.observe(&layout, 0.0, None);
        h.observe(&layout, 5e-324, None);
        assert_eq!(native(&h).zero_count, 1);
        assert_eq!(native(&h).positive, [(-1074, 1)]);
    }

    #[test]
    fn halving_merges_neighbouring_buckets_pairwise() {
        let mut n = NativeBuckets {
            schema: 0,
            zero_threshold: DEFAULT_ZERO_THRESHOLD,
            zero_count: 9,
            positive: vec![(-3, 1), (-2, 2), (-1, 3), (0, 4), (1, 5), (2, 6), (3, 7)],
            negative: vec![(5, 1), (8, 1)],
        };
        n.halve_resolution();
        // Bucket i goes to ceil(i / 2): (-3, -2) -> -1, (-1, 0) -> 0, (1, 2) -> 1, 3 -> 2.
        assert_eq!(n.schema, -1);
        assert_eq!(n.positive, [(-1, 3), (0, 7), (1, 11), (2, 7)]);
        assert_eq!(n.negative, [(3, 1), (4, 1)]);
        assert_eq!(n.zero_count, 9);
    }

    #[test]
    fn too_many_buckets_halve_the_resolution_and_keep_count_and_sum() {
        let layout = layout(&WAIT_BOUNDS, 2.0, 4);
        let mut h = ChatHistogram::new(&layout);
        for v in [1.0, 2.0, 4.0, 8.0] {
            h.observe(&layout, v, None);
        }
        assert_eq!(native(&h).schema, 0);
        assert_eq!(native(&h).positive, [(0, 1), (1, 1), (2, 1), (3, 1)]);
        // A fifth bucket is one too many: 0..=4 become ceil(i / 2) at schema -1.
        h.observe(&layout, 16.0, None);
        assert_eq!(native(&h).schema, -1);
        assert_eq!(native(&h).positive, [(0, 1), (1, 2), (2, 2)]);
        assert_eq!(h.count(), 5);
        assert_eq!(h.sum(), 31.0);
        // Classic buckets are untouched: 1, 2, 4, 8 in le 1, 2, 5, 10; 16 in le 20.
        assert_eq!(h.counts[..7], [1, 1, 1, 1, 0, 1, 0]);
    }

    #[test]
    fn lowest_schema_is_the_floor_of_the_reduction() {
        let layout = layout(&[], 2.0, 1);
        let mut h = ChatHistogram::new(&layout);
        for v in [1.0, 1e10, 1e100, 1e300] {
            h.observe(&layout, v, None);
        }
        assert_eq!(native(&h).schema, MIN_SCHEMA);
        assert_eq!(native(&h).positive.iter().map(|b| b.1).sum::<u64>(), 4);
        assert_eq!(h.count(), 4);
    }

    #[test]
    fn reduced_buckets_equal_direct_bucketing_at_the_lower_schema() {
        let values = waits(5000);
        let reducing = layout(&WAIT_BOUNDS, 1.003, 40);
        let mut h = ChatHistogram::new(&reducing);
        for v in &values {
            h.observe(&reducing, *v, None);
        }
        let schema = native(&h).schema;
        assert!(schema < 8, "the limit must have forced a reduction");
        let mut direct = NativeBuckets::new(&NativeLayout {
            schema,
            max_buckets: usize::MAX,
            zero_threshold: DEFAULT_ZERO_THRESHOLD,
        });
        for v in &values {
            direct.observe(*v, usize::MAX);
        }
        assert_eq!(native(&h), &direct);
        assert!(direct.positive.len() <= 40);
    }

    #[test]
    fn same_observations_in_the_same_order_give_the_same_state() {
        let layout = layout(&WAIT_BOUNDS, 1.1, 20);
        let replay = |values: &[f64]| {
            let mut h = ChatHistogram::new(&layout);
            for (i, v) in values.iter().enumerate() {
                let id = i.to_string();
                h.observe(
                    &layout,
                    *v,
                    Some(exemplar(&id, *v, 1_700_000_000 + i as u64)),
                );
            }
            h
        };
        let values = waits(3000);
        let first = replay(&values);
        assert_eq!(first, replay(&values));
        assert_eq!(
            first.to_dto(&layout, vec![]),
            replay(&values).to_dto(&layout, vec![])
        );
        // Buckets and schema depend only on which values were seen, not on their order.
        let mut reversed = values.clone();
        reversed.reverse();
        let other = replay(&reversed);
        assert_eq!(other.counts, first.counts);
        assert_eq!(other.count, first.count);
        assert_eq!(other.native, first.native);
    }

    #[test]
    fn each_classic_bucket_keeps_its_newest_exemplar() {
        let layout = layout(&[10.0, 60.0], 1.1, 100);
        let mut h = ChatHistogram::new(&layout);
        h.observe(&layout, 3.0, Some(exemplar("1", 3.0, 100)));
        h.observe(&layout, 4.0, Some(exemplar("2", 4.0, 200)));
        // An event older than the bucket's exemplar does not replace it (replayed late).
        h.observe(&layout, 5.0, Some(exemplar("3", 5.0, 150)));
        h.observe(&layout, 30.0, Some(exemplar("4", 30.0, 50)));
        h.observe(&layout, 31.0, None);
        h.observe(&layout, 100.0, Some(exemplar("5", 100.0, 10)));
        let ids: Vec<Option<&str>> = (0..3).map(|i| h.exemplar(i).map(|e| &*e.chat_id)).collect();
        assert_eq!(ids, [Some("2"), Some("4"), Some("5")]);
    }

    #[test]
    fn exemplar_label_set_stays_within_the_openmetrics_limit() {
        let cases = [
            ("numeric id", "104111".to_owned(), true),
            ("121 characters, 128 with the name", "7".repeat(121), true),
            ("122 characters", "7".repeat(122), false),
            ("121 two-byte characters", "é".repeat(121), true),
            ("empty id", String::new(), false),
        ];
        let layout = layout(&[], 1.1, 100);
        for (name, chat_id, kept) in cases {
            let mut h = ChatHistogram::new(&layout);
            let e = Exemplar {
                chat_id: chat_id.as_str().into(),
                value: 1.0,
                timestamp: at(1),
            };
            h.observe(&layout, 1.0, Some(e));
            assert_eq!(h.exemplar(0).is_some(), kept, "{name}");
            assert_eq!(h.count(), 1, "{name}: the observation counts either way");
        }
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
        let metric = h.to_dto(&layout, labels.clone());
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
        let hist = h.to_dto(&layout, vec![]).histogram.expect("histogram");
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
        let hist = ChatHistogram::new(&layout)
            .to_dto(&layout, vec![])
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
    fn nan_and_infinity_are_counted_without_panicking() {
        let layout = layout(&[1.0], 2.0, 100);
        let mut h = ChatHistogram::new(&layout);
        h.observe(&layout, f64::NAN, None);
        assert_eq!((h.count(), h.counts.as_slice()), (1, &[0, 1][..]));
        assert!(h.sum().is_nan());
        assert!(native(&h).positive.is_empty() && native(&h).zero_count == 0);
        let mut h = ChatHistogram::new(&layout);
        h.observe(&layout, f64::INFINITY, None);
        assert_eq!(native(&h).positive, [(1025, 1)]);
        assert_eq!(h.counts, [0, 1]);
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
        let metric = h.to_dto(&layout, labels);
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
        let mut metric = h.to_dto(layout, labels);
        crate::record::newest_exemplar_of(&mut metric);
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
            h.write_protobuf(&layout, &labels, &mut ProtobufScratch::default(), &mut direct);
            proptest::prop_assert_eq!(direct, prost_metric(&h, &layout, &labels));
        }
    }

    #[test]
    fn chat_ids_read_back_whole_in_place_or_shared() {
        let long = "9".repeat(121);
        for (id, in_place) in [
            ("", true),
            ("104111", true),
            ("12345678901234567890123", true),
            ("123456789012345678901234", false),
            ("ééééééééééé€", false),
            ("éééééééééé€", true),
            (long.as_str(), false),
        ] {
            let chat = ChatId::from(id);
            assert_eq!(&*chat, id);
            assert_eq!(matches!(chat, ChatId::Inline(..)), in_place, "{id}");
            assert_eq!(format!("{chat:?}"), format!("{id:?}"));
        }
    }
}
