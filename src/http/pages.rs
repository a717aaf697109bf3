//! The pages besides the webhook: `/metrics`, the landing page, readiness.

use std::sync::Arc;

use axum::Extension;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};

use super::AppState;
use super::scrape::{PageBody, PageError, Pages};
use crate::expose;

/// `GET /metrics`: the page in the format the scraper asked for, gzipped if it may be; one
/// encode shared by every scraper asking meanwhile ([`Pages`]).
pub async fn metrics(
    State(state): State<Arc<AppState>>,
    Extension(pages): Extension<Arc<Pages>>,
    headers: HeaderMap,
) -> Response {
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok());
    let format = expose::negotiate(accept);
    let gzip = expose::accepts_gzip(
        headers
            .get(header::ACCEPT_ENCODING)
            .and_then(|v| v.to_str().ok()),
    );
    if state.store.get().is_none() {
        // A partial state would read as counter resets: no page until it is loaded.
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "the exporter is loading its stored state\n",
        )
            .into_response();
    }
    let wait = state.request_timeout / 2;
    let body = match pages.page(&state.exposition, format, gzip, wait).await {
        Ok(body) => body,
        Err(e @ PageError::Busy) => {
            return (
                StatusCode::SERVICE_UNAVAILABLE,
                [(header::RETRY_AFTER, "1")],
                format!("{e}\n"),
            )
                .into_response();
        }
        Err(PageError::Failed) => return StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    };
    let mut response = axum::body::Body::new(PageBody::new(body)).into_response();
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

/// Ready once the stored state is loaded and while the store can commit: a store that cannot
/// (a full disk) answers 503 here, so a load balancer or an orchestrator sends the deliveries
/// elsewhere, and Ready again by itself.
pub async fn ready(State(state): State<Arc<AppState>>) -> Response {
    let not_ready = match state.store.get() {
        None => "Not ready: loading the stored state\n",
        Some(store) if !store.is_healthy() => "Not ready: the store cannot commit\n",
        Some(_) => return "Ready\n".into_response(),
    };
    (StatusCode::SERVICE_UNAVAILABLE, not_ready).into_response()
}

/// `GET /`: a landing page with links.
pub async fn landing(State(state): State<Arc<AppState>>) -> Html<String> {
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
