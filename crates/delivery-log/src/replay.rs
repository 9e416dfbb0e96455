//! Replays: the event is read back from HOOKLINE_EVENTS (payloads live only
//! there) and queued as a new delivery marked `replay_of` the original. The
//! worker does the rest: same `webhook-id` (the event id), fresh signature.
//!
//! Recover jobs outlive the process that runs them. The runner renews the
//! job's heartbeat in `recover_jobs`; every delivery process looks for jobs
//! whose heartbeat is stale ([`resume_jobs`]) and resumes them, or ends them
//! `failed` after [`MAX_RUNS`] starts. A job names each replay after itself
//! and the original (`DeliveryId::recovery`), so what it queued before a
//! crash is de-duplicated by its dispatch message id (within
//! HOOKLINE_DISPATCH's 3-minute window) and, once attempted, skipped
//! because the log shows it; and no job replays an original that a replay
//! already delivered or is still delivering.

use std::time::{Duration, Instant};

use async_nats::jetstream::{Context, message::PublishMessage, stream::RawMessageErrorKind};
use chrono::{DateTime, Utc};
use hookline_bus::{EVENTS_STREAM, dispatch_subject, events_subject};
use hookline_domain::{
    delivery::DispatchTask,
    event_type::EventType,
    events::StoredEvent,
    ids::{DeliveryId, EndpointId, EventId, JobId, TenantId},
};
use hookline_store::queries::{self, DeliveryRow, JobState};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use crate::{Error, Unreadable};

/// How often a recover job stores its progress at most.
const PROGRESS_EVERY: Duration = Duration::from_millis(200);
/// How often a running job renews its heartbeat, and how old a heartbeat
/// is when its process is taken for dead.
const HEARTBEAT_EVERY: Duration = Duration::from_secs(2);
const HEARTBEAT_STALE: Duration = Duration::from_secs(10);
/// Starts after which an interrupted job ends `failed` instead.
pub const MAX_RUNS: i32 = 3;

/// Refuse a delivery whose payload is archived: marked so by the janitor, or
/// already past `archive_after` (the janitor runs only now and then; the
/// events stream drops the payload at that age).
pub fn payload_kept(row: &DeliveryRow, archive_after: Duration) -> Result<(), Error> {
    let due = chrono::Duration::from_std(archive_after).ok().and_then(|d| row.created_at.checked_add_signed(d));
    let on = match (row.archived_at, due) {
        (Some(at), _) => at,
        (None, Some(due)) if due <= Utc::now() => due,
        _ => return Ok(()),
    };
    Err(Error::Archived { delivery: row.id.clone(), on })
}

/// The delivery's event, read from HOOKLINE_EVENTS at its sequence.
pub async fn load_event(js: &Context, row: &DeliveryRow) -> Result<StoredEvent, Error> {
    let seq = event_seq(row)?;
    let stream = js.get_stream(EVENTS_STREAM).await.map_err(bus_unavailable)?;
    let msg = match stream.get_raw_message(seq).await {
        Ok(msg) => msg,
        Err(e) if matches!(e.kind(), RawMessageErrorKind::NoMessageFound) => {
            return Err(Error::PayloadGone(row.id.clone()));
        }
        Err(e) => return Err(bus_unavailable(e)),
    };
    let event: StoredEvent =
        serde_json::from_slice(&msg.payload).map_err(|source| Unreadable::Event { seq, source })?;
    // A re-created stream reuses sequences: another event there means ours is gone.
    if event.id != row.event_id {
        return Err(Error::PayloadGone(row.id.clone()));
    }
    Ok(event)
}

/// Queue a replay of `row` (a delivery of `tenant`); returns the new delivery id.
pub async fn replay(
    js: &Context,
    tenant: &TenantId,
    row: &DeliveryRow,
    archive_after: Duration,
) -> Result<DeliveryId, Error> {
    replay_as(js, tenant, row, archive_after, DeliveryId::generate()).await
}

/// [`replay`] as delivery `delivery_id`; queueing it twice within
/// HOOKLINE_DISPATCH's duplicate window stores it once.
async fn replay_as(
    js: &Context,
    tenant: &TenantId,
    row: &DeliveryRow,
    archive_after: Duration,
    delivery_id: DeliveryId,
) -> Result<DeliveryId, Error> {
    payload_kept(row, archive_after)?;
    let event = load_event(js, row).await?;
    let task = DispatchTask {
        delivery_id,
        created_at: hookline_domain::events::Timestamp::now(),
        endpoint_id: row.endpoint_id.clone(),
        event_seq: event_seq(row)?,
        replay_of: Some(row.id.clone()),
        attempt: 1,
        not_before: None,
        event,
    };
    let payload = serde_json::to_vec(&task).map_err(Unreadable::Unwritable)?;
    // As fan-out stores a task, without a trace: the replay starts one.
    let publish = PublishMessage::build().payload(payload.into()).message_id(task.msg_id());
    let subject = dispatch_subject(tenant, &task.endpoint_id);
    js.send_publish(subject, publish).await.map_err(bus_unavailable)?.await.map_err(bus_unavailable)?;
    Ok(task.delivery_id)
}

