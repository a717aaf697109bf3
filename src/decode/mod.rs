//! Decode: a raw webhook body, in any shape the vendor documents, to one typed [`Event`].
//!
//! # What is accepted
//! - Media types: `application/json` in any letter case and with parameters (the vendor sends
//!   `application/JSON`), no `Content-Type` at all (read as JSON), and
//!   `application/x-www-form-urlencoded` (fields as form fields, `users` as JSON text; a "form"
//!   that starts with `{` is JSON, as `curl -d @file.json` sends it). Anything else, XML
//!   included, is refused with [`DecodeError::UnsupportedMediaType`]. A leading byte order mark
//!   is ignored.
//! - Shapes: flat bodies (`{"id": ..., "event": ...}`) and envelopes
//!   (`{"data": {...}, "event": ...}`) for every event; `event` may sit at the top level or
//!   inside `data`. Fields in `data` win over the same fields beside it. The two envelope keys
//!   are read in any letter case (`Data`, `Event`, `EVENT`); every other key is exact.
//! - Scalars as JSON numbers or strings (trimmed); `"null"`, `""`, JSON `null` and an absent field
//!   all mean "no value". Ids become their decimal string. The start event's id may be under
//!   `" id"` (with the leading space the vendor's example prints).
//! - `users` (and the accept event's `user`) as an object, as a JSON text inside a string, or as
//!   no value. Only `users.agent.role` is kept: names, e-mails and phones are skipped unread, and
//!   a `users` text lives only until the event is decoded.
//!
//! # The recovery for the vendor's printed examples
//! The vendor's pages print `"users":"{ ... }"` (and `"message":"{ ... }"`) with raw quotes and
//! line breaks inside the string, which is not JSON. Pasted verbatim, such a body must still work,
//! without accepting broken JSON in general. So, only after the strict parse has failed, one
//! linear scan looks for object member values that open with `"` followed (after optional
//! whitespace) by `{` or `[`; when the bracketed text is balanced, is itself valid JSON, and is
//! followed (after optional whitespace) by the closing `"`, the two quotes are blanked out so the
//! value becomes that JSON object or array. The strict parse then runs once more on the rewritten
//! body; if it fails again, the error reported is the original one, with its line and column.
//! At most 16 rejected candidates are tried per body, so the recovery stays linear in the body
//! size; it counts brackets instead of recursing, and checks the unwrapped text with serde_json's
//! value skipper, which walks nesting of any depth without recursion.
//!
//! # Limits
//! Waits and durations must be finite, non-negative and at most 30 days ([`MAX_SECONDS`]); ids
//! and roles at most [`MAX_VALUE_CHARS`] characters without control characters. Error messages
//! repeat at most 40 characters of a client's value, and never any part of `users` or `user`.

mod fields;
mod reader;
mod recover;

use std::borrow::Cow;

use self::fields::to_event;
use self::reader::{Fields, Key, ReadFields, Value, clearer_error, parse_json};
use self::recover::recover;

use crate::event::Reason;
pub use crate::event::{ChatAccepted, ChatClosed, ChatStarted, Event, EventKind};

/// The longest wait or duration accepted: 30 days, in seconds.
pub const MAX_SECONDS: f64 = 2_592_000.0;

/// The longest id or role accepted, in characters (an exemplar's labels must fit in 128).
pub const MAX_VALUE_CHARS: usize = 100;

/// How many characters of a client's value an error message repeats.
const ECHO_CHARS: usize = 40;

/// How many candidates the recovery may reject per body: each rejection may have scanned to the
/// end, so this bounds the recovery to linear time (accepted ones never overlap).
const MAX_RECOVERY_FAILURES: usize = 16;

/// This module's result type.
pub type Result<T, E = DecodeError> = std::result::Result<T, E>;

/// What was wrong with a body; every variant has its rejection [`Reason`].
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum DecodeError {
    /// The `Content-Type` names a format other than JSON or a form (415).
    #[error(
        "unsupported Content-Type {content_type:?}: this receiver reads JSON; \
         choose JSON as the response type in Acquire's webhook settings"
    )]
    UnsupportedMediaType {
        /// The media type sent, cut to 40 characters.
        content_type: String,
    },
    /// The body is not UTF-8, not JSON, not an object, or not a form (400).
    #[error("{message}")]
    MalformedBody {
        /// What is wrong and where (line and column for JSON).
        message: String,
    },
    /// A field the event needs has no value (400).
    #[error("field `{field}` is missing")]
    MissingField {
        /// The field's name in the vendor's body.
        field: &'static str,
        /// The event kind, when it was read before the error.
        event: EventKind,
        /// The chat id, when it was read before the error.
        chat_id: Option<String>,
    },
    /// A field holds a value that cannot be used (400).
    #[error("field `{field}`: {problem}")]
    InvalidField {
        /// The field's name in the vendor's body.
        field: &'static str,
        /// What is wrong with the value.
        problem: String,
        /// The event kind, when it was read before the error.
        event: EventKind,
        /// The chat id, when it was read before the error.
        chat_id: Option<String>,
    },
}

impl DecodeError {
    /// Why the body is refused, the `reason` of `acquire_webhook_rejections_total`.
    pub fn reason(&self) -> Reason {
        match self {
            Self::UnsupportedMediaType { .. } => Reason::UnsupportedMediaType,
            Self::MalformedBody { .. } => Reason::MalformedBody,
            Self::MissingField { .. } => Reason::MissingField,
            Self::InvalidField { .. } => Reason::InvalidField,
        }
    }

