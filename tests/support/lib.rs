//! Test kit for Hookline's end-to-end tests: real peers, no mocks.
//!
//! * [`NatsServer`]: a private `nats-server -js` on a free port with a temporary store.
//! * [`TestDb`]: a fresh database on the local Postgres, dropped afterwards.
//! * [`Receiver`]: a loopback HTTP server that records requests and answers from a script.
//! * [`HooklineBuilder`] / [`HooklineProc`]: the real `hookline` binary as a child process.
//! * [`verify_standard_webhook`]: an independent Standard Webhooks verifier.

use std::{
    collections::VecDeque,
    future::Future,
    net::TcpListener as StdListener,
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Stdio},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use axum::{Router, body::Bytes, extract::State, http::HeaderMap, http::StatusCode, routing::post};
use base64::{Engine, engine::general_purpose::STANDARD as B64};
use hmac::{Hmac, Mac};
use hookline_proto::{
    ingest::v1::ingest_service_client::IngestServiceClient,
    subscriptions::v1::subscription_service_client::SubscriptionServiceClient,
};
use sha2::Sha256;
use tokio::{io::AsyncReadExt, io::AsyncWriteExt, net::TcpStream};
use tonic::transport::Channel;

/// A port nobody listens on right now.
pub fn free_port() -> u16 {
    StdListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn temp_dir(prefix: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("{prefix}-{:016x}", rand::random::<u64>()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn kill(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}

/// Poll `f` every 50 ms until it yields `Some`, or fail after `timeout`
/// saying what was awaited.
pub async fn eventually<T, F, Fut>(timeout: Duration, what: &str, mut f: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<Option<T>>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f().await? {
            return Ok(v);
        }
        if Instant::now() > deadline {
            bail!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A private nats-server with JetStream; killed and its store removed on drop.
pub struct NatsServer {
    port: u16,
    dir: PathBuf,
    child: Option<Child>,
}

impl NatsServer {
    pub fn start() -> anyhow::Result<Self> {
        let mut s = Self { port: free_port(), dir: temp_dir("hookline-nats"), child: None };
        s.spawn()?;
        Ok(s)
    }

    fn spawn(&mut self) -> anyhow::Result<()> {
        let bin = if Path::new("/usr/sbin/nats-server").exists() { "/usr/sbin/nats-server" } else { "nats-server" };
        let child = Command::new(bin)
            .args(["-js", "-a", "127.0.0.1", "-p", &self.port.to_string(), "-sd"])
            .arg(self.dir.join("store"))
            .arg("-l")
            .arg(self.dir.join("nats.log"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting nats-server (apt-get install nats-server)")?;
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            if Instant::now() > deadline {
                bail!("nats-server did not listen on {} within 10 s", self.port);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        std::thread::sleep(Duration::from_millis(100));
        Ok(())
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub async fn client(&self) -> async_nats::Client {
        async_nats::connect(self.url()).await.unwrap()
    }

    /// SIGKILL, no flush.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            kill(&mut c);
        }
    }

    /// Start again on the same port with the same store.
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

/// A fresh database on the local Postgres (127.0.0.1:5432, user postgres).
pub struct TestDb {
    name: String,
    url: String,
}

const PG_ADMIN: &str = "postgres://postgres@127.0.0.1:5432/postgres";

impl TestDb {
    pub async fn create() -> anyhow::Result<Self> {
        let name = format!("hookline_test_{:016x}", rand::random::<u64>());
        let pool = sqlx::PgPool::connect(PG_ADMIN).await.context("connecting to Postgres on 127.0.0.1:5432")?;
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}"))).execute(&pool).await?;
        pool.close().await;
        Ok(Self { url: format!("postgres://postgres@127.0.0.1:5432/{name}"), name })
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    pub async fn pool(&self) -> sqlx::PgPool {
        sqlx::PgPool::connect(&self.url).await.unwrap()
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let _ = Command::new("psql")
            .args(["-h", "127.0.0.1", "-U", "postgres", "-d", "postgres", "-qc"])
            .arg(format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// One scripted answer of a [`Receiver`].
#[derive(Debug, Clone, Copy)]
pub struct Reply {
    pub status: u16,
    pub delay: Duration,
}

/// One request a [`Receiver`] got.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub path: String,
    /// Lower-case names.
    pub headers: Vec<(String, String)>,
    pub body: Bytes,
    pub received_at: Instant,
}

impl Recorded {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    /// Check the Standard Webhooks signature with `secret`.
    pub fn verify(&self, secret: &str) -> bool {
        match (self.header("webhook-id"), self.header("webhook-timestamp"), self.header("webhook-signature")) {
            (Some(id), Some(ts), Some(sig)) => verify_standard_webhook(secret, id, ts, &self.body, sig),
            _ => false,
        }
    }
}

#[derive(Default)]
struct ReceiverState {
    script: VecDeque<Reply>,
    default: Option<Reply>,
    requests: Vec<Recorded>,
}

/// A loopback HTTP receiver that records every request.
pub struct Receiver {
    port: u16,
    state: Arc<Mutex<ReceiverState>>,
    server: tokio::task::JoinHandle<()>,
}

async fn receive(
    State(state): State<Arc<Mutex<ReceiverState>>>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let reply = {
        let mut s = state.lock().unwrap();
        s.script.pop_front().or(s.default).unwrap_or(Reply { status: 200, delay: Duration::ZERO })
    };
    if !reply.delay.is_zero() {
        tokio::time::sleep(reply.delay).await;
    }
    let headers = headers
        .iter()
        .map(|(k, v)| (k.as_str().to_ascii_lowercase(), String::from_utf8_lossy(v.as_bytes()).into_owned()))
        .collect();
    state.lock().unwrap().requests.push(Recorded {
        path: uri.path().to_owned(),
        headers,
        body,
        received_at: Instant::now(),
    });
    StatusCode::from_u16(reply.status).unwrap()
}

impl Receiver {
    /// Answers 200 to everything.
    pub async fn start() -> Self {
        Self::with_script(Vec::new()).await
    }

    /// Answers with `script` in order, then 200.
    pub async fn with_script(script: Vec<Reply>) -> Self {
        let state = Arc::new(Mutex::new(ReceiverState { script: script.into(), ..Default::default() }));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let app = Router::new().route("/{*path}", post(receive)).with_state(state.clone());
        let server = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Self { port, state, server }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/hook", self.port)
    }

    /// The answer once the script is used up.
    pub fn set_default(&self, status: u16) {
        let mut s = self.state.lock().unwrap();
        let delay = s.default.map_or(Duration::ZERO, |d| d.delay);
        s.default = Some(Reply { status, delay });
    }

    /// Delay every answer after the script.
    pub fn set_delay(&self, delay: Duration) {
        let mut s = self.state.lock().unwrap();
        let status = s.default.map_or(200, |d| d.status);
        s.default = Some(Reply { status, delay });
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.state.lock().unwrap().requests.clone()
    }

    pub fn count(&self) -> usize {
        self.state.lock().unwrap().requests.len()
    }

    /// Wait until at least `n` requests arrived; returns them all.
    pub async fn wait_for(&self, n: usize, timeout: Duration) -> anyhow::Result<Vec<Recorded>> {
        let what = format!("{n} requests at {}", self.url());
        let r = eventually(timeout, &what, || async { Ok((self.count() >= n).then(|| self.requests())) }).await;
        r.with_context(|| format!("only {} arrived", self.count()))
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// Standard Webhooks verification, written from the specification: HMAC-SHA256
/// over `id.timestamp.body` keyed with the base64 part of `whsec_…`,
/// compared with each space-separated `v1,<base64>` entry.
pub fn verify_standard_webhook(secret: &str, msg_id: &str, timestamp: &str, body: &[u8], signatures: &str) -> bool {
    let Some(key) = secret.strip_prefix("whsec_").and_then(|k| B64.decode(k).ok()) else { return false };
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).unwrap();
    mac.update(format!("{msg_id}.{timestamp}.").as_bytes());
    mac.update(body);
    let expected = B64.encode(mac.finalize().into_bytes());
    signatures.split(' ').filter_map(|s| s.strip_prefix("v1,")).any(|s| s == expected)
}

/// Path of the `hookline` binary: `$HOOKLINE_BIN`, else next to the test binary.
pub fn hookline_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("HOOKLINE_BIN") {
        return p.into();
    }
    let exe = std::env::current_exe().unwrap();
    let bin = exe.parent().and_then(Path::parent).map(|d| d.join("hookline")).unwrap();
    assert!(bin.exists(), "{} is missing: build it first: cargo build --bin hookline", bin.display());
    bin
}

/// Minimal HTTP GET over a raw TCP stream: (status, body).
pub async fn http_get(addr: &str, path: &str) -> anyhow::Result<(u16, String)> {
    let mut stream = TcpStream::connect(addr).await?;
    stream.write_all(format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes()).await?;
    let mut buf = Vec::new();
    stream.read_to_end(&mut buf).await?;
    let text = String::from_utf8_lossy(&buf);
    let status = text.split(' ').nth(1).and_then(|s| s.parse().ok()).context("no HTTP status line")?;
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default();
    Ok((status, body))
}

/// Builds a `hookline <role>` child process.
pub struct HooklineBuilder {
    role: String,
    env: Vec<(String, String)>,
}

impl HooklineBuilder {
    /// `role` is the subcommand: dev, ingest, subscriptions or delivery.
    pub fn new(role: &str) -> Self {
        Self { role: role.into(), env: Vec::new() }
    }

    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.retain(|(k, _)| k != key);
        self.env.push((key.into(), value.into()));
        self
    }

    pub async fn spawn(self) -> anyhow::Result<HooklineProc> {
        let mut env = self.env;
        for (key, value) in [
            ("HOOKLINE_GRPC_ADDR", format!("127.0.0.1:{}", free_port())),
            ("HOOKLINE_HTTP_ADDR", format!("127.0.0.1:{}", free_port())),
            ("HOOKLINE_LOG", "info,hookline=debug".to_owned()),
        ] {
            if !env.iter().any(|(k, _)| k == key) {
                env.push((key.into(), value));
            }
        }
        let dir = temp_dir("hookline-proc");
        let mut p = HooklineProc { role: self.role, env, log: dir.join("hookline.log"), dir, child: None };
        p.respawn().await?;
        Ok(p)
    }
}

/// A running `hookline` process; killed on drop.
pub struct HooklineProc {
    role: String,
    env: Vec<(String, String)>,
    dir: PathBuf,
    log: PathBuf,
    child: Option<Child>,
}

impl HooklineProc {
    fn var(&self, key: &str) -> &str {
        self.env.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str()).unwrap()
    }

    pub fn grpc_url(&self) -> String {
        format!("http://{}", self.var("HOOKLINE_GRPC_ADDR"))
    }

    pub fn http_url(&self) -> String {
        format!("http://{}", self.var("HOOKLINE_HTTP_ADDR"))
    }

    pub fn http_addr(&self) -> String {
        self.var("HOOKLINE_HTTP_ADDR").to_owned()
    }

    pub fn log_contents(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn tail(&self) -> String {
        let log = self.log_contents();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    /// Start (again) with the same settings and ports; waits for `/readyz`.
    pub async fn respawn(&mut self) -> anyhow::Result<()> {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&self.log)?;
        let child = Command::new(hookline_bin())
            .arg(&self.role)
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()?;
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok((200, _)) = http_get(&self.http_addr(), "/readyz").await {
                return Ok(());
            }
            if let Some(status) = self.child.as_mut().unwrap().try_wait()? {
                bail!("hookline {} exited with {status} before ready:\n{}", self.role, self.tail());
            }
            if Instant::now() > deadline {
                bail!("hookline {} not ready within 30 s:\n{}", self.role, self.tail());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn signal(&self, sig: &str) {
        if let Some(c) = &self.child {
            let _ = Command::new("kill").args([sig, &c.id().to_string()]).status();
        }
    }

    /// SIGKILL: no graceful anything.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            kill(&mut c);
        }
    }

    /// SIGTERM: a graceful stop.
    pub fn terminate(&mut self) {
        self.signal("-TERM");
    }

    pub async fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(s) = self.child.as_mut()?.try_wait().ok()? {
                self.child = None;
                return Some(s);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        None
    }

    pub async fn ingest_client(&self) -> IngestServiceClient<Channel> {
        IngestServiceClient::connect(self.grpc_url()).await.unwrap()
    }

    pub async fn subscriptions_client(&self) -> SubscriptionServiceClient<Channel> {
        SubscriptionServiceClient::connect(self.grpc_url()).await.unwrap()
    }
}

impl Drop for HooklineProc {
    fn drop(&mut self) {
        self.kill9();
        if std::thread::panicking() {
            eprintln!("--- hookline {} log ({}) ---\n{}", self.role, self.log.display(), self.tail());
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn standard_webhooks_spec_vector() {
        assert!(super::verify_standard_webhook(
            "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            "1614265330",
            br#"{"test": 2432232314}"#,
            "v1,bad v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
        ));
        assert!(!super::verify_standard_webhook(
            "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            "1614265331",
            br#"{"test": 2432232314}"#,
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
        ));
    }
}
