//! The payloads (an event's `data`), one struct per shape, and the parts
//! they share. They reject unknown fields so that a misspelt field is an
//! error rather than silently dropped data.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::checked::{Email, Text, TimeZone, Timestamp, Url};

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
