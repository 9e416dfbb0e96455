//! Test kit for Hookline's end-to-end tests: real peers, no mocks.
//!
//! Re-exports `hookline-testkit` (crates/testkit), which the bench shares:
//! * [`NatsServer`]: a private `nats-server -js` on a free port with a temporary store;
//!   [`cluster::NatsCluster`]: three routed nodes.
//! * [`TestDb`]: a fresh database on the local Postgres, dropped afterwards.
//! * [`eventually`], [`free_port`], [`hookline_bin`]: small helpers.
//!
//! and adds what only the tests need:
//! * [`Receiver`]: a loopback HTTP server that records requests and answers from a script.
//! * [`HooklineBuilder`] / [`HooklineProc`]: the real `hookline` binary as a child process.
//! * [`verify_standard_webhook`]: a Standard Webhooks verifier written from the spec,
//!   independent of the signer under test.
//! * [`http_get`], [`http_post`]: a raw HTTP client for probes.
//! * [`browser::Browser`]: headless chromium over WebDriver, for page tests.
//! * [`console::ConsoleClient`]: a cookie-keeping, form-posting client of the webhooks console.
//! * [`otlp::Collector`]: an OTLP/HTTP collector that decodes the exported spans (protobuf).

use std::{
    collections::VecDeque,
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use axum::{
    Router,
    extract::{DefaultBodyLimit, State},
    http::{HeaderMap, Method, StatusCode, Uri, Version},
};
use base64::{Engine, engine::general_purpose::STANDARD as B64};
pub use bytes::Bytes;
use hmac::{Hmac, KeyInit, Mac};
use hookline_proto::{
    ingest::v1::ingest_service_client::IngestServiceClient,
    subscriptions::v1::subscription_service_client::SubscriptionServiceClient,
};
use sha2::Sha256;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
    sync::oneshot,
};
use tonic::transport::Channel;
pub mod browser;
pub mod console;
pub mod dns;
pub mod otlp;

pub use hookline_testkit::*;

// ---------------------------------------------------------------- helpers

// ------------------------------------------------------------ raw HTTP client

/// `GET url` (plain `http://` only) over a raw TCP stream: (status, body).
/// No client library, so probes and health checks stay independent of hyper's pool.
pub async fn http_get(url: &str) -> anyhow::Result<(u16, String)> {
    http_request("GET", url, &[], b"").await
}

/// `GET url` with extra headers: (status, response headers with lower-case
/// names, body).
pub async fn http_get_with(
    url: &str,
    headers: &[(&str, &str)],
) -> anyhow::Result<(u16, Vec<(String, String)>, String)> {
    let raw = http_exchange("GET", url, headers, b"", None).await?;
    let (status, body) = parse_response(&raw).with_context(|| format!("GET {url}: unparsable response"))?;
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").context("no end of headers")?;
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let fields = head
        .lines()
        .skip(1)
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    Ok((status, fields, body))
}

/// `POST url` with extra headers and a body over a raw TCP stream: (status, body).
pub async fn http_post(url: &str, headers: &[(&str, &str)], body: &[u8]) -> anyhow::Result<(u16, String)> {
    http_request("POST", url, headers, body).await
}

