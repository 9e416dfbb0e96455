//! Service settings from `HOOKLINE_*` environment variables (or flags),
//! parsed into typed values by clap at start-up, with errors that name the key.
//!
//! The settings come in groups, one clap `Args` struct each, and every role
//! flattens only the groups it uses, so `hookline <role> --help` lists
//! exactly what that role reads, and a flag the role would ignore is
//! refused. Environment variables of other roles' settings are not args of
//! the role, so clap never reads them: one env file can serve every role.
//!
//! | group              | dev | ingest | subscriptions | delivery |
//! |--------------------|-----|--------|---------------|----------|
//! | [`CommonArgs`]     |  x  |   x    |       x       |    x     |
//! | [`IngestArgs`]     |  x  |   x    |               |          |
//! | [`AddressArgs`]    |  x  |        |       x       |    x     |
//! | [`ConfigHistoryArgs`] | x |       |       x       |    x     |
//! | [`DeliveryArgs`]   |  x  |        |               |    x     |
//! | [`ConsoleArgs`]    |  x  |        |               |          |
//!
//! `hookline console` is a gRPC client, not a service: it takes
//! [`ConsoleArgs`] and the client settings of [`ConsoleRole`] only.
//!
//! Values a single clap parser can check (durations, CIDR lists, nameserver
//! lists, the retry schedule) are parsed here; checks that involve several
//! settings (ack wait against request timeout, say) stay in the methods
//! below and run before the service starts.

use std::{net::SocketAddr, str::FromStr, time::Duration};

use clap::Args;
use hookline_delivery::{
    DeliverySettings, RetrySchedule,
    guard::GuardSettings,
    mailer::{Mailer, MailerError},
    settings::{DurationError, ScheduleError, parse_duration},
};
use hookline_dns::NotANameserver;
use hookline_domain::{
    seal::KeyError,
    ssrf::{AddressPolicy, Cidr, CidrError},
};

use crate::tls::TlsFileError;

/// A setting, or a combination of settings, that the service refuses to
/// start with. The message names the setting (`HOOKLINE_*`) and the rule.
#[derive(Debug, thiserror::Error)]
pub enum SettingError {
    #[error("HOOKLINE_RETRY_SCHEDULE: {0}")]
    RetrySchedule(#[source] ScheduleError),
    #[error("HOOKLINE_DELIVERY_ALLOW_CIDRS: {0}")]
    AllowCidrs(#[source] CidrError),
    #[error("HOOKLINE_DNS_SERVERS: {0}")]
    DnsServers(#[source] NotANameserver),
    #[error(
        "HOOKLINE_OPERATOR_TOKEN: must be at least {min} characters (e.g. `head -c32 /dev/urandom | base64`)",
        min = OperatorAuth::MIN_TOKEN_CHARS
    )]
    TokenTooShort,
    #[error("HOOKLINE_OPERATOR_TOKEN_PREVIOUS: needs HOOKLINE_OPERATOR_TOKEN (the token rotated to)")]
    PreviousTokenAlone,
    #[error(
        "HOOKLINE_OPERATOR_TOKEN: is required outside `hookline dev` (every gRPC caller would \
         otherwise be the operator); set it to a long random string (`head -c32 /dev/urandom | base64`), \
         or set HOOKLINE_ALLOW_UNAUTHENTICATED=true to run without authentication"
    )]
    TokenRequired,
    #[error(
        "HOOKLINE_OPERATOR_TOKEN: is required by the console: operators sign in with it and the console \
         calls the services with it (only `hookline dev` runs its console without one)"
    )]
    ConsoleTokenRequired,
    #[error("HOOKLINE_CONSOLE_FRAME_ANCESTORS: {0}")]
    FrameAncestors(#[source] hookline_console::NotAnOrigin),
    #[error("HOOKLINE_CONSOLE_PUBLIC_URL: `{0}` must start with https:// or http://")]
    PublicUrl(String),
    #[error(transparent)]
    MasterKey(#[from] KeyError),
    #[error(transparent)]
    TlsFile(#[from] TlsFileError),
    #[error("HOOKLINE_TLS_CLIENT_CA: needs HOOKLINE_TLS_CERT and HOOKLINE_TLS_KEY (mutual TLS is TLS first)")]
    ClientCaWithoutTls,
    #[error("HOOKLINE_TLS_KEY: must be set together with HOOKLINE_TLS_CERT")]
    CertWithoutKey,
    #[error("HOOKLINE_TLS_CERT: must be set together with HOOKLINE_TLS_KEY")]
    KeyWithoutCert,
    #[error("HOOKLINE_TENANT_RATE: must be a non-negative number of events per second")]
    TenantRate,
    #[error("HOOKLINE_TENANT_BURST: must be at least 1")]
    TenantBurst,
    #[error("HOOKLINE_REQUEST_TIMEOUT: must be between 1ms and 300s")]
    RequestTimeout,
    #[error(
        "HOOKLINE_ACK_WAIT: must be at least 1s longer than HOOKLINE_REQUEST_TIMEOUT ({request_timeout:?}), or attempts still queued or running are handed out twice"
    )]
    AckWait { request_timeout: Duration },
    #[error(
        "HOOKLINE_RETRY_STORE_AFTER: must be at least 1s (a retry stored sooner could land in a second the retry mover has already passed)"
    )]
    RetryStoreAfter,
    #[error("HOOKLINE_ARCHIVE_AFTER: must be at least 1s")]
    ArchiveAfter,
    #[error("HOOKLINE_AUTO_DISABLE_AFTER / HOOKLINE_AUTO_DISABLE_INTERVAL: must be at least 1s / 100ms")]
    AutoDisable,
    #[error("HOOKLINE_ARCHIVE_INTERVAL: must be at least 100ms")]
    ArchiveInterval,
    #[error("HOOKLINE_DELIVERY_CONCURRENCY: must be between 1 and 10000")]
    DeliveryConcurrency,
    #[error("HOOKLINE_ENDPOINT_CONCURRENCY: must be between 1 and HOOKLINE_DELIVERY_CONCURRENCY")]
    EndpointConcurrency,
    #[error("HOOKLINE_BREAKER_THRESHOLD: must be at least 1")]
    BreakerThreshold,
    #[error("HOOKLINE_BREAKER_FIRST_COOLDOWN: must be at least 10ms")]
    BreakerFirstCooldown,
    #[error(transparent)]
    Mailer(#[from] MailerError),
}

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

