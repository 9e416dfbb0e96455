//! Portal links: signed, expiring tokens that let their holder act as one
//! tenant in the console, without an API key.
//!
//! A token is `hpl_` + base64url(payload) + `.` + base64url(HMAC-SHA256 of
//! the payload). The payload is a version byte, the expiry (unix seconds,
//! big-endian u64), 16 random bytes (so two links minted in the same second
//! differ) and the tenant id. Nothing is stored: a token is valid while its
//! signature checks out with one of the [`PortalKeys`] and it has not
//! expired, and whether its tenant exists is the caller's question.

use std::{
    fmt,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use hmac::{Hmac, KeyInit, Mac};
use hookline_domain::ids::TenantId;
use sha2::Sha256;

pub const PORTAL_TOKEN_PREFIX: &str = "hpl_";
/// What the portal key is derived under, so it differs from every other
/// use of the same secret.
const LABEL: &[u8] = b"hookline portal link v1";
const VERSION: u8 = 1;
const NONCE_LEN: usize = 16;
const HEADER_LEN: usize = 1 + 8 + NONCE_LEN;
const SIGNATURE_LEN: usize = 32;

type HmacSha256 = Hmac<Sha256>;

/// Why a portal token is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PortalLinkError {
    #[error("malformed portal link: {0}")]
    Malformed(&'static str),
    #[error("portal link signature does not match (altered, or signed with a key this service does not hold)")]
    BadSignature,
    #[error("portal link expired at unix time {expired_at}")]
    Expired { expired_at: u64 },
}

/// A token that has the shape of a portal link; its signature is checked by
/// [`PortalKeys::verify`].
#[derive(Clone, PartialEq, Eq)]
pub struct PortalToken {
    payload: Vec<u8>,
    signature: Vec<u8>,
}

impl PortalToken {
    /// Read a token's parts; nothing is verified yet.
    pub fn parse(text: &str) -> Result<Self, PortalLinkError> {
        let rest =
            text.trim().strip_prefix(PORTAL_TOKEN_PREFIX).ok_or(PortalLinkError::Malformed("must start `hpl_`"))?;
        let (payload, signature) =
            rest.split_once('.').ok_or(PortalLinkError::Malformed("must be `hpl_<payload>.<signature>`"))?;
        let payload =
            URL_SAFE_NO_PAD.decode(payload).map_err(|_| PortalLinkError::Malformed("payload is not base64url"))?;
        let signature =
            URL_SAFE_NO_PAD.decode(signature).map_err(|_| PortalLinkError::Malformed("signature is not base64url"))?;
        if payload.len() <= HEADER_LEN {
            return Err(PortalLinkError::Malformed("payload too short"));
        }
        if payload[0] != VERSION {
            return Err(PortalLinkError::Malformed("unknown version"));
        }
        if signature.len() != SIGNATURE_LEN {
            return Err(PortalLinkError::Malformed("signature must be 32 bytes"));
        }
        Ok(Self { payload, signature })
    }

    fn expires_at(&self) -> u64 {
        u64::from_be_bytes(self.payload[1..9].try_into().expect("length checked in parse"))
    }
}

impl fmt::Display for PortalToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{PORTAL_TOKEN_PREFIX}{}.{}",
            URL_SAFE_NO_PAD.encode(&self.payload),
            URL_SAFE_NO_PAD.encode(&self.signature)
        )
    }
}

/// A token is a bearer credential: it does not print in logs.
impl fmt::Debug for PortalToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PortalToken(********)")
    }
}

/// What a verified token grants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortalGrant {
    pub tenant: TenantId,
    /// Unix seconds.
    pub expires_at: u64,
}

/// The signing keys: the first signs, every one verifies (former keys keep
/// links minted before a rotation working).
#[derive(Clone)]
pub struct PortalKeys {
    keys: Vec<[u8; 32]>,
}

impl PortalKeys {
    /// Keys derived from secrets the replicas share (the master key, or the
    /// operator token), current first: HMAC-SHA256 keyed with the secret over
    /// a fixed label, so the portal key reveals nothing of the secret and no
    /// other use of the secret produces it.
    pub fn derive<'a>(current: &'a [u8], previous: impl IntoIterator<Item = &'a [u8]>) -> Self {
        let derive = |secret: &[u8]| -> [u8; 32] {
            let mut mac = HmacSha256::new_from_slice(secret).expect("HMAC takes keys of any length");
            mac.update(LABEL);
            mac.finalize().into_bytes().into()
        };
        Self { keys: std::iter::once(current).chain(previous).map(derive).collect() }
    }

    /// A key of this process only: links stop working when it restarts and
    /// are refused by other replicas. For services without shared secrets.
    pub fn ephemeral() -> Self {
        Self { keys: vec![rand::random()] }
    }

    /// A token for `tenant` that expires `ttl` from now.
    pub fn mint(&self, tenant: &TenantId, ttl: Duration) -> (PortalToken, u64) {
        let expires_at = unix_now().saturating_add(ttl.as_secs());
        (self.mint_until(tenant, expires_at), expires_at)
    }

    fn mint_until(&self, tenant: &TenantId, expires_at: u64) -> PortalToken {
        let nonce: [u8; NONCE_LEN] = rand::random();
        let mut payload = Vec::with_capacity(HEADER_LEN + tenant.as_str().len());
        payload.push(VERSION);
        payload.extend_from_slice(&expires_at.to_be_bytes());
        payload.extend_from_slice(&nonce);
        payload.extend_from_slice(tenant.as_str().as_bytes());
        let signature = mac(&self.keys[0], &payload).finalize().into_bytes().to_vec();
        PortalToken { payload, signature }
    }

    /// The grant of `token`, if one of the keys signed it and it has not
    /// expired at `now` (unix seconds).
    pub fn verify_at(&self, token: &PortalToken, now: u64) -> Result<PortalGrant, PortalLinkError> {
        let signed = self.keys.iter().any(|k| mac(k, &token.payload).verify_slice(&token.signature).is_ok());
        if !signed {
            return Err(PortalLinkError::BadSignature);
        }
        let expires_at = token.expires_at();
        if expires_at <= now {
            return Err(PortalLinkError::Expired { expired_at: expires_at });
        }
        let tenant = std::str::from_utf8(&token.payload[HEADER_LEN..])
            .ok()
            .and_then(|t| TenantId::parse(t).ok())
            .ok_or(PortalLinkError::Malformed("tenant id"))?;
        Ok(PortalGrant { tenant, expires_at })
    }

    /// [`Self::verify_at`] now.
    pub fn verify(&self, token: &PortalToken) -> Result<PortalGrant, PortalLinkError> {
        self.verify_at(token, unix_now())
    }
}

