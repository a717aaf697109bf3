//! What one replica at a time does for all: writing snapshots and pruning old events. The
//! replica that holds the session-level advisory lock [`LOCK_MAINTAIN`] does it; the lock goes
//! with its connection, so when that replica dies another takes over at its next attempt.

use tokio_postgres::Client;

use super::Target;
use super::schema::{LOCK_CLASS, LOCK_MAINTAIN};
use crate::admit::Result;
use crate::event::Seq;

/// Events one prune statement deletes: small batches, so no long lock on the log.
const PRUNE_BATCH: i64 = 5000;

/// Snapshots kept: the newest and the one before it.
const KEEP_SNAPSHOTS: i64 = 2;

/// A stored snapshot of the derived state at a sequence number.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Snapshot {
    /// The last event it contains.
    pub seq: Seq,
    /// Its format version.
    pub version: i32,
    /// Its checksum, as the writer computed it.
    pub checksum: i64,
    /// The encoded state.
    pub data: Vec<u8>,
    /// When it was written, in milliseconds since the Unix epoch.
    pub created_ms: i64,
}

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
        }
        Ok(self.leads)
    }

    /// The newest snapshot.
    pub async fn load(&self) -> Result<Option<Snapshot>> {
        let row = self
            .client
            .query_opt(
                "SELECT seq, version, checksum, data, created_ms FROM acquire_snapshots
                 ORDER BY seq DESC LIMIT 1",
                &[],
            )
            .await?;
        Ok(row.map(|r| Snapshot {
            seq: r.get::<_, i64>(0) as Seq,
            version: r.get(1),
            checksum: r.get(2),
            data: r.get(3),
            created_ms: r.get(4),
        }))
    }

    /// Store a snapshot (in one transaction with the removal of the older ones); false when
    /// another replica maintains.
    pub async fn save(&mut self, s: &Snapshot) -> Result<bool> {
        if !self.leads().await? {
            return Ok(false);
        }
        let tx = self.client.transaction().await?;
        tx.execute(
            "INSERT INTO acquire_snapshots (seq, version, checksum, data, created_ms)
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (seq) DO NOTHING",
            &[
                &(s.seq as i64),
                &s.version,
                &s.checksum,
                &s.data,
                &s.created_ms,
            ],
        )
        .await?;
        tx.execute(
            "DELETE FROM acquire_snapshots WHERE seq < (
                 SELECT min(seq) FROM (SELECT seq FROM acquire_snapshots
                                       ORDER BY seq DESC LIMIT $1) newest)",
            &[&KEEP_SNAPSHOTS],
        )
        .await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Delete the events received before `older_than_ms` whose numbers are at most `up_to`
    /// (the newest snapshot's), in small batches; how many, or `None` when another replica
    /// maintains.
    pub async fn prune(&mut self, older_than_ms: i64, up_to: Seq) -> Result<Option<u64>> {
        if !self.leads().await? {
            return Ok(None);
        }
        let mut deleted = 0;
        loop {
            let n = self
                .client
                .execute(
                    "DELETE FROM acquire_events WHERE seq IN (
                         SELECT seq FROM acquire_events
                         WHERE seq <= $1 AND received_ms < $2
                         ORDER BY seq LIMIT $3)",
                    &[&(up_to as i64), &older_than_ms, &PRUNE_BATCH],
                )
                .await?;
            deleted += n;
            if (n as i64) < PRUNE_BATCH {
                return Ok(Some(deleted));
            }
        }
    }
}
