//! Property tests of the whole service in-process.
//!
//! - The vendor's shapes, generated as the vendor writes them (not through serde's model):
//!   `users` as an object, as JSON text and as printed (raw, not JSON), flat or in the `data`
//!   envelope, numbers as numbers or as strings with spaces, JSON or form-encoded, unicode and
//!   long values, waits and durations up to the 30-day limit. Each is decoded to exactly the
//!   event it describes, and answered 200 with exactly those values in the histograms.
//! - Whatever else a client sends, the answer is a 200 or a 4xx, and a refused body changes no
//!   histogram. (The store here is the memory-only one, which cannot fail: the 503 path is
//!   tested against a store that really cannot write, in tests/storage_failure.rs.)

mod common;

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use acquire_exporter::admit::Store;
use acquire_exporter::admit::auth::SenderAuth;
use acquire_exporter::config::Settings;
use acquire_exporter::decode::{ChatClosed, Event, decode};
use acquire_exporter::expose::{Exposition, Format};
use acquire_exporter::record::Metrics;
use acquire_exporter::{AppState, app};
use axum::body::Body;
use axum::http::Request;
use proptest::prelude::*;
use serde_json::{Map, Value, json};
use tower::ServiceExt;

fn state() -> Arc<AppState> {
    let metrics = Arc::new(Metrics::new(&Settings::default()));
    let sink = {
        let metrics = metrics.clone();
        Arc::new(move |e: &_| metrics.apply(e))
    };
    let store = Arc::new(Store::in_memory(Duration::from_secs(3600), sink));
    Arc::new(AppState {
        exposition: Arc::new(Exposition::new(metrics.clone())),
        metrics,
        store: OnceLock::from(store),
        auth: SenderAuth::new(None, None),
        web_config: None,
        max_body_bytes: 64 * 1024,
        webhook_path: "/webhook".into(),
        telemetry_path: "/metrics".into(),
        request_timeout: Duration::from_secs(5),
    })
}

/// Post one body; the status.
fn post(state: &Arc<AppState>, content_type: &str, body: Vec<u8>) -> u16 {
    post_answer(state, Some(content_type), body).0
}

/// Post one body with an optional content type; the status and the answer's body.
fn post_answer(state: &Arc<AppState>, content_type: Option<&str>, body: Vec<u8>) -> (u16, String) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let mut request = Request::post("/webhook");
        if let Some(content_type) = content_type {
            request = request.header("content-type", content_type);
        }
        let request = request.body(Body::from(body)).unwrap();
        let response = app(state.clone()).oneshot(request).await.unwrap();
        let status = response.status().as_u16();
        let body = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .unwrap();
        (status, String::from_utf8_lossy(&body).into_owned())
    })
}

const FIELDS: &[&str] = &[
    "id",
    " id",
    "event",
    "data",
    "account_id",
    "department_id",
    "chat_wait_time",
    "chat_duration",
    "users",
    "agent",
    "role",
    "by",
    "user",
    "type",
    "message",
];
const EVENTS: &[&str] = &[
    "CHAT_ON_CLOSE",
    "CHAT_ON_START",
    "CHAT_ON_ACCEPT",
    "CHAT_ON_MESSAGE",
    "X",
];

/// JSON made of the vendor's field names with values of any type: it reaches the decoder's
/// deeper paths far more often than random text does.
fn vendorish() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        any::<i64>().prop_map(Value::from),
        prop::sample::select(EVENTS).prop_map(Value::from),
        "[a-zA-Z0-9 .{}\"-]{0,12}".prop_map(Value::from),
        prop_oneof![
            Just("null"),
            Just(""),
            Just("2"),
            Just("-1"),
            Just("NaN"),
            Just("1e309"),
            Just("{\"agent\":{\"role\":\"x\"}}")
        ]
        .prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 48, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::vec((prop::sample::select(FIELDS), inner), 0..8).prop_map(|kv| {
                Value::Object(
                    kv.into_iter()
                        .map(|(k, v)| (k.to_owned(), v))
                        .collect::<Map<_, _>>(),
                )
            }),
        ]
    })
}

