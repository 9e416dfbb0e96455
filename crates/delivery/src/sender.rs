//! One HTTP attempt: Standard Webhooks headers, the endpoint's auth header,
//! no redirects, a timeout, and a classified result.

use std::{
    collections::HashMap,
    future::Future,
    net::{IpAddr, SocketAddr},
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::{Duration, Instant},
};

use bytes::Bytes;
use hookline_domain::{
    delivery::{ErrorKind, parse_retry_after},
    endpoint::{AuthHeader, EndpointConfig, Secret, SigningSecret},
    signing,
    ssrf::AddressPolicy,
};
use http::{HeaderValue, Method, Request, Uri, header};
use http_body_util::{BodyExt, Full};
use hyper_rustls::HttpsConnector;
use hyper_util::{
    client::legacy::{
        Client,
        connect::{HttpConnector, dns::Name},
    },
    rt::{TokioExecutor, TokioTimer},
};

pub const USER_AGENT: &str = concat!("Hookline/", env!("CARGO_PKG_VERSION"), " (webhook sender)");
/// Bytes of the response body kept for the delivery log.
pub const EXCERPT_BYTES: usize = 4096;

/// Resolves host names (with the system resolver or the nameservers of
/// `HOOKLINE_DNS_SERVERS`) and keeps only addresses the policy allows; the
/// connection then goes to exactly those addresses, so a DNS answer cannot
/// change between the check and the connect (no rebinding).
#[derive(Clone)]
struct GuardedResolver {
    policy: Arc<AddressPolicy>,
    dns: hookline_dns::Resolver,
}

impl tower_service::Service<Name> for GuardedResolver {
    type Response = std::vec::IntoIter<SocketAddr>;
    type Error = std::io::Error;
    type Future = Pin<Box<dyn Future<Output = std::io::Result<Self::Response>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, name: Name) -> Self::Future {
        let (policy, dns) = (self.policy.clone(), self.dns.clone());
        Box::pin(async move {
            let host = name.as_str();
            let resolved = dns.lookup(host).await?;
            let mut refusal = None;
            let allowed: Vec<SocketAddr> = resolved
                .into_iter()
                .filter(|ip| match policy.check(*ip) {
                    Ok(()) => true,
                    Err(e) => {
                        refusal = Some(e.to_string());
                        false
                    }
                })
                .map(|ip| SocketAddr::new(ip, 0))
                .collect();
            if allowed.is_empty() {
                let why = refusal.unwrap_or_else(|| format!("{host} has no addresses"));
                return Err(std::io::Error::other(format!("{FORBIDDEN}: `{host}` resolves to {why}")));
            }
            Ok(allowed.into_iter())
        })
    }
}

/// Marks a refusal by the address policy in the error chain.
const FORBIDDEN: &str = "address refused";

/// The HTTP client of one delivery process: hyper's pooled client, with
/// rustls and the platform's trust store, HTTP/2 where the peer offers it by
/// ALPN and HTTP/1.1 keep-alive otherwise. It never follows redirects, knows
/// no proxies, and connects only where the address policy allows.
///
/// Built on hyper directly rather than reqwest: reqwest parses every URL
/// again per request and runs a redirect layer even with redirects off,
/// work that every attempt would pay for (BENCHMARKS.md has the figures).
pub struct Http {
    client: Client<HttpsConnector<HttpConnector<GuardedResolver>>, Full<Bytes>>,
    /// From sending the request to the last byte of the response kept.
    timeout: Duration,
}

impl Http {
    /// Idle connections are kept for as many attempts as can run at once:
    /// with fewer, a busy host (many endpoints of one ERP vendor, say) has
    /// connections closed and reopened all the time.
    pub fn new(timeout: Duration, policy: Arc<AddressPolicy>, dns: hookline_dns::Resolver, concurrency: usize) -> Self {
        let mut tcp = HttpConnector::new_with_resolver(GuardedResolver { policy, dns });
        tcp.enforce_http(false);
        tcp.set_nodelay(true);
        tcp.set_connect_timeout(Some(Duration::from_secs(5).min(timeout)));
        let provider = rustls::crypto::CryptoProvider::get_default()
            .expect("a rustls crypto provider is installed at start-up")
            .clone();
        let tls = hyper_rustls::HttpsConnectorBuilder::new()
            .with_provider_and_platform_verifier(provider)
            .expect("the platform's certificate verifier loads")
            .https_or_http()
            .enable_http1()
            .enable_http2()
            .wrap_connector(tcp);
        let client = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(Duration::from_secs(90))
            .pool_max_idle_per_host(concurrency)
            .build(tls);
        Self { client, timeout }
    }
}

/// The URL to send to, parsed once as browsers do (WHATWG). IP literals
/// never reach the resolver: they are checked here, as the URL parser
/// reads them (`0x7f.1`, `[::ffff:7f00:1]`, `[0:0:0:0:0:ffff:127.0.0.1]`
/// too), and the request goes to the parser's form.
pub fn target(url: &str, policy: &AddressPolicy) -> Result<Uri, TargetError> {
    let mut url = url::Url::parse(url)?;
    let ip = match url.host() {
        Some(url::Host::Ipv4(v4)) => Some(IpAddr::V4(v4)),
        Some(url::Host::Ipv6(v6)) => Some(IpAddr::V6(v6)),
        Some(url::Host::Domain(_)) | None => None,
    };
    if let Some(ip) = ip {
        policy.check(ip)?;
    }
    url.set_fragment(None);
    Ok(Uri::try_from(url.as_str())?)
}

