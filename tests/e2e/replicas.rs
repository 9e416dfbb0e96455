//! Replicas read their writes: with two subscriptions processes, two ingest
//! processes and a delivery process on one nats-server: a change
//! acknowledged by one replica is seen by every later command on the other,
//! and by every event accepted afterwards, whichever ingest takes it.

use std::{collections::HashSet, time::Duration};

use hookline_e2e::{HooklineProc, Receiver, eventually};
use hookline_proto::{
    delivery::v1::{self as dpb, delivery_service_client::DeliveryServiceClient},
    subscriptions::v1::{self as spb, PayloadLayout, Plan},
};

use crate::common::*;

struct Replicas {
    peers: Peers,
    subs_a: HooklineProc,
    subs_b: HooklineProc,
    ingest_1: HooklineProc,
    ingest_2: HooklineProc,
    delivery: HooklineProc,
    _links: [Jittery; 2],
}

/// Delivery resolves through subscriptions A; endpoints are created
/// through B, so A is the replica that may lag behind them.
async fn replicas(env: &[(&str, &str)]) -> Replicas {
    let peers = Peers::start().await;
    // Each subscriptions replica hears from NATS over a jittery link, so
    // sometimes one, sometimes the other follows the config stream behind.
    let (link_a, link_b) = (Jittery::start(peers.nats.port(), 170).await, Jittery::start(peers.nats.port(), 230).await);
    let subs_a = peers.role("subscriptions", env).env("HOOKLINE_NATS_URL", &link_a.url()).spawn().await.unwrap();
    let subs_b = peers.role("subscriptions", env).env("HOOKLINE_NATS_URL", &link_b.url()).spawn().await.unwrap();
    let ingest_1 = peers.role("ingest", env).spawn().await.unwrap();
    let ingest_2 = peers.role("ingest", env).spawn().await.unwrap();
    let delivery = peers
        .role("delivery", env)
        .env("HOOKLINE_SUBSCRIPTIONS_URL", &subs_a.grpc_url())
        .env("HOOKLINE_RETRY_SCHEDULE", "0s,1s,2s")
        .spawn()
        .await
        .unwrap();
    Replicas { peers, subs_a, subs_b, ingest_1, ingest_2, delivery, _links: [link_a, link_b] }
}

/// A TCP relay to nats-server whose replies are held back by 0 or
/// [`JITTER`], alternating every `period_ms` (in order: bytes never overtake
/// each other). A replica behind it applies config events up to
/// [`JITTER`] late, like one on a busy host or a distant network.
struct Jittery {
    port: u16,
    task: tokio::task::JoinHandle<()>,
}

const JITTER: Duration = Duration::from_millis(80);

impl Jittery {
    async fn start(upstream: u16, period_ms: u64) -> Self {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let started = tokio::time::Instant::now();
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(server) = tokio::net::TcpStream::connect(("127.0.0.1", upstream)).await else { continue };
                let (mut client_rx, mut client_tx) = client.into_split();
                let (mut server_rx, mut server_tx) = server.into_split();
                tokio::spawn(async move {
                    let _ = tokio::io::copy(&mut client_rx, &mut server_tx).await;
                });
                let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(tokio::time::Instant, Vec<u8>)>();
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 64 * 1024];
                    let mut last = tokio::time::Instant::now();
                    while let Ok(n) = server_rx.read(&mut buf).await {
                        if n == 0 {
                            break;
                        }
                        let now = tokio::time::Instant::now();
                        let slow = (now - started).as_millis() as u64 / period_ms % 2 == 1;
                        last = last.max(if slow { now + JITTER } else { now });
                        if tx.send((last, buf[..n].to_vec())).is_err() {
                            break;
                        }
                    }
                });
                tokio::spawn(async move {
                    while let Some((due, bytes)) = rx.recv().await {
                        tokio::time::sleep_until(due).await;
                        if client_tx.write_all(&bytes).await.is_err() {
                            break;
                        }
                    }
                });
            }
        });
        Self { port, task }
    }

    fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }
}

