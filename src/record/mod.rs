//! Record: admitted events into histograms, counters and the live queue.
//!
//! Every metric lives in one [`Metrics`] value that owns its registry (no global registry).
//! The same [`Metrics::apply`] runs for a live event and for a stored one replayed at start, so
//! the histograms after a restart are the ones before it.

pub mod histogram;
pub mod queue;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use prometheus_client::encoding::prometheus_protobuf::{self, prometheus_data_model as dto};
use prometheus_client::encoding::{EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::Registry;

use crate::admit::{CommitStats, StoredEvent};
use crate::config::Settings;
use crate::decode::EventKind;
use crate::expose::{self, BucketLabels, Format, HistogramText, Output};
use crate::record::histogram::{
    ChatHistogram, ChatId, Exemplar, HistogramLayout, NativeLayout, ProtobufScratch,
};
use crate::record::queue::Live;

/// The label value of an empty department or a chat no agent took.
pub const NONE: &str = "none";
/// The label value of values past a cap.
pub const OTHER: &str = "other";
/// Longest label value kept; a longer id or role counts as `other`.
const MAX_LABEL_LEN: usize = 128;

/// What happened to a delivery, the `outcome` label.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// Admitted and recorded.
    Observed,
    /// A valid event the exporter does not record (messages, unknown types).
    Ignored,
    /// Admitted before: changed nothing.
    Duplicate,
    /// Refused with a 4xx.
    Rejected,
    /// Not stored because the store failed: answered 503, the sender retries.
    Error,
}

impl Outcome {
    const ALL: [Outcome; 5] = [
        Outcome::Observed,
        Outcome::Ignored,
        Outcome::Duplicate,
        Outcome::Rejected,
        Outcome::Error,
    ];

    fn as_label(self) -> &'static str {
        match self {
            Outcome::Observed => "observed",
            Outcome::Ignored => "ignored",
            Outcome::Duplicate => "duplicate",
            Outcome::Rejected => "rejected",
            Outcome::Error => "error",
        }
    }
}

/// Why a delivery was refused, the `reason` label.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Reason {
    /// Not JSON (or not a form), or not an object.
    MalformedBody,
    /// A required field is absent.
    MissingField,
    /// A field's value is not acceptable.
    InvalidField,
    /// Neither JSON nor a form.
    UnsupportedMediaType,
    /// Over the body limit.
    PayloadTooLarge,
    /// Token or signature missing or wrong.
    Unauthorized,
}

impl Reason {
    const ALL: [Reason; 6] = [
        Reason::MalformedBody,
        Reason::MissingField,
        Reason::InvalidField,
        Reason::UnsupportedMediaType,
        Reason::PayloadTooLarge,
        Reason::Unauthorized,
    ];

    /// The label value.
    pub fn as_label(self) -> &'static str {
        match self {
            Reason::MalformedBody => "malformed_body",
            Reason::MissingField => "missing_field",
            Reason::InvalidField => "invalid_field",
            Reason::UnsupportedMediaType => "unsupported_media_type",
            Reason::PayloadTooLarge => "payload_too_large",
            Reason::Unauthorized => "unauthorized",
        }
    }

    /// The reason for a decoder's label.
    pub fn from_label(label: &str) -> Reason {
        Reason::ALL
            .into_iter()
            .find(|r| r.as_label() == label)
            .unwrap_or(Reason::MalformedBody)
    }
}

const KINDS: [EventKind; 5] = [
    EventKind::ChatStart,
    EventKind::ChatAccept,
    EventKind::ChatMessage,
    EventKind::ChatClose,
    EventKind::Unknown,
];

fn kind_index(kind: EventKind) -> usize {
    KINDS
        .iter()
        .position(|k| *k == kind)
        .unwrap_or(KINDS.len() - 1)
}

/// A label value shared between series without copying (departments, roles).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Value(pub Arc<str>);

impl EncodeLabelValue for Value {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        use std::fmt::Write;
        encoder.write_str(&self.0)
    }
}

