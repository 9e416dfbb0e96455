//! Workers: execute dispatch tasks, record outcomes, schedule retries.
//!
//! A retry is a new task for the next attempt, due at `not_before`, stored
//! with the outcome before the current task is acked. One due at least
//! `HOOKLINE_RETRY_STORE_AFTER` ahead waits in HOOKLINE_RETRY until the
//! mover brings it back ([`crate::retry_store`]); one due sooner, or brought
//! back a little early, waits in HOOKLINE_DISPATCH (`Nak` with the remaining
//! delay). Tasks for a busy endpoint are handed back the same way, so they
//! never use up an attempt and never wait in memory.

use std::{sync::Arc, time::Duration};

use async_nats::jetstream::{
    AckKind, Context,
    consumer::pull,
    message::{Message, PublishMessage},
};
use hookline_bus::{DISPATCH_STREAM, WORKERS_CONSUMER, dispatch_subject, outcomes_subject};
use hookline_domain::{
    config::{Command, TenantState},
    delivery::{AttemptOutcome, AttemptState, DispatchTask, ErrorKind, SentRequest, TaskRef},
    endpoint::EndpointConfig,
    events::Timestamp,
    ids::{EndpointId, TenantId},
    layout,
};
use hookline_telemetry::{
    labels, metrics,
    trace::{TRACEPARENT, TraceParent},
};
use hookline_tenants::{
    Commands, Directory,
    directory::{SYNC_WAIT, WaitReason},
};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::{
    DeliverySettings,
    error::NotStored,
    guard::{Guard, Verdict, Wait},
    park, sender,
};

/// How long shutdown waits for attempts in flight.
pub(crate) const DRAIN: Duration = Duration::from_secs(20);

/// Makes attempts and records them; shared by the workers and by fan-out,
/// which makes first attempts itself when the endpoint has a free slot.
pub struct Worker {
    js: Context,
    directory: Directory,
    commands: Commands,
    settings: DeliverySettings,
    http: Arc<sender::Http>,
    /// Per-endpoint slots, and the process's attempt permits
    /// (`HOOKLINE_DELIVERY_CONCURRENCY`), whichever of the two makes them.
    guard: Guard,
    /// Fan-out's places: the first attempts it holds at once, queued or in
    /// flight, twice `HOOKLINE_DELIVERY_CONCURRENCY`. An event fans out to
    /// many endpoints, so without this bound one fan-out slot would hold an
    /// attempt (its future, body and copy of the event) per endpoint, and
    /// memory would follow events × fan-out rather than the setting.
    fan_out_places: Arc<tokio::sync::Semaphore>,
    /// First attempts waiting for one of those places, eight times
    /// `HOOKLINE_DELIVERY_CONCURRENCY`: a wait holds the task's reference,
    /// not its body or copy of the event, and spares it a trip through
    /// HOOKLINE_DISPATCH.
    fan_out_waiting: Arc<tokio::sync::Semaphore>,
    /// Drained tasks held at once, across every endpoint draining here
    /// (`HOOKLINE_DELIVERY_CONCURRENCY`): each holds its event, so however
    /// many endpoints recover together, memory follows the setting; past
    /// it, a drained task goes through HOOKLINE_DISPATCH (see
    /// [`Worker::drain_place`]).
    drain_places: Arc<tokio::sync::Semaphore>,
    /// How long a turn waits for a place: what `HOOKLINE_ACK_WAIT` leaves
    /// beyond the request timeout and the wait for an endpoint's slot (the
    /// event is held meanwhile), at most [`FAN_OUT_PLACE_WAIT`].
    fan_out_place_wait: Duration,
    parker: park::Parker,
    targets: sender::Targets,
}

impl Worker {
    pub fn new(js: Context, directory: Directory, settings: DeliverySettings, guard: Guard) -> Arc<Self> {
        Arc::new(Worker {
            http: Arc::new(sender::Http::new(
                settings.request_timeout,
                Arc::new(settings.address_policy.clone()),
                settings.dns.clone(),
                settings.concurrency(),
            )),
            commands: Commands::new(js.clone(), directory.clone()),
            fan_out_places: Arc::new(tokio::sync::Semaphore::new(FAN_OUT_PLACES_PER_PERMIT * settings.concurrency())),
            fan_out_waiting: Arc::new(tokio::sync::Semaphore::new(FAN_OUT_WAITING_PER_PERMIT * settings.concurrency())),
            drain_places: Arc::new(tokio::sync::Semaphore::new(settings.concurrency())),
            fan_out_place_wait: settings
                .ack_wait
                .saturating_sub(settings.request_timeout + crate::guard::MAX_WAIT)
                .min(FAN_OUT_PLACE_WAIT),
            parker: park::Parker::start(js.clone()),
            targets: sender::Targets::default(),
            guard,
            js,
            directory,
            settings,
        })
    }

