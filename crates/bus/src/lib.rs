//! JetStream wiring shared by every Hookline service: the names of streams,
//! subjects, headers and durable consumers (a contract with operators and
//! NATS publishers), and idempotent set-up of all of them.
//!
//! **Invariant:** only this crate spells a stream or subject name.

use std::time::Duration;

use async_nats::jetstream::{
    self, Context,
    consumer::{self, pull},
    stream::{self, RetentionPolicy, StorageType},
};
use hookline_domain::{
    event_type::EventType,
    ids::{EndpointId, TenantId},
};

/// Producer events waiting for ingest (work queue). `hookline.intake.<tenant>`.
pub const INTAKE_STREAM: &str = "HOOKLINE_INTAKE";
/// Accepted events, the source of truth. `hookline.events.<tenant>.<type>`.
pub const EVENTS_STREAM: &str = "HOOKLINE_EVENTS";
/// Intake events ingest refused, with the reason. `hookline.rejected.<tenant>`.
pub const REJECTED_STREAM: &str = "HOOKLINE_REJECTED";
/// Tenant aggregates. `hookline.config.<tenant>`.
pub const CONFIG_STREAM: &str = "HOOKLINE_CONFIG";
/// One task per (event, endpoint) (work queue). `hookline.dispatch.<tenant>.<endpoint>`.
pub const DISPATCH_STREAM: &str = "HOOKLINE_DISPATCH";
/// One record per delivery attempt. `hookline.outcomes.<tenant>.<endpoint>`.
pub const OUTCOMES_STREAM: &str = "HOOKLINE_OUTCOMES";
/// Tasks of an endpoint that is stuck or whose breaker is open, waiting
/// apart from the others (work queue). `hookline.parked.<tenant>.<endpoint>`.
pub const PARKED_STREAM: &str = "HOOKLINE_PARKED";
/// Retries due later, each under the second it is due, until the mover in
/// every delivery process moves its second's tasks to HOOKLINE_DISPATCH
/// (limits retention, read by subject and purged).
/// `hookline.retry.<due second>.ref` (a [`TaskRef`](hookline_domain::delivery::TaskRef),
/// the tenant in [`RETRY_TENANT_HEADER`]); retries stored by older versions
/// wait on `hookline.retry.<due second>.<tenant>.<endpoint>` (the whole task).
pub const RETRY_STREAM: &str = "HOOKLINE_RETRY";

/// Durable consumer of ingest on the intake stream.
pub const INGEST_CONSUMER: &str = "ingest";
/// Durable consumer of delivery's fan-out on the events stream.
pub const FANOUT_CONSUMER: &str = "fanout";
/// Durable consumer of delivery's workers on the dispatch stream.
pub const WORKERS_CONSUMER: &str = "workers";

/// Every subject of a stream, for consumers that want all of it.
pub const INTAKE_ALL: &str = "hookline.intake.>";
pub const EVENTS_ALL: &str = "hookline.events.>";
pub const CONFIG_ALL: &str = "hookline.config.>";
pub const REJECTED_ALL: &str = "hookline.rejected.>";
pub const OUTCOMES_ALL: &str = "hookline.outcomes.>";
pub const DISPATCH_ALL: &str = "hookline.dispatch.>";
pub const PARKED_ALL: &str = "hookline.parked.>";
pub const RETRY_ALL: &str = "hookline.retry.>";

/// JetStream's de-duplication header.
pub const MSG_ID: &str = "Nats-Msg-Id";
pub const EVENT_ID_HEADER: &str = "Hookline-Event-Id";
pub const EVENT_TYPE_HEADER: &str = "Hookline-Event-Type";
/// Kind of a config event (`tenant.created`, ...), for tools reading the stream.
pub const CONFIG_EVENT_HEADER: &str = "Hookline-Config-Event";
/// On events: the tenant's last HOOKLINE_CONFIG sequence, read from the
/// stream when ingest accepted the event; fan-out resolves the event
/// against a config index that has applied at least this much.
pub const CONFIG_SEQUENCE_HEADER: &str = "Hookline-Config-Sequence";
/// Set to `off` on events published while the tenant had webhooks off.
pub const WEBHOOKS_HEADER: &str = "Hookline-Webhooks";
/// On a retry stored as a reference (`hookline.retry.<due>.ref`): its
/// tenant, which the subject no longer names. Erasing a tenant reads it.
pub const RETRY_TENANT_HEADER: &str = "Hookline-Tenant";

/// How long an idempotency key de-duplicates, and JetStream's window for it.
pub const IDEMPOTENCY_WINDOW: Duration = Duration::from_secs(24 * 3600);

/// HOOKLINE_RETRY's duplicate window. Retries are stored without a message
/// id (see `hookline_delivery::retry_store`), so it holds only the ids of
/// retries an older version stores during a rolling upgrade. Every id in it
/// costs nats-server about 120 bytes of memory, so it is kept short.
pub const RETRY_DUPLICATE_WINDOW: Duration = Duration::from_secs(120);

