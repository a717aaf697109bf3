//! The live queue and the staffing estimate, from the start, accept and close events.
//!
//! `CHAT_ON_START` puts a chat in its department's queue; `CHAT_ON_ACCEPT` or a close takes it
//! out. A chat that neither is accepted nor closes leaves after the expiry time and is counted.
//! Events may come out of order or repeated: a start that arrives after its chat's accept or close
//! is ignored (finished chats are remembered for the expiry time), a repeated start changes
//! nothing. Gauges are computed when scraped, from the event times, so they hold after a restart
//! that replays the stored events.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::hash::{BuildHasher, RandomState};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::DescriptorEncoder;
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::{Family, MetricConstructor};
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::admit::StoredEvent;
use crate::config::Settings;
use crate::record::{Clock, Labeler, Value};
use crate::staffing::{self, Target, Window};

/// Most chats held waiting at once; starts past it are dropped (and logged), so a flood of
/// starts cannot grow memory without bound.
const MAX_WAITING: usize = 100_000;
/// Most agents remembered per department for `acquire_agents_seen`.
const MAX_AGENTS: usize = 2_000;
/// Most finished chats remembered to ignore late starts; the oldest are forgotten first.
const MAX_FINISHED: usize = 200_000;
/// Slots of the staffing window.
const WINDOW_SLOTS: u32 = 60;

