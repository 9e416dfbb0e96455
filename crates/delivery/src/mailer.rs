//! E-mail endpoints: the event goes to an address through the SMTP relay in
//! `HOOKLINE_SMTP_URL` (`smtp://` plain or STARTTLS with `?tls=required`,
//! `smtps://` implicit TLS; `user:password@` for AUTH). The JSON, in the
//! endpoint's layout, is the body and a `.json` attachment.

use std::time::{Duration, Instant};

use hookline_domain::{delivery::ErrorKind, endpoint::EndpointConfig, events::StoredEvent, signing};
use lettre::{
    AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor,
    message::{
        Attachment, Mailbox, MultiPart, SinglePart,
        header::{ContentType, HeaderName, HeaderValue},
    },
};

use crate::sender::AttemptResult;

/// What is wrong with `HOOKLINE_SMTP_URL`, or with the CA certificates its
/// TLS trusts.
#[derive(Debug, thiserror::Error)]
pub enum SmtpUrlError {
    #[error(transparent)]
    Transport(lettre::transport::smtp::Error),
    #[error(transparent)]
    Parse(url::ParseError),
    #[error("no host")]
    NoHost,
    #[error("HOOKLINE_TLS_CA: {0}")]
    Ca(#[source] lettre::transport::smtp::Error),
    #[error(transparent)]
    Tls(lettre::transport::smtp::Error),
}

/// Why the SMTP settings do not make a [`Mailer`]; the message names the setting.
#[derive(Debug, thiserror::Error)]
pub enum MailerError {
    #[error("HOOKLINE_SMTP_URL: {0} (expected smtp://[user:pass@]host:port[?tls=required] or smtps://...)")]
    Url(#[source] SmtpUrlError),
    #[error("HOOKLINE_SMTP_FROM: {0}")]
    From(#[source] lettre::address::AddressError),
}

/// The TLS mode the URL asks for (as lettre reads it), trusting `pem` too.
fn tls_with_ca(url: &str, pem: &[u8]) -> Result<lettre::transport::smtp::client::Tls, SmtpUrlError> {
    use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
    let parsed = url::Url::parse(url).map_err(SmtpUrlError::Parse)?;
    let host = parsed.host_str().ok_or(SmtpUrlError::NoHost)?.to_owned();
    let params = || -> Result<TlsParameters, SmtpUrlError> {
        TlsParameters::builder(host.clone())
            .add_root_certificate(Certificate::from_pem(pem).map_err(SmtpUrlError::Ca)?)
            .build_rustls()
            .map_err(SmtpUrlError::Tls)
    };
    let mode = parsed.query_pairs().find(|(k, _)| k == "tls").map(|(_, v)| v.into_owned());
    Ok(match (parsed.scheme(), mode.as_deref()) {
        ("smtps", _) => Tls::Wrapper(params()?),
        (_, Some("required")) => Tls::Required(params()?),
        (_, Some("opportunistic")) => Tls::Opportunistic(params()?),
        _ => Tls::None,
    })
}

#[derive(Clone)]
pub struct Mailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
}

impl Mailer {
    /// `Err` names the setting and what is wrong with it. `extra_ca_pem`
    /// (HOOKLINE_TLS_CA) is trusted besides the public roots when the URL
    /// asks for TLS, for a relay behind a private CA.
    pub fn new(url: &str, from: &str, timeout: Duration, extra_ca_pem: Option<&[u8]>) -> Result<Self, MailerError> {
        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::from_url(url)
            .map_err(|e| MailerError::Url(SmtpUrlError::Transport(e)))?;
        if let Some(pem) = extra_ca_pem {
            builder = builder.tls(tls_with_ca(url, pem).map_err(MailerError::Url)?);
        }
        let transport = builder.timeout(Some(timeout)).build();
        let from = from.parse().map_err(MailerError::From)?;
        Ok(Self { transport, from })
    }

