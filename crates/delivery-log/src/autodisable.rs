//! Disables endpoints that have failed every attempt for
//! `HOOKLINE_AUTO_DISABLE_AFTER` (default 5 days), with an
//! `endpoint.disabled` config event saying why. Re-enabling the endpoint
//! through the API resumes delivery and restarts the clock.
//!
//! The same round records the tenant's operational notices
//! ([`crate::notices`]): at 50 %, 75 % and 90 % of the window, and when the
//! endpoint is disabled. When several thresholds passed since the last
//! round (the service was down, or the interval is long against the
//! window), only the highest is recorded.

use std::time::Duration;

use chrono::Utc;
use hookline_domain::{
    config::Command,
    ids::{EndpointId, TenantId},
};
use hookline_store::health::FailingEndpoint;
use hookline_tenants::{Commands, Directory};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use crate::notices::{self, DISABLED, Notice, THRESHOLDS};

pub async fn run(
    pool: PgPool,
    commands: Commands,
    directory: Directory,
    after: Duration,
    every: Duration,
    shutdown: CancellationToken,
) {
    loop {
        // Everything past the lowest threshold: the notices' and the disabling.
        match hookline_store::health::failing_for(&pool, after / 2).await {
            Ok(failing) => {
                for f in failing {
                    let (tenant, endpoint_id) = (f.tenant_id.clone(), f.endpoint_id.clone());
                    let failed_for = (Utc::now() - f.since).to_std().unwrap_or_default();
                    if failed_for >= after {
                        disable(&pool, &commands, &directory, &tenant, endpoint_id, &f, after).await;
                    } else if let Some(&threshold) = THRESHOLDS
                        .iter()
                        .find(|t| failed_for.as_secs_f64() >= after.as_secs_f64() * f64::from(**t) / 100.0)
                    {
                        notice(&pool, &directory, &tenant, &endpoint_id, &f, threshold, after).await;
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "auto-disable check failed; retrying next round"),
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
    }
}

async fn disable(
    pool: &PgPool,
    commands: &Commands,
    directory: &Directory,
    tenant: &TenantId,
    endpoint_id: EndpointId,
    f: &FailingEndpoint,
    after: Duration,
) {
    let reason = format!(
        "every attempt failed since {} (longer than HOOKLINE_AUTO_DISABLE_AFTER)",
        f.since.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    );
    match commands.execute(tenant, Command::DisableEndpoint { endpoint_id: endpoint_id.clone(), reason }).await {
        Ok(_) => {
            let m = hookline_telemetry::metrics();
            m.endpoints_disabled.get_or_create(&hookline_telemetry::labels([("reason", "failing")])).inc();
            tracing::warn!(endpoint_id = %f.endpoint_id, since = %f.since, "endpoint auto-disabled");
            notice(pool, directory, tenant, &endpoint_id, f, DISABLED, after).await;
        }
        Err(e) => tracing::warn!(endpoint_id = %f.endpoint_id, error = %e, "auto-disable failed"),
    }
}

/// Record the notice of `threshold` for the tenant's contact, if it has one.
async fn notice(
    pool: &PgPool,
    directory: &Directory,
    tenant: &TenantId,
    endpoint_id: &EndpointId,
    f: &FailingEndpoint,
    threshold: i16,
    after: Duration,
) {
    let Some(state) = directory.tenant(tenant) else { return };
    if state.contact.is_empty() {
        return;
    }
    let Some(endpoint) = state.endpoints.get(endpoint_id) else { return };
    let recorded = async {
        let last_error = hookline_store::notices::last_error(pool, &f.endpoint_id).await?;
        let notice = Notice::new(tenant, endpoint, threshold, f.since, after, last_error);
        notices::record(pool, &state.contact, &notice, f.since, threshold).await
    };
    match recorded.await {
        Ok(0) => {}
        Ok(n) => tracing::info!(endpoint_id = %f.endpoint_id, threshold, channels = n, "operational notice recorded"),
        Err(e) => {
            tracing::warn!(endpoint_id = %f.endpoint_id, error = %e, "operational notice not recorded; next round")
        }
    }
}
