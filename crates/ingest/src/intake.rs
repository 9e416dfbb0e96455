//! The NATS intake: a durable consumer on HOOKLINE_INTAKE. Publishers'
//! JetStream acks mean "durably accepted"; ingest validates later, appends
//! valid events and records invalid ones on `hookline.rejected.<tenant>`.
//!
//! A publisher's ack was a promise, so a refused event is kept whole (every
//! byte as published, up to the intake limit) with the reason: the producer
//! can fix and resend it without having kept a copy.

use std::time::Duration;

use async_nats::jetstream::{AckKind, Context, consumer::pull, message::Message};
use hookline_bus::{INGEST_CONSUMER, INTAKE_STREAM, rejected_subject, tenant_of};
use hookline_domain::{events::NewEvent, ids::TenantId};
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;

use crate::{
    Appender, Error,
    limit::{Refusal, TenantLimiter},
    rejected::{Kept, Record, Refused},
};

/// Intake messages processed at once.
const CONCURRENCY: usize = 64;

/// Consume intake until `shutdown`; in-flight messages finish first.
pub async fn run(
    js: Context,
    appender: Appender,
    limiter: TenantLimiter,
    shutdown: CancellationToken,
) -> Result<(), hookline_bus::BusError> {
    let consumer = hookline_bus::durable(
        &js,
        INTAKE_STREAM,
        INGEST_CONSUMER,
        pull::Config {
            ack_wait: Duration::from_secs(30),
            max_ack_pending: 4 * CONCURRENCY as i64,
            filter_subject: hookline_bus::INTAKE_ALL.into(),
            ..Default::default()
        },
    )
    .await?;
    let pull = hookline_bus::Pull { name: INGEST_CONSUMER, concurrency: CONCURRENCY, drain: Duration::from_secs(10) };
    hookline_bus::consume(&consumer, pull, shutdown, move |msg| {
        let (js, appender, limiter) = (js.clone(), appender.clone(), limiter.clone());
        async move { handle(&js, &appender, &limiter, msg).await }
    })
    .await;
    Ok(())
}

/// One stored intake message: its stream sequence and the time the stream
/// stored it. The sequence alone starts at 1 again when HOOKLINE_INTAKE is
/// re-created, and HOOKLINE_EVENTS would then drop new keyless events as
/// duplicates of old ones for 24 h; with the time the pair names one message
/// for good, and is the same on every redelivery of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Origin {
    sequence: u64,
    stored_at_nanos: u64,
}

impl Origin {
    fn of(msg: &Message) -> Option<Self> {
        let reply = msg.reply.as_deref();
        Some(Self {
            sequence: hookline_bus::stream_sequence(reply)?,
            stored_at_nanos: hookline_bus::stored_at_nanos(reply)?,
        })
    }

    /// The Nats-Msg-Id of the event appended for a keyless intake message.
    fn event_msg_id(&self) -> String {
        format!("intake:{}:{}", self.sequence, self.stored_at_nanos)
    }

    /// The Nats-Msg-Id of the rejection record of an intake message.
    fn rejected_msg_id(&self) -> String {
        format!("rejected:{}:{}", self.sequence, self.stored_at_nanos)
    }
}

async fn handle(js: &Context, appender: &Appender, limiter: &TenantLimiter, msg: Message) {
    let origin = Origin::of(&msg);
    if origin.is_none() {
        tracing::warn!(reply = ?msg.reply, "intake: no stream sequence in the reply subject; no de-duplication");
    }
    let seq = origin.map(|o| o.sequence).unwrap_or_default();
    let tenant = tenant_of(msg.subject.as_str()).unwrap_or_default().to_owned();
    // A tenant this process holds takes its rate before the stream read of
    // `prepare`, so events waiting for room cost no read on each redelivery.
    // Any other id is checked against the stream first: unknown tenants are
    // refused and never get a limiter entry.
    let known = TenantId::parse(&tenant).ok().filter(|t| appender.knows_locally(t));
    if let Some(t) = &known
        && over_rate(limiter, t, &msg).await
    {
        return;
    }
    // The producer's trace, continued by a `publish` span (made only when
    // spans are exported) that covers the check and the append.
    let producer = hookline_bus::header(msg.headers.as_ref(), hookline_telemetry::trace::TRACEPARENT)
        .and_then(hookline_telemetry::trace::TraceParent::parse);
    let span = hookline_telemetry::trace::when_exporting(|| {
        tracing::info_span!("publish", otel.kind = "consumer", messaging.system = "nats",
            messaging.operation.type = "process", messaging.destination.name = msg.subject.as_str())
    });
    let trace = hookline_telemetry::trace::start(&span, producer);
    let outcome = match NewEvent::from_json(&msg.payload) {
        Ok(event) => appender
            .prepare(&mut Default::default(), "nats", &tenant, event, origin.map(|o| o.event_msg_id()))
            .instrument(span.clone())
            .await
            .map(|p| p.traced(Some(trace))),
        Err(e) => Err(Error::from(e)),
    };
    if known.is_none()
        && let Ok(prepared) = &outcome
        && over_rate(limiter, prepared.tenant(), &msg).await
    {
        return;
    }
    let result = match outcome {
        Ok(prepared) => appender.append(&prepared).instrument(span).await.map(|_| ()),
        Err(Error::Unavailable(e)) => Err(Error::Unavailable(e)),
        Err(refusal) => {
            refusal.count("nats");
            reject(js, &tenant, origin, &msg.payload, &refusal).await
        }
    };
    match result {
        Ok(()) => {
            if let Err(e) = msg.double_ack().await {
                tracing::warn!(seq, error = %e, "intake: ack failed; the message will be redelivered (deduplicated)");
            }
        }
        Err(e) => {
            tracing::warn!(seq, error = %e, "intake: will retry");
            let _ = msg.ack_with(AckKind::Nak(Some(Duration::from_secs(1)))).await;
        }
    }
}

