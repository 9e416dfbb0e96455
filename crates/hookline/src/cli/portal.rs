//! `hookline portal link`: a signed, expiring link to one tenant's console
//! page, for a platform to embed in its own admin.

use std::time::Duration;

use clap::Subcommand;
use hookline_proto::subscriptions::v1 as spb;
use serde::Serialize;

use super::{ClientArgs, print, status, subscriptions};

#[derive(Debug, Subcommand)]
pub enum PortalCmd {
    /// Mint a portal link for a tenant and print its URL (operator only).
    /// Whoever holds the URL acts as the tenant in the console until it
    /// expires; links outlive restarts when the services have
    /// HOOKLINE_MASTER_KEY or HOOKLINE_OPERATOR_TOKEN set.
    Link {
        tenant: String,
        /// How long the link works: 1s to 7d.
        #[arg(long, default_value = "1h", value_parser = ttl)]
        ttl: Duration,
        /// The console's public URL, which the link points into.
        #[arg(long, env = "HOOKLINE_CONSOLE_PUBLIC_URL", default_value = "http://127.0.0.1:8080")]
        console_url: String,
    },
}

/// Why a `--ttl` is refused.
#[derive(Debug, thiserror::Error)]
enum TtlError {
    #[error(transparent)]
    Duration(#[from] hookline_delivery::settings::DurationError),
    #[error("must be at least 1s")]
    TooShort,
}

fn ttl(s: &str) -> Result<Duration, TtlError> {
    let d = hookline_delivery::settings::parse_duration(s)?;
    if d.as_secs() == 0 {
        return Err(TtlError::TooShort);
    }
    Ok(d)
}

/// What `--json` prints: the API's link and the URL built from it.
#[derive(Serialize)]
struct Printed<'a> {
    url: String,
    #[serde(flatten)]
    link: &'a spb::PortalLink,
}

pub async fn portal(args: &ClientArgs, cmd: PortalCmd) -> anyhow::Result<()> {
    let PortalCmd::Link { tenant, ttl, console_url } = cmd;
    let ttl_seconds = u32::try_from(ttl.as_secs()).unwrap_or(u32::MAX);
    let mut c = subscriptions(args).await?;
    let link = c
        .create_portal_link(spb::CreatePortalLinkRequest { tenant_id: tenant, ttl_seconds })
        .await
        .map_err(status)?
        .into_inner();
    let url = format!("{}/portal/{}", console_url.trim_end_matches('/'), link.token);
    let human = format!("{url}\nexpires {}", link.expires_at);
    print(args.json, &Printed { url, link: &link }, human);
    Ok(())
}
