//! The console's endpoint view at scale: `GET /t/<tenant>/endpoints/<id>`
//! by a signed-in operator, whole body read, for the first page, a later
//! page through its paging token, status filters, and a date range.
//!
//! Each view is timed beside its service time: the gRPC calls the console
//! makes for it, made as the console makes them, from this process:
//! GetEndpoint, then ListDeliveries with the same request and
//! GetEndpointStats for 24 h, 7 d and 30 d at once. A view's time less its
//! service time is the console's share: HTTP, session, rendering. The
//! console's `/healthz` gives the bare HTTP round trip.

use anyhow::Context as _;
use chrono::{TimeDelta, Utc};
use hookline_proto::{
    delivery::v1::{self as dpb, delivery_service_client::DeliveryServiceClient},
    subscriptions::v1::{self as spb, subscription_service_client::SubscriptionServiceClient},
};
use tonic::transport::Channel;

use super::time;
use crate::{report::Percentiles, stack::Stack};

/// Rows per page of the console's log (its `PAGE_SIZE`).
pub const CONSOLE_PAGE: u32 = 25;
/// The later page timed: the 100th, reached through 99 paging tokens.
const LATER_PAGE: usize = 100;
/// The statistics windows the view shows, one GetEndpointStats call each.
const STATS_WINDOWS: [dpb::StatsWindow; 3] =
    [dpb::StatsWindow::Last24h, dpb::StatsWindow::Last7d, dpb::StatsWindow::Last30d];
/// The console's operator token in the bench (the services take any caller).
const TOKEN: &str = "bench-console-operator-token";

/// One view of the endpoint page: its query string, the ListDeliveries
/// request the console makes for it, and a mark each row it shows carries.
struct View {
    name: String,
    query: String,
    request: dpb::ListDeliveriesRequest,
    row_mark: &'static str,
}

/// What one view measured.
pub struct Timed {
    pub name: String,
    /// GET of the page, body read.
    pub page: Percentiles,
    /// The view's gRPC calls: GetEndpoint, ListDeliveries, 3 x GetEndpointStats.
    pub service: Percentiles,
}

pub struct Measured {
    pub views: Vec<Timed>,
    pub healthz: Percentiles,
}

/// An operator session on the console: (cookie, ready client). Signs in
/// through the form as a browser does: the anonymous session's cookie and
/// its CSRF token, then the operator token.
async fn console_session(console: &str, token: &str) -> anyhow::Result<(String, reqwest::Client)> {
    let client = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build()?;
    let cookie_of = |r: &reqwest::Response| -> anyhow::Result<String> {
        let set = r.headers().get("set-cookie").context("no session cookie")?.to_str()?;
        Ok(set.split(';').next().unwrap_or_default().to_owned())
    };
    let form = client.get(format!("{console}/signin")).send().await?;
    let anonymous = cookie_of(&form)?;
    let html = form.text().await?;
    let csrf =
        html.split("name=\"csrf\" value=\"").nth(1).and_then(|r| r.split('"').next()).context("no CSRF field")?;
    // The CSRF token is base64url and the token is plain ASCII: nothing to escape.
    let signed_in = client
        .post(format!("{console}/signin"))
        .header("cookie", &anonymous)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("csrf={csrf}&as=operator&token={token}"))
        .send()
        .await?;
    anyhow::ensure!(signed_in.status() == 303, "sign-in answered {}", signed_in.status());
    Ok((cookie_of(&signed_in)?, client))
}

fn grpc_url(stack: &Stack, role: &str) -> anyhow::Result<String> {
    stack.services.iter().find(|s| s.role == role).map(|s| s.grpc_url.clone()).with_context(|| format!("no {role}"))
}

