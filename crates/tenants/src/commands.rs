//! Command handling: decide against the index, append with optimistic
//! concurrency, retry on conflict after catching up; and compaction, which
//! replaces a tenant's history with one snapshot.
//!
//! Before it decides, a command catches up with the tenant's last config
//! event as the stream leader has it, so a change acknowledged a moment ago
//! by another replica is never missed: the command neither refuses a tenant
//! that exists (`NOT_FOUND`) nor decides against a stale version.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use async_nats::jetstream::{Context, context::PublishErrorKind, message::PublishMessage};
use hookline_bus::{CONFIG_STREAM, config_subject};
use hookline_domain::{
    config::{Command, ConfigError, ConfigEvent, TenantState, decide},
    ids::TenantId,
};

use crate::{Directory, Error, directory::WaitReason};

const MAX_ATTEMPTS: usize = 10;
const INDEX_WAIT: Duration = Duration::from_secs(5);
/// How long after a deletion its erasure runs once more, longer than a
/// delivery attempt takes to record its outcome.
const LATE_ERASE: Duration = Duration::from_secs(120);

/// What [`Commands::delete_tenant`] did.
#[derive(Debug)]
pub struct Deletion {
    /// The tenant as it was before; `None` when it had been deleted already
    /// (the erasure was run again).
    pub tenant: Option<Arc<TenantState>>,
    /// The sequence of its `tenant.deleted` on HOOKLINE_CONFIG.
    pub tombstone: u64,
    pub erased: hookline_bus::Erased,
}

/// After how many events since its last snapshot a tenant is compacted,
/// unless set otherwise (`HOOKLINE_CONFIG_SNAPSHOT_AFTER`).
pub const DEFAULT_SNAPSHOT_AFTER: u64 = 100;

#[derive(Clone)]
pub struct Commands {
    js: Context,
    directory: Directory,
    /// Serialises commands per tenant inside this process, so conflicts only
    /// come from other replicas.
    locks: Arc<Mutex<HashMap<TenantId, Arc<tokio::sync::Mutex<()>>>>>,
    /// Compact a tenant once a command leaves it with this many events since
    /// its last snapshot; 0 never does.
    snapshot_after: u64,
}

/// What compacting one tenant did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Compaction {
    /// The stream sequence of the snapshot, now the subject's first message
    /// (0: the tenant was already one snapshot and nothing was written).
    pub snapshot: u64,
    /// Messages purged from the tenant's subject.
    pub purged: u64,
}

/// What [`Commands::compact_all`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CompactionReport {
    /// Tenants given a new snapshot.
    pub tenants: u64,
    /// Messages purged.
    pub purged: u64,
    /// Tenants whose compaction failed (NATS trouble, contention).
    pub failed: u64,
}

/// How often the subscriptions role compacts the tenants a command did not
/// (a history written by a process with `HOOKLINE_CONFIG_SNAPSHOT_AFTER=0`
/// or by a build without compaction).
pub const SWEEP_EVERY: Duration = Duration::from_secs(600);

/// Compact every tenant due (see [`Commands::with_snapshot_after`]) shortly
/// after start and then every [`SWEEP_EVERY`], until `shutdown` (only
/// waiting for it when compaction is off: the process stops when a task ends).
pub async fn sweep(commands: Commands, shutdown: tokio_util::sync::CancellationToken) {
    if commands.snapshot_after == 0 {
        return shutdown.cancelled().await;
    }
    let mut wait = Duration::from_secs(30);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(wait) => {}
        }
        let report = commands.compact_all(commands.snapshot_after).await;
        if report != CompactionReport::default() {
            tracing::info!(
                tenants = report.tenants,
                purged = report.purged,
                failed = report.failed,
                "config compaction sweep"
            );
        }
        wait = SWEEP_EVERY;
    }
}

enum AppendError {
    Conflict,
    Other(async_nats::jetstream::context::PublishError),
}

