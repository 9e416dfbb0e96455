//! Parking: the tasks of an endpoint that is stuck or whose breaker is open
//! wait on `hookline.parked.<tenant>.<endpoint>` (HOOKLINE_PARKED), apart
//! from every other endpoint's.
//!
//! Handing them back to the shared `workers` consumer with a delay instead
//! has each of them pulled, judged and handed back again for as long as the
//! endpoint is down; beside a black-holed endpoint, that churn cost a
//! healthy one a third of its throughput. A parked task costs one stored
//! publish until its endpoint can take it.
//!
//! The sweeper, in every delivery process, reads which endpoints have parked
//! tasks (stream info with subject counts) and moves back to
//! HOOKLINE_DISPATCH as many as [`Guard::room`] allows: none while the
//! endpoint is stuck or its breaker open, one when the cooldown is over (the
//! probe), then more as the endpoint finishes them. The tasks of a disabled
//! or deleted endpoint all go back, so that workers record them as dropped.
//!
//! Each endpoint is drained through its own durable consumer
//! (`parked_<endpoint>`), so replicas share the work and a task is acked
//! only after its copy is stored in HOOKLINE_DISPATCH. The copy's message id
//! is `p<parked sequence>`, so a move repeated after a crash is
//! de-duplicated.

use std::{collections::HashMap, time::Duration};

use async_nats::jetstream::{
    Context,
    consumer::{Consumer, pull},
    stream::Stream,
};
use futures_util::{StreamExt, TryStreamExt};
use hookline_bus::{PARKED_ALL, PARKED_STREAM, dispatch_subject, parked_consumer, parked_subject};
use hookline_domain::ids::{EndpointId, TenantId};
use hookline_subscriptions::Directory;
use hookline_telemetry::{metrics, trace::TRACEPARENT};
use tokio_util::sync::CancellationToken;

use crate::guard::Guard;

/// Parked tasks one endpoint gets back per round when it is disabled or deleted.
const UNAVAILABLE_ROOM: usize = 2_000;
/// Rounds while tasks are moving, and while there is nothing to move.
const BUSY_ROUND: Duration = Duration::from_millis(250);
const IDLE_ROUND: Duration = Duration::from_secs(1);

/// Publish a task to its endpoint's parking subject. The caller awaits the
/// stored ack before it acks what it parked.
pub async fn publish(
    js: &Context,
    tenant: &str,
    endpoint: &str,
    payload: bytes::Bytes,
    traceparent: Option<&str>,
    msg_id: String,
) -> Result<async_nats::jetstream::context::PublishAckFuture, async_nats::jetstream::context::PublishError> {
    js.send_publish(parked_subject(tenant, endpoint), crate::task_message(payload, traceparent, msg_id)).await
}

struct Lot {
    consumer: Consumer<pull::Config>,
    /// The endpoint's finished attempts at the last look (see [`Guard::room`]).
    seen: Option<u64>,
}

/// Move parked tasks back to HOOKLINE_DISPATCH as their endpoints recover,
/// until `shutdown`.
pub async fn run(
    js: Context,
    directory: Directory,
    guard: Guard,
    shutdown: CancellationToken,
) -> Result<(), hookline_bus::BusError> {
    let err =
        |e: &dyn std::fmt::Display| hookline_bus::BusError::Stream { stream: PARKED_STREAM, message: e.to_string() };
    let stream = js.get_stream(PARKED_STREAM).await.map_err(|e| err(&e))?;
    let mut lots: HashMap<String, Lot> = HashMap::new();
    let mut round = IDLE_ROUND;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            _ = tokio::time::sleep(round) => {}
        }
        round = match sweep(&js, &stream, &directory, &guard, &mut lots, &shutdown).await {
            Ok(0) => IDLE_ROUND,
            Ok(_) => BUSY_ROUND,
            Err(e) => {
                tracing::warn!(error = %e, "parking: sweep failed; retrying");
                IDLE_ROUND
            }
        };
    }
}

