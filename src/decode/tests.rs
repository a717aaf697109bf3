//! Tests of the decoder: the vendor's shapes, the recovery, the field rules and the limits.

use super::fields::{id_text, seconds};
use super::reader::Scalar;
use super::*;
use proptest::prelude::*;

const VERBATIM_CLOSE: &str =
    include_str!("../../tests/fixtures/chat-close-doc-example-verbatim.json");
const VERBATIM_MESSAGE: &str =
    include_str!("../../tests/fixtures/chat-message-doc-example-verbatim.json");
const ESCAPED_CLOSE: &str =
    include_str!("../../tests/fixtures/chat-close-users-as-json-string.json");

#[test]
fn content_type_table() {
    let cases: [(Option<&str>, Option<BodyFormat>); 10] = [
        (None, Some(BodyFormat::Json)),
        (Some(""), Some(BodyFormat::Json)),
        (Some("application/json"), Some(BodyFormat::Json)),
        (Some("application/JSON"), Some(BodyFormat::Json)),
        (
            Some(" Application/Json ; charset=utf-8"),
            Some(BodyFormat::Json),
        ),
        (
            Some("application/x-www-form-urlencoded"),
            Some(BodyFormat::Form),
        ),
        (
            Some("Application/X-WWW-Form-Urlencoded; charset=UTF-8"),
            Some(BodyFormat::Form),
        ),
        (Some("application/xml"), None),
        (Some("text/plain"), None),
        (Some("application/jsonx"), None),
    ];
    for (content_type, want) in cases {
        assert_eq!(body_format(content_type).ok(), want, "{content_type:?}");
    }
}

