//! The plumbing every page shares: the request context (state and
//! session), posted forms with their CSRF check, query strings, and the
//! errors a page can end in.

use axum::{
    extract::{FromRequest, FromRequestParts, Request},
    http::{StatusCode, header, request::Parts},
    response::{IntoResponse, Redirect, Response},
};
use hookline_domain::ids::TenantId;

use crate::{
    App,
    session::{Principal, Session},
    views::layout,
};

/// Name/value pairs of a form body or query string, in order; a name may
/// repeat (checkbox groups).
#[derive(Debug, Clone, Default)]
pub struct Fields(Vec<(String, String)>);

impl Fields {
    pub fn parse(bytes: &[u8]) -> Self {
        Self(form_urlencoded::parse(bytes).into_owned().collect())
    }

    /// The first value of `name`, trimmed; `""` when absent.
    pub fn get(&self, name: &str) -> &str {
        self.0.iter().find(|(k, _)| k == name).map(|(_, v)| v.trim()).unwrap_or_default()
    }

    /// The first value of `name` exactly as sent (secrets keep their spaces).
    pub fn raw(&self, name: &str) -> &str {
        self.0.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str()).unwrap_or_default()
    }

    pub fn has(&self, name: &str) -> bool {
        self.0.iter().any(|(k, _)| k == name)
    }

    /// Every value of `name`.
    pub fn all(&self, name: &str) -> Vec<String> {
        self.0.iter().filter(|(k, _)| k == name).map(|(_, v)| v.clone()).collect()
    }
}

/// The query string of a GET.
pub struct Query(pub Fields);

impl<S: Send + Sync> FromRequestParts<S> for Query {
    type Rejection = std::convert::Infallible;
    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Query(Fields::parse(parts.uri.query().unwrap_or_default().as_bytes())))
    }
}

/// Who is asking, and the console's state.
#[derive(Clone)]
pub struct Ctx {
    pub app: App,
    /// The verified session, if the request carried one.
    pub session: Option<Session>,
}

impl FromRequestParts<App> for Ctx {
    type Rejection = std::convert::Infallible;
    async fn from_request_parts(parts: &mut Parts, app: &App) -> Result<Self, Self::Rejection> {
        Ok(Ctx { app: app.clone(), session: app.sessions.from_headers(&parts.headers) })
    }
}

impl Ctx {
    /// The signed-in session, else a redirect to the sign-in page.
    pub fn signed_in(&self) -> Result<&Session, PageError> {
        self.session.as_ref().filter(|s| s.is_signed_in()).ok_or(PageError::SignIn)
    }

    /// The tenant of a URL, if this session may see it. Another tenant's
    /// URL is 404 (as if it did not exist), never 403.
    pub fn tenant(&self, raw: &str) -> Result<TenantId, PageError> {
        let session = self.signed_in()?;
        let tenant = TenantId::parse(raw).map_err(|_| PageError::NotFound)?;
        if session.may_see(&tenant) { Ok(tenant) } else { Err(PageError::NotFound) }
    }

    pub fn is_operator(&self) -> bool {
        self.session.as_ref().is_some_and(|s| s.principal == Principal::Operator)
    }
}

/// A posted form whose CSRF token matched the session's: the only way a
/// handler gets a form body, so no state-changing request skips the check.
pub struct Posted {
    pub ctx: Ctx,
    pub form: Fields,
}

/// The hidden field that carries the CSRF token.
pub const CSRF_FIELD: &str = "csrf";
/// Forms are small; a larger body is refused before it is parsed.
const FORM_LIMIT: usize = 64 * 1024;

impl FromRequest<App> for Posted {
    type Rejection = PageError;
    async fn from_request(req: Request, app: &App) -> Result<Self, Self::Rejection> {
        let (mut parts, body) = req.into_parts();
        let ctx = Ctx::from_request_parts(&mut parts, app).await.unwrap_or_else(|e| match e {});
        let bytes = axum::body::to_bytes(body, FORM_LIMIT).await.map_err(|_| PageError::TooLarge)?;
        let form = Fields::parse(&bytes);
        let ok = ctx.session.as_ref().is_some_and(|s| s.csrf_matches(form.raw(CSRF_FIELD)));
        if !ok {
            return Err(PageError::Csrf);
        }
        Ok(Posted { ctx, form })
    }
}

/// How a page request can fail.
#[derive(Debug, thiserror::Error)]
pub enum PageError {
    #[error("sign in first")]
    SignIn,
    #[error("not found")]
    NotFound,
    #[error("the form's security token is missing or stale")]
    Csrf,
    #[error("archived")]
    Archived,
    #[error("the form is too large")]
    TooLarge,
    #[error("{0}")]
    BadRequest(String),
    #[error("{}", .0.message())]
    Grpc(#[from] tonic::Status),
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        use tonic::Code;
        let (status, title, detail) = match &self {
            PageError::SignIn => return Redirect::to("/signin").into_response(),
            PageError::NotFound => (StatusCode::NOT_FOUND, "Not found", "There is no such page.".to_owned()),
            PageError::Csrf => (
                StatusCode::FORBIDDEN,
                "Refused",
                "The form's security token is missing or stale: reload the page and try again.".to_owned(),
            ),
            PageError::Archived => (
                StatusCode::GONE,
                "Archived",
                "This delivery is archived: its request data was deleted, so Raw, Download and Replay are no longer available.".to_owned(),
            ),
            PageError::TooLarge => (StatusCode::PAYLOAD_TOO_LARGE, "Too large", "The form is too large.".to_owned()),
            PageError::BadRequest(why) => (StatusCode::BAD_REQUEST, "Cannot do that", why.clone()),
            PageError::Grpc(s) => match s.code() {
                Code::NotFound => (StatusCode::NOT_FOUND, "Not found", "There is no such page.".to_owned()),
                Code::InvalidArgument | Code::FailedPrecondition | Code::AlreadyExists => {
                    (StatusCode::BAD_REQUEST, "Cannot do that", s.message().to_owned())
                }
                Code::PermissionDenied | Code::Unauthenticated => (
                    StatusCode::BAD_GATEWAY,
                    "Refused by Hookline",
                    "The services refused the console's credential: check HOOKLINE_OPERATOR_TOKEN.".to_owned(),
                ),
                Code::Unavailable | Code::DeadlineExceeded | Code::Aborted => (
                    StatusCode::SERVICE_UNAVAILABLE,
                    "Unavailable",
                    "Hookline's services do not answer right now; try again in a moment.".to_owned(),
                ),
                _ => {
                    tracing::warn!(code = ?s.code(), message = s.message(), "gRPC call failed");
                    (StatusCode::INTERNAL_SERVER_ERROR, "Something went wrong", "The call failed; see the console's log.".to_owned())
                }
            },
        };
        let mut response = (status, layout::bare(title, &detail)).into_response();
        response.headers_mut().insert(header::CACHE_CONTROL, header::HeaderValue::from_static("no-store"));
        response
    }
}

/// A redirect after a successful post (303, so the browser GETs it).
pub fn see_other(to: &str) -> Response {
    Redirect::to(to).into_response()
}
