//! The decoder over the vendor's examples and over one fixture per bad input, through the public
//! API only.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use acquire_exporter::decode::{
    ChatAccepted, ChatClosed, ChatStarted, DecodeError, Event, EventKind, decode,
};
use acquire_exporter::http::webhook::rejection_status;

const JSON: Option<&str> = Some("application/JSON");
const FORM: Option<&str> = Some("application/x-www-form-urlencoded");

fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn fixture(name: &str) -> Vec<u8> {
    let path = fixtures_dir().join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

/// File names directly in `dir`, sorted.
fn files_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("listing {}: {e}", dir.display()))
        .map(|entry| entry.expect("directory entry"))
        .filter(|entry| entry.path().is_file())
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// What every close example of the vendor's page means.
fn documented_close() -> Event {
    Event::Closed(ChatClosed {
        chat_id: "104111".into(),
        account_id: "10111".into(),
        department_id: String::new(),
        agent_role: Some("administrator".into()),
        agent_id: Some("agent-15111".into()),
        wait_seconds: Some(2.0),
        duration_seconds: Some(25.0),
    })
}

#[test]
fn every_vendor_fixture_decodes_as_documented() {
    let cases: Vec<(&str, Result<Event, &str>)> = vec![
        (
            "chat-close-doc-example-verbatim.json",
            Ok(documented_close()),
        ),
        (
            "chat-close-users-as-json-string.json",
            Ok(documented_close()),
        ),
        ("chat-close-users-as-object.json", Ok(documented_close())),
        ("chat-close-data-envelope.json", Ok(documented_close())),
        (
            "chat-start-doc-example-verbatim.json",
            Ok(Event::Started(ChatStarted {
                chat_id: "172".into(),
                account_id: String::new(),
                department_id: String::new(),
            })),
        ),
        (
            "chat-accept-doc-example-verbatim.json",
            Ok(Event::Accepted(ChatAccepted {
                chat_id: "32654".into(),
                account_id: String::new(),
                agent_id: Some("agent-12345".into()),
            })),
        ),
        (
            "chat-message-doc-example-verbatim.json",
            Ok(Event::Other(EventKind::ChatMessage)),
        ),
        (
            "format-doc-example-verbatim.json",
            Err("body is not valid JSON: trailing comma at line 12 column 9"),
        ),
        (
            "chat-close-visitor-contact-details.json",
            Ok(Event::Closed(ChatClosed {
                chat_id: "204222".into(),
                account_id: "10111".into(),
                department_id: "15".into(),
                agent_role: Some("operator".into()),
                agent_id: Some("agent-15222".into()),
                wait_seconds: Some(31.0),
                duration_seconds: Some(410.0),
            })),
        ),
    ];
    let mut named: Vec<String> = cases.iter().map(|(name, _)| name.to_string()).collect();
    named.sort();
    assert_eq!(named, files_in(&fixtures_dir()), "every fixture has a case");
    for (name, want) in cases {
        let got = decode(JSON, &fixture(name));
        match want {
            Ok(event) => assert_eq!(got, Ok(event), "{name}"),
            Err(message) => {
                let err = got.expect_err(name);
                assert_eq!(err.reason().as_label(), "malformed_body", "{name}");
                assert_eq!(err.to_string(), message, "{name}");
            }
        }
    }
}

