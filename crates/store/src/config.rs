//! HOOKLINE_CONFIG → `tenants`, `endpoints` (and, for `tenant.deleted`,
//! the erasure of every row of the tenant: [`crate::erase`]). No secrets are
//! projected.

use hookline_domain::{
    config::{ConfigEvent, Snapshot},
    endpoint::EndpointConfig,
    events::Timestamp,
    ids::TenantId,
};
use sqlx::{Postgres, Transaction};

use crate::StoreError;

async fn upsert_endpoint(
    tx: &mut Transaction<'_, Postgres>,
    tenant: &TenantId,
    e: &EndpointConfig,
    seq: u64,
) -> Result<(), StoreError> {
    let types: Vec<String> = e.event_types.iter().map(|t| t.as_str().to_owned()).collect();
    let layout = serde_json::to_value(e.layout).expect("layout serialises");
    sqlx::query(
        "INSERT INTO endpoints (id, tenant_id, url, auth_header_name, event_types, layout, enabled, description,
                                disabled_reason, created_at, updated_at, version, email, rate_limit)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10::timestamptz, $11::timestamptz, $12, $13, $14)
         ON CONFLICT (id) DO UPDATE SET url = EXCLUDED.url, auth_header_name = EXCLUDED.auth_header_name,
             event_types = EXCLUDED.event_types, layout = EXCLUDED.layout, enabled = EXCLUDED.enabled,
             description = EXCLUDED.description, disabled_reason = EXCLUDED.disabled_reason,
             updated_at = EXCLUDED.updated_at, version = EXCLUDED.version, email = EXCLUDED.email,
             rate_limit = EXCLUDED.rate_limit",
    )
    .bind(e.id.as_str())
    .bind(tenant.as_str())
    .bind(e.url.as_str())
    .bind(e.auth_header.as_ref().map(|h| h.name().to_owned()))
    .bind(types)
    .bind(layout.as_str().unwrap_or("envelope").to_owned())
    .bind(e.enabled)
    .bind(&e.description)
    .bind(e.disabled_reason.as_deref())
    .bind(e.created_at.as_str())
    .bind(e.updated_at.as_str())
    .bind(seq as i64)
    .bind(e.email.as_ref().map(|m| m.as_str().to_owned()))
    .bind(e.rate_limit.map(|r| r.per_second() as i32))
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Apply one config event inside the projector's batch transaction.
pub(crate) async fn apply(
    tx: &mut Transaction<'_, Postgres>,
    tenant: &TenantId,
    event: &ConfigEvent,
    seq: u64,
) -> Result<(), StoreError> {
    if let ConfigEvent::TenantCreated { .. } = event {
        crate::erase::forget_deletion(tx, tenant).await?;
    }
    let q = match event {
        ConfigEvent::TenantDeleted { at } => return crate::erase::delete_tenant(tx, tenant, at, seq).await,
        // API keys and the operational contact (with its notice secret) are
        // not projected: Postgres holds no credentials, and notices read the
        // contact from the in-memory Directory.
        ConfigEvent::ApiKeyCreated { .. } | ConfigEvent::ApiKeyRevoked { .. } | ConfigEvent::ContactChanged { .. } => {
            return Ok(());
        }
        ConfigEvent::TenantCreated { plan, webhooks_enabled, at, .. } => sqlx::query(
            "INSERT INTO tenants (id, plan, webhooks_enabled, created_at, updated_at, version)
             VALUES ($1, $2, $3, $4::timestamptz, $4::timestamptz, $5) ON CONFLICT (id) DO NOTHING",
        )
        .bind(tenant.as_str())
        .bind(plan.as_str())
        .bind(*webhooks_enabled)
        .bind(at.as_str())
        .bind(seq as i64),
        ConfigEvent::PlanChanged { plan, at } => {
            sqlx::query("UPDATE tenants SET plan = $2, updated_at = $3::timestamptz, version = $4 WHERE id = $1")
                .bind(tenant.as_str())
                .bind(plan.as_str())
                .bind(at.as_str())
                .bind(seq as i64)
        }
        ConfigEvent::WebhooksToggled { enabled, at } => sqlx::query(
            "UPDATE tenants SET webhooks_enabled = $2, updated_at = $3::timestamptz, version = $4 WHERE id = $1",
        )
        .bind(tenant.as_str())
        .bind(*enabled)
        .bind(at.as_str())
        .bind(seq as i64),
        ConfigEvent::EndpointCreated { endpoint, .. } | ConfigEvent::EndpointUpdated { endpoint, .. } => {
            return upsert_endpoint(tx, tenant, endpoint, seq).await;
        }
        ConfigEvent::TenantSnapshot { snapshot, at } => return apply_snapshot(tx, tenant, snapshot, at, seq).await,
        ConfigEvent::EndpointDeleted { endpoint_id, at } => {
            sqlx::query("UPDATE endpoints SET deleted_at = $2::timestamptz, updated_at = $2::timestamptz, version = $3 WHERE id = $1")
                .bind(endpoint_id.as_str())
                .bind(at.as_str())
                .bind(seq as i64)
        }
        ConfigEvent::SecretRotated { endpoint_id, at, .. } => {
            sqlx::query("UPDATE endpoints SET updated_at = $2::timestamptz, version = $3 WHERE id = $1")
                .bind(endpoint_id.as_str())
                .bind(at.as_str())
                .bind(seq as i64)
        }
        ConfigEvent::EndpointDisabled { endpoint_id, reason, at } => sqlx::query(
            "UPDATE endpoints SET enabled = false, disabled_reason = $2, updated_at = $3::timestamptz, version = $4 WHERE id = $1",
        )
        .bind(endpoint_id.as_str())
        .bind(reason)
        .bind(at.as_str())
        .bind(seq as i64),
    };
    q.execute(&mut **tx).await?;
    Ok(())
}

