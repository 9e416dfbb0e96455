//! The gRPC `DeliveryService`: the delivery log, Raw, Replay, recover jobs,
//! statistics and projection status. Reads come from the Postgres
//! projections; payloads from HOOKLINE_EVENTS, their only home.

use std::{collections::HashMap, time::Duration};

use async_nats::jetstream::Context;
use chrono::{DateTime, SecondsFormat, TimeDelta, Utc};
use hookline_domain::{
    FieldError,
    endpoint::redact_query,
    event_type::EventType,
    ids::{DeliveryId, EndpointId, JobId, TenantId},
    layout, optional_time,
};
use hookline_proto::delivery::v1::{self as pb, delivery_service_server::DeliveryService};
use hookline_store::{
    projector::Projection,
    queries::{self, AttemptRow, DeliveryFilter, DeliveryRow, DeliveryState, JobRow, Stats},
};
use sqlx::PgPool;
use tonic::{Request, Response, Status};
use tracing::Instrument;

use crate::{
    Error,
    replay::{self, bus_unavailable},
};

/// Rows per page unless asked otherwise, and the most a page may hold.
const DEFAULT_PAGE: u32 = 50;
const MAX_PAGE: u32 = 200;

#[derive(Clone)]
pub struct DeliveryApi {
    pool: PgPool,
    js: Context,
    /// HOOKLINE_ARCHIVE_AFTER: payloads older than this are refused even
    /// before the janitor marks them.
    archive_after: Duration,
    /// Current endpoints, so a log request right after creation is not refused
    /// while the projection catches up.
    directory: hookline_tenants::Directory,
}

impl DeliveryApi {
    pub fn new(pool: PgPool, js: Context, archive_after: Duration, directory: hookline_tenants::Directory) -> Self {
        Self { pool, js, archive_after, directory }
    }

    /// The tenant's delivery, or NOT_FOUND (also for another tenant's id).
    async fn delivery(&self, tenant: &TenantId, id: &DeliveryId) -> Result<DeliveryRow, Error> {
        queries::get_delivery(&self.pool, tenant, id).await?.ok_or_else(|| Error::DeliveryNotFound(id.clone()))
    }

    /// Another tenant's endpoint id answers NOT_FOUND, like a missing one.
    async fn own_endpoint(&self, tenant: &TenantId, endpoint: &EndpointId) -> Result<(), Error> {
        if self.directory.endpoint(tenant, endpoint).is_some()
            || queries::endpoint_belongs(&self.pool, tenant, endpoint).await?
        {
            Ok(())
        } else {
            Err(Error::EndpointNotFound(endpoint.clone()))
        }
    }

    /// The endpoint a log request names, checked as the tenant's; `None`
    /// (the whole tenant's log) when it names none, once the tenant is known.
    async fn scope(&self, tenant: &TenantId, endpoint: &str) -> Result<Option<EndpointId>, Error> {
        if endpoint.is_empty() {
            if self.directory.tenant(tenant).is_none() {
                return Err(Error::TenantNotFound(tenant.clone()));
            }
            return Ok(None);
        }
        let endpoint = endpoint_id(endpoint)?;
        self.own_endpoint(tenant, &endpoint).await?;
        Ok(Some(endpoint))
    }

