//! Hookline's domain: the types every service shares, with no I/O.
//!
//! # Layout
//! * [`ids`]: prefixed, time-sortable ids (`evt_…`, `ep_…`) and [`ids::TenantId`].
//! * [`event_type`]: the twelve event types.
//! * [`catalog`]: their groups and descriptions, as pages show them.
//! * [`events`]: typed payloads, parsing of producer JSON, the stored event.
//! * [`endpoint`]: endpoint settings that cannot hold an invalid value.
//! * [`filter`]: payload filters: conditions on `data` an endpoint's events must meet.
//! * [`config`]: the tenant aggregate: config events, `decide` and `evolve`.
//! * [`delivery`]: dispatch tasks and attempt outcomes.
//! * [`signing`]: Standard Webhooks signatures.
//! * [`layout`]: the `envelope` and `flat` bodies.
//! * [`ssrf`]: which addresses deliveries may reach.
//!
//! Parse, don't validate: wire input becomes these types once, at the edge,
//! and every error names the field and the rule it broke.

pub mod catalog;
pub mod config;
pub mod delivery;
pub mod endpoint;
pub mod event_type;
pub mod events;
pub mod filter;
pub mod ids;
pub mod layout;
pub mod seal;
pub mod signing;
pub mod ssrf;

use std::fmt;

/// A field that broke a rule. `field` is a path like `data.customer.email`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {rule}")]
pub struct FieldError {
    pub field: String,
    pub rule: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, rule: impl fmt::Display) -> Self {
        Self { field: field.into(), rule: rule.to_string() }
    }

    /// Prefix the field path, e.g. `customer.email` under `data`.
    pub fn under(mut self, prefix: &str) -> Self {
        self.field = if self.field.is_empty() {
            prefix.to_owned()
        } else if self.field.starts_with('[') {
            format!("{prefix}{}", self.field)
        } else {
            format!("{prefix}.{}", self.field)
        };
        self
    }
}

/// An optional time bound of a request (`created_after`, `rejected_before`,
/// ...): empty means none; anything else must be RFC 3339.
pub fn optional_time(s: &str, field: &str) -> Result<Option<chrono::DateTime<chrono::Utc>>, FieldError> {
    if s.is_empty() {
        return Ok(None);
    }
    chrono::DateTime::parse_from_rfc3339(s)
        .map(|t| Some(t.to_utc()))
        .map_err(|_| FieldError::new(field, "must be an RFC 3339 timestamp such as 2026-11-29T10:00:00Z"))
}
