//! Appending accepted events to HOOKLINE_EVENTS, with idempotency.
//!
//! Before an event is checked against its tenant, ingest reads the config
//! stream's last sequence from the stream leader (one read per request,
//! shared by the requests waiting meanwhile) and lets its Directory catch
//! up to it, so a tenant created or changed a moment ago through another
//! replica is known. The event carries that
//! sequence (`Hookline-Config-Sequence`) to fan-out, which resolves it
//! against a subscriptions replica that has applied at least as much: an
//! endpoint acknowledged before the event was published always gets it.

use async_nats::{
    HeaderMap,
    jetstream::{Context, context::PublishAckFuture, message::PublishMessage},
};
use hookline_bus::{
    CONFIG_SEQUENCE_HEADER, EVENT_ID_HEADER, EVENT_TYPE_HEADER, EVENTS_STREAM, WEBHOOKS_HEADER, events_subject, header,
};
use hookline_domain::{
    events::{NewEvent, StoredEvent},
    ids::TenantId,
};
use hookline_telemetry::trace::{TRACEPARENT, TraceParent};
use hookline_tenants::{
    Directory,
    directory::{FreshRead, WaitReason},
};

use crate::Error;

/// The result of appending one event.
#[derive(Debug, Clone)]
pub struct Accepted {
    pub event_id: String,
    /// The stored event's type (the first event's, for a duplicate).
    pub event_type: String,
    pub duplicate: bool,
    pub sequence: u64,
}

#[derive(Clone)]
pub struct Appender {
    js: Context,
    directory: Directory,
}

/// An event checked against the tenant directory, ready to publish.
pub struct Prepared {
    /// `grpc` or `nats`, for metrics.
    source: &'static str,
    event: StoredEvent,
    msg_id: Option<String>,
    webhooks_off: bool,
    /// The tenant's last HOOKLINE_CONFIG sequence when the event was checked.
    config_seq: u64,
    /// W3C trace context of the `ingest` span, which the stored event
    /// carries to fan-out.
    trace: TraceParent,
    /// `ingest`: from the check to the stream's ack.
    span: tracing::Span,
}

impl Prepared {
    /// The tenant the event was checked against: one the Directory holds.
    pub fn tenant(&self) -> &TenantId {
        &self.event.tenant_id
    }

    /// Continue the trace of `parent` (the `publish` span, itself under the
    /// producer's `traceparent` header or metadata): the `ingest` span.
    pub fn traced(mut self, parent: Option<TraceParent>) -> Self {
        self.span = tracing::info_span!("ingest", trace_id = tracing::field::Empty, tenant = %self.event.tenant_id,
            event_type = self.event.event_type.as_str());
        self.trace = hookline_telemetry::trace::start(&self.span, parent);
        self.span.record("trace_id", tracing::field::display(self.trace.trace_id_display()));
        self
    }

    /// The `ingest` span, for the calls that publish this event.
    pub fn span(&self) -> tracing::Span {
        self.span.clone()
    }
}

/// The config stream's position read for one request (a batch reads it
/// once), and each tenant's last config sequence as of it.
#[derive(Default)]
pub struct Synced {
    read: Option<FreshRead>,
    tenants: std::collections::HashMap<TenantId, u64>,
}

impl Appender {
    pub fn new(js: Context, directory: Directory) -> Self {
        Self { js, directory }
    }

    /// The JetStream context events are appended through.
    pub(crate) fn jetstream(&self) -> &Context {
        &self.js
    }

    /// Whether this process's Directory holds `tenant` now (no stream read:
    /// a tenant created a moment ago elsewhere may not be there yet).
    pub fn knows_locally(&self, tenant: &TenantId) -> bool {
        self.directory.tenant(tenant).is_some()
    }

    /// The tenant's last config sequence as of a read of the stream made
    /// after this request began (once per request), applied locally.
    async fn sync(&self, synced: &mut Synced, tenant: &TenantId) -> Result<u64, Error> {
        if let Some(seq) = synced.tenants.get(tenant) {
            return Ok(*seq);
        }
        let read = match synced.read {
            Some(read) => read,
            None => *synced.read.insert(self.directory.fresh_stream_seq().await?),
        };
        let seq = self.directory.tenant_seq_as_of(tenant, read, WaitReason::Ingest).await?;
        synced.tenants.insert(tenant.clone(), seq);
        Ok(seq)
    }

