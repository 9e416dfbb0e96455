//! The delivery log: the gRPC `DeliveryService` over the Postgres
//! projections, replays and recover jobs, and auto-disable. It runs in the
//! delivery role beside the hot path (`hookline-delivery`), which never
//! reads Postgres; this crate is where the delivery service does.
//!
//! # Layout
//! * [`api`]: the gRPC `DeliveryService`: the log, Raw, Replay, recover jobs,
//!   statistics and projection status.
//! * [`replay`]: re-reads an event from HOOKLINE_EVENTS and queues it as a new
//!   delivery; queues test events; runs and resumes recover jobs.
//! * [`autodisable`]: disables endpoints that have failed for too long, and
//!   records operational notices on the way.
//! * [`notices`]: the operational notices to a tenant's contact, and their
//!   sender.

pub mod api;
pub mod autodisable;
pub mod notices;
pub mod replay;

pub use api::DeliveryApi;

use hookline_auth::{Reason, Refusal};
use hookline_domain::{
    FieldError,
    ids::{DeliveryId, EndpointId, JobId, TenantId},
};
use hookline_store::StoreError;
use tonic::Status;

/// What the delivery log API can answer with; mapped once to gRPC.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Invalid(#[from] FieldError),
    #[error("delivery `{0}` not found")]
    DeliveryNotFound(DeliveryId),
    #[error("endpoint `{0}` not found")]
    EndpointNotFound(EndpointId),
    #[error("tenant `{0}` not found")]
    TenantNotFound(TenantId),
    #[error("attempt {attempt} of delivery `{delivery}` not found")]
    AttemptNotFound { delivery: DeliveryId, attempt: u32 },
    #[error("recover job `{0}` not found")]
    JobNotFound(JobId),
    #[error(
        "delivery {delivery} was archived on {}: its payload and raw requests are deleted",
        on.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
    )]
    Archived { delivery: DeliveryId, on: chrono::DateTime<chrono::Utc> },
    #[error("delivery {0}: its payload was archived (it left HOOKLINE_EVENTS with the stream's retention)")]
    PayloadGone(DeliveryId),
    #[error("delivery {0}: the stored payload no longer matches the body that was sent")]
    PayloadChanged(DeliveryId),
    #[error("attempt {attempt} of delivery {delivery} sent no request: the endpoint was unavailable")]
    NothingSent { delivery: DeliveryId, attempt: u32 },
    #[error("endpoint `{endpoint}` is disabled{}: enable it first", because(reason.as_deref()))]
    EndpointDisabled { endpoint: EndpointId, reason: Option<String> },
    #[error("NATS JetStream unavailable: {0}")]
    Unavailable(#[source] hookline_bus::Source),
    #[error("delivery log unavailable: {0}")]
    Store(#[from] StoreError),
    #[error("unreadable record: {0}")]
    Corrupt(#[from] Unreadable),
}

/// A stored record that does not read back as what it should be, and which.
#[derive(Debug, thiserror::Error)]
pub enum Unreadable {
    /// The event at a delivery's sequence in HOOKLINE_EVENTS.
    #[error("{stream} sequence {seq}: {source}", stream = hookline_bus::EVENTS_STREAM)]
    Event {
        seq: u64,
        #[source]
        source: serde_json::Error,
    },
    /// A delivery's `event_seq` that is no stream sequence (negative).
    #[error("delivery {delivery}: event_seq {seq}")]
    EventSeq {
        delivery: DeliveryId,
        seq: i64,
        #[source]
        source: std::num::TryFromIntError,
    },
    /// A record this service writes (a replay's task, a test event) that
    /// did not serialise.
    #[error(transparent)]
    Unwritable(serde_json::Error),
}

/// ` (why)`, when a reason is known.
fn because(reason: Option<&str>) -> String {
    reason.map(|r| format!(" ({r})")).unwrap_or_default()
}

impl From<Error> for Status {
    /// Reasons, codes and details come from [`hookline_auth::status`].
    fn from(e: Error) -> Status {
        let message = e.to_string();
        let refusal = match e {
            Error::Invalid(f) => Refusal::invalid([f]),
            Error::DeliveryNotFound(id) => Refusal::new(Reason::DeliveryNotFound, message).with("delivery_id", id),
            Error::EndpointNotFound(id) => Refusal::new(Reason::EndpointNotFound, message).with("endpoint_id", id),
            Error::TenantNotFound(id) => Refusal::new(Reason::TenantNotFound, message).with("tenant_id", id),
            Error::AttemptNotFound { delivery, attempt } => {
                Refusal::new(Reason::AttemptNotFound, message).with("delivery_id", delivery).with("attempt", attempt)
            }
            Error::JobNotFound(id) => Refusal::new(Reason::RecoverJobNotFound, message).with("job_id", id),
            Error::Archived { delivery, .. } => {
                Refusal::new(Reason::DeliveryArchived, message).with("delivery_id", delivery)
            }
            Error::PayloadGone(id) => Refusal::new(Reason::PayloadArchived, message).with("delivery_id", id),
            Error::PayloadChanged(id) => Refusal::new(Reason::PayloadChanged, message).with("delivery_id", id),
            Error::NothingSent { delivery, .. } => {
                Refusal::new(Reason::NothingSent, message).with("delivery_id", delivery)
            }
            Error::EndpointDisabled { endpoint, .. } => {
                Refusal::new(Reason::EndpointDisabled, message).with("endpoint_id", endpoint)
            }
            Error::Unavailable(_) => {
                tracing::warn!(error = %message, "delivery log unavailable");
                Refusal::new(Reason::StreamUnavailable, message)
            }
            // A log row whose id or state does not parse is as unreadable
            // as a stored event that does not: asking again will not help.
            Error::Corrupt(_) | Error::Store(StoreError::Db(sqlx::Error::ColumnDecode { .. })) => {
                tracing::error!(error = %message, "delivery log: unreadable record");
                Refusal::new(Reason::UnreadableRecord, message)
            }
            Error::Store(_) => {
                tracing::warn!(error = %message, "delivery log unavailable");
                Refusal::new(Reason::DatabaseUnavailable, message)
            }
        };
        refusal.into()
    }
}
