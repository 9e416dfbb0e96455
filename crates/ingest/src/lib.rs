//! The ingest service: validates producer events and appends them to
//! HOOKLINE_EVENTS, from gRPC (`IngestService`) and from the NATS intake
//! stream (`hookline.intake.<tenant>`).
//!
//! # Layout
//! * [`append`]: the one path every accepted event takes into the stream.
//! * [`grpc`]: `Publish` / `PublishBatch`.
//! * [`intake`]: the durable consumer on HOOKLINE_INTAKE.
//! * [`rejected`]: the records intake keeps of what it refused, and the
//!   newest-first pages `ListRejectedEvents` reads of them.
//!
//! **Invariant:** an event is either appended whole or refused with the
//! field and rule it broke; ingest never appends an event it did not parse.

pub mod append;
pub mod grpc;
pub mod intake;
pub mod limit;
pub mod rejected;

pub use append::Appender;
pub use grpc::IngestApi;

use hookline_auth::{Reason, Refusal};
use hookline_domain::FieldError;
use tonic::Status;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Invalid(FieldError),
    /// Every bad field of a refused batch, in event order.
    #[error("{}", joined(.0))]
    InvalidBatch(Vec<FieldError>),
    #[error("tenant_id: tenant `{0}` not found")]
    UnknownTenant(hookline_domain::ids::TenantId),
    #[error("NATS JetStream unavailable: {0}")]
    Unavailable(#[source] hookline_bus::Source),
    #[error(
        "tenant `{tenant}` publishes faster than {per_second} events/s (HOOKLINE_TENANT_RATE); retry in {retry_after_ms} ms"
    )]
    RateLimited { tenant: String, per_second: f64, retry_after_ms: u128 },
    /// A record on HOOKLINE_REJECTED that does not read back.
    #[error("{stream} sequence {sequence}: unreadable rejection record: {source}", stream = hookline_bus::REJECTED_STREAM)]
    Unreadable {
        sequence: u64,
        #[source]
        source: hookline_bus::Source,
    },
}

/// `field: rule; field: rule`.
fn joined(fields: &[FieldError]) -> String {
    fields.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ")
}

impl From<hookline_tenants::Error> for Error {
    /// The config stream or this replica's index: both retryable.
    fn from(e: hookline_tenants::Error) -> Self {
        Error::Unavailable(Box::new(e))
    }
}

impl From<FieldError> for Error {
    fn from(e: FieldError) -> Self {
        Error::Invalid(e)
    }
}

impl Error {
    /// Count a refusal in `hookline_events_rejected_total`.
    pub fn count(&self, source: &'static str) {
        let reason = match self {
            Error::Invalid(_) | Error::InvalidBatch(_) => "invalid",
            Error::UnknownTenant(_) => "unknown_tenant",
            Error::RateLimited { .. } => "rate_limited",
            Error::Unavailable(_) | Error::Unreadable { .. } => return,
        };
        hookline_telemetry::metrics()
            .events_rejected
            .get_or_create(&hookline_telemetry::labels([("reason", reason), ("source", source)]))
            .inc();
    }
}

impl From<Error> for Status {
    /// Reasons, codes and details come from [`hookline_auth::status`].
    fn from(e: Error) -> Status {
        let message = e.to_string();
        let refusal = match e {
            Error::Invalid(f) => Refusal::invalid([f]),
            Error::InvalidBatch(fields) => Refusal::invalid(fields),
            Error::UnknownTenant(t) => Refusal::new(Reason::TenantNotFound, message).with("tenant_id", t),
            Error::RateLimited { tenant, per_second, retry_after_ms } => Refusal::new(Reason::RateLimited, message)
                .with("tenant_id", tenant)
                .with("per_second", per_second)
                .retry_after(std::time::Duration::from_millis(retry_after_ms.try_into().unwrap_or(u64::MAX))),
            Error::Unavailable(_) => {
                tracing::warn!(error = %message, "event store unavailable");
                Refusal::new(Reason::StreamUnavailable, message)
            }
            Error::Unreadable { .. } => {
                tracing::error!(error = %message, "unreadable record");
                Refusal::new(Reason::UnreadableRecord, message)
            }
        };
        refusal.into()
    }
}