impl Drop for Jittery {
    fn drop(&mut self) {
        self.task.abort();
    }
}

const ROUNDS: usize = 50;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_acknowledged_by_one_subscriptions_replica_is_seen_by_the_other_and_by_every_later_event() {
    let r = replicas(&[]).await;
    let (a, b) = (r.subs_a.subscriptions_client().await, r.subs_b.subscriptions_client().await);
    let ingest = r.ingest_2.ingest_client().await;
    let receiver = Receiver::start().await;
    // One round after the other, so they meet the links in every phase:
    // either replica may be the one behind.
    let rounds = (0..ROUNDS).map(|round| {
        let (mut a, mut b, mut ingest, url) = (a.clone(), b.clone(), ingest.clone(), receiver.url());
        async move {
            let mut failures = Vec::new();
            let t = format!("tenant-{round}");
            let create = spb::CreateTenantRequest {
                tenant_id: t.clone(),
                plan: Plan::Basic.into(),
                webhooks_enabled: true,
                ..Default::default()
            };
            a.create_tenant(create).await.unwrap();
            // Listed at once by the other replica.
            let list = spb::ListTenantsRequest { query: t.clone(), ..Default::default() };
            match b.list_tenants(list).await {
                Ok(page) if page.get_ref().tenants.iter().any(|x| x.id == t) => {}
                Ok(page) => failures.push(format!("{t}: not listed by B: {:?}", page.get_ref().tenants)),
                Err(e) => failures.push(format!("{t}: list through B: {} {}", e.code(), e.message())),
            }
            // The endpoint through B, the event at once through the second ingest.
            let endpoint = b
                .create_endpoint(spb::CreateEndpointRequest {
                    tenant_id: t.clone(),
                    url,
                    layout: PayloadLayout::Envelope.into(),
                    ..Default::default()
                })
                .await;
            let mut published = None;
            match endpoint {
                Ok(e) => match ingest.publish(json_request(&t, &fresh("customer.updated"))).await {
                    Ok(p) => published = Some((t.clone(), e.into_inner().id, p.into_inner().event_id)),
                    Err(e) => failures.push(format!("{t}: publish through ingest 2: {} {}", e.code(), e.message())),
                },
                Err(e) => failures.push(format!("{t}: create endpoint through B: {} {}", e.code(), e.message())),
            }
            // The tenant changed through A, then at once through B.
            let update = |plan: Plan| spb::UpdateTenantRequest {
                tenant_id: t.clone(),
                plan: Some(plan.into()),
                ..Default::default()
            };
            if let Err(e) = a.update_tenant(update(Plan::Professional)).await {
                failures.push(format!("{t}: update through A: {} {}", e.code(), e.message()));
            }
            match b.update_tenant(update(Plan::Business)).await {
                Ok(tenant) if tenant.get_ref().plan == Plan::Business as i32 => {}
                Ok(tenant) => failures.push(format!("{t}: update through B answered {:?}", tenant.get_ref())),
                Err(e) => failures.push(format!("{t}: update through B: {} {}", e.code(), e.message())),
            }
            (failures, published)
        }
    });
    let (mut failures, mut published) = (Vec::new(), Vec::new());
    for round in rounds {
        let (f, p) = round.await;
        failures.extend(f);
        published.extend(p);
    }
    assert!(failures.is_empty(), "{} of {ROUNDS} rounds failed:\n{}", failures.len(), failures.join("\n"));

    // Every accepted event reaches its receiver...
    let expected: HashSet<String> = published.iter().map(|(_, _, e)| e.clone()).collect();
    let arrived = eventually(Duration::from_secs(30), "every event delivered", || async {
        let got: HashSet<String> =
            receiver.requests().iter().filter_map(|q| q.header("webhook-id").map(str::to_owned)).collect();
        Ok(expected.is_subset(&got).then_some(got))
    })
    .await;
    let got: HashSet<String> =
        receiver.requests().iter().filter_map(|q| q.header("webhook-id").map(str::to_owned)).collect();
    let lost: Vec<_> = published.iter().filter(|(_, _, e)| !got.contains(e)).collect();
    assert!(arrived.is_ok(), "{} of {} accepted events never arrived: {lost:?}", lost.len(), published.len());

    // ...and is in the delivery log as succeeded.
    let mut log = DeliveryServiceClient::new(r.delivery.channel().await);
    for (t, ep, event) in &published {
        let logged = eventually(Duration::from_secs(15), "the delivery logged", || {
            let mut log = log.clone();
            let (t, ep, event) = (t.clone(), ep.clone(), event.clone());
            async move {
                let rows = log
                    .list_deliveries(dpb::ListDeliveriesRequest { tenant_id: t, endpoint_id: ep, ..Default::default() })
                    .await?
                    .into_inner()
                    .deliveries;
                Ok(rows
                    .into_iter()
                    .find(|d| d.event_id == event && d.state == dpb::DeliveryState::Succeeded as i32)
                    .map(|_| ()))
            }
        })
        .await;
        assert!(logged.is_ok(), "event {event} of {t} not logged as succeeded");
    }
    // The links made the replicas lag for real: they waited, and say so.
    let mut waits = 0.0;
    for p in [&r.subs_a, &r.subs_b] {
        let (_, metrics) = hookline_e2e::http_get(&format!("{}/metrics", p.http_url())).await.unwrap();
        waits += metrics
            .lines()
            .filter(|l| l.starts_with("hookline_config_wait_seconds_count"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>();
    }
    eprintln!("config index waits on the subscriptions replicas: {waits}");
    assert!(waits > 0.0, "no replica ever waited for its index: the test did not exercise lag");
    let _ = (&r.peers, &r.ingest_1, &mut log);
}

/// A recover job outlives the process running it: killed mid-job, it is
/// resumed by the restarted process and ends `completed`; every missed event
/// arrives, repeats only within the attempts in flight at the kill; running
/// RecoverEndpoint again sends nothing twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recover_job_survives_a_crash_and_a_second_run_sends_nothing_twice() {
    let mut s = stack_with(&[("HOOKLINE_DELIVERY_CONCURRENCY", "16"), ("HOOKLINE_ENDPOINT_CONCURRENCY", "8")]).await;
    let mut subs = s.hookline.subscriptions_client().await;
    s.create_tenant("acme", Plan::Enterprise, true).await;
    let receiver = Receiver::start().await;
    let ep = subs
        .create_endpoint(spb::CreateEndpointRequest {
            tenant_id: "acme".into(),
            url: receiver.url(),
            disabled: true,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .id;
    // Missed while the endpoint was disabled: logged as failed, not sent.
    let since = (chrono::Utc::now() - chrono::Duration::seconds(1)).to_rfc3339();
    let n = 1000;
    for _ in 0..n / 500 {
        let events = (0..500).map(|_| json_request("acme", &fresh("customer.updated"))).collect();
        s.publish_batch(events).await;
    }
    let log = DeliveryServiceClient::new(s.hookline.channel().await);
    let missed = failed_deliveries(&log, &ep, n).await;
    subs.update_endpoint(spb::UpdateEndpointRequest {
        tenant_id: "acme".into(),
        endpoint_id: ep.clone(),
        enabled: Some(true),
        ..Default::default()
    })
    .await
    .unwrap();
    // A slow receiver: the replays are still being sent at the kill.
    receiver.set_delay(Duration::from_millis(20));
    let recover = dpb::RecoverEndpointRequest { tenant_id: "acme".into(), endpoint_id: ep.clone(), since };
    let job = log.clone().recover_endpoint(recover.clone()).await.unwrap().into_inner();
    s.hookline.kill9();
    let received_before_restart = receiver.count();
    s.hookline.respawn().await.unwrap();
    let log = DeliveryServiceClient::new(s.hookline.channel().await);
    let job_id = job.id.clone();
    let ended = eventually(Duration::from_secs(40), "the job ended", || {
        let (mut log, job_id) = (log.clone(), job_id.clone());
        async move {
            let j =
                log.get_recover_job(dpb::GetRecoverJobRequest { tenant_id: "acme".into(), job_id }).await?.into_inner();
            Ok((j.state != "running").then_some(j))
        }
    })
    .await
    .unwrap();
    eprintln!(
        "killed with {received_before_restart} of {n} replays received; after the restart the job ended {} ({}/{})",
        ended.state, ended.done, ended.total
    );
    assert_eq!(ended.state, "completed", "{ended:?}");

    let delivered = eventually(Duration::from_secs(60), "every missed event delivered", || async {
        let ids: Vec<String> =
            receiver.requests().iter().filter_map(|r| r.header("webhook-id").map(str::to_owned)).collect();
        let distinct: HashSet<&String> = ids.iter().collect();
        Ok((distinct.len() >= n).then(|| ids.clone()))
    })
    .await
    .unwrap();
    let distinct: HashSet<String> = delivered.iter().cloned().collect();
    assert_eq!(distinct, missed, "the missed events, and only those, are sent");
    // Repeats come only from attempts in flight at the kill (redelivered
    // after the ack wait): at most HOOKLINE_DELIVERY_CONCURRENCY of them.
    let repeats = delivered.len() - n;
    eprintln!("{repeats} repeated deliveries after the kill");
    assert!(repeats <= 16, "{repeats} repeats beyond the 16 attempts in flight");

    // Once the log shows the replays, a second run finds nothing to send.
    eventually(Duration::from_secs(30), "the replays logged", || {
        let log = log.clone();
        let ep = ep.clone();
        async move { Ok((succeeded_replays(&log, &ep).await >= n).then_some(())) }
    })
    .await
    .unwrap();
    let before = receiver.count();
    let again = log.clone().recover_endpoint(recover).await.unwrap().into_inner();
    let again = eventually(Duration::from_secs(15), "the second job ended", || {
        let (mut log, job_id) = (log.clone(), again.id.clone());
        async move {
            let j =
                log.get_recover_job(dpb::GetRecoverJobRequest { tenant_id: "acme".into(), job_id }).await?.into_inner();
            Ok((j.state != "running").then_some(j))
        }
    })
    .await
    .unwrap();
    assert_eq!((again.state.as_str(), again.total), ("completed", 0), "{again:?}");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(receiver.count(), before, "a second recovery sent something again");
}

/// The event ids of `n` failed deliveries of `ep` (waits for them).
async fn failed_deliveries(
    log: &DeliveryServiceClient<tonic::transport::Channel>,
    ep: &str,
    n: usize,
) -> HashSet<String> {
    eventually(Duration::from_secs(60), "the missed deliveries logged", || {
        let (log, ep) = (log.clone(), ep.to_owned());
        async move {
            let rows = all_deliveries(&log, &ep).await;
            let failed: HashSet<String> = rows
                .into_iter()
                .filter(|d| d.state == dpb::DeliveryState::Failed as i32 && d.replay_of.is_empty())
                .map(|d| d.event_id)
                .collect();
            Ok((failed.len() >= n).then_some(failed))
        }
    })
    .await
    .unwrap()
}

async fn succeeded_replays(log: &DeliveryServiceClient<tonic::transport::Channel>, ep: &str) -> usize {
    all_deliveries(log, ep)
        .await
        .into_iter()
        .filter(|d| d.state == dpb::DeliveryState::Succeeded as i32 && !d.replay_of.is_empty())
        .count()
}

async fn all_deliveries(log: &DeliveryServiceClient<tonic::transport::Channel>, ep: &str) -> Vec<dpb::Delivery> {
    let (mut log, mut out, mut cursor) = (log.clone(), Vec::new(), String::new());
    loop {
        let page = log
            .list_deliveries(dpb::ListDeliveriesRequest {
                tenant_id: "acme".into(),
                endpoint_id: ep.into(),
                page_size: 200,
                page_token: cursor.clone(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        out.extend(page.deliveries);
        if page.next_page_token.is_empty() {
            return out;
        }
        cursor = page.next_page_token;
    }
}
