//! Admit: de-duplicate and make durable. An event is acknowledged only after it is committed.
//!
//! The durable store is an SQLite database in WAL mode, written by one thread that takes every
//! delivery waiting in its queue and commits them in one transaction (group commit): the cost of a
//! commit is paid per batch, not per request. De-duplication is the table's unique key
//! (account, event type, chat id), so it holds across restarts. Rows hold ids, the department id,
//! the agent role and times: never names, e-mails or phones.
//!
//! The memory-only store remembers keys for a window or a number of deliveries (two generations
//! of fixed-size key tables) and nothing survives a restart.

pub mod auth;

use std::hash::{BuildHasher, RandomState};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rusqlite::{Connection, OptionalExtension, params};
use tokio::sync::{mpsc, oneshot};

use crate::config::SyncMode;
use crate::decode::EventKind;

/// The most deliveries one group commit takes.
const MAX_BATCH: usize = 4096;

/// What is kept of an admitted event: what the metrics need, nothing personal.
#[derive(Clone, Debug, PartialEq)]
pub struct StoredEvent {
    /// `ChatStart`, `ChatAccept` or `ChatClose`.
    pub kind: EventKind,
    /// Account id (`""` when the vendor sent none).
    pub account_id: String,
    /// Chat id.
    pub chat_id: String,
    /// When the exporter received it, in milliseconds since the Unix epoch.
    pub received_ms: i64,
    /// Department id, `""` for none.
    pub department_id: String,
    /// Normalised agent role, if any.
    pub agent_role: Option<String>,
    /// Agent id (`agent-15111`), if any.
    pub agent_id: Option<String>,
    /// Wait in seconds, if any.
    pub wait_seconds: Option<f64>,
    /// Duration in seconds, if any.
    pub duration_seconds: Option<f64>,
}

/// The store's verdict on one delivery.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admission {
    /// First delivery of this event: committed; count it.
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
    /// The writer thread is gone (shutting down).
    #[error("storage is shut down")]
    Closed,
}

/// Result alias of this module.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Where admitted events go, in the order they were admitted: the record stage. Called once
/// per new event after its commit and before its sender is answered, whatever becomes of the
/// request, so the live metrics always equal what a restart rebuilds from the store.
pub type Sink = Arc<dyn Fn(&StoredEvent) + Send + Sync>;

/// The admission store, durable or memory-only.
pub struct Store {
    backend: Backend,
    sink: Sink,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("backend", &self.backend)
            .finish_non_exhaustive()
    }
}

#[derive(Debug)]
enum Backend {
    Sqlite(SqliteHandle),
    Memory(Mutex<MemoryDedup>),
}

#[derive(Debug)]
struct SqliteHandle {
    /// False from a failed commit until a later commit or probe succeeds.
    healthy: Arc<AtomicBool>,
    tx: mpsc::Sender<Msg>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
    path: PathBuf,
}

/// A message to the writer thread.
enum Msg {
    /// Commit this event and answer.
    Admit(Job),
    /// Commit what is queued, then stop.
    Shutdown,
}

type Job = (StoredEvent, oneshot::Sender<Result<Admission>>);

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

const SCHEMA_VERSION: i64 = 1;

impl Store {
    /// A memory-only store that drops retries of an event seen within `window` and hands every
    /// new event to `sink`.
    pub fn in_memory(window: Duration, sink: Sink) -> Self {
        Store {
            backend: Backend::Memory(Mutex::new(MemoryDedup::new(window))),
            sink,
        }
    }

