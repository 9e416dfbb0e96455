//! The subscriptions service: tenants, plans and endpoints as event-sourced
//! aggregates on HOOKLINE_CONFIG, and `Resolve` from an in-memory index.
//!
//! # Layout
//! * [`directory`]: the in-memory index that follows the config stream. Ingest
//!   and delivery embed it too, so they never ask a remote service on their
//!   hot path for tenant or endpoint settings.
//! * [`commands`]: decides commands against the index and appends the events
//!   with optimistic concurrency (`Nats-Expected-Last-Subject-Sequence`).
//! * [`service`]: the gRPC `SubscriptionService`.
//! * [`target`]: the save-time SSRF check of endpoint URLs.

pub mod auth;
pub mod commands;
pub mod directory;
pub mod service;
pub mod target;

pub use commands::Commands;
pub use directory::Directory;
pub use service::SubscriptionsApi;

use hookline_domain::config::ConfigError;
use tonic::Status;

/// Everything that can go wrong in this crate; mapped once to gRPC.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("NATS JetStream unavailable: {0}")]
    Unavailable(String),
    #[error("too many concurrent changes to tenant `{0}`; retry")]
    Contention(String),
    /// This replica's config index is behind a change acknowledged
    /// elsewhere and did not catch up in time; a retry (here or on another
    /// replica) succeeds once it has.
    #[error("this replica's config index reached sequence {applied}, not {wanted}, within {waited:?}; retry")]
    Lagging { wanted: u64, applied: u64, waited: std::time::Duration },
}

impl From<Error> for Status {
    fn from(e: Error) -> Status {
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
}
