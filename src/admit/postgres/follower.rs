//! The replica's follower: reads the shared log in sequence order from where this replica is and
//! hands every event to the sink, its own replica's and the others' alike.
//!
//! Reading `seq > last` is safe because every writer holds the log's advisory lock from before
//! it draws its first number until its commit (see [`super::log::commit`]): a row becomes
//! visible only after every row with a smaller number. The follower is woken by its own writer,
//! by `NOTIFY` from the others' commits, and by a poll every [`POLL`] in any case: a
//! notification is only a hint, lost across a reconnect, after which the follower simply reads
//! again from where it is.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::sync::Notify;
use tokio_postgres::AsyncMessage;

use super::schema::CHANNEL;
use super::{Backoff, Shared, log};
use crate::admit::Sink;
use crate::event::Seq;

/// How often the log is read when nothing woke the follower.
pub const POLL: Duration = Duration::from_millis(250);

/// Longest one read may take before the connection is given up.
const READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Follow the log from `last` for ever (the task is aborted at shutdown).
pub async fn run(shared: Arc<Shared>, sink: Sink, mut last: Seq) {
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
            let (wake, closed) = (wake.clone(), closed.clone());
            tokio::spawn(async move {
                loop {
                    match std::future::poll_fn(|cx| connection.poll_message(cx)).await {
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
            client.prepare(log::FOLLOW).await
        };
        let follow = match tokio::time::timeout(READ_TIMEOUT, ready).await {
            Ok(Ok(statement)) => statement,
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
        loop {
            let after = last as i64;
            let params: [&(dyn tokio_postgres::types::ToSql + Sync); 2] = [&after, &log::PAGE];
            let rows = match tokio::time::timeout(READ_TIMEOUT, client.query(&follow, &params))
                .await
            {
                Ok(Ok(rows)) => rows,
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "storage follower lost its connection; reconnecting");
                    break;
                }
                Err(_) => {
                    tracing::warn!("storage follower read timed out; reconnecting");
                    break;
                }
            };
            let full = rows.len() as i64 == log::PAGE;
            for row in &rows {
                match log::decode(row) {
                    Ok(admitted) => {
                        sink(&admitted);
                        last = admitted.seq;
                    }
                    Err(bad) => {
                        tracing::error!(
                            seq = bad.seq,
                            "skipping an event of the shared log this build cannot read: {}",
                            bad.problem
                        );
                        last = bad.seq;
                    }
                }
            }
            shared.applied.send_replace(last);
            if full {
                continue;
            }
            tokio::select! {
                _ = wake.notified() => {}
                _ = shared.wake.notified() => {}
                _ = tokio::time::sleep(POLL) => {}
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