/// HOOKLINE_OUTCOMES's duplicate window. Every outcome is stored with its
/// id (`<delivery>.<attempt>`), and every id in the window costs
/// nats-server about 120 bytes: at 3,500 outcomes/s a 2 minute window would
/// hold 50 MiB of them. The window only has to absorb a publish repeated at once
/// (a worker or fan-out retrying a store whose ack it did not get); an
/// attempt repeated later (a task redelivered after `HOOKLINE_ACK_WAIT`)
/// makes a second outcome for the same delivery and attempt, which the
/// projector already ignores (the attempt's row is keyed on both, and
/// statistics count only rows it inserts). Readers of the stream de-duplicate
/// on that pair (`Nats-Msg-Id`) too.
pub const OUTCOMES_DUPLICATE_WINDOW: Duration = Duration::from_secs(20);

/// HOOKLINE_DISPATCH's and HOOKLINE_PARKED's duplicate window. Every task
/// is stored with an id (see ARCHITECTURE.md's message ids), and every id
/// in the window costs nats-server memory, about 160 MiB a million
/// (README.md, "Memory of nats-server"): at the 3,400 tasks/s of the scale
/// bench's neighbours phase a 10 minute window holds 2 million of them,
/// some 330 MiB (BENCHMARKS.md). The window has to absorb a store
/// repeated after a task or event was handed out again, which comes
/// `HOOKLINE_ACK_WAIT` (60 s by default) after the first, and a retry
/// mover's repeat, which comes within its batch deadline (60 s); three
/// minutes holds both with room. A repeat later than that (an ack wait
/// set above two minutes, a mover back after a longer outage) makes a
/// second attempt with the same `webhook-id`: at least once, as everywhere.
pub const DISPATCH_DUPLICATE_WINDOW: Duration = Duration::from_secs(180);

/// Largest message HOOKLINE_INTAKE stores (payload and headers): an event's
/// limit (256 KiB of JSON, `hookline_domain::events::MAX_EVENT_BYTES`) plus
/// 4 KiB for headers such as `traceparent`. A larger publish is refused at
/// once with an error in its JetStream ack. Ingest keeps every refused intake
/// message whole on HOOKLINE_REJECTED, and this bound keeps such a record
/// well inside NATS's 1 MiB message limit.
pub const INTAKE_MAX_MESSAGE_BYTES: i32 = 260 * 1024;

// The intake and rejected subjects take the tenant as text: ingest names
// them before (or instead of) validating it. The rest take checked ids, so
// a subject never holds a token an id could not.
pub fn intake_subject(tenant: &str) -> String {
    format!("hookline.intake.{tenant}")
}
pub fn events_subject(tenant: &TenantId, event_type: EventType) -> String {
    format!("hookline.events.{}.{}", tenant.as_str(), event_type.as_str())
}
pub fn rejected_subject(tenant: &str) -> String {
    format!("hookline.rejected.{tenant}")
}
pub fn config_subject(tenant: &TenantId) -> String {
    format!("hookline.config.{}", tenant.as_str())
}
pub fn dispatch_subject(tenant: &TenantId, endpoint: &EndpointId) -> String {
    format!("hookline.dispatch.{}.{}", tenant.as_str(), endpoint.as_str())
}
pub fn outcomes_subject(tenant: &TenantId, endpoint: &EndpointId) -> String {
    format!("hookline.outcomes.{}.{}", tenant.as_str(), endpoint.as_str())
}
pub fn parked_subject(tenant: &TenantId, endpoint: &EndpointId) -> String {
    format!("hookline.parked.{}.{}", tenant.as_str(), endpoint.as_str())
}
/// A retry due in second `due` (Unix seconds, the bucket the mover reads
/// once that second has passed), stored as a reference to its event: one
/// subject per second, whatever the tenant and endpoint, so a million
/// waiting retries are a few thousand subjects in nats-server's index.
pub fn retry_subject(due: RetryBucket) -> String {
    format!("hookline.retry.{}.ref", due.0)
}
/// Every reference-layout retry, whenever due: what erasing a tenant reads
/// (by [`RETRY_TENANT_HEADER`]).
pub const RETRY_REFS: &str = "hookline.retry.*.ref";
/// A whole task due in second `due` on its tenant's and endpoint's subject:
/// the layout older versions store (one subject per retry, in effect).
/// Still read by the mover and purged by tenant; written only by tests and
/// older versions.
pub fn retry_subject_whole(due: RetryBucket, tenant: &TenantId, endpoint: &EndpointId) -> String {
    format!("hookline.retry.{}.{}.{}", due.0, tenant.as_str(), endpoint.as_str())
}
/// Every retry due in second `due`, in either layout.
pub fn retry_bucket_filter(due: RetryBucket) -> String {
    format!("hookline.retry.{}.>", due.0)
}
/// Every waiting retry of `tenant` in the older whole-task layout, whenever
/// due: what purging a tenant from HOOKLINE_RETRY filters on. (Its
/// reference-layout retries are found by [`RETRY_TENANT_HEADER`].)
pub fn retry_tenant_filter(tenant: &TenantId) -> String {
    format!("hookline.retry.*.{}.>", tenant.as_str())
}
/// The tenant and endpoint of `hookline.retry.<due>.<tenant>.<endpoint>`;
/// `None` unless both tokens are ids.
pub fn retry_tenant_and_endpoint_of(subject: &str) -> Option<(TenantId, EndpointId)> {
    ids_of(subject.strip_prefix("hookline.retry.")?.split('.').skip(1))
}