fn assert_client_answer(status: u16, what: &str) -> Result<(), TestCaseError> {
    prop_assert!(
        status == 200 || (400..500).contains(&status),
        "{what}: status {status}"
    );
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_get_a_200_or_a_4xx(body in prop::collection::vec(any::<u8>(), 0..2048), form in any::<bool>()) {
        let state = state();
        let content_type = if form { "application/x-www-form-urlencoded" } else { "application/JSON" };
        let status = post(&state, content_type, body);
        assert_client_answer(status, "bytes")?;
        if status != 200 {
            prop_assert_eq!(state.metrics.wait_count(), 0);
        }
    }

    #[test]
    fn arbitrary_vendor_shaped_json_gets_a_200_or_a_4xx(mut value in vendorish(), event in prop::sample::select(EVENTS)) {
        if let Value::Object(map) = &mut value {
            map.entry("event").or_insert_with(|| json!(event));
        }
        let state = state();
        let status = post(&state, "application/json", value.to_string().into_bytes());
        assert_client_answer(status, &value.to_string())?;
        if status != 200 {
            prop_assert_eq!(state.metrics.wait_count(), 0, "a refused body changed a histogram");
        }
    }
}

/// A scalar as the vendor may write it.
#[derive(Clone, Debug)]
enum Wire {
    /// A JSON string (its text as sent, spaces included).
    Text(String),
    /// A JSON number, as written.
    Number(String),
    /// JSON `null`.
    Null,
    /// The field is left out.
    Absent,
}

impl Wire {
    fn json(&self) -> Option<String> {
        match self {
            Wire::Text(t) => Some(serde_json::to_string(t).unwrap()),
            Wire::Number(n) => Some(n.clone()),
            Wire::Null => Some("null".into()),
            Wire::Absent => None,
        }
    }

    fn form(&self) -> Option<String> {
        match self {
            Wire::Text(t) => Some(t.clone()),
            Wire::Number(n) => Some(n.clone()),
            Wire::Null => Some("null".into()),
            Wire::Absent => None,
        }
    }
}

/// Letters of several scripts, digits, and the punctuation ids and roles carry.
const CHARS: &str = "[a-zA-Z0-9éÉüÜçÇßø€漢字🙂 _.-]";

/// Text of 1 to `max` characters (not a no-value word), and the same with spaces around it.
fn text(max: usize) -> impl Strategy<Value = (String, String)> {
    (
        proptest::string::string_regex(&format!("[a-zA-Zé漢🙂]{CHARS}{{0,{}}}", max - 1)).unwrap(),
        prop::sample::select(vec!["", " ", "  ", "\t"]),
    )
        .prop_filter("a value", |(t, _)| {
            let t = t.trim();
            !t.is_empty() && t != "null"
        })
        .prop_map(|(t, pad)| (t.trim().to_owned(), format!("{pad}{t}{pad}")))
}

/// An id: (what it decodes to, as sent).
fn id() -> impl Strategy<Value = (String, Wire)> {
    prop_oneof![
        any::<u32>().prop_map(|n| (n.to_string(), Wire::Number(n.to_string()))),
        any::<u32>().prop_map(|n| (n.to_string(), Wire::Text(format!(" {n} ")))),
        text(100).prop_map(|(t, sent)| (t, Wire::Text(sent))),
    ]
}

