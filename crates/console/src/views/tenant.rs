//! The tenant view: the "Enable Webhooks" switch, plan and usage, the "+"
//! that adds an endpoint, and every endpoint with its statistics.

use std::collections::HashMap;

use axum::{extract::Path, response::Response};
use hookline_proto::{delivery::v1 as dpb, subscriptions::v1 as spb};
use maud::{Markup, html};

use super::{PLANS, layout, notice_text, plan_form_value, plan_name};
use crate::web::{Ctx, PageError, Posted, Query, see_other};

/// The three windows shown beside each endpoint.
pub const WINDOWS: [(dpb::StatsWindow, &str); 3] =
    [(dpb::StatsWindow::Last24h, "24 h"), (dpb::StatsWindow::Last7d, "7 d"), (dpb::StatsWindow::Last30d, "30 d")];

/// `call` for each of [`WINDOWS`], all at once: a page waits for the
/// slowest statistics query, not for the three in turn.
pub async fn per_window<T, F: Future<Output = T>>(call: impl Fn(dpb::StatsWindow) -> F) -> [T; 3] {
    let [a, b, c] = WINDOWS.map(|(window, _)| call(window));
    let (a, b, c) = tokio::join!(a, b, c);
    [a, b, c]
}

pub async fn view(ctx: Ctx, Path(tenant): Path<String>, Query(q): Query) -> Result<Response, PageError> {
    let tenant = ctx.tenant(&tenant)?;
    let mut subs = ctx.app.backend.subscriptions();
    let t = subs.get_tenant(spb::GetTenantRequest { tenant_id: tenant.to_string() }).await?.into_inner();
    let endpoints =
        subs.list_endpoints(spb::ListEndpointsRequest { tenant_id: tenant.to_string() }).await?.into_inner().endpoints;
    // Statistics come from Postgres, which may lag or be down: the page
    // shows the endpoints anyway and says the numbers are unavailable.
    let stats: [Option<HashMap<String, dpb::Stats>>; 3] = per_window(|window| {
        let (mut delivery, tenant_id) = (ctx.app.backend.delivery(), tenant.to_string());
        async move {
            let answer =
                delivery.get_tenant_stats(dpb::GetTenantStatsRequest { tenant_id, window: window.into() }).await;
            answer.ok().map(|s| s.into_inner().endpoints.into_iter().map(|e| (e.endpoint_id.clone(), e)).collect())
        }
    })
    .await;
    let at_limit = t.endpoint_count >= t.endpoint_limit;
    let base = format!("/t/{tenant}");
    let body = html! {
        @if ctx.is_operator() { p.back { a href="/tenants" { "← Tenants" } } }
        h1 { "Webhooks" span.tenant-id { (tenant) } }
        section.settings aria-label="Webhooks" {
            form method="post" action={ (base) "/webhooks" } id="webhooks-form" {
                (layout::csrf(&ctx))
                input type="hidden" name="webhooks_enabled" value=(if t.webhooks_enabled { "false" } else { "true" });
                button type="submit" id="enable-webhooks" role="switch"
                    aria-checked=(if t.webhooks_enabled { "true" } else { "false" }) class="switch" {
                    span.track aria-hidden="true" { span.thumb {} }
                    " Enable Webhooks"
                }
            }
            p.hint {
                @if t.webhooks_enabled { "Webhooks are on: events are sent to the endpoints below." }
                @else { "Webhooks are off: no events are sent until you enable them." }
            }
        }
        section.plan aria-label="Plan" {
            p id="plan-usage" {
                strong { (plan_name(t.plan)) } " plan · "
                span id="endpoint-usage" { (t.endpoint_count) " of " (t.endpoint_limit) " endpoints" }
            }
            @if ctx.is_operator() {
                form.inline method="post" action={ (base) "/plan" } id="plan-form" {
                    (layout::csrf(&ctx))
                    label for="plan" { "Plan" }
                    select id="plan" name="plan" {
                        @for (value, name, limit) in PLANS {
                            option value=(value) selected[value == plan_form_value(t.plan)] { (name) " (" (limit) " endpoints)" }
                        }
                    }
                    button type="submit" id="change-plan" { "Change plan" }
                }
                form.inline method="post" action={ (base) "/portal-link" } id="portal-link-form" {
                    (layout::csrf(&ctx))
                    label for="portal-ttl" { "Portal link valid for" }
                    select id="portal-ttl" name="ttl_seconds" {
                        @for (seconds, label) in PORTAL_TTLS { option value=(seconds) selected[seconds == 3600] { (label) } }
                    }
                    button type="submit" id="create-portal-link" { "Create portal link" }
                }
            }
        }
        section.endpoints aria-labelledby="endpoints-heading" {
            div.section-head {
                h2 id="endpoints-heading" { "Endpoints" }
                @if at_limit {
                    button.plus type="button" id="add-endpoint" disabled aria-label="Add endpoint"
                        aria-describedby="limit-reason" title="Add endpoint" { "+" }
                    p.limit id="limit-reason" {
                        "The " (plan_name(t.plan)) " plan allows " (t.endpoint_limit)
                        " endpoint" (if t.endpoint_limit == 1 { "" } else { "s" })
                        ". Delete an endpoint or change to a larger plan to add another."
                    }
                } @else {
                    a.plus href={ (base) "/endpoints/new" } id="add-endpoint" aria-label="Add endpoint" title="Add endpoint" { "+" }
                }
            }
            @if endpoints.is_empty() {
                p.empty { "No endpoints yet. Add one with the “+”." }
            } @else {
                table.endpoint-list id="endpoint-list" {
                    thead { tr {
                        th scope="col" { "Endpoint" }
                        @for (_, label) in WINDOWS { th scope="col" { "Last " (label) } }
                    } }
                    tbody {
                        @for e in &endpoints {
                            tr id={ "endpoint-" (e.id) } {
                                th scope="row" {
                                    a href={ (base) "/endpoints/" (e.id) } { (target(e)) }
                                    @if !e.enabled { span.badge.bad { "Disabled" } }
                                    @if !e.description.is_empty() { div.muted { (e.description) } }
                                }
                                @for window in &stats {
                                    td { (stats_cell(window.as_ref().map(|w| w.get(&e.id)))) }
                                }
                            }
                        }
                    }
                }
            }
        }
    };
    let body = html! {
        (body)
        @if ctx.is_operator() { (delete_section(&ctx, &tenant, &base, q.get("delete") == "unconfirmed")) }
    };
    let title = format!("Webhooks of {tenant}");
    Ok(layout::page(&ctx, &title, notice_text(q.get("notice")), body))
}

