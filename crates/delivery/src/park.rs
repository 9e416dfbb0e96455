//! Parking: the tasks of an endpoint that is stuck or whose breaker is open
//! wait on `hookline.parked.<tenant>.<endpoint>` (HOOKLINE_PARKED), apart
//! from every other endpoint's.
//!
//! Handing them back to the shared `workers` consumer with a delay instead
//! has each of them pulled, judged and handed back again for as long as the
//! endpoint is down; beside a black-holed endpoint, that churn takes
//! throughput from the healthy ones (BENCHMARKS.md). A parked task costs one stored
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
//!
//! Fan-out parks new tasks in batches ([`Parker`]): one message per endpoint
//! holds the tasks of every event fanned out within a couple of
//! milliseconds, one per line (`<message id> <traceparent> <task JSON>`,
//! header [`BATCH_HEADER`] = the count). Beside a black hole, one stored
//! message per task would take throughput from the healthy endpoints
//! (BENCHMARKS.md). A batched task goes back with message id `f<its own message
//! id>`, which de-duplicates a batch parked again by a repeated fan-out.
//! A batched task is parked without its event ([`TaskRef`]): the sweeper
//! reads the event back from HOOKLINE_EVENTS when it moves the task, so a
//! parked task costs a couple of hundred bytes, not a copy of the payload.
//! A task whose event is gone by then (archived: parked for longer than
//! `HOOKLINE_ARCHIVE_AFTER`, or purged) cannot be sent; the sweeper records
//! its outcome instead, `failed` with error kind `event_expired`, so the
//! delivery log shows how it ended.

use std::{collections::HashMap, sync::Arc, time::Duration};

use async_nats::jetstream::{
    Context,
    consumer::{Consumer, pull},
    context::{PublishAckFuture, PublishError},
    message::PublishMessage,
    stream::{RawMessageErrorKind, Stream},
};
use futures_util::{StreamExt, TryStreamExt};
use hookline_bus::{
    EVENTS_STREAM, PARKED_ALL, PARKED_STREAM, dispatch_subject, outcomes_subject, parked_consumer, parked_subject,
};
use hookline_domain::{
    delivery::TaskRef,
    events::StoredEvent,
    ids::{EndpointId, TenantId},
};
use hookline_telemetry::{metrics, trace::TRACEPARENT};
use hookline_tenants::Directory;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::{
    error::{NotStored, SweepError},
    guard::Guard,
};

/// Parked tasks one endpoint gets back per round when it is disabled or deleted.
const UNAVAILABLE_ROOM: usize = 2_000;
/// Rounds while tasks are moving, and while there is nothing to move.
pub(crate) const BUSY_ROUND: Duration = Duration::from_millis(250);
const IDLE_ROUND: Duration = Duration::from_secs(1);

/// Publish a task to its endpoint's parking subject. The caller awaits the
/// stored ack before it acks what it parked.
pub async fn publish(
    js: &Context,
    tenant: &TenantId,
    endpoint: &EndpointId,
    payload: bytes::Bytes,
    traceparent: Option<&str>,
    msg_id: String,
) -> Result<async_nats::jetstream::context::PublishAckFuture, async_nats::jetstream::context::PublishError> {
    js.send_publish(parked_subject(tenant, endpoint), crate::task_message(payload, traceparent, msg_id)).await
}

/// Header of a batch of parked tasks: how many lines it holds.
pub const BATCH_HEADER: &str = "Hookline-Parked-Tasks";
/// The most tasks in one batch, and how long fan-out's tasks are gathered.
const BATCH_MAX: usize = 256;
const BATCH_LINGER: Duration = Duration::from_millis(2);

/// One task for [`Parker::park`], with where to say that it is stored.
struct ParkRequest {
    subject: String,
    line: Vec<u8>,
    stored: oneshot::Sender<Result<(), Arc<PublishError>>>,
}

/// Gathers the tasks fan-out parks and stores them a batch per endpoint.
#[derive(Clone)]
pub struct Parker {
    tx: mpsc::Sender<ParkRequest>,
}

impl Parker {
    pub fn start(js: Context) -> Self {
        let (tx, rx) = mpsc::channel(4 * BATCH_MAX);
        tokio::spawn(gather(js, rx));
        Parker { tx }
    }

