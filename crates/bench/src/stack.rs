//! The system under test as real processes: a private `nats-server -js`, a
//! fresh Postgres database, and `hookline subscriptions|ingest|delivery`.
//! Everything is killed, and the database dropped, when the `Stack` drops,
//! also on error. The services' logs are kept (and their place printed)
//! after a failure.
//!
//! The processes (on ports they bind themselves), the nats-servers and the
//! database come from the test kit (`hookline-testkit`), as in the
//! end-to-end tests.

use std::{
    path::PathBuf,
    time::{Duration, Instant},
};

use anyhow::Context;
use hookline_testkit::{
    NatsServer, TestDb,
    cluster::NatsCluster,
    process::{Builder, Process},
    status_mib,
};

/// What the services run on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Nats {
    /// One `nats-server -js`; streams with one replica.
    Single,
    /// Three routed nodes on loopback, every stream with three replicas
    /// (`HOOKLINE_STREAM_REPLICAS=3`), the services given all three URLs.
    ClusterR3,
}

impl Nats {
    pub fn label(self) -> &'static str {
        match self {
            Nats::Single => "single node, R1",
            Nats::ClusterR3 => "3-node cluster, R3",
        }
    }
}

/// The Go soft memory limit the bench gives its single nats-server, as
/// deploy/ recommends operators do (README.md, "Memory of nats-server"):
/// without it the Go runtime lets the heap grow to twice the live data
/// before it collects. This is the compose files' value, which `delivery`
/// and `log` run with. `GOMEMLIMIT` in the bench's own environment wins.
pub const NATS_GOMEMLIMIT: &str = "192MiB";

/// The limit `scale` runs nats-server with: what README.md sizes for
/// 10,000 tenants. Their live heap alone reaches 200-480 MiB under load
/// (BENCHMARKS.md), so below it Go collects back to back and takes
/// nats-server's CPU from the deliveries; the bench would then measure a
/// deployment sized against our own advice.
pub const NATS_GOMEMLIMIT_AT_SCALE: &str = "512MiB";

/// The `GOMEMLIMIT` a single nats-server runs with when the bench asks for
/// `wanted`: the bench's own environment wins.
fn nats_gomemlimit(wanted: &str) -> String {
    std::env::var("GOMEMLIMIT").unwrap_or_else(|_| wanted.into())
}

/// Peak resident set size (`VmHWM`) of a process, in MiB.
pub fn peak_rss_mib(pid: u32) -> anyhow::Result<f64> {
    status_mib(pid, "VmHWM:")
}

/// Resident set size now (`VmRSS`) of a process, in MiB.
pub fn rss_mib(pid: u32) -> anyhow::Result<f64> {
    status_mib(pid, "VmRSS:")
}

/// CPU time (user + system) of a process so far, in seconds (100 ticks/s).
pub fn cpu_secs(pid: &str) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<f64> = rest.split_whitespace().skip(11).take(2).filter_map(|x| x.parse().ok()).collect();
    f.iter().sum::<f64>() / 100.0
}

/// Machine-wide (busy, total) CPU ticks from `/proc/stat`.
pub fn machine_ticks() -> (f64, f64) {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let f: Vec<f64> =
        stat.lines().next().unwrap_or_default().split_whitespace().skip(1).filter_map(|x| x.parse().ok()).collect();
    let idle = f.get(3).copied().unwrap_or(0.0) + f.get(4).copied().unwrap_or(0.0);
    let total: f64 = f.iter().take(8).sum();
    (total - idle, total)
}

pub struct Service {
    pub role: &'static str,
    pub grpc_url: String,
    pub http_url: String,
    /// How long the latest start took until `/readyz` answered 200.
    pub ready_after: Duration,
    /// When the latest start began.
    started: Instant,
    process: Process,
}

impl Service {
    /// A service just started; its URLs are known once [`wait_ready`] returns.
    fn new(role: &'static str, process: Process) -> Self {
        let (grpc_url, http_url) = (String::new(), String::new());
        Self { role, grpc_url, http_url, ready_after: Duration::ZERO, started: Instant::now(), process }
    }

    pub fn pid(&self) -> u32 {
        self.process.pid().unwrap_or_default()
    }
}

/// The nats-server(s) of a [`Stack`].
enum NatsProcs {
    Single(NatsServer),
    Cluster(NatsCluster),
}