type DepartmentLabel = [(&'static str, Value); 1];

/// Maps raw ids and roles to label values, keeping each label's distinct values under its cap.
#[derive(Debug)]
struct Capped {
    label: &'static str,
    cap: usize,
    /// Raw value -> label value, for raw values that got a series of their own or share one.
    known: HashMap<Box<str>, Value>,
    /// Distinct label values handed out.
    values: HashSet<Value>,
    none: Value,
    other: Value,
}

impl Capped {
    fn new(label: &'static str, cap: usize) -> Self {
        Capped {
            label,
            cap,
            known: HashMap::new(),
            values: HashSet::new(),
            none: Value(Arc::from(NONE)),
            other: Value(Arc::from(OTHER)),
        }
    }

    /// The label value for `raw` (already mapped to its display form by `display`); `None` when
    /// it went to `other`.
    fn get(&mut self, raw: &str, display: impl FnOnce(&str) -> String) -> Option<Value> {
        if raw.is_empty() {
            return Some(self.none.clone());
        }
        if let Some(v) = self.known.get(raw) {
            return Some(v.clone());
        }
        if raw.len() > MAX_LABEL_LEN {
            return None;
        }
        let shown = display(raw);
        let value = match self.values.get(shown.as_str()) {
            Some(v) => v.clone(),
            None if self.values.len() < self.cap => {
                let v = Value(Arc::from(shown));
                self.values.insert(v.clone());
                v
            }
            None => return None,
        };
        self.known.insert(raw.into(), value.clone());
        Some(value)
    }
}

impl std::borrow::Borrow<str> for Value {
    fn borrow(&self) -> &str {
        &self.0
    }
}

/// The label values of departments and roles, with their caps.
#[derive(Debug)]
pub struct Labeler {
    names: HashMap<String, String>,
    departments: Mutex<Capped>,
    roles: Mutex<Capped>,
    overflow: Family<[(&'static str, &'static str); 1], Counter>,
}

impl Labeler {
    pub(crate) fn new(
        settings: &Settings,
        overflow: Family<[(&'static str, &'static str); 1], Counter>,
    ) -> Self {
        Labeler {
            names: settings
                .departments
                .iter()
                .map(|(k, v)| (k.clone(), v.trim().to_owned()))
                .collect(),
            departments: Mutex::new(Capped::new("department", settings.max_departments)),
            roles: Mutex::new(Capped::new("agent_role", settings.max_agent_roles)),
            overflow,
        }
    }

    /// `department`: the configured name for the id, else the id, else `none`; `other` past the cap.
    pub fn department(&self, id: &str) -> Value {
        let mut d = lock(&self.departments);
        let names = &self.names;
        d.get(id, |id| {
            names.get(id).cloned().unwrap_or_else(|| id.to_owned())
        })
        .unwrap_or_else(|| {
            self.overflow.get_or_create(&[("label", d.label)]).inc();
            d.other.clone()
        })
    }

    /// `agent_role`: the role (already lower-cased), `none` without one; `other` past the cap.
    pub fn role(&self, role: Option<&str>) -> Value {
        let mut r = lock(&self.roles);
        r.get(role.unwrap_or(""), str::to_owned).unwrap_or_else(|| {
            self.overflow.get_or_create(&[("label", r.label)]).inc();
            r.other.clone()
        })
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic elsewhere never leaves these maps half-written: keep serving.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[derive(Debug)]
struct Pair {
    /// The series' label pairs as the text formats write them, rendered once.
    labels: Box<[u8]>,
    wait: ChatHistogram,
    duration: ChatHistogram,
}

/// (department, agent_role)
type SeriesKey = (Value, Value);

/// The wait or the duration histogram of a [`Pair`].
type PairPart = fn(&Pair) -> &ChatHistogram;

/// The two chat histograms, series by (department, agent_role).
#[derive(Debug)]
struct ChatSeries {
    wait_layout: HistogramLayout,
    duration_layout: HistogramLayout,
    wait_les: BucketLabels,
    duration_les: BucketLabels,
    exemplars: bool,
    series: RwLock<HashMap<SeriesKey, Arc<Mutex<Pair>>>>,
}

const WAIT_NAME: &str = "acquire_chat_wait_time_seconds";
const WAIT_HELP: &str = "Time visitors waited before an agent answered, per closed chat.";
const DURATION_NAME: &str = "acquire_chat_duration_seconds";
const DURATION_HELP: &str = "Duration of closed chats.";

impl ChatSeries {
    fn series(&self, key: (Value, Value)) -> Arc<Mutex<Pair>> {
        if let Some(s) = self
            .series
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&key)
        {
            return s.clone();
        }
        let mut map = self.series.write().unwrap_or_else(|e| e.into_inner());
        let labels = expose::render_labels(&[("agent_role", &key.1.0), ("department", &key.0.0)]);
        map.entry(key)
            .or_insert_with(|| {
                Arc::new(Mutex::new(Pair {
                    labels,
                    wait: ChatHistogram::new(&self.wait_layout),
                    duration: ChatHistogram::new(&self.duration_layout),
                }))
            })
            .clone()
    }

    /// The series, sorted by (department, agent_role) as the exposition lists them.
    fn sorted(&self) -> Vec<(SeriesKey, Arc<Mutex<Pair>>)> {
        let mut entries: Vec<_> = self
            .series
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        entries.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        entries
    }

    /// Both families in a text format, straight from the series (the classic part of
    /// [`Self::families`], without building it). Each series is locked only while it is
    /// written: a scrape of thousands of series never holds up the webhooks of the others.
    fn write_text(&self, out: &mut Output, om: bool) {
        let entries = self.sorted();
        let lines = self.wait_layout.bounds().len() + self.duration_layout.bounds().len() + 6;
        let labels = entries
            .first()
            .map_or(0, |(_, pair)| lock(pair).labels.len());
        out.reserve(entries.len() * lines * (labels + if om { 80 } else { 56 }));
        for (name, help, _, les, histogram) in self.parts() {
            let mut family = HistogramText::new(name, help, les, om);
            for (_, pair) in &entries {
                let pair = lock(pair);
                let h = histogram(&pair);
                if h.count() > 0 {
                    family.series(out, &pair.labels, h);
                }
            }
        }
    }

    /// Name, help, layout, rendered `le` values and accessor of the wait and duration families.
    fn parts(
        &self,
    ) -> [(
        &'static str,
        &'static str,
        &HistogramLayout,
        &BucketLabels,
        PairPart,
    ); 2] {
        [
            (
                WAIT_NAME,
                WAIT_HELP,
                &self.wait_layout,
                &self.wait_les,
                |p| &p.wait,
            ),
            (
                DURATION_NAME,
                DURATION_HELP,
                &self.duration_layout,
                &self.duration_les,
                |p| &p.duration,
            ),
        ]
    }

    /// Both families as length-delimited protobuf messages, byte for byte what prost makes of
    /// [`Self::families`] after [`newest_exemplar_only`], but written straight from the series
    /// ([`ChatHistogram::write_protobuf`]), each locked only while it is written.
    fn write_protobuf(&self, out: &mut Output) {
        use prost::Message as _;
        use prost::encoding::{WireType, encode_key, encode_varint};
        // MetricFamily.metric is field 4.
        const METRIC_FIELD: u32 = 4;
        let entries = self.sorted();
        let mut scratch = ProtobufScratch::default();
        let mut body = Vec::new();
        for (name, help, layout, _, histogram) in self.parts() {
            body.clear();
            for ((department, role), pair) in &entries {
                let pair = lock(pair);
                let h = histogram(&pair);
                if h.count() == 0 {
                    continue;
                }
                encode_key(METRIC_FIELD, WireType::LengthDelimited, &mut body);
                let labels = [("agent_role", &*role.0), ("department", &*department.0)];
                h.write_protobuf(layout, &labels, &mut scratch, &mut body);
            }
            if body.is_empty() {
                continue;
            }
            // The family's length comes first: its series are written aside, then passed on.
            let header = family(name, help, Vec::new());
            let mut head = Vec::with_capacity(256);
            encode_varint((header.encoded_len() + body.len()) as u64, &mut head);
            let _ = header.encode(&mut head);
            out.extend(&head);
            out.extend(&body);
        }
    }

    fn families(&self) -> [dto::MetricFamily; 2] {
        let entries = self.sorted();
        let mut wait = Vec::with_capacity(entries.len());
        let mut duration = Vec::with_capacity(entries.len());
        for ((department, role), pair) in entries {
            let labels = vec![
                label("agent_role", &role.0),
                label("department", &department.0),
            ];
            let pair = lock(&pair);
            // A series exists once anything was observed in it; a histogram that only ever saw
            // the other measure stays out, rather than showing an empty series.
            if pair.wait.count() > 0 {
                wait.push(pair.wait.to_dto(&self.wait_layout, labels.clone()));
            }
            if pair.duration.count() > 0 {
                duration.push(pair.duration.to_dto(&self.duration_layout, labels));
            }
        }
        [
            family(WAIT_NAME, WAIT_HELP, wait),
            family(DURATION_NAME, DURATION_HELP, duration),
        ]
    }
}

fn label(name: &str, value: &str) -> dto::LabelPair {
    dto::LabelPair {
        name: name.to_owned(),
        value: value.to_owned(),
    }
}

fn family(name: &str, help: &str, metric: Vec<dto::Metric>) -> dto::MetricFamily {
    dto::MetricFamily {
        name: name.to_owned(),
        help: help.to_owned(),
        r#type: dto::MetricType::Histogram as i32,
        metric,
        ..Default::default()
    }
}

/// Every metric of the exporter.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    received: Vec<[Counter; 5]>,
    rejections: Vec<Counter>,
    unanswered: Family<DepartmentLabel, Counter>,
    commits: Counter,
    commit_seconds: Histogram,
    stored: Gauge,
    labeler: Arc<Labeler>,
    chats: ChatSeries,
    live: Arc<Live>,
    clock: Clock,
}

/// The time now, in seconds since the Unix epoch: the system clock, or a test's own.
#[derive(Clone)]
pub struct Clock(Arc<dyn Fn() -> f64 + Send + Sync>);

impl Clock {
    /// The system clock.
    pub fn system() -> Self {
        Clock(Arc::new(now_seconds))
    }

    /// A clock that reads `now`.
    pub fn new(now: impl Fn() -> f64 + Send + Sync + 'static) -> Self {
        Clock(Arc::new(now))
    }

    /// Seconds since the Unix epoch.
    pub fn now(&self) -> f64 {
        (self.0)()
    }
}

impl std::fmt::Debug for Clock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Clock").field(&self.now()).finish()
    }
}

