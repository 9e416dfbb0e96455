//! Health tells the truth: gRPC health (`grpc.health.v1`) and
//! `/readyz` say NOT_SERVING while NATS is down, while Postgres is down (for
//! what reads it) and while a process drains after SIGTERM, and SERVING
//! again once it recovers, on their own.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use hookline_e2e::{HooklineProc, Receiver, eventually, http_get};
use hookline_proto::subscriptions::v1::{PayloadLayout, Plan};
use tonic::transport::Channel;
use tonic_health::pb::{HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient};

use crate::common::*;

const INGEST: &str = "hookline.ingest.v1.IngestService";
const SUBSCRIPTIONS: &str = "hookline.subscriptions.v1.SubscriptionService";
const DELIVERY: &str = "hookline.delivery.v1.DeliveryService";
/// Every name `hookline dev` reports, `""` being the whole process.
const ALL: [&str; 4] = ["", INGEST, SUBSCRIPTIONS, DELIVERY];

/// What gRPC health answers for `service`, or why it did not answer.
async fn grpc_health(channel: &Channel, service: &str) -> Result<ServingStatus, tonic::Status> {
    let request = HealthCheckRequest { service: service.into() };
    let answer = HealthClient::new(channel.clone()).check(request).await?.into_inner();
    Ok(ServingStatus::try_from(answer.status).unwrap_or(ServingStatus::Unknown))
}

/// `/readyz` as (status, body).
async fn readyz(p: &HooklineProc) -> (u16, String) {
    http_get(&format!("{}/readyz", p.http_url())).await.unwrap_or((0, String::new()))
}

/// Wait until every one of `services` answers `status` on gRPC health and
/// `/readyz` answers `readyz` (status and body); fails naming what was seen.
async fn wait_for(
    p: &HooklineProc,
    channel: &Channel,
    services: &[&str],
    status: ServingStatus,
    ready: (u16, &str),
) -> anyhow::Result<()> {
    let what = format!("{services:?} {status:?} and /readyz {ready:?}");
    let seen = std::sync::Mutex::new(String::new());
    let result = eventually(Duration::from_secs(20), &what, || async {
        let mut answers = Vec::new();
        for s in services {
            answers.push(grpc_health(channel, s).await.map_err(|e| e.code()));
        }
        let r = readyz(p).await;
        let done = answers.iter().all(|a| *a == Ok(status)) && r.0 == ready.0 && r.1.trim() == ready.1;
        *seen.lock().unwrap() = format!("health {answers:?}, /readyz {r:?}");
        done.then_some(())
    })
    .await;
    result.map_err(|e| e.context(format!("last seen: {}", seen.lock().unwrap())))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_health_and_readyz_report_not_serving_while_nats_is_down() {
    let mut s = stack().await;
    let channel = s.hookline.channel().await;
    wait_for(&s.hookline, &channel, &ALL, ServingStatus::Serving, (200, "ready")).await.unwrap();

    s.nats.kill();
    wait_for(&s.hookline, &channel, &ALL, ServingStatus::NotServing, (503, "NATS disconnected")).await.unwrap();

    s.nats.restart().unwrap();
    wait_for(&s.hookline, &channel, &ALL, ServingStatus::Serving, (200, "ready")).await.unwrap();
}

/// The kit starts every process on port 0: the process names the ports it
/// got in its log, and a respawn after a crash binds the same ports again,
/// so clients holding the old URLs reach the new process.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_process_on_port_0_names_its_ports_and_a_respawn_after_a_crash_binds_them_again() {
    let mut s = stack().await;
    let (grpc, http, console) = (s.hookline.grpc_url(), s.hookline.http_url(), s.hookline.console_url());
    let log = s.hookline.log_contents();
    for (label, url) in [("gRPC", &grpc), ("HTTP", &http), ("console", &console)] {
        let addr = url.trim_start_matches("http://");
        assert!(!addr.ends_with(":0"), "{label}: {url}");
        assert!(log.contains(&format!("{label} listening on {addr}")), "{label} {addr} not in the log:\n{log}");
    }

    s.hookline.kill9();
    assert_eq!(readyz(&s.hookline).await.0, 0, "a killed process answers nothing");
    s.hookline.respawn().await.unwrap();
    assert_eq!((s.hookline.grpc_url(), s.hookline.http_url(), s.hookline.console_url()), (grpc, http, console));
    let channel = s.hookline.channel().await;
    wait_for(&s.hookline, &channel, &ALL, ServingStatus::Serving, (200, "ready")).await.unwrap();
    let starts = s.hookline.log_contents().matches("listening on").count();
    assert_eq!(starts, 6, "three listeners (dev runs the console too), two incarnations");
}

