//! The shared engine: one PostgreSQL database, several replicas. Each replica appends the
//! deliveries it receives to the shared log in group commits (`writer`) and follows the whole
//! log in sequence order (`follower`), handing every event, whichever replica admitted it, to
//! its sink: every replica holds the same state.
//!
//! - Exactly once: the log's unique key (account, event type, chat id) with `ON CONFLICT DO
//!   NOTHING`; two replicas taking the same delivery at once store it once, and the second
//!   answers `duplicate`.
//! - In order: every append holds a transaction-level advisory lock from before it draws its
//!   first sequence number until its commit, so the log's rows become visible in the order of
//!   their numbers and a follower reading `seq > last` never skips one (ARCHITECTURE.md).
//! - Connection loss is normal: deliveries get 503 (never a 200 not committed), the engine is
//!   unhealthy, and it reconnects with backoff by itself.
//!
//! The engine runs its connections on a runtime of its own (one thread), so that its blocking
//! entry points (open, replay) can be called from the server's runtime at start.

mod connect;
mod follower;
mod log;
mod maintain;
mod schema;
mod writer;

use std::future::Future;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot, watch};

pub(crate) use connect::tls_config;
pub use connect::{Target, Tls};
pub use schema::SCHEMA_VERSION;

use super::{Admission, BoxFuture, Engine, OnCommit, Result, Sink, StoreError, StoredSnapshot};
use crate::event::{Admitted, ChatEvent, Seq};

/// How long a start waits for the server before giving up.
const START_DEADLINE: Duration = Duration::from_secs(30);

/// What the writer, the follower and the engine share.
struct Shared {
    target: Target,
    /// The writer has a working connection.
    writer_up: AtomicBool,
    /// The follower has a working connection.
    follower_up: AtomicBool,
    /// The last sequence number the follower handed to the sink.
    applied: watch::Sender<Seq>,
    /// This replica's name in its notifications, so that its follower knows its own.
    replica: u64,
    /// The connection that maintains (snapshots, pruning), made when first needed.
    maintainer: tokio::sync::Mutex<Option<maintain::Maintainer>>,
}

impl Shared {
    /// Run `f` with the maintenance connection, connecting (again) when there is none.
    async fn maintain<T>(
        &self,
        f: impl for<'m> FnOnce(&'m mut maintain::Maintainer) -> BoxFuture<'m, Result<T>>,
    ) -> Result<T> {
        let mut m = self.maintainer.lock().await;
        if !m.as_ref().is_some_and(maintain::Maintainer::is_open) {
            *m = Some(maintain::Maintainer::connect(&self.target).await?);
        }
        let Some(conn) = m.as_mut() else {
            return Err(StoreError::Closed);
        };
        let out = f(conn).await;
        if out.is_err() {
            *m = None;
        }
        out
    }
}

/// Reconnection delays: at once, then 100 ms doubling to 2 s.
#[derive(Debug, Default)]
struct Backoff {
    next: Duration,
}

impl Backoff {
    fn delay(&mut self) -> Duration {
        let now = self.next;
        self.next = (now * 2).clamp(Duration::from_millis(100), Duration::from_secs(2));
        now
    }

    fn reset(&mut self) {
        self.next = Duration::ZERO;
    }
}

/// The PostgreSQL engine.
pub struct Postgres {
    shared: Arc<Shared>,
    handle: tokio::runtime::Handle,
    runtime: Mutex<Option<tokio::runtime::Runtime>>,
    /// The commit callback until [`Engine::start`] hands it to the writer.
    idle: Mutex<Option<OnCommit>>,
    writer: Mutex<Option<mpsc::Sender<writer::Msg>>>,
    /// When the store began (see [`Engine::epoch_ms`]).
    epoch_ms: i64,
}

impl std::fmt::Debug for Postgres {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Postgres")
            .field("server", &self.shared.target.server())
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Run `f` on the engine's runtime and wait for it from this thread (which may be a thread of
/// another runtime).
fn block<T: Send + 'static>(
    handle: &tokio::runtime::Handle,
    f: impl Future<Output = T> + Send + 'static,
) -> Option<T> {
    let (tx, rx) = std::sync::mpsc::channel();
    handle.spawn(async move {
        let _ = tx.send(f.await);
    });
    rx.recv().ok()
}