/// A layout problem in the settings (bucket bounds or native factor).
#[derive(Debug, thiserror::Error)]
#[error("histogram layout: {0}")]
pub struct LayoutError(String);

impl Metrics {
    /// All metrics, registered in a registry of their own, on the system clock.
    pub fn new(settings: &Settings) -> Result<Self, LayoutError> {
        Self::with_clock(settings, Clock::system())
    }

    /// [`Self::new`] on the given clock (what the live queue and the staffing window take as
    /// now).
    pub fn with_clock(settings: &Settings, clock: Clock) -> Result<Self, LayoutError> {
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

        let received_family = Family::<[(&'static str, &'static str); 2], Counter>::default();
        registry.register(
            "acquire_webhooks_received",
            "Webhook deliveries received, by event type and outcome",
            received_family.clone(),
        );
        // Every combination exists from the start, so rate() and alerts see zeros, not gaps.
        let received = KINDS
            .iter()
            .map(|k| {
                Outcome::ALL.map(|o| {
                    received_family
                        .get_or_create(&[("event", k.as_label()), ("outcome", o.as_label())])
                        .clone()
                })
            })
            .collect();

        let rejection_family = Family::<[(&'static str, &'static str); 1], Counter>::default();
        registry.register(
            "acquire_webhook_rejections",
            "Webhook deliveries refused with a 4xx, by reason",
            rejection_family.clone(),
        );
        let rejections = Reason::ALL
            .iter()
            .map(|r| {
                rejection_family
                    .get_or_create(&[("reason", r.as_label())])
                    .clone()
            })
            .collect();

        let unanswered = Family::<DepartmentLabel, Counter>::default();
        registry.register(
            "acquire_chats_unanswered",
            "Closed chats that carried no wait time (nobody answered them)",
            unanswered.clone(),
        );

        let overflow = Family::<[(&'static str, &'static str); 1], Counter>::default();
        registry.register(
            "acquire_label_overflow",
            "Events whose department or agent role was recorded as \"other\" because the label reached its cap",
            overflow.clone(),
        );
        for l in ["department", "agent_role"] {
            let _ = overflow.get_or_create(&[("label", l)]);
        }

        let commits = Counter::default();
        registry.register(
            "acquire_exporter_storage_commits",
            "Group commits of the durable store",
            commits.clone(),
        );
        let commit_seconds = Histogram::new([
            0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
        ]);
        registry.register(
            "acquire_exporter_storage_commit_duration_seconds",
            "Time a group commit of the durable store took",
            commit_seconds.clone(),
        );
        let stored = Gauge::default();
        registry.register(
            "acquire_exporter_storage_events",
            "Events held in the store (admitted chat starts, accepts and closes)",
            stored.clone(),
        );

        let labeler = Arc::new(Labeler::new(settings, overflow));
        let native = settings
            .native
            .map(|(factor, max)| NativeLayout::new(factor, max))
            .transpose()
            .map_err(|e| LayoutError(e.to_string()))?;
        let wait_layout = HistogramLayout::new(&settings.wait_buckets, native)
            .map_err(|e| LayoutError(e.to_string()))?;
        let duration_layout = HistogramLayout::new(&settings.duration_buckets, native)
            .map_err(|e| LayoutError(e.to_string()))?;
        let chats = ChatSeries {
            wait_les: BucketLabels::new(wait_layout.bounds()),
            duration_les: BucketLabels::new(duration_layout.bounds()),
            wait_layout,
            duration_layout,
            exemplars: settings.exemplars,
            series: RwLock::new(HashMap::new()),
        };
        let live = Arc::new(Live::new(
            settings,
            labeler.clone(),
            &mut registry,
            clock.clone(),
        ));
        registry.register_collector(Box::new(live.clone()));

        Ok(Metrics {
            registry,
            received,
            rejections,
            unanswered,
            commits,
            commit_seconds,
            stored,
            labeler,
            chats,
            live,
            clock,
        })
    }

