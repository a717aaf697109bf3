//! `/metrics` exposition: content negotiation, and three encoders over one protobuf data model
//! (`Vec<dto::MetricFamily>`, from `prometheus_client`'s registry plus our own chat histograms).
//!
//! - Classic Prometheus text 0.0.4, byte for byte as client_golang's `expfmt` writes it: no
//!   exemplars, no native buckets, no `# EOF`, floats like Go's `strconv` shortest `'g'` form.
//! - OpenMetrics text 1.0.0: counters typed without `_total`, floats in OpenMetrics style (`2.0`),
//!   exemplars on counters and histogram buckets, `# EOF` at the end.
//! - Protobuf: length-delimited `io.prometheus.client.MetricFamily` messages, the only format that
//!   carries native histogram buckets.
//!
//! Encoding never fails: a family without samples, of a type a format cannot express, or a
//! sample without the value its type needs is left out rather than failing the whole scrape.

pub mod process;

use std::io::Write as _;

use flate2::{Compression, write::GzEncoder};

use prometheus_client::encoding::prometheus_protobuf::prometheus_data_model as dto;
use prost::Message as _;

use crate::record::histogram::{ChatHistogram, EXEMPLAR_LABEL, Exemplar, unix_parts};

/// An exposition format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Prometheus text format 0.0.4.
    Text,
    /// OpenMetrics text format 1.0.0.
    OpenMetrics,
    /// Length-delimited protobuf `MetricFamily` messages.
    Protobuf,
}

const PROTOBUF_CONTENT_TYPE: &str = "application/vnd.google.protobuf; \
     proto=io.prometheus.client.MetricFamily; encoding=delimited";

/// Picks the format from an `Accept` header as client_golang's `expfmt.Negotiate` (including
/// OpenMetrics) does: media ranges ordered by q-value, then by specificity, and the first one
/// that names a format we write wins: protobuf only for
/// `application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited`,
/// OpenMetrics for `application/openmetrics-text` (version 1.0.0, 0.0.1 or none), text for
/// `text/plain` (version 0.0.4 or none). Anything else, or no header, gives classic text.
/// Unlike client_golang, a range with `q=0` (or an unreadable q) is refused, as HTTP says.
pub fn negotiate(accept: Option<&str>) -> Format {
    let Some(accept) = accept else {
        return Format::Text;
    };
    let mut ranges: Vec<MediaRange<'_>> = accept.split(',').filter_map(MediaRange::parse).collect();
    // A stable sort keeps the header's order among equals, as client_golang's does.
    ranges.sort_by(|a, b| {
        b.q.total_cmp(&a.q)
            .then((a.kind == "*").cmp(&(b.kind == "*")))
            .then((a.subtype == "*").cmp(&(b.subtype == "*")))
    });
    ranges
        .iter()
        .filter(|range| range.q > 0.0)
        .find_map(MediaRange::format)
        .unwrap_or(Format::Text)
}

/// The `Content-Type` of a response in the given format.
pub fn content_type(f: Format) -> &'static str {
    match f {
        Format::Text => "text/plain; version=0.0.4; charset=utf-8",
        Format::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
        Format::Protobuf => PROTOBUF_CONTENT_TYPE,
    }
}

/// Appends the families to `out` in the given format.
pub fn encode(families: &[dto::MetricFamily], f: Format, out: &mut Vec<u8>) {
    match f {
        Format::Protobuf => {
            for family in families.iter().filter(|family| exposable(family)) {
                // A Vec grows as needed: encoding into it only fails past isize::MAX bytes.
                let _ = family.encode_length_delimited(out);
            }
        }
        Format::Text | Format::OpenMetrics => {
            let om = f == Format::OpenMetrics;
            encode_text_open(families, om, out);
            if om {
                write_eof(out);
            }
        }
    }
}