    /// The event kind, when it was read before the error (for
    /// `acquire_webhooks_received_total{event}`); else [`EventKind::Unknown`].
    pub fn event(&self) -> EventKind {
        match self {
            Self::MissingField { event, .. } | Self::InvalidField { event, .. } => *event,
            _ => EventKind::Unknown,
        }
    }

    /// The chat id, when it was read before the error (for the one warn log line); never
    /// personal data.
    pub fn chat_id(&self) -> Option<&str> {
        match self {
            Self::MissingField { chat_id, .. } | Self::InvalidField { chat_id, .. } => {
                chat_id.as_deref()
            }
            _ => None,
        }
    }
}

/// Decode one body. `content_type` is the raw Content-Type header, if any.
pub fn decode(content_type: Option<&str>, body: &[u8]) -> Result<Event> {
    let format = body_format(content_type)?;
    let text = std::str::from_utf8(body).map_err(|e| {
        malformed(format!(
            "body is not valid UTF-8 (invalid byte at offset {})",
            e.valid_up_to()
        ))
    })?;
    // RFC 8259 lets a parser ignore a byte order mark, and Windows tools write one.
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let trimmed = text.trim_start();
    if trimmed.is_empty() {
        return Err(malformed("body is empty: expected a JSON object".into()));
    }
    match format {
        // `curl -d @close.json` labels JSON as a form; no form field name starts with `{`.
        BodyFormat::Form if !trimmed.starts_with('{') => decode_form(text),
        _ => decode_json(text),
    }
}

/// How a body is to be read.
#[derive(Clone, Copy, Debug, PartialEq)]
enum BodyFormat {
    Json,
    Form,
}

fn body_format(content_type: Option<&str>) -> Result<BodyFormat> {
    let essence = content_type
        .map(|ct| ct.split_once(';').map_or(ct, |(essence, _)| essence).trim())
        .unwrap_or_default();
    // No type at all is read as JSON: the vendor documents JSON only, and hand-made test
    // posts (curl with a blanked header, scripts) often send none.
    if essence.is_empty() || essence.eq_ignore_ascii_case("application/json") {
        Ok(BodyFormat::Json)
    } else if essence.eq_ignore_ascii_case("application/x-www-form-urlencoded") {
        Ok(BodyFormat::Form)
    } else {
        Err(DecodeError::UnsupportedMediaType {
            content_type: cut(essence).into_owned(),
        })
    }
}

fn malformed(message: String) -> DecodeError {
    DecodeError::MalformedBody { message }
}

fn decode_json(text: &str) -> Result<Event> {
    let strict = match parse_json(text, ReadFields { envelope: true }) {
        Ok(value) => return to_event(body_object(value)?),
        Err(e) => e,
    };
    if let Some(rewritten) = recover(text) {
        if let Ok(value) = parse_json(&rewritten, ReadFields { envelope: true }) {
            return to_event(body_object(value)?);
        }
    }
    let strict = clearer_error(text, strict);
    Err(malformed(format!(
        "body is not valid JSON: {}",
        json_problem(&strict, text)
    )))
}

fn body_object<'a>(value: Value<'a, Fields<'a>>) -> Result<Fields<'a>> {
    match value {
        Value::Map(fields) => Ok(fields),
        Value::Scalar(s) => Err(malformed(format!(
            "body is {}, not a JSON object",
            s.kind()
        ))),
    }
}

fn decode_form(text: &str) -> Result<Event> {
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(text)
        .map_err(|_| malformed("body is not a valid form (x-www-form-urlencoded)".into()))?;
    let mut fields = Fields::default();
    for (key, value) in &pairs {
        fields.set_text(Key::of(key), Cow::Borrowed(value));
    }
    to_event(fields)
}

/// A parse error's text: for syntax errors, the problem and where, never any content.
fn json_problem(e: &serde_json::Error, text: &str) -> String {
    let (line, column) = position(text, e.line(), e.column());
    match e.classify() {
        serde_json::error::Category::Syntax | serde_json::error::Category::Eof => {
            let full = e.to_string();
            let suffix = format!(" at line {} column {}", e.line(), e.column());
            let what = full.strip_suffix(&suffix).unwrap_or(&full);
            format!("{what} at line {line} column {column}")
        }
        // Type errors may quote content; our readers take any type, so this is a safety net.
        _ => format!("unexpected value at line {line} column {column}"),
    }
}

/// serde_json places an error on a line break at column 0 of the next line; a reader looks for
/// it at the end of the line that holds the break.
fn position(text: &str, line: usize, column: usize) -> (usize, usize) {
    if column > 0 || line < 2 {
        return (line, column);
    }
    match text.split('\n').nth(line - 2) {
        Some(previous) => (line - 1, previous.len() + 1),
        None => (line, column),
    }
}

/// At most [`ECHO_CHARS`] characters of a value, with `…` when cut.
fn cut(value: &str) -> Cow<'_, str> {
    match value.char_indices().nth(ECHO_CHARS) {
        None => Cow::Borrowed(value),
        Some((at, _)) => Cow::Owned(format!("{}…", &value[..at])),
    }
}

/// A client's value for a message: cut, quoted and escaped.
fn echo(value: &str) -> String {
    format!("{:?}", cut(value))
}

#[cfg(test)]
mod tests;
