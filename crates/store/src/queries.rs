//! Reads of the delivery log, statistics, recover jobs and projector offsets.
//!
//! Every query about a tenant's data filters by tenant, so an id of another
//! tenant reads as missing rather than leaking rows.

use std::collections::BTreeMap;

use std::{collections::HashSet, str::FromStr};

use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use hookline_domain::{
    FieldError,
    delivery::{AttemptState, SentRequest},
    event_type::EventType,
    ids::{DeliveryId, EndpointId, EventId, JobId, TenantId},
};
use sqlx::{FromRow, PgPool, Postgres, QueryBuilder, Row, postgres::PgRow, types::Json};

use crate::{StoreError, stats};

/// One row of `deliveries`, its ids and state parsed once, as it is read.
#[derive(Debug, Clone, PartialEq)]
pub struct DeliveryRow {
    pub id: DeliveryId,
    pub tenant_id: TenantId,
    pub endpoint_id: EndpointId,
    pub event_id: EventId,
    pub event_type: EventType,
    pub event_seq: i64,
    pub created_at: DateTime<Utc>,
    pub last_attempt_at: DateTime<Utc>,
    pub attempt_count: i32,
    pub last_status_code: Option<i32>,
    /// An [`hookline_domain::delivery::ErrorKind`] as recorded: text, since
    /// rows written before a kind was renamed hold its old name
    /// (`forbidden_address`), and the log shows what was recorded.
    pub last_error_kind: Option<String>,
    pub state: DeliveryState,
    pub replay_of: Option<DeliveryId>,
    pub replay_count: i32,
    pub archived_at: Option<DateTime<Utc>>,
    /// A test event's delivery (`SendTestEvent`).
    pub test: bool,
}

impl FromRow<'_, PgRow> for DeliveryRow {
    fn from_row(row: &PgRow) -> Result<Self, sqlx::Error> {
        Ok(DeliveryRow {
            id: parsed(row, "id")?,
            tenant_id: parsed(row, "tenant_id")?,
            endpoint_id: parsed(row, "endpoint_id")?,
            event_id: parsed(row, "event_id")?,
            event_type: parsed(row, "event_type")?,
            event_seq: row.try_get("event_seq")?,
            created_at: row.try_get("created_at")?,
            last_attempt_at: row.try_get("last_attempt_at")?,
            attempt_count: row.try_get("attempt_count")?,
            last_status_code: row.try_get("last_status_code")?,
            last_error_kind: row.try_get("last_error_kind")?,
            state: state(row, "state")?,
            replay_of: parsed_optional(row, "replay_of")?,
            replay_count: row.try_get("replay_count")?,
            archived_at: row.try_get("archived_at")?,
            test: row.try_get("test")?,
        })
    }
}

/// A text column holding a value its type refuses (an id of the wrong
/// kind, an unknown event type): a row written by something other than
/// this code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{column} holds `{value}`")]
pub struct UnreadableValue {
    pub column: &'static str,
    pub value: String,
    #[source]
    pub source: FieldError,
}

/// Text column `column` parsed into `T`; a value `T` refuses fails the row
/// as sqlx's `ColumnDecode`, naming the column and the value.
pub(crate) fn parsed<T: FromStr<Err = FieldError>>(row: &PgRow, column: &'static str) -> Result<T, sqlx::Error> {
    let text: &str = row.try_get(column)?;
    parse_text(column, text)
}

/// [`parsed`] for a nullable column.
fn parsed_optional<T: FromStr<Err = FieldError>>(row: &PgRow, column: &'static str) -> Result<Option<T>, sqlx::Error> {
    let text: Option<&str> = row.try_get(column)?;
    text.map(|text| parse_text(column, text)).transpose()
}

fn parse_text<T: FromStr<Err = FieldError>>(column: &'static str, text: &str) -> Result<T, sqlx::Error> {
    text.parse().map_err(|source: FieldError| {
        undecodable(column, UnreadableValue { column, value: text.to_owned(), source: source.under(column) })
    })
}

