//! Checkpoints: what a start costs must not depend on how long the exporter has run.
//!
//! - **Load** ([`load`]): the newest snapshot of the derived state, then only the events after
//!   it. A snapshot made under other settings (a changed bucket layout, say) is set aside: the
//!   state is rebuilt from the retained events, and Prometheus sees a counter reset. A snapshot
//!   that cannot be read (damaged, or written by a newer build) stops the start, unless
//!   `--storage.rebuild` asks for the same rebuild.
//! - **Snapshots** ([`Worker`]): every so many events or so much time, a thread of its own
//!   rebuilds the state at the newest event from the last snapshot and the events after it, off
//!   the hot path (the live state is never paused or copied), and the store keeps it at that
//!   event's sequence number, atomically. Over a shared store only the replica that keeps
//!   the snapshots ([`Engine::maintains`]) builds them; the others check again when the next
//!   is due.
//! - **Retention**: after each snapshot, raw events older than the retention and covered by
//!   the snapshot are deleted in small batches; the snapshot keeps their contribution, so no
//!   counter goes down. De-duplication holds for the retention.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::admit::{Engine, StoreError};
use crate::config::Settings;
use crate::event::Seq;
use crate::record::snapshot::{self, SnapshotError};
use crate::record::{Clock, Metrics};

/// When snapshots are made, and how long raw events are kept.
#[derive(Debug, Clone, Copy)]
pub struct Policy {
    /// A snapshot after this many events.
    pub every_events: u64,
    /// A snapshot after this much time, if any event came.
    pub interval: Duration,
    /// Raw events older than this are pruned; `None` keeps them for good.
    pub retention: Option<Duration>,
}

/// Events deleted in one pruning transaction: each holds up the group commits for as long as it
/// takes (deleting 2,000 took 7–90 ms on the benchmark machine, 500 about 1 ms), so batches
/// stay small; with [`PRUNE_PAUSE`] pruning still takes up to 25,000 events a second.
const PRUNE_BATCH: usize = 500;
/// The pause between two pruning transactions, so admission commits in between.
const PRUNE_PAUSE: Duration = Duration::from_millis(20);

/// Why the stored state could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The newest snapshot cannot be read.
    #[error(
        "{location}: the snapshot at event {seq} cannot be read: {source}. Nothing was changed. \
         Start once with --storage.rebuild to rebuild the state from the retained events \
         (what events older than the retention added to the histograms and counters is lost), \
         or run a build that reads it"
    )]
    Unreadable {
        /// The store.
        location: String,
        /// The snapshot's sequence number.
        seq: Seq,
        /// Why.
        source: SnapshotError,
    },
}

/// How the state was loaded.
#[derive(Debug, Clone, PartialEq)]
pub struct Loaded {
    /// The snapshot's sequence number, if one was used.
    pub snapshot: Option<Seq>,
    /// Events replayed after it.
    pub replayed: u64,
    /// The last event applied.
    pub last: Seq,
    /// Why a snapshot was set aside, if one was.
    pub rebuilt: Option<String>,
}

/// The state the store holds, into `metrics` (fresh: no event applied yet): the newest
/// snapshot and the events after it (see the module docs).
pub fn load(
    engine: &dyn Engine,
    metrics: &Metrics,
    rebuild: bool,
    location: &str,
) -> Result<Loaded, LoadError> {
    metrics.set_epoch(engine.epoch_ms() as f64 / 1000.0);
    let (snapshot, rebuilt) = match engine.load_snapshot()? {
        None => (None, None),
        Some(stored) => match snapshot::decode(&stored.bytes) {
            Ok(state) => match metrics.restore(&state) {
                Ok(()) => (Some(stored.seq), None),
                Err(why) => {
                    let why = format!("the snapshot at event {} was {why}", stored.seq);
                    tracing::warn!(
                        store = location,
                        "{why}: rebuilding the state from the retained events; the chat \
                         histograms and counters restart (Prometheus sees a counter reset) \
                         and lose what events older than the retention added"
                    );
                    (None, Some(why))
                }
            },
            Err(source) if rebuild => {
                let why = format!(
                    "the snapshot at event {} cannot be read: {source}",
                    stored.seq
                );
                tracing::warn!(
                    store = location,
                    "{why}: rebuilding the state from the retained events (--storage.rebuild); \
                     what events older than the retention added is lost"
                );
                (None, Some(why))
            }
            Err(source) => {
                return Err(LoadError::Unreadable {
                    location: location.to_owned(),
                    seq: stored.seq,
                    source,
                });
            }
        },
    };
    let after = snapshot.unwrap_or(0);
    let mut replayed = 0u64;
    let last = engine.replay(after, Seq::MAX, &mut |e| {
        replayed += 1;
        metrics.apply(e);
    })?;
    if rebuilt.is_some() {
        // The old snapshot would mislead the next start: the worker writes a new one soon.
        engine.drop_snapshots()?;
    }
    Ok(Loaded {
        snapshot,
        replayed,
        last,
        rebuilt,
    })
}

