//! `hookline-bench`: Hookline's shipped benchmarks. Every figure is printed
//! beside a raw baseline measured in the same run on the same machine.
//!
//! - `delivery`: end to end against a private `nats-server`, a fresh Postgres
//!   database and the three `hookline` services as separate processes.
//! - `log`: the delivery-log and statistics queries on a filled database.
//! - `cluster`: the delivery runs on one nats-server and on a three-node
//!   cluster with replicated streams, side by side.
//! - `scale`: thousands of tenants and endpoints, slow and misbehaving
//!   receivers, an endpoint recovering from an outage, restarts.

mod delivery;
mod log;
mod receiver;
mod report;
mod scale;
mod stack;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(version, about = "Hookline benchmarks (see BENCHMARKS.md)")]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Also write the results as JSON to this file.
    #[arg(long, global = true)]
    json_out: Option<PathBuf>,
    /// Postgres server to create the scratch database on.
    #[arg(long, global = true, default_value = "postgres://postgres@127.0.0.1:5432")]
    postgres: String,
}

#[derive(Subcommand)]
enum Command {
    /// End-to-end delivery throughput, latency, memory and isolation.
    Delivery(delivery::Args),
    /// Delivery-log page and 30-day statistics query latency.
    Log(log::Args),
    /// What replication costs: fan-out 1, fan-out 10 and latency on one
    /// nats-server (R1) and on a three-node cluster (R3), in one run.
    Cluster(delivery::cluster::Args),
    /// Real-world load: many tenants and endpoints, receivers that answer
    /// slowly, fail, hang or throttle, an endpoint catching up after an
    /// outage, and restarts with the whole configuration present.
    /// nats-server runs with `GOMEMLIMIT=512MiB`, the size README.md gives
    /// for 10,000 tenants (`delivery` and `log`: the compose files' 192MiB);
    /// `GOMEMLIMIT` in the bench's environment overrides both.
    Scale(scale::Args),
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cli = Cli::parse();
    let report = match cli.command {
        Command::Delivery(args) => delivery::run(args, &cli.postgres).await?,
        Command::Log(args) => log::run(args, &cli.postgres).await?,
        Command::Cluster(args) => delivery::cluster::run(args, &cli.postgres).await?,
        Command::Scale(args) => scale::run(args, &cli.postgres).await?,
    };
    report.print();
    if let Some(path) = cli.json_out {
        std::fs::write(&path, serde_json::to_string_pretty(&report.json())?)?;
        println!("results written to {}", path.display());
    }
    Ok(())
}
