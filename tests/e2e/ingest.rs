//! Invalid input is refused naming the field, with
//! nothing appended; idempotent publish; webhooks off.

use std::time::Duration;

use hookline_e2e::Receiver;
use hookline_proto::{
    events::v1 as ev,
    ingest::v1::{PublishBatchRequest, PublishRequest, publish_request::Payload as P},
    subscriptions::v1::{PayloadLayout, Plan, UpdateTenantRequest},
};
use serde_json::json;
use tonic::Code;

use crate::common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_events_are_refused_naming_the_field_and_nothing_is_appended() {
    let s = stack().await;
    s.create_tenant("acme", Plan::Basic, true).await;
    let mut ingest = s.hookline.ingest_client().await;
    let before = s.events_stored().await;

    let good = example("appointment.booking.created");
    let with = |f: fn(&mut serde_json::Value)| {
        let mut e = good.clone();
        f(&mut e);
        e
    };
    let cases: Vec<(&str, PublishRequest, Code, &str)> = vec![
        (
            "unknown type",
            json_request("acme", &with(|e| e["type"] = json!("appointment.deleted"))),
            Code::InvalidArgument,
            "type: unknown event type `appointment.deleted`",
        ),
        (
            "missing field",
            json_request(
                "acme",
                &with(|e| {
                    e["data"]["customer"].as_object_mut().unwrap().remove("last_name");
                }),
            ),
            Code::InvalidArgument,
            "data.customer: missing field `last_name`",
        ),
        (
            "mistyped field",
            json_request("acme", &with(|e| e["data"]["appointment"]["starts_at"] = json!(1700000000))),
            Code::InvalidArgument,
            "data.appointment.starts_at: invalid type: integer",
        ),
        (
            "bad e-mail",
            json_request("acme", &with(|e| e["data"]["customer"]["email"] = json!("anna"))),
            Code::InvalidArgument,
            "data.customer.email: must be an e-mail address",
        ),
        (
            "unknown field",
            json_request("acme", &with(|e| e["data"]["customer"]["nick"] = json!("x"))),
            Code::InvalidArgument,
            "data.customer.nick: unknown field",
        ),
        ("unknown tenant", json_request("nobody", &good), Code::NotFound, "tenant_id: tenant `nobody` not found"),
        (
            "malformed tenant",
            json_request("Acme.Corp", &good),
            Code::InvalidArgument,
            "tenant_id: must be 1-64 characters",
        ),
        (
            "too large",
            json_request("acme", &with(|e| e["data"]["appointment"]["notes"] = json!("x".repeat(300 * 1024)))),
            Code::InvalidArgument,
            "event: is ",
        ),
        (
            "typed, required field empty",
            PublishRequest {
                tenant_id: "acme".into(),
                payload: Some(P::CustomerDeleted(ev::CustomerDeleted { customer_id: String::new() })),
                ..Default::default()
            },
            Code::InvalidArgument,
            "data: missing field `customer_id`",
        ),
        (
            "no payload",
            PublishRequest { tenant_id: "acme".into(), ..Default::default() },
            Code::InvalidArgument,
            "payload: is required",
        ),
    ];
    for (what, req, code, message) in cases {
        let err = ingest.publish(req).await.expect_err(what);
        assert_eq!(err.code(), code, "{what}: {}", err.message());
        assert!(err.message().contains(message), "{what}: `{}` lacks `{message}`", err.message());
    }
    // A batch is all-or-nothing.
    let mut events: Vec<PublishRequest> = (0..5).map(|_| json_request("acme", &good)).collect();
    events[3] = json_request("acme", &with(|e| e["data"]["channel"] = json!("fax")));
    let err = ingest.publish_batch(PublishBatchRequest { events }).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().starts_with("events[3].data.channel: unknown variant `fax`"), "{}", err.message());
    let err = ingest.publish_batch(PublishBatchRequest { events: vec![] }).await.unwrap_err();
    assert!(err.message().contains("events: must hold 1 to 500"), "{}", err.message());

    // Invalid NATS intake: recorded as rejected with the reason, never appended.
    s.intake_publish("acme", &with(|e| e["data"]["customer"]["email"] = json!("nope"))).await;
    s.intake_publish("ghost", &good).await;
    let rejected = hookline_e2e::eventually(Duration::from_secs(10), "two rejection records", || {
        let nats = &s.nats;
        async move {
            let r = read_subject(nats, "HOOKLINE_REJECTED", "hookline.rejected.>").await;
            Ok::<_, anyhow::Error>((r.len() >= 2).then_some(r))
        }
    })
    .await
    .unwrap();
    let fields: Vec<&str> = rejected.iter().map(|r| r["error"]["field"].as_str().unwrap()).collect();
    assert!(fields.contains(&"data.customer.email") && fields.contains(&"tenant_id"), "{rejected:#?}");
    assert_eq!(s.events_stored().await, before, "nothing was appended");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotency_keys_deduplicate_and_webhooks_off_suppresses_delivery() {
    let s = stack().await;
    let receiver = Receiver::start().await;
    let mut subs = s.hookline.subscriptions_client().await;
    s.create_tenant("acme", Plan::Basic, true).await;
    s.create_endpoint("acme", &receiver.url(), &[], PayloadLayout::Envelope).await;
    let before = s.events_stored().await;

    let mut e = example("customer.created");
    e["idempotency_key"] = json!("order-77");
    let first = s.publish_json("acme", &e).await;
    let again = s.publish_json("acme", &e).await;
    assert!(!first.duplicate && again.duplicate);
    assert_eq!(first.event_id, again.event_id);
    // The same key over NATS intake is the same event too.
    s.intake_publish("acme", &e).await;
    // Another tenant's identical key is a different event.
    s.create_tenant("other", Plan::Basic, true).await;
    let other = s.publish_json("other", &e).await;
    assert!(!other.duplicate && other.event_id != first.event_id);

    receiver.wait_for(1, Duration::from_secs(20)).await.unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(receiver.count(), 1, "one delivery per endpoint");
    assert_eq!(s.events_stored().await, before + 2, "one stored event per tenant");

    // Webhooks off: events published meanwhile are never delivered, even after switching back on.
    subs.update_tenant(UpdateTenantRequest {
        tenant_id: "acme".into(),
        webhooks_enabled: Some(false),
        ..Default::default()
    })
    .await
    .unwrap();
    let off = s.publish_json("acme", &example("customer.updated")).await;
    s.intake_publish("acme", &example("customer.deleted")).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    subs.update_tenant(UpdateTenantRequest {
        tenant_id: "acme".into(),
        webhooks_enabled: Some(true),
        ..Default::default()
    })
    .await
    .unwrap();
    let on = s.publish_json("acme", &example("appointment.updated")).await;
    let got = receiver.wait_for(2, Duration::from_secs(20)).await.unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let ids: Vec<String> = receiver
        .requests()
        .iter()
        .map(|r| r.headers.iter().find(|(k, _)| k == "webhook-id").unwrap().1.clone())
        .collect();
    assert_eq!(got.len(), 2);
    assert_eq!(
        ids,
        vec![first.event_id.clone(), on.event_id.clone()],
        "the event published while off ({}) was not delivered",
        off.event_id
    );
}

