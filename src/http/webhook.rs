//! `POST /webhook`: read the body within its limit, authenticate the sender, decode, normalise,
//! admit; every refusal is one [`WebhookError`], counted, logged and answered.

use std::io::Read as _;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use serde_json::json;
use tracing::Level;

use super::AppState;
use crate::admit::auth::AuthError;
use crate::admit::{Admission, StoreError, normalise};
use crate::decode::{self, DecodeError};
use crate::event::{EventKind, Outcome, Reason};
use crate::logthrottle;
use crate::record::Metrics;

/// What the sender is told of an event the exporter took.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Accepted {
    /// Admitted and recorded.
    Observed,
    /// Admitted before: nothing changed.
    Duplicate,
    /// A valid event the exporter does not record.
    Ignored,
}

impl IntoResponse for Accepted {
    fn into_response(self) -> Response {
        let body = match self {
            Accepted::Observed => "{\"status\":\"observed\"}",
            Accepted::Duplicate => "{\"status\":\"duplicate\"}",
            Accepted::Ignored => "{\"status\":\"ignored\"}",
        };
        ([(header::CONTENT_TYPE, "application/json")], body).into_response()
    }
}

/// Why a delivery was not taken. A client's mistake is a 4xx that names it; a failure of the
/// store is a 503, so the sender retries.
#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    /// The body is over the limit.
    #[error("body is larger than the limit of {limit} bytes (--webhook.max-body-bytes)")]
    TooLarge {
        /// The limit, in bytes.
        limit: usize,
    },
    /// The gzip-decoded body is over the limit.
    #[error(
        "body is larger than the limit of {limit} bytes once decompressed (--webhook.max-body-bytes)"
    )]
    TooLargeDecompressed {
        /// The limit, in bytes.
        limit: usize,
    },
    /// The body could not be read.
    #[error("could not read the body: {0}")]
    Unreadable(String),
    /// A `Content-Encoding` other than gzip.
    #[error("unsupported Content-Encoding {encoding:?}: send the body as it is or gzip-compressed")]
    UnsupportedEncoding {
        /// The encoding sent, cut to 40 characters.
        encoding: String,
    },
    /// `Content-Encoding: gzip` over a body that is not gzip.
    #[error("body is not valid gzip (Content-Encoding: gzip): {0}")]
    BadGzip(String),
    /// Token or signature missing or wrong.
    #[error(transparent)]
    Unauthorized(#[from] AuthError),
    /// The body is not an event.
    #[error(transparent)]
    Decode(#[from] DecodeError),
    /// The stored state is still loading (counted as an error: the sender retries).
    #[error("the exporter is loading its stored state; retry later")]
    Starting {
        /// The event's type.
        kind: EventKind,
    },
    /// The store could not commit the event.
    #[error("could not store a webhook: {source}")]
    Store {
        /// The event's type.
        kind: EventKind,
        /// What failed.
        source: StoreError,
    },
}

impl WebhookError {
    /// The rejection reason of a client's mistake; `None` for a failure of the store.
    pub fn reason(&self) -> Option<Reason> {
        match self {
            Self::TooLarge { .. } | Self::TooLargeDecompressed { .. } => {
                Some(Reason::PayloadTooLarge)
            }
            Self::Unreadable(_) | Self::BadGzip(_) => Some(Reason::MalformedBody),
            Self::UnsupportedEncoding { .. } => Some(Reason::UnsupportedMediaType),
            Self::Unauthorized(_) => Some(Reason::Unauthorized),
            Self::Decode(e) => Some(e.reason()),
            Self::Store { .. } | Self::Starting { .. } => None,
        }
    }

    /// The event type, when it was read before the error.
    pub fn event(&self) -> EventKind {
        match self {
            Self::Decode(e) => e.event(),
            Self::Store { kind, .. } | Self::Starting { kind } => *kind,
            _ => EventKind::Unknown,
        }
    }

    /// The status to answer with.
    pub fn status(&self) -> StatusCode {
        match self.reason() {
            Some(reason) => rejection_status(reason),
            None => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// Count the delivery and write its one log line (never the secret, never personal data;
    /// repeated lines are limited by [`logthrottle`]).
    fn record(&self, metrics: &Metrics) {
        let kind = self.event();
        match self.reason() {
            Some(reason) => {
                metrics.rejected(kind, reason);
                let chat_id = match self {
                    Self::Decode(e) => e.chat_id(),
                    _ => None,
                };
                // One line per reason and window at most; the counter above stays exact.
                if logthrottle::allow(Level::WARN, "webhook rejected", reason.as_label()) {
                    tracing::warn!(
                        reason = reason.as_label(),
                        event = kind.as_label(),
                        chat_id = chat_id.unwrap_or(""),
                        "webhook rejected: {self}"
                    );
                }
            }
            None => {
                // Not the client's fault and not acknowledged: the sender retries.
                metrics.received(kind, Outcome::Error);
                match self {
                    Self::Store { source, .. } => {
                        if logthrottle::allow(Level::ERROR, "could not store a webhook", "") {
                            tracing::error!(
                                error = %source,
                                event = kind.as_label(),
                                "could not store a webhook"
                            );
                        }
                    }
                    _ => {
                        if logthrottle::allow(Level::INFO, "webhook answered 503 while loading", "")
                        {
                            tracing::info!(
                                event = kind.as_label(),
                                "webhook answered 503 while the stored state loads"
                            );
                        }
                    }
                }
            }
        }
    }
}

/// The HTTP status of a refusal for `reason`.
pub fn rejection_status(reason: Reason) -> StatusCode {
    match reason {
        Reason::MalformedBody | Reason::MissingField | Reason::InvalidField => {
            StatusCode::BAD_REQUEST
        }
        Reason::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
        Reason::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        Reason::Unauthorized => StatusCode::UNAUTHORIZED,
    }
}

impl IntoResponse for WebhookError {
    fn into_response(self) -> Response {
        let message = match &self {
            // The details stay in the log.
            Self::Store { .. } => "the exporter could not store the event; retry later".to_owned(),
            other => other.to_string(),
        };
        (self.status(), axum::Json(json!({ "error": message }))).into_response()
    }
}

/// The handler.
pub async fn webhook(State(state): State<Arc<AppState>>, request: Request) -> Response {
    match receive(&state, request).await {
        Ok(accepted) => accepted.into_response(),
        Err(e) => {
            e.record(&state.metrics);
            e.into_response()
        }
    }
}

async fn receive(state: &AppState, request: Request) -> Result<Accepted, WebhookError> {
    // Taken whole: the header map and the query are borrowed, not copied, on this hot path.
    let (parts, body) = request.into_parts();
    let headers = &parts.headers;
    let limit = state.max_body_bytes;
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(WebhookError::TooLarge { limit });
    }
    let bytes = match Limited::new(body, limit).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(e) if e.is::<LengthLimitError>() => return Err(WebhookError::TooLarge { limit }),
        Err(e) => return Err(WebhookError::Unreadable(e.to_string())),
    };
    let bytes = decode_content(headers, bytes, limit)?;
    state.auth.check(parts.uri.query(), headers, &bytes)?;
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    let event = decode::decode(content_type, &bytes)?;
    let kind = event.kind();
    let store = state.store.get().ok_or(WebhookError::Starting { kind })?;
    let Some(event) = normalise::recordable(event, now_ms()) else {
        state.metrics.received(kind, Outcome::Ignored);
        return Ok(Accepted::Ignored);
    };
    // A new event reaches the metrics on the commit side, whatever becomes of this request.
    match store.admit(event).await {
        Ok(Admission::New) => {
            state.metrics.received(kind, Outcome::Observed);
            Ok(Accepted::Observed)
        }
        Ok(Admission::Duplicate) => {
            state.metrics.received(kind, Outcome::Duplicate);
            Ok(Accepted::Duplicate)
        }
        Err(source) => Err(WebhookError::Store { kind, source }),
    }
}

/// The body with its `Content-Encoding` undone: none and `identity` as it is, `gzip` (or
/// `x-gzip`) decompressed within the same `limit`, so a small bomb cannot grow past it; any other
/// coding is refused with 415. The sender's signature covers the decoded body, as the vendor's
/// sample computes it over the parsed body.
fn decode_content(headers: &HeaderMap, bytes: Bytes, limit: usize) -> Result<Bytes, WebhookError> {
    let mut gzip = false;
    for value in headers.get_all(header::CONTENT_ENCODING) {
        let Ok(value) = value.to_str() else {
            return Err(WebhookError::UnsupportedEncoding {
                encoding: String::from_utf8_lossy(value.as_bytes())
                    .chars()
                    .take(40)
                    .collect(),
            });
        };
        for coding in value.split(',').map(str::trim).filter(|c| !c.is_empty()) {
            if coding.eq_ignore_ascii_case("identity") {
                continue;
            }
            let is_gzip =
                coding.eq_ignore_ascii_case("gzip") || coding.eq_ignore_ascii_case("x-gzip");
            if !is_gzip || gzip {
                return Err(WebhookError::UnsupportedEncoding {
                    encoding: value.chars().take(40).collect(),
                });
            }
            gzip = true;
        }
    }
    if !gzip {
        return Ok(bytes);
    }
    let mut decoded = Vec::with_capacity(bytes.len().saturating_mul(4).min(limit + 1));
    flate2::read::MultiGzDecoder::new(&bytes[..])
        .take(limit as u64 + 1)
        .read_to_end(&mut decoded)
        .map_err(|e| WebhookError::BadGzip(e.to_string()))?;
    if decoded.len() > limit {
        return Err(WebhookError::TooLargeDecompressed { limit });
    }
    Ok(Bytes::from(decoded))
}

/// Milliseconds since the Unix epoch, now.
fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