    /// Delivery's config follower.
    pub fn directory(&self) -> &Directory {
        &self.directory
    }

    pub fn guard(&self) -> &Guard {
        &self.guard
    }

    /// Whether `task` may be attempted now, outside the workers: its event
    /// is within the archive age and it is no retry due later. The workers
    /// record the one as expired and keep the other until it is due.
    pub fn due_now(&self, task: &DispatchTask) -> bool {
        let not_yet =
            task.not_before.as_ref().is_some_and(|t| t.parsed().with_timezone(&chrono::Utc) > chrono::Utc::now());
        !not_yet && !expired(&task.event, self.settings.archive_after)
    }

    /// A place for one drained task, to hold until its attempt is recorded
    /// ([`crate::park`]); `None` when every place is taken, and the task
    /// goes to HOOKLINE_DISPATCH instead.
    pub fn drain_place(&self) -> Option<tokio::sync::OwnedSemaphorePermit> {
        self.drain_places.clone().try_acquire_owned().ok()
    }

    /// The tenant's config for reading payload filters: as of at least
    /// `min_seq` (the event's config sequence), so an event meets the
    /// filters its endpoints had when it was published, or newer ones.
    /// Without a sequence (events stored before ingest stamped them), as
    /// of the stream's last change to the tenant.
    pub async fn tenant_config(
        &self,
        tenant: &TenantId,
        min_seq: u64,
    ) -> Result<Option<Arc<TenantState>>, hookline_tenants::Error> {
        if min_seq > 0 {
            self.directory.reach(tenant, min_seq, SYNC_WAIT, WaitReason::Fanout).await?;
        } else {
            self.directory.sync_tenant(tenant, WaitReason::Fanout).await?;
        }
        Ok(self.directory.tenant(tenant))
    }

    /// Whether fan-out may make the first attempt at `endpoint` itself, and
    /// if so its turn for one of fan-out's places: only while attempt
    /// permits are free, since fan-out holds its event (on a clock of
    /// `HOOKLINE_ACK_WAIT`) until the attempt is recorded, and only while
    /// fewer than the bound wait for a place. Otherwise the task goes to the
    /// workers, and waits in JetStream rather than here.
    pub fn fan_out_turn(&self, endpoint: &EndpointConfig) -> Option<FanOutTurn> {
        if !endpoint.enabled
            || !self.guard.has_free_permit()
            || !self.guard.answers_within(&endpoint.id, FAN_OUT_ATTEMPT_MAX_LATENCY)
        {
            return None;
        }
        let waiting = self.fan_out_waiting.clone().try_acquire_owned().ok()?;
        Some(FanOutTurn { _waiting: waiting, places: self.fan_out_places.clone(), wait: self.fan_out_place_wait })
    }
}

/// A first attempt fan-out may make itself, in line for one of its places.
pub struct FanOutTurn {
    _waiting: tokio::sync::OwnedSemaphorePermit,
    places: Arc<tokio::sync::Semaphore>,
    wait: Duration,
}

impl FanOutTurn {
    /// The place to make the attempt in, held until it is recorded; `None`
    /// when none came free in time ([`Worker::fan_out_turn`]): the task then
    /// goes to the workers. Places are handed out in the order asked.
    pub async fn place(self) -> Option<tokio::sync::OwnedSemaphorePermit> {
        tokio::time::timeout(self.wait, self.places.acquire_owned()).await.ok()?.ok()
    }
}

/// Fan-out's places per attempt permit: twice as many first attempts as
/// can be in flight, so that while attempts are answered quickly, fan-out
/// never sends a task through HOOKLINE_DISPATCH only because its events
/// fan out to more than one endpoint each (the population of
/// `hookline-bench scale` averages 1.39), which costs nats-server a
/// publish, a pull and an ack per task when it is busiest.
const FAN_OUT_PLACES_PER_PERMIT: usize = 2;

/// First attempts that may wait for one of fan-out's places, per attempt
/// permit. An event for ten endpoints asks for ten places at once; without
/// a line to wait in, most of those tasks would go through
/// HOOKLINE_DISPATCH, which costs nats-server a publish, a pull and an ack
/// each and the delivery rate a quarter (BENCHMARKS.md).
const FAN_OUT_WAITING_PER_PERMIT: usize = 8;

/// The longest a first attempt waits for one of fan-out's places: places
/// come free as fast as the endpoints' slots take attempts, so a wait this
/// long still costs less than a trip through HOOKLINE_DISPATCH, where the
/// task would wait for the same slots.
const FAN_OUT_PLACE_WAIT: Duration = Duration::from_secs(2);