/// Queue a test event of `event_type` for `endpoint` alone: the event is
/// stored in HOOKLINE_EVENTS like any other (retries, parking, Raw and
/// Replay read it back from there; fan-out passes over it, as it is marked
/// `test`), and its one task is queued as a replay's is.
pub async fn send_test(
    js: &Context,
    tenant: &TenantId,
    endpoint: &EndpointId,
    event_type: EventType,
) -> Result<(DeliveryId, EventId), Error> {
    let event = StoredEvent::test(tenant.clone(), event_type);
    let payload = serde_json::to_vec(&event).map_err(Unreadable::Unwritable)?;
    let publish = PublishMessage::build().payload(payload.into()).message_id(event.id.to_string());
    let ack = js
        .send_publish(events_subject(tenant, event_type), publish)
        .await
        .map_err(bus_unavailable)?
        .await
        .map_err(bus_unavailable)?;
    let task = DispatchTask {
        delivery_id: DeliveryId::generate(),
        created_at: hookline_domain::events::Timestamp::now(),
        endpoint_id: endpoint.clone(),
        event_seq: ack.sequence,
        replay_of: None,
        attempt: 1,
        not_before: None,
        event,
    };
    let payload = serde_json::to_vec(&task).map_err(Unreadable::Unwritable)?;
    let publish = PublishMessage::build().payload(payload.into()).message_id(task.msg_id());
    js.send_publish(dispatch_subject(tenant, endpoint), publish)
        .await
        .map_err(bus_unavailable)?
        .await
        .map_err(bus_unavailable)?;
    Ok((task.delivery_id, task.event.id))
}

/// NATS trouble as the log API's error, for `map_err`.
pub(crate) fn bus_unavailable(e: impl Into<hookline_bus::Source>) -> Error {
    Error::Unavailable(e.into())
}

fn event_seq(row: &DeliveryRow) -> Result<u64, Error> {
    u64::try_from(row.event_seq)
        .map_err(|source| Unreadable::EventSeq { delivery: row.id.clone(), seq: row.event_seq, source }.into())
}

/// Run recover job `job` to its end: replay every failed original delivery
/// of the endpoint created since `since`, storing progress as it goes and
/// the result at the end. Deliveries whose payload is archived meanwhile are
/// skipped (and named in the job's error); NATS or Postgres trouble fails it.
pub async fn run_recover(
    pool: PgPool,
    js: Context,
    archive_after: Duration,
    tenant: TenantId,
    endpoint: EndpointId,
    since: DateTime<Utc>,
    job: JobId,
) {
    // The heartbeat says this process still runs the job.
    let beat = tokio::spawn({
        let (pool, job) = (pool.clone(), job.clone());
        async move {
            loop {
                tokio::time::sleep(HEARTBEAT_EVERY).await;
                if let Err(e) = queries::heartbeat_job(&pool, &job).await {
                    tracing::warn!(job = %job, error = %e, "recover job: heartbeat not stored");
                }
            }
        }
    });
    let result = recover(&pool, &js, archive_after, &tenant, &endpoint, since, &job).await;
    beat.abort();
    let (state, error) = match result {
        Ok(0) => (JobState::Completed, None),
        Ok(skipped) => (JobState::Completed, Some(format!("{skipped} skipped: payload archived"))),
        Err(e) => (JobState::Failed, Some(e.to_string())),
    };
    tracing::info!(job = %job, state = state.as_str(), error = error.as_deref(), "recover job finished");
    if let Err(e) = queries::finish_job(&pool, &job, state, error.as_deref()).await {
        tracing::warn!(job = %job, error = %e, "recover job: result not stored");
    }
}

