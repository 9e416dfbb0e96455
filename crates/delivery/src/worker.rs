//! Workers: execute dispatch tasks, record outcomes, schedule retries as
//! JetStream redeliveries.

use std::{sync::Arc, time::Duration};

use async_nats::jetstream::{
    AckKind, Context,
    consumer::pull,
    message::{Message, PublishMessage},
};
use futures_util::StreamExt;
use hookline_bus::{DISPATCH_STREAM, WORKERS_CONSUMER, outcomes_subject};
use hookline_domain::{
    delivery::{AttemptOutcome, AttemptState, DispatchTask, ErrorKind, SentRequest},
    layout,
};
use hookline_subscriptions::Directory;
use rand::RngExt;
use sha2::{Digest, Sha256};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::{DeliverySettings, sender};

/// How long shutdown waits for attempts in flight.
const DRAIN: Duration = Duration::from_secs(20);

struct Worker {
    js: Context,
    directory: Directory,
    settings: DeliverySettings,
    http: reqwest::Client,
}

pub async fn run(
    js: Context,
    directory: Directory,
    settings: DeliverySettings,
    shutdown: CancellationToken,
) -> Result<(), hookline_bus::BusError> {
    let consumer = hookline_bus::durable(
        &js,
        DISPATCH_STREAM,
        WORKERS_CONSUMER,
        pull::Config {
            ack_wait: settings.ack_wait,
            // Tasks waiting for a delayed retry count as pending: keep the cap
            // far above any realistic backlog of failing deliveries.
            max_ack_pending: 1_000_000,
            ..Default::default()
        },
    )
    .await?;
    let concurrency = settings.concurrency;
    let worker = Arc::new(Worker { http: sender::client(settings.request_timeout), js, directory, settings });
    let permits = Arc::new(Semaphore::new(concurrency));
    while !shutdown.is_cancelled() {
        let mut messages = match consumer
            .stream()
            .max_messages_per_batch(concurrency.min(500))
            .heartbeat(Duration::from_secs(5))
            .expires(Duration::from_secs(30))
            .messages()
            .await
        {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(error = %e, "workers: cannot pull, retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        loop {
            let permit = tokio::select! {
                _ = shutdown.cancelled() => break,
                p = permits.clone().acquire_owned() => p.expect("semaphore open"),
            };
            let next = tokio::select! {
                _ = shutdown.cancelled() => break,
                n = messages.next() => n,
            };
            let msg = match next {
                Some(Ok(m)) => m,
                Some(Err(e)) => {
                    tracing::warn!(error = %e, "workers: pull error");
                    continue;
                }
                None => break,
            };
            let worker = worker.clone();
            tokio::spawn(async move {
                worker.attempt(msg).await;
                drop(permit);
            });
        }
    }
    if tokio::time::timeout(DRAIN, permits.acquire_many(concurrency as u32)).await.is_err() {
        tracing::warn!("workers: attempts still in flight after {DRAIN:?}; JetStream will redeliver them");
    }
    Ok(())
}

/// ±20 % jitter, so retries of many deliveries do not arrive in lockstep.
fn jitter(d: Duration) -> Duration {
    if d.is_zero() {
        return d;
    }
    d.mul_f64(rand::rng().random_range(0.8..1.2))
}

fn rfc3339(t: chrono::DateTime<chrono::Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

impl Worker {
    async fn attempt(&self, msg: Message) {
        let attempt = msg.info().map(|i| i.delivered.max(1) as u32).unwrap_or(1);
        let task: DispatchTask = match serde_json::from_slice(&msg.payload) {
            Ok(t) => t,
            Err(e) => {
                tracing::error!(subject = %msg.subject, error = %e, "workers: unreadable task terminated");
                let _ = msg.ack_with(AckKind::Term).await;
                return;
            }
        };
        let event = &task.event;
        let span = tracing::info_span!("attempt", delivery_id = %task.delivery_id, event_id = %event.id,
            endpoint_id = %task.endpoint_id, tenant = %event.tenant_id, attempt);
        self.execute(msg, &task, attempt).instrument(span).await
    }

    async fn execute(&self, msg: Message, task: &DispatchTask, attempt: u32) {
        let event = &task.event;
        let started_at = chrono::Utc::now();
        let mut outcome = AttemptOutcome {
            delivery_id: task.delivery_id.clone(),
            delivery_created_at: task.created_at.clone(),
            replay_of: task.replay_of.clone(),
            event_seq: task.event_seq,
            request: None,
            event_id: event.id.clone(),
            tenant_id: event.tenant_id.clone(),
            endpoint_id: task.endpoint_id.clone(),
            event_type: event.event_type,
            attempt,
            state: AttemptState::Dropped,
            status_code: None,
            error_kind: None,
            error: None,
            started_at: rfc3339(started_at),
            duration_ms: 0,
            next_attempt_at: None,
            response_excerpt: None,
        };
        let mut endpoint = self.directory.endpoint(&event.tenant_id, &task.endpoint_id);
        if endpoint.is_none() {
            // Perhaps created a moment ago through another replica.
            let _ = self.directory.catch_up().await;
            endpoint = self.directory.endpoint(&event.tenant_id, &task.endpoint_id);
        }
        let ack = match endpoint {
            Some(ep) if ep.enabled => {
                let body = layout::render(event, ep.layout);
                let body_sha256 = format!("{:x}", Sha256::digest(&body));
                let result = sender::send(&self.http, &ep, event.id.as_str(), body).await;
                outcome.request = Some(SentRequest {
                    url: ep.url.as_str().to_owned(),
                    layout: ep.layout,
                    headers: result.request_headers.clone(),
                    body_sha256,
                });
                outcome.status_code = result.status_code;
                outcome.error_kind = result.error_kind;
                outcome.error = result.error.clone();
                outcome.duration_ms = result.duration.as_millis() as u64;
                outcome.response_excerpt = result.response_excerpt.clone();
                if result.succeeded() {
                    outcome.state = AttemptState::Succeeded;
                    AckKind::Ack
                } else if let Some(delay) = self.settings.retry_schedule.delay_after(attempt) {
                    let delay = jitter(delay);
                    outcome.state = AttemptState::Retrying;
                    outcome.next_attempt_at = Some(rfc3339(chrono::Utc::now() + delay));
                    AckKind::Nak(Some(delay))
                } else {
                    outcome.state = AttemptState::Failed;
                    AckKind::Term
                }
            }
            Some(_) | None => {
                outcome.error_kind = Some(ErrorKind::EndpointUnavailable);
                outcome.error =
                    Some(if endpoint.is_some() { "endpoint is disabled" } else { "endpoint was deleted" }.into());
                AckKind::Term
            }
        };
        tracing::info!(state = ?outcome.state, status = outcome.status_code, error_kind = outcome.error_kind.map(|k| k.as_str()),
            duration_ms = outcome.duration_ms, "attempt finished");
        if let Err(e) = self.record(&outcome).await {
            // Without its outcome the attempt did not happen as far as the
            // log is concerned: let JetStream hand the task out again.
            tracing::warn!(error = %e, "workers: outcome not stored; task will be retried");
            let _ = msg.ack_with(AckKind::Nak(Some(Duration::from_secs(1)))).await;
            return;
        }
        if let Err(e) = msg.ack_with(ack).await {
            tracing::warn!(error = %e, "workers: ack failed; the task may be attempted again");
        }
    }

    async fn record(&self, outcome: &AttemptOutcome) -> Result<(), String> {
        let publish = PublishMessage::build()
            .payload(serde_json::to_vec(outcome).expect("outcomes serialise").into())
            .message_id(outcome.msg_id());
        self.js
            .send_publish(outcomes_subject(outcome.tenant_id.as_str(), outcome.endpoint_id.as_str()), publish)
            .await
            .map_err(|e| e.to_string())?
            .await
            .map_err(|e| e.to_string())?;
        Ok(())
    }
}
