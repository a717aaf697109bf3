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
//!   inside `data`. Fields in `data` win over the same fields beside it.
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

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

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

/// Parses one JSON text, all of it, reading maps with `reader` and any other value as a scalar.
fn parse_json<'de, R: ReadMap<'de>>(
    text: &'de str,
    reader: R,
) -> std::result::Result<Value<'de, R::Out>, serde_json::Error> {
    let mut de = serde_json::Deserializer::from_str(text);
    let value = ValueSeed(reader).deserialize(&mut de)?;
    de.end()?;
    Ok(value)
}

/// The same error as worded by a parse that visits every value: skipping a value words some
/// errors vaguely (a trailing comma reads "key must be a string").
fn clearer_error(text: &str, strict: serde_json::Error) -> serde_json::Error {
    let mut de = serde_json::Deserializer::from_str(text);
    match Check.deserialize(&mut de).and_then(|()| de.end()) {
        Err(e) if (e.line(), e.column()) == (strict.line(), strict.column()) => e,
        _ => strict,
    }
}

/// Walks a JSON value without keeping it, within serde_json's nesting limit.
struct Check;

impl<'de> DeserializeSeed<'de> for Check {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> std::result::Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Check {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> std::result::Result<(), E> {
        Ok(())
    }

    fn visit_i64<E>(self, _: i64) -> std::result::Result<(), E> {
        Ok(())
    }

    fn visit_u64<E>(self, _: u64) -> std::result::Result<(), E> {
        Ok(())
    }

    fn visit_f64<E>(self, _: f64) -> std::result::Result<(), E> {
        Ok(())
    }

    fn visit_str<E>(self, _: &str) -> std::result::Result<(), E> {
        Ok(())
    }

    fn visit_unit<E>(self) -> std::result::Result<(), E> {
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> std::result::Result<(), A::Error> {
        while seq.next_element_seed(Check)?.is_some() {}
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> std::result::Result<(), A::Error> {
        while map.next_key_seed(Check)?.is_some() {
            map.next_value_seed(Check)?;
        }
        Ok(())
    }
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

/// The body with embedded JSON strings unwrapped (see the module docs), or `None` when no value
/// qualified.
fn recover(text: &str) -> Option<String> {
    let b = text.as_bytes();
    let mut out: Option<Vec<u8>> = None;
    let mut failures = 0;
    let mut after_colon = false;
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'"' => {
                let opens_bracket = matches!(b.get(skip_whitespace(b, i + 1)), Some(b'{' | b'['));
                if after_colon && opens_bracket && failures < MAX_RECOVERY_FAILURES {
                    if let Some(close) = embedded_json(b, i) {
                        let buf = out.get_or_insert_with(|| b.to_vec());
                        // Blanks, not removal: later line and column numbers stay true.
                        buf[i] = b' ';
                        buf[close] = b' ';
                        i = close + 1;
                        after_colon = false;
                        continue;
                    }
                    failures += 1;
                }
                i = string_end(b, i);
                after_colon = false;
            }
            b':' => {
                after_colon = true;
                i += 1;
            }
            b' ' | b'\t' | b'\n' | b'\r' => i += 1,
            _ => {
                after_colon = false;
                i += 1;
            }
        }
    }
    out.and_then(|buf| String::from_utf8(buf).ok())
}

/// For a `"` at `quote` opening `{...}` or `[...]` that is valid JSON and followed by the closing
/// `"`, the index of that closing quote.
fn embedded_json(b: &[u8], quote: usize) -> Option<usize> {
    let start = skip_whitespace(b, quote + 1);
    if !matches!(b.get(start), Some(b'{' | b'[')) {
        return None;
    }
    let end = balanced_end(b, start)?;
    let close = skip_whitespace(b, end);
    if b.get(close) != Some(&b'"') {
        return None;
    }
    let inner = std::str::from_utf8(b.get(start..end)?).ok()?;
    serde_json::from_str::<IgnoredAny>(inner).ok()?;
    Some(close)
}

fn skip_whitespace(b: &[u8], mut i: usize) -> usize {
    while matches!(b.get(i), Some(b' ' | b'\t' | b'\n' | b'\r')) {
        i += 1;
    }
    i
}

/// The index just past the bracket that closes the one at `start`, skipping JSON strings.
fn balanced_end(b: &[u8], start: usize) -> Option<usize> {
    let mut depth = 0usize;
    let mut i = start;
    while i < b.len() {
        match b[i] {
            b'{' | b'[' => depth += 1,
            b'}' | b']' => {
                depth = depth.checked_sub(1)?;
                if depth == 0 {
                    return Some(i + 1);
                }
            }
            b'"' => {
                i = string_end(b, i);
                continue;
            }
            _ => {}
        }
        i += 1;
    }
    None
}

/// The index just past the JSON string opening at `quote` (or the end of the input).
fn string_end(b: &[u8], quote: usize) -> usize {
    let mut i = quote + 1;
    while i < b.len() {
        match b[i] {
            b'\\' => i += 2,
            b'"' => return i + 1,
            _ => i += 1,
        }
    }
    b.len()
}

/// One JSON value read without knowing its type; maps go to a [`ReadMap`].
#[derive(Debug)]
enum Value<'a, M> {
    Map(M),
    Scalar(Scalar<'a>),
}

/// Any non-object value, kept just enough to validate it and to say what it was.
#[derive(Clone, Debug, PartialEq)]
enum Scalar<'a> {
    Text(Cow<'a, str>),
    Int(i64),
    UInt(u64),
    Float(f64),
    Bool(bool),
    Null,
    Array,
    Object,
}

impl Scalar<'_> {
    /// What the value is, for messages ("found a boolean").
    fn kind(&self) -> &'static str {
        match self {
            Self::Text(_) => "a string",
            Self::Int(_) | Self::UInt(_) | Self::Float(_) => "a number",
            Self::Bool(_) => "a boolean",
            Self::Null => "null",
            Self::Array => "an array",
            Self::Object => "an object",
        }
    }