impl Postgres {
    /// Connect to the server of `target` (retrying for up to 30 s, for a server that starts
    /// beside the exporter), create or migrate the schema, and check that it can be used;
    /// nothing is admitted until [`Engine::start`]. `on_commit` is called after each of this
    /// replica's commits.
    pub fn open(target: Target, on_commit: OnCommit) -> Result<Self> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("store-postgres")
            .enable_all()
            .build()
            .map_err(|e| StoreError::Server {
                server: target.server().to_owned(),
                problem: format!("cannot start the storage runtime: {e}"),
            })?;
        let handle = runtime.handle().clone();
        let (applied, _) = watch::channel(0);
        let shared = Arc::new(Shared {
            target,
            writer_up: AtomicBool::new(false),
            follower_up: AtomicBool::new(false),
            applied,
            replica: std::hash::BuildHasher::hash_one(
                &std::collections::hash_map::RandomState::new(),
                (std::process::id(), Instant::now()),
            ) >> 1,
            maintainer: tokio::sync::Mutex::new(None),
        });
        let target = shared.target.clone();
        let epoch_ms = block(&handle, async move {
            let started = Instant::now();
            let mut backoff = Backoff::default();
            let (mut client, connection) = loop {
                tokio::time::sleep(backoff.delay()).await;
                match target.connect().await {
                    Ok(pair) => break pair,
                    Err(e) if started.elapsed() < START_DEADLINE && !refused(&e) => {
                        tracing::warn!(server = target.server(), error = %e, "cannot reach the store yet; retrying");
                    }
                    Err(e) if refused(&e) => return Err(in_context(target.server(), e)),
                    Err(e) => {
                        return Err(StoreError::Server {
                            server: target.server().to_owned(),
                            problem: format!(
                                "unreachable for {START_DEADLINE:?}: {}",
                                in_context(target.server(), e)
                            ),
                        });
                    }
                }
            };
            let driver = tokio::spawn(connection);
            let migrated = schema::migrate(&mut client, target.server()).await;
            drop(client);
            let _ = driver.await;
            migrated.map_err(|e| in_context(target.server(), e))
        })
        .unwrap_or(Err(StoreError::Closed));
        let epoch_ms = match epoch_ms {
            Ok(epoch_ms) => epoch_ms,
            Err(e) => {
                // Not dropped in place: this may run on a thread of the server's runtime.
                runtime.shutdown_background();
                return Err(e);
            }
        };
        Ok(Postgres {
            shared,
            handle,
            runtime: Mutex::new(Some(runtime)),
            idle: Mutex::new(Some(on_commit)),
            writer: Mutex::new(None),
            epoch_ms,
        })
    }

    /// Run `f` on the engine's runtime and wait for it.
    fn run<T: Send + 'static>(
        &self,
        f: impl Future<Output = Result<T>> + Send + 'static,
    ) -> Result<T> {
        block(&self.handle, f).unwrap_or(Err(StoreError::Closed))
    }

    /// The server, named without its password.
    pub fn server(&self) -> &str {
        self.shared.target.server()
    }

    /// Run `f` with the maintenance connection on the engine's runtime, errors named with the
    /// server.
    fn maintain<T: Send + 'static>(
        &self,
        f: impl for<'m> FnOnce(&'m mut maintain::Maintainer) -> BoxFuture<'m, Result<T>>
        + Send
        + 'static,
    ) -> Result<T> {
        let shared = self.shared.clone();
        self.run(async move {
            let out = shared.maintain(f).await;
            out.map_err(|e| in_context(shared.target.server(), e))
        })
    }

    /// Run one query on a connection of the maintenance kind (for counts and maxima).
    fn scalar(&self, sql: &'static str) -> Result<i64> {
        self.maintain(move |m| Box::pin(m.scalar(sql)))
    }

    /// The last sequence number this replica's follower handed to its sink.
    pub fn applied(&self) -> Seq {
        *self.shared.applied.borrow()
    }
}

/// An error that waiting does not mend: the server refused the credentials, the database, or
/// the TLS handshake (a certificate not trusted).
fn refused(e: &StoreError) -> bool {
    let StoreError::Postgres(e) = e else {
        return false;
    };
    if let Some(db) = e.as_db_error() {
        let code = db.code().code();
        return code.starts_with("28") || code.starts_with("3D");
    }
    e.to_string().contains("TLS")
}

/// An error with its causes (tokio-postgres says only its kind at the top: "db error").
fn chain(e: &tokio_postgres::Error) -> String {
    let mut out = e.to_string();
    let mut cause = std::error::Error::source(e);
    while let Some(c) = cause {
        out.push_str(": ");
        out.push_str(&c.to_string());
        cause = c.source();
    }
    out
}

/// A start-up error, with the server's name.
fn in_context(server: &str, e: StoreError) -> StoreError {
    match e {
        StoreError::Postgres(source) => StoreError::Server {
            server: server.to_owned(),
            problem: chain(&source),
        },
        other => other,
    }
}