/// The views timed, with the paging token of page [`LATER_PAGE`] found
/// through ListDeliveries.
async fn views(
    delivery: &mut DeliveryServiceClient<Channel>,
    tenant: &str,
    endpoint: &str,
) -> anyhow::Result<Vec<View>> {
    let request = |query: dpb::ListDeliveriesRequest| dpb::ListDeliveriesRequest {
        tenant_id: tenant.to_owned(),
        endpoint_id: endpoint.to_owned(),
        page_size: CONSOLE_PAGE,
        ..query
    };
    let mut token = String::new();
    for _ in 1..LATER_PAGE {
        token = delivery
            .list_deliveries(request(dpb::ListDeliveriesRequest { page_token: token, ..Default::default() }))
            .await?
            .into_inner()
            .next_page_token;
        anyhow::ensure!(!token.is_empty(), "the log has fewer than {LATER_PAGE} pages");
    }
    let day = (Utc::now() - TimeDelta::days(14)).date_naive();
    let next_day = day.succ_opt().context("a day after")?;
    let state = |s: dpb::DeliveryState| vec![s as i32];
    Ok(vec![
        View {
            name: "first page".into(),
            query: String::new(),
            request: request(Default::default()),
            row_mark: "id=\"delivery-dlv_",
        },
        View {
            name: format!("page {LATER_PAGE} (paging token)"),
            query: format!("?page={token}"),
            request: request(dpb::ListDeliveriesRequest { page_token: token.clone(), ..Default::default() }),
            row_mark: "id=\"delivery-dlv_",
        },
        View {
            name: "status=failed (1 % of rows)".into(),
            query: "?status=failed".into(),
            request: request(dpb::ListDeliveriesRequest {
                states: state(dpb::DeliveryState::Failed),
                ..Default::default()
            }),
            row_mark: "class=\"state state-failed\"",
        },
        View {
            name: "status=archived (oldest 2 %)".into(),
            query: "?status=archived".into(),
            request: request(dpb::ListDeliveriesRequest {
                states: state(dpb::DeliveryState::Archived),
                ..Default::default()
            }),
            row_mark: "class=\"state state-archived\"",
        },
        View {
            name: "date range (one day, 14 days ago)".into(),
            query: format!("?from={day}&to={day}"),
            request: request(dpb::ListDeliveriesRequest {
                created_after: format!("{day}T00:00:00Z"),
                created_before: format!("{next_day}T00:00:00Z"),
                ..Default::default()
            }),
            row_mark: "id=\"delivery-dlv_",
        },
    ])
}

/// Start `hookline console` on the stack, sign in, and time every view.
pub async fn measure(stack: &mut Stack, tenant: &str, endpoint: &str, n: usize) -> anyhow::Result<Measured> {
    let subscriptions = SubscriptionServiceClient::connect(grpc_url(stack, "subscriptions")?).await?;
    let mut delivery = DeliveryServiceClient::connect(grpc_url(stack, "delivery")?).await?;
    let views = views(&mut delivery, tenant, endpoint).await?;
    let console = stack.start_console(TOKEN).await?;
    let (cookie, client) = console_session(&console, TOKEN).await?;

    let healthz_url = format!("{console}/healthz");
    let healthz = time(n, || async {
        let r = client.get(&healthz_url).send().await?;
        anyhow::ensure!(r.status() == 200, "/healthz answered {}", r.status());
        Ok(r.bytes().await?)
    })
    .await?;

    let mut timed = Vec::new();
    for view in &views {
        let get_endpoint = spb::GetEndpointRequest {
            tenant_id: tenant.to_owned(),
            endpoint_id: endpoint.to_owned(),
            reveal_url: false,
        };
        let service = time(n, || {
            let (mut s, mut d) = (subscriptions.clone(), delivery.clone());
            let (get_endpoint, list) = (get_endpoint.clone(), view.request.clone());
            async move {
                s.get_endpoint(get_endpoint).await?;
                let stats = STATS_WINDOWS.map(|window| {
                    let mut d = d.clone();
                    let request = dpb::GetEndpointStatsRequest {
                        tenant_id: tenant.to_owned(),
                        endpoint_id: endpoint.to_owned(),
                        window: window.into(),
                    };
                    async move { d.get_endpoint_stats(request).await }
                });
                let [a, b, c] = stats;
                let (page, a, b, c) = tokio::join!(d.list_deliveries(list), a, b, c);
                let page = page?.into_inner();
                anyhow::ensure!(page.deliveries.len() == CONSOLE_PAGE as usize, "{} rows", page.deliveries.len());
                for stats in [a, b, c] {
                    stats?;
                }
                Ok(page)
            }
        })
        .await
        .with_context(|| format!("gRPC calls of the view {}", view.name))?;
        let url = format!("{console}/t/{tenant}/endpoints/{endpoint}{}", view.query);
        let page = time(n, || async {
            let r = client.get(&url).header("cookie", &cookie).send().await?;
            anyhow::ensure!(r.status() == 200, "{url} answered {}", r.status());
            let html = r.text().await?;
            let rows = html.matches("id=\"delivery-dlv_").count();
            let marked = html.matches(view.row_mark).count();
            anyhow::ensure!(
                rows == CONSOLE_PAGE as usize && marked >= CONSOLE_PAGE as usize,
                "{url} shows {rows} log rows, {marked} of them with `{}`",
                view.row_mark
            );
            Ok(html.len())
        })
        .await?;
        timed.push(Timed { name: view.name.clone(), page, service });
    }
    stack.check_alive()?;
    Ok(Measured { views: timed, healthz })
}
