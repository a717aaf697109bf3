//! Decoding each payload shape the vendor sends, from raw body to typed event.

mod common;

use std::hint::black_box;

use acquire_exporter::decode::decode;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

const JSON: Option<&str> = Some("application/JSON");
const FORM: Option<&str> = Some("application/x-www-form-urlencoded");

fn decoding(c: &mut Criterion) {
    let cases: Vec<(&str, Option<&str>, Vec<u8>)> = vec![
        ("flat", JSON, common::flat_close()),
        (
            "users_json_string",
            JSON,
            common::fixture("chat-close-users-as-json-string.json"),
        ),
        (
            "users_object",
            JSON,
            common::fixture("chat-close-users-as-object.json"),
        ),
        (
            "data_envelope",
            JSON,
            common::fixture("chat-close-data-envelope.json"),
        ),
        (
            "verbatim_recovery",
            JSON,
            common::fixture("chat-close-doc-example-verbatim.json"),
        ),
        ("form", FORM, common::form_close()),
    ];
    let mut group = c.benchmark_group("decode");
    for (name, content_type, body) in &cases {
        decode(*content_type, body).unwrap_or_else(|e| panic!("{name}: {e}"));
        group.throughput(Throughput::Bytes(body.len() as u64));
        group.bench_function(*name, |b| {
            b.iter(|| decode(black_box(*content_type), black_box(body)))
        });
    }
    group.finish();
}

criterion_group!(benches, decoding);
criterion_main!(benches);