    /// Add the standard `process_*` metrics of this process to the registry.
    pub fn register_process_metrics(&mut self) {
        self.registry
            .register_collector(Box::new(crate::expose::process::ProcessCollector));
    }

    /// Count one delivery.
    pub fn received(&self, kind: EventKind, outcome: Outcome) {
        self.received[kind_index(kind)]
            [Outcome::ALL.iter().position(|o| *o == outcome).unwrap_or(3)]
        .inc();
    }

    /// Count one refused delivery (also counted as received, outcome `rejected`).
    pub fn rejected(&self, kind: EventKind, reason: Reason) {
        self.received(kind, Outcome::Rejected);
        self.rejections[Reason::ALL.iter().position(|r| *r == reason).unwrap_or(0)].inc();
    }

    /// Note one group commit of the store.
    pub fn committed(&self, stats: CommitStats) {
        self.commits.inc();
        self.commit_seconds.observe(stats.seconds);
        self.stored.inc_by(stats.new as i64);
    }

    /// Note events found in the store at start.
    pub fn stored(&self, events: i64) {
        self.stored.inc_by(events);
    }

    /// Record one admitted event: live, or replayed from the store at start.
    pub fn apply(&self, e: &StoredEvent) {
        let at = e.received_ms as f64 / 1000.0;
        match e.kind {
            EventKind::ChatClose => {
                let department = self.labeler.department(&e.department_id);
                let role = self.labeler.role(e.agent_role.as_deref());
                if e.wait_seconds.is_none() {
                    self.unanswered
                        .get_or_create(&[("department", department.clone())])
                        .inc();
                }
                let series = self.chats.series((department.clone(), role));
                let chat_id: Option<ChatId> =
                    self.chats.exemplars.then(|| e.chat_id.as_str().into());
                let exemplar = |value: f64| {
                    chat_id.as_ref().map(|chat_id| Exemplar {
                        chat_id: chat_id.clone(),
                        value,
                        timestamp: UNIX_EPOCH + Duration::from_millis(e.received_ms.max(0) as u64),
                    })
                };
                {
                    let mut pair = lock(&series);
                    if let Some(w) = e.wait_seconds {
                        pair.wait.observe(&self.chats.wait_layout, w, exemplar(w));
                    }
                    if let Some(d) = e.duration_seconds {
                        pair.duration
                            .observe(&self.chats.duration_layout, d, exemplar(d));
                    }
                }
                self.live.closed(e, &department, at);
            }
            EventKind::ChatStart => self.live.started(e, at),
            EventKind::ChatAccept => self.live.accepted(e, at),
            EventKind::ChatMessage | EventKind::Unknown => {}
        }
    }

