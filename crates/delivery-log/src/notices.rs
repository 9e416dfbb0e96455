//! Operational notices: a tenant's operational contact hears when one of
//! its endpoints has failed every attempt for 50 %, 75 % and 90 % of the
//! auto-disable window, and when it is disabled.
//!
//! Auto-disable's round ([`crate::autodisable`]) notices the thresholds and
//! records one notice per endpoint, failing period, threshold and channel
//! in Postgres (`operational_notices`), where its key makes it once across
//! replicas and restarts. [`run`] sends what is recorded: it takes due
//! notices with a lease (so one sender has each, and a crashed sender's
//! notices are taken again when the lease ends), sends them through a
//! [`Transport`], and records the result, trying a failed send again after
//! growing pauses up to [`MAX_ATTEMPTS`] times. Nothing here is on the
//! delivery hot path: notices are their own task and their own requests.
//!
//! The transport (the signed POST, the e-mail) is the binary's to supply,
//! from the delivery service's HTTP client and mailer, so this crate does
//! not depend on the hot path crate.

use std::{future::Future, sync::Arc, time::Duration};

use chrono::{DateTime, SecondsFormat, Utc};
use hookline_domain::{
    config::OperationalContact,
    delivery::ErrorKind,
    endpoint::{EndpointConfig, EndpointUrl, SigningSecret},
    events::Email,
    ids::TenantId,
};
use hookline_store::notices::{self as store, Channel, DueNotice, NoticeKey, Sent};
use hookline_tenants::Directory;
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

/// Sends of one notice before it is given up.
pub const MAX_ATTEMPTS: i32 = 5;
/// How often the sender looks for due notices.
const POLL: Duration = Duration::from_secs(1);
/// How long a sender holds the notices it took; longer than a send takes.
const LEASE: Duration = Duration::from_secs(120);
/// Notices taken per round.
const BATCH: i64 = 50;
/// The threshold number of the disabled notice.
pub const DISABLED: i16 = 100;
/// The thresholds of `endpoint.failing`, in % of the window, highest first.
pub const THRESHOLDS: [i16; 3] = [90, 75, 50];

/// The pause before the next try after `attempts` failed ones: 2 s, 4 s,
/// 8 s, 16 s.
fn backoff(attempts: i32) -> Duration {
    Duration::from_secs(1 << attempts.clamp(1, 6))
}

/// `endpoint.failing` or `endpoint.disabled`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum NoticeKind {
    #[serde(rename = "endpoint.failing")]
    Failing,
    #[serde(rename = "endpoint.disabled")]
    Disabled,
}

/// A notice as sent: the POST's JSON body, and the facts of the e-mail.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Notice {
    #[serde(rename = "type")]
    pub kind: NoticeKind,
    /// % of the window failed: 50, 75 or 90 (`endpoint.failing` only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threshold: Option<i16>,
    pub tenant_id: String,
    pub endpoint_id: String,
    /// Query values masked.
    pub endpoint_url: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint_email: Option<String>,
    /// The first failed attempt of the period, RFC 3339 UTC.
    pub failing_since: String,
    /// HOOKLINE_AUTO_DISABLE_AFTER in seconds.
    pub window_seconds: u64,
    /// When the endpoint is disabled if nothing succeeds before
    /// (`failing_since` + the window), RFC 3339 UTC.
    pub disable_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// When Hookline noticed the threshold, RFC 3339 UTC.
    pub at: String,
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

impl Notice {
    /// `threshold` is 50, 75, 90 or [`DISABLED`].
    pub fn new(
        tenant: &TenantId,
        endpoint: &EndpointConfig,
        threshold: i16,
        failing_since: DateTime<Utc>,
        window: Duration,
        last_error: Option<String>,
    ) -> Self {
        let disable_at = failing_since + chrono::Duration::from_std(window).unwrap_or(chrono::Duration::MAX);
        let (kind, threshold) =
            if threshold >= DISABLED { (NoticeKind::Disabled, None) } else { (NoticeKind::Failing, Some(threshold)) };
        Notice {
            kind,
            threshold,
            tenant_id: tenant.to_string(),
            endpoint_id: endpoint.id.to_string(),
            endpoint_url: endpoint.url.redacted().into_owned(),
            endpoint_email: endpoint.email.as_ref().map(|e| e.as_str().to_owned()),
            failing_since: rfc3339(failing_since),
            window_seconds: window.as_secs(),
            disable_at: rfc3339(disable_at),
            last_error,
            at: rfc3339(Utc::now()),
        }
    }