/// A burst over the per-tenant rate is refused with RESOURCE_EXHAUSTED over
/// gRPC and delayed, never dropped, over NATS intake.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bursts_over_the_tenant_rate_are_refused_or_delayed_never_dropped() {
    let s = stack_with(&[("HOOKLINE_TENANT_RATE", "100"), ("HOOKLINE_TENANT_BURST", "150")]).await;
    s.create_tenant("acme", Plan::Basic, true).await;
    s.create_tenant("calm", Plan::Basic, true).await;
    let mut ingest = s.hookline.ingest_client().await;
    let (mut accepted, mut refused) = (0, 0);
    // The six batches go at once: sent one after another on a loaded
    // machine, they take long enough for the bucket to refill.
    let batches = (0..6).map(|_| {
        let mut ingest = ingest.clone();
        let events = (0..50).map(|_| json_request("acme", &fresh("customer.created"))).collect();
        async move { ingest.publish_batch(PublishBatchRequest { events }).await }
    });
    for answer in futures_util::future::join_all(batches).await {
        match answer {
            Ok(r) => accepted += r.into_inner().results.len(),
            Err(e) => {
                assert_eq!(e.code(), Code::ResourceExhausted, "{}", e.message());
                assert!(e.message().contains("tenant `acme` publishes faster than 100 events/s"), "{}", e.message());
                refused += 50;
            }
        }
    }
    assert!(refused > 0 && accepted >= 150, "accepted {accepted}, refused {refused}");
    // Another tenant is not affected.
    ingest.publish(json_request("calm", &fresh("customer.created"))).await.unwrap();
    assert_eq!(s.events_stored().await, accepted as u64 + 1, "every accepted event stored, no more");

    // NATS intake: 300 events at once all arrive, paced by the rate.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let before = s.events_stored().await;
    for _ in 0..300 {
        s.intake_publish("acme", &fresh("customer.updated")).await;
    }
    hookline_e2e::eventually(Duration::from_secs(20), "all 300 intake events appended", || async {
        Ok((s.events_stored().await >= before + 300).then_some(()))
    })
    .await
    .unwrap();
    assert_eq!(s.events_stored().await, before + 300);
}

