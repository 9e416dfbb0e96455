//! The delivery log, Raw / Download / Replay / recover, statistics, archive
//! and rebuildable projections, through the public gRPC API (Download
//! through the CLI).

use std::time::Duration;

use hookline_e2e::{Receiver, Reply, eventually};
use hookline_proto::{
    delivery::v1::{
        self as dpb, DeliveryState, GetDeliveryRawRequest, GetDeliveryRequest, ListDeliveriesRequest,
        ReplayDeliveryRequest, StatsWindow, delivery_service_client::DeliveryServiceClient,
    },
    subscriptions::v1::{self as spb, PayloadLayout, Plan},
};
use tonic::{Code, transport::Channel};

use crate::common::*;

async fn list(c: &mut DeliveryServiceClient<Channel>, tenant: &str, ep: &str) -> Vec<dpb::Delivery> {
    let mut out = Vec::new();
    let mut token = String::new();
    loop {
        let r = c
            .list_deliveries(ListDeliveriesRequest {
                tenant_id: tenant.into(),
                endpoint_id: ep.into(),
                page_token: token.clone(),
                page_size: 200,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        out.extend(r.deliveries);
        if r.next_page_token.is_empty() {
            return out;
        }
        token = r.next_page_token;
    }
}

fn is_final(d: &dpb::Delivery) -> bool {
    d.state == DeliveryState::Succeeded as i32 || d.state == DeliveryState::Failed as i32
}

/// Wait until `n` deliveries of the endpoint are final.
async fn settled(c: &mut DeliveryServiceClient<Channel>, tenant: &str, ep: &str, n: usize) -> Vec<dpb::Delivery> {
    eventually(Duration::from_secs(40), &format!("{n} final deliveries on {ep}"), || {
        let mut c = c.clone();
        async move {
            let rows = list(&mut c, tenant, ep).await;
            Ok((rows.len() == n && rows.iter().all(is_final)).then_some(rows))
        }
    })
    .await
    .unwrap()
}

async fn publish_n(s: &Stack, tenant: &str, n: usize) -> Vec<String> {
    let mut ingest = s.hookline.ingest_client().await;
    let mut ids = Vec::new();
    for _ in 0..n {
        ids.push(ingest.publish(json_request(tenant, &fresh("customer.updated"))).await.unwrap().into_inner().event_id);
    }
    ids
}

/// Fast timeouts; a breaker that stays closed, so scripted failures run their schedule.
fn log_stack() -> [(&'static str, &'static str); 3] {
    [("HOOKLINE_REQUEST_TIMEOUT", "1s"), ("HOOKLINE_ACK_WAIT", "5s"), ("HOOKLINE_BREAKER_THRESHOLD", "1000")]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mixed_run_log_matches_what_receivers_saw_and_raw_is_byte_identical() {
    const SECRET_VALUE: &str = "Bearer log-test-value-do-not-show";
    let s = stack_with(&log_stack()).await;
    let mut subs = s.hookline.subscriptions_client().await;
    s.create_tenant("acme", Plan::Enterprise, true).await;
    let ok = Receiver::start().await;
    let failing = Receiver::start().await;
    failing.set_default(500);
    let slow = Receiver::start().await;
    slow.set_delay(Duration::from_millis(2500));
    let refused_url = format!("http://127.0.0.1:{}/hook", hookline_e2e::free_port());
    let mut ids = std::collections::HashMap::new();
    for (name, url) in [("ok", ok.url()), ("failing", failing.url()), ("slow", slow.url()), ("refused", refused_url)] {
        let e = subs
            .create_endpoint(spb::CreateEndpointRequest {
                tenant_id: "acme".into(),
                url,
                auth_header: Some(spb::AuthHeader { name: "Authorization".into(), value: SECRET_VALUE.into() }),
                layout: if name == "ok" { PayloadLayout::Flat.into() } else { PayloadLayout::Envelope.into() },
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        ids.insert(name, e.id);
    }
    publish_n(&s, "acme", 3).await;
    let mut c = s.delivery_client().await;
    let rows_ok = settled(&mut c, "acme", &ids["ok"], 3).await;
    let rows_500 = settled(&mut c, "acme", &ids["failing"], 3).await;
    let rows_slow = settled(&mut c, "acme", &ids["slow"], 3).await;
    let rows_refused = settled(&mut c, "acme", &ids["refused"], 3).await;

    for d in &rows_ok {
        assert_eq!((d.attempt_count, d.last_status_code, d.state), (1, 200, DeliveryState::Succeeded as i32));
        assert!(d.last_error_kind.is_empty());
    }
    for d in &rows_500 {
        assert_eq!((d.attempt_count, d.last_status_code, d.last_error_kind.as_str()), (3, 500, "http_status"));
        assert_eq!(d.state, DeliveryState::Failed as i32);
    }
    for d in &rows_slow {
        assert_eq!((d.attempt_count, d.last_status_code, d.last_error_kind.as_str()), (3, 0, "timeout"));
    }
    for d in &rows_refused {
        assert_eq!((d.attempt_count, d.last_error_kind.as_str()), (3, "connection_refused"));
    }
    // What the receivers saw matches the attempts in the log.
    assert_eq!(ok.count(), 3);
    assert_eq!(failing.count(), 9);
    eventually(Duration::from_secs(10), "slow receiver saw 9", || async { Ok((slow.count() == 9).then_some(())) })
        .await
        .unwrap();
    // Newest first, keyset pages stable.
    let mut sorted = rows_500.iter().map(|d| d.id.clone()).collect::<Vec<_>>();
    sorted.sort();
    sorted.reverse();
    assert_eq!(rows_500.iter().map(|d| d.id.clone()).collect::<Vec<_>>(), sorted);
    let page = c
        .list_deliveries(ListDeliveriesRequest {
            tenant_id: "acme".into(),
            endpoint_id: ids["failing"].clone(),
            page_size: 2,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(page.deliveries.len(), 2);
    assert!(!page.next_page_token.is_empty());

    // GetDelivery: every attempt, with status and excerpt.
    let detail = c
        .get_delivery(GetDeliveryRequest { tenant_id: "acme".into(), delivery_id: rows_500[0].id.clone() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(detail.attempts.iter().map(|a| a.status_code).collect::<Vec<_>>(), vec![500, 500, 500]);
    assert_eq!(detail.attempts.iter().map(|a| a.number).collect::<Vec<_>>(), vec![1, 2, 3]);

    // Raw is byte-identical to what the receiver recorded; secrets are redacted.
    let mut outputs = vec![format!("{rows_ok:?}{rows_500:?}{detail:?}")];
    for r in ok.requests() {
        let webhook_id = r.header("webhook-id").unwrap();
        let d = rows_ok.iter().find(|d| d.event_id == webhook_id).expect("row for each request");
        let raw = c
            .get_delivery_raw(GetDeliveryRawRequest {
                tenant_id: "acme".into(),
                delivery_id: d.id.clone(),
                attempt: 0,
                reveal_url: false,
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(raw.body, r.body.to_vec(), "Raw body differs from what the receiver got");
        assert_eq!(raw.method, "POST");
        let header = |n: &str| raw.headers.iter().find(|h| h.name.eq_ignore_ascii_case(n)).map(|h| h.value.clone());
        assert_eq!(header("webhook-id").as_deref(), Some(webhook_id));
        assert_eq!(header("webhook-timestamp").as_deref(), r.header("webhook-timestamp"));
        assert_eq!(header("authorization").as_deref(), Some("********"));
        assert_eq!(header("webhook-signature").as_deref(), Some("********"));
        outputs.push(format!("{raw:?}"));

        // Download writes the same bytes to a file.
        let dir = std::env::temp_dir().join(format!("hookline-dl-{}", d.id));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("payload.json");
        let out = std::process::Command::new(hookline_e2e::hookline_bin())
            .args(["delivery", "download", "acme", &d.id, "-o"])
            .arg(&file)
            .env("HOOKLINE_DELIVERY_URL", s.hookline.grpc_url())
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        assert_eq!(std::fs::read(&file).unwrap(), r.body.to_vec(), "download differs from the received body");
        let _ = std::fs::remove_dir_all(&dir);
    }
    for o in outputs {
        assert!(!o.contains("do-not-show"), "the auth header value leaked into API output");
    }

    // Another tenant's ids return nothing.
    s.create_tenant("other", Plan::Basic, true).await;
    let err = c
        .get_delivery(GetDeliveryRequest { tenant_id: "other".into(), delivery_id: rows_ok[0].id.clone() })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    let foreign = c
        .list_deliveries(ListDeliveriesRequest {
            tenant_id: "other".into(),
            endpoint_id: ids["ok"].clone(),
            ..Default::default()
        })
        .await;
    assert!(foreign.map(|r| r.into_inner().deliveries.is_empty()).unwrap_or(true));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_keeps_the_webhook_id_and_recover_replays_exactly_the_failed_since() {
    let s = stack_with(&log_stack()).await;
    s.create_tenant("acme", Plan::Basic, true).await;
    let receiver = Receiver::start().await;
    receiver.set_default(503);
    let (ep, secret) = s.create_endpoint("acme", &receiver.url(), &[], PayloadLayout::Envelope).await;
    let mut c = s.delivery_client().await;

    let before = publish_n(&s, "acme", 2).await;
    settled(&mut c, "acme", &ep, 2).await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let since = chrono::Utc::now().to_rfc3339();
    let after = publish_n(&s, "acme", 3).await;
    let rows = settled(&mut c, "acme", &ep, 5).await;
    assert!(rows.iter().all(|d| d.state == DeliveryState::Failed as i32));
    receiver.set_default(200);
    let seen_before = receiver.count();

    // Replay one: same webhook-id, a fresh signature, labelled.
    let original = rows.iter().find(|d| d.event_id == before[0]).unwrap().clone();
    let first_sig = receiver.requests().iter().find(|r| r.header("webhook-id") == Some(&before[0])).unwrap().clone();
    let replay = c
        .replay_delivery(ReplayDeliveryRequest { tenant_id: "acme".into(), delivery_id: original.id.clone() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(replay.replay_of, original.id);
    let got = receiver.wait_for(seen_before + 1, Duration::from_secs(20)).await.unwrap();
    let replayed = got.last().unwrap();
    assert_eq!(replayed.header("webhook-id"), Some(before[0].as_str()));
    assert!(replayed.verify(&secret));
    assert_ne!(replayed.header("webhook-signature"), first_sig.header("webhook-signature"), "fresh signature");
    let rows = eventually(Duration::from_secs(10), "replay row", || {
        let mut c = c.clone();
        let ep = ep.clone();
        async move {
            let rows = list(&mut c, "acme", &ep).await;
            Ok((rows.len() == 6 && rows.iter().any(|d| d.replay_count == 1)).then_some(rows))
        }
    })
    .await
    .unwrap();
    let new = rows.iter().find(|d| d.id == replay.delivery_id).unwrap();
    assert_eq!(new.replay_of, original.id);
    assert_eq!(new.state, DeliveryState::Succeeded as i32);
    assert_eq!(rows.iter().find(|d| d.id == original.id).unwrap().replay_count, 1);
    let replayed_only = c
        .list_deliveries(ListDeliveriesRequest {
            tenant_id: "acme".into(),
            endpoint_id: ep.clone(),
            replayed: Some(true),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(replayed_only.deliveries.iter().map(|d| d.id.clone()).collect::<Vec<_>>(), vec![replay.delivery_id]);

    // Recover since `since`: exactly the three failed deliveries created after it.
    let mark = receiver.count();
    let job = c
        .recover_endpoint(dpb::RecoverEndpointRequest { tenant_id: "acme".into(), endpoint_id: ep.clone(), since })
        .await
        .unwrap()
        .into_inner();
    let job = eventually(Duration::from_secs(20), "recover job completed", || {
        let mut c = c.clone();
        let id = job.id.clone();
        async move {
            let j = c
                .get_recover_job(dpb::GetRecoverJobRequest { tenant_id: "acme".into(), job_id: id })
                .await?
                .into_inner();
            Ok((j.state == "completed").then_some(j))
        }
    })
    .await
    .unwrap();
    assert_eq!((job.total, job.done), (3, 3));
    let got = receiver.wait_for(mark + 3, Duration::from_secs(20)).await.unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(receiver.count(), mark + 3);
    let mut recovered: Vec<String> = got[mark..].iter().map(|r| r.header("webhook-id").unwrap().to_owned()).collect();
    recovered.sort();
    let mut expected = after.clone();
    expected.sort();
    assert_eq!(recovered, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_equal_the_hand_counted_mix() {
    let s = stack_with(&log_stack()).await;
    s.create_tenant("acme", Plan::Professional, true).await;
    // 4 events: the first answered 500 then 200; three fast 200s, one of them slow (~120 ms).
    let receiver = Receiver::with_script(vec![
        Reply { status: 500, delay: Duration::ZERO },
        Reply { status: 200, delay: Duration::from_millis(120) },
    ])
    .await;
    let (ep, _) = s.create_endpoint("acme", &receiver.url(), &[], PayloadLayout::Envelope).await;
    let second = Receiver::with_script(vec![Reply { status: 404, delay: Duration::ZERO }]).await;
    second.set_default(404);
    let (ep2, _) = s.create_endpoint("acme", &second.url(), &["customer.created"], PayloadLayout::Envelope).await;
    let mut ingest = s.hookline.ingest_client().await;
    for _ in 0..3 {
        ingest.publish(json_request("acme", &fresh("customer.updated"))).await.unwrap();
    }
    ingest.publish(json_request("acme", &fresh("customer.created"))).await.unwrap();
    let mut c = s.delivery_client().await;
    settled(&mut c, "acme", &ep, 4).await;
    settled(&mut c, "acme", &ep2, 1).await;

    let stats = c
        .get_endpoint_stats(dpb::GetEndpointStatsRequest {
            tenant_id: "acme".into(),
            endpoint_id: ep.clone(),
            window: StatsWindow::Last24h.into(),
        })
        .await
        .unwrap()
        .into_inner();
    // Hand count: 5 attempts (4 events + 1 retry), 4 accepted, one 5xx.
    assert_eq!((stats.attempts, stats.accepted, stats.not_accepted), (5, 4, 1));
    assert_eq!((stats.status_2xx, stats.status_3xx, stats.status_4xx, stats.status_5xx), (4, 0, 0, 1));
    assert!((stats.success_rate - 0.8).abs() < 1e-9);
    assert_eq!(stats.errors.iter().map(|e| (e.kind.as_str(), e.count)).collect::<Vec<_>>(), vec![("http_status", 1)]);
    // Four of five attempts take a few ms on loopback (more on a loaded
    // machine, but well under the slow one); one ~120 ms (bucket 150).
    assert!(stats.latency_p50_ms < 100, "p50 {}", stats.latency_p50_ms);
    assert_eq!(stats.latency_p99_ms, 150, "p99 falls in the 100-150 ms bucket");

    let tenant_stats = c
        .get_tenant_stats(dpb::GetTenantStatsRequest { tenant_id: "acme".into(), window: StatsWindow::Last30d.into() })
        .await
        .unwrap()
        .into_inner();
    let total = tenant_stats.total.unwrap();
    // The 404 endpoint: 3 attempts (schedule 0s,1s,2s), none accepted.
    assert_eq!((total.attempts, total.accepted, total.status_4xx), (8, 4, 3));
    assert_eq!(tenant_stats.endpoints.len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn archived_rows_stay_listed_and_refuse_raw_download_replay() {
    let s = stack_with(&[
        ("HOOKLINE_ARCHIVE_AFTER", "3s"),
        ("HOOKLINE_ARCHIVE_INTERVAL", "500ms"),
        ("HOOKLINE_REQUEST_TIMEOUT", "1s"),
        ("HOOKLINE_ACK_WAIT", "2s"),
    ])
    .await;
    s.create_tenant("acme", Plan::Basic, true).await;
    let receiver = Receiver::start().await;
    let (ep, _) = s.create_endpoint("acme", &receiver.url(), &[], PayloadLayout::Envelope).await;
    publish_n(&s, "acme", 1).await;
    let mut c = s.delivery_client().await;
    let rows = settled(&mut c, "acme", &ep, 1).await;
    let id = rows[0].id.clone();
    let raw = c
        .get_delivery_raw(GetDeliveryRawRequest {
            tenant_id: "acme".into(),
            delivery_id: id.clone(),
            attempt: 0,
            reveal_url: false,
        })
        .await;
    assert!(raw.is_ok(), "Raw works before archiving");

    let archived = eventually(Duration::from_secs(20), "row archived", || {
        let mut c = c.clone();
        let ep = ep.clone();
        async move {
            let rows = list(&mut c, "acme", &ep).await;
            Ok(rows.into_iter().find(|d| d.state == DeliveryState::Archived as i32))
        }
    })
    .await
    .unwrap();
    assert_eq!(archived.id, id);
    assert!(!archived.archived_at.is_empty());
    let filtered = c
        .list_deliveries(ListDeliveriesRequest {
            tenant_id: "acme".into(),
            endpoint_id: ep.clone(),
            states: vec![DeliveryState::Archived.into()],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(filtered.deliveries.len(), 1);

    let date = &archived.archived_at[..10];
    let err = c
        .get_delivery_raw(GetDeliveryRawRequest {
            tenant_id: "acme".into(),
            delivery_id: id.clone(),
            attempt: 0,
            reveal_url: false,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert!(err.message().contains("archived") && err.message().contains(date), "{}", err.message());
    let err = c
        .replay_delivery(ReplayDeliveryRequest { tenant_id: "acme".into(), delivery_id: id.clone() })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    let detail = c
        .get_delivery(GetDeliveryRequest { tenant_id: "acme".into(), delivery_id: id.clone() })
        .await
        .unwrap()
        .into_inner();
    assert!(detail.attempts.iter().all(|a| a.response_excerpt.is_empty()), "raw data deleted");
    let out = std::process::Command::new(hookline_e2e::hookline_bin())
        .args(["delivery", "download", "acme", &id, "-o", "/dev/null"])
        .env("HOOKLINE_DELIVERY_URL", s.hookline.grpc_url())
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("archived"));
    // The event body leaves the stream as well, once JetStream's expiry
    // timer runs (nats-server checks max age on a timer, not at each read).
    eventually(Duration::from_secs(15), "the event leaves HOOKLINE_EVENTS", || async {
        (s.events_stored().await == 0).then_some(())
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rebuild_restores_identical_log_and_stats_and_duplicates_change_nothing() {
    let s = stack_with(&log_stack()).await;
    let mut subs = s.hookline.subscriptions_client().await;
    s.create_tenant("acme", Plan::Basic, true).await;
    let receiver = Receiver::with_script(vec![Reply { status: 500, delay: Duration::ZERO }]).await;
    let (ep, _) = s.create_endpoint("acme", &receiver.url(), &[], PayloadLayout::Envelope).await;
    publish_n(&s, "acme", 5).await;
    let mut c = s.delivery_client().await;
    settled(&mut c, "acme", &ep, 5).await;

    async fn snapshot(c: &mut DeliveryServiceClient<Channel>, ep: &str) -> String {
        let rows = list(c, "acme", ep).await;
        let mut details = Vec::new();
        for d in &rows {
            let detail = c
                .get_delivery(GetDeliveryRequest { tenant_id: "acme".into(), delivery_id: d.id.clone() })
                .await
                .unwrap()
                .into_inner();
            details.push(format!("{detail:?}"));
        }
        let stats = c
            .get_endpoint_stats(dpb::GetEndpointStatsRequest {
                tenant_id: "acme".into(),
                endpoint_id: ep.into(),
                window: StatsWindow::Last7d.into(),
            })
            .await
            .unwrap()
            .into_inner();
        format!("{rows:?}\n{details:?}\n{stats:?}")
    }
    let before = snapshot(&mut c, &ep).await;

    // The same outcomes fed again (new stream sequences, same attempts) change nothing.
    let outcomes = read_subject(&s.nats, "HOOKLINE_OUTCOMES", "hookline.outcomes.>").await;
    assert_eq!(outcomes.len(), 6);
    let js = async_nats::jetstream::new(s.nats.client().await);
    for o in &outcomes {
        let subject = format!("hookline.outcomes.acme.{}", o["endpoint_id"].as_str().unwrap());
        js.publish(subject, o.to_string().into()).await.unwrap().await.unwrap();
    }
    eventually(Duration::from_secs(10), "projector caught up", || {
        let mut c = c.clone();
        async move {
            let st = c.get_projection_status(dpb::GetProjectionStatusRequest {}).await?.into_inner();
            Ok(st.projectors.iter().all(|p| p.lag == 0 && p.stream_sequence > 0).then_some(()))
        }
    })
    .await
    .unwrap();
    assert_eq!(snapshot(&mut c, &ep).await, before, "duplicates changed the projection");

    // Drop and rebuild: identical.
    c.rebuild_projections(dpb::RebuildProjectionsRequest {}).await.unwrap();
    eventually(Duration::from_secs(20), "rebuild finished", || {
        let mut c = c.clone();
        let ep = ep.clone();
        let before = before.clone();
        async move { Ok((snapshot(&mut c, &ep).await == before).then_some(())) }
    })
    .await
    .unwrap();
    let tenants =
        subs.list_endpoints(spb::ListEndpointsRequest { tenant_id: "acme".into() }).await.unwrap().into_inner();
    assert_eq!(tenants.endpoints.len(), 1);
    let pool = s.db.pool().await;
    // The config projector rebuilds on its own schedule: wait for it too.
    eventually(Duration::from_secs(10), "config projection rebuilt too", || async {
        let n: i64 = sqlx::query_scalar("SELECT count(*) FROM endpoints").fetch_one(&pool).await?;
        Ok((n == 1).then_some(()))
    })
    .await
    .unwrap();
}

/// One page of the endpoint's log created in [`after`, `before`), paged by
/// `page_size`, as ids, newest first.
async fn list_range(
    c: &mut DeliveryServiceClient<Channel>,
    ep: &str,
    after: &str,
    before: &str,
    page_size: u32,
) -> Vec<String> {
    let mut out = Vec::new();
    let mut token = String::new();
    loop {
        let r = c
            .list_deliveries(ListDeliveriesRequest {
                tenant_id: "acme".into(),
                endpoint_id: ep.into(),
                created_after: after.into(),
                created_before: before.into(),
                page_size,
                page_token: token.clone(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        out.extend(r.deliveries.into_iter().map(|d| d.id));
        if r.next_page_token.is_empty() {
            return out;
        }
        token = r.next_page_token;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_date_range_lists_exactly_the_deliveries_created_in_it_on_every_page() {
    let s = stack_with(&log_stack()).await;
    s.create_tenant("acme", Plan::Basic, true).await;
    let receiver = Receiver::start().await;
    let (ep, _) = s.create_endpoint("acme", &receiver.url(), &[], PayloadLayout::Envelope).await;
    let mut c = s.delivery_client().await;
    publish_n(&s, "acme", 3).await;
    let earlier = settled(&mut c, "acme", &ep, 3).await;
    tokio::time::sleep(Duration::from_millis(20)).await;
    publish_n(&s, "acme", 4).await;
    let all = settled(&mut c, "acme", &ep, 7).await;
    let later: Vec<&dpb::Delivery> = all.iter().filter(|d| !earlier.iter().any(|e| e.id == d.id)).collect();
    let ids = |rows: &[&dpb::Delivery]| rows.iter().map(|d| d.id.clone()).collect::<Vec<_>>();
    let at = |t: &str| chrono::DateTime::parse_from_rfc3339(t).unwrap();
    let first_later = later.iter().map(|d| d.created_at.clone()).min_by_key(|t| at(t)).unwrap();
    let last = all.iter().map(|d| d.created_at.clone()).max_by_key(|t| at(t)).unwrap();
    let last_plus =
        (at(&last) + chrono::TimeDelta::milliseconds(1)).to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let earlier: Vec<&dpb::Delivery> = earlier.iter().collect();

    for page_size in [2, 50] {
        assert_eq!(list_range(&mut c, &ep, &first_later, "", page_size).await, ids(&later), "from the later ones on");
        assert_eq!(list_range(&mut c, &ep, "", &first_later, page_size).await, ids(&earlier), "before them");
        assert_eq!(
            list_range(&mut c, &ep, "", &last_plus, page_size).await,
            ids(&all.iter().collect::<Vec<_>>()),
            "up to a millisecond after the newest: every one"
        );
        let before_last: Vec<&dpb::Delivery> = all.iter().filter(|d| at(&d.created_at) < at(&last)).collect();
        assert_eq!(list_range(&mut c, &ep, "", &last, page_size).await, ids(&before_last), "the bound is exclusive");
        assert!(list_range(&mut c, &ep, "2026-01-01T00:00:00Z", "2026-01-02T00:00:00Z", page_size).await.is_empty());
    }
}

/// Every page of `tenant`'s whole log (no endpoint), `page_size` rows a page.
async fn list_tenant(
    c: &mut DeliveryServiceClient<Channel>,
    tenant: &str,
    states: &[DeliveryState],
    page_size: u32,
) -> Vec<dpb::Delivery> {
    let (mut out, mut token) = (Vec::new(), String::new());
    loop {
        let request = ListDeliveriesRequest {
            tenant_id: tenant.into(),
            states: states.iter().map(|&s| s as i32).collect(),
            page_token: token.clone(),
            page_size,
            ..Default::default()
        };
        let page = c.list_deliveries(request).await.unwrap().into_inner();
        out.extend(page.deliveries);
        if page.next_page_token.is_empty() {
            return out;
        }
        token = page.next_page_token;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_wide_list_shows_every_endpoints_deliveries_newest_first_and_the_failed_ones_alone() {
    let s = stack_with(&log_stack()).await;
    s.create_tenant("acme", Plan::Professional, true).await;
    s.create_tenant("other", Plan::Professional, true).await;
    let ok = Receiver::start().await;
    let refusing = Receiver::start().await;
    refusing.set_default(404);
    let (good, _) = s.create_endpoint("acme", &ok.url(), &[], PayloadLayout::Envelope).await;
    let (bad, _) = s.create_endpoint("acme", &refusing.url(), &[], PayloadLayout::Envelope).await;
    let (others, _) = s.create_endpoint("other", &ok.url(), &[], PayloadLayout::Envelope).await;
    publish_n(&s, "acme", 3).await;
    publish_n(&s, "other", 1).await;
    let mut c = s.delivery_client().await;
    settled(&mut c, "acme", &good, 3).await;
    settled(&mut c, "acme", &bad, 3).await;
    settled(&mut c, "other", &others, 1).await;

    // Paged two at a time, the tenant's six deliveries, newest first, none of the other tenant's.
    let all = list_tenant(&mut c, "acme", &[], 2).await;
    assert_eq!(all.len(), 6, "{all:?}");
    assert!(all.windows(2).all(|w| w[0].id > w[1].id), "newest first");
    let endpoints: std::collections::BTreeSet<&str> = all.iter().map(|d| d.endpoint_id.as_str()).collect();
    assert_eq!(endpoints, [good.as_str(), bad.as_str()].into_iter().collect());
    // The failed ones, from whichever endpoint.
    let failed = list_tenant(&mut c, "acme", &[DeliveryState::Failed], 50).await;
    assert_eq!(failed.len(), 3, "{failed:?}");
    assert!(failed.iter().all(|d| d.endpoint_id == bad && d.state == DeliveryState::Failed as i32));
    // An unknown tenant is not found, naming it.
    let unknown = c
        .list_deliveries(ListDeliveriesRequest { tenant_id: "nobody".into(), ..Default::default() })
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), Code::NotFound, "{unknown:?}");
    assert!(unknown.message().contains("nobody"), "{}", unknown.message());

    // The CLI: `log list <tenant>` without an endpoint, with an ENDPOINT column.
    let out = hookline_e2e::hookline_command()
        .unwrap()
        .args(["log", "list", "acme", "--state", "failed"])
        .env("HOOKLINE_DELIVERY_URL", s.hookline.grpc_url())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap().split_whitespace().take(2).collect();
    assert_eq!(header, ["DELIVERY", "ENDPOINT"], "{text}");
    let rows: Vec<&str> = lines.collect();
    assert_eq!(rows.len(), 3, "{text}");
    assert!(rows.iter().all(|r| r.split_whitespace().nth(1) == Some(bad.as_str())), "{text}");
}

/// `hookline log export <args>` against the stack: (success, stdout, stderr).
fn export(s: &Stack, args: &[&str]) -> (bool, String, String) {
    let (code, out, err) = cli(s, &[&["log", "export"], args].concat());
    (code == 0, out, err)
}

/// The NDJSON lines of an export, each parsed, as (delivery id, the line).
fn exported(ndjson: &str) -> Vec<(String, serde_json::Value)> {
    ndjson
        .lines()
        .map(|line| {
            let v: serde_json::Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
            (v["delivery"]["id"].as_str().unwrap_or_else(|| panic!("no delivery.id: {line}")).to_owned(), v)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_export_writes_exactly_the_deliveries_of_its_time_range_as_ndjson_with_progress_on_stderr() {
    let s = stack_with(&log_stack()).await;
    s.create_tenant("acme", Plan::Professional, true).await;
    s.create_tenant("other", Plan::Professional, true).await;
    let receiver = Receiver::start().await;
    let (one, _) = s.create_endpoint("acme", &receiver.url(), &[], PayloadLayout::Envelope).await;
    let (two, _) = s.create_endpoint("acme", &receiver.url(), &[], PayloadLayout::Envelope).await;
    let (others, _) = s.create_endpoint("other", &receiver.url(), &[], PayloadLayout::Envelope).await;
    let mut c = s.delivery_client().await;
    publish_n(&s, "acme", 3).await;
    publish_n(&s, "other", 2).await;
    let earlier = settled(&mut c, "acme", &one, 3).await;
    settled(&mut c, "acme", &two, 3).await;
    settled(&mut c, "other", &others, 2).await;
    tokio::time::sleep(Duration::from_millis(20)).await;
    publish_n(&s, "acme", 2).await;
    settled(&mut c, "acme", &one, 5).await;
    settled(&mut c, "acme", &two, 5).await;
    let all = list_tenant(&mut c, "acme", &[], 200).await;
    assert_eq!(all.len(), 10);
    let later_ids: Vec<String> =
        all.iter().filter(|d| !earlier.iter().any(|e| e.event_id == d.event_id)).map(|d| d.id.clone()).collect();
    assert_eq!(later_ids.len(), 4, "two events to two endpoints");
    let at = |t: &str| chrono::DateTime::parse_from_rfc3339(t).unwrap();
    let first_later =
        all.iter().filter(|d| later_ids.contains(&d.id)).map(|d| d.created_at.clone()).min_by_key(|t| at(t)).unwrap();

    // The whole tenant to a file: its ten deliveries (none of the other
    // tenant's), newest first, each with its attempts; progress on stderr.
    let dir = hookline_e2e::temp_dir("hookline-export");
    let file = dir.join("acme.ndjson");
    let (ok, stdout, stderr) = export(&s, &["acme", "--output", file.to_str().unwrap()]);
    assert!(ok, "{stderr}");
    assert!(stdout.is_empty(), "the lines go to the file: {stdout}");
    assert!(stderr.contains("exported 10 deliveries"), "progress on stderr: {stderr}");
    assert!(!dir.join("acme.ndjson.partial").exists(), "renamed once whole");
    let lines = exported(&std::fs::read_to_string(&file).unwrap());
    let ids: Vec<&str> = lines.iter().map(|(id, _)| id.as_str()).collect();
    assert_eq!(ids, all.iter().map(|d| d.id.as_str()).collect::<Vec<_>>(), "every delivery once, newest first");
    for (id, line) in &lines {
        let d = &line["delivery"];
        assert_eq!(d["state"], "succeeded", "{line}");
        assert_eq!((d["event_type"].as_str(), d["endpoint_id"].is_string()), (Some("customer.updated"), true));
        let attempts = line["attempts"].as_array().unwrap_or_else(|| panic!("{id}: no attempts in {line}"));
        assert_eq!(attempts.len(), 1, "{line}");
        assert_eq!(
            (&attempts[0]["number"], &attempts[0]["status_code"], &attempts[0]["outcome"]),
            (&serde_json::json!(1), &serde_json::json!(200), &serde_json::json!("succeeded"))
        );
    }

    // A range that leaves the earlier ones out, to stdout.
    let (ok, stdout, stderr) = export(&s, &["acme", "--since", &first_later]);
    assert!(ok, "{stderr}");
    let ids: Vec<String> = exported(&stdout).into_iter().map(|(id, _)| id).collect();
    assert_eq!(ids, later_ids, "exactly the later four");
    assert!(stderr.contains("exported 4 deliveries"), "{stderr}");
    // One endpoint, before them, quietly; a duration ago takes them all.
    let (ok, stdout, stderr) = export(&s, &["acme", &one, "--until", &first_later, "--quiet"]);
    assert!(ok, "{stderr}");
    let ids: Vec<String> = exported(&stdout).into_iter().map(|(id, _)| id).collect();
    let earlier_one: Vec<String> = earlier.iter().map(|d| d.id.clone()).collect();
    assert_eq!(ids, earlier_one, "the endpoint's three earlier ones");
    assert!(stderr.is_empty(), "--quiet: {stderr}");
    let (ok, stdout, _) = export(&s, &["acme", "--since", "1h", "--quiet"]);
    assert!(ok);
    assert_eq!(stdout.lines().count(), 10);
    let (ok, stdout, _) = export(&s, &["acme", "--until", "1h", "--quiet"]);
    assert!(ok && stdout.is_empty(), "nothing is an hour old: {stdout}");

    // An unknown tenant is refused before anything is written.
    let missing = dir.join("nobody.ndjson");
    let (ok, _, stderr) = export(&s, &["nobody", "--output", missing.to_str().unwrap()]);
    assert!(!ok && stderr.contains("nobody"), "{stderr}");
    assert!(!missing.exists() && !dir.join("nobody.ndjson.partial").exists(), "no file is left");
}