    async fn list(&self, r: pb::ListDeliveriesRequest) -> Result<pb::ListDeliveriesResponse, Error> {
        let tenant = tenant_id(&r.tenant_id)?;
        let endpoint = self.scope(&tenant, &r.endpoint_id).await?;
        let page_size = match r.page_size {
            0 => DEFAULT_PAGE,
            n if n > MAX_PAGE => return Err(FieldError::new("page_size", format!("must be 1-{MAX_PAGE}")).into()),
            n => n,
        };
        let after = match r.page_token.as_str() {
            "" => None,
            t => Some(DeliveryId::parse(t).map_err(|_| FieldError::new("page_token", "is not a token of this list"))?),
        };
        let filter = DeliveryFilter {
            states: r.states.iter().map(|&s| state_name(s)).collect::<Result<_, _>>()?,
            event_type: match r.event_type.as_str() {
                "" => None,
                t => Some(EventType::parse(t).map_err(|e| e.under("event_type"))?),
            },
            created_after: optional_time(&r.created_after, "created_after")?,
            created_before: optional_time(&r.created_before, "created_before")?,
            replayed: r.replayed,
            test: r.test,
        };
        let page = queries::list_deliveries(&self.pool, &tenant, endpoint.as_ref(), &filter, page_size, after.as_ref())
            .await?;
        Ok(pb::ListDeliveriesResponse {
            deliveries: page.rows.into_iter().map(delivery_pb).collect(),
            next_page_token: page.next_after.map(String::from).unwrap_or_default(),
        })
    }

    /// Check the request, then stream the deliveries page by page as the
    /// client reads them.
    async fn export(&self, r: pb::ExportDeliveriesRequest) -> Result<ExportStream, Error> {
        let tenant = tenant_id(&r.tenant_id)?;
        let endpoint = self.scope(&tenant, &r.endpoint_id).await?;
        let filter = DeliveryFilter {
            created_after: optional_time(&r.created_after, "created_after")?,
            created_before: optional_time(&r.created_before, "created_before")?,
            ..Default::default()
        };
        let export = Export {
            pool: self.pool.clone(),
            tenant,
            endpoint,
            filter,
            after: None,
            page: std::collections::VecDeque::new(),
            done: false,
        };
        Ok(Box::pin(futures_util::stream::unfold(export, |mut export| async move {
            if export.page.is_empty()
                && !export.done
                && let Err(e) = export.next_page().await
            {
                export.done = true;
                return Some((Err(Status::from(e)), export));
            }
            let detail = export.page.pop_front()?;
            Some((Ok(detail), export))
        })))
    }

    async fn detail(&self, r: pb::GetDeliveryRequest) -> Result<pb::DeliveryDetail, Error> {
        let (tenant, id) = (tenant_id(&r.tenant_id)?, delivery_id(&r.delivery_id)?);
        let row = self.delivery(&tenant, &id).await?;
        let attempts = queries::attempts(&self.pool, &row.id).await?;
        Ok(pb::DeliveryDetail {
            delivery: Some(delivery_pb(row)),
            attempts: attempts.into_iter().map(attempt_pb).collect(),
        })
    }

    /// The attempt's request as sent: recorded headers, body re-rendered from
    /// the stored event and checked against the recorded hash.
    async fn raw(&self, r: pb::GetDeliveryRawRequest) -> Result<pb::RawRequest, Error> {
        let (tenant, id) = (tenant_id(&r.tenant_id)?, delivery_id(&r.delivery_id)?);
        let row = self.delivery(&tenant, &id).await?;
        replay::payload_kept(&row, self.archive_after)?;
        let attempts = queries::attempts(&self.pool, &row.id).await?;
        let attempt = match r.attempt {
            0 => attempts.last(),
            n => attempts.iter().find(|a| i64::from(a.attempt) == i64::from(n)),
        }
        .ok_or_else(|| Error::AttemptNotFound { delivery: row.id.clone(), attempt: r.attempt })?;
        let number = attempt.attempt.max(0) as u32;
        let Some(sent) = attempt.request.as_ref().map(|j| &j.0) else {
            return Err(Error::NothingSent { delivery: row.id.clone(), attempt: number });
        };
        let event = replay::load_event(&self.js, &row).await?;
        let body = layout::render(&event, sent.layout);
        if hookline_domain::signing::sha256_hex(&body) != sent.body_sha256 {
            return Err(Error::PayloadChanged(row.id.clone()));
        }
        Ok(pb::RawRequest {
            attempt: number,
            method: "POST".into(),
            url: if r.reveal_url { sent.url.clone() } else { redact_query(&sent.url).into_owned() },
            headers: sent
                .headers
                .iter()
                .map(|(name, value)| pb::Header { name: name.clone(), value: value.clone() })
                .collect(),
            body,
        })
    }

