//! Optional OTLP export (HTTP/JSON, `POST <endpoint>/v1/traces`): spans that
//! carry a W3C `trace_id` field (ingest's append, fan-out, each delivery
//! attempt) are batched and sent to the collector in
//! `HOOKLINE_OTLP_ENDPOINT`. Export is best effort: a slow or absent
//! collector drops spans, never slows delivery.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};
use tokio::sync::mpsc;
use tracing::{Subscriber, field::Visit, span};
use tracing_subscriber::{Layer, layer::Context, registry::LookupSpan};

/// Spans buffered before export; beyond it, spans are dropped.
const QUEUE: usize = 4096;

struct Fields {
    trace_id: Option<String>,
    attributes: Vec<(String, String)>,
    start: u128,
}

impl Visit for Fields {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        let text = format!("{value:?}").trim_matches('"').to_owned();
        if field.name() == "trace_id" {
            self.trace_id = Some(text);
        } else {
            self.attributes.push((field.name().to_owned(), text));
        }
    }

    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        self.record_debug(field, &value);
    }
}

fn now_nanos() -> u128 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or_default()
}

pub struct OtlpLayer {
    tx: mpsc::Sender<Value>,
}

impl OtlpLayer {
    /// Start the exporter task (needs a Tokio runtime) for `service`.
    pub fn new(endpoint: &str, service: &str) -> Self {
        let (tx, rx) = mpsc::channel(QUEUE);
        tokio::spawn(export(format!("{}/v1/traces", endpoint.trim_end_matches('/')), service.to_owned(), rx));
        Self { tx }
    }
}

impl<S: Subscriber + for<'a> LookupSpan<'a>> Layer<S> for OtlpLayer {
    fn on_new_span(&self, attrs: &span::Attributes<'_>, id: &span::Id, ctx: Context<'_, S>) {
        let mut fields = Fields { trace_id: None, attributes: Vec::new(), start: now_nanos() };
        attrs.record(&mut fields);
        if let Some(span) = ctx.span(id) {
            span.extensions_mut().insert(fields);
        }
    }

    fn on_close(&self, id: span::Id, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(&id) else { return };
        let ext = span.extensions();
        let Some(fields) = ext.get::<Fields>() else { return };
        let Some(trace_id) = &fields.trace_id else { return };
        let span_id: [u8; 8] = rand::random();
        let attributes: Vec<Value> =
            fields.attributes.iter().map(|(k, v)| json!({"key": k, "value": {"stringValue": v}})).collect();
        let record = json!({
            "traceId": trace_id,
            "spanId": span_id.iter().map(|b| format!("{b:02x}")).collect::<String>(),
            "name": span.name(),
            "kind": 1,
            "startTimeUnixNano": fields.start.to_string(),
            "endTimeUnixNano": now_nanos().to_string(),
            "attributes": attributes,
        });
        let _ = self.tx.try_send(record);
    }
}

async fn export(url: String, service: String, mut rx: mpsc::Receiver<Value>) {
    let client = reqwest::Client::builder().timeout(Duration::from_secs(5)).build().expect("HTTP client builds");
    let mut batch = Vec::new();
    loop {
        let closed = match tokio::time::timeout(Duration::from_secs(1), rx.recv()).await {
            Ok(Some(span)) => {
                batch.push(span);
                if batch.len() < 512 {
                    continue;
                }
                false
            }
            Ok(None) => true,
            Err(_) => false,
        };
        if !batch.is_empty() {
            let body = json!({"resourceSpans": [{
                "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": service}}]},
                "scopeSpans": [{"scope": {"name": "hookline"}, "spans": std::mem::take(&mut batch)}],
            }]});
            let _ = client.post(&url).header("content-type", "application/json").body(body.to_string()).send().await;
        }
        if closed {
            return;
        }
    }
}
