//! The subscriptions service: tenants, plans and endpoints as event-sourced
//! aggregates on HOOKLINE_CONFIG, and `Resolve` from an in-memory index.
//!
//! The index it answers from ([`hookline_tenants::Directory`]) and the
//! command path that appends to the stream ([`hookline_tenants::Commands`])
//! live in `hookline-tenants`, which ingest and delivery embed too.
//!
//! # Layout
//! * [`service`]: the gRPC `SubscriptionService`.
//! * [`target`]: the save-time SSRF check of endpoint URLs.

pub mod service;
pub mod target;

pub use service::SubscriptionsApi;

use hookline_tenants::Error;
use tonic::Status;

/// The gRPC answer to a refused or failed config read or command; the
/// reason, code and details come from [`hookline_auth::status`].
pub(crate) fn status(e: Error) -> Status {
    if matches!(e, Error::Unavailable(_) | Error::Lagging { .. }) {
        tracing::warn!(error = %e, "config store unavailable");
    }
    hookline_auth::Refusal::from(&e).into()
}
