//! The tenant read-model: tenants, plans, endpoints and API keys as the
//! config stream (HOOKLINE_CONFIG) has them, held in memory by every
//! service process.
//!
//! It is a crate of its own so that ingest, subscriptions and delivery
//! share it without depending on one another: each embeds a [`Directory`]
//! and never asks a remote service for tenant or endpoint settings on its
//! hot path.
//!
//! # Layout
//! * [`directory`]: the in-memory index that follows the config stream.
//! * [`commands`]: decides commands against the index and appends the events
//!   with optimistic concurrency (`Nats-Expected-Last-Subject-Sequence`).
//!   Subscriptions runs every tenant and endpoint command through it;
//!   delivery uses it to disable endpoints. Deleting a tenant also erases
//!   its messages from every stream (`hookline_bus::erase_tenant`).
//!
//! No gRPC here: each service maps [`Error`] to its answers itself.

pub mod commands;
pub mod directory;

use std::sync::Arc;

pub use commands::Commands;
pub use directory::Directory;

use hookline_domain::config::ConfigError;

/// Everything that can go wrong reading or changing the config stream.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("NATS JetStream unavailable: {0}")]
    Unavailable(#[source] Arc<dyn std::error::Error + Send + Sync>),
    #[error("too many concurrent changes to tenant `{0}`; retry")]
    Contention(hookline_domain::ids::TenantId),
    /// This replica's config index is behind a change acknowledged
    /// elsewhere and did not catch up in time; a retry (here or on another
    /// replica) succeeds once it has.
    #[error("this replica's config index reached sequence {applied}, not {wanted}, within {waited:?}; retry")]
    Lagging { wanted: u64, applied: u64, waited: std::time::Duration },
}

impl Error {
    /// Unavailable because of `cause`: a NATS error, kept as the source,
    /// or a plain reason.
    pub fn unavailable(cause: impl Into<hookline_bus::Source>) -> Self {
        Error::Unavailable(Arc::from(cause.into()))
    }
}

/// The tenant's last config sequence could not be read.
#[derive(Debug, thiserror::Error)]
#[error("reading the last config sequence of `{tenant}`: {source}")]
pub struct LastSeqError {
    pub tenant: hookline_domain::ids::TenantId,
    #[source]
    pub source: async_nats::jetstream::stream::LastRawMessageError,
}
