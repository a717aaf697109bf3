//! Record: admitted events into histograms, counters, the live queue and the staffing window.
//!
//! State only: every value the exporter derives from events lives in one [`Metrics`] value, and
//! the same [`Metrics::apply`] runs for a live event and for a stored one replayed at start, so
//! the state after a restart is the one before it. Names, help texts and bytes belong to the
//! exposition ([`crate::expose`]), which reads this state.

pub mod chats;
pub mod histogram;
pub mod labels;
pub mod queue;
pub mod snapshot;
pub mod window;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;

use crate::config::Settings;
use crate::event::{Admitted, ChatEvent, ChatKind, EventKind, Outcome, Reason, Seq};
use crate::record::chats::ChatSeries;
use crate::record::histogram::{ChatHistogram, ChatId, Exemplar};
use crate::record::labels::Interner;
pub use crate::record::labels::{Labeler, NONE, OTHER, Value};
use crate::record::queue::{DepartmentLabel, Live};
use crate::record::snapshot::{Fingerprint, HourState, SeriesState, State};
use crate::staffing::history::{HOURS_PER_WEEK, History, HourTotals, MAX_WEEKS};

pub use crate::layout::LayoutError;

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

/// A family with one `label` label, such as the label overflow counter.
pub type LabelFamily = Family<[(&'static str, &'static str); 1], Counter>;

/// Every metric's state.
#[derive(Debug)]
pub struct Metrics {
    received_family: Family<[(&'static str, &'static str); 2], Counter>,
    /// `received[kind.index()][outcome.index()]`.
    received: [[Counter; Outcome::ALL.len()]; EventKind::ALL.len()],
    rejection_family: LabelFamily,
    /// `rejections[reason.index()]`.
    rejections: [Counter; Reason::ALL.len()],
    unanswered: Family<DepartmentLabel, Counter>,
    overflow: LabelFamily,
    commits: Counter,
    commit_seconds: Histogram,
    stored: Gauge,
    snapshots: Counter,
    snapshot_failures: Counter,
    snapshot_seconds: Gauge<f64, AtomicU64>,
    snapshot_bytes: Gauge,
    pruned: Counter,
    labeler: Arc<Labeler>,
    chats: ChatSeries,
    exemplars: bool,
    live: Arc<Live>,
    /// Per department and hour, the totals of the chats that arrived in it.
    history: Mutex<History>,
    /// The sequence number of the last event applied.
    applied: AtomicU64,
    fingerprint: Fingerprint,
}

/// Bounds of `acquire_exporter_storage_commit_duration_seconds`.
const COMMIT_SECONDS_BOUNDS: [f64; 12] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
];

impl Metrics {
    /// Empty state for `settings`, on the system clock.
    pub fn new(settings: &Settings) -> Self {
        Self::with_clock(settings, Clock::system())
    }

    /// [`Self::new`] on the given clock (what the live queue and the staffing window take as
    /// now).
    pub fn with_clock(settings: &Settings, clock: Clock) -> Self {
        let received_family = Family::<[(&'static str, &'static str); 2], Counter>::default();
        // Every combination exists from the start, so rate() and alerts see zeros, not gaps.
        let received = EventKind::ALL.map(|k| {
            Outcome::ALL.map(|o| {
                received_family
                    .get_or_create(&[("event", k.as_label()), ("outcome", o.as_label())])
                    .clone()
            })
        });
        let rejection_family = LabelFamily::default();
        let rejections = Reason::ALL.map(|r| {
            rejection_family
                .get_or_create(&[("reason", r.as_label())])
                .clone()
        });
        let overflow = LabelFamily::default();
        for l in ["department", "agent_role"] {
            let _ = overflow.get_or_create(&[("label", l)]);
        }
        let labeler = Arc::new(Labeler::new(settings, overflow.clone()));
        let live = Arc::new(Live::new(settings, labeler.clone(), clock.clone()));
        Metrics {
            received_family,
            received,
            rejection_family,
            rejections,
            unanswered: Family::default(),
            overflow,
            commits: Counter::default(),
            commit_seconds: Histogram::new(COMMIT_SECONDS_BOUNDS),
            stored: Gauge::default(),
            snapshots: Counter::default(),
            snapshot_failures: Counter::default(),
            snapshot_seconds: Gauge::default(),
            snapshot_bytes: Gauge::default(),
            pruned: Counter::default(),
            labeler,
            chats: ChatSeries::new(
                settings.wait_layout.clone(),
                settings.duration_layout.clone(),
            ),
            exemplars: settings.exemplars,
            live,
            history: Mutex::new(History::new()),
            applied: AtomicU64::new(0),
            fingerprint: Fingerprint::of(settings),
        }
    }