/// State column `column` read into its enum.
fn state<T: TryFrom<String, Error: std::error::Error + Send + Sync + 'static>>(
    row: &PgRow,
    column: &'static str,
) -> Result<T, sqlx::Error> {
    T::try_from(row.try_get::<String, _>(column)?).map_err(|e| undecodable(column, e))
}

fn undecodable(column: &str, source: impl std::error::Error + Send + Sync + 'static) -> sqlx::Error {
    sqlx::Error::ColumnDecode { index: column.to_owned(), source: Box::new(source) }
}

/// Where a delivery stands: `deliveries.state`, a text column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryState {
    /// Its last attempt succeeded.
    Succeeded,
    /// Its last attempt failed and another is scheduled.
    Failing,
    /// Its retries are exhausted, or its endpoint is gone.
    Failed,
    /// Its payload and raw requests are deleted.
    Archived,
}

impl DeliveryState {
    /// The text stored in `deliveries.state`.
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryState::Succeeded => "succeeded",
            DeliveryState::Failing => "failing",
            DeliveryState::Failed => "failed",
            DeliveryState::Archived => "archived",
        }
    }
}

impl TryFrom<String> for DeliveryState {
    type Error = UnknownState;

    fn try_from(s: String) -> Result<Self, UnknownState> {
        match s.as_str() {
            "succeeded" => Ok(DeliveryState::Succeeded),
            "failing" => Ok(DeliveryState::Failing),
            "failed" => Ok(DeliveryState::Failed),
            "archived" => Ok(DeliveryState::Archived),
            _ => Err(UnknownState { column: "deliveries.state", value: s }),
        }
    }
}

/// A text column holding a value its enum does not know: a row written by
/// something other than this code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{column} holds unknown value `{value}`")]
pub struct UnknownState {
    pub column: &'static str,
    pub value: String,
}

/// One row of `attempts`.
#[derive(Debug, Clone, PartialEq)]
pub struct AttemptRow {
    pub delivery_id: DeliveryId,
    pub attempt: i32,
    pub started_at: DateTime<Utc>,
    pub duration_ms: i64,
    pub status_code: Option<i32>,
    /// As recorded, for the reason given at [`DeliveryRow::last_error_kind`].
    pub error_kind: Option<String>,
    /// Human-readable, as the attempt recorded it.
    pub error: Option<String>,
    pub outcome: AttemptState,
    /// `None` once archived.
    pub response_excerpt: Option<String>,
    /// `None` once archived, and for attempts that sent nothing (dropped).
    pub request: Option<Json<SentRequest>>,
    /// W3C trace id shared with the event's logs and spans.
    pub trace_id: Option<String>,
}

impl FromRow<'_, PgRow> for AttemptRow {
    fn from_row(row: &PgRow) -> Result<Self, sqlx::Error> {
        Ok(AttemptRow {
            delivery_id: parsed(row, "delivery_id")?,
            attempt: row.try_get("attempt")?,
            started_at: row.try_get("started_at")?,
            duration_ms: row.try_get("duration_ms")?,
            status_code: row.try_get("status_code")?,
            error_kind: row.try_get("error_kind")?,
            error: row.try_get("error")?,
            outcome: state(row, "outcome")?,
            response_excerpt: row.try_get("response_excerpt")?,
            request: row.try_get("request")?,
            trace_id: row.try_get("trace_id")?,
        })
    }
}

/// Optional narrowing of [`list_deliveries`]; the default lists everything.
#[derive(Debug, Clone, Default)]
pub struct DeliveryFilter {
    /// Any of these states; empty means all.
    pub states: Vec<DeliveryState>,
    pub event_type: Option<EventType>,
    /// Created at or after.
    pub created_after: Option<DateTime<Utc>>,
    /// Created strictly before.
    pub created_before: Option<DateTime<Utc>>,
    /// `Some(true)`: only replays; `Some(false)`: only originals.
    pub replayed: Option<bool>,
    /// `Some(true)`: only test events; `Some(false)`: none of them.
    pub test: Option<bool>,
}

/// One page of deliveries, newest first.
#[derive(Debug, Clone, PartialEq)]
pub struct DeliveryPage {
    pub rows: Vec<DeliveryRow>,
    /// The id to pass as `after_id` for the next page; `None` on the last.
    pub next_after: Option<DeliveryId>,
}

