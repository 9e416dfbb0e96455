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
