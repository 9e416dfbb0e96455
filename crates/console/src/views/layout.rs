//! The page shell: head with the hashed assets, the header with the
//! signed-in principal, navigation and sign-out, and notices.

use axum::response::{Html, IntoResponse, Response};
use maud::{DOCTYPE, Markup, html};

use crate::{
    assets,
    session::{Principal, Via},
    web::{CSRF_FIELD, Ctx},
};

/// The hidden CSRF field of every form of the session.
pub fn csrf(ctx: &Ctx) -> Markup {
    let token = ctx.session.as_ref().map(|s| s.csrf.as_str()).unwrap_or_default();
    html! { input type="hidden" name=(CSRF_FIELD) value=(token); }
}

fn head(title: &str) -> Markup {
    html! {
        head {
            meta charset="utf-8";
            meta name="viewport" content="width=device-width, initial-scale=1";
            meta name="referrer" content="no-referrer";
            title { (title) " · Hookline Webhooks" }
            link rel="stylesheet" href=(assets::css_path());
            script src=(assets::js_path()) defer {}
        }
    }
}

/// A full page for `ctx`'s session.
pub fn page(ctx: &Ctx, title: &str, notice: Option<&str>, body: Markup) -> Response {
    let session = ctx.session.as_ref().filter(|s| s.is_signed_in());
    let markup = html! {
        (DOCTYPE)
        html lang="en" {
            (head(title))
            body {
                a.skip href="#main" { "Skip to content" }
                header.top {
                    a.brand href="/" { "Hookline" span.sub { "Webhooks" } }
                    @if let Some(s) = session {
                        nav aria-label="Main" {
                            @match &s.principal {
                                Principal::Operator => {
                                    a href="/tenants" { "Tenants" }
                                    span.who { "Signed in as the operator" }
                                }
                                Principal::Tenant(t) => {
                                    a href={ "/t/" (t) } { "Webhooks" }
                                    span.who { "Tenant " strong { (t) } }
                                }
                                Principal::Anonymous => {}
                            }
                            @if s.via == Via::SignIn {
                                form.inline method="post" action="/signout" {
                                    (csrf(ctx))
                                    button type="submit" id="sign-out" { "Sign out" }
                                }
                            }
                        }
                    }
                }
                main id="main" {
                    @if let Some(text) = notice {
                        p.notice role="status" id="notice" { (text) }
                    }
                    (body)
                }
            }
        }
    };
    Html(markup.into_string()).into_response()
}

/// A page without session details: errors.
pub fn bare(title: &str, detail: &str) -> Html<String> {
    let markup = html! {
        (DOCTYPE)
        html lang="en" {
            (head(title))
            body {
                header.top { a.brand href="/" { "Hookline" span.sub { "Webhooks" } } }
                main id="main" {
                    h1 { (title) }
                    p.error-detail { (detail) }
                    p { a href="/" { "Back to the console" } }
                }
            }
        }
    };
    Html(markup.into_string())
}
