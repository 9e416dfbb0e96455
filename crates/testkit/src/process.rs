//! The `hookline` binary as a child process: a hermetic environment, ports
//! the process binds itself (port 0, read back from its log), its log in a
//! file, SIGKILL, SIGTERM and restart on the same ports. Readiness is asked
//! through a probe the caller brings (the tests speak TLS to it, the bench
//! uses its HTTP client), so the kit holds no HTTP stack.

use std::{
    future::Future,
    io::Write as _,
    net::SocketAddr,
    path::PathBuf,
    process::{Child, Command, ExitStatus, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};

use crate::{append, hookline_command, sigkill, tail, temp_dir};

/// The listen addresses the kit fills in, and the label of the log line a
/// process prints once it listens there (`<label> listening on <address>`).
const LISTENERS: [(&str, &str); 3] =
    [("HOOKLINE_GRPC_ADDR", "gRPC"), ("HOOKLINE_HTTP_ADDR", "HTTP"), ("HOOKLINE_CONSOLE_ADDR", "console")];

/// The listeners a `hookline <mode>` process has.
fn listeners(mode: &str) -> &'static [&'static str] {
    match mode {
        "dev" => &["HOOKLINE_GRPC_ADDR", "HOOKLINE_HTTP_ADDR", "HOOKLINE_CONSOLE_ADDR"],
        "console" => &["HOOKLINE_CONSOLE_ADDR"],
        _ => &["HOOKLINE_GRPC_ADDR", "HOOKLINE_HTTP_ADDR"],
    }
}

/// Builds a `hookline <mode>` child process with a hermetic environment:
/// inherited `HOOKLINE_*` variables are dropped, and the process listens on
/// ports the system picks (port 0), which the kit reads from its log.
pub struct Builder {
    mode: String,
    env: Vec<(String, String)>,
    log: Option<PathBuf>,
}

impl Builder {
    /// `mode` is the subcommand: `dev`, `ingest`, `subscriptions`, `delivery`
    /// or `console` (the webhooks console alone; give it
    /// `HOOKLINE_SUBSCRIPTIONS_URL`, `HOOKLINE_DELIVERY_URL` and
    /// `HOOKLINE_OPERATOR_TOKEN`).
    pub fn new(mode: &str) -> Self {
        Self { mode: mode.into(), env: Vec::new(), log: None }
    }

    /// Set an environment variable (the last value for a key wins).
    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.retain(|(k, _)| k != key);
        self.env.push((key.into(), value.into()));
        self
    }

    /// [`env`](Self::env) for each pair, in order.
    pub fn envs(self, pairs: &[(&str, &str)]) -> Self {
        pairs.iter().fold(self, |b, (k, v)| b.env(k, v))
    }

    /// Write the process's output to `path`, which outlives the process
    /// (by default the log sits in a temp dir removed on drop).
    pub fn log_to(mut self, path: PathBuf) -> Self {
        self.log = Some(path);
        self
    }

    /// Start, without waiting for readiness (see [`Process::wait_ready_with`]).
    /// The listen addresses of the mode (`HOOKLINE_GRPC_ADDR`/`HOOKLINE_HTTP_ADDR`,
    /// and for `dev` and `console` `HOOKLINE_CONSOLE_ADDR`) default to
    /// `127.0.0.1:0`: the process binds free ports and the kit reads them
    /// from its `… listening on <address>` log lines (so `HOOKLINE_LOG` must
    /// keep `hookline::serve` at `info` unless all are given), then keeps
    /// them for a restart. `HOOKLINE_LOG` defaults to `info,hookline=debug`,
    /// `NO_COLOR` to `1` and, for the separate services,
    /// `HOOKLINE_ALLOW_UNAUTHENTICATED` to `true` (set it to `false` to see a
    /// service refuse to start without a token).
    pub fn start(self) -> anyhow::Result<Process> {
        let dir = temp_dir("hookline-proc");
        let log = self.log.unwrap_or_else(|| dir.join("hookline.log"));
        let mut p = Process { mode: self.mode, env: self.env, log, log_from: 0, dir, child: None };
        p.set_default("HOOKLINE_LOG", "info,hookline=debug");
        p.set_default("NO_COLOR", "1"); // plain text in the log file, greppable by tests
        // The separate services refuse to start without an operator token;
        // tests that are not about authentication opt out explicitly.
        if p.mode != "dev" && p.mode != "console" {
            p.set_default("HOOKLINE_ALLOW_UNAUTHENTICATED", "true");
        }
        for key in listeners(&p.mode) {
            p.set_default(key, "127.0.0.1:0");
        }
        p.respawn_unready()?;
        Ok(p)
    }
}