    /// Open (or create) the database in `folder`, hand every stored event to `sink` in the order
    /// it was admitted (the replay; it returns their number), then start the writer thread, after
    /// which `sink` takes each new event once it is committed. `on_commit` is called after each
    /// commit.
    pub fn open(
        folder: &Path,
        sync: SyncMode,
        sink: Sink,
        on_commit: impl Fn(CommitStats) + Send + 'static,
    ) -> Result<(Self, u64)> {
        std::fs::create_dir_all(folder).map_err(|source| StoreError::Folder {
            path: folder.to_owned(),
            source,
        })?;
        let path = folder.join("acquire-exporter.sqlite");
        let conn = open_connection(&path, sync)?;
        let mut replayed = 0u64;
        replay_all(&conn, &mut |e| {
            replayed += 1;
            sink(e);
        })?;
        // Checkpoint the log into the database every 250 pages (1 MiB) rather than SQLite's
        // 1,000: each checkpoint stalls the commits queued behind it for as long as it copies,
        // so small ones keep the tail short (durable p99 at 34,000 events/s: 5.5 ms at 1,000
        // pages, 2.5 ms at 250, 30 ms at 10,000) at no measurable cost in throughput.
        conn.pragma_update(None, "wal_autocheckpoint", 250)?;
        let (tx, rx) = mpsc::channel(MAX_BATCH * 2);
        let answers = Answers::start(sink.clone());
        let healthy = Arc::new(AtomicBool::new(true));
        let writer_health = healthy.clone();
        let thread = std::thread::Builder::new()
            .name("store-writer".into())
            .spawn(move || writer(conn, rx, answers, on_commit, &writer_health))
            .map_err(|source| StoreError::Folder {
                path: folder.to_owned(),
                source,
            })?;
        let store = Store {
            backend: Backend::Sqlite(SqliteHandle {
                healthy,
                tx,
                thread: Mutex::new(Some(thread)),
                path,
            }),
            sink,
        };
        Ok((store, replayed))
    }

    /// False while the store cannot commit: from a failed commit until a later commit, or the
    /// probe the writer makes every second meanwhile, succeeds.
    pub fn is_healthy(&self) -> bool {
        match &self.backend {
            Backend::Sqlite(h) => h.healthy.load(Ordering::Relaxed),
            Backend::Memory(_) => true,
        }
    }

    /// Where the state lives, if on disk.
    pub fn path(&self) -> Option<&Path> {
        match &self.backend {
            Backend::Sqlite(h) => Some(&h.path),
            Backend::Memory(_) => None,
        }
    }

    /// Admit one event: `New` once it is committed (and handed to the sink), `Duplicate` if it
    /// was admitted before. A new event reaches the sink even when this future is dropped after
    /// the event was queued for its commit.
    pub async fn admit(&self, event: StoredEvent) -> Result<Admission> {
        match &self.backend {
            Backend::Memory(dedup) => {
                let mut dedup = dedup.lock().unwrap_or_else(|e| e.into_inner());
                if dedup.insert(&event, Instant::now()) {
                    // Under the lock: events reach the sink in the order they were admitted.
                    (self.sink)(&event);
                    Ok(Admission::New)
                } else {
                    Ok(Admission::Duplicate)
                }
            }
            Backend::Sqlite(h) => {
                let (reply, answer) = oneshot::channel();
                h.tx.send(Msg::Admit((event, reply)))
                    .await
                    .map_err(|_| StoreError::Closed)?;
                answer.await.map_err(|_| StoreError::Closed)?
            }
        }
    }

    /// Stop taking events, commit what is queued and close the database.
    pub async fn close(&self) {
        if let Backend::Sqlite(h) = &self.backend {
            let thread = h.thread.lock().unwrap_or_else(|e| e.into_inner()).take();
            let Some(thread) = thread else { return };
            let _ = h.tx.send(Msg::Shutdown).await;
            let _ = tokio::task::spawn_blocking(move || thread.join()).await;
        }
    }
}

fn empty_event() -> StoredEvent {
    StoredEvent {
        kind: EventKind::Unknown,
        account_id: String::new(),
        chat_id: String::new(),
        received_ms: 0,
        department_id: String::new(),
        agent_role: None,
        agent_id: None,
        wait_seconds: None,
        duration_seconds: None,
    }
}