    /// Send one attempt; the result reads like an HTTP attempt's, with the
    /// SMTP reply code in `status_code` (250 = accepted).
    pub async fn send(&self, endpoint: &EndpointConfig, event: &StoredEvent, body: Vec<u8>) -> AttemptResult {
        let to = endpoint.email.as_ref().expect("e-mail endpoint").as_str();
        let timestamp = chrono::Utc::now().timestamp();
        let msg_id = event.id.as_str();
        let signature =
            signing::signature_header(endpoint.signing_secrets(chrono::Utc::now()), msg_id, timestamp, &body);
        let tag = if event.test { "Hookline test" } else { "Hookline" };
        let subject = format!("[{tag}] {} for tenant {}", event.event_type, event.tenant_id);
        let mut headers = vec![
            ("to".to_owned(), to.to_owned()),
            ("subject".to_owned(), subject.clone()),
            ("webhook-id".to_owned(), msg_id.to_owned()),
            ("webhook-timestamp".to_owned(), timestamp.to_string()),
            ("webhook-signature".to_owned(), hookline_domain::endpoint::Secret::MASK.to_owned()),
        ];
        if event.test {
            headers.push(("hookline-test".to_owned(), "true".to_owned()));
        }
        let refused = |why: String| AttemptResult {
            request_headers: headers.clone(),
            ..AttemptResult::failed(ErrorKind::Smtp, why)
        };
        let Ok(to_box) = to.parse::<Mailbox>() else {
            return refused(format!("`{to}` is not a deliverable address"));
        };
        let text = String::from_utf8_lossy(&body).into_owned();
        let signed = SignedMail { msg_id, timestamp, signature, test: event.test };
        let message = match self.message(to_box, subject, &signed, text, body) {
            Ok(m) => m,
            Err(e) => return refused(format!("cannot build the e-mail: {e}")),
        };
        let started = Instant::now();
        let sent = self.transport.send(message).await;
        let mut result = match sent {
            Ok(response) => AttemptResult {
                status_code: Some(u16::from(response.code())),
                ..AttemptResult::failed(ErrorKind::Smtp, String::new())
            }
            .accepted(),
            Err(e) => {
                let kind = if e.is_timeout() {
                    ErrorKind::Timeout
                } else if e.is_permanent() || e.is_transient() {
                    ErrorKind::Smtp
                } else if e.to_string().to_ascii_lowercase().contains("tls") {
                    ErrorKind::Tls
                } else {
                    ErrorKind::Connection
                };
                AttemptResult { status_code: e.status().map(u16::from), ..AttemptResult::failed(kind, e.to_string()) }
            }
        };
        result.duration = started.elapsed();
        result.request_headers = headers;
        result
    }

    /// A message with the Standard Webhooks headers, `text` as its body and
    /// `json` attached as `<msg_id>.json`.
    fn message(
        &self,
        to: Mailbox,
        subject: String,
        signed: &SignedMail<'_>,
        text: String,
        json: Vec<u8>,
    ) -> Result<Message, lettre::error::Error> {
        let raw = |name: &str, value: String| {
            HeaderValue::new(HeaderName::new_from_ascii(name.to_owned()).expect("static header names"), value)
        };
        let SignedMail { msg_id, timestamp, .. } = *signed;
        let mut message = Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(subject)
            .message_id(Some(format!("<{msg_id}.{timestamp}@hookline>")))
            .raw_header(raw("Webhook-Id", msg_id.to_owned()))
            .raw_header(raw("Webhook-Timestamp", timestamp.to_string()))
            .raw_header(raw("Webhook-Signature", signed.signature.clone()));
        if signed.test {
            message = message.raw_header(raw("Hookline-Test", "true".to_owned()));
        }
        message.multipart(
            MultiPart::mixed().singlepart(SinglePart::builder().header(ContentType::TEXT_PLAIN).body(text)).singlepart(
                Attachment::new(format!("{msg_id}.json"))
                    .body(json, ContentType::parse("application/json").expect("valid content type")),
            ),
        )
    }

    /// Send an operational notice: `text` for a person, the notice's JSON
    /// attached, signed with `secret` as webhooks are. `Err` is the relay's
    /// refusal or the transport's failure.
    pub async fn send_notice(
        &self,
        to: &str,
        subject: String,
        text: String,
        msg_id: &str,
        secret: &hookline_domain::endpoint::SigningSecret,
        json: Vec<u8>,
    ) -> Result<(), (ErrorKind, String)> {
        let to: Mailbox = to.parse().map_err(|_| (ErrorKind::Smtp, format!("`{to}` is not a deliverable address")))?;
        let timestamp = chrono::Utc::now().timestamp();
        let signature = signing::signature_header([secret], msg_id, timestamp, &json);
        let signed = SignedMail { msg_id, timestamp, signature, test: false };
        let message = self
            .message(to, subject, &signed, text, json)
            .map_err(|e| (ErrorKind::Smtp, format!("cannot build the e-mail: {e}")))?;
        match self.transport.send(message).await {
            Ok(_) => Ok(()),
            Err(e) => Err((if e.is_timeout() { ErrorKind::Timeout } else { ErrorKind::Smtp }, e.to_string())),
        }
    }
}

/// What a message is signed as.
struct SignedMail<'a> {
    msg_id: &'a str,
    timestamp: i64,
    /// The `webhook-signature` value.
    signature: String,
    /// Adds `Hookline-Test: true`.
    test: bool,
}
