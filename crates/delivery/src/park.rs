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
//! probe). The tasks of a disabled or deleted endpoint all come out at
//! once: the sweeper records those parked as references as dropped itself,
//! as the workers would, and sends only whole tasks back for the workers to
//! drop.
//!
//! Once the endpoint takes its attempts again (breaker closed, not stuck,
//! no rate limit), a *drain* of its own takes over ([`drain`]): it keeps
//! [`Guard::drain_window`] of its tasks moved and not yet finished (its cap
//! plus 200 ms of attempts at the pace they have been taking) and tops up
//! as they finish, every 10 ms, rather than a round's worth every 0.25 s.
//! A drain makes the attempts itself ([`Worker::attempt_here`], as fan-out
//! does): through HOOKLINE_DISPATCH, each drained task would cost
//! nats-server, which is busiest while a backlog drains, a stored message
//! with its id, a delivery and an ack besides its outcome (BENCHMARKS.md
//! has the counts). A task the slots do not take in time goes there after
//! all, under the message id a round would give it (below), never its own:
//! fan-out may have stored it under that one before it was parked, and
//! within the duplicate window the copy would be dropped and the task lost.
//! Rounds with a slow start left a recovered endpoint's slots idle between
//! them and drained a backlog at about half its cap (BENCHMARKS.md); a
//! window that holds more than the slots can take within the workers'
//! half-second wait would hand tasks back busy instead. A rate-limited
//! endpoint stays with the rounds, which return what its bucket allows.
//!
//! Each endpoint is drained through its own durable consumer
//! (`parked_<endpoint>`), so replicas share the work and a task is acked
//! only after its copy is stored in HOOKLINE_DISPATCH (or, drained, its
//! attempt recorded). The copy's message id
//! is `p<parked sequence>`, so a move repeated after a crash is
//! de-duplicated. The consumer exists only while tasks are moved: made when
//! the endpoint gets room or a drain, deleted when it has had neither for a
//! few seconds. Endpoints failing for days would otherwise keep one each,
//! about 47 KiB of nats-server's memory apiece, and nats-server 2.15 allows
//! a stream 1,000 consumers unless it is configured for more
//! ([`hookline_bus::PARKED_MAX_CONSUMERS`]).
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
//! It reads a step's events in one batched direct get ([`EventReader`]):
//! with one JetStream API request per task, the read-back, not the
//! endpoint, would bound a large drain. A task whose event is gone by then
//! (archived: parked for longer than `HOOKLINE_ARCHIVE_AFTER`, or purged)
//! cannot be sent; the sweeper records
//! its outcome instead, `failed` with error kind `event_expired`, so the
//! delivery log shows how it ended.

use std::{collections::HashMap, sync::Arc, time::Duration};