/// A snapshot replaces the tenant's rows: the history before it may be
/// purged, so a projector that was behind (or rebuilds) skips events and
/// must still end with what the snapshot says. The tenant row and every
/// endpoint in it are written whole; the tenant's endpoints it does not hold
/// are marked deleted. `updated_at` of a row the snapshot does not change
/// stays as it was.
async fn apply_snapshot(
    tx: &mut Transaction<'_, Postgres>,
    tenant: &TenantId,
    snapshot: &Snapshot,
    at: &Timestamp,
    seq: u64,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO tenants (id, plan, webhooks_enabled, created_at, updated_at, version)
         VALUES ($1, $2, $3, $4::timestamptz, $5::timestamptz, $6)
         ON CONFLICT (id) DO UPDATE SET
             updated_at = CASE WHEN (tenants.plan, tenants.webhooks_enabled) = (EXCLUDED.plan, EXCLUDED.webhooks_enabled)
                               THEN tenants.updated_at ELSE EXCLUDED.updated_at END,
             plan = EXCLUDED.plan, webhooks_enabled = EXCLUDED.webhooks_enabled,
             created_at = EXCLUDED.created_at, version = EXCLUDED.version",
    )
    .bind(tenant.as_str())
    .bind(snapshot.plan.as_str())
    .bind(snapshot.webhooks_enabled)
    .bind(snapshot.created_at.as_str())
    .bind(at.as_str())
    .bind(seq as i64)
    .execute(&mut **tx)
    .await?;
    for endpoint in &snapshot.endpoints {
        upsert_endpoint(tx, tenant, endpoint, seq).await?;
    }
    let live: Vec<&str> = snapshot.endpoints.iter().map(|e| e.id.as_str()).collect();
    sqlx::query(
        "UPDATE endpoints SET deleted_at = $3::timestamptz, updated_at = $3::timestamptz, version = $4
         WHERE tenant_id = $1 AND deleted_at IS NULL AND NOT (id = ANY($2))",
    )
    .bind(tenant.as_str())
    .bind(live)
    .bind(at.as_str())
    .bind(seq as i64)
    .execute(&mut **tx)
    .await?;
    Ok(())
}
