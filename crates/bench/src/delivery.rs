//! `hookline-bench delivery`: end to end against real processes, each figure
//! beside a raw baseline measured in the same run.

pub mod cluster;

use std::{
    collections::HashSet,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use bytes::Bytes;
use futures_util::{StreamExt, TryStreamExt, stream};
use hookline_proto::{
    ingest::v1::{PublishBatchRequest, PublishRequest, ingest_service_client::IngestServiceClient, publish_request},
    subscriptions::v1::{
        CreateEndpointRequest, CreateTenantRequest, Plan, subscription_service_client::SubscriptionServiceClient,
    },
};
use serde_json::{Value, json};
use tokio::task::JoinSet;
use tonic::{Code, transport::Channel};

use crate::{
    receiver::{Arrivals, Key, Receiver, black_hole},
    report::{Percentiles, Report, Row, percentiles},
    stack::{Stack, cpu_secs, machine_ticks, peak_rss_mib, rss_mib},
};

#[derive(clap::Args)]
pub struct Args {
    /// Events per throughput run (fan-out 1 and fan-out 10).
    #[arg(long, default_value_t = 20_000)]
    events: usize,
    /// Events per second in the latency run.
    #[arg(long, default_value_t = 1000)]
    rate: u32,
    /// Length of the latency run.
    #[arg(long, default_value_t = 30)]
    latency_secs: u64,
    /// Events per isolation run (three beside a black-holed endpoint, each
    /// between runs without it, then one beside a second healthy endpoint);
    /// enough for the first run beside the hole to outlast the 15 s request
    /// timeout.
    #[arg(long, default_value_t = 100_000)]
    isolation_events: usize,
    /// Run only these phases (repeatable); the raw baseline always runs.
    #[arg(long, value_enum)]
    only: Vec<Phase>,
    /// Extra environment for the three services, e.g. `--env HOOKLINE_ENDPOINT_CONCURRENCY=64`,
    /// or for one of them, e.g. `--env delivery:TOKIO_WORKER_THREADS=1`
    /// (for experiments; the published figures use the defaults).
    #[arg(long = "env", value_name = "KEY=VALUE")]
    env: Vec<String>,
    /// Smoke run: at most 2,000 events, 5 s of latency, 1,000 isolation events.
    #[arg(long)]
    quick: bool,
}

const EXAMPLE: &str = include_str!("../../../examples/events/appointment.booking.created.json");
/// Padding of `data.appointment.notes` that makes the envelope body ~1 KiB.
const NOTES_LEN: usize = 420;
const BATCH: usize = 500;
/// The raw POST rate is measured for this long, about as long as a fan-out
/// 1 run of 20,000 events takes: 20,000 requests took a third of a second,
/// and rates over so short a window moved by half from run to run.
const RAW_SECS: f64 = 2.5;
const RAW_CONCURRENCY: usize = 64;

/// The producer event: the example without its idempotency key (identical
/// keys would be deduplicated), with padded notes.
fn producer_event() -> String {
    let mut v: Value = serde_json::from_str(EXAMPLE).expect("example event is JSON");
    v.as_object_mut().expect("object").remove("idempotency_key");
    let notes = "Bitte den Hintereingang benutzen. ".repeat(NOTES_LEN / 34 + 1);
    v["data"]["appointment"]["notes"] = Value::String(notes[..NOTES_LEN].trim_end().to_owned());
    v.to_string()
}

/// A throughput run: deliveries over the time from the first publish to the
/// last arrival.
struct Run {
    deliveries: usize,
    secs: f64,
    publish_secs: f64,
    events: usize,
    duplicates: usize,
}

impl Run {
    fn rate(&self) -> f64 {
        self.deliveries as f64 / self.secs
    }
}

struct Bench {
    stack: Stack,
    rx: Receiver,
    subs: SubscriptionServiceClient<Channel>,
    ingest: IngestServiceClient<Channel>,
    event: String,
    notes: Vec<String>,
}

impl Bench {
    // `..Default::default()` keeps this compiling when the proto grows fields.
    #[allow(clippy::needless_update)]
    async fn tenant(&mut self, tenant: &str, urls: &[String]) -> anyhow::Result<()> {
        let req = CreateTenantRequest {
            tenant_id: tenant.into(),
            plan: Plan::Enterprise as i32,
            webhooks_enabled: true,
            ..Default::default()
        };
        self.subs.create_tenant(req).await.context("CreateTenant")?;
        for url in urls {
            let req = CreateEndpointRequest { tenant_id: tenant.into(), url: url.clone(), ..Default::default() };
            self.subs.create_endpoint(req).await.with_context(|| format!("CreateEndpoint {url}"))?;
        }
        Ok(())
    }

    fn batch(&self, tenant: &str, n: usize) -> PublishBatchRequest {
        let one = PublishRequest {
            tenant_id: tenant.into(),
            payload: Some(publish_request::Payload::Json(self.event.clone())),
            ..Default::default()
        };
        PublishBatchRequest { events: vec![one; n] }
    }

    /// Publish `n` events in one PublishBatch; their event ids.
    async fn publish(&self, tenant: &str, n: usize) -> anyhow::Result<Vec<String>> {
        let res = self.ingest.clone().publish_batch(self.batch(tenant, n)).await.context("PublishBatch")?;
        Ok(res.into_inner().results.into_iter().map(|r| r.event_id).collect())
    }

    /// Publish single events until one reaches every path: the services'
    /// directories know the tenant and endpoints, and connections are warm.
    async fn warm_up(&self, tenant: &str, paths: &[String]) -> anyhow::Result<()> {
        self.settle().await;
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            let from = self.rx.len();
            let ids = match self.publish(tenant, 1).await {
                Ok(ids) => ids,
                // Ingest's directory may lag a moment behind subscriptions.
                Err(e) if e.downcast_ref::<tonic::Status>().is_some_and(|s| s.code() == Code::NotFound) => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
                Err(e) => return Err(e),
            };
            let expected = keys(paths, &ids);
            if self.rx.wait_for(&expected, from, Duration::from_secs(1)).await.missing == 0 {
                return Ok(());
            }
        }
        bail!("warm-up event for {tenant} never reached {paths:?}")
    }

    /// Wait (up to 3 minutes) until delivery's projector has caught up with
    /// the streams, so a phase does not pay for the previous phase's
    /// backlog (200,000 outcomes after fan-out 10).
    async fn settle(&self) {
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(180) {
            let lag = self.metrics("delivery").await.map(|text| metric_sum(&text, "hookline_projector_lag"));
            if lag == Some(0.0) {
                if started.elapsed() > Duration::from_secs(1) {
                    println!("  settled: projector caught up after {:.1} s", started.elapsed().as_secs_f64());
                }
                return;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        println!("  not settled after 180 s: the projector is still behind");
    }

    /// Publish `n` events as fast as possible (4 batches in flight) and wait
    /// until the receiver has every one on every path in `paths`.
    async fn throughput(&mut self, tenant: &str, paths: &[String], n: usize) -> anyhow::Result<Run> {
        let from = self.rx.len();
        let start = Instant::now();
        let sizes = (0..n).step_by(BATCH).map(|i| BATCH.min(n - i));
        let this = &*self;
        let ids: Vec<Vec<String>> =
            stream::iter(sizes).map(|k| this.publish(tenant, k)).buffered(4).try_collect().await?;
        let publish_secs = start.elapsed().as_secs_f64();
        let ids: Vec<String> = ids.into_iter().flatten().collect();
        let expected = keys(paths, &ids);
        let timeout = Duration::from_secs(60 + expected.len() as u64 / 100);
        let arr = self.rx.wait_for(&expected, from, timeout).await;
        self.incomplete(tenant, &arr, expected.len());
        let secs = arr.last().map_or(f64::NAN, |t| (t - start).as_secs_f64());
        let run = Run { deliveries: arr.first.len(), secs, publish_secs, events: n, duplicates: arr.duplicates };
        println!(
            "  {tenant}: {} events, {} deliveries in {:.2} s ({:.0}/s; publishing took {:.2} s, {} duplicates)",
            run.events,
            run.deliveries,
            run.secs,
            run.rate(),
            run.publish_secs,
            run.duplicates
        );
        if let Some((first, middle)) = arr.shape(start) {
            let note = format!(
                "{tenant}: first delivery {:.0} ms after the first publish; {middle:.0}/s between the 10th and 90th percentile of arrivals",
                first.as_secs_f64() * 1000.0
            );
            println!("  {note}");
            self.notes.push(note);
        }
        Ok(run)
    }

    /// A throughput run, and where the CPU went during it (the note `phase`).
    async fn measured(&mut self, phase: &str, tenant: &str, paths: &[String], n: usize) -> anyhow::Result<Run> {
        let cpu = self.cpu().await;
        let run = self.throughput(tenant, paths, n).await?;
        self.cpu_note(phase, &cpu).await;
        Ok(run)
    }

    fn incomplete(&mut self, what: &str, arr: &Arrivals, expected: usize) {
        if arr.missing > 0 {
            let note = format!("{what}: only {} of {expected} deliveries arrived before the timeout", arr.first.len());
            println!("  {note}");
            self.notes.push(note);
        }
    }

    /// Publish `rate` events/s as single `Publish` calls, evenly paced (1 ms
    /// ticks), for `secs`; the latency from each call's send instant to the
    /// event's arrival, and the `Publish` round trips.
    async fn latency(
        &mut self,
        tenant: &str,
        path: &str,
        rate: u32,
        secs: u64,
    ) -> anyhow::Result<(Vec<Duration>, Vec<Duration>)> {
        let from = self.rx.len();
        let mut tasks = JoinSet::new();
        let mut tick = tokio::time::interval(Duration::from_millis(1));
        let (start, mut sent) = (Instant::now(), 0usize);
        while start.elapsed() < Duration::from_secs(secs) {
            tick.tick().await;
            let due = ((start.elapsed().as_secs_f64() * f64::from(rate)) as usize).saturating_sub(sent);
            for _ in 0..due {
                let (mut client, req) = (self.ingest.clone(), self.batch(tenant, 1).events.remove(0));
                tasks.spawn(async move {
                    let t0 = Instant::now();
                    let res = client.publish(req).await;
                    (t0, t0.elapsed(), res)
                });
            }
            sent += due;
        }
        let (mut sent_at, mut acks) = (Vec::with_capacity(sent), Vec::with_capacity(sent));
        while let Some(done) = tasks.join_next().await {
            let (t0, ack, res) = done?;
            acks.push(ack);
            sent_at.push((res.context("Publish")?.into_inner().event_id, t0));
        }
        let paths = [path.to_owned()];
        let expected = keys(&paths, &sent_at.iter().map(|(id, _)| id.clone()).collect::<Vec<_>>());
        let arr = self.rx.wait_for(&expected, from, Duration::from_secs(120)).await;
        self.incomplete(tenant, &arr, expected.len());
        let timed: Vec<(Instant, Duration)> = sent_at
            .into_iter()
            .filter_map(|(id, t0)| {
                arr.first.get(&(path.to_owned(), id)).map(|at| (t0, at.saturating_duration_since(t0)))
            })
            .collect();
        // How latency evolved: one line per 5 s window of publishing.
        for w in 0..secs.div_ceil(5) {
            let window = (Duration::from_secs(5 * w), Duration::from_secs(5 * (w + 1)));
            let mut in_window: Vec<Duration> =
                timed.iter().filter(|(t0, _)| (window.0..window.1).contains(&(*t0 - start))).map(|x| x.1).collect();
            let p = percentiles(&mut in_window);
            println!(
                "  {:>3}-{:<3} s: {:>5} events, p50 {:>8.2} ms, p99 {:>8.2} ms, max {:>8.2} ms",
                window.0.as_secs(),
                window.1.as_secs(),
                in_window.len(),
                p.p50,
                p.p99,
                p.max
            );
        }
        Ok((timed.into_iter().map(|x| x.1).collect(), acks))
    }
}

/// CPU seconds of each process of interest, and machine-wide busy/total ticks.
struct CpuSnapshot {
    procs: Vec<(String, f64)>,
    machine: (f64, f64),
    at: Instant,
    counters: Option<Counters>,
}

/// Delivery's counters so far, from one read of its `/metrics`.
#[derive(Clone, Copy)]
struct Counters {
    /// Tasks handed back to JetStream or parked.
    deferrals: f64,
    /// HTTP attempts, and their total duration.
    http: f64,
    http_seconds: f64,
    /// First attempts made by fan-out.
    direct: f64,
    /// `Resolve` calls subscriptions answered.
    resolves: f64,
}

/// The sum of every sample whose line starts with `prefix`.
pub(crate) fn metric_sum(text: &str, prefix: &str) -> f64 {
    text.lines().filter(|l| l.starts_with(prefix)).filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok()).sum()
}

impl Bench {
    async fn cpu(&self) -> CpuSnapshot {
        let mut procs: Vec<(String, f64)> =
            self.stack.services.iter().map(|s| (s.role.to_owned(), cpu_secs(&s.pid().to_string()))).collect();
        let nats = self.stack.nats_pids();
        if !nats.is_empty() {
            let label =
                if nats.len() == 1 { "nats-server".to_owned() } else { format!("nats-server ({} nodes)", nats.len()) };
            procs.push((label, nats.iter().map(|pid| cpu_secs(&pid.to_string())).sum()));
        }
        procs.push(("bench (receiver, clients)".into(), cpu_secs("self")));
        procs.push(("postgres (all)".into(), postgres_cpu_secs()));
        let resolves = self
            .metrics("subscriptions")
            .await
            .map_or(0.0, |t| metric_sum(&t, "hookline_resolve_duration_seconds_count"));
        let counters = self.metrics("delivery").await.map(|text| Counters {
            deferrals: metric_sum(&text, "hookline_delivery_deferrals"),
            http: metric_sum(&text, "hookline_delivery_attempt_duration_seconds_count{channel=\"http\"}"),
            http_seconds: metric_sum(&text, "hookline_delivery_attempt_duration_seconds_sum{channel=\"http\"}"),
            direct: metric_sum(&text, "hookline_delivery_direct_attempts_total"),
            resolves,
        });
        CpuSnapshot { procs, machine: machine_ticks(), at: Instant::now(), counters }
    }

    /// The `/metrics` text of the service with this role, if it answers.
    async fn metrics(&self, role: &str) -> Option<String> {
        let service = self.stack.services.iter().find(|s| s.role == role)?;
        let url = format!("{}/metrics", service.http_url);
        reqwest::get(url).await.ok()?.error_for_status().ok()?.text().await.ok()
    }

    /// Record where the CPU went between `before` and now.
    async fn cpu_note(&mut self, phase: &str, before: &CpuSnapshot) {
        let after = self.cpu().await;
        let mut deferrals = String::new();
        if let (Some(b), Some(a)) = (before.counters, after.counters) {
            deferrals = format!("; delivery deferred {:.0} tasks to JetStream", a.deferrals - b.deferrals);
            let n = a.http - b.http;
            if n > 0.0 {
                deferrals.push_str(&format!(
                    "; {n:.0} HTTP attempts, mean {:.2} ms each, {:.0} % made by fan-out",
                    1000.0 * (a.http_seconds - b.http_seconds) / n,
                    100.0 * (a.direct - b.direct) / n
                ));
            }
            deferrals.push_str(&format!("; {:.0} Resolve calls", a.resolves - b.resolves));
        }
        // Where nats-server's memory stands after each phase (the peak row
        // alone cannot say which phase grew it).
        let nats_rss = self.stack.nats_pids().into_iter().filter_map(|pid| rss_mib(pid).ok()).fold(0.0, f64::max);
        deferrals.push_str(&format!("; nats-server RSS {nats_rss:.0} MiB"));
        let wall = (after.at - before.at).as_secs_f64();
        let busy = (after.machine.0 - before.machine.0) / (after.machine.1 - before.machine.1).max(1.0);
        let per: Vec<String> = after
            .procs
            .iter()
            .zip(&before.procs)
            .map(|((name, a), (_, b))| format!("{name} {:.0} %", 100.0 * (a - b) / wall))
            .collect();
        let ours: f64 = after.procs.iter().zip(&before.procs).map(|((_, a), (_, b))| a - b).sum::<f64>() / wall;
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
        let note = format!(
            "{phase}: {wall:.1} s wall, machine {:.0} % busy of {cores} cores, other processes ~{:.0} %; \
             per process (of one core): {}",
            100.0 * busy,
            (100.0 * (busy - ours / cores)).max(0.0),
            per.join(", ")
        ) + &deferrals;
        println!("  {note}");
        self.notes.push(note);
    }
}

/// CPU seconds of every `postgres` process (the server is shared; during a
/// run it mostly works for this benchmark's database).
pub(crate) fn postgres_cpu_secs() -> f64 {
    let Ok(dir) = std::fs::read_dir("/proc") else { return 0.0 };
    dir.filter_map(Result::ok)
        .filter(|e| std::fs::read_to_string(e.path().join("comm")).is_ok_and(|c| c.trim() == "postgres"))
        .map(|e| cpu_secs(&e.file_name().to_string_lossy()))
        .sum()
}

/// The 1, 5 and 15 minute load averages.
pub(crate) fn loadavg() -> String {
    let s = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    s.split_whitespace().take(3).collect::<Vec<_>>().join(" ")
}

fn keys(paths: &[String], ids: &[String]) -> HashSet<Key> {
    paths.iter().flat_map(|p| ids.iter().map(move |id| (p.clone(), id.clone()))).collect()
}

fn paths(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("/{prefix}/{i}")).collect()
}

