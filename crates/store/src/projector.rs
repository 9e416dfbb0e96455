//! The projector: follows HOOKLINE_CONFIG and HOOKLINE_OUTCOMES into
//! Postgres in batches. Each batch is one transaction that also moves the
//! projector's offset, compare-and-set against the offset this follower
//! last wrote: a redelivered message changes nothing, two replicas never
//! apply the same batch twice, and a reset (rebuild) is noticed and replayed
//! from sequence 1.

use std::time::Duration;

use async_nats::jetstream::{
    Context,
    consumer::{DeliverPolicy, pull::OrderedConfig},
    message::Message,
};
use futures_util::StreamExt;
use hookline_bus::{CONFIG_ALL, CONFIG_STREAM, OUTCOMES_ALL, OUTCOMES_STREAM};
use hookline_domain::{config::ConfigEvent, ids::TenantId};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use crate::StoreError;

/// Messages applied per transaction at most.
const BATCH: usize = 500;
/// How often an idle projector checks whether its offset was reset.
const IDLE_CHECK: Duration = Duration::from_millis(500);
/// How long a batch waits for more messages once it has one.
const LINGER: Duration = Duration::from_millis(20);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Projection {
    /// Tenants and endpoints.
    Config,
    /// The delivery log and statistics.
    Outcomes,
}

impl Projection {
    pub const ALL: [Projection; 2] = [Projection::Config, Projection::Outcomes];

    /// Its row in `projector_offsets`.
    pub fn name(self) -> &'static str {
        match self {
            Projection::Config => "config",
            Projection::Outcomes => "outcomes",
        }
    }

    pub fn stream(self) -> &'static str {
        match self {
            Projection::Config => CONFIG_STREAM,
            Projection::Outcomes => OUTCOMES_STREAM,
        }
    }

    fn filter(self) -> &'static str {
        match self {
            Projection::Config => CONFIG_ALL,
            Projection::Outcomes => OUTCOMES_ALL,
        }
    }
}

enum Stop {
    Shutdown,
    /// The stored offset moved under us (rebuild, or another replica).
    Resync,
    Failed(StoreError),
}

impl From<StoreError> for Stop {
    fn from(e: StoreError) -> Self {
        Stop::Failed(e)
    }
}

impl From<sqlx::Error> for Stop {
    fn from(e: sqlx::Error) -> Self {
        Stop::Failed(e.into())
    }
}

pub async fn stored_offset(pool: &PgPool, projection: Projection) -> Result<u64, StoreError> {
    let seq: Option<i64> = sqlx::query_scalar("SELECT last_seq FROM projector_offsets WHERE projector = $1")
        .bind(projection.name())
        .fetch_optional(pool)
        .await?;
    Ok(seq.unwrap_or(0) as u64)
}

/// Run every projection until `shutdown`.
pub async fn run(js: Context, pool: PgPool, shutdown: CancellationToken) {
    let tasks = Projection::ALL.map(|p| tokio::spawn(run_one(js.clone(), pool.clone(), p, shutdown.clone())));
    for t in tasks {
        let _ = t.await;
    }
}

async fn run_one(js: Context, pool: PgPool, projection: Projection, shutdown: CancellationToken) {
    let name = projection.name();
    while !shutdown.is_cancelled() {
        match follow(&js, &pool, projection, &shutdown).await {
            Stop::Shutdown => return,
            Stop::Resync => {
                tracing::info!(projector = name, "offset moved (rebuild or another replica); resuming from it")
            }
            Stop::Failed(e) => {
                tracing::warn!(projector = name, error = %e, "projector: restarting in 1s");
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
            }
        }
    }
}