    /// True for the vendor's ways of saying "no value": JSON null, `""` and `"null"`.
    fn is_no_value(&self) -> bool {
        match self {
            Self::Null => true,
            Self::Text(t) => no_value(t.trim()),
            _ => false,
        }
    }
}

fn no_value(trimmed: &str) -> bool {
    trimmed.is_empty() || trimmed == "null"
}

/// What a JSON object turns into while it is being read.
trait ReadMap<'de> {
    type Out;
    fn read<A: MapAccess<'de>>(self, map: A) -> std::result::Result<Self::Out, A::Error>;
}

/// Reads a value of any type: never a type error, so no error message can quote content.
struct ValueSeed<R>(R);

impl<'de, R: ReadMap<'de>> DeserializeSeed<'de> for ValueSeed<R> {
    type Value = Value<'de, R::Out>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> std::result::Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de, R: ReadMap<'de>> Visitor<'de> for ValueSeed<R> {
    type Value = Value<'de, R::Out>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> std::result::Result<Self::Value, E> {
        Ok(Value::Scalar(Scalar::Bool(v)))
    }

    fn visit_i64<E>(self, v: i64) -> std::result::Result<Self::Value, E> {
        Ok(Value::Scalar(Scalar::Int(v)))
    }

    fn visit_u64<E>(self, v: u64) -> std::result::Result<Self::Value, E> {
        Ok(Value::Scalar(Scalar::UInt(v)))
    }

    fn visit_f64<E>(self, v: f64) -> std::result::Result<Self::Value, E> {
        Ok(Value::Scalar(Scalar::Float(v)))
    }

    fn visit_borrowed_str<E>(self, v: &'de str) -> std::result::Result<Self::Value, E> {
        Ok(Value::Scalar(Scalar::Text(Cow::Borrowed(v))))
    }

    fn visit_str<E>(self, v: &str) -> std::result::Result<Self::Value, E> {
        Ok(Value::Scalar(Scalar::Text(Cow::Owned(v.to_owned()))))
    }

    fn visit_string<E>(self, v: String) -> std::result::Result<Self::Value, E> {
        Ok(Value::Scalar(Scalar::Text(Cow::Owned(v))))
    }

    fn visit_unit<E>(self) -> std::result::Result<Self::Value, E> {
        Ok(Value::Scalar(Scalar::Null))
    }

    fn visit_none<E>(self) -> std::result::Result<Self::Value, E> {
        Ok(Value::Scalar(Scalar::Null))
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> std::result::Result<Self::Value, D::Error> {
        self.deserialize(d)
    }

    fn visit_seq<A: SeqAccess<'de>>(
        self,
        mut seq: A,
    ) -> std::result::Result<Self::Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Value::Scalar(Scalar::Array))
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> std::result::Result<Self::Value, A::Error> {
        Ok(Value::Map(self.0.read(map)?))
    }
}

