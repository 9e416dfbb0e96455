//! The NATS intake: a durable consumer on HOOKLINE_INTAKE. Publishers'
//! JetStream acks mean "durably accepted"; ingest validates later, appends
//! valid events and records invalid ones on `hookline.rejected.<tenant>`.

use std::time::Duration;

use async_nats::jetstream::{AckKind, Context, consumer::pull, message::Message};
use hookline_bus::{INGEST_CONSUMER, INTAKE_STREAM, rejected_subject, tenant_of};
use hookline_domain::events::NewEvent;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::{Appender, Error, limit::TenantLimiter};

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

async fn handle(js: &Context, appender: &Appender, limiter: &TenantLimiter, msg: Message) {
    let seq = msg.info().map(|i| i.stream_sequence).unwrap_or_default();
    let tenant = tenant_of(msg.subject.as_str()).unwrap_or_default().to_owned();
    // Over the tenant's rate: the event waits in the intake stream.
    if let Err(wait) = limiter.take(&tenant, 1) {
        let _ = msg.ack_with(AckKind::Nak(Some(wait.max(Duration::from_millis(10))))).await;
        return;
    }
    let outcome = match NewEvent::from_json(&msg.payload) {
        Ok(event) => appender
            .prepare("nats", &tenant, event, Some(format!("intake:{seq}")))
            .await
            .map(|p| p.traced(hookline_bus::header(msg.headers.as_ref(), hookline_telemetry::trace::TRACEPARENT))),
        Err(e) => Err(Error::from(e)),
    };
    let result = match outcome {
        Ok(prepared) => appender.append(&prepared).await.map(|_| ()),
        Err(Error::Unavailable(e)) => Err(Error::Unavailable(e)),
        Err(refusal) => {
            refusal.count("nats");
            reject(js, &tenant, seq, &msg.payload, &refusal).await
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

async fn reject(js: &Context, tenant: &str, seq: u64, payload: &[u8], refusal: &Error) -> Result<(), Error> {
    let (field, rule) = match refusal {
        Error::Invalid(f) => (f.field.clone(), f.rule.clone()),
        Error::UnknownTenant(t) => ("tenant_id".to_owned(), format!("tenant `{t}` not found")),
        Error::Unavailable(_) | Error::RateLimited { .. } => unreachable!("retried, not rejected"),
    };
    tracing::info!(tenant, seq, field = %field, rule = %rule, "intake event rejected");
    let excerpt = String::from_utf8_lossy(&payload[..payload.len().min(4096)]).into_owned();
    let record = json!({
        "intake_sequence": seq,
        "tenant_id": tenant,
        "rejected_at": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        "error": {"field": field, "rule": rule, "message": refusal.to_string()},
        "payload_bytes": payload.len(),
        "payload_excerpt": excerpt,
    });
    let publish = async_nats::jetstream::message::PublishMessage::build()
        .payload(serde_json::to_vec(&record).expect("JSON serialises").into())
        .message_id(format!("rejected:{seq}"));
    js.send_publish(rejected_subject(tenant), publish)
        .await
        .map_err(|e| Error::Unavailable(e.to_string()))?
        .await
        .map_err(|e| Error::Unavailable(e.to_string()))?;
    Ok(())
}
