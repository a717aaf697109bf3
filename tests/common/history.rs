//! History written into a store folder before an exporter starts on it: closes of one
//! department at chosen hours of past weeks, through the store's own API, so that the forecast
//! (`acquire_agents_forecast`) and the week plan have something to read.

use std::path::Path;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use acquire_exporter::admit::{Store, sqlite::Sqlite};
use acquire_exporter::config::SyncMode;
use acquire_exporter::event::{ChatEvent, ChatKind};

/// The current hour, in hours since the Unix epoch.
pub fn now_hour() -> i64 {
    (SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
        / 3600) as i64
}

/// The coming hour and the one after it (should the hour turn during a test), in each of the
/// last five weeks.
pub fn coming_hours_of_past_weeks() -> Vec<i64> {
    let now = now_hour();
    (1..=5)
        .flat_map(|week| [1, 2].map(|ahead| now + ahead - 168 * week))
        .collect()
}

/// `per_hour` closes of `department` arriving in each of `hours` (hours since the epoch), and
/// three at each of `noise`: each waited 20 s and was handled in 240 s.
pub fn seed(dir: &Path, department: &str, hours: &[i64], per_hour: u32, noise: &[i64]) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    std::fs::create_dir_all(dir).unwrap();
    runtime.block_on(async {
        let engine = Arc::new(Sqlite::open(dir, SyncMode::Normal, Box::new(|_| {})).unwrap());
        let (store, _) = Store::start(engine, Arc::new(|_| {})).unwrap();
        let mut n = 0;
        let mut add = |hour: i64, count: u32| {
            (0..count)
                .map(|i| {
                    n += 1;
                    // Arrived in the hour; received once waited and handled.
                    let arrived_ms = hour * 3_600_000 + i64::from(i) * 60_000 + 1000;
                    let mut e = ChatEvent::empty(ChatKind::Close, &format!("history-{n}"));
                    e.account_id = "1".into();
                    e.department_id = department.into();
                    e.agent_role = Some("operator".into());
                    e.wait_seconds = Some(20.0);
                    e.duration_seconds = Some(240.0);
                    e.received_ms = arrived_ms + 260_000;
                    e
                })
                .collect::<Vec<_>>()
        };
        let mut events = Vec::new();
        for &h in hours {
            events.extend(add(h, per_hour));
        }
        for &h in noise {
            events.extend(add(h, 3));
        }
        events.sort_by_key(|e| e.received_ms);
        for e in events {
            store.admit(e).await.unwrap();
        }
        store.close().await;
    });
}