use async_nats::jetstream::{
    AckKind, Context,
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
    delivery::{AttemptOutcome, DispatchTask, TaskRef},
    endpoint::EndpointConfig,
    events::StoredEvent,
    ids::{EndpointId, TenantId},
};
use hookline_telemetry::{
    metrics,
    trace::{TRACEPARENT, TraceParent},
};
use hookline_tenants::Directory;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::{
    error::{EventsError, NotStored, SweepError},
    guard::{DRAIN_AHEAD, Guard},
    worker::{Here, Unavailable, Worker, unavailable_outcome, usable_endpoint},
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
#[derive(Default)]
struct ParkedQueue {
    /// Its durable consumer, while tasks are being moved: made when the
    /// endpoint gets room or a drain, deleted when it has neither (see
    /// [`sweep`]).
    consumer: Option<Consumer<pull::Config>>,
    /// The endpoint's finished attempts at the last look (see [`Guard::room`]).
    seen: Option<u64>,
    /// Its continuous drain, while one runs (see [`drain`]).
    drain: Option<tokio::task::JoinHandle<()>>,
    /// When the consumer was last handed out.
    used: Option<std::time::Instant>,
}

impl ParkedQueue {
    fn draining(&self) -> bool {
        self.drain.as_ref().is_some_and(|d| !d.is_finished())
    }

    /// The endpoint's consumer, made (or found: the create is idempotent,
    /// and replicas share it) if this queue holds none.
    async fn consumer(
        &mut self,
        stream: &Stream,
        subject: &str,
        endpoint: &EndpointId,
    ) -> Result<Consumer<pull::Config>, SweepError> {
        self.used = Some(std::time::Instant::now());
        if let Some(consumer) = &self.consumer {
            return Ok(consumer.clone());
        }
        let config = pull::Config {
            durable_name: Some(parked_consumer(endpoint)),
            filter_subject: subject.to_owned(),
            ack_wait: Duration::from_secs(30),
            // Gone by itself should the process that made it stop before it
            // deleted it; the sweeper makes it again when it is wanted.
            inactive_threshold: PARKED_CONSUMER_IDLE,
            ..Default::default()
        };
        let consumer = stream.create_consumer(config).await?;
        Ok(self.consumer.insert(consumer).clone())
    }

    /// Delete the endpoint's consumer, if this queue has used one since
    /// its last release; its tasks stay parked.
    async fn release(&mut self, stream: &Stream, endpoint: &EndpointId) {
        self.consumer = None;
        if self.used.take().is_some() {
            let _ = stream.delete_consumer(&parked_consumer(endpoint)).await;
        }
    }

    /// [`Self::release`] once the consumer has gone unused for
    /// [`PARKED_CONSUMER_KEEP`]: a rate-limited endpoint whose bucket is
    /// empty for a round or two keeps it.
    async fn release_idle(&mut self, stream: &Stream, endpoint: &EndpointId) {
        if self.used.is_some_and(|used| used.elapsed() >= PARKED_CONSUMER_KEEP) {
            self.release(stream, endpoint).await;
        }
    }
}

/// How long the sweeper keeps a parked endpoint's consumer with nothing to
/// move: a few rounds, not a breaker's cooldown. Making one and deleting it
/// costs nats-server about 1.2 ms of CPU; keeping one, about 47 KiB.
const PARKED_CONSUMER_KEEP: Duration = Duration::from_secs(5);

/// How long a parked endpoint's consumer may go unused before nats-server
/// deletes it (normally the sweeper deletes it first). Longer than a
/// drain's waits for room, which fetch nothing meanwhile.
const PARKED_CONSUMER_IDLE: Duration = Duration::from_secs(120);

/// What the sweeper and its drains share.
struct Sweeper {
    js: Context,
    reader: EventReader,
    directory: Directory,
    guard: Guard,
    /// Makes a drain's attempts (see [`drain`]).
    worker: Arc<Worker>,
    shutdown: CancellationToken,
}

/// Move parked tasks back to HOOKLINE_DISPATCH as their endpoints recover,
/// until `shutdown`.
pub async fn run(
    js: Context,
    directory: Directory,
    worker: Arc<Worker>,
    shutdown: CancellationToken,
) -> Result<(), hookline_bus::BusError> {
    let guard = worker.guard().clone();
    let err = |e| hookline_bus::BusError::Stream { stream: PARKED_STREAM, source: Box::new(e) };
    let stream = js.get_stream(PARKED_STREAM).await.map_err(err)?;
    let events = js.get_stream(EVENTS_STREAM).await.map_err(err)?;
    let reader = EventReader::new(&js, events);
    let sweeper = Arc::new(Sweeper { js, reader, directory, guard, worker, shutdown });
    let mut queues: HashMap<EndpointId, ParkedQueue> = HashMap::new();
    let mut round = IDLE_ROUND;
    loop {
        tokio::select! {
            _ = sweeper.shutdown.cancelled() => return Ok(()),
            _ = tokio::time::sleep(round) => {}
        }
        round = match sweep(&sweeper, &stream, &mut queues).await {
            Ok(0) => IDLE_ROUND,
            Ok(_) => BUSY_ROUND,
            Err(e) => {
                tracing::warn!(error = %e, "parking: sweep failed; retrying");
                IDLE_ROUND
            }
        };
    }
}

/// One round: returns how many tasks went back to HOOKLINE_DISPATCH (a
/// drain started counts as one: its endpoint is busy).
async fn sweep(
    sweeper: &Arc<Sweeper>,
    stream: &Stream,
    queues: &mut HashMap<EndpointId, ParkedQueue>,
) -> Result<usize, SweepError> {
    let Sweeper { js, reader, directory, guard, shutdown, .. } = &**sweeper;
    let parked: Vec<(String, usize)> = stream.info_with_subjects(PARKED_ALL).await?.try_collect().await?;
    metrics().parked.set(parked.iter().map(|(_, n)| *n as i64).sum());
    // A drained endpoint's consumer goes; it is made again if tasks return.
    let waiting: std::collections::HashSet<EndpointId> =
        parked.iter().filter_map(|(s, _)| hookline_bus::tenant_and_endpoint_of(s).map(|(_, e)| e)).collect();
    let drained: Vec<EndpointId> =
        queues.iter().filter(|(e, q)| !waiting.contains(*e) && !q.draining()).map(|(e, _)| e.clone()).collect();
    for endpoint in drained {
        if let Some(mut queue) = queues.remove(&endpoint) {
            queue.release(stream, &endpoint).await;
        }
    }
    let mut moved = 0;
    for (subject, count) in parked {
        if shutdown.is_cancelled() {
            break;
        }
        let Some((tenant_id, endpoint_id)) = hookline_bus::tenant_and_endpoint_of(&subject) else { continue };
        let queue = queues.entry(endpoint_id.clone()).or_default();
        if queue.draining() {
            moved += 1;
            continue;
        }
        if queue.drain.take().is_some() {
            // A drain that ended on an error may have lost its consumer
            // (deleted by another replica): the next use makes it again
            // (or finds it), and a release still deletes it.
            queue.consumer = None;
        }
        // An endpoint taking its attempts is drained continuously, at its
        // cap (no room: a drain), rather than a round's worth at a time.
        let unavailable = usable_endpoint(directory, &tenant_id, &endpoint_id).await.err();
        let room = match unavailable {
            Some(_) => Some(UNAVAILABLE_ROOM),
            None if guard.drain_window(&endpoint_id).is_some() => None,
            None => Some(guard.room(&endpoint_id, &mut queue.seen)),
        };
        // `count` is of messages, and a batch holds many tasks.
        if room.is_some_and(|room| room.min(count) == 0) {
            // Nothing to move now (a breaker open, an endpoint stuck): its
            // consumer goes (see the module's notes).
            queue.release_idle(stream, &endpoint_id).await;
            continue;
        }
        // One endpoint's consumer refused (a limit, a moment without a
        // leader) leaves the others' tasks moving.
        let consumer = match queue.consumer(stream, &subject, &endpoint_id).await {
            Ok(consumer) => consumer,
            Err(e) => {
                tracing::warn!(endpoint_id = %endpoint_id, error = %e, "parking: no consumer for the endpoint's parked tasks; trying again next round");
                continue;
            }
        };
        let Some(room) = room else {
            queue.drain = Some(tokio::spawn(drain(sweeper.clone(), consumer, tenant_id, endpoint_id)));
            moved += 1;
            continue;
        };
        let to = Onward::Dispatch(unavailable);
        match unpark(js, reader, &consumer, &tenant_id, &endpoint_id, room.min(count), room, to).await {
            Ok(m) => moved += m.taken,
            Err(e) => {
                tracing::warn!(endpoint_id = %endpoint_id, error = %e, "parking: could not move tasks back");
                queue.consumer = None;
            }
        }
    }
    if moved > 0 {
        tracing::debug!(moved, "parking: tasks back to dispatch");
    }
    Ok(moved)
}

/// How often a drain looks whether its endpoint has room for more.
const DRAIN_TICK: Duration = Duration::from_millis(10);
/// A drain whose endpoint finished nothing here for this long, with tasks
/// moved, stops counting those: another replica's workers took them, or
/// they were parked again.
const DRAIN_STALL: Duration = Duration::from_secs(1);

/// Drain one endpoint's parked tasks continuously while it takes its
/// attempts: keep [`Guard::drain_window`] of its tasks taken and not yet
/// finished, their attempts queued at its slots here, topping up as they
/// finish, so its slots stay busy without a pause between sweeper rounds
/// and without so many queued that they are handed back busy. The window
/// opens from twice the cap, by two for each attempt finished, within the
/// first few dozen attempts. Ends when the endpoint's parked tasks are
/// gone, or it must not drain (breaker open, stuck, rate-limited,
/// disabled): the sweeper's rounds take over.
async fn drain(sweeper: Arc<Sweeper>, consumer: Consumer<pull::Config>, tenant: TenantId, endpoint: EndpointId) {
    let Sweeper { js, reader, directory, guard, worker, shutdown } = &*sweeper;
    let mut base = guard.finished(&endpoint);
    let (mut sent, mut done, mut progress) = (0u64, 0u64, std::time::Instant::now());
    // Tasks per parked message, so a fetch takes about as many as wanted.
    let mut per_message = 1.0f64;
    let mut pace = DrainPace::new(base);
    tracing::info!(endpoint_id = %endpoint, "parking: draining the endpoint's parked tasks at its cap");
    while !shutdown.is_cancelled() {
        let Some(window) = guard.drain_window(&endpoint) else { break };
        // The window opens from twice the cap as attempts finish: the
        // attempt time it is sized by is, at first, that of the failures
        // that opened the breaker (often answered at once).
        let window = window.min(2 * guard.per_endpoint() + 2 * done as usize);
        let window = pace.bound(window, guard.finished(&endpoint), guard.per_endpoint());
        // Disabled or deleted meanwhile: the sweeper's rounds end its tasks.
        let Ok(ep) = usable_endpoint(directory, &tenant, &endpoint).await else { break };
        let finished = guard.finished(&endpoint) - base;
        if finished != done {
            (done, progress) = (finished, std::time::Instant::now());
        } else if sent > done && progress.elapsed() > DRAIN_STALL {
            (base, sent, done, progress) = (guard.finished(&endpoint), 0, 0, std::time::Instant::now());
        }
        let want = window.saturating_sub(sent.saturating_sub(done) as usize);
        // Top up in steps of a quarter window, so each step reads its
        // events back in a batch or two.
        if want < (window / 4).max(1) {
            tokio::time::sleep(DRAIN_TICK).await;
            continue;
        }
        let messages = ((want as f64 / per_message).ceil() as usize).clamp(1, want);
        let to = Onward::Slots(worker, ep);
        match unpark(js, reader, &consumer, &tenant, &endpoint, messages, want, to).await {
            Ok(m) if m.messages == 0 => break,
            Ok(m) => {
                sent += m.dispatched as u64;
                per_message = (per_message + m.lines as f64 / m.messages as f64) / 2.0;
            }
            Err(e) => {
                tracing::warn!(endpoint_id = %endpoint, error = %e, "parking: drain stopped; the sweeper retries");
                break;
            }
        }
    }
    tracing::info!(endpoint_id = %endpoint, "parking: drain ended");
}

/// How often a drain measures the pace its endpoint finishes attempts at.
const PACE_EVERY: Duration = Duration::from_millis(500);

/// The pace a draining endpoint finishes its attempts at here, measured.
///
/// Why: [`Guard::drain_window`] sizes the window by how long requests take,
/// but on a process short of CPU an attempt holds its slot well beyond its
/// request, and a window sized by requests alone queues more at the slots
/// than they take before [`crate::guard::MAX_WAIT`] runs out: those tasks
/// go back through HOOKLINE_DISPATCH, or are parked again when the
/// endpoint's slots stall meanwhile (BENCHMARKS.md).
struct DrainPace {
    at: std::time::Instant,
    finished: u64,
    /// Attempts finished a second, smoothed; `None` until first measured.
    per_sec: Option<f64>,
}

impl DrainPace {
    fn new(finished: u64) -> Self {
        Self { at: std::time::Instant::now(), finished, per_sec: None }
    }

    /// `window`, at most the endpoint's cap plus what it finishes in
    /// [`DRAIN_AHEAD`] at the measured pace (never under twice the cap);
    /// `finished` is the endpoint's count of finished attempts now.
    fn bound(&mut self, window: usize, finished: u64, cap: usize) -> usize {
        let elapsed = self.at.elapsed();
        if elapsed >= PACE_EVERY {
            let rate = finished.saturating_sub(self.finished) as f64 / elapsed.as_secs_f64();
            self.per_sec = Some(self.per_sec.map_or(rate, |r| (r + rate) / 2.0));
            (self.at, self.finished) = (std::time::Instant::now(), finished);
        }
        match self.per_sec {
            Some(rate) => window.min((cap as f64 + rate * DRAIN_AHEAD.as_secs_f64()).ceil() as usize).max(2 * cap),
            None => window,
        }
    }
}

/// What one [`unpark`] did.
#[derive(Debug, Default)]
struct Moved {
    /// Parked messages fetched.
    messages: usize,
    /// Tasks in the messages it reached (moved, or parked again as a split batch's rest).
    lines: usize,
    /// Tasks taken: stored in HOOKLINE_DISPATCH, recorded `event_expired`, or dropped.
    taken: usize,
    /// Of those, stored in HOOKLINE_DISPATCH.
    dispatched: usize,
}

/// A task of a fetched parked message, on its way back.
enum Planned<'a> {
    /// A whole task parked by the workers, moved as it is.
    Whole { payload: bytes::Bytes, traceparent: Option<&'a str>, msg_id: String },
    /// A line of a batch: its event is read back first.
    Line { msg_id: &'a str, traceparent: &'a str, parsed: ParsedLine },
    /// The rest of a batch with more tasks than wanted, parked again.
    Rest(Vec<u8>, usize),
    /// A line of a disabled or deleted endpoint: recorded as dropped where
    /// it lies, as the workers would record it, without its event.
    Unsent(Box<AttemptOutcome>),
}

/// Where [`unpark`] sends the tasks it takes.
enum Onward<'a> {
    /// To HOOKLINE_DISPATCH, for the workers (the sweeper's rounds: probes,
    /// a rate limit's share, a slow endpoint's room). With `Some`, the
    /// endpoint is disabled or deleted: its tasks parked as references are
    /// recorded as dropped instead.
    Dispatch(Option<Unavailable>),
    /// Into the endpoint's slots here, as fan-out makes first attempts (a
    /// drain): no trip through HOOKLINE_DISPATCH and the workers.
    Slots(&'a Arc<Worker>, Arc<EndpointConfig>),
}

/// How often a drain step whose attempts are still being made tells
/// nats-server its parked messages are in progress: well inside the parked
/// consumer's 30 s ack wait, so a slow endpoint's step is not redelivered.
const IN_PROGRESS_EVERY: Duration = Duration::from_secs(10);

/// Move up to `n` of one endpoint's parked tasks, from at most `messages`
/// parked messages, onward (`to`), reading their events back in batches
/// ([`EventReader`]). A batch with more tasks than are wanted is split: the
/// rest is parked again as a new batch before the old one is acked. The
/// tasks of an unavailable endpoint parked as references are recorded as
/// dropped instead: an endpoint disabled after failing for days may have a
/// million, and reading each one's event back and sending it through
/// HOOKLINE_DISPATCH only for the workers to drop it costs nats-server a
/// block of HOOKLINE_EVENTS in its cache per few tasks and a message id per
/// task in HOOKLINE_DISPATCH's window (BENCHMARKS.md).
///
/// Sent to HOOKLINE_DISPATCH, a task is stored under a message id before
/// its parked message is acked, so a move repeated after a crash is
/// de-duplicated. Sent into the slots, the parked messages are acked only
/// once every attempt taken from them is recorded (or its task stored in
/// HOOKLINE_DISPATCH under this move's id, when the slots stayed busy or the
/// endpoint is blocked again), and handed back if one is not: a crash
/// meanwhile repeats those attempts (at least once, as everywhere).
#[allow(clippy::too_many_arguments)]
async fn unpark(
    js: &Context,
    reader: &EventReader,
    consumer: &Consumer<pull::Config>,
    tenant: &TenantId,
    endpoint: &EndpointId,
    messages: usize,
    n: usize,
    to: Onward<'_>,
) -> Result<Moved, SweepError> {
    let mut batch: Vec<_> =
        consumer.fetch().max_messages(messages).messages().await?.filter_map(|m| async move { m.ok() }).collect().await;
    let unavailable = match to {
        Onward::Dispatch(unavailable) => unavailable,
        Onward::Slots(..) => None,
    };
    let mut m = Moved { messages: batch.len(), ..Moved::default() };
    let (mut plan, mut reached) = (Vec::with_capacity(n), 0);
    for msg in &batch {
        if m.taken >= n {
            break;
        }
        reached += 1;
        if hookline_bus::header(msg.headers.as_ref(), BATCH_HEADER).is_none() {
            let seq = hookline_bus::stream_sequence(msg.reply.as_deref()).ok_or(SweepError::NoSequence)?;
            let traceparent = hookline_bus::header(msg.headers.as_ref(), TRACEPARENT);
            plan.push(Planned::Whole { payload: msg.payload.clone(), traceparent, msg_id: format!("p{seq}") });
            (m.taken, m.lines) = (m.taken + 1, m.lines + 1);
            continue;
        }
        let lines: Vec<_> = batch_lines(&msg.payload).collect();
        let now = lines.len().min(n.saturating_sub(m.taken).max(1));
        for (msg_id, traceparent, line) in &lines[..now] {
            let parsed = parse_line(line);
            let outcome = match (unavailable, &parsed) {
                (Some(why), ParsedLine::Ref(task)) => unavailable_outcome(task, tenant, traceparent, why),
                _ => None,
            };
            plan.push(match outcome {
                Some(outcome) => Planned::Unsent(Box::new(outcome)),
                None => Planned::Line { msg_id, traceparent, parsed },
            });
        }
        if now < lines.len() {
            let rest: Vec<u8> = lines[now..].iter().flat_map(|(id, tp, task)| batch_line(id, tp, task)).collect();
            plan.push(Planned::Rest(rest, lines.len() - now));
        }
        (m.taken, m.lines) = (m.taken + now, m.lines + lines.len());
    }
    let seqs: Vec<u64> = plan
        .iter()
        .filter_map(|p| match p {
            Planned::Line { parsed: ParsedLine::Ref(r), .. } => Some(r.event_seq),
            _ => None,
        })
        .collect();
    let events = if seqs.is_empty() { HashMap::new() } else { reader.read(tenant, &seqs).await? };
    // At most `n` tasks moved, plus one split batch's rest parked again.
    let _budget = hookline_bus::ack_budget(plan.len()).await;
    let mut acks = Vec::with_capacity(plan.len());
    let mut attempts = Vec::new();
    let subject = dispatch_subject(tenant, endpoint);
    for planned in plan {
        let (task, traceparent, msg_id) = match planned {
            Planned::Whole { payload, traceparent, msg_id } => (payload, traceparent, msg_id),
            Planned::Line { msg_id, traceparent, parsed } => match restored(parsed, &events, tenant) {
                Restored::Task(task) => (task, Some(traceparent), format!("f{msg_id}")),
                Restored::Expired(outcome) => {
                    acks.push(js.send_publish(outcomes_subject(tenant, endpoint), outcome_message(&outcome)).await?);
                    continue;
                }
                Restored::Dropped => continue,
            },
            Planned::Unsent(outcome) => {
                acks.push(js.send_publish(outcomes_subject(tenant, endpoint), outcome_message(&outcome)).await?);
                continue;
            }
            Planned::Rest(rest, count) => {
                let publish = PublishMessage::build().payload(rest.into()).header(BATCH_HEADER, count.to_string());
                acks.push(js.send_publish(parked_subject(tenant, endpoint), publish).await?);
                continue;
            }
        };
        m.dispatched += 1;
        if let Onward::Slots(worker, ep) = &to {
            // An unreadable task goes to the workers, which end it with a
            // log line; so do one past the process's drain places, an
            // expired one and a retry due later (see `Worker::due_now`).
            let task_now = serde_json::from_slice::<DispatchTask>(&task).ok().filter(|t| worker.due_now(t));
            match task_now.map(|task| (task, worker.drain_place())) {
                Some((task, Some(place))) => {
                    let trace = traceparent.and_then(TraceParent::parse).unwrap_or_else(TraceParent::new_root);
                    let (worker, ep) = (Arc::clone(worker), ep.clone());
                    attempts.push(tokio::spawn(async move {
                        let _place = place;
                        match worker.attempt_here(task, ep, trace).await? {
                            Here::Made => {
                                drained("here");
                                Ok(())
                            }
                            // Under this move's id, as the sweeper's rounds
                            // store a task: its own id may be the one its
                            // first hand-off stored it under, and within the
                            // duplicate window a second copy under that id
                            // would be dropped, and the task lost.
                            Here::NotNow(task, _) => {
                                drained("handed_back");
                                worker.dispatch(&task, &trace.to_string(), msg_id).await
                            }
                        }
                    }));
                    continue;
                }
                Some((_, None)) => drained("past_places"),
                None => {}
            }
        }
        acks.push(js.send_publish(subject.clone(), crate::task_message(task, traceparent, msg_id)).await?);
    }
    for ack in acks {
        ack.await?;
    }
    metrics().unparked.inc_by(m.dispatched as u64);
    // Messages fetched but not reached are handed back.
    for msg in batch.split_off(reached) {
        let _ = msg.ack_with(AckKind::Nak(None)).await;
    }
    if attempts.is_empty() {
        // Stored in HOOKLINE_DISPATCH (and the rest of a split batch parked
        // again): a lost ack only moves a task again, and its message id
        // de-duplicates that.
        for msg in &batch {
            let _ = msg.ack().await;
        }
    } else {
        tokio::spawn(ack_when_recorded(batch, attempts, endpoint.clone()));
    }
    Ok(m)
}

/// Count one task a drain took, by `how` it went on.
fn drained(how: &'static str) {
    metrics().drained.get_or_create(&hookline_telemetry::labels([("how", how)])).inc();
}

/// Ack a drain step's parked messages once every attempt taken from them is
/// recorded (or its task stored again); hand them back if one is not.
async fn ack_when_recorded(
    batch: Vec<async_nats::jetstream::Message>,
    attempts: Vec<tokio::task::JoinHandle<Result<(), NotStored>>>,
    endpoint: EndpointId,
) {
    let all = futures_util::future::join_all(attempts);
    tokio::pin!(all);
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + IN_PROGRESS_EVERY, IN_PROGRESS_EVERY);
    let results = loop {
        tokio::select! {
            results = &mut all => break results,
            _ = ticks.tick() => for msg in &batch {
                let _ = msg.ack_with(AckKind::Progress).await;
            },
        }
    };
    let recorded = results.iter().all(|r| matches!(r, Ok(Ok(()))));
    if !recorded {
        tracing::warn!(endpoint_id = %endpoint, "parking: a drained attempt was not recorded; its parked tasks are handed back and will be attempted again");
    }
    for msg in &batch {
        let _ = if recorded { msg.ack().await } else { msg.ack_with(AckKind::Nak(None)).await };
    }
}