    /// The state at the last event applied, for a snapshot.
    pub fn export(&self) -> State {
        let (departments, roles) = self.labeler.export();
        let overflow = |label| {
            self.overflow
                .get(&[("label", label)])
                .map_or(0, |c| c.get())
        };
        let mut unanswered: Vec<(String, u64)> = departments
            .values
            .iter()
            .map(String::as_str)
            .chain([NONE, OTHER])
            .filter_map(|d| {
                let n = self
                    .unanswered
                    .get(&[("department", Value(Arc::from(d)))])?
                    .get();
                Some((d.to_owned(), n))
            })
            .collect();
        unanswered.sort();
        unanswered.dedup();
        let series = self
            .chats
            .sorted()
            .iter()
            .map(|series| {
                let series = lock(series);
                let [role, department] = series.label_values();
                SeriesState {
                    department: department.to_owned(),
                    role: role.to_owned(),
                    wait: series.wait.export(),
                    duration: series.duration.export(),
                }
            })
            .collect();
        let history = lock(&self.history);
        State {
            seq: self.applied.load(Ordering::Acquire),
            epoch: self.live.epoch(),
            fingerprint: self.fingerprint.clone(),
            departments,
            roles,
            overflow: (overflow("department"), overflow("agent_role")),
            unanswered,
            series,
            queue: self.live.export(),
            history: {
                let mut grouped: Vec<(String, Vec<(i64, HourState)>)> = Vec::new();
                for (d, hour, t) in history.entries() {
                    if grouped.last().is_none_or(|(last, _)| last != d) {
                        grouped.push((d.to_owned(), Vec::new()));
                    }
                    if let Some((_, hours)) = grouped.last_mut() {
                        hours.push((
                            hour,
                            HourState {
                                arrivals: t.arrivals,
                                answered: t.answered,
                                abandoned: t.abandoned,
                                handle_seconds: t.handle_seconds,
                                queue_seconds: t.queue_seconds,
                            },
                        ));
                    }
                }
                grouped
            },
            history_covered: history.first_hour().zip(history.newest_hour()),
        }
    }

    /// The metrics of a snapshot's state, for `settings` on `clock` (see [`Self::restore`]).
    pub fn import(settings: &Settings, clock: Clock, state: &State) -> Result<Self, String> {
        let metrics = Metrics::with_clock(settings, clock);
        metrics.restore(state)?;
        Ok(metrics)
    }

