//! The webhook receiver: an in-process HTTP/1.1 server on loopback that
//! answers 200 to every POST and records the path, `webhook-id` and arrival
//! instant. Each endpoint gets its own path so fan-out is attributable.
//! Also a black hole: a TCP listener that accepts and never answers.

use std::{
    collections::{HashMap, HashSet},
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use axum::{
    Router,
    body::Bytes,
    extract::State,
    http::{HeaderMap, StatusCode, Uri},
    routing::post,
};
use tokio::{net::TcpListener, task::JoinHandle};

pub struct Hit {
    pub path: String,
    pub id: String,
    pub at: Instant,
    pub len: usize,
}

/// `(path, webhook-id)`: one delivery to one endpoint.
pub type Key = (String, String);

#[derive(Clone)]
pub struct Receiver {
    hits: Arc<Mutex<Vec<Hit>>>,
    pub addr: SocketAddr,
}

async fn record(State(hits): State<Arc<Mutex<Vec<Hit>>>>, uri: Uri, headers: HeaderMap, body: Bytes) -> StatusCode {
    let at = Instant::now();
    let id = headers.get("webhook-id").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    hits.lock().unwrap().push(Hit { path: uri.path().to_owned(), id, at, len: body.len() });
    StatusCode::OK
}

/// What [`Receiver::wait_for`] saw.
pub struct Arrivals {
    /// First arrival of each expected key.
    pub first: HashMap<Key, Instant>,
    /// Repeats of an expected key seen before all had arrived.
    pub duplicates: usize,
    /// Expected keys that had not arrived at the timeout.
    pub missing: usize,
}

impl Arrivals {
    pub fn last(&self) -> Option<Instant> {
        self.first.values().max().copied()
    }

    /// When the first delivery arrived, and the rate between the 10th and
    /// the 90th percentile of arrivals: the run without its warm-up and tail.
    pub fn shape(&self, start: Instant) -> Option<(Duration, f64)> {
        let mut at: Vec<Instant> = self.first.values().copied().collect();
        at.sort_unstable();
        let (lo, hi) = (at.len() / 10, at.len() * 9 / 10);
        let middle = at.get(hi)?.saturating_duration_since(*at.get(lo)?).as_secs_f64();
        Some((at[0].saturating_duration_since(start), (hi - lo) as f64 / middle))
    }
}

impl Receiver {
    pub async fn start() -> anyhow::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let hits = Arc::new(Mutex::new(Vec::with_capacity(1 << 20)));
        let app = Router::new().route("/{*path}", post(record)).with_state(hits.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Ok(Self { hits, addr })
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}/{path}", self.addr)
    }

    pub fn len(&self) -> usize {
        self.hits.lock().unwrap().len()
    }

    /// Body size of the latest webhook (not a raw baseline request).
    pub fn last_body_len(&self) -> usize {
        self.hits.lock().unwrap().iter().rev().find(|h| !h.path.starts_with("/raw")).map_or(0, |h| h.len)
    }

    /// Wait until every expected key has arrived, looking only at hits
    /// recorded from index `from` on, or until `timeout`.
    pub async fn wait_for(&self, expected: &HashSet<Key>, from: usize, timeout: Duration) -> Arrivals {
        let deadline = Instant::now() + timeout;
        let mut out = Arrivals { first: HashMap::with_capacity(expected.len()), duplicates: 0, missing: 0 };
        let mut cursor = from;
        loop {
            {
                let hits = self.hits.lock().unwrap();
                for h in &hits[cursor..] {
                    let key = (h.path.clone(), h.id.clone());
                    if expected.contains(&key) && out.first.insert(key, h.at).is_some() {
                        out.duplicates += 1;
                    }
                }
                cursor = hits.len();
            }
            out.missing = expected.len() - out.first.len();
            if out.missing == 0 || Instant::now() > deadline {
                return out;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    /// Keys seen more than once over the whole run, ignoring paths starting with `raw`.
    pub fn total_duplicates(&self) -> usize {
        let hits = self.hits.lock().unwrap();
        let mut seen = HashSet::with_capacity(hits.len());
        hits.iter().filter(|h| !h.path.starts_with("/raw")).filter(|h| !seen.insert((&h.path, &h.id))).count()
    }
}

/// Accepts connections and holds them open without ever reading or
/// answering. Dropping the handle's task (abort) closes them.
pub async fn black_hole() -> anyhow::Result<(SocketAddr, JoinHandle<()>)> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let task = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    Ok((addr, task))
}