/// A number of seconds, or no value: (what it decodes to, as sent).
fn seconds() -> impl Strategy<Value = (Option<f64>, Wire)> {
    let value = prop_oneof![
        4 => (0u64..=2_592_000_000).prop_map(|ms| ms as f64 / 1000.0),
        1 => Just(0.0),
        1 => Just(2_592_000.0),
        1 => (2_591_000_000u64..=2_592_000_000).prop_map(|ms| ms as f64 / 1000.0),
    ];
    let some = (value, 0..4u8).prop_map(|(v, shape)| {
        let wire = match shape {
            0 => Wire::Number(serde_json::Number::from_f64(v).unwrap().to_string()),
            1 => Wire::Text(format!("{v}")),
            2 => Wire::Text(format!("  {v} ")),
            _ if v.fract() == 0.0 => Wire::Number(format!("{}", v as u64)),
            _ => Wire::Text(format!("{v:.3}")),
        };
        (Some(v), wire)
    });
    let none = prop::sample::select(vec![
        Wire::Text("null".into()),
        Wire::Text(String::new()),
        Wire::Text("  ".into()),
        Wire::Null,
        Wire::Absent,
    ])
    .prop_map(|w| (None, w));
    prop_oneof![4 => some, 1 => none]
}

/// How `users` is written.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Users {
    Object,
    JsonText,
    AsPrinted,
    Absent,
}

/// A close event in one of the vendor's shapes.
#[derive(Clone, Debug)]
struct VendorClose {
    chat_id: (String, Wire),
    account_id: (String, Wire),
    department_id: (String, Wire),
    role: Option<(String, String)>,
    users: Users,
    wait: (Option<f64>, Wire),
    duration: (Option<f64>, Wire),
    agent: u32,
    envelope: bool,
    event: &'static str,
    content_type: Option<&'static str>,
    form: bool,
}

fn vendor_close() -> impl Strategy<Value = VendorClose> {
    let department = prop_oneof![
        Just((String::new(), Wire::Absent)),
        Just((String::new(), Wire::Text(String::new()))),
        id(),
    ];
    (
        (id(), id(), department),
        prop::option::of(text(100)),
        prop::sample::select(vec![
            Users::Object,
            Users::JsonText,
            Users::AsPrinted,
            Users::Absent,
        ]),
        (seconds(), seconds()),
        (0u32..100_000, any::<bool>()),
        prop::sample::select(vec!["CHAT_ON_CLOSE", "chat_on_close", " Chat_On_Close "]),
        prop::sample::select(vec![
            Some("application/JSON"),
            Some("application/json; charset=utf-8"),
            None,
            Some("application/x-www-form-urlencoded"),
        ]),
    )
        .prop_map(
            |(
                (chat_id, account_id, department_id),
                role,
                users,
                (wait, duration),
                (agent, envelope),
                event,
                content_type,
            )| {
                let form = content_type == Some("application/x-www-form-urlencoded");
                VendorClose {
                    chat_id,
                    account_id,
                    department_id,
                    role,
                    // A form carries `users` as JSON text; without an agent it may be left out.
                    users: match users {
                        Users::Object | Users::AsPrinted if form => Users::JsonText,
                        u => u,
                    },
                    wait,
                    duration,
                    agent,
                    envelope: envelope && !form,
                    event,
                    content_type,
                    form,
                }
            },
        )
}

impl VendorClose {
    fn users_json(&self) -> String {
        let mut users = serde_json::json!({"visitor": {"name": "Visitor", "email": ""}});
        if let Some((_, sent)) = &self.role {
            users["agent"] = serde_json::json!({"name": "Agent", "role": sent, "photo": null});
        }
        users.to_string()
    }

    fn fields(&self) -> Vec<(&'static str, Wire)> {
        let mut fields = vec![
            ("id", self.chat_id.1.clone()),
            ("thread_id", Wire::Text("-1".into())),
            ("account_id", self.account_id.1.clone()),
            ("department_id", self.department_id.1.clone()),
            ("chat_wait_time", self.wait.1.clone()),
            ("chat_duration", self.duration.1.clone()),
            ("comments", Wire::Text("[]".into())),
            ("by", Wire::Text(format!("agent-{}", self.agent))),
        ];
        if !self.envelope {
            fields.push(("event", Wire::Text(self.event.into())));
        }
        fields
    }

