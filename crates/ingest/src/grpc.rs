//! gRPC `IngestService`. Typed payloads are turned into the producer JSON
//! form and parsed by the same code as NATS intake, so both paths enforce
//! exactly the same rules.

use hookline_domain::{FieldError, event_type::EventType, events::NewEvent, ids::TenantId, optional_time};
use hookline_proto::ingest::v1::{self as pb, ingest_service_server::IngestService, publish_request::Payload as P};
use hookline_telemetry::trace::TraceParent;
use serde_json::{Map, Value, json};
use tonic::{Request, Response, Status};
use tracing::Instrument as _;

use hookline_auth::check_tenant;

use crate::{
    Appender, Error,
    append::Accepted,
    limit::{Refusal, TenantLimiter},
    rejected,
};

/// Most events one `PublishBatch` takes.
pub const MAX_BATCH: usize = 500;

#[derive(Clone)]
pub struct IngestApi {
    appender: Appender,
    limiter: TenantLimiter,
}

impl IngestApi {
    pub fn new(appender: Appender, limiter: TenantLimiter) -> Self {
        Self { appender, limiter }
    }

    /// Take `n` events of a tenant from its rate. Callers pass only tenants
    /// this process holds or [`Appender::prepare`] found, so unknown ids
    /// never reach the limiter.
    fn admit(&self, tenant: &TenantId, n: usize) -> Result<(), Error> {
        self.limiter.take(tenant, n).map_err(|refusal| match refusal {
            Refusal::Wait(wait) => Error::RateLimited {
                tenant: tenant.to_string(),
                per_second: self.limiter.per_second(),
                retry_after_ms: wait.as_millis().max(1),
            },
            Refusal::OverBurst { burst } => Error::Invalid(FieldError::new(
                "events",
                format!(
                    "holds {n} events of tenant `{tenant}`, more than HOOKLINE_TENANT_BURST ({burst}) lets through at \
                     once; send at most {burst} per batch"
                ),
            )),
        })
    }
}

/// Rejection records per page unless asked otherwise, and the most a page may hold.
const DEFAULT_REJECTED_PAGE: u32 = 20;
const MAX_REJECTED_PAGE: u32 = 100;

/// A `ListRejectedEvents` request as the stream is read.
fn rejected_query(r: &pb::ListRejectedEventsRequest) -> Result<rejected::Query, FieldError> {
    let tenant = TenantId::parse(&r.tenant_id).map_err(|e| e.under("tenant_id"))?;
    let page_size = match r.page_size {
        0 => DEFAULT_REJECTED_PAGE,
        n if n > MAX_REJECTED_PAGE => {
            return Err(FieldError::new("page_size", format!("must be 1-{MAX_REJECTED_PAGE}")));
        }
        n => n,
    };
    let before_sequence = match r.page_token.as_str() {
        "" => None,
        t => Some(
            t.parse::<u64>()
                .ok()
                .filter(|&s| s > 0)
                .ok_or_else(|| FieldError::new("page_token", "is not a token of this list"))?,
        ),
    };
    Ok(rejected::Query {
        tenant,
        after: optional_time(&r.rejected_after, "rejected_after")?,
        before: optional_time(&r.rejected_before, "rejected_before")?,
        before_sequence,
        page_size: page_size as usize,
    })
}

fn rejected_pb(r: rejected::Rejected) -> Result<pb::RejectedEvent, Error> {
    let (payload, payload_truncated) =
        r.record.payload.bytes().map_err(|e| Error::Unreadable { sequence: r.sequence, source: Box::new(e) })?;
    Ok(pb::RejectedEvent {
        sequence: r.sequence,
        rejected_at: r.stored_at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        field: r.record.error.field,
        rule: r.record.error.rule,
        message: r.record.error.message,
        intake_sequence: r.record.intake_sequence,
        intake_stored_at: r.record.intake_stored_at.unwrap_or_default(),
        payload,
        payload_size: r.record.payload_bytes,
        payload_truncated,
    })
}

/// Drop what proto3 cannot tell from "absent": empty strings, zero numbers,
/// empty lists and messages, so required-field checks see them as missing.
fn strip_empty(v: Value) -> Option<Value> {
    match v {
        Value::Null => None,
        Value::String(s) if s.is_empty() => None,
        Value::Number(n) if n.as_u64() == Some(0) => None,
        Value::Array(a) if a.is_empty() => None,
        Value::Object(o) => {
            let m: Map<String, Value> = o.into_iter().filter_map(|(k, v)| strip_empty(v).map(|v| (k, v))).collect();
            (!m.is_empty()).then_some(Value::Object(m))
        }
        other => Some(other),
    }
}