    /// Park one task; `Ok` once its batch is stored.
    pub async fn park(
        &self,
        tenant: &TenantId,
        endpoint: &EndpointId,
        task: &[u8],
        traceparent: &str,
        msg_id: &str,
    ) -> Result<(), NotStored> {
        let (stored, rx) = oneshot::channel();
        let request = ParkRequest {
            subject: parked_subject(tenant, endpoint),
            line: batch_line(msg_id, traceparent, task),
            stored,
        };
        self.tx.send(request).await.map_err(|_| NotStored::ParkingShutDown)?;
        rx.await.map_err(|_| NotStored::ParkingShutDown)?.map_err(NotStored::Batch)
    }
}

async fn gather(js: Context, mut rx: mpsc::Receiver<ParkRequest>) {
    let mut requests = Vec::with_capacity(BATCH_MAX);
    while rx.recv_many(&mut requests, BATCH_MAX).await > 0 {
        // One timer per batch, not one per task.
        let linger = tokio::time::sleep(BATCH_LINGER);
        tokio::pin!(linger);
        while requests.len() < BATCH_MAX {
            let room = BATCH_MAX - requests.len();
            tokio::select! {
                biased;
                n = rx.recv_many(&mut requests, room) => if n == 0 { break },
                _ = &mut linger => break,
            }
        }
        let mut by_subject: HashMap<String, Vec<ParkRequest>> = HashMap::new();
        for p in requests.drain(..) {
            by_subject.entry(p.subject.clone()).or_default().push(p);
        }
        let mut pending: Vec<(Result<PublishAckFuture, PublishError>, Vec<ParkRequest>)> = Vec::new();
        for (subject, requests) in by_subject {
            let body = requests.iter().map(|p| p.line.as_slice()).collect::<Vec<_>>().concat();
            let publish = PublishMessage::build().payload(body.into()).header(BATCH_HEADER, requests.len().to_string());
            pending.push((js.send_publish(subject, publish).await, requests));
        }
        // Acks are awaited aside, so the next batch gathers meanwhile.
        tokio::spawn(async move {
            for (ack, requests) in pending {
                let stored = match ack {
                    Ok(ack) => ack.await.map(|_| ()).map_err(Arc::new),
                    Err(e) => Err(Arc::new(e)),
                };
                for p in requests {
                    let _ = p.stored.send(stored.clone());
                }
            }
        });
    }
}

/// One task in a batch (task JSON has no raw newlines).
fn batch_line(msg_id: &str, traceparent: &str, task: &[u8]) -> Vec<u8> {
    [msg_id.as_bytes(), b" ", traceparent.as_bytes(), b" ", task, b"\n"].concat()
}

/// The tasks of a batch: message id, traceparent, task JSON.
fn batch_lines(payload: &[u8]) -> impl Iterator<Item = (&str, &str, &[u8])> {
    payload.split(|b| *b == b'\n').filter(|l| !l.is_empty()).filter_map(|line| {
        let mut parts = line.splitn(3, |b| *b == b' ');
        let msg_id = std::str::from_utf8(parts.next()?).ok()?;
        let traceparent = std::str::from_utf8(parts.next()?).ok()?;
        Some((msg_id, traceparent, parts.next()?))
    })
}

