//! Service settings from `HOOKLINE_*` environment variables (or flags),
//! validated at start-up with errors that name the key.

use std::{net::SocketAddr, time::Duration};

use clap::Args;
use hookline_delivery::{
    DeliverySettings, RetrySchedule, guard::GuardSettings, mailer::Mailer, settings::parse_duration,
};
use hookline_domain::ssrf::AddressPolicy;

/// How a service authenticates gRPC callers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OperatorAuth {
    /// Bearer tokens: the operator token (or a former one during rotation) or
    /// a tenant API key.
    Token { current: String, previous: Vec<String> },
    /// Every caller is the operator; `why` names what allowed it.
    Open { why: &'static str },
}

impl OperatorAuth {
    /// Shorter tokens are guessable; 16 characters of base64 are 96 bits.
    pub const MIN_TOKEN_CHARS: usize = 16;
}

fn duration(s: &str) -> Result<Duration, String> {
    parse_duration(s)
}

#[derive(Debug, Clone, Args)]
pub struct ServiceArgs {
    /// NATS server with JetStream, or several servers of a cluster, comma
    /// separated (`nats://a:4222,nats://b:4222,nats://c:4222`); the client
    /// reconnects to any of them and to servers the cluster announces. A
    /// `user:password@` must be the same in every URL of the list.
    #[arg(long, env = "HOOKLINE_NATS_URL", default_value = "nats://127.0.0.1:4222")]
    pub nats_url: String,
    /// Replicas of every Hookline stream: 1, 3 or 5 (3 and 5 need a NATS
    /// cluster of at least that many nodes). Streams are created with it, and
    /// existing streams are changed to it at start. Unset: new streams get 1
    /// replica and existing streams keep theirs. Set the same on every service.
    #[arg(long, env = "HOOKLINE_STREAM_REPLICAS")]
    pub stream_replicas: Option<hookline_bus::StreamReplicas>,
    /// Postgres for projections; the database is created if missing.
    #[arg(long, env = "HOOKLINE_DATABASE_URL", default_value = "postgres://postgres@127.0.0.1:5432/hookline")]
    pub database_url: String,
    /// gRPC listen address.
    #[arg(long, env = "HOOKLINE_GRPC_ADDR", default_value = "127.0.0.1:50051")]
    pub grpc_addr: SocketAddr,
    /// HTTP listen address for /healthz and /readyz.
    #[arg(long, env = "HOOKLINE_HTTP_ADDR", default_value = "127.0.0.1:9464")]
    pub http_addr: SocketAddr,
    /// Subscriptions gRPC URL, used by delivery for `Resolve` (dev mode uses its own).
    #[arg(long, env = "HOOKLINE_SUBSCRIPTIONS_URL", default_value = "http://127.0.0.1:50051")]
    pub subscriptions_url: String,
    /// Delays before each attempt, comma separated; its length is the number of attempts.
    #[arg(long, env = "HOOKLINE_RETRY_SCHEDULE", default_value = "0s,5s,5m,30m,2h,5h,10h,14h,20h,24h")]
    pub retry_schedule: String,
    /// Timeout of one delivery attempt.
    #[arg(long, env = "HOOKLINE_REQUEST_TIMEOUT", default_value = "15s", value_parser = duration)]
    pub request_timeout: Duration,
    /// How long JetStream waits for an ack before handing a task to another worker.
    #[arg(long, env = "HOOKLINE_ACK_WAIT", default_value = "60s", value_parser = duration)]
    pub ack_wait: Duration,
    /// Delivery attempts in flight per process.
    #[arg(long, env = "HOOKLINE_DELIVERY_CONCURRENCY", default_value_t = 256)]
    pub delivery_concurrency: usize,
    /// Delivery attempts in flight per endpoint and process; a slow endpoint
    /// holds at most this many worker slots.
    #[arg(long, env = "HOOKLINE_ENDPOINT_CONCURRENCY", default_value_t = 10)]
    pub endpoint_concurrency: usize,
    /// Consecutive failed attempts that open an endpoint's circuit breaker.
    #[arg(long, env = "HOOKLINE_BREAKER_THRESHOLD", default_value_t = 5)]
    pub breaker_threshold: u32,
    /// How long an open breaker waits before letting one probe through.
    #[arg(long, env = "HOOKLINE_BREAKER_COOLDOWN", default_value = "30s", value_parser = duration)]
    pub breaker_cooldown: Duration,
    /// Non-public address ranges deliveries may reach anyway, comma separated
    /// CIDRs (e.g. `10.20.0.0/16,fd00::/8`). `hookline dev` allows everything.
    #[arg(long, env = "HOOKLINE_DELIVERY_ALLOW_CIDRS", default_value = "")]
    pub delivery_allow_cidrs: String,
    /// Nameservers that resolve endpoint host names, comma separated
    /// `ip[:port]` (port 53 by default; IPv6 as `[fd00::53]:53`), asked over
    /// UDP and TCP instead of the system resolver, e.g. a filtering resolver
    /// that does not know internal names. Used by the URL check when an
    /// endpoint is saved and by every delivery. Empty: the system resolver.
    #[arg(long, env = "HOOKLINE_DNS_SERVERS", default_value = "")]
    pub dns_servers: String,
    /// SMTP relay for e-mail endpoints: `smtp://[user:pass@]host:port` (add
    /// `?tls=required` for STARTTLS) or `smtps://...` for implicit TLS.
    #[arg(long, env = "HOOKLINE_SMTP_URL")]
    pub smtp_url: Option<String>,
    /// Sender of webhook e-mails.
    #[arg(long, env = "HOOKLINE_SMTP_FROM", default_value = "Hookline <hookline@localhost>")]
    pub smtp_from: String,
    /// Age after which deliveries are archived: payloads and raw requests are
    /// deleted (events leave HOOKLINE_EVENTS at the same age), log rows stay.
    #[arg(long, env = "HOOKLINE_ARCHIVE_AFTER", default_value = "60d", value_parser = duration)]
    pub archive_after: Duration,
    /// Endpoints whose every attempt failed for this long are disabled (with
    /// an `endpoint.disabled` event); re-enabling them resumes delivery.
    #[arg(long, env = "HOOKLINE_AUTO_DISABLE_AFTER", default_value = "5d", value_parser = duration)]
    pub auto_disable_after: Duration,
    /// How often endpoints are checked for that.
    #[arg(long, env = "HOOKLINE_AUTO_DISABLE_INTERVAL", default_value = "10m", value_parser = duration)]
    pub auto_disable_interval: Duration,
    /// gRPC authentication: calls must carry `authorization: Bearer <token>`
    /// with this operator token or a tenant API key. Services use it to call
    /// each other. At least 16 characters (`head -c32 /dev/urandom | base64`).
    /// Required by `ingest`, `subscriptions` and `delivery` unless
    /// HOOKLINE_ALLOW_UNAUTHENTICATED=true; `dev` runs without it.
    #[arg(long, env = "HOOKLINE_OPERATOR_TOKEN", hide_env_values = true)]
    pub operator_token: Option<String>,
    /// Former operator tokens, comma separated, still accepted while clients
    /// move to a new HOOKLINE_OPERATOR_TOKEN (rotation without downtime).
    #[arg(long, env = "HOOKLINE_OPERATOR_TOKEN_PREVIOUS", hide_env_values = true, default_value = "")]
    pub operator_token_previous: String,
    /// Run `ingest`, `subscriptions` or `delivery` without an operator token:
    /// every gRPC caller is then the operator. For closed test set-ups only;
    /// the service logs an error-level warning at start.
    #[arg(long, env = "HOOKLINE_ALLOW_UNAUTHENTICATED", default_value_t = false, action = clap::ArgAction::Set)]
    pub allow_unauthenticated: bool,
    /// Seals signing secrets and auth header values in the config stream:
    /// base64 of 32 random bytes (`head -c32 /dev/urandom | base64`). Unset:
    /// secrets are stored in clear (development only).
    #[arg(long, env = "HOOKLINE_MASTER_KEY", hide_env_values = true)]
    pub master_key: Option<String>,
    /// Former master keys, comma separated, to open secrets sealed before a
    /// rotation. The config stream is never rewritten, so keep them as long
    /// as it holds events sealed with them; `hookline admin reseal` puts the
    /// current secrets under the new key.
    #[arg(long, env = "HOOKLINE_MASTER_KEY_PREVIOUS", hide_env_values = true, default_value = "")]
    pub master_key_previous: String,
    /// Events per second one tenant may publish (per ingest process); over
    /// it, gRPC answers RESOURCE_EXHAUSTED and NATS intake events wait in
    /// their stream. 0 turns the limit off.
    #[arg(long, env = "HOOKLINE_TENANT_RATE", default_value_t = 1000.0)]
    pub tenant_rate: f64,
    /// Events a tenant may publish at once above the rate.
    #[arg(long, env = "HOOKLINE_TENANT_BURST", default_value_t = 2000.0)]
    pub tenant_burst: f64,
    /// PEM certificate chain: with HOOKLINE_TLS_KEY, the gRPC and HTTP
    /// listeners serve TLS only (rustls; HTTP/2 by ALPN for gRPC).
    #[arg(long, env = "HOOKLINE_TLS_CERT")]
    pub tls_cert: Option<std::path::PathBuf>,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1) for HOOKLINE_TLS_CERT.
    #[arg(long, env = "HOOKLINE_TLS_KEY")]
    pub tls_key: Option<std::path::PathBuf>,
    /// PEM CA certificates trusted, besides the public web roots, when a
    /// service calls another over `https://` (delivery calling subscriptions)
    /// and by the SMTP relay's TLS (HOOKLINE_SMTP_URL).
    #[arg(long, env = "HOOKLINE_TLS_CA")]
    pub tls_ca: Option<std::path::PathBuf>,
    /// PEM CA certificates for mutual TLS: with it, the gRPC listener takes
    /// only clients that present a certificate signed by one of them (the
    /// CLI with --tls-cert/--tls-key; the other services, which present their
    /// HOOKLINE_TLS_CERT, so it must allow client authentication). Needs
    /// HOOKLINE_TLS_CERT. The HTTP port (health, metrics) asks for none.
    #[arg(long, env = "HOOKLINE_TLS_CLIENT_CA")]
    pub tls_client_ca: Option<std::path::PathBuf>,
    /// When set, `GET /metrics` wants `Authorization: Bearer <token>`
    /// (Prometheus: `authorization: {credentials: ...}`). `/healthz` and
    /// `/readyz` stay open for orchestrators' probes.
    #[arg(long, env = "HOOKLINE_METRICS_TOKEN", hide_env_values = true)]
    pub metrics_token: Option<String>,
    /// How often the archive janitor runs.
    #[arg(long, env = "HOOKLINE_ARCHIVE_INTERVAL", default_value = "1h", value_parser = duration)]
    pub archive_interval: Duration,
}