impl Engine for Postgres {
    fn replay(&self, after: Seq, through: Seq, each: &mut dyn FnMut(&Admitted)) -> Result<Seq> {
        // Pages are read on the engine's runtime and handed to this thread, two in flight.
        let (tx, rx) = std::sync::mpsc::sync_channel::<Result<Vec<Admitted>>>(2);
        let target = self.shared.target.clone();
        self.handle.spawn(async move {
            let read = async {
                let (client, connection) = target.connect().await?;
                let driver = tokio::spawn(connection);
                let follow = client.prepare(log::FOLLOW).await?;
                let mut last = after;
                loop {
                    let rows = client.query(&follow, &[&(last as i64), &log::PAGE]).await?;
                    let rows: Vec<_> = rows
                        .into_iter()
                        .take_while(|r| r.get::<_, i64>(0) as u64 <= through)
                        .collect();
                    let page = rows
                        .iter()
                        .map(log::decode)
                        .collect::<std::result::Result<Vec<_>, _>>()
                        .map_err(|bad| StoreError::Server {
                            server: target.server().to_owned(),
                            problem: format!("event {}: {}", bad.seq, bad.problem),
                        })?;
                    let full = page.len() as i64 == log::PAGE && last < through;
                    if let Some(e) = page.last() {
                        last = e.seq;
                    }
                    if !page.is_empty() && tx.send(Ok(page)).is_err() {
                        break;
                    }
                    if !full {
                        break;
                    }
                }
                drop(client);
                let _ = driver.await;
                Ok::<_, StoreError>(())
            };
            if let Err(e) = read.await {
                let _ = tx.send(Err(in_context(target.server(), e)));
            }
        });
        let mut last = after;
        for page in rx {
            for e in page? {
                last = e.seq;
                each(&e);
            }
        }
        Ok(last)
    }

    fn start(&self, sink: Sink, from: Seq) -> Result<()> {
        let Some(on_commit) = lock(&self.idle).take() else {
            return Ok(());
        };
        self.shared.applied.send_replace(from);
        let (tx, rx) = mpsc::channel(writer::MAX_BATCH * 2);
        let (own_tx, own_rx) = mpsc::unbounded_channel();
        self.handle
            .spawn(follower::run(self.shared.clone(), sink, from, own_rx));
        self.handle
            .spawn(writer::run(self.shared.clone(), rx, on_commit, own_tx));
        *lock(&self.writer) = Some(tx);
        Ok(())
    }

    fn admit(&self, event: ChatEvent) -> BoxFuture<'_, Result<Admission>> {
        let tx = lock(&self.writer).clone();
        Box::pin(async move {
            let tx = tx.ok_or(StoreError::Closed)?;
            let (reply, answer) = oneshot::channel();
            tx.send(writer::Msg::Admit(event, reply))
                .await
                .map_err(|_| StoreError::Closed)?;
            answer.await.map_err(|_| StoreError::Closed)?
        })
    }

    fn is_healthy(&self) -> bool {
        self.shared.writer_up.load(Ordering::Relaxed)
            && self.shared.follower_up.load(Ordering::Relaxed)
    }

    fn close(&self) -> BoxFuture<'_, ()> {
        let tx = lock(&self.writer).take();
        Box::pin(async move {
            if let Some(tx) = tx {
                let (ack, done) = oneshot::channel();
                if tx.send(writer::Msg::Shutdown(ack)).await.is_ok() {
                    let _ = done.await;
                }
            }
            self.shared.follower_up.store(false, Ordering::Relaxed);
            if let Some(runtime) = lock(&self.runtime).take() {
                runtime.shutdown_background();
            }
        })
    }

    fn path(&self) -> Option<&Path> {
        None
    }

    fn epoch_ms(&self) -> i64 {
        self.epoch_ms
    }

    fn last_seq(&self) -> Result<Seq> {
        Ok(self.scalar("SELECT coalesce(max(seq), 0) FROM acquire_events")? as Seq)
    }

    fn events_held(&self) -> Result<u64> {
        Ok(self.scalar("SELECT count(*) FROM acquire_events")? as u64)
    }

    /// True on the replica whose maintenance connection holds the lock; a free lock is taken.
    fn maintains(&self) -> Result<bool> {
        self.maintain(|m| Box::pin(m.leads()))
    }

    fn load_snapshot(&self) -> Result<Option<StoredSnapshot>> {
        self.maintain(|m| Box::pin(m.load()))
    }

    /// Written by the one replica that maintains; on the others a no-op (that replica's
    /// snapshot covers the same log).
    fn save_snapshot(&self, seq: Seq, bytes: &[u8]) -> Result<()> {
        let bytes = bytes.to_vec();
        let saved = self.maintain(move |m| Box::pin(async move { m.save(seq, &bytes).await }))?;
        if !saved {
            tracing::debug!(
                seq,
                "snapshot not kept: another replica writes the snapshots"
            );
        }
        Ok(())
    }

    fn drop_snapshots(&self) -> Result<()> {
        self.maintain(|m| Box::pin(m.drop_all()))
    }

    /// By the one replica that maintains; 0 on the others.
    fn prune(&self, before_ms: i64, through: Seq, batch: usize) -> Result<u64> {
        self.maintain(move |m| Box::pin(m.prune(before_ms, through, batch)))
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        if let Some(runtime) = lock(&self.runtime).take() {
            runtime.shutdown_background();
        }
    }
}
