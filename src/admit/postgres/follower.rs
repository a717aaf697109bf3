//! The replica's follower: reads the shared log in sequence order from where this replica is and
//! hands every event to the sink, its own replica's and the others' alike.
//!
//! Reading `seq > last` is safe because every writer holds the log's advisory lock from before
//! it draws its first number until its commit (see [`super::log::commit`]): a row becomes
//! visible only after every row with a smaller number. The replica's own new events come from
//! its writer ([`Own`]) rather than from the database: for each such batch the follower reads
//! what the log holds below the batch (all committed, by the same lock), then applies the batch.
//! The others' events are read when their commits' `NOTIFY` wakes the follower, and by a poll
//! every [`POLL`] in any case: a notification is only a hint, lost across a reconnect, after
//! which the follower simply reads again from where it is.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::sync::{Notify, mpsc};
use tokio_postgres::{AsyncMessage, Client, Statement};

use super::schema::CHANNEL;
use super::{Backoff, Shared, log};
use crate::admit::Sink;
use crate::event::{Admitted, Seq};

/// How often the log is read when nothing woke the follower.
pub const POLL: Duration = Duration::from_millis(250);

/// Longest one read may take before the connection is given up.
const READ_TIMEOUT: Duration = Duration::from_secs(10);

/// New events of this replica's own commit, in sequence order.
pub struct Own {
    /// The events with their numbers.
    pub events: Vec<Admitted>,
}

/// Why a connection is given up.
struct Lost;

/// Hand the log's rows above `last` (and below `below`, when given) to the sink, in order.
async fn read(
    client: &Client,
    follow: &Statement,
    between: &Statement,
    sink: &Sink,
    last: &mut Seq,
    below: Option<Seq>,
) -> Result<(), Lost> {
    loop {
        let after = *last as i64;
        let rows = match below {
            Some(below) => {
                let below = below as i64;
                let params: [&(dyn tokio_postgres::types::ToSql + Sync); 3] =
                    [&after, &below, &log::PAGE];
                tokio::time::timeout(READ_TIMEOUT, client.query(between, &params)).await
            }
            None => {
                let params: [&(dyn tokio_postgres::types::ToSql + Sync); 2] = [&after, &log::PAGE];
                tokio::time::timeout(READ_TIMEOUT, client.query(follow, &params)).await
            }
        };
        let rows = match rows {
            Ok(Ok(rows)) => rows,
            Ok(Err(e)) => {
                tracing::warn!(error = %super::chain(&e), "storage follower lost its connection; reconnecting");
                return Err(Lost);
            }
            Err(_) => {
                tracing::warn!("storage follower read timed out; reconnecting");
                return Err(Lost);
            }
        };
        for row in &rows {
            match log::decode(row) {
                Ok(admitted) => {
                    sink(&admitted);
                    *last = admitted.seq;
                }
                Err(bad) => {
                    tracing::error!(
                        seq = bad.seq,
                        "skipping an event of the shared log this build cannot read: {}",
                        bad.problem
                    );
                    *last = bad.seq;
                }
            }
        }
        if (rows.len() as i64) < log::PAGE {
            return Ok(());
        }
    }
}

/// Follow the log from `last` for ever (the task is aborted at shutdown); `own` brings this
/// replica's own new events.
pub async fn run(
    shared: Arc<Shared>,
    sink: Sink,
    mut last: Seq,
    mut own: mpsc::UnboundedReceiver<Own>,
) {
    let mine = shared.replica.to_string();
    let mut pending: Option<Own> = None;
    // At shutdown the writer goes first; the others' events are still read until the end.
    let mut writer_gone = false;
    let mut backoff = Backoff::default();
    loop {
        tokio::time::sleep(backoff.delay()).await;
        let (client, mut connection) = match shared.target.connect().await {
            Ok(pair) => pair,
            Err(e) => {
                tracing::debug!(error = %e, "storage follower cannot connect");
                continue;
            }
        };
        let wake = Arc::new(Notify::new());
        let closed = Arc::new(Notify::new());
        let driver = {
            let (wake, closed, mine) = (wake.clone(), closed.clone(), mine.clone());
            tokio::spawn(async move {
                loop {
                    match std::future::poll_fn(|cx| connection.poll_message(cx)).await {
                        // Its own commits it has from its writer.
                        Some(Ok(AsyncMessage::Notification(n))) if n.payload() == mine => {}
                        Some(Ok(AsyncMessage::Notification(_))) => wake.notify_one(),
                        Some(Ok(_)) => {}
                        Some(Err(e)) => {
                            tracing::debug!(error = %e, "storage follower connection ended");
                            break;
                        }
                        None => break,
                    }
                }
                closed.notify_one();
            })
        };
        let ready = async {
            client.batch_execute(&format!("LISTEN {CHANNEL}")).await?;
            Ok::<_, tokio_postgres::Error>((
                client.prepare(log::FOLLOW).await?,
                client.prepare(log::BETWEEN).await?,
            ))
        };
        let (follow, between) = match tokio::time::timeout(READ_TIMEOUT, ready).await {
            Ok(Ok(statements)) => statements,
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "storage follower cannot listen");
                driver.abort();
                continue;
            }
            Err(_) => {
                driver.abort();
                continue;
            }
        };
        backoff.reset();
        if !shared.follower_up.swap(true, Ordering::Relaxed) {
            tracing::info!(from = last, "following the shared log");
        }
        // Read the log at once after a (re)connection, then when woken or at the poll.
        let mut due = true;
        let mut poll = tokio::time::Instant::now();
        loop {
            if let Some(batch) = pending.take().or_else(|| own.try_recv().ok()) {
                // What the others committed before this batch, then the batch.
                let first = batch.events.first().map_or(Seq::MAX, |e| e.seq);
                // Nothing can lie between when the batch follows on directly.
                if first > last + 1
                    && read(&client, &follow, &between, &sink, &mut last, Some(first))
                        .await
                        .is_err()
                {
                    pending = Some(batch);
                    break;
                }
                for e in &batch.events {
                    if e.seq > last {
                        sink(e);
                        last = e.seq;
                    }
                }
                shared.applied.send_replace(last);
                continue;
            }
            // After its own batches the follower reads only when woken: what the others commit
            // after them comes with their notifications (or the poll).
            if due || tokio::time::Instant::now() >= poll {
                if read(&client, &follow, &between, &sink, &mut last, None)
                    .await
                    .is_err()
                {
                    break;
                }
                shared.applied.send_replace(last);
                due = false;
                poll = tokio::time::Instant::now() + POLL;
            }
            tokio::select! {
                _ = wake.notified() => due = true,
                batch = own.recv(), if !writer_gone => match batch {
                    Some(batch) => pending = Some(batch),
                    None => writer_gone = true,
                },
                _ = tokio::time::sleep_until(poll) => due = true,
                _ = closed.notified() => break,
            }
        }
        driver.abort();
        if shared.follower_up.swap(false, Ordering::Relaxed) {
            tracing::warn!(
                at = last,
                "storage follower disconnected; it reads on from here once it reconnects"
            );
        }
    }
}
