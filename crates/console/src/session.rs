//! Stateless sessions: a signed cookie holding who the visitor is, until
//! when, and the CSRF nonce every form of the session carries.
//!
//! The cookie is `base64url(JSON) "." base64url(HMAC-SHA256(key, JSON))`.
//! The key is derived from the operator token with a fixed label, so every
//! console replica accepts every other's cookies and nothing is stored; with
//! no operator token (`hookline dev`) it is random per process, so sessions
//! end when the process does. A session cannot be revoked before it
//! expires: sign-in sessions last [`SIGN_IN_LIFETIME`], portal sessions no
//! longer than their link.
//!
//! Cookie attributes: always `HttpOnly` and `Path=/`. `Secure` when the
//! console's public URL is `https://`. `SameSite=Lax` for sessions started
//! on the console itself: top-level navigation from elsewhere keeps them, a
//! cross-site form post or frame does not send them. Portal sessions, when
//! `HOOKLINE_CONSOLE_FRAME_ANCESTORS` allows embedding, are `SameSite=None;
//! Secure; Partitioned`: the portal page lives in another site's iframe, where
//! a Lax cookie is never sent, and browsers that block third-party cookies
//! keep a partitioned one (stored per embedding site). Browsers keep a `Secure` cookie only from an
//! `https://` console (or `localhost`), so embedding needs the console
//! behind TLS; the CSRF token, not SameSite, is what protects their forms.

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD as B64};
use hmac::{Hmac, KeyInit, Mac};
use hookline_domain::ids::TenantId;
use serde::{Deserialize, Serialize};
use sha2::Sha256;

/// The cookie's name.
pub const COOKIE: &str = "hookline_session";
/// How long a session started by signing in lasts.
pub const SIGN_IN_LIFETIME: chrono::Duration = chrono::Duration::hours(12);
/// How long the anonymous session of the sign-in form lasts.
const ANONYMOUS_LIFETIME: chrono::Duration = chrono::Duration::hours(2);

/// Who a session belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Principal {
    /// Not signed in: only the sign-in form's CSRF nonce.
    Anonymous,
    /// Every tenant, and the operator's own pages.
    Operator,
    /// One tenant's pages only; every other tenant's URL answers 404.
    Tenant(TenantId),
}

/// How the session began, which decides its cookie's `SameSite`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Via {
    /// The sign-in form (or no sign-in yet).
    SignIn,
    /// A portal link, possibly inside another site's iframe.
    Portal,
}

/// A decoded, verified, unexpired session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    pub principal: Principal,
    pub via: Via,
    /// Expiry, seconds since the Unix epoch.
    pub expires: i64,
    /// The CSRF nonce: every form posted in this session carries it.
    pub csrf: String,
}

impl Session {
    pub fn anonymous() -> Self {
        Self::new(Principal::Anonymous, Via::SignIn, chrono::Utc::now() + ANONYMOUS_LIFETIME)
    }

    pub fn new(principal: Principal, via: Via, expires: chrono::DateTime<chrono::Utc>) -> Self {
        let nonce: [u8; 24] = rand::random();
        Self { principal, via, expires: expires.timestamp(), csrf: B64.encode(nonce) }
    }

    pub fn is_signed_in(&self) -> bool {
        self.principal != Principal::Anonymous
    }

    /// Whether this session may see `tenant`'s pages.
    pub fn may_see(&self, tenant: &TenantId) -> bool {
        match &self.principal {
            Principal::Operator => true,
            Principal::Tenant(t) => t == tenant,
            Principal::Anonymous => false,
        }
    }

    /// Whether `given` is this session's CSRF nonce (compared in constant time).
    pub fn csrf_matches(&self, given: &str) -> bool {
        let (a, b) = (self.csrf.as_bytes(), given.as_bytes());
        a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
    }
}

/// Signs and checks session cookies.
#[derive(Clone)]
pub struct Sessions {
    key: [u8; 32],
    /// `Secure` on every cookie (the public URL is `https://`).
    secure: bool,
    /// Portal sessions get `SameSite=None; Secure; Partitioned` (embedding is allowed).
    embeddable: bool,
}

impl Sessions {
    /// The key: HMAC-SHA256 of a fixed label under the operator token, or
    /// random bytes when there is none.
    pub fn new(operator_token: Option<&str>, secure: bool, embeddable: bool) -> Self {
        let key = match operator_token {
            Some(token) => {
                let mut mac = Hmac::<Sha256>::new_from_slice(token.as_bytes()).expect("HMAC takes any key");
                mac.update(b"hookline-console session cookie v1");
                mac.finalize().into_bytes().into()
            }
            None => rand::random(),
        };
        Self { key, secure, embeddable }
    }

