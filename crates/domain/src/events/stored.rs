//! The event as ingest stores it and workers deliver it.

use serde::{Deserialize, Serialize};

use crate::{
    event_type::EventType,
    ids::{EventId, TenantId},
};

use super::{checked::Timestamp, producer::NewEvent};

/// An accepted event as stored in HOOKLINE_EVENTS and carried to workers.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StoredEvent {
    pub id: EventId,
    pub tenant_id: TenantId,
    #[serde(rename = "type")]
    pub event_type: EventType,
    /// When the change happened (the producer's `occurred_at`, else
    /// `received_at`), as the producer wrote it: receivers get this text as
    /// the body's `timestamp`.
    pub occurred_at: Timestamp,
    /// When ingest accepted the event, RFC 3339 UTC.
    pub received_at: Timestamp,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
    /// The payload as JSON text, validated at ingest. Kept as text so fan-out
    /// and workers copy it instead of parsing it into a tree and printing it
    /// again for every task and attempt.
    pub data: Box<serde_json::value::RawValue>,
    /// A test event (`SendTestEvent`): example data sent to one endpoint.
    /// Fan-out passes over it; receivers see the `hookline-test` header.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub test: bool,
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
            && self.test == other.test
    }
}

impl StoredEvent {
    pub fn new(tenant_id: TenantId, event: NewEvent) -> Self {
        let received_at = Timestamp::now();
        Self {
            id: EventId::generate(),
            tenant_id,
            event_type: event.payload.event_type(),
            occurred_at: event.occurred_at.unwrap_or_else(|| received_at.clone()),
            received_at,
            idempotency_key: event.idempotency_key.map(String::from),
            data: event.payload.to_raw(),
            test: false,
        }
    }

    /// A test event of `event_type` for `tenant`, carrying the type's
    /// example data ([`crate::event_type::example`]).
    pub fn test(tenant_id: TenantId, event_type: EventType) -> Self {
        let now = Timestamp::now();
        let data =
            serde_json::value::to_raw_value(&crate::event_type::example(event_type)).expect("example data serialises");
        Self {
            id: EventId::generate(),
            tenant_id,
            event_type,
            occurred_at: now.clone(),
            received_at: now,
            idempotency_key: None,
            data,
            test: true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_test_events_carry_the_test_mark_and_it_reads_back() {
        let acme = TenantId::parse("acme").unwrap();
        let test = StoredEvent::test(acme.clone(), EventType::CustomerCreated);
        let json = serde_json::to_value(&test).unwrap();
        assert_eq!(json["test"], true);
        assert_eq!(json["data"], crate::event_type::example(EventType::CustomerCreated));
        let back: StoredEvent = serde_json::from_value(json).unwrap();
        assert_eq!(back, test);
        // Events from producers print as they always did.
        let mut plain = test.clone();
        plain.test = false;
        let json = serde_json::to_value(&plain).unwrap();
        assert!(json.get("test").is_none(), "{json}");
        assert!(!serde_json::from_value::<StoredEvent>(json).unwrap().test);
    }

    #[test]
    fn stored_events_read_and_print_back_byte_for_byte() {
        // As ingest has stored events all along: a producer's own offset and
        // precision kept, ingest's stamp in UTC with milliseconds.
        let stored = r#"{"id":"evt_01KB0000000000000000000000","tenant_id":"acme","type":"customer.deleted","occurred_at":"2026-11-29T11:00:00.5+01:00","received_at":"2026-11-29T10:00:01.250Z","idempotency_key":"k-1","data":{"customer":{"id":"c-1"}}}"#;
        let event: StoredEvent = serde_json::from_str(stored).unwrap();
        assert_eq!(event.occurred_at.as_str(), "2026-11-29T11:00:00.5+01:00");
        assert_eq!(event.occurred_at.parsed().timestamp_millis(), event.received_at.parsed().timestamp_millis() - 750);
        assert_eq!(serde_json::to_string(&event).unwrap(), stored);
    }

    #[test]
    fn a_stored_event_with_a_time_that_is_no_timestamp_is_refused_naming_the_rule() {
        let stored = r#"{"id":"evt_01KB0000000000000000000000","tenant_id":"acme","type":"customer.deleted","occurred_at":"yesterday","received_at":"2026-11-29T10:00:01.250Z","data":{}}"#;
        let e = serde_json::from_str::<StoredEvent>(stored).unwrap_err().to_string();
        assert!(e.starts_with("must be an RFC 3339 date-time"), "{e}");
    }
}