    async fn replay(&self, r: pb::ReplayDeliveryRequest) -> Result<pb::ReplayDeliveryResponse, Error> {
        let (tenant, id) = (tenant_id(&r.tenant_id)?, delivery_id(&r.delivery_id)?);
        let row = self.delivery(&tenant, &id).await?;
        let new = replay::replay(&self.js, &tenant, &row, self.archive_after).await?;
        tracing::info!(tenant = %tenant, delivery = %new, replay_of = %row.id, "replay queued");
        Ok(pb::ReplayDeliveryResponse { delivery_id: new.into(), replay_of: row.id.into() })
    }

    /// Queue a test event of the asked type for the endpoint alone.
    async fn send_test(&self, r: pb::SendTestEventRequest) -> Result<pb::SendTestEventResponse, Error> {
        let (tenant, endpoint) = (tenant_id(&r.tenant_id)?, endpoint_id(&r.endpoint_id)?);
        let event_type = match r.event_type.as_str() {
            "" => return Err(FieldError::new("event_type", "is required").into()),
            t => EventType::parse(t).map_err(|e| e.under("event_type"))?,
        };
        // The current configuration (a moment-old change through another
        // replica included): the worker reads the endpoint from it too.
        let mut found = self.directory.endpoint(&tenant, &endpoint);
        if found.is_none() {
            self.directory.catch_up().await.map_err(|e| Error::Unavailable(e.into()))?;
            found = self.directory.endpoint(&tenant, &endpoint);
        }
        let config = found.ok_or_else(|| Error::EndpointNotFound(endpoint.clone()))?;
        if !config.enabled {
            return Err(Error::EndpointDisabled { endpoint: endpoint.clone(), reason: config.disabled_reason.clone() });
        }
        let (delivery, event) = replay::send_test(&self.js, &tenant, &endpoint, event_type).await?;
        tracing::info!(tenant = %tenant, endpoint_id = %endpoint, delivery = %delivery, event_id = %event,
            event_type = event_type.as_str(), "test event queued");
        Ok(pb::SendTestEventResponse { delivery_id: delivery.to_string(), event_id: event.to_string() })
    }

    /// Record the job, start it in the background and answer at once.
    async fn recover(&self, r: pb::RecoverEndpointRequest) -> Result<pb::RecoverJob, Error> {
        let (tenant, endpoint) = (tenant_id(&r.tenant_id)?, endpoint_id(&r.endpoint_id)?);
        self.own_endpoint(&tenant, &endpoint).await?;
        let since = optional_time(&r.since, "since")?.ok_or_else(|| FieldError::new("since", "is required"))?;
        let id = JobId::generate();
        let job = queries::create_job(&self.pool, &id, &tenant, &endpoint, since).await?;
        let span = tracing::info_span!("recover", job = %id, tenant = %tenant, endpoint_id = %endpoint);
        let run = replay::run_recover(
            self.pool.clone(),
            self.js.clone(),
            self.archive_after,
            tenant,
            endpoint,
            since,
            id.clone(),
        );
        tokio::spawn(run.instrument(span));
        Ok(job_pb(job))
    }

    async fn job(&self, r: pb::GetRecoverJobRequest) -> Result<pb::RecoverJob, Error> {
        let tenant = tenant_id(&r.tenant_id)?;
        let id = JobId::parse(&r.job_id).map_err(|e| e.under("job_id"))?;
        let job = queries::get_job(&self.pool, &tenant, &id).await?;
        Ok(job_pb(job.ok_or_else(|| Error::JobNotFound(id))?))
    }

    async fn endpoint_stats(&self, r: pb::GetEndpointStatsRequest) -> Result<pb::Stats, Error> {
        let (tenant, endpoint) = (tenant_id(&r.tenant_id)?, endpoint_id(&r.endpoint_id)?);
        self.own_endpoint(&tenant, &endpoint).await?;
        let since = Utc::now() - window(r.window)?;
        Ok(stats_pb(&queries::endpoint_stats(&self.pool, &tenant, &endpoint, since).await?))
    }

