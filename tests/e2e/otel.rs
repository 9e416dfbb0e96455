//! OpenTelemetry traces, exported over OTLP/HTTP protobuf to a real
//! collector ([`Collector`]) that decodes them: one tree per event, across
//! the processes, and the standard `OTEL_*` variables.

use std::{collections::HashMap, time::Duration};

use hookline_e2e::{
    Receiver, eventually,
    otlp::{CollectedSpan, Collector},
};
use hookline_proto::subscriptions::v1::{PayloadLayout, Plan};

use crate::common::*;

/// Export batches often, so a test waits a moment, not the 5 s default.
const FAST_EXPORT: (&str, &str) = ("OTEL_BSP_SCHEDULE_DELAY", "200");

/// `00-<trace>-<span>-<flags>` → (trace, span, flags).
fn traceparent_parts(tp: &str) -> (String, String, String) {
    let parts: Vec<&str> = tp.split('-').collect();
    assert_eq!(parts.len(), 4, "a traceparent: {tp}");
    (parts[1].to_owned(), parts[2].to_owned(), parts[3].to_owned())
}

/// The trace once it holds spans named `names` (each at least once).
async fn trace_with(collector: &Collector, trace_id: &str, names: &[&str]) -> Vec<CollectedSpan> {
    eventually(Duration::from_secs(20), &format!("spans {names:?} of trace {trace_id}"), || async {
        let spans = collector.trace(trace_id)?;
        Ok(names.iter().all(|n| spans.iter().any(|s| s.name == *n)).then_some(spans))
    })
    .await
    .unwrap_or_else(|e| panic!("{e}; {} exports: {:#?}", collector.exports(), collector.spans()))
}

/// A collector, `hookline dev` exporting to it (`endpoint_var` names the
/// collector; `env` besides), and tenant `acme` with one endpoint on a receiver.
async fn exporting_stack(endpoint_var: &str, env: &[(&str, &str)]) -> (Collector, Stack, Receiver) {
    let collector = Collector::start().await;
    let endpoint = collector.endpoint();
    let mut all = vec![(endpoint_var, endpoint.as_str()), FAST_EXPORT];
    all.extend_from_slice(env);
    let s = stack_with(&all).await;
    let receiver = Receiver::start().await;
    s.create_tenant("acme", Plan::Basic, true).await;
    s.create_endpoint("acme", &receiver.url(), &[], PayloadLayout::Envelope).await;
    (collector, s, receiver)
}

/// The `traceparent` of the receiver's first request, in parts.
async fn received_traceparent(receiver: &Receiver) -> (String, String, String) {
    let got = receiver.wait_for(1, Duration::from_secs(15)).await.unwrap();
    traceparent_parts(got[0].header("traceparent").unwrap())
}

