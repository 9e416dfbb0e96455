//! Fan-out: one dispatch task per endpoint that `Resolve` names for an event.

use std::{sync::Arc, time::Duration};

use async_nats::jetstream::{AckKind, Context, consumer::pull, message::Message};
use futures_util::future::Either;
use hookline_bus::{CONFIG_SEQUENCE_HEADER, EVENTS_STREAM, FANOUT_CONSUMER, WEBHOOKS_HEADER, header};
use hookline_domain::{delivery::TaskRef, events::StoredEvent, filter, ids::DeliveryId};
use hookline_proto::subscriptions::v1::subscription_service_client::SubscriptionServiceClient;
use hookline_telemetry::trace::{TRACEPARENT, TraceParent};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::{DeliverySettings, resolve::Resolver, worker::Worker};

/// Events fanned out at once, at least: fan-out makes fast endpoints' first
/// attempts itself and holds each event until they are recorded, so with
/// slow receivers (100 ms) the events in fan-out bound the requests in
/// flight. It follows `HOOKLINE_DELIVERY_CONCURRENCY` above this floor, so
/// raising that setting raises both.
const MIN_CONCURRENCY: usize = 128;

pub async fn run(
    js: Context,
    settings: DeliverySettings,
    worker: Arc<Worker>,
    shutdown: CancellationToken,
) -> Result<(), hookline_bus::BusError> {
    let concurrency = settings.concurrency().max(MIN_CONCURRENCY);
    let consumer = hookline_bus::durable(
        &js,
        EVENTS_STREAM,
        FANOUT_CONSUMER,
        pull::Config {
            ack_wait: settings.ack_wait,
            max_ack_pending: 4 * concurrency as i64,
            filter_subject: hookline_bus::EVENTS_ALL.into(),
            ..Default::default()
        },
    )
    .await?;
    let channel = hookline_proto::endpoint(
        &settings.subscriptions_url,
        settings.tls_ca.as_deref(),
        settings.tls_identity.as_ref().map(|(c, k)| (c.as_slice(), k.as_slice())),
    )
    .map_err(|e| hookline_bus::BusError::Stream {
        stream: EVENTS_STREAM,
        source: Box::new(crate::error::SubscriptionsUrl(e)),
    })?
    .connect_timeout(Duration::from_secs(5))
    .connect_lazy();
    let resolver = Resolver::new(
        SubscriptionServiceClient::new(channel),
        settings.operator_token.as_deref(),
        worker.directory().clone(),
    );
    // First attempts made here get as long to finish on shutdown as the workers' do.
    let pull = hookline_bus::Pull { name: FANOUT_CONSUMER, concurrency, drain: crate::worker::DRAIN };
    hookline_bus::consume(&consumer, pull, shutdown, move |msg| {
        let (resolver, worker) = (resolver.clone(), worker.clone());
        async move { fan_out(&resolver, &worker, msg).await }
    })
    .await;
    Ok(())
}

async fn fan_out(resolver: &Resolver, worker: &Worker, msg: Message) {
    let event: StoredEvent = match serde_json::from_slice(&msg.payload) {
        Ok(e) => e,
        Err(e) => {
            tracing::error!(subject = %msg.subject, error = %e, "fanout: unreadable event terminated");
            let _ = msg.ack_with(AckKind::Term).await;
            return;
        }
    };
    let span = tracing::info_span!("fanout", trace_id = tracing::field::Empty, event_id = %event.id,
        tenant = %event.tenant_id, event_type = event.event_type.as_str());
    // The stored event carries the `ingest` span's context; the tasks carry
    // this span's, so every attempt of the event is a child of `fanout`.
    let trace =
        hookline_telemetry::trace::start(&span, header(msg.headers.as_ref(), TRACEPARENT).and_then(TraceParent::parse));
    span.record("trace_id", tracing::field::display(trace.trace_id_display()));
    dispatch(resolver, worker, msg, event, trace).instrument(span).await
}

