//! The save-time SSRF check: an endpoint URL whose host is, or resolves to,
//! a non-public address is refused when it is saved, so the tenant hears
//! about it at once instead of through failed deliveries. Delivery checks
//! again at every send, against the address it connects to; this check is
//! the early warning, the send-time one the guarantee.

use hookline_domain::{FieldError, ssrf::AddressPolicy};

/// How long the save waits for DNS before accepting the URL unchecked.
const LOOKUP_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(3);

/// `Err` names the `url` field and the refused address, e.g. `url:
/// `hooks.example.com` resolves to 127.0.0.1 is in a loopback range ...`.
///
/// The host is read as delivery's URL parser reads it (WHATWG), so
/// `http://0x7f.1/` and `http://[0:0:0:0:0:ffff:127.0.0.1]/` are judged as
/// the addresses they are. A name that does not resolve yet is accepted:
/// sending checks again.
pub async fn check_target(url: &str, policy: &AddressPolicy, dns: &hookline_dns::Resolver) -> Result<(), FieldError> {
    if policy.allow_all {
        return Ok(());
    }
    let refuse = |why: String| FieldError::new("url", why);
    let parsed = url::Url::parse(url).map_err(|e| refuse(format!("unusable URL: {e}")))?;
    let host = match parsed.host() {
        Some(url::Host::Ipv4(v4)) => return policy.check(v4.into()).map_err(|e| refuse(e.to_string())),
        Some(url::Host::Ipv6(v6)) => return policy.check(v6.into()).map_err(|e| refuse(e.to_string())),
        Some(url::Host::Domain(name)) => name,
        None => return Err(refuse("has no host".into())),
    };
    if let Ok(Ok(addrs)) = tokio::time::timeout(LOOKUP_TIMEOUT, dns.lookup(host)).await {
        for ip in addrs {
            policy.check(ip).map_err(|e| refuse(format!("`{host}` resolves to {e}")))?;
        }
    }
    Ok(())
}
