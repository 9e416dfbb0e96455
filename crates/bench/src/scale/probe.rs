//! What a scale phase reads besides the receiver: the processes' memory
//! (sampled in the background with the receiver's requests in flight),
//! their CPU, JetStream's stream and consumer sizes, and the database size.

use std::{
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use anyhow::Context;
use serde_json::Value;

use super::receiver::Receivers;
use crate::{
    delivery::postgres_cpu_secs,
    stack::{cpu_secs, machine_ticks, rss_mib},
};

/// A process the run watches.
#[derive(Clone)]
pub struct Proc {
    pub label: String,
    pub pid: u32,
}

struct Sample {
    at: Instant,
    in_flight: i64,
    rss: Vec<f64>,
}

/// Every 100 ms: the receiver's requests in flight and each process's RSS;
/// every 5 s, nats-server's Go collector, where its profiler answers.
#[derive(Clone)]
pub struct Sampler {
    samples: Arc<Mutex<Vec<Sample>>>,
    heaps: Arc<Mutex<Vec<GoHeap>>>,
    nats: Option<GoProfiler>,
    pub procs: Vec<Proc>,
}

/// Max and mean of a sampled figure over a window.
#[derive(Debug, Clone, Copy, Default)]
pub struct MaxMean {
    pub max: f64,
    pub mean: f64,
}

impl Sampler {
    /// `nats`: the single nats-server's profiler, if it has one.
    pub fn start(rx: Receivers, procs: Vec<Proc>, nats: Option<GoProfiler>) -> Self {
        let samples = Arc::new(Mutex::new(Vec::with_capacity(1 << 16)));
        let (into, pids): (_, Vec<u32>) = (samples.clone(), procs.iter().map(|p| p.pid).collect());
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(100));
            loop {
                tick.tick().await;
                let rss = pids.iter().map(|&p| rss_mib(p).unwrap_or(0.0)).collect();
                into.lock().unwrap().push(Sample { at: Instant::now(), in_flight: rx.in_flight(), rss });
            }
        });
        let heaps = Arc::new(Mutex::new(Vec::new()));
        if let Some(nats) = nats.clone() {
            let into = heaps.clone();
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_secs(5));
                loop {
                    tick.tick().await;
                    if let Ok(heap) = nats.read(false).await {
                        into.lock().unwrap().push(heap);
                    }
                }
            });
        }
        Self { samples, heaps, nats, procs }
    }

    /// nats-server's Go collections a second between the samples nearest
    /// `from` and `to`. (The runtime's own `GCCPUFraction` counts a
    /// collector's wall time, not the CPU a busy machine gave it.)
    pub fn collections_per_sec(&self, from: Instant, to: Instant) -> Option<f64> {
        let heaps = self.heaps.lock().unwrap();
        let first = heaps.iter().find(|h| h.at >= from)?;
        let last = heaps.iter().rev().find(|h| h.at <= to)?;
        let secs = last.at.duration_since(first.at).as_secs_f64();
        (secs > 0.0).then(|| (last.num_gc - first.num_gc) / secs)
    }

    /// nats-server's live heap now, in MiB: its heap in use right after a
    /// collection the read forces.
    pub async fn nats_live_heap(&self) -> Option<f64> {
        Some(self.nats.as_ref()?.read(true).await.ok()?.heap_alloc_mib)
    }

    fn over(&self, from: Instant, to: Instant, f: impl Fn(&Sample) -> f64) -> MaxMean {
        let samples = self.samples.lock().unwrap();
        let xs: Vec<f64> = samples.iter().filter(|s| s.at >= from && s.at <= to).map(f).collect();
        if xs.is_empty() {
            return MaxMean::default();
        }
        MaxMean { max: xs.iter().copied().fold(0.0, f64::max), mean: xs.iter().sum::<f64>() / xs.len() as f64 }
    }

    pub fn in_flight(&self, from: Instant, to: Instant) -> MaxMean {
        self.over(from, to, |s| s.in_flight as f64)
    }

    /// RSS of process `i` of [`Sampler::procs`].
    pub fn rss(&self, i: usize, from: Instant, to: Instant) -> MaxMean {
        self.over(from, to, |s| s.rss.get(i).copied().unwrap_or(0.0))
    }
}

