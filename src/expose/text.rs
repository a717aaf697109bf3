//! The two text formats, byte for byte as client_golang's `expfmt` writes them:
//! - classic Prometheus text 0.0.4: no exemplars, no native buckets, no `# EOF`, floats like
//!   Go's `strconv` shortest `'g'` form;
//! - OpenMetrics text 1.0.0: counters typed without `_total`, floats in OpenMetrics style
//!   (`2.0`), exemplars on counters and histogram buckets, `# EOF` at the end.
//!
//! [`write_families`] writes the data model of the registry's families; [`HistogramText`]
//! writes the chat histograms straight from their state, exactly as the former would write
//! their data model ([`super::model`]).

use prometheus_client::encoding::prometheus_protobuf::prometheus_data_model as dto;

use super::output::Output;
use super::unix_parts;
use crate::record::histogram::{ChatHistogram, EXEMPLAR_LABEL, Exemplar};

/// Appends the families in the text format (`om == false`) or in OpenMetrics without its closing
/// `# EOF`, so that more families can follow (see [`HistogramText`]).
pub fn write_families(families: &[dto::MetricFamily], om: bool, out: &mut Vec<u8>) {
    let families: Vec<&dto::MetricFamily> = families
        .iter()
        .filter(|family| super::exposable(family))
        .collect();
    out.reserve(text_size_hint(&families));
    let mut labels = Vec::with_capacity(256);
    for family in families {
        write_family(out, family, om, &mut labels);
    }
}

/// The closing line of an OpenMetrics exposition.
pub fn write_eof(out: &mut Vec<u8>) {
    out.extend_from_slice(b"# EOF\n");
}

/// A classic bucket layout's `le` label, rendered once for each text format: `le="0.5"} `.
#[derive(Debug, Clone)]
pub struct BucketLabels {
    text: Vec<Box<[u8]>>,
    open_metrics: Vec<Box<[u8]>>,
}

impl BucketLabels {
    /// The number of buckets, `+Inf` included.
    pub fn len(&self) -> usize {
        self.text.len()
    }

    /// Whether there are no buckets (never: `+Inf` is always one).
    pub fn is_empty(&self) -> bool {
        self.text.is_empty()
    }

    /// The rendered `le` labels of `bounds`, `+Inf` last.
    pub fn new(bounds: &[f64]) -> Self {
        let render = |om: bool| {
            bounds
                .iter()
                .copied()
                .chain([f64::INFINITY])
                .map(|bound| {
                    let mut v = Vec::with_capacity(24);
                    v.extend_from_slice(b"le=\"");
                    write_float(&mut v, bound, om);
                    v.extend_from_slice(b"\"} ");
                    v.into_boxed_slice()
                })
                .collect()
        };
        Self {
            text: render(false),
            open_metrics: render(true),
        }
    }
}

/// Writes a histogram family in the text or OpenMetrics form straight from the series' state,
/// series by series, exactly as [`write_families`] writes the classic part of their data model
/// ([`super::model::histogram`]), but without building it: the scrape of thousands of series is
/// mostly this. The family's header comes before its first series; a family without series
/// writes nothing.
pub struct HistogramText<'a> {
    name: &'a str,
    help: &'a str,
    les: &'a [Box<[u8]>],
    om: bool,
    started: bool,
    /// `name_bucket{labels,` of the current series.
    bucket_prefix: Vec<u8>,
    /// `name_sum{labels} ` of the current series.
    sum_prefix: Vec<u8>,
}

impl<'a> HistogramText<'a> {
    /// A family named `name` with the layout whose `le` values `bucket_labels` holds.
    pub fn new(name: &'a str, help: &'a str, bucket_labels: &'a BucketLabels, om: bool) -> Self {
        let les = if om {
            &bucket_labels.open_metrics
        } else {
            &bucket_labels.text
        };
        Self {
            name,
            help,
            les,
            om,
            started: false,
            bucket_prefix: Vec::with_capacity(256),
            sum_prefix: Vec::with_capacity(256),
        }
    }

