//! `hookline stats`: an endpoint's or a tenant's delivery statistics.

use clap::ValueEnum;
use hookline_proto::delivery::v1 as dpb;

use super::{ClientArgs, deliveries, print, status};

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

fn stats_line(name: &str, s: &dpb::Stats) -> String {
    let errors: Vec<String> = s.errors.iter().map(|e| format!("{} {}", e.kind, e.count)).collect();
    format!(
        "{name}  {} attempts  {} accepted ({:.1}%)  2xx {} 3xx {} 4xx {} 5xx {}  p50 {} ms  p95 {} ms  p99 {} ms{}",
        s.attempts,
        s.accepted,
        s.success_rate * 100.0,
        s.status_2xx,
        s.status_3xx,
        s.status_4xx,
        s.status_5xx,
        s.latency_p50_ms,
        s.latency_p95_ms,
        s.latency_p99_ms,
        if errors.is_empty() { String::new() } else { format!("  errors: {}", errors.join(", ")) }
    )
}

/// `hookline stats --tenant <t> [<endpoint>]`: one endpoint, or the tenant
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
            print(args.json, &s, stats_line(&s.endpoint_id, &s));
        }
        None => {
            let mut t = c
                .get_tenant_stats(dpb::GetTenantStatsRequest { tenant_id: tenant, window })
                .await
                .map_err(status)?
                .into_inner();
            // Absent, the total prints empty, never as `null`.
            let total = t.total.get_or_insert_default();
            let human = std::iter::once(stats_line("total", total))
                .chain(t.endpoints.iter().map(|s| stats_line(&s.endpoint_id, s)))
                .collect::<Vec<_>>()
                .join("\n");
            print(args.json, &t, human);
        }
    }
    Ok(())
}
