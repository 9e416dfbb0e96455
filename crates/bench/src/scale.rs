//! `hookline-bench scale`: many tenants and endpoints, slow and misbehaving
//! receivers, an endpoint that recovers from an outage, and restarts with
//! the whole configuration present; against real processes, each figure
//! beside a baseline measured in the same run.
//!
//! Phases (BENCHMARKS.md has what each measures and why):
//! - setup: the tenants and endpoints, created through gRPC concurrently;
//! - slow: every receiver answers after 100 ms, beside a raw client that
//!   keeps as many requests waiting on the same receiver;
//! - neighbours: the same paced load without, then with, the failing,
//!   black-holed and throttled endpoints;
//! - recovery: one endpoint down while its events pile up, then back,
//!   beside a raw client that keeps its cap of requests waiting on a path
//!   answering after the same latency;
//! - backlog: the slow phase's load without, then beside, a million
//!   retries waiting in the retry store (HOOKLINE_RETRY) hours ahead;
//! - startup: each service restarted with everything present.

mod backlog;
mod model;
mod probe;
mod receiver;

use std::{
    collections::HashMap,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use futures_util::{StreamExt, TryStreamExt, stream};
use hookline_proto::{
    ingest::v1::{PublishBatchRequest, PublishRequest, ingest_service_client::IngestServiceClient, publish_request},
    subscriptions::v1::{
        CreateEndpointRequest, CreateTenantRequest, Plan, UpdateEndpointRequest,
        subscription_service_client::SubscriptionServiceClient,
    },
};
use serde_json::{Value, json};
use tokio::task::JoinSet;
use tonic::transport::Channel;

use self::{
    model::{Kind, Model, Picker},
    probe::{Appended, Cpu, GoProfiler, Proc, Sampler},
    receiver::{Latency, RAW, Receivers},
};
use crate::{
    delivery::{loadavg, metric_sum},
    receiver::black_hole,
    report::{Report, Row, percentiles},
    stack::Stack,
};

#[derive(clap::Args)]
pub struct Args {
    /// Tenants, a quarter on each plan.
    #[arg(long, default_value_t = 10_000)]
    tenants: usize,
    /// Endpoints, dealt out over the tenants within their plans' limits.
    #[arg(long, default_value_t = 30_000)]
    endpoints: usize,
    /// Length of each measured run.
    #[arg(long, default_value_t = 60)]
    secs: u64,
    /// Deliveries per second to healthy endpoints the publisher aims at
    /// (events/s = this / the mean fan-out to healthy endpoints).
    #[arg(long, default_value_t = 6_000)]
    rate: u32,
    /// Requests the raw baseline client keeps waiting on the slow receiver.
    #[arg(long, default_value_t = 600)]
    raw_concurrency: usize,
    /// Healthy receivers' answer time in the neighbours phase (the slow
    /// phase always uses `fixed`).
    #[arg(long, value_enum, default_value_t = Latency::Fixed)]
    latency: Latency,
    /// How events are spread over tenants.
    #[arg(long, value_enum, default_value_t = Skew::Uniform)]
    skew: Skew,
    /// Exponent of the Zipf skew.
    #[arg(long, default_value_t = 1.0)]
    zipf_s: f64,
    /// Events that pile up for the endpoint that is down in the recovery phase.
    #[arg(long, default_value_t = 180_000)]
    recovery_events: usize,
    /// Rate those events are published at while it is down (events/s).
    #[arg(long, default_value_t = 3_000)]
    recovery_rate: u32,
    /// The recovering endpoint's answer time once it is back (ms).
    #[arg(long, default_value_t = 10)]
    recovery_latency_ms: u64,
    /// Deliveries/s to the other endpoints during the recovery phase.
    #[arg(long, default_value_t = 2_000)]
    recovery_base_rate: u32,
    /// gRPC calls in flight while creating tenants and endpoints.
    #[arg(long, default_value_t = 64)]
    setup_concurrency: usize,
    /// Retries the backlog phase stores as waiting (a failing endpoint's
    /// next attempt, due hours ahead).
    #[arg(long, default_value_t = 1_000_000)]
    backlog_retries: usize,
    /// Seconds the backlog phase waits at its end before it reads
    /// nats-server's RSS once more: past HOOKLINE_RETRY's duplicate window
    /// (counted from the seeding), the message ids it holds are gone.
    #[arg(long, default_value_t = 0)]
    backlog_hold: u64,
    /// Seconds the backlog phase waits between storing the retries and the
    /// run beside them, so that what the store does after the burst is
    /// measured apart from what the waiting retries cost.
    #[arg(long, default_value_t = 0)]
    backlog_pause: u64,
    /// How the backlog phase stores its retries: as this build's workers do
    /// (`ref`: one subject per due second, a reference to the event, no
    /// message id), or as versions before it did (`whole`: one subject per
    /// second, tenant and endpoint, the whole task, a message id).
    #[arg(long, value_enum, default_value_t = BacklogLayout::Ref)]
    backlog_layout: BacklogLayout,
    /// Run only these phases (repeatable); setup always runs.
    #[arg(long, value_enum)]
    only: Vec<Phase>,
    /// Extra environment for the services, e.g. `--env delivery:HOOKLINE_DELIVERY_CONCURRENCY=512`.
    #[arg(long = "env", value_name = "KEY=VALUE")]
    env: Vec<String>,
    /// Smoke run (under 2 minutes): 200 tenants, 600 endpoints, 10 s runs,
    /// 1,000 deliveries/s, 2,000 recovery events, 20,000 waiting retries.
    #[arg(long)]
    quick: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Skew {
    Uniform,
    Zipf,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Phase {
    Slow,
    Neighbours,
    Recovery,
    Backlog,
    Startup,
}

/// The 12 example events (examples/events), without their idempotency keys.
fn producer_events() -> Vec<String> {
    let texts = [
        include_str!("../../../examples/events/appointment.booking.created.json"),
        include_str!("../../../examples/events/appointment.booking.cancelled.json"),
        include_str!("../../../examples/events/appointment.updated.json"),
        include_str!("../../../examples/events/appointment.manual.booking.created.json"),
        include_str!("../../../examples/events/appointment.booking.rebooked.json"),
        include_str!("../../../examples/events/event.booking.created.json"),
        include_str!("../../../examples/events/event.booking.cancelled.json"),
        include_str!("../../../examples/events/event.manual.booking.created.json"),
        include_str!("../../../examples/events/event.booking.rebooked.json"),
        include_str!("../../../examples/events/customer.created.json"),
        include_str!("../../../examples/events/customer.updated.json"),
        include_str!("../../../examples/events/customer.deleted.json"),
    ];
    texts
        .iter()
        .map(|t| {
            let mut v: Value = serde_json::from_str(t).expect("example event is JSON");
            v.as_object_mut().expect("object").remove("idempotency_key");
            v.to_string()
        })
        .collect()
}

/// Who a paced publisher publishes for.
#[derive(Clone)]
enum Audience {
    /// Tenants of the model, drawn by the picker.
    Population(Arc<Picker>),
    /// One tenant.
    One(String),
}

/// Counters read before and after a catch-up (see [`Scale::drain_counts`]).
#[derive(Debug, Clone, Copy)]
struct DrainCounts {
    api: f64,
    dispatch: f64,
    unparked: f64,
    batch_reads: f64,
    single_reads: f64,
    busy: f64,
    parked_again: f64,
}

impl DrainCounts {
    fn since(&self, before: &DrainCounts) -> DrainCounts {
        DrainCounts {
            api: self.api - before.api,
            dispatch: self.dispatch - before.dispatch,
            unparked: self.unparked - before.unparked,
            batch_reads: self.batch_reads - before.batch_reads,
            single_reads: self.single_reads - before.single_reads,
            busy: self.busy - before.busy,
            parked_again: self.parked_again - before.parked_again,
        }
    }
}

/// `(event id, send instant)` of every event published.
type Sent = Vec<(String, Instant)>;

struct Scale {
    stack: Stack,
    rx: Receivers,
    model: Arc<Model>,
    /// Endpoint ids, by model index.
    ids: Vec<String>,
    recovery_id: String,
    subs: SubscriptionServiceClient<Channel>,
    ingest: IngestServiceClient<Channel>,
    events: Arc<Vec<String>>,
    picker: Arc<Picker>,
    sampler: Sampler,
    nats: async_nats::Client,
    db: sqlx::PgPool,
    report: Report,
    notes: Vec<String>,
    args: Args,
}

/// Publish for `audience` at `rate` events/s, paced in 10 ms steps, in
/// batches of up to 500 with at most 32 in flight, until `stop` is set or
/// `limit` events are out.
async fn paced(
    ingest: IngestServiceClient<Channel>,
    events: Arc<Vec<String>>,
    model: Arc<Model>,
    audience: Audience,
    rate: f64,
    limit: usize,
    stop: Arc<AtomicBool>,
) -> anyhow::Result<Sent> {
    let slots = Arc::new(tokio::sync::Semaphore::new(32));
    let mut tasks = JoinSet::new();
    let mut tick = tokio::time::interval(Duration::from_millis(10));
    let (start, mut sent) = (Instant::now(), 0usize);
    while !stop.load(Ordering::Relaxed) && sent < limit {
        tick.tick().await;
        let due = ((start.elapsed().as_secs_f64() * rate) as usize).min(limit).saturating_sub(sent);
        let mut left = due;
        while left > 0 {
            let n = left.min(500);
            left -= n;
            let batch: Vec<PublishRequest> = (0..n)
                .map(|_| {
                    let tenant = match &audience {
                        Audience::Population(p) => model.tenants[p.pick(model.tenants.len())].name.clone(),
                        Audience::One(t) => t.clone(),
                    };
                    let ty = rand::random::<u32>() as usize % events.len();
                    PublishRequest {
                        tenant_id: tenant,
                        payload: Some(publish_request::Payload::Json(events[ty].clone())),
                        ..Default::default()
                    }
                })
                .collect();
            let permit = slots.clone().acquire_owned().await?;
            let mut client = ingest.clone();
            tasks.spawn(async move {
                let t0 = Instant::now();
                let res = client.publish_batch(PublishBatchRequest { events: batch }).await;
                drop(permit);
                res.map(|r| (t0, r.into_inner().results))
            });
        }
        sent += due;
    }
    let mut out = Vec::with_capacity(sent);
    while let Some(done) = tasks.join_next().await {
        let (t0, results) = done?.context("PublishBatch")?;
        out.extend(results.into_iter().map(|r| (r.event_id, t0)));
    }
    Ok(out)
}

/// What arrived at healthy endpoints for one run.
struct Arrived {
    deliveries: usize,
    /// Deliveries/s between `warm` after the start and the end of publishing.
    rate: f64,
    /// Publish → arrival, and publish → the receiver's answer, of events
    /// published in that window; the receivers' own answer times.
    receipt: Vec<Duration>,
    answered: Vec<Duration>,
    own: Vec<Duration>,
}

impl Scale {
    fn procs(&self) -> Vec<Proc> {
        self.sampler.procs.clone()
    }

    /// Publish for `audience` at `deliveries_per_sec` (to healthy endpoints)
    /// for `secs`.
    fn publisher(
        &self,
        audience: Audience,
        events_per_sec: f64,
        limit: usize,
        stop: Arc<AtomicBool>,
    ) -> tokio::task::JoinHandle<anyhow::Result<Sent>> {
        tokio::spawn(paced(
            self.ingest.clone(),
            self.events.clone(),
            self.model.clone(),
            audience,
            events_per_sec,
            limit,
            stop,
        ))
    }

    /// Events/s that make `deliveries` per second to healthy endpoints.
    fn event_rate(&self, deliveries: f64) -> f64 {
        deliveries / self.model.mean_fan_out(&self.picker, |k| k == Kind::Healthy).max(0.01)
    }

    /// Wait until no healthy delivery has arrived for 3 s (or `timeout`).
    async fn drain(&self, timeout: Duration) {
        let started = Instant::now();
        let (mut last, mut quiet) = (self.rx.hits(), Instant::now());
        while started.elapsed() < timeout && quiet.elapsed() < Duration::from_secs(3) {
            tokio::time::sleep(Duration::from_millis(250)).await;
            let now = self.rx.hits();
            if now != last {
                (last, quiet) = (now, Instant::now());
            }
        }
    }

    /// The healthy endpoints' arrivals from hit `from` on: those in
    /// `[start + warm, end]` for the rate, and the latency of events in
    /// `sent` published in that window.
    fn arrived(&self, from: usize, sent: &Sent, start: Instant, end: Instant, keep: impl Fn(u32) -> bool) -> Arrived {
        let warm = Duration::from_secs((end - start).as_secs() / 6).min(Duration::from_secs(10));
        let window = (start + warm, end);
        let at: HashMap<&str, Instant> = sent
            .iter()
            .filter(|(_, t0)| *t0 >= window.0 && *t0 <= window.1)
            .map(|(id, t0)| (id.as_str(), *t0))
            .collect();
        self.rx.with_hits(from, |hits| {
            let mut a =
                Arrived { deliveries: 0, rate: 0.0, receipt: Vec::new(), answered: Vec::new(), own: Vec::new() };
            let mut in_window = 0usize;
            for h in hits.iter().filter(|h| h.ep != RAW && keep(h.ep)) {
                a.deliveries += 1;
                if h.at >= window.0 && h.at <= window.1 {
                    in_window += 1;
                }
                if let Some(t0) = at.get(&*h.id) {
                    let receipt = h.at.saturating_duration_since(*t0);
                    a.receipt.push(receipt);
                    a.answered.push(receipt + h.delay);
                    a.own.push(h.delay);
                }
            }
            a.rate = in_window as f64 / (window.1 - window.0).as_secs_f64().max(1e-3);
            a
        })
    }

    /// Whether an endpoint index is one of the model's healthy endpoints.
    fn healthy(&self) -> impl Fn(u32) -> bool + use<> {
        let model = self.model.clone();
        move |ep| model.endpoints.get(ep as usize).is_some_and(|e| e.kind == Kind::Healthy)
    }

    /// The rows every phase reports: processes' RSS (sampled max, and
    /// `VmHWM`), receiver in flight, JetStream sizes, database size.
    async fn resources(&mut self, phase: &str, from: Instant, to: Instant) -> anyhow::Result<()> {
        let procs = self.procs();
        for (i, p) in procs.iter().enumerate() {
            let rss = self.sampler.rss(i, from, to);
            let hwm = crate::stack::peak_rss_mib(p.pid).unwrap_or(0.0);
            let row = Row::new(format!("{phase}: RSS {} (max sampled; mean {:.0})", p.label, rss.mean), rss.max, "MiB");
            let row = row.beside(hwm);
            self.report.push(if p.label == "delivery" { row.target("< 200 MiB", rss.max < 200.0) } else { row });
        }
        // With GOMEMLIMIT above its live heap, Go collects as garbage
        // doubles the heap; at or under it, the collector runs back to back
        // and takes nats-server's CPU from the deliveries (README.md,
        // "Memory of nats-server").
        if let Some(live) = self.sampler.nats_live_heap().await {
            let limit = self.stack.nats_gomemlimit.as_deref().unwrap_or("unset");
            let row = Row::new(
                format!("{phase}: nats-server live heap after a forced collection (GOMEMLIMIT {limit})"),
                live,
                "MiB",
            );
            self.report.push(row);
            if let Some(rate) = self.sampler.collections_per_sec(from, to) {
                let row = Row::new(format!("{phase}: nats-server Go collections a second"), rate, "per s");
                self.report.push(row);
            }
        }
        let (streams, consumers) = probe::jetstream(&self.nats).await?;
        let mut parts = Vec::new();
        for s in &streams {
            parts.push(format!("{} {:.0} msgs {:.1} MiB", s.name, s.a, s.b / 1048576.0));
        }
        for c in &consumers {
            parts.push(format!("{} ack pending {:.0} pending {:.0}", c.name, c.a, c.b));
        }
        let note = format!("{phase}: streams and consumers at the end: {}", parts.join("; "));
        println!("  {note}");
        self.notes.push(note);
        for c in consumers.iter().filter(|c| c.name.ends_with("/workers") || c.name.ends_with("/fanout")) {
            self.report.push(Row::new(format!("{phase}: {} num_ack_pending", c.name), c.a, ""));
        }
        Ok(())
    }

    /// Database size now, and delivery's attempts so far (from `/metrics`).
    async fn db_and_attempts(&self) -> anyhow::Result<(f64, f64)> {
        let size = probe::database_mib(&self.db).await?;
        let text = self.delivery_metrics().await?;
        Ok((size, metric_sum(&text, "hookline_delivery_attempt_duration_seconds_count")))
    }

    /// Wait (up to 3 minutes) until delivery's projector has written every
    /// outcome to Postgres.
    async fn settle(&self) {
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(180) {
            if self.projector_lag().await.is_ok_and(|lag| lag == 0.0) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// Outcomes delivery's projector has still to write to Postgres.
    async fn projector_lag(&self) -> anyhow::Result<f64> {
        Ok(metric_sum(&self.delivery_metrics().await?, "hookline_projector_lag"))
    }

    /// Delivery's `/metrics` text now.
    async fn delivery_metrics(&self) -> anyhow::Result<String> {
        let delivery = self.stack.services.iter().find(|s| s.role == "delivery").context("no delivery")?;
        Ok(reqwest::get(format!("{}/metrics", delivery.http_url)).await?.text().await?)
    }

    /// JetStream API requests so far (the account's count), messages
    /// stored in HOOKLINE_DISPATCH, and delivery's parking counters.
    async fn drain_counts(&self) -> anyhow::Result<DrainCounts> {
        let api = probe::api_requests(&self.nats).await?;
        let dispatch = probe::ask(&self.nats, "$JS.API.STREAM.INFO.HOOKLINE_DISPATCH").await?;
        let text = self.delivery_metrics().await?;
        let deferred =
            |reason: &str| metric_sum(&text, &format!("hookline_delivery_deferrals_total{{reason=\"{reason}\"}}"));
        Ok(DrainCounts {
            api,
            dispatch: dispatch["state"]["last_seq"].as_f64().unwrap_or(f64::NAN),
            unparked: metric_sum(&text, "hookline_delivery_unparked_total"),
            batch_reads: metric_sum(&text, "hookline_delivery_parked_event_reads_total{how=\"batch\"}"),
            single_reads: metric_sum(&text, "hookline_delivery_parked_event_reads_total{how=\"single\"}"),
            // The workers hand a task back busy; a drain hands back one its
            // slots did not take (or found blocked) to the workers.
            busy: deferred("endpoint_busy") + metric_sum(&text, "hookline_delivery_drained_total{how=\"handed_back\"}"),
            parked_again: deferred("endpoint_stuck") + deferred("breaker_open"),
        })
    }

    async fn set_enabled(&mut self, kinds: &[Kind], enabled: bool) -> anyhow::Result<usize> {
        let targets: Vec<(String, String)> = self
            .model
            .endpoints
            .iter()
            .zip(&self.ids)
            .filter(|(e, _)| kinds.contains(&e.kind))
            .map(|(e, id)| (self.model.tenants[e.tenant as usize].name.clone(), id.clone()))
            .collect();
        let n = targets.len();
        let subs = self.subs.clone();
        stream::iter(targets)
            .map(|(tenant_id, endpoint_id)| {
                let mut subs = subs.clone();
                async move {
                    let req =
                        UpdateEndpointRequest { tenant_id, endpoint_id, enabled: Some(enabled), ..Default::default() };
                    subs.update_endpoint(req).await.context("UpdateEndpoint")
                }
            })
            .buffer_unordered(self.args.setup_concurrency)
            .try_for_each(|_| async { Ok(()) })
            .await?;
        Ok(n)
    }
}

pub async fn run(mut args: Args, postgres: &str) -> anyhow::Result<Report> {
    if args.quick {
        args.tenants = args.tenants.min(200);
        args.endpoints = args.endpoints.min(600);
        args.secs = args.secs.min(10);
        args.rate = args.rate.min(1_000);
        args.raw_concurrency = args.raw_concurrency.min(100);
        args.recovery_events = args.recovery_events.min(2_000);
        args.recovery_rate = args.recovery_rate.min(1_000);
        args.recovery_base_rate = args.recovery_base_rate.min(500);
        args.backlog_retries = args.backlog_retries.min(20_000);
    }
    if args.only.is_empty() {
        args.only = vec![Phase::Slow, Phase::Neighbours, Phase::Recovery, Phase::Backlog, Phase::Startup];
    }
    let env: Vec<(String, String)> = args
        .env
        .iter()
        .map(|kv| kv.split_once('=').map(|(k, v)| (k.to_owned(), v.to_owned())).context("--env wants KEY=VALUE"))
        .collect::<anyhow::Result<_>>()?;
    let model = Arc::new(Model::new(args.tenants, args.endpoints)?);
    let load_before = loadavg();
    let kinds: Vec<Kind> = model.endpoints.iter().map(|e| e.kind).collect();
    let recovery = model.endpoints.len() as u32;
    let rx = Receivers::start(kinds, Latency::Fixed, recovery, Duration::from_millis(args.recovery_latency_ms)).await?;
    let (hole, hole_task) = black_hole().await?;
    println!("starting nats-server, Postgres database and hookline subscriptions|ingest|delivery ...");
    let stack = Stack::start_with_nats_limit(postgres, &env, crate::stack::NATS_GOMEMLIMIT_AT_SCALE).await?;
    let initial_ready: Vec<(&'static str, Duration)> = stack.services.iter().map(|s| (s.role, s.ready_after)).collect();
    let subs = SubscriptionServiceClient::connect(stack.services[0].grpc_url.clone()).await?;
    let ingest = IngestServiceClient::connect(stack.services[1].grpc_url.clone()).await?;
    let mut procs: Vec<Proc> = stack.services.iter().map(|s| Proc { label: s.role.to_owned(), pid: s.pid() }).collect();
    procs.extend(stack.nats_pids().into_iter().map(|pid| Proc { label: "nats-server".into(), pid }));
    let profiler = stack.nats_profile_url.clone().map(|url| GoProfiler { url });
    let sampler = Sampler::start(rx.clone(), procs, profiler);
    let nats = async_nats::connect(&stack.nats_url).await?;
    let db = sqlx::PgPool::connect(stack.database_url().context("no database")?).await?;
    let picker = Arc::new(match args.skew {
        Skew::Uniform => Picker::Uniform,
        Skew::Zipf => Picker::zipf(args.tenants, args.zipf_s),
    });
    let report = Report::new(
        "hookline-bench scale",
        json!({"tenants": args.tenants, "endpoints": args.endpoints, "secs": args.secs, "rate": args.rate,
               "latency": format!("{:?}", args.latency), "skew": format!("{:?}", args.skew),
               "recovery_events": args.recovery_events, "backlog_retries": args.backlog_retries,
               "backlog_pause": args.backlog_pause, "backlog_layout": format!("{:?}", args.backlog_layout),
               "quick": args.quick, "env": args.env}),
    );
    let mut s = Scale {
        stack,
        rx,
        model,
        ids: Vec::new(),
        recovery_id: String::new(),
        subs,
        ingest,
        events: Arc::new(producer_events()),
        picker,
        sampler,
        nats,
        db,
        report,
        notes: Vec::new(),
        args,
    };
    setup(&mut s, &hole.to_string()).await?;
    let (db_empty, attempts_before) = s.db_and_attempts().await?;
    if s.args.only.contains(&Phase::Slow) {
        let result = slow_phase(&mut s).await;
        failed(&mut s, "slow", result);
    }
    if s.args.only.contains(&Phase::Neighbours) {
        let result = neighbours_phase(&mut s).await;
        failed(&mut s, "neighbours", result);
    }
    if s.args.only.contains(&Phase::Recovery) {
        let result = recovery_phase(&mut s).await;
        failed(&mut s, "recovery", result);
    }
    if s.args.only.contains(&Phase::Backlog) {
        let result = backlog::phase(&mut s).await;
        failed(&mut s, "backlog", result);
    }
    s.settle().await;
    let (db_now, attempts) = s.db_and_attempts().await?;
    let attempts = attempts - attempts_before;
    if attempts > 0.0 {
        let per_million = (db_now - db_empty) / attempts * 1e6;
        let row =
            Row::new(format!("Postgres growth per million attempts ({attempts:.0} attempts)"), per_million, "MiB");
        s.report.push(row.beside(db_empty));
        s.notes.push(format!(
            "database {db_empty:.1} MiB after setup (the baseline column), {db_now:.1} MiB at the end; \
             attempts counted by delivery's /metrics, every outcome projected before measuring"
        ));
    }
    if s.args.only.contains(&Phase::Startup) {
        let result = startup_phase(&mut s, &initial_ready).await;
        failed(&mut s, "startup", result);
    }
    hole_task.abort();
    let (failed, throttled, refused) = s.rx.refusals();
    s.notes.push(format!("receiver answered 500 {failed} times, 429 {throttled} times, 503 {refused} times"));
    s.notes.push(format!("load average before: {load_before}; after: {}", loadavg()));
    let Scale { stack, mut report, mut notes, .. } = s;
    report.notes.append(&mut notes);
    stack.finish().await?;
    Ok(report)
}

/// A phase that failed is reported as such, and the run goes on to the
/// next: the figures of the others still count.
fn failed(s: &mut Scale, phase: &str, result: anyhow::Result<()>) {
    if let Err(e) = result {
        let note = format!("{phase} phase FAILED: {e:#}");
        println!("  {note}");
        s.notes.push(note);
    }
}

/// Create every tenant and endpoint through gRPC, `--setup-concurrency`
/// tenants at a time, and time it; the misbehaving endpoints start disabled.
// `..Default::default()` keeps this compiling when the proto grows fields.
#[allow(clippy::needless_update)]
async fn setup(s: &mut Scale, hole: &str) -> anyhow::Result<()> {
    let (tenants, endpoints) = (s.model.tenants.len(), s.model.endpoints.len());
    println!("(1) setup: {tenants} tenants, {endpoints} endpoints through gRPC");
    let start = Instant::now();
    let (model, rx, subs) = (s.model.clone(), s.rx.clone(), s.subs.clone());
    let created: Vec<Vec<(u32, String)>> = stream::iter(0..tenants)
        .map(|t| {
            let (model, rx, mut subs) = (model.clone(), rx.clone(), subs.clone());
            let hole = hole.to_owned();
            async move {
                let tenant = &model.tenants[t];
                let req = CreateTenantRequest {
                    tenant_id: tenant.name.clone(),
                    plan: tenant.plan as i32,
                    webhooks_enabled: true,
                    ..Default::default()
                };
                subs.create_tenant(req).await.with_context(|| format!("CreateTenant {}", tenant.name))?;
                let mut ids = Vec::with_capacity(tenant.endpoints.len());
                for &e in &tenant.endpoints {
                    let ep = &model.endpoints[e as usize];
                    let url = match ep.kind {
                        Kind::BlackHole => format!("http://{hole}/e/{e}"),
                        _ => rx.url(e),
                    };
                    let req = CreateEndpointRequest {
                        tenant_id: tenant.name.clone(),
                        url,
                        event_types: ep.type_names(),
                        disabled: ep.kind != Kind::Healthy,
                        ..Default::default()
                    };
                    let created = subs.create_endpoint(req).await.with_context(|| format!("CreateEndpoint {e}"))?;
                    ids.push((e, created.into_inner().id));
                }
                Ok::<_, anyhow::Error>(ids)
            }
        })
        .buffer_unordered(s.args.setup_concurrency)
        .try_collect()
        .await?;
    let secs = start.elapsed().as_secs_f64();
    let mut ids = vec![String::new(); endpoints];
    for (e, id) in created.into_iter().flatten() {
        ids[e as usize] = id;
    }
    s.ids = ids;
    let req = CreateTenantRequest {
        tenant_id: "scale-recovery".into(),
        plan: Plan::Enterprise as i32,
        webhooks_enabled: true,
        ..Default::default()
    };
    s.subs.create_tenant(req).await.context("CreateTenant scale-recovery")?;
    let url = s.rx.url(s.model.endpoints.len() as u32);
    let req = CreateEndpointRequest { tenant_id: "scale-recovery".into(), url, ..Default::default() };
    s.recovery_id = s.subs.create_endpoint(req).await.context("CreateEndpoint recovery")?.into_inner().id;
    let calls = (tenants + endpoints) as f64;
    println!("  {calls:.0} calls in {secs:.1} s ({:.0}/s)", calls / secs);
    s.report.push(Row::new(format!("setup: {tenants} tenants + {endpoints} endpoints created"), secs, "s"));
    s.report.push(Row::new("  setup: CreateTenant/CreateEndpoint calls per second", calls / secs, "/s"));
    // Ingest knows the last tenant once a publish for it is accepted.
    let last = s.model.tenants[tenants - 1].name.clone();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let req = PublishBatchRequest {
            events: vec![PublishRequest {
                tenant_id: last.clone(),
                payload: Some(publish_request::Payload::Json(s.events[0].clone())),
                ..Default::default()
            }],
        };
        match s.ingest.publish_batch(req).await {
            Ok(_) => break,
            Err(_) if Instant::now() < deadline => tokio::time::sleep(Duration::from_millis(100)).await,
            Err(e) => bail!("ingest never accepted an event for {last}: {e}"),
        }
    }
    s.drain(Duration::from_secs(10)).await;
    let healthy = s.model.endpoints.iter().filter(|e| e.kind == Kind::Healthy).count();
    s.notes.push(format!(
        "setup: {healthy} healthy endpoints; mean fan-out to healthy endpoints {:.2} per event ({:?} spread over tenants)",
        s.model.mean_fan_out(&s.picker, |k| k == Kind::Healthy),
        s.args.skew
    ));
    s.stack.check_alive()
}

/// How long a raw baseline runs: a third of a measured run, 5 to 20 s.
fn raw_secs(secs: u64) -> f64 {
    (secs as f64 / 3.0).clamp(5.0, 20.0)
}

/// A raw baseline: `n` requests kept waiting on one of the receiver's raw
/// paths (`url`) for `secs`; the rate.
async fn raw_client(url: String, n: usize, secs: f64) -> anyhow::Result<f64> {
    let client = reqwest::Client::builder().pool_max_idle_per_host(n).build()?;
    let body = bytes::Bytes::from(producer_events()[0].clone());
    let start = Instant::now();
    let mut workers = JoinSet::new();
    for w in 0..n {
        let (client, url, body) = (client.clone(), url.clone(), body.clone());
        workers.spawn(async move {
            let mut done = 0usize;
            while start.elapsed().as_secs_f64() < secs {
                let req = client.post(&url).header("webhook-id", format!("raw-{w}-{done}")).body(body.clone());
                req.send().await?.error_for_status()?;
                done += 1;
            }
            Ok::<_, anyhow::Error>(done)
        });
    }
    let mut done = 0;
    while let Some(n) = workers.join_next().await {
        done += n??;
    }
    Ok(done as f64 / start.elapsed().as_secs_f64())
}

/// One paced run for the population at `deliveries` per second for `secs`,
/// drained afterwards; what arrived at endpoints `keep` admits.
async fn population_run(
    s: &Scale,
    deliveries: f64,
    keep: impl Fn(u32) -> bool,
) -> anyhow::Result<(Arrived, Instant, Instant, Sent)> {
    let from = s.rx.hits();
    let secs = s.args.secs;
    let rate = s.event_rate(deliveries);
    let stop = Arc::new(AtomicBool::new(false));
    let start = Instant::now();
    let publisher = s.publisher(Audience::Population(s.picker.clone()), rate, usize::MAX, stop.clone());
    tokio::time::sleep(Duration::from_secs(secs)).await;
    stop.store(true, Ordering::Relaxed);
    let sent = publisher.await??;
    let end = Instant::now();
    s.drain(Duration::from_secs(2 * secs).min(Duration::from_secs(60))).await;
    let a = s.arrived(from, &sent, start, end, keep);
    println!(
        "  {} events at {rate:.0}/s; {} deliveries, {:.0}/s while publishing (after warm-up)",
        sent.len(),
        a.deliveries,
        a.rate
    );
    Ok((a, start, end, sent))
}

/// (2) Every receiver answers after 100 ms: deliveries/s and requests in
/// flight beside a raw client keeping `--raw-concurrency` requests waiting.
async fn slow_phase(s: &mut Scale) -> anyhow::Result<()> {
    let secs = s.args.secs;
    println!("(2) slow receivers: every answer after 100 ms, {secs} s at {} deliveries/s", s.args.rate);
    s.rx.set_latency(Latency::Fixed);
    let (t0, n) = (Instant::now(), s.args.raw_concurrency);
    let raw = raw_client(s.rx.raw_url(), n, raw_secs(secs)).await?;
    let raw_in_flight = s.sampler.in_flight(t0 + Duration::from_secs(1), Instant::now());
    println!("  raw client, {n} concurrent: {raw:.0}/s, in flight mean {:.0}", raw_in_flight.mean);
    let procs = s.procs();
    let delivery = procs.iter().position(|p| p.label == "delivery").context("no delivery")?;
    let idle_rss = crate::stack::rss_mib(procs[delivery].pid).unwrap_or(0.0);
    let cpu = Cpu::now(&procs);
    let keep = s.healthy();
    let (a, start, end, _) = population_run(s, f64::from(s.args.rate), keep).await?;
    let note = format!("slow: {}", cpu.since(&procs));
    println!("  {note}");
    s.notes.push(note);
    let warm = Duration::from_secs(secs / 6).min(Duration::from_secs(10));
    let inflight = s.sampler.in_flight(start + warm, end);
    let row = Row::new(format!("slow: deliveries/s, 100 ms receivers (raw: {n} concurrent)"), a.rate, "/s").vs(raw);
    s.report.push(row.target(">= 5000 /s", a.rate >= 5000.0));
    let row = Row::new(
        format!("slow: requests in flight at the receiver, mean (max {:.0})", inflight.max),
        inflight.mean,
        "",
    );
    s.report.push(row.beside(raw_in_flight.mean).target(">= 500", inflight.mean >= 500.0));
    // What a request in flight costs delivery: its RSS above idle, per request waiting.
    let busy_rss = s.sampler.rss(delivery, start + warm, end).mean;
    let per_request = (busy_rss - idle_rss) * 1024.0 / inflight.mean.max(1.0);
    let row = Row::new("slow: delivery RSS above idle per request in flight (KiB; beside: idle MiB)", per_request, "");
    s.report.push(row.beside(idle_rss));
    let (receipt, own) = (percentiles(&mut a.receipt.clone()), percentiles(&mut a.own.clone()));
    let answered = percentiles(&mut a.answered.clone());
    s.report.push(Row::new("slow: publish -> receipt p50", receipt.p50, "ms"));
    s.report.push(Row::new("slow: publish -> receipt p99", receipt.p99, "ms"));
    s.report.push(
        Row::new("slow: publish -> answered p99 (beside: receivers' own p99)", answered.p99, "ms").beside(own.p99),
    );
    s.resources("slow", start, end).await?;
    s.stack.check_alive()
}

/// (3) The same paced load without, then with, the failing, black-holed
/// and throttled endpoints: healthy endpoints' deliveries/s and latency.
async fn neighbours_phase(s: &mut Scale) -> anyhow::Result<()> {
    let latency = s.args.latency;
    println!("(3) bad neighbours: {:?} latency, {} s without, then {} s with them", latency, s.args.secs, s.args.secs);
    s.rx.set_latency(latency);
    let rate = f64::from(s.args.rate);
    let keep = s.healthy();
    let procs = s.procs();
    let cpu = Cpu::now(&procs);
    let appended = Appended::now(&s.nats).await?;
    let (without, ..) = population_run(s, rate, keep).await?;
    let appended_without = Appended::now(&s.nats).await?.per_1000_since(&appended, without.deliveries as f64);
    let note = format!("neighbours (without): {}", cpu.since(&procs));
    println!("  {note}");
    s.notes.push(note);
    // Over capacity, the run without them ends with outcomes still to
    // write to the delivery log: that work is the first run's, and the
    // second starts once it is done rather than paying for it.
    let (lag, waited) = (s.projector_lag().await.unwrap_or(f64::NAN), Instant::now());
    s.settle().await;
    let note = format!(
        "neighbours: {lag:.0} outcomes still to project when the run without them ended; written in {:.1} s before the run with them",
        waited.elapsed().as_secs_f64()
    );
    println!("  {note}");
    s.notes.push(note);
    let bad = [Kind::Failing, Kind::BlackHole, Kind::Throttled];
    let n = s.set_enabled(&bad, true).await?;
    println!("  {n} misbehaving endpoints enabled");
    let procs = s.procs();
    let cpu = Cpu::now(&procs);
    let keep = s.healthy();
    let from = s.rx.hits();
    let appended = Appended::now(&s.nats).await?;
    let (with, start, end, sent) = population_run(s, rate, keep).await?;
    let appended_with = Appended::now(&s.nats).await?.per_1000_since(&appended, with.deliveries as f64);
    let note = format!("neighbours (with): {}", cpu.since(&procs));
    println!("  {note}");
    s.notes.push(note);
    // Where nats-server's work goes: what each run appended to every
    // stream, and its API requests, per 1,000 healthy deliveries.
    // Streams are only ever added, so the second half names every stream
    // the first did.
    let parts: Vec<String> = appended_with
        .iter()
        .map(|(name, with)| (name, appended_without.iter().find(|(n, _)| n == name).map_or(0.0, |(_, x)| *x), *with))
        .filter(|(_, without, with)| *without > 0.0 || *with > 0.0)
        .map(|(name, without, with)| format!("{name} {without:.0} -> {with:.0}"))
        .collect();
    let note = format!(
        "neighbours: JetStream appends per 1,000 healthy deliveries, without -> with them: {}",
        parts.join("; ")
    );
    println!("  {note}");
    s.notes.push(note);
    // Whether the run without them carried the asked rate: over capacity,
    // whatever else the machine does comes out of the healthy rate, so the
    // ratio below measures the neighbours' cost, not only their isolation.
    let row = Row::new("neighbours: healthy deliveries/s without them (vs asked)", without.rate, "/s");
    s.report.push(row.vs(rate));
    let ratio = with.rate / without.rate.max(1e-9);
    let row = Row::new(format!("neighbours: healthy deliveries/s beside {n} misbehaving endpoints"), with.rate, "/s");
    s.report.push(row.vs(without.rate).target(">= 0.9 x without", ratio >= 0.9));
    let (w, wo) = (percentiles(&mut with.answered.clone()), percentiles(&mut without.answered.clone()));
    let own = percentiles(&mut with.own.clone());
    s.report.push(Row::new("neighbours: publish -> answered p99 without them", wo.p99, "ms").beside(own.p99));
    let row = Row::new("neighbours: publish -> answered p99 with them (beside: receivers' own p99)", w.p99, "ms");
    s.report.push(row.beside(own.p99).target("<= own p99 + 50 ms", w.p99 <= own.p99 + 50.0));
    let (r, ro) = (percentiles(&mut with.receipt.clone()), percentiles(&mut without.receipt.clone()));
    s.report
        .push(Row::new("neighbours: publish -> receipt p50 with them (beside: without)", r.p50, "ms").beside(ro.p50));
    // Where the wait is: healthy endpoints whose tenant (and so whose
    // events) they share with a misbehaving one, against the others; and
    // deliveries made twice (an event fanned out again).
    for (group, shares) in [("sharing a tenant with a misbehaving one", true), ("in tenants without one", false)] {
        let model = s.model.clone();
        let keep = move |ep: u32| {
            model.endpoints.get(ep as usize).is_some_and(|e| {
                e.kind == Kind::Healthy
                    && model.tenants[e.tenant as usize]
                        .endpoints
                        .iter()
                        .any(|o| model.endpoints[*o as usize].kind != Kind::Healthy)
                        == shares
            })
        };
        let a = s.arrived(from, &sent, start, end, keep);
        let p = percentiles(&mut a.receipt.clone());
        let row = Row::new(format!("  neighbours: receipt p99 (beside: p50), healthy {group}"), p.p99, "ms");
        s.report.push(row.beside(p.p50));
    }
    let keep = s.healthy();
    let twice = s.rx.with_hits(from, |hits| {
        let mut seen = std::collections::HashSet::new();
        hits.iter().filter(|h| h.ep != RAW && keep(h.ep)).filter(|h| !seen.insert((h.ep, h.id.clone()))).count()
    });
    s.report.push(
        Row::new("  neighbours: healthy deliveries received twice (beside: all)", twice as f64, "")
            .beside(with.deliveries as f64),
    );
    s.resources("neighbours", start, end).await?;
    s.set_enabled(&bad, false).await?;
    s.rx.set_latency(Latency::Fixed);
    s.stack.check_alive()
}

/// (4) One endpoint answers 503 while `--recovery-events` pile up for it,
/// then comes back: how long catching up takes against what its
/// concurrency cap implies, and the other endpoints' deliveries meanwhile.
async fn recovery_phase(s: &mut Scale) -> anyhow::Result<()> {
    let (k, rate) = (s.args.recovery_events, f64::from(s.args.recovery_rate));
    let cap = s
        .args
        .env
        .iter()
        .find_map(|kv| kv.split_once("HOOKLINE_ENDPOINT_CONCURRENCY="))
        .map_or(Ok(10), |(_, v)| v.parse::<u32>())?;
    let latency = Duration::from_millis(s.args.recovery_latency_ms);
    let implied = k as f64 * latency.as_secs_f64().max(1e-3) / f64::from(cap);
    let first = env_secs(&s.args.env, "HOOKLINE_BREAKER_FIRST_COOLDOWN", 1.0)?;
    let longest = env_secs(&s.args.env, "HOOKLINE_BREAKER_COOLDOWN", 30.0)?;
    println!("(4) recovery: {k} events at {rate:.0}/s for an endpoint that is down, then back");
    s.rx.set_latency(Latency::Fixed);
    let base = s.event_rate(f64::from(s.args.recovery_base_rate));
    let (keep, recovery) = (s.healthy(), s.model.endpoints.len() as u32);
    let from = s.rx.hits();
    // Others at a steady rate throughout: a stretch before, the outage, the catch-up.
    let stop = Arc::new(AtomicBool::new(false));
    let t_before = Instant::now();
    let others = s.publisher(Audience::Population(s.picker.clone()), base, usize::MAX, stop.clone());
    tokio::time::sleep(Duration::from_secs(s.args.secs / 2)).await;
    let t_down = Instant::now();
    s.rx.set_down(true);
    let never = Arc::new(AtomicBool::new(false));
    let piled = s.publisher(Audience::One("scale-recovery".into()), rate, k, never).await??;
    let counts_before = s.drain_counts().await?;
    let t_up = Instant::now();
    s.rx.set_down(false);
    let outage = (t_up - t_down).as_secs_f64();
    println!("  {} events published while down ({outage:.1} s); endpoint back", piled.len());
    // The breaker's cooldown doubles with each failed probe: the one running
    // when the endpoint came back bounds the wait for the probe that finds it.
    let probe_wait = cooldown_reached(first, longest, outage);
    let wanted: std::collections::HashSet<&str> = piled.iter().map(|(id, _)| id.as_str()).collect();
    // Implied time, plus the cooldown before a probe finds it back, three times over.
    let timeout = Duration::from_secs_f64((3.0 * (implied + probe_wait)).max(30.0))
        .min(Duration::from_secs(20 * s.args.secs.max(3)));
    let (mut first_hit, mut at50, mut at99, mut at100) = (None, None, None, None);
    let mut got = std::collections::HashSet::with_capacity(k);
    let mut cursor = from;
    while t_up.elapsed() < timeout && at100.is_none() {
        tokio::time::sleep(Duration::from_millis(200)).await;
        cursor += s.rx.with_hits(cursor, |hits| {
            for h in hits.iter().filter(|h| h.ep == recovery && h.at >= t_up) {
                first_hit.get_or_insert(h.at);
                if wanted.contains(&*h.id) {
                    got.insert(h.id.clone());
                }
            }
            hits.len()
        });
        let share = got.len() as f64 / k.max(1) as f64;
        let now = t_up.elapsed().as_secs_f64();
        if share >= 0.5 && at50.is_none() {
            at50 = Some(now);
        }
        if share >= 0.99 && at99.is_none() {
            at99 = Some(now);
        }
        if got.len() >= wanted.len() {
            at100 = Some(now);
        }
    }
    let t_caught = Instant::now();
    let counts = s.drain_counts().await?.since(&counts_before);
    // The baseline the cap implies on this machine: a raw client keeping
    // `cap` requests waiting on a path that answers after the same latency,
    // beside the others' same load, right after the catch-up. What loopback
    // and a loaded machine add to each request is in both.
    let raw = raw_client(s.rx.raw_recovery_url(), cap as usize, raw_secs(s.args.secs)).await?;
    println!("  raw client, {cap} concurrent, {} ms answers: {raw:.0}/s", latency.as_millis());
    stop.store(true, Ordering::Relaxed);
    let sent = others.await??;
    let before = s.arrived(from, &sent, t_before, t_down, &keep);
    let during = s.arrived(from, &sent, t_up, t_caught, &keep);
    let caught = at100.or(at99).unwrap_or(f64::NAN);
    let what = if at100.is_some() { "all" } else { "99 %" };
    let row =
        Row::new(format!("recovery: catch-up of {k} events ({what}; beside: K x latency / cap {cap})"), caught, "s");
    let bound = 1.25 * implied + probe_wait;
    s.report
        .push(row.beside(implied).target(format!("<= 1.25 x implied + {probe_wait:.0} s cooldown"), caught <= bound));
    // The same catch-up against the time the raw client's rate at the cap
    // implies for `k` requests, measured on this machine in this run.
    let measured = k as f64 / raw.max(1e-9);
    let row = Row::new(
        format!("recovery: catch-up of {k} events ({what}; beside: K / raw client's rate at cap {cap})"),
        caught,
        "s",
    );
    s.report.push(
        row.beside(measured)
            .target(format!("<= 1.25 x measured + {probe_wait:.0} s cooldown"), caught <= 1.25 * measured + probe_wait),
    );
    // The catch-up split in two: waiting for a probe to find the endpoint
    // back (the breaker's cooldown), then draining at the cap.
    let found = first_hit.map_or(f64::NAN, |t| (t - t_up).as_secs_f64());
    let row = Row::new(
        format!("  recovery: first delivery after it came back (beside: cooldown reached after {outage:.0} s down)"),
        found,
        "s",
    );
    s.report.push(row.beside(probe_wait));
    let drain = caught - found;
    let row = Row::new("  recovery: drained after that first delivery (vs implied by the cap)", drain, "s").vs(implied);
    s.report.push(row.target("<= 1.25 x implied", drain <= 1.25 * implied));
    s.report.push(
        Row::new("  recovery: 50 % / 99 % caught up after (s)", at50.unwrap_or(f64::NAN), "s")
            .beside(at99.unwrap_or(f64::NAN)),
    );
    // The drain's pace against the cap's (cap / answer time), and what it
    // cost per piled-up event: counts, which hold on a loaded machine.
    let cap_rate = f64::from(cap) / latency.as_secs_f64().max(1e-3);
    let drain_rate = k as f64 / drain;
    let row = Row::new("  recovery: drain rate after the first delivery (vs the cap's rate)", drain_rate, "/s");
    s.report.push(row.vs(cap_rate));
    let row = Row::new(
        format!("  recovery: drain rate after the first delivery (vs the raw client's, {cap} concurrent)"),
        drain_rate,
        "/s",
    );
    s.report.push(row.vs(raw).target(">= 0.8 x raw", drain_rate >= 0.8 * raw));
    let per = |n: f64| 1000.0 * n / k.max(1) as f64;
    s.report.push(
        Row::new("  recovery: JetStream API requests per 1,000 piled-up events (beside: all)", per(counts.api), "")
            .beside(counts.api),
    );
    s.report.push(
        Row::new(
            "  recovery: event read-back requests per 1,000 piled-up events (beside: of them single gets)",
            per(counts.batch_reads + counts.single_reads),
            "",
        )
        .beside(counts.single_reads),
    );
    s.report.push(
        Row::new(
            "  recovery: HOOKLINE_DISPATCH messages per 1,000 piled-up events (beside: tasks unparked)",
            per(counts.dispatch),
            "",
        )
        .beside(counts.unparked),
    );
    s.report.push(
        Row::new("  recovery: tasks handed back during the catch-up (beside: parked again)", counts.busy, "")
            .beside(counts.parked_again),
    );
    s.report.push(Row::new("  recovery: delivered of the piled-up events", got.len() as f64, "").beside(k as f64));
    let ratio = during.rate / before.rate.max(1e-9);
    let row = Row::new("recovery: others' deliveries/s while catching up (vs before the outage)", during.rate, "/s");
    s.report.push(row.vs(before.rate).target(">= 0.9 x before", ratio >= 0.9));
    let (d, b) = (percentiles(&mut during.receipt.clone()), percentiles(&mut before.receipt.clone()));
    s.report.push(
        Row::new("recovery: others' publish -> receipt p99 while catching up (vs before)", d.p99, "ms").beside(b.p99),
    );
    s.resources("recovery", t_down, t_caught).await?;
    // `hookline stats` for the endpoint, as an operator would look, once
    // the outcomes are in Postgres.
    s.settle().await;
    // Whether the drain kept the cap busy: the endpoint's attempts as
    // delivery timed them (the receiver's answer time, plus the client's
    // side of each request), and the slots they filled while it drained.
    let (attempts, mean_ms): (i64, Option<f64>) = sqlx::query_as(
        "select count(*), avg(duration_ms)::float8 from attempts where endpoint_id = $1 and status_code = 200",
    )
    .bind(&s.recovery_id)
    .fetch_one(&s.db)
    .await?;
    let mean_ms = mean_ms.unwrap_or(f64::NAN);
    let row = Row::new(
        "  recovery: its attempts as delivery timed them, mean (beside: the receiver's answer)",
        mean_ms,
        "ms",
    );
    s.report.push(row.beside(latency.as_secs_f64() * 1e3));
    let busy = attempts as f64 * mean_ms / 1e3 / drain;
    s.report.push(
        Row::new("  recovery: its slots busy while it drained, mean (beside: the cap)", busy, "")
            .beside(f64::from(cap)),
    );
    let delivery = s.stack.services.iter().find(|x| x.role == "delivery").context("no delivery")?;
    let out = hookline_testkit::hookline_command()?
        .args(["stats", "scale-recovery", &s.recovery_id, "--delivery-url", &delivery.grpc_url])
        .output()?;
    let text = String::from_utf8_lossy(&out.stdout).trim().to_owned() + String::from_utf8_lossy(&out.stderr).trim();
    println!("  hookline stats: {text}");
    s.notes.push(format!("recovery: `hookline stats scale-recovery {}`: {text}", s.recovery_id));
    // And the delivery log: the newest deliveries, and the oldest piled-up
    // ones that had to wait (several attempts, the last one accepted).
    let out = hookline_testkit::hookline_command()?
        .args(["log", "list", "scale-recovery", &s.recovery_id, "--limit", "3", "--delivery-url", &delivery.grpc_url])
        .output()?;
    let text = String::from_utf8_lossy(&out.stdout).trim().to_owned() + String::from_utf8_lossy(&out.stderr).trim();
    println!("  hookline log list (newest 3):\n{text}");
    let lines: Vec<&str> = text.lines().collect();
    s.notes.push(format!(
        "recovery: `hookline log list scale-recovery {} --limit 3`: {}",
        s.recovery_id,
        lines.join(" | ")
    ));
    s.stack.check_alive()
}

/// A duration from `--env [role:]KEY=VALUE` (`500ms`, `30s`, `2m`), in
/// seconds, or `default`.
fn env_secs(env: &[String], key: &str, default: f64) -> anyhow::Result<f64> {
    let Some(v) = env.iter().find_map(|kv| kv.strip_prefix(key)?.strip_prefix('=')) else { return Ok(default) };
    // As the services read it: bare seconds, or a humantime span.
    match v.parse::<f64>() {
        Ok(secs) => Ok(secs),
        Err(_) => {
            Ok(humantime::parse_duration(v).with_context(|| format!("{key}: not a duration: {v}"))?.as_secs_f64())
        }
    }
}

/// The breaker cooldown running once an endpoint has been down for
/// `outage` seconds: `first` after it opened, doubled by each failed probe,
/// at most `longest`.
fn cooldown_reached(first: f64, longest: f64, outage: f64) -> f64 {
    let (mut cooldown, mut elapsed) = (first.min(longest), 0.0);
    while elapsed + cooldown < outage {
        elapsed += cooldown;
        cooldown = (cooldown * 2.0).min(longest);
    }
    cooldown
}

/// (5) Each service restarted with every tenant and endpoint present:
/// time until `/readyz` answers 200, beside its first start on an empty
/// configuration.
async fn startup_phase(s: &mut Scale, initial: &[(&'static str, Duration)]) -> anyhow::Result<()> {
    println!("(5) start-up with {} tenants and {} endpoints", s.model.tenants.len(), s.model.endpoints.len());
    for (i, (role, first)) in initial.iter().enumerate() {
        s.stack.restart(i).await?;
        let took = s.stack.services[i].ready_after;
        println!("  {role}: ready after {:.2} s (empty: {:.2} s)", took.as_secs_f64(), first.as_secs_f64());
        let row =
            Row::new(format!("start-up: hookline {role} ready after restart (beside: empty)"), took.as_secs_f64(), "s");
        s.report.push(row.beside(first.as_secs_f64()).target("< 5 s", took < Duration::from_secs(5)));
    }
    s.stack.check_alive()
}

/// How the backlog phase stores its waiting retries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum BacklogLayout {
    Ref,
    Whole,
}