fn duration(s: &str) -> Result<Duration, DurationError> {
    parse_duration(s)
}

/// The parsers below name their key in the message, as the checks that run
/// later do, so the rule reads the same whichever layer set the value.
fn retry_schedule(s: &str) -> Result<RetrySchedule, SettingError> {
    s.parse().map_err(SettingError::RetrySchedule)
}

fn allow_cidrs(s: &str) -> Result<CidrList, SettingError> {
    s.parse().map_err(SettingError::AllowCidrs)
}

fn dns_servers(s: &str) -> Result<DnsServers, SettingError> {
    s.parse().map_err(SettingError::DnsServers)
}

/// A comma-separated list of non-empty, trimmed entries (former tokens or
/// keys); empty entries are skipped, so `""` is the empty list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CommaList(pub Vec<String>);

impl FromStr for CommaList {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Self(s.split(',').map(str::trim).filter(|e| !e.is_empty()).map(String::from).collect()))
    }
}

/// HOOKLINE_DELIVERY_ALLOW_CIDRS: comma-separated CIDRs, `""` for none.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CidrList(pub Vec<Cidr>);

impl FromStr for CidrList {
    type Err = CidrError;
    fn from_str(s: &str) -> Result<Self, CidrError> {
        AddressPolicy::parse_allow_list(s).map(Self)
    }
}

/// HOOKLINE_DNS_SERVERS: comma-separated `ip[:port]`, `""` for the system
/// resolver. Kept as addresses; the resolver is built when the service starts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DnsServers(pub Vec<SocketAddr>);

impl FromStr for DnsServers {
    type Err = NotANameserver;
    fn from_str(s: &str) -> Result<Self, NotANameserver> {
        hookline_dns::parse_servers(s).map(Self)
    }
}

