//! Admit: authenticate the sender ([`auth`]), turn a decoded event into what is kept of it
//! ([`normalise`]), de-duplicate it and make it durable (the [`Store`] and its engines). An
//! event is acknowledged only after it is committed.
//!
//! The store is a seam: [`Store`] holds one [`Engine`], chosen at start-up, and the stages after
//! it see only [`Admitted`] events handed to a [`Sink`] in the order they were admitted, each
//! with its sequence number. Engines:
//! - [`sqlite`]: the embedded default, one database file, group commits, de-duplication by the
//!   table's unique key (account, event type, chat id) across restarts;
//! - [`memory`]: nothing on disk, de-duplication over a window in fixed-size key tables;
//! - [`postgres`]: a PostgreSQL database shared by several replicas, each following the shared
//!   log, so every replica holds the same state.

pub mod auth;
pub mod memory;
pub mod normalise;
pub mod postgres;
pub mod sqlite;

use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use crate::config::SyncMode;
use crate::event::{Admitted, ChatEvent, Seq};

/// The name this module's event type had before it moved to [`crate::event`].
pub use crate::event::ChatEvent as StoredEvent;

/// Where admitted events go, in the order they were admitted: the record stage. Called once per
/// new event after its commit and before its sender is answered, whatever becomes of the
/// request, so the live metrics always equal what a restart rebuilds from the store.
pub type Sink = Arc<dyn Fn(&Admitted) + Send + Sync>;

/// The store's verdict on one delivery.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admission {
    /// First delivery of this event: committed; it reaches the sink.
    New,
    /// This event was admitted before: change nothing.
    Duplicate,
}