    /// The `webhook-id` of the notice: the same for every try and channel,
    /// so a receiver can drop a notice it already has.
    pub fn message_id(key: &NoticeKey) -> String {
        format!("ntc_{}_{}_{}", key.endpoint_id, key.failing_since.timestamp_millis(), key.threshold)
    }

    pub fn subject(&self) -> String {
        match self.kind {
            NoticeKind::Failing => format!(
                "[Hookline] Endpoint {} of tenant {} is failing ({} % of the auto-disable window)",
                self.endpoint_id,
                self.tenant_id,
                self.threshold.unwrap_or_default()
            ),
            NoticeKind::Disabled => {
                format!("[Hookline] Endpoint {} of tenant {} was disabled", self.endpoint_id, self.tenant_id)
            }
        }
    }

    /// The e-mail's text: the same facts as the JSON, for a person.
    pub fn text(&self) -> String {
        let window = humantime::format_duration(Duration::from_secs(self.window_seconds));
        let headline = match self.kind {
            NoticeKind::Failing => format!(
                "Every attempt to deliver to endpoint {} of tenant {} has failed for {} % of the auto-disable window.\n\
                 It will be disabled at {} unless an attempt succeeds before.",
                self.endpoint_id,
                self.tenant_id,
                self.threshold.unwrap_or_default(),
                self.disable_at
            ),
            NoticeKind::Disabled => format!(
                "Every attempt to deliver to endpoint {} of tenant {} failed for the whole auto-disable window,\n\
                 so Hookline disabled it at {}. Events for it are not delivered until it is enabled again.",
                self.endpoint_id, self.tenant_id, self.disable_at
            ),
        };
        let target = match &self.endpoint_email {
            Some(email) => format!("{email} (e-mail)"),
            None => self.endpoint_url.clone(),
        };
        format!(
            "{headline}\n\n\
             Tenant:        {}\n\
             Endpoint:      {}\n\
             Target:        {target}\n\
             Failing since: {}\n\
             Window:        {window} ({} s)\n\
             Disable at:    {}\n\
             Last error:    {}\n\
             Noticed at:    {}\n",
            self.tenant_id,
            self.endpoint_id,
            self.failing_since,
            self.window_seconds,
            self.disable_at,
            self.last_error.as_deref().unwrap_or("-"),
            self.at,
        )
    }
}

/// Why a notice was not sent; the message never holds a secret.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{}: {message}", kind.as_str())]
pub struct SendError {
    pub kind: ErrorKind,
    pub message: String,
}

/// What a transport signs and sends.
pub struct Signed<'a> {
    /// `webhook-id`.
    pub msg_id: &'a str,
    pub secret: &'a SigningSecret,
    /// The notice's JSON.
    pub body: &'a [u8],
}

/// Sends a notice: a signed POST (Standard Webhooks headers), or an e-mail
/// with the same headers, the text and the JSON attached.
pub trait Transport: Send + Sync + 'static {
    fn post(&self, url: &EndpointUrl, signed: Signed<'_>) -> impl Future<Output = Result<(), SendError>> + Send;
    fn mail(
        &self,
        to: &Email,
        subject: &str,
        text: String,
        signed: Signed<'_>,
    ) -> impl Future<Output = Result<(), SendError>> + Send;
}

/// Record the notice of `threshold` for each of the tenant's contact's
/// channels, unless it was recorded before; nothing when the tenant has no
/// contact.
pub async fn record(
    pool: &PgPool,
    contact: &OperationalContact,
    notice: &Notice,
    failing_since: DateTime<Utc>,
    threshold: i16,
) -> Result<usize, hookline_store::StoreError> {
    let body = serde_json::to_string(notice).expect("a notice serialises");
    let channels =
        [contact.email.as_ref().map(|_| Channel::Email), contact.webhook_url.as_ref().map(|_| Channel::Webhook)];
    let mut recorded = 0;
    for channel in channels.into_iter().flatten() {
        let key = NoticeKey { endpoint_id: notice.endpoint_id.clone(), failing_since, threshold, channel };
        if store::record(pool, &key, &notice.tenant_id, &body).await? {
            recorded += 1;
        }
    }
    Ok(recorded)
}

