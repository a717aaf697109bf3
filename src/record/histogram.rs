//! One histogram series of chat wait or duration: classic buckets with one exemplar each, plus
//! native (sparse exponential) buckets. State only: the exposition formats
//! ([`crate::expose`]) read it through the accessors here.
//!
//! The state depends only on the observations and their order, never on the clock: the exporter
//! rebuilds its histograms from stored events on restart and must show the same `_bucket`, `_sum`
//! and `_count` afterwards. So when the native buckets outgrow their limit the resolution is
//! reduced (schema - 1, neighbouring buckets merged); the histogram is never reset.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub use crate::layout::{DEFAULT_ZERO_THRESHOLD, HistogramLayout, LayoutError, NativeLayout};
use crate::layout::{MIN_SCHEMA, bucket_index};
use crate::record::snapshot::{ExemplarState, HistogramState, NativeState};

/// The label name of every exemplar.
pub const EXEMPLAR_LABEL: &str = "chat_id";

/// OpenMetrics caps the label names and values of one exemplar at 128 UTF-8 characters together.
pub const MAX_EXEMPLAR_LABEL_CHARS: usize = 128;

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
        let buckets = layout.bounds().len() + 1;
        Self {
            counts: vec![0; buckets],
            exemplars: Vec::new(),
            count: 0,
            sum: 0.0,
            native: layout.native().map(NativeBuckets::new),
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
                native.observe(v, native_layout.max_buckets());
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

    /// The native buckets, when the layout has them.
    pub fn native(&self) -> Option<&NativeBuckets> {
        self.native.as_ref()
    }

    /// The state, for a snapshot.
    pub fn export(&self) -> HistogramState {
        HistogramState {
            counts: self.counts.clone(),
            exemplars: self
                .exemplars
                .iter()
                .map(|(bucket, e)| {
                    let (seconds, nanos) = unix_parts(e.timestamp);
                    ExemplarState {
                        bucket: *bucket as u32,
                        chat_id: e.chat_id.to_string(),
                        value: e.value,
                        seconds,
                        nanos: nanos.unsigned_abs(),
                    }
                })
                .collect(),
            count: self.count,
            sum: self.sum,
            native: self.native.as_ref().map(|n| NativeState {
                schema: n.schema,
                zero_threshold: n.zero_threshold,
                zero_count: n.zero_count,
                positive: n.positive.clone(),
                negative: n.negative.clone(),
            }),
        }
    }

    /// A series of `layout` with a snapshot's state; an error names what does not fit the
    /// layout.
    pub fn import(layout: &HistogramLayout, state: &HistogramState) -> Result<Self, String> {
        let buckets = layout.bounds().len() + 1;
        if state.counts.len() != buckets {
            return Err(format!(
                "{} classic buckets where the layout has {buckets}",
                state.counts.len()
            ));
        }
        if state.native.is_some() != layout.native().is_some() {
            return Err("native buckets where the layout has none, or none where it has".into());
        }
        let mut exemplars = Vec::with_capacity(state.exemplars.len());
        for e in &state.exemplars {
            let bucket = e.bucket as usize;
            if bucket >= buckets || exemplars.last().is_some_and(|(b, _)| *b >= bucket) {
                return Err(format!(
                    "an exemplar of bucket {bucket} out of order or range"
                ));
            }
            exemplars.push((
                bucket,
                Exemplar {
                    chat_id: e.chat_id.as_str().into(),
                    value: e.value,
                    timestamp: from_unix_parts(e.seconds, e.nanos),
                },
            ));
        }
        Ok(ChatHistogram {
            counts: state.counts.clone(),
            exemplars,
            count: state.count,
            sum: state.sum,
            native: state.native.as_ref().map(|n| NativeBuckets {
                schema: n.schema,
                zero_threshold: n.zero_threshold,
                zero_count: n.zero_count,
                positive: n.positive.clone(),
                negative: n.negative.clone(),
            }),
        })
    }
}

/// Seconds and non-negative nanoseconds since the Unix epoch, saturating far outside it.
pub fn unix_parts(t: SystemTime) -> (i64, i32) {
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

/// The time of [`unix_parts`]' seconds and nanoseconds.
pub fn from_unix_parts(seconds: i64, nanos: u32) -> SystemTime {
    let nanos = Duration::from_nanos(u64::from(nanos.min(999_999_999)));
    if seconds >= 0 {
        UNIX_EPOCH + Duration::from_secs(seconds.unsigned_abs()) + nanos
    } else {
        UNIX_EPOCH - Duration::from_secs(seconds.unsigned_abs()) + nanos
    }
}

/// The native part of one series.
#[derive(Debug, Clone, PartialEq)]
pub struct NativeBuckets {
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
            schema: layout.schema(),
            zero_threshold: layout.zero_threshold(),
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
    pub fn needs_noop_span(&self) -> bool {
        self.zero_threshold == 0.0
            && self.zero_count == 0
            && self.positive.is_empty()
            && self.negative.is_empty()
    }

    /// Whether Prometheus reads the protobuf form as a native histogram: it has a span (a
    /// bucket, or the no-op one) or a zero bucket count.
    pub fn reads_as_native(&self) -> bool {
        self.zero_count != 0
            || !self.positive.is_empty()
            || !self.negative.is_empty()
            || self.needs_noop_span()
    }

    /// The schema the buckets are at now.
    pub fn schema(&self) -> i32 {
        self.schema
    }

    /// The zero bucket's threshold.
    pub fn zero_threshold(&self) -> f64 {
        self.zero_threshold
    }

    /// Observations in the zero bucket.
    pub fn zero_count(&self) -> u64 {
        self.zero_count
    }

    /// Populated positive buckets as (index, count), sorted by index.
    pub fn positive(&self) -> &[(i32, u64)] {
        &self.positive
    }

    /// Populated negative buckets as (index of the absolute value, count), sorted by index.
    pub fn negative(&self) -> &[(i32, u64)] {
        &self.negative
    }
}

fn add_to_bucket(buckets: &mut Vec<(i32, u64)>, index: i32) {
    match buckets.binary_search_by_key(&index, |&(i, _)| i) {
        Ok(at) => buckets[at].1 = buckets[at].1.saturating_add(1),
        Err(at) => buckets.insert(at, (index, 1)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let mut direct = NativeBuckets {
            schema,
            zero_threshold: DEFAULT_ZERO_THRESHOLD,
            zero_count: 0,
            positive: Vec::new(),
            negative: Vec::new(),
        };
        for v in &values {
            direct.observe(*v, usize::MAX);
        }
        assert_eq!(native(&h), &direct);
        assert!(direct.positive.len() <= 40);
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
        // The whole state: every exposition of it is the same too.
        assert_eq!(first, replay(&values));
        // Buckets and schema depend only on which values were seen, not on their order.
        let mut reversed = values.clone();
        reversed.reverse();
        let other = replay(&reversed);
        assert_eq!(other.counts, first.counts);
        assert_eq!(other.count, first.count);
        assert_eq!(other.native, first.native);
    }
}