/// One round: returns how many tasks went back to HOOKLINE_DISPATCH.
async fn sweep(
    js: &Context,
    stream: &Stream,
    directory: &Directory,
    guard: &Guard,
    lots: &mut HashMap<String, Lot>,
    shutdown: &CancellationToken,
) -> Result<usize, String> {
    let parked: Vec<(String, usize)> = stream
        .info_with_subjects(PARKED_ALL)
        .await
        .map_err(|e| e.to_string())?
        .try_collect()
        .await
        .map_err(|e| e.to_string())?;
    metrics().parked.set(parked.iter().map(|(_, n)| *n as i64).sum());
    // A drained endpoint's consumer goes; it is made again if tasks return.
    let waiting: std::collections::HashSet<&str> =
        parked.iter().filter_map(|(s, _)| hookline_bus::tenant_and_endpoint_of(s).map(|(_, e)| e)).collect();
    let drained: Vec<String> = lots.keys().filter(|e| !waiting.contains(e.as_str())).cloned().collect();
    for endpoint in drained {
        lots.remove(&endpoint);
        let _ = stream.delete_consumer(&parked_consumer(&endpoint)).await;
    }
    let mut moved = 0;
    for (subject, count) in parked {
        if shutdown.is_cancelled() {
            break;
        }
        let Some((tenant, endpoint)) = hookline_bus::tenant_and_endpoint_of(&subject) else { continue };
        let (Ok(tenant_id), Ok(endpoint_id)) = (TenantId::parse(tenant), EndpointId::parse(endpoint)) else {
            continue;
        };
        let available = directory.endpoint(&tenant_id, &endpoint_id).is_some_and(|ep| ep.enabled);
        let lot = match lots.get_mut(endpoint) {
            Some(lot) => lot,
            None => {
                let config = pull::Config {
                    durable_name: Some(parked_consumer(endpoint)),
                    filter_subject: subject.clone(),
                    ack_wait: Duration::from_secs(30),
                    ..Default::default()
                };
                let consumer = stream.create_consumer(config).await.map_err(|e| e.to_string())?;
                lots.entry(endpoint.to_owned()).or_insert(Lot { consumer, seen: None })
            }
        };
        let room = if available { guard.room(&endpoint_id, &mut lot.seen) } else { UNAVAILABLE_ROOM };
        let want = room.min(count);
        if want == 0 {
            continue;
        }
        match unpark(js, &lot.consumer, tenant, endpoint, want).await {
            Ok(n) => moved += n,
            Err(e) => {
                tracing::warn!(endpoint_id = endpoint, error = %e, "parking: could not move tasks back");
                lots.remove(endpoint);
            }
        }
    }
    if moved > 0 {
        tracing::debug!(moved, "parking: tasks back to dispatch");
    }
    Ok(moved)
}

/// Move up to `n` of one endpoint's parked tasks back to HOOKLINE_DISPATCH.
async fn unpark(
    js: &Context,
    consumer: &Consumer<pull::Config>,
    tenant: &str,
    endpoint: &str,
    n: usize,
) -> Result<usize, String> {
    let batch: Vec<_> = consumer
        .fetch()
        .max_messages(n)
        .messages()
        .await
        .map_err(|e| e.to_string())?
        .filter_map(|m| async move { m.ok() })
        .collect()
        .await;
    let _budget = hookline_bus::ack_budget(batch.len()).await;
    let mut acks = Vec::with_capacity(batch.len());
    for msg in &batch {
        let seq = msg.info().map_err(|e| e.to_string())?.stream_sequence;
        let traceparent = hookline_bus::header(msg.headers.as_ref(), TRACEPARENT);
        let publish = crate::task_message(msg.payload.clone(), traceparent, format!("p{seq}"));
        acks.push(js.send_publish(dispatch_subject(tenant, endpoint), publish).await.map_err(|e| e.to_string())?);
    }
    for ack in acks {
        ack.await.map_err(|e| e.to_string())?;
    }
    // Stored in HOOKLINE_DISPATCH: a lost ack only moves a task again, and
    // its message id de-duplicates that.
    for msg in &batch {
        let _ = msg.ack().await;
    }
    Ok(batch.len())
}