#[test]
fn every_invalid_fixture_gives_its_exact_error() {
    let cases = [
        (
            "close-id-null.json",
            "missing_field",
            "field `id` is missing",
        ),
        (
            "close-without-id.json",
            "missing_field",
            "field `id` is missing",
        ),
        (
            "department-object.json",
            "invalid_field",
            "field `department_id`: expected a string or a number, found an object",
        ),
        (
            "duration-boolean.json",
            "invalid_field",
            "field `chat_duration`: expected a number of seconds, found a boolean",
        ),
        (
            "duration-negative-number.json",
            "invalid_field",
            "field `chat_duration`: -25 is negative",
        ),
        (
            "empty.json",
            "malformed_body",
            "body is empty: expected a JSON object",
        ),
        (
            "event-number.json",
            "invalid_field",
            "field `event`: expected a string such as \"CHAT_ON_CLOSE\", found a number",
        ),
        (
            "id-not-whole.json",
            "invalid_field",
            "field `id`: 104111.5 is not a whole number",
        ),
        (
            "id-too-long.json",
            "invalid_field",
            "field `id`: \"9999999999999999999999999999999999999999…\" \
             is longer than 100 characters",
        ),
        (
            "invalid-utf8.json",
            "malformed_body",
            "body is not valid UTF-8 (invalid byte at offset 11)",
        ),
        ("no-event.json", "missing_field", "field `event` is missing"),
        (
            "not-an-object.json",
            "malformed_body",
            "body is an array, not a JSON object",
        ),
        (
            "role-not-string.json",
            "invalid_field",
            "field `users`: `agent.role` is a number, not a string",
        ),
        (
            "trailing-garbage.json",
            "malformed_body",
            "body is not valid JSON: trailing characters at line 11 column 1",
        ),
        (
            "truncated.json",
            "malformed_body",
            "body is not valid JSON: EOF while parsing a string at line 7 column 62",
        ),
        (
            "users-agent-string.json",
            "invalid_field",
            "field `users`: `agent` is a string, not an object",
        ),
        (
            "users-broken.json",
            "invalid_field",
            "field `users`: holds JSON text that is not valid: \
             EOF while parsing a value at line 1 column 38 of that text",
        ),
        (
            "users-number.json",
            "invalid_field",
            "field `users`: expected an object or a JSON text, found a number",
        ),
        (
            "verbatim-users-unbalanced.json",
            "malformed_body",
            "body is not valid JSON: control character (\\u0000-\\u001F) found while parsing \
             a string at line 23 column 12",
        ),
        (
            "wait-inf.json",
            "invalid_field",
            "field `chat_wait_time`: \"inf\" is not a finite number of seconds",
        ),
        (
            "wait-nan.json",
            "invalid_field",
            "field `chat_wait_time`: \"NaN\" is not a finite number of seconds",
        ),
        (
            "wait-negative.json",
            "invalid_field",
            "field `chat_wait_time`: \"-2\" is negative",
        ),
        (
            "wait-not-a-number.json",
            "invalid_field",
            "field `chat_wait_time`: \"abc\" is not a number of seconds",
        ),
        (
            "wait-over-30-days.json",
            "invalid_field",
            "field `chat_wait_time`: \"2592001\" is longer than 30 days (2592000 seconds)",
        ),
    ];
    let mut named: Vec<String> = cases.iter().map(|(name, ..)| name.to_string()).collect();
    named.sort();
    assert_eq!(
        named,
        files_in(&fixtures_dir().join("invalid")),
        "every invalid fixture has a case"
    );
    for (name, reason, message) in cases {
        let err = decode(JSON, &fixture(&format!("invalid/{name}"))).expect_err(name);
        assert_eq!(err.reason().as_label(), reason, "{name}");
        assert_eq!(err.to_string(), message, "{name}");
        assert_eq!(rejection_status(err.reason()).as_u16(), 400, "{name}");
        for personal in ["John", "Deo", "David", "Klok", "@"] {
            assert!(
                !err.to_string().contains(personal),
                "{name}: message quotes personal data"
            );
        }
    }
}

#[test]
fn errors_carry_the_event_and_chat_id_read_before_them() {
    let cases: [(&str, EventKind, Option<&str>); 6] = [
        (
            "invalid/wait-negative.json",
            EventKind::ChatClose,
            Some("104111"),
        ),
        (
            "invalid/users-broken.json",
            EventKind::ChatClose,
            Some("104111"),
        ),
        ("invalid/close-without-id.json", EventKind::ChatClose, None),
        ("invalid/id-not-whole.json", EventKind::ChatClose, None),
        ("invalid/no-event.json", EventKind::Unknown, None),
        ("invalid/truncated.json", EventKind::Unknown, None),
    ];
    for (name, event, chat_id) in cases {
        let err = decode(JSON, &fixture(name)).expect_err(name);
        assert_eq!(err.event(), event, "{name}");
        assert_eq!(err.chat_id(), chat_id, "{name}");
    }
}