/// Why [`target`] refuses an endpoint's URL; the attempt records the text.
#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    #[error("unusable URL: {0}")]
    Url(#[from] url::ParseError),
    #[error("unusable URL: {0}")]
    Uri(#[from] http::uri::InvalidUri),
    /// An IP literal the address policy refuses.
    #[error("{0}")]
    Refused(#[from] hookline_domain::ssrf::Refusal),
}

/// Target URLs already parsed and checked, by endpoint URL, so an attempt
/// does not parse and check its endpoint's URL again. The
/// address policy is fixed for the life of the process, so a URL it allowed
/// once stays allowed; host names are still checked at every connect.
#[derive(Default)]
pub struct Targets(std::sync::Mutex<HashMap<String, Uri>>);

impl Targets {
    /// Endpoints whose URLs are kept; past this, the cache starts over.
    const MAX: usize = 10_000;

    pub fn get(&self, url: &str, policy: &AddressPolicy) -> Result<Uri, TargetError> {
        if let Some(parsed) = self.0.lock().expect("targets lock").get(url) {
            return Ok(parsed.clone());
        }
        let parsed = target(url, policy)?;
        let mut cache = self.0.lock().expect("targets lock");
        if cache.len() >= Self::MAX {
            cache.clear();
        }
        cache.insert(url.to_owned(), parsed.clone());
        Ok(parsed)
    }
}

#[derive(Debug)]
pub struct AttemptResult {
    /// `Retry-After` of a 429 or 503 answer.
    pub retry_after: Option<Duration>,
    /// Request headers as sent, secret values masked.
    pub request_headers: Vec<(String, String)>,
    pub status_code: Option<u16>,
    pub error_kind: Option<ErrorKind>,
    pub error: Option<String>,
    pub duration: Duration,
    pub response_excerpt: Option<String>,
}

impl AttemptResult {
    pub fn succeeded(&self) -> bool {
        self.error_kind.is_none()
    }

    /// Not sent: the target address is refused by policy.
    pub fn refused(why: String) -> Self {
        Self::failed(ErrorKind::Ssrf, why)
    }

    pub fn failed(kind: ErrorKind, why: String) -> Self {
        Self {
            retry_after: None,
            request_headers: Vec::new(),
            status_code: None,
            error_kind: Some(kind),
            error: Some(why),
            duration: Duration::ZERO,
            response_excerpt: None,
        }
    }

    /// The same result, marked successful.
    pub fn accepted(self) -> Self {
        Self { error_kind: None, error: None, ..self }
    }
}

/// Marks a test event (`SendTestEvent`), so receivers can tell it from a
/// booking platform event: `hookline-test: true`.
pub const TEST_HEADER: &str = "hookline-test";

/// POST `body` to the endpoint, signed for `msg_id`; `test` adds [`TEST_HEADER`].
pub async fn send(
    http: &Http,
    url: Uri,
    endpoint: &EndpointConfig,
    msg_id: &str,
    body: Vec<u8>,
    traceparent: &str,
    test: bool,
) -> AttemptResult {
    let now = chrono::Utc::now();
    let signer = Signer { secrets: endpoint.signing_secrets(now), auth_header: endpoint.auth_header.as_ref() };
    post(http, url, &signer, msg_id, body, Some(traceparent), test).await
}

/// Who signs a POST, and the receiver's own header, if any.
pub struct Signer<'a> {
    /// One `webhook-signature` entry each.
    pub secrets: Vec<&'a SigningSecret>,
    pub auth_header: Option<&'a AuthHeader>,
}

/// POST `body` signed by `signer` for `msg_id`: what [`send`] does for an
/// endpoint, and what operational notices do for a tenant's notification URL.
pub async fn post(
    http: &Http,
    url: Uri,
    signer: &Signer<'_>,
    msg_id: &str,
    body: Vec<u8>,
    traceparent: Option<&str>,
    test: bool,
) -> AttemptResult {
    let timestamp = chrono::Utc::now().timestamp();
    let signature = signing::signature_header(signer.secrets.iter().copied(), msg_id, timestamp, &body);
    let length = body.len();
    let mut request = Request::new(Full::new(Bytes::from(body)));
    *request.method_mut() = Method::POST;
    *request.uri_mut() = url;
    let headers = request.headers_mut();
    headers.reserve(10);
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    // Event ids, signatures and traceparents are ASCII by construction.
    let ascii = |v: &str| HeaderValue::from_str(v).expect("header values are visible ASCII");
    headers.insert("webhook-id", ascii(msg_id));
    headers.insert("webhook-timestamp", HeaderValue::from(timestamp));
    headers.insert("webhook-signature", ascii(&signature));
    // What Raw shows: the headers as sent, secrets redacted.
    let mut sent = vec![
        ("content-type".to_owned(), "application/json".to_owned()),
        ("webhook-id".to_owned(), msg_id.to_owned()),
        ("webhook-timestamp".to_owned(), timestamp.to_string()),
        ("webhook-signature".to_owned(), Secret::MASK.to_owned()),
    ];
    if let Some(traceparent) = traceparent {
        headers.insert("traceparent", ascii(traceparent));
        sent.push(("traceparent".to_owned(), traceparent.to_owned()));
    }
    if test {
        headers.insert(TEST_HEADER, HeaderValue::from_static("true"));
        sent.push((TEST_HEADER.to_owned(), "true".to_owned()));
    }
    if let Some(h) = signer.auth_header {
        let mut value = HeaderValue::from_str(h.value().expose()).expect("auth header value checked on input");
        value.set_sensitive(true);
        headers.insert(
            header::HeaderName::from_bytes(h.name().as_bytes()).expect("auth header name checked on input"),
            value,
        );
        sent.push((h.name().to_owned(), Secret::MASK.to_owned()));
    }
    headers.insert(header::ACCEPT, HeaderValue::from_static("*/*"));
    headers.insert(header::USER_AGENT, HeaderValue::from_static(USER_AGENT));
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(length));
    sent.push(("user-agent".to_owned(), USER_AGENT.to_owned()));
    sent.push(("content-length".to_owned(), length.to_string()));
    let started = Instant::now();
    let deadline = tokio::time::Instant::now() + http.timeout;
    let mut result = match tokio::time::timeout_at(deadline, http.client.request(request)).await {
        Ok(Ok(response)) => {
            let (parts, mut body) = response.into_parts();
            let status = parts.status;
            let mut excerpt = Vec::new();
            let mut body_timed_out = false;
            while excerpt.len() < EXCERPT_BYTES {
                match tokio::time::timeout_at(deadline, body.frame()).await {
                    Ok(Some(Ok(frame))) => {
                        if let Some(chunk) = frame.data_ref() {
                            excerpt.extend_from_slice(&chunk[..chunk.len().min(EXCERPT_BYTES - excerpt.len())])
                        }
                    }
                    // A body cut short still leaves the status as the answer.
                    Ok(None | Some(Err(_))) => break,
                    Err(_) => {
                        body_timed_out = true;
                        break;
                    }
                }
            }
            let (error_kind, error) = if body_timed_out && status.is_success() {
                (Some(ErrorKind::Timeout), Some("timed out reading the response body".to_owned()))
            } else if status.is_success() {
                (None, None)
            } else if status.is_redirection() {
                let location = parts.headers.get("location").and_then(|l| l.to_str().ok()).unwrap_or("-");
                (Some(ErrorKind::Redirect), Some(format!("HTTP {status} to {location}; redirects are not followed")))
            } else {
                (Some(ErrorKind::HttpStatus), Some(format!("HTTP {status}")))
            };
            let retry_after = matches!(status.as_u16(), 429 | 503)
                .then(|| parts.headers.get("retry-after")?.to_str().ok())
                .flatten()
                .and_then(|v| parse_retry_after(v, chrono::Utc::now()));
            AttemptResult {
                retry_after,
                request_headers: Vec::new(),
                status_code: Some(status.as_u16()),
                error_kind,
                error,
                duration: Duration::ZERO,
                response_excerpt: (!excerpt.is_empty()).then(|| String::from_utf8_lossy(&excerpt).into_owned()),
            }
        }
        Ok(Err(e)) => {
            let (kind, text) = classify(&e);
            AttemptResult::failed(kind, text)
        }
        Err(_) => {
            AttemptResult::failed(ErrorKind::Timeout, format!("no response within {} ms", http.timeout.as_millis()))
        }
    };
    result.duration = started.elapsed();
    result.request_headers = sent;
    result
}

