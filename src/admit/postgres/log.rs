//! The shared event log: one group commit of a batch, and the ordered read of what follows a
//! sequence number.

use std::borrow::Cow;
use std::collections::HashMap;

use tokio_postgres::{Client, Row, Statement};

use super::schema::{CHANNEL, LOCK_CLASS, LOCK_LOG};
use crate::admit::sqlite::kind_code;
use crate::event::{Admitted, ChatEvent, ChatKind, Seq};

/// The append of one batch, one statement in a transaction of its own (one round trip): it takes
/// the log's lock (the `log_lock` scan runs before the sort above it hands the insert its first
/// row, so before the first number is drawn), inserts the distinct keys in the batch's order with
/// conflicts skipped, notifies the other replicas when it added a row (`$11`: this replica's
/// name), and returns the new rows' keys and numbers. The lock is released by the commit, after
/// the rows became visible; the server answers only after the commit.
pub fn insert() -> String {
    format!(
        "
    WITH log_lock AS MATERIALIZED (SELECT pg_advisory_xact_lock({LOCK_CLASS}, {LOCK_LOG})),
    added AS (
        INSERT INTO acquire_events (account_id, kind, chat_id, received_ms, department_id,
                                    agent_role, agent_id, wait_seconds, duration_seconds)
        SELECT a, k, c, r, d, ro, ag, w, du
        FROM log_lock,
             unnest($1::text[], $2::int2[], $3::text[], $4::int8[], $5::text[], $6::text[],
                    $7::text[], $8::float8[], $9::float8[])
             WITH ORDINALITY AS u(a, k, c, r, d, ro, ag, w, du, i)
        ORDER BY i
        ON CONFLICT ON CONSTRAINT acquire_events_key DO NOTHING
        RETURNING seq, account_id, kind, chat_id),
    wake AS MATERIALIZED (SELECT pg_notify('{CHANNEL}', $10) FROM added LIMIT 1)
    SELECT seq, account_id, kind, chat_id FROM added, wake"
    )
}

/// A page of the log after a sequence number, in order.
pub const FOLLOW: &str = "
    SELECT seq, kind, account_id, chat_id, received_ms, department_id, agent_role, agent_id,
           wait_seconds, duration_seconds
    FROM acquire_events WHERE seq > $1 ORDER BY seq LIMIT $2";

/// A page of the log between two sequence numbers, in order.
pub const BETWEEN: &str = "
    SELECT seq, kind, account_id, chat_id, received_ms, department_id, agent_role, agent_id,
           wait_seconds, duration_seconds
    FROM acquire_events WHERE seq > $1 AND seq < $2 ORDER BY seq LIMIT $3";

/// Rows one read of the log takes.
pub const PAGE: i64 = 5000;

/// PostgreSQL text cannot hold NUL; a NUL in an id becomes U+FFFD, the same way on every
/// replica, so the key stays the same for every delivery of the event.
fn text(s: &str) -> Cow<'_, str> {
    if s.contains('\0') {
        s.replace('\0', "\u{FFFD}").into()
    } else {
        s.into()
    }
}

fn opt_text(s: &Option<String>) -> Option<Cow<'_, str>> {
    s.as_deref().map(text)
}

/// The event as the log stores it (see [`text`]), so that the replica that admitted it
/// records what every other replica reads.
pub fn as_stored(e: &mut ChatEvent) {
    for s in [&mut e.account_id, &mut e.chat_id, &mut e.department_id] {
        if let Cow::Owned(t) = text(s) {
            *s = t;
        }
    }
    for s in [&mut e.agent_role, &mut e.agent_id].into_iter().flatten() {
        if let Cow::Owned(t) = text(s) {
            *s = t;
        }
    }
}

/// An event's key in the log: (account, event type, chat id), as stored.
type Key<'a> = (Cow<'a, str>, i16, Cow<'a, str>);

fn key(e: &ChatEvent) -> Key<'_> {
    (
        text(&e.account_id),
        kind_code(e.kind) as i16,
        text(&e.chat_id),
    )
}