/// Split roles report only their own service (and `""`), and follow NATS too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_split_role_reports_its_own_service_and_follows_nats() {
    let mut s = split(&[]).await;
    let roles = [(&s.ingest, INGEST), (&s.subscriptions, SUBSCRIPTIONS), (&s.delivery, DELIVERY)];
    let mut channels = Vec::new();
    for (p, service) in roles {
        let channel = p.channel().await;
        wait_for(p, &channel, &["", service], ServingStatus::Serving, (200, "ready")).await.unwrap();
        let other = if service == INGEST { DELIVERY } else { INGEST };
        let code = grpc_health(&channel, other).await.unwrap_err().code();
        assert_eq!(code, tonic::Code::NotFound, "{service} does not report {other}");
        channels.push((channel, service));
    }
    s.nats.kill();
    for ((channel, service), p) in channels.iter().zip([&s.ingest, &s.subscriptions, &s.delivery]) {
        wait_for(p, channel, &["", service], ServingStatus::NotServing, (503, "NATS disconnected")).await.unwrap();
    }
    s.nats.restart().unwrap();
    for ((channel, service), p) in channels.iter().zip([&s.ingest, &s.subscriptions, &s.delivery]) {
        wait_for(p, channel, &["", service], ServingStatus::Serving, (200, "ready")).await.unwrap();
    }
}

/// A TCP path to the local Postgres that the test can cut and mend: while cut,
/// open connections are dropped and new ones closed at once, as when the
/// database host goes away.
struct PostgresLink {
    port: u16,
    open: Arc<AtomicBool>,
    cut: tokio::sync::watch::Sender<u64>,
}

impl PostgresLink {
    async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let open = Arc::new(AtomicBool::new(true));
        let (cut, _) = tokio::sync::watch::channel(0u64);
        let (flag, cuts) = (open.clone(), cut.clone());
        tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                if !flag.load(Ordering::SeqCst) {
                    continue; // dropped: the connection closes at once
                }
                let mut cut = cuts.subscribe();
                tokio::spawn(async move {
                    let Ok(mut server) = tokio::net::TcpStream::connect("127.0.0.1:5432").await else { return };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                        _ = cut.changed() => {}
                    }
                });
            }
        });
        Self { port, open, cut }
    }

    fn cut(&self) {
        self.open.store(false, Ordering::SeqCst);
        self.cut.send_modify(|n| *n += 1);
    }

    fn mend(&self) {
        self.open.store(true, Ordering::SeqCst);
    }
}

/// Postgres unreachable: the delivery service (its log is there) and the
/// process say NOT_SERVING; ingest and subscriptions, which do not read
/// Postgres, keep serving. All recover once Postgres answers again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delivery_health_follows_postgres_while_ingest_and_subscriptions_keep_serving() {
    let link = PostgresLink::start().await;
    let peers = Peers::start().await;
    let url = format!("postgres://postgres@127.0.0.1:{}/{}", link.port, peers.db.name());
    let s = peers.stack(&[("HOOKLINE_DATABASE_URL", &url)]).await;
    let channel = s.hookline.channel().await;
    wait_for(&s.hookline, &channel, &ALL, ServingStatus::Serving, (200, "ready")).await.unwrap();

    link.cut();
    wait_for(&s.hookline, &channel, &["", DELIVERY], ServingStatus::NotServing, (503, "Postgres unreachable"))
        .await
        .unwrap();
    for service in [INGEST, SUBSCRIPTIONS] {
        assert_eq!(grpc_health(&channel, service).await.unwrap(), ServingStatus::Serving, "{service}");
    }

    link.mend();
    wait_for(&s.hookline, &channel, &ALL, ServingStatus::Serving, (200, "ready")).await.unwrap();
}

/// SIGTERM with an attempt in flight: probes say NOT_SERVING ("draining") at
/// once and keep answering while the attempt finishes; then the process exits 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_health_and_readyz_report_not_serving_while_the_process_drains() {
    let mut s = stack_with(&[("HOOKLINE_REQUEST_TIMEOUT", "15s"), ("HOOKLINE_ACK_WAIT", "20s")]).await;
    let receiver = Receiver::start().await;
    receiver.set_delay(Duration::from_secs(5));
    s.create_tenant("acme", Plan::Basic, true).await;
    s.create_endpoint("acme", &receiver.url(), &[], PayloadLayout::Envelope).await;
    let channel = s.hookline.channel().await;
    wait_for(&s.hookline, &channel, &ALL, ServingStatus::Serving, (200, "ready")).await.unwrap();
    s.publish_json("acme", &fresh("customer.created")).await;
    receiver.wait_for(1, Duration::from_secs(20)).await.unwrap();

    s.hookline.terminate();
    let started = std::time::Instant::now();
    wait_for(&s.hookline, &channel, &ALL, ServingStatus::NotServing, (503, "draining")).await.unwrap();
    assert!(started.elapsed() < Duration::from_secs(3), "seen draining {:?} after SIGTERM", started.elapsed());
    assert!(s.hookline.wait_exit(Duration::from_millis(500)).await.is_none(), "still draining the attempt");
    let status = s.hookline.wait_exit(Duration::from_secs(25)).await.expect("exits once the attempt is done");
    assert!(status.success(), "exit status {status:?}");
    assert_eq!(receiver.count(), 1);
}
