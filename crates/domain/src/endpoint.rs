//! Endpoint settings as types that cannot hold an invalid value.

use std::{borrow::Cow, fmt};

use base64::{Engine, engine::general_purpose::STANDARD as B64};
use serde::{Deserialize, Serialize};

use crate::{FieldError, event_type::EventType, ids::EndpointId};

/// A value that must never reach a log line or API output in full.
/// `Debug` masks it; there is no `Display`; serialised, it is sealed with
/// the master key (see [`crate::seal`]).
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Serialize for Secret {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&crate::seal::seal(&self.0))
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let stored = String::deserialize(d)?;
        crate::seal::open(&stored).map(Secret).map_err(serde::de::Error::custom)
    }
}

impl Secret {
    pub const MASK: &'static str = "********";

    pub fn new(s: String) -> Self {
        Self(s)
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(Self::MASK)
    }
}

/// Where webhooks go: an absolute http(s) URL with a host and no userinfo.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct EndpointUrl(String);

impl EndpointUrl {
    pub const MAX_LEN: usize = 2048;

    pub fn parse(s: &str) -> Result<Self, FieldError> {
        let bad = |rule: &str| Err(FieldError::new("", rule));
        if s.is_empty() {
            return bad("is required");
        }
        if s.len() > Self::MAX_LEN {
            return bad("must be at most 2048 characters");
        }
        if s.bytes().any(|b| b.is_ascii_whitespace() || b.is_ascii_control() || !b.is_ascii()) {
            return bad("must not contain spaces, control or non-ASCII characters (percent-encode them)");
        }
        let lower = s.to_ascii_lowercase();
        let rest = if let Some(r) = lower.strip_prefix("https://") {
            r
        } else if let Some(r) = lower.strip_prefix("http://") {
            r
        } else {
            return bad("must use the http or https scheme");
        };
        let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
        if authority.contains('@') {
            return bad("must not contain a user name or password (use the auth header instead)");
        }
        let host = if authority.starts_with('[') {
            authority.split(']').next().map(|h| h.trim_start_matches('[')).unwrap_or_default()
        } else {
            authority.split(':').next().unwrap_or_default()
        };
        if host.is_empty() {
            return bad("must name a host");
        }
        if let Some(port) = authority
            .strip_prefix('[')
            .and_then(|a| a.split("]:").nth(1))
            .or_else(|| (!authority.starts_with('[')).then(|| authority.split(':').nth(1)).flatten())
            && port.parse::<u16>().map_or(true, |p| p == 0)
        {
            return bad("must have a port between 1 and 65535");
        }
        Ok(Self(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The URL with its query values masked, for every place it is shown:
    /// see [`redact_query`].
    pub fn redacted(&self) -> Cow<'_, str> {
        redact_query(&self.0)
    }

    /// The host (IPv6 literals without brackets) and the port, explicit or
    /// the scheme's.
    pub fn host_port(&self) -> (&str, u16) {
        let https = self.0[..8].eq_ignore_ascii_case("https://");
        let rest = &self.0[if https { 8 } else { 7 }..];
        let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
        let default = if https { 443 } else { 80 };
        if let Some(v6) = authority.strip_prefix('[') {
            let (host, after) = v6.split_once(']').unwrap_or((v6, ""));
            return (host, after.strip_prefix(':').and_then(|p| p.parse().ok()).unwrap_or(default));
        }
        match authority.split_once(':') {
            Some((host, port)) => (host, port.parse().unwrap_or(default)),
            None => (authority, default),
        }
    }
}

impl TryFrom<String> for EndpointUrl {
    type Error = FieldError;
    fn try_from(s: String) -> Result<Self, FieldError> {
        Self::parse(&s)
    }
}

impl From<EndpointUrl> for String {
    fn from(u: EndpointUrl) -> String {
        u.0
    }
}

/// `url` with the value of every query parameter replaced by `********`
/// (`?code=abc&v=2` → `?code=********&v=********`; a parameter without
/// `=` is masked whole). Receivers often take their token in the query
/// (Azure Functions' `?code=`, many ERP connectors), and a URL is shown in
/// places a header value never is: lists, logs, the delivery log. Names
/// stay readable so a tenant still recognises the URL.
pub fn redact_query(url: &str) -> Cow<'_, str> {
    let (before_fragment, fragment) = match url.split_once('#') {
        Some((b, f)) => (b, Some(f)),
        None => (url, None),
    };
    let Some((base, query)) = before_fragment.split_once('?') else { return Cow::Borrowed(url) };
    if query.split('&').all(|pair| pair.is_empty() || pair.ends_with('=')) {
        return Cow::Borrowed(url);
    }
    let mut out = String::with_capacity(url.len() + 16);
    out.push_str(base);
    out.push('?');
    for (i, pair) in query.split('&').enumerate() {
        if i > 0 {
            out.push('&');
        }
        match pair.split_once('=') {
            Some((name, value)) if !value.is_empty() => {
                out.push_str(name);
                out.push('=');
                out.push_str(Secret::MASK);
            }
            Some(_) => out.push_str(pair),
            None if pair.is_empty() => {}
            None => out.push_str(Secret::MASK),
        }
    }
    if let Some(f) = fragment {
        out.push('#');
        out.push_str(f);
    }
    Cow::Owned(out)
}

/// The one extra header an endpoint may carry, e.g. `Authorization`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthHeader {
    name: String,
    value: Secret,
}