/// How far the clock of the host that made a delivery's id (ingest, for an
/// original) may run ahead of the one that stamped its `created_at`
/// (delivery) without [`list_deliveries`] missing it in a date range.
const ID_CLOCK_MARGIN: TimeDelta = TimeDelta::minutes(10);

const DELIVERY_COLUMNS: &str = "id, tenant_id, endpoint_id, event_id, event_type, event_seq, created_at, \
    last_attempt_at, attempt_count, last_status_code, last_error_kind, state, replay_of, replay_count, archived_at, \
    test";

/// An endpoint's deliveries, newest first. Keyset pagination on the
/// time-sortable id keeps pages stable while new deliveries arrive; one row
/// more than asked tells whether another page exists.
pub async fn list_deliveries(
    pool: &PgPool,
    tenant: &TenantId,
    endpoint: Option<&EndpointId>,
    filter: &DeliveryFilter,
    page_size: u32,
    after_id: Option<&DeliveryId>,
) -> Result<DeliveryPage, StoreError> {
    let mut q = QueryBuilder::<Postgres>::new(format!("SELECT {DELIVERY_COLUMNS} FROM deliveries WHERE tenant_id = "));
    q.push_bind(tenant.to_string());
    // Without an endpoint, the whole tenant's log: the (tenant_id, id DESC)
    // and (tenant_id, state, id DESC) indexes serve it as the endpoint's
    // serve one endpoint's.
    if let Some(endpoint) = endpoint {
        q.push(" AND endpoint_id = ").push_bind(endpoint.to_string());
    }
    // One state as `=`, so the (endpoint_id, state, id DESC) index yields
    // the page in order; `= ANY` would leave the planner walking the whole
    // log newest first when the state's rows are all old (archived).
    match filter.states.as_slice() {
        [] => {}
        [state] => {
            q.push(" AND state = ").push_bind(state.as_str());
        }
        states => {
            let states: Vec<&str> = states.iter().map(|s| s.as_str()).collect();
            q.push(" AND state = ANY(").push_bind(states).push(")");
        }
    }
    if let Some(t) = &filter.event_type {
        q.push(" AND event_type = ").push_bind(t.as_str());
    }
    if let Some(t) = filter.created_after {
        q.push(" AND created_at >= ").push_bind(t);
    }
    if let Some(t) = filter.created_before {
        q.push(" AND created_at < ").push_bind(t);
        // Ids sort by a time no later than `created_at` (the event's or
        // job's id, made before the delivery row), so the page starts at
        // this id rather than walking the log down from its newest row.
        // The margin covers the clocks of ingest and delivery hosts.
        let ceiling = DeliveryId::floor_at(t + ID_CLOCK_MARGIN);
        q.push(" AND id < ").push_bind(ceiling.to_string());
    }
    if let Some(replays) = filter.replayed {
        q.push(if replays { " AND replay_of IS NOT NULL" } else { " AND replay_of IS NULL" });
    }
    // Literal, not bound, so the planner can pick the partial index on test rows.
    if let Some(test) = filter.test {
        q.push(if test { " AND test" } else { " AND NOT test" });
    }
    if let Some(after) = after_id {
        q.push(" AND id < ").push_bind(after.to_string());
    }
    q.push(" ORDER BY id DESC LIMIT ").push_bind(i64::from(page_size) + 1);
    let mut rows: Vec<DeliveryRow> = q.build_query_as().fetch_all(pool).await?;
    let more = rows.len() > page_size as usize;
    rows.truncate(page_size as usize);
    let next_after = more.then(|| rows.last().map(|r| r.id.clone())).flatten();
    Ok(DeliveryPage { rows, next_after })
}

/// One delivery of `tenant`; another tenant's id reads as `None`.
pub async fn get_delivery(
    pool: &PgPool,
    tenant: &TenantId,
    delivery_id: &DeliveryId,
) -> Result<Option<DeliveryRow>, StoreError> {
    let sql = format!("SELECT {DELIVERY_COLUMNS} FROM deliveries WHERE tenant_id = $1 AND id = $2");
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(tenant.as_str())
        .bind(delivery_id.as_str())
        .fetch_optional(pool)
        .await?)
}

