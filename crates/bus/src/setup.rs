//! Start-up against a NATS that may not be ready yet. In a cluster, nodes
//! start in any order and elect a JetStream meta leader first; until then
//! JetStream requests time out or find no responders. A service started
//! meanwhile (by an orchestrator, after a crash, during a rolling restart)
//! waits with a bounded, logged back-off instead of exiting, and `/readyz`
//! stays 503 until its streams are in place.
//!
//! Also the number of replicas of Hookline's streams
//! (`HOOKLINE_STREAM_REPLICAS`), applied when a stream is created and, when
//! it changes, to existing streams.

use std::{fmt, str::FromStr, time::Duration};

use async_nats::jetstream::{
    Context, ErrorCode,
    context::{CreateStreamError, CreateStreamErrorKind, GetStreamError, GetStreamErrorKind},
    stream,
};
use tokio_util::sync::CancellationToken;

/// Replicas of every Hookline stream: 1 (a single server), 3 or 5 (a
/// cluster of at least that many nodes). Raft needs a majority, so even
/// counts would add a copy without adding a tolerated failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamReplicas(usize);

impl StreamReplicas {
    pub const ONE: Self = Self(1);

    pub fn get(self) -> usize {
        self.0
    }
}

impl Default for StreamReplicas {
    fn default() -> Self {
        Self::ONE
    }
}

impl fmt::Display for StreamReplicas {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("must be 1, 3 or 5 (replicas of every stream; 3 or 5 need a NATS cluster of at least that many nodes)")]
pub struct BadReplicas;

impl FromStr for StreamReplicas {
    type Err = BadReplicas;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim() {
            "1" => Ok(Self(1)),
            "3" => Ok(Self(3)),
            "5" => Ok(Self(5)),
            _ => Err(BadReplicas),
        }
    }
}

/// Waits between attempts: 0.5 s doubling to 10 s.
#[derive(Debug, Clone)]
pub struct Backoff {
    next: Duration,
}

impl Backoff {
    const FIRST: Duration = Duration::from_millis(500);
    const MAX: Duration = Duration::from_secs(10);

    pub fn new() -> Self {
        Self { next: Self::FIRST }
    }

    /// The wait before the next attempt.
    pub fn next_wait(&mut self) -> Duration {
        let wait = self.next;
        self.next = (self.next * 2).min(Self::MAX);
        wait
    }
}

impl Default for Backoff {
    fn default() -> Self {
        Self::new()
    }
}

/// A JetStream request about a stream that got no usable answer.
#[derive(Debug, thiserror::Error)]
pub enum StreamRequestError {
    #[error("reading its configuration")]
    Info(#[source] GetStreamError),
    #[error("creating it")]
    Create(#[source] CreateStreamError),
    #[error("updating it")]
    Update(#[source] CreateStreamError),
}

/// What to do about a failed request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retry {
    /// NATS or JetStream is not (yet) available: wait and try again.
    Transient,
    /// The cluster has fewer nodes than replicas wanted. Also seen briefly
    /// while nodes (re)join, so it is retried for a while.
    Capacity,
    /// Another process changed the stream between our read and write:
    /// read it again.
    Conflict,
    /// Retrying will not help.
    Fatal,
}

fn classify_js(e: &async_nats::jetstream::Error) -> Retry {
    match e.error_code() {
        ErrorCode::STREAM_REPLICAS_NOT_SUPPORTED => Retry::Fatal,
        ErrorCode::INSUFFICIENT_RESOURCES => Retry::Capacity,
        // "stream name already in use with a different configuration": a
        // concurrent creator or updater won; re-read.
        ErrorCode::STREAM_NAME_EXIST | ErrorCode::STREAM_NOT_FOUND => Retry::Conflict,
        ErrorCode::CLUSTER_NOT_AVAILABLE
        | ErrorCode::CLUSTER_NOT_ACTIVE
        | ErrorCode::CLUSTER_NOT_LEADER
        | ErrorCode::CLUSTER_INCOMPLETE
        | ErrorCode::CLUSTER_NO_PEERS
        | ErrorCode::CLUSTER_NOT_ASSIGNED
        | ErrorCode::CLUSTER_SERVER_MEMBER_CHANGE_INFLIGHT
        | ErrorCode::JETSTREAM_NOT_ENABLED
        | ErrorCode::JETSTREAM_NOT_ENABLED_FOR_ACCOUNT => Retry::Transient,
        // 503: "JetStream system temporarily unavailable" and kin.
        _ if e.code() == 503 || e.code() == 408 => Retry::Transient,
        _ => Retry::Fatal,
    }
}

impl StreamRequestError {
    pub fn retry(&self) -> Retry {
        match self {
            Self::Info(e) => match e.kind() {
                // No answer at all: not connected yet, no responders, timed out.
                GetStreamErrorKind::Request => Retry::Transient,
                GetStreamErrorKind::JetStream(js) => classify_js(&js),
                _ => Retry::Fatal,
            },
            Self::Create(e) | Self::Update(e) => match e.kind() {
                CreateStreamErrorKind::TimedOut
                | CreateStreamErrorKind::JetStreamUnavailable
                | CreateStreamErrorKind::Response => Retry::Transient,
                CreateStreamErrorKind::NotFound => Retry::Conflict,
                CreateStreamErrorKind::JetStream(js) => classify_js(&js),
                _ => Retry::Fatal,
            },
        }
    }
}

/// The text of an error and its sources, `a: b: c`, for log fields.
pub fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let next = s.to_string();
        if !text.ends_with(&next) {
            text = format!("{text}: {next}");
        }
        source = s.source();
    }
    text
}