impl AuthHeader {
    /// Headers Hookline sets on every request (a tenant's header would
    /// replace them or be replaced by them), and the hop-by-hop and framing
    /// headers that would change how the request itself is read. `webhook-*`
    /// is reserved as a prefix, for the Standard Webhooks headers.
    pub const RESERVED: [&'static str; 18] = [
        // Set by Hookline on every request.
        "accept",
        "content-length",
        "content-type",
        "host",
        "traceparent",
        "tracestate",
        "user-agent",
        // Hop-by-hop and message framing (RFC 9110 §7.6.1, RFC 9112).
        "connection",
        "content-encoding",
        "expect",
        "keep-alive",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "via",
    ];

    pub fn parse(name: &str, value: &str) -> Result<Self, FieldError> {
        let is_tchar = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
        if name.is_empty() {
            return Err(FieldError::new("auth_header.name", "is required"));
        }
        if name.len() > 256 || !name.bytes().all(is_tchar) {
            return Err(FieldError::new(
                "auth_header.name",
                "must be an HTTP header name (letters, digits and !#$%&'*+-.^_`|~, at most 256)",
            ));
        }
        let lower = name.to_ascii_lowercase();
        if Self::RESERVED.contains(&lower.as_str()) || lower.starts_with("webhook-") {
            return Err(FieldError::new(
                "auth_header.name",
                format!(
                    "`{name}` is reserved: Hookline sets it or it controls the connection ({} and webhook-* are reserved)",
                    Self::RESERVED.join(", ")
                ),
            ));
        }
        if value.is_empty() {
            return Err(FieldError::new("auth_header.value", "is required"));
        }
        if value.len() > 4096 || !value.bytes().all(|b| b == b' ' || b == b'\t' || (0x21..=0x7e).contains(&b)) {
            return Err(FieldError::new(
                "auth_header.value",
                "must be at most 4096 visible ASCII characters (no line breaks)",
            ));
        }
        Ok(Self { name: name.to_owned(), value: Secret(value.to_owned()) })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn value(&self) -> &Secret {
        &self.value
    }
}

/// A tenant's subscription plan; it caps the number of endpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Plan {
    Basic,
    Professional,
    Business,
    Enterprise,
}

impl Plan {
    pub fn endpoint_limit(self) -> usize {
        match self {
            Plan::Basic => 1,
            Plan::Professional => 3,
            Plan::Business => 5,
            Plan::Enterprise => 10,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Plan::Basic => "basic",
            Plan::Professional => "professional",
            Plan::Business => "business",
            Plan::Enterprise => "enterprise",
        }
    }

    pub fn parse(s: &str) -> Result<Self, FieldError> {
        match s.to_ascii_lowercase().as_str() {
            "basic" => Ok(Plan::Basic),
            "professional" => Ok(Plan::Professional),
            "business" => Ok(Plan::Business),
            "enterprise" => Ok(Plan::Enterprise),
            _ => {
                Err(FieldError::new("plan", format!("must be basic, professional, business or enterprise, got `{s}`")))
            }
        }
    }
}

/// The JSON shape of delivered bodies.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Layout {
    /// `{"type", "timestamp", "data": {...}}`.
    #[default]
    Envelope,
    /// Nested fields flattened to top-level keys joined with `_`.
    Flat,
}

/// A Standard Webhooks signing secret: `whsec_` + base64 of 24 to 64 bytes.
#[derive(Clone, PartialEq, Eq)]
pub struct SigningSecret {
    text: Secret,
    key: Vec<u8>,
}

/// Stored as its text, sealed like every [`Secret`].
impl Serialize for SigningSecret {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.text.serialize(s)
    }
}