/// The one span named `name`, with the trace shown when that fails.
fn one<'a>(spans: &'a [CollectedSpan], name: &str) -> &'a CollectedSpan {
    let found: Vec<_> = spans.iter().filter(|s| s.name == name).collect();
    assert_eq!(found.len(), 1, "one `{name}` span: {spans:#?}");
    found[0]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_event_is_one_trace_from_the_publish_to_the_receivers_request_across_the_services() {
    let collector = Collector::start().await;
    let endpoint = collector.endpoint();
    let s = split(&[("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint), FAST_EXPORT]).await;
    let receiver = Receiver::start().await;
    s.create_tenant("acme", Plan::Basic, true).await;
    s.create_endpoint("acme", &receiver.url(), &[], PayloadLayout::Envelope).await;

    // No traceparent from the caller: the publish starts the trace.
    s.ingest.ingest_client().await.publish(json_request("acme", &fresh("customer.created"))).await.unwrap();
    let (trace_id, parent_id, flags) = received_traceparent(&receiver).await;
    assert_eq!(flags, "01", "sampled");

    let spans = trace_with(&collector, &trace_id, &["publish", "ingest", "fanout", "attempt", "POST"]).await;
    let by_id: HashMap<&str, &CollectedSpan> = spans.iter().map(|s| (s.span_id.as_str(), s)).collect();
    // Every span but the root has its parent in the trace.
    let roots: Vec<_> = spans.iter().filter(|s| s.parent_span_id.is_empty()).collect();
    assert_eq!(roots.len(), 1, "one root: {spans:#?}");
    for span in spans.iter().filter(|s| !s.parent_span_id.is_empty()) {
        assert!(by_id.contains_key(span.parent_span_id.as_str()), "the parent of {span:?} is in the trace");
    }
    // The tree: publish → ingest → fanout → attempt → POST.
    let (publish, ingest, fanout) = (one(&spans, "publish"), one(&spans, "ingest"), one(&spans, "fanout"));
    let (attempt, post) = (one(&spans, "attempt"), one(&spans, "POST"));
    assert!(publish.parent_span_id.is_empty(), "publish is the root");
    assert_eq!(ingest.parent_span_id, publish.span_id, "ingest under publish");
    assert_eq!(fanout.parent_span_id, ingest.span_id, "fan-out under ingest, across processes");
    assert_eq!(attempt.parent_span_id, fanout.span_id, "the attempt under fan-out");
    assert_eq!(post.parent_span_id, attempt.span_id, "the HTTP request under its attempt");
    // The receiver's traceparent names the HTTP client span.
    assert_eq!(parent_id, post.span_id, "the receiver's parent is the request's span");
    assert_eq!((publish.kind, post.kind), (2, 3), "a server span and a client span");
    assert_eq!(post.attribute("http.request.method"), Some("POST"));
    assert_eq!(post.attribute("http.response.status_code"), Some("200"));
    assert_eq!(publish.attribute("rpc.method"), Some("Publish"));
    // Each process names itself.
    assert_eq!((publish.service.as_str(), ingest.service.as_str()), ("hookline-ingest", "hookline-ingest"));
    assert_eq!((fanout.service.as_str(), attempt.service.as_str()), ("hookline-delivery", "hookline-delivery"));
}

/// A NATS producer's `traceparent` header is continued: the intake's
/// `publish` span is its child, and the tree goes on to the receiver.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_from_nats_intake_continues_the_producers_trace() {
    let (collector, s, receiver) = exporting_stack("OTEL_EXPORTER_OTLP_ENDPOINT", &[]).await;
    let (trace_id, producer_span) = ("5b8efff798038103d269b633813fc60c", "eee19b7ec3c1b174");
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("traceparent", format!("00-{trace_id}-{producer_span}-01").as_str());
    let js = s.nats.jetstream().await;
    let body = serde_json::to_vec(&fresh("customer.created")).unwrap();
    js.publish_with_headers("hookline.intake.acme", headers, body.into()).await.unwrap().await.unwrap();

    let (received_trace, parent_id, _) = received_traceparent(&receiver).await;
    assert_eq!(received_trace, trace_id, "the receiver gets the producer's trace");
    let spans = trace_with(&collector, trace_id, &["publish", "ingest", "fanout", "attempt", "POST"]).await;
    let publish = one(&spans, "publish");
    assert_eq!(publish.parent_span_id, producer_span, "intake continues the producer's span");
    assert_eq!(publish.kind, 5, "a consumer span");
    assert_eq!(publish.attribute("messaging.system"), Some("nats"));
    assert_eq!(one(&spans, "ingest").parent_span_id, publish.span_id);
    assert_eq!(one(&spans, "POST").span_id, parent_id);
    assert_eq!(publish.service, "hookline-dev", "the role names the service by default");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn otel_service_name_names_the_resource() {
    let service = [("OTEL_SERVICE_NAME", "bookings-webhooks")];
    let (collector, s, receiver) = exporting_stack("OTEL_EXPORTER_OTLP_ENDPOINT", &service).await;
    s.hookline.ingest_client().await.publish(json_request("acme", &fresh("customer.created"))).await.unwrap();
    let (trace_id, _, _) = received_traceparent(&receiver).await;
    let spans = trace_with(&collector, &trace_id, &["publish", "POST"]).await;
    assert!(spans.iter().all(|s| s.service == "bookings-webhooks"), "{spans:#?}");
}

/// `always_off`: nothing is exported, even at a graceful stop that flushes,
/// and the receiver's `traceparent` says "not sampled".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_always_off_sampler_exports_nothing() {
    let sampler = [("OTEL_TRACES_SAMPLER", "always_off")];
    let (collector, mut s, receiver) = exporting_stack("OTEL_EXPORTER_OTLP_ENDPOINT", &sampler).await;
    s.hookline.ingest_client().await.publish(json_request("acme", &fresh("customer.created"))).await.unwrap();
    let (_, _, flags) = received_traceparent(&receiver).await;
    assert_eq!(flags, "00", "not sampled");
    s.hookline.terminate();
    assert!(s.hookline.wait_exit(Duration::from_secs(30)).await.is_some(), "a graceful stop");
    assert_eq!(collector.spans().unwrap().len(), 0, "no span exported");
    assert_eq!(collector.exports(), 0, "no export request");
}

/// The deprecated `HOOKLINE_OTLP_ENDPOINT` still exports, as
/// `OTEL_EXPORTER_OTLP_ENDPOINT` would, and a caller's trace is continued.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_deprecated_hookline_otlp_endpoint_still_exports_the_callers_trace() {
    let (collector, s, receiver) = exporting_stack("HOOKLINE_OTLP_ENDPOINT", &[]).await;
    let (trace_id, caller_span) = ("0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331");
    let mut req = tonic::Request::new(json_request("acme", &fresh("customer.created")));
    req.metadata_mut().insert("traceparent", format!("00-{trace_id}-{caller_span}-01").parse().unwrap());
    s.hookline.ingest_client().await.publish(req).await.unwrap();
    let (received_trace, _, _) = received_traceparent(&receiver).await;
    assert_eq!(received_trace, trace_id);
    let spans = trace_with(&collector, trace_id, &["publish", "ingest", "fanout", "attempt", "POST"]).await;
    assert_eq!(one(&spans, "publish").parent_span_id, caller_span, "the caller's span is the parent");
}

/// A retry is another `attempt` under the same `fanout`, with its own
/// request span, and each request's `traceparent` names its own span.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_is_another_attempt_under_the_same_fan_out() {
    let (collector, s, receiver) = exporting_stack("OTEL_EXPORTER_OTLP_ENDPOINT", &[]).await;
    receiver.script([hookline_e2e::Reply::new(500)]);
    s.hookline.ingest_client().await.publish(json_request("acme", &fresh("customer.created"))).await.unwrap();
    let got = receiver.wait_for(2, Duration::from_secs(20)).await.unwrap();
    let parents: Vec<_> = got.iter().map(|r| traceparent_parts(r.header("traceparent").unwrap())).collect();
    assert_eq!(parents[0].0, parents[1].0, "one trace");
    let trace_id = &parents[0].0;
    let spans = eventually(Duration::from_secs(20), "two attempts and two requests", || async {
        let spans = collector.trace(trace_id)?;
        let count = |name: &str| spans.iter().filter(|s| s.name == name).count();
        Ok((count("attempt") == 2 && count("POST") == 2).then_some(spans))
    })
    .await
    .unwrap();
    let fanout = one(&spans, "fanout");
    let attempts: Vec<_> = spans.iter().filter(|s| s.name == "attempt").collect();
    assert!(attempts.iter().all(|a| a.parent_span_id == fanout.span_id), "both under fan-out: {spans:#?}");
    for (_, parent_id, _) in &parents {
        let post = spans.iter().find(|s| &s.span_id == parent_id).expect("the request's span is exported");
        assert_eq!(post.name, "POST");
        assert!(attempts.iter().any(|a| a.span_id == post.parent_span_id), "under an attempt");
    }
    let statuses: Vec<_> = spans.iter().filter_map(|s| s.attribute("http.response.status_code")).collect();
    assert!(statuses.contains(&"500") && statuses.contains(&"200"), "{statuses:?}");
}