/// Fan-out makes an endpoint's first attempts itself only while they take
/// less than this on average: it holds the event until they are recorded.
const FAN_OUT_ATTEMPT_MAX_LATENCY: Duration = Duration::from_millis(250);

pub async fn run(worker: Arc<Worker>, shutdown: CancellationToken) -> Result<(), hookline_bus::BusError> {
    let (js, settings) = (&worker.js, &worker.settings);
    let consumer = hookline_bus::durable(
        js,
        DISPATCH_STREAM,
        WORKERS_CONSUMER,
        pull::Config {
            ack_wait: settings.ack_wait,
            // Tasks handed back with a delay (a retry due within
            // HOOKLINE_RETRY_STORE_AFTER, a busy endpoint) are pending while
            // they wait; retries due later wait in HOOKLINE_RETRY instead,
            // so this cap is never the size of a retry backlog.
            max_ack_pending: 1_000_000,
            ..Default::default()
        },
    )
    .await?;
    tokio::spawn(breaker_gauge(worker.guard.clone(), shutdown.clone()));
    let concurrency = settings.concurrency();
    let pull = hookline_bus::Pull { name: WORKERS_CONSUMER, concurrency, drain: DRAIN };
    hookline_bus::consume(&consumer, pull, shutdown, move |msg| {
        let worker = worker.clone();
        async move { worker.handle(msg).await }
    })
    .await;
    Ok(())
}

/// Keep `hookline_delivery_breakers_open` current. Counting walks every
/// endpoint the process has attempted (tens of thousands at scale), so it
/// runs on a clock rather than once per attempt; the clock also lets the
/// gauge fall when a cooldown ends with no attempt made.
async fn breaker_gauge(guard: Guard, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(BREAKER_GAUGE_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {
                metrics().breakers_open.set(guard.open_breakers() as i64);
            }
        }
    }
}

const BREAKER_GAUGE_EVERY: Duration = Duration::from_secs(1);

/// How a task whose successor is stored is acked.
#[derive(Clone, Copy)]
enum Ack {
    /// Fire and forget: a lost ack costs one repeated attempt.
    Plain,
    /// Confirmed by the server before the task counts as settled.
    Confirmed,
}

/// Ack a task whose successor (its outcome and next task, or its parked
/// copy) is stored, the way `ack` says; hand it back for 1 s when storing
/// failed.
async fn settle(msg: Message, stored: Result<(), NotStored>, ack: Ack) {
    match stored {
        Ok(()) => {
            let acked = match ack {
                Ack::Plain => msg.ack().await,
                Ack::Confirmed => msg.double_ack().await,
            };
            if let Err(e) = acked {
                tracing::warn!(error = %e, "workers: ack failed; the task may be attempted again");
            }
        }
        Err(e) => {
            tracing::warn!(error = %e, "workers: not stored; the task is retried in 1s");
            let _ = msg.ack_with(AckKind::Nak(Some(Duration::from_secs(1)))).await;
        }
    }
}

/// How the guard counts an attempt: a timeout is the one failure that
/// held its slot (and an attempt permit) for the whole request timeout.
fn verdict(result: &sender::AttemptResult) -> Verdict {
    match result.error_kind {
        None => Verdict::Succeeded,
        Some(ErrorKind::Timeout) => Verdict::Unanswered,
        Some(_) => Verdict::Failed,
    }
}

/// What [`Worker::attempt_here`] did with a task.
#[allow(clippy::large_enum_variant)] // one per task, moved once
pub enum Here {
    /// Attempted here, and its outcome recorded.
    Made,
    /// Not attempted: the endpoint's slots did not free up in time, or it
    /// is blocked. The task is the caller's to store.
    NotNow(DispatchTask, Wait),
}

/// When an attempt started, and how it went.
type TimedResult = (chrono::DateTime<chrono::Utc>, sender::AttemptResult);

/// What came of a task: an attempt, or none because its endpoint is
/// disabled or deleted.
#[allow(clippy::large_enum_variant)] // one per attempt, moved once
enum Attempted {
    /// The attempt was made (whether it reached the endpoint or not).
    Finished {
        ep: Arc<EndpointConfig>,
        body_sha256: String,
        started_at: chrono::DateTime<chrono::Utc>,
        result: sender::AttemptResult,
    },
    Unavailable(Unavailable),
    /// The event outlived `HOOKLINE_ARCHIVE_AFTER` before it was delivered.
    Expired,
}

