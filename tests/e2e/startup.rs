//! Start-up at scale, measured: 10,000 tenants and 30,000 endpoints written
//! straight to `HOOKLINE_CONFIG` (the stored format, as `Commands` writes
//! it), then every role started on it and timed from spawn until `/readyz`
//! answers 200, with its resident memory then. A second round adds a long
//! history (every endpoint updated `HOOKLINE_STARTUP_UPDATES` times, 10 by
//! default) and a third compacts it (`CompactConfig`) first: start-up must
//! not grow with history once it is compacted.
//!
//! A measurement, not a check of every commit (it takes minutes):
//! `cargo test -p hookline-e2e --test e2e startup -- --ignored --nocapture`,
//! with `HOOKLINE_BIN=target/release/hookline` for release figures.

use std::time::{Duration, Instant};

use base64::{Engine, engine::general_purpose::STANDARD as B64};
use hookline_e2e::NatsServer;
use hookline_proto::subscriptions::v1 as spb;
use serde_json::{Value, json};

use crate::common::*;

const TENANTS: usize = 10_000;
/// Endpoints per tenant by plan (basic, professional, business, enterprise),
/// 3 on average: 30,000 in all.
const ENDPOINTS_BY_PLAN: [(&str, usize); 4] = [("basic", 1), ("professional", 3), ("business", 4), ("enterprise", 4)];
const AT: &str = "2026-12-06T05:00:00.000Z";

fn tenant_id(i: usize) -> String {
    format!("salon-{i:05}")
}

fn endpoint_json(id: &str, n: usize, description: &str) -> Value {
    let key: [u8; 32] = std::array::from_fn(|b| (n * 31 + b) as u8);
    json!({
        "id": id,
        "url": format!("https://erp-{n}.example.com/hooks/booking?code=k{n}"),
        "event_types": [TYPES[n % 12], TYPES[(n + 5) % 12]],
        "layout": "envelope",
        "enabled": true,
        "description": description,
        "secret": format!("whsec_{}", B64.encode(key)),
        "created_at": AT,
        "updated_at": AT,
    })
}