/// A publisher's burst at full size: 100,000 events in 10 s to one
/// tenant (200 batches of 500, one every 50 ms, each sent on its tick
/// whatever the previous one is doing). Each batch is accepted with an id per
/// event or refused whole with RESOURCE_EXHAUSTED; the stream then holds
/// exactly the accepted events, and their number follows the configured rate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_100000_events_in_10_s_is_accepted_or_refused_never_dropped() {
    const RATE: f64 = 2000.0;
    const BURST: f64 = 4000.0;
    const BATCHES: usize = 200;
    const PER_BATCH: usize = 500;
    let s = stack_with(&[("HOOKLINE_TENANT_RATE", "2000"), ("HOOKLINE_TENANT_BURST", "4000")]).await;
    s.create_tenant("acme", Plan::Basic, true).await;
    let ingest = s.hookline.ingest_client().await;
    let body = fresh("customer.created");

    let started = std::time::Instant::now();
    let mut tick = tokio::time::interval(Duration::from_millis(50));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut sends = tokio::task::JoinSet::new();
    for _ in 0..BATCHES {
        tick.tick().await;
        let events = (0..PER_BATCH).map(|_| json_request("acme", &body)).collect();
        let mut ingest = ingest.clone();
        sends.spawn(async move { ingest.publish_batch(PublishBatchRequest { events }).await });
    }
    let sent_in = started.elapsed();
    let (mut ids, mut refused_batches) = (std::collections::HashSet::new(), 0usize);
    while let Some(done) = sends.join_next().await {
        match done.unwrap() {
            Ok(r) => {
                let results = r.into_inner().results;
                assert_eq!(results.len(), PER_BATCH, "an accepted batch answers for every event");
                for result in results {
                    assert!(ids.insert(result.event_id.clone()), "event id {} returned twice", result.event_id);
                }
            }
            Err(e) => {
                assert_eq!(e.code(), Code::ResourceExhausted, "only the rate may refuse: {}", e.message());
                refused_batches += 1;
            }
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    let accepted = ids.len();
    eprintln!(
        "burst: {} events sent in {:.1} s; accepted {accepted}, refused {} ({refused_batches} batches); all answered in {elapsed:.1} s",
        BATCHES * PER_BATCH,
        sent_in.as_secs_f64(),
        refused_batches * PER_BATCH,
    );
    assert_eq!(accepted + refused_batches * PER_BATCH, BATCHES * PER_BATCH, "every event accepted or refused");
    assert!(refused_batches > 0, "10,000 events/s must exceed a 2,000/s rate");
    let ceiling = BURST + RATE * elapsed + PER_BATCH as f64;
    let floor = BURST + RATE * sent_in.as_secs_f64() / 2.0;
    assert!((accepted as f64) <= ceiling, "accepted {accepted} > burst + rate × {elapsed:.1} s");
    assert!((accepted as f64) >= floor, "accepted {accepted} < {floor}: the rate let too little through");

    // Nothing accepted is missing from the stream, nothing refused is in it.
    assert_eq!(s.events_stored().await, accepted as u64);
    let stored: std::collections::HashSet<String> = read_subject(&s.nats, "HOOKLINE_EVENTS", "hookline.events.>")
        .await
        .into_iter()
        .map(|e| e["id"].as_str().expect("stored events have ids").to_owned())
        .collect();
    assert_eq!(stored, ids, "the stream holds exactly the accepted event ids");
}

/// 100 batches of 500 at once, no rate limit: each batch publishes all its
/// events before awaiting their acks, and the NATS client bounds acks in
/// flight (5,000 by default). Batches holding part of that bound while
/// waiting for the rest must not deadlock: every batch completes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_concurrent_full_batches_all_complete() {
    let s = stack_with(&[("HOOKLINE_TENANT_RATE", "0")]).await;
    s.create_tenant("acme", Plan::Basic, true).await;
    let ingest = s.hookline.ingest_client().await;
    let body = fresh("customer.created");
    let mut sends = tokio::task::JoinSet::new();
    for _ in 0..100 {
        let events = (0..500).map(|_| json_request("acme", &body)).collect();
        let mut ingest = ingest.clone();
        sends.spawn(async move { ingest.publish_batch(PublishBatchRequest { events }).await });
    }
    let all = tokio::time::timeout(Duration::from_secs(60), async {
        let mut accepted = 0;
        while let Some(done) = sends.join_next().await {
            accepted += done.unwrap().expect("no rate limit: every batch is accepted").into_inner().results.len();
        }
        accepted
    })
    .await
    .expect("every batch answers (no deadlock on acks in flight)");
    assert_eq!(all, 50_000);
    assert_eq!(s.events_stored().await, 50_000);
}