/// The operator's "Delete tenant": the form posts only when the tenant id
/// is typed again, and the service checks it once more.
fn delete_section(ctx: &Ctx, tenant: &impl std::fmt::Display, base: &str, unconfirmed: bool) -> Markup {
    let error = unconfirmed.then(|| format!("Tenant ID: type {tenant} exactly to delete this tenant."));
    html! {
        section.danger-zone aria-labelledby="delete-tenant-heading" {
            h2 id="delete-tenant-heading" { "Delete tenant" }
            p.hint {
                "Deletes the tenant with its endpoints, signing secrets, API keys, stored and queued events "
                "and delivery log, at once and for good. Type the tenant ID to confirm."
            }
            form method="post" action={ (base) "/delete" } id="delete-tenant-form" {
                (layout::csrf(ctx))
                label for="confirm-tenant" { "Tenant ID" }
                input id="confirm-tenant" name="confirm" type="text" autocomplete="off" required
                    aria-invalid=[error.as_ref().map(|_| "true")]
                    aria-describedby=[error.as_ref().map(|_| "confirm-error")];
                @if let Some(error) = &error { p.field-error id="confirm-error" role="alert" { (error) } }
                button.danger type="submit" id="delete-tenant" { "Delete tenant" }
            }
        }
    }
}