/// Whether `event` is past the archive age, when HOOKLINE_EVENTS drops it:
/// a task that still carries it must not deliver it later than that.
fn expired(event: &hookline_domain::events::StoredEvent, archive_after: Duration) -> bool {
    let received = event.received_at.parsed();
    chrono::Duration::from_std(archive_after)
        .ok()
        .and_then(|age| received.with_timezone(&chrono::Utc).checked_add_signed(age))
        .is_some_and(|due| due <= chrono::Utc::now())
}

/// The outcome that ends a delivery whose event expired before it could be
/// made: `failed`, error kind `event_expired`, nothing sent. Recorded by
/// the workers (a retry or a whole parked task) and by the parking sweeper
/// (a parked task whose event is gone from HOOKLINE_EVENTS).
pub(crate) fn expired_outcome(
    task: &TaskRef,
    tenant: &TenantId,
    event_type: hookline_domain::event_type::EventType,
    trace_id: Option<String>,
) -> AttemptOutcome {
    AttemptOutcome {
        state: AttemptState::Failed,
        error_kind: Some(ErrorKind::EventExpired),
        error: Some(format!(
            "the event left {} at its archive age (HOOKLINE_ARCHIVE_AFTER) before this delivery was made; nothing was sent",
            hookline_bus::EVENTS_STREAM
        )),
        trace_id,
        ..unsent_outcome(task, tenant, event_type)
    }
}

/// The outcome of a task whose endpoint is disabled or deleted, as the
/// workers record it, made from the task's reference alone: the parking
/// sweeper records a disabled endpoint's parked tasks so, and the retry
/// mover its waiting retries, without reading their events back or sending
/// them through HOOKLINE_DISPATCH. `None` for a reference stored without
/// its event type (by a version before it was kept), which goes back with
/// its event for the workers to record.
pub(crate) fn unavailable_outcome(
    task: &TaskRef,
    tenant: &TenantId,
    traceparent: &str,
    why: Unavailable,
) -> Option<AttemptOutcome> {
    Some(AttemptOutcome {
        error_kind: Some(ErrorKind::EndpointUnavailable),
        error: Some(why.error().into()),
        trace_id: TraceParent::parse(traceparent).map(|t| t.trace_id()),
        ..unsent_outcome(task, tenant, task.event_type?)
    })
}

/// Count an attempt's outcome in `hookline_delivery_attempts_total`, by
/// state and error kind, whoever records it (the workers, fan-out, the
/// parking sweeper, the retry mover).
pub(crate) fn count_attempt(outcome: &AttemptOutcome) {
    let kind = outcome.error_kind.map_or("none", |k| k.as_str());
    metrics().attempts.get_or_create(&labels([("outcome", outcome.state.as_str()), ("error_kind", kind)])).inc();
}

/// Why an endpoint takes no attempts at all.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Unavailable {
    Disabled,
    Deleted,
}

/// The endpoint, if it takes attempts, as the Directory knows it
/// ([`Directory::find_endpoint`]), or why it takes none. The workers, the
/// parking sweeper and the retry mover each ask this before an attempt.
pub(crate) async fn usable_endpoint(
    directory: &Directory,
    tenant: &TenantId,
    endpoint: &EndpointId,
) -> Result<Arc<EndpointConfig>, Unavailable> {
    match directory.find_endpoint(tenant, endpoint).await {
        Some(ep) if ep.enabled => Ok(ep),
        Some(_) => Err(Unavailable::Disabled),
        None => Err(Unavailable::Deleted),
    }
}

impl Unavailable {
    /// The outcome's error text.
    fn error(self) -> &'static str {
        match self {
            Self::Disabled => "endpoint is disabled",
            Self::Deleted => "endpoint was deleted",
        }
    }
}

/// A task's outcome with nothing sent (state dropped), from its reference.
fn unsent_outcome(
    task: &TaskRef,
    tenant: &TenantId,
    event_type: hookline_domain::event_type::EventType,
) -> AttemptOutcome {
    AttemptOutcome {
        delivery_id: task.delivery_id.clone(),
        delivery_created_at: task.created_at.clone(),
        replay_of: task.replay_of.clone(),
        event_id: task.event_id.clone(),
        event_seq: task.event_seq,
        tenant_id: tenant.clone(),
        endpoint_id: task.endpoint_id.clone(),
        event_type,
        attempt: task.attempt,
        state: AttemptState::Dropped,
        status_code: None,
        error_kind: None,
        error: None,
        started_at: Timestamp::now(),
        duration_ms: 0,
        next_attempt_at: None,
        response_excerpt: None,
        request: None,
        trace_id: None,
        test: task.test,
    }
}

