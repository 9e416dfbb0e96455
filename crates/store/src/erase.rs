//! `tenant.deleted` → no row of the tenant in any table.
//!
//! The config projector deletes the tenant's rows in the transaction that
//! moves its offset past the tombstone, so a crash either keeps them all or
//! deletes them all, and replays the deletion. The tombstone is recorded in
//! `deleted_tenants` first: the outcomes projector takes a share lock on that
//! table for each batch, so a batch either commits before the deletion (its
//! rows are deleted with the others) or sees the tombstone and skips the
//! tenant's outcomes (an attempt that was in flight during the deletion).

use std::collections::HashSet;

use hookline_domain::{events::Timestamp, ids::TenantId};
use sqlx::{Postgres, Transaction};

use crate::{StoreError, outcomes::Recorded};

/// Delete every row of `tenant` (tenants, endpoints, deliveries, attempts,
/// statistics, endpoint health, recover jobs, operational notices) and
/// record its tombstone.
pub(crate) async fn delete_tenant(
    tx: &mut Transaction<'_, Postgres>,
    tenant: &TenantId,
    at: &Timestamp,
    seq: u64,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO deleted_tenants (id, deleted_at, version) VALUES ($1, $2::timestamptz, $3)
         ON CONFLICT (id) DO UPDATE SET deleted_at = EXCLUDED.deleted_at, version = EXCLUDED.version",
    )
    .bind(tenant.as_str())
    .bind(at.as_str())
    .bind(seq as i64)
    .execute(&mut **tx)
    .await?;
    // Endpoints by their projection, and by the statistics too (an endpoint
    // whose config events were purged before they were projected).
    let endpoints: Vec<String> = sqlx::query_scalar(
        "SELECT id FROM endpoints WHERE tenant_id = $1
         UNION SELECT DISTINCT endpoint_id FROM endpoint_stats_hourly WHERE tenant_id = $1",
    )
    .bind(tenant.as_str())
    .fetch_all(&mut **tx)
    .await?;
    // By endpoint, through the indexes the log pages with (deliveries have
    // no index by tenant; endpoint ids are unique across tenants).
    sqlx::query("DELETE FROM attempts WHERE delivery_id IN (SELECT id FROM deliveries WHERE endpoint_id = ANY($1))")
        .bind(&endpoints)
        .execute(&mut **tx)
        .await?;
    sqlx::query("DELETE FROM deliveries WHERE endpoint_id = ANY($1)").bind(&endpoints).execute(&mut **tx).await?;
    sqlx::query("DELETE FROM endpoint_health WHERE endpoint_id = ANY($1)").bind(&endpoints).execute(&mut **tx).await?;
    for table in ["endpoint_stats_hourly", "recover_jobs", "operational_notices", "endpoints"] {
        let sql = format!("DELETE FROM {table} WHERE tenant_id = $1");
        sqlx::query(sqlx::AssertSqlSafe(sql)).bind(tenant.as_str()).execute(&mut **tx).await?;
    }
    sqlx::query("DELETE FROM tenants WHERE id = $1").bind(tenant.as_str()).execute(&mut **tx).await?;
    tracing::info!(tenant = %tenant, endpoints = endpoints.len(), "deleted tenant's rows deleted");
    Ok(())
}

/// `tenant.created` of an id deleted before: it is a tenant again.
pub(crate) async fn forget_deletion(tx: &mut Transaction<'_, Postgres>, tenant: &TenantId) -> Result<(), StoreError> {
    sqlx::query("DELETE FROM deleted_tenants WHERE id = $1").bind(tenant.as_str()).execute(&mut **tx).await?;
    Ok(())
}

/// The outcomes of tenants that are not deleted.
pub(crate) async fn without_deleted(
    tx: &mut Transaction<'_, Postgres>,
    outcomes: Vec<Recorded>,
) -> Result<Vec<Recorded>, StoreError> {
    sqlx::query("LOCK TABLE deleted_tenants IN SHARE MODE").execute(&mut **tx).await?;
    let tenants: Vec<String> =
        outcomes.iter().map(|o| o.tenant_id.as_str()).collect::<HashSet<_>>().into_iter().map(str::to_owned).collect();
    let deleted: HashSet<String> = sqlx::query_scalar("SELECT id FROM deleted_tenants WHERE id = ANY($1)")
        .bind(&tenants)
        .fetch_all(&mut **tx)
        .await?
        .into_iter()
        .collect();
    if deleted.is_empty() {
        return Ok(outcomes);
    }
    let before = outcomes.len();
    let kept: Vec<Recorded> = outcomes.into_iter().filter(|o| !deleted.contains(o.tenant_id.as_str())).collect();
    tracing::info!(skipped = before - kept.len(), "outcomes of deleted tenants skipped");
    Ok(kept)
}