/// One HTTP/1.1 request on a fresh `Connection: close` stream, 10 s overall.
pub async fn http_request(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> anyhow::Result<(u16, String)> {
    http_request_tls(method, url, headers, body, None).await
}

/// `GET url` where `https://` URLs are verified against `ca_pem` only.
pub async fn https_get(url: &str, ca_pem: &[u8]) -> anyhow::Result<(u16, String)> {
    http_request_tls("GET", url, &[], b"", Some(ca_pem)).await
}

/// A TLS client that trusts only the CA certificates in `ca_pem`.
pub fn tls_connector(ca_pem: &[u8]) -> anyhow::Result<tokio_rustls::TlsConnector> {
    use rustls_pki_types::{CertificateDer, pem::PemObject};
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem) {
        roots.add(cert?)?;
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(tokio_rustls::TlsConnector::from(Arc::new(config)))
}

async fn http_request_tls(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    ca_pem: Option<&[u8]>,
) -> anyhow::Result<(u16, String)> {
    let raw = http_exchange(method, url, headers, body, ca_pem).await?;
    parse_response(&raw).with_context(|| format!("{method} {url}: unparsable response"))
}

/// One request and the raw response, 10 s overall.
async fn http_exchange(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    ca_pem: Option<&[u8]>,
) -> anyhow::Result<Vec<u8>> {
    let (tls, rest) = match (url.strip_prefix("http://"), url.strip_prefix("https://"), ca_pem) {
        (Some(rest), _, _) => (None, rest),
        (_, Some(rest), Some(ca)) => (Some(tls_connector(ca)?), rest),
        _ => bail!("not an http:// URL (or https:// without a CA): {url}"),
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, "/"),
    };
    let exchange = async {
        let tcp = TcpStream::connect(authority).await?;
        let mut stream: Box<dyn Io> = match tls {
            None => Box::new(tcp),
            Some(connector) => {
                let host = authority.rsplit_once(':').map_or(authority, |(h, _)| h).to_owned();
                let name = rustls_pki_types::ServerName::try_from(host)?;
                Box::new(connector.connect(name, tcp).await?)
            }
        };
        let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n");
        if method != "GET" || !body.is_empty() {
            head += &format!("Content-Length: {}\r\n", body.len());
        }
        for (k, v) in headers {
            head += &format!("{k}: {v}\r\n");
        }
        head += "\r\n";
        stream.write_all(head.as_bytes()).await?;
        stream.write_all(body).await?;
        let mut buf = Vec::new();
        stream.read_to_end(&mut buf).await?;
        anyhow::Ok(buf)
    };
    tokio::time::timeout(Duration::from_secs(10), exchange)
        .await
        .with_context(|| format!("{method} {url}: no answer within 10 s"))?
        .with_context(|| format!("{method} {url}"))
}

trait Io: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> Io for T {}

fn parse_response(raw: &[u8]) -> anyhow::Result<(u16, String)> {
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").context("no end of headers")?;
    let head = String::from_utf8_lossy(&raw[..split]).to_ascii_lowercase();
    let status = head.split(' ').nth(1).and_then(|s| s.parse().ok()).context("no status line")?;
    let mut body = &raw[split + 4..];
    let mut decoded = Vec::new();
    if head.lines().any(|l| l.starts_with("transfer-encoding:") && l.contains("chunked")) {
        while let Some(eol) = body.windows(2).position(|w| w == b"\r\n") {
            let size = std::str::from_utf8(&body[..eol])?.split(';').next().unwrap_or("").trim();
            let size = usize::from_str_radix(size, 16)?;
            let start = eol + 2;
            if size == 0 || start + size > body.len() {
                break;
            }
            decoded.extend_from_slice(&body[start..start + size]);
            body = &body[(start + size + 2).min(body.len())..];
        }
        body = &decoded;
    }
    Ok((status, String::from_utf8_lossy(body).into_owned()))
}

// --------------------------------------------------------------- Receiver

/// One scripted answer of a [`Receiver`]: status after an optional delay
/// (a delay beyond the sender's timeout simulates a hanging endpoint).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reply {
    pub status: u16,
    pub delay: Duration,
}

impl Reply {
    /// `status` without delay.
    pub const fn new(status: u16) -> Self {
        Self { status, delay: Duration::ZERO }
    }
}

/// One request a [`Receiver`] got, recorded on arrival (before any delay, so
/// requests the sender gave up on are still counted).
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    /// `HTTP/1.1` or `HTTP/2.0`.
    pub version: String,
    pub path: String,
    /// The query string, without the `?`.
    pub query: Option<String>,
    /// Names lower-case, in arrival order.
    pub headers: Vec<(String, String)>,
    pub body: Bytes,
    pub received_at: Instant,
    /// The status this request was (or is being) answered with.
    pub status: u16,
}

impl Recorded {
    /// The first value of header `name` (lower-case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    /// The body parsed as JSON.
    pub fn json(&self) -> anyhow::Result<serde_json::Value> {
        serde_json::from_slice(&self.body).context("request body is not JSON")
    }

    /// Check the Standard Webhooks signature (`webhook-id`, `webhook-timestamp`,
    /// `webhook-signature`) against `secret` (`whsec_…`).
    pub fn verify(&self, secret: &str) -> bool {
        match (self.header("webhook-id"), self.header("webhook-timestamp"), self.header("webhook-signature")) {
            (Some(id), Some(ts), Some(sig)) => verify_standard_webhook(secret, id, ts, &self.body, sig),
            _ => false,
        }
    }
}

