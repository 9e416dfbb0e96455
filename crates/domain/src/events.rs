//! The twelve payloads, the producer's JSON event and the stored event.
//!
//! Payload structs reject unknown fields so that a misspelt field is an error
//! rather than silently dropped data. Strings that carry meaning are
//! newtypes checked on deserialisation, so a payload that parsed is valid.

use std::borrow::Cow;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Serialize};

use crate::{
    FieldError,
    event_type::EventType,
    ids::{EventId, TenantId},
};

/// Largest producer event accepted, in bytes of JSON.
pub const MAX_EVENT_BYTES: usize = 256 * 1024;

macro_rules! checked_string {
    ($(#[$doc:meta])* $name:ident, $format:expr, |$s:ident| $check:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl TryFrom<String> for $name {
            type Error = String;
            fn try_from($s: String) -> Result<Self, String> {
                let rule: Result<(), String> = $check;
                rule.map(|()| Self($s))
            }
        }

        impl From<$name> for String {
            fn from(v: $name) -> String {
                v.0
            }
        }

        impl JsonSchema for $name {
            fn schema_name() -> Cow<'static, str> {
                stringify!($name).into()
            }
            fn inline_schema() -> bool {
                true
            }
            fn json_schema(_: &mut SchemaGenerator) -> Schema {
                let format: Option<&str> = $format;
                match format {
                    Some(f) => json_schema!({"type": "string", "minLength": 1, "format": f}),
                    None => json_schema!({"type": "string", "minLength": 1, "maxLength": 1024}),
                }
            }
        }
    };
}

fn text_rule(s: &str) -> Result<(), String> {
    if s.trim().is_empty() {
        Err("must not be empty".into())
    } else if s.len() > 1024 {
        Err(format!("must be at most 1024 bytes, got {}", s.len()))
    } else {
        Ok(())
    }
}

checked_string!(
    /// Non-empty text of at most 1024 bytes.
    Text, None, |s| text_rule(&s)
);
checked_string!(
    /// An e-mail address: one `@` with text on both sides and a dot in the domain.
    Email, Some("email"), |s| {
        let parts: Vec<&str> = s.split('@').collect();
        if parts.len() == 2 && !parts[0].is_empty() && parts[1].contains('.') && !parts[1].starts_with('.')
            && !parts[1].ends_with('.') && !s.chars().any(char::is_whitespace) && s.len() <= 254 {
            Ok(())
        } else {
            Err(format!("must be an e-mail address like name@example.com, got `{s}`"))
        }
    }
);
checked_string!(
    /// An RFC 3339 date-time with offset, kept exactly as sent.
    Timestamp, Some("date-time"), |s| chrono::DateTime::parse_from_rfc3339(&s)
        .map(|_| ())
        .map_err(|e| format!("must be an RFC 3339 date-time with offset like 2026-03-02T09:00:00+01:00 ({e}), got `{s}`"))
);
checked_string!(
    /// An IANA time zone name such as `Europe/Zurich` or `UTC`.
    TimeZone, Some("iana-time-zone"), |s| {
        let ok = !s.is_empty() && s.len() <= 64
            && s.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'/' | b'_' | b'-' | b'+'))
            && s.as_bytes()[0].is_ascii_uppercase();
        if ok { Ok(()) } else { Err(format!("must be an IANA time zone name like Europe/Zurich, got `{s}`")) }
    }
);
checked_string!(
    /// A URL for online meetings.
    Url, Some("uri"), |s| {
        if (s.starts_with("https://") || s.starts_with("http://")) && s.len() <= 2048 && !s.chars().any(char::is_whitespace) {
            Ok(())
        } else {
            Err(format!("must be an http(s) URL, got `{s}`"))
        }
    }
);

impl Email {
    pub fn parse(s: &str) -> Result<Self, FieldError> {
        Self::try_from(s.to_owned()).map_err(|rule| FieldError::new("email", rule))
    }
}

impl Timestamp {
    pub fn parsed(&self) -> chrono::DateTime<chrono::FixedOffset> {
        chrono::DateTime::parse_from_rfc3339(&self.0).expect("checked on construction")
    }

    pub fn now() -> Self {
        Self(chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
    }
}

/// Where a booking came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Channel {
    /// The customer used the booking widget.
    Widget,
    /// The partner entered it in the calendar.
    Manual,
}

/// Who made a change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Actor {
    Customer,
    Partner,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum LocationKind {
    Onsite,
    Online,
    Phone,
}

