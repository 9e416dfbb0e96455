//! Endpoint health read from the delivery log: which endpoints have failed
//! every attempt for long enough to be disabled.

use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::PgPool;

use crate::StoreError;

/// An endpoint failing without a success since `since`.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct FailingEndpoint {
    pub endpoint_id: String,
    pub tenant_id: String,
    pub since: DateTime<Utc>,
}

/// Enabled endpoints whose every attempt failed for at least `after`:
/// the first failure after their last success (or their last change, so
/// re-enabling gives a fresh start) is older than `after`.
pub async fn failing_for(pool: &PgPool, after: Duration) -> Result<Vec<FailingEndpoint>, StoreError> {
    let cutoff = Utc::now() - chrono::Duration::from_std(after).unwrap_or(chrono::Duration::MAX);
    let rows = sqlx::query_as::<_, FailingEndpoint>(
        "WITH last_ok AS (
             SELECT endpoint_id, max(started_at) AS at FROM attempts WHERE outcome = 'succeeded' GROUP BY endpoint_id)
         SELECT a.endpoint_id, e.tenant_id, min(a.started_at) AS since
         FROM attempts a
         JOIN endpoints e ON e.id = a.endpoint_id AND e.enabled AND e.deleted_at IS NULL
         LEFT JOIN last_ok o ON o.endpoint_id = a.endpoint_id
         WHERE a.outcome IN ('retrying', 'failed')
           AND a.started_at > greatest(o.at, e.updated_at)
         GROUP BY a.endpoint_id, e.tenant_id
         HAVING min(a.started_at) <= $1",
    )
    .bind(cutoff)
    .fetch_all(pool)
    .await?;
    Ok(rows)
}
