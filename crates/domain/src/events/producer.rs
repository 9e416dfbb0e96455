//! The producer's JSON event (`{"type", "idempotency_key"?, "occurred_at"?,
//! "data"}`) parsed into a [`NewEvent`].

use serde::{Deserialize, Serialize};

use crate::{FieldError, event_type::EventType};

use super::{checked::Timestamp, payload::Payload};

/// Largest producer event accepted, in bytes of JSON.
pub const MAX_EVENT_BYTES: usize = 256 * 1024;

/// An idempotency key: 1-255 printable ASCII characters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct IdempotencyKey(String);

impl IdempotencyKey {
    pub fn parse(s: &str) -> Result<Self, FieldError> {
        if s.is_empty() || s.len() > 255 || !s.bytes().all(|b| (0x21..=0x7e).contains(&b)) {
            return Err(FieldError::new("", "must be 1-255 printable ASCII characters without spaces"));
        }
        Ok(Self(s.to_owned()))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for IdempotencyKey {
    type Error = FieldError;
    fn try_from(s: String) -> Result<Self, FieldError> {
        Self::parse(&s)
    }
}

impl From<IdempotencyKey> for String {
    fn from(k: IdempotencyKey) -> String {
        k.0
    }
}

/// A validated event before ingest gives it an id.
#[derive(Debug, Clone, PartialEq)]
pub struct NewEvent {
    pub idempotency_key: Option<IdempotencyKey>,
    pub occurred_at: Option<Timestamp>,
    pub payload: Payload,
}

impl NewEvent {
    /// Parse a producer JSON event:
    /// `{"type", "idempotency_key"?, "occurred_at"?, "data"}`.
    pub fn from_json(bytes: &[u8]) -> Result<Self, FieldError> {
        if bytes.len() > MAX_EVENT_BYTES {
            return Err(FieldError::new(
                "event",
                format!("is {} bytes; the limit is {MAX_EVENT_BYTES} bytes (256 KiB)", bytes.len()),
            ));
        }
        // The top level only, its values kept as text: the payload is then
        // parsed once, into its type, with no JSON tree in between.
        let fields: TopLevel = match serde_json::from_slice(bytes) {
            Ok(fields) => fields,
            Err(_) => {
                return Err(match serde_json::from_slice::<serde::de::IgnoredAny>(bytes) {
                    Ok(_) => FieldError::new("event", "must be a JSON object"),
                    Err(e) => FieldError::new("event", format!("is not valid JSON: {e}")),
                });
            }
        };
        if let Some((unknown, _)) =
            fields.0.iter().find(|(k, _)| !matches!(k.as_str(), "type" | "idempotency_key" | "occurred_at" | "data"))
        {
            return Err(FieldError::new(
                unknown.clone(),
                "unknown field; expected type, idempotency_key, occurred_at, data",
            ));
        }
        // A repeated field is ambiguous (parsers differ on which one wins), so it is
        // refused, here as inside `data`.
        for (i, (name, _)) in fields.0.iter().enumerate() {
            if fields.0[..i].iter().any(|(seen, _)| seen == name) {
                return Err(FieldError::new(name.clone(), "appears more than once"));
            }
        }
        let get = |name: &str| fields.0.iter().find(|(k, _)| k == name).map(|(_, v)| *v);
        let text = |name: &str| get(name).map(|raw| serde_json::from_str::<Option<String>>(raw.get()));
        let event_type = match text("type") {
            Some(Ok(Some(s))) => EventType::parse(&s).map_err(|e| e.under("type"))?,
            Some(_) => return Err(FieldError::new("type", "must be a string")),
            None => return Err(FieldError::new("type", "is required")),
        };
        let idempotency_key = match text("idempotency_key") {
            None | Some(Ok(None)) => None,
            Some(Ok(Some(s))) => Some(IdempotencyKey::parse(&s).map_err(|e| e.under("idempotency_key"))?),
            Some(Err(_)) => return Err(FieldError::new("idempotency_key", "must be a string")),
        };
        let occurred_at = match text("occurred_at") {
            None | Some(Ok(None)) => None,
            Some(Ok(Some(s))) => Some(Timestamp::try_from(s).map_err(|e| FieldError::new("occurred_at", e))?),
            Some(Err(_)) => return Err(FieldError::new("occurred_at", "must be an RFC 3339 string")),
        };
        let data = get("data").ok_or_else(|| FieldError::new("data", "is required"))?;
        let payload = Payload::parse(event_type, data).map_err(|e| e.under("data"))?;
        Ok(Self { idempotency_key, occurred_at, payload })
    }

    /// The same as [`NewEvent::from_json`] for a JSON tree (tests, tools).
    pub fn from_value(value: serde_json::Value) -> Result<Self, FieldError> {
        Self::from_json(&serde_json::to_vec(&value).expect("JSON values serialise"))
    }
}

/// A producer event's top-level fields in document order, values as JSON text.
struct TopLevel<'a>(Vec<(String, &'a serde_json::value::RawValue)>);

impl<'de> Deserialize<'de> for TopLevel<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Fields;
        impl<'de> serde::de::Visitor<'de> for Fields {
            type Value = TopLevel<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<TopLevel<'de>, A::Error> {
                let mut fields = Vec::with_capacity(4);
                while let Some(key) = map.next_key::<String>()? {
                    fields.push((key, map.next_value()?));
                }
                Ok(TopLevel(fields))
            }
        }
        d.deserialize_map(Fields)
    }
}
