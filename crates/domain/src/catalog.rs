//! The event type catalog as the product presents it: each type's group
//! and its description. Pages group the twelve types under the product's
//! three headings and show each with the product's own description. (The
//! example data of each type is [`crate::event_type::example`].) The API's
//! `ListEventTypes` serves the same catalog, with each type's JSON Schema and
//! a whole example event, so producers and receivers read it from one place.

use crate::event_type::EventType;

/// The product's three headings for event types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Group {
    Appointments,
    GroupEvents,
    Customers,
}

impl Group {
    pub const ALL: [Group; 3] = [Group::Appointments, Group::GroupEvents, Group::Customers];

    /// The heading, in the product's words.
    pub fn title(self) -> &'static str {
        match self {
            Group::Appointments => "Appointments",
            Group::GroupEvents => "Group events",
            Group::Customers => "Customers",
        }
    }

    /// The types under this heading, in the product's order.
    pub fn types(self) -> impl Iterator<Item = EventType> {
        EventType::ALL.into_iter().filter(move |t| group(*t) == self)
    }
}

/// The heading `t` appears under.
pub fn group(t: EventType) -> Group {
    use EventType::*;
    match t {
        AppointmentBookingCreated
        | AppointmentBookingCancelled
        | AppointmentUpdated
        | AppointmentManualBookingCreated
        | AppointmentBookingRebooked => Group::Appointments,
        EventBookingCreated | EventBookingCancelled | EventManualBookingCreated | EventBookingRebooked => {
            Group::GroupEvents
        }
        CustomerCreated | CustomerUpdated | CustomerDeleted => Group::Customers,
    }
}

/// What happened, in the product's words (English).
pub fn description(t: EventType) -> &'static str {
    use EventType::*;
    match t {
        AppointmentBookingCreated => "A customer booked an appointment with the partner through the booking widget.",
        AppointmentBookingCancelled => "A customer cancelled an appointment with the partner.",
        AppointmentUpdated => "An appointment was changed.",
        AppointmentManualBookingCreated => "The partner entered a customer appointment in the calendar by hand.",
        AppointmentBookingRebooked => "An appointment was rebooked by one of the parties.",
        EventBookingCreated => "A customer signed up for a group event through the booking widget.",
        EventBookingCancelled => "A customer cancelled their participation in an event.",
        EventManualBookingCreated => "The partner added a customer to a group event by hand.",
        EventBookingRebooked => "A group event booking was rebooked.",
        CustomerCreated => "A customer was created.",
        CustomerUpdated => "A customer was updated.",
        CustomerDeleted => "A customer was deleted.",
    }
}

/// An example producer event of type `t`, whole (`{"type": ..., "data": ...}`),
/// as a publisher sends it.
pub fn example_event(t: EventType) -> serde_json::Value {
    serde_json::json!({ "type": t.as_str(), "data": crate::event_type::example(t) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_type_is_in_exactly_one_group_in_the_products_order() {
        let listed: Vec<EventType> = Group::ALL.into_iter().flat_map(Group::types).collect();
        assert_eq!(listed, EventType::ALL.to_vec());
        assert_eq!(Group::Customers.types().count(), 3);
    }

    #[test]
    fn every_type_has_a_description_of_its_own() {
        let mut seen: Vec<&str> = EventType::ALL.into_iter().map(description).collect();
        seen.sort();
        seen.dedup();
        assert_eq!(seen.len(), 12);
    }
}