/// Settings every service role reads: NATS and streams, listeners, TLS,
/// authentication, sealing keys, metrics, and the archive age that new
/// streams are created with.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Settings of every service")]
pub struct CommonArgs {
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
    /// gRPC listen address. Port 0 lets the system pick a free port; the
    /// log's `gRPC listening on <address>` line names it.
    #[arg(long, env = "HOOKLINE_GRPC_ADDR", default_value = "127.0.0.1:50051")]
    pub grpc_addr: SocketAddr,
    /// HTTP listen address for /healthz, /readyz and /metrics. Port 0 lets
    /// the system pick a free port; the log's `HTTP listening on <address>`
    /// line names it.
    #[arg(long, env = "HOOKLINE_HTTP_ADDR", default_value = "127.0.0.1:9464")]
    pub http_addr: SocketAddr,
    /// Age after which deliveries are archived: payloads and raw requests are
    /// deleted (events leave HOOKLINE_EVENTS at the same age), log rows stay.
    /// Every service creates HOOKLINE_EVENTS with it; set the same everywhere.
    #[arg(long, env = "HOOKLINE_ARCHIVE_AFTER", default_value = "60d", value_parser = duration)]
    pub archive_after: Duration,
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
    pub operator_token_previous: CommaList,
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
    pub master_key_previous: CommaList,
    /// PEM certificate chain: with HOOKLINE_TLS_KEY, the gRPC and HTTP
    /// listeners serve TLS only (rustls; HTTP/2 by ALPN for gRPC).
    #[arg(long, env = "HOOKLINE_TLS_CERT")]
    pub tls_cert: Option<std::path::PathBuf>,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1) for HOOKLINE_TLS_CERT.
    #[arg(long, env = "HOOKLINE_TLS_KEY")]
    pub tls_key: Option<std::path::PathBuf>,
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
}

/// How the roles that write config events (subscriptions for the API,
/// delivery when it disables an endpoint) keep the config stream short.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Config history settings (subscriptions, delivery)")]
pub struct ConfigHistoryArgs {
    /// Compact a tenant's config history once a change leaves it with this
    /// many events since its last snapshot: one `tenant.snapshot` event
    /// replaces the events before it, which are purged from HOOKLINE_CONFIG,
    /// so start-up does not slow down as history grows. Subscriptions also
    /// compacts due tenants every 10 minutes. 0: only `hookline admin
    /// compact-config` compacts.
    #[arg(long, env = "HOOKLINE_CONFIG_SNAPSHOT_AFTER", default_value_t = hookline_tenants::commands::DEFAULT_SNAPSHOT_AFTER)]
    pub config_snapshot_after: u64,
}

/// Where endpoint URLs may point: subscriptions checks a URL when an
/// endpoint is saved, delivery at every attempt, with the same policy.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Endpoint address settings (subscriptions, delivery)")]
pub struct AddressArgs {
    /// Non-public address ranges deliveries may reach anyway, comma separated
    /// CIDRs (e.g. `10.20.0.0/16,fd00::/8`). `hookline dev` allows everything.
    #[arg(long, env = "HOOKLINE_DELIVERY_ALLOW_CIDRS", default_value = "", value_parser = allow_cidrs)]
    pub delivery_allow_cidrs: CidrList,
    /// Nameservers that resolve endpoint host names, comma separated
    /// `ip[:port]` (port 53 by default; IPv6 as `[fd00::53]:53`), asked over
    /// UDP and TCP instead of the system resolver, e.g. a filtering resolver
    /// that does not know internal names. Used by the URL check when an
    /// endpoint is saved and by every delivery. Empty: the system resolver.
    #[arg(long, env = "HOOKLINE_DNS_SERVERS", default_value = "", value_parser = dns_servers)]
    pub dns_servers: DnsServers,
}

/// The ingest service's per-tenant rate limit.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Ingest settings")]
pub struct IngestArgs {
    /// Events per second one tenant may publish (per ingest process); over
    /// it, gRPC answers RESOURCE_EXHAUSTED and NATS intake events wait in
    /// their stream. 0 turns the limit off.
    #[arg(long, env = "HOOKLINE_TENANT_RATE", default_value_t = 1000.0)]
    pub tenant_rate: f64,
    /// Events a tenant may publish at once above the rate; a PublishBatch
    /// with more events of one tenant is refused (INVALID_ARGUMENT).
    #[arg(long, env = "HOOKLINE_TENANT_BURST", default_value_t = 2000.0)]
    pub tenant_burst: f64,
}