    async fn tenant_stats(&self, r: pb::GetTenantStatsRequest) -> Result<pb::TenantStats, Error> {
        let tenant = tenant_id(&r.tenant_id)?;
        let since = Utc::now() - window(r.window)?;
        let stats = queries::tenant_stats(&self.pool, &tenant, since).await?;
        Ok(pb::TenantStats {
            total: Some(stats_pb(&stats.total)),
            endpoints: stats.endpoints.iter().filter(|s| s.attempts > 0).map(stats_pb).collect(),
        })
    }

    /// Each projector's applied offset against its stream's last sequence.
    async fn status(&self) -> Result<pb::ProjectionStatus, Error> {
        let offsets: HashMap<String, i64> = queries::projector_offsets(&self.pool).await?.into_iter().collect();
        let mut projectors = Vec::new();
        for p in Projection::ALL {
            let stream = self.js.get_stream(p.stream()).await.map_err(bus_unavailable)?;
            let last = stream.cached_info().state.last_sequence;
            let applied = offsets.get(p.name()).copied().unwrap_or(0).max(0) as u64;
            projectors.push(pb::ProjectorStatus {
                projector: p.name().into(),
                applied_sequence: applied,
                stream_sequence: last,
                lag: last.saturating_sub(applied),
            });
        }
        Ok(pb::ProjectionStatus { projectors })
    }

    async fn rebuild(&self) -> Result<pb::ProjectionStatus, Error> {
        hookline_store::reset_projections(&self.pool).await?;
        tracing::warn!("projections reset on request; the projectors rebuild them from the streams");
        self.status().await
    }
}

/// Deliveries an export reads from Postgres at once.
const EXPORT_PAGE: u32 = 500;

/// What `ExportDeliveries` answers with.
type ExportStream = std::pin::Pin<Box<dyn futures_util::Stream<Item = Result<pb::DeliveryDetail, Status>> + Send>>;

/// An export under way: the keyset position and the page not yet sent.
struct Export {
    pool: PgPool,
    tenant: TenantId,
    endpoint: Option<EndpointId>,
    filter: DeliveryFilter,
    /// The last id read; the next page starts below it.
    after: Option<DeliveryId>,
    page: std::collections::VecDeque<pb::DeliveryDetail>,
    /// No page follows.
    done: bool,
}

impl Export {
    /// Read the next page of deliveries and, in one more query, their attempts.
    async fn next_page(&mut self) -> Result<(), Error> {
        let page = queries::list_deliveries(
            &self.pool,
            &self.tenant,
            self.endpoint.as_ref(),
            &self.filter,
            EXPORT_PAGE,
            self.after.as_ref(),
        )
        .await?;
        let ids: Vec<DeliveryId> = page.rows.iter().map(|d| d.id.clone()).collect();
        let mut attempts: HashMap<DeliveryId, Vec<pb::Attempt>> = HashMap::with_capacity(ids.len());
        for a in queries::attempts_of(&self.pool, &ids).await? {
            attempts.entry(a.delivery_id.clone()).or_default().push(attempt_pb(a));
        }
        self.done = page.next_after.is_none();
        self.after = page.next_after;
        self.page.extend(page.rows.into_iter().map(|d| pb::DeliveryDetail {
            attempts: attempts.remove(&d.id).unwrap_or_default(),
            delivery: Some(delivery_pb(d)),
        }));
        Ok(())
    }
}

use hookline_auth::{check_operator, check_tenant};

#[tonic::async_trait]
impl DeliveryService for DeliveryApi {
    async fn list_deliveries(
        &self,
        req: Request<pb::ListDeliveriesRequest>,
    ) -> Result<Response<pb::ListDeliveriesResponse>, Status> {
        check_tenant(&req, &req.get_ref().tenant_id)?;
        Ok(Response::new(self.list(req.into_inner()).await?))
    }

