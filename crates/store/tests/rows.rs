//! Log rows read back typed from a real Postgres: ids and states are parsed
//! once, as the row is read, and a row that holds something else is refused
//! naming its column and value.

use std::error::Error as _;

use chrono::{TimeDelta, Utc};
use hookline_domain::{
    event_type::EventType,
    ids::{DeliveryId, EndpointId, EventId, JobId, TenantId},
};
use hookline_store::{
    StoreError,
    queries::{self, DeliveryFilter, DeliveryState, JobState, UnreadableValue},
};
use hookline_testkit::db::TestDb;
use sqlx::PgPool;

async fn insert_delivery(pool: &PgPool, id: &str, tenant: &str, endpoint: &str, event: &str, state: &str) {
    sqlx::query(
        "INSERT INTO deliveries (id, tenant_id, endpoint_id, event_id, event_type, event_seq, created_at,
                                 last_attempt_at, attempt_count, state, replay_of)
         VALUES ($1, $2, $3, $4, 'customer.updated', 7, now(), now(), 1, $5, $6)",
    )
    .bind(id)
    .bind(tenant)
    .bind(endpoint)
    .bind(event)
    .bind(state)
    .bind(Some(id))
    .execute(pool)
    .await
    .unwrap();
}

#[tokio::test]
async fn log_rows_read_back_as_typed_ids_and_states() {
    let db = TestDb::create().await.unwrap();
    let pool = hookline_store::connect(db.url()).await.unwrap();
    let (tenant, endpoint) = (TenantId::parse("acme").unwrap(), EndpointId::generate());
    let (delivery, event) = (DeliveryId::generate(), EventId::generate());
    insert_delivery(&pool, delivery.as_str(), tenant.as_str(), endpoint.as_str(), event.as_str(), "failing").await;

    let row = queries::get_delivery(&pool, &tenant, &delivery).await.unwrap().expect("the row");
    assert_eq!((&row.id, &row.tenant_id, &row.endpoint_id, &row.event_id), (&delivery, &tenant, &endpoint, &event));
    assert_eq!(
        (row.event_type, row.state, row.replay_of.as_ref()),
        (EventType::CustomerUpdated, DeliveryState::Failing, Some(&delivery))
    );
    let other = TenantId::parse("other").unwrap();
    assert_eq!(
        queries::get_delivery(&pool, &other, &delivery).await.unwrap(),
        None,
        "another tenant's row reads as missing"
    );

    let job = JobId::generate();
    let since = Utc::now() - TimeDelta::hours(1);
    let created = queries::create_job(&pool, &job, &tenant, &endpoint, since).await.unwrap();
    assert_eq!(
        (&created.id, &created.tenant_id, &created.endpoint_id, created.state),
        (&job, &tenant, &endpoint, JobState::Running)
    );
    assert_eq!(queries::get_job(&pool, &tenant, &job).await.unwrap(), Some(created));
    pool.close().await;
    db.close().await.unwrap();
}

#[tokio::test]
async fn a_log_row_holding_no_id_is_refused_naming_its_column_and_value() {
    let db = TestDb::create().await.unwrap();
    let pool = hookline_store::connect(db.url()).await.unwrap();
    let tenant = TenantId::parse("acme").unwrap();
    let endpoint = EndpointId::generate();
    // An event id where the endpoint's belongs: written by something other than Hookline.
    let event = EventId::generate();
    sqlx::query(
        "INSERT INTO deliveries (id, tenant_id, endpoint_id, event_id, event_type, event_seq, created_at,
                                         last_attempt_at, attempt_count, state)
                 VALUES ($1, 'acme', $2, $3, 'customer.updated', 7, now(), now(), 1, 'failed')",
    )
    .bind(DeliveryId::generate().as_str())
    .bind(event.as_str())
    .bind(event.as_str())
    .execute(&pool)
    .await
    .unwrap();

    let err = queries::list_deliveries(&pool, &tenant, None, &DeliveryFilter::default(), 10, None).await.unwrap_err();
    let StoreError::Db(sqlx::Error::ColumnDecode { index, source }) = &err else { panic!("{err:?}") };
    assert_eq!(index, "endpoint_id");
    let unreadable = source.downcast_ref::<UnreadableValue>().expect("an UnreadableValue");
    assert_eq!((unreadable.column, unreadable.value.as_str()), ("endpoint_id", event.as_str()));
    assert_eq!(unreadable.source().map(|s| s.to_string()).as_deref(), Some("endpoint_id: must start with `ep_`"));

    // A state no enum value is stored as is refused the same way.
    sqlx::query("UPDATE deliveries SET endpoint_id = $1, state = 'retrying'")
        .bind(endpoint.as_str())
        .execute(&pool)
        .await
        .unwrap();
    let err = queries::list_deliveries(&pool, &tenant, None, &DeliveryFilter::default(), 10, None).await.unwrap_err();
    assert!(err.to_string().contains("deliveries.state holds unknown value `retrying`"), "{err}");
    pool.close().await;
    db.close().await.unwrap();
}
