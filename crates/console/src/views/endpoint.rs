//! The endpoint view: settings at a glance, why it is disabled (with
//! Re-enable and "Recover failed since …"), the signing secret (revealed
//! on request, rotated with a grace period), and the delivery log with its
//! filters, pages and actions (Raw, Download, Replay).

use axum::{extract::Path, response::Response};
use hookline_domain::{catalog, event_type::EventType, ids::TenantId};
use hookline_proto::{delivery::v1 as dpb, subscriptions::v1 as spb};
use maud::{Markup, html};

use super::{
    layout, notice_text, q, state_name,
    tenant::{WINDOWS, per_window, stats_cell, target},
    when,
};
use crate::web::{Ctx, Fields, PageError, Posted, Query, see_other};

/// Log rows per page.
const PAGE_SIZE: u32 = 25;

/// The status filter's choices: (form value, label, state).
const STATES: [(&str, &str, dpb::DeliveryState); 4] = [
    ("succeeded", "Succeeded", dpb::DeliveryState::Succeeded),
    ("failing", "Retrying", dpb::DeliveryState::Failing),
    ("failed", "Failed", dpb::DeliveryState::Failed),
    ("archived", "Archived", dpb::DeliveryState::Archived),
];

/// Grace periods offered when rotating: (seconds, label).
const GRACE: [(u32, &str); 4] =
    [(0, "none: stop at once"), (3600, "1 hour"), (86_400, "24 hours"), (604_800, "7 days")];

pub async fn view(
    ctx: Ctx,
    Path((tenant, endpoint)): Path<(String, String)>,
    Query(q): Query,
) -> Result<Response, PageError> {
    let tenant = ctx.tenant(&tenant)?;
    render(&ctx, &tenant, &endpoint, &q, None).await
}

/// The date filter as RFC 3339 bounds: `from` inclusive, `to` through the end of that day.
fn date_bounds(q: &Fields) -> (String, String) {
    let day = |s: &str| chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").ok();
    let from = day(q.get("from")).map(|d| format!("{d}T00:00:00Z")).unwrap_or_default();
    let to = day(q.get("to")).and_then(|d| d.succ_opt()).map(|d| format!("{d}T00:00:00Z")).unwrap_or_default();
    (from, to)
}

