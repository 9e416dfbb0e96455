//! HOOKLINE_OUTCOMES → `attempts`, `deliveries`, `endpoint_stats_hourly`,
//! `endpoint_health`.
//!
//! Idempotent by construction: an attempt row is keyed by (delivery,
//! attempt), and deliveries and statistics change only for attempt rows that
//! were new, so feeding the same outcome twice changes nothing.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use hookline_domain::{
    delivery::{AttemptOutcome, AttemptState},
    events::Timestamp,
};
use serde_json::value::RawValue;
use sqlx::{Postgres, Transaction};

use crate::{StoreError, health::Health, queries::DeliveryState, stats};

/// An outcome as the projector reads it: the request stays JSON text,
/// stored as it was written.
pub(crate) type Recorded = AttemptOutcome<Box<RawValue>>;

fn time(t: &Timestamp) -> DateTime<Utc> {
    t.parsed().with_timezone(&Utc)
}

/// The log state a delivery is in after this attempt.
fn delivery_state(state: AttemptState) -> &'static str {
    match state {
        AttemptState::Succeeded => DeliveryState::Succeeded,
        AttemptState::Retrying => DeliveryState::Failing,
        AttemptState::Failed | AttemptState::Dropped => DeliveryState::Failed,
    }
    .as_str()
}

fn outcome_name(state: AttemptState) -> &'static str {
    state.as_str()
}

#[derive(Default)]
struct HourStats {
    tenant_id: String,
    attempts: i64,
    accepted: i64,
    classes: [i64; 4],
    errors: HashMap<String, i64>,
    latency: Vec<i64>,
}

pub(crate) async fn apply(tx: &mut Transaction<'_, Postgres>, outcomes: &[Recorded]) -> Result<(), StoreError> {
    // One row per (delivery, attempt): a re-published outcome is the same attempt.
    let mut seen = HashSet::new();
    let unique: Vec<&Recorded> = outcomes.iter().filter(|o| seen.insert((o.delivery_id.as_str(), o.attempt))).collect();
    let inserted = insert_attempts(tx, &unique).await?;
    // Usually every row is new; only a redelivered outcome needs the lookup.
    let new: Vec<&Recorded> = if inserted.len() == unique.len() {
        unique
    } else {
        unique.into_iter().filter(|o| inserted.contains(&(o.delivery_id.to_string(), o.attempt as i32))).collect()
    };
    upsert_deliveries(tx, &new).await?;
    let mut hours: HashMap<(String, DateTime<Utc>), HourStats> = HashMap::new();
    let mut health: HashMap<&str, Seen> = HashMap::new();
    for o in new {
        if let (Some(original), 1) = (&o.replay_of, o.attempt) {
            sqlx::query("UPDATE deliveries SET replay_count = replay_count + 1 WHERE id = $1")
                .bind(original.as_str())
                .execute(&mut **tx)
                .await?;
        }
        if o.state == AttemptState::Dropped {
            continue;
        }
        let started = time(&o.started_at);
        let (succeeded, failed) = health.entry(o.endpoint_id.as_str()).or_default();
        match o.state {
            AttemptState::Succeeded => *succeeded = (*succeeded).max(Some(started)),
            _ => failed.push(started),
        }
        let hour = started.duration_trunc(TimeDelta::hours(1)).unwrap_or(started);
        let h = hours.entry((o.endpoint_id.to_string(), hour)).or_insert_with(|| HourStats {
            tenant_id: o.tenant_id.to_string(),
            latency: vec![0; stats::BUCKETS],
            ..Default::default()
        });
        h.attempts += 1;
        if let Some(code @ 200..=599) = o.status_code {
            h.classes[(code / 100 - 2) as usize] += 1;
        }
        if o.state == AttemptState::Succeeded {
            h.accepted += 1;
        } else if let Some(kind) = o.error_kind {
            *h.errors.entry(kind.as_str().to_owned()).or_default() += 1;
        }
        h.latency[stats::bucket(o.duration_ms)] += 1;
    }
    for ((endpoint, hour), h) in hours {
        sqlx::query(
            "INSERT INTO endpoint_stats_hourly AS s (endpoint_id, tenant_id, hour, attempts, accepted, status_2xx,
                                                     status_3xx, status_4xx, status_5xx, errors, latency)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
             ON CONFLICT (endpoint_id, hour) DO UPDATE SET attempts = s.attempts + EXCLUDED.attempts,
                 accepted = s.accepted + EXCLUDED.accepted, status_2xx = s.status_2xx + EXCLUDED.status_2xx,
                 status_3xx = s.status_3xx + EXCLUDED.status_3xx, status_4xx = s.status_4xx + EXCLUDED.status_4xx,
                 status_5xx = s.status_5xx + EXCLUDED.status_5xx,
                 errors = (SELECT coalesce(jsonb_object_agg(k, total), '{}'::jsonb) FROM
                            (SELECT k, sum(v::bigint) AS total FROM
                               (SELECT * FROM jsonb_each_text(s.errors) UNION ALL
                                SELECT * FROM jsonb_each_text(EXCLUDED.errors)) AS e(k, v) GROUP BY k) AS m),
                 latency = (SELECT array_agg(coalesce(a, 0) + coalesce(b, 0) ORDER BY i)
                            FROM unnest(s.latency, EXCLUDED.latency) WITH ORDINALITY AS u(a, b, i))",
        )
        .bind(&endpoint)
        .bind(&h.tenant_id)
        .bind(hour)
        .bind(h.attempts)
        .bind(h.accepted)
        .bind(h.classes[0])
        .bind(h.classes[1])
        .bind(h.classes[2])
        .bind(h.classes[3])
        .bind(serde_json::to_value(&h.errors).expect("maps serialise"))
        .bind(&h.latency)
        .execute(&mut **tx)
        .await?;
    }
    update_health(tx, health).await
}