fn open_connection(path: &Path, sync: SyncMode) -> Result<Connection> {
    let conn = Connection::open(path)?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(
        None,
        "synchronous",
        match sync {
            SyncMode::Normal => "NORMAL",
            SyncMode::Full => "FULL",
        },
    )?;
    // A small page cache keeps the resident memory low; the OS caches the file.
    conn.pragma_update(None, "cache_size", -4096)?;
    conn.busy_timeout(Duration::from_secs(5))?;
    let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    if version > SCHEMA_VERSION {
        return Err(StoreError::Schema {
            path: path.to_owned(),
            found: version,
            supported: SCHEMA_VERSION,
        });
    }
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS events (
             seq INTEGER PRIMARY KEY,
             account_id TEXT NOT NULL,
             kind INTEGER NOT NULL,
             chat_id TEXT NOT NULL,
             received_ms INTEGER NOT NULL,
             department_id TEXT NOT NULL,
             agent_role TEXT,
             agent_id TEXT,
             wait_seconds REAL,
             duration_seconds REAL
         );
         CREATE UNIQUE INDEX IF NOT EXISTS events_key ON events (account_id, kind, chat_id);
         CREATE TABLE IF NOT EXISTS health (
             id INTEGER PRIMARY KEY CHECK (id = 1),
             probed_ms INTEGER NOT NULL
         );
         PRAGMA user_version = 1;",
    )?;
    Ok(conn)
}

fn kind_code(kind: EventKind) -> i64 {
    match kind {
        EventKind::ChatStart => 1,
        EventKind::ChatAccept => 2,
        EventKind::ChatClose => 3,
        EventKind::ChatMessage => 4,
        EventKind::Unknown => 0,
    }
}

fn kind_from_code(code: i64) -> EventKind {
    match code {
        1 => EventKind::ChatStart,
        2 => EventKind::ChatAccept,
        3 => EventKind::ChatClose,
        4 => EventKind::ChatMessage,
        _ => EventKind::Unknown,
    }
}

fn replay_all(conn: &Connection, replay: &mut impl FnMut(&StoredEvent)) -> Result<()> {
    let mut stmt = conn.prepare(
        "SELECT kind, account_id, chat_id, received_ms, department_id, agent_role, agent_id,
                wait_seconds, duration_seconds
         FROM events ORDER BY seq",
    )?;
    let mut rows = stmt.query([])?;
    // One event reused for every row: replaying a million rows allocates nothing per row but
    // the strings' growth.
    let mut event = empty_event();
    while let Some(row) = rows.next()? {
        event.kind = kind_from_code(row.get(0)?);
        copy_text(&mut event.account_id, text(row, 1)?.unwrap_or(""));
        copy_text(&mut event.chat_id, text(row, 2)?.unwrap_or(""));
        event.received_ms = row.get(3)?;
        copy_text(&mut event.department_id, text(row, 4)?.unwrap_or(""));
        copy_opt(&mut event.agent_role, text(row, 5)?);
        copy_opt(&mut event.agent_id, text(row, 6)?);
        event.wait_seconds = row.get(7)?;
        event.duration_seconds = row.get(8)?;
        replay(&event);
    }
    Ok(())
}

/// A text column without copying it.
fn text<'r>(row: &'r rusqlite::Row<'_>, idx: usize) -> rusqlite::Result<Option<&'r str>> {
    row.get_ref(idx)?.as_str_or_null().map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(idx, rusqlite::types::Type::Text, Box::new(e))
    })
}

fn copy_text(to: &mut String, from: &str) {
    to.clear();
    to.push_str(from);
}

fn copy_opt(to: &mut Option<String>, from: Option<&str>) {
    match (to.as_mut(), from) {
        (Some(s), Some(f)) => copy_text(s, f),
        (_, f) => *to = f.map(str::to_owned),
    }
}