async fn follow(js: &Context, pool: &PgPool, projection: Projection, shutdown: &CancellationToken) -> Stop {
    let bus = |e: hookline_bus::Source| Stop::Failed(StoreError::Bus(e));
    let mut applied = match stored_offset(pool, projection).await {
        Ok(s) => s,
        Err(e) => return Stop::Failed(e),
    };
    let stream = match js.get_stream(projection.stream()).await {
        Ok(s) => s,
        Err(e) => return bus(e.into()),
    };
    let consumer = stream
        .create_consumer(OrderedConfig {
            filter_subject: projection.filter().into(),
            deliver_policy: DeliverPolicy::ByStartSequence { start_sequence: applied + 1 },
            ..Default::default()
        })
        .await;
    let mut messages = match consumer {
        Ok(c) => match c.messages().await {
            Ok(m) => m,
            Err(e) => return bus(e.into()),
        },
        Err(e) => return bus(e.into()),
    };
    loop {
        let first = tokio::select! {
            _ = shutdown.cancelled() => return Stop::Shutdown,
            m = messages.next() => m,
            // Idle: notice a reset (rebuild) even when no message arrives.
            _ = tokio::time::sleep(IDLE_CHECK) => {
                match stored_offset(pool, projection).await {
                    Ok(stored) if stored != applied => return Stop::Resync,
                    Ok(_) => continue,
                    Err(e) => return Stop::Failed(e),
                }
            }
        };
        let mut batch = match first {
            Some(Ok(m)) => vec![m],
            Some(Err(e)) => return bus(e.into()),
            None => return bus("consumer closed".into()),
        };
        while batch.len() < BATCH {
            match tokio::time::timeout(LINGER, messages.next()).await {
                Ok(Some(Ok(m))) => batch.push(m),
                Ok(Some(Err(e))) => return bus(e.into()),
                Ok(None) => return bus("consumer closed".into()),
                Err(_) => break,
            }
        }
        match apply_batch(pool, projection, applied, &batch).await {
            Ok(last) => applied = last,
            Err(stop) => return stop,
        }
    }
}

/// Apply `batch` (messages after `applied`) in one transaction; returns the
/// new offset.
async fn apply_batch(pool: &PgPool, projection: Projection, applied: u64, batch: &[Message]) -> Result<u64, Stop> {
    let mut tx = pool.begin().await?;
    // The stream is the record and the offset commits with the rows: a
    // commit lost in a Postgres crash is replayed from JetStream, so the
    // batch need not wait for its WAL to reach the disk.
    sqlx::query("SET LOCAL synchronous_commit = off").execute(&mut *tx).await?;
    sqlx::query("INSERT INTO projector_offsets (projector, last_seq) VALUES ($1, 0) ON CONFLICT DO NOTHING")
        .bind(projection.name())
        .execute(&mut *tx)
        .await?;
    let stored: i64 = sqlx::query_scalar("SELECT last_seq FROM projector_offsets WHERE projector = $1 FOR UPDATE")
        .bind(projection.name())
        .fetch_one(&mut *tx)
        .await?;
    if stored as u64 != applied {
        return Err(Stop::Resync);
    }
    let mut last = applied;
    let mut outcomes = Vec::new();
    for msg in batch {
        let seq = hookline_bus::stream_sequence(msg.reply.as_deref())
            .ok_or_else(|| Stop::Failed(StoreError::NoSequence { reply: msg.reply.clone() }))?;
        if seq <= last {
            continue;
        }
        last = seq;
        match projection {
            Projection::Config => {
                let tenant = hookline_bus::tenant_of(msg.subject.as_str()).unwrap_or_default();
                let Ok(tenant) = TenantId::parse(tenant) else {
                    tracing::error!(seq, subject = %msg.subject, "config projector: event of no tenant skipped");
                    continue;
                };
                match serde_json::from_slice::<ConfigEvent>(&msg.payload) {
                    Ok(event) => crate::config::apply(&mut tx, &tenant, &event, seq).await?,
                    Err(e) => tracing::error!(seq, error = %e, "config projector: unreadable event skipped"),
                }
            }
            Projection::Outcomes => match serde_json::from_slice::<crate::outcomes::Recorded>(&msg.payload) {
                Ok(o) => outcomes.push(o),
                Err(e) => tracing::error!(seq, error = %e, "outcomes projector: unreadable outcome skipped"),
            },
        }
    }
    if !outcomes.is_empty() {
        let outcomes = crate::erase::without_deleted(&mut tx, outcomes).await?;
        crate::outcomes::apply(&mut tx, &outcomes).await?;
    }
    sqlx::query("UPDATE projector_offsets SET last_seq = $2, updated_at = now() WHERE projector = $1")
        .bind(projection.name())
        .bind(last as i64)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(last)
}