    async fn get_delivery(&self, req: Request<pb::GetDeliveryRequest>) -> Result<Response<pb::DeliveryDetail>, Status> {
        check_tenant(&req, &req.get_ref().tenant_id)?;
        Ok(Response::new(self.detail(req.into_inner()).await?))
    }

    async fn get_delivery_raw(
        &self,
        req: Request<pb::GetDeliveryRawRequest>,
    ) -> Result<Response<pb::RawRequest>, Status> {
        check_tenant(&req, &req.get_ref().tenant_id)?;
        Ok(Response::new(self.raw(req.into_inner()).await?))
    }

    async fn replay_delivery(
        &self,
        req: Request<pb::ReplayDeliveryRequest>,
    ) -> Result<Response<pb::ReplayDeliveryResponse>, Status> {
        check_tenant(&req, &req.get_ref().tenant_id)?;
        Ok(Response::new(self.replay(req.into_inner()).await?))
    }

    async fn recover_endpoint(
        &self,
        req: Request<pb::RecoverEndpointRequest>,
    ) -> Result<Response<pb::RecoverJob>, Status> {
        check_tenant(&req, &req.get_ref().tenant_id)?;
        Ok(Response::new(self.recover(req.into_inner()).await?))
    }

    async fn get_recover_job(
        &self,
        req: Request<pb::GetRecoverJobRequest>,
    ) -> Result<Response<pb::RecoverJob>, Status> {
        check_tenant(&req, &req.get_ref().tenant_id)?;
        Ok(Response::new(self.job(req.into_inner()).await?))
    }

    async fn get_endpoint_stats(
        &self,
        req: Request<pb::GetEndpointStatsRequest>,
    ) -> Result<Response<pb::Stats>, Status> {
        check_tenant(&req, &req.get_ref().tenant_id)?;
        Ok(Response::new(self.endpoint_stats(req.into_inner()).await?))
    }

    async fn get_tenant_stats(
        &self,
        req: Request<pb::GetTenantStatsRequest>,
    ) -> Result<Response<pb::TenantStats>, Status> {
        check_tenant(&req, &req.get_ref().tenant_id)?;
        Ok(Response::new(self.tenant_stats(req.into_inner()).await?))
    }

    async fn send_test_event(
        &self,
        req: Request<pb::SendTestEventRequest>,
    ) -> Result<Response<pb::SendTestEventResponse>, Status> {
        check_tenant(&req, &req.get_ref().tenant_id)?;
        Ok(Response::new(self.send_test(req.into_inner()).await?))
    }

    type ExportDeliveriesStream = ExportStream;

    async fn export_deliveries(
        &self,
        req: Request<pb::ExportDeliveriesRequest>,
    ) -> Result<Response<ExportStream>, Status> {
        check_tenant(&req, &req.get_ref().tenant_id)?;
        Ok(Response::new(self.export(req.into_inner()).await?))
    }

    async fn get_projection_status(
        &self,
        req: Request<pb::GetProjectionStatusRequest>,
    ) -> Result<Response<pb::ProjectionStatus>, Status> {
        check_operator(&req)?;
        Ok(Response::new(self.status().await?))
    }

    async fn rebuild_projections(
        &self,
        req: Request<pb::RebuildProjectionsRequest>,
    ) -> Result<Response<pb::ProjectionStatus>, Status> {
        check_operator(&req)?;
        Ok(Response::new(self.rebuild().await?))
    }
}

// ------------------------------------------------------------ parsing

fn tenant_id(s: &str) -> Result<TenantId, Error> {
    Ok(TenantId::parse(s).map_err(|e| e.under("tenant_id"))?)
}

fn endpoint_id(s: &str) -> Result<EndpointId, Error> {
    Ok(EndpointId::parse(s).map_err(|e| e.under("endpoint_id"))?)
}

fn delivery_id(s: &str) -> Result<DeliveryId, Error> {
    Ok(DeliveryId::parse(s).map_err(|e| e.under("delivery_id"))?)
}

