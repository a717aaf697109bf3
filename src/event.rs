//! The event, as every stage sees it: the leaf module the stages depend on, so that they need
//! not depend on each other.
//!
//! An event's life: [`crate::decode`] reads a body into an [`Event`] (or a [`Reason`] to refuse
//! it); [`crate::admit`] turns a recordable one into a [`ChatEvent`] and, once it is committed,
//! into an [`Admitted`] event with its sequence number; [`crate::record`] takes only those.
//!
//! Every mapping of [`EventKind`], [`ChatKind`], [`Reason`] and [`Outcome`] (to labels, to store
//! codes, from the wire) is an exhaustive `match`, so a new variant fails to compile until every
//! stage handles it.

use std::fmt;

/// The vendor's event types, as a closed set usable as a label value.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EventKind {
    /// `CHAT_ON_START`
    ChatStart,
    /// `CHAT_ON_ACCEPT`
    ChatAccept,
    /// `CHAT_ON_MESSAGE`
    ChatMessage,
    /// `CHAT_ON_CLOSE`
    ChatClose,
    /// Any other `event` value.
    Unknown,
}

impl EventKind {
    /// Every kind, in the order of [`Self::index`].
    pub const ALL: [EventKind; 5] = [
        Self::ChatStart,
        Self::ChatAccept,
        Self::ChatMessage,
        Self::ChatClose,
        Self::Unknown,
    ];

    /// The kind's place in [`Self::ALL`], for tables indexed by kind.
    pub fn index(self) -> usize {
        match self {
            Self::ChatStart => 0,
            Self::ChatAccept => 1,
            Self::ChatMessage => 2,
            Self::ChatClose => 3,
            Self::Unknown => 4,
        }
    }

    /// The value of the `event` label: `chat_start`, `chat_accept`, `chat_message`, `chat_close`
    /// or `unknown`.
    pub fn as_label(self) -> &'static str {
        match self {
            Self::ChatStart => "chat_start",
            Self::ChatAccept => "chat_accept",
            Self::ChatMessage => "chat_message",
            Self::ChatClose => "chat_close",
            Self::Unknown => "unknown",
        }
    }

    /// The `event` value the vendor sends for this kind; `None` for [`Self::Unknown`].
    pub fn wire_name(self) -> Option<&'static str> {
        match self {
            Self::ChatStart => Some("CHAT_ON_START"),
            Self::ChatAccept => Some("CHAT_ON_ACCEPT"),
            Self::ChatMessage => Some("CHAT_ON_MESSAGE"),
            Self::ChatClose => Some("CHAT_ON_CLOSE"),
            Self::Unknown => None,
        }
    }

    /// The kind named by an `event` value such as `CHAT_ON_CLOSE` (trimmed, any letter case).
    pub fn from_wire(s: &str) -> Self {
        let s = s.trim();
        Self::ALL
            .into_iter()
            .find(|kind| kind.wire_name().is_some_and(|w| w.eq_ignore_ascii_case(s)))
            .unwrap_or(Self::Unknown)
    }
}

impl fmt::Display for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_label())
    }
}

/// One decoded webhook.
#[derive(Clone, Debug, PartialEq)]
pub enum Event {
    /// `CHAT_ON_START`: a visitor asked for a chat.
    Started(ChatStarted),
    /// `CHAT_ON_ACCEPT`: an agent took the chat.
    Accepted(ChatAccepted),
    /// `CHAT_ON_CLOSE`: the chat ended.
    Closed(ChatClosed),
    /// `CHAT_ON_MESSAGE` or an unknown event: counted, never observed.
    Other(EventKind),
}

impl Event {
    /// The vendor's event type this event came as.
    pub fn kind(&self) -> EventKind {
        match self {
            Self::Started(_) => EventKind::ChatStart,
            Self::Accepted(_) => EventKind::ChatAccept,
            Self::Closed(_) => EventKind::ChatClose,
            Self::Other(kind) => *kind,
        }
    }
}

