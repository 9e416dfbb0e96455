//! The twelve event types Hookline delivers, exactly as the product names them.

use std::{fmt, str::FromStr};

use serde::{Deserialize, Serialize};

use crate::FieldError;

macro_rules! event_types {
    ($($variant:ident => $name:literal),+ $(,)?) => {
        /// One of the twelve event types.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "&'static str")]
        pub enum EventType { $($variant),+ }

        impl EventType {
            pub const ALL: [EventType; 12] = [$(EventType::$variant),+];

            pub fn as_str(self) -> &'static str {
                match self { $(EventType::$variant => $name),+ }
            }
        }
    };
}

event_types! {
    AppointmentBookingCreated => "appointment.booking.created",
    AppointmentBookingCancelled => "appointment.booking.cancelled",
    AppointmentUpdated => "appointment.updated",
    AppointmentManualBookingCreated => "appointment.manual.booking.created",
    AppointmentBookingRebooked => "appointment.booking.rebooked",
    EventBookingCreated => "event.booking.created",
    EventBookingCancelled => "event.booking.cancelled",
    EventManualBookingCreated => "event.manual.booking.created",
    EventBookingRebooked => "event.booking.rebooked",
    CustomerCreated => "customer.created",
    CustomerUpdated => "customer.updated",
    CustomerDeleted => "customer.deleted",
}

impl EventType {
    pub fn parse(s: &str) -> Result<Self, FieldError> {
        Self::ALL.into_iter().find(|t| t.as_str() == s).ok_or_else(|| {
            FieldError::new(
                "",
                format!("unknown event type `{s}`; expected one of {}", Self::ALL.map(|t| t.as_str()).join(", ")),
            )
        })
    }
}

impl fmt::Display for EventType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for EventType {
    type Err = FieldError;
    fn from_str(s: &str) -> Result<Self, FieldError> {
        Self::parse(s)
    }
}

impl TryFrom<String> for EventType {
    type Error = FieldError;
    fn try_from(s: String) -> Result<Self, FieldError> {
        Self::parse(&s)
    }
}

impl From<EventType> for &'static str {
    fn from(t: EventType) -> &'static str {
        t.as_str()
    }
}

/// Example `data` of an event of type `t`: made up, but shaped exactly as
/// the booking platform's payloads of that type are (it parses as the
/// type's payload), so a receiver can be tested with it and a page can show
/// what a receiver would get. Test events (`SendTestEvent`) carry it.
pub fn example(t: EventType) -> serde_json::Value {
    use EventType as T;
    use serde_json::json;
    let customer = json!({
        "id": "cus_example_1042",
        "first_name": "Anna",
        "last_name": "Muster",
        "email": "anna.muster@example.com",
        "phone": "+41 44 123 45 67",
        "language": "de"
    });
    let appointment = json!({
        "id": "apt_example_7781",
        "title": "Haircut and styling",
        "service_id": "svc_example_12",
        "starts_at": "2026-03-02T09:00:00+01:00",
        "ends_at": "2026-03-02T09:45:00+01:00",
        "time_zone": "Europe/Zurich",
        "resource": {"id": "res_example_3", "name": "Lena Keller"},
        "location": {"kind": "onsite", "name": "Salon Bahnhofstrasse", "address": "Bahnhofstrasse 1, 8001 Zürich"}
    });
    let previous_slot = json!({
        "starts_at": "2026-02-27T14:00:00+01:00",
        "ends_at": "2026-02-27T14:45:00+01:00",
        "time_zone": "Europe/Zurich",
        "resource": {"id": "res_example_3", "name": "Lena Keller"}
    });
    let event = |id: &str, starts: &str, ends: &str| {
        json!({
            "id": id,
            "title": "Yoga for beginners",
            "starts_at": starts,
            "ends_at": ends,
            "time_zone": "Europe/Zurich",
            "host": {"id": "res_example_8", "name": "Marco Rossi"},
            "location": {"kind": "online", "meeting_url": "https://meet.example.com/yoga-beginners"},
            "capacity": 12
        })
    };
    let group_event = event("gev_example_301", "2026-03-05T18:00:00+01:00", "2026-03-05T19:30:00+01:00");
    let participation = json!({"id": "par_example_55", "seats": 1});
    match t {
        T::AppointmentBookingCreated => json!({"appointment": appointment, "customer": customer, "channel": "widget"}),
        T::AppointmentManualBookingCreated => {
            json!({"appointment": appointment, "customer": customer, "channel": "manual"})
        }
        T::AppointmentBookingCancelled => json!({
            "appointment": appointment, "customer": customer, "channel": "widget",
            "cancelled_by": "customer", "cancellation_reason": "Feeling unwell"
        }),
        T::AppointmentUpdated => json!({
            "appointment": appointment, "customer": customer, "channel": "manual",
            "changed_fields": ["notes", "resource"]
        }),
        T::AppointmentBookingRebooked => json!({
            "appointment": appointment, "customer": customer, "channel": "widget",
            "rebooked_by": "customer", "previous": previous_slot
        }),
        T::EventBookingCreated => json!({
            "event": group_event, "participation": participation, "customer": customer, "channel": "widget"
        }),
        T::EventManualBookingCreated => json!({
            "event": group_event, "participation": participation, "customer": customer, "channel": "manual"
        }),
        T::EventBookingCancelled => json!({
            "event": group_event, "participation": participation, "customer": customer, "channel": "widget",
            "cancelled_by": "partner", "cancellation_reason": "Instructor is ill"
        }),
        T::EventBookingRebooked => json!({
            "event": group_event, "participation": participation, "customer": customer, "channel": "widget",
            "rebooked_by": "customer",
            "previous_event": event("gev_example_298", "2026-02-26T18:00:00+01:00", "2026-02-26T19:30:00+01:00")
        }),
        T::CustomerCreated => json!({"customer": customer}),
        T::CustomerUpdated => json!({"customer": customer, "changed_fields": ["phone", "email"]}),
        T::CustomerDeleted => json!({"customer_id": "cus_example_1042"}),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::Payload;

    #[test]
    fn every_example_parses_as_its_types_payload() {
        for t in EventType::ALL {
            let data = serde_json::value::to_raw_value(&example(t)).unwrap();
            let payload = Payload::parse(t, &data).unwrap_or_else(|e| panic!("{t}: {e}"));
            assert_eq!(payload.event_type(), t);
        }
    }
}
