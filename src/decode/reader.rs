//! The lenient reader: one pass of serde_json over a body that keeps only the fields the
//! exporter uses, reads every scalar as text or number alike, and skips everything else (names,
//! e-mails and phones are never read into memory).

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

/// Parses one JSON text, all of it, reading maps with `reader` and any other value as a scalar.
pub(super) fn parse_json<'de, R: ReadMap<'de>>(
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
pub(super) fn clearer_error(text: &str, strict: serde_json::Error) -> serde_json::Error {
    let mut de = serde_json::Deserializer::from_str(text);
    match Check.deserialize(&mut de).and_then(|()| de.end()) {
        Err(e) if (e.line(), e.column()) == (strict.line(), strict.column()) => e,
        _ => strict,
    }
}

/// Walks a JSON value without keeping it, within serde_json's nesting limit.
pub(super) struct Check;

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

/// One JSON value read without knowing its type; maps go to a [`ReadMap`].
#[derive(Debug)]
pub(super) enum Value<'a, M> {
    Map(M),
    Scalar(Scalar<'a>),
}

/// Any non-object value, kept just enough to validate it and to say what it was.
#[derive(Clone, Debug, PartialEq)]
pub(super) enum Scalar<'a> {
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
    pub(super) fn kind(&self) -> &'static str {
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
    pub(super) fn is_no_value(&self) -> bool {
        match self {
            Self::Null => true,
            Self::Text(t) => no_value(t.trim()),
            _ => false,
        }
    }
}

pub(super) fn no_value(trimmed: &str) -> bool {
    trimmed.is_empty() || trimmed == "null"
}

/// What a JSON object turns into while it is being read.
pub(super) trait ReadMap<'de> {
    type Out;
    fn read<A: MapAccess<'de>>(self, map: A) -> std::result::Result<Self::Out, A::Error>;
}

/// Reads a value of any type: never a type error, so no error message can quote content.
pub(super) struct ValueSeed<R>(R);

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
pub(super) struct Skip;

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
pub(super) enum Key {
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
    pub(super) fn of(name: &str) -> Self {
        // The envelope's two keys in any letter case: the vendor's prose writes "Data and Event".
        if name.eq_ignore_ascii_case("event") {
            return Self::Event;
        }
        if name.eq_ignore_ascii_case("data") {
            return Self::Data;
        }
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
pub(super) struct Fields<'a> {
    pub(super) event: Option<Scalar<'a>>,
    pub(super) id: Option<Scalar<'a>>,
    pub(super) spaced_id: Option<Scalar<'a>>,
    pub(super) account_id: Option<Scalar<'a>>,
    pub(super) department_id: Option<Scalar<'a>>,
    pub(super) wait: Option<Scalar<'a>>,
    pub(super) duration: Option<Scalar<'a>>,
    pub(super) by: Option<Scalar<'a>>,
    pub(super) users: Option<Value<'a, AgentValue<'a>>>,
    pub(super) user: Option<Value<'a, UserFields<'a>>>,
    pub(super) data: Option<Box<Fields<'a>>>,
}

impl<'a> Fields<'a> {
    /// Stores a form field (every value is text; a form has no envelope).
    pub(super) fn set_text(&mut self, key: Key, value: Cow<'a, str>) {
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
    pub(super) fn flatten_envelope(mut self) -> Self {
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
pub(super) struct ReadFields {
    pub(super) envelope: bool,
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
pub(super) struct ReadUsers;

/// `users.agent`: an object (its role) or some other value.
pub(super) type AgentValue<'a> = Option<Value<'a, Option<Scalar<'a>>>>;

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
pub(super) struct ReadRole;

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
pub(super) struct ReadUser;

/// The accept event's `user.id` and `user.type`.
pub(super) type UserFields<'a> = (Option<Scalar<'a>>, Option<Scalar<'a>>);

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
