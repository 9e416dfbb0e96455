//! The pages, one module per group, and what they share.

pub mod delivery;
pub mod endpoint;
pub mod endpoint_form;
pub mod layout;
pub mod operator;
pub mod signin;
pub mod tenant;

use hookline_proto::{delivery::v1 as dpb, subscriptions::v1 as spb};

/// An RFC 3339 time as `2026-12-06 14:03:07 UTC`; as given when it does not parse.
pub fn when(rfc3339: &str) -> String {
    chrono::DateTime::parse_from_rfc3339(rfc3339)
        .map(|t| t.with_timezone(&chrono::Utc).format("%Y-%m-%d %H:%M:%S UTC").to_string())
        .unwrap_or_else(|_| rfc3339.to_owned())
}

/// The plan's name as the product writes it.
pub fn plan_name(plan: i32) -> &'static str {
    match spb::Plan::try_from(plan) {
        Ok(spb::Plan::Basic) => "Basic",
        Ok(spb::Plan::Professional) => "Professional",
        Ok(spb::Plan::Business) => "Business",
        Ok(spb::Plan::Enterprise) => "Enterprise",
        _ => "Unknown",
    }
}

/// The plans, for selects: (form value, name, endpoints).
pub const PLANS: [(&str, &str, u32); 4] = [
    ("basic", "Basic", 1),
    ("professional", "Professional", 3),
    ("business", "Business", 5),
    ("enterprise", "Enterprise", 10),
];

pub fn plan_from_form(value: &str) -> Option<spb::Plan> {
    match value {
        "basic" => Some(spb::Plan::Basic),
        "professional" => Some(spb::Plan::Professional),
        "business" => Some(spb::Plan::Business),
        "enterprise" => Some(spb::Plan::Enterprise),
        _ => None,
    }
}

pub fn plan_form_value(plan: i32) -> &'static str {
    match spb::Plan::try_from(plan) {
        Ok(spb::Plan::Professional) => "professional",
        Ok(spb::Plan::Business) => "business",
        Ok(spb::Plan::Enterprise) => "enterprise",
        _ => "basic",
    }
}

/// A delivery state as the log shows it.
pub fn state_name(state: i32) -> &'static str {
    match dpb::DeliveryState::try_from(state) {
        Ok(dpb::DeliveryState::Succeeded) => "Succeeded",
        Ok(dpb::DeliveryState::Failing) => "Retrying",
        Ok(dpb::DeliveryState::Failed) => "Failed",
        Ok(dpb::DeliveryState::Archived) => "Archived",
        _ => "Pending",
    }
}

/// Fixed notices a redirect may ask for (`?notice=`): only these texts
/// are ever shown, so a crafted link cannot put words on the page.
pub fn notice_text(key: &str) -> Option<&'static str> {
    Some(match key {
        "saved" => "Saved.",
        "created" => "Endpoint added.",
        "deleted" => "Endpoint deleted.",
        "enabled" => "Endpoint enabled again.",
        "replayed" => "Replay queued: the receiver gets the same webhook-id with a fresh signature.",
        "rotated" => "Signing secret rotated.",
        "webhooks-on" => "Webhooks enabled.",
        "webhooks-off" => "Webhooks disabled.",
        "plan" => "Plan changed.",
        "tenant" => "Tenant created.",
        "tenant-deleted" => "Tenant deleted.",
        "test-sent" => "Test event sent.",
        _ => return None,
    })
}

/// Percent-encode a value for a query string.
pub fn q(value: &str) -> String {
    form_urlencoded::byte_serialize(value.as_bytes()).collect()
}