async fn render(
    ctx: &Ctx,
    tenant: &TenantId,
    endpoint: &str,
    q: &Fields,
    secret: Option<String>,
) -> Result<Response, PageError> {
    let e = ctx
        .app
        .backend
        .subscriptions()
        .get_endpoint(spb::GetEndpointRequest {
            tenant_id: tenant.to_string(),
            endpoint_id: endpoint.to_owned(),
            reveal_url: false,
        })
        .await?
        .into_inner();
    let (from, to) = date_bounds(q);
    let states: Vec<i32> = STATES.iter().filter(|(v, _, _)| *v == q.get("status")).map(|(_, _, s)| *s as i32).collect();
    let event_type = EventType::parse(q.get("type")).map(|t| t.as_str().to_owned()).unwrap_or_default();
    let filtered = !states.is_empty() || !event_type.is_empty() || !from.is_empty() || !to.is_empty();
    let page_token = q.get("page").to_owned();
    let mut log_client = ctx.app.backend.delivery();
    let log = log_client.list_deliveries(dpb::ListDeliveriesRequest {
        tenant_id: tenant.to_string(),
        endpoint_id: e.id.clone(),
        states,
        event_type: event_type.clone(),
        created_after: from,
        created_before: to,
        replayed: None,
        page_size: PAGE_SIZE,
        page_token: page_token.clone(),
        test: None,
    });
    let job = async {
        match q.get("job") {
            "" => None,
            id => ctx
                .app
                .backend
                .delivery()
                .get_recover_job(dpb::GetRecoverJobRequest { tenant_id: tenant.to_string(), job_id: id.to_owned() })
                .await
                .ok()
                .map(|j| j.into_inner()),
        }
    };
    // Statistics may be unavailable (Postgres down): the page shows the rest.
    let stats = per_window(|window| {
        let mut delivery = ctx.app.backend.delivery();
        let request = dpb::GetEndpointStatsRequest {
            tenant_id: tenant.to_string(),
            endpoint_id: e.id.clone(),
            window: window.into(),
        };
        async move { delivery.get_endpoint_stats(request).await.ok().map(|s| s.into_inner()) }
    });
    // The log, the recover job and the statistics are asked for at once.
    let (log, job, stats) = tokio::join!(log, job, stats);
    let log = log?.into_inner();
    let stats: Vec<_> = WINDOWS.iter().map(|(_, label)| *label).zip(stats).collect();
    let base = format!("/t/{tenant}/endpoints/{}", e.id);
    let filters = filter_query(q);
    let live = page_token.is_empty() && !filtered;
    let body = html! {
        p.back { a href={ "/t/" (tenant) } { "← Webhooks" } }
        h1 { "Endpoint" }
        section.endpoint-summary aria-label="Endpoint" {
            p.target { (target(&e)) }
            dl {
                dt { "Status" }
                dd id="endpoint-status" { @if e.enabled { span.ok { "Enabled" } } @else { span.bad { "Disabled" } } }
                @if let Some(h) = &e.auth_header { dt { "Header Key" } dd { code { (h.name) } " · value " code { "********" } } }
                dt { "Event types" }
                dd { @if e.event_types.is_empty() { "All" } @else { (e.event_types.join(", ")) } }
                dt { "Hierarchy" }
                dd { @if e.layout == spb::PayloadLayout::Flat as i32 { "Flat" } @else { "Envelope" } }
                @if e.rate_limit > 0 { dt { "Rate limit" } dd { (e.rate_limit) " per second" } }
                @if !e.filters.is_empty() {
                    dt { "Payload filter" }
                    dd id="endpoint-filter" { code { (hookline_proto::json::filter_text(&e.filters)) } }
                }
            }
            div.actions {
                a.button href={ (base) "/edit" } id="edit-endpoint" { "Edit" }
                form.inline method="post" action={ (base) "/delete" } data-confirm="Delete this endpoint? Pending retries to it stop." {
                    (layout::csrf(ctx))
                    button.danger type="submit" id="delete-endpoint" { "Delete" }
                }
            }
        }
        section.stats aria-labelledby="stats-heading" {
            h2 id="stats-heading" { "Statistics" }
            table id="endpoint-stats" {
                thead { tr { @for (label, _) in &stats { th scope="col" { "Last " (label) } } } }
                tbody { tr { @for (_, s) in &stats {
                    td { (stats_cell(s.as_ref().map(|s| (s.attempts > 0).then_some(s)))) }
                } } }
            }
        }
        @if !e.enabled {
            section.disabled role="region" aria-labelledby="disabled-heading" {
                h2 id="disabled-heading" { "This endpoint is disabled" }
                p id="disabled-reason" {
                    @if e.disabled_reason.is_empty() { "It was disabled by hand; nothing is sent to it." }
                    @else { (e.disabled_reason) }
                }
                form.inline method="post" action={ (base) "/enable" } {
                    (layout::csrf(ctx))
                    button.primary type="submit" id="re-enable" { "Re-enable" }
                }
            }
        }
        section.recover aria-labelledby="recover-heading" {
            h2 id="recover-heading" { "Recover" }
            @if let Some(j) = &job {
                div id="recover-job" role="status" data-live-job=(j.state == "running") {
                    @if j.state == "running" && j.total == 0 {
                        // The job has not counted the failed deliveries yet.
                        p { "Recovering: finding the failed deliveries since " (recover_since(&j.since)) "…" }
                        progress aria-label="Recover progress" {}
                    } @else {
                        p { "Recovering: " (j.done) " of " (j.total) " failed deliveries queued again (" (j.state) ")." }
                        progress value=(j.done) max=(j.total.max(1)) aria-label="Recover progress" {}
                    }
                    @if !j.error.is_empty() { p.error { (j.error) } }
                }
            }
            form.inline method="post" action={ (base) "/recover" } {
                (layout::csrf(ctx))
                label for="recover-since" { "Recover failed since" }
                input id="recover-since" name="since" type="date" required value=(recover_from(&e.disabled_reason));
                button type="submit" id="recover" { "Recover" }
            }
        }
        section.secret aria-labelledby="secret-heading" {
            h2 id="secret-heading" { "Signing secret" }
            @if let Some(s) = &secret {
                p { code id="signing-secret" { (s) } " " button type="button" data-copy="signing-secret" { "Copy" } }
            } @else {
                form.inline method="post" action={ (base) "/secret" } {
                    (layout::csrf(ctx))
                    button type="submit" id="reveal-secret" { "Reveal signing secret" }
                }
            }
            form.inline method="post" action={ (base) "/secret/rotate" } data-confirm="Rotate the signing secret?" {
                (layout::csrf(ctx))
                label for="grace" { "Old secret keeps signing for" }
                select id="grace" name="grace_seconds" {
                    @for (seconds, label) in GRACE { option value=(seconds) selected[seconds == 86_400] { (label) } }
                }
                button type="submit" id="rotate-secret" { "Rotate signing secret" }
            }
        }
        section.test-event aria-labelledby="test-heading" {
            h2 id="test-heading" { "Send test event" }
            form.inline method="post" action={ (base) "/test" } {
                (layout::csrf(ctx))
                label for="test-type" { "Event type" }
                select id="test-type" name="event_type" {
                    @for t in EventType::ALL {
                        option value=(t.as_str()) selected[e.event_types.first().is_some_and(|f| f == t.as_str())] { (t.as_str()) }
                    }
                }
                button type="submit" id="send-test-event" { "Send test event" }
            }
            p.hint { "Example data of the type, signed and logged like any delivery and marked “Test”; receivers see the header " code { "hookline-test: true" } "." }
        }
        section.log aria-labelledby="log-heading" {
            h2 id="log-heading" { "Delivery log" }
            form.filters method="get" action=(base) role="search" aria-label="Filter the log" {
                label for="filter-status" { "Status" }
                select id="filter-status" name="status" {
                    option value="" { "All" }
                    @for (value, label, _) in STATES { option value=(value) selected[q.get("status") == value] { (label) } }
                }
                label for="filter-type" { "Event type" }
                select id="filter-type" name="type" {
                    option value="" { "All" }
                    @for t in EventType::ALL { option value=(t.as_str()) selected[event_type == t.as_str()] { (t.as_str()) } }
                }
                label for="filter-from" { "From" }
                input id="filter-from" name="from" type="date" value=(q.get("from"));
                label for="filter-to" { "To" }
                input id="filter-to" name="to" type="date" value=(q.get("to"));
                button type="submit" id="apply-filters" { "Filter" }
                @if filtered { a href=(base) { "Clear" } }
            }
            table.log-table id="delivery-log" data-live=[live.then_some("true")] {
                thead { tr {
                    th scope="col" { "Time stamp" }
                    th scope="col" { "Event type" }
                    th scope="col" { "Status" }
                    th scope="col" { "HTTP code" }
                    th scope="col" { "Attempts" }
                    th scope="col" { "Actions" }
                } }
                tbody id="log-rows" {
                    @for d in &log.deliveries { (row(tenant, d)) }
                    @if log.deliveries.is_empty() {
                        tr { td colspan="6" .empty { @if filtered { "No deliveries match." } @else { "No deliveries yet." } } }
                    }
                }
            }
            nav.pager aria-label="Log pages" {
                @if !page_token.is_empty() { a href={ (base) "?" (filters) } id="newest-page" { "Newest" } }
                @if !log.next_page_token.is_empty() {
                    a href={ (base) "?" (filters) "&page=" (super::q(&log.next_page_token)) } id="older-page" { "Older" }
                }
            }
        }
    };
    let title = format!("Endpoint {}", e.id);
    Ok(layout::page(ctx, &title, notice_text(q.get("notice")), body))
}