/// The vendor's start and accept examples carry no account id, so chats are matched by id alone:
/// one exporter serves one Acquire account.
type ChatKey = Box<str>;
type DepartmentLabel = [(&'static str, Value); 1];

/// Makes the accept-time histogram of a new department with the wait-time buckets.
#[derive(Clone, Debug)]
struct Buckets(Arc<[f64]>);

impl MetricConstructor<Histogram> for Buckets {
    fn new_metric(&self) -> Histogram {
        Histogram::new(self.0.iter().copied())
    }
}

#[derive(Debug)]
struct Waiting {
    department: Value,
    since: f64,
}

#[derive(Debug)]
struct Department {
    window: Window,
    /// Agent id -> when last seen.
    agents: HashMap<Box<str>, f64>,
}

#[derive(Debug, Default)]
struct State {
    waiting: HashMap<ChatKey, Waiting>,
    /// Whether any start came: without starts there is no queue, and nothing to remember.
    starts_seen: bool,
    /// Chats accepted or closed (a keyed hash of the id, and when): a late start must not queue
    /// them again. Bounded by the expiry time and by [`MAX_FINISHED`].
    finished: HashMap<u64, f64>,
    /// `finished` in the order it was filled, to forget the oldest first.
    finished_order: VecDeque<(u64, f64)>,
    hasher: RandomState,
    /// Departments seen in the queue or the staffing window.
    departments: BTreeSet<Value>,
    staffing: HashMap<Value, Department>,
    dropped_starts: u64,
}

/// Live queue and staffing state; a collector of its own gauges.
#[derive(Debug)]
pub struct Live {
    state: Mutex<State>,
    labeler: Arc<Labeler>,
    accept_time: Family<DepartmentLabel, Histogram, Buckets>,
    expired: Family<DepartmentLabel, Counter>,
    expire_after: f64,
    window: Duration,
    targets: Vec<Target>,
    concurrency: f64,
    /// When this process started: the staffing windows count the quiet time since as quiet.
    started_at: f64,
    /// The time of a scrape.
    clock: Clock,
}

fn key(e: &StoredEvent) -> ChatKey {
    e.chat_id.as_str().into()
}

impl Live {
    /// Empty state; registers the accept-time histogram and the expiry counter in `registry`.
    pub fn new(
        settings: &Settings,
        labeler: Arc<Labeler>,
        registry: &mut Registry,
        clock: Clock,
    ) -> Self {
        let accept_time =
            Family::new_with_constructor(Buckets(settings.wait_buckets.clone().into()));
        registry.register(
            "acquire_chat_accept_time_seconds",
            "Time from a chat's start to its accept by an agent",
            accept_time.clone(),
        );
        let expired = Family::<DepartmentLabel, Counter>::default();
        registry.register(
            "acquire_chats_expired",
            "Waiting chats dropped from the queue after the expiry time without an accept or a close",
            expired.clone(),
        );
        Live {
            state: Mutex::new(State::default()),
            labeler,
            accept_time,
            expired,
            expire_after: settings.queue_expire_after.as_secs_f64(),
            window: settings.staffing_window,
            targets: settings.staffing_targets.clone(),
            concurrency: settings.concurrency,
            started_at: clock.now(),
            clock,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A chat started at `at` (seconds since the epoch).
    pub fn started(&self, e: &StoredEvent, at: f64) {
        let department = self.labeler.department(&e.department_id);
        let mut s = self.lock();
        s.starts_seen = true;
        let k = key(e);
        if s.waiting.contains_key(&k) || s.finished.contains_key(&s.hasher.hash_one(&k)) {
            return;
        }
        if s.waiting.len() >= MAX_WAITING {
            self.expire_locked(&mut s, at);
            if s.waiting.len() >= MAX_WAITING {
                s.dropped_starts += 1;
                if s.dropped_starts.is_power_of_two() {
                    tracing::warn!(
                        dropped = s.dropped_starts,
                        "the live queue is full ({MAX_WAITING} waiting chats): new starts are not queued"
                    );
                }
                return;
            }
        }
        s.departments.insert(department.clone());
        s.waiting.insert(
            k,
            Waiting {
                department,
                since: at,
            },
        );
    }

    /// An agent accepted a chat at `at`.
    pub fn accepted(&self, e: &StoredEvent, at: f64) {
        let mut s = self.lock();
        let k = key(e);
        if let Some(w) = s.waiting.remove(&k) {
            self.accept_time
                .get_or_create(&[("department", w.department.clone())])
                .observe((at - w.since).max(0.0));
            if let Some(agent) = &e.agent_id {
                self.seen(&mut s, &w.department, agent, at);
            }
        }
        s.finish(&k, at);
    }

    /// A chat closed at `at`; `department` is its label value.
    pub fn closed(&self, e: &StoredEvent, department: &Value, at: f64) {
        let mut s = self.lock();
        let k = key(e);
        s.waiting.remove(&k);
        s.finish(&k, at);
        s.departments.insert(department.clone());
        let d = self.department(&mut s, department);
        // Only chats an agent took carry a handle time; every closed chat is an arrival.
        let handle_time = e.agent_role.as_ref().and(e.duration_seconds);
        d.window.record(at, handle_time);
        if let Some(agent) = &e.agent_id {
            self.seen(&mut s, department, agent, at);
        }
    }

    fn department<'s>(&self, s: &'s mut State, department: &Value) -> &'s mut Department {
        let (window, started_at) = (self.window, self.started_at);
        s.staffing
            .entry(department.clone())
            .or_insert_with(|| Department {
                window: Window::starting_at(window, WINDOW_SLOTS, started_at),
                agents: HashMap::new(),
            })
    }

    fn seen(&self, s: &mut State, department: &Value, agent: &str, at: f64) {
        let d = self.department(s, department);
        if let Some(last) = d.agents.get_mut(agent) {
            *last = last.max(at);
        } else if d.agents.len() < MAX_AGENTS {
            d.agents.insert(agent.into(), at);
        }
    }

    /// Drop waiting chats older than the expiry time (counting them), and forget old finished chats.
    pub fn expire(&self, now: f64) {
        let mut s = self.lock();
        self.expire_locked(&mut s, now);
    }

    fn expire_locked(&self, s: &mut State, now: f64) {
        let cutoff = now - self.expire_after;
        let expired = &self.expired;
        s.waiting.retain(|_, w| {
            let keep = w.since >= cutoff;
            if !keep {
                expired
                    .get_or_create(&[("department", w.department.clone())])
                    .inc();
            }
            keep
        });
        while let Some(&(h, at)) = s.finished_order.front() {
            if at >= cutoff {
                break;
            }
            s.finished_order.pop_front();
            s.finished.remove(&h);
        }
        let agents_cutoff = now - self.window.as_secs_f64();
        for d in s.staffing.values_mut() {
            d.agents.retain(|_, at| *at >= agents_cutoff);
        }
    }
}

impl State {
    /// Remember that a chat finished, when a queue is in use.
    fn finish(&mut self, chat: &ChatKey, at: f64) {
        if !self.starts_seen {
            return;
        }
        let h = self.hasher.hash_one(chat);
        if self.finished.insert(h, at).is_none() {
            self.finished_order.push_back((h, at));
        }
        while self.finished_order.len() > MAX_FINISHED {
            if let Some((old, _)) = self.finished_order.pop_front() {
                self.finished.remove(&old);
            }
        }
    }
}

struct Snapshot {
    waiting: Vec<(Value, u64, f64)>,
    staffing: Vec<(Value, f64, Option<f64>, u64)>,
}

impl Live {
    fn snapshot(&self, now: f64) -> Snapshot {
        let s = self.lock();
        let mut waiting: HashMap<&Value, (u64, f64)> =
            s.departments.iter().map(|d| (d, (0, 0.0))).collect();
        for w in s.waiting.values() {
            let entry = waiting.entry(&w.department).or_insert((0, 0.0));
            entry.0 += 1;
            entry.1 = entry.1.max(now - w.since);
        }
        let mut waiting: Vec<_> = waiting
            .into_iter()
            .map(|(d, (n, oldest))| (d.clone(), n, oldest.max(0.0)))
            .collect();
        waiting.sort_by(|a, b| a.0.cmp(&b.0));
        let cutoff = now - self.window.as_secs_f64();
        let mut staffing: Vec<_> = s
            .staffing
            .iter()
            .map(|(d, st)| {
                let (rate, aht) = st.window.rates(now);
                let agents = st.agents.values().filter(|at| **at >= cutoff).count() as u64;
                (d.clone(), rate, aht, agents)
            })
            .collect();
        staffing.sort_by(|a, b| a.0.cmp(&b.0));
        Snapshot { waiting, staffing }
    }
}

impl Collector for Live {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let snap = self.snapshot(self.clock.now());
        {
            let mut m = encoder.encode_descriptor(
                "acquire_chats_waiting",
                "Chats started and not yet accepted or closed.",
                None,
                MetricType::Gauge,
            )?;
            for (d, n, _) in &snap.waiting {
                m.encode_family(&[("department", d.clone())])?
                    .encode_gauge(&(*n as i64))?;
            }
        }
        {
            let mut m = encoder.encode_descriptor(
                "acquire_chat_oldest_wait_seconds",
                "Age of the oldest chat waiting now (0 when none waits).",
                None,
                MetricType::Gauge,
            )?;
            for (d, _, oldest) in &snap.waiting {
                m.encode_family(&[("department", d.clone())])?
                    .encode_gauge(oldest)?;
            }
        }
        let gauge = |encoder: &mut DescriptorEncoder,
                     name: &str,
                     help: &str,
                     value: &dyn Fn(f64, Option<f64>, u64) -> Option<f64>|
         -> Result<(), std::fmt::Error> {
            let mut m = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
            for (d, rate, aht, agents) in &snap.staffing {
                if let Some(v) = value(*rate, *aht, *agents) {
                    m.encode_family(&[("department", d.clone())])?
                        .encode_gauge(&v)?;
                }
            }
            Ok(())
        };
        gauge(
            &mut encoder,
            "acquire_chat_arrivals_per_second",
            "Chats closed per second over the staffing window (every chat, answered or not).",
            &|rate, _, _| Some(rate),
        )?;
        gauge(
            &mut encoder,
            "acquire_chat_mean_handle_time_seconds",
            "Mean duration of the chats an agent took, over the staffing window.",
            &|_, aht, _| aht,
        )?;
        gauge(
            &mut encoder,
            "acquire_offered_load_erlangs",
            "Offered load over the staffing window: arrival rate times mean handle time.",
            &|rate, aht, _| aht.map(|aht| staffing::offered_load(rate, aht)),
        )?;
        gauge(
            &mut encoder,
            "acquire_agents_seen",
            "Distinct agents who accepted or closed a chat in the staffing window.",
            &|_, _, agents| Some(agents as f64),
        )?;
        let mut m = encoder.encode_descriptor(
            "acquire_agents_required",
            "Agents needed to meet the service-level target (Erlang C over the staffing window, load divided by the chats one agent handles at once).",
            None,
            MetricType::Gauge,
        )?;
        for (d, rate, aht, _) in &snap.staffing {
            let Some(aht) = aht else { continue };
            for t in &self.targets {
                match staffing::agents_required(*rate, *aht, *t, self.concurrency) {
                    Ok(n) => m
                        .encode_family(&[("department", d.0.to_string()), ("target", t.label())])?
                        .encode_gauge(&(n as i64))?,
                    Err(e) => {
                        tracing::debug!(error = %e, department = %d.0, "no staffing estimate")
                    }
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::EventKind;
    use prometheus_client::metrics::family::Family as F;

    fn event(kind: EventKind, chat: &str, department: &str) -> StoredEvent {
        StoredEvent {
            kind,
            account_id: "1".into(),
            chat_id: chat.into(),
            received_ms: 0,
            department_id: department.into(),
            agent_role: Some("operator".into()),
            agent_id: Some("agent-9".into()),
            wait_seconds: Some(1.0),
            duration_seconds: Some(100.0),
        }
    }

    fn live() -> (Live, Arc<Labeler>) {
        let settings = Settings::default();
        let labeler = Arc::new(Labeler::new(&settings, F::default()));
        let mut registry = Registry::default();
        (
            Live::new(
                &settings,
                labeler.clone(),
                &mut registry,
                crate::record::Clock::system(),
            ),
            labeler,
        )
    }

    #[test]
    fn queue_follows_start_accept_close_in_any_order() {
        let (live, labeler) = live();
        let sales = labeler.department("5");
        live.started(&event(EventKind::ChatStart, "a", "5"), 100.0);
        live.started(&event(EventKind::ChatStart, "b", "5"), 110.0);
        live.started(&event(EventKind::ChatStart, "a", "5"), 120.0);
        let snap = live.snapshot(130.0);
        assert_eq!(
            snap.waiting,
            vec![(sales.clone(), 2, 30.0)],
            "a repeated start counts once"
        );

        live.accepted(&event(EventKind::ChatAccept, "a", ""), 140.0);
        assert_eq!(live.snapshot(150.0).waiting, vec![(sales.clone(), 1, 40.0)]);
        let h = live
            .accept_time
            .get_or_create(&[("department", sales.clone())]);
        drop(h);

        // The accept of c comes before its start (a retry delivered late): c never queues.
        live.accepted(&event(EventKind::ChatAccept, "c", ""), 150.0);
        live.started(&event(EventKind::ChatStart, "c", "5"), 145.0);
        live.closed(&event(EventKind::ChatClose, "b", "5"), &sales, 160.0);
        assert_eq!(live.snapshot(170.0).waiting, vec![(sales, 0, 0.0)]);
    }

    #[test]
    fn waiting_chats_expire_and_are_counted() {
        let (live, labeler) = live();
        let d = labeler.department("");
        live.started(&event(EventKind::ChatStart, "a", ""), 0.0);
        live.started(&event(EventKind::ChatStart, "b", ""), 10_000.0);
        live.expire(4.0 * 3600.0 + 1.0);
        assert_eq!(live.snapshot(4.0 * 3600.0 + 1.0).waiting[0].1, 1);
        assert_eq!(live.expired.get_or_create(&[("department", d)]).get(), 1);
    }

    #[test]
    fn finished_chats_are_remembered_only_with_a_queue_and_within_bounds() {
        let (live, labeler) = live();
        let d = labeler.department("1");
        for i in 0..1000 {
            live.closed(&event(EventKind::ChatClose, &i.to_string(), "1"), &d, 10.0);
        }
        assert!(
            live.lock().finished.is_empty(),
            "no starts, no queue: closes are not remembered"
        );
        live.started(&event(EventKind::ChatStart, "s", "1"), 10.0);
        for i in 0..(MAX_FINISHED + 10) {
            live.closed(
                &event(EventKind::ChatClose, &format!("x{i}"), "1"),
                &d,
                20.0,
            );
        }
        let s = live.lock();
        assert_eq!(s.finished.len(), MAX_FINISHED);
        assert_eq!(s.finished_order.len(), MAX_FINISHED);
    }
}