pub struct Stack {
    /// The services' logs.
    dir: PathBuf,
    db: Option<TestDb>,
    nats: Option<NatsProcs>,
    pub nats_url: String,
    /// The single nats-server's Go profiler (`--profile`), where the scale
    /// bench reads its heap and collector; none for a cluster.
    pub nats_profile_url: Option<String>,
    /// The single nats-server's `GOMEMLIMIT`; none for a cluster.
    pub nats_gomemlimit: Option<String>,
    pub services: Vec<Service>,
    env: Vec<(String, String)>,
    ok: bool,
}

impl Stack {
    /// Start everything on one nats-server; `env` is extra environment for
    /// the services.
    pub async fn start(postgres: &str, env: &[(String, String)]) -> anyhow::Result<Self> {
        Self::start_on(Nats::Single, postgres, env).await
    }

    /// Start everything on one nats-server whose `GOMEMLIMIT` is `limit`
    /// unless the bench's environment names one.
    pub async fn start_with_nats_limit(postgres: &str, env: &[(String, String)], limit: &str) -> anyhow::Result<Self> {
        Self::start_nats(Nats::Single, limit, postgres, env).await
    }

    /// Start everything on `nats`.
    pub async fn start_on(nats: Nats, postgres: &str, env: &[(String, String)]) -> anyhow::Result<Self> {
        Self::start_nats(nats, NATS_GOMEMLIMIT, postgres, env).await
    }

    async fn start_nats(nats: Nats, limit: &str, postgres: &str, env: &[(String, String)]) -> anyhow::Result<Self> {
        let dir = std::env::temp_dir().join(format!("hookline-bench-{:08x}", rand::random::<u32>()));
        std::fs::create_dir_all(&dir)?;
        let mut env = env.to_vec();
        if nats == Nats::ClusterR3 {
            env.push(("HOOKLINE_STREAM_REPLICAS".into(), "3".into()));
        }
        let mut s = Self {
            dir,
            db: None,
            nats: None,
            nats_url: String::new(),
            nats_profile_url: None,
            nats_gomemlimit: None,
            services: Vec::new(),
            env,
            ok: false,
        };
        s.db = Some(TestDb::create_on(postgres, "hookline_bench").await?);
        // Ready once JetStream answers (on every node: a meta leader is elected).
        let procs = match nats {
            Nats::Single => {
                let port = hookline_testkit::free_port().to_string();
                let limit = nats_gomemlimit(limit);
                let server = NatsServer::start_with(&[("GOMEMLIMIT", limit.as_str())], &["--profile", &port])?;
                s.nats_profile_url = Some(format!("http://127.0.0.1:{port}"));
                s.nats_gomemlimit = Some(limit);
                NatsProcs::Single(server)
            }
            Nats::ClusterR3 => NatsProcs::Cluster(NatsCluster::start()?),
        };
        s.nats_url = match &procs {
            NatsProcs::Single(n) => n.url(),
            NatsProcs::Cluster(c) => c.urls(&(0..NatsCluster::SIZE).collect::<Vec<_>>()),
        };
        s.nats = Some(procs);
        let mut subscriptions = s.spawn("subscriptions", None)?;
        wait_ready(&mut subscriptions).await?;
        let subs_url = subscriptions.grpc_url.clone();
        s.services.push(subscriptions);
        // Ingest and delivery start side by side.
        for role in ["ingest", "delivery"] {
            let svc = s.spawn(role, Some(&subs_url))?;
            s.services.push(svc);
        }
        for svc in &mut s.services[1..] {
            wait_ready(svc).await?;
        }
        Ok(s)
    }

    /// The stack's database URL.
    pub fn database_url(&self) -> Option<&str> {
        self.db.as_ref().map(TestDb::url)
    }

    /// Start `hookline console` against this stack's subscriptions and
    /// delivery, with `token` as its operator token (the services take any
    /// caller); returns the console's URL once `/healthz` answers.
    pub async fn start_console(&mut self, token: &str) -> anyhow::Result<String> {
        let url_of = |role: &str| self.services.iter().find(|s| s.role == role).map(|s| s.grpc_url.clone());
        let subscriptions = url_of("subscriptions").context("no subscriptions service")?;
        let delivery = url_of("delivery").context("no delivery service")?;
        let process = Builder::new("console")
            .env("HOOKLINE_SUBSCRIPTIONS_URL", &subscriptions)
            .env("HOOKLINE_DELIVERY_URL", &delivery)
            .env("HOOKLINE_OPERATOR_TOKEN", token)
            .env("HOOKLINE_LOG", QUIET)
            .log_to(self.dir.join("console.log"))
            .start()?;
        let mut svc = Service::new("console", process);
        wait_ready(&mut svc).await?;
        let url = svc.process.console_url();
        self.services.push(svc);
        Ok(url)
    }

