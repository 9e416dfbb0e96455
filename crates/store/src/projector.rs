//! The config projector: HOOKLINE_CONFIG → `tenants`, `endpoints`.

use std::time::Duration;

use async_nats::jetstream::{
    Context,
    consumer::{DeliverPolicy, pull::OrderedConfig},
};
use futures_util::StreamExt;
use hookline_bus::CONFIG_STREAM;
use hookline_domain::{config::ConfigEvent, endpoint::EndpointConfig};
use sqlx::{PgPool, Postgres, Transaction};
use tokio_util::sync::CancellationToken;

use crate::StoreError;

pub const CONFIG_PROJECTOR: &str = "config";

async fn offset(pool: &PgPool, projector: &str) -> Result<u64, StoreError> {
    let seq: Option<i64> = sqlx::query_scalar("SELECT last_seq FROM projector_offsets WHERE projector = $1")
        .bind(projector)
        .fetch_optional(pool)
        .await?;
    Ok(seq.unwrap_or(0) as u64)
}

/// Follow the config stream into Postgres until `shutdown`. Restarts its
/// consumer from the stored offset after any error.
pub async fn run_config_projector(js: Context, pool: PgPool, shutdown: CancellationToken) {
    while !shutdown.is_cancelled() {
        if let Err(e) = follow(&js, &pool, &shutdown).await {
            tracing::warn!(error = %e, "config projector: restarting in 1s");
            tokio::select! {
                _ = shutdown.cancelled() => {}
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
        }
    }
}

async fn follow(js: &Context, pool: &PgPool, shutdown: &CancellationToken) -> Result<(), StoreError> {
    let bus = |e: &dyn std::fmt::Display| StoreError::Bus(e.to_string());
    let start = offset(pool, CONFIG_PROJECTOR).await? + 1;
    let stream = js.get_stream(CONFIG_STREAM).await.map_err(|e| bus(&e))?;
    let consumer = stream
        .create_consumer(OrderedConfig {
            filter_subject: hookline_bus::CONFIG_ALL.into(),
            deliver_policy: DeliverPolicy::ByStartSequence { start_sequence: start },
            ..Default::default()
        })
        .await
        .map_err(|e| bus(&e))?;
    let mut messages = consumer.messages().await.map_err(|e| bus(&e))?;
    loop {
        let msg = tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            m = messages.next() => match m {
                Some(m) => m.map_err(|e| bus(&e))?,
                None => return Err(bus(&"consumer closed")),
            },
        };
        let seq = msg.info().map_err(|e| bus(&e))?.stream_sequence;
        let tenant = hookline_bus::tenant_of(msg.subject.as_str()).unwrap_or_default().to_owned();
        match serde_json::from_slice::<ConfigEvent>(&msg.payload) {
            Ok(event) => apply(pool, &tenant, &event, seq).await?,
            Err(e) => {
                tracing::error!(seq, error = %e, "config projector: unreadable event skipped");
                let mut tx = pool.begin().await?;
                advance(&mut tx, CONFIG_PROJECTOR, seq).await?;
                tx.commit().await?;
            }
        }
    }
}

/// Move the offset forward; false when `seq` was already applied.
async fn advance(tx: &mut Transaction<'_, Postgres>, projector: &str, seq: u64) -> Result<bool, StoreError> {
    let moved = sqlx::query(
        "INSERT INTO projector_offsets (projector, last_seq) VALUES ($1, $2)
         ON CONFLICT (projector) DO UPDATE SET last_seq = EXCLUDED.last_seq, updated_at = now()
         WHERE projector_offsets.last_seq < EXCLUDED.last_seq",
    )
    .bind(projector)
    .bind(seq as i64)
    .execute(&mut **tx)
    .await?
    .rows_affected();
    Ok(moved == 1)
}