    /// Take a snapshot's state. These metrics must not have applied any event yet, and the
    /// snapshot must have been made under the same settings (its fingerprint). Everything is
    /// checked before anything changes: on an error, which says what does not fit, the metrics
    /// are as they were.
    pub fn restore(&self, state: &State) -> Result<(), String> {
        let differences = state.fingerprint.differences(&self.fingerprint);
        if !differences.is_empty() {
            return Err(format!(
                "made under other settings: {}",
                differences.join(", ")
            ));
        }
        if self.applied() != 0 {
            return Err("restored into metrics that applied events already".into());
        }
        let mut intern = Interner::default();
        let mut series = Vec::with_capacity(state.series.len());
        for s in &state.series {
            let fits = |family, h| {
                ChatHistogram::import(self.chats.layout(family), h)
                    .map_err(|e| format!("series {:?}/{:?}: {e}", s.department, s.role))
            };
            series.push((
                intern.value(&s.department),
                intern.value(&s.role),
                fits(chats::ChatFamily::Wait, &s.wait)?,
                fits(chats::ChatFamily::Duration, &s.duration)?,
            ));
        }
        let queue = self.live.build(&state.queue, &mut intern)?;
        // Checked: now take it.
        self.labeler
            .import(&state.departments, &state.roles, &mut intern);
        let (departments, roles) = state.overflow;
        for (label, n) in [("department", departments), ("agent_role", roles)] {
            self.overflow.get_or_create(&[("label", label)]).inc_by(n);
        }
        for (d, n) in &state.unanswered {
            self.unanswered
                .get_or_create(&[("department", intern.value(d))])
                .inc_by(*n);
        }
        for (department, role, wait, duration) in series {
            let series = self.chats.series(department, role);
            let mut series = lock(&series);
            series.wait = wait;
            series.duration = duration;
        }
        self.live.set_epoch(state.epoch);
        self.live.replace(queue);
        {
            let mut history = lock(&self.history);
            for (d, hours) in &state.history {
                history.add_hours(
                    d,
                    hours.iter().map(|(hour, t)| {
                        (
                            *hour,
                            HourTotals {
                                arrivals: t.arrivals,
                                answered: t.answered,
                                abandoned: t.abandoned,
                                handle_seconds: t.handle_seconds,
                                queue_seconds: t.queue_seconds,
                            },
                        )
                    }),
                );
            }
            history.set_covered(state.history_covered);
        }
        self.applied.store(state.seq, Ordering::Release);
        Ok(())
    }

    /// The sequence number of the last event applied.
    pub fn applied(&self) -> Seq {
        self.applied.load(Ordering::Acquire)
    }

    /// Count one delivery.
    pub fn received(&self, kind: EventKind, outcome: Outcome) {
        self.received[kind.index()][outcome.index()].inc();
    }

    /// Count one refused delivery (also counted as received, outcome `rejected`).
    pub fn rejected(&self, kind: EventKind, reason: Reason) {
        self.received(kind, Outcome::Rejected);
        self.rejections[reason.index()].inc();
    }

    /// Note one group commit of the store: the events it added, the seconds it took.
    pub fn committed(&self, new_events: usize, seconds: f64) {
        self.commits.inc();
        self.commit_seconds.observe(seconds);
        self.stored.inc_by(new_events as i64);
    }

    /// Note events found in the store at start.
    pub fn stored(&self, events: i64) {
        self.stored.inc_by(events);
    }

    /// Note a snapshot written in `seconds`, `bytes` long.
    pub fn snapshot_written(&self, seconds: f64, bytes: usize) {
        self.snapshots.inc();
        self.snapshot_seconds.set(seconds);
        self.snapshot_bytes.set(bytes as i64);
    }

    /// Note a snapshot that could not be written.
    pub fn snapshot_failed(&self) {
        self.snapshot_failures.inc();
    }

    /// Note old events pruned from the store.
    pub fn pruned(&self, events: u64) {
        self.pruned.inc_by(events);
        self.stored.dec_by(events as i64);
    }

    /// Snapshots written, failed, the last one's seconds and bytes, and events pruned.
    pub fn snapshot_metrics(
        &self,
    ) -> (&Counter, &Counter, &Gauge<f64, AtomicU64>, &Gauge, &Counter) {
        (
            &self.snapshots,
            &self.snapshot_failures,
            &self.snapshot_seconds,
            &self.snapshot_bytes,
            &self.pruned,
        )
    }