/// The raw loopback POST figures every run starts with, and the client
/// and body that measured them (later raw runs reuse both).
struct Baseline {
    client: reqwest::Client,
    body: Bytes,
    rate: f64,
    latency: Percentiles,
}

impl Baseline {
    /// Measure the raw POST rate and, at `rate`/s for at most 5 s, the raw
    /// POST latency; the rate goes into `report`.
    async fn measure(rx: &Receiver, rate: u32, latency_secs: u64, report: &mut Report) -> anyhow::Result<Self> {
        println!("(1) raw loopback POST baseline");
        let client = reqwest::Client::builder().pool_max_idle_per_host(RAW_CONCURRENCY).build()?;
        let body = Bytes::from(format!("{{\"pad\":\"{}\"}}", "x".repeat(1024 - 10)));
        let raw = raw_rate(rx, &client, body.clone()).await?;
        let mut lat = raw_latency(rx, &client, body.clone(), rate, latency_secs.min(5)).await;
        report.push(Row::new(format!("raw POST rate ({RAW_CONCURRENCY} concurrent, 1 KiB)"), raw, "/s"));
        Ok(Self { client, body, rate: raw, latency: percentiles(&mut lat) })
    }
}

/// Raw loopback POST rate of the receiver: 64 concurrent requests of 1 KiB
/// until 20,000 are done or 5 s have passed.
async fn raw_rate(rx: &Receiver, client: &reqwest::Client, body: Bytes) -> anyhow::Result<f64> {
    let next = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let mut workers = JoinSet::new();
    for _ in 0..RAW_CONCURRENCY {
        let (client, url, body, next) = (client.clone(), rx.url("raw/rate"), body.clone(), next.clone());
        workers.spawn(async move {
            let mut done = 0usize;
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if start.elapsed().as_secs_f64() > RAW_SECS {
                    return Ok::<_, anyhow::Error>(done);
                }
                let req = client.post(&url).header("webhook-id", format!("raw-{i}")).body(body.clone());
                req.send().await?.error_for_status()?;
                done += 1;
            }
        });
    }
    let mut done = 0;
    while let Some(n) = workers.join_next().await {
        done += n??;
    }
    Ok(done as f64 / start.elapsed().as_secs_f64())
}

