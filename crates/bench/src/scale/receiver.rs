//! The scale run's receivers: one HTTP/1.1 server on loopback where each
//! endpoint has its own path (`/e/<index>`) and a behaviour, and the raw
//! baselines' paths (`/raw`, answered like a healthy endpoint, and
//! `/raw/recovery`, like the recovering endpoint once it is back). Healthy
//! paths answer 200 after a delay drawn from the run's latency
//! distribution; failing ones 500 and throttled ones 429 with `Retry-After`
//! at once; the recovering endpoint 503 while it is down. Black holes are a
//! separate listener (`receiver::black_hole`).
//!
//! It shares the two cores with everything it measures, so a healthy
//! request costs one small record (endpoint index, `webhook-id`, arrival
//! instant, the delay it was given) pushed under a mutex, and the other
//! answers only a counter.

use std::{
    net::SocketAddr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use axum::{
    Router,
    extract::State,
    http::{HeaderMap, StatusCode, Uri, header::RETRY_AFTER},
    response::IntoResponse,
    routing::post,
};
use tokio::net::TcpListener;

use super::model::Kind;

/// How long a healthy receiver takes to answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Latency {
    /// Every answer after 100 ms.
    Fixed,
    /// Lognormal with p50 50 ms and p99 2 s (capped at 10 s, below the
    /// 15 s request timeout).
    Mixed,
}

impl Latency {
    pub fn sample(self) -> Duration {
        match self {
            Latency::Fixed => Duration::from_millis(100),
            Latency::Mixed => {
                // ln(2000 / 50) / z(0.99)
                const SIGMA: f64 = 1.5857;
                let (u1, u2): (f64, f64) = (rand::random::<f64>().max(1e-12), rand::random());
                let z = (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos();
                Duration::from_secs_f64((0.050 * (SIGMA * z).exp()).min(10.0))
            }
        }
    }
}

/// One answered request of a healthy path.
pub struct Hit {
    /// Endpoint index, or [`RAW`] for the baseline client.
    pub ep: u32,
    pub id: Box<str>,
    pub at: Instant,
    /// The delay the receiver answered after.
    pub delay: Duration,
}

/// The endpoint index the raw baseline's requests are recorded under.
pub const RAW: u32 = u32::MAX;
/// The index of the recovery phase's raw baseline, answered after the
/// recovering endpoint's latency.
pub const RAW_RECOVERY: u32 = u32::MAX - 1;

struct Shared {
    kinds: Vec<Kind>,
    latency: Mutex<Latency>,
    /// The recovering endpoint and whether it is down.
    recovery: u32,
    recovery_latency: Duration,
    down: AtomicBool,
    hits: Mutex<Vec<Hit>>,
    in_flight: AtomicI64,
    /// Answers other than a recorded hit: 500, 429, 503, unknown path.
    failed: AtomicU64,
    throttled: AtomicU64,
    refused: AtomicU64,
}

#[derive(Clone)]
pub struct Receivers {
    shared: Arc<Shared>,
    pub addr: SocketAddr,
}

/// Counts a request as in flight while it is alive (also when the client
/// gives up and the handler is dropped).
struct InFlight<'a>(&'a AtomicI64);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

async fn answer(State(s): State<Arc<Shared>>, uri: Uri, headers: HeaderMap) -> axum::response::Response {
    s.in_flight.fetch_add(1, Ordering::Relaxed);
    let _guard = InFlight(&s.in_flight);
    let at = Instant::now();
    let path = uri.path();
    let ep = match path.strip_prefix("/e/").and_then(|i| i.parse::<u32>().ok()) {
        Some(i) => i,
        None if path == "/raw" => RAW,
        None if path == "/raw/recovery" => RAW_RECOVERY,
        None => return StatusCode::NOT_FOUND.into_response(),
    };
    let delay = if ep == RAW_RECOVERY {
        s.recovery_latency
    } else if ep == s.recovery {
        if s.down.load(Ordering::Relaxed) {
            s.refused.fetch_add(1, Ordering::Relaxed);
            return StatusCode::SERVICE_UNAVAILABLE.into_response();
        }
        s.recovery_latency
    } else {
        match s.kinds.get(ep as usize).copied().unwrap_or(Kind::Healthy) {
            Kind::Healthy | Kind::BlackHole => s.latency.lock().unwrap().sample(),
            Kind::Failing => {
                s.failed.fetch_add(1, Ordering::Relaxed);
                return StatusCode::INTERNAL_SERVER_ERROR.into_response();
            }
            Kind::Throttled => {
                s.throttled.fetch_add(1, Ordering::Relaxed);
                return (StatusCode::TOO_MANY_REQUESTS, [(RETRY_AFTER, "30")]).into_response();
            }
        }
    };
    let id = headers.get("webhook-id").and_then(|v| v.to_str().ok()).unwrap_or_default().into();
    tokio::time::sleep(delay).await;
    s.hits.lock().unwrap().push(Hit { ep, id, at, delay });
    StatusCode::OK.into_response()
}

impl Receivers {
    /// Serve `kinds` (by endpoint index) and the recovering endpoint
    /// `recovery`, which answers after `recovery_latency` while up.
    pub async fn start(
        kinds: Vec<Kind>,
        latency: Latency,
        recovery: u32,
        recovery_latency: Duration,
    ) -> anyhow::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            kinds,
            latency: Mutex::new(latency),
            recovery,
            recovery_latency,
            down: AtomicBool::new(false),
            hits: Mutex::new(Vec::with_capacity(1 << 20)),
            in_flight: AtomicI64::new(0),
            failed: AtomicU64::new(0),
            throttled: AtomicU64::new(0),
            refused: AtomicU64::new(0),
        });
        let app = Router::new().route("/{*path}", post(answer)).with_state(shared.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Ok(Self { shared, addr })
    }

    pub fn url(&self, ep: u32) -> String {
        format!("http://{}/e/{ep}", self.addr)
    }

    pub fn raw_url(&self) -> String {
        format!("http://{}/raw", self.addr)
    }

    /// The raw path answered after the recovering endpoint's latency.
    pub fn raw_recovery_url(&self) -> String {
        format!("http://{}/raw/recovery", self.addr)
    }

    pub fn set_latency(&self, latency: Latency) {
        *self.shared.latency.lock().unwrap() = latency;
    }

    pub fn set_down(&self, down: bool) {
        self.shared.down.store(down, Ordering::Relaxed);
    }

    pub fn in_flight(&self) -> i64 {
        self.shared.in_flight.load(Ordering::Relaxed)
    }

    /// Requests answered 500, 429 and 503 so far.
    pub fn refusals(&self) -> (u64, u64, u64) {
        let s = &self.shared;
        (s.failed.load(Ordering::Relaxed), s.throttled.load(Ordering::Relaxed), s.refused.load(Ordering::Relaxed))
    }

    pub fn hits(&self) -> usize {
        self.shared.hits.lock().unwrap().len()
    }

    /// Run `f` over the hits recorded from index `from` on.
    pub fn with_hits<T>(&self, from: usize, f: impl FnOnce(&[Hit]) -> T) -> T {
        let hits = self.shared.hits.lock().unwrap();
        f(&hits[from.min(hits.len())..])
    }
}