/// One bucket of HOOKLINE_RETRY: the Unix second its retries are due in.
/// It is due once it has passed, at `self + 1` s, so nothing in it is moved
/// before its time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RetryBucket(pub u64);

impl RetryBucket {
    /// The bucket of a task due at `unix_millis`.
    pub fn of_millis(unix_millis: i64) -> Self {
        Self(u64::try_from(unix_millis.div_euclid(1000)).unwrap_or(0))
    }

    /// The newest bucket that is due at `now_millis` (its second has passed).
    pub fn last_due_at(now_millis: i64) -> Self {
        Self(Self::of_millis(now_millis).0.saturating_sub(1))
    }

    pub fn next(self) -> Self {
        Self(self.0 + 1)
    }
}

impl std::fmt::Display for RetryBucket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// The durable consumer that drains one endpoint's parked tasks.
pub fn parked_consumer(endpoint: &EndpointId) -> String {
    format!("parked_{}", endpoint.as_str())
}

/// The tenant and endpoint of `hookline.<kind>.<tenant>.<endpoint>`;
/// `None` unless both tokens are ids.
pub fn tenant_and_endpoint_of(subject: &str) -> Option<(TenantId, EndpointId)> {
    ids_of(subject.split('.').skip(2))
}

/// The last two of `tokens`, when there are exactly two and they are a
/// tenant and an endpoint id.
fn ids_of<'a>(mut tokens: impl Iterator<Item = &'a str>) -> Option<(TenantId, EndpointId)> {
    match (tokens.next(), tokens.next(), tokens.next()) {
        (Some(tenant), Some(endpoint), None) => {
            Some((TenantId::parse(tenant).ok()?, EndpointId::parse(endpoint).ok()?))
        }
        _ => None,
    }
}

/// The tenant token of `hookline.<kind>.<tenant>[...]`, as text: intake
/// subjects carry whatever a publisher named, which ingest checks itself
/// (and records on HOOKLINE_REJECTED when it is no tenant id).
pub fn tenant_of(subject: &str) -> Option<&str> {
    subject.split('.').nth(2)
}

mod erase;
mod servers;
mod setup;

pub use erase::{EraseError, Erased, TenantFilter, erase_tenant, tenant_filters};

pub use servers::{Credentials, NatsServers, NatsUrlError, mask_url_list};
pub use setup::{Backoff, BadReplicas, Retry, StreamReplicas, StreamRequestError, chain};

#[derive(Debug, thiserror::Error)]
pub enum BusError {
    #[error(transparent)]
    NatsUrl(#[from] NatsUrlError),
    #[error("cannot connect to NATS at {url}: {source}")]
    Connect { url: String, source: async_nats::ConnectError },
    #[error("cannot set up stream {stream}: {source}")]
    Stream {
        stream: &'static str,
        #[source]
        source: Source,
    },
    #[error("cannot set up stream {stream}")]
    StreamSetup {
        stream: &'static str,
        #[source]
        source: StreamRequestError,
    },
    #[error(
        "HOOKLINE_STREAM_REPLICAS={replicas}: stream {stream} cannot have {replicas} replicas on this NATS \
         (a single server holds 1; a cluster needs at least as many JetStream nodes as replicas)"
    )]
    Replicas {
        stream: &'static str,
        replicas: usize,
        #[source]
        source: StreamRequestError,
    },
    #[error("shut down while waiting for NATS JetStream ({waiting_for})")]
    ShutDown { waiting_for: &'static str },
    #[error("cannot set up consumer {consumer} on {stream}: {source}")]
    Consumer {
        stream: &'static str,
        consumer: &'static str,
        #[source]
        source: Source,
    },
}

/// The error under a [`BusError`] or another crate's NATS failure: any
/// of async-nats's many request error types, kept whole for its sources.
pub type Source = Box<dyn std::error::Error + Send + Sync>;