/// Raw POST latency at a fixed rate: send instant to the receiver's arrival
/// instant, the same span the end-to-end latency measures.
async fn raw_latency(rx: &Receiver, client: &reqwest::Client, body: Bytes, rate: u32, secs: u64) -> Vec<Duration> {
    let from = rx.len();
    let mut tasks = JoinSet::new();
    let mut tick = tokio::time::interval(Duration::from_millis(10));
    let (start, mut sent) = (Instant::now(), 0usize);
    while start.elapsed() < Duration::from_secs(secs) {
        tick.tick().await;
        let due = ((start.elapsed().as_secs_f64() * f64::from(rate)) as usize).saturating_sub(sent);
        for i in sent..sent + due {
            let req = client.post(rx.url("raw/lat")).header("webhook-id", format!("lat-{i}")).body(body.clone());
            tasks.spawn(async move { (i, Instant::now(), req.send().await.map(|_| ())) });
        }
        sent += due;
    }
    let mut sent_at = Vec::with_capacity(sent);
    while let Some(Ok((i, t0, Ok(())))) = tasks.join_next().await {
        sent_at.push((format!("lat-{i}"), t0));
    }
    let ids: Vec<String> = sent_at.iter().map(|(id, _)| id.clone()).collect();
    let arr = rx.wait_for(&keys(&["/raw/lat".to_owned()], &ids), from, Duration::from_secs(10)).await;
    sent_at.into_iter().filter_map(|(id, t0)| arr.first.get(&("/raw/lat".to_owned(), id)).map(|at| *at - t0)).collect()
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Phase {
    Throughput,
    Latency,
    Isolation,
}

pub async fn run(mut args: Args, postgres: &str) -> anyhow::Result<Report> {
    if args.quick {
        args.events = args.events.min(2_000);
        args.latency_secs = args.latency_secs.min(5);
        args.isolation_events = args.isolation_events.min(1_000);
    }
    if args.only.is_empty() {
        args.only = vec![Phase::Throughput, Phase::Latency, Phase::Isolation];
    }
    let env: Vec<(String, String)> = args
        .env
        .iter()
        .map(|kv| kv.split_once('=').map(|(k, v)| (k.to_owned(), v.to_owned())).context("--env wants KEY=VALUE"))
        .collect::<anyhow::Result<_>>()?;
    let load_before = loadavg();
    let rx = Receiver::start().await?;
    println!("starting nats-server, Postgres database and hookline subscriptions|ingest|delivery ...");
    let stack = Stack::start(postgres, &env).await?;
    let subs = SubscriptionServiceClient::connect(stack.services[0].grpc_url.clone()).await?;
    let ingest = IngestServiceClient::connect(stack.services[1].grpc_url.clone()).await?;
    let mut b = Bench { stack, rx: rx.clone(), subs, ingest, event: producer_event(), notes: Vec::new() };
    let mut report = Report::new(
        "hookline-bench delivery",
        json!({"events": args.events, "rate": args.rate, "latency_secs": args.latency_secs,
               "isolation_events": args.isolation_events, "quick": args.quick, "env": args.env}),
    );

    // (1) Raw baselines.
    let Baseline { client, body, rate: _, latency: raw_lat } =
        Baseline::measure(&rx, args.rate, args.latency_secs, &mut report).await?;
    // Background CPU of the idle services.
    let cpu = b.cpu().await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    b.cpu_note("idle, no traffic", &cpu).await;

    if args.only.contains(&Phase::Throughput) {
        throughput_phase(&mut b, &mut report, &args, &client, &body).await?;
    }
    if args.only.contains(&Phase::Latency) {
        latency_phase(&mut b, &mut report, &args, &raw_lat).await?;
    }
    if args.only.contains(&Phase::Isolation) {
        isolation_phase(&mut b, &mut report, &args).await?;
    }

    // (4) Peak RSS of each process, at the end.
    for svc in &b.stack.services {
        let rss = peak_rss_mib(svc.pid())?;
        let row = Row::new(format!("peak RSS hookline {}", svc.role), rss, "MiB");
        report.push(if svc.role == "delivery" { row.target("< 150 MiB", rss < 150.0) } else { row });
    }
    for pid in b.stack.nats_pids() {
        let rss = peak_rss_mib(pid)?;
        report.push(Row::new("  peak RSS nats-server", rss, "MiB").target("< 256 MiB", rss < 256.0));
    }
    report.push(Row::new("duplicate deliveries (whole run)", rx.total_duplicates() as f64, ""));
    report.notes.append(&mut b.notes);
    report.notes.push(format!(
        "delivered body {} bytes (envelope layout), raw baseline body {} bytes; everything shares this machine",
        rx.last_body_len(),
        body.len()
    ));
    report.notes.push(format!("load average before: {load_before}; after: {}", loadavg()));
    b.stack.finish().await?;
    Ok(report)
}

/// Fan-out 1 runs this many times, each right after its own raw POST run.
const FAN1_RUNS: usize = 3;

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs[xs.len() / 2]
}