/// Appends the families in the text format (`om == false`) or in OpenMetrics without its closing
/// `# EOF`, so that more families can follow (see [`HistogramText`]).
pub fn encode_text_open(families: &[dto::MetricFamily], om: bool, out: &mut Vec<u8>) {
    let families: Vec<&dto::MetricFamily> =
        families.iter().filter(|family| exposable(family)).collect();
    out.reserve(text_size_hint(&families));
    let mut labels = Vec::with_capacity(256);
    for family in families {
        write_family(out, family, om, &mut labels);
    }
}

/// A family with a name and at least one sample; others are left out of every format.
fn exposable(family: &dto::MetricFamily) -> bool {
    !family.name.is_empty() && !family.metric.is_empty()
}

/// The closing line of an OpenMetrics exposition.
pub fn write_eof(out: &mut Vec<u8>) {
    out.extend_from_slice(b"# EOF\n");
}

/// Where an exposition is written: one contiguous buffer, or a gzip stream that takes the page
/// in chunks of about [`CHUNK`] bytes as it is written, while they are still in the cache (the
/// uncompressed page never exists whole). The encoders append to [`Output::buf`] and call
/// [`Output::boundary`] between series.
pub struct Output {
    buf: Vec<u8>,
    gzip: Option<Box<GzEncoder<Vec<u8>>>>,
}

/// The size of the chunks an [`Output::gzip`] compresses at a time.
pub const CHUNK: usize = 128 * 1024;

impl Output {
    /// Everything in one buffer, after what `out` holds already.
    pub fn whole(out: Vec<u8>) -> Self {
        Self {
            buf: out,
            gzip: None,
        }
    }

    /// A gzip stream at the fastest level: metrics text is repetitive enough that it still
    /// shrinks about tenfold.
    pub fn gzip() -> Self {
        Self {
            buf: Vec::with_capacity(CHUNK + CHUNK / 4),
            gzip: Some(Box::new(GzEncoder::new(Vec::new(), Compression::fast()))),
        }
    }

    /// The buffer to append to.
    pub fn buf(&mut self) -> &mut Vec<u8> {
        &mut self.buf
    }

    /// An estimate of the bytes still to come: a whole buffer makes room for them at once (one
    /// allocation instead of a series of copies); a gzip stream needs no room.
    pub fn reserve(&mut self, additional: usize) {
        if self.gzip.is_none() {
            self.buf.reserve(additional);
        }
    }

    /// A place where the output may be cut: a gzip stream compresses the buffer once it holds
    /// a chunk.
    pub fn boundary(&mut self) {
        if self.buf.len() >= CHUNK {
            if let Some(encoder) = &mut self.gzip {
                // Writing into a Vec cannot fail.
                let _ = encoder.write_all(&self.buf);
                self.buf.clear();
            }
        }
    }

    /// Appends bytes that may be longer than a chunk.
    pub fn extend(&mut self, bytes: &[u8]) {
        match &mut self.gzip {
            Some(encoder) if bytes.len() >= CHUNK => {
                let _ = encoder
                    .write_all(&self.buf)
                    .and_then(|()| encoder.write_all(bytes));
                self.buf.clear();
            }
            _ => {
                self.buf.extend_from_slice(bytes);
                self.boundary();
            }
        }
    }

    /// Everything written: the buffer, or the finished gzip stream.
    pub fn into_vec(self) -> Vec<u8> {
        match self.gzip {
            None => self.buf,
            Some(mut encoder) => encoder
                .write_all(&self.buf)
                .and_then(|()| encoder.try_finish())
                .map(|()| std::mem::take(encoder.get_mut()))
                .unwrap_or_default(),
        }
    }
}

/// A classic bucket layout's `le` label, rendered once for each text format: `le="0.5"} `.
#[derive(Debug, Clone)]
pub struct BucketLabels {
    text: Vec<Box<[u8]>>,
    open_metrics: Vec<Box<[u8]>>,
}

