//! The operator's pages: every tenant (search, pages), creating tenants,
//! and plan changes. Each tenant's id opens its view.

use axum::{extract::Path, http::StatusCode, response::Response};
use hookline_proto::subscriptions::v1 as spb;
use maud::html;

use super::{PLANS, layout, notice_text, plan_from_form, plan_name, q, when};
use crate::{
    session::Principal,
    web::{Ctx, Fields, PageError, Posted, Query, see_other},
};

fn operator(ctx: &Ctx) -> Result<(), PageError> {
    match &ctx.signed_in()?.principal {
        Principal::Operator => Ok(()),
        // A tenant has no operator pages.
        _ => Err(PageError::NotFound),
    }
}

/// Tenants per page of the list.
const PAGE_SIZE: u32 = 25;

pub async fn list(ctx: Ctx, Query(query): Query) -> Result<Response, PageError> {
    operator(&ctx)?;
    let tenants = ctx
        .app
        .backend
        .subscriptions()
        .list_tenants(spb::ListTenantsRequest {
            query: query.get("q").to_owned(),
            page_size: PAGE_SIZE,
            page_token: query.get("page").to_owned(),
        })
        .await?
        .into_inner();
    Ok(render(&ctx, &query, &tenants, &Fields::default(), None, StatusCode::OK))
}

fn render(
    ctx: &Ctx,
    query: &Fields,
    tenants: &spb::ListTenantsResponse,
    typed: &Fields,
    error: Option<(&str, String)>,
    status: StatusCode,
) -> Response {
    let field_error = |field: &str| error.as_ref().filter(|(f, _)| *f == field).map(|(_, m)| m.clone());
    let search = query.get("q");
    let body = html! {
        h1 { "Tenants" }
        section aria-labelledby="list-heading" {
            div.section-head {
                h2 id="list-heading" { "All tenants" }
                span.muted id="tenant-count" {
                    (tenants.total_matching) @if search.is_empty() { " tenants" } @else { " matching" }
                }
            }
            form.inline method="get" action="/tenants" role="search" {
                label for="tenant-search" { "Search" }
                input id="tenant-search" name="q" type="search" value=(search) placeholder="Tenant ID contains…";
                button type="submit" id="search-tenants" { "Search" }
                @if !search.is_empty() { a href="/tenants" { "Clear" } }
            }
            @if tenants.tenants.is_empty() {
                p.empty { @if search.is_empty() { "No tenants yet: create one below." } @else { "No tenant matches." } }
            } @else {
                table id="tenant-list" {
                    thead { tr {
                        th scope="col" { "Tenant" } th scope="col" { "Plan" } th scope="col" { "Webhooks" }
                        th scope="col" { "Endpoints" } th scope="col" { "Created" }
                    } }
                    tbody {
                        @for t in &tenants.tenants {
                            tr id={ "tenant-" (t.id) } {
                                th scope="row" { a href={ "/t/" (t.id) } { (t.id) } }
                                td { (plan_name(t.plan)) }
                                td { @if t.webhooks_enabled { span.ok { "On" } } @else { span.muted { "Off" } } }
                                td { (t.endpoint_count) " of " (t.endpoint_limit) }
                                td { (when(&t.created_at)) }
                            }
                        }
                    }
                }
            }
            nav.pager aria-label="Tenant pages" {
                @if !query.get("page").is_empty() { a href={ "/tenants?q=" (q(search)) } id="first-page" { "First page" } }
                @if !tenants.next_page_token.is_empty() {
                    a href={ "/tenants?q=" (q(search)) "&page=" (q(&tenants.next_page_token)) } id="next-page" { "Next page" }
                }
            }
        }
        section aria-labelledby="create-heading" {
            h2 id="create-heading" { "Create a tenant" }
            form method="post" action="/tenants" id="create-tenant-form" novalidate {
                (layout::csrf(ctx))
                @if let Some((f, m)) = &error { @if *f == "form" { p.error role="alert" id="form-error" { (m) } } }
                label for="tenant_id" { "Tenant ID" }
                input id="tenant_id" name="tenant_id" type="text" value=(typed.get("tenant_id"))
                    aria-invalid=[field_error("tenant_id").map(|_| "true")]
                    aria-describedby=[field_error("tenant_id").map(|_| "tenant_id-error")];
                @if let Some(m) = field_error("tenant_id") { p.field-error id="tenant_id-error" { (m) } }
                label for="new-plan" { "Plan" }
                select id="new-plan" name="plan" {
                    @for (value, name, limit) in PLANS {
                        option value=(value) selected[typed.get("plan") == value] { (name) " (" (limit) " endpoints)" }
                    }
                }
                label.check {
                    input type="checkbox" name="webhooks_enabled" value="true" checked[typed.get("webhooks_enabled") == "true"];
                    " Enable Webhooks now"
                }
                button type="submit" id="create-tenant" { "Create tenant" }
            }
        }
    };
    let mut response = layout::page(ctx, "Tenants", notice_text(query.get("notice")), body);
    *response.status_mut() = status;
    response
}

pub async fn create(Posted { ctx, form }: Posted) -> Result<Response, PageError> {
    operator(&ctx)?;
    let plan = plan_from_form(form.get("plan")).ok_or_else(|| PageError::BadRequest("plan: choose a plan".into()))?;
    let request = spb::CreateTenantRequest {
        tenant_id: form.get("tenant_id").to_owned(),
        plan: plan.into(),
        webhooks_enabled: form.get("webhooks_enabled") == "true",
        ..Default::default()
    };
    match ctx.app.backend.subscriptions().create_tenant(request).await {
        Ok(t) => Ok(see_other(&format!("/t/{}?notice=tenant", t.into_inner().id))),
        Err(s) if matches!(s.code(), tonic::Code::InvalidArgument | tonic::Code::AlreadyExists) => {
            let message = s.message();
            let error = match message.strip_prefix("tenant_id: ") {
                Some(rule) => ("tenant_id", format!("Tenant ID {rule}")),
                None if s.code() == tonic::Code::AlreadyExists => ("tenant_id", "This tenant ID is taken.".to_owned()),
                None => ("form", message.to_owned()),
            };
            let tenants = ctx
                .app
                .backend
                .subscriptions()
                .list_tenants(spb::ListTenantsRequest {
                    query: String::new(),
                    page_size: PAGE_SIZE,
                    page_token: String::new(),
                })
                .await?
                .into_inner();
            let error = Some((error.0, error.1));
            Ok(render(&ctx, &Fields::default(), &tenants, &form, error, StatusCode::UNPROCESSABLE_ENTITY))
        }
        Err(s) => Err(s.into()),
    }
}

pub async fn change_plan(Path(tenant): Path<String>, Posted { ctx, form }: Posted) -> Result<Response, PageError> {
    operator(&ctx)?;
    let tenant = ctx.tenant(&tenant)?;
    let plan = plan_from_form(form.get("plan")).ok_or_else(|| PageError::BadRequest("plan: choose a plan".into()))?;
    ctx.app
        .backend
        .subscriptions()
        .update_tenant(spb::UpdateTenantRequest {
            tenant_id: tenant.to_string(),
            plan: Some(plan.into()),
            webhooks_enabled: None,
            ..Default::default()
        })
        .await?;
    Ok(see_other(&format!("/t/{tenant}?notice=plan")))
}