/// A `CHAT_ON_START` event.
#[derive(Clone, Debug, PartialEq)]
pub struct ChatStarted {
    /// Chat id (`id`, or `" id"` as the vendor's example prints it).
    pub chat_id: String,
    /// Account id, `""` when absent.
    pub account_id: String,
    /// Department id, `""` when the chat has none.
    pub department_id: String,
}

/// A `CHAT_ON_ACCEPT` event.
#[derive(Clone, Debug, PartialEq)]
pub struct ChatAccepted {
    /// Chat id.
    pub chat_id: String,
    /// Account id, `""` when absent.
    pub account_id: String,
    /// The accepting agent's id (`user.id`, such as `agent-12345`), when sent.
    pub agent_id: Option<String>,
}

/// A `CHAT_ON_CLOSE` event, reduced to what the metrics need (no names, e-mails or phones).
#[derive(Clone, Debug, PartialEq)]
pub struct ChatClosed {
    /// Chat id.
    pub chat_id: String,
    /// Account id, `""` when absent.
    pub account_id: String,
    /// Department id, `""` when the chat had no department.
    pub department_id: String,
    /// `users.agent.role`, trimmed and lower-cased; `None` when no agent took the chat.
    pub agent_role: Option<String>,
    /// The agent who closed the chat (`by`, such as `agent-15111`), when it names an agent.
    pub agent_id: Option<String>,
    /// Seconds the visitor waited; `None` when the vendor sent no value.
    pub wait_seconds: Option<f64>,
    /// Seconds the chat lasted; `None` when the vendor sent no value.
    pub duration_seconds: Option<f64>,
}

/// The event types that are admitted and recorded; messages and unknown events are counted and
/// answered, never stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ChatKind {
    /// A chat started: it waits in the live queue.
    Start,
    /// An agent accepted a chat.
    Accept,
    /// A chat closed, with its wait and duration.
    Close,
}

impl From<ChatKind> for EventKind {
    fn from(kind: ChatKind) -> Self {
        match kind {
            ChatKind::Start => EventKind::ChatStart,
            ChatKind::Accept => EventKind::ChatAccept,
            ChatKind::Close => EventKind::ChatClose,
        }
    }
}

/// What is kept of an event to record it: ids, the department id, the agent role and times;
/// nothing personal. The admission stage makes it from a decoded [`Event`]; the stores keep it.
#[derive(Clone, Debug, PartialEq)]
pub struct ChatEvent {
    /// Start, accept or close.
    pub kind: ChatKind,
    /// Account id (`""` when the vendor sent none).
    pub account_id: String,
    /// Chat id.
    pub chat_id: String,
    /// When the exporter received it, in milliseconds since the Unix epoch.
    pub received_ms: i64,
    /// Department id, `""` for none.
    pub department_id: String,
    /// Normalised agent role, if any.
    pub agent_role: Option<String>,
    /// Agent id (`agent-15111`), if any.
    pub agent_id: Option<String>,
    /// Wait in seconds, if any (a close with none was not answered).
    pub wait_seconds: Option<f64>,
    /// Duration in seconds, if any.
    pub duration_seconds: Option<f64>,
}

impl ChatEvent {
    /// An event of `kind` for `chat_id` with every other field empty.
    pub fn empty(kind: ChatKind, chat_id: &str) -> Self {
        ChatEvent {
            kind,
            account_id: String::new(),
            chat_id: chat_id.to_owned(),
            received_ms: 0,
            department_id: String::new(),
            agent_role: None,
            agent_id: None,
            wait_seconds: None,
            duration_seconds: None,
        }
    }
}

/// The position of an admitted event in the store's log: increasing in admission order, never
/// reused.
pub type Seq = u64;

/// An event the store committed, with its place in the log. The record stage takes only these:
/// the store engines make them, for a live event after its commit and for a stored one at a
/// replay (tests and benchmarks make them to drive the record stage alone).
#[derive(Clone, Debug, PartialEq)]
pub struct Admitted {
    /// Its position in the log.
    pub seq: Seq,
    /// The event.
    pub event: ChatEvent,
}

impl std::ops::Deref for Admitted {
    type Target = ChatEvent;

    fn deref(&self) -> &ChatEvent {
        &self.event
    }
}