/// A customer of the tenant.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Customer {
    pub id: Text,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_name: Option<Text>,
    pub last_name: Text,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<Email>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phone: Option<Text>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub company: Option<Text>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub language: Option<Text>,
}

/// A worker, room or device.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Resource {
    pub id: Text,
    pub name: Text,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Location {
    pub kind: LocationKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<Text>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<Text>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub meeting_url: Option<Url>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Appointment {
    pub id: Text,
    pub title: Text,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_id: Option<Text>,
    pub starts_at: Timestamp,
    pub ends_at: Timestamp,
    pub time_zone: TimeZone,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource: Option<Resource>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<Location>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notes: Option<Text>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Slot {
    pub starts_at: Timestamp,
    pub ends_at: Timestamp,
    pub time_zone: TimeZone,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource: Option<Resource>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GroupEvent {
    pub id: Text,
    pub title: Text,
    pub starts_at: Timestamp,
    pub ends_at: Timestamp,
    pub time_zone: TimeZone,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<Resource>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<Location>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capacity: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Participation {
    pub id: Text,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seats: Option<u32>,
}

/// appointment.booking.created and appointment.manual.booking.created.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AppointmentBooked {
    pub appointment: Appointment,
    pub customer: Customer,
    pub channel: Channel,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AppointmentCancelled {
    pub appointment: Appointment,
    pub customer: Customer,
    pub channel: Channel,
    pub cancelled_by: Actor,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cancellation_reason: Option<Text>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AppointmentUpdated {
    pub appointment: Appointment,
    pub customer: Customer,
    pub channel: Channel,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub changed_fields: Vec<Text>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AppointmentRebooked {
    pub appointment: Appointment,
    pub customer: Customer,
    pub channel: Channel,
    pub rebooked_by: Actor,
    pub previous: Slot,
}

/// event.booking.created and event.manual.booking.created.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EventBooked {
    pub event: GroupEvent,
    pub participation: Participation,
    pub customer: Customer,
    pub channel: Channel,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EventCancelled {
    pub event: GroupEvent,
    pub participation: Participation,
    pub customer: Customer,
    pub channel: Channel,
    pub cancelled_by: Actor,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cancellation_reason: Option<Text>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EventRebooked {
    pub event: GroupEvent,
    pub participation: Participation,
    pub customer: Customer,
    pub channel: Channel,
    pub rebooked_by: Actor,
    pub previous_event: GroupEvent,
}

/// customer.created.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CustomerChanged {
    pub customer: Customer,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub changed_fields: Vec<Text>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CustomerDeleted {
    pub customer_id: Text,
}

/// A typed payload; the variant fixes the event type.
#[derive(Debug, Clone, PartialEq)]
pub enum Payload {
    AppointmentBookingCreated(AppointmentBooked),
    AppointmentBookingCancelled(AppointmentCancelled),
    AppointmentUpdated(AppointmentUpdated),
    AppointmentManualBookingCreated(AppointmentBooked),
    AppointmentBookingRebooked(AppointmentRebooked),
    EventBookingCreated(EventBooked),
    EventBookingCancelled(EventCancelled),
    EventManualBookingCreated(EventBooked),
    EventBookingRebooked(EventRebooked),
    CustomerCreated(CustomerChanged),
    CustomerUpdated(CustomerChanged),
    CustomerDeleted(CustomerDeleted),
}

fn field_error(e: serde_path_to_error::Error<serde_json::Error>) -> FieldError {
    let path = e.path().to_string();
    let field = if path == "." { String::new() } else { path };
    let inner = e.into_inner();
    let mut rule = inner.to_string();
    // Text positions mean nothing to a gRPC client that sent typed fields.
    if inner.line() > 0
        && let Some(at) = rule.rfind(" at line ")
    {
        rule.truncate(at);
    }
    FieldError::new(field, rule)
}

/// `data`'s text parsed straight into `T`; errors name the field by its
/// path relative to `data`. Tracking the path costs about a third of the
/// parse, so only text that fails is parsed again, tracked, to name it.
fn parse_as<T: serde::de::DeserializeOwned>(data: &serde_json::value::RawValue) -> Result<T, FieldError> {
    serde_json::from_str(data.get()).or_else(|_| {
        serde_path_to_error::deserialize(&mut serde_json::Deserializer::from_str(data.get())).map_err(field_error)
    })
}

fn check_span(field: &str, starts: &Timestamp, ends: &Timestamp) -> Result<(), FieldError> {
    if ends.parsed() < starts.parsed() {
        return Err(FieldError::new(format!("{field}.ends_at"), "must not be before starts_at"));
    }
    Ok(())
}

impl Payload {
    /// Parse `data` as the payload of `event_type`; errors name the field
    /// relative to `data`.
    pub fn parse(event_type: EventType, data: &serde_json::value::RawValue) -> Result<Self, FieldError> {
        use EventType as T;
        if !data.get().starts_with('{') {
            return Err(FieldError::new("", "must be a JSON object"));
        }
        let payload = match event_type {
            T::AppointmentBookingCreated => Self::AppointmentBookingCreated(parse_as(data)?),
            T::AppointmentBookingCancelled => Self::AppointmentBookingCancelled(parse_as(data)?),
            T::AppointmentUpdated => Self::AppointmentUpdated(parse_as(data)?),
            T::AppointmentManualBookingCreated => Self::AppointmentManualBookingCreated(parse_as(data)?),
            T::AppointmentBookingRebooked => Self::AppointmentBookingRebooked(parse_as(data)?),
            T::EventBookingCreated => Self::EventBookingCreated(parse_as(data)?),
            T::EventBookingCancelled => Self::EventBookingCancelled(parse_as(data)?),
            T::EventManualBookingCreated => Self::EventManualBookingCreated(parse_as(data)?),
            T::EventBookingRebooked => Self::EventBookingRebooked(parse_as(data)?),
            T::CustomerCreated => Self::CustomerCreated(parse_as(data)?),
            T::CustomerUpdated => Self::CustomerUpdated(parse_as(data)?),
            T::CustomerDeleted => Self::CustomerDeleted(parse_as(data)?),
        };
        payload.check_rules()?;
        Ok(payload)
    }

    /// Rules across fields, which serde cannot express.
    fn check_rules(&self) -> Result<(), FieldError> {
        match self {
            Self::AppointmentBookingCreated(p) | Self::AppointmentManualBookingCreated(p) => {
                check_span("appointment", &p.appointment.starts_at, &p.appointment.ends_at)?;
                if matches!(self, Self::AppointmentManualBookingCreated(_)) && p.channel != Channel::Manual {
                    return Err(FieldError::new("channel", "must be `manual` for appointment.manual.booking.created"));
                }
            }
            Self::AppointmentBookingCancelled(p) => {
                check_span("appointment", &p.appointment.starts_at, &p.appointment.ends_at)?
            }
            Self::AppointmentUpdated(p) => check_span("appointment", &p.appointment.starts_at, &p.appointment.ends_at)?,
            Self::AppointmentBookingRebooked(p) => {
                check_span("appointment", &p.appointment.starts_at, &p.appointment.ends_at)?;
                check_span("previous", &p.previous.starts_at, &p.previous.ends_at)?;
            }
            Self::EventBookingCreated(p) | Self::EventManualBookingCreated(p) => {
                check_span("event", &p.event.starts_at, &p.event.ends_at)?;
                if matches!(self, Self::EventManualBookingCreated(_)) && p.channel != Channel::Manual {
                    return Err(FieldError::new("channel", "must be `manual` for event.manual.booking.created"));
                }
            }
            Self::EventBookingCancelled(p) => check_span("event", &p.event.starts_at, &p.event.ends_at)?,
            Self::EventBookingRebooked(p) => {
                check_span("event", &p.event.starts_at, &p.event.ends_at)?;
                check_span("previous_event", &p.previous_event.starts_at, &p.previous_event.ends_at)?;
            }
            Self::CustomerCreated(_) | Self::CustomerUpdated(_) | Self::CustomerDeleted(_) => {}
        }
        Ok(())
    }

    pub fn event_type(&self) -> EventType {
        use EventType as T;
        match self {
            Self::AppointmentBookingCreated(_) => T::AppointmentBookingCreated,
            Self::AppointmentBookingCancelled(_) => T::AppointmentBookingCancelled,
            Self::AppointmentUpdated(_) => T::AppointmentUpdated,
            Self::AppointmentManualBookingCreated(_) => T::AppointmentManualBookingCreated,
            Self::AppointmentBookingRebooked(_) => T::AppointmentBookingRebooked,
            Self::EventBookingCreated(_) => T::EventBookingCreated,
            Self::EventBookingCancelled(_) => T::EventBookingCancelled,
            Self::EventManualBookingCreated(_) => T::EventManualBookingCreated,
            Self::EventBookingRebooked(_) => T::EventBookingRebooked,
            Self::CustomerCreated(_) => T::CustomerCreated,
            Self::CustomerUpdated(_) => T::CustomerUpdated,
            Self::CustomerDeleted(_) => T::CustomerDeleted,
        }
    }

    pub fn to_json(&self) -> serde_json::Value {
        serde_json::from_str(self.to_raw().get()).expect("payloads are JSON")
    }

    /// The payload as JSON text, in field order, as it is stored.
    pub fn to_raw(&self) -> Box<serde_json::value::RawValue> {
        use serde_json::value::to_raw_value;
        let v = match self {
            Self::AppointmentBookingCreated(p) | Self::AppointmentManualBookingCreated(p) => to_raw_value(p),
            Self::AppointmentBookingCancelled(p) => to_raw_value(p),
            Self::AppointmentUpdated(p) => to_raw_value(p),
            Self::AppointmentBookingRebooked(p) => to_raw_value(p),
            Self::EventBookingCreated(p) | Self::EventManualBookingCreated(p) => to_raw_value(p),
            Self::EventBookingCancelled(p) => to_raw_value(p),
            Self::EventBookingRebooked(p) => to_raw_value(p),
            Self::CustomerCreated(p) | Self::CustomerUpdated(p) => to_raw_value(p),
            Self::CustomerDeleted(p) => to_raw_value(p),
        };
        v.expect("payloads serialise")
    }

    /// The JSON Schema of `event_type`'s whole producer event.
    pub fn json_schema(event_type: EventType) -> serde_json::Value {
        use EventType as T;
        let mut generator = schemars::generate::SchemaSettings::draft2020_12().into_generator();
        let data = match event_type {
            T::AppointmentBookingCreated | T::AppointmentManualBookingCreated => {
                generator.subschema_for::<AppointmentBooked>()
            }
            T::AppointmentBookingCancelled => generator.subschema_for::<AppointmentCancelled>(),
            T::AppointmentUpdated => generator.subschema_for::<AppointmentUpdated>(),
            T::AppointmentBookingRebooked => generator.subschema_for::<AppointmentRebooked>(),
            T::EventBookingCreated | T::EventManualBookingCreated => generator.subschema_for::<EventBooked>(),
            T::EventBookingCancelled => generator.subschema_for::<EventCancelled>(),
            T::EventBookingRebooked => generator.subschema_for::<EventRebooked>(),
            T::CustomerCreated | T::CustomerUpdated => generator.subschema_for::<CustomerChanged>(),
            T::CustomerDeleted => generator.subschema_for::<CustomerDeleted>(),
        };
        let defs = generator.take_definitions(true);
        serde_json::json!({
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "$id": format!("https://hookline.dev/schemas/{}.json", event_type.as_str()),
            "title": event_type.as_str(),
            "description": format!("A `{}` event as producers send it to Hookline (gRPC `json`, or NATS `hookline.intake.<tenant_id>`).", event_type.as_str()),
            "type": "object",
            "additionalProperties": false,
            "required": ["type", "data"],
            "properties": {
                "type": {"const": event_type.as_str()},
                "idempotency_key": {"type": "string", "minLength": 1, "maxLength": 255,
                    "description": "Same key for the same tenant within 24 h: same event, delivered once."},
                "occurred_at": {"type": "string", "format": "date-time"},
                "data": data,
            },
            "$defs": defs,
        })
    }
}

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
        // parsed once, into its type (a tree first cost ingest a third of its CPU).
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

/// An accepted event as stored in HOOKLINE_EVENTS and carried to workers.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StoredEvent {
    pub id: EventId,
    pub tenant_id: TenantId,
    #[serde(rename = "type")]
    pub event_type: EventType,
    /// When the change happened (the producer's `occurred_at`, else `received_at`).
    pub occurred_at: String,
    /// When ingest accepted the event, RFC 3339 UTC.
    pub received_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
    /// The payload as JSON text, validated at ingest. Kept as text so fan-out
    /// and workers copy it instead of parsing it into a tree and printing it
    /// again for every task and attempt.
    pub data: Box<serde_json::value::RawValue>,
}

impl PartialEq for StoredEvent {
    fn eq(&self, other: &Self) -> bool {
        self.id == other.id
            && self.tenant_id == other.tenant_id
            && self.event_type == other.event_type
            && self.occurred_at == other.occurred_at
            && self.received_at == other.received_at
            && self.idempotency_key == other.idempotency_key
            && self.data.get() == other.data.get()
    }
}

impl StoredEvent {
    pub fn new(tenant_id: TenantId, event: NewEvent) -> Self {
        let received_at = Timestamp::now();
        Self {
            id: EventId::generate(),
            tenant_id,
            event_type: event.payload.event_type(),
            occurred_at: event.occurred_at.unwrap_or_else(|| received_at.clone()).0,
            received_at: received_at.0,
            idempotency_key: event.idempotency_key.map(String::from),
            data: event.payload.to_raw(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn booking() -> serde_json::Value {
        serde_json::json!({
            "type": "appointment.booking.created",
            "data": {
                "appointment": {"id": "a1", "title": "Haircut", "starts_at": "2026-03-02T09:00:00+01:00",
                    "ends_at": "2026-03-02T09:30:00+01:00", "time_zone": "Europe/Zurich"},
                "customer": {"id": "c1", "last_name": "Muster", "email": "anna@example.com"},
                "channel": "widget"
            }
        })
    }

    #[test]
    fn parses_a_valid_event() {
        let e = NewEvent::from_value(booking()).unwrap();
        assert_eq!(e.payload.event_type(), EventType::AppointmentBookingCreated);
    }

    #[test]
    fn errors_name_the_field_and_rule() {
        /// An edit of a valid event, the field the error must name, and its rule.
        type Case = (fn(&mut serde_json::Value), &'static str, &'static str);
        let cases: Vec<Case> = vec![
            (|v| v["type"] = "appointment.nope".into(), "type", "unknown event type"),
            (
                |v| {
                    v["data"]["customer"].as_object_mut().unwrap().remove("last_name");
                },
                "data.customer",
                "missing field `last_name`",
            ),
            (|v| v["data"]["customer"]["email"] = "nope".into(), "data.customer.email", "e-mail"),
            (|v| v["data"]["appointment"]["starts_at"] = 5.into(), "data.appointment.starts_at", "invalid type"),
            (
                |v| v["data"]["appointment"]["ends_at"] = "2026-03-02T08:00:00+01:00".into(),
                "data.appointment.ends_at",
                "before",
            ),
            (|v| v["data"]["channel"] = "fax".into(), "data.channel", "unknown variant"),
            (|v| v["data"]["customer"]["nickname"] = "x".into(), "data.customer.nickname", "unknown field `nickname`"),
        ];
        for (mutate, field, rule) in cases {
            let mut v = booking();
            mutate(&mut v);
            let err = NewEvent::from_value(v).unwrap_err();
            assert_eq!(err.field, field, "{err}");
            assert!(err.rule.contains(rule), "{err}");
            // Parsed from text, the rule has no text position in it.
            assert!(!err.rule.contains(" at line "), "{err}");
        }
    }

    #[test]
    fn top_level_errors_name_the_field() {
        for (bad, field, rule) in [
            (&b"[1]"[..], "event", "must be a JSON object"),
            (b"{\"type\": ", "event", "is not valid JSON"),
            (b"{\"type\": 5, \"data\": {}}", "type", "must be a string"),
            (b"{\"type\": \"customer.deleted\"}", "data", "is required"),
            (b"{\"type\": \"customer.deleted\", \"data\": []}", "data", "must be a JSON object"),
            (b"{\"data\": {}, \"extra\": 1}", "extra", "unknown field"),
            (
                b"{\"type\": \"customer.deleted\", \"type\": \"customer.created\", \"data\": {}}",
                "type",
                "more than once",
            ),
            (
                b"{\"type\": \"customer.deleted\", \"data\": {\"customer_id\": \"a\", \"customer_id\": \"b\"}}",
                "data",
                "duplicate field `customer_id`",
            ),
            (b"{\"type\": \"customer.deleted\", \"idempotency_key\": 1, \"data\": {}}", "idempotency_key", "string"),
        ] {
            let err = NewEvent::from_json(bad).unwrap_err();
            assert_eq!(err.field, field, "{err}");
            assert!(err.rule.contains(rule), "{err}");
        }
    }

    #[test]
    fn oversized_events_are_refused() {
        let big = vec![b' '; MAX_EVENT_BYTES + 1];
        assert!(NewEvent::from_json(&big).unwrap_err().rule.contains("256 KiB"));
    }
}
