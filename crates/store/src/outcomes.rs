//! HOOKLINE_OUTCOMES → `attempts`, `deliveries`, `endpoint_stats_hourly`.
//!
//! Idempotent by construction: an attempt row is keyed by (delivery,
//! attempt), and deliveries and statistics change only for attempt rows that
//! were new, so feeding the same outcome twice changes nothing.

use std::collections::HashMap;

use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use hookline_domain::delivery::{AttemptOutcome, AttemptState};
use sqlx::{Postgres, Transaction};

use crate::{StoreError, stats};

fn time(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).map(|t| t.with_timezone(&Utc)).unwrap_or_else(|_| Utc::now())
}

/// The log state a delivery is in after this attempt.
fn delivery_state(state: AttemptState) -> &'static str {
    match state {
        AttemptState::Succeeded => "succeeded",
        AttemptState::Retrying => "failing",
        AttemptState::Failed | AttemptState::Dropped => "failed",
    }
}

fn outcome_name(state: AttemptState) -> &'static str {
    match state {
        AttemptState::Succeeded => "succeeded",
        AttemptState::Retrying => "retrying",
        AttemptState::Failed => "failed",
        AttemptState::Dropped => "dropped",
    }
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

pub(crate) async fn apply(tx: &mut Transaction<'_, Postgres>, outcomes: &[AttemptOutcome]) -> Result<(), StoreError> {
    let mut hours: HashMap<(String, DateTime<Utc>), HourStats> = HashMap::new();
    for o in outcomes {
        let started = time(&o.started_at);
        let inserted = sqlx::query(
            "INSERT INTO attempts (delivery_id, attempt, endpoint_id, started_at, duration_ms, status_code, error_kind,
                                   error, outcome, response_excerpt, request, trace_id)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
             ON CONFLICT (delivery_id, attempt) DO NOTHING",
        )
        .bind(o.delivery_id.as_str())
        .bind(o.attempt as i32)
        .bind(o.endpoint_id.as_str())
        .bind(started)
        .bind(o.duration_ms as i64)
        .bind(o.status_code.map(i32::from))
        .bind(o.error_kind.map(|k| k.as_str()))
        .bind(o.error.as_deref())
        .bind(outcome_name(o.state))
        .bind(o.response_excerpt.as_deref())
        .bind(o.request.as_ref().map(|r| serde_json::to_value(r).expect("requests serialise")))
        .bind(o.trace_id.as_deref())
        .execute(&mut **tx)
        .await?
        .rows_affected();
        if inserted == 0 {
            continue;
        }
        let created = time(&o.delivery_created_at);
        // A newer attempt wins; an older one arriving late only adds its row.
        sqlx::query(
            "INSERT INTO deliveries (id, tenant_id, endpoint_id, event_id, event_type, event_seq, created_at,
                                     last_attempt_at, attempt_count, last_status_code, last_error_kind, state, replay_of)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)
             ON CONFLICT (id) DO UPDATE SET last_attempt_at = EXCLUDED.last_attempt_at,
                 attempt_count = EXCLUDED.attempt_count, last_status_code = EXCLUDED.last_status_code,
                 last_error_kind = EXCLUDED.last_error_kind,
                 state = CASE WHEN deliveries.state = 'archived' THEN 'archived' ELSE EXCLUDED.state END
             WHERE deliveries.attempt_count < EXCLUDED.attempt_count",
        )
        .bind(o.delivery_id.as_str())
        .bind(o.tenant_id.as_str())
        .bind(o.endpoint_id.as_str())
        .bind(o.event_id.as_str())
        .bind(o.event_type.as_str())
        .bind(o.event_seq as i64)
        .bind(created)
        .bind(started)
        .bind(o.attempt as i32)
        .bind(o.status_code.map(i32::from))
        .bind(o.error_kind.map(|k| k.as_str()))
        .bind(delivery_state(o.state))
        .bind(o.replay_of.as_ref().map(|r| r.as_str()))
        .execute(&mut **tx)
        .await?;
        if let (Some(original), 1) = (&o.replay_of, o.attempt) {
            sqlx::query("UPDATE deliveries SET replay_count = replay_count + 1 WHERE id = $1")
                .bind(original.as_str())
                .execute(&mut **tx)
                .await?;
        }
        if o.state == AttemptState::Dropped {
            continue;
        }
        let hour = started.duration_trunc(TimeDelta::hours(1)).unwrap_or(started);
        let h = hours.entry((o.endpoint_id.to_string(), hour)).or_insert_with(|| HourStats {
            tenant_id: o.tenant_id.to_string(),
            latency: vec![0; stats::BUCKETS],
            ..Default::default()
        });
        h.attempts += 1;
        match o.status_code {
            Some(code @ 200..=599) => h.classes[(code / 100 - 2) as usize] += 1,
            _ => {}
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
    Ok(())
}