/// Connect to NATS; the client reconnects by itself afterwards, to any
/// listed server or any server the cluster announces. The first connection
/// is made in the background too (`retry_on_initial_connect`), so a service
/// starts while NATS is still down; requests made meanwhile time out and
/// [`ensure_streams`] waits for them. A `user:password@` in the URLs logs in
/// as that NATS user (see deploy/nats/hookline.conf); the password never
/// appears in errors or logs.
pub async fn connect(servers: &NatsServers, name: &str) -> Result<async_nats::Client, BusError> {
    let mut options = async_nats::ConnectOptions::new()
        .name(name)
        .retry_on_initial_connect()
        .connection_timeout(Duration::from_secs(5));
    if let Some(c) = servers.credentials() {
        options = options.user_and_password(c.user.clone(), c.password.clone());
    }
    tracing::info!(servers = %servers, "connecting to NATS");
    options.connect(servers.addrs()).await.map_err(|source| BusError::Connect { url: servers.to_string(), source })
}

/// Retention settings an operator may tune.
#[derive(Debug, Clone)]
pub struct Retention {
    /// How long accepted events (the payloads) stay in HOOKLINE_EVENTS:
    /// the archive age (`HOOKLINE_ARCHIVE_AFTER`).
    pub events_max_age: Duration,
}

impl Default for Retention {
    fn default() -> Self {
        Self { events_max_age: Duration::from_secs(60 * 24 * 3600) }
    }
}

/// Consumers HOOKLINE_PARKED allows: one per endpoint whose parked tasks
/// are being moved back (delivery's `park`). nats-server 2.15 gives a
/// stream that sets no limit 1,000, fewer than the endpoints that may
/// recover at once after an outage of a shared host; each consumer costs
/// it about 47 KiB.
pub const PARKED_MAX_CONSUMERS: i32 = 100_000;

/// Outcomes carry no payloads, so the log can be rebuilt long after the
/// payloads are archived.
pub const OUTCOMES_MAX_AGE: Duration = Duration::from_secs(400 * 24 * 3600);

fn stream_config(name: &'static str, retention: &Retention) -> stream::Config {
    let base = stream::Config { name: name.to_owned(), storage: StorageType::File, ..Default::default() };
    let day = Duration::from_secs(24 * 3600);
    match name {
        INTAKE_STREAM => stream::Config {
            subjects: vec![INTAKE_ALL.into()],
            retention: RetentionPolicy::WorkQueue,
            max_age: 7 * day,
            duplicate_window: Duration::from_secs(120),
            max_message_size: INTAKE_MAX_MESSAGE_BYTES,
            ..base
        },
        EVENTS_STREAM => stream::Config {
            subjects: vec![EVENTS_ALL.into()],
            max_age: retention.events_max_age,
            // JetStream refuses a window longer than the stream's max age.
            duplicate_window: IDEMPOTENCY_WINDOW.min(retention.events_max_age),
            // The parking sweeper reads parked tasks' events back by
            // batched direct get, which only a stream that allows direct
            // gets answers (delivery's `park`).
            allow_direct: true,
            ..base
        },
        REJECTED_STREAM => stream::Config { subjects: vec![REJECTED_ALL.into()], max_age: 30 * day, ..base },
        CONFIG_STREAM => {
            stream::Config { subjects: vec![CONFIG_ALL.into()], duplicate_window: Duration::from_secs(120), ..base }
        }
        DISPATCH_STREAM => stream::Config {
            subjects: vec![DISPATCH_ALL.into()],
            retention: RetentionPolicy::WorkQueue,
            duplicate_window: DISPATCH_DUPLICATE_WINDOW,
            ..base
        },
        OUTCOMES_STREAM => stream::Config {
            subjects: vec![OUTCOMES_ALL.into()],
            max_age: OUTCOMES_MAX_AGE,
            duplicate_window: OUTCOMES_DUPLICATE_WINDOW,
            ..base
        },
        PARKED_STREAM => stream::Config {
            subjects: vec![PARKED_ALL.into()],
            retention: RetentionPolicy::WorkQueue,
            // Parked batches are stored again by the same repeats as tasks.
            duplicate_window: DISPATCH_DUPLICATE_WINDOW,
            max_consumers: PARKED_MAX_CONSUMERS,
            ..base
        },
        // No max age: a waiting retry leaves only when it is moved (or its
        // tenant is purged).
        RETRY_STREAM => {
            stream::Config { subjects: vec![RETRY_ALL.into()], duplicate_window: RETRY_DUPLICATE_WINDOW, ..base }
        }
        _ => unreachable!("unknown stream {name}"),
    }
}

pub const ALL_STREAMS: [&str; 8] = [
    INTAKE_STREAM,
    EVENTS_STREAM,
    REJECTED_STREAM,
    CONFIG_STREAM,
    DISPATCH_STREAM,
    OUTCOMES_STREAM,
    PARKED_STREAM,
    RETRY_STREAM,
];

/// How [`ensure_streams`] sets streams up.
#[derive(Debug, Clone, Default)]
pub struct StreamSettings {
    pub retention: Retention,
    /// `HOOKLINE_STREAM_REPLICAS`: `None` creates streams with one replica
    /// and leaves existing streams' replicas as they are (an operator's
    /// choice survives restarts); `Some(n)` creates them with `n` and
    /// changes existing ones to `n`.
    pub replicas: Option<StreamReplicas>,
    /// Apply the archive age to an existing HOOKLINE_EVENTS (the delivery
    /// role, which owns archiving).
    pub apply_retention: bool,
}

