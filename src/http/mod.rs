//! HTTP: the routes and what every request shares ([`AppState`]); the webhook receiver
//! ([`mod@webhook`]), the other pages ([`pages`]) with the shared `/metrics` pages ([`scrape`]), the
//! accept loop with its limits ([`serve`]) and the exporter-toolkit web config for TLS and basic
//! auth ([`webconfig`]).

pub mod pages;
pub mod scrape;
pub mod serve;
pub mod webconfig;
pub mod webhook;

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Router};

use crate::admit::Store;
use crate::admit::auth::SenderAuth;
use crate::expose::Exposition;
use crate::http::pages::{landing, metrics, ready};
use crate::http::scrape::Pages;
use crate::http::webconfig::{BasicAuthOutcome, WebConfig};
use crate::http::webhook::webhook;
use crate::record::Metrics;

/// Everything a request needs.
#[derive(Debug)]
pub struct AppState {
    /// The metrics, to count deliveries.
    pub metrics: Arc<Metrics>,
    /// Their exposition, for `/metrics`.
    pub exposition: Arc<Exposition>,
    /// The admission store, once the stored state is loaded into the metrics; until then the
    /// webhook, `/metrics` and `/-/ready` answer 503.
    pub store: OnceLock<Arc<Store>>,
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
        .route(
            &state.telemetry_path,
            get(metrics).layer(Extension(Arc::new(Pages::default()))),
        )
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

async fn basic_auth(State(state): State<Arc<AppState>>, request: Request, next: Next) -> Response {
    let peer = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| addr.ip());
    if let Some(web) = &state.web_config
        && web.check_basic_auth_from(request.headers(), peer).await == BasicAuthOutcome::Denied
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