/// Every attempt of a delivery, oldest first. Callers check the tenant with
/// [`get_delivery`] first.
pub async fn attempts(pool: &PgPool, delivery_id: &DeliveryId) -> Result<Vec<AttemptRow>, StoreError> {
    let sql = format!("SELECT {ATTEMPT_COLUMNS} FROM attempts WHERE delivery_id = $1 ORDER BY attempt");
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(delivery_id.as_str()).fetch_all(pool).await?)
}

const ATTEMPT_COLUMNS: &str = "delivery_id, attempt, started_at, duration_ms, status_code, error_kind, error, \
    outcome, response_excerpt, request, trace_id";

/// Every attempt of several deliveries (a page of the log), ordered by
/// delivery id, then attempt, in one query. Callers pass ids read under the
/// tenant.
pub async fn attempts_of(pool: &PgPool, delivery_ids: &[DeliveryId]) -> Result<Vec<AttemptRow>, StoreError> {
    let ids: Vec<&str> = delivery_ids.iter().map(DeliveryId::as_str).collect();
    let sql =
        format!("SELECT {ATTEMPT_COLUMNS} FROM attempts WHERE delivery_id = ANY($1) ORDER BY delivery_id, attempt");
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(ids).fetch_all(pool).await?)
}

/// Failed original deliveries of an endpoint created at or after `since`,
/// oldest first: what a recover job replays. Replays are left out, so a
/// recover never replays a replay, and so are test events: recovery is for
/// the booking platform's events a receiver missed.
pub async fn failed_deliveries_since(
    pool: &PgPool,
    tenant: &TenantId,
    endpoint: &EndpointId,
    since: DateTime<Utc>,
) -> Result<Vec<DeliveryRow>, StoreError> {
    let sql = format!(
        "SELECT {DELIVERY_COLUMNS} FROM deliveries WHERE tenant_id = $1 AND endpoint_id = $2 AND state = 'failed'
         AND replay_of IS NULL AND NOT test AND created_at >= $3 ORDER BY id"
    );
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(tenant.as_str())
        .bind(endpoint.as_str())
        .bind(since)
        .fetch_all(pool)
        .await?)
}

// ------------------------------------------------------------------ stats

/// Attempt statistics summed over hours (one endpoint, or several).
#[derive(Debug, Clone, PartialEq)]
pub struct Stats {
    /// The endpoint; `None` for a tenant total.
    pub endpoint_id: Option<EndpointId>,
    pub attempts: i64,
    /// Attempts answered 2xx.
    pub accepted: i64,
    /// Attempts answered 2xx, 3xx, 4xx, 5xx.
    pub status: [i64; 4],
    /// Failed attempts by error kind, as recorded (see
    /// [`DeliveryRow::last_error_kind`]).
    pub errors: BTreeMap<String, i64>,
    /// Counts per [`stats::BUCKETS_MS`] bucket.
    pub latency: Vec<i64>,
}

impl Stats {
    pub fn new(endpoint_id: Option<EndpointId>) -> Self {
        Self {
            endpoint_id,
            attempts: 0,
            accepted: 0,
            status: [0; 4],
            errors: BTreeMap::new(),
            latency: vec![0; stats::BUCKETS],
        }
    }

    /// Add another sum (or one hour) into this one: counters add, error maps
    /// merge, histograms add element-wise.
    pub fn add(&mut self, other: &Stats) {
        self.attempts += other.attempts;
        self.accepted += other.accepted;
        for (a, b) in self.status.iter_mut().zip(other.status) {
            *a += b;
        }
        for (kind, n) in &other.errors {
            *self.errors.entry(kind.clone()).or_default() += n;
        }
        if self.latency.len() < other.latency.len() {
            self.latency.resize(other.latency.len(), 0);
        }
        for (a, b) in self.latency.iter_mut().zip(&other.latency) {
            *a += b;
        }
    }

    /// accepted / attempts; 0 without attempts.
    pub fn success_rate(&self) -> f64 {
        if self.attempts == 0 { 0.0 } else { self.accepted as f64 / self.attempts as f64 }
    }