#[test]
fn content_types() {
    let body = fixture("chat-close-users-as-json-string.json");
    let accepted = [
        ("vendor's capitals", Some("application/JSON")),
        ("charset parameter", Some("application/json; charset=UTF-8")),
        (
            "upper case with parameter",
            Some("APPLICATION/JSON;charset=utf-8"),
        ),
        ("no Content-Type", None),
        ("empty Content-Type", Some("")),
        ("curl -d labels JSON as a form", FORM),
    ];
    for (name, content_type) in accepted {
        assert_eq!(
            decode(content_type, &body),
            Ok(documented_close()),
            "{name}"
        );
    }
    let refused = [
        ("application/xml", "application/xml"),
        ("text/xml; charset=utf-8", "text/xml"),
        ("text/plain", "text/plain"),
        ("multipart/form-data; boundary=x", "multipart/form-data"),
    ];
    for (content_type, shown) in refused {
        let err = decode(Some(content_type), &body).expect_err(content_type);
        assert_eq!(
            rejection_status(err.reason()).as_u16(),
            415,
            "{content_type}"
        );
        assert_eq!(
            err.reason().as_label(),
            "unsupported_media_type",
            "{content_type}"
        );
        assert_eq!(
            err.to_string(),
            format!(
                "unsupported Content-Type \"{shown}\": this receiver reads JSON; \
                 choose JSON as the response type in Acquire's webhook settings"
            ),
        );
    }
}

#[test]
fn form_encoded_events() {
    let users = r#"{"agent": {"name": "John Deo", "role": " Administrator "}}"#;
    let close = serde_urlencoded::to_string([
        ("id", "104111"),
        ("account_id", "10111"),
        ("department_id", ""),
        ("chat_wait_time", "2"),
        ("chat_duration", "25"),
        ("users", users),
        ("by", "agent-15111"),
        ("event", "CHAT_ON_CLOSE"),
    ])
    .expect("form");
    assert_eq!(decode(FORM, close.as_bytes()), Ok(documented_close()));

    let unanswered = "id=9&chat_wait_time=null&chat_duration=40&users=&event=CHAT_ON_CLOSE";
    assert_eq!(
        decode(FORM, unanswered.as_bytes()),
        Ok(Event::Closed(ChatClosed {
            chat_id: "9".into(),
            account_id: String::new(),
            department_id: String::new(),
            agent_role: None,
            agent_id: None,
            wait_seconds: None,
            duration_seconds: Some(40.0),
        }))
    );

    let start = "data=ignored&+id=172&department_id=3&event=CHAT_ON_START";
    assert_eq!(
        decode(FORM, start.as_bytes()),
        Ok(Event::Started(ChatStarted {
            chat_id: "172".into(),
            account_id: String::new(),
            department_id: "3".into(),
        }))
    );

    let bad_wait = "id=9&chat_wait_time=NaN&event=CHAT_ON_CLOSE";
    assert_eq!(
        decode(FORM, bad_wait.as_bytes()).map_err(|e| e.to_string()),
        Err("field `chat_wait_time`: \"NaN\" is not a finite number of seconds".into())
    );
}

