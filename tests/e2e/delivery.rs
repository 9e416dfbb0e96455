//! Every event type reaches its subscribers, signed, in the chosen
//! layout; retries keep the webhook-id; SIGKILL loses nothing.
//!
//! The tests drive a [`Stack`] or [`Split`] through [`App`]'s methods.

use std::{collections::HashSet, time::Duration};

use hookline_e2e::{Receiver, Recorded, Reply};
use hookline_proto::{
    ingest::v1::{PublishBatchRequest, PublishRequest},
    subscriptions::v1::{self as spb, PayloadLayout, Plan},
};
use serde_json::{Value, json};

use crate::common::*;

fn header<'a>(r: &'a Recorded, name: &str) -> &'a str {
    r.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str()).unwrap_or_else(|| panic!("no {name} header"))
}

fn body(r: &Recorded) -> Value {
    serde_json::from_slice(&r.body).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_twelve_types_reach_subscribers_signed_in_their_layout() {
    let s = stack().await;
    let (everything, only_deleted) = (Receiver::start().await, Receiver::start().await);
    s.create_tenant("acme", Plan::Enterprise, true).await;
    let (_, secret_all) = s.create_endpoint("acme", &everything.url(), &[], PayloadLayout::Envelope).await;
    let (_, secret_del) =
        s.create_endpoint("acme", &only_deleted.url(), &["customer.deleted"], PayloadLayout::Flat).await;

    let mut sent = std::collections::HashMap::new();
    for t in TYPES {
        let ex = example(t);
        let r = s
            .publish(PublishRequest {
                tenant_id: "acme".into(),
                occurred_at: ex["occurred_at"].as_str().unwrap().into(),
                payload: Some(typed_payload(t, &ex["data"])),
                ..Default::default()
            })
            .await;
        assert_eq!(r.event_type, t);
        assert!(!r.duplicate);
        sent.insert(r.event_id, (t, "grpc"));
        let mut over_nats = ex.clone();
        over_nats["idempotency_key"] = json!(format!("nats-{t}"));
        s.intake_publish("acme", &over_nats).await;
    }

    let got = everything.wait_for(24, Duration::from_secs(60)).await.unwrap();
    let mut per_type = std::collections::HashMap::<String, usize>::new();
    for r in &got {
        assert!(r.verify(&secret_all), "signature of {}", header(r, "webhook-id"));
        assert!(!r.verify(&secret_del), "signed with another endpoint's secret");
        assert_eq!(header(r, "content-type"), "application/json");
        assert!(header(r, "user-agent").starts_with("Hookline/"));
        let b = body(r);
        let t = b["type"].as_str().unwrap().to_owned();
        assert_eq!(b.as_object().unwrap().len(), 3, "envelope has type, timestamp, data: {b}");
        assert_eq!(b["data"], example(&t)["data"], "{t} body differs from what was published");
        assert_eq!(b["timestamp"], example(&t)["occurred_at"]);
        if let Some((sent_type, _)) = sent.get(header(r, "webhook-id")) {
            assert_eq!(*sent_type, t);
        }
        *per_type.entry(t).or_default() += 1;
    }
    for t in TYPES {
        assert_eq!(per_type.get(t), Some(&2), "{t}: once over gRPC, once over NATS");
    }

    let flat = only_deleted.wait_for(2, Duration::from_secs(30)).await.unwrap();
    for r in &flat {
        assert!(r.verify(&secret_del));
        assert_eq!(
            body(r),
            json!({"type": "customer.deleted", "timestamp": "2026-02-20T10:15:00+01:00", "customer_id": "cus_4711"})
        );
    }
    // Nothing else arrives for the endpoint subscribed to one type only.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(only_deleted.count(), 2);
    assert_eq!(everything.count(), 24);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_retry_with_the_same_webhook_id_and_record_every_attempt() {
    let s = stack().await;
    let receiver = Receiver::with_script(vec![
        Reply { status: 500, delay: Duration::ZERO },
        Reply { status: 500, delay: Duration::ZERO },
    ])
    .await;
    s.create_tenant("acme", Plan::Basic, true).await;
    let (ep, secret) = s.create_endpoint("acme", &receiver.url(), &[], PayloadLayout::Envelope).await;
    let r = s.publish_json("acme", &example("customer.created")).await;

    let got = receiver.wait_for(3, Duration::from_secs(30)).await.unwrap();
    assert_eq!(got.len(), 3);
    for r in &got {
        assert!(r.verify(&secret));
    }
    let ids: HashSet<&str> = got.iter().map(|r| header(r, "webhook-id")).collect();
    assert_eq!(ids, HashSet::from([r.event_id.as_str()]), "webhook-id is stable across retries");
    assert_eq!(got[0].body, got[2].body, "retries send the same bytes");

    let outcomes = hookline_e2e::eventually(Duration::from_secs(10), "three outcome events", || {
        let (s, ep) = (&s, &ep);
        async move {
            let o = s.outcomes("acme", ep).await;
            Ok::<_, anyhow::Error>((o.len() >= 3).then_some(o))
        }
    })
    .await
    .unwrap();
    assert_eq!(outcomes.len(), 3, "{outcomes:#?}");
    let summary: Vec<(u64, &str, u64)> = outcomes
        .iter()
        .map(|o| (o["attempt"].as_u64().unwrap(), o["state"].as_str().unwrap(), o["status_code"].as_u64().unwrap()))
        .collect();
    assert_eq!(summary, vec![(1, "retrying", 500), (2, "retrying", 500), (3, "succeeded", 200)]);
    for o in &outcomes {
        assert_eq!(o["event_id"], r.event_id.as_str());
        assert_eq!(o["endpoint_id"], ep.as_str());
        assert!(o["duration_ms"].is_u64() && o["started_at"].is_string());
    }
    assert_eq!(outcomes[0]["error_kind"], "http_status");
}

/// SIGKILL of the delivery process with 1000 events in flight.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_of_delivery_with_1000_in_flight_loses_nothing() {
    let mut s = split(&[
        ("HOOKLINE_RETRY_SCHEDULE", "0s,1s,2s,4s"),
        ("HOOKLINE_REQUEST_TIMEOUT", "2s"),
        ("HOOKLINE_ACK_WAIT", "3s"),
        ("HOOKLINE_DELIVERY_CONCURRENCY", "32"),
    ])
    .await;
    let receiver = Receiver::start().await;
    receiver.set_delay(Duration::from_millis(20));
    s.create_tenant("acme", Plan::Basic, true).await;
    s.create_endpoint("acme", &receiver.url(), &[], PayloadLayout::Envelope).await;

    let mut published = HashSet::new();
    for batch in 0..2 {
        let events = (0..500)
            .map(|i| {
                let mut e = example("customer.updated");
                e["idempotency_key"] = json!(format!("k-{batch}-{i}"));
                json_request("acme", &e)
            })
            .collect();
        published.extend(s.publish_batch(events).await.results.into_iter().map(|r| r.event_id));
    }
    assert_eq!(published.len(), 1000);

    receiver.wait_for(100, Duration::from_secs(30)).await.unwrap();
    s.delivery.kill9();
    let at_kill = receiver.count();
    assert!(at_kill < 1000, "the kill must land with work in flight ({at_kill} already delivered)");
    s.delivery.respawn().await.unwrap();

    let all = hookline_e2e::eventually(Duration::from_secs(120), "every event delivered", || {
        let (receiver, published) = (&receiver, &published);
        async move {
            let seen: HashSet<String> =
                receiver.requests().iter().map(|r| header(r, "webhook-id").to_owned()).collect();
            Ok::<_, anyhow::Error>(published.is_subset(&seen).then_some(seen))
        }
    })
    .await
    .unwrap();
    assert_eq!(all.len(), 1000);
    let total = receiver.count();
    eprintln!("delivered at kill: {at_kill}; requests in all: {total}; duplicates: {}", total - 1000);
    // Only attempts sent and not yet recorded when the process died can
    // repeat: the 32 tasks the workers hold and the 64 first attempts
    // fan-out holds (twice the concurrency). An attempt frees its permit
    // when answered, so under load more of them wait for their record than
    // are on the wire.
    assert!(total - 1000 <= 3 * 32, "duplicates beyond the window of unrecorded attempts: {}", total - 1000);
}

/// Fan-out coalesces concurrent `Resolve` calls per tenant and type; an
/// event must still reach an endpoint created before it was published. A
/// publisher keeps fan-out busy while a second endpoint is created; every
/// batch sent after `CreateEndpoint` returned must reach the new endpoint too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_published_after_an_endpoint_is_created_reach_it_under_load() {
    let s = split(&[]).await;
    s.create_tenant("acme", Plan::Enterprise, true).await;
    let (a, b) = (Receiver::start().await, Receiver::start().await);
    s.create_endpoint("acme", &a.url(), &[], PayloadLayout::Envelope).await;

    let ingest = s.ingest.ingest_client().await;
    let publisher = tokio::spawn(async move {
        let mut ingest = ingest;
        let mut sent = Vec::new();
        for _ in 0..40 {
            let started = std::time::Instant::now();
            let events = (0..50).map(|_| json_request("acme", &fresh("customer.created"))).collect();
            let ids: Vec<String> = ingest
                .publish_batch(PublishBatchRequest { events })
                .await
                .unwrap()
                .into_inner()
                .results
                .into_iter()
                .map(|r| r.event_id)
                .collect();
            sent.push((started, ids));
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        sent
    });
    tokio::time::sleep(Duration::from_millis(400)).await;
    s.create_endpoint("acme", &b.url(), &[], PayloadLayout::Envelope).await;
    let created = std::time::Instant::now();
    let sent = publisher.await.unwrap();

    let after: HashSet<String> =
        sent.iter().filter(|(started, _)| *started > created).flat_map(|(_, ids)| ids.clone()).collect();
    assert!(after.len() >= 500, "most batches should follow the creation: {}", after.len());
    a.wait_for(2000, Duration::from_secs(60)).await.unwrap();
    // By id, not by count: events published just before the creation may
    // reach the new endpoint too, so a count can be met while one of those
    // published after it is still on its way.
    let arrived = || b.requests().iter().map(|r| header(r, "webhook-id").to_owned()).collect::<HashSet<String>>();
    let all = hookline_e2e::eventually(Duration::from_secs(30), "every event published after the creation", || {
        let done = after.is_subset(&arrived());
        async move { done.then_some(()) }
    })
    .await;
    let missing: Vec<_> = after.difference(&arrived()).cloned().collect();
    assert!(
        all.is_ok() && missing.is_empty(),
        "{} events published after the endpoint existed never reached it",
        missing.len()
    );
}

/// Fan-out keeps `Resolve` answers and reuses them for later events of the
/// same tenant and type; a change made just before a publish must still
/// count. With an answer for `customer.created` kept (an event delivered),
/// an endpoint re-typed to take that type, an endpoint created, and an
/// endpoint disabled, each at once followed by a publish: the event reaches
/// exactly the endpoints subscribed and enabled when it was published.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoint_changes_made_just_before_a_publish_count_though_fan_out_keeps_answers() {
    let s = split(&[]).await;
    s.create_tenant("acme", Plan::Enterprise, true).await;
    let (a, b, c) = (Receiver::start().await, Receiver::start().await, Receiver::start().await);
    let (a_id, _) = s.create_endpoint("acme", &a.url(), &[], PayloadLayout::Envelope).await;
    let (b_id, _) = s.create_endpoint("acme", &b.url(), &["customer.updated"], PayloadLayout::Envelope).await;
    let mut subs = s.subscriptions.subscriptions_client().await;

    // The answer for `customer.created` ([a]) is kept once this is delivered.
    let warm = s.publish_json("acme", &fresh("customer.created")).await.event_id;
    arrives(&a, &warm, "the first event at a").await.unwrap();

    // b re-typed to take `customer.created`.
    let retype = spb::UpdateEndpointRequest {
        tenant_id: "acme".into(),
        endpoint_id: b_id.clone(),
        event_types: Some(spb::EventTypeList { event_types: vec!["customer.created".into()] }),
        ..Default::default()
    };
    subs.update_endpoint(retype).await.unwrap();
    let after_retype = s.publish_json("acme", &fresh("customer.created")).await.event_id;
    arrives(&b, &after_retype, "the event published after b was re-typed, at b").await.unwrap();

    // c created.
    s.create_endpoint("acme", &c.url(), &[], PayloadLayout::Envelope).await;
    let after_create = s.publish_json("acme", &fresh("customer.created")).await.event_id;
    arrives(&c, &after_create, "the event published after c was created, at c").await.unwrap();

    // a disabled: its delivery is logged as not sent, and no request reaches it.
    let disable = spb::UpdateEndpointRequest {
        tenant_id: "acme".into(),
        endpoint_id: a_id.clone(),
        enabled: Some(false),
        ..Default::default()
    };
    subs.update_endpoint(disable).await.unwrap();
    let after_disable = s.publish_json("acme", &fresh("customer.created")).await.event_id;
    arrives(&b, &after_disable, "the event published after a was disabled, at b").await.unwrap();
    let log = s.delivery_client().await;
    let logged = hookline_e2e::eventually(Duration::from_secs(30), "a's delivery of it logged", || {
        let (mut log, a_id, event) = (log.clone(), a_id.clone(), after_disable.clone());
        async move {
            let rows = log
                .list_deliveries(hookline_proto::delivery::v1::ListDeliveriesRequest {
                    tenant_id: "acme".into(),
                    endpoint_id: a_id,
                    ..Default::default()
                })
                .await?
                .into_inner()
                .deliveries;
            Ok(rows.into_iter().find(|d| d.event_id == event).map(|d| d.state))
        }
    })
    .await
    .unwrap();
    assert_eq!(logged, hookline_proto::delivery::v1::DeliveryState::Failed as i32, "logged as not sent");
    assert!(!got(&a, &after_disable), "a disabled endpoint got a request");
}

fn got(r: &Receiver, webhook_id: &str) -> bool {
    r.requests().iter().any(|q| q.header("webhook-id") == Some(webhook_id))
}

/// Wait (30 s at most) until `r` got the event `webhook_id`.
async fn arrives(r: &Receiver, webhook_id: &str, what: &str) -> anyhow::Result<()> {
    hookline_e2e::eventually(Duration::from_secs(30), what, || async { got(r, webhook_id).then_some(()) }).await
}