/// The `attempt` span, a child of `parent` (fan-out's span, carried by the
/// task), and the trace context the attempt continues.
fn attempt_span(task: &DispatchTask, parent: Option<TraceParent>) -> (tracing::Span, TraceParent) {
    let event = &task.event;
    let span = tracing::info_span!("attempt", trace_id = tracing::field::Empty, delivery_id = %task.delivery_id,
        event_id = %event.id, endpoint_id = %task.endpoint_id, tenant = %event.tenant_id, attempt = task.attempt);
    let trace = hookline_telemetry::trace::start(&span, parent);
    span.record("trace_id", tracing::field::display(trace.trace_id_display()));
    (span, trace)
}

/// The HTTP client span of a webhook request, as OpenTelemetry's HTTP
/// conventions name it; the URL's path and query are left out (they may
/// hold a receiver's token).
fn http_span(url: &http::Uri) -> tracing::Span {
    tracing::info_span!("POST", otel.kind = "client", http.request.method = "POST",
        server.address = url.host().unwrap_or_default(), server.port = url.port_u16(),
        url.scheme = url.scheme_str().unwrap_or_default(), http.response.status_code = tracing::field::Empty,
        error.type = tracing::field::Empty, otel.status_code = tracing::field::Empty)
}

fn record_http(span: &tracing::Span, result: &sender::AttemptResult) {
    if span.is_disabled() {
        return;
    }
    if let Some(code) = result.status_code {
        span.record("http.response.status_code", code);
    }
    if let Some(kind) = result.error_kind {
        span.record("error.type", kind.as_str());
        span.record("otel.status_code", "ERROR");
    }
}

/// ±20 % jitter, so retries of many deliveries do not arrive in lockstep;
/// drawn from the delivery and attempt, not at random, so an attempt
/// repeated after a lost ack schedules its retry as the first did, and the
/// two copies come due as far apart as the attempts were (see
/// [`crate::retry_store`]: HOOKLINE_DISPATCH's window then keeps one).
fn jitter(d: Duration, delivery: &hookline_domain::ids::DeliveryId, attempt: u32) -> Duration {
    if d.is_zero() {
        return d;
    }
    // FNV-1a: stable across builds and processes, unlike std's hasher.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in delivery.as_str().bytes().chain(attempt.to_le_bytes()) {
        h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    let unit = (h >> 11) as f64 / (1u64 << 53) as f64;
    d.mul_f64(0.8 + 0.4 * unit)
}

impl Worker {
    async fn handle(&self, msg: Message) {
        let task: DispatchTask = match serde_json::from_slice(&msg.payload) {
            Ok(t) => t,
            Err(e) => {
                tracing::error!(subject = %msg.subject, error = %e, "workers: unreadable task terminated");
                let _ = msg.ack_with(AckKind::Term).await;
                return;
            }
        };
        // A retry that is not due yet waits in JetStream.
        if let Some(due) = task.not_before.as_ref().map(|t| t.parsed())
            && let Ok(wait) = (due.with_timezone(&chrono::Utc) - chrono::Utc::now()).to_std()
            && wait > Duration::from_millis(5)
        {
            let _ = msg.ack_with(AckKind::Nak(Some(wait))).await;
            return;
        }
        let parent = hookline_bus::header(msg.headers.as_ref(), TRACEPARENT).and_then(TraceParent::parse);
        let (span, trace) = attempt_span(&task, parent);
        // A retry continues under the same parent, a sibling of this attempt.
        let parent = parent.unwrap_or(trace);
        // Tasks handed back while they wait come again by design, so this is
        // a debug line; it also shows tasks whose ack was lost.
        let delivered = hookline_bus::delivery_count(msg.reply.as_deref()).unwrap_or(1);
        if delivered > 1 {
            tracing::debug!(parent: &span, delivered, "workers: task delivered again");
        }
        // Past the archive age: recorded as failed, never sent late.
        if expired(&task.event, self.settings.archive_after) {
            let stored = self.conclude(&task, Attempted::Expired, &parent).instrument(span).await;
            settle(msg, stored, Ack::Plain).await;
            return;
        }
        // A disabled or deleted endpoint's task is recorded as dropped at
        // once; it takes no slot and never waits behind the breaker.
        let attempted = match usable_endpoint(&self.directory, &task.event.tenant_id, &task.endpoint_id).await {
            Ok(ep) => match self.attempt(&task, ep, &trace, &span).await {
                Ok(finished) => finished,
                Err(wait) => {
                    metrics().deferrals.get_or_create(&labels([("reason", wait.reason())])).inc();
                    match wait {
                        Wait::Busy(d) => {
                            let _ = msg.ack_with(AckKind::Nak(Some(d))).await;
                        }
                        Wait::Stuck | Wait::Open | Wait::Limited | Wait::Unanswered => self.park(msg, &task).await,
                    }
                    return;
                }
            },
            Err(why) => Attempted::Unavailable(why),
        };
        // A plain ack: the outcome and the next attempt are already stored,
        // so a lost ack costs one repeated attempt, not a round trip per
        // delivery. A graceful stop flushes the connection.
        let stored = self.conclude(&task, attempted, &parent).instrument(span).await;
        settle(msg, stored, Ack::Plain).await;
    }

