//! Encoding `/metrics` as the handler does (`Metrics::encode`) at 10, 1,000 and 10,000 chat
//! series, in each format; and gzip of the text page at 1,000 series.

mod common;

use std::hint::black_box;

use acquire_exporter::expose::{self, Format};
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
        if series == 1_000 {
            let mut body = Vec::new();
            metrics.encode(Format::Text, &mut body);
            group.bench_function(BenchmarkId::new("gzip_text", series), |b| {
                b.iter(|| expose::gzip(black_box(&body)))
            });
        }
    }
    group.finish();
}

criterion_group!(benches, exposing);
criterion_main!(benches);
