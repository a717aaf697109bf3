//! Property tests of the whole service in-process: whatever a client sends, the answer is a 200
//! or a 4xx, never a 5xx, and a refused body changes no histogram.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use acquire_exporter::auth::SenderAuth;
use acquire_exporter::config::Settings;
use acquire_exporter::expose::Exposition;
use acquire_exporter::record::Metrics;
use acquire_exporter::store::Store;
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
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let request = Request::post("/webhook")
            .header("content-type", content_type)
            .body(Body::from(body))
            .unwrap();
        app(state.clone())
            .oneshot(request)
            .await
            .unwrap()
            .status()
            .as_u16()
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
