//! The live queue and the staffing estimate, from the start, accept and close events.
//!
//! `CHAT_ON_START` puts a chat in its department's queue; `CHAT_ON_ACCEPT` or a close takes it
//! out. A chat that neither is accepted nor closes leaves after the expiry time and is counted.
//! Events may come out of order or repeated: a start that arrives after its chat's accept or close
//! is ignored (finished chats are remembered for the expiry time), a repeated start changes
//! nothing.
//!
//! The state is a function of the events alone, in the order they were admitted, never of the
//! clock: time advances with the events (the newest event time seen, the *frontier*), so the
//! state rebuilt from a snapshot and the events after it is the state of a process that never
//! stopped. The clock enters only when a scrape reads the state: a chat that has waited longer
//! than the expiry time at that moment is shown as expired, not as waiting.

use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus_client::encoding::{EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::{MetricType, TypedMetric};

use crate::config::Settings;
use crate::event::ChatEvent;
use crate::record::labels::Interner;
use crate::record::snapshot::{ClassicState, DepartmentState, QueueState};
use crate::record::window::Window;
use crate::record::{Clock, Labeler, Value};
use crate::staffing::Target;

/// Most chats held waiting at once; starts past it are dropped (and logged), so a flood of
/// starts cannot grow memory without bound.
pub const MAX_WAITING: usize = 100_000;
/// Most agents remembered per department for `acquire_agents_seen`.
pub const MAX_AGENTS: usize = 2_000;
/// Most finished chats remembered to ignore late starts; the oldest are forgotten first.
pub const MAX_FINISHED: usize = 200_000;
/// Slots of the staffing window.
pub const WINDOW_SLOTS: u32 = 60;

/// The vendor's start and accept examples carry no account id, so chats are matched by id alone:
/// one exporter serves one Acquire account.
pub type ChatKey = Box<str>;
/// The label set of a per-department series.
pub type DepartmentLabel = [(&'static str, Value); 1];

/// A classic histogram (the accept time): counts per bucket, `+Inf` last, exposed exactly as
/// `prometheus_client`'s histogram, but whose state can be read and restored.
#[derive(Clone, Debug, PartialEq)]
pub struct ClassicHistogram {
    /// (upper bound, observations in the bucket), not cumulative, `+Inf` last.
    pub buckets: Vec<(f64, u64)>,
    /// Sum of the observations.
    pub sum: f64,
    /// Number of observations.
    pub count: u64,
}

impl ClassicHistogram {
    /// An empty histogram with the given finite bounds.
    pub fn new(bounds: &[f64]) -> Self {
        ClassicHistogram {
            buckets: bounds
                .iter()
                .copied()
                .filter(|b| b.is_finite())
                .chain(std::iter::once(f64::INFINITY))
                .map(|b| (b, 0))
                .collect(),
            sum: 0.0,
            count: 0,
        }
    }

    /// One observation.
    pub fn observe(&mut self, v: f64) {
        self.sum += v;
        self.count += 1;
        if let Some(bucket) = self.buckets.iter_mut().find(|(bound, _)| *bound >= v) {
            bucket.1 += 1;
        }
    }
}

impl TypedMetric for ClassicHistogram {
    const TYPE: MetricType = MetricType::Histogram;
}

impl EncodeMetric for ClassicHistogram {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        encoder.encode_histogram::<NoLabelSet>(self.sum, self.count, &self.buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        Self::TYPE
    }
}

/// A waiting chat.
#[derive(Clone, Debug, PartialEq)]
pub struct Waiting {
    /// Its department's label value.
    pub department: Value,
    /// When it started, in seconds since the epoch.
    pub since: f64,
}

/// One department's staffing state.
#[derive(Clone, Debug)]
pub struct Department {
    /// Arrivals and handle times over the window.
    pub window: Window,
    /// Agent id -> when last seen.
    pub agents: HashMap<Box<str>, f64>,
}

/// A time as a total order, for the queue sorted by start.
#[derive(Clone, Copy, Debug, PartialEq)]
struct At(f64);

impl Eq for At {}

impl PartialOrd for At {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for At {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.total_cmp(&other.0)
    }
}

/// Everything the live queue and the staffing window derive from the events.
#[derive(Debug, Default)]
pub struct State {
    /// The newest event time seen: time as the events tell it.
    pub frontier: f64,
    waiting: HashMap<ChatKey, Waiting>,
    /// The waiting chats by start time, to expire the oldest first.
    by_since: BTreeSet<(At, ChatKey)>,
    /// Chats accepted or closed, by the hash of their id: a late start must not queue them
    /// again. Bounded by the expiry time and by [`MAX_FINISHED`].
    finished: HashSet<u64>,
    /// `finished` in the order it was filled, with when, to forget the oldest first.
    finished_order: VecDeque<(u64, f64)>,
    /// Departments seen in the queue or the staffing window.
    departments: BTreeSet<Value>,
    staffing: HashMap<Value, Department>,
    /// Time from start to accept, per department.
    accept_time: HashMap<Value, ClassicHistogram>,
    /// Chats that left the queue after the expiry time, per department.
    expired: HashMap<Value, u64>,
    dropped_starts: u64,
}

/// Live queue and staffing state.
#[derive(Debug)]
pub struct Live {
    state: Mutex<State>,
    labeler: Arc<Labeler>,
    accept_bounds: Vec<f64>,
    expire_after: f64,
    window: Duration,
    targets: Vec<Target>,
    concurrency: f64,
    /// When the store began: a department's staffing window counts the quiet time since as
    /// quiet. The same for every process over the same store.
    epoch: Mutex<f64>,
    /// The time of a scrape.
    clock: Clock,
}

fn key(e: &ChatEvent) -> ChatKey {
    e.chat_id.as_str().into()
}

/// A finished chat's id as the queue remembers it: 8 bytes whatever the id, and the same in every
/// process and build (SipHash-1-3 with fixed keys), so snapshots keep it. Two ids with the same
/// hash would make a late start of one of them be ignored: with 64 bits, about one chance in
/// 10^8 over the 200,000 remembered.
fn finished_hash(chat: &str) -> u64 {
    use std::hash::Hasher;
    let mut h =
        siphasher::sip::SipHasher13::new_with_keys(0x6163_7175_6972_6521, 0x6669_6e69_7368_6564);
    h.write(chat.as_bytes());
    h.finish()
}

impl Live {
    /// Empty state, on `clock`, with the store beginning now.
    pub fn new(settings: &Settings, labeler: Arc<Labeler>, clock: Clock) -> Self {
        Live {
            state: Mutex::new(State::default()),
            labeler,
            accept_bounds: settings.wait_layout.bounds().to_vec(),
            expire_after: settings.queue_expire_after.as_secs_f64(),
            window: settings.staffing_window,
            targets: settings.staffing_targets.clone(),
            concurrency: settings.concurrency,
            epoch: Mutex::new(clock.now()),
            clock,
        }
    }

    /// When the store began, in seconds since the epoch: the start of every staffing window
    /// made from now on.
    pub fn set_epoch(&self, epoch: f64) {
        *self.epoch.lock().unwrap_or_else(|e| e.into_inner()) = epoch;
    }

    /// When the store began, in seconds since the epoch.
    pub fn epoch(&self) -> f64 {
        *self.epoch.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The service-level targets of the staffing estimate.
    pub fn targets(&self) -> &[Target] {
        &self.targets
    }

    /// Chats one agent handles at once.
    pub fn concurrency(&self) -> f64 {
        self.concurrency
    }

    /// The state, locked.
    pub fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Time moves on to `at`: chats that waited past the expiry time leave the queue, and
    /// finished chats older than it are forgotten.
    fn advance(&self, s: &mut State, at: f64) {
        if at.is_finite() && at > s.frontier {
            s.frontier = at;
        }
        let cutoff = s.frontier - self.expire_after;
        while let Some((since, _)) = s.by_since.first() {
            if since.0 >= cutoff {
                break;
            }
            let Some((_, chat)) = s.by_since.pop_first() else {
                break;
            };
            if let Some(w) = s.waiting.remove(&chat) {
                *s.expired.entry(w.department).or_default() += 1;
            }
        }
        while let Some((_, at)) = s.finished_order.front() {
            if *at >= cutoff {
                break;
            }
            if let Some((chat, _)) = s.finished_order.pop_front() {
                s.finished.remove(&chat);
            }
        }
    }

    /// A chat started at `at` (seconds since the epoch).
    pub fn started(&self, e: &ChatEvent, at: f64) {
        let department = self.labeler.department(&e.department_id);
        let mut s = self.lock();
        self.advance(&mut s, at);
        let k = key(e);
        if s.waiting.contains_key(&k) || s.finished.contains(&finished_hash(&k)) {
            return;
        }
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
        s.departments.insert(department.clone());
        s.by_since.insert((At(at), k.clone()));
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
        self.advance(&mut s, at);
        let k = key(e);
        if let Some(w) = s.waiting.remove(&k) {
            s.by_since.remove(&(At(w.since), k.clone()));
            let bounds = &self.accept_bounds;
            s.accept_time
                .entry(w.department.clone())
                .or_insert_with(|| ClassicHistogram::new(bounds))
                .observe((at - w.since).max(0.0));
            if let Some(agent) = &e.agent_id {
                self.seen(&mut s, &w.department, agent, at);
            }
        }
        s.finish(k, at);
    }

    /// A chat closed at `at`; `department` is its label value.
    pub fn closed(&self, e: &ChatEvent, department: &Value, at: f64) {
        let mut s = self.lock();
        self.advance(&mut s, at);
        let k = key(e);
        if let Some(w) = s.waiting.remove(&k) {
            s.by_since.remove(&(At(w.since), k.clone()));
        }
        s.finish(k, at);
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
        let window = self.window;
        let epoch = *self.epoch.lock().unwrap_or_else(|e| e.into_inner());
        s.staffing
            .entry(department.clone())
            .or_insert_with(|| Department {
                window: Window::starting_at(window, WINDOW_SLOTS, epoch),
                agents: HashMap::new(),
            })
    }

    fn seen(&self, s: &mut State, department: &Value, agent: &str, at: f64) {
        let cutoff = s.frontier - self.window.as_secs_f64();
        let d = self.department(s, department);
        if let Some(last) = d.agents.get_mut(agent) {
            *last = last.max(at);
            return;
        }
        if d.agents.len() >= MAX_AGENTS {
            // Full: forget the agents the window no longer shows, by the events' time.
            d.agents.retain(|_, last| *last >= cutoff);
        }
        if d.agents.len() < MAX_AGENTS {
            d.agents.insert(agent.into(), at);
        }
    }
}

impl Live {
    /// The state, for a snapshot.
    pub fn export(&self) -> QueueState {
        let s = self.lock();
        let mut waiting: Vec<_> = s
            .waiting
            .iter()
            .map(|(chat, w)| (chat.to_string(), w.department.0.to_string(), w.since))
            .collect();
        waiting.sort_by(|a, b| a.0.cmp(&b.0));
        let named = |m: &HashMap<Value, u64>| {
            let mut v: Vec<_> = m.iter().map(|(d, n)| (d.0.to_string(), *n)).collect();
            v.sort();
            v
        };
        let mut staffing: Vec<_> = s
            .staffing
            .iter()
            .map(|(d, st)| {
                let mut agents: Vec<_> = st
                    .agents
                    .iter()
                    .map(|(a, at)| (a.to_string(), *at))
                    .collect();
                agents.sort_by(|a, b| a.0.cmp(&b.0));
                DepartmentState {
                    department: d.0.to_string(),
                    window: st.window.export(),
                    agents,
                }
            })
            .collect();
        staffing.sort_by(|a, b| a.department.cmp(&b.department));
        let mut accept_time: Vec<_> = s
            .accept_time
            .iter()
            .map(|(d, h)| {
                (
                    d.0.to_string(),
                    ClassicState {
                        buckets: h.buckets.clone(),
                        sum: h.sum,
                        count: h.count,
                    },
                )
            })
            .collect();
        accept_time.sort_by(|a, b| a.0.cmp(&b.0));
        QueueState {
            frontier: s.frontier,
            waiting,
            finished: s.finished_order.iter().copied().collect(),
            departments: s.departments.iter().map(|d| d.0.to_string()).collect(),
            staffing,
            accept_time,
            expired: named(&s.expired),
            dropped_starts: s.dropped_starts,
        }
    }

    /// Take a snapshot's state; an error names what does not fit.
    pub fn import(&self, q: &QueueState, intern: &mut Interner) -> Result<(), String> {
        let state = self.build(q, intern)?;
        self.replace(state);
        Ok(())
    }

    /// Put `state` in place of the current one.
    pub fn replace(&self, state: State) {
        *self.lock() = state;
    }

    /// The state of a snapshot, checked, without taking it yet; an error names what does not
    /// fit.
    pub fn build(&self, q: &QueueState, intern: &mut Interner) -> Result<State, String> {
        let mut s = State {
            frontier: q.frontier,
            dropped_starts: q.dropped_starts,
            ..State::default()
        };
        for (chat, department, since) in &q.waiting {
            let chat: ChatKey = chat.as_str().into();
            s.by_since.insert((At(*since), chat.clone()));
            s.waiting.insert(
                chat,
                Waiting {
                    department: intern.value(department),
                    since: *since,
                },
            );
        }
        for &(chat, at) in &q.finished {
            if s.finished.insert(chat) {
                s.finished_order.push_back((chat, at));
            }
        }
        s.departments = q.departments.iter().map(|d| intern.value(d)).collect();
        for d in &q.staffing {
            let window = Window::import(&d.window)
                .ok_or_else(|| format!("the staffing window of {:?} is not one", d.department))?;
            s.staffing.insert(
                intern.value(&d.department),
                Department {
                    window,
                    agents: d
                        .agents
                        .iter()
                        .map(|(a, at)| (a.as_str().into(), *at))
                        .collect(),
                },
            );
        }
        for (d, h) in &q.accept_time {
            if h.buckets.len() != self.accept_bounds.len() + 1 {
                return Err(format!(
                    "the accept-time histogram of {d:?} has {} buckets where the layout has {}",
                    h.buckets.len(),
                    self.accept_bounds.len() + 1
                ));
            }
            s.accept_time.insert(
                intern.value(d),
                ClassicHistogram {
                    buckets: h.buckets.clone(),
                    sum: h.sum,
                    count: h.count,
                },
            );
        }
        s.expired = q
            .expired
            .iter()
            .map(|(d, n)| (intern.value(d), *n))
            .collect();
        Ok(s)
    }
}

impl State {
    /// Remember that a chat finished.
    fn finish(&mut self, chat: ChatKey, at: f64) {
        let chat = finished_hash(&chat);
        if self.finished.insert(chat) {
            self.finished_order.push_back((chat, at));
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
    /// (department, accept-time histogram).
    pub accept_time: Vec<(Value, ClassicHistogram)>,
    /// (department, chats expired), those that have waited past the expiry time by now
    /// included.
    pub expired: Vec<(Value, u64)>,
}

impl Live {
    /// The queue and the staffing window now, by the clock.
    pub fn snapshot_now(&self) -> Snapshot {
        self.snapshot(self.clock.now())
    }

    /// The queue and the staffing window at `now` (seconds since the epoch).
    pub fn snapshot(&self, now: f64) -> Snapshot {
        let s = self.lock();
        let cutoff = now - self.expire_after;
        let mut waiting: HashMap<&Value, (u64, f64)> =
            s.departments.iter().map(|d| (d, (0, 0.0))).collect();
        let mut expired: HashMap<&Value, u64> = s.expired.iter().map(|(d, n)| (d, *n)).collect();
        for w in s.waiting.values() {
            if w.since < cutoff {
                // Past the expiry time by now: expired, whether or not an event came since.
                *expired.entry(&w.department).or_default() += 1;
                continue;
            }
            let entry = waiting.entry(&w.department).or_insert((0, 0.0));
            entry.0 += 1;
            entry.1 = entry.1.max(now - w.since);
        }
        let mut waiting: Vec<_> = waiting
            .into_iter()
            .map(|(d, (n, oldest))| (d.clone(), n, oldest.max(0.0)))
            .collect();
        waiting.sort_by(|a, b| a.0.cmp(&b.0));
        let agents_cutoff = now - self.window.as_secs_f64();
        let mut staffing: Vec<_> = s
            .staffing
            .iter()
            .map(|(d, st)| {
                let (rate, aht) = st.window.rates(now);
                let agents = st
                    .agents
                    .values()
                    .filter(|at| **at >= agents_cutoff)
                    .count() as u64;
                (d.clone(), rate, aht, agents)
            })
            .collect();
        staffing.sort_by(|a, b| a.0.cmp(&b.0));
        let mut accept_time: Vec<_> = s
            .accept_time
            .iter()
            .map(|(d, h)| (d.clone(), h.clone()))
            .collect();
        accept_time.sort_by(|a, b| a.0.cmp(&b.0));
        let mut expired: Vec<_> = expired.into_iter().map(|(d, n)| (d.clone(), n)).collect();
        expired.sort_by(|a, b| a.0.cmp(&b.0));
        Snapshot {
            waiting,
            staffing,
            accept_time,
            expired,
        }
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

    /// (count, sum) of a department's accept-time histogram.
    fn accept_times(live: &Live, department: &Value) -> (u64, f64) {
        live.snapshot(0.0)
            .accept_time
            .iter()
            .find(|(d, _)| d == department)
            .map_or((0, 0.0), |(_, h)| (h.count, h.sum))
    }

    fn expired(snap: &Snapshot, department: &Value) -> u64 {
        snap.expired
            .iter()
            .find(|(d, _)| d == department)
            .map_or(0, |(_, n)| *n)
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
    fn waiting_chats_expire_and_are_counted_by_the_scrape_and_by_later_events() {
        let (live, labeler) = live();
        let d = labeler.department("");
        live.started(&event(ChatKind::Start, "a", ""), 0.0);
        live.started(&event(ChatKind::Start, "b", ""), 10_000.0);
        let past_a = 4.0 * 3600.0 + 1.0;
        let snap = live.snapshot(past_a);
        assert_eq!(snap.waiting[0].1, 1, "a has waited past the expiry time");
        assert_eq!(expired(&snap, &d), 1);
        assert_eq!(
            live.lock().waiting.len(),
            2,
            "a scrape reads the state; it does not change it"
        );
        // An event past a's expiry time moves time on: a leaves the queue for good.
        live.started(&event(ChatKind::Start, "c", ""), past_a);
        assert_eq!(live.lock().waiting.len(), 2, "b and c");
        assert_eq!(expired(&live.snapshot(past_a), &d), 1, "counted once");
        // An accept of a after its expiry finds nothing waiting: no accept time.
        live.accepted(&event(ChatKind::Accept, "a", ""), past_a + 1.0);
        assert_eq!(accept_times(&live, &d).0, 0);
    }

    #[test]
    fn a_late_start_of_a_finished_chat_does_not_queue_it_even_before_any_start() {
        let (live, labeler) = live();
        let d = labeler.department("1");
        live.accepted(&event(ChatKind::Accept, "x", ""), 10.0);
        live.closed(&event(ChatKind::Close, "x", "1"), &d, 20.0);
        live.started(&event(ChatKind::Start, "x", "1"), 5.0);
        assert_eq!(live.snapshot(30.0).waiting, vec![(d, 0, 0.0)]);
    }

    #[test]
    fn finished_chats_are_remembered_within_bounds() {
        let (live, labeler) = live();
        let d = labeler.department("1");
        for i in 0..(MAX_FINISHED + 10) {
            live.closed(&event(ChatKind::Close, &format!("x{i}"), "1"), &d, 20.0);
        }
        let s = live.lock();
        assert_eq!(s.finished.len(), MAX_FINISHED);
        assert_eq!(s.finished_order.len(), MAX_FINISHED);
    }

    #[test]
    fn starts_past_the_cap_are_dropped_until_expiry_frees_room() {
        let (live, labeler) = live();
        let d = labeler.department("1");
        for i in 0..MAX_WAITING {
            live.started(&event(ChatKind::Start, &i.to_string(), "1"), 100.0);
        }
        live.started(&event(ChatKind::Start, "over", "1"), 200.0);
        assert_eq!(live.lock().waiting.len(), MAX_WAITING);
        assert!(!live.lock().waiting.contains_key("over"));
        // Four hours later the first ones expire and a start is queued again.
        let later = 100.0 + 4.0 * 3600.0 + 1.0;
        live.started(&event(ChatKind::Start, "later", "1"), later);
        let s = live.lock();
        assert_eq!(s.waiting.len(), 1);
        assert_eq!(s.expired.get(&d), Some(&(MAX_WAITING as u64)));
    }
}