/// `POST /t/<tenant>/delete` (operator): delete the tenant when the typed id
/// matches; otherwise back to the tenant with the reason beside the field.
pub async fn delete(Path(tenant): Path<String>, Posted { ctx, form }: Posted) -> Result<Response, PageError> {
    if !ctx.is_operator() {
        return Err(PageError::NotFound);
    }
    let tenant = ctx.tenant(&tenant)?;
    let request = spb::DeleteTenantRequest { tenant_id: tenant.to_string(), confirm: form.get("confirm").to_owned() };
    match ctx.app.backend.subscriptions().delete_tenant(request).await {
        Ok(_) => Ok(see_other("/tenants?notice=tenant-deleted")),
        Err(s) if s.code() == tonic::Code::InvalidArgument && s.message().starts_with("confirm: ") => {
            Ok(see_other(&format!("/t/{tenant}?delete=unconfirmed#delete-tenant-heading")))
        }
        Err(s) => Err(s.into()),
    }
}

/// What an endpoint sends to: its URL (query values masked), or "E-mail".
pub fn target(e: &spb::Endpoint) -> Markup {
    html! {
        @if e.email.is_empty() { span.url { (e.url) } } @else { span.url { "E-mail: " (e.email) } }
    }
}

/// One window's numbers: accepted (2xx) against not, and latency.
pub fn stats_cell(s: Option<Option<&dpb::Stats>>) -> Markup {
    html! {
        @match s {
            None => span.muted { "unavailable" },
            Some(None) => span.muted { "no requests" },
            Some(Some(s)) => {
                span.ok title="accepted (2xx)" { (s.accepted) " × 2xx" }
                " · "
                span class=(if s.not_accepted > 0 { "bad" } else { "muted" }) title="not accepted" { (s.not_accepted) " not" }
                div.muted { "p50 " (s.latency_p50_ms) " ms · p95 " (s.latency_p95_ms) " ms" }
            }
        }
    }
}

/// Portal link lifetimes offered: (seconds, label).
const PORTAL_TTLS: [(u32, &str); 4] = [(900, "15 minutes"), (3600, "1 hour"), (86_400, "1 day"), (604_800, "7 days")];

/// `POST /t/<tenant>/portal-link` (operator): mint a link and show it once.
pub async fn portal_link(Path(tenant): Path<String>, Posted { ctx, form }: Posted) -> Result<Response, PageError> {
    if !ctx.is_operator() {
        return Err(PageError::NotFound);
    }
    let tenant = ctx.tenant(&tenant)?;
    let ttl_seconds =
        form.get("ttl_seconds")
            .parse::<u32>()
            .ok()
            .filter(|t| PORTAL_TTLS.iter().any(|(s, _)| s == t))
            .ok_or_else(|| PageError::BadRequest("Portal link valid for: choose one of the periods offered".into()))?;
    let link = ctx
        .app
        .backend
        .subscriptions()
        .create_portal_link(spb::CreatePortalLinkRequest { tenant_id: tenant.to_string(), ttl_seconds })
        .await?
        .into_inner();
    let url = format!("{}/portal/{}", ctx.app.public_url.as_deref().unwrap_or_default(), link.token);
    let body = html! {
        p.back { a href={ "/t/" (tenant) } { "← Webhooks of " (tenant) } }
        h1 { "Portal link" }
        p { "Whoever holds this link acts as tenant " strong { (tenant) } " in the console until "
            (super::when(&link.expires_at)) ". Embed it in an iframe of an origin listed in "
            code { "HOOKLINE_CONSOLE_FRAME_ANCESTORS" } ", or open it directly." }
        p { code id="portal-url" { (url) } " " button type="button" data-copy="portal-url" { "Copy" } }
    };
    Ok(layout::page(&ctx, "Portal link", None, body))
}

pub async fn switch_webhooks(Path(tenant): Path<String>, Posted { ctx, form }: Posted) -> Result<Response, PageError> {
    let tenant = ctx.tenant(&tenant)?;
    let on = form.get("webhooks_enabled") == "true";
    ctx.app
        .backend
        .subscriptions()
        .update_tenant(spb::UpdateTenantRequest {
            tenant_id: tenant.to_string(),
            plan: None,
            webhooks_enabled: Some(on),
            ..Default::default()
        })
        .await?;
    Ok(see_other(&format!("/t/{tenant}?notice={}", if on { "webhooks-on" } else { "webhooks-off" })))
}