    /// Latency quantile in ms, see [`stats::percentile`].
    pub fn latency_ms(&self, q: f64) -> u64 {
        stats::percentile(&self.latency, q)
    }

    /// Error kinds, most frequent first.
    pub fn errors_by_count(&self) -> Vec<(&str, i64)> {
        let mut v: Vec<(&str, i64)> = self.errors.iter().map(|(k, n)| (k.as_str(), *n)).collect();
        v.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
        v
    }
}

/// A tenant's statistics: the total and one entry per endpoint (by id).
#[derive(Debug, Clone, PartialEq)]
pub struct TenantStats {
    pub total: Stats,
    pub endpoints: Vec<Stats>,
}

struct HourRow {
    endpoint_id: EndpointId,
    attempts: i64,
    accepted: i64,
    status_2xx: i64,
    status_3xx: i64,
    status_4xx: i64,
    status_5xx: i64,
    errors: serde_json::Value,
    latency: Vec<i64>,
}

impl FromRow<'_, PgRow> for HourRow {
    fn from_row(row: &PgRow) -> Result<Self, sqlx::Error> {
        Ok(HourRow {
            endpoint_id: parsed(row, "endpoint_id")?,
            attempts: row.try_get("attempts")?,
            accepted: row.try_get("accepted")?,
            status_2xx: row.try_get("status_2xx")?,
            status_3xx: row.try_get("status_3xx")?,
            status_4xx: row.try_get("status_4xx")?,
            status_5xx: row.try_get("status_5xx")?,
            errors: row.try_get("errors")?,
            latency: row.try_get("latency")?,
        })
    }
}

impl From<HourRow> for Stats {
    fn from(r: HourRow) -> Self {
        // Counts summed in SQL come back as JSON numbers that may not be integers.
        let errors = r.errors.as_object().into_iter().flatten();
        let errors = errors.map(|(k, v)| (k.clone(), v.as_i64().or(v.as_f64().map(|f| f as i64)).unwrap_or(0)));
        Stats {
            endpoint_id: Some(r.endpoint_id),
            attempts: r.attempts,
            accepted: r.accepted,
            status: [r.status_2xx, r.status_3xx, r.status_4xx, r.status_5xx],
            errors: errors.collect(),
            latency: r.latency,
        }
    }
}

/// The first hour row that counts for a window starting at `since`: rows are
/// keyed by the start of their hour, so the hour holding `since` is included.
pub fn window_start(since: DateTime<Utc>) -> DateTime<Utc> {
    since.duration_trunc(TimeDelta::hours(1)).unwrap_or(since)
}

/// Sum hour rows per endpoint (sorted by id) and in total.
pub fn sum_by_endpoint(rows: impl IntoIterator<Item = Stats>) -> TenantStats {
    let mut total = Stats::new(None);
    let mut per: BTreeMap<Option<EndpointId>, Stats> = BTreeMap::new();
    for row in rows {
        total.add(&row);
        per.entry(row.endpoint_id.clone()).or_insert_with(|| Stats::new(row.endpoint_id.clone())).add(&row);
    }
    TenantStats { total, endpoints: per.into_values().collect() }
}

const HOUR_COLUMNS: &str =
    "endpoint_id, attempts, accepted, status_2xx, status_3xx, status_4xx, status_5xx, errors, latency";

/// One endpoint's statistics since `since` (whole hours).
pub async fn endpoint_stats(
    pool: &PgPool,
    tenant: &TenantId,
    endpoint: &EndpointId,
    since: DateTime<Utc>,
) -> Result<Stats, StoreError> {
    let sql = format!(
        "SELECT {HOUR_COLUMNS} FROM endpoint_stats_hourly WHERE tenant_id = $1 AND endpoint_id = $2 AND hour >= $3"
    );
    let rows: Vec<HourRow> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(tenant.as_str())
        .bind(endpoint.as_str())
        .bind(window_start(since))
        .fetch_all(pool)
        .await?;
    let mut sum = Stats::new(Some(endpoint.clone()));
    for row in rows {
        sum.add(&row.into());
    }
    Ok(sum)
}