/// Name the failure from the client's error chain (the URL is left out: it
/// may carry a token in its query).
fn classify(e: &hyper_util::client::legacy::Error) -> (ErrorKind, String) {
    let mut chain = String::new();
    let mut timed_out = false;
    let mut refused = false;
    let mut source: Option<&dyn std::error::Error> = std::error::Error::source(e);
    while let Some(s) = source {
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            timed_out |= io.kind() == std::io::ErrorKind::TimedOut;
            refused |= io.kind() == std::io::ErrorKind::ConnectionRefused;
        }
        if !chain.is_empty() {
            chain.push_str(": ");
        }
        chain.push_str(&s.to_string());
        source = s.source();
    }
    let lower = chain.to_ascii_lowercase();
    let kind = if chain.contains(FORBIDDEN) {
        ErrorKind::Ssrf
    } else if timed_out {
        ErrorKind::Timeout
    } else if lower.contains("dns error") || lower.contains("failed to lookup") {
        ErrorKind::Dns
    } else if lower.contains("certificate") || lower.contains("tls") || lower.contains("handshake") {
        ErrorKind::Tls
    } else if refused {
        ErrorKind::ConnectionRefused
    } else {
        ErrorKind::Connection
    };
    let text = if chain.is_empty() { kind.as_str().to_owned() } else { chain };
    (kind, text)
}
