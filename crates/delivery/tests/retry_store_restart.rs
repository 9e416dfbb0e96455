//! The retry store's mover started a day after its retries were stored,
//! against a real nats-server: it finds the due seconds that hold tasks
//! without asking about every second since the oldest stored retry. And
//! the delivery streams' short duplicate windows: set on streams made with
//! a longer one, and a retry copy stored outside HOOKLINE_RETRY's reaches
//! HOOKLINE_DISPATCH once.
//!
//! And the two layouts a waiting retry has: a reference to its event
//! (`hookline.retry.<due>.ref`, what this version stores), read back whole
//! when moved or recorded as `event_expired` when the event is gone; and
//! the whole task an older version stored on
//! `hookline.retry.<due>.<tenant>.<endpoint>`, moved as it is.
//!
//! And a disabled or deleted endpoint's retries: recorded `dropped` from
//! their references when due, without their events read back.
//!
//! These tests live beside the delivery crate, not in `tests/e2e`, because
//! it moves the mover's clock a day ahead (`run_with_clock`), which only
//! an in-process mover allows; the end-to-end tests run the binary.

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use futures_util::StreamExt;
use hookline_bus::{DISPATCH_DUPLICATE_WINDOW, RetryBucket, StreamSettings, retry_subject_whole};
use hookline_domain::{
    config::{Command, ContactPatch},
    endpoint::{EndpointUrl, Layout, Plan},
    ids::{EndpointId, TenantId},
};
use hookline_tenants::{Commands, Directory};
use hookline_testkit::NatsServer;
use tokio_util::sync::CancellationToken;

const DAY: i64 = 24 * 3600;

async fn messages(js: &async_nats::jetstream::Context, stream: &str) -> u64 {
    js.get_stream(stream).await.unwrap().get_info().await.unwrap().state.messages
}

/// A nats-server with Hookline's streams.
async fn with_streams() -> (NatsServer, async_nats::jetstream::Context) {
    let nats = NatsServer::start().unwrap();
    let js = nats.jetstream().await;
    ensure_streams(&js).await;
    (nats, js)
}

async fn ensure_streams(js: &async_nats::jetstream::Context) {
    let settings = StreamSettings { retention: Default::default(), replicas: None, apply_retention: false };
    hookline_bus::ensure_streams(js, &settings, &CancellationToken::new()).await.unwrap();
}

/// A mover in a task of its own, on its own connection and config follower
/// (as in a delivery process), its clock `ahead_ms` ahead of this one.
async fn spawn_mover(
    nats: &NatsServer,
    shutdown: &CancellationToken,
    ahead_ms: i64,
) -> tokio::task::JoinHandle<Result<(), hookline_bus::BusError>> {
    let js = nats.jetstream().await;
    let directory = Directory::start(&js, shutdown.clone()).await.unwrap();
    tokio::spawn(hookline_delivery::retry_store::run_with_clock(js, directory, shutdown.clone(), move || {
        chrono::Utc::now().timestamp_millis() + ahead_ms
    }))
}