/// A close body with `wait` as the raw JSON for `chat_wait_time` (`None` leaves it out).
fn close_with_wait(wait: Option<&str>) -> String {
    let wait = wait.map_or(String::new(), |w| format!(r#""chat_wait_time": {w},"#));
    format!(r#"{{"id": 7, {wait} "chat_duration": 60, "event": "CHAT_ON_CLOSE"}}"#)
}

#[test]
fn wait_values() {
    let cases: [(&str, Option<&str>, Option<f64>); 12] = [
        ("string", Some(r#""2""#), Some(2.0)),
        ("number", Some("2"), Some(2.0)),
        ("fraction", Some("2.5"), Some(2.5)),
        ("fraction as text", Some(r#"" 2.5 ""#), Some(2.5)),
        ("exponent", Some("1e3"), Some(1000.0)),
        ("zero", Some(r#""0""#), Some(0.0)),
        ("exactly 30 days", Some(r#""2592000""#), Some(2_592_000.0)),
        ("text null", Some(r#""null""#), None),
        ("empty text", Some(r#""""#), None),
        ("blank text", Some(r#""  ""#), None),
        ("JSON null", Some("null"), None),
        ("absent", None, None),
    ];
    for (name, wait, want) in cases {
        let got = decode(JSON, close_with_wait(wait).as_bytes());
        match got {
            Ok(Event::Closed(closed)) => {
                assert_eq!(closed.wait_seconds, want, "{name}");
                assert_eq!(closed.duration_seconds, Some(60.0), "{name}");
                assert_eq!(closed.chat_id, "7", "{name}");
            }
            other => panic!("{name}: {other:?}"),
        }
    }
}

#[test]
fn ids_as_numbers_or_strings_become_decimal_strings() {
    let cases = [
        (
            "number",
            r#""id": 104111, "account_id": 10111, "department_id": 3"#,
            ("104111", "10111", "3"),
        ),
        (
            "string",
            r#""id": "104111", "account_id": "10111", "department_id": "3""#,
            ("104111", "10111", "3"),
        ),
        (
            "padded",
            r#""id": " 104111 ", "account_id": "10111 ", "department_id": " 3""#,
            ("104111", "10111", "3"),
        ),
        (
            "whole float",
            r#""id": 104111.0, "account_id": 1e4, "department_id": 3"#,
            ("104111", "10000", "3"),
        ),
        (
            "no department",
            r#""id": 1, "account_id": "null", "department_id": """#,
            ("1", "", ""),
        ),
        (
            "null department",
            r#""id": 1, "department_id": null"#,
            ("1", "", ""),
        ),
    ];
    for (name, fields, (chat_id, account_id, department_id)) in cases {
        let body = format!(r#"{{{fields}, "event": "CHAT_ON_CLOSE"}}"#);
        match decode(JSON, body.as_bytes()) {
            Ok(Event::Closed(closed)) => {
                assert_eq!(closed.chat_id, chat_id, "{name}");
                assert_eq!(closed.account_id, account_id, "{name}");
                assert_eq!(closed.department_id, department_id, "{name}");
            }
            other => panic!("{name}: {other:?}"),
        }
    }
}

#[test]
fn agent_role_and_closer() {
    let cases = [
        (
            "role trimmed and lower-cased",
            r#""users": {"agent": {"role": "  Team Lead "}}, "by": "agent-1""#,
            Some("team lead"),
            Some("agent-1"),
        ),
        (
            "no agent",
            r#""users": {"visitor": {"name": "x"}}, "by": "visitor-9""#,
            None,
            None,
        ),
        ("agent null", r#""users": {"agent": null}"#, None, None),
        (
            "agent text null",
            r#""users": "{\"agent\": \"null\"}""#,
            None,
            None,
        ),
        (
            "empty role",
            r#""users": {"agent": {"role": "   "}}"#,
            None,
            None,
        ),
        (
            "role null",
            r#""users": {"agent": {"role": null}}"#,
            None,
            None,
        ),
        (
            "users text null",
            r#""users": "null", "by": "system""#,
            None,
            None,
        ),
        ("users empty text", r#""users": """#, None, None),
        (
            "users JSON null",
            r#""users": null, "by": 15111"#,
            None,
            None,
        ),
    ];
    for (name, fields, role, closer) in cases {
        let body = format!(r#"{{"id": "1", {fields}, "event": "CHAT_ON_CLOSE"}}"#);
        match decode(JSON, body.as_bytes()) {
            Ok(Event::Closed(closed)) => {
                assert_eq!(closed.agent_role.as_deref(), role, "{name}");
                assert_eq!(closed.agent_id.as_deref(), closer, "{name}");
            }
            other => panic!("{name}: {other:?}"),
        }
    }
}

#[test]
fn accepting_agent() {
    let cases = [
        (
            "agent",
            r#"{"id": "agent-7", "type": "agent", "name": "x"}"#,
            Some("agent-7"),
        ),
        ("no type", r#"{"id": 15416}"#, Some("15416")),
        (
            "as JSON text",
            r#""{\"id\": \"agent-7\", \"type\": \"agent\"}""#,
            Some("agent-7"),
        ),
        ("a bot", r#"{"id": "bot-1", "type": "bot"}"#, None),
        ("null", "null", None),
    ];
    for (name, user, agent_id) in cases {
        let body = format!(r#"{{"id": "32654", "user": {user}, "event": "CHAT_ON_ACCEPT"}}"#);
        assert_eq!(
            decode(JSON, body.as_bytes()),
            Ok(Event::Accepted(ChatAccepted {
                chat_id: "32654".into(),
                account_id: String::new(),
                agent_id: agent_id.map(String::from),
            })),
            "{name}"
        );
    }
}

#[test]
fn envelopes_for_every_event() {
    let cases = [
        (
            r#"{"data": {"id": 5}, "event": "CHAT_ON_ACCEPT"}"#,
            EventKind::ChatAccept,
        ),
        (
            r#"{"data": {"id": 5, "event": "CHAT_ON_START"}}"#,
            EventKind::ChatStart,
        ),
        (
            r#"{"data": {"id": 5}, "event": "CHAT_ON_CLOSE"}"#,
            EventKind::ChatClose,
        ),
        (
            r#"{"data": {"id": 5}, "event": "CHAT_ON_MESSAGE"}"#,
            EventKind::ChatMessage,
        ),
        (
            r#"{"data": {"id": 5}, "event": "CHAT_ON_TRANSFER"}"#,
            EventKind::Unknown,
        ),
        (
            r#"{"data": "text", "id": 5, "event": "chat_on_close"}"#,
            EventKind::ChatClose,
        ),
    ];
    for (body, kind) in cases {
        let event = decode(JSON, body.as_bytes()).unwrap_or_else(|e| panic!("{body}: {e}"));
        assert_eq!(event.kind(), kind, "{body}");
    }
}

#[test]
fn event_labels() {
    let cases = [
        ("CHAT_ON_START", "chat_start"),
        ("CHAT_ON_ACCEPT", "chat_accept"),
        ("CHAT_ON_MESSAGE", "chat_message"),
        ("CHAT_ON_CLOSE", "chat_close"),
        (" chat_on_close ", "chat_close"),
        ("CHAT_ON_TRANSFER", "unknown"),
        ("", "unknown"),
    ];
    for (wire, label) in cases {
        assert_eq!(EventKind::from_wire(wire).as_label(), label, "{wire:?}");
    }
}

/// `depth` levels of `open`, then (when `closed`) a `1` and the closing brackets.
fn nested(open: &str, close: &str, depth: usize, closed: bool) -> String {
    let mut s = open.repeat(depth);
    if closed {
        s.push('1');
        s.push_str(&close.repeat(depth));
    }
    s
}

#[test]
fn deep_nesting_never_overflows_the_stack() {
    let depth = 200_000;
    let cases = [
        (
            "top level",
            nested("[", "]", depth, false),
            "malformed_body",
        ),
        (
            "top-level objects",
            nested(r#"{"a":"#, "}", depth, false),
            "malformed_body",
        ),
        (
            "closed, without an event",
            nested(r#"{"a":"#, "}", depth, true),
            "missing_field",
        ),
        (
            "ignored field, unclosed",
            format!(
                r#"{{"id": 1, "event": "CHAT_ON_CLOSE", "x": {}"#,
                nested("[", "]", depth, false)
            ),
            "malformed_body",
        ),
        (
            "as the wait",
            format!(
                r#"{{"id": 1, "event": "CHAT_ON_CLOSE", "chat_wait_time": {}}}"#,
                nested("[", "]", depth, true)
            ),
            "invalid_field",
        ),
        (
            "inside users",
            format!(
                r#"{{"id": 1, "event": "CHAT_ON_CLOSE", "users": {{"agent": {}}}}}"#,
                nested(r#"{"role":"#, "}", depth, true)
            ),
            "invalid_field",
        ),
        (
            "inside users text",
            format!(
                r#"{{"id": 1, "event": "CHAT_ON_CLOSE", "users": "{}"}}"#,
                nested("[", "]", depth, true)
            ),
            "invalid_field",
        ),
        (
            "inside a string to recover",
            format!(
                r#"{{"id": 1, "users": "{}", "event": "CHAT_ON_CLOSE"}}"#,
                nested(r#"{"a":"#, "}", depth, false)
            ),
            "malformed_body",
        ),
    ];
    for (name, body, reason) in cases {
        let err = decode(JSON, body.as_bytes()).expect_err(name);
        assert_eq!(err.reason().as_label(), reason, "{name}: {err}");
    }
    let valid_but_deep = format!(
        r#"{{"id": 1, "event": "CHAT_ON_CLOSE", "x": {}}}"#,
        nested("[", "]", depth, true)
    );
    assert!(
        matches!(
            decode(JSON, valid_but_deep.as_bytes()),
            Ok(Event::Closed(_))
        ),
        "deep nesting in a field the decoder skips is read without recursion"
    );
}

/// `size` bytes of `unit` repeated, or of binary noise without one.
fn garbage(unit: Option<&str>, size: usize) -> Vec<u8> {
    match unit {
        Some(unit) => unit.repeat(size / unit.len()).into_bytes(),
        None => (0..size).map(|i| (i * 7919 % 251) as u8).collect(),
    }
}

/// The shortest of three decodes of `body`, and the error it gave.
fn quickest_refusal(body: &[u8]) -> (Duration, DecodeError) {
    let mut quickest = Duration::MAX;
    let mut error = None;
    for _ in 0..3 {
        let started = Instant::now();
        let err = decode(JSON, body).expect_err("garbage is refused");
        quickest = quickest.min(started.elapsed());
        error = Some(err);
    }
    (quickest, error.unwrap())
}

#[test]
fn ten_megabytes_of_garbage_fail_fast() {
    let size = 10 * 1024 * 1024;
    let cases = [
        ("binary", None),
        ("letters", Some("garbage ")),
        ("brackets", Some("{[")),
        ("strings to recover", Some(r#"{"a":"{"a":"[[{"x":"#)),
        ("quotes after colons", Some(r#":" {"#)),
    ];
    for (name, unit) in cases {
        // Linear time: eight times the input takes about eight times as long (quadratic, 64
        // times), whatever the machine's speed; the shorter input takes at least a millisecond
        // in the comparison, so that timer noise on a tiny figure cannot fail it.
        let (small, _) = quickest_refusal(&garbage(unit, size / 8));
        let (full, err) = quickest_refusal(&garbage(unit, size));
        let small = small.max(Duration::from_millis(1));
        assert!(
            full < small * 32,
            "{name}: {full:?} for 10 MiB, {small:?} for an eighth of it"
        );
        assert_eq!(err.reason().as_label(), "malformed_body", "{name}: {err}");
        assert!(err.to_string().len() < 200, "{name}: message is short");
    }
}

#[test]
fn long_values_are_cut_in_messages() {
    let long = "x".repeat(10_000);
    let body = format!(r#"{{"id": 1, "chat_wait_time": "{long}", "event": "CHAT_ON_CLOSE"}}"#);
    let err = decode(JSON, body.as_bytes()).expect_err("long wait");
    let expected = format!(
        "field `chat_wait_time`: \"{}…\" is not a number of seconds",
        "x".repeat(40)
    );
    assert_eq!(
        err,
        expected_invalid("chat_wait_time", &expected, Some("1"))
    );
}

fn expected_invalid(field: &'static str, message: &str, chat_id: Option<&str>) -> DecodeError {
    let prefix = format!("field `{field}`: ");
    DecodeError::InvalidField {
        field,
        problem: message.strip_prefix(&prefix).unwrap_or(message).to_owned(),
        event: EventKind::ChatClose,
        chat_id: chat_id.map(String::from),
    }
}
