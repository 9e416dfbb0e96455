//! Nothing is lost through a series of faults: events are in flight at
//! fan-out 3 while the delivery process is SIGKILLed twice, ingest once,
//! nats-server killed and restarted, and Postgres stopped and started.
//! Afterwards every (event, endpoint) pair reached its receiver, duplicates
//! stay within the in-flight window, the log agrees with the receivers, and
//! every service is ready again by itself.
//!
//! CI runs 3,000 events with a 10 s Postgres outage; the full run is
//! `HOOKLINE_FAULT_EVENTS=10000 HOOKLINE_FAULT_PG_DOWN_SECS=30 cargo test -p hookline-e2e --test e2e fault_suite -- --nocapture`.

use std::{
    collections::HashSet,
    path::PathBuf,
    process::Command,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use hookline_e2e::{HooklineBuilder, HooklineProc, NatsServer, Receiver, eventually, free_port, http_get};
use hookline_proto::{
    delivery::v1::delivery_service_client::DeliveryServiceClient,
    ingest::v1::PublishBatchRequest,
    subscriptions::v1::{PayloadLayout, Plan},
};
use serde_json::json;

use crate::common::*;

const PG_BIN: &str = "/usr/lib/postgresql/15/bin";

/// A private Postgres cluster (initdb + pg_ctl, run as the postgres user).
struct PgCluster {
    dir: PathBuf,
    port: u16,
}

impl PgCluster {
    fn run(args: &[&str]) {
        let status = Command::new("runuser").args(["-u", "postgres", "--"]).args(args).output().unwrap();
        assert!(status.status.success(), "{args:?}: {}", String::from_utf8_lossy(&status.stderr));
    }

    fn start_new() -> Self {
        let port = free_port();
        let dir = PathBuf::from(format!("/tmp/hookline-pg-{port}"));
        std::fs::create_dir_all(&dir).unwrap();
        let chown = Command::new("chown").arg("postgres:postgres").arg(&dir).status().unwrap();
        assert!(chown.success(), "chown {}", dir.display());
        let data = dir.join("data");
        Self::run(&[
            &format!("{PG_BIN}/initdb"),
            "-D",
            data.to_str().unwrap(),
            "-U",
            "postgres",
            "--auth=trust",
            "-E",
            "UTF8",
        ]);
        let c = Self { dir, port };
        c.start();
        c
    }

    fn start(&self) {
        let data = self.dir.join("data");
        let opts = format!("-p {} -k {} -c listen_addresses=127.0.0.1", self.port, self.dir.display());
        Self::run(&[
            &format!("{PG_BIN}/pg_ctl"),
            "-D",
            data.to_str().unwrap(),
            "-o",
            &opts,
            "-w",
            "-l",
            self.dir.join("pg.log").to_str().unwrap(),
            "start",
        ]);
    }

    fn stop(&self) {
        Self::run(&[
            &format!("{PG_BIN}/pg_ctl"),
            "-D",
            self.dir.join("data").to_str().unwrap(),
            "-m",
            "fast",
            "-w",
            "stop",
        ]);
    }

    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/hookline", self.port)
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        let _ = Command::new("runuser")
            .args(["-u", "postgres", "--", &format!("{PG_BIN}/pg_ctl"), "-D"])
            .arg(self.dir.join("data"))
            .args(["-m", "immediate", "stop"])
            .output();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn env_or(key: &str, default: u64) -> u64 {
    std::env::var(key).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

async fn ready(p: &HooklineProc) -> bool {
    matches!(http_get(&format!("{}/readyz", p.http_url())).await, Ok((200, _)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fault_suite_nothing_is_lost() {
    let events = env_or("HOOKLINE_FAULT_EVENTS", 3000) as usize;
    let pg_down = Duration::from_secs(env_or("HOOKLINE_FAULT_PG_DOWN_SECS", 10));
    let mut nats = NatsServer::start().unwrap();
    let pg = PgCluster::start_new();
    let base = |role: &str| {
        HooklineBuilder::new(role)
            .env("HOOKLINE_NATS_URL", &nats.url())
            .env("HOOKLINE_DATABASE_URL", &pg.url())
            .env("HOOKLINE_DELIVERY_ALLOW_CIDRS", "127.0.0.0/8")
            .env("HOOKLINE_RETRY_SCHEDULE", "0s,1s,2s,4s,8s,8s,8s,8s,8s,8s,8s,8s")
            .env("HOOKLINE_REQUEST_TIMEOUT", "2s")
            .env("HOOKLINE_ACK_WAIT", "5s")
            .env("HOOKLINE_TENANT_RATE", "0")
            .env("HOOKLINE_BREAKER_THRESHOLD", "1000")
            .env("HOOKLINE_DELIVERY_CONCURRENCY", "64")
            .env("HOOKLINE_LOG", "warn,hookline=info")
    };
    let subscriptions = base("subscriptions").spawn().await.unwrap();
    let mut ingest = base("ingest").spawn().await.unwrap();
    let mut delivery =
        base("delivery").env("HOOKLINE_SUBSCRIPTIONS_URL", &subscriptions.grpc_url()).spawn().await.unwrap();
    let receivers = [Receiver::start().await, Receiver::start().await, Receiver::start().await];
    let mut subs = subscriptions.subscriptions_client().await;
    tenant(&mut subs, "acme", Plan::Professional, true).await;
    let mut eps = Vec::new();
    for r in &receivers {
        eps.push(endpoint(&mut subs, "acme", &r.url(), &[], PayloadLayout::Envelope).await.0);
    }

    // Publisher: batches of 100 with idempotency keys, retried until accepted.
    let ingest_url = ingest.grpc_url();
    let published: Arc<tokio::sync::Mutex<HashSet<String>>> = Arc::default();
    let done = Arc::new(AtomicBool::new(false));
    let publisher = {
        let (published, done) = (published.clone(), done.clone());
        tokio::spawn(async move {
            for batch in 0..events.div_ceil(100) {
                let req = PublishBatchRequest {
                    events: (0..100.min(events - batch * 100))
                        .map(|i| {
                            let mut e = fresh("customer.updated");
                            e["idempotency_key"] = json!(format!("fault-{batch}-{i}"));
                            json_request("acme", &e)
                        })
                        .collect(),
                };
                loop {
                    let attempt = async {
                        let mut c = hookline_proto::ingest::v1::ingest_service_client::IngestServiceClient::connect(
                            ingest_url.clone(),
                        )
                        .await?;
                        Ok::<_, anyhow::Error>(c.publish_batch(req.clone()).await?.into_inner())
                    };
                    match tokio::time::timeout(Duration::from_secs(10), attempt).await {
                        Ok(Ok(r)) => {
                            published.lock().await.extend(r.results.into_iter().map(|r| r.event_id));
                            break;
                        }
                        _ => tokio::time::sleep(Duration::from_millis(300)).await,
                    }
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            done.store(true, Ordering::SeqCst);
        })
    };
    let delivered = || receivers.iter().map(|r| r.count()).sum::<usize>();
    let wait_for = |n: usize| async move {
        let deadline = Instant::now() + Duration::from_secs(60);
        while delivered() < n && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    let total = events * 3;
    let mut log = Vec::new();

    wait_for(total / 10).await;
    delivery.kill9();
    log.push(format!("SIGKILL delivery at {} deliveries", delivered()));
    tokio::time::sleep(Duration::from_secs(1)).await;
    delivery.respawn().await.unwrap();

    wait_for(total / 5).await;
    ingest.kill9();
    log.push(format!("SIGKILL ingest at {}", delivered()));
    tokio::time::sleep(Duration::from_secs(1)).await;
    ingest.respawn().await.unwrap();

    wait_for(total * 3 / 10).await;
    nats.kill();
    log.push(format!("nats-server killed at {}", delivered()));
    tokio::time::sleep(Duration::from_secs(2)).await;
    nats.restart().unwrap();

    wait_for(total * 2 / 5).await;
    pg.stop();
    log.push(format!("Postgres stopped for {pg_down:?} at {}", delivered()));
    // The second SIGKILL of delivery lands while Postgres is down.
    tokio::time::sleep(pg_down / 2).await;
    delivery.kill9();
    log.push(format!("second SIGKILL of delivery (Postgres down) at {}", delivered()));
    tokio::time::sleep(Duration::from_secs(1)).await;
    delivery.respawn_unready().unwrap();
    tokio::time::sleep(pg_down / 2).await;
    pg.start();
    log.push(format!("Postgres back at {}", delivered()));

    publisher.await.unwrap();
    assert!(done.load(Ordering::SeqCst));
    let published = published.lock().await.clone();
    assert_eq!(published.len(), events, "every batch was eventually accepted");

    // Every (event, endpoint) pair reached its receiver.
    let started = Instant::now();
    let per_endpoint = eventually(Duration::from_secs(180), "every pair delivered", || async {
        let sets = webhook_ids(&receivers);
        Ok(sets.iter().all(|s| published.is_subset(s)).then_some(sets))
    })
    .await
    .unwrap_or_else(|e| {
        panic!("{e}; faults: {log:?}; received {:?}", receivers.iter().map(|r| r.count()).collect::<Vec<_>>())
    });
    let requests = delivered();
    let duplicates = requests - total;
    eprintln!(
        "fault suite: {events} events x 3 endpoints; faults {log:?}; requests {requests}; duplicates {duplicates}; drained {:?} after the last fault",
        started.elapsed()
    );
    assert!(per_endpoint.iter().all(|s| s.len() == events));
    // Duplicates come only from work in flight when something died: per
    // fault that can repeat work (two delivery kills, one nats-server kill,
    // which may lose acks it had not yet written) at most the events fan-out
    // holds (128) times their 3 endpoints, since fan-out makes first attempts
    // itself and acks an event once all of them are recorded, plus the
    // workers' 64 attempts and one pulled batch (max_messages_per_batch = 64).
    let window = 3 * (128 * 3 + 64 + 64);
    assert!(duplicates <= window, "duplicates {duplicates} beyond the in-flight window {window}; faults {log:?}");

    // Every service reports ready again by itself, with no restart by us.
    for (name, p) in [("subscriptions", &subscriptions), ("ingest", &ingest), ("delivery", &delivery)] {
        let ok = eventually(Duration::from_secs(30), name, || async { Ok(ready(p).await.then_some(())) }).await;
        assert!(ok.is_ok(), "{name} is not ready again");
    }

    // The log agrees with the receivers once the projector catches up.
    let mut client = DeliveryServiceClient::connect(delivery.grpc_url()).await.unwrap();
    for ep in &eps {
        let counted = eventually(Duration::from_secs(90), "log caught up", || {
            let (client, ep) = (client.clone(), ep.clone());
            async move {
                let n = succeeded(&client, &ep).await?;
                Ok((n == events).then_some(n))
            }
        })
        .await
        .unwrap();
        assert_eq!(counted, events);
    }
    let _ = &mut client;
}