/// Create every stream that is missing and apply the replicas (and, for
/// the delivery role, the archive age) to existing ones. Other settings of
/// existing streams are left as they are.
///
/// Waits while NATS or JetStream is unavailable (not connected yet, no
/// meta leader, a stream leader being elected), with a logged back-off of
/// 0.5 s doubling to 10 s, until `shutdown`. Safe when several processes
/// start at once: a write that loses a race is retried after reading the
/// stream again, and writing the same settings twice changes nothing.
pub async fn ensure_streams(
    js: &Context,
    settings: &StreamSettings,
    shutdown: &tokio_util::sync::CancellationToken,
) -> Result<(), BusError> {
    for name in ALL_STREAMS {
        let mut backoff = Backoff::new();
        let mut short_of_nodes_since = None;
        loop {
            let source = match ensure_stream(js, name, settings).await {
                Ok(()) => break,
                Err(source) => source,
            };
            let replicas = settings.replicas.unwrap_or_default().get();
            let wait = backoff.next_wait();
            match source.retry() {
                Retry::Fatal if replicas > 1 && is_replicas_refusal(&source) => {
                    return Err(BusError::Replicas { stream: name, replicas, source });
                }
                Retry::Fatal => return Err(BusError::StreamSetup { stream: name, source }),
                Retry::Capacity => {
                    let since = *short_of_nodes_since.get_or_insert_with(std::time::Instant::now);
                    if since.elapsed() >= setup::CAPACITY_PATIENCE {
                        return Err(BusError::Replicas { stream: name, replicas, source });
                    }
                    tracing::warn!(
                        stream = name,
                        replicas,
                        error = %chain(&source),
                        retry_in = ?wait,
                        "too few JetStream nodes for HOOKLINE_STREAM_REPLICAS yet; waiting for nodes to join"
                    );
                }
                Retry::Conflict => {
                    tracing::info!(stream = name, error = %chain(&source), "stream changed meanwhile; reading it again");
                }
                Retry::Transient => tracing::warn!(
                    stream = name,
                    error = %chain(&source),
                    retry_in = ?wait,
                    "NATS JetStream not ready; waiting"
                ),
            }
            if !setup::pause(wait, shutdown).await {
                return Err(BusError::ShutDown { waiting_for: "stream set-up" });
            }
        }
    }
    Ok(())
}

fn is_replicas_refusal(e: &StreamRequestError) -> bool {
    use async_nats::jetstream::ErrorCode;
    let js = match e {
        StreamRequestError::Create(e) | StreamRequestError::Update(e) => match e.kind() {
            async_nats::jetstream::context::CreateStreamErrorKind::JetStream(js) => js,
            _ => return false,
        },
        StreamRequestError::Info(_) => return false,
    };
    matches!(js.error_code(), ErrorCode::STREAM_REPLICAS_NOT_SUPPORTED | ErrorCode::INSUFFICIENT_RESOURCES)
        || js.to_string().contains("replicas")
}

async fn ensure_stream(js: &Context, name: &'static str, settings: &StreamSettings) -> Result<(), StreamRequestError> {
    let config = stream_config(name, &settings.retention);
    let mut current = setup::create_or_scale(js, &config, settings.replicas).await?;
    if name == EVENTS_STREAM && settings.apply_retention && current.max_age != config.max_age {
        tracing::info!(stream = name, max_age = ?config.max_age, "applying HOOKLINE_ARCHIVE_AFTER to the stream");
        let updated = stream::Config {
            max_age: config.max_age,
            duplicate_window: config.duplicate_window,
            allow_direct: true,
            ..current
        };
        js.update_stream(updated).await.map_err(StreamRequestError::Update)?;
        return Ok(());
    }
    // Events streams made before the sweeper read by direct get.
    if name == EVENTS_STREAM && settings.apply_retention && !current.allow_direct {
        tracing::info!(stream = name, "allowing direct gets, with which parked tasks' events are read back");
        js.update_stream(stream::Config { allow_direct: true, ..current }).await.map_err(StreamRequestError::Update)?;
        return Ok(());
    }
    // Streams made with a longer window than this version's get the shorter
    // one: every id in it costs nats-server memory. (A parked stream may
    // need its consumer limit raised as well, below.)
    if matches!(name, RETRY_STREAM | OUTCOMES_STREAM | DISPATCH_STREAM | PARKED_STREAM)
        && current.duplicate_window > config.duplicate_window
    {
        tracing::info!(stream = name, duplicate_window = ?config.duplicate_window, "shortening the duplicate window");
        let updated = stream::Config { duplicate_window: config.duplicate_window, ..current };
        current = js.update_stream(updated).await.map_err(StreamRequestError::Update)?.config;
    }
    // Parked streams made without a consumer limit get nats-server's
    // default, 1,000 on 2.15. A server that cannot change the limit (2.9,
    // whose default is none) keeps its own.
    if name == PARKED_STREAM && current.max_consumers != PARKED_MAX_CONSUMERS {
        let updated = stream::Config { max_consumers: PARKED_MAX_CONSUMERS, ..current };
        match js.update_stream(updated).await {
            Ok(_) => tracing::info!(stream = name, max_consumers = PARKED_MAX_CONSUMERS, "raised the consumer limit"),
            Err(e) => tracing::warn!(stream = name, error = %chain(&e), max_consumers = PARKED_MAX_CONSUMERS,
                "the server keeps the stream's consumer limit; parked endpoints beyond it wait for a consumer"),
        }
        return Ok(());
    }
    // Intake streams made before the limit have none (or a larger one).
    if name == INTAKE_STREAM && !(1..=INTAKE_MAX_MESSAGE_BYTES).contains(&current.max_message_size) {
        tracing::info!(stream = name, max_message_size = INTAKE_MAX_MESSAGE_BYTES, "limiting intake message size");
        let updated = stream::Config { max_message_size: INTAKE_MAX_MESSAGE_BYTES, ..current };
        js.update_stream(updated).await.map_err(StreamRequestError::Update)?;
    }
    Ok(())
}