impl ServiceArgs {
    /// How gRPC callers are authenticated. Outside dev mode, a missing
    /// operator token is an error unless HOOKLINE_ALLOW_UNAUTHENTICATED says
    /// otherwise: an open API by accident is worse than a refused start.
    pub fn operator_auth(&self, dev: bool) -> Result<OperatorAuth, String> {
        let previous: Vec<String> = self
            .operator_token_previous
            .split(',')
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .map(String::from)
            .collect();
        let token = self.operator_token.as_deref().map(str::trim).filter(|t| !t.is_empty());
        match token {
            Some(t) if t.chars().count() < OperatorAuth::MIN_TOKEN_CHARS => Err(format!(
                "HOOKLINE_OPERATOR_TOKEN: must be at least {} characters (e.g. `head -c32 /dev/urandom | base64`)",
                OperatorAuth::MIN_TOKEN_CHARS
            )),
            Some(t) => Ok(OperatorAuth::Token { current: t.to_owned(), previous }),
            None if !previous.is_empty() => {
                Err("HOOKLINE_OPERATOR_TOKEN_PREVIOUS: needs HOOKLINE_OPERATOR_TOKEN (the token rotated to)".into())
            }
            None if dev => Ok(OperatorAuth::Open { why: "dev mode" }),
            None if self.allow_unauthenticated => Ok(OperatorAuth::Open { why: "HOOKLINE_ALLOW_UNAUTHENTICATED=true" }),
            None => Err("HOOKLINE_OPERATOR_TOKEN: is required outside `hookline dev` (every gRPC caller would \
                 otherwise be the operator); set it to a long random string (`head -c32 /dev/urandom | base64`), \
                 or set HOOKLINE_ALLOW_UNAUTHENTICATED=true to run without authentication"
                .into()),
        }
    }