/// The delivery service: Postgres, attempts, retries, isolation, e-mail,
/// archiving and auto-disable.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Delivery settings")]
pub struct DeliveryArgs {
    /// Postgres for projections; the database is created if missing.
    #[arg(long, env = "HOOKLINE_DATABASE_URL", default_value = "postgres://postgres@127.0.0.1:5432/hookline")]
    pub database_url: String,
    /// Subscriptions gRPC URL, used by delivery for `Resolve` (dev mode uses its own).
    #[arg(long, env = "HOOKLINE_SUBSCRIPTIONS_URL", default_value = "http://127.0.0.1:50051")]
    pub subscriptions_url: String,
    /// Delays before each attempt, comma separated; its length is the number of attempts.
    #[arg(long, env = "HOOKLINE_RETRY_SCHEDULE", default_value = "0s,5s,5m,30m,2h,5h,10h,14h,20h,24h", value_parser = retry_schedule)]
    pub retry_schedule: RetrySchedule,
    /// A retry due at least this far ahead waits in the retry store
    /// (HOOKLINE_RETRY) until its second has passed, holding no slot on the
    /// workers' consumer; one due sooner waits in HOOKLINE_DISPATCH. The
    /// delivery processes' clocks must agree to well within it.
    #[arg(long, env = "HOOKLINE_RETRY_STORE_AFTER", default_value = "30s", value_parser = duration)]
    pub retry_store_after: Duration,
    /// Timeout of one delivery attempt.
    #[arg(long, env = "HOOKLINE_REQUEST_TIMEOUT", default_value = "15s", value_parser = duration)]
    pub request_timeout: Duration,
    /// How long JetStream waits for an ack before handing a task to another worker.
    /// Keep it under 2 min: an event fanned out again later than
    /// HOOKLINE_DISPATCH's 3 min duplicate window is a second attempt (same
    /// webhook-id) rather than a task dropped as a duplicate.
    #[arg(long, env = "HOOKLINE_ACK_WAIT", default_value = "60s", value_parser = duration)]
    pub ack_wait: Duration,
    /// Delivery attempts in flight per process (also the events fan-out
    /// handles at once, at least 128, and the parked tasks recovering
    /// endpoints' drains hold at once); 1,024 lets receivers that answer in
    /// 100 ms take over 5,000 deliveries/s. Endpoints whose last attempt
    /// timed out have an eighth as many of their own besides.
    #[arg(long, env = "HOOKLINE_DELIVERY_CONCURRENCY", default_value_t = 1024)]
    pub delivery_concurrency: usize,
    /// Delivery attempts in flight per endpoint and process; a slow endpoint
    /// holds at most this many worker slots.
    #[arg(long, env = "HOOKLINE_ENDPOINT_CONCURRENCY", default_value_t = 10)]
    pub endpoint_concurrency: usize,
    /// Consecutive failed attempts that open an endpoint's circuit breaker.
    #[arg(long, env = "HOOKLINE_BREAKER_THRESHOLD", default_value_t = 5)]
    pub breaker_threshold: u32,
    /// How long an open breaker waits before letting one probe through, at
    /// most: the wait starts at HOOKLINE_BREAKER_FIRST_COOLDOWN and doubles
    /// with each failed probe up to this.
    #[arg(long, env = "HOOKLINE_BREAKER_COOLDOWN", default_value = "30s", value_parser = duration)]
    pub breaker_cooldown: Duration,
    /// How long a breaker that just opened waits before its first probe, so
    /// a receiver that was down briefly is found back (and its parked tasks
    /// delivered) within about this; capped at HOOKLINE_BREAKER_COOLDOWN.
    #[arg(long, env = "HOOKLINE_BREAKER_FIRST_COOLDOWN", default_value = "1s", value_parser = duration)]
    pub breaker_first_cooldown: Duration,
    /// SMTP relay for e-mail endpoints: `smtp://[user:pass@]host:port` (add
    /// `?tls=required` for STARTTLS) or `smtps://...` for implicit TLS.
    #[arg(long, env = "HOOKLINE_SMTP_URL")]
    pub smtp_url: Option<String>,
    /// Sender of webhook e-mails.
    #[arg(long, env = "HOOKLINE_SMTP_FROM", default_value = "Hookline <hookline@localhost>")]
    pub smtp_from: String,
    /// PEM CA certificates trusted, besides the public web roots, when a
    /// service calls another over `https://` (delivery calling subscriptions)
    /// and by the SMTP relay's TLS (HOOKLINE_SMTP_URL).
    #[arg(long, env = "HOOKLINE_TLS_CA")]
    pub tls_ca: Option<std::path::PathBuf>,
    /// Endpoints whose every attempt failed for this long are disabled (with
    /// an `endpoint.disabled` event); re-enabling them resumes delivery.
    #[arg(long, env = "HOOKLINE_AUTO_DISABLE_AFTER", default_value = "5d", value_parser = duration)]
    pub auto_disable_after: Duration,
    /// How often endpoints are checked for that.
    #[arg(long, env = "HOOKLINE_AUTO_DISABLE_INTERVAL", default_value = "10m", value_parser = duration)]
    pub auto_disable_interval: Duration,
    /// How often the archive janitor runs.
    #[arg(long, env = "HOOKLINE_ARCHIVE_INTERVAL", default_value = "1h", value_parser = duration)]
    pub archive_interval: Duration,
}

