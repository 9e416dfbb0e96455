//! The transport of operational notices (`hookline_delivery_log::notices`):
//! the delivery service's HTTP client (the same address policy, DNS and
//! timeouts as webhooks, with a client of its own so notices never take a
//! webhook's connection or attempt slot) and its SMTP relay. It is put
//! together here because the delivery log does not depend on the hot path.

use std::sync::Arc;

use hookline_delivery::{
    DeliverySettings,
    mailer::Mailer,
    sender::{self, Http, Signer, TargetError},
};
use hookline_delivery_log::notices::{SendError, Signed, Transport};
use hookline_domain::{delivery::ErrorKind, endpoint::EndpointUrl, events::Email, ssrf::AddressPolicy};

/// Connections a notice sender keeps per host: notices are few.
const IDLE_PER_HOST: usize = 4;

pub struct DeliveryTransport {
    http: Http,
    policy: Arc<AddressPolicy>,
    /// `None` when HOOKLINE_SMTP_URL is unset: e-mail notices then fail.
    mailer: Option<Mailer>,
}

impl DeliveryTransport {
    pub fn new(settings: &DeliverySettings) -> Self {
        let policy = Arc::new(settings.address_policy.clone());
        let http = Http::new(settings.request_timeout, policy.clone(), settings.dns.clone(), IDLE_PER_HOST);
        Self { http, policy, mailer: settings.mailer.clone() }
    }
}

impl Transport for DeliveryTransport {
    async fn post(&self, url: &EndpointUrl, signed: Signed<'_>) -> Result<(), SendError> {
        let uri = sender::target(url.as_str(), &self.policy).map_err(|e| {
            let kind = if matches!(e, TargetError::Refused(_)) { ErrorKind::Ssrf } else { ErrorKind::Connection };
            SendError { kind, message: e.to_string() }
        })?;
        let signer = Signer { secrets: vec![signed.secret], auth_header: None };
        let result = sender::post(&self.http, uri, &signer, signed.msg_id, signed.body.to_vec(), None, false).await;
        match result.error_kind {
            None => Ok(()),
            Some(kind) => Err(SendError { kind, message: result.error.unwrap_or_else(|| kind.as_str().to_owned()) }),
        }
    }

    async fn mail(&self, to: &Email, subject: &str, text: String, signed: Signed<'_>) -> Result<(), SendError> {
        let Some(mailer) = &self.mailer else {
            return Err(SendError { kind: ErrorKind::Smtp, message: "HOOKLINE_SMTP_URL is not set".into() });
        };
        mailer
            .send_notice(to.as_str(), subject.to_owned(), text, signed.msg_id, signed.secret, signed.body.to_vec())
            .await
            .map_err(|(kind, message)| SendError { kind, message })
    }
}
