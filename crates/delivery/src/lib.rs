//! The delivery service's hot path: fans accepted events out into one dispatch task per
//! subscribed endpoint, and runs the workers that POST them, retry them and
//! record every attempt.
//!
//! # Layout
//! * [`error`]: why a task or a parked copy was not stored.
//! * [`fanout`]: durable consumer `fanout` on HOOKLINE_EVENTS → HOOKLINE_DISPATCH.
//! * [`worker`]: durable consumer `workers` on HOOKLINE_DISPATCH → HTTP → HOOKLINE_OUTCOMES.
//! * [`guard`]: per-endpoint in-flight cap and circuit breaker.
//! * [`park`]: HOOKLINE_PARKED, where a stuck or broken endpoint's tasks wait, and the sweeper
//!   that moves them back as it recovers.
//! * [`retry_store`]: HOOKLINE_RETRY, where retries due later wait under their due second,
//!   and the mover that takes each second's retries to HOOKLINE_DISPATCH once it has passed.
//! * [`sender`]: the HTTP request itself and the classification of failures.
//! * [`mailer`]: the e-mail attempt.
//! * [`resolve`]: fan-out's coalesced `Resolve` client.
//! * [`settings`]: the retry schedule and timeouts.
//!
//! The delivery log (the gRPC `DeliveryService`, replays, recover jobs,
//! auto-disable) is `hookline-delivery-log`, over Postgres.
//!
//! **Invariant:** retries live in JetStream (in HOOKLINE_RETRY, or `Nak`ed
//! with a delay when due soon), never in process memory; a task is acked
//! only after its outcome and its next attempt's task are stored.
//!
//! **Invariant:** nothing here reads Postgres: endpoints come from the
//! in-memory Directory, events from the streams. `sqlx` is not among this
//! crate's dependencies, and `tests/architecture.rs` keeps it so.

pub mod error;
pub mod fanout;
pub mod guard;
pub mod mailer;
pub mod park;
pub mod resolve;
pub mod retry_store;
pub mod sender;
pub mod settings;
pub mod worker;

pub use settings::{DeliverySettings, RetrySchedule};

use async_nats::jetstream::message::PublishMessage;

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
