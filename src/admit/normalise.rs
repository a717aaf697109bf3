//! The rules that turn a decoded event into what is kept of it, before it is admitted.

use crate::event::{ChatEvent, ChatKind, Event};

/// What is kept of `event`, received at `received_ms` (milliseconds since the Unix epoch); `None`
/// for the events that are counted but never recorded (messages, unknown types).
///
/// A close's wait of 0 with no agent in `users` is how a chat nobody answered may come: it is
/// kept as no wait (unanswered), not as an instant answer. A 0 with an agent is an instant
/// answer.
pub fn recordable(event: Event, received_ms: i64) -> Option<ChatEvent> {
    Some(match event {
        Event::Closed(c) => ChatEvent {
            kind: ChatKind::Close,
            account_id: c.account_id,
            chat_id: c.chat_id,
            received_ms,
            department_id: c.department_id,
            wait_seconds: c
                .wait_seconds
                .filter(|w| *w > 0.0 || c.agent_role.is_some()),
            agent_role: c.agent_role,
            agent_id: c.agent_id,
            duration_seconds: c.duration_seconds,
        },
        Event::Started(s) => ChatEvent {
            account_id: s.account_id,
            received_ms,
            department_id: s.department_id,
            ..ChatEvent::empty(ChatKind::Start, &s.chat_id)
        },
        Event::Accepted(a) => ChatEvent {
            account_id: a.account_id,
            received_ms,
            agent_id: a.agent_id,
            ..ChatEvent::empty(ChatKind::Accept, &a.chat_id)
        },
        Event::Other(_) => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{ChatAccepted, ChatClosed, ChatStarted, EventKind};

    fn close(wait: Option<f64>, role: Option<&str>) -> Event {
        Event::Closed(ChatClosed {
            chat_id: "104111".into(),
            account_id: "10111".into(),
            department_id: "7".into(),
            agent_role: role.map(str::to_owned),
            agent_id: role.map(|_| "agent-15111".to_owned()),
            wait_seconds: wait,
            duration_seconds: Some(25.0),
        })
    }

    #[test]
    fn a_zero_wait_is_unanswered_without_an_agent_and_instant_with_one() {
        let cases = [
            ("zero_without_agent", close(Some(0.0), None), None),
            (
                "zero_with_agent",
                close(Some(0.0), Some("operator")),
                Some(0.0),
            ),
            ("positive_without_agent", close(Some(2.0), None), Some(2.0)),
            ("no_wait", close(None, Some("operator")), None),
        ];
        for (name, event, wait) in cases {
            let kept = recordable(event, 7).expect(name);
            assert_eq!(kept.wait_seconds, wait, "{name}");
            assert_eq!(kept.duration_seconds, Some(25.0), "{name}");
            assert_eq!(kept.received_ms, 7, "{name}");
        }
    }

    #[test]
    fn starts_and_accepts_keep_their_ids_and_others_are_not_kept() {
        let start = recordable(
            Event::Started(ChatStarted {
                chat_id: "1".into(),
                account_id: "a".into(),
                department_id: "7".into(),
            }),
            1,
        )
        .unwrap();
        assert_eq!(
            (
                start.kind,
                start.chat_id.as_str(),
                start.department_id.as_str()
            ),
            (ChatKind::Start, "1", "7")
        );
        let accept = recordable(
            Event::Accepted(ChatAccepted {
                chat_id: "1".into(),
                account_id: "a".into(),
                agent_id: Some("agent-2".into()),
            }),
            2,
        )
        .unwrap();
        assert_eq!(accept.kind, ChatKind::Accept);
        assert_eq!(accept.agent_id.as_deref(), Some("agent-2"));
        assert_eq!(recordable(Event::Other(EventKind::ChatMessage), 3), None);
        assert_eq!(recordable(Event::Other(EventKind::Unknown), 3), None);
    }
}
