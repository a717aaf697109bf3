//! The validated shape of a histogram: its classic bucket bounds and its native (sparse
//! exponential) bucket schema, checked once, used by the configuration and by every series;
//! and the maths that places a value in a native bucket.
//!
//! Native bucketing follows the Prometheus native histogram specification: for schema `s` the
//! positive bucket `i` covers `(base^(i-1), base^i]` with `base = 2^(2^-s)`. The index is computed
//! from the binary exponent of the value (as `frexp` gives it), so powers of two are exact, and
//! for schemas above 0 from a table of the bucket boundaries within one power of two, each the
//! largest `f64` not above the exact boundary, so every `f64` lands in the bucket the exact
//! formula gives.

use std::sync::OnceLock;

/// Default zero bucket threshold, 2^-128: a bucket boundary at every schema, and small enough
/// that only a wait of exactly 0 s (and nothing a clock can measure) falls into it.
pub const DEFAULT_ZERO_THRESHOLD: f64 = 2.938_735_877_055_719e-39;

/// Lowest standard schema (growth factor 2^16 between buckets).
pub(crate) const MIN_SCHEMA: i32 = -4;
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
    /// A layout of seconds needs at least one classic bound.
    #[error("needs at least one bucket bound")]
    NoBounds,
    /// A layout of seconds has at most [`MAX_BOUNDS`] classic bounds.
    #[error("{0} bounds is more than {MAX_BOUNDS}")]
    TooManyBounds(usize),
    /// A bound of a layout of seconds must be a positive, finite number (`+Inf` is implicit).
    #[error("{0} is not a positive number of seconds (+Inf is implicit)")]
    BoundNotPositive(f64),
    /// The native bucket factor of a layout of seconds is at most [`MAX_BUCKET_FACTOR`].
    #[error("native bucket factor {0} is above {MAX_BUCKET_FACTOR}")]
    BucketFactorTooLarge(f64),
    /// A layout of seconds keeps at least two native buckets.
    #[error("native max buckets {0} is too few (at least 2)")]
    TooFewBuckets(usize),
}

/// Most classic bounds of a layout of seconds.
pub const MAX_BOUNDS: usize = 100;

/// Largest native bucket factor of a layout of seconds (schema -4's growth factor).
pub const MAX_BUCKET_FACTOR: f64 = 65536.0;

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

    /// The layout of a histogram of seconds, as the configuration gives it: one to
    /// [`MAX_BOUNDS`] positive, finite, strictly increasing bounds (the `+Inf` bucket is
    /// implicit and may not be written), with the native buckets of [`NativeLayout::seconds`]
    /// if any. Every rule a layout follows is checked here and in [`Self::new`].
    pub fn seconds(bounds: &[f64], native: Option<NativeLayout>) -> Result<Self> {
        if bounds.is_empty() {
            return Err(LayoutError::NoBounds);
        }
        if bounds.len() > MAX_BOUNDS {
            return Err(LayoutError::TooManyBounds(bounds.len()));
        }
        if let Some(b) = bounds.iter().find(|b| !b.is_finite() || **b <= 0.0) {
            return Err(LayoutError::BoundNotPositive(*b));
        }
        Self::new(bounds, native)
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
    pub(crate) fn classic_index(&self, v: f64) -> usize {
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

    /// The native buckets of a histogram of seconds, as the configuration gives them: a factor
    /// above 1 and at most [`MAX_BUCKET_FACTOR`], at least 2 buckets.
    pub fn seconds(bucket_factor: f64, max_buckets: usize) -> Result<Self> {
        if bucket_factor > MAX_BUCKET_FACTOR {
            return Err(LayoutError::BucketFactorTooLarge(bucket_factor));
        }
        if max_buckets == 1 {
            return Err(LayoutError::TooFewBuckets(max_buckets));
        }
        Self::new(bucket_factor, max_buckets)
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

/// Index of the native bucket holding `v` (> 0, not NaN) at `schema`.
pub(crate) fn bucket_index(v: f64, schema: i32) -> i32 {
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
    use std::f64::consts::SQRT_2;

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
}