    /// Every nats-server process of the stack.
    pub fn nats_pids(&self) -> Vec<u32> {
        match &self.nats {
            Some(NatsProcs::Single(n)) => n.pid().into_iter().collect(),
            Some(NatsProcs::Cluster(c)) => (0..NatsCluster::SIZE).filter_map(|i| c.pid(i)).collect(),
            None => Vec::new(),
        }
    }

    /// Start `hookline role` on ports it binds itself (see [`wait_ready`]).
    fn spawn(&self, role: &'static str, subscriptions_url: Option<&str>) -> anyhow::Result<Service> {
        let db = self.db.as_ref().context("no database")?;
        let mut b = Builder::new(role)
            .env("HOOKLINE_NATS_URL", &self.nats_url)
            .env("HOOKLINE_DATABASE_URL", db.url())
            .env("HOOKLINE_DELIVERY_ALLOW_CIDRS", "127.0.0.0/8")
            // The benchmark publishes as fast as it can: no per-tenant rate limit.
            .env("HOOKLINE_TENANT_RATE", "0")
            // Its gRPC clients carry no token: loopback-only scratch stack.
            .env("HOOKLINE_ALLOW_UNAUTHENTICATED", "true")
            .env("HOOKLINE_LOG", QUIET)
            .log_to(self.dir.join(format!("{role}.log")));
        if let Some(url) = subscriptions_url {
            b = b.env("HOOKLINE_SUBSCRIPTIONS_URL", url);
        }
        // `role:KEY` applies to that service only.
        for (k, v) in &self.env {
            match k.split_once(':') {
                Some((r, key)) if r == role => b = b.env(key, v),
                Some(_) => {}
                None => b = b.env(k, v),
            }
        }
        Ok(Service::new(role, b.start()?))
    }

    /// Stop service `i` (SIGKILL) and start it again on the same ports;
    /// returns once it is ready, with how long that took in
    /// [`Service::ready_after`].
    pub async fn restart(&mut self, i: usize) -> anyhow::Result<()> {
        let svc = &mut self.services[i];
        svc.started = Instant::now();
        svc.process.respawn_unready()?;
        wait_ready(svc).await
    }

    /// Fail if a service died meanwhile.
    pub fn check_alive(&mut self) -> anyhow::Result<()> {
        self.services.iter_mut().try_for_each(|svc| svc.process.check_alive())
    }

    /// Stop everything and drop the database; logs are removed.
    pub async fn finish(mut self) -> anyhow::Result<()> {
        self.kill();
        if let Some(db) = self.db.take() {
            db.close().await?;
        }
        self.ok = true;
        Ok(())
    }

    fn kill(&mut self) {
        for svc in &mut self.services {
            svc.process.kill9();
        }
        match &mut self.nats {
            Some(NatsProcs::Single(n)) => n.kill(),
            Some(NatsProcs::Cluster(c)) => c.kill_all(),
            None => {}
        }
    }
}

/// The services' log level: warnings, and the `… listening on` lines the
/// kit learns their ports from.
const QUIET: &str = "warn,hookline::serve=info";

/// Wait (up to 60 s) until `svc` answers 200 on its readiness URL; record
/// how long its start took and the URLs it listens on.
async fn wait_ready(svc: &mut Service) -> anyhow::Result<()> {
    let client = reqwest::Client::new();
    svc.process
        .wait_ready_with(Duration::from_secs(60), |url| {
            let client = client.clone();
            async move { matches!(client.get(url).send().await, Ok(r) if r.status() == 200) }
        })
        .await?;
    svc.ready_after = svc.started.elapsed();
    svc.grpc_url = svc.process.grpc_url();
    svc.http_url = svc.process.http_url();
    Ok(())
}

impl Drop for Stack {
    fn drop(&mut self) {
        self.kill();
        // The database (TestDb) and the nats-servers drop after this.
        if self.ok {
            let _ = std::fs::remove_dir_all(&self.dir);
        } else {
            eprintln!("hookline-bench: processes stopped; logs kept in {}", self.dir.display());
        }
    }
}