/// A tenant's statistics since `since` (whole hours), with one entry per
/// endpoint that had attempts.
pub async fn tenant_stats(pool: &PgPool, tenant: &TenantId, since: DateTime<Utc>) -> Result<TenantStats, StoreError> {
    let sql = format!("SELECT {HOUR_COLUMNS} FROM endpoint_stats_hourly WHERE tenant_id = $1 AND hour >= $2");
    let rows: Vec<HourRow> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(tenant.as_str())
        .bind(window_start(since))
        .fetch_all(pool)
        .await?;
    Ok(sum_by_endpoint(rows.into_iter().map(Stats::from)))
}

// ----------------------------------------------------------- recover jobs

/// Where a recover job stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobState {
    Running,
    Completed,
    Failed,
}

impl JobState {
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Running => "running",
            JobState::Completed => "completed",
            JobState::Failed => "failed",
        }
    }
}

impl TryFrom<String> for JobState {
    type Error = UnknownState;

    fn try_from(s: String) -> Result<Self, UnknownState> {
        match s.as_str() {
            "running" => Ok(JobState::Running),
            "completed" => Ok(JobState::Completed),
            "failed" => Ok(JobState::Failed),
            _ => Err(UnknownState { column: "recover_jobs.state", value: s }),
        }
    }
}

/// One row of `recover_jobs`.
#[derive(Debug, Clone, PartialEq)]
pub struct JobRow {
    pub id: JobId,
    pub tenant_id: TenantId,
    pub endpoint_id: EndpointId,
    pub since: DateTime<Utc>,
    pub total: i32,
    pub done: i32,
    pub state: JobState,
    /// Why the job failed, or what it skipped: a sentence for the operator.
    pub error: Option<String>,
    pub created_at: DateTime<Utc>,
}

impl FromRow<'_, PgRow> for JobRow {
    fn from_row(row: &PgRow) -> Result<Self, sqlx::Error> {
        Ok(JobRow {
            id: parsed(row, "id")?,
            tenant_id: parsed(row, "tenant_id")?,
            endpoint_id: parsed(row, "endpoint_id")?,
            since: row.try_get("since")?,
            total: row.try_get("total")?,
            done: row.try_get("done")?,
            state: state(row, "state")?,
            error: row.try_get("error")?,
            created_at: row.try_get("created_at")?,
        })
    }
}

const JOB_COLUMNS: &str = "id, tenant_id, endpoint_id, since, total, done, state, error, created_at";

/// Record a new running job.
pub async fn create_job(
    pool: &PgPool,
    id: &JobId,
    tenant: &TenantId,
    endpoint: &EndpointId,
    since: DateTime<Utc>,
) -> Result<JobRow, StoreError> {
    let sql = format!(
        "INSERT INTO recover_jobs (id, tenant_id, endpoint_id, since, state) VALUES ($1, $2, $3, $4, $5)
         RETURNING {JOB_COLUMNS}"
    );
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(id.as_str())
        .bind(tenant.as_str())
        .bind(endpoint.as_str())
        .bind(since)
        .bind(JobState::Running.as_str())
        .fetch_one(pool)
        .await?)
}

/// Store how many deliveries the job found and how many it has queued
/// (renewing its heartbeat).
pub async fn update_job_progress(pool: &PgPool, id: &JobId, total: i32, done: i32) -> Result<(), StoreError> {
    sqlx::query("UPDATE recover_jobs SET total = $2, done = $3, heartbeat_at = now() WHERE id = $1")
        .bind(id.as_str())
        .bind(total)
        .bind(done)
        .execute(pool)
        .await?;
    Ok(())
}

/// End the job as completed or failed, with the reason.
pub async fn finish_job(pool: &PgPool, id: &JobId, state: JobState, error: Option<&str>) -> Result<(), StoreError> {
    sqlx::query("UPDATE recover_jobs SET state = $2, error = $3 WHERE id = $1")
        .bind(id.as_str())
        .bind(state.as_str())
        .bind(error)
        .execute(pool)
        .await?;
    Ok(())
}

