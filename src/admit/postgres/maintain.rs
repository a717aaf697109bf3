//! Snapshots and pruning. Reading a snapshot is for every replica; writing one and pruning are
//! for one replica at a time: the one whose maintenance connection holds the session-level
//! advisory lock [`LOCK_MAINTAIN`]. The lock goes with its connection, so when that replica
//! dies another takes over at its next attempt.

use tokio_postgres::Client;

use super::Target;
use super::schema::{LOCK_CLASS, LOCK_MAINTAIN};
use crate::admit::{Result, StoredSnapshot};
use crate::event::Seq;

/// The maintenance connection and whether it holds the lock.
pub struct Maintainer {
    client: Client,
    driver: tokio::task::JoinHandle<()>,
    leads: bool,
}

impl Drop for Maintainer {
    fn drop(&mut self) {
        self.driver.abort();
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

impl Maintainer {
    /// A connection of its own (the lock is held by a session).
    pub async fn connect(target: &Target) -> Result<Self> {
        let (client, connection) = target.connect().await?;
        let driver = tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok(Maintainer {
            client,
            driver,
            leads: false,
        })
    }

    /// False once the connection has ended (then the lock is gone with it).
    pub fn is_open(&self) -> bool {
        !self.client.is_closed()
    }

    /// Whether this replica is the one that maintains: takes the lock when it is free.
    pub async fn leads(&mut self) -> Result<bool> {
        if !self.leads {
            let row = self
                .client
                .query_one(
                    "SELECT pg_try_advisory_lock($1, $2)",
                    &[&LOCK_CLASS, &LOCK_MAINTAIN],
                )
                .await?;
            self.leads = row.get(0);
            if self.leads {
                tracing::info!("this replica writes the snapshots and prunes");
            }
        }
        Ok(self.leads)
    }

    /// A one-row, one-column bigint query.
    pub async fn scalar(&self, sql: &str) -> Result<i64> {
        Ok(self.client.query_one(sql, &[]).await?.get(0))
    }

    /// The newest snapshot.
    pub async fn load(&self) -> Result<Option<StoredSnapshot>> {
        let row = self
            .client
            .query_opt(
                "SELECT seq, data FROM acquire_snapshots ORDER BY seq DESC LIMIT 1",
                &[],
            )
            .await?;
        Ok(row.map(|r| StoredSnapshot {
            seq: r.get::<_, i64>(0) as Seq,
            bytes: r.get(1),
        }))
    }

    /// Keep a snapshot at `seq` and remove the older ones, in one transaction; false (nothing
    /// written) when another replica maintains.
    pub async fn save(&mut self, seq: Seq, bytes: &[u8]) -> Result<bool> {
        if !self.leads().await? {
            return Ok(false);
        }
        let tx = self.client.transaction().await?;
        tx.execute(
            "INSERT INTO acquire_snapshots (seq, created_ms, data) VALUES ($1, $2, $3)
             ON CONFLICT (seq) DO UPDATE SET created_ms = excluded.created_ms, data = excluded.data",
            &[&(seq as i64), &now_ms(), &bytes],
        )
        .await?;
        tx.execute(
            "DELETE FROM acquire_snapshots WHERE seq < $1",
            &[&(seq as i64)],
        )
        .await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Delete every snapshot.
    pub async fn drop_all(&self) -> Result<()> {
        self.client
            .execute("DELETE FROM acquire_snapshots", &[])
            .await?;
        Ok(())
    }

    /// Delete at most `batch` of the oldest events received before `before_ms` and numbered at
    /// most `through`; the newest event always stays, so that the newest number is known. How
    /// many (0 when another replica maintains).
    pub async fn prune(&mut self, before_ms: i64, through: Seq, batch: usize) -> Result<u64> {
        if !self.leads().await? {
            return Ok(0);
        }
        let n = self
            .client
            .execute(
                "DELETE FROM acquire_events WHERE seq IN (
                     SELECT seq FROM acquire_events
                     WHERE seq <= least($1, (SELECT max(seq) - 1 FROM acquire_events))
                       AND received_ms < $2
                     ORDER BY seq LIMIT $3)",
                &[
                    &(through.min(i64::MAX as u64) as i64),
                    &before_ms,
                    &(batch as i64),
                ],
            )
            .await?;
        Ok(n)
    }
}