    /// Fan-out's first attempt at a fast endpoint: made in one of its slots
    /// if one frees up within a moment, so the task never passes through
    /// `HOOKLINE_DISPATCH`; otherwise the task is sent there, or parked.
    /// `Ok`: the outcome, or the task, is stored.
    pub async fn first_attempt(
        &self,
        task: DispatchTask,
        ep: Arc<EndpointConfig>,
        trace: TraceParent,
    ) -> Result<(), NotStored> {
        match self.attempt_here(task, ep, trace).await? {
            Here::Made => {
                metrics().direct_attempts.inc();
                Ok(())
            }
            Here::NotNow(task, wait) => Box::pin(self.hand_off(&task, Some(wait), &trace.to_string())).await,
        }
    }

    /// Make `task`'s attempt here, in one of its endpoint's slots if one
    /// frees up within a moment, and record it; otherwise give the task
    /// back for the caller to store: fan-out under the task's own message
    /// id, a drain under its move's ([`Worker::dispatch`]). Fan-out's first
    /// attempts and a recovering endpoint's drain ([`crate::park`]) go this
    /// way.
    pub async fn attempt_here(
        &self,
        task: DispatchTask,
        ep: Arc<EndpointConfig>,
        trace: TraceParent,
    ) -> Result<Here, NotStored> {
        let (span, own) = attempt_span(&task, Some(trace));
        match self.attempt(&task, ep, &own, &span).await {
            Ok(finished) => {
                // Boxed once the attempt is made: the places fan-out holds
                // wait for a slot, and each would otherwise carry the
                // recording's state all the while.
                Box::pin(self.conclude(&task, finished, &trace).instrument(span)).await?;
                Ok(Here::Made)
            }
            Err(wait) => Ok(Here::NotNow(task, wait)),
        }
    }

    /// The attempt, made in one of the endpoint's slots, or why it must wait.
    async fn attempt(
        &self,
        task: &DispatchTask,
        ep: Arc<EndpointConfig>,
        trace: &TraceParent,
        span: &tracing::Span,
    ) -> Result<Attempted, Wait> {
        let (body_sha256, job) = self.prepare(task, &ep, trace);
        let (started_at, result) =
            self.guard.run(&task.endpoint_id, ep.rate_limit, job.instrument(span.clone()), |(_, r)| verdict(r)).await?;
        Ok(Attempted::Finished { ep, body_sha256, started_at, result })
    }

    /// Store a task for the workers, or park it when its endpoint is
    /// blocked (stuck or breaker open). `Ok` once it is stored.
    pub async fn hand_off(
        &self,
        task: &DispatchTask,
        blocked: Option<Wait>,
        traceparent: &str,
    ) -> Result<(), NotStored> {
        match blocked {
            None | Some(Wait::Busy(_)) => self.dispatch(task, traceparent, task.msg_id()).await,
            Some(wait) => self.park_new(&task.event.tenant_id, &TaskRef::from(task), wait, traceparent).await,
        }
    }

    /// Store `task` in HOOKLINE_DISPATCH for the workers under `msg_id`,
    /// which de-duplicates it there for the stream's duplicate window: a
    /// task that may already have been stored under its own id (a drained
    /// one) must be given the id of the move that brings it back instead.
    pub async fn dispatch(&self, task: &DispatchTask, traceparent: &str, msg_id: String) -> Result<(), NotStored> {
        let (tenant, endpoint) = (&task.event.tenant_id, &task.endpoint_id);
        let payload = serde_json::to_vec(task).expect("tasks serialise");
        let publish = crate::task_message(payload.into(), Some(traceparent), msg_id);
        self.js.send_publish(dispatch_subject(tenant, endpoint), publish).await?.await?;
        Ok(())
    }

    /// Park a new task of a blocked endpoint (stuck, or breaker open)
    /// without its event, which stays in HOOKLINE_EVENTS. `Ok` once stored.
    pub async fn park_new(
        &self,
        tenant: &TenantId,
        parked: &TaskRef,
        wait: Wait,
        traceparent: &str,
    ) -> Result<(), NotStored> {
        metrics().deferrals.get_or_create(&labels([("reason", wait.reason())])).inc();
        let payload = serde_json::to_vec(parked).expect("tasks serialise");
        self.parker.park(tenant, &parked.endpoint_id, &payload, traceparent, &parked.msg_id()).await
    }