/// Skips an object whole.
struct Skip;

impl<'de> ReadMap<'de> for Skip {
    type Out = ();

    fn read<A: MapAccess<'de>>(self, mut map: A) -> std::result::Result<(), A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(())
    }
}

impl<'de> de::Deserialize<'de> for Scalar<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        Ok(match ValueSeed(Skip).deserialize(d)? {
            Value::Map(()) => Scalar::Object,
            Value::Scalar(s) => s,
        })
    }
}

/// The member names any reader here looks at; everything else is skipped unread.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Key {
    Event,
    Id,
    SpacedId,
    AccountId,
    DepartmentId,
    ChatWaitTime,
    ChatDuration,
    By,
    Users,
    User,
    Data,
    Agent,
    Role,
    Type,
    Other,
}

impl Key {
    fn of(name: &str) -> Self {
        match name {
            "event" => Self::Event,
            "id" => Self::Id,
            " id" => Self::SpacedId,
            "account_id" => Self::AccountId,
            "department_id" => Self::DepartmentId,
            "chat_wait_time" => Self::ChatWaitTime,
            "chat_duration" => Self::ChatDuration,
            "by" => Self::By,
            "users" => Self::Users,
            "user" => Self::User,
            "data" => Self::Data,
            "agent" => Self::Agent,
            "role" => Self::Role,
            "type" => Self::Type,
            _ => Self::Other,
        }
    }
}

impl<'de> de::Deserialize<'de> for Key {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct KeyVisitor;
        impl Visitor<'_> for KeyVisitor {
            type Value = Key;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a member name")
            }
            fn visit_str<E>(self, v: &str) -> std::result::Result<Key, E> {
                Ok(Key::of(v))
            }
        }
        d.deserialize_identifier(KeyVisitor)
    }
}

/// The fields of a body that any event needs; the rest is skipped.
#[derive(Debug, Default)]
struct Fields<'a> {
    event: Option<Scalar<'a>>,
    id: Option<Scalar<'a>>,
    spaced_id: Option<Scalar<'a>>,
    account_id: Option<Scalar<'a>>,
    department_id: Option<Scalar<'a>>,
    wait: Option<Scalar<'a>>,
    duration: Option<Scalar<'a>>,
    by: Option<Scalar<'a>>,
    users: Option<Value<'a, AgentValue<'a>>>,
    user: Option<Value<'a, UserFields<'a>>>,
    data: Option<Box<Fields<'a>>>,
}

impl<'a> Fields<'a> {
    /// Stores a form field (every value is text; a form has no envelope).
    fn set_text(&mut self, key: Key, value: Cow<'a, str>) {
        let text = || Some(Scalar::Text(value.clone()));
        match key {
            Key::Event => self.event = text(),
            Key::Id => self.id = text(),
            Key::SpacedId => self.spaced_id = text(),
            Key::AccountId => self.account_id = text(),
            Key::DepartmentId => self.department_id = text(),
            Key::ChatWaitTime => self.wait = text(),
            Key::ChatDuration => self.duration = text(),
            Key::By => self.by = text(),
            Key::Users => self.users = Some(Value::Scalar(Scalar::Text(value))),
            Key::User => self.user = Some(Value::Scalar(Scalar::Text(value))),
            Key::Data | Key::Agent | Key::Role | Key::Type | Key::Other => {}
        }
    }

