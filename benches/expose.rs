//! Encoding `/metrics` at 10, 1,000 and 10,000 chat series: each format into one buffer
//! (`Exposition::encode`), and the gzipped OpenMetrics and protobuf bodies as the handler writes
//! them (`Exposition::write` into `Output::gzip()`: compressed chunk by chunk as encoded).

mod common;

use std::hint::black_box;

use acquire_exporter::expose::{Format, Output};
use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};

fn exposing(c: &mut Criterion) {
    let mut group = c.benchmark_group("expose");
    group.sample_size(20);
    for series in [10u64, 1_000, 10_000] {
        let metrics = common::populated(series, 3);
        for (name, format) in [
            ("text", Format::Text),
            ("openmetrics", Format::OpenMetrics),
            ("protobuf", Format::Protobuf),
        ] {
            group.bench_with_input(BenchmarkId::new(name, series), &series, |b, _| {
                b.iter(|| {
                    let mut body = Vec::with_capacity(64 * 1024);
                    metrics.encode(format, &mut body);
                    black_box(body)
                })
            });
        }
        for (name, format) in [
            ("openmetrics_gzip", Format::OpenMetrics),
            ("protobuf_gzip", Format::Protobuf),
        ] {
            group.bench_with_input(BenchmarkId::new(name, series), &series, |b, _| {
                b.iter(|| {
                    let mut body = Output::gzip();
                    metrics.write(format, &mut body);
                    black_box(body.into_vec())
                })
            });
        }
    }
    group.finish();
}

criterion_group!(benches, exposing);
criterion_main!(benches);
