//! `hookline stats`: an endpoint's or a tenant's delivery statistics.

use clap::ValueEnum;
use hookline_proto::delivery::v1 as dpb;

use super::{ClientArgs, deliveries, print, status, table};

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum WindowArg {
    #[value(name = "24h")]
    Day,
    #[value(name = "7d")]
    Week,
    #[value(name = "30d")]
    Month,
}

impl From<WindowArg> for dpb::StatsWindow {
    fn from(w: WindowArg) -> Self {
        match w {
            WindowArg::Day => dpb::StatsWindow::Last24h,
            WindowArg::Week => dpb::StatsWindow::Last7d,
            WindowArg::Month => dpb::StatsWindow::Last30d,
        }
    }
}

const STATS_HEADER: [&str; 12] =
    ["ENDPOINT", "ATTEMPTS", "ACCEPTED", "SUCCESS", "2XX", "3XX", "4XX", "5XX", "P50 MS", "P95 MS", "P99 MS", "ERRORS"];

fn stats_row(name: &str, s: &dpb::Stats) -> [String; 12] {
    let errors: Vec<String> = s.errors.iter().map(|e| format!("{} {}", e.kind, e.count)).collect();
    [
        name.to_owned(),
        s.attempts.to_string(),
        s.accepted.to_string(),
        format!("{:.1}%", s.success_rate * 100.0),
        s.status_2xx.to_string(),
        s.status_3xx.to_string(),
        s.status_4xx.to_string(),
        s.status_5xx.to_string(),
        s.latency_p50_ms.to_string(),
        s.latency_p95_ms.to_string(),
        s.latency_p99_ms.to_string(),
        if errors.is_empty() { "-".to_owned() } else { errors.join(", ") },
    ]
}

/// `hookline stats <tenant> [<endpoint>]`: one endpoint, or the tenant
/// total with a line per endpoint.
pub async fn stats(
    args: &ClientArgs,
    tenant: String,
    endpoint: Option<String>,
    window: WindowArg,
) -> anyhow::Result<()> {
    let mut c = deliveries(args).await?;
    let window = dpb::StatsWindow::from(window).into();
    match endpoint {
        Some(endpoint) => {
            let s = c
                .get_endpoint_stats(dpb::GetEndpointStatsRequest { tenant_id: tenant, endpoint_id: endpoint, window })
                .await
                .map_err(status)?
                .into_inner();
            print(args.json, &s, table(STATS_HEADER, [stats_row(&s.endpoint_id, &s)]));
        }
        None => {
            let mut t = c
                .get_tenant_stats(dpb::GetTenantStatsRequest { tenant_id: tenant, window })
                .await
                .map_err(status)?
                .into_inner();
            // Absent, the total prints empty, never as `null`.
            let total = t.total.get_or_insert_default();
            let human = table(
                STATS_HEADER,
                std::iter::once(stats_row("total", total))
                    .chain(t.endpoints.iter().map(|s| stats_row(&s.endpoint_id, s))),
            );
            print(args.json, &t, human);
        }
    }
    Ok(())
}
