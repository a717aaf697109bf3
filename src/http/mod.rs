//! HTTP: the webhook receiver, `/metrics`, the landing page and the health endpoints.

pub mod serve;
pub mod webconfig;

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use serde_json::json;

use crate::admit::auth::SenderAuth;
use crate::admit::{Admission, Store, StoredEvent};
use crate::decode::{self, Event, EventKind};
use crate::expose;
use crate::http::webconfig::{BasicAuthOutcome, WebConfig};
use crate::record::{Metrics, Outcome, Reason};

/// Everything a request needs.
#[derive(Debug)]
pub struct AppState {
    /// The metrics.
    pub metrics: Arc<Metrics>,
    /// The admission store.
    pub store: Arc<Store>,
    /// Sender authentication of the webhook.
    pub auth: SenderAuth,
    /// TLS and basic auth of `/metrics` (exporter-toolkit format), if configured.
    pub web_config: Option<WebConfig>,
    /// Largest webhook body, in bytes.
    pub max_body_bytes: usize,
    /// Path of the webhook.
    pub webhook_path: String,
    /// Path of the metrics.
    pub telemetry_path: String,
    /// Time a request may take, body included.
    pub request_timeout: Duration,
}

/// The service's routes over `state`.
pub fn app(state: Arc<AppState>) -> Router {
    let guarded = Router::new()
        .route(&state.telemetry_path, get(metrics))
        .route("/", get(landing))
        .route_layer(middleware::from_fn_with_state(state.clone(), basic_auth));
    let mut router = Router::new()
        .route(&state.webhook_path, post(webhook))
        .route("/-/healthy", get(|| async { "Healthy\n" }))
        .route("/-/ready", get(ready))
        .merge(guarded);
    // Only when the web config sets response headers: the layer costs every request a boxed call.
    if state
        .web_config
        .as_ref()
        .is_some_and(|web| !web.response_headers().is_empty())
    {
        router = router.layer(middleware::from_fn_with_state(
            state.clone(),
            common_headers,
        ));
    }
    router
        .layer(tower_http::timeout::TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            state.request_timeout,
        ))
        .with_state(state)
}

/// A refusal: status, counted reason, message for the client.
fn refuse(status: StatusCode, message: impl Into<String>) -> Response {
    (status, axum::Json(json!({ "error": message.into() }))).into_response()
}

const OBSERVED: &str = "{\"status\":\"observed\"}";
const DUPLICATE: &str = "{\"status\":\"duplicate\"}";
const IGNORED: &str = "{\"status\":\"ignored\"}";

fn ok(body: &'static str) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

async fn webhook(State(state): State<Arc<AppState>>, request: Request) -> Response {
    // Taken whole: the header map and the query are borrowed, not copied, on this hot path.
    let (parts, body) = request.into_parts();
    let headers = &parts.headers;
    let query = parts.uri.query();
    let metrics = &state.metrics;
    let reject = |kind: EventKind,
                  reason: Reason,
                  status: StatusCode,
                  message: String,
                  chat_id: Option<&str>| {
        metrics.rejected(kind, reason);
        tracing::warn!(
            reason = reason.as_label(),
            event = kind.as_label(),
            chat_id = chat_id.unwrap_or(""),
            "webhook rejected: {message}"
        );
        refuse(status, message)
    };

    let limit = state.max_body_bytes;
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return too_large(&reject, limit);
    }
    let bytes = match Limited::new(body, limit).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(e) if e.is::<LengthLimitError>() => return too_large(&reject, limit),
        Err(e) => {
            return reject(
                EventKind::Unknown,
                Reason::MalformedBody,
                StatusCode::BAD_REQUEST,
                format!("could not read the body: {e}"),
                None,
            );
        }
    };

    if let Err(e) = state.auth.check(query, headers, &bytes) {
        let response = reject(
            EventKind::Unknown,
            Reason::Unauthorized,
            StatusCode::UNAUTHORIZED,
            e.to_string(),
            None,
        );
        return response;
    }

    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    let event = match decode::decode(content_type, &bytes) {
        Ok(event) => event,
        Err(e) => {
            let status = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::BAD_REQUEST);
            return reject(
                e.event(),
                Reason::from_label(e.reason()),
                status,
                e.to_string(),
                e.chat_id(),
            );
        }
    };

    let kind = event.kind();
    let Some(stored) = to_stored(event) else {
        metrics.received(kind, Outcome::Ignored);
        return ok(IGNORED);
    };
    match state.store.admit(stored).await {
        // The store has handed a new event to the metrics already, on the commit side.
        Ok(Admission::New) => {
            metrics.received(kind, Outcome::Observed);
            ok(OBSERVED)
        }
        Ok(Admission::Duplicate) => {
            metrics.received(kind, Outcome::Duplicate);
            ok(DUPLICATE)
        }
        Err(e) => {
            // Not the client's fault and not acknowledged: the sender retries.
            metrics.received(kind, Outcome::Error);
            tracing::error!(error = %e, event = kind.as_label(), "could not store a webhook");
            refuse(
                StatusCode::SERVICE_UNAVAILABLE,
                "the exporter could not store the event; retry later",
            )
        }
    }
}