fn frame_ancestors(s: &str) -> Result<hookline_console::FrameAncestors, SettingError> {
    s.parse().map_err(SettingError::FrameAncestors)
}

fn public_url(s: &str) -> Result<String, SettingError> {
    let s = s.trim().trim_end_matches('/');
    if s.starts_with("https://") || s.starts_with("http://") {
        Ok(s.to_owned())
    } else {
        Err(SettingError::PublicUrl(s.to_owned()))
    }
}

/// The webhooks console: where it listens, who may embed its portal
/// pages, and the URL users reach it at.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Console settings")]
pub struct ConsoleArgs {
    /// HTTP listen address of the webhooks console (pages, `/healthz`).
    #[arg(long, env = "HOOKLINE_CONSOLE_ADDR", default_value = "127.0.0.1:8080")]
    pub console_addr: SocketAddr,
    /// Origins allowed to embed portal pages in an iframe, separated by
    /// spaces or commas (`https://admin.example.com`), sent as CSP
    /// `frame-ancestors`. Empty: no site may frame the console. Portal
    /// sessions in another site's iframe need `SameSite=None; Secure`
    /// cookies, which browsers keep only from an https:// console (or
    /// localhost).
    #[arg(long, env = "HOOKLINE_CONSOLE_FRAME_ANCESTORS", default_value = "", value_parser = frame_ancestors)]
    pub console_frame_ancestors: hookline_console::FrameAncestors,
    /// The console's URL as users reach it, e.g. `https://hooks.example.com`
    /// (behind a TLS proxy): portal links start with it, and an https://
    /// URL makes session cookies `Secure`. Unset: `http://` + the address.
    #[arg(long, env = "HOOKLINE_CONSOLE_PUBLIC_URL", value_parser = public_url)]
    pub console_public_url: Option<String>,
    /// gRPC URL of the delivery service (delivery log, statistics), which
    /// the console calls (`dev` ignores it and calls its own HOOKLINE_GRPC_ADDR).
    #[arg(long, env = "HOOKLINE_DELIVERY_URL", default_value = "http://127.0.0.1:50051")]
    pub delivery_url: String,
}

impl ConsoleArgs {
    /// The public URL, else `http://<address bound>` (the port the system
    /// picked for port 0; loopback for an unspecified address).
    pub fn url(&self, bound: SocketAddr) -> String {
        if let Some(url) = &self.console_public_url {
            return url.clone();
        }
        let mut addr = bound;
        if addr.ip().is_unspecified() {
            addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
        }
        format!("http://{addr}")
    }
}

/// `hookline console`: the console, and how it reaches the services (as
/// the CLI does).
#[derive(Debug, Clone, Args)]
pub struct ConsoleRole {
    #[command(flatten)]
    pub console: ConsoleArgs,
    /// gRPC URL of the subscriptions service.
    #[arg(long, env = "HOOKLINE_SUBSCRIPTIONS_URL", default_value = "http://127.0.0.1:50051")]
    pub subscriptions_url: String,
    /// The operator token: operators sign in with it, and the console calls
    /// the services with it (for tenants too, scoped to their tenant). It
    /// also keys the session cookies, so every console replica with the same
    /// token accepts the others' sessions. Required; at least 16 characters.
    #[arg(long, env = "HOOKLINE_OPERATOR_TOKEN", hide_env_values = true)]
    pub operator_token: Option<String>,
    /// PEM CA certificates trusted, besides the public web roots, for
    /// `https://` service URLs.
    #[arg(long, env = "HOOKLINE_TLS_CA")]
    pub tls_ca: Option<std::path::PathBuf>,
    /// PEM client certificate (with HOOKLINE_TLS_KEY) presented to services
    /// that require one (HOOKLINE_TLS_CLIENT_CA).
    #[arg(long, env = "HOOKLINE_TLS_CERT")]
    pub tls_cert: Option<std::path::PathBuf>,
    /// PEM private key of HOOKLINE_TLS_CERT.
    #[arg(long, env = "HOOKLINE_TLS_KEY")]
    pub tls_key: Option<std::path::PathBuf>,
}