/// Renew a running job's heartbeat: it is alive in this process.
pub async fn heartbeat_job(pool: &PgPool, id: &JobId) -> Result<(), StoreError> {
    sqlx::query("UPDATE recover_jobs SET heartbeat_at = now() WHERE id = $1 AND state = 'running'")
        .bind(id.as_str())
        .execute(pool)
        .await?;
    Ok(())
}

/// Running jobs whose heartbeat is older than `stale` (their process died):
/// those started `max_runs` times already end `failed`; the others are
/// claimed for this process (heartbeat renewed, `runs` + 1) and returned.
/// One statement each, so two processes never claim the same job.
pub async fn claim_stale_jobs(
    pool: &PgPool,
    stale: std::time::Duration,
    max_runs: i32,
) -> Result<Vec<JobRow>, StoreError> {
    let stale = stale.as_secs_f64();
    sqlx::query(
        "UPDATE recover_jobs SET state = 'failed',
             error = format('interrupted %s times (the delivery process running it stopped); run RecoverEndpoint again', runs)
         WHERE state = 'running' AND heartbeat_at < now() - make_interval(secs => $1) AND runs >= $2",
    )
    .bind(stale)
    .bind(max_runs)
    .execute(pool)
    .await?;
    let sql = format!(
        "UPDATE recover_jobs SET heartbeat_at = now(), runs = runs + 1
         WHERE id IN (SELECT id FROM recover_jobs WHERE state = 'running'
                      AND heartbeat_at < now() - make_interval(secs => $1) FOR UPDATE SKIP LOCKED)
         RETURNING {JOB_COLUMNS}"
    );
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(stale).fetch_all(pool).await?)
}

/// Of `originals` (delivery ids of one endpoint), those that a replay
/// already covers: one that succeeded or is still under way (any state but
/// `failed`), or any replay with an id in `ours` (this job's own).
pub async fn replayed(
    pool: &PgPool,
    endpoint: &EndpointId,
    originals: &[DeliveryId],
    ours: &[DeliveryId],
) -> Result<HashSet<DeliveryId>, StoreError> {
    let texts = |ids: &[DeliveryId]| ids.iter().map(|id| id.as_str().to_owned()).collect::<Vec<String>>();
    let rows = sqlx::query(
        "SELECT DISTINCT replay_of FROM deliveries
         WHERE endpoint_id = $1 AND replay_of = ANY($2) AND (state <> 'failed' OR id = ANY($3))",
    )
    .bind(endpoint.as_str())
    .bind(texts(originals))
    .bind(texts(ours))
    .fetch_all(pool)
    .await?;
    Ok(rows.iter().map(|row| parsed(row, "replay_of")).collect::<Result<_, _>>()?)
}

/// One job of `tenant`; another tenant's id reads as `None`.
pub async fn get_job(pool: &PgPool, tenant: &TenantId, id: &JobId) -> Result<Option<JobRow>, StoreError> {
    let sql = format!("SELECT {JOB_COLUMNS} FROM recover_jobs WHERE tenant_id = $1 AND id = $2");
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(tenant.as_str()).bind(id.as_str()).fetch_optional(pool).await?)
}

// -------------------------------------------------------------- projectors

/// `(projector, last applied stream sequence)` for every projector with an offset.
pub async fn projector_offsets(pool: &PgPool) -> Result<Vec<(String, i64)>, StoreError> {
    Ok(sqlx::query_as("SELECT projector, last_seq FROM projector_offsets ORDER BY projector").fetch_all(pool).await?)
}

