//! `/metrics` for a fixed scenario, byte for byte in all three formats, against files of the
//! output as it was when the scenario was written. A change of shape must leave every byte as
//! it was; a change of output must change these files in the same commit, on purpose.
//!
//! `GOLDEN_UPDATE=1 cargo test --test golden` writes the files anew.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use acquire_exporter::config::Settings;
use acquire_exporter::event::{Admitted, ChatEvent, ChatKind};
use acquire_exporter::expose::{Exposition, Format};
use acquire_exporter::record::{Clock, Metrics};

/// 2023-11-14 22:13:20 UTC, the scenario's start.
const T0: f64 = 1_700_000_000.0;

fn start(chat: &str, at: f64, department: &str) -> ChatEvent {
    ChatEvent {
        kind: ChatKind::Start,
        account_id: "10111".into(),
        chat_id: chat.into(),
        received_ms: (at * 1000.0) as i64,
        department_id: department.into(),
        agent_role: None,
        agent_id: None,
        wait_seconds: None,
        duration_seconds: None,
    }
}

fn accept(chat: &str, at: f64, agent: &str) -> ChatEvent {
    ChatEvent {
        kind: ChatKind::Accept,
        agent_id: Some(agent.into()),
        ..start(chat, at, "")
    }
}

/// A close; `agent` is `(role, agent id)` when an agent took the chat.
fn close(
    chat: &str,
    at: f64,
    department: &str,
    agent: Option<(&str, &str)>,
    wait: Option<f64>,
    duration: Option<f64>,
) -> ChatEvent {
    ChatEvent {
        kind: ChatKind::Close,
        agent_role: agent.map(|(role, _)| role.to_owned()),
        agent_id: agent.map(|(_, id)| id.to_owned()),
        wait_seconds: wait,
        duration_seconds: duration,
        ..start(chat, at, department)
    }
}

/// A scenario that reaches every family: names with characters to escape, a role past its cap,
/// unanswered chats, an instant answer, values past the last bound, a queue with accepted,
/// closed, still-waiting and expired chats, and a staffing window with agents.
fn scenario() -> (Exposition, Arc<AtomicU64>) {
    let mut settings = Settings::default();
    settings
        .departments
        .insert("7".into(), "Sales \"EU\"\\north\nline".into());
    settings.departments.insert("12".into(), "Billing".into());
    settings.max_agent_roles = 3;
    settings.queue_expire_after = Duration::from_secs(600);
    let now = Arc::new(AtomicU64::new(T0.to_bits()));
    let clock = {
        let now = now.clone();
        Clock::new(move || f64::from_bits(now.load(Ordering::Relaxed)))
    };
    let metrics = Metrics::with_clock(&settings, clock);
    let mut events = Vec::new();
    let roles = ["operator", "administrator", "supervisor", "trainee"];
    for i in 0..40u32 {
        let at = T0 + 30.0 * f64::from(i);
        let chat = format!("chat-{i}");
        let department = ["7", "12", "", "99"][i as usize % 4];
        let role = roles[i as usize % roles.len()];
        let agent = format!("agent-{}", i % 6);
        events.push(start(&chat, at, department));
        if i % 5 != 0 {
            let wait = f64::from(i % 9) * 7.5;
            events.push(accept(&chat, at + wait, &agent));
            events.push(close(
                &chat,
                at + wait + 200.0,
                department,
                Some((role, &agent)),
                Some(wait),
                Some(180.0 + f64::from(i) * 41.0),
            ));
        } else if i % 10 == 0 {
            // Nobody answered: a close with no wait.
            events.push(close(&chat, at + 90.0, department, None, None, Some(90.0)));
        }
        // The others stay waiting, or expire.
    }
    events.push(close(
        "instant",
        T0 + 1000.0,
        "12",
        Some(("operator", "agent-1")),
        Some(0.0),
        Some(20_000.0),
    ));
    events.push(close(
        "slow \"quoted\" id that is longer than twenty-three bytes",
        T0 + 1100.0,
        "7",
        Some(("operator", "agent-2")),
        Some(1e7),
        Some(0.5),
    ));
    events.sort_by_key(|e| e.received_ms);
    for (i, e) in events.into_iter().enumerate() {
        now.store((e.received_ms as f64 / 1000.0).to_bits(), Ordering::Relaxed);
        metrics.apply(&Admitted {
            seq: i as u64 + 1,
            event: e,
        });
    }
    now.store((T0 + 1500.0).to_bits(), Ordering::Relaxed);
    (Exposition::new(Arc::new(metrics)), now)
}

fn golden(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(name)
}

#[test]
fn metrics_are_byte_for_byte_the_golden_files_in_every_format() {
    let (metrics, _clock) = scenario();
    let update = std::env::var_os("GOLDEN_UPDATE").is_some();
    for (format, file) in [
        (Format::Text, "metrics.txt"),
        (Format::OpenMetrics, "metrics.openmetrics.txt"),
        (Format::Protobuf, "metrics.pb"),
    ] {
        let mut page = Vec::new();
        metrics.encode(format, &mut page);
        let path = golden(file);
        if update {
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, &page).unwrap();
            continue;
        }
        let want = std::fs::read(&path)
            .unwrap_or_else(|e| panic!("{}: {e} (GOLDEN_UPDATE=1 writes it)", path.display()));
        if format == Format::Protobuf {
            assert!(page == want, "{file}: the protobuf page differs");
        } else {
            let (page, want) = (
                String::from_utf8(page).unwrap(),
                String::from_utf8(want).unwrap(),
            );
            let first = page
                .lines()
                .zip(want.lines())
                .position(|(a, b)| a != b)
                .map(|i| {
                    format!(
                        "line {}: got {:?}, want {:?}",
                        i + 1,
                        page.lines().nth(i),
                        want.lines().nth(i)
                    )
                });
            assert!(
                page == want,
                "{file} differs: {}",
                first.unwrap_or_else(|| "in length".into())
            );
        }
    }
}

#[test]
fn the_golden_scenario_reaches_every_family() {
    let text = std::fs::read_to_string(golden("metrics.txt")).expect("the golden text");
    for family in [
        "acquire_chat_wait_time_seconds_bucket",
        "acquire_chat_duration_seconds_bucket",
        "acquire_chats_unanswered_total",
        "acquire_label_overflow_total{label=\"agent_role\"} 10",
        "acquire_chats_waiting",
        "acquire_chat_oldest_wait_seconds",
        "acquire_chat_accept_time_seconds_bucket",
        "acquire_chats_expired_total",
        "acquire_chat_arrivals_per_second",
        "acquire_chat_mean_handle_time_seconds",
        "acquire_offered_load_erlangs",
        "acquire_agents_required",
        "acquire_agents_seen",
    ] {
        assert!(
            text.contains(family),
            "{family} is missing from the scenario"
        );
    }
    let om = std::fs::read_to_string(golden("metrics.openmetrics.txt")).unwrap();
    assert!(
        om.contains("# {chat_id=\""),
        "exemplars are in the scenario"
    );
}
