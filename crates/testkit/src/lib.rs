//! Hookline's test kit: real peers as processes, no mocks. Shared by the
//! end-to-end tests (`hookline-e2e`, which re-exports it and adds HTTP
//! receivers and gRPC clients on the `hookline` processes) and by
//! `hookline-bench`.
//!
//! # Layout
//! * [`free_port`], [`temp_dir`], [`tail`], [`eventually`]: small helpers.
//! * [`find_hookline_bin`], [`hookline_command`]: the `hookline` binary under test.
//! * [`nats`]: [`NatsServer`], a private `nats-server -js` on a port it binds itself.
//! * [`cluster`]: [`cluster::NatsCluster`], three routed nodes on loopback.
//! * [`db`]: [`TestDb`], a scratch database on Postgres, dropped afterwards.
//! * [`process`]: [`process::Process`], `hookline <mode>` as a child process
//!   on ports it binds itself, waited for through the caller's HTTP probe.
//!
//! Client connections (`NatsServer::client`, `NatsCluster::stream_info`, ...)
//! need the `nats-client` feature, so the bench does not build async-nats.

use std::{
    future::Future,
    path::{Path, PathBuf},
    process::{Child, Command},
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};

pub mod cluster;
pub mod db;
pub mod nats;
pub mod process;

pub use db::TestDb;
pub use nats::{NatsServer, nats_server_bin};

// ---------------------------------------------------------------- helpers

/// A loopback port nobody listens on right now, for peers that must be told
/// their address before they start (cluster routes, chromedriver) or that
/// start again on it (a cluster node after a kill); whatever can bind port 0
/// and report it does that instead.
///
/// It lies below the kernel's ephemeral range (`ip_local_port_range`),
/// where port-0 binds and outgoing connections are never given a port: a
/// node killed for a test keeps its port free until it restarts, however
/// many connections the tests running beside it open meanwhile. Each port
/// is handed out once per test process, so two callers never share one.
pub fn free_port() -> u16 {
    static GIVEN: std::sync::Mutex<std::collections::BTreeSet<u16>> =
        std::sync::Mutex::new(std::collections::BTreeSet::new());
    let ephemeral_from = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|r| r.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32_768);
    let from = ephemeral_from.saturating_sub(12_000).max(1_024);
    let span = ephemeral_from.saturating_sub(from).max(1);
    let mut given = GIVEN.lock().unwrap_or_else(|e| e.into_inner());
    for _ in 0..1_000 {
        let port = from + rand::random::<u16>() % span;
        if !given.contains(&port) && std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            given.insert(port);
            return port;
        }
    }
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("binding 127.0.0.1:0").port()
}

/// A fresh, randomly named directory under the system temp dir.
pub fn temp_dir(prefix: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("{prefix}-{:016x}", rand::random::<u64>()));
    std::fs::create_dir_all(&dir).expect("creating a temp dir");
    dir
}

/// The last `n` lines of a log file, for error messages.
pub fn tail(path: &Path, n: usize) -> String {
    let log = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

pub fn append(path: &Path) -> std::io::Result<std::fs::File> {
    std::fs::OpenOptions::new().create(true).append(true).open(path)
}

/// A memory figure of process `pid` from `/proc/<pid>/status` (`field` is
/// `VmRSS:` for resident memory now, `VmHWM:` for its peak), in MiB.
pub fn status_mib(pid: u32, field: &str) -> anyhow::Result<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let line = status.lines().find(|l| l.starts_with(field)).with_context(|| format!("no {field}"))?;
    let kib: f64 = line.split_whitespace().nth(1).with_context(|| format!("{field} value"))?.parse()?;
    Ok(kib / 1024.0)
}

/// SIGKILL (what `Child::kill` sends on Unix) and reap.
pub fn sigkill(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}

/// What an [`eventually`] probe may return: `Option<T>` or `anyhow::Result<Option<T>>`
/// (an `Err` aborts the wait at once).
pub trait Probe<T> {
    /// Normalise to `Result<Option<T>>`.
    fn into_probe(self) -> anyhow::Result<Option<T>>;
}

impl<T> Probe<T> for Option<T> {
    fn into_probe(self) -> anyhow::Result<Option<T>> {
        Ok(self)
    }
}

impl<T> Probe<T> for anyhow::Result<Option<T>> {
    fn into_probe(self) -> anyhow::Result<Option<T>> {
        self
    }
}

/// Poll `f` every 50 ms until it yields `Some`, failing after `timeout` with
/// `what` in the message: asynchronous systems settle, tests must not sleep-and-hope.
pub async fn eventually<T, F, Fut>(timeout: Duration, what: &str, mut f: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future,
    Fut::Output: Probe<T>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f().await.into_probe()? {
            return Ok(v);
        }
        if Instant::now() >= deadline {
            bail!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

// ------------------------------------------------------------- hookline

/// Path of the `hookline` binary: `$HOOKLINE_BIN`, else `hookline` next to
/// the running executable (the bench, in `target/<profile>/`), else next to
/// its directory (a test binary, in `target/<profile>/deps/`).
pub fn find_hookline_bin() -> anyhow::Result<PathBuf> {
    if let Some(p) = std::env::var_os("HOOKLINE_BIN") {
        return Ok(p.into());
    }
    let exe = std::env::current_exe()?;
    let dir = exe.parent().context("the executable has no directory")?;
    let beside = dir.join("hookline");
    if beside.exists() {
        return Ok(beside);
    }
    let bin = dir.parent().context("the executable has no grandparent directory")?.join("hookline");
    if !bin.exists() {
        bail!(
            "{} is missing: build it first (cargo build --bin hookline, or --release for the bench) or set HOOKLINE_BIN",
            bin.display()
        );
    }
    Ok(bin)
}

/// [`find_hookline_bin`], panicking with its message (for `Command::new` in tests).
pub fn hookline_bin() -> PathBuf {
    find_hookline_bin().unwrap_or_else(|e| panic!("{e:#}"))
}

/// `hookline` ([`find_hookline_bin`]) as a command with no inherited
/// `HOOKLINE_*` variable, so a developer's shell cannot change what a test
/// or a benchmark runs.
pub fn hookline_command() -> anyhow::Result<Command> {
    let mut cmd = Command::new(find_hookline_bin()?);
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("HOOKLINE_") {
            cmd.env_remove(k);
        }
    }
    Ok(cmd)
}