/// Whether `endpoint` is (or was) one of `tenant`'s endpoints: its row, or
/// deliveries of the tenant to it. A deleted endpoint has no row once the
/// projection was rebuilt from a compacted config stream (its history was
/// purged behind the tenant's snapshot), but its deliveries stay listed.
pub async fn endpoint_belongs(pool: &PgPool, tenant: &TenantId, endpoint: &EndpointId) -> Result<bool, StoreError> {
    Ok(sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM endpoints WHERE id = $1 AND tenant_id = $2)
             OR EXISTS (SELECT 1 FROM deliveries WHERE endpoint_id = $1 AND tenant_id = $2)",
    )
    .bind(endpoint.as_str())
    .bind(tenant.as_str())
    .fetch_one(pool)
    .await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_read_back_from_the_text_they_are_stored_as() {
        use DeliveryState as D;
        for state in [D::Succeeded, D::Failing, D::Failed, D::Archived] {
            assert_eq!(D::try_from(state.as_str().to_owned()), Ok(state));
        }
        for state in [JobState::Running, JobState::Completed, JobState::Failed] {
            assert_eq!(JobState::try_from(state.as_str().to_owned()), Ok(state));
        }
        let unknown = D::try_from("retrying".to_owned()).unwrap_err();
        assert_eq!(unknown.to_string(), "deliveries.state holds unknown value `retrying`");
    }

    fn ep(n: u8) -> EndpointId {
        EndpointId::parse(&format!("ep_01KB00000000000000000000{n:02}")).unwrap()
    }

    fn hour(endpoint: u8, attempts: i64, accepted: i64, errors: &[(&str, i64)], latency: &[(usize, i64)]) -> Stats {
        let mut s = Stats::new(Some(ep(endpoint)));
        s.attempts = attempts;
        s.accepted = accepted;
        s.status = [accepted, 0, 0, attempts - accepted];
        s.errors = errors.iter().map(|(k, n)| (k.to_string(), *n)).collect();
        for &(i, n) in latency {
            s.latency[i] = n;
        }
        s
    }

    #[test]
    fn sums_merge_counters_errors_and_histograms() {
        let rows = vec![
            hour(2, 3, 2, &[("timeout", 1)], &[(0, 2), (19, 1)]),
            hour(1, 2, 1, &[("http_status", 1)], &[(stats::bucket(120), 2)]),
            hour(2, 5, 4, &[("timeout", 1)], &[(0, 5)]),
        ];
        let t = sum_by_endpoint(rows);
        assert_eq!(t.endpoints.iter().map(|s| s.endpoint_id.clone()).collect::<Vec<_>>(), [Some(ep(1)), Some(ep(2))]);
        let b = &t.endpoints[1];
        assert_eq!((b.attempts, b.accepted, b.status), (8, 6, [6, 0, 0, 2]));
        assert_eq!(b.errors_by_count(), vec![("timeout", 2)]);
        assert_eq!((b.latency[0], b.latency[19]), (7, 1));
        assert_eq!((&t.total.endpoint_id, t.total.attempts, t.total.accepted), (&None, 10, 7));
        assert_eq!(t.total.errors_by_count(), vec![("timeout", 2), ("http_status", 1)]);
        assert!((t.total.success_rate() - 0.7).abs() < 1e-9);
        assert_eq!(t.total.latency_ms(0.5), 5);
        assert_eq!(t.total.latency_ms(0.9), 150);
        assert_eq!(t.total.latency_ms(0.95), 30000);
        assert_eq!(Stats::new(None).success_rate(), 0.0);
    }

    #[test]
    fn short_histograms_are_padded() {
        let mut s = Stats::new(Some(ep(1)));
        s.latency.clear();
        s.add(&hour(1, 1, 1, &[], &[(3, 1)]));
        assert_eq!(s.latency.len(), stats::BUCKETS);
        assert_eq!(s.latency[3], 1);
    }

    #[test]
    fn hour_rows_read_sql_summed_error_counts() {
        let row = HourRow {
            endpoint_id: ep(1),
            attempts: 4,
            accepted: 1,
            status_2xx: 1,
            status_3xx: 0,
            status_4xx: 0,
            status_5xx: 3,
            errors: serde_json::json!({"http_status": 3, "timeout": 2.0}),
            latency: vec![0; stats::BUCKETS],
        };
        let s = Stats::from(row);
        assert_eq!(s.errors_by_count(), vec![("http_status", 3), ("timeout", 2)]);
    }

    #[test]
    fn windows_start_on_the_hour() {
        let t = DateTime::parse_from_rfc3339("2026-11-29T10:47:12.5Z").unwrap().with_timezone(&Utc);
        assert_eq!(window_start(t).to_rfc3339(), "2026-11-29T10:00:00+00:00");
    }
}