    /// Appends one series: `labels` as [`render_labels`] gives them (`a="x",b="y"`, escaped).
    pub fn series(&mut self, out: &mut Output, labels: &[u8], h: &ChatHistogram) {
        let (name, om) = (self.name, self.om);
        if !self.started {
            self.started = true;
            let header = dto::MetricFamily {
                name: name.to_owned(),
                help: self.help.to_owned(),
                r#type: dto::MetricType::Histogram as i32,
                ..Default::default()
            };
            write_family(out.buf(), &header, om, &mut Vec::new());
        }
        // Rendered once per series: a bucket line is then the prefix, the rendered `le`, the
        // count.
        let bucket_prefix = &mut self.bucket_prefix;
        bucket_prefix.clear();
        bucket_prefix.extend_from_slice(name.as_bytes());
        bucket_prefix.extend_from_slice(b"_bucket{");
        bucket_prefix.extend_from_slice(labels);
        if !labels.is_empty() {
            bucket_prefix.push(b',');
        }
        let sum_prefix = &mut self.sum_prefix;
        sum_prefix.clear();
        sum_prefix.extend_from_slice(name.as_bytes());
        sum_prefix.extend_from_slice(b"_sum");
        let sum_name = sum_prefix.len();
        if !labels.is_empty() {
            sum_prefix.push(b'{');
            sum_prefix.extend_from_slice(labels);
            sum_prefix.push(b'}');
        }
        sum_prefix.push(b' ');
        let buf = out.buf();
        let counts = h.bucket_counts();
        let mut exemplars = h.exemplars().peekable();
        let mut cumulative: u64 = 0;
        for (i, le) in self.les.iter().enumerate() {
            // The +Inf bucket holds every observation, as the dto form's sample count.
            cumulative = if i + 1 == self.les.len() {
                h.count()
            } else {
                cumulative.saturating_add(counts.get(i).copied().unwrap_or(0))
            };
            buf.extend_from_slice(bucket_prefix);
            buf.extend_from_slice(le);
            write_count(buf, cumulative, om);
            if let Some((_, e)) = exemplars.next_if(|&(j, _)| j == i) {
                if om {
                    write_chat_exemplar(buf, e);
                }
            }
            buf.push(b'\n');
        }
        buf.extend_from_slice(sum_prefix);
        write_float(buf, h.sum(), om);
        buf.push(b'\n');
        // `name_count{labels} `: the sum line's with `count` for `sum`.
        buf.extend_from_slice(&sum_prefix[..sum_name - 3]);
        buf.extend_from_slice(b"count");
        buf.extend_from_slice(&sum_prefix[sum_name..]);
        write_count(buf, h.count(), om);
        buf.push(b'\n');
        out.boundary();
    }
}

/// ` # {chat_id="..."} value timestamp`, as [`write_exemplar`] writes the dto form.
fn write_chat_exemplar(out: &mut Vec<u8>, e: &Exemplar) {
    out.extend_from_slice(b" # {");
    out.extend_from_slice(EXEMPLAR_LABEL.as_bytes());
    out.extend_from_slice(b"=\"");
    write_escaped(out, &e.chat_id, true);
    out.push(b'"');
    write_exemplar_end(out, e.value, Some(unix_parts(e.timestamp)));
}

/// Label pairs rendered as the text formats write them: `a="x",b="y"`, values escaped.
pub fn render_labels(pairs: &[(&str, &str)]) -> Box<[u8]> {
    let mut out = Vec::with_capacity(64);
    for (i, (name, value)) in pairs.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b"=\"");
        write_escaped(&mut out, value, true);
        out.push(b'"');
    }
    out.into_boxed_slice()
}
/// A rough size of the text output, so that the buffer grows once.
fn text_size_hint(families: &[&dto::MetricFamily]) -> usize {
    families
        .iter()
        .map(|family| {
            let lines: usize = family
                .metric
                .iter()
                .map(|m| m.histogram.as_ref().map_or(1, |h| h.bucket.len() + 3))
                .sum();
            lines * (family.name.len() + 64)
        })
        .sum()
}

/// A sample value: integer counts are written as integers in OpenMetrics and as floats in text.
#[derive(Clone, Copy)]
enum Value {
    Float(f64),
    Count(u64),
}