fn mac(key: &[u8; 32], payload: &[u8]) -> HmacSha256 {
    let mut mac = HmacSha256::new_from_slice(key).expect("HMAC takes keys of any length");
    mac.update(payload);
    mac
}

fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn acme() -> TenantId {
        TenantId::parse("acme").unwrap()
    }

    fn keys() -> PortalKeys {
        PortalKeys::derive(b"operator-token-of-the-test-0001", [])
    }

    #[test]
    fn a_minted_token_round_trips_through_its_text() {
        let keys = keys();
        let (token, expires_at) = keys.mint(&acme(), Duration::from_secs(3600));
        let text = token.to_string();
        assert!(text.starts_with("hpl_"));
        assert!(text.chars().all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c)), "URL-safe: {text}");
        let parsed = PortalToken::parse(&text).unwrap();
        assert_eq!(keys.verify(&parsed), Ok(PortalGrant { tenant: acme(), expires_at }));
        assert_ne!(text, keys.mint(&acme(), Duration::from_secs(3600)).0.to_string(), "each link differs");
        assert_eq!(format!("{parsed:?}"), "PortalToken(********)");
    }

    #[test]
    fn a_tampered_payload_fails_the_signature() {
        let keys = keys();
        let (token, _) = keys.mint(&acme(), Duration::from_secs(3600));
        // Another tenant, and a later expiry, under the same signature.
        let mut other = token.clone();
        let at = other.payload.len() - 4;
        other.payload[at..].copy_from_slice(b"evil");
        assert_eq!(keys.verify(&other), Err(PortalLinkError::BadSignature));
        let mut later = token.clone();
        later.payload[1..9].copy_from_slice(&u64::MAX.to_be_bytes());
        assert_eq!(keys.verify(&PortalToken::parse(&later.to_string()).unwrap()), Err(PortalLinkError::BadSignature));
    }

    #[test]
    fn a_tampered_signature_is_refused() {
        let keys = keys();
        let (mut token, _) = keys.mint(&acme(), Duration::from_secs(3600));
        token.signature[0] ^= 1;
        assert_eq!(keys.verify(&token), Err(PortalLinkError::BadSignature));
    }

    #[test]
    fn an_expired_token_stays_refused() {
        let keys = keys();
        let token = keys.mint_until(&acme(), 1_000);
        assert_eq!(keys.verify_at(&token, 999).map(|g| g.expires_at), Ok(1_000));
        assert_eq!(keys.verify_at(&token, 1_000), Err(PortalLinkError::Expired { expired_at: 1_000 }));
        assert_eq!(keys.verify_at(&token, 5_000), Err(PortalLinkError::Expired { expired_at: 1_000 }));
        assert_eq!(keys.verify(&token), Err(PortalLinkError::Expired { expired_at: 1_000 }));
    }

    #[test]
    fn another_key_refuses_and_a_former_key_still_verifies() {
        let old = PortalKeys::derive(b"old-secret", []);
        let (token, _) = old.mint(&acme(), Duration::from_secs(60));
        assert_eq!(PortalKeys::derive(b"new-secret", []).verify(&token), Err(PortalLinkError::BadSignature));
        assert_eq!(PortalKeys::ephemeral().verify(&token), Err(PortalLinkError::BadSignature));
        let rotated = PortalKeys::derive(b"new-secret", [b"old-secret".as_slice()]);
        assert_eq!(rotated.verify(&token).map(|g| g.tenant), Ok(acme()));
        // New links are signed with the new key only.
        let (fresh, _) = rotated.mint(&acme(), Duration::from_secs(60));
        assert_eq!(old.verify(&fresh), Err(PortalLinkError::BadSignature));
    }

    #[test]
    fn malformed_tokens_say_what_is_wrong() {
        let cases = [
            ("", "must start `hpl_`"),
            ("hlk_abc.def", "must start `hpl_`"),
            ("hpl_abc", "must be `hpl_<payload>.<signature>`"),
            ("hpl_a*c.def", "payload is not base64url"),
            ("hpl_AQ.AAAA", "payload too short"),
        ];
        for (text, why) in cases {
            assert_eq!(PortalToken::parse(text), Err(PortalLinkError::Malformed(why)), "{text}");
        }
        let good = keys().mint(&acme(), Duration::from_secs(60)).0.to_string();
        let (payload, _) = good.split_once('.').unwrap();
        assert_eq!(
            PortalToken::parse(&format!("{payload}.AAAA")),
            Err(PortalLinkError::Malformed("signature must be 32 bytes"))
        );
    }
}