/// What the worker reports to the exporter's own metrics.
pub trait Report: Send + Sync {
    /// A snapshot at `seq` was written in `seconds`, `bytes` long.
    fn snapshot(&self, seq: Seq, seconds: f64, bytes: usize);
    /// A snapshot could not be made.
    fn snapshot_failed(&self);
    /// `events` old events were pruned.
    fn pruned(&self, events: u64);
}

impl Report for Metrics {
    fn snapshot(&self, _seq: Seq, seconds: f64, bytes: usize) {
        self.snapshot_written(seconds, bytes);
    }

    fn snapshot_failed(&self) {
        Metrics::snapshot_failed(self);
    }

    fn pruned(&self, events: u64) {
        Metrics::pruned(self, events);
    }
}

/// The snapshot and pruning thread.
#[derive(Debug)]
pub struct Worker {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Worker {
    /// Start the thread over `engine`, whose state was loaded up to `loaded` (a snapshot at
    /// `snapshot`, if any).
    pub fn start(
        engine: Arc<dyn Engine>,
        settings: Settings,
        policy: Policy,
        snapshot: Option<Seq>,
        report: Arc<dyn Report>,
    ) -> std::io::Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("store-snapshots".into())
            .spawn(move || {
                let mut worker = Run {
                    engine,
                    settings,
                    policy,
                    snapshot,
                    deferred: 0,
                    report,
                };
                worker.run(&flag);
            })?;
        Ok(Worker {
            stop,
            thread: Some(thread),
        })
    }

    /// Stop the thread (between two of its steps) and wait for it.
    pub fn stop(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

struct Run {
    engine: Arc<dyn Engine>,
    settings: Settings,
    policy: Policy,
    /// The newest snapshot this process wrote or loaded.
    snapshot: Option<Seq>,
    /// The newest event when another replica was found keeping the snapshots.
    deferred: Seq,
    report: Arc<dyn Report>,
}

impl Run {
    fn run(&mut self, stop: &AtomicBool) {
        let mut since = Instant::now();
        while !stop.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(200));
            let last = match self.engine.last_seq() {
                Ok(last) => last,
                Err(e) => {
                    tracing::debug!(error = %e, "snapshot check failed");
                    continue;
                }
            };
            let covered = self.snapshot.unwrap_or(0).max(self.deferred);
            let behind = last.saturating_sub(covered);
            let due = behind >= self.policy.every_events
                || (behind > 0 && since.elapsed() >= self.policy.interval);
            if !due {
                continue;
            }
            since = Instant::now();
            match self.engine.maintains() {
                Ok(true) => {}
                Ok(false) => {
                    // Another replica keeps the snapshots of this store: nothing to build until
                    // the next is due, when the role may have become free.
                    self.deferred = last;
                    continue;
                }
                Err(e) => {
                    // Not a snapshot failure: none was attempted, and the replicas that do not
                    // keep the snapshots would count one they never owed. The store's own
                    // failures show in its webhooks' answers.
                    tracing::warn!(error = %e, "could not learn whether this replica keeps the snapshots; the next try is due at the next interval");
                    continue;
                }
            }
            match write_snapshot_in_background(&*self.engine, &self.settings, last) {
                Ok((seq, bytes)) => {
                    self.report
                        .snapshot(seq, since.elapsed().as_secs_f64(), bytes);
                    self.snapshot = Some(seq);
                    tracing::debug!(seq, bytes, "snapshot written");
                }
                Err(e) => {
                    self.report.snapshot_failed();
                    tracing::warn!(error = %e, "could not write a snapshot; the next try is due at the next interval");
                    continue;
                }
            }
            if let (Some(retention), Some(seq)) = (self.policy.retention, self.snapshot) {
                self.prune(retention, seq, stop);
            }
        }
    }

