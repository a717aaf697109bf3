//! The state a restart rebuilds from a snapshot and the events after it is the state of an
//! exporter that never stopped: random sequences of start, accept and close events with
//! duplicates, snapshots, pruning and restarts at random points, through the SQLite engine,
//! compared byte for byte on `/metrics` in all three formats with a process that saw the same
//! events and never restarted.

use std::collections::HashSet;
use std::sync::Arc;

use acquire_exporter::admit::sqlite::Sqlite;
use acquire_exporter::admit::{Admission, Engine, Sink, Store};
use acquire_exporter::checkpoint;
use acquire_exporter::config::{Settings, SyncMode};
use acquire_exporter::event::{Admitted, ChatEvent, ChatKind, Seq};
use acquire_exporter::expose::{Exposition, Format};
use acquire_exporter::record::{Clock, Metrics};
use proptest::prelude::*;

/// 2023-11-14 22:13:20 UTC, in milliseconds.
const T0_MS: i64 = 1_700_000_000_000;

#[derive(Clone, Debug)]
enum Op {
    /// A delivery: a new event, or again one of the recent ones (a sender's retry).
    Deliver(ChatEvent),
    Retry(usize),
    Snapshot,
    /// Prune what is older than this many milliseconds before the newest event.
    Prune(i64),
    Restart,
}

/// Event `n` of the sequence: its chat is one of six of a generation of eight deliveries, so
/// that a chat's start, accept and close meet, and an id never comes back hours later.
fn event(
    n: usize,
    kind: u8,
    chat: u8,
    department: u8,
    role: u8,
    wait: Option<u16>,
    at_ms: i64,
) -> ChatEvent {
    let kind = match kind % 3 {
        0 => ChatKind::Start,
        1 => ChatKind::Accept,
        _ => ChatKind::Close,
    };
    let chat = chat % 6;
    let mut e = ChatEvent::empty(kind, &format!("chat-{}-{chat}", n / 8));
    e.account_id = "10111".into();
    e.received_ms = at_ms;
    match kind {
        ChatKind::Start => e.department_id = ["", "7", "12"][department as usize % 3].into(),
        ChatKind::Accept => e.agent_id = Some(format!("agent-{}", role % 4)),
        ChatKind::Close => {
            e.department_id = ["", "7", "12"][department as usize % 3].into();
            e.wait_seconds = wait.map(f64::from);
            if e.wait_seconds.is_some() {
                e.agent_role =
                    Some(["operator", "administrator", "lead"][role as usize % 3].into());
                e.agent_id = Some(format!("agent-{}", role % 4));
            }
            e.duration_seconds = Some(f64::from(chat) * 37.0 + 20.0);
        }
    }
    e
}

fn ops() -> impl Strategy<Value = Vec<Op>> {
    let step = prop_oneof![
        8 => (any::<u8>(), 0u8..40, any::<u8>(), any::<u8>(), proptest::option::of(0u16..2000), -3_000i64..120_000)
            .prop_map(|(k, c, d, r, w, dt)| (Some((k, c, d, r, w)), dt, 0u8)),
        2 => (0usize..5).prop_map(|i| (None, i as i64, 1u8)),
        1 => Just((None, 0, 2u8)),
        1 => (3_600_000i64..7_200_000).prop_map(|keep| (None, keep, 3u8)),
        1 => Just((None, 0, 4u8)),
    ];
    proptest::collection::vec(step, 1..120).prop_map(|steps| {
        let mut at = T0_MS;
        let mut delivered = 0;
        steps
            .into_iter()
            .map(|(e, n, what)| match (e, what) {
                (Some((k, c, d, r, w)), _) => {
                    at = (at + n).max(T0_MS);
                    delivered += 1;
                    Op::Deliver(event(delivered, k, c, d, r, w, at))
                }
                (None, 1) => Op::Retry(n as usize),
                (None, 2) => Op::Snapshot,
                (None, 3) => Op::Prune(n),
                _ => Op::Restart,
            })
            .collect()
    })
}

/// The whole page, in every format, at a fixed scrape time.
fn pages(metrics: Arc<Metrics>) -> Vec<Vec<u8>> {
    let exposition = Exposition::new(metrics);
    [Format::Text, Format::OpenMetrics, Format::Protobuf]
        .into_iter()
        .map(|f| {
            let mut page = Vec::new();
            exposition.encode(f, &mut page);
            page
        })
        .collect()
}