/// Why a delivery was refused, the `reason` label.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Reason {
    /// Not JSON (or not a form), or not an object.
    MalformedBody,
    /// A required field is absent.
    MissingField,
    /// A field's value is not acceptable.
    InvalidField,
    /// Neither JSON nor a form.
    UnsupportedMediaType,
    /// Over the body limit.
    PayloadTooLarge,
    /// Token or signature missing or wrong.
    Unauthorized,
}

impl Reason {
    /// Every reason, in the order of [`Self::index`].
    pub const ALL: [Reason; 6] = [
        Self::MalformedBody,
        Self::MissingField,
        Self::InvalidField,
        Self::UnsupportedMediaType,
        Self::PayloadTooLarge,
        Self::Unauthorized,
    ];

    /// The reason's place in [`Self::ALL`].
    pub fn index(self) -> usize {
        match self {
            Self::MalformedBody => 0,
            Self::MissingField => 1,
            Self::InvalidField => 2,
            Self::UnsupportedMediaType => 3,
            Self::PayloadTooLarge => 4,
            Self::Unauthorized => 5,
        }
    }

    /// The label value.
    pub fn as_label(self) -> &'static str {
        match self {
            Self::MalformedBody => "malformed_body",
            Self::MissingField => "missing_field",
            Self::InvalidField => "invalid_field",
            Self::UnsupportedMediaType => "unsupported_media_type",
            Self::PayloadTooLarge => "payload_too_large",
            Self::Unauthorized => "unauthorized",
        }
    }
}

/// What happened to a delivery, the `outcome` label.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// Admitted and recorded.
    Observed,
    /// A valid event the exporter does not record (messages, unknown types).
    Ignored,
    /// Admitted before: changed nothing.
    Duplicate,
    /// Refused with a 4xx.
    Rejected,
    /// Not stored because the store failed: answered 503, the sender retries.
    Error,
}

impl Outcome {
    /// Every outcome, in the order of [`Self::index`].
    pub const ALL: [Outcome; 5] = [
        Self::Observed,
        Self::Ignored,
        Self::Duplicate,
        Self::Rejected,
        Self::Error,
    ];

    /// The outcome's place in [`Self::ALL`].
    pub fn index(self) -> usize {
        match self {
            Self::Observed => 0,
            Self::Ignored => 1,
            Self::Duplicate => 2,
            Self::Rejected => 3,
            Self::Error => 4,
        }
    }

    /// The label value.
    pub fn as_label(self) -> &'static str {
        match self {
            Self::Observed => "observed",
            Self::Ignored => "ignored",
            Self::Duplicate => "duplicate",
            Self::Rejected => "rejected",
            Self::Error => "error",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_table_lists_each_variant_once_at_its_index() {
        for (i, k) in EventKind::ALL.into_iter().enumerate() {
            assert_eq!(k.index(), i, "{k:?}");
        }
        for (i, r) in Reason::ALL.into_iter().enumerate() {
            assert_eq!(r.index(), i, "{r:?}");
        }
        for (i, o) in Outcome::ALL.into_iter().enumerate() {
            assert_eq!(o.index(), i, "{o:?}");
        }
    }

    #[test]
    fn wire_names_read_back_in_any_case_and_others_are_unknown() {
        for kind in EventKind::ALL {
            match kind.wire_name() {
                Some(wire) => {
                    assert_eq!(EventKind::from_wire(wire), kind);
                    assert_eq!(
                        EventKind::from_wire(&format!(" {} ", wire.to_lowercase())),
                        kind
                    );
                }
                None => assert_eq!(kind, EventKind::Unknown),
            }
        }
        assert_eq!(EventKind::from_wire("CHAT_ON_TRANSFER"), EventKind::Unknown);
        assert_eq!(EventKind::from_wire(""), EventKind::Unknown);
    }

    #[test]
    fn recorded_kinds_are_their_event_kinds() {
        assert_eq!(EventKind::from(ChatKind::Start), EventKind::ChatStart);
        assert_eq!(EventKind::from(ChatKind::Accept), EventKind::ChatAccept);
        assert_eq!(EventKind::from(ChatKind::Close), EventKind::ChatClose);
    }
}