/// Writes one family in text (`om == false`) or OpenMetrics form.
fn write_family(out: &mut Vec<u8>, family: &dto::MetricFamily, om: bool, labels: &mut Vec<u8>) {
    use dto::MetricType as T;
    let Ok(kind) = T::try_from(family.r#type) else {
        return;
    };
    let name = family.name.as_str();
    let is_total = name.ends_with("_total");
    let type_name = match (kind, om) {
        (T::Counter, false) => "counter",
        (T::Counter, true) if is_total => "counter",
        // OpenMetrics counter samples must end in _total: without it the family is unknown.
        (T::Counter, true) => "unknown",
        (T::Gauge, _) => "gauge",
        (T::Summary, _) => "summary",
        (T::Untyped, false) => "untyped",
        (T::Untyped, true) => "unknown",
        (T::Histogram, _) => "histogram",
        (T::GaugeHistogram, _) => return,
    };
    // OpenMetrics names a counter family without the _total of its samples.
    let meta_name = match name.strip_suffix("_total") {
        Some(short) if om && kind == T::Counter => short,
        _ => name,
    };
    if !family.help.is_empty() {
        out.extend_from_slice(b"# HELP ");
        out.extend_from_slice(meta_name.as_bytes());
        out.push(b' ');
        write_escaped(out, &family.help, om);
        out.push(b'\n');
    }
    out.extend_from_slice(b"# TYPE ");
    out.extend_from_slice(meta_name.as_bytes());
    out.push(b' ');
    out.extend_from_slice(type_name.as_bytes());
    out.push(b'\n');
    if om && !family.unit.is_empty() && has_unit_suffix(meta_name, &family.unit) {
        out.extend_from_slice(b"# UNIT ");
        out.extend_from_slice(meta_name.as_bytes());
        out.push(b' ');
        out.extend_from_slice(family.unit.as_bytes());
        out.push(b'\n');
    }
    let mut sample = Sample { out, name, om };
    for metric in &family.metric {
        labels.clear();
        write_label_pairs(labels, &metric.label);
        let s = Series {
            labels,
            timestamp_ms: metric.timestamp_ms,
        };
        match kind {
            T::Counter => {
                if let Some(counter) = &metric.counter {
                    let exemplar = counter.exemplar.as_ref();
                    sample.write(&s, "", None, Value::Float(counter.value), exemplar);
                }
            }
            T::Gauge => {
                if let Some(gauge) = &metric.gauge {
                    sample.write(&s, "", None, Value::Float(gauge.value), None);
                }
            }
            T::Untyped => {
                if let Some(untyped) = &metric.untyped {
                    sample.write(&s, "", None, Value::Float(untyped.value), None);
                }
            }
            T::Summary => {
                if let Some(summary) = &metric.summary {
                    for q in &summary.quantile {
                        let quantile = Some(("quantile", q.quantile));
                        sample.write(&s, "", quantile, Value::Float(q.value), None);
                    }
                    sample.write(&s, "_sum", None, Value::Float(summary.sample_sum), None);
                    sample.write(&s, "_count", None, Value::Count(summary.sample_count), None);
                }
            }
            T::Histogram => {
                if let Some(histogram) = &metric.histogram {
                    sample.histogram(&s, histogram);
                }
            }
            T::GaugeHistogram => {}
        }
    }
}

/// Whether an OpenMetrics family name ends in `_<unit>`, as a `# UNIT` line requires.
fn has_unit_suffix(name: &str, unit: &str) -> bool {
    name.strip_suffix(unit)
        .is_some_and(|rest| rest.ends_with('_'))
}

/// The rendered label pairs of one series (`a="x",b="y"`) and its timestamp.
struct Series<'l> {
    labels: &'l [u8],
    timestamp_ms: i64,
}

/// Writes sample lines of one family.
struct Sample<'o, 'n> {
    out: &'o mut Vec<u8>,
    name: &'n str,
    om: bool,
}

impl Sample<'_, '_> {
    fn histogram(&mut self, s: &Series<'_>, histogram: &dto::Histogram) {
        let mut inf_seen = false;
        for bucket in &histogram.bucket {
            inf_seen |= bucket.upper_bound == f64::INFINITY;
            let le = Some(("le", bucket.upper_bound));
            let count = Value::Count(bucket.cumulative_count);
            self.write(s, "_bucket", le, count, bucket.exemplar.as_ref());
        }
        // A native-only histogram has no classic buckets: its count still makes the +Inf one.
        if !inf_seen {
            let le = Some(("le", f64::INFINITY));
            let count = Value::Count(histogram.sample_count);
            self.write(s, "_bucket", le, count, None);
        }
        let sum = Value::Float(histogram.sample_sum);
        self.write(s, "_sum", None, sum, None);
        let count = Value::Count(histogram.sample_count);
        self.write(s, "_count", None, count, None);
    }