/// Over the tenant's rate, the event waits in the intake stream: the
/// message is handed back to come again once there is room.
async fn over_rate(limiter: &TenantLimiter, tenant: &TenantId, msg: &Message) -> bool {
    let wait = match limiter.take(tenant, 1) {
        Ok(()) => return false,
        Err(Refusal::Wait(wait)) => wait,
        // One event always fits a burst of at least 1; wait a second should the settings ever allow less.
        Err(Refusal::OverBurst { .. }) => Duration::from_secs(1),
    };
    let _ = msg.ack_with(AckKind::Nak(Some(wait.max(Duration::from_millis(10))))).await;
    true
}

async fn reject(
    js: &Context,
    tenant: &str,
    origin: Option<Origin>,
    payload: &[u8],
    refusal: &Error,
) -> Result<(), Error> {
    let (field, rule) = match refusal {
        Error::Invalid(f) => (f.field.clone(), f.rule.clone()),
        Error::UnknownTenant(t) => ("tenant_id".to_owned(), format!("tenant `{t}` not found")),
        Error::Unavailable(_) | Error::RateLimited { .. } => unreachable!("retried, not rejected"),
        Error::InvalidBatch(_) => unreachable!("intake takes one event per message"),
        Error::Unreadable { .. } => unreachable!("a read of HOOKLINE_REJECTED, not a refusal"),
    };
    let seq = origin.map(|o| o.sequence).unwrap_or_default();
    tracing::info!(tenant, seq, field = %field, rule = %rule, "intake event rejected");
    let record = Record {
        intake_sequence: seq,
        tenant_id: tenant.to_owned(),
        rejected_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        error: Refused { field, rule, message: refusal.to_string() },
        payload_bytes: payload.len() as u64,
        intake_stored_at: origin.map(|o| {
            let stored = chrono::DateTime::from_timestamp_nanos(o.stored_at_nanos as i64);
            stored.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
        }),
        payload: Kept::of(payload),
    };
    let mut publish = async_nats::jetstream::message::PublishMessage::build()
        .payload(serde_json::to_vec(&record).expect("JSON serialises").into());
    if let Some(o) = origin {
        publish = publish.message_id(o.rejected_msg_id());
    }
    js.send_publish(rejected_subject(tenant), publish)
        .await
        .map_err(|e| Error::Unavailable(e.into()))?
        .await
        .map_err(|e| Error::Unavailable(e.into()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keyless_ids_differ_across_stream_incarnations_and_not_across_redeliveries() {
        let first = Origin { sequence: 1, stored_at_nanos: 1_732_880_000_000_000_001 };
        let recreated = Origin { sequence: 1, stored_at_nanos: 1_732_880_500_000_000_000 };
        assert_ne!(first.event_msg_id(), recreated.event_msg_id());
        assert_ne!(first.rejected_msg_id(), recreated.rejected_msg_id());
        // A redelivery has the same reply subject but for its delivery count.
        let parse = |reply: &str| Origin {
            sequence: hookline_bus::stream_sequence(Some(reply)).unwrap(),
            stored_at_nanos: hookline_bus::stored_at_nanos(Some(reply)).unwrap(),
        };
        let once = parse("$JS.ACK.HOOKLINE_INTAKE.ingest.1.1.1.1732880000000000001.0");
        let again = parse("$JS.ACK.HOOKLINE_INTAKE.ingest.2.1.2.1732880000000000001.0");
        assert_eq!(once, first);
        assert_eq!(once.event_msg_id(), again.event_msg_id());
        assert_eq!(first.event_msg_id(), "intake:1:1732880000000000001");
    }
}