/// A Go process's profiler (nats-server's `--profile <port>`).
#[derive(Clone)]
pub struct GoProfiler {
    pub url: String,
}

/// What [`GoProfiler::read`] read.
struct GoHeap {
    at: Instant,
    heap_alloc_mib: f64,
    /// Collections since the process started.
    num_gc: f64,
}

impl GoProfiler {
    /// The runtime's statistics at the end of its heap profile; with
    /// `collect`, right after a collection it forces.
    async fn read(&self, collect: bool) -> anyhow::Result<GoHeap> {
        let url = format!("{}/debug/pprof/heap?debug=1{}", self.url, if collect { "&gc=1" } else { "" });
        let text = reqwest::get(&url).await?.text().await?;
        let stat = |name: &str| {
            let prefix = format!("# {name} = ");
            text.lines().find_map(|l| l.strip_prefix(&prefix)?.trim().parse::<f64>().ok())
        };
        let heap_alloc = stat("HeapAlloc").with_context(|| format!("no HeapAlloc in {url}"))?;
        let num_gc = stat("NumGC").with_context(|| format!("no NumGC in {url}"))?;
        Ok(GoHeap { at: Instant::now(), heap_alloc_mib: heap_alloc / 1048576.0, num_gc })
    }
}

/// CPU seconds of the watched processes, the bench, Postgres, and the
/// machine's busy/total ticks, at one instant.
pub struct Cpu {
    procs: Vec<f64>,
    bench: f64,
    postgres: f64,
    machine: (f64, f64),
    at: Instant,
}

impl Cpu {
    pub fn now(procs: &[Proc]) -> Self {
        Self {
            procs: procs.iter().map(|p| cpu_secs(&p.pid.to_string())).collect(),
            bench: cpu_secs("self"),
            postgres: postgres_cpu_secs(),
            machine: machine_ticks(),
            at: Instant::now(),
        }
    }

    /// Share of one core each used since `self`, and the machine's load
    /// from other processes (everything this run does not account for).
    pub fn since(&self, procs: &[Proc]) -> String {
        let now = Cpu::now(procs);
        let wall = now.at.duration_since(self.at).as_secs_f64().max(1e-3);
        let cores = std::thread::available_parallelism().map_or(2.0, |n| n.get() as f64);
        let (busy, total) = (now.machine.0 - self.machine.0, now.machine.1 - self.machine.1);
        let busy = if total > 0.0 { busy / total } else { 0.0 };
        let mut per: Vec<String> = procs
            .iter()
            .zip(now.procs.iter().zip(&self.procs))
            .map(|(p, (b, a))| format!("{} {:.0} %", p.label, 100.0 * (b - a) / wall))
            .collect();
        let bench = (now.bench - self.bench) / wall;
        let postgres = (now.postgres - self.postgres) / wall;
        per.push(format!("bench (receiver, publisher) {:.0} %", 100.0 * bench));
        per.push(format!("postgres (all) {:.0} %", 100.0 * postgres));
        let ours: f64 = now.procs.iter().zip(&self.procs).map(|(b, a)| (b - a) / wall).sum::<f64>() + bench + postgres;
        format!(
            "{wall:.0} s, machine {:.0} % busy of {cores} cores, other processes ~{:.0} %; per process (of one core): {}",
            100.0 * busy,
            (100.0 * (busy - ours / cores)).max(0.0),
            per.join(", ")
        )
    }
}

/// A stream's or a consumer's size.
pub struct JsSize {
    pub name: String,
    /// Stream: messages, bytes. Consumer: ack pending, pending.
    pub a: f64,
    pub b: f64,
}