    /// One line: `name{labels,extra="x"} value [timestamp] [# exemplar]`.
    fn write(
        &mut self,
        s: &Series<'_>,
        suffix: &str,
        extra: Option<(&str, f64)>,
        value: Value,
        exemplar: Option<&dto::Exemplar>,
    ) {
        let out = &mut *self.out;
        out.extend_from_slice(self.name.as_bytes());
        out.extend_from_slice(suffix.as_bytes());
        if !s.labels.is_empty() || extra.is_some() {
            out.push(b'{');
            out.extend_from_slice(s.labels);
            if let Some((name, v)) = extra {
                if !s.labels.is_empty() {
                    out.push(b',');
                }
                out.extend_from_slice(name.as_bytes());
                out.extend_from_slice(b"=\"");
                write_float(out, v, self.om);
                out.push(b'"');
            }
            out.push(b'}');
        }
        out.push(b' ');
        match value {
            Value::Float(v) => write_float(out, v, self.om),
            Value::Count(n) => write_count(out, n, self.om),
        }
        if s.timestamp_ms != 0 {
            out.push(b' ');
            if self.om {
                write_float(out, s.timestamp_ms as f64 / 1000.0, true);
            } else {
                out.extend_from_slice(itoa::Buffer::new().format(s.timestamp_ms).as_bytes());
            }
        }
        if let Some(exemplar) = exemplar.filter(|_| self.om) {
            write_exemplar(out, exemplar);
        }
        out.push(b'\n');
    }
}

/// ` # {a="x"} value [timestamp]`, the timestamp in decimal seconds (e.g. `1700000000.123`).
fn write_exemplar(out: &mut Vec<u8>, exemplar: &dto::Exemplar) {
    out.extend_from_slice(b" # {");
    write_label_pairs(out, &exemplar.label);
    let timestamp = exemplar.timestamp.as_ref().map(|t| (t.seconds, t.nanos));
    write_exemplar_end(out, exemplar.value, timestamp);
}

/// The end of an exemplar after its label pairs: `} value [timestamp]`.
fn write_exemplar_end(out: &mut Vec<u8>, value: f64, timestamp: Option<(i64, i32)>) {
    out.extend_from_slice(b"} ");
    write_float(out, value, true);
    if let Some((seconds, nanos)) = timestamp {
        out.push(b' ');
        write_seconds(out, seconds, nanos);
    }
}

/// A count: an integer in OpenMetrics; a float in text, as client_golang writes it (integers
/// up to 10^6 look the same, larger ones take Go's exponent form, 1e+06).
fn write_count(out: &mut Vec<u8>, n: u64, om: bool) {
    if om || n < 1_000_000 {
        out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
    } else {
        write_float(out, n as f64, false);
    }
}

/// Seconds and nanoseconds as an exact decimal: `1700000000.123`, `5.0`, `-0.5`.
pub(crate) fn write_seconds(out: &mut Vec<u8>, seconds: i64, nanos: i32) {
    // Normalised to nanoseconds in [0, 10^9) (a valid Timestamp already is), then whole
    // seconds and nanoseconds of the absolute value, sign apart.
    const NANOS: i32 = 1_000_000_000;
    let seconds = seconds.saturating_add(i64::from(nanos.div_euclid(NANOS)));
    let nanos = u64::from(nanos.rem_euclid(NANOS).unsigned_abs());
    let (negative, whole, mut fraction) = match (seconds < 0, nanos) {
        (false, n) => (false, seconds.unsigned_abs(), n),
        (true, 0) => (true, seconds.unsigned_abs(), 0),
        (true, n) => (true, seconds.unsigned_abs() - 1, 1_000_000_000 - n),
    };
    if negative {
        out.push(b'-');
    }
    out.extend_from_slice(itoa::Buffer::new().format(whole).as_bytes());
    out.push(b'.');
    let mut digits = 9;
    while digits > 1 && fraction % 10 == 0 {
        fraction /= 10;
        digits -= 1;
    }
    let mut buf = itoa::Buffer::new();
    let text = buf.format(fraction);
    out.extend(std::iter::repeat_n(b'0', digits - text.len()));
    out.extend_from_slice(text.as_bytes());
}

/// `a="x",b="y"` with escaped values.
fn write_label_pairs(out: &mut Vec<u8>, labels: &[dto::LabelPair]) {
    for (i, label) in labels.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(label.name.as_bytes());
        out.extend_from_slice(b"=\"");
        write_escaped(out, &label.value, true);
        out.push(b'"');
    }
}

/// Escapes `\` and newline, and `"` when `quotes` (label values; OpenMetrics help too).
fn write_escaped(out: &mut Vec<u8>, s: &str, quotes: bool) {
    let bytes = s.as_bytes();
    if !bytes
        .iter()
        .any(|&b| b == b'\\' || b == b'\n' || (quotes && b == b'"'))
    {
        out.extend_from_slice(bytes);
        return;
    }
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let escaped: &[u8] = match b {
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'"' if quotes => b"\\\"",
            _ => continue,
        };
        out.extend_from_slice(&bytes[start..i]);
        out.extend_from_slice(escaped);
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
}

