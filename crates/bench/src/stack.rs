//! The system under test as real processes: a private `nats-server -js`, a
//! fresh Postgres database, and `hookline subscriptions|ingest|delivery`.
//! Everything is killed, and the database dropped, when the `Stack` drops,
//! also on error. Logs are kept (and their place printed) after a failure.

use std::{
    fs::File,
    net::TcpListener,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use sqlx::Connection;

/// The nats-server to run: `$HOOKLINE_NATS_SERVER` (what `scripts/test.sh`
/// installs, a current release), else Debian's, else the one on `PATH`.
fn nats_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("HOOKLINE_NATS_SERVER") {
        return PathBuf::from(p);
    }
    let debian = Path::new("/usr/sbin/nats-server");
    if debian.exists() { debian.to_owned() } else { PathBuf::from("nats-server") }
}

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

pub fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn tail(path: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// The `hookline` binary: `$HOOKLINE_BIN`, or next to this executable.
fn hookline_bin() -> anyhow::Result<PathBuf> {
    let bin = match std::env::var_os("HOOKLINE_BIN") {
        Some(p) => PathBuf::from(p),
        None => std::env::current_exe()?.parent().context("executable has no directory")?.join("hookline"),
    };
    if !bin.exists() {
        bail!("{} not found: build it with `cargo build --release -p hookline` or set HOOKLINE_BIN", bin.display());
    }
    Ok(bin)
}

/// Peak resident set size (`VmHWM`) of a process, in MiB.
pub fn peak_rss_mib(pid: u32) -> anyhow::Result<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).context("no VmHWM")?;
    let kib: f64 = line.split_whitespace().nth(1).context("VmHWM value")?.parse()?;
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

/// Create a scratch database `<prefix>_<random>` on `server`; returns its name.
pub async fn create_database(server: &str, prefix: &str) -> anyhow::Result<String> {
    let name = format!("{prefix}_{:016x}", rand::random::<u64>());
    let mut admin = sqlx::PgConnection::connect(&format!("{server}/postgres"))
        .await
        .with_context(|| format!("connecting to Postgres at {server}"))?;
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}"))).execute(&mut admin).await?;
    admin.close().await?;
    Ok(name)
}

/// Drop a scratch database, disconnecting its sessions.
pub async fn drop_database(server: &str, name: &str) -> anyhow::Result<()> {
    let mut admin = sqlx::PgConnection::connect(&format!("{server}/postgres")).await?;
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")))
        .execute(&mut admin)
        .await?;
    admin.close().await?;
    Ok(())
}

pub struct Service {
    pub role: &'static str,
    pub grpc_url: String,
    pub http_url: String,
    log: PathBuf,
    child: Child,
}

impl Service {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

pub struct Stack {
    dir: PathBuf,
    postgres: String,
    db: Option<String>,
    nats: Vec<Child>,
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
        let mut s = Self {
            dir,
            postgres: postgres.into(),
            db: None,
            nats: Vec::new(),
            nats_url: String::new(),
            services: Vec::new(),
            env,
            ok: false,
        };
        s.db = Some(create_database(postgres, "hookline_bench").await?);
        match nats {
            Nats::Single => s.start_nats()?,
            Nats::ClusterR3 => s.start_nats_cluster(3)?,
        }
        let subscriptions = s.spawn("subscriptions", None)?;
        s.services.push(subscriptions);
        s.wait_ready(0).await?;
        let subs_url = s.services[0].grpc_url.clone();
        for role in ["ingest", "delivery"] {
            let svc = s.spawn(role, Some(&subs_url))?;
            s.services.push(svc);
        }
        s.wait_ready(1).await?;
        s.wait_ready(2).await?;
        Ok(s)
    }

    fn start_nats(&mut self) -> anyhow::Result<()> {
        let port = free_port()?;
        self.spawn_nats("nats", port, &[])?;
        self.nats_url = format!("nats://127.0.0.1:{port}");
        self.wait_nats_ready("nats", "Server is ready")
    }

