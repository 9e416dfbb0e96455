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
//! * [`autodisable`]: disables endpoints that have failed for too long.

pub mod api;
pub mod autodisable;
pub mod replay;

pub use api::DeliveryApi;

use hookline_domain::FieldError;
use hookline_store::StoreError;
use tonic::Status;

/// What the delivery log API can answer with; mapped once to gRPC.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Invalid(#[from] FieldError),
    #[error("delivery `{0}` not found")]
    DeliveryNotFound(String),
    #[error("endpoint `{0}` not found")]
    EndpointNotFound(String),
    #[error("attempt {attempt} of delivery `{delivery}` not found")]
    AttemptNotFound { delivery: String, attempt: u32 },
    #[error("recover job `{0}` not found")]
    JobNotFound(String),
    #[error("delivery {delivery} was archived on {on}: its payload and raw requests are deleted")]
    Archived { delivery: String, on: String },
    #[error("delivery {0}: its payload was archived (it left HOOKLINE_EVENTS with the stream's retention)")]
    PayloadGone(String),
    #[error("delivery {0}: the stored payload no longer matches the body that was sent")]
    PayloadChanged(String),
    #[error("attempt {attempt} of delivery {delivery} sent no request: the endpoint was unavailable")]
    NothingSent { delivery: String, attempt: u32 },
    #[error("endpoint `{endpoint}` is disabled{}: enable it first", because(reason.as_deref()))]
    EndpointDisabled { endpoint: String, reason: Option<String> },
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
    /// An id in a delivery's log row.
    #[error("delivery {delivery}: {source}")]
    Id {
        delivery: String,
        #[source]
        source: FieldError,
    },
    /// A delivery's `event_seq` that is no stream sequence (negative).
    #[error("delivery {delivery}: event_seq {seq}")]
    EventSeq {
        delivery: String,
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
    fn from(e: Error) -> Status {
        match &e {
            Error::Invalid(_) => Status::invalid_argument(e.to_string()),
            Error::DeliveryNotFound(_)
            | Error::EndpointNotFound(_)
            | Error::AttemptNotFound { .. }
            | Error::JobNotFound(_) => Status::not_found(e.to_string()),
            Error::Archived { .. }
            | Error::PayloadGone(_)
            | Error::PayloadChanged(_)
            | Error::NothingSent { .. }
            | Error::EndpointDisabled { .. } => Status::failed_precondition(e.to_string()),
            Error::Unavailable(_) | Error::Store(_) => {
                tracing::warn!(error = %e, "delivery log unavailable");
                Status::unavailable(e.to_string())
            }
            Error::Corrupt(_) => {
                tracing::error!(error = %e, "delivery log: unreadable record");
                Status::internal(e.to_string())
            }
        }
    }
}
