//! `hookline-bench cluster`: what replication costs. The same fan-out 1,
//! fan-out 10 and latency runs go first to one nats-server (streams R1),
//! then to a three-node cluster on this machine (streams R3, the services
//! given all three URLs), in one run and beside the same raw POST
//! baseline, so the ratio is the price of surviving a node and its disk.

use super::*;
use crate::stack::Nats;

#[derive(clap::Args)]
pub struct Args {
    /// Events per throughput run (fan-out 1 and fan-out 10), per topology.
    #[arg(long, default_value_t = 10_000)]
    events: usize,
    /// Events per second in the latency run.
    #[arg(long, default_value_t = 500)]
    rate: u32,
    /// Length of each latency run.
    #[arg(long, default_value_t = 20)]
    latency_secs: u64,
    /// Extra environment for the services, as for `delivery`.
    #[arg(long = "env", value_name = "KEY=VALUE")]
    env: Vec<String>,
    /// Smoke run: at most 2,000 events and 5 s of latency per topology.
    #[arg(long)]
    quick: bool,
}

/// One topology's figures.
struct Figures {
    fan1: f64,
    fan10: f64,
    latency: Percentiles,
    /// CPU seconds of all nats-server processes per 1,000 deliveries of
    /// the fan-out 10 run.
    nats_cpu_per_1000: f64,
    /// Largest peak RSS of one nats-server process.
    nats_rss: f64,
}

pub async fn run(mut args: Args, postgres: &str) -> anyhow::Result<Report> {
    if args.quick {
        args.events = args.events.min(2_000);
        args.latency_secs = args.latency_secs.min(5);
    }
    let env: Vec<(String, String)> = args
        .env
        .iter()
        .map(|kv| kv.split_once('=').map(|(k, v)| (k.to_owned(), v.to_owned())).context("--env wants KEY=VALUE"))
        .collect::<anyhow::Result<_>>()?;
    let mut report = Report::new(
        "hookline-bench cluster",
        json!({"events": args.events, "rate": args.rate, "latency_secs": args.latency_secs,
               "quick": args.quick, "env": args.env}),
    );
    let load_before = loadavg();
    let rx = Receiver::start().await?;
    let Baseline { rate: raw, latency: raw_lat, .. } =
        Baseline::measure(&rx, args.rate, args.latency_secs, &mut report).await?;

    let mut notes = Vec::new();
    let single = topology(Nats::Single, postgres, &env, &rx, &args, &mut notes).await?;
    let cluster = topology(Nats::ClusterR3, postgres, &env, &rx, &args, &mut notes).await?;

    let (s, c) = (Nats::Single.label(), Nats::ClusterR3.label());
    report.push(Row::new(format!("e2e deliveries/s, fan-out 1, {s}"), single.fan1, "/s").vs(raw));
    report.push(Row::new(format!("e2e deliveries/s, fan-out 1, {c} (vs R1)"), cluster.fan1, "/s").vs(single.fan1));
    report.push(Row::new(format!("e2e deliveries/s, fan-out 10, {s}"), single.fan10, "/s").vs(raw));
    report.push(Row::new(format!("e2e deliveries/s, fan-out 10, {c} (vs R1)"), cluster.fan10, "/s").vs(single.fan10));
    let at = format!("@ {}/s", args.rate);
    for (label, f) in [(s, &single), (c, &cluster)] {
        report.push(Row::new(format!("e2e latency p50 {at}, {label}"), f.latency.p50, "ms").beside(raw_lat.p50));
        report.push(Row::new(format!("e2e latency p99 {at}, {label}"), f.latency.p99, "ms").beside(raw_lat.p99));
    }
    report.push(Row::new(
        format!("nats-server CPU s per 1,000 deliveries (fan-out 10), {s}"),
        single.nats_cpu_per_1000,
        "s",
    ));
    report.push(
        Row::new(
            format!("nats-server CPU s per 1,000 deliveries (fan-out 10), {c}, all nodes"),
            cluster.nats_cpu_per_1000,
            "s",
        )
        .vs(single.nats_cpu_per_1000),
    );
    report.push(Row::new(format!("peak RSS nats-server, {s}"), single.nats_rss, "MiB"));
    report.push(Row::new(format!("peak RSS nats-server, {c}, largest node"), cluster.nats_rss, "MiB"));
    report.push(Row::new("duplicate deliveries (whole run)", rx.total_duplicates() as f64, ""));
    report.notes.append(&mut notes);
    report.notes.push(format!(
        "both topologies share this machine: the cluster's three nodes run on the same cores as the services; \
         load average before: {load_before}; after: {}",
        loadavg()
    ));
    Ok(report)
}

async fn topology(
    nats: Nats,
    postgres: &str,
    env: &[(String, String)],
    rx: &Receiver,
    args: &Args,
    notes: &mut Vec<String>,
) -> anyhow::Result<Figures> {
    println!("== {}: starting nats-server and hookline subscriptions|ingest|delivery ...", nats.label());
    let stack = Stack::start_on(nats, postgres, env).await?;
    let subs = SubscriptionServiceClient::connect(stack.services[0].grpc_url.clone()).await?;
    let ingest = IngestServiceClient::connect(stack.services[1].grpc_url.clone()).await?;
    let mut b = Bench { stack, rx: rx.clone(), subs, ingest, event: producer_event(), notes: Vec::new() };
    let tag = match nats {
        Nats::Single => "r1",
        Nats::ClusterR3 => "r3",
    };

    let f1 = paths(&format!("{tag}-fan1"), 1);
    b.tenant(&format!("{tag}-fan1"), &[b.rx.url(&format!("{tag}-fan1/0"))]).await?;
    b.warm_up(&format!("{tag}-fan1"), &f1).await?;
    let fan1 = b.measured(&format!("fan-out 1, {}", nats.label()), &format!("{tag}-fan1"), &f1, args.events).await?;

    let f10 = paths(&format!("{tag}-fan10"), 10);
    let urls: Vec<String> = (0..10).map(|i| b.rx.url(&format!("{tag}-fan10/{i}"))).collect();
    b.tenant(&format!("{tag}-fan10"), &urls).await?;
    b.warm_up(&format!("{tag}-fan10"), &f10).await?;
    let nats_cpu = |b: &Bench| b.stack.nats_pids().iter().map(|pid| cpu_secs(&pid.to_string())).sum::<f64>();
    let before = nats_cpu(&b);
    let fan10 =
        b.measured(&format!("fan-out 10, {}", nats.label()), &format!("{tag}-fan10"), &f10, args.events).await?;
    let nats_cpu_per_1000 = (nats_cpu(&b) - before) / fan10.deliveries.max(1) as f64 * 1000.0;

    let lat_path = format!("/{tag}-lat/0");
    b.tenant(&format!("{tag}-lat"), &[b.rx.url(&format!("{tag}-lat/0"))]).await?;
    b.warm_up(&format!("{tag}-lat"), std::slice::from_ref(&lat_path)).await?;
    let (mut lat, _) = b.latency(&format!("{tag}-lat"), &lat_path, args.rate, args.latency_secs).await?;
    let latency = percentiles(&mut lat);
    b.stack.check_alive()?;

    let nats_rss = b.stack.nats_pids().into_iter().filter_map(|pid| peak_rss_mib(pid).ok()).fold(0.0, f64::max);
    notes.append(&mut b.notes);
    b.stack.finish().await?;
    Ok(Figures { fan1: fan1.rate(), fan10: fan10.rate(), latency, nats_cpu_per_1000, nats_rss })
}