/// A committed delivery: its sender, its verdict, and the event when it is new.
type Answer = (
    oneshot::Sender<Result<Admission>>,
    Result<Admission>,
    Option<StoredEvent>,
);

/// How the writer hands a batch back: all at once to a task on the runtime, which gives the new
/// events to the sink in commit order and then answers their senders. Answering each from the
/// writer thread would wake the runtime once per delivery, and on a single busy core every
/// wake-up is a switch of threads. The sink runs whether or not anybody still waits for the
/// answer: a request dropped after its commit still counts.
enum Answers {
    /// To the dispatching task.
    Batched(mpsc::UnboundedSender<Vec<Answer>>, Sink),
    /// No runtime to run the task on (a store opened outside one): one by one.
    Direct(Sink),
}

impl Answers {
    fn start(sink: Sink) -> Self {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return Answers::Direct(sink);
        };
        let (tx, mut rx) = mpsc::unbounded_channel::<Vec<Answer>>();
        let dispatch = sink.clone();
        runtime.spawn(async move {
            while let Some(batch) = rx.recv().await {
                deliver(&dispatch, batch);
            }
        });
        Answers::Batched(tx, sink)
    }

    fn send(&self, batch: Vec<Answer>) {
        match self {
            Answers::Batched(tx, sink) => {
                if let Err(mpsc::error::SendError(batch)) = tx.send(batch) {
                    // The runtime is gone (shutting down): deliver here.
                    deliver(sink, batch);
                }
            }
            Answers::Direct(sink) => deliver(sink, batch),
        }
    }
}

fn deliver(sink: &Sink, batch: Vec<Answer>) {
    for (_, _, event) in &batch {
        if let Some(event) = event {
            sink(event);
        }
    }
    for (reply, answer, _) in batch {
        let _ = reply.send(answer);
    }
}

/// How often a store that failed to commit tries a write of its own to see whether it can again.
const PROBE_EVERY: Duration = Duration::from_secs(1);

/// The next message; while the store is unhealthy, waits at most until the next probe is due
/// and probes (`None` when the time came without a message).
fn next_message(
    conn: &mut Connection,
    rx: &mut mpsc::Receiver<Msg>,
    healthy: &AtomicBool,
) -> Option<Option<Msg>> {
    if healthy.load(Ordering::Relaxed) {
        return Some(rx.blocking_recv());
    }
    let due = Instant::now() + PROBE_EVERY;
    while Instant::now() < due {
        match rx.try_recv() {
            Ok(msg) => return Some(Some(msg)),
            Err(mpsc::error::TryRecvError::Disconnected) => return Some(None),
            Err(mpsc::error::TryRecvError::Empty) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
    match probe(conn) {
        Ok(()) => {
            healthy.store(true, Ordering::Relaxed);
            tracing::info!("storage commits again");
        }
        Err(e) => tracing::debug!(error = %e, "storage probe failed"),
    }
    None
}

/// A write of one row in a transaction of its own: succeeds when a commit would.
fn probe(conn: &mut Connection) -> rusqlite::Result<()> {
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    tx.execute(
        "INSERT INTO health (id, probed_ms) VALUES (1, ?1)
         ON CONFLICT (id) DO UPDATE SET probed_ms = excluded.probed_ms",
        [std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64)],
    )?;
    tx.commit()
}

fn writer(
    mut conn: Connection,
    mut rx: mpsc::Receiver<Msg>,
    answers: Answers,
    on_commit: impl Fn(CommitStats),
    healthy: &AtomicBool,
) {
    let mut batch: Vec<Job> = Vec::with_capacity(MAX_BATCH);
    let mut stopping = false;
    while !stopping {
        match next_message(&mut conn, &mut rx, healthy) {
            Some(Some(Msg::Admit(job))) => batch.push(job),
            Some(Some(Msg::Shutdown) | None) => stopping = true,
            None => continue,
        }
        // Woken by the first delivery of a burst: let the request threads hand over the ones
        // behind it before committing, or on a busy core every commit would carry one event.
        // Where nothing else waits to run this returns at once.
        std::thread::yield_now();
        // Take everything already queued: one commit for all of it. At shutdown, drain it all.
        while stopping || batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(Msg::Admit(job)) => batch.push(job),
                Ok(Msg::Shutdown) => stopping = true,
                Err(_) => break,
            }
        }
        if batch.is_empty() {
            continue;
        }
        let started = Instant::now();
        let outcome = commit(&mut conn, &batch);
        let seconds = started.elapsed().as_secs_f64();
        match outcome {
            Ok(admissions) => {
                if !healthy.swap(true, Ordering::Relaxed) {
                    tracing::info!("storage commits again");
                }
                on_commit(CommitStats {
                    batch: batch.len(),
                    new: admissions.iter().filter(|a| **a == Admission::New).count(),
                    seconds,
                });
                answers.send(
                    batch
                        .drain(..)
                        .zip(admissions)
                        .map(|((event, reply), admission)| {
                            let new = (admission == Admission::New).then_some(event);
                            (reply, Ok(admission), new)
                        })
                        .collect(),
                );
            }
            Err(e) => {
                healthy.store(false, Ordering::Relaxed);
                tracing::error!(error = %e, events = batch.len(), "storage commit failed; the deliveries get 503 and the sender retries");
                answers.send(
                    batch
                        .drain(..)
                        .map(|(_, reply)| (reply, Err(StoreError::Sqlite(clone_error(&e))), None))
                        .collect(),
                );
            }
        }
    }
    rx.close();
    if let Err(e) = conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE);") {
        tracing::warn!(error = %e, "storage checkpoint at shutdown failed");
    }
}