/// Send recorded notices until shutdown.
pub async fn run<T: Transport>(pool: PgPool, directory: Directory, transport: Arc<T>, shutdown: CancellationToken) {
    loop {
        match store::take_due(&pool, LEASE, BATCH).await {
            Ok(due) => {
                let sends = due.into_iter().map(|n| send(&pool, &directory, &*transport, n));
                futures_util::future::join_all(sends).await;
            }
            Err(e) => tracing::warn!(error = %e, "operational notices: cannot read the outbox; retrying"),
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(POLL) => {}
        }
    }
}

async fn send<T: Transport>(pool: &PgPool, directory: &Directory, transport: &T, notice: DueNotice) {
    let result = attempt(directory, transport, &notice).await;
    let outcome = match result {
        Ok(()) => {
            tracing::info!(
                tenant = %notice.tenant_id,
                endpoint_id = %notice.key.endpoint_id,
                threshold = notice.key.threshold,
                channel = notice.key.channel.as_str(),
                "operational notice sent"
            );
            Sent::Delivered
        }
        Err(e @ Failure::Gone(_)) => {
            tracing::info!(endpoint_id = %notice.key.endpoint_id, channel = notice.key.channel.as_str(), error = %e, "operational notice dropped");
            Sent::GaveUp(e.to_string())
        }
        Err(e) if notice.attempts >= MAX_ATTEMPTS => {
            tracing::warn!(endpoint_id = %notice.key.endpoint_id, channel = notice.key.channel.as_str(), error = %e, "operational notice given up");
            Sent::GaveUp(e.to_string())
        }
        Err(e) => {
            tracing::info!(endpoint_id = %notice.key.endpoint_id, channel = notice.key.channel.as_str(), error = %e, "operational notice failed; trying again");
            let at = Utc::now() + chrono::Duration::from_std(backoff(notice.attempts)).unwrap_or_default();
            Sent::RetryAt(at, e.to_string())
        }
    };
    if let Err(e) = store::finish(pool, &notice.key, &outcome).await {
        // The lease ends and the notice is taken again.
        tracing::warn!(error = %e, "operational notices: cannot record a send");
    }
}

/// Why one try did not send a notice.
#[derive(Debug, thiserror::Error)]
enum Failure {
    /// Nowhere to send it any more (the tenant or its contact is gone):
    /// trying again cannot help.
    #[error("{0}")]
    Gone(&'static str),
    #[error(transparent)]
    Send(#[from] SendError),
}

/// One try: the contact is read now, so a changed or removed contact is
/// honoured by later tries.
async fn attempt<T: Transport>(directory: &Directory, transport: &T, due: &DueNotice) -> Result<(), Failure> {
    let gone = Failure::Gone;
    let tenant = TenantId::parse(&due.tenant_id).map_err(|_| gone("unknown tenant"))?;
    let tenant = directory.tenant(&tenant).ok_or_else(|| gone("the tenant no longer exists"))?;
    let contact = &tenant.contact;
    let secret = contact.secret.as_ref().ok_or_else(|| gone("the tenant has no operational contact now"))?;
    let msg_id = Notice::message_id(&due.key);
    let signed = Signed { msg_id: &msg_id, secret, body: due.body.as_bytes() };
    match due.key.channel {
        Channel::Webhook => {
            let url = contact.webhook_url.as_ref().ok_or_else(|| gone("the operational webhook URL was removed"))?;
            Ok(transport.post(url, signed).await?)
        }
        Channel::Email => {
            let to = contact.email.as_ref().ok_or_else(|| gone("the operational e-mail address was removed"))?;
            let notice: Notice =
                serde_json::from_str(&due.body).map_err(|_| gone("the stored notice is unreadable"))?;
            Ok(transport.mail(to, &notice.subject(), notice.text(), signed).await?)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pause_between_tries_doubles() {
        let pauses: Vec<u64> = (1..MAX_ATTEMPTS).map(|a| backoff(a).as_secs()).collect();
        assert_eq!(pauses, [2, 4, 8, 16]);
    }
}