    /// Drop waiting chats past the expiry time.
    pub fn expire(&self) {
        self.live.expire(self.clock.now());
    }

    /// Everything, in the protobuf data model, for one scrape.
    pub fn gather(&self) -> Vec<dto::MetricFamily> {
        let mut families = self.registry_families();
        families.extend(self.chats.families());
        families
    }

    /// One scrape in the given format, appended to `out`: what [`expose::encode`] makes of
    /// [`Self::gather`] (with [`newest_exemplar_only`] for protobuf), but the chat histograms
    /// are written straight from their state.
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
                expose::encode(&registry, format, out.buf());
                out.boundary();
                self.chats.write_protobuf(out);
            }
            Format::Text | Format::OpenMetrics => {
                let om = format == Format::OpenMetrics;
                expose::encode_text_open(&registry, om, out.buf());
                out.boundary();
                self.chats.write_text(out, om);
                if om {
                    expose::write_eof(out.buf());
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

    /// Observations of the wait histogram, summed over series (for tests and the load generator).
    pub fn wait_count(&self) -> u64 {
        self.chats
            .series
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .map(|p| lock(p).wait.count())
            .sum()
    }
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
pub(crate) fn newest_exemplar_of(metric: &mut dto::Metric) {
    let Some(h) = metric.histogram.as_mut() else {
        return;
    };
    if h.positive_span.is_empty() && h.negative_span.is_empty() && h.zero_count == 0 {
        return;
    }
    let newest = h
        .bucket
        .iter()
        .enumerate()
        .filter_map(|(i, b)| Some((i, b.exemplar.as_ref()?.timestamp.as_ref()?)))
        .max_by_key(|(_, t)| (t.seconds, t.nanos))
        .map(|(i, _)| i);
    for (i, b) in h.bucket.iter_mut().enumerate() {
        if Some(i) != newest {
            b.exemplar = None;
        }
    }
}

/// Seconds since the Unix epoch, now.
pub fn now_seconds() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn department_labels_follow_names_ids_none_and_the_cap() {
        let mut settings = Settings::default();
        settings.departments.insert("12".into(), "Sales".into());
        settings.max_departments = 3;
        let overflow = Family::default();
        let l = Labeler::new(&settings, overflow.clone());
        let cases = [
            ("configured_name", "12", "Sales"),
            ("raw_id", "40", "40"),
            ("no_department", "", "none"),
            ("second_raw_id", "41", "41"),
            ("past_the_cap", "42", "other"),
            ("known_before_the_cap", "40", "40"),
            ("too_long", &"9".repeat(200), "other"),
        ];
        for (name, id, want) in cases {
            assert_eq!(&*l.department(id).0, want, "{name}");
        }
        assert_eq!(overflow.get_or_create(&[("label", "department")]).get(), 2);
    }

    #[test]
    fn roles_are_capped_too() {
        let settings = Settings {
            max_agent_roles: 1,
            ..Settings::default()
        };
        let l = Labeler::new(&settings, Family::default());
        assert_eq!(&*l.role(Some("administrator")).0, "administrator");
        assert_eq!(&*l.role(None).0, "none");
        assert_eq!(&*l.role(Some("operator")).0, "other");
    }

    fn close(
        chat: &str,
        department: &str,
        role: Option<&str>,
        wait: Option<f64>,
        ms: i64,
    ) -> StoredEvent {
        StoredEvent {
            kind: EventKind::ChatClose,
            account_id: "1".into(),
            chat_id: chat.into(),
            received_ms: ms,
            department_id: department.into(),
            agent_role: role.map(str::to_owned),
            agent_id: None,
            wait_seconds: wait,
            duration_seconds: Some(125.5),
        }
    }

    /// The text formats write the chat histograms straight from their state; this guards that
    /// they stay byte for byte what the reference encoder makes of the full data model.
    #[test]
    fn direct_text_encoding_equals_the_reference_encoder() {
        let mut settings = Settings::default();
        settings
            .departments
            .insert("7".into(), "Sales \"EU\"\\north\nline".into());
        let metrics = Metrics::new(&settings).unwrap();
        let events = [
            close("a", "7", Some("operator"), Some(3.0), 1_700_000_000_123),
            close("b", "7", Some("operator"), Some(0.25), 1_700_000_001_000),
            close("c", "8", None, None, 1_700_000_002_000),
            close("d", "", Some("admin"), Some(1e7), 1_700_000_003_500),
            close("e\"q", "9", Some("operator"), Some(45.0), 1_700_000_004_000),
        ];
        for e in &events {
            metrics.apply(e);
        }
        let mut direct = Vec::new();
        metrics.encode(Format::Protobuf, &mut direct);
        let mut families = metrics.gather();
        newest_exemplar_only(&mut families);
        let mut reference = Vec::new();
        expose::encode(&families, Format::Protobuf, &mut reference);
        assert!(direct.len() > 1000, "{}", direct.len());
        assert!(
            direct == reference,
            "protobuf differs from the reference encoder"
        );
        for format in [Format::Text, Format::OpenMetrics] {
            let mut direct = Vec::new();
            metrics.encode(format, &mut direct);
            let mut reference = Vec::new();
            expose::encode(&metrics.gather(), format, &mut reference);
            let (direct, reference) = (
                String::from_utf8(direct).unwrap(),
                String::from_utf8(reference).unwrap(),
            );
            assert!(
                direct.contains("acquire_chat_wait_time_seconds_bucket"),
                "{direct}"
            );
            assert!(
                !direct.contains("..\n"),
                "help texts end in one period: {direct}"
            );
            assert_eq!(direct, reference, "{format:?}");
        }
    }

    #[test]
    fn families_without_observations_are_left_out_of_the_text() {
        let metrics = Metrics::new(&Settings::default()).unwrap();
        // A chat nobody answered has a duration but no wait.
        metrics.apply(&close("a", "7", None, None, 1_700_000_000_000));
        let mut text = Vec::new();
        metrics.encode(Format::Text, &mut text);
        let text = String::from_utf8(text).unwrap();
        assert!(
            text.contains("acquire_chat_duration_seconds_count"),
            "{text}"
        );
        assert!(!text.contains("acquire_chat_wait_time_seconds"), "{text}");
    }
}
