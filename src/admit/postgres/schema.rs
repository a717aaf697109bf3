//! The tables, created and migrated at start under an advisory lock, so two replicas starting at
//! once neither race nor fail: the second waits for the first and finds the schema current.

use tokio_postgres::Client;

use crate::admit::{Result, StoreError};

/// The schema version this build writes (`acquire_meta`, key `schema_version`).
pub const SCHEMA_VERSION: i64 = 1;

/// The advisory-lock class of this project (the first key of the two-key form): "acqx".
pub const LOCK_CLASS: i32 = 0x6163_7178;
/// Held (transaction-level) by every transaction that appends to the log, so they commit in
/// the order of their sequence numbers.
pub const LOCK_LOG: i32 = 1;
/// Held (transaction-level) while the schema is created or migrated.
pub const LOCK_MIGRATE: i32 = 2;
/// Held (session-level, `pg_try_advisory_lock`) by the one replica that writes snapshots and
/// prunes.
pub const LOCK_MAINTAIN: i32 = 3;

/// The channel a commit notifies (a wake-up only; the log is the truth).
pub const CHANNEL: &str = "acquire_events";

/// Each migration, from the version before it: `MIGRATIONS[0]` makes version 1.
const MIGRATIONS: &[&str] = &["
    CREATE TABLE acquire_events (
        seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        account_id text NOT NULL,
        kind smallint NOT NULL,
        chat_id text NOT NULL,
        received_ms bigint NOT NULL,
        department_id text NOT NULL,
        agent_role text,
        agent_id text,
        wait_seconds double precision,
        duration_seconds double precision,
        CONSTRAINT acquire_events_key UNIQUE (account_id, kind, chat_id)
    );
    CREATE TABLE acquire_snapshots (
        seq bigint PRIMARY KEY,
        created_ms bigint NOT NULL,
        data bytea NOT NULL
    );
"];

/// Create or migrate the schema; refuses a database written by a newer build. The store's
/// epoch (when it began, in milliseconds since the Unix epoch): the first replica writes it,
/// every replica reads the same.
pub async fn migrate(client: &mut Client, server: &str) -> Result<i64> {
    let tx = client.transaction().await?;
    tx.batch_execute(&format!(
        "SELECT pg_advisory_xact_lock({LOCK_CLASS}, {LOCK_MIGRATE});
         CREATE TABLE IF NOT EXISTS acquire_meta (key text PRIMARY KEY, value text NOT NULL);"
    ))
    .await?;
    let found: i64 = match tx
        .query_opt(
            "SELECT value FROM acquire_meta WHERE key = 'schema_version'",
            &[],
        )
        .await?
    {
        Some(row) => {
            let v: String = row.get(0);
            v.parse().map_err(|_| StoreError::Server {
                server: server.to_owned(),
                problem: format!("acquire_meta.schema_version is {v:?}, not a number"),
            })?
        }
        None => 0,
    };
    if found > SCHEMA_VERSION {
        return Err(StoreError::Server {
            server: server.to_owned(),
            problem: format!(
                "schema version {found} is newer than this exporter's ({SCHEMA_VERSION}): run the newer exporter"
            ),
        });
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(found as usize) {
        tx.batch_execute(sql).await?;
        tracing::info!(version = i + 1, "storage schema migrated");
    }
    tx.execute(
        "INSERT INTO acquire_meta (key, value) VALUES ('schema_version', $1)
         ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        &[&SCHEMA_VERSION.to_string()],
    )
    .await?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    tx.execute(
        "INSERT INTO acquire_meta (key, value) VALUES ('epoch_ms', $1) ON CONFLICT (key) DO NOTHING",
        &[&now.to_string()],
    )
    .await?;
    let epoch: String = tx
        .query_one("SELECT value FROM acquire_meta WHERE key = 'epoch_ms'", &[])
        .await?
        .get(0);
    tx.commit().await?;
    epoch.parse().map_err(|_| StoreError::Server {
        server: server.to_owned(),
        problem: format!("acquire_meta.epoch_ms is {epoch:?}, not a number"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_version_has_its_migration() {
        assert_eq!(MIGRATIONS.len() as i64, SCHEMA_VERSION);
    }
}