async fn dispatch(resolver: &Resolver, worker: &Worker, msg: Message, event: StoredEvent, trace: TraceParent) {
    // Fan-out hands an event back only after a failure (logged then);
    // otherwise an event delivered again was handled before and its ack did
    // not count (lost, late, or not kept by a consumer leader that changed):
    // its first attempts are about to be made again.
    let delivered = hookline_bus::delivery_count(msg.reply.as_deref()).unwrap_or(1);
    if delivered > 1 {
        tracing::info!(delivered, "fanout: event delivered again; its first attempts repeat");
    }
    if event.test {
        // `SendTestEvent` queued its one task itself; the event is stored only
        // so that retries, parking, Raw and Replay read it like any other.
        let _ = msg.ack().await;
        return;
    }
    if header(msg.headers.as_ref(), WEBHOOKS_HEADER) == Some("off") {
        tracing::info!("fanout: published while webhooks were off; not delivered");
        let _ = msg.double_ack().await;
        return;
    }
    // 0 for events stored before ingest stamped them: resolved as before.
    let min_seq = header(msg.headers.as_ref(), CONFIG_SEQUENCE_HEADER).and_then(|s| s.parse().ok()).unwrap_or(0);
    let resolved = resolver.resolve(&event.tenant_id, event.event_type, min_seq, trace).await;
    let endpoints = match resolved {
        Ok(endpoints) => endpoints,
        Err(s) => {
            tracing::warn!(code = ?s.code(), message = s.message(), "fanout: resolve failed; retrying in 1s");
            let _ = msg.ack_with(AckKind::Nak(Some(Duration::from_secs(1)))).await;
            return;
        }
    };
    // Payload filters, read only when an endpoint has one: its conditions
    // come parsed (once per config change) from delivery's own config
    // index, as of at least the event's config sequence, and the event's
    // data (JSON, as ingest checked it) is parsed once for all of them.
    // Endpoints without a filter cost nothing here.
    let filtered = if endpoints.iter().any(|e| e.filtered) {
        match worker.tenant_config(&event.tenant_id, min_seq).await {
            Ok(config) => {
                config.map(|c| (c, serde_json::from_str::<serde_json::Value>(event.data.get()).unwrap_or_default()))
            }
            Err(e) => {
                tracing::warn!(error = %e, "fanout: config for filters not read; retrying in 1s");
                let _ = msg.ack_with(AckKind::Nak(Some(Duration::from_secs(1)))).await;
                return;
            }
        }
    } else {
        None
    };
    let event_seq = hookline_bus::stream_sequence(msg.reply.as_deref()).unwrap_or_default();
    let created_at = hookline_domain::events::Timestamp::now();
    let _budget = hookline_bus::ack_budget(endpoints.len()).await;
    let (mut attempted_here, mut stored) = (Vec::new(), Vec::new());
    for ep in endpoints.iter() {
        let endpoint_id = ep.id.clone();
        if ep.filtered
            && let Some((config, data)) = &filtered
            && let Some(endpoint) = config.endpoints.get(&endpoint_id)
            && !filter::matches_all(&endpoint.filters, data)
        {
            // Filtered out: no task, no delivery, nothing in the log.
            tracing::debug!(endpoint = %endpoint_id, "fanout: event filtered out");
            continue;
        }
        let blocked = worker.guard().blocked(&endpoint_id);
        let head = TaskRef {
            delivery_id: DeliveryId::original(&event.id, &endpoint_id),
            created_at: created_at.clone(),
            endpoint_id,
            event_seq,
            event_id: event.id.clone(),
            replay_of: None,
            attempt: 1,
            not_before: None,
            event_type: Some(event.event_type),
            test: event.test,
        };
        let traceparent = trace;
        // A stuck endpoint's or an open breaker's task is parked at once, so
        // it never cycles through the workers, and without a copy of the event.
        if let Some(wait) = blocked {
            let tenant = &event.tenant_id;
            stored.push(Either::Left(
                async move { worker.park_new(tenant, &head, wait, &traceparent.to_string()).await },
            ));
            continue;
        }
        // A fast endpoint: make the first attempt here (queueing briefly for
        // a place and a slot) and spare the task its trip through
        // HOOKLINE_DISPATCH. The task, with its copy of the event, is made
        // once it has a place.
        if let Some(endpoint) = worker.directory().find_endpoint(&event.tenant_id, &head.endpoint_id).await
            && let Some(turn) = worker.fan_out_turn(&endpoint)
        {
            let event = &event;
            // Boxed, and the attempt boxed on its own once it has a place:
            // the attempt's future is large, join_all moves this one, and
            // thousands may wait for a place holding only their turn.
            attempted_here.push(Box::pin(async move {
                let place = turn.place().await;
                let task = head.into_task(event.clone());
                match place {
                    Some(place) => {
                        let attempted = Box::pin(worker.first_attempt(task, endpoint, traceparent)).await;
                        drop(place);
                        attempted
                    }
                    None => Box::pin(worker.hand_off(&task, None, &traceparent.to_string())).await,
                }
            }));
            continue;
        }
        let task = head.into_task(event.clone());
        stored.push(Either::Right(async move { worker.hand_off(&task, None, &traceparent.to_string()).await }));
    }
    let (attempts, stored) =
        tokio::join!(futures_util::future::join_all(attempted_here), futures_util::future::join_all(stored));
    if let Some(e) = stored.into_iter().find_map(Result::err) {
        tracing::warn!(error = %e, "fanout: dispatch not stored; retrying in 1s");
        let _ = msg.ack_with(AckKind::Nak(Some(Duration::from_secs(1)))).await;
        return;
    }
    // A first attempt whose outcome was not stored is made again with the
    // event (its delivery id, and so its log entry, stays the same).
    if let Some(e) = attempts.into_iter().find_map(Result::err) {
        tracing::warn!(error = %e, "fanout: outcome not stored; retrying in 1s");
        let _ = msg.ack_with(AckKind::Nak(Some(Duration::from_secs(1)))).await;
        return;
    }
    tracing::debug!(endpoints = endpoints.len(), "fanout: dispatched");
    // A plain ack: the tasks and first outcomes are stored, and a lost ack
    // only fans the event out again: the tasks' message ids de-duplicate
    // that, and a first attempt made again lands on the same delivery. (A
    // confirmed ack, retried while the consumer's lead moves, was tried in
    // the cluster test: no ack needed a second try in six runs, and the
    // duplicates stayed; see RELIABILITY.md.)
    if let Err(e) = msg.ack().await {
        tracing::warn!(error = %e, "fanout: ack failed; redelivery is de-duplicated");
    }
}
