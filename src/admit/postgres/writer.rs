//! The replica's writer: takes every delivery waiting in its queue, appends them to the shared
//! log in one transaction (group commit), and answers each sender once its commit is done and
//! the replica's own follower has applied it (so a 200 is visible in this replica's /metrics).
//! A lost connection is normal: the deliveries of a failed commit get 503, the writer reconnects
//! with backoff by itself and reports itself unhealthy meanwhile.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use tokio::sync::{Notify, mpsc, oneshot};
use tokio_postgres::{Client, Statement};

use super::{Backoff, Shared, follower, log};
use crate::admit::{Admission, CommitStats, OnCommit, Result, StoreError};
use crate::event::{Admitted, ChatEvent, Seq};

/// The most deliveries one group commit takes.
pub const MAX_BATCH: usize = 4096;

/// Longest a commit may take before the connection is given up (a server that hangs).
const COMMIT_TIMEOUT: Duration = Duration::from_secs(10);

/// Longest a committed delivery waits for the follower before it is answered all the same (it
/// is committed: every replica applies it once its follower reads it).
const FOLLOW_WAIT: Duration = Duration::from_secs(2);

/// A message to the writer.
pub enum Msg {
    /// Commit this event and answer.
    Admit(ChatEvent, oneshot::Sender<Result<Admission>>),
    /// Commit what is queued, then stop and answer.
    Shutdown(oneshot::Sender<()>),
}

type Reply = oneshot::Sender<Result<Admission>>;

/// A committed batch on its way to its senders.
struct Done {
    /// The largest sequence number the batch added.
    max: Option<Seq>,
    committed: Instant,
    answers: Vec<(Reply, Admission)>,
}

/// The writer's connection.
struct Conn {
    client: Client,
    insert: Statement,
    /// Notified when the connection ends.
    closed: Arc<Notify>,
}

async fn connect(shared: &Shared) -> Result<Conn> {
    let (client, connection) = shared.target.connect().await?;
    let closed = Arc::new(Notify::new());
    let ended = closed.clone();
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!(error = %e, "storage writer connection ended");
        }
        ended.notify_one();
    });
    let insert = client.prepare(&log::insert()).await?;
    Ok(Conn {
        client,
        insert,
        closed,
    })
}

/// Run the writer until [`Msg::Shutdown`] or until every sender is gone.
pub async fn run(
    shared: Arc<Shared>,
    mut rx: mpsc::Receiver<Msg>,
    on_commit: OnCommit,
    own: mpsc::UnboundedSender<follower::Own>,
) {
    let (done_tx, done_rx) = mpsc::unbounded_channel();
    tokio::spawn(dispatch(shared.clone(), done_rx));
    let mut w = Writer {
        shared: shared.clone(),
        conn: None,
        backoff: Backoff::default(),
        on_commit,
        done: done_tx,
        own,
        replica: shared.replica.to_string(),
    };
    let mut batch: Vec<(ChatEvent, Reply)> = Vec::with_capacity(MAX_BATCH);
    let mut stopping = None;
    while stopping.is_none() {
        let msg = match &w.conn {
            Some(c) => {
                let closed = c.closed.clone();
                tokio::select! {
                    m = rx.recv() => m,
                    _ = closed.notified() => {
                        w.lost("the connection ended");
                        continue;
                    }
                }
            }
            None => tokio::select! {
                m = rx.recv() => m,
                _ = tokio::time::sleep(w.backoff.delay()) => {
                    w.reconnect().await;
                    continue;
                }
            },
        };
        match msg {
            Some(Msg::Admit(e, reply)) => batch.push((e, reply)),
            Some(Msg::Shutdown(ack)) => stopping = Some(ack),
            None => break,
        }
        // Let the request tasks hand over the deliveries behind the first before committing.
        tokio::task::yield_now().await;
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(Msg::Admit(e, reply)) => batch.push((e, reply)),
                Ok(Msg::Shutdown(ack)) => stopping = Some(ack),
                Err(_) => break,
            }
        }
        w.commit(&mut batch).await;
    }
    // At shutdown: commit everything still queued, then answer.
    rx.close();
    loop {
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(Msg::Admit(e, reply)) => batch.push((e, reply)),
                Ok(Msg::Shutdown(ack)) => {
                    let _ = ack.send(());
                }
                Err(_) => break,
            }
        }
        if batch.is_empty() {
            break;
        }
        w.commit(&mut batch).await;
    }
    w.shared.writer_up.store(false, Ordering::Relaxed);
    if let Some(ack) = stopping {
        let _ = ack.send(());
    }
}