    /// Move a task to its endpoint's parking subject (see [`crate::park`]);
    /// acked here once the parked copy is stored.
    async fn park(&self, msg: Message, task: &DispatchTask) {
        let stored = async {
            let seq = hookline_bus::stream_sequence(msg.reply.as_deref()).ok_or(NotStored::NoSequence)?;
            let traceparent = hookline_bus::header(msg.headers.as_ref(), TRACEPARENT);
            let (tenant, endpoint) = (&task.event.tenant_id, &task.endpoint_id);
            let payload = msg.payload.clone();
            park::publish(&self.js, tenant, endpoint, payload, traceparent, format!("d{seq}")).await?.await?;
            Ok::<_, NotStored>(())
        }
        .await;
        // Confirmed by the server: a crash right after parking must not
        // leave the task both parked and due here (two attempts).
        settle(msg, stored, Ack::Confirmed).await;
    }

    /// The body's digest, and the attempt itself: everything it needs is
    /// made before it waits for a slot, so a slot only ever waits on the
    /// endpoint (and for an attempt permit, which the guard gives it).
    fn prepare(
        &self,
        task: &DispatchTask,
        ep: &Arc<EndpointConfig>,
        trace: &TraceParent,
    ) -> (String, futures_util::future::BoxFuture<'static, TimedResult>) {
        let body = layout::render(&task.event, ep.layout);
        let body_sha256 = hookline_domain::signing::sha256_hex(&body);
        let (ep, http) = (ep.clone(), self.http.clone());
        let mailer = self.settings.mailer.clone();
        let target = self.targets.get(ep.url.as_str(), &self.settings.address_policy);
        let event = ep.email.is_some().then(|| task.event.clone());
        let (msg_id, trace, test) = (task.event.id.to_string(), *trace, task.event.test);
        // Boxed here, so the queue and the slot move a pointer; what it
        // sends by is boxed once it starts, so a queued attempt holds only
        // what it captured (about a kilobyte, not the request's state).
        let job = Box::pin(async move {
            metrics().in_flight.inc();
            let started_at = chrono::Utc::now();
            let result = match (event, &mailer) {
                (Some(event), Some(mailer)) => Box::pin(mailer.send(&ep, &event, body)).await,
                (Some(_), None) => sender::AttemptResult::failed(
                    ErrorKind::Smtp,
                    "this endpoint delivers by e-mail but HOOKLINE_SMTP_URL is not set".into(),
                ),
                (None, _) => match target {
                    Ok(url) => {
                        // The receiver's `traceparent` names this request's
                        // span when spans are exported, else the attempt.
                        let span = hookline_telemetry::trace::when_exporting(|| http_span(&url));
                        let traceparent = TraceParent::of(&span).unwrap_or(trace).to_string();
                        let result = Box::pin(
                            sender::send(&http, url, &ep, &msg_id, body, &traceparent, test).instrument(span.clone()),
                        )
                        .await;
                        record_http(&span, &result);
                        result
                    }
                    Err(why) => sender::AttemptResult::refused(why.to_string()),
                },
            };
            metrics().in_flight.dec();
            (started_at, result)
        });
        (body_sha256, job)
    }