/// Insert the attempt rows in one statement; returns the keys that were
/// new (the rest were already there: a redelivered outcome).
async fn insert_attempts(
    tx: &mut Transaction<'_, Postgres>,
    outcomes: &[&Recorded],
) -> Result<HashSet<(String, i32)>, StoreError> {
    if outcomes.is_empty() {
        return Ok(HashSet::new());
    }
    let rows: Vec<(String, i32)> = sqlx::query_as(
        "INSERT INTO attempts (delivery_id, attempt, endpoint_id, started_at, duration_ms, status_code, error_kind,
                               error, outcome, response_excerpt, request, trace_id)
         SELECT * FROM UNNEST($1::text[], $2::int4[], $3::text[], $4::timestamptz[], $5::int8[], $6::int4[],
                              $7::text[], $8::text[], $9::text[], $10::text[], $11::text[]::jsonb[], $12::text[])
         ON CONFLICT (delivery_id, attempt) DO NOTHING
         RETURNING delivery_id, attempt",
    )
    .bind(outcomes.iter().map(|o| o.delivery_id.as_str()).collect::<Vec<_>>())
    .bind(outcomes.iter().map(|o| o.attempt as i32).collect::<Vec<_>>())
    .bind(outcomes.iter().map(|o| o.endpoint_id.as_str()).collect::<Vec<_>>())
    .bind(outcomes.iter().map(|o| time(&o.started_at)).collect::<Vec<_>>())
    .bind(outcomes.iter().map(|o| o.duration_ms as i64).collect::<Vec<_>>())
    .bind(outcomes.iter().map(|o| o.status_code.map(i32::from)).collect::<Vec<_>>())
    .bind(outcomes.iter().map(|o| o.error_kind.map(|k| k.as_str())).collect::<Vec<_>>())
    .bind(outcomes.iter().map(|o| o.error.as_deref()).collect::<Vec<_>>())
    .bind(outcomes.iter().map(|o| outcome_name(o.state)).collect::<Vec<_>>())
    .bind(outcomes.iter().map(|o| o.response_excerpt.as_deref()).collect::<Vec<_>>())
    .bind(
        outcomes
            .iter()
            // As written by delivery: Postgres parses it once, here it is never parsed.
            .map(|o| o.request.as_deref().map(RawValue::get))
            .collect::<Vec<_>>(),
    )
    .bind(outcomes.iter().map(|o| o.trace_id.as_deref()).collect::<Vec<_>>())
    .fetch_all(&mut **tx)
    .await?;
    Ok(rows.into_iter().collect())
}