/// Events read back at once with single gets, where batches are not offered.
const EVENT_READS: usize = 32;
/// The most events one batched direct get asks for.
const BATCH_READ_MAX: usize = 256;
/// Batched gets one read makes before it asks for what is left one by one
/// (a tenant whose other endpoints' events lie thick between this one's).
const BATCH_READ_ROUNDS: usize = 4;
/// How long a batched direct get may take to answer.
const BATCH_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Reads parked tasks' events back from HOOKLINE_EVENTS: many in one
/// request where the server offers batched direct gets (nats-server 2.11
/// and later, on a stream that allows direct gets, which delivery sets),
/// else one request per event, as before.
///
/// A batch asks for the tenant's events (`hookline.events.<tenant>.>`)
/// from the lowest sequence wanted, as many as are wanted: a recovering
/// endpoint's events are most of its tenant's, so one batch brings back
/// most of a step's events, in order. An event a batch passes over is
/// gone, or held by a replica that lags (a direct get may be answered by
/// any replica): it is asked of the stream's leader before it counts as
/// gone.
#[derive(Clone)]
pub struct EventReader {
    client: async_nats::Client,
    events: Stream,
    /// Whether batched direct gets are answered here; cleared the first
    /// time an answer shows they are not (a server before 2.11 answers
    /// one message, a stream without direct gets none).
    batched: Arc<std::sync::atomic::AtomicBool>,
    /// Requests made: batched direct gets, single gets.
    requests: Arc<[std::sync::atomic::AtomicU64; 2]>,
}