fn clone_error(e: &rusqlite::Error) -> rusqlite::Error {
    rusqlite::Error::ToSqlConversionFailure(e.to_string().into())
}

fn commit(conn: &mut Connection, batch: &[Job]) -> rusqlite::Result<Vec<Admission>> {
    let tx = conn.transaction()?;
    let mut out = Vec::with_capacity(batch.len());
    {
        let mut insert = tx.prepare_cached(
            "INSERT INTO events (account_id, kind, chat_id, received_ms, department_id,
                                 agent_role, agent_id, wait_seconds, duration_seconds)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
             ON CONFLICT (account_id, kind, chat_id) DO NOTHING",
        )?;
        for (e, _) in batch {
            let changed = insert.execute(params![
                e.account_id,
                kind_code(e.kind),
                e.chat_id,
                e.received_ms,
                e.department_id,
                e.agent_role,
                e.agent_id,
                e.wait_seconds,
                e.duration_seconds,
            ])?;
            out.push(if changed == 1 {
                Admission::New
            } else {
                Admission::Duplicate
            });
        }
    }
    tx.commit()?;
    Ok(out)
}

/// Count the stored events (for tests and diagnostics).
pub fn count_stored(folder: &Path) -> Result<i64> {
    let conn = Connection::open(folder.join("acquire-exporter.sqlite"))?;
    Ok(conn
        .query_row("SELECT count(*) FROM events", [], |r| r.get(0))
        .optional()?
        .unwrap_or(0))
}

/// Slots of one generation's key table: 8 MiB, allocated once.
const TABLE_SLOTS: usize = 1 << 20;
/// Keys one generation takes before it rotates: half the slots, so probes stay short.
const KEYS_PER_GENERATION: usize = TABLE_SLOTS / 2;

/// Remembers event keys in two generations of fixed size: a generation rotates out when it is one
/// window old or holds [`KEYS_PER_GENERATION`] keys, so a key is recognised for at least one
/// window or that many later deliveries, whichever comes first, and memory is 16 MiB whatever
/// the traffic (a growing set would hold 8 bytes and more per event of the window).
#[derive(Debug)]
struct MemoryDedup {
    hasher: RandomState,
    current: KeyTable,
    previous: KeyTable,
    rotated: Instant,
    window: Duration,
}

