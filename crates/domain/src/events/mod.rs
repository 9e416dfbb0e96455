//! The twelve payloads, the producer's JSON event and the stored event.
//!
//! # Layout
//! * `checked`: strings that carry meaning (`Text`, `Email`, `Timestamp`,
//!   ...), checked on deserialisation, so a payload that parsed is valid.
//! * `data`: the payload structs and the parts they share.
//! * `payload`: [`Payload`], a payload of one event type: parsing by
//!   type, rules across fields, serialising, JSON Schema.
//! * `producer`: the producer's JSON event parsed into a [`NewEvent`].
//! * `stored`: [`StoredEvent`], as stored in HOOKLINE_EVENTS.

mod checked;
mod data;
mod payload;
mod producer;
mod stored;

pub use self::{checked::*, data::*, payload::Payload, producer::*, stored::StoredEvent};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event_type::EventType;

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
