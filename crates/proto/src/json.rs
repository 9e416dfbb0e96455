//! How the messages operators read print as JSON (the CLI's `--json`), and
//! the names their enums print with. `build.rs` derives `Serialize` for
//! them and points the fields below at these functions: an enum prints by
//! its lowercase name, a number or text that means "none" prints as `null`.

use serde::{Serialize, Serializer, ser::SerializeMap};

use crate::{
    delivery::v1::{DeliveryState, ErrorKindCount},
    subscriptions::v1::{FilterCondition, FilterOperator, PayloadLayout, Plan},
};

/// The plan's name, as the CLI takes and prints it.
pub fn plan_name(plan: i32) -> &'static str {
    match Plan::try_from(plan) {
        Ok(Plan::Basic) => "basic",
        Ok(Plan::Professional) => "professional",
        Ok(Plan::Business) => "business",
        Ok(Plan::Enterprise) => "enterprise",
        _ => "unspecified",
    }
}

/// The layout's name; unspecified means the default, `envelope`.
pub fn layout_name(layout: i32) -> &'static str {
    match PayloadLayout::try_from(layout) {
        Ok(PayloadLayout::Flat) => "flat",
        _ => "envelope",
    }
}

/// A filter operator's name, as the CLI takes and prints it.
pub fn filter_operator_name(op: i32) -> &'static str {
    match FilterOperator::try_from(op) {
        Ok(FilterOperator::Equals) => "equals",
        Ok(FilterOperator::In) => "in",
        Ok(FilterOperator::Exists) => "exists",
        _ => "unspecified",
    }
}

/// An endpoint's payload filter as the CLI's `--filter` takes it, the
/// conditions joined by ` AND `: `channel="widget" AND customer.email exists`.
pub fn filter_text(conditions: &[FilterCondition]) -> String {
    let one = |c: &FilterCondition| match FilterOperator::try_from(c.operator) {
        Ok(FilterOperator::Exists) => format!("{} exists", c.path),
        Ok(FilterOperator::In) => format!("{} in {}", c.path, c.values.join(",")),
        _ => format!("{}={}", c.path, c.values.join(",")),
    };
    conditions.iter().map(one).collect::<Vec<_>>().join(" AND ")
}

pub fn delivery_state_name(state: i32) -> &'static str {
    match DeliveryState::try_from(state) {
        Ok(DeliveryState::Succeeded) => "succeeded",
        Ok(DeliveryState::Failing) => "failing",
        Ok(DeliveryState::Failed) => "failed",
        Ok(DeliveryState::Archived) => "archived",
        _ => "unspecified",
    }
}

pub(crate) fn plan<S: Serializer>(plan: &i32, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(plan_name(*plan))
}

pub(crate) fn layout<S: Serializer>(layout: &i32, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(layout_name(*layout))
}

pub(crate) fn filter_operator<S: Serializer>(op: &i32, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(filter_operator_name(*op))
}

/// Values held as JSON text print as the JSON they are (text that does not
/// parse prints as a string).
pub(crate) fn json_texts<S: Serializer>(values: &[String], s: S) -> Result<S::Ok, S::Error> {
    use serde::ser::SerializeSeq;
    let mut seq = s.serialize_seq(Some(values.len()))?;
    for v in values {
        match serde_json::from_str::<serde_json::Value>(v) {
            Ok(parsed) => seq.serialize_element(&parsed)?,
            Err(_) => seq.serialize_element(v)?,
        }
    }
    seq.end()
}

pub(crate) fn delivery_state<S: Serializer>(state: &i32, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(delivery_state_name(*state))
}

pub(crate) fn empty_as_null<S: Serializer>(text: &str, s: S) -> Result<S::Ok, S::Error> {
    if text.is_empty() { s.serialize_none() } else { s.serialize_str(text) }
}

pub(crate) fn zero_as_null<S: Serializer>(n: &u32, s: S) -> Result<S::Ok, S::Error> {
    if *n == 0 { s.serialize_none() } else { s.serialize_u32(*n) }
}

/// An endpoint's event types; none means every type, `"all"`.
pub(crate) fn all_if_empty<S: Serializer>(types: &[String], s: S) -> Result<S::Ok, S::Error> {
    if types.is_empty() { s.serialize_str("all") } else { types.serialize(s) }
}

/// A request body as text (bodies are JSON; anything else is shown lossily).
pub(crate) fn lossy_text<S: Serializer>(body: &[u8], s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&String::from_utf8_lossy(body))
}

/// Error kinds as one object, `{"timeout": 3, ...}`.
pub(crate) fn error_counts<S: Serializer>(errors: &[ErrorKindCount], s: S) -> Result<S::Ok, S::Error> {
    let mut map = s.serialize_map(Some(errors.len()))?;
    for e in errors {
        map.serialize_entry(&e.kind, &e.count)?;
    }
    map.end()
}