/// How long "insufficient resources" is taken for nodes still joining
/// before it counts as a cluster too small for the replicas asked.
pub(crate) const CAPACITY_PATIENCE: Duration = Duration::from_secs(30);

/// The stream as `config` describes it, with `replicas`, created if missing.
/// An existing stream keeps its settings, except its replica count, which
/// follows `replicas` when given (logged old → new). Returns the stream's
/// configuration as the server holds it afterwards.
pub(crate) async fn create_or_scale(
    js: &Context,
    config: &stream::Config,
    replicas: Option<StreamReplicas>,
) -> Result<stream::Config, StreamRequestError> {
    match js.get_stream(&config.name).await {
        Ok(mut existing) => {
            let current = existing.cached_info().config.clone();
            let Some(wanted) = replicas.map(StreamReplicas::get) else { return Ok(current) };
            if current.num_replicas == wanted {
                return Ok(current);
            }
            tracing::info!(
                stream = %config.name,
                from = current.num_replicas,
                to = wanted,
                "applying HOOKLINE_STREAM_REPLICAS: changing the stream's replicas"
            );
            let updated = stream::Config { num_replicas: wanted, ..current };
            let info = js.update_stream(&updated).await.map_err(StreamRequestError::Update)?;
            let _ = existing.info().await;
            Ok(info.config)
        }
        Err(e) if matches!(e.kind(), GetStreamErrorKind::JetStream(js) if js.code() == 404) => {
            let wanted = replicas.unwrap_or_default().get();
            let created = stream::Config { num_replicas: wanted, ..config.clone() };
            let mut stream = js.create_stream(created).await.map_err(StreamRequestError::Create)?;
            tracing::info!(stream = %config.name, replicas = wanted, "created the stream");
            Ok(stream.info().await.map(|i| i.config.clone()).unwrap_or_else(|_| stream.cached_info().config.clone()))
        }
        Err(e) => Err(StreamRequestError::Info(e)),
    }
}

/// Wait `wait` or until `shutdown`; false if shut down.
pub(crate) async fn pause(wait: Duration, shutdown: &CancellationToken) -> bool {
    tokio::select! {
        _ = shutdown.cancelled() => false,
        _ = tokio::time::sleep(wait) => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replicas_accept_one_three_and_five_only() {
        assert_eq!("1".parse::<StreamReplicas>().unwrap().get(), 1);
        assert_eq!("3".parse::<StreamReplicas>().unwrap().get(), 3);
        assert_eq!(" 5".parse::<StreamReplicas>().unwrap().get(), 5);
        for bad in ["0", "2", "4", "6", "", "three", "-1", "3.0"] {
            assert_eq!(bad.parse::<StreamReplicas>(), Err(BadReplicas), "{bad:?}");
        }
        assert_eq!(StreamReplicas::default(), StreamReplicas::ONE);
    }

    #[test]
    fn backoff_doubles_from_half_a_second_to_ten_seconds() {
        let mut b = Backoff::new();
        let waits: Vec<u64> = (0..8).map(|_| b.next_wait().as_millis() as u64).collect();
        assert_eq!(waits, [500, 1000, 2000, 4000, 8000, 10_000, 10_000, 10_000]);
    }
}