/// The ingest process's resident memory, from `/proc`.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// `hookline_ingest_rate_limiter_keys` as the process serves it now.
async fn limiter_keys(http_url: &str) -> f64 {
    let (status, text) = hookline_e2e::http_get(&format!("{http_url}/metrics")).await.unwrap();
    assert_eq!(status, 200);
    text.lines()
        .find_map(|l| l.strip_prefix("hookline_ingest_rate_limiter_keys "))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no hookline_ingest_rate_limiter_keys in {text}"))
}

/// A flood of publishes for random, unknown tenant ids (over gRPC and NATS
/// intake) is refused before the publish limiter: the limiter holds only
/// the known tenant, its rate still holds, memory stays flat, and the
/// known tenant's entry is dropped once it has been idle.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_unknown_tenant_ids_leaves_the_limiter_and_memory_flat() {
    use futures_util::StreamExt;
    const GRPC: usize = 20_000;
    const NATS: usize = 20_000;
    let s = stack_with(&[
        ("HOOKLINE_TENANT_RATE", "10"),
        ("HOOKLINE_TENANT_BURST", "20"),
        ("HOOKLINE_LOG", "warn,hookline::serve=info"),
    ])
    .await;
    s.create_tenant("acme", Plan::Basic, true).await;
    let http_url = s.hookline.http_url();
    let ingest = s.hookline.ingest_client().await;
    ingest.clone().publish(json_request("acme", &fresh("customer.created"))).await.unwrap();
    assert_eq!(limiter_keys(&http_url).await, 1.0, "the known tenant has an entry");
    // The gauge follows every admission; watch it all through the flood.
    let flooding = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let watch = tokio::spawn({
        let (http_url, flooding) = (http_url.clone(), flooding.clone());
        async move {
            let (mut most, mut looks) = (0.0_f64, 0);
            while flooding.load(std::sync::atomic::Ordering::Relaxed) {
                most = most.max(limiter_keys(&http_url).await);
                looks += 1;
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            (most, looks)
        }
    });
    let pid = s.hookline.pid().unwrap();
    let rss_before = rss_kib(pid);
    let started = std::time::Instant::now();
    let body = fresh("customer.created").to_string();

    // gRPC: every unknown id is NOT_FOUND, 64 calls at once.
    let refused = futures_util::stream::iter(0..GRPC)
        .map(|i| {
            let mut ingest = ingest.clone();
            let body = body.clone();
            async move {
                let tenant = format!("ghost-{i}-{:08x}", rand_u32(i));
                let req = PublishRequest { tenant_id: tenant, payload: Some(P::Json(body)), ..Default::default() };
                ingest.publish(req).await.unwrap_err().code()
            }
        })
        .buffer_unordered(64)
        .filter(|code| std::future::ready(*code == Code::NotFound))
        .count()
        .await;
    assert_eq!(refused, GRPC, "every unknown tenant is NOT_FOUND");
    let grpc_took = started.elapsed();

    // NATS intake: published pipelined, each refused into HOOKLINE_REJECTED.
    let js = async_nats::jetstream::new(s.nats.client().await);
    let rejected_before = stream_messages(&s.nats, "HOOKLINE_REJECTED").await;
    let acks = futures_util::stream::iter(0..NATS)
        .map(|i| {
            let (js, body) = (js.clone(), body.clone());
            async move {
                let subject = format!("hookline.intake.phantom-{i}-{:08x}", rand_u32(i + GRPC));
                js.publish(subject, body.into()).await.unwrap().await.unwrap();
            }
        })
        .buffer_unordered(256)
        .count()
        .await;
    assert_eq!(acks, NATS);
    hookline_e2e::eventually(Duration::from_secs(300), "every intake message rejected", || async {
        let rejected = stream_messages(&s.nats, "HOOKLINE_REJECTED").await - rejected_before;
        Ok((rejected >= NATS as u64).then_some(()))
    })
    .await
    .unwrap();
    flooding.store(false, std::sync::atomic::Ordering::Relaxed);
    let (most, looks) = watch.await.unwrap();
    // The known tenant's entry, until it is dropped as idle; never another.
    assert!(most <= 1.0, "the limiter held {most} tenants during the flood");
    assert!(looks >= 10, "the gauge was read {looks} times during the flood");
    let rss_after = rss_kib(pid);
    eprintln!(
        "flood: {GRPC} gRPC publishes in {:.1} s, {NATS} intake messages, all refused in {:.1} s; limiter keys at most {most} ({looks} looks); \
         RSS {rss_before} KiB before, {rss_after} KiB after ({:+} KiB)",
        grpc_took.as_secs_f64(),
        started.elapsed().as_secs_f64(),
        rss_after as i64 - rss_before as i64
    );
    // The old limiter kept a String key and a bucket per id; a few hundred
    // bytes each would be tens of MiB here. Allocator and connection
    // buffers move RSS by a few MiB at most.
    assert!(rss_after < rss_before + 24 * 1024, "RSS grew from {rss_before} to {rss_after} KiB");

    // The known tenant's rate still holds: a burst's worth goes through, the
    // next batch is refused.
    let batch = |n: usize| PublishBatchRequest {
        events: (0..n).map(|_| json_request("acme", &fresh("customer.created"))).collect(),
    };
    ingest.clone().publish_batch(batch(20)).await.unwrap();
    let over = ingest.clone().publish_batch(batch(20)).await.unwrap_err();
    assert_eq!(over.code(), Code::ResourceExhausted, "{}", over.message());
    let too_big = ingest.clone().publish_batch(batch(21)).await.unwrap_err();
    assert_eq!(too_big.code(), Code::InvalidArgument, "{}", too_big.message());
    assert!(too_big.message().contains("events") && too_big.message().contains("HOOKLINE_TENANT_BURST"));

    // Idle, its entry goes too (refilled after 2 s, dropped within 10 s more).
    hookline_e2e::eventually(Duration::from_secs(20), "the idle tenant's entry dropped", || async {
        Ok((limiter_keys(&http_url).await == 0.0).then_some(()))
    })
    .await
    .unwrap();
}

/// A spread of hex digits per index, so ids do not share long prefixes.
fn rand_u32(i: usize) -> u32 {
    (i as u32).wrapping_mul(2_654_435_761).rotate_left(13)
}
