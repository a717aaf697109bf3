//! The shared event log: one group commit of a batch, and the ordered read of what follows a
//! sequence number.

use std::collections::HashMap;

use tokio_postgres::{Client, Row, Statement};

use super::schema::{CHANNEL, LOCK_CLASS, LOCK_LOG};
use crate::admit::sqlite::kind_code;
use crate::event::{Admitted, ChatEvent, ChatKind, Seq};

/// The append of one batch: distinct keys in the batch's order, conflicts skipped, the new rows'
/// keys and numbers returned.
pub const INSERT: &str = "
    INSERT INTO acquire_events (account_id, kind, chat_id, received_ms, department_id,
                                agent_role, agent_id, wait_seconds, duration_seconds)
    SELECT a, k, c, r, d, ro, ag, w, du
    FROM unnest($1::text[], $2::int2[], $3::text[], $4::int8[], $5::text[], $6::text[],
                $7::text[], $8::float8[], $9::float8[])
         WITH ORDINALITY AS u(a, k, c, r, d, ro, ag, w, du, i)
    ORDER BY i
    ON CONFLICT ON CONSTRAINT acquire_events_key DO NOTHING
    RETURNING seq, account_id, kind, chat_id";

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
fn text(s: &str) -> std::borrow::Cow<'_, str> {
    if s.contains('\0') {
        s.replace('\0', "\u{FFFD}").into()
    } else {
        s.into()
    }
}

fn opt_text(s: &Option<String>) -> Option<std::borrow::Cow<'_, str>> {
    s.as_deref().map(text)
}

/// The event as the log stores it (see [`text`]), so that the replica that admitted it
/// records what every other replica reads.
pub fn as_stored(e: &mut ChatEvent) {
    for s in [&mut e.account_id, &mut e.chat_id, &mut e.department_id] {
        if let std::borrow::Cow::Owned(t) = text(s) {
            *s = t;
        }
    }
    for s in [&mut e.agent_role, &mut e.agent_id].into_iter().flatten() {
        if let std::borrow::Cow::Owned(t) = text(s) {
            *s = t;
        }
    }
}

/// Append the batch in one transaction that holds the log's lock from before its first
/// sequence number is drawn until its commit: `Some(seq)` for each new event, `None` for a
/// duplicate (of an event stored before, or of an earlier delivery in the same batch). The
/// commit notifies the other replicas, naming this one (`replica`). When it returns, every row
/// numbered below the batch's is committed and visible: their transactions held the lock first.
pub async fn commit(
    client: &Client,
    insert: &Statement,
    batch: &[&ChatEvent],
    replica: u64,
) -> Result<Vec<Option<Seq>>, tokio_postgres::Error> {
    let mut first: HashMap<(std::borrow::Cow<'_, str>, i16, std::borrow::Cow<'_, str>), usize> =
        HashMap::with_capacity(batch.len());
    let mut distinct = Vec::with_capacity(batch.len());
    for (i, e) in batch.iter().enumerate() {
        let key = (
            text(&e.account_id),
            kind_code(e.kind) as i16,
            text(&e.chat_id),
        );
        first.entry(key).or_insert_with(|| {
            distinct.push(i);
            i
        });
    }
    let pick = |f: &dyn Fn(&ChatEvent) -> std::borrow::Cow<'_, str>| -> Vec<String> {
        distinct.iter().map(|&i| f(batch[i]).into_owned()).collect()
    };
    let accounts = pick(&|e| text(&e.account_id));
    let chats = pick(&|e| text(&e.chat_id));
    let departments = pick(&|e| text(&e.department_id));
    let kinds: Vec<i16> = distinct
        .iter()
        .map(|&i| kind_code(batch[i].kind) as i16)
        .collect();
    let received: Vec<i64> = distinct.iter().map(|&i| batch[i].received_ms).collect();
    let roles: Vec<Option<String>> = distinct
        .iter()
        .map(|&i| opt_text(&batch[i].agent_role).map(|s| s.into_owned()))
        .collect();
    let agents: Vec<Option<String>> = distinct
        .iter()
        .map(|&i| opt_text(&batch[i].agent_id).map(|s| s.into_owned()))
        .collect();
    let waits: Vec<Option<f64>> = distinct.iter().map(|&i| batch[i].wait_seconds).collect();
    let durations: Vec<Option<f64>> = distinct
        .iter()
        .map(|&i| batch[i].duration_seconds)
        .collect();

    // One round trip opens the transaction and takes the lock; the lock is released by the
    // commit, after the rows became visible.
    client
        .batch_execute(&format!(
            "BEGIN; SELECT pg_advisory_xact_lock({LOCK_CLASS}, {LOCK_LOG})"
        ))
        .await?;
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
            ],
        )
        .await;
    let rows = match rows {
        Ok(rows) => rows,
        Err(e) => {
            let _ = client.batch_execute("ROLLBACK").await;
            return Err(e);
        }
    };
    if !rows.is_empty() {
        client
            .batch_execute(&format!("NOTIFY {CHANNEL}, '{replica}'; COMMIT"))
            .await?;
    } else {
        client.batch_execute("COMMIT").await?;
    }
    let mut seqs: HashMap<(String, i16, String), Seq> = HashMap::with_capacity(rows.len());
    for row in &rows {
        let seq: i64 = row.get(0);
        seqs.insert((row.get(1), row.get(2), row.get(3)), seq as Seq);
    }
    Ok(batch
        .iter()
        .enumerate()
        .map(|(i, e)| {
            let key = (
                text(&e.account_id),
                kind_code(e.kind) as i16,
                text(&e.chat_id),
            );
            if first.get(&key) != Some(&i) {
                return None;
            }
            seqs.get(&(key.0.into_owned(), key.1, key.2.into_owned()))
                .copied()
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