async fn upsert_endpoint(
    tx: &mut Transaction<'_, Postgres>,
    tenant: &str,
    e: &EndpointConfig,
    seq: u64,
) -> Result<(), StoreError> {
    let types: Vec<String> = e.event_types.iter().map(|t| t.as_str().to_owned()).collect();
    let layout = serde_json::to_value(e.layout).expect("layout serialises");
    sqlx::query(
        "INSERT INTO endpoints (id, tenant_id, url, auth_header_name, event_types, layout, enabled, description,
                                disabled_reason, created_at, updated_at, version)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10::timestamptz, $11::timestamptz, $12)
         ON CONFLICT (id) DO UPDATE SET url = EXCLUDED.url, auth_header_name = EXCLUDED.auth_header_name,
             event_types = EXCLUDED.event_types, layout = EXCLUDED.layout, enabled = EXCLUDED.enabled,
             description = EXCLUDED.description, disabled_reason = EXCLUDED.disabled_reason,
             updated_at = EXCLUDED.updated_at, version = EXCLUDED.version",
    )
    .bind(e.id.as_str())
    .bind(tenant)
    .bind(e.url.as_str())
    .bind(e.auth_header.as_ref().map(|h| h.name().to_owned()))
    .bind(types)
    .bind(layout.as_str().unwrap_or("envelope").to_owned())
    .bind(e.enabled)
    .bind(&e.description)
    .bind(e.disabled_reason.as_deref())
    .bind(&e.created_at)
    .bind(&e.updated_at)
    .bind(seq as i64)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

async fn apply(pool: &PgPool, tenant: &str, event: &ConfigEvent, seq: u64) -> Result<(), StoreError> {
    let mut tx = pool.begin().await?;
    if !advance(&mut tx, CONFIG_PROJECTOR, seq).await? {
        return Ok(());
    }
    let q = match event {
        ConfigEvent::TenantCreated { plan, webhooks_enabled, at, .. } => sqlx::query(
            "INSERT INTO tenants (id, plan, webhooks_enabled, created_at, updated_at, version)
             VALUES ($1, $2, $3, $4::timestamptz, $4::timestamptz, $5) ON CONFLICT (id) DO NOTHING",
        )
        .bind(tenant)
        .bind(plan.as_str())
        .bind(*webhooks_enabled)
        .bind(at)
        .bind(seq as i64),
        ConfigEvent::PlanChanged { plan, at } => {
            sqlx::query("UPDATE tenants SET plan = $2, updated_at = $3::timestamptz, version = $4 WHERE id = $1")
                .bind(tenant)
                .bind(plan.as_str())
                .bind(at)
                .bind(seq as i64)
        }
        ConfigEvent::WebhooksToggled { enabled, at } => sqlx::query(
            "UPDATE tenants SET webhooks_enabled = $2, updated_at = $3::timestamptz, version = $4 WHERE id = $1",
        )
        .bind(tenant)
        .bind(*enabled)
        .bind(at)
        .bind(seq as i64),
        ConfigEvent::EndpointCreated { endpoint, .. } | ConfigEvent::EndpointUpdated { endpoint, .. } => {
            upsert_endpoint(&mut tx, tenant, endpoint, seq).await?;
            tx.commit().await?;
            return Ok(());
        }
        ConfigEvent::EndpointDeleted { endpoint_id, at } => {
            sqlx::query("UPDATE endpoints SET deleted_at = $2::timestamptz, updated_at = $2::timestamptz, version = $3 WHERE id = $1")
                .bind(endpoint_id.as_str())
                .bind(at)
                .bind(seq as i64)
        }
        ConfigEvent::SecretRotated { endpoint_id, at, .. } => {
            sqlx::query("UPDATE endpoints SET updated_at = $2::timestamptz, version = $3 WHERE id = $1")
                .bind(endpoint_id.as_str())
                .bind(at)
                .bind(seq as i64)
        }
        ConfigEvent::EndpointDisabled { endpoint_id, reason, at } => sqlx::query(
            "UPDATE endpoints SET enabled = false, disabled_reason = $2, updated_at = $3::timestamptz, version = $4 WHERE id = $1",
        )
        .bind(endpoint_id.as_str())
        .bind(reason)
        .bind(at)
        .bind(seq as i64),
    };
    q.execute(&mut *tx).await?;
    tx.commit().await?;
    Ok(())
}