/// A float as Go's `strconv.FormatFloat(v, 'g', -1, 64)` writes it (`NaN`, `+Inf`, `-Inf`, 0
/// for -0), with `.0` appended in OpenMetrics style when it would otherwise read as an integer.
pub(crate) fn write_float(out: &mut Vec<u8>, v: f64, om: bool) {
    if v.is_nan() {
        out.extend_from_slice(b"NaN");
    } else if v.is_infinite() {
        out.extend_from_slice(if v > 0.0 { b"+Inf" } else { b"-Inf" });
    } else if v.fract() == 0.0 && v.abs() < 1e6 {
        // Integers below 10^6 have no exponent in Go's form: the common case, kept fast.
        out.extend_from_slice(itoa::Buffer::new().format(v as i64).as_bytes());
        if om {
            out.extend_from_slice(b".0");
        }
    } else {
        // Not an integer below 10^6, so the result has a '.' or an exponent already.
        write_shortest(out, v);
    }
}

/// Go's `'g'` format with the shortest digits that read back as `v` (finite, non-zero): an
/// exponent (`1.5e-07`, `1e+06`) when the decimal exponent is below -4 or 6 and above.
fn write_shortest(out: &mut Vec<u8>, v: f64) {
    let mut buf = ryu::Buffer::new();
    let (digits, point) = decimal_digits(buf.format_finite(v.abs()).as_bytes());
    let digits = digits.as_slice();
    if digits.is_empty() {
        out.push(b'0');
        return;
    }
    if v < 0.0 {
        out.push(b'-');
    }
    let exponent = point - 1;
    if !(-4..6).contains(&exponent) {
        out.push(digits[0]);
        if digits.len() > 1 {
            out.push(b'.');
            out.extend_from_slice(&digits[1..]);
        }
        out.push(b'e');
        out.push(if exponent < 0 { b'-' } else { b'+' });
        if exponent.unsigned_abs() < 10 {
            out.push(b'0');
        }
        out.extend_from_slice(
            itoa::Buffer::new()
                .format(exponent.unsigned_abs())
                .as_bytes(),
        );
    } else if point <= 0 {
        out.extend_from_slice(b"0.");
        out.extend(std::iter::repeat_n(b'0', point.unsigned_abs() as usize));
        out.extend_from_slice(digits);
    } else {
        let point = point.unsigned_abs() as usize;
        if point >= digits.len() {
            out.extend_from_slice(digits);
            out.extend(std::iter::repeat_n(b'0', point - digits.len()));
        } else {
            out.extend_from_slice(&digits[..point]);
            out.push(b'.');
            out.extend_from_slice(&digits[point..]);
        }
    }
}

/// Significant digits of a decimal number as ryu writes it (`123.45`, `0.001`, `1e16`,
/// `1.5e-7`), without leading or trailing zeros, and the position of the decimal point:
/// the value is `0.d1d2... * 10^point`.
fn decimal_digits(repr: &[u8]) -> (DigitBuf, i32) {
    let mut digits = DigitBuf::default();
    let mut point: i32 = 0;
    let mut after_dot = false;
    let mut bytes = repr.iter();
    for &b in bytes.by_ref() {
        match b {
            b'.' => after_dot = true,
            b'e' | b'E' => break,
            // Leading zeros only move the point, and only after it.
            b'0' if digits.len == 0 && after_dot => point -= 1,
            b'0' if digits.len == 0 => {}
            b'0'..=b'9' => {
                digits.push(b);
                if !after_dot {
                    point += 1;
                }
            }
            _ => {}
        }
    }
    let exponent: i32 = std::str::from_utf8(bytes.as_slice())
        .ok()
        .and_then(|e| e.parse().ok())
        .unwrap_or(0);
    while digits.len > 0 && digits.bytes[digits.len - 1] == b'0' {
        digits.len -= 1;
    }
    (digits, point + exponent)
}

/// Up to 32 decimal digits on the stack (ryu writes at most 17 significant ones).
#[derive(Default)]
struct DigitBuf {
    bytes: [u8; 32],
    len: usize,
}

impl DigitBuf {
    fn push(&mut self, b: u8) {
        if let Some(slot) = self.bytes.get_mut(self.len) {
            *slot = b;
            self.len += 1;
        }
    }

    fn as_slice(&self) -> &[u8] {
        &self.bytes[..self.len]
    }
}