/// Stored publishes whose acks one process may await at once. async-nats
/// takes one permit per publish and waits when none is left, so units of
/// work that publish several messages and then await all their acks (an
/// ingest batch, a fan-out) could each hold some permits while waiting for
/// more, and deadlock once enough of them run at once (seen with 200
/// concurrent batches of 500). They take their whole share up front from
/// [`ack_budget`] instead, which is smaller than the client's limit, so the
/// client's permits never run out under them.
const ACK_BUDGET: usize = 20_000;
/// The client's limit: the budget plus room for single publishes (a worker's
/// outcome, a config command, an intake append), which hold at most one
/// permit while they wait for the next.
const MAX_ACK_INFLIGHT: usize = 2 * ACK_BUDGET;

pub fn jetstream(client: async_nats::Client) -> Context {
    jetstream::ContextBuilder::new().max_ack_inflight(MAX_ACK_INFLIGHT).build(client)
}

/// Permission to have `n` stored-publish acks outstanding (at most
/// [`ACK_BUDGET`]); taken all at once, so a holder never waits for more.
pub async fn ack_budget(n: usize) -> tokio::sync::SemaphorePermit<'static> {
    static BUDGET: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(ACK_BUDGET);
    let n = n.clamp(1, ACK_BUDGET) as u32;
    BUDGET.acquire_many(n).await.expect("the budget semaphore is never closed")
}

/// Bind a durable pull consumer, creating or updating it to `config`.
/// (nats-server 2.9 treats create and update alike, which is what we want.)
pub async fn durable(
    js: &Context,
    stream: &'static str,
    consumer: &'static str,
    config: pull::Config,
) -> Result<consumer::Consumer<pull::Config>, BusError> {
    let err = |source: Source| BusError::Consumer { stream, consumer, source };
    let config = pull::Config { durable_name: Some(consumer.to_owned()), ..config };
    // Right after start-up, or while a stream leader is being elected, the
    // request may go unanswered for a few seconds: retry for a while.
    let (mut backoff, started) = (Backoff::new(), std::time::Instant::now());
    loop {
        let attempt = async {
            let s = js.get_stream(stream).await.map_err(Source::from)?;
            s.create_consumer(config.clone()).await.map_err(Source::from)
        };
        match attempt.await {
            Ok(c) => return Ok(c),
            Err(source) if started.elapsed() > CONSUMER_PATIENCE => return Err(err(source)),
            Err(source) => {
                let wait = backoff.next_wait();
                tracing::warn!(stream, consumer, error = %source, retry_in = ?wait, "cannot bind the consumer yet; retrying");
                tokio::time::sleep(wait).await;
            }
        }
    }
}

/// How long [`durable`] retries before its caller sees the error.
const CONSUMER_PATIENCE: Duration = Duration::from_secs(120);

/// Header value as text.
pub fn header<'a>(headers: Option<&'a async_nats::HeaderMap>, name: &str) -> Option<&'a str> {
    headers.and_then(|h| h.get(name)).map(|v| v.as_str())
}

/// A JetStream message's stream sequence, read from its `$JS.ACK.` reply
/// subject (`msg.reply`, either form of ADR-15). `Message::info` reads the
/// same and also converts the publish time, work the hot path does not need
/// when it wants only the sequence (BENCHMARKS.md has the cost).
pub fn stream_sequence(reply: Option<&str>) -> Option<u64> {
    ack_number(reply, 0)
}