/// A failure of the store itself (never the client's fault).
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// SQLite failed.
    #[error("storage: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// SQLite failed on the database at `path`, at start.
    #[error("storage {path}: {source}")]
    Database {
        /// The database file.
        path: PathBuf,
        /// Why.
        source: rusqlite::Error,
    },
    /// The database file is empty: not a database, and not a store to start afresh from.
    #[error(
        "storage {path}: the file is empty (0 bytes), not a database; if the exporter never \
         stored anything there, delete it to start afresh, else restore it from a backup"
    )]
    Empty {
        /// The database file.
        path: PathBuf,
    },
    /// The storage folder could not be created.
    #[error("storage folder {path}: {source}")]
    Folder {
        /// The folder.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The database was written by a newer version of the exporter.
    #[error("storage {path}: schema version {found} is newer than this exporter's ({supported})")]
    Schema {
        /// The database file.
        path: PathBuf,
        /// Version found.
        found: i64,
        /// Version this build writes.
        supported: i64,
    },
    /// A stored row this build cannot read.
    #[error("storage {path}: event {seq}: {problem}")]
    Corrupt {
        /// The database file.
        path: PathBuf,
        /// The row's sequence number.
        seq: Seq,
        /// What is wrong with it.
        problem: String,
    },
    /// PostgreSQL failed or cannot be reached.
    #[error("storage: {0}")]
    Postgres(#[from] tokio_postgres::Error),
    /// The PostgreSQL store `server` (named without its password) cannot be used.
    #[error("storage {server}: {problem}")]
    Server {
        /// Host, port and database.
        server: String,
        /// What is wrong.
        problem: String,
    },
    /// The engine is not admitting (not started yet, or shut down).
    #[error("storage is shut down")]
    Closed,
}

/// Result alias of this module.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Commit statistics, for the exporter's own metrics.
#[derive(Debug, Clone, Copy)]
pub struct CommitStats {
    /// Deliveries in the batch.
    pub batch: usize,
    /// Events the batch added to the store (its deliveries less the duplicates).
    pub new: usize,
    /// Seconds the transaction took.
    pub seconds: f64,
}

/// What an engine calls after each commit.
pub type OnCommit = Box<dyn Fn(CommitStats) + Send + Sync>;

/// A snapshot of the derived state as a store keeps it: opaque bytes at a sequence number.
#[derive(Clone, Debug, PartialEq)]
pub struct StoredSnapshot {
    /// The last event it includes.
    pub seq: Seq,
    /// Its bytes.
    pub bytes: Vec<u8>,
}

/// A future an engine returns.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A storage engine: where admitted events are de-duplicated, made durable and numbered, and
/// where the snapshots of the state derived from them are kept.
///
/// The life of an engine: opened by its own constructor; [`Engine::load_snapshot`] and
/// [`Engine::replay`] hand the stored state to the record stage; [`Engine::start`] begins
/// admitting, after which every new event reaches the sink once committed; meanwhile
/// snapshots are saved and old events pruned off the hot path; [`Engine::close`] commits what
/// is queued and stops.
pub trait Engine: Send + Sync + std::fmt::Debug {
    /// The stored events with a sequence number above `after` and at most `through`, in order;
    /// the number of the last one (`after` when there are none).
    fn replay(&self, after: Seq, through: Seq, each: &mut dyn FnMut(&Admitted)) -> Result<Seq>;

    /// Begin admitting: from now on every event after `after` goes to `sink` once committed,
    /// in commit order.
    fn start(&self, sink: Sink, after: Seq) -> Result<()>;

    /// When the store began, in milliseconds since the epoch: the same for every process that
    /// opens it, across restarts.
    fn epoch_ms(&self) -> i64;

    /// The sequence number of the newest event committed.
    fn last_seq(&self) -> Result<Seq>;

    /// How many events the store holds.
    fn events_held(&self) -> Result<u64>;

    /// Whether this process is the one that writes the snapshots and prunes: always for a
    /// store of its own; for a shared one, the one replica holding that role (taken when it is
    /// free). The others need not build snapshots that would not be kept.
    fn maintains(&self) -> Result<bool> {
        Ok(true)
    }

    /// The newest complete snapshot, if any.
    fn load_snapshot(&self) -> Result<Option<StoredSnapshot>>;

    /// Keep `bytes` as the snapshot at `seq`, atomically with it; older ones go.
    fn save_snapshot(&self, seq: Seq, bytes: &[u8]) -> Result<()>;

    /// Delete every snapshot (before a rebuild from the retained events).
    fn drop_snapshots(&self) -> Result<()>;

    /// Delete at most `batch` of the oldest events received before `before_ms` and at or
    /// before `through` (the newest snapshot's sequence number); how many were deleted (0
    /// when nothing is left to prune).
    fn prune(&self, before_ms: i64, through: Seq, batch: usize) -> Result<u64>;

    /// Admit one event: `New` once it is committed and handed to the sink, `Duplicate` if it
    /// was admitted before. A new event reaches the sink even when this future is dropped after
    /// the event was handed over for its commit.
    fn admit(&self, event: ChatEvent) -> BoxFuture<'_, Result<Admission>>;

    /// False while the engine cannot commit; it finds out by itself when it can again.
    fn is_healthy(&self) -> bool;

    /// Stop admitting, commit what is queued and release the storage.
    fn close(&self) -> BoxFuture<'_, ()>;

    /// Where the state lives, if on disk.
    fn path(&self) -> Option<&Path>;
}

/// The admission store: one engine behind the seam.
#[derive(Debug)]
pub struct Store {
    engine: Arc<dyn Engine>,
}

impl Store {
    /// A store over an opened engine: replays every event it holds into `sink` (returning how
    /// many), then starts it.
    pub fn start(engine: Arc<dyn Engine>, sink: Sink) -> Result<(Self, u64)> {
        let mut replayed = 0u64;
        let last = engine.replay(0, Seq::MAX, &mut |e| {
            replayed += 1;
            sink(e);
        })?;
        engine.start(sink, last)?;
        Ok((Store { engine }, replayed))
    }

    /// A store over an engine whose state was loaded up to `after`: starts it.
    pub fn resume(engine: Arc<dyn Engine>, sink: Sink, after: Seq) -> Result<Self> {
        engine.start(sink, after)?;
        Ok(Store { engine })
    }

    /// A memory-only store that drops retries of an event seen within `window` and hands every
    /// new event to `sink`.
    pub fn in_memory(window: Duration, sink: Sink) -> Self {
        let engine = memory::Memory::new(window);
        // A memory engine holds nothing to replay and always starts.
        let _ = engine.start(sink, 0);
        Store {
            engine: Arc::new(engine),
        }
    }

    /// The engine, for the snapshots and the pruning that run beside admission.
    pub fn engine(&self) -> &Arc<dyn Engine> {
        &self.engine
    }

    /// Open (or create) the SQLite database in `folder`, hand every stored event to `sink` in
    /// the order it was admitted (the replay; it returns their number), then start admitting,
    /// after which `sink` takes each new event once it is committed. `on_commit` is called
    /// after each commit.
    pub fn open(
        folder: &Path,
        sync: SyncMode,
        sink: Sink,
        on_commit: impl Fn(CommitStats) + Send + Sync + 'static,
    ) -> Result<(Self, u64)> {
        let engine = sqlite::Sqlite::open(folder, sync, Box::new(on_commit))?;
        Self::start(Arc::new(engine), sink)
    }

    /// Admit one event (see [`Engine::admit`]).
    pub async fn admit(&self, event: ChatEvent) -> Result<Admission> {
        self.engine.admit(event).await
    }

    /// False while the store cannot commit (see [`Engine::is_healthy`]).
    pub fn is_healthy(&self) -> bool {
        self.engine.is_healthy()
    }

    /// Where the state lives, if on disk.
    pub fn path(&self) -> Option<&Path> {
        self.engine.path()
    }

    /// Stop taking events, commit what is queued and close the storage.
    pub async fn close(&self) {
        self.engine.close().await
    }
}
