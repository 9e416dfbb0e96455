//! An OTLP/HTTP collector: a real loopback HTTP server ([`Receiver`]) whose
//! `POST /v1/traces` bodies are decoded as OTLP protobuf
//! (`ExportTraceServiceRequest`, the opentelemetry-proto types) into
//! [`CollectedSpan`]s.

use anyhow::{Context as _, bail};
use opentelemetry_proto::tonic::{
    collector::trace::v1::ExportTraceServiceRequest,
    common::v1::{AnyValue, KeyValue, any_value::Value as V},
};
use prost::Message as _;

use crate::Receiver;

/// One exported span, ids in lower-case hex as `traceparent` spells them.
#[derive(Debug, Clone)]
pub struct CollectedSpan {
    /// The resource's `service.name`.
    pub service: String,
    pub trace_id: String,
    pub span_id: String,
    /// Empty for a root span.
    pub parent_span_id: String,
    pub name: String,
    /// OTLP `SpanKind`: 1 internal, 2 server, 3 client, 4 producer, 5 consumer.
    pub kind: i32,
    /// Attributes whose values are strings or integers, as text.
    pub attributes: Vec<(String, String)>,
}

impl CollectedSpan {
    pub fn attribute(&self, key: &str) -> Option<&str> {
        self.attributes.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }
}

pub struct Collector {
    receiver: Receiver,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn text(v: Option<&AnyValue>) -> Option<String> {
    match v?.value.as_ref()? {
        V::StringValue(s) => Some(s.clone()),
        V::IntValue(i) => Some(i.to_string()),
        V::BoolValue(b) => Some(b.to_string()),
        _ => None,
    }
}

fn attributes(kvs: &[KeyValue]) -> Vec<(String, String)> {
    kvs.iter().filter_map(|kv| Some((kv.key.clone(), text(kv.value.as_ref())?))).collect()
}

impl Collector {
    pub async fn start() -> Self {
        Self { receiver: Receiver::start().await }
    }

    /// The base URL, as `OTEL_EXPORTER_OTLP_ENDPOINT` takes it (`http://127.0.0.1:<port>`).
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.receiver.addr())
    }

    /// Every span received so far. An error for a request that is not an
    /// OTLP/HTTP protobuf export to `/v1/traces`.
    pub fn spans(&self) -> anyhow::Result<Vec<CollectedSpan>> {
        let mut spans = Vec::new();
        for r in self.receiver.requests() {
            if r.method != "POST" || r.path != "/v1/traces" {
                bail!("{} {}: not an OTLP trace export", r.method, r.path);
            }
            if r.header("content-type") != Some("application/x-protobuf") {
                bail!("content-type {:?}: not OTLP/HTTP protobuf", r.header("content-type"));
            }
            let export = ExportTraceServiceRequest::decode(r.body.as_ref()).context("an OTLP trace export")?;
            for rs in export.resource_spans {
                let resource = rs.resource.map(|r| attributes(&r.attributes)).unwrap_or_default();
                let service = resource.iter().find(|(k, _)| k == "service.name").map(|(_, v)| v.clone());
                for span in rs.scope_spans.into_iter().flat_map(|s| s.spans) {
                    spans.push(CollectedSpan {
                        service: service.clone().unwrap_or_default(),
                        trace_id: hex(&span.trace_id),
                        span_id: hex(&span.span_id),
                        parent_span_id: hex(&span.parent_span_id),
                        name: span.name,
                        kind: span.kind,
                        attributes: attributes(&span.attributes),
                    });
                }
            }
        }
        Ok(spans)
    }

    /// The spans of one trace.
    pub fn trace(&self, trace_id: &str) -> anyhow::Result<Vec<CollectedSpan>> {
        Ok(self.spans()?.into_iter().filter(|s| s.trace_id == trace_id).collect())
    }

    /// How many export requests arrived.
    pub fn exports(&self) -> usize {
        self.receiver.requests().len()
    }
}