impl ConsoleRole {
    /// The console's settings, checked across fields.
    pub fn settings(&self, bound: SocketAddr) -> Result<hookline_console::ConsoleSettings, SettingError> {
        let token = self.operator_token.as_deref().map(str::trim).filter(|t| !t.is_empty());
        let token = match token {
            None => return Err(SettingError::ConsoleTokenRequired),
            Some(t) if t.chars().count() < OperatorAuth::MIN_TOKEN_CHARS => return Err(SettingError::TokenTooShort),
            Some(t) => t.to_owned(),
        };
        let tls_ca = self.tls_ca.as_deref().map(|p| crate::tls::read_ca(p, "HOOKLINE_TLS_CA")).transpose()?;
        let tls_identity = match (&self.tls_cert, &self.tls_key) {
            (None, None) => None,
            (Some(cert), Some(key)) => Some(crate::tls::Identity::load(cert, key)?.pem()),
            (Some(_), None) => return Err(SettingError::CertWithoutKey),
            (None, Some(_)) => return Err(SettingError::KeyWithoutCert),
        };
        Ok(hookline_console::ConsoleSettings {
            backend: hookline_console::BackendSettings {
                subscriptions_url: self.subscriptions_url.clone(),
                delivery_url: self.console.delivery_url.clone(),
                tls_ca,
                tls_identity,
            },
            operator_token: Some(token),
            frame_ancestors: self.console.console_frame_ancestors.clone(),
            public_url: Some(self.console.url(bound)),
        })
    }
}

/// `hookline ingest`.
#[derive(Debug, Clone, Args)]
pub struct IngestRole {
    #[command(flatten)]
    pub common: CommonArgs,
    #[command(flatten)]
    pub ingest: IngestArgs,
}

/// `hookline subscriptions`.
#[derive(Debug, Clone, Args)]
pub struct SubscriptionsRole {
    #[command(flatten)]
    pub common: CommonArgs,
    #[command(flatten)]
    pub address: AddressArgs,
    #[command(flatten)]
    pub config_history: ConfigHistoryArgs,
}

/// `hookline delivery` (the service; its log verbs take client settings).
#[derive(Debug, Clone, Args)]
pub struct DeliveryRole {
    #[command(flatten)]
    pub common: CommonArgs,
    #[command(flatten)]
    pub address: AddressArgs,
    #[command(flatten)]
    pub config_history: ConfigHistoryArgs,
    #[command(flatten)]
    pub delivery: DeliveryArgs,
}

/// Every service setting: `hookline dev`, which runs all roles, and
/// `hookline config show`.
#[derive(Debug, Clone, Args)]
pub struct ServiceArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    #[command(flatten)]
    pub address: AddressArgs,
    #[command(flatten)]
    pub config_history: ConfigHistoryArgs,
    #[command(flatten)]
    pub delivery: DeliveryArgs,
    #[command(flatten)]
    pub ingest: IngestArgs,
    #[command(flatten)]
    pub console: ConsoleArgs,
}

/// What `serve::run` gets: the common settings and the groups of the role;
/// a group is `None` exactly when the role does not run that part.
#[derive(Debug, Clone)]
pub struct RoleSettings {
    pub common: CommonArgs,
    pub address: Option<AddressArgs>,
    pub config_history: Option<ConfigHistoryArgs>,
    pub delivery: Option<DeliveryArgs>,
    pub ingest: Option<IngestArgs>,
    pub console: Option<ConsoleArgs>,
}

impl From<ServiceArgs> for RoleSettings {
    fn from(a: ServiceArgs) -> Self {
        Self {
            common: a.common,
            address: Some(a.address),
            config_history: Some(a.config_history),
            delivery: Some(a.delivery),
            ingest: Some(a.ingest),
            console: Some(a.console),
        }
    }
}

impl From<IngestRole> for RoleSettings {
    fn from(a: IngestRole) -> Self {
        Self {
            common: a.common,
            address: None,
            config_history: None,
            delivery: None,
            ingest: Some(a.ingest),
            console: None,
        }
    }
}

impl From<SubscriptionsRole> for RoleSettings {
    fn from(a: SubscriptionsRole) -> Self {
        Self {
            common: a.common,
            address: Some(a.address),
            config_history: Some(a.config_history),
            delivery: None,
            ingest: None,
            console: None,
        }
    }
}

impl From<DeliveryRole> for RoleSettings {
    fn from(a: DeliveryRole) -> Self {
        Self {
            common: a.common,
            address: Some(a.address),
            config_history: Some(a.config_history),
            delivery: Some(a.delivery),
            ingest: None,
            console: None,
        }
    }
}

