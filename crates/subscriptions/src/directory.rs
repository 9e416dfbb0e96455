//! An in-memory index of every tenant, kept current by an ordered consumer
//! on HOOKLINE_CONFIG. Reads never touch the network.

use std::{
    collections::HashMap,
    sync::{Arc, RwLock},
    time::Duration,
};

use async_nats::jetstream::{
    Context,
    consumer::{DeliverPolicy, pull::OrderedConfig},
};
use futures_util::StreamExt;
use hookline_bus::CONFIG_STREAM;
use hookline_domain::{
    config::{ConfigEvent, TenantState},
    endpoint::EndpointConfig,
    ids::{EndpointId, TenantId},
};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::Error;

/// Tenants, and the derived lookups kept in step with them on every event.
#[derive(Default)]
struct Index {
    tenants: HashMap<TenantId, Arc<TenantState>>,
    /// API key hash → tenant, so authentication is one lookup, not a scan.
    keys: HashMap<String, TenantId>,
    endpoints: usize,
}

type Tenants = Arc<RwLock<Index>>;

/// Shared, cheaply clonable handle to the index.
#[derive(Clone)]
pub struct Directory {
    tenants: Tenants,
    /// Stream sequence of the last config message applied.
    applied: watch::Receiver<u64>,
    js: Context,
}

impl Directory {
    /// Start following the config stream; returns once the index holds
    /// everything the stream held at start.
    pub async fn start(js: &Context, shutdown: CancellationToken) -> Result<Self, Error> {
        let (tx, applied) = watch::channel(0u64);
        let dir = Self { tenants: Arc::default(), applied, js: js.clone() };
        let last = dir.stream_last_seq().await?;
        tokio::spawn(follow(js.clone(), dir.tenants.clone(), tx, shutdown));
        dir.wait_applied(last, Duration::from_secs(60)).await?;
        Ok(dir)
    }

    async fn stream_last_seq(&self) -> Result<u64, Error> {
        let unavailable = |e: &dyn std::fmt::Display| Error::Unavailable(e.to_string());
        let stream = self.js.get_stream(CONFIG_STREAM).await.map_err(|e| unavailable(&e))?;
        Ok(stream.get_info().await.map_err(|e| unavailable(&e))?.state.last_sequence)
    }

    /// Wait until the index holds everything the stream holds now. For
    /// misses that may be a change made a moment ago through another replica.
    pub async fn catch_up(&self) -> Result<(), Error> {
        let last = self.stream_last_seq().await?;
        self.wait_applied(last, Duration::from_secs(2)).await
    }

    /// Wait until the index has applied stream sequence `seq`.
    pub async fn wait_applied(&self, seq: u64, timeout: Duration) -> Result<(), Error> {
        let mut rx = self.applied.clone();
        tokio::time::timeout(timeout, rx.wait_for(|s| *s >= seq))
            .await
            .map_err(|_| Error::Unavailable(format!("config index did not reach sequence {seq} within {timeout:?}")))?
            .map_err(|_| Error::Unavailable("config follower stopped".into()))?;
        Ok(())
    }

    pub fn tenant(&self, id: &TenantId) -> Option<Arc<TenantState>> {
        self.tenants.read().expect("directory lock").tenants.get(id).cloned()
    }

    pub fn endpoint(&self, tenant: &TenantId, endpoint: &EndpointId) -> Option<EndpointConfig> {
        self.tenant(tenant)?.endpoints.get(endpoint).cloned()
    }

    /// The tenant owning the API key with this hash.
    pub fn tenant_of_key(&self, hash: &str) -> Option<TenantId> {
        self.tenants.read().expect("directory lock").keys.get(hash).cloned()
    }

    pub fn tenant_ids(&self) -> Vec<TenantId> {
        self.tenants.read().expect("directory lock").tenants.keys().cloned().collect()
    }
}

/// Apply the stream to the index for as long as the process runs; if the
/// consumer ends, a new one resumes after the last applied sequence.
async fn follow(js: Context, tenants: Tenants, tx: watch::Sender<u64>, shutdown: CancellationToken) {
    while !shutdown.is_cancelled() {
        let start = *tx.borrow() + 1;
        let consumer = match js.get_stream(CONFIG_STREAM).await {
            Ok(stream) => stream
                .create_consumer(OrderedConfig {
                    filter_subject: hookline_bus::CONFIG_ALL.into(),
                    deliver_policy: DeliverPolicy::ByStartSequence { start_sequence: start },
                    ..Default::default()
                })
                .await
                .map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        let messages = match consumer {
            Ok(c) => c.messages().await.map_err(|e| e.to_string()),
            Err(e) => Err(e),
        };
        let mut messages = match messages {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(error = %e, "config follower: cannot consume; retrying");
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
        };
        loop {
            let next = tokio::select! {
                _ = shutdown.cancelled() => return,
                next = messages.next() => next,
            };
            let msg = match next {
                Some(Ok(m)) => m,
                Some(Err(e)) => {
                    tracing::warn!(error = %e, "config follower: consumer error, continuing");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                }
                None => break,
            };
            let Ok(seq) = msg.info().map(|i| i.stream_sequence) else { continue };
            match serde_json::from_slice::<ConfigEvent>(&msg.payload) {
                Ok(event) => apply(&tenants, msg.subject.as_str(), &event, seq),
                Err(e) => tracing::error!(seq, error = %e, "config follower: unreadable config event skipped"),
            }
            tx.send_replace(seq);
        }
        tracing::warn!("config follower: consumer ended; resuming");
    }
}

fn apply(index: &RwLock<Index>, subject: &str, event: &ConfigEvent, seq: u64) {
    let Some(id) = hookline_bus::tenant_of(subject).and_then(|t| TenantId::parse(t).ok()) else {
        tracing::error!(subject, "config follower: subject without a valid tenant skipped");
        return;
    };
    let mut index = index.write().expect("directory lock");
    let current = index.tenants.get(&id).cloned();
    match TenantState::evolve(current.as_deref().cloned(), event, seq) {
        Some(next) => {
            if let Some(old) = &current {
                index.endpoints -= old.endpoints.len();
                for k in old.api_keys.values() {
                    index.keys.remove(&k.hash);
                }
            }
            index.endpoints += next.endpoints.len();
            for k in next.api_keys.values() {
                index.keys.insert(k.hash.clone(), id.clone());
            }
            index.tenants.insert(id, Arc::new(next));
            let m = hookline_telemetry::metrics();
            m.directory_tenants.set(index.tenants.len() as i64);
            m.directory_endpoints.set(index.endpoints as i64);
        }
        None => tracing::error!(
            subject,
            seq,
            kind = event.kind(),
            "config follower: event for a tenant that does not exist"
        ),
    }
}
