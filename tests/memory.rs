//! Memory does not grow with the number of events, in either storage mode: resident memory
//! after N and after 2N deliveries into the same series, over HTTP against the real binary.
//! The bound is generous (the measured figures are in BENCHMARKS.md: about 600 KiB from 100,000
//! to 200,000 events): it leaves room for the one doubling of the bounded set of finished chats
//! (at most 200,000 ids, `record::queue::MAX_FINISHED`, remembered to ignore late starts) that
//! 50,000 new chats always cross, about 3 MiB of hash table, yet a store or a recorder that kept
//! 128 bytes per event would exceed it.
mod common;

use common::{Exporter, close_event, sample};

/// Deliveries per step: each step adds as many events as the first.
const N: usize = 50_000;
/// Growth allowed from N to 2N events: 3 MiB of slack and one doubling of the finished chats'
/// table.
const BOUND_KIB: u64 = 6 * 1024;

/// Closes `from..to` over 100 series (25 departments, 4 roles), every one a new chat.
fn closes(from: usize, to: usize) -> Vec<Vec<u8>> {
    let roles = ["Operator", "Administrator", "Supervisor", "Lead"];
    (from..to)
        .map(|i| {
            close_event(
                &format!("m{i}"),
                &(i % 25).to_string(),
                Some(roles[i / 25 % 4]),
                &(i % 600).to_string(),
                &(30 + i % 3000).to_string(),
            )
        })
        .collect()
}

fn total_wait_count(page: &str) -> f64 {
    page.lines()
        .filter(|l| l.starts_with("acquire_chat_wait_time_seconds_count{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

fn growth_from_n_to_2n(exporter: &Exporter) -> (u64, u64) {
    common::post_all(exporter.address(), closes(0, N), 4);
    let at_n = exporter.rss_kib();
    assert_eq!(total_wait_count(&exporter.metrics()), N as f64);
    common::post_all(exporter.address(), closes(N, 2 * N), 4);
    let at_2n = exporter.rss_kib();
    let page = exporter.metrics();
    assert_eq!(
        total_wait_count(&page),
        2.0 * N as f64,
        "every event counted"
    );
    let series = page
        .lines()
        .filter(|l| l.starts_with("acquire_chat_wait_time_seconds_count{"))
        .count();
    assert_eq!(series, 100);
    (at_n, at_2n)
}

#[test]
fn memory_does_not_grow_with_events_in_the_durable_store() {
    let dir = tempfile::tempdir().unwrap();
    let exporter = Exporter::spawn(&[&format!("--storage.path={}", dir.path().display())]);
    let (at_n, at_2n) = growth_from_n_to_2n(&exporter);
    assert_eq!(
        sample(&exporter.metrics(), "acquire_exporter_storage_events"),
        Some(2.0 * N as f64)
    );
    assert!(
        at_2n <= at_n + BOUND_KIB,
        "durable: {at_n} KiB after {N} events, {at_2n} KiB after {}",
        2 * N
    );
}

#[test]
fn memory_does_not_grow_with_events_in_memory_only_mode() {
    let exporter = Exporter::spawn(&["--storage.in-memory"]);
    let (at_n, at_2n) = growth_from_n_to_2n(&exporter);
    assert!(
        at_2n <= at_n + BOUND_KIB,
        "memory-only: {at_n} KiB after {N} events, {at_2n} KiB after {}",
        2 * N
    );
}