/// (2) Throughput, fan-out 1 and fan-out 10. Fan-out 1 is compared with the
/// raw POST rate as the median of [`FAN1_RUNS`] pairs, each raw run just
/// before its fan-out 1 run: the raw rate alone moves by a quarter between
/// runs on this machine, and the host's speed drifts within one.
async fn throughput_phase(
    b: &mut Bench,
    report: &mut Report,
    args: &Args,
    client: &reqwest::Client,
    body: &Bytes,
) -> anyhow::Result<()> {
    println!("(2) end-to-end throughput");
    let f1 = paths("fan1", 1);
    b.tenant("bench-fan1", &[b.rx.url("fan1/0")]).await?;
    b.warm_up("bench-fan1", &f1).await?;
    let (mut raws, mut fan1s, mut publish_rates) = (Vec::new(), Vec::new(), Vec::new());
    for i in 1..=FAN1_RUNS {
        let raw = raw_rate(&b.rx, client, body.clone()).await?;
        let fan1 = b.measured(&format!("fan-out 1 run {i}"), "bench-fan1", &f1, args.events).await?;
        let note = format!(
            "fan-out 1 run {i}: {:.0}/s beside raw {raw:.0}/s just before ({:.3})",
            fan1.rate(),
            fan1.rate() / raw
        );
        println!("  {note}");
        b.notes.push(note);
        raws.push(raw);
        fan1s.push(fan1.rate());
        publish_rates.push(fan1.events as f64 / fan1.publish_secs);
    }
    let (raw, fan1) = (median(raws), median(fan1s));
    let row = Row::new(format!("e2e deliveries/s, fan-out 1 (median of {FAN1_RUNS})"), fan1, "/s").vs(raw);
    report.push(row.target(">= 0.15 x raw", fan1 >= 0.15 * raw));
    report.push(Row::new("  ingest PublishBatch events/s, fan-out 1 runs (median)", median(publish_rates), "/s"));
    let f10 = paths("fan10", 10);
    let urls: Vec<String> = (0..10).map(|i| b.rx.url(&format!("fan10/{i}"))).collect();
    b.tenant("bench-fan10", &urls).await?;
    b.warm_up("bench-fan10", &f10).await?;
    let fan10 = b.measured("fan-out 10 run", "bench-fan10", &f10, args.events).await?;
    report.push(Row::new("e2e deliveries/s, fan-out 10", fan10.rate(), "/s").vs(raw));
    report.push(Row::new("  e2e events/s, fan-out 10", fan10.events as f64 / fan10.secs, "/s"));
    b.stack.check_alive()
}