fn typed(payload: &P) -> Option<(EventType, Value)> {
    use EventType as T;
    let to = |v: Result<Value, serde_json::Error>| v.expect("proto payloads serialise");
    Some(match payload {
        P::AppointmentBookingCreated(m) => (T::AppointmentBookingCreated, to(serde_json::to_value(m))),
        P::AppointmentBookingCancelled(m) => (T::AppointmentBookingCancelled, to(serde_json::to_value(m))),
        P::AppointmentUpdated(m) => (T::AppointmentUpdated, to(serde_json::to_value(m))),
        P::AppointmentManualBookingCreated(m) => (T::AppointmentManualBookingCreated, to(serde_json::to_value(m))),
        P::AppointmentBookingRebooked(m) => (T::AppointmentBookingRebooked, to(serde_json::to_value(m))),
        P::EventBookingCreated(m) => (T::EventBookingCreated, to(serde_json::to_value(m))),
        P::EventBookingCancelled(m) => (T::EventBookingCancelled, to(serde_json::to_value(m))),
        P::EventManualBookingCreated(m) => (T::EventManualBookingCreated, to(serde_json::to_value(m))),
        P::EventBookingRebooked(m) => (T::EventBookingRebooked, to(serde_json::to_value(m))),
        P::CustomerCreated(m) => (T::CustomerCreated, to(serde_json::to_value(m))),
        P::CustomerUpdated(m) => (T::CustomerUpdated, to(serde_json::to_value(m))),
        P::CustomerDeleted(m) => (T::CustomerDeleted, to(serde_json::to_value(m))),
        P::Json(_) => return None,
    })
}

/// Parse one request into a validated event (no I/O).
pub fn parse_request(r: &pb::PublishRequest) -> Result<NewEvent, FieldError> {
    let payload = r
        .payload
        .as_ref()
        .ok_or_else(|| FieldError::new("payload", "is required: set one typed event message or `json`"))?;
    if let P::Json(json) = payload {
        if !r.idempotency_key.is_empty() || !r.occurred_at.is_empty() {
            return Err(FieldError::new(
                "json",
                "carries idempotency_key and occurred_at itself; leave the request fields empty",
            ));
        }
        return NewEvent::from_json(json.as_bytes());
    }
    let (event_type, data) = typed(payload).expect("non-json payload");
    let mut event = json!({"type": event_type.as_str(), "data": strip_empty(data).unwrap_or(json!({}))});
    if !r.idempotency_key.is_empty() {
        event["idempotency_key"] = r.idempotency_key.clone().into();
    }
    if !r.occurred_at.is_empty() {
        event["occurred_at"] = r.occurred_at.clone().into();
    }
    NewEvent::from_json(&serde_json::to_vec(&event).expect("JSON serialises"))
}

/// The call's `publish` span (made only when spans are exported), under
/// the caller's W3C `traceparent` metadata when it sent one, and the trace
/// context its events continue.
fn publish_span<T>(req: &Request<T>, method: &'static str) -> (tracing::Span, TraceParent) {
    let caller = req
        .metadata()
        .get(hookline_telemetry::trace::TRACEPARENT)
        .and_then(|v| v.to_str().ok())
        .and_then(TraceParent::parse);
    let span = hookline_telemetry::trace::when_exporting(|| {
        tracing::info_span!(
            "publish",
            otel.kind = "server",
            rpc.system = "grpc",
            rpc.service = "hookline.ingest.v1.IngestService",
            rpc.method = method
        )
    });
    let trace = hookline_telemetry::trace::start(&span, caller);
    (span, trace)
}

fn response(a: Accepted) -> pb::PublishResponse {
    pb::PublishResponse {
        event_id: a.event_id,
        duplicate: a.duplicate,
        stream_sequence: a.sequence,
        event_type: a.event_type,
    }
}

#[tonic::async_trait]
impl IngestService for IngestApi {
    async fn publish(&self, req: Request<pb::PublishRequest>) -> Result<Response<pb::PublishResponse>, Status> {
        let (span, trace) = publish_span(&req, "Publish");
        self.publish_one(req, trace).instrument(span).await
    }

    async fn publish_batch(
        &self,
        req: Request<pb::PublishBatchRequest>,
    ) -> Result<Response<pb::PublishBatchResponse>, Status> {
        let (span, trace) = publish_span(&req, "PublishBatch");
        self.publish_many(req, trace).instrument(span).await
    }

