//! One HTTP attempt: Standard Webhooks headers, the endpoint's auth header,
//! no redirects, a timeout, and a classified result.

use std::{
    collections::HashMap,
    net::{IpAddr, SocketAddr},
    sync::Arc,
    time::{Duration, Instant},
};

use hookline_domain::{
    delivery::{ErrorKind, parse_retry_after},
    endpoint::{EndpointConfig, Secret},
    signing,
    ssrf::AddressPolicy,
};
use reqwest::dns::{Addrs, Name, Resolve, Resolving};

pub const USER_AGENT: &str = concat!("Hookline/", env!("CARGO_PKG_VERSION"), " (webhook sender)");
/// Bytes of the response body kept for the delivery log.
pub const EXCERPT_BYTES: usize = 4096;

/// Resolves host names and keeps only addresses the policy allows; the
/// connection then goes to exactly those addresses, so a DNS answer cannot
/// change between the check and the connect (no rebinding).
struct GuardedResolver {
    policy: Arc<AddressPolicy>,
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let policy = self.policy.clone();
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let resolved: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let mut refusal = None;
            let allowed: Vec<SocketAddr> = resolved
                .into_iter()
                .filter(|a| match policy.check(a.ip()) {
                    Ok(()) => true,
                    Err(e) => {
                        refusal = Some(e);
                        false
                    }
                })
                .collect();
            if allowed.is_empty() {
                let why = refusal.unwrap_or_else(|| format!("{host} has no addresses"));
                return Err(format!("{FORBIDDEN}: {why}").into());
            }
            Ok(Box::new(allowed.into_iter()) as Addrs)
        })
    }
}

/// Marks a refusal by the address policy in the error chain.
const FORBIDDEN: &str = "address refused";

/// Build the shared HTTP client: pooled per host, HTTP/1.1 keep-alive and
/// HTTP/2 where offered, never following redirects, ignoring proxy settings,
/// connecting only where `policy` allows.
/// The HTTP client of one delivery process. Idle connections are kept for
/// as many attempts as can run at once: with fewer, a busy host (many
/// endpoints of one ERP vendor, say) has connections closed and reopened
/// all the time (the benchmark saw ~1,000 new connections a second).
pub fn client(request_timeout: Duration, policy: Arc<AddressPolicy>, concurrency: usize) -> reqwest::Client {
    reqwest::Client::builder()
        .user_agent(USER_AGENT)
        .timeout(request_timeout)
        .connect_timeout(Duration::from_secs(5).min(request_timeout))
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .pool_idle_timeout(Duration::from_secs(90))
        .pool_max_idle_per_host(concurrency)
        .tcp_nodelay(true)
        .dns_resolver(Arc::new(GuardedResolver { policy }))
        .build()
        .expect("HTTP client builds (is a rustls crypto provider installed?)")
}

/// The URL to send to, parsed once. IP literals never reach the resolver:
/// they are checked here, as the URL parser reads them (`0x7f.1` too).
pub fn target(url: &str, policy: &AddressPolicy) -> Result<reqwest::Url, String> {
    let url = reqwest::Url::parse(url).map_err(|e| format!("unusable URL: {e}"))?;
    // The parser writes IP hosts back in their plain form.
    let ip = url.host_str().and_then(|h| h.trim_start_matches('[').trim_end_matches(']').parse::<IpAddr>().ok());
    if let Some(ip) = ip {
        policy.check(ip)?;
    }
    Ok(url)
}

/// Target URLs already parsed and checked, by endpoint URL: parsing one
/// for every attempt cost about 2 % of delivery's CPU under load. The
/// address policy is fixed for the life of the process, so a URL it allowed
/// once stays allowed; host names are still checked at every connect.
#[derive(Default)]
pub struct Targets(std::sync::Mutex<HashMap<String, reqwest::Url>>);

impl Targets {
    /// Endpoints whose URLs are kept; past this, the cache starts over.
    const MAX: usize = 10_000;