struct Writer {
    shared: Arc<Shared>,
    conn: Option<Conn>,
    backoff: Backoff,
    on_commit: OnCommit,
    done: mpsc::UnboundedSender<Done>,
    /// This replica's new events, to its follower.
    own: mpsc::UnboundedSender<follower::Own>,
    /// This replica's name in its notifications.
    replica: String,
}

impl Writer {
    async fn reconnect(&mut self) {
        match connect(&self.shared).await {
            Ok(c) => {
                self.conn = Some(c);
                self.backoff.reset();
                if !self.shared.writer_up.swap(true, Ordering::Relaxed) {
                    tracing::info!(server = self.shared.target.server(), "storage commits");
                }
            }
            Err(e) => {
                tracing::debug!(error = %super::in_context(self.shared.target.server(), e), "storage writer cannot connect");
                self.shared.writer_up.store(false, Ordering::Relaxed);
            }
        }
    }

    fn lost(&mut self, why: &str) {
        self.conn = None;
        if self.shared.writer_up.swap(false, Ordering::Relaxed) {
            tracing::error!(
                server = self.shared.target.server(),
                "storage cannot commit: {why}; deliveries get 503 until it reconnects"
            );
        }
    }

    fn fail(&self, batch: &mut Vec<(ChatEvent, Reply)>, problem: &str) {
        for (_, reply) in batch.drain(..) {
            let _ = reply.send(Err(StoreError::Server {
                server: self.shared.target.server().to_owned(),
                problem: problem.to_owned(),
            }));
        }
    }

    async fn commit(&mut self, batch: &mut Vec<(ChatEvent, Reply)>) {
        if batch.is_empty() {
            return;
        }
        if self.conn.is_none() {
            self.reconnect().await;
        }
        let Some(conn) = &self.conn else {
            self.fail(batch, "cannot connect");
            return;
        };
        for (e, _) in batch.iter_mut() {
            log::as_stored(e);
        }
        let events: Vec<&ChatEvent> = batch.iter().map(|(e, _)| e).collect();
        let started = Instant::now();
        let outcome = tokio::time::timeout(
            COMMIT_TIMEOUT,
            log::commit(&conn.client, &conn.insert, &events, &self.replica),
        )
        .await;
        let seconds = started.elapsed().as_secs_f64();
        drop(events);
        let seqs = match outcome {
            Ok(Ok(seqs)) => seqs,
            Ok(Err(e)) => {
                let problem = super::chain(&e);
                self.lost(&problem);
                self.fail(batch, &problem);
                return;
            }
            Err(_) => {
                let problem = format!("no commit within {COMMIT_TIMEOUT:?}");
                self.lost(&problem);
                self.fail(batch, &problem);
                return;
            }
        };
        self.shared.writer_up.store(true, Ordering::Relaxed);
        let new = seqs.iter().filter(|s| s.is_some()).count();
        (self.on_commit)(CommitStats {
            batch: batch.len(),
            new,
            seconds,
        });
        let max = seqs.iter().flatten().copied().max();
        let mut mine = Vec::with_capacity(new);
        let answers = batch
            .drain(..)
            .zip(seqs)
            .map(|((event, reply), seq)| match seq {
                Some(seq) => {
                    mine.push(Admitted { seq, event });
                    (reply, Admission::New)
                }
                None => (reply, Admission::Duplicate),
            })
            .collect();
        if !mine.is_empty() {
            mine.sort_by_key(|e| e.seq);
            let _ = self.own.send(follower::Own { events: mine });
        }
        let _ = self.done.send(Done {
            max,
            committed: Instant::now(),
            answers,
        });
    }
}

/// Answers committed batches in order, each once the follower has applied it (or after
/// [`FOLLOW_WAIT`]).
async fn dispatch(shared: Arc<Shared>, mut rx: mpsc::UnboundedReceiver<Done>) {
    let mut applied = shared.applied.subscribe();
    while let Some(done) = rx.recv().await {
        if let Some(max) = done.max {
            let deadline = tokio::time::Instant::from_std(done.committed + FOLLOW_WAIT);
            let caught_up =
                tokio::time::timeout_at(deadline, applied.wait_for(|s| *s >= max)).await;
            if caught_up.is_err() {
                tracing::warn!(
                    seq = max,
                    "answering committed deliveries before this replica applied them: its follower is behind"
                );
            }
        }
        for (reply, admission) in done.answers {
            let _ = reply.send(Ok(admission));
        }
    }
}