/// When the stream stored a JetStream message, in Unix nanoseconds, read
/// from its reply subject like [`stream_sequence`]. It is the same on every
/// redelivery of the message; with the sequence it names one stored message
/// even across a re-creation of the stream, which starts sequences at 1 again.
pub fn stored_at_nanos(reply: Option<&str>) -> Option<u64> {
    ack_number(reply, 2)
}

/// How many times JetStream has delivered the message, 1 the first time,
/// read from its reply subject like [`stream_sequence`]. More than 1 means
/// an earlier delivery was handed back, not acknowledged within the ack
/// wait, or acknowledged by an ack the server never got.
pub fn delivery_count(reply: Option<&str>) -> Option<u64> {
    ack_number(reply, -1)
}

/// The number `after_sequence` tokens after the stream sequence in a
/// `$JS.ACK.` reply subject (-1: the delivery count, 0: the sequence, 2:
/// the stored time).
fn ack_number(reply: Option<&str>, after_sequence: isize) -> Option<u64> {
    let tokens = reply?.strip_prefix("$JS.ACK.")?.as_bytes();
    // Where each token starts: <stream>.<consumer>.<delivered>.<seq>..., or
    // the same after <domain>.<account hash>.
    let (mut starts, mut n) = ([0usize; 12], 1);
    for (i, _) in tokens.iter().enumerate().filter(|(_, b)| **b == b'.') {
        if let Some(start) = starts.get_mut(n) {
            *start = i + 1;
        }
        n += 1;
    }
    let at = after_sequence.checked_add_unsigned(match n {
        7 => 3,
        n if n >= 9 => 5,
        _ => return None,
    })?;
    let at = usize::try_from(at).ok()?;
    let digits = tokens[starts[at]..].split(|b| *b == b'.').next()?;
    if digits.is_empty() {
        return None;
    }
    digits.iter().try_fold(0u64, |v, d| match d {
        b'0'..=b'9' => v.checked_mul(10)?.checked_add(u64::from(d - b'0')),
        _ => None,
    })
}

/// How [`consume`] pulls.
#[derive(Debug, Clone, Copy)]
pub struct Pull {
    /// Name for logs, e.g. `workers`.
    pub name: &'static str,
    /// Messages handled at once.
    pub concurrency: usize,
    /// Longest wait for work in flight after shutdown before giving up.
    pub drain: Duration,
}