/// The `deliveries.state` a requested state filter means.
fn state_name(state: i32) -> Result<DeliveryState, FieldError> {
    match pb::DeliveryState::try_from(state) {
        Ok(pb::DeliveryState::Succeeded) => Ok(DeliveryState::Succeeded),
        Ok(pb::DeliveryState::Failing) => Ok(DeliveryState::Failing),
        Ok(pb::DeliveryState::Failed) => Ok(DeliveryState::Failed),
        Ok(pb::DeliveryState::Archived) => Ok(DeliveryState::Archived),
        _ => Err(FieldError::new("states", "must be SUCCEEDED, FAILING, FAILED or ARCHIVED")),
    }
}

fn window(w: i32) -> Result<TimeDelta, FieldError> {
    match pb::StatsWindow::try_from(w) {
        Ok(pb::StatsWindow::Unspecified | pb::StatsWindow::Last24h) => Ok(TimeDelta::hours(24)),
        Ok(pb::StatsWindow::Last7d) => Ok(TimeDelta::days(7)),
        Ok(pb::StatsWindow::Last30d) => Ok(TimeDelta::days(30)),
        Err(_) => Err(FieldError::new("window", "must be LAST_24H, LAST_7D or LAST_30D")),
    }
}

// ------------------------------------------------------------ output