    /// Install the sealing keyring, if a master key is set.
    pub fn install_keyring(&self) -> Result<(), String> {
        let Some(current) = self.master_key.as_deref() else { return Ok(()) };
        let previous: Vec<&str> = self.master_key_previous.split(',').filter(|k| !k.trim().is_empty()).collect();
        let ring = hookline_domain::seal::Keyring::parse(current, &previous, "HOOKLINE_MASTER_KEY")?;
        hookline_domain::seal::install(ring);
        Ok(())
    }

    pub fn tenant_rate(&self) -> Result<hookline_ingest::limit::RateSettings, String> {
        if !self.tenant_rate.is_finite() || self.tenant_rate < 0.0 {
            return Err("HOOKLINE_TENANT_RATE: must be a non-negative number of events per second".into());
        }
        if self.tenant_rate > 0.0 && (self.tenant_burst.is_nan() || self.tenant_burst < 1.0) {
            return Err("HOOKLINE_TENANT_BURST: must be at least 1".into());
        }
        Ok(hookline_ingest::limit::RateSettings { per_second: self.tenant_rate, burst: self.tenant_burst })
    }

    /// The listeners' certificate and key, when both are set.
    pub fn tls_identity(&self) -> Result<Option<crate::tls::Identity>, String> {
        let client_ca = self.tls_client_ca.as_deref().map(|p| crate::tls::read_ca(p, "HOOKLINE_TLS_CLIENT_CA"));
        match (&self.tls_cert, &self.tls_key) {
            (None, None) if client_ca.is_some() => {
                Err("HOOKLINE_TLS_CLIENT_CA: needs HOOKLINE_TLS_CERT and HOOKLINE_TLS_KEY (mutual TLS is TLS first)"
                    .into())
            }
            (None, None) => Ok(None),
            (Some(cert), Some(key)) => {
                let identity = crate::tls::Identity::load(cert, key)?;
                Ok(Some(match client_ca.transpose()? {
                    Some(ca) => identity.require_clients(ca),
                    None => identity,
                }))
            }
            (Some(_), None) => Err("HOOKLINE_TLS_KEY: must be set together with HOOKLINE_TLS_CERT".into()),
            (None, Some(_)) => Err("HOOKLINE_TLS_CERT: must be set together with HOOKLINE_TLS_KEY".into()),
        }
    }

