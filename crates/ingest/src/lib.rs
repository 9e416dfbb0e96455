//! The ingest service: validates producer events and appends them to
//! HOOKLINE_EVENTS, from gRPC (`IngestService`) and from the NATS intake
//! stream (`hookline.intake.<tenant>`).
//!
//! # Layout
//! * [`append`]: the one path every accepted event takes into the stream.
//! * [`grpc`]: `Publish` / `PublishBatch`.
//! * [`intake`]: the durable consumer on HOOKLINE_INTAKE.
//!
//! **Invariant:** an event is either appended whole or refused with the
//! field and rule it broke; ingest never appends an event it did not parse.

pub mod append;
pub mod grpc;
pub mod intake;
pub mod limit;

pub use append::Appender;
pub use grpc::IngestApi;

use hookline_domain::FieldError;
use tonic::Status;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Invalid(FieldError),
    #[error("tenant_id: tenant `{0}` not found")]
    UnknownTenant(String),
    #[error("NATS JetStream unavailable: {0}")]
    Unavailable(#[source] hookline_bus::Source),
    #[error(
        "tenant `{tenant}` publishes faster than {per_second} events/s (HOOKLINE_TENANT_RATE); retry in {retry_after_ms} ms"
    )]
    RateLimited { tenant: String, per_second: f64, retry_after_ms: u128 },
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
            Error::Invalid(_) => "invalid",
            Error::UnknownTenant(_) => "unknown_tenant",
            Error::RateLimited { .. } => "rate_limited",
            Error::Unavailable(_) => return,
        };
        hookline_telemetry::metrics()
            .events_rejected
            .get_or_create(&hookline_telemetry::labels([("reason", reason), ("source", source)]))
            .inc();
    }
}

impl From<Error> for Status {
    fn from(e: Error) -> Status {
        match e {
            Error::Invalid(_) => Status::invalid_argument(e.to_string()),
            Error::UnknownTenant(_) => Status::not_found(e.to_string()),
            Error::RateLimited { .. } => Status::resource_exhausted(e.to_string()),
            Error::Unavailable(_) => {
                tracing::warn!(error = %e, "event store unavailable");
                Status::unavailable(e.to_string())
            }
        }
    }
}