fn ts(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// Counts are never negative; a column that somehow is reads as 0.
fn count(n: impl TryInto<u64>) -> u64 {
    n.try_into().unwrap_or(0)
}

fn delivery_pb(d: DeliveryRow) -> pb::Delivery {
    let state = match d.state {
        DeliveryState::Succeeded => pb::DeliveryState::Succeeded,
        DeliveryState::Failing => pb::DeliveryState::Failing,
        DeliveryState::Failed => pb::DeliveryState::Failed,
        DeliveryState::Archived => pb::DeliveryState::Archived,
    };
    pb::Delivery {
        id: d.id.into(),
        event_id: d.event_id.into(),
        event_type: d.event_type.as_str().to_owned(),
        endpoint_id: d.endpoint_id.into(),
        created_at: ts(d.created_at),
        last_attempt_at: ts(d.last_attempt_at),
        attempt_count: count(d.attempt_count) as u32,
        last_status_code: count(d.last_status_code.unwrap_or(0)) as u32,
        last_error_kind: d.last_error_kind.unwrap_or_default(),
        state: state.into(),
        replay_of: d.replay_of.map(String::from).unwrap_or_default(),
        replay_count: count(d.replay_count) as u32,
        archived_at: d.archived_at.map(ts).unwrap_or_default(),
        test: d.test,
    }
}

fn attempt_pb(a: AttemptRow) -> pb::Attempt {
    pb::Attempt {
        number: count(a.attempt) as u32,
        started_at: ts(a.started_at),
        duration_ms: count(a.duration_ms),
        status_code: count(a.status_code.unwrap_or(0)) as u32,
        error_kind: a.error_kind.unwrap_or_default(),
        error: a.error.unwrap_or_default(),
        response_excerpt: a.response_excerpt.unwrap_or_default(),
        outcome: a.outcome.as_str().to_owned(),
        trace_id: a.trace_id.unwrap_or_default(),
    }
}

fn stats_pb(s: &Stats) -> pb::Stats {
    pb::Stats {
        endpoint_id: s.endpoint_id.as_ref().map(|e| e.to_string()).unwrap_or_default(),
        attempts: count(s.attempts),
        accepted: count(s.accepted),
        not_accepted: count(s.attempts - s.accepted),
        status_2xx: count(s.status[0]),
        status_3xx: count(s.status[1]),
        status_4xx: count(s.status[2]),
        status_5xx: count(s.status[3]),
        errors: s
            .errors_by_count()
            .into_iter()
            .map(|(kind, n)| pb::ErrorKindCount { kind: kind.to_owned(), count: count(n) })
            .collect(),
        success_rate: s.success_rate(),
        latency_p50_ms: s.latency_ms(0.50),
        latency_p95_ms: s.latency_ms(0.95),
        latency_p99_ms: s.latency_ms(0.99),
    }
}

fn job_pb(j: JobRow) -> pb::RecoverJob {
    pb::RecoverJob {
        id: j.id.into(),
        endpoint_id: j.endpoint_id.into(),
        since: ts(j.since),
        total: count(j.total) as u32,
        done: count(j.done) as u32,
        state: j.state.as_str().to_owned(),
        error: j.error.unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(e: impl Into<Error>) -> Status {
        Status::from(e.into())
    }

    #[test]
    fn bad_input_names_the_field() {
        let s = status(delivery_id("evt_01KB0000000000000000000000").unwrap_err());
        assert_eq!((s.code(), s.message()), (tonic::Code::InvalidArgument, "delivery_id: must start with `dlv_`"));
        let s = status(optional_time("yesterday", "created_after").unwrap_err());
        assert!(s.message().starts_with("created_after: must be an RFC 3339"), "{}", s.message());
        assert_eq!(optional_time("", "since").unwrap(), None);
        assert!(optional_time("2026-11-29T10:00:00+01:00", "since").unwrap().is_some());
        assert!(state_name(0).is_err() && state_name(99).is_err());
        assert_eq!(state_name(pb::DeliveryState::Archived.into()).unwrap(), DeliveryState::Archived);
        assert_eq!(window(0).unwrap(), TimeDelta::hours(24));
        assert_eq!(window(pb::StatsWindow::Last30d.into()).unwrap(), TimeDelta::days(30));
        assert!(window(7).is_err());
    }

    #[test]
    fn errors_map_to_codes() {
        let id = DeliveryId::parse("dlv_01KB0000000000000000000000").unwrap();
        let s = status(Error::DeliveryNotFound(id.clone()));
        assert_eq!(
            (s.code(), s.message()),
            (tonic::Code::NotFound, "delivery `dlv_01KB0000000000000000000000` not found")
        );
        assert_eq!(status(Error::PayloadGone(id)).code(), tonic::Code::FailedPrecondition);
        assert_eq!(status(Error::Unavailable("down".into())).code(), tonic::Code::Unavailable);
    }

    #[test]
    fn rows_become_messages() {
        let t = DateTime::parse_from_rfc3339("2026-11-29T10:00:00.5Z").unwrap().with_timezone(&Utc);
        let d = delivery_pb(DeliveryRow {
            id: DeliveryId::generate(),
            tenant_id: TenantId::parse("acme").unwrap(),
            endpoint_id: EndpointId::generate(),
            event_id: hookline_domain::ids::EventId::generate(),
            event_type: EventType::CustomerUpdated,
            event_seq: 3,
            created_at: t,
            last_attempt_at: t,
            attempt_count: 2,
            last_status_code: None,
            last_error_kind: Some("timeout".into()),
            state: DeliveryState::Archived,
            replay_of: None,
            replay_count: 1,
            archived_at: Some(t),
            test: false,
        });
        assert_eq!(d.state, pb::DeliveryState::Archived as i32);
        assert_eq!(
            (d.created_at.as_str(), d.archived_at.as_str()),
            ("2026-11-29T10:00:00.500Z", "2026-11-29T10:00:00.500Z")
        );
        assert_eq!((d.last_status_code, d.last_error_kind.as_str(), d.replay_count), (0, "timeout", 1));
        let endpoint = EndpointId::generate();
        let mut s = Stats::new(Some(endpoint.clone()));
        s.attempts = 5;
        s.accepted = 4;
        s.errors.insert("http_status".into(), 1);
        let p = stats_pb(&s);
        assert_eq!((p.attempts, p.accepted, p.not_accepted, p.errors.len()), (5, 4, 1, 1));
        assert_eq!(p.endpoint_id, endpoint.as_str());
        assert_eq!(stats_pb(&Stats::new(None)).endpoint_id, "", "a tenant's total names no endpoint");
        assert!((p.success_rate - 0.8).abs() < 1e-9);
    }
}
