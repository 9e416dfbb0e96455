//! Command handling: decide against the index, append with optimistic
//! concurrency, retry on conflict after catching up.
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
use hookline_bus::config_subject;
use hookline_domain::{
    config::{Command, ConfigEvent, TenantState, decide},
    ids::TenantId,
};

use crate::{Directory, Error, directory::WaitReason};

const MAX_ATTEMPTS: usize = 10;
const INDEX_WAIT: Duration = Duration::from_secs(5);

#[derive(Clone)]
pub struct Commands {
    js: Context,
    directory: Directory,
    /// Serialises commands per tenant inside this process, so conflicts only
    /// come from other replicas.
    locks: Arc<Mutex<HashMap<TenantId, Arc<tokio::sync::Mutex<()>>>>>,
}

enum AppendError {
    Conflict,
    Other(async_nats::jetstream::context::PublishError),
}

impl Commands {
    pub fn new(js: Context, directory: Directory) -> Self {
        Self { js, directory, locks: Arc::default() }
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

    async fn execute_inner(&self, tenant: &TenantId, cmd: Command) -> Result<Arc<TenantState>, Error> {
        let lock = self.locks.lock().expect("locks").entry(tenant.clone()).or_default().clone();
        let _guard = lock.lock().await;
        self.directory.sync_tenant(tenant, WaitReason::Command).await?;
        for _ in 0..MAX_ATTEMPTS {
            let state = self.directory.tenant(tenant);
            let events = decide(tenant, state.as_deref(), cmd.clone())?;
            let expected = state.as_ref().map_or(0, |s| s.version);
            if events.is_empty() {
                return state.ok_or_else(|| Error::unavailable("tenant vanished"));
            }
            match self.append(tenant, &events, expected).await {
                Ok(last) => {
                    self.directory.wait_applied(last, INDEX_WAIT).await?;
                    return self.directory.tenant(tenant).ok_or_else(|| Error::unavailable("tenant vanished"));
                }
                Err(AppendError::Conflict) => {
                    hookline_telemetry::metrics().config_conflicts.inc();
                    self.directory.sync_tenant(tenant, WaitReason::Command).await?;
                }
                Err(AppendError::Other(e)) => return Err(Error::unavailable(e)),
            }
        }
        Err(Error::Contention(tenant.to_string()))
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