impl CommonArgs {
    /// How gRPC callers are authenticated. Outside dev mode, a missing
    /// operator token is an error unless HOOKLINE_ALLOW_UNAUTHENTICATED says
    /// otherwise: an open API by accident is worse than a refused start.
    pub fn operator_auth(&self, dev: bool) -> Result<OperatorAuth, SettingError> {
        let previous = self.operator_token_previous.0.clone();
        let token = self.operator_token.as_deref().map(str::trim).filter(|t| !t.is_empty());
        match token {
            Some(t) if t.chars().count() < OperatorAuth::MIN_TOKEN_CHARS => Err(SettingError::TokenTooShort),
            Some(t) => Ok(OperatorAuth::Token { current: t.to_owned(), previous }),
            None if !previous.is_empty() => Err(SettingError::PreviousTokenAlone),
            None if dev => Ok(OperatorAuth::Open { why: "dev mode" }),
            None if self.allow_unauthenticated => Ok(OperatorAuth::Open { why: "HOOKLINE_ALLOW_UNAUTHENTICATED=true" }),
            None => Err(SettingError::TokenRequired),
        }
    }

    /// The keys that sign portal links: derived from the master key (former
    /// master keys verify), else from the operator token (former tokens
    /// verify), so every replica agrees and links outlive restarts; else a
    /// random key of this process, and links die with it.
    pub fn portal_keys(&self) -> hookline_auth::portal::PortalKeys {
        use hookline_auth::portal::PortalKeys;
        let set = |v: &Option<String>| v.as_deref().map(str::trim).filter(|t| !t.is_empty()).map(str::to_owned);
        let (current, previous) = match (set(&self.master_key), set(&self.operator_token)) {
            (Some(key), _) => (key, &self.master_key_previous.0),
            (None, Some(token)) => (token, &self.operator_token_previous.0),
            (None, None) => return PortalKeys::ephemeral(),
        };
        let previous = previous.iter().map(|p| p.trim()).filter(|p| !p.is_empty()).map(str::as_bytes);
        PortalKeys::derive(current.as_bytes(), previous)
    }

    /// Install the sealing keyring, if a master key is set.
    pub fn install_keyring(&self) -> Result<(), SettingError> {
        let Some(current) = self.master_key.as_deref() else { return Ok(()) };
        let previous: Vec<&str> = self.master_key_previous.0.iter().map(String::as_str).collect();
        let ring = hookline_domain::seal::Keyring::parse(current, &previous, "HOOKLINE_MASTER_KEY")?;
        hookline_domain::seal::install(ring);
        Ok(())
    }

    /// The listeners' certificate and key, when both are set.
    pub fn tls_identity(&self) -> Result<Option<crate::tls::Identity>, SettingError> {
        let client_ca = self.tls_client_ca.as_deref().map(|p| crate::tls::read_ca(p, "HOOKLINE_TLS_CLIENT_CA"));
        match (&self.tls_cert, &self.tls_key) {
            (None, None) if client_ca.is_some() => Err(SettingError::ClientCaWithoutTls),
            (None, None) => Ok(None),
            (Some(cert), Some(key)) => {
                let identity = crate::tls::Identity::load(cert, key)?;
                Ok(Some(match client_ca.transpose()? {
                    Some(ca) => identity.require_clients(ca),
                    None => identity,
                }))
            }
            (Some(_), None) => Err(SettingError::CertWithoutKey),
            (None, Some(_)) => Err(SettingError::KeyWithoutCert),
        }
    }
}

impl IngestArgs {
    pub fn tenant_rate(&self) -> Result<hookline_ingest::limit::RateSettings, SettingError> {
        if !self.tenant_rate.is_finite() || self.tenant_rate < 0.0 {
            return Err(SettingError::TenantRate);
        }
        if self.tenant_rate > 0.0 && (self.tenant_burst.is_nan() || self.tenant_burst < 1.0) {
            return Err(SettingError::TenantBurst);
        }
        Ok(hookline_ingest::limit::RateSettings { per_second: self.tenant_rate, burst: self.tenant_burst })
    }
}

impl AddressArgs {
    /// Where deliveries may go: everywhere in dev mode, else public
    /// addresses plus HOOKLINE_DELIVERY_ALLOW_CIDRS.
    pub fn address_policy(&self, dev: bool) -> AddressPolicy {
        AddressPolicy { allow_all: dev, allow: self.delivery_allow_cidrs.0.clone() }
    }

    /// Where endpoint host names are resolved: HOOKLINE_DNS_SERVERS, else
    /// the system resolver.
    pub fn dns_resolver(&self) -> hookline_dns::Resolver {
        match self.dns_servers.0.as_slice() {
            [] => hookline_dns::Resolver::system(),
            servers => hookline_dns::Resolver::with_servers(servers),
        }
    }
}

