//! Signing in and out: operators with the operator token, tenants with a
//! tenant id and one of its API keys (checked by calling GetTenant with
//! that key as the bearer, so the services decide, not the console).

use axum::{
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use hookline_domain::ids::TenantId;
use hookline_proto::subscriptions::v1 as spb;
use maud::html;

use super::layout;
use crate::{
    backend::Bearer,
    session::{Principal, SIGN_IN_LIFETIME, Session, Via},
    web::{Ctx, PageError, Posted, see_other},
};

/// `/`: where the session belongs.
pub async fn home(ctx: Ctx) -> Response {
    match ctx.session.as_ref().map(|s| &s.principal) {
        Some(Principal::Operator) => see_other("/tenants"),
        Some(Principal::Tenant(t)) => see_other(&format!("/t/{t}")),
        _ => see_other("/signin"),
    }
}

/// The sign-in page. A visitor without a session gets an anonymous one,
/// whose CSRF token the form carries.
pub async fn form(mut ctx: Ctx) -> Response {
    let mut fresh = None;
    if ctx.session.is_none() {
        let s = Session::anonymous();
        fresh = Some(ctx.app.sessions.set_cookie(&s));
        ctx.session = Some(s);
    }
    let mut response = render(&ctx, None);
    if let Some(cookie) = fresh {
        response.headers_mut().append(header::SET_COOKIE, HeaderValue::from_str(&cookie).expect("cookie"));
    }
    response
}

fn render(ctx: &Ctx, error: Option<&str>) -> Response {
    let body = html! {
        h1 { "Sign in" }
        @if let Some(e) = error {
            p.error role="alert" id="signin-error" { (e) }
        }
        div.cards {
            section.card aria-labelledby="tenant-signin" {
                h2 id="tenant-signin" { "Tenant" }
                form method="post" action="/signin" {
                    (layout::csrf(ctx))
                    input type="hidden" name="as" value="tenant";
                    label for="tenant" { "Tenant ID" }
                    input id="tenant" name="tenant" type="text" required autocomplete="username";
                    label for="api-key" { "API key" }
                    input id="api-key" name="api_key" type="password" required autocomplete="current-password";
                    button type="submit" id="tenant-sign-in" { "Sign in" }
                }
            }
            section.card aria-labelledby="operator-signin" {
                h2 id="operator-signin" { "Operator" }
                @if ctx.app.is_open() {
                    p { "This console runs without HOOKLINE_OPERATOR_TOKEN (development): anyone who reaches it is the operator." }
                    form method="post" action="/signin" {
                        (layout::csrf(ctx))
                        input type="hidden" name="as" value="dev-operator";
                        button type="submit" id="operator-sign-in" { "Continue as operator" }
                    }
                } @else {
                    form method="post" action="/signin" {
                        (layout::csrf(ctx))
                        input type="hidden" name="as" value="operator";
                        label for="operator-token" { "Operator token" }
                        input id="operator-token" name="token" type="password" required autocomplete="current-password";
                        button type="submit" id="operator-sign-in" { "Sign in as operator" }
                    }
                }
            }
        }
    };
    layout::page(ctx, "Sign in", None, body)
}

fn refused(ctx: &Ctx, why: &str) -> Response {
    let mut response = render(ctx, Some(why));
    *response.status_mut() = StatusCode::UNAUTHORIZED;
    response
}

fn signed_in(ctx: &Ctx, principal: Principal) -> Response {
    let to = match &principal {
        Principal::Tenant(t) => format!("/t/{t}"),
        _ => "/tenants".to_owned(),
    };
    let session = Session::new(principal, Via::SignIn, chrono::Utc::now() + SIGN_IN_LIFETIME);
    let mut response = see_other(&to);
    let cookie = ctx.app.sessions.set_cookie(&session);
    response.headers_mut().append(header::SET_COOKIE, HeaderValue::from_str(&cookie).expect("cookie"));
    response
}

pub async fn submit(Posted { ctx, form }: Posted) -> Result<Response, PageError> {
    match form.get("as") {
        "operator" => {
            if ctx.app.is_operator_token(form.raw("token")) {
                Ok(signed_in(&ctx, Principal::Operator))
            } else {
                Ok(refused(&ctx, "That is not the operator token."))
            }
        }
        "dev-operator" if ctx.app.is_open() => Ok(signed_in(&ctx, Principal::Operator)),
        "tenant" => {
            let Ok(tenant) = TenantId::parse(form.get("tenant")) else {
                return Ok(refused(&ctx, "Unknown tenant or API key."));
            };
            if ctx.app.is_open() {
                return Ok(refused(
                    &ctx,
                    "API keys cannot be checked while Hookline runs without HOOKLINE_OPERATOR_TOKEN; continue as operator.",
                ));
            }
            let key = form.get("api_key");
            if !key.starts_with("hlk_") {
                return Ok(refused(&ctx, "Unknown tenant or API key."));
            }
            let bearer = Bearer::new(Some(key)).map_err(|_| PageError::BadRequest("API key: not valid".into()))?;
            let answer = ctx
                .app
                .backend
                .subscriptions_as(bearer)
                .get_tenant(spb::GetTenantRequest { tenant_id: tenant.to_string() })
                .await;
            match answer {
                Ok(_) => Ok(signed_in(&ctx, Principal::Tenant(tenant))),
                Err(s)
                    if matches!(
                        s.code(),
                        tonic::Code::Unauthenticated | tonic::Code::NotFound | tonic::Code::PermissionDenied
                    ) =>
                {
                    Ok(refused(&ctx, "Unknown tenant or API key."))
                }
                Err(s) => Err(s.into()),
            }
        }
        _ => Err(PageError::BadRequest("choose how to sign in".into())),
    }
}

pub async fn signout(Posted { ctx, .. }: Posted) -> Response {
    let mut response = see_other("/signin");
    let cookie = ctx.app.sessions.clear_cookie();
    response.headers_mut().append(header::SET_COOKIE, HeaderValue::from_str(&cookie).expect("cookie"));
    response.into_response()
}

/// `GET /portal/<token>`: a portal link. The subscriptions service checks
/// the token (signature, expiry, tenant); the session it opens is the
/// tenant's, ends no later than the link, and may live in an iframe of an
/// origin listed in HOOKLINE_CONSOLE_FRAME_ANCESTORS.
pub async fn portal(ctx: Ctx, axum::extract::Path(token): axum::extract::Path<String>) -> Result<Response, PageError> {
    let answer = ctx.app.backend.subscriptions().redeem_portal_link(spb::RedeemPortalLinkRequest { token }).await;
    let link = match answer {
        Ok(link) => link.into_inner(),
        Err(s)
            if matches!(
                s.code(),
                tonic::Code::Unauthenticated | tonic::Code::InvalidArgument | tonic::Code::NotFound
            ) =>
        {
            let mut response = layout::bare(
                "Link not valid",
                "This portal link is expired or not valid. Ask for a new link where you found this one.",
            )
            .into_response();
            *response.status_mut() = StatusCode::UNAUTHORIZED;
            return Ok(response);
        }
        Err(s) => return Err(s.into()),
    };
    let tenant = TenantId::parse(&link.tenant_id).map_err(|_| PageError::NotFound)?;
    let link_expires = chrono::DateTime::parse_from_rfc3339(&link.expires_at)
        .map_err(|_| PageError::BadRequest("the portal link's expiry is not a time".into()))?
        .with_timezone(&chrono::Utc);
    let expires = link_expires.min(chrono::Utc::now() + SIGN_IN_LIFETIME);
    let session = Session::new(Principal::Tenant(tenant.clone()), Via::Portal, expires);
    let mut response = see_other(&format!("/t/{tenant}"));
    let cookie = ctx.app.sessions.set_cookie(&session);
    response.headers_mut().append(header::SET_COOKIE, HeaderValue::from_str(&cookie).expect("cookie"));
    Ok(response)
}