/// Create or advance the delivery rows of new attempts in one statement. A
/// newer attempt wins; an older one arriving late only added its attempt row.
async fn upsert_deliveries(tx: &mut Transaction<'_, Postgres>, new: &[&Recorded]) -> Result<(), StoreError> {
    // One row per delivery (the latest attempt), as one statement may not
    // update a row twice.
    let mut latest: HashMap<&str, &Recorded> = HashMap::new();
    for o in new {
        let slot = latest.entry(o.delivery_id.as_str()).or_insert(o);
        if o.attempt > slot.attempt {
            *slot = o;
        }
    }
    if latest.is_empty() {
        return Ok(());
    }
    let rows: Vec<&Recorded> = latest.into_values().collect();
    sqlx::query(
        "INSERT INTO deliveries (id, tenant_id, endpoint_id, event_id, event_type, event_seq, created_at,
                                 last_attempt_at, attempt_count, last_status_code, last_error_kind, state, replay_of,
                                 test)
         SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::int8[],
                              $7::timestamptz[], $8::timestamptz[], $9::int4[], $10::int4[], $11::text[], $12::text[],
                              $13::text[], $14::bool[])
         ON CONFLICT (id) DO UPDATE SET last_attempt_at = EXCLUDED.last_attempt_at,
             attempt_count = EXCLUDED.attempt_count, last_status_code = EXCLUDED.last_status_code,
             last_error_kind = EXCLUDED.last_error_kind,
             state = CASE WHEN deliveries.state = 'archived' THEN 'archived' ELSE EXCLUDED.state END
         WHERE deliveries.attempt_count < EXCLUDED.attempt_count",
    )
    .bind(rows.iter().map(|o| o.delivery_id.as_str()).collect::<Vec<_>>())
    .bind(rows.iter().map(|o| o.tenant_id.as_str()).collect::<Vec<_>>())
    .bind(rows.iter().map(|o| o.endpoint_id.as_str()).collect::<Vec<_>>())
    .bind(rows.iter().map(|o| o.event_id.as_str()).collect::<Vec<_>>())
    .bind(rows.iter().map(|o| o.event_type.as_str()).collect::<Vec<_>>())
    .bind(rows.iter().map(|o| o.event_seq as i64).collect::<Vec<_>>())
    .bind(rows.iter().map(|o| time(&o.delivery_created_at)).collect::<Vec<_>>())
    .bind(rows.iter().map(|o| time(&o.started_at)).collect::<Vec<_>>())
    .bind(rows.iter().map(|o| o.attempt as i32).collect::<Vec<_>>())
    .bind(rows.iter().map(|o| o.status_code.map(i32::from)).collect::<Vec<_>>())
    .bind(rows.iter().map(|o| o.error_kind.map(|k| k.as_str())).collect::<Vec<_>>())
    .bind(rows.iter().map(|o| delivery_state(o.state)).collect::<Vec<_>>())
    .bind(rows.iter().map(|o| o.replay_of.as_ref().map(|r| r.as_str())).collect::<Vec<_>>())
    .bind(rows.iter().map(|o| o.test).collect::<Vec<_>>())
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// An endpoint's latest success and its failures in one batch.
type Seen = (Option<DateTime<Utc>>, Vec<DateTime<Utc>>);

/// Move each endpoint's health (see [`Health::after`]) by the batch's attempts.
async fn update_health(tx: &mut Transaction<'_, Postgres>, batch: HashMap<&str, Seen>) -> Result<(), StoreError> {
    if batch.is_empty() {
        return Ok(());
    }
    type Current = (String, Option<DateTime<Utc>>, Option<DateTime<Utc>>, Option<DateTime<Utc>>);
    let current: Vec<Current> = sqlx::query_as(
        "SELECT i.id, h.last_success_at, h.failing_since, e.updated_at
         FROM UNNEST($1::text[]) AS i(id)
         LEFT JOIN endpoint_health h ON h.endpoint_id = i.id
         LEFT JOIN endpoints e ON e.id = i.id",
    )
    .bind(batch.keys().copied().collect::<Vec<_>>())
    .fetch_all(&mut **tx)
    .await?;
    let (mut ids, mut successes, mut since) = (Vec::new(), Vec::new(), Vec::new());
    for (endpoint, last_success_at, failing_since, changed_at) in current {
        let (succeeded, failed) = &batch[endpoint.as_str()];
        let health = Health { last_success_at, failing_since }.after(*succeeded, failed, changed_at);
        ids.push(endpoint);
        successes.push(health.last_success_at);
        since.push(health.failing_since);
    }
    sqlx::query(
        "INSERT INTO endpoint_health (endpoint_id, last_success_at, failing_since)
         SELECT * FROM UNNEST($1::text[], $2::timestamptz[], $3::timestamptz[])
         ON CONFLICT (endpoint_id) DO UPDATE
             SET last_success_at = EXCLUDED.last_success_at, failing_since = EXCLUDED.failing_since",
    )
    .bind(ids)
    .bind(successes)
    .bind(since)
    .execute(&mut **tx)
    .await?;
    Ok(())
}