/// Publish `events` (subject, kind, body) with at most 2,000 acks awaited at once.
async fn publish_all(js: &async_nats::jetstream::Context, events: impl Iterator<Item = (String, &'static str, Value)>) {
    let mut pending = Vec::with_capacity(2_000);
    for (subject, kind, body) in events {
        let mut headers = async_nats::HeaderMap::new();
        headers.insert("Hookline-Config-Event", kind);
        pending.push(js.publish_with_headers(subject, headers, body.to_string().into()).await.unwrap());
        if pending.len() == 2_000 {
            for ack in pending.drain(..) {
                ack.await.unwrap();
            }
        }
    }
    for ack in pending {
        ack.await.unwrap();
    }
}

fn tenants_and_endpoints() -> impl Iterator<Item = (String, &'static str, Value)> {
    (0..TENANTS).flat_map(|i| {
        let (plan, count) = ENDPOINTS_BY_PLAN[i % 4];
        let t = tenant_id(i);
        let created =
            json!({"type": "tenant.created", "tenant_id": t, "plan": plan, "webhooks_enabled": true, "at": AT});
        let subject = format!("hookline.config.{t}");
        std::iter::once((subject.clone(), "tenant.created", created)).chain((0..count).map(move |j| {
            let n = i * 10 + j;
            let body =
                json!({"type": "endpoint.created", "endpoint": endpoint_json(&format!("ep_{n:026}"), n, ""), "at": AT});
            (subject.clone(), "endpoint.created", body)
        }))
    })
}

fn updates(round: usize) -> impl Iterator<Item = (String, &'static str, Value)> {
    (0..TENANTS).flat_map(move |i| {
        let (_, count) = ENDPOINTS_BY_PLAN[i % 4];
        let subject = format!("hookline.config.{}", tenant_id(i));
        (0..count).map(move |j| {
            let n = i * 10 + j;
            let ep = endpoint_json(&format!("ep_{n:026}"), n, &format!("revision {round}"));
            (subject.clone(), "endpoint.updated", json!({"type": "endpoint.updated", "endpoint": ep, "at": AT}))
        })
    })
}

struct Started {
    role: &'static str,
    ready: Duration,
    rss: f64,
    peak: f64,
}

async fn start_each_role(peers: &Peers, label: &str) -> Vec<Started> {
    let mut out = Vec::new();
    for role in ["subscriptions", "ingest", "delivery", "dev"] {
        let began = Instant::now();
        let proc = peers.bare(role, &[("HOOKLINE_LOG", "info")]).spawn().await.unwrap();
        let ready = began.elapsed();
        let (rss, peak) = memory_mib(proc.pid().unwrap());
        out.push(Started { role, ready, rss, peak });
        drop(proc);
    }
    println!("\n{label}");
    println!("| role | ready after | RSS at ready | peak RSS |");
    println!("|---|---|---|---|");
    for s in &out {
        println!("| {} | {:.2} s | {:.0} MiB | {:.0} MiB |", s.role, s.ready.as_secs_f64(), s.rss, s.peak);
    }
    out
}

async fn config_messages(nats: &NatsServer) -> u64 {
    stream_messages(nats, "HOOKLINE_CONFIG").await
}

#[tokio::test]
#[ignore = "a measurement of several minutes: run with --ignored --nocapture"]
async fn ten_thousand_tenants_start_every_role_within_five_seconds_however_long_their_history() {
    let peers = Peers::start().await;
    let nats = &peers.nats;
    // One process creates the streams; its start on an empty stream is the baseline.
    let empty = start_each_role(&peers, "empty config stream (baseline)").await;
    let js = nats.jetstream().await;

    let began = Instant::now();
    publish_all(&js, tenants_and_endpoints()).await;
    println!("\nwrote {} config messages in {:.1} s", config_messages(nats).await, began.elapsed().as_secs_f64());
    let fresh = start_each_role(&peers, "10,000 tenants, 30,000 endpoints").await;

    let rounds: usize = std::env::var("HOOKLINE_STARTUP_UPDATES").ok().and_then(|v| v.parse().ok()).unwrap_or(10);
    for round in 0..rounds {
        publish_all(&js, updates(round)).await;
    }
    let long = config_messages(nats).await;
    let history =
        start_each_role(&peers, &format!("the same after {rounds} updates of every endpoint ({long} messages)")).await;

    let subs = peers.bare("subscriptions", &[("HOOKLINE_CONFIG_SNAPSHOT_AFTER", "0")]).spawn().await.unwrap();
    let began = Instant::now();
    let r = subs
        .subscriptions_client()
        .await
        .compact_config(spb::CompactConfigRequest { min_events: 0 })
        .await
        .unwrap()
        .into_inner();
    let compacted_in = began.elapsed();
    drop(subs);
    let left = config_messages(nats).await;
    println!(
        "\ncompacted {} tenants in {:.1} s: purged {}, {left} messages left",
        r.tenants,
        compacted_in.as_secs_f64(),
        r.purged
    );
    assert_eq!((r.tenants, r.failed), (TENANTS as u64, 0));
    assert_eq!(left, TENANTS as u64, "one snapshot per tenant");
    let compacted = start_each_role(&peers, "the same history, compacted").await;

    for (i, s) in compacted.iter().enumerate() {
        let directory = s.rss - empty[i].rss;
        println!(
            "{}: directory ≈ {directory:.0} MiB (RSS over the empty-stream start); ready {:.2} s fresh, {:.2} s with history, {:.2} s compacted",
            s.role,
            fresh[i].ready.as_secs_f64(),
            history[i].ready.as_secs_f64(),
            s.ready.as_secs_f64()
        );
        assert!(s.ready < Duration::from_secs(5), "{} took {:?} to be ready", s.role, s.ready);
        assert!(directory < 100.0, "{}: the directory takes {directory:.0} MiB", s.role);
    }
    peers.db.close().await.unwrap();
}
