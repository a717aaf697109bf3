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

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::{Family, MetricConstructor};
use prometheus_client::metrics::histogram::Histogram;

use crate::config::Settings;
use crate::event::ChatEvent;
use crate::record::window::Window;
use crate::record::{Clock, Labeler, Value};
use crate::staffing::Target;

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
/// The label set of a per-department series.
pub type DepartmentLabel = [(&'static str, Value); 1];

/// Makes the accept-time histogram of a new department with the wait-time buckets.
#[derive(Clone, Debug)]
pub struct Buckets(Arc<[f64]>);

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

/// Live queue and staffing state.
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

fn key(e: &ChatEvent) -> ChatKey {
    e.chat_id.as_str().into()
}

impl Live {
    /// Empty state, on `clock`.
    pub fn new(settings: &Settings, labeler: Arc<Labeler>, clock: Clock) -> Self {
        let accept_time =
            Family::new_with_constructor(Buckets(settings.wait_layout.bounds().into()));
        let expired = Family::<DepartmentLabel, Counter>::default();
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

    /// Time from a chat's start to its accept, per department.
    pub fn accept_time(&self) -> &Family<DepartmentLabel, Histogram, Buckets> {
        &self.accept_time
    }

    /// Waiting chats dropped after the expiry time, per department.
    pub fn expired(&self) -> &Family<DepartmentLabel, Counter> {
        &self.expired
    }

    /// The service-level targets of the staffing estimate.
    pub fn targets(&self) -> &[Target] {
        &self.targets
    }

    /// Chats one agent handles at once.
    pub fn concurrency(&self) -> f64 {
        self.concurrency
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A chat started at `at` (seconds since the epoch).
    pub fn started(&self, e: &ChatEvent, at: f64) {
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
    pub fn accepted(&self, e: &ChatEvent, at: f64) {
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
    pub fn closed(&self, e: &ChatEvent, department: &Value, at: f64) {
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

/// The queue and the staffing window as a scrape shows them, department by department in
/// label order.
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    /// (department, chats waiting, seconds the oldest has waited).
    pub waiting: Vec<(Value, u64, f64)>,
    /// (department, arrivals per second, mean handle time if any chat was handled, agents
    /// seen) over the staffing window.
    pub staffing: Vec<(Value, f64, Option<f64>, u64)>,
}

impl Live {
    /// The queue and the staffing window now, by the clock.
    pub fn snapshot_now(&self) -> Snapshot {
        self.snapshot(self.clock.now())
    }

    /// The queue and the staffing window at `now` (seconds since the epoch).
    pub fn snapshot(&self, now: f64) -> Snapshot {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::ChatKind;
    use prometheus_client::metrics::family::Family as F;

    fn event(kind: ChatKind, chat: &str, department: &str) -> ChatEvent {
        ChatEvent {
            account_id: "1".into(),
            department_id: department.into(),
            agent_role: Some("operator".into()),
            agent_id: Some("agent-9".into()),
            wait_seconds: Some(1.0),
            duration_seconds: Some(100.0),
            ..ChatEvent::empty(kind, chat)
        }
    }

    fn live() -> (Live, Arc<Labeler>) {
        let settings = Settings::default();
        let labeler = Arc::new(Labeler::new(&settings, F::default()));
        (
            Live::new(&settings, labeler.clone(), Clock::system()),
            labeler,
        )
    }

    /// (count, sum) of a department's accept-time histogram, read through its encoding.
    fn accept_times(live: &Live, department: &Value) -> (u64, f64) {
        use prometheus_client::encoding::text::encode;
        use prometheus_client::registry::Registry;
        let mut registry = Registry::default();
        registry.register("accept", "", live.accept_time().clone());
        let mut text = String::new();
        encode(&mut text, &registry).unwrap();
        let value = |suffix: &str| -> f64 {
            text.lines()
                .find(|l| {
                    l.starts_with(&format!("accept_{suffix}{{department=\"{}\"", department.0))
                })
                .and_then(|l| l.rsplit(' ').next()?.parse().ok())
                .unwrap_or(0.0)
        };
        (value("count") as u64, value("sum"))
    }

    #[test]
    fn queue_follows_start_accept_close() {
        let (live, labeler) = live();
        let sales = labeler.department("5");
        live.started(&event(ChatKind::Start, "a", "5"), 100.0);
        live.started(&event(ChatKind::Start, "b", "5"), 110.0);
        live.started(&event(ChatKind::Start, "a", "5"), 120.0);
        let snap = live.snapshot(130.0);
        assert_eq!(
            snap.waiting,
            vec![(sales.clone(), 2, 30.0)],
            "a repeated start counts once"
        );

        live.accepted(&event(ChatKind::Accept, "a", ""), 140.0);
        assert_eq!(live.snapshot(150.0).waiting, vec![(sales.clone(), 1, 40.0)]);
        assert_eq!(
            accept_times(&live, &sales),
            (1, 40.0),
            "a was accepted 40 s after its first start"
        );

        live.closed(&event(ChatKind::Close, "b", "5"), &sales, 160.0);
        assert_eq!(live.snapshot(170.0).waiting, vec![(sales.clone(), 0, 0.0)]);
        assert_eq!(
            accept_times(&live, &sales).0,
            1,
            "a close takes a chat out without an accept time"
        );
    }

    #[test]
    fn a_chat_waits_only_when_its_start_comes_first_whatever_the_order() {
        // Every order of one chat's start, accept and close: it waits only while its start has
        // come and neither its accept nor its close has, and never again after that.
        let orders: [[ChatKind; 3]; 6] = [
            [ChatKind::Start, ChatKind::Accept, ChatKind::Close],
            [ChatKind::Start, ChatKind::Close, ChatKind::Accept],
            [ChatKind::Accept, ChatKind::Start, ChatKind::Close],
            [ChatKind::Accept, ChatKind::Close, ChatKind::Start],
            [ChatKind::Close, ChatKind::Start, ChatKind::Accept],
            [ChatKind::Close, ChatKind::Accept, ChatKind::Start],
        ];
        for order in orders {
            let (live, labeler) = live();
            let d = labeler.department("5");
            // Another chat keeps the queue in use, as with real traffic.
            live.started(&event(ChatKind::Start, "other", "5"), 1.0);
            let mut started = false;
            let mut finished = false;
            for (i, kind) in order.into_iter().enumerate() {
                let at = 10.0 + i as f64;
                let e = event(kind, "x", "5");
                match kind {
                    ChatKind::Start => live.started(&e, at),
                    ChatKind::Accept => live.accepted(&e, at),
                    ChatKind::Close => live.closed(&e, &d, at),
                }
                started |= kind == ChatKind::Start;
                finished |= kind != ChatKind::Start;
                let waiting = live.snapshot(at).waiting[0].1;
                let expected = 1 + u64::from(started && !finished);
                assert_eq!(waiting, expected, "{order:?} after {kind:?}");
            }
            let accepted_after_start = order.iter().position(|k| *k == ChatKind::Start).unwrap()
                == 0
                && order[1] == ChatKind::Accept;
            assert_eq!(
                accept_times(&live, &d).0,
                u64::from(accepted_after_start),
                "{order:?}: an accept time only for an accept of a waiting chat"
            );
        }
    }

    #[test]
    fn waiting_chats_expire_and_are_counted() {
        let (live, labeler) = live();
        let d = labeler.department("");
        live.started(&event(ChatKind::Start, "a", ""), 0.0);
        live.started(&event(ChatKind::Start, "b", ""), 10_000.0);
        live.expire(4.0 * 3600.0 + 1.0);
        assert_eq!(live.snapshot(4.0 * 3600.0 + 1.0).waiting[0].1, 1);
        assert_eq!(live.expired().get_or_create(&[("department", d)]).get(), 1);
    }

    #[test]
    fn finished_chats_are_remembered_only_with_a_queue_and_within_bounds() {
        let (live, labeler) = live();
        let d = labeler.department("1");
        for i in 0..1000 {
            live.closed(&event(ChatKind::Close, &i.to_string(), "1"), &d, 10.0);
        }
        assert!(
            live.lock().finished.is_empty(),
            "no starts, no queue: closes are not remembered"
        );
        live.started(&event(ChatKind::Start, "s", "1"), 10.0);
        for i in 0..(MAX_FINISHED + 10) {
            live.closed(&event(ChatKind::Close, &format!("x{i}"), "1"), &d, 20.0);
        }
        let s = live.lock();
        assert_eq!(s.finished.len(), MAX_FINISHED);
        assert_eq!(s.finished_order.len(), MAX_FINISHED);
    }
}
