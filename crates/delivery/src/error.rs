//! Why a task, an outcome or a parked copy was not stored, and why a
//! parking sweep stopped. Typed rather than text so the NATS error stays
//! the source a caller can walk; what a log line shows is unchanged (each
//! variant displays as its source did).

use std::sync::Arc;

use async_nats::jetstream::{
    consumer::{StreamError, pull::BatchError},
    context::PublishError,
    stream::{ConsumerError, InfoError, PurgeError, RawMessageError},
};

/// A task, an outcome or a parked copy that is not stored: the message
/// is handed back to be retried.
#[derive(Debug, thiserror::Error)]
pub enum NotStored {
    /// Publishing, or the server's ack, failed.
    #[error("{0}")]
    Publish(#[from] PublishError),
    /// A parked batch failed: one error shared by every task in it.
    #[error("{0}")]
    Batch(#[source] Arc<PublishError>),
    /// The message came without the reply subject its sequence is read from.
    #[error("no stream sequence in the reply subject")]
    NoSequence,
    /// The parker's batching task has stopped.
    #[error("parking is shut down")]
    ParkingShutDown,
}

/// Why one round of moving parked tasks back stopped; the next round
/// tries again.
#[derive(Debug, thiserror::Error)]
pub enum SweepError {
    #[error("{0}")]
    Info(#[from] InfoError),
    #[error("{0}")]
    Consumer(#[from] ConsumerError),
    #[error("{0}")]
    Fetch(#[from] BatchError),
    #[error("{0}")]
    Pull(#[from] StreamError),
    #[error("{0}")]
    Event(#[from] RawMessageError),
    #[error("{0}")]
    Publish(#[from] PublishError),
    #[error("no stream sequence in the reply subject")]
    NoSequence,
    #[error("reading events back from HOOKLINE_EVENTS: {0}")]
    Events(#[from] EventsError),
}

/// Why a batched direct get of parked tasks' events from HOOKLINE_EVENTS
/// failed (answers that show the server does not offer it are not errors:
/// the reader then asks for one event at a time).
#[derive(Debug, thiserror::Error)]
pub enum EventsError {
    #[error("subscribing to the reply inbox: {0}")]
    Subscribe(#[from] async_nats::SubscribeError),
    #[error("sending the request: {0}")]
    Send(#[from] async_nats::PublishError),
    #[error("no answer within {0:?}")]
    TimedOut(std::time::Duration),
    #[error("an answer without its Nats-Sequence header")]
    NoSequence,
    #[error("answered {status}: {description}")]
    Refused { status: u16, description: String },
}

/// Why one round of moving due retries from HOOKLINE_RETRY stopped; the
/// next round tries again from the same second.
#[derive(Debug, thiserror::Error)]
pub enum MoveError {
    #[error("reading the stream state: {0}")]
    Info(#[from] InfoError),
    #[error("looking into a second: {0}")]
    Look(#[from] RawMessageError),
    #[error("asking which of a span of seconds hold tasks: {0}")]
    Span(#[source] async_nats::jetstream::context::RequestError),
    #[error("asking which of a span of seconds hold tasks: {0}")]
    SpanRefused(#[source] async_nats::jetstream::Error),
    #[error("creating the reader of a second: {0}")]
    Consumer(#[from] ConsumerError),
    #[error("reading a second: {0}")]
    Fetch(#[from] BatchError),
    #[error("reading a second: {0}")]
    Read(#[source] async_nats::Error),
    #[error("storing a task in HOOKLINE_DISPATCH: {0}")]
    Publish(#[from] PublishError),
    #[error("purging what was moved: {0}")]
    Purge(#[from] PurgeError),
    #[error("no stream sequence in the reply subject")]
    NoSequence,
    #[error("the batch of second {due} was read over a minute ago; reading it again")]
    Late { due: u64 },
    #[error("reading a retry's event back: {0}")]
    Restore(#[source] SweepError),
}

/// A `HOOKLINE_SUBSCRIPTIONS_URL` fan-out cannot make a client for.
#[derive(Debug, thiserror::Error)]
#[error("HOOKLINE_SUBSCRIPTIONS_URL: {0}")]
pub struct SubscriptionsUrl(#[source] pub tonic::transport::Error);
