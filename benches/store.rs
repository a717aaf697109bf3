//! The durable commit path: `Store::admit` on the SQLite store (group commit, WAL,
//! `synchronous=NORMAL`), one submitter at a time and with concurrent submitters sharing commits;
//! the memory-only store for comparison.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use acquire_exporter::admit::{Admission, Sink, Store};
use acquire_exporter::config::SyncMode;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

/// Chat ids never repeat across the whole run, so every admit is a new event.
static NEXT: AtomicU64 = AtomicU64::new(0);

fn next_event() -> acquire_exporter::admit::StoredEvent {
    common::close_event(NEXT.fetch_add(1, Ordering::Relaxed), 1_000)
}

/// `iters` admits from `submitters` tasks at once; the time they all took.
async fn admit_concurrently(store: &Arc<Store>, iters: u64, submitters: u64) -> Duration {
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(submitters as usize);
    for k in 0..submitters {
        let store = store.clone();
        let share = iters / submitters + u64::from(k < iters % submitters);
        tasks.push(tokio::spawn(async move {
            for _ in 0..share {
                let admission = store.admit(next_event()).await.expect("admit");
                assert_eq!(admission, Admission::New);
            }
        }));
    }
    for task in tasks {
        task.await.expect("submitter");
    }
    started.elapsed()
}

fn storing(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let dir = tempfile::tempdir().expect("temporary folder");
    let ignore = || -> Sink { Arc::new(|_| {}) };
    let (durable, _) =
        Store::open(dir.path(), SyncMode::Normal, ignore(), |_| {}).expect("open the store");
    let durable = Arc::new(durable);
    let memory = Arc::new(Store::in_memory(Duration::from_secs(24 * 3600), ignore()));

    let mut group = c.benchmark_group("store");
    group.throughput(Throughput::Elements(1));
    group.bench_function("durable_admit_sequential", |b| {
        b.iter(|| {
            runtime
                .block_on(durable.admit(next_event()))
                .expect("admit")
        })
    });
    for submitters in [8u64, 64] {
        group.bench_function(format!("durable_admit_concurrent_{submitters}"), |b| {
            b.iter_custom(|iters| runtime.block_on(admit_concurrently(&durable, iters, submitters)))
        });
    }
    group.bench_function("memory_admit_sequential", |b| {
        b.iter(|| runtime.block_on(memory.admit(next_event())).expect("admit"))
    });
    group.finish();
    runtime.block_on(durable.close());
}

criterion_group!(benches, storing);
criterion_main!(benches);
