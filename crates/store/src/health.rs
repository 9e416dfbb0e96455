//! Endpoint health read from the delivery log: which endpoints have failed
//! every attempt for long enough to be disabled.

use std::time::Duration;

use chrono::{DateTime, Utc};
use hookline_domain::ids::{EndpointId, TenantId};
use sqlx::{FromRow, PgPool, Row, postgres::PgRow};

use crate::{StoreError, queries::parsed};

/// An endpoint failing without a success since `since`.
#[derive(Debug, Clone)]
pub struct FailingEndpoint {
    pub endpoint_id: EndpointId,
    pub tenant_id: TenantId,
    pub since: DateTime<Utc>,
}

impl FromRow<'_, PgRow> for FailingEndpoint {
    fn from_row(row: &PgRow) -> Result<Self, sqlx::Error> {
        Ok(FailingEndpoint {
            endpoint_id: parsed(row, "endpoint_id")?,
            tenant_id: parsed(row, "tenant_id")?,
            since: row.try_get("since")?,
        })
    }
}

/// An endpoint's row in `endpoint_health`, which the outcomes projector keeps.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Health {
    pub last_success_at: Option<DateTime<Utc>>,
    /// The first failed attempt after the last success and after the
    /// endpoint's last change; `None` while it is not failing.
    pub failing_since: Option<DateTime<Utc>>,
}

impl Health {
    /// After a batch of the endpoint's attempts: its latest success and its
    /// failures, and when the endpoint last changed (re-enabling it, or any
    /// other change, restarts the clock).
    ///
    /// Only the first failure is kept, so a success that arrives after a
    /// later failure was applied forgets that failure too: the clock starts
    /// again at the next failure, a retry interval later at most.
    pub(crate) fn after(
        self,
        succeeded: Option<DateTime<Utc>>,
        failed: &[DateTime<Utc>],
        changed_at: Option<DateTime<Utc>>,
    ) -> Self {
        let last_success_at = self.last_success_at.max(succeeded);
        let floor = last_success_at.max(changed_at);
        let failing_since =
            self.failing_since.into_iter().chain(failed.iter().copied()).filter(|t| Some(*t) > floor).min();
        Health { last_success_at, failing_since }
    }
}

/// Enabled endpoints whose every attempt failed for at least `after`:
/// the first failure after their last success (or their last change, so
/// re-enabling gives a fresh start) is older than `after`.
pub async fn failing_for(pool: &PgPool, after: Duration) -> Result<Vec<FailingEndpoint>, StoreError> {
    let cutoff = Utc::now() - chrono::Duration::from_std(after).unwrap_or(chrono::Duration::MAX);
    let rows = sqlx::query_as::<_, FailingEndpoint>(
        "SELECT h.endpoint_id, e.tenant_id, h.failing_since AS since
         FROM endpoint_health h
         JOIN endpoints e ON e.id = h.endpoint_id AND e.enabled AND e.deleted_at IS NULL
         WHERE h.failing_since > e.updated_at AND h.failing_since <= $1",
    )
    .bind(cutoff)
    .fetch_all(pool)
    .await?;
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + s, 0).unwrap()
    }

    #[test]
    fn the_clock_starts_at_the_first_failure_after_the_last_success_or_change() {
        let fresh = Health::default();
        let failing = fresh.after(None, &[t(20), t(10)], None);
        assert_eq!(failing, Health { last_success_at: None, failing_since: Some(t(10)) });
        // More failures keep the first.
        assert_eq!(failing.after(None, &[t(30)], None).failing_since, Some(t(10)));
        // A success ends it; a failure after the success starts it again.
        let ok = failing.after(Some(t(40)), &[], None);
        assert_eq!(ok, Health { last_success_at: Some(t(40)), failing_since: None });
        assert_eq!(ok.after(None, &[t(50)], None).failing_since, Some(t(50)));
        // Within one batch, only failures after the batch's success count.
        assert_eq!(fresh.after(Some(t(40)), &[t(30), t(45)], None).failing_since, Some(t(45)));
        // An older success arriving late changes nothing.
        assert_eq!(ok.after(Some(t(5)), &[], None).last_success_at, Some(t(40)));
        // Re-enabling (a change at 60) restarts the clock at the next failure.
        let reenabled = failing.after(None, &[t(70)], Some(t(60)));
        assert_eq!(reenabled.failing_since, Some(t(70)));
        assert_eq!(failing.after(None, &[], Some(t(60))).failing_since, None);
    }
}