    /// One flat set of fields: those in `data` first, then those beside it; `event` the other
    /// way round, as the envelope names the event.
    fn flatten_envelope(mut self) -> Self {
        let Some(inner) = self.data.take() else {
            return self;
        };
        let inner = *inner;
        Fields {
            event: self.event.or(inner.event),
            id: inner.id.or(self.id),
            spaced_id: inner.spaced_id.or(self.spaced_id),
            account_id: inner.account_id.or(self.account_id),
            department_id: inner.department_id.or(self.department_id),
            wait: inner.wait.or(self.wait),
            duration: inner.duration.or(self.duration),
            by: inner.by.or(self.by),
            users: inner.users.or(self.users),
            user: inner.user.or(self.user),
            data: None,
        }
    }
}

/// Reads a body object; with `envelope`, also a `data` object inside it (one level only).
struct ReadFields {
    envelope: bool,
}

impl<'de> ReadMap<'de> for ReadFields {
    type Out = Fields<'de>;

    fn read<A: MapAccess<'de>>(self, mut map: A) -> std::result::Result<Fields<'de>, A::Error> {
        let mut f = Fields::default();
        while let Some(key) = map.next_key::<Key>()? {
            match key {
                Key::Event => f.event = Some(map.next_value()?),
                Key::Id => f.id = Some(map.next_value()?),
                Key::SpacedId => f.spaced_id = Some(map.next_value()?),
                Key::AccountId => f.account_id = Some(map.next_value()?),
                Key::DepartmentId => f.department_id = Some(map.next_value()?),
                Key::ChatWaitTime => f.wait = Some(map.next_value()?),
                Key::ChatDuration => f.duration = Some(map.next_value()?),
                Key::By => f.by = Some(map.next_value()?),
                Key::Users => f.users = Some(map.next_value_seed(ValueSeed(ReadUsers))?),
                Key::User => f.user = Some(map.next_value_seed(ValueSeed(ReadUser))?),
                Key::Data if self.envelope => {
                    let seed = ValueSeed(ReadFields { envelope: false });
                    if let Value::Map(inner) = map.next_value_seed(seed)? {
                        f.data = Some(Box::new(inner));
                    }
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(f)
    }
}

/// Reads `users`, keeping only `agent`.
struct ReadUsers;

/// `users.agent`: an object (its role) or some other value.
type AgentValue<'a> = Option<Value<'a, Option<Scalar<'a>>>>;

impl<'de> ReadMap<'de> for ReadUsers {
    type Out = AgentValue<'de>;

    fn read<A: MapAccess<'de>>(self, mut map: A) -> std::result::Result<Self::Out, A::Error> {
        let mut agent = None;
        while let Some(key) = map.next_key::<Key>()? {
            if key == Key::Agent {
                agent = Some(map.next_value_seed(ValueSeed(ReadRole))?);
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(agent)
    }
}

/// Reads `users.agent`, keeping only `role`.
struct ReadRole;

impl<'de> ReadMap<'de> for ReadRole {
    type Out = Option<Scalar<'de>>;

    fn read<A: MapAccess<'de>>(self, mut map: A) -> std::result::Result<Self::Out, A::Error> {
        let mut role = None;
        while let Some(key) = map.next_key::<Key>()? {
            if key == Key::Role {
                role = Some(map.next_value()?);
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(role)
    }
}

/// Reads the accept event's `user`, keeping only `id` and `type`.
struct ReadUser;

/// The accept event's `user.id` and `user.type`.
type UserFields<'a> = (Option<Scalar<'a>>, Option<Scalar<'a>>);

impl<'de> ReadMap<'de> for ReadUser {
    type Out = UserFields<'de>;

    fn read<A: MapAccess<'de>>(self, mut map: A) -> std::result::Result<Self::Out, A::Error> {
        let (mut id, mut kind) = (None, None);
        while let Some(key) = map.next_key::<Key>()? {
            match key {
                Key::Id => id = Some(map.next_value()?),
                Key::Type => kind = Some(map.next_value()?),
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok((id, kind))
    }
}

/// What an error can say about the event it cut short.
struct Context {
    event: EventKind,
    chat_id: Option<String>,
}

impl Context {
    fn missing(&self, field: &'static str) -> DecodeError {
        DecodeError::MissingField {
            field,
            event: self.event,
            chat_id: self.chat_id.clone(),
        }
    }

    fn invalid(&self, field: &'static str, problem: String) -> DecodeError {
        DecodeError::InvalidField {
            field,
            problem,
            event: self.event,
            chat_id: self.chat_id.clone(),
        }
    }
}

fn to_event(fields: Fields<'_>) -> Result<Event> {
    let f = fields.flatten_envelope();
    let mut cx = Context {
        event: EventKind::Unknown,
        chat_id: None,
    };
    cx.event = event_kind(f.event.as_ref(), &cx)?;
    if matches!(cx.event, EventKind::ChatMessage | EventKind::Unknown) {
        return Ok(Event::Other(cx.event));
    }
    let chat_id = chat_id(&f, &cx)?;
    cx.chat_id = Some(chat_id.clone());
    let account_id = optional_id("account_id", f.account_id.as_ref(), &cx)?.unwrap_or_default();
    Ok(match cx.event {
        EventKind::ChatStart => Event::Started(ChatStarted {
            chat_id,
            account_id,
            department_id: optional_id("department_id", f.department_id.as_ref(), &cx)?
                .unwrap_or_default(),
        }),
        EventKind::ChatAccept => Event::Accepted(ChatAccepted {
            chat_id,
            account_id,
            agent_id: accepting_agent(f.user.as_ref(), &cx)?,
        }),
        EventKind::ChatClose => Event::Closed(ChatClosed {
            chat_id,
            account_id,
            department_id: optional_id("department_id", f.department_id.as_ref(), &cx)?
                .unwrap_or_default(),
            wait_seconds: optional_seconds("chat_wait_time", f.wait.as_ref(), &cx)?,
            duration_seconds: optional_seconds("chat_duration", f.duration.as_ref(), &cx)?,
            agent_role: agent_role(f.users.as_ref(), &cx)?,
            agent_id: closing_agent(f.by.as_ref()),
        }),
        EventKind::ChatMessage | EventKind::Unknown => Event::Other(cx.event),
    })
}

fn event_kind(value: Option<&Scalar<'_>>, cx: &Context) -> Result<EventKind> {
    match value {
        Some(s) if s.is_no_value() => Err(cx.missing("event")),
        None => Err(cx.missing("event")),
        Some(Scalar::Text(t)) => Ok(EventKind::from_wire(t)),
        Some(other) => Err(cx.invalid(
            "event",
            format!(
                "expected a string such as \"CHAT_ON_CLOSE\", found {}",
                other.kind()
            ),
        )),
    }
}

/// `id`, else `" id"`; an event without either cannot be told apart from others.
fn chat_id(f: &Fields<'_>, cx: &Context) -> Result<String> {
    if let Some(id) = optional_id("id", f.id.as_ref(), cx)? {
        return Ok(id);
    }
    optional_id("id", f.spaced_id.as_ref(), cx)?.ok_or_else(|| cx.missing("id"))
}

fn optional_id(
    field: &'static str,
    value: Option<&Scalar<'_>>,
    cx: &Context,
) -> Result<Option<String>> {
    match value {
        None => Ok(None),
        Some(s) => id_text(s).map_err(|problem| cx.invalid(field, problem)),
    }
}

/// An id as text: numbers as their decimal string, text trimmed; `Err` says what is wrong.
fn id_text(value: &Scalar<'_>) -> std::result::Result<Option<String>, String> {
    match value {
        Scalar::Text(t) => {
            let t = t.trim();
            if no_value(t) {
                return Ok(None);
            }
            if t.len() > MAX_VALUE_CHARS && t.chars().count() > MAX_VALUE_CHARS {
                return Err(format!(
                    "{} is longer than {MAX_VALUE_CHARS} characters",
                    echo(t)
                ));
            }
            if t.chars().any(char::is_control) {
                return Err(format!("{} contains a control character", echo(t)));
            }
            Ok(Some(t.to_owned()))
        }
        Scalar::Int(n) => Ok(Some(n.to_string())),
        Scalar::UInt(n) => Ok(Some(n.to_string())),
        // Integral floats below 2^53 are exact, so their decimal string is the id.
        Scalar::Float(x) if x.fract() == 0.0 && x.abs() < 9_007_199_254_740_992.0 => {
            Ok(Some(format!("{x:.0}")))
        }
        Scalar::Float(x) => Err(format!("{x:?} is not a whole number")),
        Scalar::Null => Ok(None),
        other => Err(format!(
            "expected a string or a number, found {}",
            other.kind()
        )),
    }
}

fn optional_seconds(
    field: &'static str,
    value: Option<&Scalar<'_>>,
    cx: &Context,
) -> Result<Option<f64>> {
    match value {
        None => Ok(None),
        Some(s) => seconds(s).map_err(|problem| cx.invalid(field, problem)),
    }
}

/// A number of seconds: finite, not negative, at most 30 days; `Err` says what is wrong.
fn seconds(value: &Scalar<'_>) -> std::result::Result<Option<f64>, String> {
    let (secs, shown) = match value {
        Scalar::Text(t) => {
            let t = t.trim();
            if no_value(t) {
                return Ok(None);
            }
            (parse_seconds(t)?, echo(t))
        }
        Scalar::Int(n) => (*n as f64, n.to_string()),
        Scalar::UInt(n) => (*n as f64, n.to_string()),
        Scalar::Float(x) => (*x, format!("{x:?}")),
        Scalar::Null => return Ok(None),
        other => {
            return Err(format!(
                "expected a number of seconds, found {}",
                other.kind()
            ));
        }
    };
    if secs < 0.0 {
        Err(format!("{shown} is negative"))
    } else if secs > MAX_SECONDS {
        Err(format!(
            "{shown} is longer than 30 days ({MAX_SECONDS} seconds)"
        ))
    } else {
        // Adding zero turns -0 into 0.
        Ok(Some(secs + 0.0))
    }
}

/// Parses decimal notation only: Rust's parser also takes "inf" and "NaN", which are refused.
fn parse_seconds(t: &str) -> std::result::Result<f64, String> {
    let not_finite = || format!("{} is not a finite number of seconds", echo(t));
    if !is_decimal(t) {
        let word = t.trim_start_matches(['+', '-']);
        return Err(
            if ["nan", "inf", "infinity"]
                .iter()
                .any(|w| w.eq_ignore_ascii_case(word))
            {
                not_finite()
            } else {
                format!("{} is not a number of seconds", echo(t))
            },
        );
    }
    match t.parse::<f64>() {
        Ok(x) if x.is_finite() => Ok(x),
        Ok(_) => Err(not_finite()),
        Err(_) => Err(format!("{} is not a number of seconds", echo(t))),
    }
}

/// `[+-]digits[.digits][(e|E)[+-]digits]`, with at least one digit before the exponent.
fn is_decimal(t: &str) -> bool {
    let b = t.as_bytes();
    let digits_from = |mut i: usize| {
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        i
    };
    let mut i = usize::from(matches!(b.first(), Some(b'+' | b'-')));
    let int_end = digits_from(i);
    let mut mantissa_digits = int_end - i;
    i = int_end;
    if b.get(i) == Some(&b'.') {
        let frac_end = digits_from(i + 1);
        mantissa_digits += frac_end - (i + 1);
        i = frac_end;
    }
    if mantissa_digits == 0 {
        return false;
    }
    if matches!(b.get(i), Some(b'e' | b'E')) {
        i += 1;
        if matches!(b.get(i), Some(b'+' | b'-')) {
            i += 1;
        }
        let exp_end = digits_from(i);
        if exp_end == i {
            return false;
        }
        i = exp_end;
    }
    i == b.len()
}

/// `users.agent.role`, trimmed and lower-cased; `None` when no agent took the chat. Nothing
/// else of `users` is kept, and no message quotes it.
fn agent_role(users: Option<&Value<'_, AgentValue<'_>>>, cx: &Context) -> Result<Option<String>> {
    let parsed;
    let agent = match users {
        None => return Ok(None),
        Some(Value::Map(agent)) => agent,
        Some(Value::Scalar(s)) => match embedded_text("users", s, cx)? {
            None => return Ok(None),
            Some(text) => {
                parsed = parse_embedded("users", text, ReadUsers, cx)?;
                &parsed
            }
        },
    };
    let role = match agent {
        None => return Ok(None),
        Some(Value::Map(role)) => role,
        Some(Value::Scalar(s)) if s.is_no_value() => return Ok(None),
        Some(Value::Scalar(s)) => {
            return Err(cx.invalid("users", format!("`agent` is {}, not an object", s.kind())));
        }
    };
    match role {
        None | Some(Scalar::Null) => Ok(None),
        Some(Scalar::Text(t)) => {
            let t = t.trim();
            if no_value(t) {
                Ok(None)
            } else if t.chars().count() > MAX_VALUE_CHARS {
                Err(cx.invalid(
                    "users",
                    format!("`agent.role` is longer than {MAX_VALUE_CHARS} characters"),
                ))
            } else if t.chars().any(char::is_control) {
                Err(cx.invalid("users", "`agent.role` contains a control character".into()))
            } else {
                Ok(Some(t.to_lowercase()))
            }
        }
        Some(other) => Err(cx.invalid(
            "users",
            format!("`agent.role` is {}, not a string", other.kind()),
        )),
    }
}

/// The JSON text that a `users` or `user` string carries, or `None` for no value.
fn embedded_text<'s>(
    field: &'static str,
    value: &'s Scalar<'_>,
    cx: &Context,
) -> Result<Option<&'s str>> {
    match value {
        Scalar::Text(t) if no_value(t.trim()) => Ok(None),
        Scalar::Text(t) => Ok(Some(t.trim())),
        Scalar::Null => Ok(None),
        other => Err(cx.invalid(
            field,
            format!("expected an object or a JSON text, found {}", other.kind()),
        )),
    }
}

/// Parses the JSON text inside a `users` or `user` string; its errors never quote it.
fn parse_embedded<'t, R: ReadMap<'t>>(
    field: &'static str,
    text: &'t str,
    reader: R,
    cx: &Context,
) -> Result<R::Out> {
    match parse_json(text, reader) {
        Ok(Value::Map(out)) => Ok(out),
        Ok(Value::Scalar(s)) => Err(cx.invalid(
            field,
            format!("holds JSON text that is {}, not an object", s.kind()),
        )),
        Err(e) => Err(cx.invalid(
            field,
            format!(
                "holds JSON text that is not valid: {} of that text",
                json_problem(&e, text)
            ),
        )),
    }
}

/// The accept event's `user.id`, when `user.type` is `agent` or absent.
fn accepting_agent(
    user: Option<&Value<'_, UserFields<'_>>>,
    cx: &Context,
) -> Result<Option<String>> {
    let parsed;
    let (id, kind) = match user {
        None => return Ok(None),
        Some(Value::Map(fields)) => fields,
        Some(Value::Scalar(s)) => match embedded_text("user", s, cx)? {
            None => return Ok(None),
            Some(text) => {
                parsed = parse_embedded("user", text, ReadUser, cx)?;
                &parsed
            }
        },
    };
    let is_agent = match kind {
        None => true,
        Some(Scalar::Text(t)) => no_value(t.trim()) || t.trim().eq_ignore_ascii_case("agent"),
        Some(other) => other.is_no_value(),
    };
    match id {
        Some(id) if is_agent => {
            id_text(id).map_err(|problem| cx.invalid("user", format!("`id`: {problem}")))
        }
        _ => Ok(None),
    }
}

/// `by`, kept only when it names an agent (`agent-15111`); anything else is not an agent id.
fn closing_agent(by: Option<&Scalar<'_>>) -> Option<String> {
    let Some(Scalar::Text(t)) = by else {
        return None;
    };
    let t = t.trim();
    (t.starts_with("agent-")
        && t.chars().count() <= MAX_VALUE_CHARS
        && !t.chars().any(char::is_control))
    .then(|| t.to_owned())
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
mod tests {
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
        (proptest::collection::vec((key, json_value()), 0..10), event).prop_map(
            |(fields, event)| {
                let mut body = format!("{{\"event\": {event}");
                for (key, value) in fields {
                    body.push_str(&format!(", \"{key}\": {value}"));
                }
                body.push('}');
                body
            },
        )
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
}
