//! The PostgreSQL engine through the library's API against a real server: several engines in
//! one process stand for several replicas. The shared log in order under concurrent writers,
//! the same key twice in one batch, schema creation by replicas starting at once, a newer
//! schema refused, and the snapshot and pruning primitives taken by one replica at a time.

mod common;
#[path = "common/postgres.rs"]
mod pg;

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use acquire_exporter::admit::postgres::{Postgres, Target};
use acquire_exporter::admit::{Admission, Engine, Sink, Store, StoredSnapshot};
use acquire_exporter::event::{Admitted, ChatEvent, ChatKind, Seq};

fn close(chat: &str) -> ChatEvent {
    ChatEvent {
        account_id: "10111".into(),
        received_ms: 1_700_000_000_000,
        department_id: "7".into(),
        agent_role: Some("operator".into()),
        agent_id: Some("agent-1".into()),
        wait_seconds: Some(12.0),
        duration_seconds: Some(60.0),
        ..ChatEvent::empty(ChatKind::Close, chat)
    }
}

fn engine(url: &str) -> Postgres {
    Postgres::open(Target::parse(url).unwrap(), Box::new(|_| {})).unwrap()
}

/// A sink that keeps what it was handed.
fn recorder() -> (Sink, Arc<Mutex<Vec<Admitted>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = seen.clone();
    (
        Arc::new(move |e: &Admitted| s.lock().unwrap().push(e.clone())),
        seen,
    )
}

