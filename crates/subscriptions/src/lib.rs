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

use hookline_domain::config::ConfigError;
use hookline_tenants::Error;
use tonic::Status;

/// The gRPC answer to a refused or failed config read or command: the one
/// place this service maps [`hookline_tenants::Error`] to a status.
pub(crate) fn status(e: Error) -> Status {
    match &e {
        Error::Config(c) => match c {
            ConfigError::Invalid(_) => Status::invalid_argument(e.to_string()),
            ConfigError::TenantNotFound(_) | ConfigError::EndpointNotFound(_) | ConfigError::ApiKeyNotFound(_) => {
                Status::not_found(e.to_string())
            }
            ConfigError::TenantExists(_) => Status::already_exists(e.to_string()),
            ConfigError::PlanLimit { .. } | ConfigError::PlanBelowCount { .. } => {
                Status::failed_precondition(e.to_string())
            }
        },
        Error::Unavailable(_) | Error::Lagging { .. } => {
            tracing::warn!(error = %e, "config store unavailable");
            Status::unavailable(e.to_string())
        }
        Error::Contention(_) => Status::aborted(e.to_string()),
    }
}