    pub fn get(&self, url: &str, policy: &AddressPolicy) -> Result<reqwest::Url, String> {
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
        Self::failed(ErrorKind::ForbiddenAddress, why)
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

/// POST `body` to the endpoint, signed for `msg_id`.
pub async fn send(
    client: &reqwest::Client,
    url: reqwest::Url,
    endpoint: &EndpointConfig,
    msg_id: &str,
    body: Vec<u8>,
    traceparent: &str,
) -> AttemptResult {
    let timestamp = chrono::Utc::now().timestamp();
    let signature = signing::signature_header(endpoint.signing_secrets(chrono::Utc::now()), msg_id, timestamp, &body);
    let mut request = client
        .post(url)
        .header("content-type", "application/json")
        .header("webhook-id", msg_id)
        .header("webhook-timestamp", timestamp.to_string())
        .header("webhook-signature", signature)
        .header("traceparent", traceparent);
    // What Raw shows: the headers as sent, secrets redacted.
    let mut sent = vec![
        ("content-type".to_owned(), "application/json".to_owned()),
        ("webhook-id".to_owned(), msg_id.to_owned()),
        ("webhook-timestamp".to_owned(), timestamp.to_string()),
        ("webhook-signature".to_owned(), Secret::MASK.to_owned()),
        ("traceparent".to_owned(), traceparent.to_owned()),
    ];
    if let Some(h) = &endpoint.auth_header {
        let mut value =
            reqwest::header::HeaderValue::from_str(h.value().expose()).expect("auth header value checked on input");
        value.set_sensitive(true);
        request = request.header(h.name(), value);
        sent.push((h.name().to_owned(), Secret::MASK.to_owned()));
    }
    sent.push(("user-agent".to_owned(), USER_AGENT.to_owned()));
    sent.push(("content-length".to_owned(), body.len().to_string()));
    let started = Instant::now();
    let outcome = request.body(body).send().await;
    let mut result = match outcome {
        Ok(mut response) => {
            let status = response.status();
            let mut excerpt = Vec::new();
            let mut body_error = None;
            while excerpt.len() < EXCERPT_BYTES {
                match response.chunk().await {
                    Ok(Some(chunk)) => {
                        excerpt.extend_from_slice(&chunk[..chunk.len().min(EXCERPT_BYTES - excerpt.len())])
                    }
                    Ok(None) => break,
                    Err(e) => {
                        body_error = Some(e);
                        break;
                    }
                }
            }
            let (error_kind, error) = if status.is_success() {
                (None, None)
            } else if status.is_redirection() {
                let location = response.headers().get("location").and_then(|l| l.to_str().ok()).unwrap_or("-");
                (Some(ErrorKind::Redirect), Some(format!("HTTP {status} to {location}; redirects are not followed")))
            } else {
                (Some(ErrorKind::HttpStatus), Some(format!("HTTP {status}")))
            };
            let (error_kind, error) = match (error_kind, body_error) {
                (None, Some(e)) if e.is_timeout() => {
                    (Some(ErrorKind::Timeout), Some("timed out reading the response body".into()))
                }
                (k, _) => (k, error),
            };
            let retry_after = matches!(status.as_u16(), 429 | 503)
                .then(|| response.headers().get("retry-after")?.to_str().ok())
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
        Err(e) => {
            let (kind, text) = classify(&e);
            AttemptResult {
                retry_after: None,
                request_headers: Vec::new(),
                status_code: None,
                error_kind: Some(kind),
                error: Some(text),
                duration: Duration::ZERO,
                response_excerpt: None,
            }
        }
    };
    result.duration = started.elapsed();
    result.request_headers = sent;
    result
}

/// Name the failure from reqwest's error chain (the URL is left out: it may
/// carry a token in its query).
fn classify(e: &reqwest::Error) -> (ErrorKind, String) {
    let mut chain = String::new();
    let mut source: Option<&dyn std::error::Error> = std::error::Error::source(e);
    while let Some(s) = source {
        if !chain.is_empty() {
            chain.push_str(": ");
        }
        chain.push_str(&s.to_string());
        source = s.source();
    }
    let lower = chain.to_ascii_lowercase();
    let kind = if chain.contains(FORBIDDEN) {
        ErrorKind::ForbiddenAddress
    } else if e.is_timeout() {
        ErrorKind::Timeout
    } else if lower.contains("dns error") || lower.contains("failed to lookup") || lower.contains("resolve") {
        ErrorKind::Dns
    } else if lower.contains("certificate") || lower.contains("tls") || lower.contains("handshake") {
        ErrorKind::Tls
    } else if lower.contains("refused") {
        ErrorKind::ConnectionRefused
    } else {
        ErrorKind::Connection
    };
    let text = if chain.is_empty() { kind.as_str().to_owned() } else { chain };
    (kind, text)
}
