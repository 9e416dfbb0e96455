//! The outbox of operational notices (see the migration
//! `operational_notices`): a notice is recorded once per endpoint, failing
//! period, threshold and channel, then taken by one sender at a time until
//! it is sent or given up.

use std::time::Duration;

use chrono::{DateTime, Utc};
use hookline_domain::ids::EndpointId;
use sqlx::PgPool;

use crate::StoreError;

/// Which of a notice's addresses a row is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Channel {
    Email,
    Webhook,
}

impl Channel {
    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Email => "email",
            Channel::Webhook => "webhook",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        match s {
            "email" => Some(Channel::Email),
            "webhook" => Some(Channel::Webhook),
            _ => None,
        }
    }
}

/// What makes a notice one: sent at most once per key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoticeKey {
    pub endpoint_id: String,
    pub failing_since: DateTime<Utc>,
    /// 50, 75 or 90 (% of the window), or 100 for the disabled notice.
    pub threshold: i16,
    pub channel: Channel,
}

/// A notice taken for sending.
#[derive(Debug, Clone)]
pub struct DueNotice {
    pub key: NoticeKey,
    pub tenant_id: String,
    pub body: String,
    /// Including this one.
    pub attempts: i32,
}

#[derive(sqlx::FromRow)]
struct Row {
    endpoint_id: String,
    failing_since: DateTime<Utc>,
    threshold: i16,
    channel: String,
    tenant_id: String,
    body: String,
    attempts: i32,
}

/// Record a notice to send; `false` when it was recorded before (by this
/// process, another replica, or before a restart).
pub async fn record(pool: &PgPool, key: &NoticeKey, tenant_id: &str, body: &str) -> Result<bool, StoreError> {
    let inserted = sqlx::query(
        "INSERT INTO operational_notices (endpoint_id, failing_since, threshold, channel, tenant_id, body)
         VALUES ($1, $2, $3, $4, $5, $6)
         ON CONFLICT DO NOTHING",
    )
    .bind(&key.endpoint_id)
    .bind(key.failing_since)
    .bind(key.threshold)
    .bind(key.channel.as_str())
    .bind(tenant_id)
    .bind(body)
    .execute(pool)
    .await?
    .rows_affected();
    Ok(inserted == 1)
}

/// Take up to `limit` notices that are due, for `lease`: no other sender
/// takes them until it ends.
pub async fn take_due(pool: &PgPool, lease: Duration, limit: i64) -> Result<Vec<DueNotice>, StoreError> {
    let lease = chrono::Duration::from_std(lease).unwrap_or(chrono::Duration::minutes(1));
    let rows = sqlx::query_as::<_, Row>(
        "UPDATE operational_notices n
         SET attempts = n.attempts + 1, next_attempt_at = now() + $1
         FROM (SELECT endpoint_id, failing_since, threshold, channel
               FROM operational_notices
               WHERE sent_at IS NULL AND given_up_at IS NULL AND next_attempt_at <= now()
               ORDER BY next_attempt_at
               LIMIT $2
               FOR UPDATE SKIP LOCKED) due
         WHERE (n.endpoint_id, n.failing_since, n.threshold, n.channel)
             = (due.endpoint_id, due.failing_since, due.threshold, due.channel)
         RETURNING n.endpoint_id, n.failing_since, n.threshold, n.channel, n.tenant_id, n.body, n.attempts",
    )
    .bind(lease)
    .bind(limit)
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .filter_map(|r| {
            let channel = Channel::parse(&r.channel)?;
            let key = NoticeKey {
                endpoint_id: r.endpoint_id,
                failing_since: r.failing_since,
                threshold: r.threshold,
                channel,
            };
            Some(DueNotice { key, tenant_id: r.tenant_id, body: r.body, attempts: r.attempts })
        })
        .collect())
}

/// How a taken notice went.
#[derive(Debug)]
pub enum Sent {
    Delivered,
    /// Try again at this time.
    RetryAt(DateTime<Utc>, String),
    /// No more tries.
    GaveUp(String),
}

/// Record how sending a taken notice went.
pub async fn finish(pool: &PgPool, key: &NoticeKey, sent: &Sent) -> Result<(), StoreError> {
    let (sql, error, retry_at) = match sent {
        Sent::Delivered => ("UPDATE operational_notices SET sent_at = now(), last_error = $5", None, None),
        Sent::RetryAt(at, e) => {
            ("UPDATE operational_notices SET next_attempt_at = $6, last_error = $5", Some(e), Some(*at))
        }
        Sent::GaveUp(e) => ("UPDATE operational_notices SET given_up_at = now(), last_error = $5", Some(e), None),
    };
    let sql = format!("{sql} WHERE endpoint_id = $1 AND failing_since = $2 AND threshold = $3 AND channel = $4");
    let mut q = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(&key.endpoint_id)
        .bind(key.failing_since)
        .bind(key.threshold)
        .bind(key.channel.as_str())
        .bind(error);
    if let Some(at) = retry_at {
        q = q.bind(at);
    }
    q.execute(pool).await?;
    Ok(())
}

/// The error of the endpoint's latest failed attempt.
pub async fn last_error(pool: &PgPool, endpoint_id: &EndpointId) -> Result<Option<String>, StoreError> {
    let error = sqlx::query_scalar::<_, Option<String>>(
        "SELECT error FROM attempts WHERE endpoint_id = $1 AND error IS NOT NULL ORDER BY started_at DESC LIMIT 1",
    )
    .bind(endpoint_id.as_str())
    .fetch_optional(pool)
    .await?;
    Ok(error.flatten())
}
