//! The webhooks console: Settings → Webhooks as a web page, for operators
//! (every tenant) and tenants (their own, signed in with an API key or
//! through a portal link another site embeds).
//!
//! A stateless HTTP server and a gRPC client of subscriptions and delivery,
//! like the CLI. Pages are rendered on the server with `maud` (escaped by
//! default); the one stylesheet and the one script are compiled in; every
//! flow works without JavaScript (forms post and redirect), and the script
//! only adds copy buttons, a live log and a live payload preview.
//!
//! # Layout
//! * here: settings, shared state, the router, security headers, serving.
//! * [`session`]: signed session cookies and their attributes.
//! * [`backend`]: the gRPC clients.
//! * [`web`]: request context, posted forms and the CSRF check, page errors.
//! * [`assets`]: the stylesheet and script, under content-hashed paths.
//! * `views`: one module per page group (sign-in, operator, tenant,
//!   endpoint form, endpoint log and its actions, portal).

pub mod assets;
pub mod backend;
pub mod session;
mod views;
pub mod web;

use std::{future::Future, str::FromStr, sync::Arc};

use axum::{
    Router,
    extract::{Request, State},
    http::{HeaderValue, header},
    middleware::{self, Next},
    response::Response,
    routing::{get, post},
};
use sha2::{Digest, Sha256};

pub use backend::{BackendError, BackendSettings};

/// Origins allowed to embed portal pages in an iframe
/// (`HOOKLINE_CONSOLE_FRAME_ANCESTORS`), for CSP `frame-ancestors`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FrameAncestors(Vec<String>);

impl FrameAncestors {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The CSP source list: the origins, or `'none'`.
    pub fn source_list(&self) -> String {
        if self.0.is_empty() { "'none'".to_owned() } else { self.0.join(" ") }
    }
}

/// An entry of `HOOKLINE_CONSOLE_FRAME_ANCESTORS` that is no origin.
#[derive(Debug, thiserror::Error)]
#[error(
    "`{0}` is not an origin: write scheme and host, e.g. `https://admin.example.com` or `http://localhost:3000`, without a path"
)]
pub struct NotAnOrigin(pub String);

impl FromStr for FrameAncestors {
    type Err = NotAnOrigin;
    /// Origins separated by spaces or commas, each `http(s)://host[:port]`
    /// with no path; `""` for none.
    fn from_str(s: &str) -> Result<Self, NotAnOrigin> {
        let mut origins = Vec::new();
        for origin in s.split([' ', ',']).map(str::trim).filter(|o| !o.is_empty()) {
            let rest = origin.strip_prefix("https://").or_else(|| origin.strip_prefix("http://"));
            let valid = rest.is_some_and(|host| {
                !host.is_empty()
                    && host.bytes().all(|b| b.is_ascii_alphanumeric() || b"-.:[]*".contains(&b))
                    && !host.starts_with(':')
            });
            if !valid {
                return Err(NotAnOrigin(origin.to_owned()));
            }
            origins.push(origin.to_owned());
        }
        Ok(Self(origins))
    }
}

/// Everything the console needs to run.
#[derive(Debug, Clone)]
pub struct ConsoleSettings {
    pub backend: BackendSettings,
    /// Operators sign in with it and the console calls the services with
    /// it; `None` only in `hookline dev` (calls are then unauthenticated, and
    /// the sign-in page offers to continue as the operator).
    pub operator_token: Option<String>,
    pub frame_ancestors: FrameAncestors,
    /// The console's URL as users reach it (links, `Secure` cookies when
    /// `https://`); `None`: links are relative and cookies not `Secure`.
    pub public_url: Option<String>,
}

/// Shared state of every request.
#[derive(Clone)]
pub struct App(Arc<Inner>);

pub struct Inner {
    pub backend: backend::Backend,
    pub sessions: session::Sessions,
    /// SHA-256 of the operator token, compared with what operators type.
    operator_token: Option<[u8; 32]>,
    pub frame_ancestors: FrameAncestors,
    pub public_url: Option<String>,
}

impl std::ops::Deref for App {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

impl App {
    pub fn new(settings: ConsoleSettings) -> Result<Self, BackendError> {
        let token = settings.operator_token.as_deref().map(str::trim).filter(|t| !t.is_empty());
        let secure = settings.public_url.as_deref().is_some_and(|u| u.starts_with("https://"));
        Ok(App(Arc::new(Inner {
            backend: backend::Backend::new(&settings.backend, token)?,
            sessions: session::Sessions::new(token, secure, !settings.frame_ancestors.is_empty()),
            operator_token: token.map(|t| Sha256::digest(t.as_bytes()).into()),
            frame_ancestors: settings.frame_ancestors,
            public_url: settings.public_url,
        })))
    }