/// (3) Latency publish -> receiver at a fixed rate, beside raw POST latency.
async fn latency_phase(b: &mut Bench, report: &mut Report, args: &Args, raw: &Percentiles) -> anyhow::Result<()> {
    println!("(3) end-to-end latency at {} events/s for {} s", args.rate, args.latency_secs);
    b.tenant("bench-lat", &[b.rx.url("lat/0")]).await?;
    b.warm_up("bench-lat", &paths("lat", 1)).await?;
    let cpu = b.cpu().await;
    let (mut lat, mut acks) = b.latency("bench-lat", "/lat/0", args.rate, args.latency_secs).await?;
    b.cpu_note("latency run", &cpu).await;
    let (n, lat, acks) = (lat.len(), percentiles(&mut lat), percentiles(&mut acks));
    println!("  {n} events; max {:.1} ms", lat.max);
    let at = format!("@ {}/s", args.rate);
    report.push(Row::new(format!("e2e latency p50 {at}"), lat.p50, "ms").beside(raw.p50));
    report.push(Row::new(format!("e2e latency p95 {at}"), lat.p95, "ms").beside(raw.p95));
    let p99 = Row::new(format!("e2e latency p99 {at}"), lat.p99, "ms").beside(raw.p99);
    report.push(p99.target("< 50 ms", lat.p99 < 50.0));
    report.push(Row::new("  Publish round trip p50 (ingest ack)", acks.p50, "ms"));
    report.push(Row::new("  Publish round trip p99 (ingest ack)", acks.p99, "ms"));
    report.notes.push(format!(
        "latency = Publish send instant -> receiver arrival, {n} events (max {:.0} ms); raw baseline: POST send -> \
         arrival at the same rate for {} s",
        lat.max,
        args.latency_secs.min(5)
    ));
    b.stack.check_alive()
}

