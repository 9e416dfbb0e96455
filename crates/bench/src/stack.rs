//! The system under test as real processes: a private `nats-server -js`, a
//! fresh Postgres database, and `hookline subscriptions|ingest|delivery`.
//! Everything is killed, and the database dropped, when the `Stack` drops,
//! also on error. The services' logs are kept (and their place printed)
//! after a failure.
//!
//! The processes, ports and the database come from the test kit
//! (`hookline-testkit`), as in the end-to-end tests.

use std::{
    fs::File,
    path::PathBuf,
    process::{Child, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use hookline_testkit::{NatsServer, TestDb, cluster::NatsCluster, free_port, hookline_command, tail};

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
/// before it collects. `GOMEMLIMIT` in the bench's own environment wins.
pub const NATS_GOMEMLIMIT: &str = "192MiB";

fn nats_env() -> Vec<(&'static str, &'static str)> {
    if std::env::var_os("GOMEMLIMIT").is_some() { Vec::new() } else { vec![("GOMEMLIMIT", NATS_GOMEMLIMIT)] }
}

/// Peak resident set size (`VmHWM`) of a process, in MiB.
pub fn peak_rss_mib(pid: u32) -> anyhow::Result<f64> {
    status_mib(pid, "VmHWM:")
}

/// Resident set size now (`VmRSS`) of a process, in MiB.
pub fn rss_mib(pid: u32) -> anyhow::Result<f64> {
    status_mib(pid, "VmRSS:")
}

fn status_mib(pid: u32, field: &str) -> anyhow::Result<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let line = status.lines().find(|l| l.starts_with(field)).with_context(|| format!("no {field}"))?;
    let kib: f64 = line.split_whitespace().nth(1).with_context(|| format!("{field} value"))?.parse()?;
    Ok(kib / 1024.0)
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
    spawned: Instant,
    log: PathBuf,
    child: Child,
}

impl Service {
    pub fn pid(&self) -> u32 {
        self.child.id()
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

    /// Start everything on `nats`.
    pub async fn start_on(nats: Nats, postgres: &str, env: &[(String, String)]) -> anyhow::Result<Self> {
        let dir = std::env::temp_dir().join(format!("hookline-bench-{:08x}", rand::random::<u32>()));
        std::fs::create_dir_all(&dir)?;
        let mut env = env.to_vec();
        if nats == Nats::ClusterR3 {
            env.push(("HOOKLINE_STREAM_REPLICAS".into(), "3".into()));
        }
        let mut s = Self { dir, db: None, nats: None, nats_url: String::new(), services: Vec::new(), env, ok: false };
        s.db = Some(TestDb::create_on(postgres, "hookline_bench").await?);
        // Ready once JetStream answers (on every node: a meta leader is elected).
        let procs = match nats {
            Nats::Single => NatsProcs::Single(NatsServer::start_with_env(&nats_env())?),
            Nats::ClusterR3 => NatsProcs::Cluster(NatsCluster::start()?),
        };
        s.nats_url = match &procs {
            NatsProcs::Single(n) => n.url(),
            NatsProcs::Cluster(c) => c.urls(&(0..NatsCluster::SIZE).collect::<Vec<_>>()),
        };
        s.nats = Some(procs);
        let subscriptions = s.spawn("subscriptions", None, None)?;
        s.services.push(subscriptions);
        s.wait_ready(0).await?;
        let subs_url = s.services[0].grpc_url.clone();
        for role in ["ingest", "delivery"] {
            let svc = s.spawn(role, Some(&subs_url), None)?;
            s.services.push(svc);
        }
        s.wait_ready(1).await?;
        s.wait_ready(2).await?;
        Ok(s)
    }

    /// The stack's database URL.
    pub fn database_url(&self) -> Option<&str> {
        self.db.as_ref().map(TestDb::url)
    }

    /// Start `hookline console` on a free port against this stack's
    /// subscriptions and delivery, with `token` as its operator token (the
    /// services take any caller); returns the console's URL once `/healthz`
    /// answers.
    pub async fn start_console(&mut self, token: &str) -> anyhow::Result<String> {
        let url_of = |role: &str| self.services.iter().find(|s| s.role == role).map(|s| s.grpc_url.clone());
        let subscriptions = url_of("subscriptions").context("no subscriptions service")?;
        let delivery = url_of("delivery").context("no delivery service")?;
        let addr = format!("127.0.0.1:{}", free_port());
        let log = self.dir.join("console.log");
        let mut cmd = hookline_command()?;
        cmd.arg("console")
            .env("HOOKLINE_CONSOLE_ADDR", &addr)
            .env("HOOKLINE_SUBSCRIPTIONS_URL", subscriptions)
            .env("HOOKLINE_DELIVERY_URL", delivery)
            .env("HOOKLINE_OPERATOR_TOKEN", token)
            .env("HOOKLINE_LOG", "warn")
            .env("NO_COLOR", "1");
        let child = cmd
            .stdin(Stdio::null())
            .stdout(File::create(&log)?)
            .stderr(File::options().append(true).open(&log)?)
            .spawn()
            .context("spawning hookline console")?;
        let url = format!("http://{addr}");
        let (ready_after, spawned) = (Duration::ZERO, Instant::now());
        let svc = Service {
            role: "console",
            grpc_url: String::new(),
            http_url: url.clone(),
            ready_after,
            spawned,
            log,
            child,
        };
        self.services.push(svc);
        let client = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if matches!(client.get(format!("{url}/healthz")).send().await, Ok(r) if r.status() == 200) {
                return Ok(url);
            }
            self.check_alive()?;
            if Instant::now() > deadline {
                bail!("hookline console not up within 30 s");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Every nats-server process of the stack.
    pub fn nats_pids(&self) -> Vec<u32> {
        match &self.nats {
            Some(NatsProcs::Single(n)) => n.pid().into_iter().collect(),
            Some(NatsProcs::Cluster(c)) => (0..NatsCluster::SIZE).filter_map(|i| c.pid(i)).collect(),
            None => Vec::new(),
        }
    }

    /// Start `hookline role`; on `addrs` (gRPC, HTTP) when given, else on free ports.
    fn spawn(
        &self,
        role: &'static str,
        subscriptions_url: Option<&str>,
        addrs: Option<(String, String)>,
    ) -> anyhow::Result<Service> {
        let (grpc, http) =
            addrs.unwrap_or_else(|| (format!("127.0.0.1:{}", free_port()), format!("127.0.0.1:{}", free_port())));
        let log = self.dir.join(format!("{role}.log"));
        let db = self.db.as_ref().context("no database")?;
        let mut cmd = hookline_command()?;
        cmd.arg(role)
            .env("HOOKLINE_NATS_URL", &self.nats_url)
            .env("HOOKLINE_DATABASE_URL", db.url())
            .env("HOOKLINE_GRPC_ADDR", &grpc)
            .env("HOOKLINE_HTTP_ADDR", &http)
            .env("HOOKLINE_DELIVERY_ALLOW_CIDRS", "127.0.0.0/8")
            // The benchmark publishes as fast as it can: no per-tenant rate limit.
            .env("HOOKLINE_TENANT_RATE", "0")
            // Its gRPC clients carry no token: loopback-only scratch stack.
            .env("HOOKLINE_ALLOW_UNAUTHENTICATED", "true")
            .env("HOOKLINE_LOG", "warn")
            .env("NO_COLOR", "1");
        if let Some(url) = subscriptions_url {
            cmd.env("HOOKLINE_SUBSCRIPTIONS_URL", url);
        }
        // `role:KEY` applies to that service only.
        for (k, v) in &self.env {
            match k.split_once(':') {
                Some((r, key)) if r == role => cmd.env(key, v),
                Some(_) => &mut cmd,
                None => cmd.env(k, v),
            };
        }
        let child = cmd
            .stdin(Stdio::null())
            .stdout(File::create(&log)?)
            .stderr(File::options().append(true).open(&log)?)
            .spawn()
            .with_context(|| format!("spawning hookline {role}"))?;
        let (grpc_url, http_url) = (format!("http://{grpc}"), format!("http://{http}"));
        Ok(Service { role, grpc_url, http_url, ready_after: Duration::ZERO, spawned: Instant::now(), log, child })
    }

    /// Stop service `i` (SIGKILL) and start it again on the same addresses;
    /// returns once it is ready, with how long that took in
    /// [`Service::ready_after`].
    pub async fn restart(&mut self, i: usize) -> anyhow::Result<()> {
        let svc = &mut self.services[i];
        let _ = svc.child.kill();
        let _ = svc.child.wait();
        let addrs = (svc.grpc_url.replace("http://", ""), svc.http_url.replace("http://", ""));
        let subs = (svc.role != "subscriptions").then(|| self.services[0].grpc_url.clone());
        let fresh = self.spawn(self.services[i].role, subs.as_deref(), Some(addrs))?;
        self.services[i] = fresh;
        self.wait_ready(i).await
    }

    async fn wait_ready(&mut self, i: usize) -> anyhow::Result<()> {
        let client = reqwest::Client::new();
        let svc = &mut self.services[i];
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let ready = client.get(format!("{}/readyz", svc.http_url)).send().await;
            if matches!(ready, Ok(r) if r.status() == 200) {
                svc.ready_after = svc.spawned.elapsed();
                return Ok(());
            }
            if let Some(status) = svc.child.try_wait()? {
                bail!("hookline {} exited with {status}:\n{}", svc.role, tail(&svc.log, 30));
            }
            if Instant::now() > deadline {
                bail!("hookline {} not ready within 60 s:\n{}", svc.role, tail(&svc.log, 30));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Fail if a service died meanwhile.
    pub fn check_alive(&mut self) -> anyhow::Result<()> {
        for svc in &mut self.services {
            if let Some(status) = svc.child.try_wait()? {
                bail!("hookline {} exited with {status}:\n{}", svc.role, tail(&svc.log, 30));
            }
        }
        Ok(())
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
            let _ = svc.child.kill();
            let _ = svc.child.wait();
        }
        match &mut self.nats {
            Some(NatsProcs::Single(n)) => n.kill(),
            Some(NatsProcs::Cluster(c)) => c.kill_all(),
            None => {}
        }
    }
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