impl MemoryDedup {
    fn new(window: Duration) -> Self {
        MemoryDedup {
            hasher: RandomState::new(),
            current: KeyTable::new(),
            previous: KeyTable::new(),
            rotated: Instant::now(),
            window,
        }
    }

    /// True when the key is new. A 64-bit keyed hash stands for the key: two different events
    /// collide with a probability near n²/2⁶⁵ (1e-8 for a million keys remembered).
    fn insert(&mut self, e: &StoredEvent, now: Instant) -> bool {
        if now.duration_since(self.rotated) >= self.window
            || self.current.len >= KEYS_PER_GENERATION
        {
            std::mem::swap(&mut self.previous, &mut self.current);
            self.current.clear();
            self.rotated = now;
        }
        let key = self
            .hasher
            .hash_one((&e.account_id, kind_code(e.kind), &e.chat_id));
        !self.previous.contains(key) && self.current.insert(key)
    }
}

/// An open-addressing set of keyed hashes (linear probing, 0 marks a free slot).
struct KeyTable {
    slots: Box<[u64]>,
    len: usize,
}

impl std::fmt::Debug for KeyTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyTable").field("len", &self.len).finish()
    }
}

impl KeyTable {
    fn new() -> Self {
        // Zeroed memory comes from the kernel untouched: pages count once a key lands on them.
        KeyTable {
            slots: vec![0; TABLE_SLOTS].into_boxed_slice(),
            len: 0,
        }
    }

    /// The slot holding `key`, or the free slot where it would go. The table is never more than
    /// half full, so a free slot is always found.
    fn slot(&self, key: u64) -> usize {
        let mask = self.slots.len() - 1;
        // The low bits of a keyed SipHash are as uniform as the high ones.
        let mut i = key as usize & mask;
        while self.slots[i] != 0 && self.slots[i] != key {
            i = (i + 1) & mask;
        }
        i
    }

    fn contains(&self, key: u64) -> bool {
        let key = key.max(1);
        self.slots[self.slot(key)] == key
    }

    /// True when the key was not there.
    fn insert(&mut self, key: u64) -> bool {
        let key = key.max(1);
        let i = self.slot(key);
        if self.slots[i] == key {
            return false;
        }
        self.slots[i] = key;
        self.len += 1;
        true
    }