/// The parked tasks of one endpoint, as the sweeper reads them.
struct ParkedQueue {
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
    let err = |e| hookline_bus::BusError::Stream { stream: PARKED_STREAM, source: Box::new(e) };
    let stream = js.get_stream(PARKED_STREAM).await.map_err(err)?;
    let events = js.get_stream(EVENTS_STREAM).await.map_err(err)?;
    let mut queues: HashMap<EndpointId, ParkedQueue> = HashMap::new();
    let mut round = IDLE_ROUND;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            _ = tokio::time::sleep(round) => {}
        }
        round = match sweep(&js, [&stream, &events], &directory, &guard, &mut queues, &shutdown).await {
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
    [stream, events]: [&Stream; 2],
    directory: &Directory,
    guard: &Guard,
    queues: &mut HashMap<EndpointId, ParkedQueue>,
    shutdown: &CancellationToken,
) -> Result<usize, SweepError> {
    let parked: Vec<(String, usize)> = stream.info_with_subjects(PARKED_ALL).await?.try_collect().await?;
    metrics().parked.set(parked.iter().map(|(_, n)| *n as i64).sum());
    // A drained endpoint's consumer goes; it is made again if tasks return.
    let waiting: std::collections::HashSet<EndpointId> =
        parked.iter().filter_map(|(s, _)| hookline_bus::tenant_and_endpoint_of(s).map(|(_, e)| e)).collect();
    let drained: Vec<EndpointId> = queues.keys().filter(|e| !waiting.contains(*e)).cloned().collect();
    for endpoint in drained {
        queues.remove(&endpoint);
        let _ = stream.delete_consumer(&parked_consumer(&endpoint)).await;
    }
    let mut moved = 0;
    for (subject, count) in parked {
        if shutdown.is_cancelled() {
            break;
        }
        let Some((tenant_id, endpoint_id)) = hookline_bus::tenant_and_endpoint_of(&subject) else { continue };
        let available = directory.endpoint(&tenant_id, &endpoint_id).is_some_and(|ep| ep.enabled);
        let queue = match queues.get_mut(&endpoint_id) {
            Some(queue) => queue,
            None => {
                let config = pull::Config {
                    durable_name: Some(parked_consumer(&endpoint_id)),
                    filter_subject: subject.clone(),
                    ack_wait: Duration::from_secs(30),
                    ..Default::default()
                };
                let consumer = stream.create_consumer(config).await?;
                queues.entry(endpoint_id.clone()).or_insert(ParkedQueue { consumer, seen: None })
            }
        };
        let room = if available { guard.room(&endpoint_id, &mut queue.seen) } else { UNAVAILABLE_ROOM };
        // `count` is of messages, and a batch holds many tasks.
        if room.min(count) == 0 {
            continue;
        }
        match unpark(js, events, &queue.consumer, &tenant_id, &endpoint_id, room.min(count), room).await {
            Ok(n) => moved += n,
            Err(e) => {
                tracing::warn!(endpoint_id = %endpoint_id, error = %e, "parking: could not move tasks back");
                queues.remove(&endpoint_id);
            }
        }
    }
    if moved > 0 {
        tracing::debug!(moved, "parking: tasks back to dispatch");
    }
    Ok(moved)
}

/// Move up to `n` of one endpoint's parked tasks, from at most `messages`
/// parked messages, back to HOOKLINE_DISPATCH. A batch with more tasks than
/// are wanted is split: the rest is parked again as a new batch before the
/// old one is acked.
async fn unpark(
    js: &Context,
    events: &Stream,
    consumer: &Consumer<pull::Config>,
    tenant: &TenantId,
    endpoint: &EndpointId,
    messages: usize,
    n: usize,
) -> Result<usize, SweepError> {
    let batch: Vec<_> =
        consumer.fetch().max_messages(messages).messages().await?.filter_map(|m| async move { m.ok() }).collect().await;
    // At most `n` tasks moved, plus one split batch's rest parked again.
    let _budget = hookline_bus::ack_budget(n + 1).await;
    let (mut acks, mut moved, mut taken) = (Vec::with_capacity(batch.len()), 0, 0);
    let subject = dispatch_subject(tenant, endpoint);
    for msg in &batch {
        if moved >= n {
            break;
        }
        taken += 1;
        if hookline_bus::header(msg.headers.as_ref(), BATCH_HEADER).is_none() {
            let seq = hookline_bus::stream_sequence(msg.reply.as_deref()).ok_or(SweepError::NoSequence)?;
            let traceparent = hookline_bus::header(msg.headers.as_ref(), TRACEPARENT);
            let publish = crate::task_message(msg.payload.clone(), traceparent, format!("p{seq}"));
            acks.push(js.send_publish(subject.clone(), publish).await?);
            moved += 1;
            continue;
        }
        let lines: Vec<_> = batch_lines(&msg.payload).collect();
        let now = lines.len().min(n.saturating_sub(moved).max(1));
        let mut tasks = Vec::with_capacity(now);
        for chunk in lines[..now].chunks(EVENT_READS) {
            tasks.extend(futures_util::future::try_join_all(chunk.iter().map(|l| restore(events, tenant, l.2))).await?);
        }
        for ((msg_id, traceparent, _), task) in lines[..now].iter().zip(tasks) {
            match task {
                Restored::Task(task) => {
                    let publish = crate::task_message(task, Some(traceparent), format!("f{msg_id}"));
                    acks.push(js.send_publish(subject.clone(), publish).await?);
                }
                Restored::Expired(outcome) => {
                    let payload = serde_json::to_vec(&outcome).expect("outcomes serialise");
                    let publish = PublishMessage::build().payload(payload.into()).message_id(outcome.msg_id());
                    let to = outcomes_subject(tenant, endpoint);
                    acks.push(js.send_publish(to, publish).await?);
                    let labels = hookline_telemetry::labels([("outcome", "failed"), ("error_kind", "event_expired")]);
                    metrics().attempts.get_or_create(&labels).inc();
                }
                Restored::Dropped => {}
            }
        }
        moved += now;
        if now < lines.len() {
            let rest: Vec<u8> = lines[now..].iter().flat_map(|(id, tp, task)| batch_line(id, tp, task)).collect();
            let count = (lines.len() - now).to_string();
            let publish = PublishMessage::build().payload(rest.into()).header(BATCH_HEADER, count);
            acks.push(js.send_publish(parked_subject(tenant, endpoint), publish).await?);
        }
    }
    for ack in acks {
        ack.await?;
    }
    // Stored in HOOKLINE_DISPATCH (and the rest of a split batch parked
    // again): a lost ack only moves a task again, and its message id
    // de-duplicates that. Messages fetched but not reached are handed back.
    for (i, msg) in batch.iter().enumerate() {
        let _ = if i < taken { msg.ack().await } else { msg.ack_with(async_nats::jetstream::AckKind::Nak(None)).await };
    }
    Ok(moved)
}