    /// Prune what the snapshot at `through` covers and the retention lets go, in batches.
    fn prune(&self, retention: Duration, through: Seq, stop: &AtomicBool) {
        let before_ms = now_ms() - retention.as_millis() as i64;
        while !stop.load(Ordering::Relaxed) {
            match self.engine.prune(before_ms, through, PRUNE_BATCH) {
                Ok(0) => return,
                Ok(n) => self.report.pruned(n),
                Err(e) => {
                    tracing::warn!(error = %e, "could not prune old events; the next try follows the next snapshot");
                    return;
                }
            }
            std::thread::sleep(PRUNE_PAUSE);
        }
    }
}

/// The state at event `upto` (or the newest), rebuilt from the store's newest snapshot and the
/// events after it, written as the new snapshot: its sequence number and size.
pub fn write_snapshot(
    engine: &dyn Engine,
    settings: &Settings,
    upto: Seq,
) -> Result<(Seq, usize), String> {
    save(engine, build_snapshot(engine, settings, upto)?)
}

/// [`write_snapshot`] with the rebuild and its encoding on a thread of lower CPU priority
/// ([`crate::niceness`]): on a busy core they wait for the deliveries. The save, a short write
/// the group commits queue behind, runs at the caller's priority, so that a commit never waits
/// for a thread the scheduler holds back.
fn write_snapshot_in_background(
    engine: &dyn Engine,
    settings: &Settings,
    upto: Seq,
) -> Result<(Seq, usize), String> {
    let built = std::thread::scope(|s| {
        std::thread::Builder::new()
            .name("store-snapshot-build".into())
            .spawn_scoped(s, || {
                crate::niceness::lower_this_thread();
                build_snapshot(engine, settings, upto)
            })
            .map_err(|e| format!("cannot start the snapshot's thread: {e}"))?
            .join()
            .map_err(|_| "the snapshot's thread panicked".to_owned())?
    })?;
    save(engine, built)
}

/// What [`build_snapshot`] made.
enum Built {
    /// The newest snapshot is already at `upto` or past it.
    Current(Seq),
    /// The state at this sequence number, encoded.
    New(Seq, Vec<u8>),
}

fn build_snapshot(engine: &dyn Engine, settings: &Settings, upto: Seq) -> Result<Built, String> {
    // The clock does not enter the state: a fixed one keeps the rebuild independent of it.
    let clock = Clock::new(|| 0.0);
    let metrics = match engine.load_snapshot().map_err(|e| e.to_string())? {
        Some(stored) => {
            let state = snapshot::decode(&stored.bytes).map_err(|e| e.to_string())?;
            Metrics::import(settings, clock, &state)?
        }
        None => {
            let metrics = Metrics::with_clock(settings, clock);
            metrics.set_epoch(engine.epoch_ms() as f64 / 1000.0);
            metrics
        }
    };
    let from = metrics.applied();
    if from >= upto {
        return Ok(Built::Current(from));
    }
    engine
        .replay(from, upto, &mut |e| metrics.apply(e))
        .map_err(|e| e.to_string())?;
    Ok(Built::New(
        metrics.applied(),
        snapshot::encode(&metrics.export()),
    ))
}

fn save(engine: &dyn Engine, built: Built) -> Result<(Seq, usize), String> {
    match built {
        Built::Current(seq) => Ok((seq, 0)),
        Built::New(seq, bytes) => {
            engine
                .save_snapshot(seq, &bytes)
                .map_err(|e| e.to_string())?;
            Ok((seq, bytes.len()))
        }
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}
