//! Disables endpoints that have failed every attempt for
//! `HOOKLINE_AUTO_DISABLE_AFTER` (default 5 days), with an
//! `endpoint.disabled` config event saying why. Re-enabling the endpoint
//! through the API resumes delivery and restarts the clock.

use std::time::Duration;

use hookline_domain::config::Command;
use hookline_tenants::Commands;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

pub async fn run(pool: PgPool, commands: Commands, after: Duration, every: Duration, shutdown: CancellationToken) {
    loop {
        match hookline_store::health::failing_for(&pool, after).await {
            Ok(failing) => {
                for f in failing {
                    let endpoint_id = f.endpoint_id.clone();
                    let reason = format!(
                        "every attempt failed since {} (longer than HOOKLINE_AUTO_DISABLE_AFTER)",
                        f.since.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
                    );
                    match commands.execute(&f.tenant_id, Command::DisableEndpoint { endpoint_id, reason }).await {
                        Ok(_) => {
                            let m = hookline_telemetry::metrics();
                            m.endpoints_disabled
                                .get_or_create(&hookline_telemetry::labels([("reason", "failing")]))
                                .inc();
                            tracing::warn!(endpoint_id = %f.endpoint_id, since = %f.since, "endpoint auto-disabled")
                        }
                        Err(e) => tracing::warn!(endpoint_id = %f.endpoint_id, error = %e, "auto-disable failed"),
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