impl DeliveryArgs {
    pub fn tls_ca_pem(&self) -> Result<Option<Vec<u8>>, TlsFileError> {
        self.tls_ca.as_deref().map(|p| crate::tls::read_ca(p, "HOOKLINE_TLS_CA")).transpose()
    }

    /// Cross-field checks clap cannot express. `identity` is the listeners'
    /// certificate, which delivery also presents when it calls subscriptions;
    /// `common` and `address` are the other groups of the same role.
    pub fn settings(
        &self,
        common: &CommonArgs,
        address: &AddressArgs,
        dev: bool,
        identity: Option<&crate::tls::Identity>,
    ) -> Result<DeliverySettings, SettingError> {
        if self.request_timeout.is_zero() || self.request_timeout > Duration::from_secs(300) {
            return Err(SettingError::RequestTimeout);
        }
        // An attempt may queue 0.5 s for a slot before its request starts.
        if self.ack_wait < self.request_timeout + Duration::from_secs(1) {
            return Err(SettingError::AckWait { request_timeout: self.request_timeout });
        }
        if self.retry_store_after < Duration::from_secs(1) {
            return Err(SettingError::RetryStoreAfter);
        }
        if common.archive_after < Duration::from_secs(1) {
            return Err(SettingError::ArchiveAfter);
        }
        if self.auto_disable_after < Duration::from_secs(1) || self.auto_disable_interval < Duration::from_millis(100) {
            return Err(SettingError::AutoDisable);
        }
        if self.archive_interval < Duration::from_millis(100) {
            return Err(SettingError::ArchiveInterval);
        }
        if !(1..=10_000).contains(&self.delivery_concurrency) {
            return Err(SettingError::DeliveryConcurrency);
        }
        if !(1..=self.delivery_concurrency).contains(&self.endpoint_concurrency) {
            return Err(SettingError::EndpointConcurrency);
        }
        if self.breaker_threshold == 0 {
            return Err(SettingError::BreakerThreshold);
        }
        // Zero would double to zero: a probe with every attempt, never an open breaker.
        if self.breaker_first_cooldown < Duration::from_millis(10) {
            return Err(SettingError::BreakerFirstCooldown);
        }
        let tls_ca = self.tls_ca_pem()?;
        Ok(DeliverySettings {
            retry_schedule: self.retry_schedule.clone(),
            retry_store_after: self.retry_store_after,
            request_timeout: self.request_timeout,
            ack_wait: self.ack_wait,
            archive_after: common.archive_after,
            subscriptions_url: self.subscriptions_url.clone(),
            operator_token: common.operator_token.clone(),
            guard: GuardSettings {
                attempts: self.delivery_concurrency,
                per_endpoint: self.endpoint_concurrency,
                breaker_threshold: self.breaker_threshold,
                breaker_cooldown: self.breaker_cooldown,
                breaker_first_cooldown: self.breaker_first_cooldown,
                unanswered: GuardSettings::unanswered_share(self.delivery_concurrency),
            },
            address_policy: address.address_policy(dev),
            dns: address.dns_resolver(),
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

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Debug, Parser)]
    struct Delivery {
        #[command(flatten)]
        delivery: DeliveryArgs,
    }

    #[test]
    fn duration_settings_take_humantime_spans_and_a_bad_one_names_the_setting() {
        let d = Delivery::try_parse_from([
            "t",
            "--retry-schedule",
            "0s,90,1h30m,2d",
            "--retry-store-after",
            "1m30s",
            "--auto-disable-after",
            "2d12h",
        ])
        .unwrap()
        .delivery;
        assert_eq!(d.retry_schedule.delay_after(2), Some(Duration::from_secs(5400)));
        assert_eq!(d.retry_schedule.delay_after(3), Some(Duration::from_secs(2 * 86400)));
        assert_eq!(d.retry_store_after, Duration::from_secs(90));
        assert_eq!(d.auto_disable_after, Duration::from_secs(60 * 3600));

        let e = Delivery::try_parse_from(["t", "--retry-store-after", "1h30"]).unwrap_err().to_string();
        assert!(e.contains("--retry-store-after") && e.contains("`1h30` is not a duration like 90 (seconds)"), "{e}");
        let e = Delivery::try_parse_from(["t", "--retry-schedule", "0s,5 parsecs"]).unwrap_err().to_string();
        assert!(e.contains("--retry-schedule") && e.contains("`5 parsecs` is not a duration"), "{e}");
    }
}
