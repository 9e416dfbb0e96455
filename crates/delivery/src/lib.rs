//! The delivery service: fans accepted events out into one dispatch task per
//! subscribed endpoint, and runs the workers that POST them, retry them and
//! record every attempt.
//!
//! # Layout
//! * [`fanout`]: durable consumer `fanout` on HOOKLINE_EVENTS → HOOKLINE_DISPATCH.
//! * [`worker`]: durable consumer `workers` on HOOKLINE_DISPATCH → HTTP → HOOKLINE_OUTCOMES.
//! * [`guard`]: per-endpoint in-flight cap and circuit breaker.
//! * [`park`]: HOOKLINE_PARKED, where a stuck or broken endpoint's tasks wait, and the sweeper
//!   that moves them back as it recovers.
//! * [`sender`]: the HTTP request itself and the classification of failures.
//! * [`settings`]: the retry schedule and timeouts.
//! * [`api`]: the gRPC `DeliveryService` over the delivery log in Postgres.
//! * [`replay`]: re-reads an event from HOOKLINE_EVENTS and queues it as a new delivery.
//!
//! **Invariant:** retries live in JetStream (`Nak` with a delay), never in
//! process memory; a task is acked only after its outcome is stored.

pub mod api;
pub mod autodisable;
pub mod fanout;
pub mod guard;
pub mod mailer;
pub mod park;
pub mod replay;
pub mod resolve;
pub mod sender;
pub mod settings;
pub mod worker;

pub use api::DeliveryApi;
pub use settings::{DeliverySettings, RetrySchedule};

use async_nats::jetstream::message::PublishMessage;
use hookline_domain::FieldError;
use hookline_store::StoreError;
use tonic::Status;

/// A dispatch task as a message to store (on HOOKLINE_DISPATCH or
/// HOOKLINE_PARKED): its JSON, the trace, and the id JetStream
/// de-duplicates on.
pub(crate) fn task_message(payload: bytes::Bytes, traceparent: Option<&str>, msg_id: String) -> PublishMessage {
    let publish = PublishMessage::build().payload(payload).message_id(msg_id);
    match traceparent {
        Some(tp) => publish.header(hookline_telemetry::trace::TRACEPARENT, tp),
        None => publish,
    }
}

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
    #[error("NATS JetStream unavailable: {0}")]
    Unavailable(String),
    #[error("delivery log unavailable: {0}")]
    Store(#[from] StoreError),
    #[error("unreadable record: {0}")]
    Corrupt(String),
}

impl From<Error> for Status {
    fn from(e: Error) -> Status {
        match &e {
            Error::Invalid(_) => Status::invalid_argument(e.to_string()),
            Error::DeliveryNotFound(_)
            | Error::EndpointNotFound(_)
            | Error::AttemptNotFound { .. }
            | Error::JobNotFound(_) => Status::not_found(e.to_string()),
            Error::Archived { .. } | Error::PayloadGone(_) | Error::PayloadChanged(_) | Error::NothingSent { .. } => {
                Status::failed_precondition(e.to_string())
            }
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