impl Commands {
    pub fn new(js: Context, directory: Directory) -> Self {
        Self { js, directory, locks: Arc::default(), snapshot_after: DEFAULT_SNAPSHOT_AFTER }
    }

    /// Compact a tenant after a command once it has `events` events since
    /// its last snapshot (0: never after a command; [`Self::compact`] still
    /// works).
    pub fn with_snapshot_after(mut self, events: u64) -> Self {
        self.snapshot_after = events;
        self
    }

    pub fn snapshot_after(&self) -> u64 {
        self.snapshot_after
    }

    fn lock(&self, tenant: &TenantId) -> Arc<tokio::sync::Mutex<()>> {
        self.locks.lock().expect("locks").entry(tenant.clone()).or_default().clone()
    }

    /// Run a command; returns the tenant as it is after the command, once the
    /// index reflects it (read-your-writes for the caller).
    pub async fn execute(&self, tenant: &TenantId, cmd: Command) -> Result<Arc<TenantState>, Error> {
        let name = cmd.name();
        let result = self.execute_inner(tenant, cmd).await;
        let outcome = match &result {
            Ok(_) => "ok",
            Err(Error::Config(_)) => "refused",
            Err(_) => "error",
        };
        let labels = hookline_telemetry::labels([("command", name), ("result", outcome)]);
        hookline_telemetry::metrics().config_commands.get_or_create(&labels).inc();
        result
    }

    /// Delete a tenant ([`Command::DeleteTenant`]): append `tenant.deleted`,
    /// then erase the tenant's messages from every stream
    /// ([`hookline_bus::erase_tenant`]). A tenant already deleted is erased
    /// again, which finishes an erasure cut short; a tenant that never
    /// existed is `NOT_FOUND`.
    pub async fn delete_tenant(&self, tenant: &TenantId, confirm: String) -> Result<Deletion, Error> {
        let result = self.delete_inner(tenant, confirm).await;
        let outcome = match &result {
            Ok(_) => "ok",
            Err(Error::Config(_)) => "refused",
            Err(_) => "error",
        };
        let labels = hookline_telemetry::labels([("command", "delete_tenant"), ("result", outcome)]);
        hookline_telemetry::metrics().config_commands.get_or_create(&labels).inc();
        result
    }

    async fn delete_inner(&self, tenant: &TenantId, confirm: String) -> Result<Deletion, Error> {
        let lock = self.lock(tenant);
        let _guard = lock.lock().await;
        self.directory.sync_tenant(tenant, WaitReason::Command).await?;
        let cmd = Command::DeleteTenant { confirm };
        for _ in 0..MAX_ATTEMPTS {
            let state = self.directory.tenant(tenant);
            let (tombstone, deleted) = match (decide(tenant, state.as_deref(), cmd.clone()), &state) {
                (Ok(events), Some(s)) => match self.append(tenant, &events, s.version).await {
                    Ok(last) => {
                        self.directory.wait_applied(last, INDEX_WAIT).await?;
                        (last, state)
                    }
                    Err(AppendError::Conflict) => {
                        hookline_telemetry::metrics().config_conflicts.inc();
                        self.directory.sync_tenant(tenant, WaitReason::Command).await?;
                        continue;
                    }
                    Err(AppendError::Other(e)) => return Err(Error::unavailable(e)),
                },
                (Err(ConfigError::TenantNotFound(_)), None) => match self.directory.tombstone(tenant) {
                    Some(seq) => (seq, None),
                    None => return Err(ConfigError::TenantNotFound(tenant.clone()).into()),
                },
                (Err(e), _) => return Err(e.into()),
                (Ok(_), None) => unreachable!("decide refuses to delete a tenant that does not exist"),
            };
            let erased = hookline_bus::erase_tenant(&self.js, tenant, tombstone).await.map_err(Error::unavailable)?;
            tracing::info!(
                tenant = %tenant,
                tombstone,
                messages = erased.messages,
                consumers = erased.consumers,
                again = deleted.is_none(),
                "tenant deleted and its messages erased"
            );
            self.erase_late(tenant.clone(), tombstone);
            return Ok(Deletion { tenant: deleted, tombstone, erased });
        }
        Err(Error::Contention(tenant.clone()))
    }