/// What one batched direct get brought back.
enum BatchAnswer {
    /// Events at or after the sequence asked, oldest first; `exhausted`
    /// when the tenant has none after the last of them.
    Events { events: Vec<(u64, bytes::Bytes)>, exhausted: bool },
    /// Batches are not offered: what the answer held, if anything.
    Unsupported(Option<(u64, bytes::Bytes)>),
}

impl EventReader {
    pub fn new(js: &Context, events: Stream) -> Self {
        Self { client: js.client(), events, batched: Arc::new(true.into()), requests: Arc::default() }
    }

    /// Requests it has made: (batched direct gets, single gets).
    pub fn requests(&self) -> (u64, u64) {
        let [batch, single] = &*self.requests;
        (batch.load(std::sync::atomic::Ordering::Relaxed), single.load(std::sync::atomic::Ordering::Relaxed))
    }

    /// Whether it still reads in batches.
    pub fn batched(&self) -> bool {
        self.batched.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The stored payloads of `tenant`'s events at `seqs`, by sequence; a
    /// sequence missing from the answer is gone from the stream.
    pub async fn read(&self, tenant: &TenantId, seqs: &[u64]) -> Result<HashMap<u64, bytes::Bytes>, SweepError> {
        let mut wanted = seqs.to_vec();
        wanted.sort_unstable();
        wanted.dedup();
        let mut found = HashMap::with_capacity(wanted.len());
        let mut passed = Vec::new();
        let mut rest = &wanted[..];
        // Messages a batch returns per wanted one it finds: 1 when the
        // endpoint's events are all its tenant's.
        let mut spread = 1;
        for _ in 0..BATCH_READ_ROUNDS {
            if rest.is_empty() || !self.batched() {
                break;
            }
            let size = (rest.len() * spread).clamp(1, BATCH_READ_MAX);
            match self.batch(tenant, rest[0], size).await? {
                BatchAnswer::Unsupported(one) => {
                    self.batched.store(false, std::sync::atomic::Ordering::Relaxed);
                    tracing::info!("parking: batched direct gets are not answered; reading events back one by one");
                    if let Some((seq, payload)) = one.filter(|(seq, _)| rest.binary_search(seq).is_ok()) {
                        found.insert(seq, payload);
                    }
                }
                BatchAnswer::Events { events, exhausted } => {
                    let returned = events.len();
                    let last = events.last().map_or(0, |(seq, _)| *seq);
                    for (seq, payload) in events {
                        if rest.binary_search(&seq).is_ok() {
                            found.insert(seq, payload);
                        }
                    }
                    // Wanted sequences the answer reached and did not hold.
                    let upto = if exhausted { u64::MAX } else { last };
                    let cut = rest.partition_point(|seq| *seq <= upto);
                    let hits = rest[..cut].iter().filter(|seq| found.contains_key(seq)).count();
                    passed.extend(rest[..cut].iter().filter(|seq| !found.contains_key(seq)));
                    rest = &rest[cut..];
                    spread = if hits == 0 { spread * 4 } else { returned.div_ceil(hits) }.clamp(1, BATCH_READ_MAX);
                }
            }
        }
        // What batches did not settle, one by one from the stream's leader.
        let single: Vec<u64> =
            passed.into_iter().chain(rest.iter().copied()).filter(|s| !found.contains_key(s)).collect();
        for chunk in single.chunks(EVENT_READS) {
            let got = futures_util::future::try_join_all(chunk.iter().map(|seq| self.single(*seq))).await?;
            found.extend(chunk.iter().copied().zip(got).filter_map(|(seq, payload)| Some((seq, payload?))));
        }
        Ok(found)
    }

    /// One event from the stream's leader; `None` when it is gone.
    async fn single(&self, seq: u64) -> Result<Option<bytes::Bytes>, SweepError> {
        metrics().parked_event_reads.get_or_create(&hookline_telemetry::labels([("how", "single")])).inc();
        self.requests[1].fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        match self.events.get_raw_message(seq).await {
            Ok(msg) => Ok(Some(msg.payload)),
            Err(e) if matches!(e.kind(), RawMessageErrorKind::NoMessageFound) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// One batched direct get: up to `size` of `tenant`'s events from
    /// sequence `from` on.
    async fn batch(&self, tenant: &TenantId, from: u64, size: usize) -> Result<BatchAnswer, EventsError> {
        metrics().parked_event_reads.get_or_create(&hookline_telemetry::labels([("how", "batch")])).inc();
        self.requests[0].fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let inbox = self.client.new_inbox();
        let mut answers = self.client.subscribe(inbox.clone()).await?;
        let request = serde_json::json!({
            "seq": from,
            "batch": size,
            "next_by_subj": format!("hookline.events.{}.>", tenant.as_str()),
        });
        let subject = format!("$JS.API.DIRECT.GET.{EVENTS_STREAM}");
        self.client.publish_with_reply(subject, inbox, request.to_string().into()).await?;
        let mut events = Vec::with_capacity(size);
        loop {
            let answer = tokio::time::timeout(BATCH_READ_TIMEOUT, answers.next())
                .await
                .map_err(|_| EventsError::TimedOut(BATCH_READ_TIMEOUT))?
                .ok_or(EventsError::TimedOut(BATCH_READ_TIMEOUT))?;
            let header = |name| hookline_bus::header(answer.headers.as_ref(), name);
            match answer.status.map(|s| s.as_u16()) {
                None | Some(200) => {
                    let seq = header("Nats-Sequence").and_then(|s| s.parse().ok()).ok_or(EventsError::NoSequence)?;
                    // Every message of a batch says how many are left.
                    if header("Nats-Num-Pending").is_none() {
                        return Ok(BatchAnswer::Unsupported(Some((seq, answer.payload))));
                    }
                    events.push((seq, answer.payload));
                }
                // End of the batch.
                Some(204) => {
                    let left: u64 = header("Nats-Num-Pending").and_then(|s| s.parse().ok()).unwrap_or(1);
                    return Ok(BatchAnswer::Events { events, exhausted: left == 0 });
                }
                // Nothing at or after `from`.
                Some(404) => return Ok(BatchAnswer::Events { events, exhausted: true }),
                // No responder (a stream without direct gets), or a request
                // the server does not take.
                Some(503) | Some(408) => return Ok(BatchAnswer::Unsupported(None)),
                Some(status) => {
                    return Err(EventsError::Refused { status, description: answer.description.unwrap_or_default() });
                }
            }
        }
    }
}

/// What became of a parked line (or a retry stored as a reference).
pub(crate) enum Restored {
    /// The whole task, ready for HOOKLINE_DISPATCH.
    Task(bytes::Bytes),
    /// Its event is gone: the outcome that ends the delivery.
    Expired(Box<AttemptOutcome>),
    /// Unreadable, or too old to record (see [`TaskRef::event_type`]).
    Dropped,
}

/// A retry waiting in HOOKLINE_RETRY as a [`TaskRef`], whole again: its
/// event read back from the stream's leader, or, when the event is gone,
/// the outcome that records so. The retry mover restores its retries one at
/// a time with it.
pub(crate) async fn restore_ref(events: &Stream, tenant: &TenantId, task_ref: TaskRef) -> Result<Restored, SweepError> {
    let mut read = HashMap::new();
    match events.get_raw_message(task_ref.event_seq).await {
        Ok(msg) => {
            read.insert(task_ref.event_seq, msg.payload);
        }
        Err(e) if matches!(e.kind(), RawMessageErrorKind::NoMessageFound) => {}
        Err(e) => return Err(e.into()),
    }
    Ok(restored(ParsedLine::Ref(Box::new(task_ref)), &read, tenant))
}

/// The outcome of a task recorded without an attempt (its event gone, its
/// endpoint disabled), as stored on HOOKLINE_OUTCOMES, counted among the
/// attempts as the workers count theirs.
pub(crate) fn outcome_message(outcome: &AttemptOutcome) -> PublishMessage {
    crate::worker::count_attempt(outcome);
    let payload = serde_json::to_vec(outcome).expect("outcomes serialise");
    PublishMessage::build().payload(payload.into()).message_id(outcome.msg_id())
}

/// A batch line, read.
enum ParsedLine {
    /// A whole task (parked with its event), taken as it is.
    Whole(bytes::Bytes),
    /// A task without its event, which is read back.
    Ref(Box<TaskRef>),
    /// Not a task: dropped as the workers drop an unreadable task, rather
    /// than holding up the endpoint's parked tasks for good.
    Unreadable,
}

fn parse_line(line: &[u8]) -> ParsedLine {
    #[derive(serde::Deserialize)]
    struct Line {
        event: Option<serde::de::IgnoredAny>,
    }
    let unreadable = |e: serde_json::Error| {
        tracing::error!(error = %e, "unreadable parked or waiting task dropped");
        ParsedLine::Unreadable
    };
    match serde_json::from_slice::<Line>(line) {
        Ok(l) if l.event.is_some() => ParsedLine::Whole(bytes::Bytes::copy_from_slice(line)),
        Ok(_) => match serde_json::from_slice(line) {
            Ok(parked) => ParsedLine::Ref(Box::new(parked)),
            Err(e) => unreadable(e),
        },
        Err(e) => unreadable(e),
    }
}

/// A batch line's task, whole again with its event from `events` (read
/// back by [`EventReader::read`]), or, when the event is gone, the outcome
/// that records so.
fn restored(parsed: ParsedLine, events: &HashMap<u64, bytes::Bytes>, tenant: &TenantId) -> Restored {
    let parked = match parsed {
        ParsedLine::Whole(task) => return Restored::Task(task),
        ParsedLine::Unreadable => return Restored::Dropped,
        ParsedLine::Ref(parked) => *parked,
    };
    let (seq, delivery) = (parked.event_seq, parked.delivery_id.clone());
    let gone = |parked: &TaskRef| {
        let Some(event_type) = parked.event_type else {
            tracing::warn!(delivery_id = %delivery, event_seq = seq,
                "the task's event is no longer in {EVENTS_STREAM} (archived or purged); the task, stored without its type, is dropped");
            return Restored::Dropped;
        };
        tracing::warn!(delivery_id = %delivery, event_seq = seq,
            "the task's event is no longer in {EVENTS_STREAM} (archived or purged); recorded as failed, event_expired");
        Restored::Expired(Box::new(crate::worker::expired_outcome(parked, tenant, event_type, None)))
    };
    let Some(payload) = events.get(&seq) else { return gone(&parked) };
    let event: StoredEvent = match serde_json::from_slice(payload) {
        Ok(event) => event,
        Err(e) => {
            tracing::error!(error = %e, "parking: unreadable event; its parked task is dropped");
            return Restored::Dropped;
        }
    };
    if event.id != parked.event_id || event.tenant_id != *tenant {
        return gone(&parked);
    }
    Restored::Task(serde_json::to_vec(&parked.into_task(event)).expect("tasks serialise").into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_drain_queues_no_more_than_its_endpoint_finishes_in_the_time_ahead_at_the_pace_measured() {
        let cap = 10;
        let mut pace = DrainPace::new(0);
        assert_eq!(pace.bound(117, 0, cap), 117, "unmeasured: the window by request times");
        // 300 attempts finished in the last second: 300/s, 60 in 200 ms.
        pace.at = std::time::Instant::now() - Duration::from_secs(1);
        let bounded = pace.bound(117, 300, cap);
        assert!((70..=71).contains(&bounded), "cap + 300/s x 200 ms, not {bounded}");
        assert_eq!(pace.bound(40, 300, cap), 40, "a smaller window stands");
        // Nothing finished for a second: the pace halves, the floor is twice the cap.
        pace.at = std::time::Instant::now() - Duration::from_secs(1);
        assert_eq!(pace.bound(117, 300, cap), 40, "cap + 150/s x 200 ms");
        pace.at = std::time::Instant::now() - Duration::from_secs(5);
        let _ = pace.bound(117, 300, cap);
        pace.at = std::time::Instant::now() - Duration::from_secs(5);
        assert_eq!(pace.bound(117, 300, cap), 2 * cap, "never under twice the cap");
    }

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
