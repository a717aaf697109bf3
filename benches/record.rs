//! Recording one admitted close event into the chat histograms (and the live queue and staffing
//! estimate that `Metrics::apply` also feeds).

mod common;

use std::hint::black_box;
use std::time::{Duration, UNIX_EPOCH};

use acquire_exporter::config::Settings;
use acquire_exporter::event::{Admitted, ChatEvent, ChatKind};
use acquire_exporter::record::histogram::{ChatHistogram, Exemplar};
use acquire_exporter::record::queue::MAX_WAITING;
use acquire_exporter::record::snapshot;
use acquire_exporter::record::{Clock, Metrics};
use criterion::{BatchSize, Criterion, criterion_group, criterion_main};

fn recording(c: &mut Criterion) {
    let mut group = c.benchmark_group("record");

    // One observation into one histogram series: classic and native buckets and the exemplar.
    let layout = Settings::default().wait_layout;
    let mut histogram = ChatHistogram::new(&layout);
    let mut i = 0u64;
    group.bench_function("histogram_observe", |b| {
        b.iter(|| {
            i += 1;
            let v = 1.0 + (i * 31 % 300) as f64;
            let exemplar = Exemplar {
                chat_id: "104111".into(),
                value: v,
                timestamp: UNIX_EPOCH + Duration::from_secs(1_700_000_000 + i),
            };
            histogram.observe(&layout, black_box(v), Some(exemplar));
        })
    });

    // One close event through `Metrics::apply`, with 1,000 series already present.
    let exposition = common::populated(1_000, 1);
    let metrics = exposition.metrics();
    let mut n = 1_000u64;
    group.bench_function("apply_close_1000_series", |b| {
        b.iter_batched(
            || {
                n += 1;
                common::admitted_close(n, 1_000)
            },
            |event| metrics.apply(black_box(&event)),
            BatchSize::SmallInput,
        )
    });

    // One chat start into the live queue, with 1,000 chats waiting, and with the queue full
    // (`MAX_WAITING`), where the start is refused: both cost a lookup, not a scan of the queue.
    // With 1,000 waiting, the untimed setup closes the chat the previous iteration started, so
    // the queue stays at its size; a full queue refuses every start and stays full.
    for (name, waiting, keep_size) in [
        ("apply_start_1000_waiting", 1_000u64, true),
        ("apply_start_queue_full", MAX_WAITING as u64, false),
    ] {
        let metrics = Metrics::new(&Settings::default());
        for i in 0..waiting {
            metrics.apply(&start(i));
        }
        let mut n = waiting;
        group.bench_function(name, |b| {
            b.iter_batched(
                || {
                    if keep_size && n > waiting {
                        metrics.apply(&close(n));
                    }
                    n += 1;
                    start(n)
                },
                |event| metrics.apply(black_box(&event)),
                BatchSize::PerIteration,
            )
        });
    }
    group.finish();
}

/// A snapshot's fixed costs, which the worker pays once per snapshot on top of applying the
/// events since the last one: the state of 1,000 series with five weeks of hour-of-week
/// history (one close a series an hour over 35 days), exported and encoded, then decoded and
/// imported as the next rebuild starts.
fn snapshots(c: &mut Criterion) {
    const SERIES: u64 = 1_000;
    const HOURS: u64 = 35 * 24;
    let settings = common::settings_for(SERIES as usize);
    let metrics = Metrics::new(&settings);
    let start_ms = 1_700_000_000_000i64;
    for i in 0..SERIES * HOURS {
        let mut admitted = common::admitted_close(i, SERIES);
        admitted.event.received_ms =
            start_ms + (i / SERIES) as i64 * 3_600_000 + (i % SERIES) as i64;
        metrics.apply(&admitted);
    }
    let bytes = snapshot::encode(&metrics.export());
    println!(
        "snapshot of {SERIES} series over {HOURS} hours: {} bytes",
        bytes.len()
    );

    let mut group = c.benchmark_group("snapshot");
    group.sample_size(20);
    group.bench_function("export_encode_1000_series_5_weeks", |b| {
        b.iter(|| snapshot::encode(&black_box(&metrics).export()))
    });
    group.bench_function("decode_import_1000_series_5_weeks", |b| {
        b.iter(|| {
            let state = snapshot::decode(black_box(&bytes)).expect("a snapshot");
            Metrics::import(&settings, Clock::new(|| 0.0), &state).expect("same settings")
        })
    });
    group.finish();
}

/// Start event number `i` (one a millisecond, so none expires), with sequence number `i + 1`.
fn start(i: u64) -> Admitted {
    let mut event = ChatEvent::empty(ChatKind::Start, &format!("chat-{i}"));
    event.account_id = "10111".into();
    event.department_id = (100 + i % 50).to_string();
    event.received_ms = 1_700_000_000_000 + i as i64;
    Admitted { seq: i + 1, event }
}

/// The close of start number `i`, unanswered, with sequence number `i + 1_000_000_000`.
fn close(i: u64) -> Admitted {
    let mut admitted = start(i);
    admitted.event.kind = ChatKind::Close;
    admitted.seq += 1_000_000_000;
    admitted
}

criterion_group!(benches, recording, snapshots);
criterion_main!(benches);
