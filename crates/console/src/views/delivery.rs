//! The log's actions on one delivery: Raw (the request as sent, body
//! pretty-printed), Download (the body's exact bytes) and Replay (a
//! confirmation page, then a POST).

use axum::{
    extract::Path,
    http::{HeaderValue, header},
    response::{IntoResponse, Response},
};
use hookline_domain::ids::TenantId;
use hookline_proto::delivery::v1 as dpb;
use maud::html;

use super::{layout, q, state_name, when};
use crate::web::{Ctx, PageError, Posted, Query, see_other};

async fn detail(ctx: &Ctx, tenant: &TenantId, delivery: &str) -> Result<dpb::DeliveryDetail, PageError> {
    let request = dpb::GetDeliveryRequest { tenant_id: tenant.to_string(), delivery_id: delivery.to_owned() };
    Ok(ctx.app.backend.delivery().get_delivery(request).await?.into_inner())
}

/// The raw request of an attempt; an archived one is 410 Gone.
async fn raw_request(ctx: &Ctx, tenant: &TenantId, delivery: &str, attempt: u32) -> Result<dpb::RawRequest, PageError> {
    let request = dpb::GetDeliveryRawRequest {
        tenant_id: tenant.to_string(),
        delivery_id: delivery.to_owned(),
        attempt,
        reveal_url: false,
    };
    match ctx.app.backend.delivery().get_delivery_raw(request).await {
        Ok(r) => Ok(r.into_inner()),
        Err(s) if s.code() == tonic::Code::FailedPrecondition => Err(PageError::Archived),
        Err(s) => Err(s.into()),
    }
}

/// The body as text for reading: pretty JSON when it is JSON, else as it is.
fn pretty(body: &[u8]) -> String {
    serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| serde_json::to_string_pretty(&v).ok())
        .unwrap_or_else(|| String::from_utf8_lossy(body).into_owned())
}

pub async fn raw(
    ctx: Ctx,
    Path((tenant, delivery)): Path<(String, String)>,
    Query(query): Query,
) -> Result<Response, PageError> {
    let tenant = ctx.tenant(&tenant)?;
    let detail = detail(&ctx, &tenant, &delivery).await?;
    let d = detail.delivery.unwrap_or_default();
    let attempt = query.get("attempt").parse().unwrap_or(0);
    let raw = raw_request(&ctx, &tenant, &d.id, attempt).await?;
    let headers: String = std::iter::once(format!("{} {}", raw.method, raw.url))
        .chain(raw.headers.iter().map(|h| format!("{}: {}", h.name, h.value)))
        .collect::<Vec<_>>()
        .join("\n");
    let base = format!("/t/{tenant}/deliveries/{}", d.id);
    let body = html! {
        p.back { a href={ "/t/" (tenant) "/endpoints/" (d.endpoint_id) } { "← Delivery log" } }
        h1 { "Raw" }
        p {
            code { (d.event_type) } " · " (when(&d.created_at)) " · " (state_name(d.state))
            " · webhook-id " code id="webhook-id" { (d.event_id) }
        }
        @if detail.attempts.len() > 1 {
            nav.attempts aria-label="Attempts" {
                "Attempt: "
                @for a in &detail.attempts {
                    @if a.number == raw.attempt { strong aria-current="page" { (a.number) } }
                    @else { a href={ (base) "/raw?attempt=" (a.number) } { (a.number) } }
                    " "
                }
            }
        }
        section aria-labelledby="headers-heading" {
            div.section-head {
                h2 id="headers-heading" { "Request headers" }
                button type="button" data-copy="raw-headers" id="copy-headers" { "Copy headers" }
            }
            pre id="raw-headers" { (headers) }
        }
        section aria-labelledby="body-heading" {
            div.section-head {
                h2 id="body-heading" { "Body" }
                button type="button" data-copy="raw-body" id="copy-body" { "Copy body" }
                a.button href={ (base) "/download" } download id="download" { "Download" }
            }
            pre id="raw-body" { (pretty(&raw.body)) }
        }
        @if let Some(a) = detail.attempts.iter().find(|a| a.number == raw.attempt) {
            section aria-labelledby="response-heading" {
                h2 id="response-heading" { "Response" }
                p {
                    @if a.status_code > 0 { "HTTP " (a.status_code) } @else { (a.error_kind) }
                    " · " (a.duration_ms) " ms"
                    @if !a.error.is_empty() { " · " (a.error) }
                }
                @if !a.response_excerpt.is_empty() { pre id="response-excerpt" { (a.response_excerpt) } }
            }
        }
    };
    Ok(layout::page(&ctx, "Raw", None, body))
}

pub async fn download(ctx: Ctx, Path((tenant, delivery)): Path<(String, String)>) -> Result<Response, PageError> {
    let tenant = ctx.tenant(&tenant)?;
    let d = detail(&ctx, &tenant, &delivery).await?.delivery.unwrap_or_default();
    let raw = raw_request(&ctx, &tenant, &d.id, 0).await?;
    // Ids are `evt_` + base32: safe in a quoted file name.
    let name = format!(
        "attachment; filename=\"{}.json\"",
        d.event_id.replace(|c: char| !c.is_ascii_alphanumeric() && c != '_', "")
    );
    let mut response = raw.body.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    headers.insert(header::CONTENT_DISPOSITION, HeaderValue::from_str(&name).expect("sanitised file name"));
    Ok(response)
}

pub async fn confirm_replay(ctx: Ctx, Path((tenant, delivery)): Path<(String, String)>) -> Result<Response, PageError> {
    let tenant = ctx.tenant(&tenant)?;
    let d = detail(&ctx, &tenant, &delivery).await?.delivery.unwrap_or_default();
    if !d.archived_at.is_empty() || d.state == dpb::DeliveryState::Archived as i32 {
        return Err(PageError::Archived);
    }
    let body = html! {
        p.back { a href={ "/t/" (tenant) "/endpoints/" (d.endpoint_id) } { "← Delivery log" } }
        h1 { "Replay" }
        p {
            "Send " code { (d.event_type) } " of " (when(&d.created_at)) " to this endpoint again? "
            "The receiver gets the same webhook-id (" code { (d.event_id) } ") with a fresh signature, "
            "and the log shows the new request labelled “Replayed”."
        }
        form method="post" action={ "/t/" (tenant) "/deliveries/" (d.id) "/replay" } {
            (layout::csrf(&ctx))
            button.primary type="submit" id="confirm-replay" { "Replay" }
            " "
            a href={ "/t/" (tenant) "/endpoints/" (d.endpoint_id) } { "Cancel" }
        }
    };
    Ok(layout::page(&ctx, "Replay", None, body))
}

pub async fn replay(
    Path((tenant, delivery)): Path<(String, String)>,
    Posted { ctx, .. }: Posted,
) -> Result<Response, PageError> {
    let tenant = ctx.tenant(&tenant)?;
    let d = detail(&ctx, &tenant, &delivery).await?.delivery.unwrap_or_default();
    let request = dpb::ReplayDeliveryRequest { tenant_id: tenant.to_string(), delivery_id: d.id.clone() };
    match ctx.app.backend.delivery().replay_delivery(request).await {
        Ok(_) => Ok(see_other(&format!("/t/{tenant}/endpoints/{}?notice=replayed", q(&d.endpoint_id)))),
        Err(s) if s.code() == tonic::Code::FailedPrecondition => Err(PageError::Archived),
        Err(s) => Err(s.into()),
    }
}