/// Pull messages from a durable consumer and run `handle` on each, at most
/// `concurrency` at a time, until `shutdown`. A message is only taken from
/// the stream when a slot is free, so waiting work stays in JetStream; on
/// shutdown, messages pulled but not started are handed back at once (`Nak`)
/// and work in flight gets up to `drain` to finish.
pub async fn consume<F, Fut>(
    consumer: &consumer::Consumer<pull::Config>,
    pull: Pull,
    shutdown: tokio_util::sync::CancellationToken,
    handle: F,
) where
    F: Fn(jetstream::Message) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    use futures_util::StreamExt;
    let permits = std::sync::Arc::new(tokio::sync::Semaphore::new(pull.concurrency));
    'pull: while !shutdown.is_cancelled() {
        let stream = consumer
            .stream()
            .max_messages_per_batch(pull.concurrency.min(500))
            .heartbeat(Duration::from_secs(5))
            .expires(Duration::from_secs(30))
            .messages()
            .await;
        let mut messages = match stream {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(consumer = pull.name, error = %e, "cannot pull; retrying in 1s");
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = tokio::time::sleep(Duration::from_secs(1)) => continue,
                }
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
                    tracing::warn!(consumer = pull.name, error = %e, "pull error");
                    continue;
                }
                None => break,
            };
            let handle = handle.clone();
            // Boxed: the task then holds a pointer, not the handler's whole
            // state, which spawning and finishing would otherwise copy.
            tokio::spawn(Box::pin(async move {
                handle(msg).await;
                drop(permit);
            }));
        }
        if shutdown.is_cancelled() {
            let mut handed_back = 0;
            while let Ok(Some(Ok(msg))) = tokio::time::timeout(Duration::from_millis(50), messages.next()).await {
                let _ = msg.ack_with(jetstream::AckKind::Nak(None)).await;
                handed_back += 1;
            }
            if handed_back > 0 {
                tracing::info!(consumer = pull.name, handed_back, "returned unstarted messages to JetStream");
            }
            break 'pull;
        }
    }
    if tokio::time::timeout(pull.drain, permits.acquire_many(pull.concurrency as u32)).await.is_err() {
        tracing::warn!(
            consumer = pull.name,
            "work still in flight after {:?}; JetStream will redeliver it",
            pull.drain
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_sequence_reads_both_reply_forms() {
        let old = "$JS.ACK.HOOKLINE_EVENTS.fanout.1.4711.12.1732880000000000000.3";
        let new = "$JS.ACK._.acchash.HOOKLINE_EVENTS.fanout.2.4712.13.1732880000000000000.0.tok";
        assert_eq!(stream_sequence(Some(old)), Some(4711));
        assert_eq!(stream_sequence(Some(new)), Some(4712));
        assert_eq!(stream_sequence(Some(&new[..new.len() - 4])), Some(4712));
        assert_eq!(stream_sequence(Some("_INBOX.abc")), None);
        assert_eq!(stream_sequence(Some("$JS.ACK.S.c.1.x.1.1.0")), None);
        assert_eq!(stream_sequence(None), None);
        assert_eq!(stream_sequence(Some("$JS.ACK.S.c.1..1.1.0")), None);
        assert_eq!(stream_sequence(Some("$JS.ACK.S.c.1.99999999999999999999.1.1.0")), None);
    }

    #[test]
    fn stored_time_reads_both_reply_forms_and_ignores_the_delivery_count() {
        let old = "$JS.ACK.HOOKLINE_INTAKE.ingest.1.4711.12.1732880000000000001.3";
        let again = "$JS.ACK.HOOKLINE_INTAKE.ingest.2.4711.13.1732880000000000001.3";
        let new = "$JS.ACK._.acchash.HOOKLINE_INTAKE.ingest.2.4712.13.1732880000000000002.0.tok";
        assert_eq!(stored_at_nanos(Some(old)), Some(1_732_880_000_000_000_001));
        assert_eq!(stored_at_nanos(Some(again)), stored_at_nanos(Some(old)));
        assert_eq!(stored_at_nanos(Some(new)), Some(1_732_880_000_000_000_002));
        assert_eq!(stored_at_nanos(Some("$JS.ACK.S.c.1.1.1.x.0")), None);
        assert_eq!(stored_at_nanos(Some("_INBOX.abc")), None);
    }

    #[test]
    fn delivery_count_reads_both_reply_forms() {
        let old = "$JS.ACK.HOOKLINE_EVENTS.fanout.1.4711.12.1732880000000000000.3";
        let again = "$JS.ACK._.acchash.HOOKLINE_EVENTS.fanout.7.4712.13.1732880000000000000.0.tok";
        assert_eq!(delivery_count(Some(old)), Some(1));
        assert_eq!(delivery_count(Some(again)), Some(7));
        assert_eq!(delivery_count(Some("_INBOX.abc")), None);
        assert_eq!(delivery_count(None), None);
    }

    #[test]
    fn subjects_split_back_into_tenant_and_endpoint() {
        let tenant = TenantId::parse("acme-dental_01").unwrap();
        let endpoint = EndpointId::parse("ep_01JABCDEFGHJKMNPQRSTVWXYZ0").unwrap();
        let both = Some((tenant.clone(), endpoint.clone()));
        let s = parked_subject(&tenant, &endpoint);
        assert_eq!(tenant_and_endpoint_of(&s), both);
        let d = dispatch_subject(&tenant, &endpoint);
        assert_eq!(tenant_and_endpoint_of(&d), both);
        assert_eq!(tenant_and_endpoint_of("hookline.parked.t"), None);
        assert_eq!(tenant_and_endpoint_of("hookline.parked.t.e.x"), None);
        assert_eq!(tenant_and_endpoint_of("hookline.parked.ACME.ep_01JABCDEFGHJKMNPQRSTVWXYZ0"), None);
        assert_eq!(tenant_and_endpoint_of("hookline.parked.acme.ep_x"), None);
    }

    #[test]
    fn retry_subjects_name_the_due_second_and_purge_by_tenant() {
        let tenant = TenantId::parse("acme-dental_01").unwrap();
        let endpoint = EndpointId::parse("ep_01JABCDEFGHJKMNPQRSTVWXYZ0").unwrap();
        let due = RetryBucket::of_millis(1_733_480_000_999);
        assert_eq!(due, RetryBucket(1_733_480_000));
        let s = retry_subject_whole(due, &tenant, &endpoint);
        assert_eq!(s, "hookline.retry.1733480000.acme-dental_01.ep_01JABCDEFGHJKMNPQRSTVWXYZ0");
        assert_eq!(retry_subject(due), "hookline.retry.1733480000.ref");
        assert_eq!(retry_tenant_and_endpoint_of(&retry_subject(due)), None);
        assert_eq!(retry_tenant_and_endpoint_of(&s), Some((tenant.clone(), endpoint.clone())));
        assert_eq!(retry_bucket_filter(due), "hookline.retry.1733480000.>");
        assert_eq!(retry_tenant_filter(&tenant), "hookline.retry.*.acme-dental_01.>");
        assert_eq!(retry_tenant_and_endpoint_of("hookline.retry.1.t"), None);
        assert_eq!(retry_tenant_and_endpoint_of("hookline.parked.t.e"), None);
        // A bucket is due once its whole second has passed.
        assert_eq!(RetryBucket::last_due_at(1_733_480_001_000), due);
        assert_eq!(RetryBucket::last_due_at(1_733_480_000_999), RetryBucket(1_733_479_999));
        assert_eq!(due.next(), RetryBucket(1_733_480_001));
    }
}