/// Every stream's messages and bytes and every consumer's `num_ack_pending`
/// and `num_pending`, from the JetStream API.
pub async fn jetstream(nats: &async_nats::Client) -> anyhow::Result<(Vec<JsSize>, Vec<JsSize>)> {
    let (mut streams, mut consumers) = (Vec::new(), Vec::new());
    for (name, info) in stream_infos(nats).await? {
        let state = &info["state"];
        let (messages, bytes) = (state["messages"].as_f64().unwrap_or(0.0), state["bytes"].as_f64().unwrap_or(0.0));
        streams.push(JsSize { name: name.clone(), a: messages, b: bytes });
        let list = ask(nats, &format!("$JS.API.CONSUMER.LIST.{name}")).await?;
        for c in list["consumers"].as_array().into_iter().flatten() {
            let label = format!("{name}/{}", c["name"].as_str().unwrap_or("?"));
            let (ack, pending) =
                (c["num_ack_pending"].as_f64().unwrap_or(0.0), c["num_pending"].as_f64().unwrap_or(0.0));
            consumers.push(JsSize { name: label, a: ack, b: pending });
        }
    }
    Ok((streams, consumers))
}

/// The scratch database's size in MiB.
pub async fn database_mib(db: &sqlx::PgPool) -> anyhow::Result<f64> {
    let bytes: i64 = sqlx::query_scalar("select pg_database_size(current_database())").fetch_one(db).await?;
    Ok(bytes as f64 / (1024.0 * 1024.0))
}

/// A JetStream API request's JSON answer.
pub async fn ask(nats: &async_nats::Client, subject: &str) -> anyhow::Result<Value> {
    let reply = nats.request(subject.to_owned(), "".into()).await.with_context(|| subject.to_owned())?;
    serde_json::from_slice(&reply.payload).with_context(|| subject.to_owned())
}

/// Every stream's name and `$JS.API.STREAM.INFO` answer, by name.
pub async fn stream_infos(nats: &async_nats::Client) -> anyhow::Result<Vec<(String, Value)>> {
    let names = ask(nats, "$JS.API.STREAM.NAMES").await?;
    let mut names: Vec<String> =
        names["streams"].as_array().into_iter().flatten().filter_map(|s| s.as_str().map(str::to_owned)).collect();
    names.sort();
    let mut infos = Vec::with_capacity(names.len());
    for name in names {
        let info = ask(nats, &format!("$JS.API.STREAM.INFO.{name}")).await?;
        infos.push((name, info));
    }
    Ok(infos)
}

/// The account's JetStream API requests so far.
pub async fn api_requests(nats: &async_nats::Client) -> anyhow::Result<f64> {
    Ok(ask(nats, "$JS.API.INFO").await?["api"]["total"].as_f64().unwrap_or(f64::NAN))
}

/// Messages ever appended to each stream (its last sequence) and the
/// account's JetStream API requests, at one instant: the difference over a
/// run is the work nats-server did for it, retention aside.
pub struct Appended {
    streams: Vec<(String, u64)>,
    api: f64,
}

impl Appended {
    pub async fn now(nats: &async_nats::Client) -> anyhow::Result<Self> {
        let streams = stream_infos(nats).await?;
        let streams = streams.into_iter().map(|(name, info)| (name, info["state"]["last_seq"].as_u64().unwrap_or(0)));
        Ok(Self { streams: streams.collect(), api: api_requests(nats).await? })
    }

    /// Appends per stream (every stream, by name, as `before` had them)
    /// and API requests since `before`, per 1,000 of `per` (deliveries,
    /// say).
    pub fn per_1000_since(&self, before: &Appended, per: f64) -> Vec<(String, f64)> {
        let per = per.max(1.0) / 1000.0;
        let mut out: Vec<(String, f64)> = before
            .streams
            .iter()
            .map(|(name, was)| {
                let now = self.streams.iter().find(|(n, _)| n == name).map_or(*was, |(_, s)| *s);
                (name.clone(), now.saturating_sub(*was) as f64 / per)
            })
            .collect();
        out.push(("API requests".into(), (self.api - before.api).max(0.0) / per));
        out
    }
}