    /// Record what became of the task: its outcome and, if it is to be
    /// retried, the next attempt's task. `Err`: not stored.
    async fn conclude(&self, task: &DispatchTask, attempted: Attempted, trace: &TraceParent) -> Result<(), NotStored> {
        let event = &task.event;
        let attempt = task.attempt;
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
            started_at: Timestamp::now(),
            duration_ms: 0,
            next_attempt_at: None,
            response_excerpt: None,
            trace_id: Some(trace.trace_id()),
            test: event.test,
        };
        let mut retry = None;
        match attempted {
            Attempted::Finished { ep, body_sha256, started_at, result } => {
                outcome.started_at = Timestamp::from_utc(started_at);
                let channel = if ep.email.is_some() { "email" } else { "http" };
                metrics()
                    .attempt_duration
                    .get_or_create(&labels([("channel", channel)]))
                    .observe(result.duration.as_secs_f64());
                outcome.request = Some(SentRequest {
                    url: match &ep.email {
                        Some(to) => format!("mailto:{}", to.as_str()),
                        None => ep.url.as_str().to_owned(),
                    },
                    layout: ep.layout,
                    headers: result.request_headers,
                    body_sha256,
                });
                outcome.status_code = result.status_code;
                outcome.error_kind = result.error_kind;
                outcome.error = result.error;
                // Rounded, not truncated: a mean read from the log is then not half a millisecond low.
                outcome.duration_ms = ((result.duration.as_micros() + 500) / 1000) as u64;
                outcome.response_excerpt = result.response_excerpt;
                if outcome.error_kind.is_none() {
                    outcome.state = AttemptState::Succeeded;
                } else if result.status_code == Some(410) {
                    outcome.state = AttemptState::Failed;
                    outcome.error = Some("410 Gone: the endpoint was disabled".into());
                    self.disable(task, "the endpoint answered 410 Gone").await;
                } else if let Some(delay) = self.settings.retry_schedule.delay_after(attempt) {
                    // Retry-After is honoured up to the scheduled retry's upper bound.
                    let delay = match result.retry_after {
                        Some(asked) => asked.min(delay.mul_f64(1.2)),
                        None => jitter(delay, &task.delivery_id, attempt),
                    };
                    let due = Timestamp::from_utc(chrono::Utc::now() + delay);
                    outcome.state = AttemptState::Retrying;
                    outcome.next_attempt_at = Some(due.clone());
                    retry = Some(task.retry(due));
                    metrics().retries_scheduled.inc();
                } else {
                    outcome.state = AttemptState::Failed;
                }
            }
            Attempted::Expired => {
                let trace_id = outcome.trace_id.take();
                outcome = expired_outcome(&TaskRef::from(task), &event.tenant_id, event.event_type, trace_id);
            }
            Attempted::Unavailable(why) => {
                outcome.error_kind = Some(ErrorKind::EndpointUnavailable);
                outcome.error = Some(why.error().into());
            }
        }
        count_attempt(&outcome);
        tracing::info!(state = ?outcome.state, status = outcome.status_code, error_kind = outcome.error_kind.map(|k| k.as_str()),
            duration_ms = outcome.duration_ms, "attempt finished");
        // The outcome and the next attempt are stored before the task (or
        // the event, for fan-out) is acked; a crash in between repeats the
        // attempt, never loses it.
        self.record(&outcome, retry.as_ref(), trace).await
    }

    async fn disable(&self, task: &DispatchTask, reason: &str) {
        let cmd = Command::DisableEndpoint { endpoint_id: task.endpoint_id.clone(), reason: reason.to_owned() };
        match self.commands.execute(&task.event.tenant_id, cmd).await {
            Ok(_) => {
                metrics().endpoints_disabled.get_or_create(&labels([("reason", "gone")])).inc();
                tracing::warn!(endpoint_id = %task.endpoint_id, reason, "endpoint disabled")
            }
            Err(e) => tracing::error!(endpoint_id = %task.endpoint_id, error = %e, "could not disable endpoint"),
        }
    }

    async fn record(
        &self,
        outcome: &AttemptOutcome,
        retry: Option<&DispatchTask>,
        trace: &TraceParent,
    ) -> Result<(), NotStored> {
        // An outcome is about 1 KiB: one buffer of that size, not four growing ones.
        let mut payload = Vec::with_capacity(1536);
        serde_json::to_writer(&mut payload, outcome).expect("outcomes serialise");
        let publish = PublishMessage::build().payload(payload.into()).message_id(outcome.msg_id());
        let stored = self.js.send_publish(outcomes_subject(&outcome.tenant_id, &outcome.endpoint_id), publish).await?;
        let next = match retry {
            Some(task) => {
                // Due later: the retry store, so it holds no slot on `workers` while it waits.
                let (subject, publish) =
                    crate::retry_store::next_task_message(task, &trace.to_string(), self.settings.retry_store_after);
                Some(self.js.send_publish(subject, publish).await?)
            }
            None => None,
        };
        stored.await?;
        if let Some(next) = next {
            next.await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_is_the_same_for_a_repeated_attempt_and_spread_across_deliveries() {
        let hour = Duration::from_secs(3600);
        let (a, b) = (hookline_domain::ids::DeliveryId::generate(), hookline_domain::ids::DeliveryId::generate());
        assert_eq!(jitter(hour, &a, 2), jitter(hour, &a, 2), "a repeated attempt is due at the same delay");
        let spread: std::collections::BTreeSet<u64> = (0..200)
            .map(|_| jitter(hour, &hookline_domain::ids::DeliveryId::generate(), 2).as_secs())
            .inspect(|s| assert!((2880..=4320).contains(s), "{s} s is within ±20 % of an hour"))
            .collect();
        assert!(spread.len() > 100, "deliveries spread over the window: {} distinct delays", spread.len());
        assert_ne!(jitter(hour, &a, 2), jitter(hour, &b, 2));
        assert_eq!(jitter(Duration::ZERO, &a, 2), Duration::ZERO);
    }
}