    /// Record one admitted event: live, or replayed from the store at start.
    pub fn apply(&self, admitted: &Admitted) {
        let e = &admitted.event;
        let at = e.received_ms as f64 / 1000.0;
        self.applied.fetch_max(admitted.seq, Ordering::AcqRel);
        match e.kind {
            ChatKind::Close => {
                let department = self.labeler.department(&e.department_id);
                self.record_arrival(&department, e);
                let role = self.labeler.role(e.agent_role.as_deref());
                if e.wait_seconds.is_none() {
                    self.unanswered
                        .get_or_create(&[("department", department.clone())])
                        .inc();
                }
                let series = self.chats.series(department.clone(), role);
                let chat_id: Option<ChatId> = self.exemplars.then(|| e.chat_id.as_str().into());
                let exemplar = |value: f64| {
                    chat_id.as_ref().map(|chat_id| Exemplar {
                        chat_id: chat_id.clone(),
                        value,
                        timestamp: UNIX_EPOCH + Duration::from_millis(e.received_ms.max(0) as u64),
                    })
                };
                {
                    let mut series = lock(&series);
                    if let Some(w) = e.wait_seconds {
                        let layout = self.chats.layout(chats::ChatFamily::Wait);
                        series.wait.observe(layout, w, exemplar(w));
                    }
                    if let Some(d) = e.duration_seconds {
                        let layout = self.chats.layout(chats::ChatFamily::Duration);
                        series.duration.observe(layout, d, exemplar(d));
                    }
                }
                self.live.closed(e, &department, at);
            }
            ChatKind::Start => self.live.started(e, at),
            ChatKind::Accept => self.live.accepted(e, at),
        }
    }

    /// The closed chat in the hour-of-week history (see [`add_arrival`]).
    fn record_arrival(&self, department: &Value, e: &ChatEvent) {
        add_arrival(&mut lock(&self.history), &department.0, e);
    }

    /// The hour-of-week history, locked.
    pub fn history(&self) -> std::sync::MutexGuard<'_, History> {
        lock(&self.history)
    }

    /// When the store began, in seconds since the epoch: where new staffing windows start.
    pub fn set_epoch(&self, epoch_seconds: f64) {
        self.live.set_epoch(epoch_seconds);
    }

    /// Deliveries by event and outcome.
    pub fn received_family(&self) -> &Family<[(&'static str, &'static str); 2], Counter> {
        &self.received_family
    }

    /// Refused deliveries by reason.
    pub fn rejection_family(&self) -> &LabelFamily {
        &self.rejection_family
    }

    /// Closed chats without a wait, by department.
    pub fn unanswered(&self) -> &Family<DepartmentLabel, Counter> {
        &self.unanswered
    }

    /// Events recorded as `other` because a label reached its cap, by label.
    pub fn overflow(&self) -> &LabelFamily {
        &self.overflow
    }

    /// Group commits of the store.
    pub fn commits(&self) -> &Counter {
        &self.commits
    }

    /// Time the group commits took.
    pub fn commit_seconds(&self) -> &Histogram {
        &self.commit_seconds
    }

    /// Events held in the store.
    pub fn stored_events(&self) -> &Gauge {
        &self.stored
    }

    /// The chat histograms.
    pub fn chats(&self) -> &ChatSeries {
        &self.chats
    }

    /// The live queue and the staffing window.
    pub fn live(&self) -> &Arc<Live> {
        &self.live
    }

    /// Observations of the wait histogram, summed over series (for tests and the load generator).
    pub fn wait_count(&self) -> u64 {
        self.chats.wait_count()
    }
}

/// A closed chat into an hour-of-week history, in the hour it arrived: its close less its
/// duration and its wait. The history keeps [`MAX_WEEKS`] weeks.
pub fn add_arrival(history: &mut History, department: &str, e: &ChatEvent) {
    let closed_at = e.received_ms as f64 / 1000.0;
    let elapsed = e.duration_seconds.unwrap_or(0.0) + e.wait_seconds.unwrap_or(0.0);
    let before = history.newest_hour();
    history.add_close(
        department,
        closed_at - elapsed,
        e.wait_seconds,
        e.duration_seconds,
    );
    if let Some(newest) = history.newest_hour().filter(|n| Some(*n) != before) {
        history.forget_before(newest - HOURS_PER_WEEK * i64::from(MAX_WEEKS));
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic elsewhere never leaves these maps half-written: keep serving.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Seconds since the Unix epoch, now.
pub fn now_seconds() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}