/// Append the batch with [`insert`] (one round trip, its own transaction, holding the log's
/// lock from before its first sequence number is drawn until its commit): `Some(seq)` for each
/// new event, `None` for a duplicate (of an event stored before, or of an earlier delivery in the
/// same batch). The commit notifies the other replicas, naming this one (`replica`). It returns
/// only once the server has committed, and then every row numbered below the batch's is committed
/// and visible: their transactions held the lock first.
pub async fn commit(
    client: &Client,
    insert: &Statement,
    batch: &[&ChatEvent],
    replica: &str,
) -> Result<Vec<Option<Seq>>, tokio_postgres::Error> {
    let mut first: HashMap<Key<'_>, usize> = HashMap::with_capacity(batch.len());
    let mut distinct = Vec::with_capacity(batch.len());
    for (i, e) in batch.iter().enumerate() {
        first.entry(key(e)).or_insert_with(|| {
            distinct.push(batch[i]);
            i
        });
    }
    let accounts: Vec<Cow<'_, str>> = distinct.iter().map(|e| text(&e.account_id)).collect();
    let kinds: Vec<i16> = distinct.iter().map(|e| kind_code(e.kind) as i16).collect();
    let chats: Vec<Cow<'_, str>> = distinct.iter().map(|e| text(&e.chat_id)).collect();
    let received: Vec<i64> = distinct.iter().map(|e| e.received_ms).collect();
    let departments: Vec<Cow<'_, str>> = distinct.iter().map(|e| text(&e.department_id)).collect();
    let roles: Vec<Option<Cow<'_, str>>> =
        distinct.iter().map(|e| opt_text(&e.agent_role)).collect();
    let agents: Vec<Option<Cow<'_, str>>> =
        distinct.iter().map(|e| opt_text(&e.agent_id)).collect();
    let waits: Vec<Option<f64>> = distinct.iter().map(|e| e.wait_seconds).collect();
    let durations: Vec<Option<f64>> = distinct.iter().map(|e| e.duration_seconds).collect();
    let rows = client
        .query(
            insert,
            &[
                &accounts,
                &kinds,
                &chats,
                &received,
                &departments,
                &roles,
                &agents,
                &waits,
                &durations,
                &replica,
            ],
        )
        .await?;
    let mut seqs: HashMap<Key<'_>, Seq> = HashMap::with_capacity(rows.len());
    for row in &rows {
        let seq: i64 = row.try_get(0)?;
        let account: &str = row.try_get(1)?;
        let kind: i16 = row.try_get(2)?;
        let chat: &str = row.try_get(3)?;
        seqs.insert((account.into(), kind, chat.into()), seq as Seq);
    }
    Ok(batch
        .iter()
        .enumerate()
        .map(|(i, e)| {
            let key = key(e);
            if first.get(&key) != Some(&i) {
                return None;
            }
            seqs.get(&key).copied()
        })
        .collect())
}

/// A row of the log that this build cannot read.
#[derive(Debug)]
pub struct Unreadable {
    /// Its sequence number.
    pub seq: Seq,
    /// Why.
    pub problem: String,
}

/// Decode one row of [`FOLLOW`].
pub fn decode(row: &Row) -> Result<Admitted, Unreadable> {
    let seq = row.get::<_, i64>(0) as Seq;
    let code: i16 = row.get(1);
    let kind = match code {
        1 => ChatKind::Start,
        2 => ChatKind::Accept,
        3 => ChatKind::Close,
        _ => {
            return Err(Unreadable {
                seq,
                problem: format!("unknown event type code {code}"),
            });
        }
    };
    Ok(Admitted {
        seq,
        event: ChatEvent {
            kind,
            account_id: row.get(2),
            chat_id: row.get(3),
            received_ms: row.get(4),
            department_id: row.get(5),
            agent_role: row.get(6),
            agent_id: row.get(7),
            wait_seconds: row.get(8),
            duration_seconds: row.get(9),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_id_with_nul_is_kept_as_every_replica_reads_it() {
        let mut e = ChatEvent {
            agent_id: Some("agent\0-1".into()),
            ..ChatEvent::empty(ChatKind::Close, "chat\0x")
        };
        as_stored(&mut e);
        assert_eq!(e.chat_id, "chat\u{FFFD}x");
        assert_eq!(e.agent_id.as_deref(), Some("agent\u{FFFD}-1"));
        let before = e.clone();
        as_stored(&mut e);
        assert_eq!(e, before, "the same on a second pass");
    }
}