/// Runs beside the black hole in the isolation phase, each between two
/// runs without it.
const ISO_RUNS: usize = 3;

/// (5) Isolation: healthy throughput beside a black-holed endpoint, against
/// the same run alone and beside a second healthy endpoint. Runs alone and
/// beside the hole alternate (alone first and last), each run beside the
/// hole is compared with the mean of the runs alone just before and just
/// after it, and the median of those ratios is the figure: each run leaves
/// 100,000 more rows and stream messages behind, and the host's speed
/// drifts by more than the hole costs, which a single pair would count for
/// or against the hole.
async fn isolation_phase(b: &mut Bench, report: &mut Report, args: &Args) -> anyhow::Result<()> {
    println!(
        "(5) isolation: {} events per run, {ISO_RUNS} runs with a black-holed endpoint between runs without",
        args.isolation_events
    );
    let (hole, hole_task) = black_hole().await?;
    let n = args.isolation_events;
    let (base, holed) = (paths("iso-base", 1), paths("iso-hole", 1));
    b.tenant("bench-iso-base", &[b.rx.url("iso-base/0")]).await?;
    b.warm_up("bench-iso-base", &base).await?;
    let mut alone = vec![b.measured("isolation run without 1", "bench-iso-base", &base, n).await?.rate()];
    b.tenant("bench-iso-hole", &[b.rx.url("iso-hole/0"), format!("http://{hole}/hole")]).await?;
    b.warm_up("bench-iso-hole", &holed).await?;
    // (rate beside the hole, mean of the runs alone around it)
    let mut pairs = Vec::new();
    for i in 1..=ISO_RUNS {
        let beside = b.measured(&format!("isolation run {i} with black hole"), "bench-iso-hole", &holed, n).await?;
        // The hole stays, stuck with its tasks parked, but gets no new events.
        let after = b.measured(&format!("isolation run without {}", i + 1), "bench-iso-base", &base, n).await?;
        let around = (alone[i - 1] + after.rate()) / 2.0;
        alone.push(after.rate());
        let note = format!(
            "isolation run {i}: {:.0}/s beside the hole, {:.0}/s and {:.0}/s without it before and after ({:.3})",
            beside.rate(),
            alone[i - 1],
            alone[i],
            beside.rate() / around
        );
        println!("  {note}");
        b.notes.push(note);
        pairs.push((beside.rate(), around));
    }
    b.tenant("bench-iso-two", &[b.rx.url("iso-two/0"), b.rx.url("iso-two/1")]).await?;
    b.warm_up("bench-iso-two", &paths("iso-two", 2)).await?;
    let two = b.throughput("bench-iso-two", &paths("iso-two", 1), n).await?;
    hole_task.abort();
    pairs.sort_by(|x, y| (x.0 / x.1).total_cmp(&(y.0 / y.1)));
    let (beside, around) = pairs[pairs.len() / 2];
    let figure = format!("isolation: healthy deliveries/s beside a black hole (median of {ISO_RUNS})");
    report.push(Row::new(figure, beside, "/s").vs(around).target(">= 0.9 x without", beside / around >= 0.9));
    let last = (alone[ISO_RUNS] + alone[ISO_RUNS - 1]) / 2.0;
    report.push(Row::new("  control: beside a second healthy endpoint", two.rate(), "/s").vs(last));
    b.stack.check_alive()
}