fn wait_until(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !done() {
        assert!(Instant::now() < deadline, "{what}: not within {timeout:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn every_follower_sees_every_row_in_order_under_concurrent_writers() {
    let server = pg::Postgres::start();
    server.create_database("acquire");
    let url = server.url("acquire");
    const REPLICAS: usize = 4;
    const TASKS: usize = 16;
    const EACH: usize = 400;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let mut stores = Vec::new();
    let mut seen = Vec::new();
    for _ in 0..REPLICAS {
        let (sink, log) = recorder();
        let (store, _) = Store::start(Arc::new(engine(&url)), sink).unwrap();
        stores.push(Arc::new(store));
        seen.push(log);
    }
    // Every replica's tasks write at once: many transactions draw numbers and commit
    // concurrently, which is when a follower reading `seq > last` could skip a row that
    // commits after a later one.
    runtime.block_on(async {
        let mut tasks = Vec::new();
        for (r, store) in stores.iter().enumerate() {
            for t in 0..TASKS {
                let store = store.clone();
                tasks.push(tokio::spawn(async move {
                    for i in 0..EACH {
                        let a = store.admit(close(&format!("{r}-{t}-{i}"))).await.unwrap();
                        assert_eq!(a, Admission::New);
                    }
                }));
            }
        }
        for t in tasks {
            t.await.unwrap();
        }
    });
    let total = REPLICAS * TASKS * EACH;
    let stored: Vec<Seq> = server
        .psql("acquire", "SELECT seq FROM acquire_events ORDER BY seq")
        .lines()
        .map(|l| l.parse().unwrap())
        .collect();
    assert_eq!(stored.len(), total);
    for (r, log) in seen.iter().enumerate() {
        let end = *stored.last().unwrap();
        wait_until(
            "every follower read to the log's end",
            Duration::from_secs(30),
            || log.lock().unwrap().last().is_some_and(|e| e.seq >= end),
        );
        let log = log.lock().unwrap();
        let seqs: Vec<Seq> = log.iter().map(|e| e.seq).collect();
        assert_eq!(
            seqs.len(),
            total,
            "replica {r} was handed {} events, the log holds {total}",
            seqs.len()
        );
        assert_eq!(
            seqs, stored,
            "replica {r} saw the log out of order or with gaps"
        );
        let ids: BTreeSet<&str> = log.iter().map(|e| e.chat_id.as_str()).collect();
        assert_eq!(ids.len(), total, "replica {r}: an event twice");
    }
    runtime.block_on(async {
        for s in &stores {
            s.close().await;
        }
    });
}

#[test]
fn the_same_key_twice_in_one_batch_is_stored_once_and_answered_duplicate_once() {
    let server = pg::Postgres::start();
    server.create_database("acquire");
    let url = server.url("acquire");
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (sink, seen) = recorder();
    let (store, _) = Store::start(Arc::new(engine(&url)), sink).unwrap();
    let store = Arc::new(store);
    // 64 deliveries handed over together, each chat twice, land in the same group commits.
    let answers = runtime.block_on(async {
        let tasks: Vec<_> = (0..64)
            .map(|i| {
                let store = store.clone();
                tokio::spawn(async move { store.admit(close(&(i / 2).to_string())).await })
            })
            .collect();
        let mut out = Vec::new();
        for t in tasks {
            out.push(t.await.unwrap().unwrap());
        }
        out
    });
    let new = answers.iter().filter(|a| **a == Admission::New).count();
    assert_eq!(new, 32, "{answers:?}");
    assert_eq!(
        server.count("acquire", "SELECT count(*) FROM acquire_events"),
        32
    );
    wait_until("the follower applied them", Duration::from_secs(10), || {
        seen.lock().unwrap().len() >= 32
    });
    assert_eq!(seen.lock().unwrap().len(), 32);
    runtime.block_on(store.close());
}

#[test]
fn replicas_starting_at_once_create_the_schema_once_and_a_newer_schema_is_refused() {
    let server = pg::Postgres::start();
    server.create_database("acquire");
    let url = server.url("acquire");
    let opened: Vec<_> = (0..4)
        .map(|_| {
            let url = url.clone();
            std::thread::spawn(move || {
                Postgres::open(Target::parse(&url).unwrap(), Box::new(|_| {}))
            })
        })
        .collect();
    for o in opened {
        o.join().unwrap().expect("every replica starts");
    }
    assert_eq!(
        server.psql(
            "acquire",
            "SELECT value FROM acquire_meta WHERE key = 'schema_version'"
        ),
        acquire_exporter::admit::postgres::SCHEMA_VERSION.to_string()
    );
    server.psql(
        "acquire",
        "UPDATE acquire_meta SET value = '99' WHERE key = 'schema_version'",
    );
    let err = Postgres::open(Target::parse(&url).unwrap(), Box::new(|_| {}))
        .unwrap_err()
        .to_string();
    assert!(err.contains("schema version 99 is newer"), "{err}");
    assert!(err.contains("127.0.0.1"), "names the server: {err}");
    assert!(!err.contains(pg::PASSWORD), "never the password: {err}");
}

#[test]
fn one_replica_at_a_time_writes_snapshots_and_prunes_and_the_newest_snapshot_loads() {
    let server = pg::Postgres::start();
    server.create_database("acquire");
    let url = server.url("acquire");
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (store, _) = Store::start(Arc::new(engine(&url)), Arc::new(|_| {})).unwrap();
    runtime.block_on(async {
        for i in 0..10 {
            let mut e = close(&i.to_string());
            e.received_ms = 1_000 * i;
            assert_eq!(store.admit(e).await.unwrap(), Admission::New);
        }
    });
    let first = engine(&url);
    let second = engine(&url);
    assert_eq!(
        first.epoch_ms(),
        second.epoch_ms(),
        "one epoch for every replica"
    );
    assert_eq!(first.last_seq().unwrap(), 10);
    assert_eq!(first.load_snapshot().unwrap(), None);
    let snapshot = |seq: Seq| StoredSnapshot {
        seq,
        bytes: vec![seq as u8; 100],
    };
    let kept = || {
        server.psql(
            "acquire",
            "SELECT string_agg(seq::text, ',' ORDER BY seq) FROM acquire_snapshots",
        )
    };
    first.save_snapshot(4, &snapshot(4).bytes).unwrap();
    assert_eq!(kept(), "4", "the first takes the lead");
    second.save_snapshot(6, &snapshot(6).bytes).unwrap();
    assert_eq!(
        kept(),
        "4",
        "the second does not write while the first maintains"
    );
    assert_eq!(second.prune(i64::MAX, 10, 100).unwrap(), 0, "nor prune");
    first.save_snapshot(9, &snapshot(9).bytes).unwrap();
    assert_eq!(kept(), "9", "older snapshots go");
    assert_eq!(
        second.load_snapshot().unwrap(),
        Some(snapshot(9)),
        "every replica reads it"
    );
    // Only events both older than the cut and covered by the snapshot go, a batch at a time.
    assert_eq!(first.prune(5_000, 9, 100).unwrap(), 5);
    assert_eq!(first.prune(i64::MAX, 8, 2).unwrap(), 2);
    assert_eq!(first.prune(i64::MAX, 8, 2).unwrap(), 1);
    assert_eq!(first.prune(i64::MAX, 8, 2).unwrap(), 0);
    // The newest event stays whatever the cut.
    assert_eq!(first.prune(i64::MAX, Seq::MAX, 100).unwrap(), 1);
    assert_eq!(
        server.psql(
            "acquire",
            "SELECT string_agg(chat_id, ',' ORDER BY seq) FROM acquire_events"
        ),
        "9"
    );
    assert_eq!(first.events_held().unwrap(), 1);
    assert_eq!(first.last_seq().unwrap(), 10);
    // The lead moves when its holder goes.
    drop(first);
    wait_until(
        "the lock is released with its session",
        Duration::from_secs(10),
        || {
            second.save_snapshot(10, &snapshot(10).bytes).unwrap();
            kept() == "10"
        },
    );
    second.drop_snapshots().unwrap();
    assert_eq!(second.load_snapshot().unwrap(), None);
    runtime.block_on(store.close());
}

#[test]
fn a_replica_started_after_pruning_loads_the_snapshot_and_the_log_after_it() {
    use acquire_exporter::checkpoint;
    use acquire_exporter::config::Settings;
    use acquire_exporter::expose::{Exposition, Format};
    use acquire_exporter::record::{Clock, Metrics};

    let server = pg::Postgres::start();
    server.create_database("acquire");
    let url = server.url("acquire");
    let settings = Settings::load(None).unwrap();
    let clock = Clock::new(|| 1_700_000_100.0);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let page = |metrics: Arc<Metrics>| {
        let mut out = Vec::new();
        Exposition::new(metrics).encode(Format::Text, &mut out);
        String::from_utf8(out).unwrap()
    };

    // Replica A runs, snapshots after 30 events, then takes 20 more.
    let a = Arc::new(engine(&url));
    let metrics_a = Arc::new(Metrics::with_clock(&settings, clock.clone()));
    let loaded = checkpoint::load(&*a, &metrics_a, false, "a").unwrap();
    let sink: Sink = {
        let m = metrics_a.clone();
        Arc::new(move |e: &Admitted| m.apply(e))
    };
    let store = Store::resume(a.clone(), sink, loaded.last).unwrap();
    let deliver = |range: std::ops::Range<i64>| {
        runtime.block_on(async {
            for i in range {
                let mut e = close(&format!("c{i}"));
                e.received_ms = 1_700_000_000_000 + i;
                e.wait_seconds = Some(i as f64);
                assert_eq!(store.admit(e).await.unwrap(), Admission::New);
            }
        })
    };
    deliver(0..30);
    let (at, _) = checkpoint::write_snapshot(&*a, &settings, a.last_seq().unwrap()).unwrap();
    assert_eq!(at, 30);
    deliver(30..50);
    // Every event the snapshot covers is pruned.
    while a.prune(i64::MAX, at, 7).unwrap() > 0 {}
    assert_eq!(
        server.count("acquire", "SELECT min(seq) FROM acquire_events"),
        31
    );
    wait_until("A applied its own events", Duration::from_secs(10), || {
        a.applied() >= 50
    });

    // Replica B starts late: the snapshot, then the 20 events after it.
    let b = engine(&url);
    let metrics_b = Metrics::with_clock(&settings, clock);
    let loaded = checkpoint::load(&b, &metrics_b, false, "b").unwrap();
    assert_eq!(loaded.snapshot, Some(30));
    assert_eq!(loaded.replayed, 20);
    assert_eq!(page(Arc::new(metrics_b)), page(metrics_a.clone()));
    runtime.block_on(store.close());
}