    /// Whether `given` is the operator token (compared as hashes).
    pub fn is_operator_token(&self, given: &str) -> bool {
        let given: [u8; 32] = Sha256::digest(given.trim().as_bytes()).into();
        self.operator_token.is_some_and(|t| t.iter().zip(given).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0)
    }

    /// Whether the console runs without an operator token (`hookline dev`).
    pub fn is_open(&self) -> bool {
        self.operator_token.is_none()
    }
}

/// Every route of the console.
pub fn router(app: App) -> Router {
    use views::*;
    Router::new()
        .route("/", get(signin::home))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/signin", get(signin::form).post(signin::submit))
        .route("/signout", post(signin::signout))
        .route("/portal/{token}", get(signin::portal))
        .route("/assets/{name}", get(assets::serve))
        .route("/tenants", get(operator::list).post(operator::create))
        .route("/t/{tenant}", get(tenant::view))
        .route("/t/{tenant}/webhooks", post(tenant::switch_webhooks))
        .route("/t/{tenant}/plan", post(operator::change_plan))
        .route("/t/{tenant}/delete", post(tenant::delete))
        .route("/t/{tenant}/portal-link", post(tenant::portal_link))
        .route("/t/{tenant}/preview", get(endpoint_form::preview))
        .route("/t/{tenant}/endpoints/new", get(endpoint_form::new))
        .route("/t/{tenant}/endpoints", post(endpoint_form::create))
        .route("/t/{tenant}/endpoints/{endpoint}", get(endpoint::view).post(endpoint_form::update))
        .route("/t/{tenant}/endpoints/{endpoint}/edit", get(endpoint_form::edit))
        .route("/t/{tenant}/endpoints/{endpoint}/delete", post(endpoint::delete))
        .route("/t/{tenant}/endpoints/{endpoint}/enable", post(endpoint::enable))
        .route("/t/{tenant}/endpoints/{endpoint}/recover", post(endpoint::recover))
        .route("/t/{tenant}/endpoints/{endpoint}/secret", post(endpoint::reveal_secret))
        .route("/t/{tenant}/endpoints/{endpoint}/secret/rotate", post(endpoint::rotate_secret))
        .route("/t/{tenant}/endpoints/{endpoint}/test", post(endpoint::send_test))
        .route("/t/{tenant}/deliveries/{delivery}/raw", get(delivery::raw))
        .route("/t/{tenant}/deliveries/{delivery}/download", get(delivery::download))
        .route("/t/{tenant}/deliveries/{delivery}/replay", get(delivery::confirm_replay).post(delivery::replay))
        .fallback(|| async { web::PageError::NotFound })
        .layer(middleware::from_fn_with_state(app.clone(), security_headers))
        .with_state(app)
}

/// CSP without inline script or style, no sniffing, no referrer, and
/// `frame-ancestors` from HOOKLINE_CONSOLE_FRAME_ANCESTORS for portal
/// sessions only (every other page refuses to be framed).
async fn security_headers(State(app): State<App>, req: Request, next: Next) -> Response {
    let portal = req.uri().path().starts_with("/portal/")
        || app.sessions.from_headers(req.headers()).is_some_and(|s| s.via == session::Via::Portal);
    let ancestors = if portal { app.frame_ancestors.source_list() } else { "'none'".to_owned() };
    let mut response = next.run(req).await;
    let csp = format!(
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; \
         frame-ancestors {ancestors}; form-action 'self'; base-uri 'none'; object-src 'none'"
    );
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_str(&csp).expect("CSP is a header value"));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    headers.entry(header::CACHE_CONTROL).or_insert(HeaderValue::from_static("no-store"));
    response
}

/// Serve the console on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: App,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    use axum::serve::ListenerExt as _;
    // Pages are written in more than one segment; with Nagle's algorithm a
    // browser's delayed ACK on a kept-alive connection would hold each page
    // back by 40 ms.
    let listener = listener.tap_io(|tcp| {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "cannot set TCP_NODELAY");
        }
    });
    axum::serve(listener, router(app)).with_graceful_shutdown(shutdown).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_ancestors_take_origins_separated_by_spaces_or_commas() {
        let a: FrameAncestors = "https://admin.example.com, http://localhost:3000".parse().unwrap();
        assert_eq!(a.source_list(), "https://admin.example.com http://localhost:3000");
        assert_eq!("".parse::<FrameAncestors>().unwrap().source_list(), "'none'");
        assert!("admin.example.com".parse::<FrameAncestors>().is_err(), "no scheme");
        assert!("https://a.example/path".parse::<FrameAncestors>().is_err(), "a path");
        assert!("'self'; script-src *".parse::<FrameAncestors>().is_err(), "CSP injection");
    }
}