/// A running `hookline` process with its log in a file; killed on drop
/// (which prints the log's tail if the thread is panicking, and otherwise
/// removes the process's temp dir).
pub struct Process {
    mode: String,
    env: Vec<(String, String)>,
    dir: PathBuf,
    log: PathBuf,
    /// Where the running incarnation's output starts in `log`.
    log_from: usize,
    child: Option<Child>,
}

impl Process {
    /// The subcommand it runs.
    pub fn mode(&self) -> &str {
        &self.mode
    }

    /// The value of environment variable `key` it runs with (a listen
    /// address once learned: `host:port`); empty when unset.
    pub fn var(&self, key: &str) -> &str {
        self.env.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str()).unwrap_or_default()
    }

    fn set(&mut self, key: &str, value: &str) {
        self.env.retain(|(k, _)| k != key);
        self.env.push((key.into(), value.into()));
    }

    fn set_default(&mut self, key: &str, value: &str) {
        if !self.env.iter().any(|(k, _)| k == key) {
            self.set(key, value);
        }
    }

    fn scheme(&self) -> &'static str {
        if self.var("HOOKLINE_TLS_CERT").is_empty() { "http" } else { "https" }
    }

    /// `http://<HOOKLINE_GRPC_ADDR>` (`https://` when HOOKLINE_TLS_CERT is set).
    pub fn grpc_url(&self) -> String {
        format!("{}://{}", self.scheme(), self.var("HOOKLINE_GRPC_ADDR"))
    }

    /// `http://<HOOKLINE_HTTP_ADDR>` (health and metrics; `https://` with TLS).
    pub fn http_url(&self) -> String {
        format!("{}://{}", self.scheme(), self.var("HOOKLINE_HTTP_ADDR"))
    }

    /// `http://<HOOKLINE_CONSOLE_ADDR>`: the webhooks console of a `dev` or
    /// `console` process.
    pub fn console_url(&self) -> String {
        format!("http://{}", self.var("HOOKLINE_CONSOLE_ADDR"))
    }

    /// `host:port` of the health/metrics listener.
    pub fn http_addr(&self) -> String {
        self.var("HOOKLINE_HTTP_ADDR").to_owned()
    }

    /// The URL that answers 200 once the process is ready: `/readyz` on the
    /// health listener (the console alone: its own `/healthz`).
    pub fn ready_url(&self) -> String {
        match self.mode.as_str() {
            "console" => format!("{}/healthz", self.console_url()),
            _ => format!("{}/readyz", self.http_url()),
        }
    }

    /// The OS process id, while running.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Everything the process (and its earlier incarnations) wrote to stdout/stderr.
    pub fn log_contents(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The last `n` lines of its log.
    pub fn tail(&self, n: usize) -> String {
        tail(&self.log, n)
    }

    /// Start (again) without waiting for readiness, with the same
    /// environment and ports, appending to the same log; kills a
    /// still-running incarnation first.
    pub fn respawn_unready(&mut self) -> anyhow::Result<()> {
        self.kill9();
        let mut log = append(&self.log)?;
        self.log_from = usize::try_from(log.metadata()?.len())?;
        writeln!(log, "===== hookline {} starting =====", self.mode)?;
        let mut cmd = hookline_command()?;
        let child = cmd
            .arg(&self.mode)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("spawning {:?}", cmd.get_program()))?;
        self.child = Some(child);
        Ok(())
    }

    /// Wait up to `timeout` until `ready(url)` is true for [`ready_url`](Self::ready_url)
    /// (the caller's HTTP client: true on a 200); learns the ports a process
    /// started on port 0 listens on (see [`Builder::start`]). Fails at once
    /// if the process exits.
    pub async fn wait_ready_with<F, Fut>(&mut self, timeout: Duration, mut ready: F) -> anyhow::Result<()>
    where
        F: FnMut(String) -> Fut,
        Fut: Future<Output = bool>,
    {
        // The console alone has no health listener: its own `/healthz` says it is up.
        let probe_key = if self.mode == "console" { "HOOKLINE_CONSOLE_ADDR" } else { "HOOKLINE_HTTP_ADDR" };
        let deadline = Instant::now() + timeout;
        loop {
            if self.learn_port(probe_key)? && ready(self.ready_url()).await {
                // Every other listener is bound before the process answers 200.
                for key in listeners(&self.mode) {
                    if !self.learn_port(key)? {
                        bail!(
                            "hookline {} is ready but logged no listening line for {key}:\n{}",
                            self.mode,
                            self.tail(40)
                        );
                    }
                }
                return Ok(());
            }
            if let Some(status) = self.child.as_mut().context("not started")?.try_wait()? {
                self.child = None;
                bail!("hookline {} exited with {status} before ready:\n{}", self.mode, self.tail(40));
            }
            if Instant::now() > deadline {
                self.kill9();
                if self.var(probe_key).ends_with(":0") {
                    bail!(
                        "hookline {} logged no listening line for {probe_key} within {timeout:?} (does \
                         HOOKLINE_LOG hide hookline::serve at info?):\n{}",
                        self.mode,
                        self.tail(40)
                    );
                }
                bail!("hookline {} not ready within {timeout:?}:\n{}", self.mode, self.tail(40));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Wait up to `timeout` until the running incarnation has logged the
    /// address of listener `key` (`HOOKLINE_HTTP_ADDR`, ...), which it does
    /// before it is ready: for probing a process that waits for a dependency.
    pub async fn wait_listening(&mut self, key: &str, timeout: Duration) -> anyhow::Result<String> {
        let deadline = Instant::now() + timeout;
        while !self.learn_port(key)? {
            self.check_alive()?;
            if Instant::now() > deadline {
                bail!(
                    "hookline {} logged no listening line for {key} within {timeout:?}:\n{}",
                    self.mode,
                    self.tail(40)
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(self.var(key).to_owned())
    }

    /// Whether the address in `key` is known: set with a port, or bound on
    /// port 0 and named by the running incarnation's `<label> listening on
    /// <address>` log line (text or JSON). A learned address replaces the 0,
    /// so a respawn binds the same port again.
    fn learn_port(&mut self, key: &str) -> anyhow::Result<bool> {
        if !self.var(key).ends_with(":0") {
            return Ok(true);
        }
        let label = LISTENERS.iter().find(|(k, _)| *k == key).map(|(_, l)| *l).context("not a listener")?;
        let marker = format!("{label} listening on ");
        let log = std::fs::read(&self.log).unwrap_or_default();
        let log = String::from_utf8_lossy(log.get(self.log_from..).unwrap_or_default());
        let Some((_, rest)) = log.split_once(&marker) else { return Ok(false) };
        let addr = rest.split(|c: char| c.is_whitespace() || c == '"').next().unwrap_or_default();
        let addr: SocketAddr = addr.parse().with_context(|| format!("{key}: `{marker}{addr}` in the log"))?;
        self.set(key, &addr.to_string());
        Ok(true)
    }

    /// Fail if the process has exited (naming its status and log tail).
    pub fn check_alive(&mut self) -> anyhow::Result<()> {
        if let Some(status) = self.child.as_mut().context("not running")?.try_wait()? {
            bail!("hookline {} exited with {status}:\n{}", self.mode, self.tail(30));
        }
        Ok(())
    }

    /// SIGKILL: no graceful anything; simulates a crash.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            sigkill(&mut c);
        }
    }

    /// SIGTERM: ask for a graceful stop (see [`wait_exit`](Self::wait_exit)).
    pub fn terminate(&mut self) {
        if let Some(c) = &self.child {
            let _ = Command::new("kill").args(["-TERM", &c.id().to_string()]).status();
        }
    }

    /// Wait up to `timeout` for the process to exit; `None` if it is still
    /// running (or was not running).
    pub async fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.as_mut()?.try_wait().ok()? {
                self.child = None;
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill9();
        if std::thread::panicking() {
            eprintln!("--- hookline {} log ({}) ---\n{}", self.mode, self.log.display(), self.tail(60));
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}