/// The date "Recover failed since" starts at: the day an auto-disabled
/// endpoint began failing (its reason says `failed since <RFC 3339>`), else
/// a week ago.
fn recover_from(disabled_reason: &str) -> String {
    disabled_reason
        .split("failed since ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
        .map(|t| t.with_timezone(&chrono::Utc))
        .unwrap_or_else(|| chrono::Utc::now() - chrono::Duration::days(7))
        .format("%Y-%m-%d")
        .to_string()
}

/// The day a recover job starts at, from its RFC 3339 `since`.
fn recover_since(since: &str) -> String {
    chrono::DateTime::parse_from_rfc3339(since)
        .map(|t| t.format("%Y-%m-%d").to_string())
        .unwrap_or_else(|_| since.to_owned())
}

/// The filters of `q` as a query string, for paging links.
fn filter_query(q: &Fields) -> String {
    ["status", "type", "from", "to"]
        .iter()
        .filter(|k| !q.get(k).is_empty())
        .map(|k| format!("{k}={}", super::q(q.get(k))))
        .collect::<Vec<_>>()
        .join("&")
}

/// One log row. Archived rows keep their date, say "Archived" under it,
/// and show the three actions greyed out as disabled buttons, not links.
pub fn row(tenant: &TenantId, d: &dpb::Delivery) -> Markup {
    let archived = d.state == dpb::DeliveryState::Archived as i32 || !d.archived_at.is_empty();
    let base = format!("/t/{tenant}/deliveries/{}", d.id);
    let description = EventType::parse(&d.event_type).map(catalog::description).unwrap_or_default();
    html! {
        tr id={ "delivery-" (d.id) } class=(if archived { "archived" } else { "" }) {
            td {
                time datetime=(d.created_at) { (when(&d.created_at)) }
                @if archived { div.archived-note id={ "archived-" (d.id) } { "Archived" } }
                @if d.test { div { span.badge.test { "Test" } } }
                @if !d.replay_of.is_empty() { div { span.badge { "Replayed" } } }
                @else if d.replay_count > 0 { div { span.badge { "Triggered again ×" (d.replay_count) } } }
            }
            td { code title=(description) { (d.event_type) } }
            td { span class={ "state state-" (state_name(d.state).to_lowercase()) } { (state_name(d.state)) } }
            td { @if d.last_status_code > 0 { (d.last_status_code) } @else if !d.last_error_kind.is_empty() { span.muted { (d.last_error_kind) } } @else { "—" } }
            td { (d.attempt_count) }
            td.actions {
                @if archived {
                    // Named as ever, described by the row's "Archived" note.
                    @let note = format!("archived-{}", d.id);
                    button type="button" disabled aria-describedby=(note) { "Raw" }
                    button type="button" disabled aria-describedby=(note) { "Download" }
                    button type="button" disabled aria-describedby=(note) { "Replay" }
                } @else {
                    a href={ (base) "/raw" } { "Raw" }
                    a href={ (base) "/download" } download { "Download" }
                    a href={ (base) "/replay" } { "Replay" }
                }
            }
        }
    }
}

pub async fn delete(
    Path((tenant, endpoint)): Path<(String, String)>,
    Posted { ctx, .. }: Posted,
) -> Result<Response, PageError> {
    let tenant = ctx.tenant(&tenant)?;
    ctx.app
        .backend
        .subscriptions()
        .delete_endpoint(spb::DeleteEndpointRequest { tenant_id: tenant.to_string(), endpoint_id: endpoint })
        .await?;
    Ok(see_other(&format!("/t/{tenant}?notice=deleted")))
}

pub async fn enable(
    Path((tenant, endpoint)): Path<(String, String)>,
    Posted { ctx, .. }: Posted,
) -> Result<Response, PageError> {
    let tenant = ctx.tenant(&tenant)?;
    let request = spb::UpdateEndpointRequest {
        tenant_id: tenant.to_string(),
        endpoint_id: endpoint.clone(),
        enabled: Some(true),
        ..Default::default()
    };
    ctx.app.backend.subscriptions().update_endpoint(request).await?;
    Ok(see_other(&format!("/t/{tenant}/endpoints/{}?notice=enabled", q(&endpoint))))
}

pub async fn recover(
    Path((tenant, endpoint)): Path<(String, String)>,
    Posted { ctx, form }: Posted,
) -> Result<Response, PageError> {
    let tenant = ctx.tenant(&tenant)?;
    let since = chrono::NaiveDate::parse_from_str(form.get("since"), "%Y-%m-%d")
        .map_err(|_| PageError::BadRequest("Recover failed since: choose a date".into()))?;
    let job = ctx
        .app
        .backend
        .delivery()
        .recover_endpoint(dpb::RecoverEndpointRequest {
            tenant_id: tenant.to_string(),
            endpoint_id: endpoint.clone(),
            since: format!("{since}T00:00:00Z"),
        })
        .await?
        .into_inner();
    Ok(see_other(&format!("/t/{tenant}/endpoints/{}?job={}", q(&endpoint), q(&job.id))))
}

pub async fn reveal_secret(
    Path((tenant, endpoint)): Path<(String, String)>,
    Posted { ctx, .. }: Posted,
) -> Result<Response, PageError> {
    let tenant = ctx.tenant(&tenant)?;
    let secret = ctx
        .app
        .backend
        .subscriptions()
        .get_endpoint_secret(spb::GetEndpointSecretRequest {
            tenant_id: tenant.to_string(),
            endpoint_id: endpoint.clone(),
        })
        .await?
        .into_inner()
        .secret;
    render(&ctx, &tenant, &endpoint, &Fields::default(), Some(secret)).await
}

pub async fn rotate_secret(
    Path((tenant, endpoint)): Path<(String, String)>,
    Posted { ctx, form }: Posted,
) -> Result<Response, PageError> {
    let tenant = ctx.tenant(&tenant)?;
    let grace = form
        .get("grace_seconds")
        .parse::<u32>()
        .ok()
        .filter(|g| GRACE.iter().any(|(s, _)| s == g))
        .ok_or_else(|| PageError::BadRequest("grace period: choose one of the periods offered".into()))?;
    ctx.app
        .backend
        .subscriptions()
        .rotate_endpoint_secret(spb::RotateEndpointSecretRequest {
            tenant_id: tenant.to_string(),
            endpoint_id: endpoint.clone(),
            secret: String::new(),
            grace_period_seconds: Some(grace),
        })
        .await?;
    Ok(see_other(&format!("/t/{tenant}/endpoints/{}?notice=rotated", q(&endpoint))))
}

pub async fn send_test(
    Path((tenant, endpoint)): Path<(String, String)>,
    Posted { ctx, form }: Posted,
) -> Result<Response, PageError> {
    let tenant = ctx.tenant(&tenant)?;
    let event_type = EventType::parse(form.get("event_type"))
        .map_err(|_| PageError::BadRequest("Event type: choose one of the twelve".into()))?;
    ctx.app
        .backend
        .delivery()
        .send_test_event(dpb::SendTestEventRequest {
            tenant_id: tenant.to_string(),
            endpoint_id: endpoint.clone(),
            event_type: event_type.as_str().to_owned(),
        })
        .await?;
    Ok(see_other(&format!("/t/{tenant}/endpoints/{}?notice=test-sent", q(&endpoint))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recover_starts_the_day_an_auto_disabled_endpoint_began_failing() {
        let reason = "every attempt failed since 2026-11-30T08:15:00Z (longer than HOOKLINE_AUTO_DISABLE_AFTER)";
        assert_eq!(recover_from(reason), "2026-11-30");
        let week_ago = (chrono::Utc::now() - chrono::Duration::days(7)).format("%Y-%m-%d").to_string();
        assert_eq!(recover_from("the endpoint answered 410 Gone"), week_ago);
    }
}