    /// `n` nodes routed to each other; ready once JetStream has a meta leader.
    fn start_nats_cluster(&mut self, n: usize) -> anyhow::Result<()> {
        let ports: Vec<(u16, u16)> = (0..n).map(|_| Ok((free_port()?, free_port()?))).collect::<anyhow::Result<_>>()?;
        let routes: Vec<String> = ports.iter().map(|(_, route)| format!("nats://127.0.0.1:{route}")).collect();
        for (i, (client, route)) in ports.iter().enumerate() {
            let others: Vec<&str> =
                routes.iter().enumerate().filter(|(j, _)| *j != i).map(|(_, r)| r.as_str()).collect();
            let name = format!("n{i}");
            let cluster = format!("nats://127.0.0.1:{route}");
            let args =
                ["-n", &name, "--cluster_name", "hookline-bench", "--cluster", &cluster, "--routes", &others.join(",")];
            self.spawn_nats(&format!("nats-{i}"), *client, &args)?;
        }
        self.nats_url = ports.iter().map(|(c, _)| format!("nats://127.0.0.1:{c}")).collect::<Vec<_>>().join(",");
        // The meta leader is elected once the nodes see each other.
        for i in 0..n {
            // "Self is new JetStream cluster metadata leader" on the leader,
            // "JetStream cluster new metadata leader: ..." on the others.
            self.wait_nats_ready(&format!("nats-{i}"), "metadata leader")?;
        }
        Ok(())
    }

    fn spawn_nats(&mut self, name: &str, port: u16, extra: &[&str]) -> anyhow::Result<()> {
        let child = Command::new(nats_bin())
            .args(["-js", "-a", "127.0.0.1", "-p", &port.to_string(), "-sd"])
            .arg(self.dir.join(format!("{name}-store")))
            .args(extra)
            .stdin(Stdio::null())
            .stdout(File::create(self.dir.join(format!("{name}.log")))?)
            .stderr(File::create(self.dir.join(format!("{name}.err")))?)
            .spawn()
            .with_context(|| format!("starting {}", nats_bin().display()))?;
        self.nats.push(child);
        Ok(())
    }

    /// Wait (up to 20 s) until the node's log (stderr) says `marker`.
    fn wait_nats_ready(&mut self, name: &str, marker: &str) -> anyhow::Result<()> {
        let err = self.dir.join(format!("{name}.err"));
        let deadline = Instant::now() + Duration::from_secs(20);
        while !std::fs::read_to_string(&err).unwrap_or_default().contains(marker) {
            for node in &mut self.nats {
                if let Some(status) = node.try_wait()? {
                    bail!("nats-server exited with {status}:\n{}", tail(&err, 20));
                }
            }
            if Instant::now() > deadline {
                bail!("{name} did not log `{marker}` within 20 s:\n{}", tail(&err, 20));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }

    /// Every nats-server process of the stack.
    pub fn nats_pids(&self) -> Vec<u32> {
        self.nats.iter().map(Child::id).collect()
    }

    fn spawn(&self, role: &'static str, subscriptions_url: Option<&str>) -> anyhow::Result<Service> {
        let (grpc, http) = (format!("127.0.0.1:{}", free_port()?), format!("127.0.0.1:{}", free_port()?));
        let log = self.dir.join(format!("{role}.log"));
        let db = self.db.as_deref().context("no database")?;
        let mut cmd = Command::new(hookline_bin()?);
        for (k, _) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("HOOKLINE_") {
                cmd.env_remove(k);
            }
        }
        cmd.arg(role)
            .env("HOOKLINE_NATS_URL", &self.nats_url)
            .env("HOOKLINE_DATABASE_URL", format!("{}/{db}", self.postgres))
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
        Ok(Service { role, grpc_url: format!("http://{grpc}"), http_url: format!("http://{http}"), log, child })
    }

    async fn wait_ready(&mut self, i: usize) -> anyhow::Result<()> {
        let client = reqwest::Client::new();
        let svc = &mut self.services[i];
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let ready = client.get(format!("{}/readyz", svc.http_url)).send().await;
            if matches!(ready, Ok(r) if r.status() == 200) {
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
            drop_database(&self.postgres, &db).await?;
        }
        self.ok = true;
        Ok(())
    }

    fn kill(&mut self) {
        for svc in &mut self.services {
            let _ = svc.child.kill();
            let _ = svc.child.wait();
        }
        for mut nats in self.nats.drain(..) {
            let _ = nats.kill();
            let _ = nats.wait();
        }
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        self.kill();
        if let Some(db) = self.db.take() {
            // No runtime in a destructor: best effort through psql.
            let _ = Command::new("psql")
                .args(["-d", &format!("{}/postgres", self.postgres), "-qc"])
                .arg(format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)"))
                .env("PGCONNECT_TIMEOUT", "5")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
        if self.ok {
            let _ = std::fs::remove_dir_all(&self.dir);
        } else {
            eprintln!("hookline-bench: processes stopped; logs kept in {}", self.dir.display());
        }
    }
}