/// JetStream API requests whose subject `counts`, counted on the server
/// from now until the returned task is aborted.
async fn api_requests(nats: &NatsServer, counts: fn(&str) -> bool) -> (Arc<AtomicU64>, tokio::task::JoinHandle<()>) {
    let watcher = nats.client().await;
    let mut api = watcher.subscribe("$JS.API.>").await.unwrap();
    watcher.flush().await.unwrap();
    let requests = Arc::new(AtomicU64::new(0));
    let counter = tokio::spawn({
        let requests = requests.clone();
        async move {
            let _watcher = watcher;
            while let Some(request) = api.next().await {
                if counts(request.subject.as_str()) {
                    requests.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    });
    (requests, counter)
}

/// The tenant `acme`, made as subscriptions makes tenants, and what
/// subscriptions changes it with.
struct Acme {
    config: Commands,
    directory: Directory,
}

impl Acme {
    async fn create(js: &async_nats::jetstream::Context) -> Self {
        let directory = Directory::start(js, CancellationToken::new()).await.unwrap();
        let acme = Self { config: Commands::new(js.clone(), directory.clone()), directory };
        acme.execute(Command::CreateTenant {
            plan: Plan::Business,
            webhooks_enabled: true,
            contact: ContactPatch::default(),
        })
        .await;
        acme
    }

    async fn execute(&self, command: Command) {
        self.config.execute(&TenantId::parse("acme").unwrap(), command).await.unwrap();
    }

    /// A new enabled endpoint.
    async fn endpoint(&self) -> EndpointId {
        let endpoints = || -> Vec<EndpointId> {
            let tenant = self.directory.tenant(&TenantId::parse("acme").unwrap()).unwrap();
            tenant.endpoints.keys().cloned().collect()
        };
        let before = endpoints();
        self.execute(Command::CreateEndpoint {
            url: EndpointUrl::parse("https://erp.example.com/hooks").unwrap(),
            email: None,
            auth_header: None,
            event_types: Vec::new(),
            layout: Layout::Envelope,
            enabled: true,
            description: String::new(),
            rate_limit: None,
            filters: Vec::new(),
        })
        .await;
        endpoints().into_iter().find(|e| !before.contains(e)).expect("the new endpoint")
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mover_started_a_day_late_moves_every_due_retry_oldest_first_with_a_few_hundred_requests() {
    let (nats, js) = with_streams().await;
    let tenant = TenantId::parse("acme").unwrap();
    let endpoint = EndpointId::generate();
    // One retry due every hour of the coming day, stored now.
    let now = chrono::Utc::now().timestamp();
    const RETRIES: i64 = 24;
    for h in 0..RETRIES {
        let due = RetryBucket((now + 60 + h * 3600) as u64);
        let publish = async_nats::jetstream::message::PublishMessage::build()
            .payload(format!("{{\"hour\":{h}}}").into())
            .message_id(format!("d{h}.2"));
        js.send_publish(retry_subject_whole(due, &tenant, &endpoint), publish).await.unwrap().await.unwrap();
    }
    assert_eq!(messages(&js, "HOOKLINE_RETRY").await, RETRIES as u64);

    // Every JetStream API request the mover makes, counted on the server.
    let (requests, counter) = api_requests(&nats, |_| true).await;

    // A day and two minutes later: every retry is due, the oldest stored a day ago.
    let shutdown = CancellationToken::new();
    let mover = spawn_mover(&nats, &shutdown, (DAY + 120) * 1000).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while messages(&js, "HOOKLINE_DISPATCH").await < RETRIES as u64 {
        assert!(tokio::time::Instant::now() < deadline, "every due retry moved within 60 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The mover's next rounds, caught up, look at a second or two each.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    shutdown.cancel();
    mover.await.unwrap().unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    counter.abort();
    let requests = requests.load(Ordering::Relaxed);

    assert_eq!(messages(&js, "HOOKLINE_RETRY").await, 0, "the retry store is empty");
    assert_eq!(messages(&js, "HOOKLINE_DISPATCH").await, RETRIES as u64, "each retry moved once");
    // Oldest first: HOOKLINE_DISPATCH holds them in the order they were due.
    let dispatch = js.get_stream("HOOKLINE_DISPATCH").await.unwrap();
    for (seq, h) in (1..=RETRIES as u64).zip(0..RETRIES) {
        let msg = dispatch.get_raw_message(seq).await.unwrap();
        assert_eq!(&msg.payload[..], format!("{{\"hour\":{h}}}").as_bytes(), "message {seq} is hour {h}'s retry");
    }
    // A walk over every second since the oldest stored retry asks 86,520
    // times; skipping empty spans of seconds, about 2 × 86,520 / SPAN plus
    // a halving and a move per non-empty second.
    // A server before 2.10 ignores a consumer's several filters, so the
    // mover falls back to that walk there; it must still move every retry
    // (checked above), and ask no more than the walk does.
    let seconds = (DAY + 180) as u64;
    let (major, minor) = server_version(&nats.client().await);
    let bound = if (major, minor) >= (2, 10) {
        2 * seconds / hookline_delivery::retry_store::SPAN + RETRIES as u64 * 40 + 100
    } else {
        seconds + RETRIES as u64 * 40 + 1000
    };
    eprintln!("JetStream API requests while moving {RETRIES} retries a day late: {requests} (bound {bound})");
    assert!(requests <= bound, "{requests} requests; at most {bound} expected (one per second would be {seconds})");
}

/// The server's (major, minor) version, from what it told the client.
fn server_version(nats: &async_nats::Client) -> (u32, u32) {
    let version = nats.server_info().version;
    let mut parts = version.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
    (parts.next().unwrap_or(0), parts.next().unwrap_or(0))
}

/// The delivery streams made with the 10 minute window of older versions
/// get this version's shorter one when the streams are set up again (every
/// id in a window costs nats-server memory), and a parked stream its
/// consumer limit besides.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_made_with_a_longer_duplicate_window_are_shortened_on_start() {
    use async_nats::jetstream::stream::{Config, RetentionPolicy, StorageType};
    let nats = NatsServer::start().unwrap();
    let js = nats.jetstream().await;
    let old = [
        ("HOOKLINE_RETRY", hookline_bus::RETRY_ALL, RetentionPolicy::Limits, hookline_bus::RETRY_DUPLICATE_WINDOW),
        ("HOOKLINE_DISPATCH", hookline_bus::DISPATCH_ALL, RetentionPolicy::WorkQueue, DISPATCH_DUPLICATE_WINDOW),
        ("HOOKLINE_PARKED", hookline_bus::PARKED_ALL, RetentionPolicy::WorkQueue, DISPATCH_DUPLICATE_WINDOW),
    ];
    for (name, subjects, retention, _) in old {
        let config = Config {
            name: name.into(),
            subjects: vec![subjects.into()],
            retention,
            storage: StorageType::File,
            duplicate_window: Duration::from_secs(600),
            ..Default::default()
        };
        js.create_stream(config).await.unwrap();
    }
    ensure_streams(&js).await;
    for (name, _, _, window) in old {
        let config = js.get_stream(name).await.unwrap().get_info().await.unwrap().config;
        assert!(window < Duration::from_secs(600), "{name}: this version's window is the shorter one");
        assert_eq!(config.duplicate_window, window, "{name}: the window is shortened");
        if name == "HOOKLINE_PARKED" && server_version(&nats.client().await) >= (2, 10) {
            assert_eq!(config.max_consumers, hookline_bus::PARKED_MAX_CONSUMERS, "and its consumer limit raised");
        }
    }
}

/// A retry stored twice further apart than HOOKLINE_RETRY's duplicate
/// window (an attempt repeated after a lost ack) waits as two copies; the
/// mover stores both on HOOKLINE_DISPATCH under their one message id, and
/// HOOKLINE_DISPATCH keeps one. The test shortens the retry store's window
/// to 1 s so that the second copy is not refused at the store.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_stored_twice_outside_the_retry_window_reaches_dispatch_once() {
    let (nats, js) = with_streams().await;
    let mut config = js.get_stream("HOOKLINE_RETRY").await.unwrap().get_info().await.unwrap().config;
    config.duplicate_window = Duration::from_secs(1);
    js.update_stream(config).await.unwrap();
    let (tenant, endpoint) = (TenantId::parse("acme").unwrap(), EndpointId::generate());
    let now = chrono::Utc::now().timestamp();
    // The first copy, and the repeat stored later and due later.
    for (copy, due_in) in [(1, 60), (2, 120)] {
        let publish = async_nats::jetstream::message::PublishMessage::build()
            .payload(format!("{{\"copy\":{copy}}}").into())
            .message_id("dlv_repeated.2");
        let due = RetryBucket((now + due_in) as u64);
        js.send_publish(retry_subject_whole(due, &tenant, &endpoint), publish).await.unwrap().await.unwrap();
        tokio::time::sleep(Duration::from_millis(1500)).await;
    }
    assert_eq!(messages(&js, "HOOKLINE_RETRY").await, 2, "both copies wait");

    // Ten minutes later both are due.
    let shutdown = CancellationToken::new();
    let mover = spawn_mover(&nats, &shutdown, 600_000).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while messages(&js, "HOOKLINE_RETRY").await > 0 {
        assert!(tokio::time::Instant::now() < deadline, "both copies moved within 60 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    shutdown.cancel();
    mover.await.unwrap().unwrap();
    assert_eq!(messages(&js, "HOOKLINE_DISPATCH").await, 1, "the second copy is a duplicate on dispatch");
    let first = js.get_stream("HOOKLINE_DISPATCH").await.unwrap().get_raw_message(1).await.unwrap();
    assert_eq!(&first.payload[..], b"{\"copy\":1}");
}

/// An event stored on HOOKLINE_EVENTS for `tenant`: (its sequence, the event).
async fn store_event(js: &async_nats::jetstream::Context, tenant: &str) -> (u64, hookline_domain::events::StoredEvent) {
    store_event_with(js, tenant, false).await
}

/// [`store_event`], a test event (`SendTestEvent`'s) when `test`.
async fn store_event_with(
    js: &async_nats::jetstream::Context,
    tenant: &str,
    test: bool,
) -> (u64, hookline_domain::events::StoredEvent) {
    let now = hookline_domain::events::Timestamp::now();
    let event: hookline_domain::events::StoredEvent = serde_json::from_value(serde_json::json!({
        "id": hookline_domain::ids::EventId::generate(),
        "tenant_id": tenant,
        "type": "customer.created",
        "occurred_at": now,
        "received_at": now,
        "data": {"customer_id": "cus_1", "name": "Ada"},
        "test": test,
    }))
    .unwrap();
    let subject = format!("hookline.events.{tenant}.customer.created");
    let ack = js.publish(subject, serde_json::to_vec(&event).unwrap().into()).await.unwrap().await.unwrap();
    (ack.sequence, event)
}

/// The task for attempt 2 of a delivery of `event` to `endpoint`, due at `due`.
fn retry_task(
    seq: u64,
    event: &hookline_domain::events::StoredEvent,
    endpoint: &EndpointId,
    due: RetryBucket,
) -> hookline_domain::delivery::DispatchTask {
    let due = chrono::DateTime::from_timestamp(due.0 as i64, 0).unwrap();
    hookline_domain::delivery::DispatchTask {
        delivery_id: hookline_domain::ids::DeliveryId::generate(),
        created_at: hookline_domain::events::Timestamp::now(),
        endpoint_id: endpoint.clone(),
        event_seq: seq,
        replay_of: None,
        attempt: 2,
        not_before: Some(hookline_domain::events::Timestamp::from_utc(due)),
        event: event.clone(),
    }
}

/// Store `task` in the retry store as this version's workers do: a
/// reference on its due second's subject, the tenant in a header.
async fn store_ref(
    js: &async_nats::jetstream::Context,
    task: &hookline_domain::delivery::DispatchTask,
    due: RetryBucket,
) {
    let task_ref = serde_json::to_vec(&hookline_domain::delivery::TaskRef::from(task)).unwrap();
    let tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let publish = hookline_delivery::retry_store::stored_ref(task_ref.into(), &task.event.tenant_id, tp);
    js.send_publish(hookline_bus::retry_subject(due), publish).await.unwrap().await.unwrap();
}

/// Run a mover whose clock is `ahead_ms` ahead until HOOKLINE_RETRY is empty.
async fn move_everything(nats: &NatsServer, js: &async_nats::jetstream::Context, ahead_ms: i64) {
    let shutdown = CancellationToken::new();
    let mover = spawn_mover(nats, &shutdown, ahead_ms).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while messages(js, "HOOKLINE_RETRY").await > 0 {
        assert!(tokio::time::Instant::now() < deadline, "every retry moved within 60 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    shutdown.cancel();
    mover.await.unwrap().unwrap();
}

/// Every message of `stream`, in order.
async fn all_messages(
    js: &async_nats::jetstream::Context,
    stream: &str,
) -> Vec<async_nats::jetstream::message::StreamMessage> {
    let s = js.get_stream(stream).await.unwrap();
    let state = s.get_info().await.unwrap().state;
    let mut out = Vec::new();
    for seq in state.first_sequence..=state.last_sequence {
        if let Ok(m) = s.get_raw_message(seq).await {
            out.push(m);
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_stored_as_references_and_whole_by_an_older_version_both_reach_dispatch_as_whole_tasks() {
    let (nats, js) = with_streams().await;
    let (tenant, endpoint) = (TenantId::parse("acme").unwrap(), Acme::create(&js).await.endpoint().await);
    let (seq, event) = store_event(&js, "acme").await;
    let now = chrono::Utc::now().timestamp() as u64;
    let (old_due, new_due) = (RetryBucket(now + 60), RetryBucket(now + 61));
    // An older version's retry: the whole task with its message id on the
    // endpoint's own subject.
    let old = retry_task(seq, &event, &endpoint, old_due);
    let publish = async_nats::jetstream::message::PublishMessage::build()
        .payload(serde_json::to_vec(&old).unwrap().into())
        .message_id(old.msg_id());
    js.send_publish(retry_subject_whole(old_due, &tenant, &endpoint), publish).await.unwrap().await.unwrap();
    // This version's: a reference on the second's one subject.
    let new = retry_task(seq, &event, &endpoint, new_due);
    store_ref(&js, &new, new_due).await;
    let stored = all_messages(&js, "HOOKLINE_RETRY").await;
    assert_eq!(stored[1].subject.as_str(), format!("hookline.retry.{}.ref", new_due.0));
    assert!(!String::from_utf8_lossy(&stored[1].payload).contains("Ada"), "the reference holds no payload");
    assert!(stored[1].headers.get("Nats-Msg-Id").is_none(), "and no message id");

    move_everything(&nats, &js, 600_000).await;
    let moved = all_messages(&js, "HOOKLINE_DISPATCH").await;
    assert_eq!(moved.len(), 2, "both retries moved");
    for (msg, task) in moved.iter().zip([&old, &new]) {
        assert_eq!(msg.subject.as_str(), format!("hookline.dispatch.acme.{endpoint}"));
        let got: hookline_domain::delivery::DispatchTask = serde_json::from_slice(&msg.payload).unwrap();
        assert_eq!(got.delivery_id, task.delivery_id);
        assert_eq!((got.attempt, got.not_before.as_ref()), (2, task.not_before.as_ref()));
        assert_eq!(got.event.id, event.id, "the event is in the task again");
        assert_eq!(got.event.data.get(), event.data.get());
        assert_eq!(msg.headers.get("Nats-Msg-Id").map(|v| v.as_str().to_owned()), Some(task.msg_id()));
    }
    assert!(moved[1].headers.get("traceparent").is_some(), "the trace continues");
    assert_eq!(messages(&js, "HOOKLINE_OUTCOMES").await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiting_retry_whose_event_was_purged_is_recorded_as_event_expired_not_lost() {
    let (nats, js) = with_streams().await;
    let endpoint = Acme::create(&js).await.endpoint().await;
    let (seq, event) = store_event(&js, "acme").await;
    let due = RetryBucket(chrono::Utc::now().timestamp() as u64 + 60);
    let task = retry_task(seq, &event, &endpoint, due);
    store_ref(&js, &task, due).await;
    js.get_stream("HOOKLINE_EVENTS").await.unwrap().purge().await.unwrap();

    move_everything(&nats, &js, 600_000).await;
    assert_eq!(messages(&js, "HOOKLINE_DISPATCH").await, 0, "nothing to send");
    let outcomes = all_messages(&js, "HOOKLINE_OUTCOMES").await;
    assert_eq!(outcomes.len(), 1, "the retry's end is recorded");
    assert_eq!(outcomes[0].subject.as_str(), format!("hookline.outcomes.acme.{endpoint}"));
    let outcome: serde_json::Value = serde_json::from_slice(&outcomes[0].payload).unwrap();
    assert_eq!(outcome["delivery_id"], task.delivery_id.as_str());
    assert_eq!(outcome["state"], "failed");
    assert_eq!(outcome["error_kind"], "event_expired");
    assert_eq!(outcome["attempt"], 2);
}

/// The same retry stored twice as a reference (no message id; an attempt
/// repeated after a lost ack, its copy due as much later as the repeat
/// came) reaches HOOKLINE_DISPATCH once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reference_retry_stored_twice_a_minute_apart_reaches_dispatch_once() {
    let (nats, js) = with_streams().await;
    let endpoint = Acme::create(&js).await.endpoint().await;
    let (seq, event) = store_event(&js, "acme").await;
    let now = chrono::Utc::now().timestamp() as u64;
    let task = retry_task(seq, &event, &endpoint, RetryBucket(now + 60));
    store_ref(&js, &task, RetryBucket(now + 60)).await;
    store_ref(&js, &task, RetryBucket(now + 120)).await;
    assert_eq!(messages(&js, "HOOKLINE_RETRY").await, 2, "both copies wait");
    move_everything(&nats, &js, 600_000).await;
    assert_eq!(messages(&js, "HOOKLINE_DISPATCH").await, 1, "the second copy is a duplicate on dispatch");
}

/// An endpoint disabled (auto-disabled after days of failure, say) or
/// deleted while its retries wait: each is recorded `dropped`
/// (`endpoint_unavailable`) from its reference when it comes due, as the
/// workers would record it, without its event read back from
/// HOOKLINE_EVENTS and without a trip through HOOKLINE_DISPATCH. A test
/// event's retry says it was a test.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disabled_or_deleted_endpoints_due_retries_are_recorded_dropped_without_their_events_read_back() {
    let (nats, js) = with_streams().await;
    let acme = Acme::create(&js).await;
    let (disabled, deleted) = (acme.endpoint().await, acme.endpoint().await);
    let (seq, event) = store_event(&js, "acme").await;
    let (test_seq, test_event) = store_event_with(&js, "acme", true).await;
    let due = RetryBucket(chrono::Utc::now().timestamp() as u64 + 60);
    let tasks = [
        retry_task(seq, &event, &disabled, due),
        retry_task(test_seq, &test_event, &disabled, due),
        retry_task(seq, &event, &deleted, due),
    ];
    for task in &tasks {
        store_ref(&js, task, due).await;
    }
    acme.execute(Command::DisableEndpoint { endpoint_id: disabled.clone(), reason: "failing for days".into() }).await;
    acme.execute(Command::DeleteEndpoint { endpoint_id: deleted.clone() }).await;

    // Every read of HOOKLINE_EVENTS (a message get, direct or not), counted on the server.
    let (reads, counter) = api_requests(&nats, |subject| subject.contains("GET.HOOKLINE_EVENTS")).await;
    move_everything(&nats, &js, 600_000).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    counter.abort();

    assert_eq!(messages(&js, "HOOKLINE_DISPATCH").await, 0, "nothing goes to the workers");
    assert_eq!(reads.load(Ordering::Relaxed), 0, "no event was read back");
    let outcomes = all_messages(&js, "HOOKLINE_OUTCOMES").await;
    assert_eq!(outcomes.len(), tasks.len(), "each retry's end is recorded");
    for (msg, task) in outcomes.iter().zip(&tasks) {
        assert_eq!(msg.subject.as_str(), format!("hookline.outcomes.acme.{}", task.endpoint_id));
        let outcome: serde_json::Value = serde_json::from_slice(&msg.payload).unwrap();
        assert_eq!(outcome["delivery_id"], task.delivery_id.as_str());
        assert_eq!((&outcome["state"], &outcome["error_kind"]), (&"dropped".into(), &"endpoint_unavailable".into()));
        let why = if task.endpoint_id == disabled { "endpoint is disabled" } else { "endpoint was deleted" };
        assert_eq!(outcome["error"], why);
        assert_eq!((&outcome["attempt"], &outcome["event_type"]), (&2.into(), &"customer.created".into()));
        assert_eq!(outcome["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736", "the trace continues");
        assert_eq!(outcome.get("test").and_then(|t| t.as_bool()).unwrap_or(false), task.event.test);
        assert_eq!(
            msg.headers.get("Nats-Msg-Id").map(|v| v.as_str().to_owned()),
            Some(format!("{}.2", task.delivery_id)),
            "the message id the workers would give it"
        );
    }
}
