//! Inputs shared by the micro-benchmarks: the vendor's payload shapes and generated events.
#![allow(dead_code)]

use std::path::Path;

use std::sync::Arc;

use acquire_exporter::config::Settings;
use acquire_exporter::event::{Admitted, ChatEvent, ChatKind};
use acquire_exporter::expose::Exposition;
use acquire_exporter::record::Metrics;

/// Agent roles used to spread events over series.
pub const ROLES: [&str; 5] = [
    "administrator",
    "operator",
    "supervisor",
    "agent",
    "manager",
];

/// A fixture from `tests/fixtures/`.
pub fn fixture(name: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The smallest flat close event the vendor sends: every scalar a string, `users` as JSON text.
pub fn flat_close() -> Vec<u8> {
    serde_json::json!({
        "id": "104111",
        "account_id": "10111",
        "department_id": "7",
        "chat_wait_time": "12",
        "chat_duration": "300",
        "users": r#"{"agent":{"name":"Agent","role":"Operator"},"visitor":{"name":"Visitor"}}"#,
        "by": "agent-15111",
        "event": "CHAT_ON_CLOSE",
    })
    .to_string()
    .into_bytes()
}

/// A close event as a form (`application/x-www-form-urlencoded`), `users` as JSON text.
pub fn form_close() -> Vec<u8> {
    serde_urlencoded::to_string([
        ("id", "104111"),
        ("account_id", "10111"),
        ("department_id", "7"),
        ("chat_wait_time", "12"),
        ("chat_duration", "300"),
        (
            "users",
            r#"{"agent":{"name":"Agent","role":"Operator"},"visitor":{"name":"Visitor"}}"#,
        ),
        ("by", "agent-15111"),
        ("event", "CHAT_ON_CLOSE"),
    ])
    .expect("form")
    .into_bytes()
}

/// Settings that allow `series` distinct (department, role) pairs.
pub fn settings_for(series: usize) -> Settings {
    let mut settings = Settings::default();
    settings.max_departments = settings
        .max_departments
        .max(series.div_ceil(ROLES.len()) + 1);
    settings
}

/// Close event number `i`, spread over `series` (department, role) pairs.
pub fn close_event(i: u64, series: u64) -> ChatEvent {
    let departments = series.div_ceil(ROLES.len() as u64).max(1);
    let slot = i % series.max(1);
    ChatEvent {
        kind: ChatKind::Close,
        account_id: "10111".into(),
        chat_id: format!("chat-{i}"),
        received_ms: 1_700_000_000_000 + i as i64,
        department_id: (100 + slot % departments).to_string(),
        agent_role: Some(ROLES[(slot / departments) as usize % ROLES.len()].to_owned()),
        agent_id: Some("agent-15111".into()),
        wait_seconds: Some(1.0 + (i * 31 % 300) as f64),
        duration_seconds: Some(10.0 + (i * 17 % 1800) as f64),
    }
}

/// Close event number `i` as the store admits it, with sequence number `i + 1`.
pub fn admitted_close(i: u64, series: u64) -> Admitted {
    Admitted {
        seq: i + 1,
        event: close_event(i, series),
    }
}

/// The exposition of metrics with `series` chat series, each observed `per_series` times.
pub fn populated(series: u64, per_series: u64) -> Exposition {
    let metrics = Metrics::new(&settings_for(series as usize));
    for i in 0..series * per_series {
        metrics.apply(&admitted_close(i, series));
    }
    Exposition::new(Arc::new(metrics))
}