#[test]
fn seconds_table() {
    let text = |s: &'static str| Scalar::Text(Cow::Borrowed(s));
    let ok: [(Scalar<'_>, Option<f64>); 14] = [
        (text("2"), Some(2.0)),
        (text(" 25 "), Some(25.0)),
        (text("2.5"), Some(2.5)),
        (text(".5"), Some(0.5)),
        (text("5."), Some(5.0)),
        (text("+3"), Some(3.0)),
        (text("1e3"), Some(1000.0)),
        (text("2592000"), Some(MAX_SECONDS)),
        (text("null"), None),
        (text(""), None),
        (Scalar::Null, None),
        (Scalar::UInt(7), Some(7.0)),
        (Scalar::Int(0), Some(0.0)),
        (Scalar::Float(1.25), Some(1.25)),
    ];
    for (value, want) in ok {
        assert_eq!(seconds(&value), Ok(want), "{value:?}");
    }
    assert!(
        seconds(&text("-0")).is_ok_and(|s| s.is_some_and(|s| s.is_sign_positive())),
        "-0 is recorded as 0"
    );
    let refused: [(Scalar<'_>, &str); 16] = [
        (text("-1"), "\"-1\" is negative"),
        (Scalar::Int(-1), "-1 is negative"),
        (Scalar::Float(-0.5), "-0.5 is negative"),
        (
            text("2592000.5"),
            "\"2592000.5\" is longer than 30 days (2592000 seconds)",
        ),
        (
            Scalar::UInt(3_000_000),
            "3000000 is longer than 30 days (2592000 seconds)",
        ),
        (text("NaN"), "\"NaN\" is not a finite number of seconds"),
        (text("-inf"), "\"-inf\" is not a finite number of seconds"),
        (
            text("+Infinity"),
            "\"+Infinity\" is not a finite number of seconds",
        ),
        (text("1e400"), "\"1e400\" is not a finite number of seconds"),
        (text("abc"), "\"abc\" is not a number of seconds"),
        (text("0x10"), "\"0x10\" is not a number of seconds"),
        (text("1_000"), "\"1_000\" is not a number of seconds"),
        (text("1e"), "\"1e\" is not a number of seconds"),
        (text("."), "\".\" is not a number of seconds"),
        (text("2 s"), "\"2 s\" is not a number of seconds"),
        (
            Scalar::Array,
            "expected a number of seconds, found an array",
        ),
    ];
    for (value, problem) in refused {
        assert_eq!(seconds(&value), Err(problem.to_owned()), "{value:?}");
    }
}

#[test]
fn id_table() {
    let text = |s: &'static str| Scalar::Text(Cow::Borrowed(s));
    let cases: [(Scalar<'_>, Result<Option<&str>, String>); 11] = [
        (text("104111"), Ok(Some("104111"))),
        (text(" agent-1 "), Ok(Some("agent-1"))),
        (text("null"), Ok(None)),
        (text("  "), Ok(None)),
        (Scalar::Null, Ok(None)),
        (Scalar::UInt(104111), Ok(Some("104111"))),
        (Scalar::Int(-1), Ok(Some("-1"))),
        (Scalar::Float(172.0), Ok(Some("172"))),
        (
            Scalar::Float(1e300),
            Err("1e300 is not a whole number".into()),
        ),
        (
            text("a\u{7}b"),
            Err("\"a\\u{7}b\" contains a control character".into()),
        ),
        (
            Scalar::Bool(true),
            Err("expected a string or a number, found a boolean".into()),
        ),
    ];
    for (value, want) in cases {
        let want = want.map(|id| id.map(String::from));
        assert_eq!(id_text(&value), want, "{value:?}");
    }
    let longest = "7".repeat(MAX_VALUE_CHARS);
    assert_eq!(
        id_text(&Scalar::Text(Cow::Borrowed(&longest))),
        Ok(Some(longest.clone()))
    );
}

#[test]
fn messages_cut_values_at_a_character_boundary() {
    let long = "é".repeat(50);
    assert_eq!(cut(&long), format!("{}…", "é".repeat(40)));
    assert_eq!(cut("short"), "short");
    assert_eq!(echo("say \"hi\""), "\"say \\\"hi\\\"\"");
}

#[test]
fn recovery_unwraps_the_vendor_examples_in_place() {
    for example in [VERBATIM_CLOSE, VERBATIM_MESSAGE] {
        assert!(parse_json(example, ReadFields { envelope: true }).is_err());
        let rewritten = recover(example).expect("an embedded JSON value");
        assert_eq!(rewritten.len(), example.len(), "positions are kept");
        assert_eq!(rewritten.lines().count(), example.lines().count());
        assert!(parse_json(&rewritten, ReadFields { envelope: true }).is_ok());
    }
}

#[test]
fn recovery_refuses_what_is_not_an_embedded_json_value() {
    let cases = [
        ("unbalanced", r#"{"users":"{"a":1", "event":"x"}"#),
        ("not JSON inside", r#"{"users":"{a}", "event":"x"}"#),
        ("no closing quote", r#"{"users":"{"a":1} x", "event":"x"}"#),
        (
            "trailing comma inside",
            r#"{"users":"{"a":1,}", "event":"x"}"#,
        ),
        ("a key, not a value", r#"{"{"a":1}":1 "#),
        ("text before the bracket", r#"{"users":"x{"a":1}"}"#),
    ];
    for (name, body) in cases {
        assert_eq!(recover(body), None, "{name}");
    }
}

#[test]
fn recovery_reports_the_original_error_when_the_rewrite_still_fails() {
    let broken = VERBATIM_CLOSE.replace("\"by\":\"agent-15111\",", "\"by\":\"agent-15111\",,");
    assert!(recover(&broken).is_some(), "users is still unwrapped");
    assert_eq!(
        decode(None, broken.as_bytes()),
        Err(malformed(
            "body is not valid JSON: control character (\\u0000-\\u001F) found while \
             parsing a string at line 23 column 12"
                .into()
        ))
    );
}

#[test]
fn recovery_gives_up_after_sixteen_rejected_candidates() {
    let users = r#""users":"{"agent":{"role":"A"}}", "id":"1", "event":"CHAT_ON_CLOSE""#;
    let rejected = |n: usize| {
        (0..n)
            .map(|i| format!(r#""f{i}":"{{x}}", "#))
            .collect::<String>()
    };
    let within = format!("{{{}{users}}}", rejected(MAX_RECOVERY_FAILURES - 1));
    let beyond = format!("{{{}{users}}}", rejected(MAX_RECOVERY_FAILURES));
    assert!(matches!(
        decode(None, within.as_bytes()),
        Ok(Event::Closed(_))
    ));
    assert_eq!(
        decode(None, beyond.as_bytes()).map_err(|e| e.reason()),
        Err(Reason::MalformedBody)
    );
}

#[test]
fn a_valid_body_is_never_rewritten() {
    // A string that merely looks like JSON stays a string when the body parses.
    let body = r#"{"id":"1","department_id":"[3]","event":"CHAT_ON_START"}"#;
    assert_eq!(
        decode(None, body.as_bytes()).map_err(|e| e.to_string()),
        Ok(Event::Started(ChatStarted {
            chat_id: "1".into(),
            account_id: String::new(),
            department_id: "[3]".into(),
        }))
    );
}

#[test]
fn envelope_fields_win_over_those_beside_them_and_the_outer_event_wins() {
    let body = r#"{"id": "outer", "account_id": "9", "event": "CHAT_ON_START",
                   "data": {"id": "inner", "event": "CHAT_ON_CLOSE"}}"#;
    assert_eq!(
        decode(None, body.as_bytes()),
        Ok(Event::Started(ChatStarted {
            chat_id: "inner".into(),
            account_id: "9".into(),
            department_id: String::new(),
        }))
    );
    let nested = r#"{"data": {"data": {"id": "deeper"}, "id": "1"}, "event": "CHAT_ON_START"}"#;
    assert!(
        matches!(decode(None, nested.as_bytes()), Ok(Event::Started(s)) if s.chat_id == "1"),
        "only one level of envelope is read"
    );
}

#[test]
fn the_envelope_keys_are_read_in_any_letter_case() {
    let start = |id: &str| {
        Ok(Event::Started(ChatStarted {
            chat_id: id.into(),
            account_id: String::new(),
            department_id: String::new(),
        }))
    };
    let cases = [
        (
            "as the prose writes them",
            r#"{"Data": {"id": "1"}, "Event": "CHAT_ON_START"}"#,
        ),
        (
            "capitals",
            r#"{"DATA": {"id": "1"}, "EVENT": "CHAT_ON_START"}"#,
        ),
        (
            "mixed",
            r#"{"dAtA": {"id": "1", "eVeNt": "CHAT_ON_START"}}"#,
        ),
    ];
    for (name, body) in cases {
        assert_eq!(decode(None, body.as_bytes()), start("1"), "{name}");
    }
    // Only those two: other keys stay exact.
    assert_eq!(
        decode(None, br#"{"ID": "1", "Event": "CHAT_ON_START"}"#),
        Err(DecodeError::MissingField {
            field: "id",
            event: EventKind::ChatStart,
            chat_id: None,
        })
    );
}

#[test]
fn message_and_unknown_events_are_not_validated() {
    let body = r#"{"chat_wait_time": "NaN", "users": 5, "event": "CHAT_ON_MESSAGE"}"#;
    assert_eq!(
        decode(None, body.as_bytes()),
        Ok(Event::Other(EventKind::ChatMessage))
    );
    let body = r#"{"event": "SOMETHING_NEW"}"#;
    assert_eq!(
        decode(None, body.as_bytes()),
        Ok(Event::Other(EventKind::Unknown))
    );
}

#[test]
fn a_byte_order_mark_is_ignored() {
    let body = format!("\u{feff}{ESCAPED_CLOSE}");
    assert_eq!(
        decode(None, body.as_bytes()),
        decode(None, ESCAPED_CLOSE.as_bytes())
    );
    assert!(decode(None, body.as_bytes()).is_ok());
}

#[test]
fn accept_ignores_its_null_wait() {
    let body = r#"{"id": "5", "chat_wait_time": "null", "event": "CHAT_ON_ACCEPT"}"#;
    assert!(matches!(
        decode(None, body.as_bytes()),
        Ok(Event::Accepted(_))
    ));
}

#[test]
fn error_positions_point_at_the_line_break_not_the_next_line() {
    assert_eq!(position("ab\ncd", 2, 0), (1, 3));
    assert_eq!(position("ab\ncd", 2, 1), (2, 1));
    assert_eq!(position("ab", 1, 0), (1, 0));
}

#[test]
fn the_documented_close_decodes_the_same_from_every_shape() {
    let escaped = decode(Some("application/JSON"), ESCAPED_CLOSE.as_bytes());
    assert!(matches!(escaped, Ok(Event::Closed(_))));
    assert_eq!(decode(None, VERBATIM_CLOSE.as_bytes()), escaped);
}

/// Every error has a decoder's reason and a short, non-empty message.
fn assert_well_formed(result: &Result<Event>) {
    if let Err(e) = result {
        assert!(
            [
                Reason::MalformedBody,
                Reason::MissingField,
                Reason::InvalidField,
                Reason::UnsupportedMediaType,
            ]
            .contains(&e.reason())
        );
        let message = e.to_string();
        assert!(
            !message.is_empty() && message.chars().count() < 300,
            "{message}"
        );
    }
    if let Ok(Event::Closed(c)) = result {
        for secs in [c.wait_seconds, c.duration_seconds].into_iter().flatten() {
            assert!((0.0..=MAX_SECONDS).contains(&secs) && secs.is_sign_positive());
        }
    }
}

fn json_value() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("null".to_owned()),
        Just("\"null\"".to_owned()),
        Just("\"\"".to_owned()),
        Just("true".to_owned()),
        any::<i64>().prop_map(|n| n.to_string()),
        any::<f64>().prop_map(|x| format!("\"{x}\"")),
        (-1e7f64..1e7).prop_map(|x| x.to_string()),
        "\"[ -~]{0,12}\"",
        Just(r#""{\"agent\": {\"role\": \"Operator\"}}""#.to_owned()),
        Just(r#"{"agent": {"role": 3}}"#.to_owned()),
        Just(r#""{"agent": {"role": "A"}}""#.to_owned()),
        Just("[[{}]]".to_owned()),
    ]
}

fn json_ish_body() -> impl Strategy<Value = String> {
    let key = prop_oneof![
        Just("id"),
        Just(" id"),
        Just("event"),
        Just("account_id"),
        Just("department_id"),
        Just("chat_wait_time"),
        Just("chat_duration"),
        Just("users"),
        Just("user"),
        Just("by"),
        Just("data"),
        Just("other"),
    ];
    let event = prop_oneof![
        Just("\"CHAT_ON_CLOSE\""),
        Just("\"CHAT_ON_START\""),
        Just("\"CHAT_ON_ACCEPT\""),
        Just("\"chat_on_message\""),
        Just("7"),
    ];
    (proptest::collection::vec((key, json_value()), 0..10), event).prop_map(|(fields, event)| {
        let mut body = format!("{{\"event\": {event}");
        for (key, value) in fields {
            body.push_str(&format!(", \"{key}\": {value}"));
        }
        body.push('}');
        body
    })
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(
        body in proptest::collection::vec(any::<u8>(), 0..600),
        content_type in proptest::option::of("[ -~]{0,40}"),
    ) {
        assert_well_formed(&decode(content_type.as_deref(), &body));
    }

    #[test]
    fn json_ish_text_never_panics(body in r#"[{}\[\]":, \n0-9a-z_.eE+\\-]{0,400}"#) {
        assert_well_formed(&decode(None, body.as_bytes()));
        assert_well_formed(&decode(Some("application/x-www-form-urlencoded"), body.as_bytes()));
    }

    #[test]
    fn known_fields_with_any_values_never_panic(body in json_ish_body()) {
        assert_well_formed(&decode(None, body.as_bytes()));
    }

    #[test]
    fn damaged_vendor_examples_never_panic(
        which in 0usize..3,
        at in any::<proptest::sample::Index>(),
        byte in any::<u8>(),
        keep in any::<proptest::sample::Index>(),
    ) {
        let example = [VERBATIM_CLOSE, VERBATIM_MESSAGE, ESCAPED_CLOSE][which].as_bytes();
        let mut body = example.to_vec();
        body[at.index(example.len())] = byte;
        body.truncate(keep.index(example.len() + 1));
        assert_well_formed(&decode(None, &body));
    }
}