impl<'de> Deserialize<'de> for SigningSecret {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = Secret::deserialize(d)?;
        Self::parse(text.expose()).map_err(serde::de::Error::custom)
    }
}

impl SigningSecret {
    pub fn generate() -> Self {
        let key: [u8; 32] = rand::random();
        Self { text: Secret(format!("whsec_{}", B64.encode(key))), key: key.to_vec() }
    }

    pub fn parse(s: &str) -> Result<Self, FieldError> {
        let rule = "must be `whsec_` followed by base64 of 24 to 64 bytes";
        let key = s
            .strip_prefix("whsec_")
            .and_then(|b| B64.decode(b).ok())
            .filter(|k| (24..=64).contains(&k.len()))
            .ok_or_else(|| FieldError::new("secret", rule))?;
        Ok(Self { text: Secret(s.to_owned()), key })
    }

    pub fn expose(&self) -> &str {
        self.text.expose()
    }

    pub fn key(&self) -> &[u8] {
        &self.key
    }
}

impl fmt::Debug for SigningSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("whsec_********")
    }
}

impl TryFrom<String> for SigningSecret {
    type Error = FieldError;
    fn try_from(s: String) -> Result<Self, FieldError> {
        Self::parse(&s)
    }
}

impl From<SigningSecret> for String {
    fn from(s: SigningSecret) -> String {
        s.text.0
    }
}

/// An endpoint as the config stream records it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EndpointConfig {
    pub id: EndpointId,
    pub url: EndpointUrl,
    /// When set, deliveries go to this address by e-mail and no HTTP request is made.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<crate::events::Email>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_header: Option<AuthHeader>,
    /// Subscribed types; empty means all.
    #[serde(default)]
    pub event_types: Vec<EventType>,
    #[serde(default)]
    pub layout: Layout,
    pub enabled: bool,
    #[serde(default)]
    pub description: String,
    /// Attempts a second at most, per delivery process; none when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<RateLimit>,
    /// Conditions on `data` that an event must all meet to be delivered
    /// here; none: every subscribed event. Absent in config events written
    /// before filters existed, which read as none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub filters: Vec<crate::filter::Condition>,
    pub secret: SigningSecret,
    /// Secrets replaced by a rotation that still sign until they expire, so
    /// receivers can switch without missing a webhook.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub previous_secrets: Vec<ExpiringSecret>,
    pub created_at: crate::events::Timestamp,
    pub updated_at: crate::events::Timestamp,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disabled_reason: Option<String>,
}

/// A former signing secret and when it stops being used (RFC 3339 UTC).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExpiringSecret {
    pub secret: SigningSecret,
    pub expires_at: crate::events::Timestamp,
}

impl EndpointConfig {
    /// The secrets to sign with at `now`: the current one first, then every
    /// former one still in its grace period.
    pub fn signing_secrets(&self, now: chrono::DateTime<chrono::Utc>) -> Vec<&SigningSecret> {
        let live = self.previous_secrets.iter().filter(|p| p.expires_at.parsed() > now);
        std::iter::once(&self.secret).chain(live.map(|p| &p.secret)).collect()
    }

    pub fn wants(&self, event_type: EventType) -> bool {
        self.enabled && self.subscribed(event_type)
    }

    /// Subscribed to the type, whether enabled or not.
    pub fn subscribed(&self, event_type: EventType) -> bool {
        self.event_types.is_empty() || self.event_types.contains(&event_type)
    }
}

/// Parse a list of event type names; empty means all.
pub fn parse_event_types(names: &[String]) -> Result<Vec<EventType>, FieldError> {
    let mut types = Vec::with_capacity(names.len());
    for (i, n) in names.iter().enumerate() {
        let t = EventType::parse(n).map_err(|e| e.under(&format!("event_types[{i}]")))?;
        if !types.contains(&t) {
            types.push(t);
        }
    }
    types.sort();
    Ok(types)
}

/// Description: at most 1024 characters.
/// At most this many attempts a second to one endpoint, per delivery
/// process: for receivers (ERP APIs above all) that throttle their callers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "u32", into = "u32")]
pub struct RateLimit(std::num::NonZeroU32);

impl RateLimit {
    pub const MAX: u32 = 10_000;

    /// `0` means no limit.
    pub fn parse(per_second: u32) -> Result<Option<Self>, FieldError> {
        if per_second > Self::MAX {
            return Err(FieldError::new(
                "rate_limit",
                format!("must be at most {} per second (0: no limit)", Self::MAX),
            ));
        }
        Ok(std::num::NonZeroU32::new(per_second).map(Self))
    }

    pub fn per_second(self) -> u32 {
        self.0.get()
    }
}

