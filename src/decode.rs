//! Decode: a raw webhook body, in any shape the vendor documents, to one typed [`Event`].
//!
//! CONTRACT (scaffold): the types below are fixed; `decode` is to be implemented.

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