/// Events read back from HOOKLINE_EVENTS at once while a batch is moved.
const EVENT_READS: usize = 32;

/// What became of a parked line (or a retry stored as a reference).
pub(crate) enum Restored {
    /// The whole task, ready for HOOKLINE_DISPATCH.
    Task(bytes::Bytes),
    /// Its event is gone: the outcome that ends the delivery.
    Expired(Box<hookline_domain::delivery::AttemptOutcome>),
    /// Unreadable, or too old to record (see [`TaskRef::event_type`]).
    Dropped,
}

/// A batch line's task, whole again: its event read back for a
/// [`TaskRef`] (a line holding a whole task is taken as it is), or, when
/// the event is gone, the outcome that records so.
pub(crate) async fn restore(events: &Stream, tenant: &TenantId, line: &[u8]) -> Result<Restored, SweepError> {
    #[derive(serde::Deserialize)]
    struct Line {
        event: Option<serde::de::IgnoredAny>,
    }
    // An unreadable line is dropped as the workers drop an unreadable task,
    // rather than holding up the endpoint's parked tasks for good.
    let unreadable = |e: serde_json::Error| {
        tracing::error!(error = %e, "unreadable parked or waiting task dropped");
        Ok(Restored::Dropped)
    };
    let whole = match serde_json::from_slice::<Line>(line) {
        Ok(l) => l.event.is_some(),
        Err(e) => return unreadable(e),
    };
    if whole {
        return Ok(Restored::Task(bytes::Bytes::copy_from_slice(line)));
    }
    let parked: TaskRef = match serde_json::from_slice(line) {
        Ok(p) => p,
        Err(e) => return unreadable(e),
    };
    let (seq, delivery) = (parked.event_seq, parked.delivery_id.clone());
    let gone = || {
        let Some(event_type) = parked.event_type else {
            tracing::warn!(delivery_id = %delivery, event_seq = seq,
                "the task's event is no longer in {EVENTS_STREAM} (archived or purged); the task, stored without its type, is dropped");
            return Ok(Restored::Dropped);
        };
        tracing::warn!(delivery_id = %delivery, event_seq = seq,
            "the task's event is no longer in {EVENTS_STREAM} (archived or purged); recorded as failed, event_expired");
        Ok(Restored::Expired(Box::new(crate::worker::expired_outcome(&parked, tenant, event_type, None))))
    };
    let msg = match events.get_raw_message(seq).await {
        Ok(msg) => msg,
        Err(e) if matches!(e.kind(), RawMessageErrorKind::NoMessageFound) => return gone(),
        Err(e) => return Err(e.into()),
    };
    let event: StoredEvent = match serde_json::from_slice(&msg.payload) {
        Ok(event) => event,
        Err(e) => return unreadable(e),
    };
    if event.id != parked.event_id || event.tenant_id != *tenant {
        return gone();
    }
    Ok(Restored::Task(serde_json::to_vec(&parked.into_task(event)).expect("tasks serialise").into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_reads_back_as_its_tasks() {
        let tasks = [("dly_1.1", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", br#"{"a":"x y\nz"}"#)];
        let mut body = Vec::new();
        for (id, tp, task) in tasks.iter().chain(tasks.iter()) {
            body.extend(batch_line(id, tp, *task));
        }
        let lines: Vec<_> = batch_lines(&body).collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(
            lines[0],
            (tasks[0].0, tasks[0].1, &tasks[0].2[..]),
            "spaces and escaped newlines in the JSON survive"
        );
    }
}
