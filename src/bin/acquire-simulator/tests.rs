//! Tests of the simulator: its bodies decode as the events they stand for, its day and rates.

use super::*;
use acquire_exporter::decode::{Event, decode};

fn chat(agent: bool) -> Chat {
    Chat {
        id: 1_790_000_000_123,
        department: "12".into(),
        started: 1_790_000_000.0,
        agent: agent.then(|| ("agent-101".to_owned(), "Operator")),
        wait: 42.4,
        duration: 300.0,
        ahead: 2,
    }
}

#[test]
fn vendor_dates_are_civil_utc() {
    let cases = [
        (0.0, "1970-01-01 00:00:00"),
        (951_782_400.0, "2000-02-29 00:00:00"),
        (1_532_323_060.0, "2018-07-23 05:17:40"),
        (4_102_444_799.0, "2099-12-31 23:59:59"),
    ];
    for (t, want) in cases {
        assert_eq!(vendor_date(t), want, "{t}");
    }
}

#[test]
fn the_day_is_quiet_at_night_and_busy_late_morning() {
    assert!(daily_load(3.0) < 0.1);
    assert!(daily_load(10.5) > 0.95);
    assert!(daily_load(12.8) < daily_load(10.5), "a lunch dip");
    assert!(daily_load(15.0) > 0.8);
    for h in 0..24 {
        let l = daily_load(f64::from(h));
        assert!((0.04..=1.0).contains(&l), "{h}: {l}");
    }
}

#[test]
fn every_body_decodes_to_the_event_it_stands_for() {
    let answered = chat(true);
    match decode(Some("application/JSON"), answered.start_body().as_bytes()).unwrap() {
        Event::Started(s) => {
            assert_eq!(s.chat_id, "1790000000123");
            assert_eq!(s.department_id, "12");
        }
        other => panic!("{other:?}"),
    }
    match decode(None, answered.accept_body().as_bytes()).unwrap() {
        Event::Accepted(a) => assert_eq!(a.agent_id.as_deref(), Some("agent-101")),
        other => panic!("{other:?}"),
    }
    let message = answered.message_body("10111", 1_790_000_100.0, true);
    assert!(matches!(
        decode(None, message.as_bytes()).unwrap(),
        Event::Other(_)
    ));
    match decode(None, answered.close_body("10111", false).as_bytes()).unwrap() {
        Event::Closed(c) => {
            assert_eq!(c.wait_seconds, Some(42.0));
            assert_eq!(c.duration_seconds, Some(300.0));
            assert_eq!(c.agent_role.as_deref(), Some("operator"));
            assert_eq!(c.agent_id.as_deref(), Some("agent-101"));
            assert_eq!(c.department_id, "12");
        }
        other => panic!("{other:?}"),
    }
    match decode(None, chat(false).close_body("10111", false).as_bytes()).unwrap() {
        Event::Closed(c) => {
            assert_eq!(c.wait_seconds, None, "a visitor who left has no wait time");
            assert_eq!(c.agent_role, None);
            assert_eq!(c.agent_id, None);
        }
        other => panic!("{other:?}"),
    }
    assert!(decode(None, answered.close_body("10111", true).as_bytes()).is_err());
}

#[test]
fn every_scalar_is_a_string_and_users_is_json_text() {
    let close: serde_json::Value =
        serde_json::from_str(&chat(true).close_body("10111", false)).unwrap();
    for (key, value) in close.as_object().unwrap() {
        assert!(value.is_string(), "{key} is {value}");
    }
    let users: serde_json::Value = serde_json::from_str(close["users"].as_str().unwrap()).unwrap();
    assert_eq!(users["agent"]["role"], "Operator");
    assert!(
        users["agent"].get("name").is_none() && users["visitor"].get("name").is_none(),
        "no names"
    );
}

#[test]
fn urls_split_into_authority_and_target() {
    let cases = [
        ("http://exporter:9867/webhook", "exporter:9867", "/webhook"),
        ("http://127.0.0.1:9867", "127.0.0.1:9867", "/"),
        (
            "http://localhost/hook?token=x",
            "localhost:80",
            "/hook?token=x",
        ),
        ("http://localhost:1?token=x", "localhost:1", "/?token=x"),
    ];
    for (url, authority, target) in cases {
        let c = Client::new(url, None).unwrap();
        assert_eq!(
            (c.authority.as_str(), c.target.as_str()),
            (authority, target)
        );
    }
    assert!(Client::new("https://example.com/webhook", None).is_err());
}

#[test]
fn arrivals_follow_the_requested_peak_rate() {
    let mut rng = Rng(7);
    // Thinning at a constant load of 1 leaves a plain Poisson process: mean gap 1/rate.
    let n = 20_000;
    let mean_gap: f64 = (0..n).map(|_| rng.exponential(30.0)).sum::<f64>() / f64::from(n);
    assert!((mean_gap - 30.0).abs() < 1.0, "{mean_gap}");
    let median = {
        let mut v: Vec<f64> = (0..n).map(|_| rng.log_normal(20.0, 0.9)).collect();
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    assert!((median - 20.0).abs() < 1.0, "{median}");
}