impl TryFrom<u32> for RateLimit {
    type Error = FieldError;

    fn try_from(n: u32) -> Result<Self, FieldError> {
        Self::parse(n)?.ok_or_else(|| FieldError::new("rate_limit", "must be at least 1 per second"))
    }
}

impl From<RateLimit> for u32 {
    fn from(r: RateLimit) -> u32 {
        r.per_second()
    }
}

pub fn parse_description(s: &str) -> Result<String, FieldError> {
    if s.chars().count() > 1024 {
        return Err(FieldError::new("description", "must be at most 1024 characters"));
    }
    Ok(s.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_limits() {
        assert_eq!(RateLimit::parse(0).unwrap(), None);
        assert_eq!(RateLimit::parse(25).unwrap().map(RateLimit::per_second), Some(25));
        let e = RateLimit::parse(10_001).unwrap_err();
        assert_eq!(
            (e.field.as_str(), e.rule.as_str()),
            ("rate_limit", "must be at most 10000 per second (0: no limit)")
        );
        assert!(serde_json::from_str::<RateLimit>("0").is_err());
        assert_eq!(serde_json::to_string(&RateLimit::parse(7).unwrap().unwrap()).unwrap(), "7");
    }

    #[test]
    fn urls() {
        for ok in ["https://erp.example.com/hooks", "http://127.0.0.1:8080/x?y=1", "https://[::1]:443/"] {
            EndpointUrl::parse(ok).unwrap();
        }
        assert_eq!(EndpointUrl::parse("https://erp.example.com/h").unwrap().host_port(), ("erp.example.com", 443));
        assert_eq!(EndpointUrl::parse("http://127.0.0.1:8080/x").unwrap().host_port(), ("127.0.0.1", 8080));
        assert_eq!(EndpointUrl::parse("https://[::1]:8443/").unwrap().host_port(), ("::1", 8443));
        assert_eq!(EndpointUrl::parse("HTTP://[fe80::1]").unwrap().host_port(), ("fe80::1", 80));
        for (bad, rule) in [
            ("ftp://x.example", "scheme"),
            ("https://user:pw@x.example/", "password"),
            ("https:///path", "host"),
            ("https://x.example:99999/", "port"),
            ("https://x .example/", "spaces"),
        ] {
            let e = EndpointUrl::parse(bad).unwrap_err();
            assert!(e.rule.contains(rule), "{bad}: {e}");
        }
    }

    #[test]
    fn query_values_are_masked_and_names_kept() {
        for (url, shown) in [
            ("https://erp.example/hook", "https://erp.example/hook"),
            ("https://erp.example/hook?", "https://erp.example/hook?"),
            ("https://erp.example/hook?code=abc", "https://erp.example/hook?code=********"),
            ("https://erp.example/h?code=abc&v=2&empty=", "https://erp.example/h?code=********&v=********&empty="),
            ("https://erp.example/h?sekrit&a=1", "https://erp.example/h?********&a=********"),
            ("https://erp.example/h?t=a=b#frag", "https://erp.example/h?t=********#frag"),
            ("https://erp.example/h#frag?x=1", "https://erp.example/h#frag?x=1"),
        ] {
            assert_eq!(redact_query(url), shown, "{url}");
            assert_eq!(EndpointUrl::parse(url).unwrap().redacted(), shown);
        }
    }

    #[test]
    fn auth_headers() {
        AuthHeader::parse("Ocp-Apim-Subscription-Key", "abc").unwrap();
        for bad in ["Host", "content-type", "Webhook-Signature", "Bad Name", "", "Accept", "TraceParent", "TE"] {
            assert!(AuthHeader::parse(bad, "v").is_err(), "{bad}");
        }
        for reserved in AuthHeader::RESERVED {
            let e = AuthHeader::parse(&reserved.to_ascii_uppercase(), "v").unwrap_err();
            assert_eq!(e.field, "auth_header.name");
            assert!(e.rule.contains("reserved"), "{reserved}: {e}");
        }
        assert!(AuthHeader::parse("X-Key", "a\r\nb").is_err());
        let h = AuthHeader::parse("Authorization", "Bearer sekrit").unwrap();
        assert!(!format!("{h:?}").contains("sekrit"));
    }

    #[test]
    fn secrets_round_trip() {
        let s = SigningSecret::generate();
        assert_eq!(SigningSecret::parse(s.expose()).unwrap().key(), s.key());
        assert!(SigningSecret::parse("whsec_AAAA").is_err());
        assert!(!format!("{s:?}").contains(&s.expose()[6..]));
    }
}
