//! The archive janitor: after `archive_after`, a delivery keeps its log row
//! (state `archived`) but loses its payload and raw requests. Payload bodies
//! leave HOOKLINE_EVENTS through the stream's max age, which is the same
//! setting, so Raw, Download and Replay have nothing left to serve.

use std::time::Duration;

use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use crate::StoreError;

/// Rows archived per statement, so a large backlog never holds long locks.
const CHUNK: i64 = 5_000;

/// Archive everything older than `archive_after`; returns how many deliveries.
pub async fn archive_once(pool: &PgPool, archive_after: Duration) -> Result<u64, StoreError> {
    let cutoff = chrono::Utc::now() - chrono::Duration::from_std(archive_after).unwrap_or(chrono::Duration::MAX);
    let mut total = 0;
    loop {
        let mut tx = pool.begin().await?;
        let ids: Vec<String> = sqlx::query_scalar(
            "UPDATE deliveries SET state = 'archived', archived_at = now()
             WHERE id IN (SELECT id FROM deliveries WHERE archived_at IS NULL AND created_at < $1 LIMIT $2)
             RETURNING id",
        )
        .bind(cutoff)
        .bind(CHUNK)
        .fetch_all(&mut *tx)
        .await?;
        sqlx::query("UPDATE attempts SET request = NULL, response_excerpt = NULL WHERE delivery_id = ANY($1)")
            .bind(&ids)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        total += ids.len() as u64;
        if (ids.len() as i64) < CHUNK {
            return Ok(total);
        }
    }
}

/// Run [`archive_once`] every `interval` until `shutdown`.
pub async fn run(pool: PgPool, archive_after: Duration, interval: Duration, shutdown: CancellationToken) {
    loop {
        match archive_once(&pool, archive_after).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(deliveries = n, "archived deliveries older than {archive_after:?}"),
            Err(e) => tracing::warn!(error = %e, "archive janitor failed; retrying next round"),
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(interval) => {}
        }
    }
}