impl BucketLabels {
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
/// series by series, exactly as [`encode`] writes the classic part of their
/// [`ChatHistogram::to_dto`] form, but without building it: the scrape of thousands of series is
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

/// Whether an `Accept-Encoding` header allows gzip (`gzip`, `x-gzip` or `*` with a q above 0).
pub fn accepts_gzip(accept_encoding: Option<&str>) -> bool {
    let Some(header) = accept_encoding else {
        return false;
    };
    let mut gzip = None;
    let mut any = None;
    for part in header.split(',') {
        let mut pieces = part.split(';');
        let coding = pieces.next().unwrap_or_default().trim();
        let q = pieces
            .filter_map(|param| param.split_once('='))
            .find(|(name, _)| name.trim().eq_ignore_ascii_case("q"))
            .map_or(1.0, |(_, value)| parse_q(value));
        if coding.eq_ignore_ascii_case("gzip") || coding.eq_ignore_ascii_case("x-gzip") {
            gzip = Some(q);
        } else if coding == "*" {
            any = Some(q);
        }
    }
    gzip.or(any).is_some_and(|q| q > 0.0)
}

/// One media range of an `Accept` header.
struct MediaRange<'a> {
    kind: &'a str,
    subtype: &'a str,
    q: f64,
    params: Vec<(&'a str, &'a str)>,
}

impl<'a> MediaRange<'a> {
    fn parse(part: &'a str) -> Option<Self> {
        let mut pieces = part.split(';');
        let range = pieces.next()?.trim();
        let (kind, subtype) = match range.split_once('/') {
            Some((kind, subtype)) if !subtype.contains('/') => (kind.trim(), subtype.trim()),
            None if range == "*" => ("*", "*"),
            _ => return None,
        };
        let mut q = 1.0;
        let mut params = Vec::new();
        for (name, value) in pieces.filter_map(|param| param.split_once('=')) {
            let name = name.trim();
            if name.eq_ignore_ascii_case("q") {
                q = parse_q(value);
            } else {
                params.push((name, value.trim().trim_matches('"')));
            }
        }
        Some(Self {
            kind,
            subtype,
            q,
            params,
        })
    }

    /// A parameter's value, "" when absent; the last one wins, as in client_golang's map.
    fn param(&self, name: &str) -> &'a str {
        self.params
            .iter()
            .rev()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map_or("", |(_, value)| value)
    }

    fn is(&self, kind: &str, subtype: &str) -> bool {
        self.kind.eq_ignore_ascii_case(kind) && self.subtype.eq_ignore_ascii_case(subtype)
    }

    fn format(&self) -> Option<Format> {
        if self.is("application", "vnd.google.protobuf")
            && self.param("proto") == "io.prometheus.client.MetricFamily"
            && self.param("encoding") == "delimited"
        {
            return Some(Format::Protobuf);
        }
        let version = self.param("version");
        if self.is("text", "plain") && matches!(version, "0.0.4" | "") {
            return Some(Format::Text);
        }
        if self.is("application", "openmetrics-text") && matches!(version, "1.0.0" | "0.0.1" | "") {
            return Some(Format::OpenMetrics);
        }
        None
    }
}

/// A q-value; unreadable ones count as 0.
fn parse_q(value: &str) -> f64 {
    value
        .trim()
        .parse::<f64>()
        .ok()
        .filter(|q| q.is_finite())
        .unwrap_or(0.0)
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
fn write_seconds(out: &mut Vec<u8>, seconds: i64, nanos: i32) {
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
fn write_float(out: &mut Vec<u8>, v: f64, om: bool) {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::histogram::{ChatHistogram, Exemplar, HistogramLayout, NativeLayout};
    use prometheus_client::encoding::prometheus_protobuf;
    use prometheus_client::metrics::{counter::Counter, family::Family, gauge::Gauge, info::Info};
    use prometheus_client::registry::Registry;
    use std::io::Read as _;
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
            1.0, 2.0, 5.0, 10.0, 15.0, 20.0, 30.0, 45.0, 60.0, 90.0, 120.0, 180.0, 300.0, 600.0,
            900.0, 1200.0, 1800.0,
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
            wait.metric.push(h.to_dto(&layout, labels));
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
            .expect(
                "promtool is not installed: apt-get install -y prometheus (scripts/test does it)",
            );
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
}