    async fn list_rejected_events(
        &self,
        req: Request<pb::ListRejectedEventsRequest>,
    ) -> Result<Response<pb::ListRejectedEventsResponse>, Status> {
        self.list_rejected(req).await
    }
}

impl IngestApi {
    async fn publish_one(
        &self,
        req: Request<pb::PublishRequest>,
        trace: TraceParent,
    ) -> Result<Response<pb::PublishResponse>, Status> {
        check_tenant(&req, &req.get_ref().tenant_id)?;
        let r = req.into_inner();
        let event = parse_request(&r).map_err(Error::from).inspect_err(|e| e.count("grpc"))?;
        // A tenant this process holds takes its rate before the stream read
        // of `prepare`, so refused publishes of a busy tenant cost no read;
        // any other id is checked against the stream first, as in intake.
        let known = TenantId::parse(&r.tenant_id).ok().filter(|t| self.appender.knows_locally(t));
        if let Some(t) = &known {
            self.admit(t, 1).inspect_err(|e| e.count("grpc"))?;
        }
        let prepared = self
            .appender
            .prepare(&mut Default::default(), "grpc", &r.tenant_id, event, None)
            .await
            .inspect_err(|e| e.count("grpc"))?
            .traced(Some(trace));
        if known.is_none() {
            self.admit(prepared.tenant(), 1).inspect_err(|e| e.count("grpc"))?;
        }
        Ok(Response::new(response(self.appender.append(&prepared).await?)))
    }

    async fn publish_many(
        &self,
        req: Request<pb::PublishBatchRequest>,
        trace: TraceParent,
    ) -> Result<Response<pb::PublishBatchResponse>, Status> {
        for e in &req.get_ref().events {
            check_tenant(&req, &e.tenant_id)?;
        }
        let r = req.into_inner();
        if r.events.is_empty() || r.events.len() > MAX_BATCH {
            let e = FieldError::new("events", format!("must hold 1 to {MAX_BATCH} events, got {}", r.events.len()));
            return Err(Error::from(e).into());
        }
        let mut prepared = Vec::with_capacity(r.events.len());
        let mut synced = crate::append::Synced::default();
        // Every event is parsed before the call is refused, so the answer
        // names each bad field at once (one BadRequest violation each).
        let mut events = Vec::with_capacity(r.events.len());
        let mut bad = Vec::new();
        for (i, e) in r.events.iter().enumerate() {
            match parse_request(e) {
                Ok(event) => events.push(event),
                Err(err) => bad.push(err.under(&format!("events[{i}]"))),
            }
        }
        if !bad.is_empty() {
            let e = Error::InvalidBatch(bad);
            e.count("grpc");
            return Err(e.into());
        }
        for ((i, e), event) in r.events.iter().enumerate().zip(events) {
            let at = format!("events[{i}]");
            let p = self.appender.prepare(&mut synced, "grpc", &e.tenant_id, event, None).await.map_err(
                |err| match err {
                    Error::Invalid(f) => Error::Invalid(f.under(&at)),
                    Error::UnknownTenant(t) => Error::UnknownTenant(t),
                    other => other,
                },
            )?;
            prepared.push(p.traced(Some(trace)));
        }
        let mut per_tenant = std::collections::BTreeMap::<&TenantId, usize>::new();
        for p in &prepared {
            *per_tenant.entry(p.tenant()).or_default() += 1;
        }
        for (tenant, n) in per_tenant {
            self.admit(tenant, n).inspect_err(|e| e.count("grpc"))?;
        }
        let _budget = hookline_bus::ack_budget(prepared.len()).await;
        let mut acks = Vec::with_capacity(prepared.len());
        for p in &prepared {
            acks.push(self.appender.send(p).instrument(p.span()).await?);
        }
        let mut results = Vec::with_capacity(prepared.len());
        for (p, ack) in prepared.iter().zip(acks) {
            results.push(response(self.appender.confirm(p, ack).instrument(p.span()).await?));
        }
        Ok(Response::new(pb::PublishBatchResponse { results }))
    }

    async fn list_rejected(
        &self,
        req: Request<pb::ListRejectedEventsRequest>,
    ) -> Result<Response<pb::ListRejectedEventsResponse>, Status> {
        check_tenant(&req, &req.get_ref().tenant_id)?;
        let query = rejected_query(req.get_ref()).map_err(Error::from)?;
        let page = rejected::page(self.appender.jetstream(), &query).await?;
        Ok(Response::new(pb::ListRejectedEventsResponse {
            events: page.records.into_iter().map(rejected_pb).collect::<Result<_, _>>()?,
            next_page_token: page.next_before.map(|s| s.to_string()).unwrap_or_default(),
        }))
    }
}
