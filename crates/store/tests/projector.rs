//! The outcomes projector against a real nats-server and Postgres.
//!
//! HOOKLINE_OUTCOMES keeps an outcome's id (`<delivery>.<attempt>`) only
//! for a short duplicate window, so an attempt repeated later (a task
//! redelivered after its ack wait) is stored a second time. The log must
//! still hold it once, and the statistics count it once.

use std::time::Duration;

use async_nats::jetstream::{Context, message::PublishMessage};
use hookline_bus::{OUTCOMES_DUPLICATE_WINDOW, StreamSettings, outcomes_subject};
use hookline_domain::{
    delivery::{AttemptOutcome, AttemptState},
    event_type::EventType,
    events::Timestamp,
    ids::{DeliveryId, EndpointId, EventId, TenantId},
};
use hookline_store::projector::{self, Projection};
use hookline_testkit::{NatsServer, TestDb};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

fn outcome(tenant: &TenantId, endpoint: &EndpointId, started_at: &str) -> AttemptOutcome {
    AttemptOutcome {
        delivery_id: DeliveryId::generate(),
        delivery_created_at: Timestamp::now(),
        replay_of: None,
        event_id: EventId::generate(),
        event_seq: 1,
        tenant_id: tenant.clone(),
        endpoint_id: endpoint.clone(),
        event_type: EventType::CustomerUpdated,
        attempt: 1,
        state: AttemptState::Succeeded,
        status_code: Some(200),
        error_kind: None,
        error: None,
        started_at: started_at.parse().unwrap(),
        duration_ms: 12,
        next_attempt_at: None,
        response_excerpt: None,
        request: None,
        trace_id: None,
        test: false,
    }
}

async fn store(js: &Context, outcome: &AttemptOutcome) -> u64 {
    let publish =
        PublishMessage::build().payload(serde_json::to_vec(outcome).unwrap().into()).message_id(outcome.msg_id());
    let ack = js.send_publish(outcomes_subject(&outcome.tenant_id, &outcome.endpoint_id), publish).await.unwrap();
    ack.await.unwrap().sequence
}

async fn count(pool: &PgPool, sql: &'static str, endpoint: &EndpointId) -> i64 {
    sqlx::query_scalar(sql).bind(endpoint.as_str()).fetch_one(pool).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_attempt_stored_twice_outside_the_outcomes_window_is_one_row_and_counted_once() {
    let nats = NatsServer::start().unwrap();
    let js = nats.jetstream().await;
    hookline_bus::ensure_streams(&js, &StreamSettings::default(), &CancellationToken::new()).await.unwrap();
    let info = js.get_stream("HOOKLINE_OUTCOMES").await.unwrap().get_info().await.unwrap();
    assert_eq!(info.config.duplicate_window, OUTCOMES_DUPLICATE_WINDOW, "the stream is made with the short window");
    // The second copy must reach the stream, as it does once the window
    // has passed; the test does not wait 20 s for that.
    let mut config = info.config;
    config.duplicate_window = Duration::from_secs(1);
    js.update_stream(config).await.unwrap();

    let (tenant, endpoint) = (TenantId::parse("acme").unwrap(), EndpointId::generate());
    let first = outcome(&tenant, &endpoint, "2026-12-06T10:00:00.000Z");
    // The same attempt, made again after its task came back: later, with
    // the same delivery id and attempt number.
    let repeat = AttemptOutcome { started_at: "2026-12-06T10:01:05.000Z".parse().unwrap(), ..first.clone() };
    let other = outcome(&tenant, &endpoint, "2026-12-06T10:00:30.000Z");
    store(&js, &first).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    store(&js, &other).await;

    let db = TestDb::create().await.unwrap();
    let pool = hookline_store::connect(db.url()).await.unwrap();
    let shutdown = CancellationToken::new();
    let projecting = tokio::spawn(projector::run(js.clone(), pool.clone(), shutdown.clone()));
    let applied = |seq: u64| {
        let pool = pool.clone();
        async move { (projector::stored_offset(&pool, Projection::Outcomes).await.unwrap() >= seq).then_some(()) }
    };
    hookline_testkit::eventually(Duration::from_secs(20), "the first two outcomes applied", || applied(2))
        .await
        .unwrap();
    // The repeat comes in a later batch, as it does a minute later.
    let last = store(&js, &repeat).await;
    assert_eq!(last, 3, "the repeat is stored too");
    hookline_testkit::eventually(Duration::from_secs(20), "the repeat applied", || applied(last)).await.unwrap();
    shutdown.cancel();
    projecting.await.unwrap();

    let attempts = "SELECT count(*) FROM attempts WHERE endpoint_id = $1";
    assert_eq!(count(&pool, attempts, &endpoint).await, 2, "one row per delivery and attempt");
    let first_kept = "SELECT count(*) FROM attempts WHERE endpoint_id = $1 AND started_at = '2026-12-06T10:00:00Z'";
    assert_eq!(count(&pool, first_kept, &endpoint).await, 1, "the first copy's row stays");
    let counted = "SELECT coalesce(sum(attempts), 0)::int8 FROM endpoint_stats_hourly WHERE endpoint_id = $1";
    assert_eq!(count(&pool, counted, &endpoint).await, 2, "the statistics count the repeat once");
    let accepted = "SELECT coalesce(sum(accepted), 0)::int8 FROM endpoint_stats_hourly WHERE endpoint_id = $1";
    assert_eq!(count(&pool, accepted, &endpoint).await, 2);
}

/// A HOOKLINE_OUTCOMES made with the 2 minute default window gets the short
/// one when the streams are set up again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outcomes_stream_made_with_the_default_window_is_shortened_on_start() {
    let nats = NatsServer::start().unwrap();
    let js = nats.jetstream().await;
    js.create_stream(async_nats::jetstream::stream::Config {
        name: "HOOKLINE_OUTCOMES".into(),
        subjects: vec![hookline_bus::OUTCOMES_ALL.into()],
        storage: async_nats::jetstream::stream::StorageType::File,
        duplicate_window: Duration::from_secs(120),
        ..Default::default()
    })
    .await
    .unwrap();
    hookline_bus::ensure_streams(&js, &StreamSettings::default(), &CancellationToken::new()).await.unwrap();
    let info = js.get_stream("HOOKLINE_OUTCOMES").await.unwrap().get_info().await.unwrap();
    assert_eq!(info.config.duplicate_window, OUTCOMES_DUPLICATE_WINDOW);
}
