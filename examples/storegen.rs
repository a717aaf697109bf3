//! A store with a long life, made fast: `events` chat closes written through the store's own API
//! (the SQLite engine, group commits) with receive times spread over `days` ending now, with
//! snapshots and pruning as the exporter makes them, on the generated time. For the benchmarks:
//! what a start costs after 1, 10 or 50 million events, and how large the database gets.
//!
//! ```sh
//! cargo run --release --example storegen -- --path /tmp/store --events 10000000 --days 365
//! ```
//! Prints one JSON line: events, seconds, database bytes, and the size curve.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use acquire_exporter::admit::sqlite::{FILE_NAME, Sqlite};
use acquire_exporter::admit::{Engine, Store};
use acquire_exporter::checkpoint;
use acquire_exporter::config::{Settings, SyncMode};
use acquire_exporter::event::{ChatEvent, ChatKind};
use clap::Parser;

#[derive(Parser, Debug)]
#[command(about = "Write a store with a long life through the store's own API")]
struct Args {
    /// Folder of the store (created).
    #[arg(long)]
    path: PathBuf,
    /// Events in the store's life.
    #[arg(long, default_value_t = 1_000_000)]
    events: u64,
    /// Days the receive times span, ending now.
    #[arg(long, default_value_t = 365.0)]
    days: f64,
    /// Distinct (department, role) series (5 roles each department).
    #[arg(long, default_value_t = 1000)]
    series: u64,
    /// Raw events older than this many days (of the generated time) are pruned; 0 keeps them.
    #[arg(long, default_value_t = 35.0)]
    retention_days: f64,
    /// A snapshot after this many events, as `--storage.snapshot-every`.
    #[arg(long, default_value_t = 100_000)]
    snapshot_every: u64,
    /// Record the database size every this many events.
    #[arg(long, default_value_t = 0)]
    curve_every: u64,
    /// The newest this many events are written after the last snapshot, as a running exporter
    /// leaves up to `--storage.snapshot-every` events to replay.
    #[arg(long, default_value_t = 0)]
    tail: u64,
}

const ROLES: [&str; 5] = [
    "administrator",
    "operator",
    "supervisor",
    "agent",
    "manager",
];

fn close(i: u64, series: u64, at_ms: i64) -> ChatEvent {
    let departments = series.div_ceil(ROLES.len() as u64).max(1);
    let slot = i % series.max(1);
    let mut e = ChatEvent::empty(ChatKind::Close, &format!("chat-{i}"));
    e.account_id = "10111".into();
    e.received_ms = at_ms;
    e.department_id = (100 + slot % departments).to_string();
    e.agent_role = Some(ROLES[(slot / departments) as usize % ROLES.len()].to_owned());
    e.agent_id = Some(format!("agent-{}", i % 40));
    e.wait_seconds = Some(1.0 + (i * 31 % 300) as f64);
    e.duration_seconds = Some(10.0 + (i * 17 % 1800) as f64);
    e
}

fn db_bytes(path: &std::path::Path) -> u64 {
    ["", "-wal"]
        .iter()
        .filter_map(|suffix| std::fs::metadata(path.join(format!("{FILE_NAME}{suffix}"))).ok())
        .map(|m| m.len())
        .sum()
}

fn main() {
    let args = Args::parse();
    // The exporter that opens the store runs with the default settings, so the snapshots are
    // made under them too: a snapshot made under other settings would be set aside at its start
    // and the state rebuilt from the retained events, which is not the start to measure.
    let settings = Settings::default();
    let departments = args.series.div_ceil(ROLES.len() as u64);
    if departments > settings.max_departments as u64 {
        eprintln!(
            "storegen: {} series need {departments} departments, more than the default limit of {}",
            args.series, settings.max_departments
        );
        std::process::exit(2);
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let started = Instant::now();
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_millis() as i64;
    let span_ms = (args.days * 86_400_000.0) as i64;
    let first_ms = now_ms - span_ms;
    let step = span_ms as f64 / args.events.max(1) as f64;
    let retention_ms = (args.retention_days * 86_400_000.0) as i64;
    let mut curve = Vec::new();
    runtime.block_on(async {
        let engine: Arc<Sqlite> = Arc::new(
            Sqlite::open(&args.path, SyncMode::Normal, Box::new(|_| {})).expect("open the store"),
        );
        let (store, _) = Store::start(engine.clone(), Arc::new(|_| {})).expect("start");
        let store = Arc::new(store);
        let chunk = args.snapshot_every.max(1);
        let mut written = 0u64;
        while written < args.events {
            let upto = (written + chunk).min(args.events);
            let tasks: Vec<_> = (0..64)
                .map(|t| {
                    let store = store.clone();
                    let series = args.series;
                    tokio::spawn(async move {
                        let mut i = written + t;
                        while i < upto {
                            let at = first_ms + (i as f64 * step) as i64;
                            store.admit(close(i, series, at)).await.expect("admit");
                            i += 64;
                        }
                    })
                })
                .collect();
            for t in tasks {
                t.await.expect("writer");
            }
            written = upto;
            if written > args.events.saturating_sub(args.tail) {
                continue;
            }
            // The snapshot and the pruning the worker would make, on the generated time.
            let last = engine.last_seq().expect("last");
            let snapshot = engine.clone();
            let settings = settings.clone();
            let seq = tokio::task::spawn_blocking(move || {
                checkpoint::write_snapshot(&*snapshot, &settings, last).expect("snapshot")
            })
            .await
            .expect("snapshot task")
            .0;
            if retention_ms > 0 {
                let before = first_ms + (written as f64 * step) as i64 - retention_ms;
                while engine.prune(before, seq, 50_000).expect("prune") > 0 {}
            }
            if args.curve_every > 0 && written % args.curve_every < chunk {
                curve.push((written, db_bytes(&args.path)));
            }
            eprintln!(
                "storegen: {written} events, {:.0} s, {} MiB",
                started.elapsed().as_secs_f64(),
                db_bytes(&args.path) / (1 << 20)
            );
        }
        store.close().await;
    });
    let curve: Vec<String> = curve.iter().map(|(e, b)| format!("[{e},{b}]")).collect();
    println!(
        "{{\"events\":{},\"seconds\":{:.1},\"db_bytes\":{},\"held\":{},\"curve\":[{}]}}",
        args.events,
        started.elapsed().as_secs_f64(),
        db_bytes(&args.path),
        held(&args.path),
        curve.join(",")
    );
}

fn held(path: &std::path::Path) -> u64 {
    Sqlite::open(path, SyncMode::Normal, Box::new(|_| {}))
        .and_then(|e| e.events_held())
        .unwrap_or(0)
}
