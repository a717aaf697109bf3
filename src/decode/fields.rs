//! Field rules: which fields each event needs, and how ids, seconds, roles and agents are read
//! and checked.

use super::reader::{
    AgentValue, Fields, ReadMap, ReadUser, ReadUsers, Scalar, UserFields, Value, no_value,
    parse_json,
};
use super::{DecodeError, MAX_SECONDS, MAX_VALUE_CHARS, Result, echo, json_problem};
use crate::event::{ChatAccepted, ChatClosed, ChatStarted, Event, EventKind};

/// What an error can say about the event it cut short.
pub(super) struct Context {
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

pub(super) fn to_event(fields: Fields<'_>) -> Result<Event> {
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

pub(super) fn event_kind(value: Option<&Scalar<'_>>, cx: &Context) -> Result<EventKind> {
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
pub(super) fn chat_id(f: &Fields<'_>, cx: &Context) -> Result<String> {
    if let Some(id) = optional_id("id", f.id.as_ref(), cx)? {
        return Ok(id);
    }
    optional_id("id", f.spaced_id.as_ref(), cx)?.ok_or_else(|| cx.missing("id"))
}

pub(super) fn optional_id(
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
pub(super) fn id_text(value: &Scalar<'_>) -> std::result::Result<Option<String>, String> {
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

pub(super) fn optional_seconds(
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
pub(super) fn seconds(value: &Scalar<'_>) -> std::result::Result<Option<f64>, String> {
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
pub(super) fn parse_seconds(t: &str) -> std::result::Result<f64, String> {
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
pub(super) fn is_decimal(t: &str) -> bool {
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
pub(super) fn agent_role(
    users: Option<&Value<'_, AgentValue<'_>>>,
    cx: &Context,
) -> Result<Option<String>> {
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
pub(super) fn embedded_text<'s>(
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
pub(super) fn parse_embedded<'t, R: ReadMap<'t>>(
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
pub(super) fn accepting_agent(
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
pub(super) fn closing_agent(by: Option<&Scalar<'_>>) -> Option<String> {
    let Some(Scalar::Text(t)) = by else {
        return None;
    };
    let t = t.trim();
    (t.starts_with("agent-")
        && t.chars().count() <= MAX_VALUE_CHARS
        && !t.chars().any(char::is_control))
    .then(|| t.to_owned())
}
