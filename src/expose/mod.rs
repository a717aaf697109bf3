//! Expose: `/metrics`. Content negotiation, and three formats over one data model
//! (`Vec<dto::MetricFamily>`, from `prometheus_client`'s registry plus the chat histograms):
//!
//! - classic Prometheus text 0.0.4 and OpenMetrics text 1.0.0 ([`text`]);
//! - protobuf: length-delimited `io.prometheus.client.MetricFamily` messages, the only format
//!   that carries native histogram buckets ([`protobuf`]).
//!
//! The registry's families (counters, gauges, the live queue's [`live`] collector, the process
//! metrics) are encoded from their data model; the two chat histograms, nearly all of a large
//! page, are written straight from their state by one walk ([`chats`]) with a sink per format,
//! and tests hold them byte for byte to what the reference data model ([`model`]) encodes to.
//!
//! Encoding never fails: a family without samples, of a type a format cannot express, or a
//! sample without the value its type needs is left out rather than failing the whole scrape.

pub mod chats;
pub mod live;
pub mod model;
pub mod output;
pub mod process;
pub mod protobuf;
pub mod text;

use std::sync::Arc;

use prometheus_client::encoding::prometheus_protobuf::{self, prometheus_data_model as dto};
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::Registry;
use prost::Message as _;

pub use crate::expose::output::{CHUNK, Output};
pub use crate::expose::text::{BucketLabels, HistogramText, render_labels, write_eof};
use crate::record::Metrics;

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
            text::write_families(families, om, out);
            if om {
                write_eof(out);
            }
        }
    }
}

/// [`text::write_families`] under its former name.
pub fn encode_text_open(families: &[dto::MetricFamily], om: bool, out: &mut Vec<u8>) {
    text::write_families(families, om, out)
}

/// A family with a name and at least one sample; others are left out of every format.
fn exposable(family: &dto::MetricFamily) -> bool {
    !family.name.is_empty() && !family.metric.is_empty()
}

pub(crate) use crate::record::histogram::unix_parts;

/// The exposition of one [`Metrics`]: its registry (names, help texts, the order families are
/// listed in) and the chat histograms.
#[derive(Debug)]
pub struct Exposition {
    metrics: Arc<Metrics>,
    registry: Registry,
    chats: chats::ChatFamilies,
}

impl Exposition {
    /// The exposition of `metrics`.
    pub fn new(metrics: Arc<Metrics>) -> Self {
        let mut registry = Registry::default();
        // Help texts go in without their final period: the registry appends one.
        registry.register(
            "acquire_exporter_build",
            "Version of the exporter, always 1",
            Info::new(vec![
                ("version", env!("CARGO_PKG_VERSION")),
                (
                    "revision",
                    option_env!("ACQUIRE_EXPORTER_REVISION").unwrap_or("unknown"),
                ),
            ]),
        );
        registry.register(
            "acquire_webhooks_received",
            "Webhook deliveries received, by event type and outcome",
            metrics.received_family().clone(),
        );
        registry.register(
            "acquire_webhook_rejections",
            "Webhook deliveries refused with a 4xx, by reason",
            metrics.rejection_family().clone(),
        );
        registry.register(
            "acquire_chats_unanswered",
            "Closed chats that carried no wait time (nobody answered them)",
            metrics.unanswered().clone(),
        );
        registry.register(
            "acquire_label_overflow",
            "Events whose department or agent role was recorded as \"other\" because the label reached its cap",
            metrics.overflow().clone(),
        );
        registry.register(
            "acquire_exporter_storage_commits",
            "Group commits of the durable store",
            metrics.commits().clone(),
        );
        registry.register(
            "acquire_exporter_storage_commit_duration_seconds",
            "Time a group commit of the durable store took",
            metrics.commit_seconds().clone(),
        );
        registry.register(
            "acquire_exporter_storage_events",
            "Events held in the store (admitted chat starts, accepts and closes)",
            metrics.stored_events().clone(),
        );
        let (snapshots, failures, seconds, bytes, pruned) = metrics.snapshot_metrics();
        registry.register(
            "acquire_exporter_storage_snapshots",
            "Snapshots of the derived state written to the store",
            snapshots.clone(),
        );
        registry.register(
            "acquire_exporter_storage_snapshot_failures",
            "Snapshots of the derived state that could not be written",
            failures.clone(),
        );
        registry.register(
            "acquire_exporter_storage_snapshot_duration_seconds",
            "Time the last snapshot took to build and write",
            seconds.clone(),
        );
        registry.register(
            "acquire_exporter_storage_snapshot_bytes",
            "Size of the last snapshot written",
            bytes.clone(),
        );
        registry.register(
            "acquire_exporter_storage_pruned_events",
            "Events older than the retention deleted from the store (their contribution stays in the snapshot)",
            pruned.clone(),
        );
        live::register(&mut registry, metrics.live());
        let chats = chats::ChatFamilies::new(metrics.chats());
        Exposition {
            metrics,
            registry,
            chats,
        }
    }

    /// Add the standard `process_*` metrics of this process.
    pub fn with_process_metrics(mut self) -> Self {
        self.registry
            .register_collector(Box::new(process::ProcessCollector));
        self
    }

    /// The metrics exposed.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// Everything, in the protobuf data model, for one scrape (the reference the direct
    /// encoders are held to).
    pub fn gather(&self) -> Vec<dto::MetricFamily> {
        let mut families = self.registry_families();
        families.extend(model::chat_families(self.metrics.chats()));
        families
    }

    /// One scrape in the given format, appended to `out`: what [`encode`] makes of
    /// [`Self::gather`] (with [`model::newest_exemplar_only`] for protobuf), but the chat
    /// histograms are written straight from their state.
    pub fn encode(&self, format: Format, out: &mut Vec<u8>) {
        let mut whole = Output::whole(std::mem::take(out));
        self.write(format, &mut whole);
        *out = whole.into_vec();
    }

    /// One scrape in the given format into `out`, as [`Self::encode`].
    pub fn write(&self, format: Format, out: &mut Output) {
        let registry = self.registry_families();
        match format {
            Format::Protobuf => {
                encode(&registry, format, out.buf());
                out.boundary();
                self.chats.write_protobuf(self.metrics.chats(), out);
            }
            Format::Text | Format::OpenMetrics => {
                let om = format == Format::OpenMetrics;
                text::write_families(&registry, om, out.buf());
                out.boundary();
                self.chats.write_text(self.metrics.chats(), out, om);
                if om {
                    write_eof(out.buf());
                }
            }
        }
    }

    fn registry_families(&self) -> Vec<dto::MetricFamily> {
        match prometheus_protobuf::encode(&self.registry) {
            Ok(mut families) => {
                // A family's series come out of a hash map: in label order, a page reads the same
                // from one scrape to the next.
                for family in &mut families {
                    family.metric.sort_by_cached_key(|m| {
                        m.label
                            .iter()
                            .map(|l| (l.name.clone(), l.value.clone()))
                            .collect::<Vec<_>>()
                    });
                }
                families
            }
            Err(e) => {
                // The chat histograms are still served: one failing metric must not fail a scrape.
                tracing::error!(error = %e, "encoding the registry failed");
                Vec::new()
            }
        }
    }
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

#[cfg(test)]
mod tests;