    /// Check the tenant, as the config stream has it now, and give the
    /// event its id. `fallback_msg_id` de-duplicates redeliveries of
    /// keyless intake messages.
    pub async fn prepare(
        &self,
        synced: &mut Synced,
        source: &'static str,
        tenant: &str,
        event: NewEvent,
        fallback_msg_id: Option<String>,
    ) -> Result<Prepared, Error> {
        let tenant = TenantId::parse(tenant).map_err(|e| e.under("tenant_id"))?;
        let config_seq = self.sync(synced, &tenant).await?;
        let state = self.directory.tenant(&tenant).ok_or_else(|| Error::UnknownTenant(tenant.clone()))?;
        let msg_id = match &event.idempotency_key {
            Some(key) => Some(format!("idem:{tenant}:{}", key.as_str())),
            None => fallback_msg_id,
        };
        Ok(Prepared {
            source,
            event: StoredEvent::new(tenant, event),
            msg_id,
            webhooks_off: !state.webhooks_enabled,
            config_seq,
            trace: TraceParent::new_root(),
            span: tracing::Span::none(),
        })
    }

    /// Publish without waiting for the stream's ack (so batches pipeline).
    pub async fn send(&self, p: &Prepared) -> Result<PublishAckFuture, Error> {
        let e = &p.event;
        let mut headers = HeaderMap::new();
        headers.insert(EVENT_ID_HEADER, e.id.as_str());
        headers.insert(EVENT_TYPE_HEADER, e.event_type.as_str());
        headers.insert(TRACEPARENT, p.trace.to_string().as_str());
        if p.webhooks_off {
            headers.insert(WEBHOOKS_HEADER, "off");
        }
        headers.insert(CONFIG_SEQUENCE_HEADER, p.config_seq.to_string().as_str());
        let payload = serde_json::to_vec(e).expect("stored events serialise");
        let mut publish = PublishMessage::build().payload(payload.into()).headers(headers);
        if let Some(id) = &p.msg_id {
            publish = publish.message_id(id);
        }
        self.js
            .send_publish(events_subject(&e.tenant_id, e.event_type), publish)
            .await
            .map_err(|e| Error::Unavailable(e.into()))
    }

    /// Await the stream's ack; for a duplicate, look up the first event's id.
    pub async fn confirm(&self, p: &Prepared, ack: PublishAckFuture) -> Result<Accepted, Error> {
        let ack = ack.await.map_err(|e| Error::Unavailable(e.into()))?;
        let mut event_id = p.event.id.to_string();
        let mut event_type = p.event.event_type.as_str().to_owned();
        if ack.duplicate {
            let stream = self.js.get_stream(EVENTS_STREAM).await.map_err(|e| Error::Unavailable(e.into()))?;
            let original = stream.get_raw_message(ack.sequence).await.map_err(|e| Error::Unavailable(e.into()))?;
            if let Some(id) = header(Some(&original.headers), EVENT_ID_HEADER) {
                event_id = id.to_owned();
            }
            if let Some(t) = header(Some(&original.headers), EVENT_TYPE_HEADER) {
                event_type = t.to_owned();
            }
        }
        tracing::info!(trace_id = %p.trace.trace_id(), event_id = %event_id, tenant = %p.event.tenant_id, event_type = %event_type,
            duplicate = ack.duplicate, seq = ack.sequence, webhooks_off = p.webhooks_off, "event accepted");
        if !ack.duplicate {
            let m = hookline_telemetry::metrics();
            let labels = hookline_telemetry::labels([("event_type", &event_type), ("source", p.source)]);
            m.events_accepted.get_or_create(&labels).inc();
        }
        Ok(Accepted { event_id, event_type, duplicate: ack.duplicate, sequence: ack.sequence })
    }

    pub async fn append(&self, p: &Prepared) -> Result<Accepted, Error> {
        tracing::Instrument::instrument(async { self.confirm(p, self.send(p).await?).await }, p.span()).await
    }
}
