//! Issue 6: every service's /metrics shows the documented families, and they
//! move when traffic flows.

use std::time::Duration;

use hookline_e2e::{HooklineBuilder, NatsServer, Receiver, TestDb, eventually, http_get};
use hookline_proto::subscriptions::v1::{PayloadLayout, Plan};

use crate::common::*;

/// The value of the first sample whose line starts with `prefix` (name and labels).
fn sample(text: &str, prefix: &str) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#') && l.starts_with(prefix))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

async fn scrape(url: &str) -> String {
    let (status, body) = http_get(&format!("{url}/metrics")).await.unwrap();
    assert_eq!(status, 200);
    body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_families_exist_per_service_and_move_with_traffic() {
    let nats = NatsServer::start().unwrap();
    let db = TestDb::create().await.unwrap();
    let base = |role: &str| {
        HooklineBuilder::new(role)
            .env("HOOKLINE_NATS_URL", &nats.url())
            .env("HOOKLINE_DATABASE_URL", db.url())
            .env("HOOKLINE_DELIVERY_ALLOW_CIDRS", "127.0.0.0/8")
            .env("HOOKLINE_RETRY_SCHEDULE", "0s,1s")
            .env("HOOKLINE_BREAKER_THRESHOLD", "100")
    };
    let subscriptions = base("subscriptions").spawn().await.unwrap();
    let ingest = base("ingest").spawn().await.unwrap();
    let delivery = base("delivery").env("HOOKLINE_SUBSCRIPTIONS_URL", &subscriptions.grpc_url()).spawn().await.unwrap();
    let ok = Receiver::start().await;
    let failing = Receiver::start().await;
    failing.set_default(500);
    let mut subs = subscriptions.subscriptions_client().await;
    tenant(&mut subs, "acme", Plan::Professional, true).await;
    endpoint(&mut subs, "acme", &ok.url(), &[], PayloadLayout::Envelope).await;
    endpoint(&mut subs, "acme", &failing.url(), &["customer.created"], PayloadLayout::Envelope).await;

    let before = (scrape(&ingest.http_url()).await, scrape(&delivery.http_url()).await);
    let mut client = ingest.ingest_client().await;
    for _ in 0..3 {
        client.publish(json_request("acme", &fresh("customer.created"))).await.unwrap();
    }
    let _ = client.publish(json_request("ghost", &fresh("customer.created"))).await;
    ok.wait_for(3, Duration::from_secs(20)).await.unwrap();
    failing.wait_for(6, Duration::from_secs(20)).await.unwrap();

    let ing = scrape(&ingest.http_url()).await;
    let accepted = "hookline_events_accepted_total{event_type=\"customer.created\",source=\"grpc\"}";
    assert_eq!(sample(&ing, accepted) - sample(&before.0, accepted), 3.0, "{ing}");
    assert_eq!(sample(&ing, "hookline_events_rejected_total{reason=\"unknown_tenant\",source=\"grpc\"}"), 1.0);
    assert!(
        sample(&ing, "hookline_grpc_requests_total{method=\"/hookline.ingest.v1.IngestService/Publish\",code=\"Ok\"}")
            >= 3.0,
        "{ing}"
    );
    assert!(ing.contains(
        "hookline_grpc_requests_total{method=\"/hookline.ingest.v1.IngestService/Publish\",code=\"NotFound\"}"
    ));

    let sub = scrape(&subscriptions.http_url()).await;
    assert_eq!(sample(&sub, "hookline_config_commands_total{command=\"create_endpoint\",result=\"ok\"}"), 2.0, "{sub}");
    assert!(sample(&sub, "hookline_resolve_duration_seconds_count") >= 3.0, "{sub}");
    assert_eq!(sample(&sub, "hookline_directory_endpoints"), 2.0);

    let del = eventually(Duration::from_secs(15), "delivery metrics and lag gauges", || async {
        let del = scrape(&delivery.http_url()).await;
        let ready = del.contains("hookline_consumer_pending{") && del.contains("hookline_projector_lag{");
        Ok(ready.then_some(del))
    })
    .await
    .unwrap();
    assert_eq!(sample(&del, "hookline_delivery_attempts_total{outcome=\"succeeded\""), 3.0, "{del}");
    assert_eq!(sample(&del, "hookline_delivery_attempts_total{outcome=\"retrying\",error_kind=\"http_status\"}"), 3.0);
    assert_eq!(sample(&del, "hookline_delivery_attempts_total{outcome=\"failed\",error_kind=\"http_status\"}"), 3.0);
    assert_eq!(sample(&del, "hookline_delivery_retries_scheduled_total"), 3.0);
    assert!(sample(&del, "hookline_delivery_attempt_duration_seconds_count{channel=\"http\"}") >= 9.0);
    for family in [
        "hookline_delivery_in_flight",
        "hookline_delivery_breakers_open",
        "hookline_consumer_ack_pending{stream=\"HOOKLINE_DISPATCH\",consumer=\"workers\"}",
        "hookline_consumer_redelivered{",
        "hookline_projector_lag{projector=\"outcomes\"}",
    ] {
        assert!(del.contains(family), "missing {family}");
    }
    // No tenant or endpoint ids as labels.
    for text in [&ing, &sub, &del] {
        assert!(!text.contains("acme") && !text.contains("ep_"), "ids must not be metric labels");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_trace_id_follows_an_event_through_all_three_services() {
    let nats = NatsServer::start().unwrap();
    let db = TestDb::create().await.unwrap();
    let base = |role: &str| {
        HooklineBuilder::new(role)
            .env("HOOKLINE_NATS_URL", &nats.url())
            .env("HOOKLINE_DATABASE_URL", db.url())
            .env("HOOKLINE_DELIVERY_ALLOW_CIDRS", "127.0.0.0/8")
            .env("HOOKLINE_LOG_FORMAT", "json")
    };
    let subscriptions = base("subscriptions").spawn().await.unwrap();
    let ingest = base("ingest").spawn().await.unwrap();
    let delivery = base("delivery").env("HOOKLINE_SUBSCRIPTIONS_URL", &subscriptions.grpc_url()).spawn().await.unwrap();
    let receiver = Receiver::start().await;
    let mut subs = subscriptions.subscriptions_client().await;
    tenant(&mut subs, "acme", Plan::Basic, true).await;
    let (ep, _) = endpoint(&mut subs, "acme", &receiver.url(), &[], PayloadLayout::Envelope).await;

    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let mut req = tonic::Request::new(json_request("acme", &fresh("customer.created")));
    req.metadata_mut().insert("traceparent", format!("00-{trace_id}-00f067aa0ba902b7-01").parse().unwrap());
    let event_id = ingest.ingest_client().await.publish(req).await.unwrap().into_inner().event_id;
    let got = receiver.wait_for(1, Duration::from_secs(15)).await.unwrap();
    let sent = got[0].header("traceparent").unwrap();
    assert!(sent.starts_with(&format!("00-{trace_id}-")), "the webhook request continues the trace: {sent}");

    let outcome = eventually(Duration::from_secs(10), "outcome", || {
        let (nats, subject) = (&nats, format!("hookline.outcomes.acme.{ep}"));
        async move { Ok(read_subject(nats, "HOOKLINE_OUTCOMES", &subject).await.into_iter().next()) }
    })
    .await
    .unwrap();
    assert_eq!(outcome["trace_id"], trace_id, "the attempt record carries the trace id");

    for (name, proc) in [("ingest", &ingest), ("subscriptions", &subscriptions), ("delivery", &delivery)] {
        let log = proc.log_contents();
        let lines: Vec<serde_json::Value> =
            log.lines().filter(|l| l.contains(trace_id)).filter_map(|l| serde_json::from_str(l).ok()).collect();
        assert!(!lines.is_empty(), "{name} logged nothing with trace id {trace_id}");
        assert!(lines.iter().all(|l| l.is_object()), "{name}: JSON log lines");
        if name != "subscriptions" {
            assert!(
                log.lines().any(|l| l.contains(trace_id) && l.contains(&event_id)),
                "{name}: trace id beside event id"
            );
        }
    }
    let delivery_log = delivery.log_contents();
    assert!(delivery_log.lines().any(|l| l.contains(trace_id) && l.contains(&ep) && l.contains("attempt finished")));
}