struct ReceiverState {
    script: VecDeque<Reply>,
    default: Reply,
    requests: Vec<Recorded>,
}

/// A real loopback HTTP endpoint (any path, any method) that records every
/// request and answers from a script, then with a default (200).
/// Stops accepting and closes its connections on drop.
pub struct Receiver {
    addr: SocketAddr,
    /// Serves `https://` with the test certificate (`tests/fixtures/tls`).
    tls: bool,
    state: Arc<Mutex<ReceiverState>>,
    shutdown: Option<oneshot::Sender<()>>,
}

/// A TCP listener whose connections are TLS-accepted before axum sees them;
/// failed handshakes are dropped and the next connection is taken.
struct TlsListener {
    tcp: tokio::net::TcpListener,
    tls: tokio_rustls::TlsAcceptor,
}

impl axum::serve::Listener for TlsListener {
    type Io = tokio_rustls::server::TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            let Ok((sock, addr)) = self.tcp.accept().await else { continue };
            if let Ok(stream) = self.tls.accept(sock).await {
                return (stream, addr);
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.tcp.local_addr()
    }
}

/// A TLS server side with the test certificate for `localhost` and
/// `127.0.0.1` (signed by `tests/fixtures/tls/ca.pem`), offering `alpn` in
/// the handshake.
pub fn test_tls_acceptor(alpn: &[&[u8]]) -> tokio_rustls::TlsAcceptor {
    use rustls_pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};
    let dir = format!("{}/tests/fixtures/tls", env!("CARGO_MANIFEST_DIR"));
    let chain = CertificateDer::pem_file_iter(format!("{dir}/server.pem")).unwrap().map(Result::unwrap).collect();
    let key = PrivateKeyDer::from_pem_file(format!("{dir}/server.key")).unwrap();
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .unwrap();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    tokio_rustls::TlsAcceptor::from(Arc::new(config))
}