fn too_large(
    reject: &impl Fn(EventKind, Reason, StatusCode, String, Option<&str>) -> Response,
    limit: usize,
) -> Response {
    reject(
        EventKind::Unknown,
        Reason::PayloadTooLarge,
        StatusCode::PAYLOAD_TOO_LARGE,
        format!("body is larger than the limit of {limit} bytes (--webhook.max-body-bytes)"),
        None,
    )
}

fn to_stored(event: Event) -> Option<StoredEvent> {
    let received_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0);
    let mut e = StoredEvent {
        kind: event.kind(),
        account_id: String::new(),
        chat_id: String::new(),
        received_ms,
        department_id: String::new(),
        agent_role: None,
        agent_id: None,
        wait_seconds: None,
        duration_seconds: None,
    };
    match event {
        Event::Closed(c) => {
            e.account_id = c.account_id;
            e.chat_id = c.chat_id;
            e.department_id = c.department_id;
            e.agent_role = c.agent_role;
            e.agent_id = c.agent_id;
            // A zero wait with no agent is how a chat nobody answered may come: not an instant answer.
            e.wait_seconds = c
                .wait_seconds
                .filter(|w| *w > 0.0 || e.agent_role.is_some());
            e.duration_seconds = c.duration_seconds;
        }
        Event::Started(s) => {
            e.account_id = s.account_id;
            e.chat_id = s.chat_id;
            e.department_id = s.department_id;
        }
        Event::Accepted(a) => {
            e.account_id = a.account_id;
            e.chat_id = a.chat_id;
            e.agent_id = a.agent_id;
        }
        Event::Other(_) => return None,
    }
    Some(e)
}

async fn metrics(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok());
    let format = expose::negotiate(accept);
    let gzip = expose::accepts_gzip(
        headers
            .get(header::ACCEPT_ENCODING)
            .and_then(|v| v.to_str().ok()),
    );
    // Thousands of series take milliseconds to encode: off the threads that answer webhooks.
    let encode = move || {
        let mut out = if gzip {
            expose::Output::gzip()
        } else {
            expose::Output::whole(Vec::with_capacity(64 * 1024))
        };
        state.metrics.write(format, &mut out);
        out.into_vec()
    };
    let body = match tokio::task::spawn_blocking(encode).await {
        Ok(body) => body,
        Err(e) => {
            tracing::error!(error = %e, "encoding the metrics failed");
            return StatusCode::INTERNAL_SERVER_ERROR.into_response();
        }
    };
    let mut response = body.into_response();
    if gzip {
        response
            .headers_mut()
            .insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
    }
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(expose::content_type(format)),
    );
    response
}

/// Ready while the store can commit: a store that cannot (a full disk) answers 503 here, so a
/// load balancer or an orchestrator sends the deliveries elsewhere, and Ready again by itself.
async fn ready(State(state): State<Arc<AppState>>) -> Response {
    if state.store.is_healthy() {
        "Ready\n".into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "Not ready: the store cannot commit\n",
        )
            .into_response()
    }
}

async fn landing(State(state): State<Arc<AppState>>) -> Html<String> {
    let version = env!("CARGO_PKG_VERSION");
    let metrics = html_escape(&state.telemetry_path);
    let webhook = html_escape(&state.webhook_path);
    Html(format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>Acquire Exporter</title></head>\n\
         <body>\n<h1>Acquire Exporter</h1>\n<p>Version {version}. Turns Acquire chat webhooks into Prometheus metrics.</p>\n\
         <ul>\n<li><a href=\"{metrics}\">Metrics</a></li>\n<li><a href=\"/-/healthy\">Health</a></li>\n\
         <li><a href=\"/-/ready\">Readiness</a></li>\n</ul>\n\
         <p>Webhook receiver: <code>POST {webhook}</code> (set this URL in Acquire's webhook settings, response type JSON).</p>\n\
         </body></html>\n"
    ))
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

async fn basic_auth(State(state): State<Arc<AppState>>, request: Request, next: Next) -> Response {
    if let Some(web) = &state.web_config
        && web.check_basic_auth_async(request.headers()).await == BasicAuthOutcome::Denied
    {
        return (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Basic realm=\"acquire-exporter\"")],
            "Unauthorized\n",
        )
            .into_response();
    }
    next.run(request).await
}

async fn common_headers(
    State(state): State<Arc<AppState>>,
    request: Request,
    next: Next,
) -> Response {
    let mut response = next.run(request).await;
    if let Some(web) = &state.web_config {
        for (name, value) in web.response_headers() {
            response.headers_mut().insert(name.clone(), value.clone());
        }
    }
    response
}