    fn clear(&mut self) {
        if self.len > 0 {
            self.slots.fill(0);
            self.len = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ignore() -> Sink {
        std::sync::Arc::new(|_| {})
    }

    fn close(chat: &str, wait: f64) -> StoredEvent {
        StoredEvent {
            kind: EventKind::ChatClose,
            account_id: "10111".into(),
            chat_id: chat.into(),
            received_ms: 1_700_000_000_000,
            department_id: "7".into(),
            agent_role: Some("operator".into()),
            agent_id: Some("agent-1".into()),
            wait_seconds: Some(wait),
            duration_seconds: None,
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn durable_store_deduplicates_and_replays_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = Store::open(dir.path(), SyncMode::Normal, ignore(), |_| {}).unwrap();
        assert_eq!(store.admit(close("1", 2.0)).await.unwrap(), Admission::New);
        assert_eq!(store.admit(close("2", 3.0)).await.unwrap(), Admission::New);
        assert_eq!(
            store.admit(close("1", 9.0)).await.unwrap(),
            Admission::Duplicate
        );
        let mut start = close("1", 0.0);
        start.kind = EventKind::ChatStart;
        assert_eq!(
            store.admit(start).await.unwrap(),
            Admission::New,
            "another event type of the same chat is another event"
        );
        store.close().await;
        drop(store);

        let seen = std::sync::Arc::new(Mutex::new(Vec::new()));
        let sink = {
            let seen = seen.clone();
            std::sync::Arc::new(move |e: &StoredEvent| seen.lock().unwrap().push(e.clone()))
        };
        let (store, replayed) = Store::open(dir.path(), SyncMode::Full, sink, |_| {}).unwrap();
        assert_eq!(replayed, 3);
        let seen = seen.lock().unwrap().clone();
        let chats: Vec<_> = seen
            .iter()
            .map(|e| (e.kind, e.chat_id.as_str(), e.wait_seconds))
            .collect();
        assert_eq!(
            chats,
            vec![
                (EventKind::ChatClose, "1", Some(2.0)),
                (EventKind::ChatClose, "2", Some(3.0)),
                (EventKind::ChatStart, "1", Some(0.0)),
            ]
        );
        assert_eq!(seen[0].agent_role.as_deref(), Some("operator"));
        assert_eq!(
            store.admit(close("2", 3.0)).await.unwrap(),
            Admission::Duplicate,
            "de-duplication survives a restart"
        );
        store.close().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_deliveries_share_commits() {
        let dir = tempfile::tempdir().unwrap();
        let commits = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let c = commits.clone();
        let (store, _) = Store::open(dir.path(), SyncMode::Normal, ignore(), move |_| {
            c.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        })
        .unwrap();
        let store = std::sync::Arc::new(store);
        let tasks: Vec<_> = (0..2000)
            .map(|i| {
                let store = store.clone();
                tokio::spawn(async move {
                    store
                        .admit(close(&(i % 1000).to_string(), 1.0))
                        .await
                        .unwrap()
                })
            })
            .collect();
        let mut new = 0;
        for t in tasks {
            if t.await.unwrap() == Admission::New {
                new += 1;
            }
        }
        assert_eq!(new, 1000, "each chat counted once");
        assert!(
            commits.load(std::sync::atomic::Ordering::Relaxed) < 2000,
            "commits were shared"
        );
        store.close().await;
        assert_eq!(count_stored(dir.path()).unwrap(), 1000);
    }

    #[tokio::test]
    async fn memory_store_deduplicates_within_its_window() {
        let store = Store::in_memory(Duration::from_secs(3600), ignore());
        assert_eq!(store.admit(close("1", 2.0)).await.unwrap(), Admission::New);
        assert_eq!(
            store.admit(close("1", 2.0)).await.unwrap(),
            Admission::Duplicate
        );
        assert_eq!(store.admit(close("2", 2.0)).await.unwrap(), Admission::New);
    }

    #[test]
    fn memory_dedup_remembers_a_generation_of_keys_then_forgets_by_count() {
        let mut d = MemoryDedup::new(Duration::from_secs(3600));
        let t0 = Instant::now();
        let first = close("first", 1.0);
        assert!(d.insert(&first, t0));
        for i in 1..KEYS_PER_GENERATION {
            assert!(d.insert(&close(&i.to_string(), 1.0), t0), "key {i} is new");
        }
        // The first generation is full and rotates: its keys are still known.
        assert!(!d.insert(&first, t0), "known one generation later");
        assert!(!d.insert(&close("1", 1.0), t0));
        for i in KEYS_PER_GENERATION..2 * KEYS_PER_GENERATION {
            assert!(d.insert(&close(&i.to_string(), 1.0), t0), "key {i} is new");
        }
        let recent = close(&(2 * KEYS_PER_GENERATION - 1).to_string(), 1.0);
        assert!(!d.insert(&recent, t0), "a recent key is known");
        assert!(d.insert(&first, t0), "forgotten two generations later");
    }

    #[test]
    fn memory_dedup_forgets_after_two_windows() {
        let mut d = MemoryDedup::new(Duration::from_secs(10));
        let t0 = Instant::now();
        let e = close("1", 1.0);
        assert!(d.insert(&e, t0));
        assert!(
            !d.insert(&e, t0 + Duration::from_secs(15)),
            "still known one window later"
        );
        assert!(
            d.insert(&e, t0 + Duration::from_secs(31)),
            "forgotten after two windows"
        );
    }
}