async fn receive(
    State(state): State<Arc<Mutex<ReceiverState>>>,
    method: Method,
    version: Version,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let reply = {
        let mut s = state.lock().unwrap();
        let reply = s.script.pop_front().unwrap_or(s.default);
        let headers = headers
            .iter()
            .map(|(k, v)| (k.as_str().to_ascii_lowercase(), String::from_utf8_lossy(v.as_bytes()).into_owned()))
            .collect();
        s.requests.push(Recorded {
            method: method.to_string(),
            version: format!("{version:?}"),
            path: uri.path().to_owned(),
            query: uri.query().map(str::to_owned),
            headers,
            body,
            received_at: Instant::now(),
            status: reply.status,
        });
        reply
    };
    if !reply.delay.is_zero() {
        tokio::time::sleep(reply.delay).await;
    }
    StatusCode::from_u16(reply.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
}

impl Receiver {
    /// Answers 200 to everything.
    pub async fn start() -> Self {
        Self::with_script(Vec::new()).await
    }

    /// Answers with `script` in arrival order, then with the default (200).
    pub async fn with_script(script: Vec<Reply>) -> Self {
        Self::serve(script, None).await
    }

    /// Answers 200 to everything over TLS with the test certificate,
    /// offering `alpn` (`h2`, `http/1.1`) and speaking what was agreed.
    pub async fn start_tls(alpn: &[&[u8]]) -> Self {
        Self::serve(Vec::new(), Some(test_tls_acceptor(alpn))).await
    }

    async fn serve(script: Vec<Reply>, tls: Option<tokio_rustls::TlsAcceptor>) -> Self {
        let state = Arc::new(Mutex::new(ReceiverState {
            script: script.into(),
            default: Reply::new(200),
            requests: Vec::new(),
        }));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("binding a receiver");
        let addr = listener.local_addr().unwrap();
        let app = Router::new().fallback(receive).layer(DefaultBodyLimit::disable()).with_state(state.clone());
        let (tx, rx) = oneshot::channel::<()>();
        let secure = tls.is_some();
        tokio::spawn(async move {
            let stop = async move {
                let _ = rx.await;
            };
            let _ = match tls {
                Some(tls) => axum::serve(TlsListener { tcp: listener, tls }, app).with_graceful_shutdown(stop).await,
                None => axum::serve(listener, app).with_graceful_shutdown(stop).await,
            };
        });
        Self { addr, tls: secure, state, shutdown: Some(tx) }
    }

    /// `http://127.0.0.1:<port>/hook` (`https://` for [`Receiver::start_tls`]).
    pub fn url(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}/hook", self.addr)
    }

    /// The listening address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Append replies to the script.
    pub fn script(&self, replies: impl IntoIterator<Item = Reply>) {
        self.state.lock().unwrap().script.extend(replies);
    }

    /// The status once the script is used up (keeps the default delay).
    pub fn set_default(&self, status: u16) {
        self.state.lock().unwrap().default.status = status;
    }

    /// Delay every answer after the script (keeps the default status).
    pub fn set_delay(&self, delay: Duration) {
        self.state.lock().unwrap().default.delay = delay;
    }

    /// Everything received so far, in arrival order.
    pub fn requests(&self) -> Vec<Recorded> {
        self.state.lock().unwrap().requests.clone()
    }

    /// How many requests arrived.
    pub fn count(&self) -> usize {
        self.state.lock().unwrap().requests.len()
    }

    /// Wait until at least `n` requests arrived; returns them all, or fails
    /// saying how many did arrive.
    pub async fn wait_for(&self, n: usize, timeout: Duration) -> anyhow::Result<Vec<Recorded>> {
        let what = format!("{n} requests at {}", self.url());
        let got = eventually(timeout, &what, || async { (self.count() >= n).then(|| self.requests()) }).await;
        got.with_context(|| format!("only {} arrived", self.count()))
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

// ------------------------------------------------------ Standard Webhooks

/// Standard Webhooks verification, written from the specification rather than
/// shared with the signer: HMAC-SHA256 keyed with base64-decode(`secret` after
/// `whsec_`) over `{msg_id}.{timestamp}.{body}`, base64 (standard) encoded, and
/// true if any space-separated `v1,<sig>` entry of `signature_header` matches.
pub fn verify_standard_webhook(
    secret: &str,
    msg_id: &str,
    timestamp: &str,
    body: &[u8],
    signature_header: &str,
) -> bool {
    let Some(key) = secret.strip_prefix("whsec_").and_then(|k| B64.decode(k).ok()) else { return false };
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).expect("HMAC takes any key length");
    mac.update(format!("{msg_id}.{timestamp}.").as_bytes());
    mac.update(body);
    let expected = B64.encode(mac.finalize().into_bytes());
    signature_header.split_whitespace().filter_map(|s| s.strip_prefix("v1,")).any(|s| s == expected)
}

// --------------------------------------------------------------- hookline

/// Builds a `hookline <mode>` child process: the kit's
/// [`process::Builder`] (hermetic environment, port 0), started and waited
/// for by [`spawn`](Self::spawn).
pub struct HooklineBuilder(process::Builder);

impl HooklineBuilder {
    /// See [`process::Builder::new`].
    pub fn new(mode: &str) -> Self {
        Self(process::Builder::new(mode))
    }

    /// Set an environment variable (the last value for a key wins).
    pub fn env(self, key: &str, value: &str) -> Self {
        Self(self.0.env(key, value))
    }

    /// [`env`](Self::env) for each pair, in order.
    pub fn envs(self, pairs: &[(&str, &str)]) -> Self {
        Self(self.0.envs(pairs))
    }

    /// Start without waiting for readiness (see [`HooklineProc::wait_ready`]).
    pub fn start(self) -> anyhow::Result<HooklineProc> {
        Ok(HooklineProc(self.0.start()?))
    }

    /// Start and wait (up to 30 s) until `GET /readyz` answers 200 (the
    /// console: `GET /healthz` on its address); see [`process::Builder::start`]
    /// for the defaults and the ports.
    pub async fn spawn(self) -> anyhow::Result<HooklineProc> {
        let mut p = self.start()?;
        p.wait_ready().await?;
        Ok(p)
    }
}

/// A running `hookline` process ([`process::Process`]: log, ports, signals)
/// with the tests' gRPC clients and a readiness probe that speaks TLS to a
/// process that serves it.
pub struct HooklineProc(process::Process);

impl std::ops::Deref for HooklineProc {
    type Target = process::Process;

    fn deref(&self) -> &process::Process {
        &self.0
    }
}

impl std::ops::DerefMut for HooklineProc {
    fn deref_mut(&mut self) -> &mut process::Process {
        &mut self.0
    }
}

impl HooklineProc {
    /// The process's `HOOKLINE_TLS_CA` file, read, if it has one.
    fn ca_pem(&self) -> Option<Vec<u8>> {
        Some(self.var("HOOKLINE_TLS_CA")).filter(|p| !p.is_empty()).map(|p| std::fs::read(p).expect("HOOKLINE_TLS_CA"))
    }

    /// The process's own certificate and key, which test clients present
    /// when it requires client certificates (`HOOKLINE_TLS_CLIENT_CA`).
    fn client_identity(&self) -> Option<(Vec<u8>, Vec<u8>)> {
        if self.var("HOOKLINE_TLS_CLIENT_CA").is_empty() {
            return None;
        }
        let read = |key: &str| std::fs::read(self.var(key)).unwrap_or_else(|e| panic!("{key}: {e}"));
        Some((read("HOOKLINE_TLS_CERT"), read("HOOKLINE_TLS_KEY")))
    }

    /// Start (again) with the same environment and ports, appending to the same
    /// log; kills a still-running incarnation first. Waits for `/readyz`.
    pub async fn respawn(&mut self) -> anyhow::Result<()> {
        self.respawn_unready()?;
        self.wait_ready().await
    }

    /// Wait up to 30 s for `/readyz` (the console: `/healthz`) to answer
    /// 200, over TLS trusting the process's `HOOKLINE_TLS_CA` when it has one
    /// (the console alone: plain HTTP).
    pub async fn wait_ready(&mut self) -> anyhow::Result<()> {
        let ca = if self.mode() == "console" { None } else { self.ca_pem() };
        self.0
            .wait_ready_with(Duration::from_secs(30), |url| {
                let ca = ca.clone();
                async move { matches!(http_request_tls("GET", &url, &[], b"", ca.as_deref()).await, Ok((200, _))) }
            })
            .await
    }

    /// An ingest gRPC client on [`grpc_url`](process::Process::grpc_url); panics if unreachable.
    pub async fn ingest_client(&self) -> IngestServiceClient<Channel> {
        IngestServiceClient::new(self.channel().await)
    }

    /// A gRPC channel to this process, over TLS trusting its `HOOKLINE_TLS_CA` when it has one.
    pub async fn channel(&self) -> Channel {
        let url = self.grpc_url();
        let (ca, identity) = (self.ca_pem(), self.client_identity());
        let identity = identity.as_ref().map(|(c, k)| (c.as_slice(), k.as_slice()));
        let endpoint = hookline_proto::endpoint(&url, ca.as_deref(), identity).expect("gRPC URL");
        endpoint.connect().await.unwrap_or_else(|e| panic!("connecting to {url}: {e:?}"))
    }

    /// A subscriptions gRPC client on [`grpc_url`](process::Process::grpc_url); panics if unreachable.
    pub async fn subscriptions_client(&self) -> SubscriptionServiceClient<Channel> {
        SubscriptionServiceClient::new(self.channel().await)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
    const BODY: &[u8] = br#"{"test": 2432232314}"#;
    const SIG: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";

    #[test]
    fn standard_webhooks_spec_vector() {
        assert!(verify_standard_webhook(SECRET, ID, "1614265330", BODY, SIG));
        assert!(verify_standard_webhook(SECRET, ID, "1614265330", BODY, &format!("v1,bad {SIG}")));
        assert!(!verify_standard_webhook(SECRET, ID, "1614265331", BODY, SIG));
        assert!(!verify_standard_webhook(SECRET, ID, "1614265330", BODY, &SIG.replace("v1,", "v2,")));
        assert!(!verify_standard_webhook("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", ID, "1614265330", BODY, SIG));
    }

    #[test]
    fn parses_plain_and_chunked_responses() {
        let plain = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
        assert_eq!(parse_response(plain).unwrap(), (200, "ok".into()));
        let chunked = b"HTTP/1.1 503 Service Unavailable\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nnot\r\n6\r\n ready\r\n0\r\n\r\n";
        assert_eq!(parse_response(chunked).unwrap(), (503, "not ready".into()));
    }
}
