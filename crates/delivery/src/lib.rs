//! The delivery service: fans accepted events out into one dispatch task per
//! subscribed endpoint, and runs the workers that POST them, retry them and
//! record every attempt.
//!
//! # Layout
//! * [`fanout`]: durable consumer `fanout` on HOOKLINE_EVENTS → HOOKLINE_DISPATCH.
//! * [`worker`]: durable consumer `workers` on HOOKLINE_DISPATCH → HTTP → HOOKLINE_OUTCOMES.
//! * [`sender`]: the HTTP request itself and the classification of failures.
//! * [`settings`]: the retry schedule and timeouts.
//!
//! **Invariant:** retries live in JetStream (`Nak` with a delay), never in
//! process memory; a task is acked only after its outcome is stored.

pub mod fanout;
pub mod guard;
pub mod sender;
pub mod settings;
pub mod worker;

pub use settings::{DeliverySettings, RetrySchedule};