    pub fn tls_ca_pem(&self) -> Result<Option<Vec<u8>>, String> {
        self.tls_ca.as_deref().map(|p| crate::tls::read_ca(p, "HOOKLINE_TLS_CA")).transpose()
    }

    /// Where deliveries may go: everywhere in dev mode, else public
    /// addresses plus HOOKLINE_DELIVERY_ALLOW_CIDRS.
    pub fn address_policy(&self, dev: bool) -> Result<AddressPolicy, String> {
        let allow = AddressPolicy::parse_allow_list(&self.delivery_allow_cidrs)
            .map_err(|e| format!("HOOKLINE_DELIVERY_ALLOW_CIDRS: {e}"))?;
        Ok(AddressPolicy { allow_all: dev, allow })
    }

    /// Where endpoint host names are resolved: HOOKLINE_DNS_SERVERS, else
    /// the system resolver.
    pub fn dns_resolver(&self) -> Result<hookline_dns::Resolver, String> {
        hookline_dns::Resolver::from_setting(&self.dns_servers).map_err(|e| format!("HOOKLINE_DNS_SERVERS: {e}"))
    }

    /// Cross-field checks clap cannot express. `identity` is the listeners'
    /// certificate, which delivery also presents when it calls subscriptions.
    pub fn delivery(&self, dev: bool, identity: Option<&crate::tls::Identity>) -> Result<DeliverySettings, String> {
        let retry_schedule: RetrySchedule =
            self.retry_schedule.parse().map_err(|e| format!("HOOKLINE_RETRY_SCHEDULE: {e}"))?;
        if self.request_timeout.is_zero() || self.request_timeout > Duration::from_secs(300) {
            return Err("HOOKLINE_REQUEST_TIMEOUT: must be between 1ms and 300s".into());
        }
        // An attempt may queue 0.5 s for a slot before its request starts.
        if self.ack_wait < self.request_timeout + Duration::from_secs(1) {
            return Err(format!(
                "HOOKLINE_ACK_WAIT: must be at least 1s longer than HOOKLINE_REQUEST_TIMEOUT ({:?}), or attempts still queued or running are handed out twice",
                self.request_timeout
            ));
        }
        if self.archive_after < Duration::from_secs(1) {
            return Err("HOOKLINE_ARCHIVE_AFTER: must be at least 1s".into());
        }
        if self.auto_disable_after < Duration::from_secs(1) || self.auto_disable_interval < Duration::from_millis(100) {
            return Err(
                "HOOKLINE_AUTO_DISABLE_AFTER / HOOKLINE_AUTO_DISABLE_INTERVAL: must be at least 1s / 100ms".into()
            );
        }
        if self.archive_interval < Duration::from_millis(100) {
            return Err("HOOKLINE_ARCHIVE_INTERVAL: must be at least 100ms".into());
        }
        if !(1..=10_000).contains(&self.delivery_concurrency) {
            return Err("HOOKLINE_DELIVERY_CONCURRENCY: must be between 1 and 10000".into());
        }
        if !(1..=self.delivery_concurrency).contains(&self.endpoint_concurrency) {
            return Err("HOOKLINE_ENDPOINT_CONCURRENCY: must be between 1 and HOOKLINE_DELIVERY_CONCURRENCY".into());
        }
        if self.breaker_threshold == 0 {
            return Err("HOOKLINE_BREAKER_THRESHOLD: must be at least 1".into());
        }
        let tls_ca = self.tls_ca_pem()?;
        Ok(DeliverySettings {
            retry_schedule,
            request_timeout: self.request_timeout,
            ack_wait: self.ack_wait,
            concurrency: self.delivery_concurrency,
            archive_after: self.archive_after,
            subscriptions_url: self.subscriptions_url.clone(),
            operator_token: self.operator_token.clone(),
            guard: GuardSettings {
                per_endpoint: self.endpoint_concurrency,
                breaker_threshold: self.breaker_threshold,
                breaker_cooldown: self.breaker_cooldown,
            },
            address_policy: self.address_policy(dev)?,
            dns: self.dns_resolver()?,
            mailer: self
                .smtp_url
                .as_deref()
                .map(|url| Mailer::new(url, &self.smtp_from, self.request_timeout, tls_ca.as_deref()))
                .transpose()?,
            tls_ca,
            tls_identity: identity.map(crate::tls::Identity::pem),
        })
    }
}
