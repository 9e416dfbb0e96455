//! The operator's pages: tenants (open one, create one) and plan changes.

use axum::{extract::Path, http::StatusCode, response::Response};
use hookline_proto::subscriptions::v1 as spb;
use maud::html;

use super::{PLANS, layout, notice_text, plan_from_form, q};
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

pub async fn list(ctx: Ctx, Query(query): Query) -> Result<Response, PageError> {
    operator(&ctx)?;
    // "Open a tenant" is a plain GET form: the id goes to the tenant's URL.
    if !query.get("open").is_empty() {
        return Ok(see_other(&format!("/t/{}", q(query.get("open")))));
    }
    Ok(render(&ctx, &Fields::default(), None, notice_text(query.get("notice")), StatusCode::OK))
}

fn render(
    ctx: &Ctx,
    typed: &Fields,
    error: Option<(&str, String)>,
    notice: Option<&str>,
    status: StatusCode,
) -> Response {
    let field_error = |field: &str| error.as_ref().filter(|(f, _)| *f == field).map(|(_, m)| m.clone());
    let body = html! {
        h1 { "Tenants" }
        section aria-labelledby="open-heading" {
            h2 id="open-heading" { "Open a tenant" }
            form.inline method="get" action="/tenants" role="search" {
                label for="open" { "Tenant ID" }
                input id="open" name="open" type="text" required;
                button type="submit" id="open-tenant" { "Open" }
            }
        }
        section aria-labelledby="create-heading" {
            h2 id="create-heading" { "Create a tenant" }
            form method="post" action="/tenants" id="create-tenant-form" novalidate {
                (layout::csrf(ctx))
                @if let Some((f, m)) = &error { @if *f == "form" { p.error role="alert" { (m) } } }
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
    let mut response = layout::page(ctx, "Tenants", notice, body);
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
            Ok(render(&ctx, &form, Some((error.0, error.1)), None, StatusCode::UNPROCESSABLE_ENTITY))
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
        })
        .await?;
    Ok(see_other(&format!("/t/{tenant}?notice=plan")))
}