    /// Erase the tenant once more after [`LATE_ERASE`]: a task a worker was
    /// sending while the tenant was deleted may still record its outcome.
    /// Skipped when the tenant was created again meanwhile.
    fn erase_late(&self, tenant: TenantId, tombstone: u64) {
        let this = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep(LATE_ERASE).await;
            if this.directory.tombstone(&tenant) != Some(tombstone) {
                return;
            }
            if let Err(e) = hookline_bus::erase_tenant(&this.js, &tenant, tombstone).await {
                tracing::warn!(tenant = %tenant, error = %e, "late erasure of a deleted tenant failed; the next start finishes it");
            }
        });
    }

    /// Erase every deleted tenant again: finishes erasures a crash or an
    /// outage cut short. Run when subscriptions starts.
    pub async fn finish_deletions(&self) -> Result<usize, Error> {
        let tombstones = self.directory.tombstones();
        for (tenant, tombstone) in &tombstones {
            let lock = self.lock(tenant);
            let _guard = lock.lock().await;
            // Created again since the list was read: nothing of the old one is left to erase.
            if self.directory.tombstone(tenant) != Some(*tombstone) {
                continue;
            }
            hookline_bus::erase_tenant(&self.js, tenant, *tombstone).await.map_err(Error::unavailable)?;
        }
        Ok(tombstones.len())
    }

    async fn execute_inner(&self, tenant: &TenantId, cmd: Command) -> Result<Arc<TenantState>, Error> {
        let lock = self.lock(tenant);
        let _guard = lock.lock().await;
        let mut last = self.directory.sync_tenant(tenant, WaitReason::Command).await?;
        for _ in 0..MAX_ATTEMPTS {
            let state = self.directory.tenant(tenant);
            let events = decide(tenant, state.as_deref(), cmd.clone())?;
            // A tenant that does not exist now may have existed: its subject then
            // ends with its tombstone, and a new `tenant.created` appends after it.
            let expected = state.as_ref().map_or(last, |s| s.version);
            if events.is_empty() {
                return state.ok_or_else(|| Error::unavailable("tenant vanished"));
            }
            match self.append(tenant, &events, expected).await {
                Ok(appended) => {
                    self.directory.wait_tenant(tenant, appended, INDEX_WAIT).await?;
                    let after = self.directory.tenant(tenant).ok_or_else(|| Error::unavailable("tenant vanished"))?;
                    if self.snapshot_after > 0 && after.events_since_snapshot >= self.snapshot_after {
                        // The command is done; a compaction that fails is
                        // tried again after the next command.
                        if let Err(e) = self.compact_locked(tenant).await {
                            tracing::warn!(tenant = %tenant, error = %e, "config compaction failed; retried later");
                        }
                    }
                    return Ok(after);
                }
                Err(AppendError::Conflict) => {
                    hookline_telemetry::metrics().config_conflicts.inc();
                    last = self.directory.sync_tenant(tenant, WaitReason::Command).await?;
                }
                Err(AppendError::Other(e)) => return Err(Error::unavailable(e)),
            }
        }
        Err(Error::Contention(tenant.clone()))
    }

    /// Replace the tenant's history with one snapshot: append
    /// `tenant.snapshot` (its whole state) on condition that the subject's
    /// last event is still the one the state was made from, then purge
    /// everything before it on the subject. `None` for a tenant that does
    /// not exist.
    ///
    /// Crash-safe in any order: a snapshot whose purge did not happen leaves
    /// history that the next compaction purges (a purge is "before this
    /// sequence", never "keep the last n", so an event appended meanwhile by
    /// another replica is never lost).
    pub async fn compact(&self, tenant: &TenantId) -> Result<Option<Compaction>, Error> {
        let lock = self.lock(tenant);
        let _guard = lock.lock().await;
        let result = self.compact_locked(tenant).await;
        let outcome = match &result {
            Ok(_) => "ok",
            Err(_) => "error",
        };
        let labels = hookline_telemetry::labels([("command", "compact"), ("result", outcome)]);
        hookline_telemetry::metrics().config_commands.get_or_create(&labels).inc();
        result
    }

    async fn compact_locked(&self, tenant: &TenantId) -> Result<Option<Compaction>, Error> {
        self.directory.sync_tenant(tenant, WaitReason::Command).await?;
        for _ in 0..MAX_ATTEMPTS {
            let Some(state) = self.directory.tenant(tenant) else { return Ok(None) };
            if state.events_since_snapshot == 0 {
                // Already one snapshot: only history a purge missed remains.
                let purged = self.purge_before(tenant, state.version).await?;
                return Ok(Some(Compaction { snapshot: 0, purged }));
            }
            match self.append(tenant, &[state.snapshot()], state.version).await {
                Ok(seq) => {
                    let purged = self.purge_before(tenant, seq).await?;
                    tracing::info!(tenant = %tenant, seq, purged, "config history compacted to a snapshot");
                    self.directory.wait_tenant(tenant, seq, INDEX_WAIT).await?;
                    return Ok(Some(Compaction { snapshot: seq, purged }));
                }
                Err(AppendError::Conflict) => {
                    hookline_telemetry::metrics().config_conflicts.inc();
                    self.directory.sync_tenant(tenant, WaitReason::Command).await?;
                }
                Err(AppendError::Other(e)) => return Err(Error::unavailable(e)),
            }
        }
        Err(Error::Contention(tenant.clone()))
    }

    /// Compact every tenant with at least `min_events` events since its last
    /// snapshot (0: every tenant, which also purges history a crash left
    /// behind a snapshot). One tenant at a time, so commands keep flowing;
    /// a tenant that fails is counted and left for the next run.
    pub async fn compact_all(&self, min_events: u64) -> CompactionReport {
        let mut report = CompactionReport::default();
        for id in self.directory.tenant_ids() {
            let due = self.directory.tenant(&id).is_some_and(|t| t.events_since_snapshot >= min_events);
            if !due {
                continue;
            }
            match self.compact(&id).await {
                Ok(Some(c)) => {
                    report.tenants += u64::from(c.snapshot > 0);
                    report.purged += c.purged;
                }
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(tenant = %id, error = %e, "config compaction failed; retried later");
                    report.failed += 1;
                }
            }
        }
        report
    }

    /// Purge the tenant's config messages before `seq` (not `seq` itself).
    async fn purge_before(&self, tenant: &TenantId, seq: u64) -> Result<u64, Error> {
        let stream = self.js.get_stream_no_info(CONFIG_STREAM).await.map_err(Error::unavailable)?;
        let purged =
            stream.purge().filter(config_subject(tenant)).sequence(seq).await.map_err(Error::unavailable)?.purged;
        if purged > 0 {
            hookline_telemetry::metrics().config_purged.inc_by(purged);
        }
        Ok(purged)
    }

    async fn append(&self, tenant: &TenantId, events: &[ConfigEvent], mut expected: u64) -> Result<u64, AppendError> {
        let subject = config_subject(tenant);
        for event in events {
            let payload = serde_json::to_vec(event).expect("config events serialise");
            let publish = PublishMessage::build()
                .payload(payload.into())
                .header(hookline_bus::CONFIG_EVENT_HEADER, event.kind())
                .expected_last_subject_sequence(expected);
            let ack = self.js.send_publish(subject.clone(), publish).await.map_err(AppendError::Other)?.await;
            match ack {
                Ok(ack) => {
                    tracing::info!(tenant = %tenant, kind = event.kind(), seq = ack.sequence, "config event appended");
                    expected = ack.sequence;
                }
                Err(e) if e.kind() == PublishErrorKind::WrongLastSequence => {
                    return Err(AppendError::Conflict);
                }
                Err(e) => return Err(AppendError::Other(e)),
            }
        }
        Ok(expected)
    }
}