    /// The body as the vendor would write it.
    fn body(&self) -> Vec<u8> {
        if self.form {
            let mut pairs: Vec<(&str, String)> = self
                .fields()
                .into_iter()
                .filter_map(|(k, v)| Some((k, v.form()?)))
                .collect();
            if self.users != Users::Absent {
                pairs.push(("users", self.users_json()));
            }
            return serde_urlencoded::to_string(pairs).unwrap().into_bytes();
        }
        let mut members: Vec<String> = self
            .fields()
            .into_iter()
            .filter_map(|(k, v)| Some(format!("\"{k}\": {}", v.json()?)))
            .collect();
        match self.users {
            Users::Object => members.push(format!("\"users\": {}", self.users_json())),
            Users::JsonText => members.push(format!(
                "\"users\": {}",
                serde_json::to_string(&self.users_json()).unwrap()
            )),
            // The vendor's doc example: the object's text between quotes, unescaped.
            Users::AsPrinted => members.push(format!("\"users\":\"{}\"", self.users_json())),
            Users::Absent => {}
        }
        let flat = format!("{{{}}}", members.join(",\n  "));
        if self.envelope {
            format!(
                "{{\"data\": {flat}, \"event\": {}}}",
                serde_json::to_string(self.event).unwrap()
            )
            .into_bytes()
        } else {
            flat.into_bytes()
        }
    }

    fn role(&self) -> Option<String> {
        let users = self.users != Users::Absent;
        self.role
            .as_ref()
            .filter(|_| users)
            .map(|(t, _)| t.to_lowercase())
    }

    fn expected(&self) -> Event {
        Event::Closed(ChatClosed {
            chat_id: self.chat_id.0.clone(),
            account_id: self.account_id.0.clone(),
            department_id: self.department_id.0.clone(),
            agent_role: self.role(),
            agent_id: Some(format!("agent-{}", self.agent)),
            wait_seconds: self.wait.0,
            duration_seconds: self.duration.0,
        })
    }
}

/// A label value as recorded: `none` when empty, `other` past 128 bytes.
fn label(value: &str) -> String {
    match value.len() {
        0 => "none".into(),
        n if n > 128 => "other".into(),
        _ => value.to_owned(),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 384, ..ProptestConfig::default() })]

    #[test]
    fn every_vendor_shape_decodes_to_its_values_and_records_them(close in vendor_close()) {
        let body = close.body();
        let shown = String::from_utf8_lossy(&body).into_owned();
        prop_assert_eq!(decode(close.content_type, &body), Ok(close.expected()), "{}", shown);

        let state = state();
        let (status, answer) = post_answer(&state, close.content_type, body);
        prop_assert_eq!(status, 200, "{}: {}", shown, answer);
        prop_assert!(answer.contains("observed"), "{}", answer);
        let mut page = Vec::new();
        state.exposition.encode(Format::Text, &mut page);
        let page = String::from_utf8(page).unwrap();
        let department = label(&close.department_id.0);
        let role = label(close.role().as_deref().unwrap_or(""));
        let series = format!(r#"{{agent_role="{role}",department="{department}"}}"#);
        let sample = |name: &str| common::sample(&page, &format!("{name}{series}"));
        // A zero wait with no agent is a chat nobody answered.
        let wait = close.wait.0.filter(|w| *w > 0.0 || close.role().is_some());
        match wait {
            Some(w) => {
                prop_assert_eq!(sample("acquire_chat_wait_time_seconds_count"), Some(1.0), "{}", shown);
                prop_assert_eq!(sample("acquire_chat_wait_time_seconds_sum"), Some(w), "{}", shown);
            }
            None => {
                prop_assert_eq!(sample("acquire_chat_wait_time_seconds_count"), None, "{}", shown);
                let unanswered = common::sample(
                    &page,
                    &format!(r#"acquire_chats_unanswered_total{{department="{department}"}}"#),
                );
                prop_assert_eq!(unanswered, Some(1.0), "{}", shown);
            }
        }
        prop_assert_eq!(
            sample("acquire_chat_duration_seconds_sum"),
            close.duration.0,
            "{}",
            shown
        );
    }
}