struct Subject {
    dir: tempfile::TempDir,
    settings: Settings,
    clock: Clock,
    engine: Arc<Sqlite>,
    store: Store,
    metrics: Arc<Metrics>,
}

impl Subject {
    fn open(dir: tempfile::TempDir, settings: Settings, clock: Clock) -> Self {
        let engine =
            Arc::new(Sqlite::open(dir.path(), SyncMode::Normal, Box::new(|_| {})).expect("open"));
        let metrics = Arc::new(Metrics::with_clock(&settings, clock.clone()));
        let loaded = checkpoint::load(&*engine, &metrics, false, "test").expect("load");
        let sink: Sink = {
            let metrics = metrics.clone();
            Arc::new(move |e: &Admitted| metrics.apply(e))
        };
        let store = Store::resume(engine.clone(), sink, loaded.last).expect("start");
        Subject {
            dir,
            settings,
            clock,
            engine,
            store,
            metrics,
        }
    }

    async fn restart(self) -> Self {
        self.store.close().await;
        let Subject {
            dir,
            settings,
            clock,
            ..
        } = self;
        Self::open(dir, settings, clock)
    }

    fn snapshot(&self) -> Option<Seq> {
        let last = self.engine.last_seq().unwrap();
        checkpoint::write_snapshot(&*self.engine, &self.settings, last).expect("snapshot");
        self.engine.load_snapshot().unwrap().map(|s| s.seq)
    }
}

fn key(e: &ChatEvent) -> (String, ChatKind, String) {
    (e.account_id.clone(), e.kind, e.chat_id.clone())
}

fn run(ops: Vec<Op>) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async move {
        let settings = Settings {
            max_agent_roles: 2,
            queue_expire_after: std::time::Duration::from_secs(600),
            ..Settings::default()
        };
        let end = T0_MS as f64 / 1000.0 + 40.0 * 3600.0;
        let clock = Clock::new(move || end);
        let reference = Metrics::with_clock(&settings, clock.clone());
        let mut seen = HashSet::new();
        let mut seq = 0;
        let mut recent: Vec<ChatEvent> = Vec::new();
        let mut subject = Subject::open(tempfile::tempdir().unwrap(), settings.clone(), clock);
        reference.set_epoch(subject.engine.epoch_ms() as f64 / 1000.0);
        let mut snapshot: Option<Seq> = None;
        let mut newest_ms = T0_MS;
        for op in ops {
            let e = match op {
                Op::Deliver(e) => Some(e),
                Op::Retry(i) if !recent.is_empty() => {
                    Some(recent[recent.len() - 1 - i % recent.len()].clone())
                }
                Op::Retry(_) => None,
                Op::Snapshot => {
                    snapshot = subject.snapshot();
                    None
                }
                Op::Prune(keep) => {
                    if let Some(through) = snapshot {
                        while subject.engine.prune(newest_ms - keep, through, 7).unwrap() > 0 {}
                    }
                    None
                }
                Op::Restart => {
                    subject = subject.restart().await;
                    None
                }
            };
            let Some(e) = e else { continue };
            newest_ms = newest_ms.max(e.received_ms);
            let new = seen.insert(key(&e));
            let admission = subject.store.admit(e.clone()).await.expect("admit");
            assert_eq!(admission == Admission::New, new, "{e:?}");
            if new {
                seq += 1;
                reference.apply(&Admitted {
                    seq,
                    event: e.clone(),
                });
                recent.push(e);
                if recent.len() > 5 {
                    recent.remove(0);
                }
            }
        }
        // A last restart, so every run ends with a state rebuilt from the store.
        let subject = subject.restart().await;
        subject.store.close().await;
        let (got, want) = (pages(subject.metrics), pages(Arc::new(reference)));
        for (format, (got, want)) in ["text", "openmetrics", "protobuf"]
            .iter()
            .zip(got.iter().zip(&want))
        {
            if got != want {
                let (g, w) = (String::from_utf8_lossy(got), String::from_utf8_lossy(want));
                let line = g.lines().zip(w.lines()).position(|(a, b)| a != b);
                panic!(
                    "{format} differs at line {line:?}: got {:?}, want {:?}",
                    line.and_then(|l| g.lines().nth(l)),
                    line.and_then(|l| w.lines().nth(l))
                );
            }
        }
    });
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn a_restarted_store_shows_what_one_that_never_stopped_shows(ops in ops()) {
        run(ops);
    }
}