    fn mac(&self, payload: &[u8]) -> Hmac<Sha256> {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.key).expect("HMAC takes any key");
        mac.update(payload);
        mac
    }

    pub fn encode(&self, session: &Session) -> String {
        let payload = serde_json::to_vec(session).expect("sessions serialise");
        let tag = self.mac(&payload).finalize().into_bytes();
        format!("{}.{}", B64.encode(&payload), B64.encode(tag))
    }

    /// The session in `value`, if its signature holds and it has not expired.
    pub fn decode(&self, value: &str) -> Option<Session> {
        let (payload, tag) = value.split_once('.')?;
        let (payload, tag) = (B64.decode(payload).ok()?, B64.decode(tag).ok()?);
        self.mac(&payload).verify_slice(&tag).ok()?;
        let session: Session = serde_json::from_slice(&payload).ok()?;
        (session.expires > chrono::Utc::now().timestamp()).then_some(session)
    }

    /// The session of a request's `Cookie` headers, if any is valid; a
    /// signed-in one first. A browser can hold two cookies of this name: a
    /// partitioned portal cookie beside the sign-in page's anonymous one,
    /// which the partitioned cookie does not replace.
    pub fn from_headers(&self, headers: &http::HeaderMap) -> Option<Session> {
        let mut sessions = headers
            .get_all(http::header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .filter_map(|c| c.trim().split_once('='))
            .filter(|(name, _)| *name == COOKIE)
            .filter_map(|(_, value)| self.decode(value));
        let first = sessions.next()?;
        if first.is_signed_in() {
            return Some(first);
        }
        Some(sessions.find(Session::is_signed_in).unwrap_or(first))
    }

    /// The `Set-Cookie` value that stores `session`.
    pub fn set_cookie(&self, session: &Session) -> String {
        let max_age = (session.expires - chrono::Utc::now().timestamp()).max(0);
        // An embedded portal's cookie is a third-party cookie: browsers that block
        // those still keep it when it is partitioned by the embedding site (CHIPS).
        let same_site = if session.via == Via::Portal && self.embeddable { "None; Secure; Partitioned" } else { "Lax" };
        let secure = if self.secure && !same_site.contains("Secure") { "; Secure" } else { "" };
        format!("{COOKIE}={}; Path=/; Max-Age={max_age}; HttpOnly; SameSite={same_site}{secure}", self.encode(session))
    }

    /// The `Set-Cookie` value that ends the session.
    pub fn clear_cookie(&self) -> String {
        let secure = if self.secure { "; Secure" } else { "" };
        format!("{COOKIE}=; Path=/; Max-Age=0; HttpOnly; SameSite=Lax{secure}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tenant(s: &str) -> Principal {
        Principal::Tenant(TenantId::parse(s).unwrap())
    }

    #[test]
    fn a_cookie_signed_by_one_replica_opens_on_another_with_the_same_token() {
        let (a, b) = (
            Sessions::new(Some("operator-token-0123456789"), false, false),
            Sessions::new(Some("operator-token-0123456789"), false, false),
        );
        let s = Session::new(tenant("acme"), Via::SignIn, chrono::Utc::now() + chrono::Duration::minutes(5));
        assert_eq!(b.decode(&a.encode(&s)), Some(s));
    }

    #[test]
    fn a_tampered_expired_or_foreign_cookie_is_no_session() {
        let sessions = Sessions::new(Some("operator-token-0123456789"), false, false);
        let s = Session::new(tenant("acme"), Via::SignIn, chrono::Utc::now() + chrono::Duration::minutes(5));
        let cookie = sessions.encode(&s);
        let (payload, tag) = cookie.split_once('.').unwrap();
        let forged = B64.encode(serde_json::to_vec(&Session { principal: Principal::Operator, ..s.clone() }).unwrap());
        assert_eq!(sessions.decode(&format!("{forged}.{tag}")), None, "another principal under the old signature");
        assert_eq!(sessions.decode(payload), None, "no signature");
        let other = Sessions::new(Some("another-operator-token-987"), false, false);
        assert_eq!(other.decode(&cookie), None, "signed under another token");
        let expired = Session::new(tenant("acme"), Via::SignIn, chrono::Utc::now() - chrono::Duration::seconds(1));
        assert_eq!(sessions.decode(&sessions.encode(&expired)), None, "expired");
    }

    #[test]
    fn only_portal_sessions_of_an_embeddable_console_are_samesite_none() {
        let s = Sessions::new(None, false, true);
        let signed_in = Session::new(Principal::Operator, Via::SignIn, chrono::Utc::now() + SIGN_IN_LIFETIME);
        let portal = Session::new(tenant("acme"), Via::Portal, chrono::Utc::now() + chrono::Duration::hours(1));
        assert!(s.set_cookie(&signed_in).contains("HttpOnly; SameSite=Lax"));
        assert!(!s.set_cookie(&signed_in).contains("Secure"));
        assert!(s.set_cookie(&portal).ends_with("SameSite=None; Secure; Partitioned"));
        let closed = Sessions::new(None, true, false);
        assert!(closed.set_cookie(&portal).ends_with("SameSite=Lax; Secure"));
    }

    #[test]
    fn a_signed_in_cookie_wins_over_an_anonymous_one_of_the_same_name() {
        let sessions = Sessions::new(Some("operator-token-0123456789"), false, true);
        let portal = Session::new(tenant("acme"), Via::Portal, chrono::Utc::now() + chrono::Duration::hours(1));
        let (anonymous, portal_cookie) = (sessions.encode(&Session::anonymous()), sessions.encode(&portal));
        let mut headers = http::HeaderMap::new();
        let both = format!("{COOKIE}={anonymous}; {COOKIE}={portal_cookie}");
        headers.insert(http::header::COOKIE, both.parse().unwrap());
        assert_eq!(sessions.from_headers(&headers), Some(portal));
        headers.insert(http::header::COOKIE, format!("{COOKIE}={anonymous}").parse().unwrap());
        assert!(sessions.from_headers(&headers).is_some_and(|s| !s.is_signed_in()));
    }

    #[test]
    fn a_tenant_session_sees_only_its_tenant() {
        let s = Session::new(tenant("acme"), Via::SignIn, chrono::Utc::now() + SIGN_IN_LIFETIME);
        assert!(s.may_see(&TenantId::parse("acme").unwrap()));
        assert!(!s.may_see(&TenantId::parse("globex").unwrap()));
        assert!(!Session::anonymous().may_see(&TenantId::parse("acme").unwrap()));
        assert!(s.csrf_matches(&s.csrf.clone()) && !s.csrf_matches("x"));
    }
}
