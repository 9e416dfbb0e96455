//! [`Payload`]: a payload of one of the twelve event types, parsed by its
//! type, checked across fields, serialised and described as JSON Schema.

use crate::{FieldError, event_type::EventType};

use super::{checked::Timestamp, data::*};

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
/// path relative to `data`. Tracking the path makes the parse much slower,
/// so only text that fails is parsed again, tracked, to name it.
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