/// Returns how many deliveries were skipped.
async fn recover(
    pool: &PgPool,
    js: &Context,
    archive_after: Duration,
    tenant: &TenantId,
    endpoint: &EndpointId,
    since: DateTime<Utc>,
    job: &JobId,
) -> Result<u32, Error> {
    let rows = queries::failed_deliveries_since(pool, tenant, endpoint, since).await?;
    // Leave out originals a replay already covers (this job's own before a
    // crash included): a second run sends nothing twice.
    let originals: Vec<DeliveryId> = rows.iter().map(|r| r.id.clone()).collect();
    let ours: Vec<DeliveryId> = originals.iter().map(|d| DeliveryId::recovery(job, d)).collect();
    let covered = queries::replayed(pool, endpoint, &originals, &ours).await?;
    let rows: Vec<&DeliveryRow> = rows.iter().filter(|r| !covered.contains(&r.id)).collect();
    let total = i32::try_from(rows.len()).unwrap_or(i32::MAX);
    queries::update_job_progress(pool, job, total, 0).await?;
    let (mut done, mut skipped, mut saved) = (0, 0, Instant::now());
    for row in rows {
        let id = DeliveryId::recovery(job, &row.id);
        match replay_as(js, tenant, row, archive_after, id).await {
            Ok(_) => done += 1,
            Err(e @ (Error::Archived { .. } | Error::PayloadGone(_))) => {
                tracing::warn!(job = %job, error = %e, "recover job: delivery skipped");
                skipped += 1;
            }
            Err(e) => {
                let _ = queries::update_job_progress(pool, job, total, done).await;
                return Err(e);
            }
        }
        if saved.elapsed() >= PROGRESS_EVERY {
            queries::update_job_progress(pool, job, total, done).await?;
            saved = Instant::now();
        }
    }
    queries::update_job_progress(pool, job, total, done).await?;
    Ok(skipped)
}

/// Resume recover jobs whose process died, every [`HEARTBEAT_EVERY`],
/// until `shutdown`: each delivery process runs this, and a job is claimed
/// by one of them only (see [`queries::claim_stale_jobs`]).
pub async fn resume_jobs(pool: PgPool, js: Context, archive_after: Duration, shutdown: CancellationToken) {
    use tracing::Instrument;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(HEARTBEAT_EVERY) => {}
        }
        let jobs = match queries::claim_stale_jobs(&pool, HEARTBEAT_STALE, MAX_RUNS).await {
            Ok(jobs) => jobs,
            Err(e) => {
                tracing::warn!(error = %e, "recover jobs: cannot look for interrupted jobs");
                continue;
            }
        };
        for job in jobs {
            let (id, tenant, endpoint) = (job.id, job.tenant_id, job.endpoint_id);
            tracing::warn!(job = %id, done = job.done, total = job.total, "recover job interrupted; resuming it here");
            let span = tracing::info_span!("recover", job = %id, tenant = %tenant, endpoint_id = %endpoint);
            let run = run_recover(pool.clone(), js.clone(), archive_after, tenant, endpoint, job.since, id);
            tokio::spawn(run.instrument(span));
        }
    }
}

#[cfg(test)]
mod tests {
    use hookline_store::queries::DeliveryState;

    use super::*;

    fn row(created_ago: chrono::Duration, archived_at: Option<DateTime<Utc>>) -> DeliveryRow {
        let now = Utc::now();
        DeliveryRow {
            id: DeliveryId::parse("dlv_01KB0000000000000000000000").unwrap(),
            tenant_id: TenantId::parse("acme").unwrap(),
            endpoint_id: EndpointId::parse("ep_01KB0000000000000000000000").unwrap(),
            event_id: EventId::parse("evt_01KB0000000000000000000000").unwrap(),
            event_type: EventType::CustomerUpdated,
            event_seq: 7,
            created_at: now - created_ago,
            last_attempt_at: now,
            attempt_count: 1,
            last_status_code: Some(500),
            last_error_kind: Some("http_status".into()),
            state: if archived_at.is_some() { DeliveryState::Archived } else { DeliveryState::Failed },
            replay_of: None,
            replay_count: 0,
            archived_at,
            test: false,
        }
    }

    #[test]
    fn payloads_are_archived_by_the_janitor_or_by_age() {
        let day = Duration::from_secs(24 * 3600);
        assert!(payload_kept(&row(chrono::Duration::hours(1), None), day).is_ok());
        let at = DateTime::parse_from_rfc3339("2026-11-29T10:00:00Z").unwrap().with_timezone(&Utc);
        let e = payload_kept(&row(chrono::Duration::hours(1), Some(at)), day).unwrap_err();
        assert_eq!(
            e.to_string(),
            "delivery dlv_01KB0000000000000000000000 was archived on 2026-11-29T10:00:00.000Z: \
             its payload and raw requests are deleted"
        );
        assert!(matches!(payload_kept(&row(chrono::Duration::hours(25), None), day), Err(Error::Archived { .. })));
        // An archive age too large to add never archives.
        assert!(payload_kept(&row(chrono::Duration::hours(25), None), Duration::MAX).is_ok());
    }
}
