//! Operator commands. Each talks gRPC to a running Hookline and prints a
//! short human summary, or the full result as JSON with `--json`.

use std::{
    io::{IsTerminal, Read, Write},
    time::Duration,
};

use anyhow::Context as _;
use clap::{Args, Subcommand, ValueEnum};
use hookline_proto::{
    delivery::v1::{self as dpb, delivery_service_client::DeliveryServiceClient},
    ingest::v1::{self as ipb, ingest_service_client::IngestServiceClient},
    subscriptions::v1::{self as spb, subscription_service_client::SubscriptionServiceClient},
};
use serde_json::{Value, json};
use tonic::transport::Channel;

#[derive(Debug, Clone, Args)]
pub struct ClientArgs {
    /// Print results as JSON.
    #[arg(long, global = true)]
    pub json: bool,
    /// gRPC URL of the subscriptions service.
    #[arg(long, global = true, env = "HOOKLINE_SUBSCRIPTIONS_URL", default_value = "http://127.0.0.1:50051")]
    pub subscriptions_url: String,
    /// gRPC URL of the ingest service.
    #[arg(long, global = true, env = "HOOKLINE_INGEST_URL", default_value = "http://127.0.0.1:50051")]
    pub ingest_url: String,
    /// gRPC URL of the delivery service (delivery log, statistics, projections).
    #[arg(long, global = true, env = "HOOKLINE_DELIVERY_URL", default_value = "http://127.0.0.1:50051")]
    pub delivery_url: String,
    /// Operator token or tenant API key, sent as `authorization: Bearer`.
    /// Unset, the CLI uses HOOKLINE_OPERATOR_TOKEN when the environment has
    /// it (a shell or container the services run in).
    #[arg(long, global = true, env = "HOOKLINE_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// PEM CA certificates to trust, besides the public web roots, for
    /// `https://` URLs (services behind a private CA).
    #[arg(long, global = true, env = "HOOKLINE_TLS_CA")]
    pub tls_ca: Option<std::path::PathBuf>,
    /// PEM client certificate (with --tls-key), for services that require
    /// one (mutual TLS, HOOKLINE_TLS_CLIENT_CA).
    #[arg(long, global = true, env = "HOOKLINE_TLS_CERT")]
    pub tls_cert: Option<std::path::PathBuf>,
    /// PEM private key of --tls-cert.
    #[arg(long, global = true, env = "HOOKLINE_TLS_KEY")]
    pub tls_key: Option<std::path::PathBuf>,
}

impl ClientArgs {
    /// `--token` / HOOKLINE_TOKEN, else the services' own operator token.
    fn bearer(&self) -> Option<String> {
        self.token.clone().or_else(|| std::env::var("HOOKLINE_OPERATOR_TOKEN").ok()).filter(|t| !t.trim().is_empty())
    }

    /// The CA to trust and the client identity to present, as PEM.
    fn tls(&self) -> anyhow::Result<Tls> {
        let ca = self
            .tls_ca
            .as_deref()
            .map(|p| crate::tls::read_ca(p, "--tls-ca / HOOKLINE_TLS_CA"))
            .transpose()
            .map_err(anyhow::Error::msg)?;
        let identity = match (&self.tls_cert, &self.tls_key) {
            (None, None) => None,
            (Some(cert), Some(key)) => Some(crate::tls::Identity::load(cert, key).map_err(anyhow::Error::msg)?.pem()),
            (Some(_), None) => anyhow::bail!("--tls-key / HOOKLINE_TLS_KEY: must be set together with --tls-cert"),
            (None, Some(_)) => anyhow::bail!("--tls-cert / HOOKLINE_TLS_CERT: must be set together with --tls-key"),
        };
        Ok(Tls { ca, identity })
    }
}

/// What the CLI brings to an `https://` service: extra trust and, for
/// mutual TLS, a certificate.
struct Tls {
    ca: Option<Vec<u8>>,
    identity: Option<(Vec<u8>, Vec<u8>)>,
}

/// Adds `authorization: Bearer <token>` to every call.
#[derive(Clone)]
pub struct Bearer(Option<tonic::metadata::MetadataValue<tonic::metadata::Ascii>>);

impl tonic::service::Interceptor for Bearer {
    fn call(&mut self, mut req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(v) = &self.0 {
            req.metadata_mut().insert("authorization", v.clone());
        }
        Ok(req)
    }
}

type Authed = tonic::service::interceptor::InterceptedService<Channel, Bearer>;

/// A channel to `url` whose calls carry the token, named after `setting` in errors.
async fn connect(url: &str, setting: &str, token: Option<&str>, tls: &Tls) -> anyhow::Result<(Channel, Bearer)> {
    let bearer = match token {
        Some(t) => Some(format!("Bearer {t}").parse().context("--token / HOOKLINE_TOKEN: not a valid header value")?),
        None => None,
    };
    let identity = tls.identity.as_ref().map(|(c, k)| (c.as_slice(), k.as_slice()));
    let channel = hookline_proto::endpoint(url, tls.ca.as_deref(), identity)
        .with_context(|| format!("{setting}: `{url}` is not a URL"))?
        .connect()
        .await
        .with_context(|| format!("cannot reach {url} ({setting})"))?;
    Ok((channel, Bearer(bearer)))
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum PlanArg {
    Basic,
    Professional,
    Business,
    Enterprise,
}

impl From<PlanArg> for spb::Plan {
    fn from(p: PlanArg) -> Self {
        match p {
            PlanArg::Basic => spb::Plan::Basic,
            PlanArg::Professional => spb::Plan::Professional,
            PlanArg::Business => spb::Plan::Business,
            PlanArg::Enterprise => spb::Plan::Enterprise,
        }
    }
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum OnOff {
    On,
    Off,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum LayoutArg {
    Envelope,
    Flat,
}

impl From<LayoutArg> for spb::PayloadLayout {
    fn from(l: LayoutArg) -> Self {
        match l {
            LayoutArg::Envelope => spb::PayloadLayout::Envelope,
            LayoutArg::Flat => spb::PayloadLayout::Flat,
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum TenantCmd {
    /// Create a tenant.
    Create {
        tenant: String,
        #[arg(long, value_enum)]
        plan: PlanArg,
        /// Switch webhooks on or off at creation (default off).
        #[arg(long, value_enum, default_value = "off")]
        webhooks: OnOff,
    },
    /// Show a tenant.
    Get { tenant: String },
    /// Change a tenant's plan or switch its webhooks on or off.
    Set {
        tenant: String,
        #[arg(long, value_enum)]
        plan: Option<PlanArg>,
        #[arg(long, value_enum)]
        webhooks: Option<OnOff>,
    },
}

#[derive(Debug, Args)]
pub struct EndpointFields {
    /// Target URL (http or https).
    #[arg(long)]
    url: Option<String>,
    /// Extra header sent with every request, as `Name: value`.
    #[arg(long, value_name = "NAME: VALUE")]
    auth_header: Option<String>,
    /// Event types to receive (repeat, or comma separate); `all` or none means all.
    #[arg(long = "event-type", value_delimiter = ',')]
    event_types: Vec<String>,
    /// Body layout.
    #[arg(long, value_enum)]
    layout: Option<LayoutArg>,
    /// Free text.
    #[arg(long)]
    description: Option<String>,
    /// Deliver by e-mail to this address instead of POSTing (`""` on update: back to HTTP).
    #[arg(long)]
    email: Option<String>,
    /// At most this many attempts per second to the endpoint, per delivery
    /// process (1 to 10000; 0 on update: no limit). Attempts over it wait in JetStream.
    #[arg(long, value_name = "PER_SECOND")]
    rate_limit: Option<u32>,
}

#[derive(Debug, Subcommand)]
pub enum EndpointCmd {
    /// Create an endpoint; prints its id (the signing secret: `endpoint secret`).
    Create {
        tenant: String,
        #[command(flatten)]
        fields: EndpointFields,
        /// Create it disabled.
        #[arg(long)]
        disabled: bool,
    },
    /// Show one endpoint (auth header value and URL query values masked).
    Get {
        tenant: String,
        endpoint: String,
        /// Show the URL's query values (often the receiver's token) in clear.
        #[arg(long)]
        reveal_url: bool,
    },
    /// List a tenant's endpoints.
    List { tenant: String },
    /// Change an endpoint; options not given stay as they are.
    Update {
        tenant: String,
        endpoint: String,
        #[command(flatten)]
        fields: EndpointFields,
        /// Remove the auth header.
        #[arg(long, conflicts_with = "auth_header")]
        clear_auth_header: bool,
        #[arg(long, conflicts_with = "disable")]
        enable: bool,
        #[arg(long)]
        disable: bool,
    },
    /// Delete an endpoint.
    Delete { tenant: String, endpoint: String },
    /// Print the endpoint's signing secret.
    Secret { tenant: String, endpoint: String },
    /// Replace the signing secret (generated unless given); the old one keeps
    /// signing beside it for the grace period.
    RotateSecret {
        tenant: String,
        endpoint: String,
        #[arg(long)]
        secret: Option<String>,
        /// Seconds the old secret keeps signing (default 86400; 0 = stop at once).
        #[arg(long)]
        grace_period: Option<u32>,
    },
    /// Replay every failed delivery created since a time, as a background
    /// job; shows its progress until it ends.
    Recover {
        tenant: String,
        endpoint: String,
        /// Failed deliveries created at or after this, RFC 3339.
        #[arg(long)]
        since: String,
    },
}

async fn subscriptions(args: &ClientArgs) -> anyhow::Result<SubscriptionServiceClient<Authed>> {
    let (channel, bearer) =
        connect(&args.subscriptions_url, "HOOKLINE_SUBSCRIPTIONS_URL", args.bearer().as_deref(), &args.tls()?).await?;
    Ok(SubscriptionServiceClient::with_interceptor(channel, bearer))
}

fn status(s: tonic::Status) -> anyhow::Error {
    anyhow::anyhow!("{:?}: {}", s.code(), s.message())
}

fn plan_name(p: i32) -> &'static str {
    match spb::Plan::try_from(p) {
        Ok(spb::Plan::Basic) => "basic",
        Ok(spb::Plan::Professional) => "professional",
        Ok(spb::Plan::Business) => "business",
        Ok(spb::Plan::Enterprise) => "enterprise",
        _ => "unspecified",
    }
}

fn layout_name(l: i32) -> &'static str {
    match spb::PayloadLayout::try_from(l) {
        Ok(spb::PayloadLayout::Flat) => "flat",
        _ => "envelope",
    }
}

fn tenant_json(t: &spb::Tenant) -> Value {
    json!({"id": t.id, "plan": plan_name(t.plan), "webhooks_enabled": t.webhooks_enabled,
        "endpoint_limit": t.endpoint_limit, "endpoint_count": t.endpoint_count, "created_at": t.created_at, "version": t.version})
}

fn endpoint_json(e: &spb::Endpoint) -> Value {
    json!({"id": e.id, "tenant_id": e.tenant_id, "url": e.url,
        "auth_header": e.auth_header.as_ref().map(|h| json!({"name": h.name, "value": h.value})),
        "event_types": if e.event_types.is_empty() { json!("all") } else { json!(e.event_types) },
        "layout": layout_name(e.layout), "enabled": e.enabled, "description": e.description,
        "disabled_reason": (!e.disabled_reason.is_empty()).then_some(&e.disabled_reason),
        "rate_limit": (e.rate_limit > 0).then_some(e.rate_limit),
        "created_at": e.created_at, "updated_at": e.updated_at})
}

fn print(json_out: bool, value: Value, human: String) {
    if json_out {
        println!("{}", serde_json::to_string_pretty(&value).expect("JSON prints"));
    } else {
        println!("{human}");
    }
}

fn print_tenant(args: &ClientArgs, t: &spb::Tenant) {
    let human = format!(
        "tenant {}  plan {}  webhooks {}  endpoints {}/{}",
        t.id,
        plan_name(t.plan),
        if t.webhooks_enabled { "on" } else { "off" },
        t.endpoint_count,
        t.endpoint_limit
    );
    print(args.json, tenant_json(t), human);
}

fn endpoint_line(e: &spb::Endpoint) -> String {
    let types = if e.event_types.is_empty() { "all".to_owned() } else { e.event_types.join(",") };
    format!(
        "{}  {}  {}  layout={}  types={}{}{}",
        e.id,
        if e.enabled { "enabled " } else { "disabled" },
        e.url,
        layout_name(e.layout),
        types,
        if e.rate_limit > 0 { format!("  rate<={}/s", e.rate_limit) } else { String::new() },
        e.auth_header.as_ref().map(|h| format!("  {}: {}", h.name, h.value)).unwrap_or_default()
    )
}

fn auth_header(s: &str) -> anyhow::Result<spb::AuthHeader> {
    let (name, value) = s.split_once(':').context("--auth-header: expected `Name: value`")?;
    Ok(spb::AuthHeader { name: name.trim().to_owned(), value: value.trim().to_owned() })
}

fn event_types(v: &[String]) -> Vec<String> {
    v.iter().map(|s| s.trim().to_owned()).filter(|s| !s.is_empty() && s != "all").collect()
}

pub async fn tenant(args: &ClientArgs, cmd: TenantCmd) -> anyhow::Result<()> {
    let mut c = subscriptions(args).await?;
    let t = match cmd {
        TenantCmd::Create { tenant, plan, webhooks } => c.create_tenant(spb::CreateTenantRequest {
            tenant_id: tenant,
            plan: spb::Plan::from(plan).into(),
            webhooks_enabled: matches!(webhooks, OnOff::On),
        }),
        TenantCmd::Get { tenant } => {
            let t = c.get_tenant(spb::GetTenantRequest { tenant_id: tenant }).await.map_err(status)?.into_inner();
            print_tenant(args, &t);
            return Ok(());
        }
        TenantCmd::Set { tenant, plan, webhooks } => {
            if plan.is_none() && webhooks.is_none() {
                anyhow::bail!("nothing to change: give --plan and/or --webhooks");
            }
            let t = c
                .update_tenant(spb::UpdateTenantRequest {
                    tenant_id: tenant,
                    plan: plan.map(|p| spb::Plan::from(p).into()),
                    webhooks_enabled: webhooks.map(|w| matches!(w, OnOff::On)),
                })
                .await
                .map_err(status)?
                .into_inner();
            print_tenant(args, &t);
            return Ok(());
        }
    }
    .await
    .map_err(status)?
    .into_inner();
    print_tenant(args, &t);
    Ok(())
}

pub async fn endpoint(args: &ClientArgs, cmd: EndpointCmd) -> anyhow::Result<()> {
    if let EndpointCmd::Recover { tenant, endpoint, since } = cmd {
        return recover(args, tenant, endpoint, since).await;
    }
    let mut c = subscriptions(args).await?;
    let show = |e: &spb::Endpoint| print(args.json, endpoint_json(e), endpoint_line(e));
    match cmd {
        EndpointCmd::Create { tenant, fields, disabled } => {
            let e = c
                .create_endpoint(spb::CreateEndpointRequest {
                    tenant_id: tenant,
                    url: fields.url.context("--url is required")?,
                    auth_header: fields.auth_header.as_deref().map(auth_header).transpose()?,
                    event_types: event_types(&fields.event_types),
                    layout: fields.layout.map(|l| spb::PayloadLayout::from(l).into()).unwrap_or_default(),
                    disabled,
                    description: fields.description.unwrap_or_default(),
                    email: fields.email.unwrap_or_default(),
                    rate_limit: fields.rate_limit.unwrap_or_default(),
                })
                .await
                .map_err(status)?
                .into_inner();
            show(&e);
        }
        EndpointCmd::Get { tenant, endpoint, reveal_url } => {
            let e = c
                .get_endpoint(spb::GetEndpointRequest { tenant_id: tenant, endpoint_id: endpoint, reveal_url })
                .await
                .map_err(status)?
                .into_inner();
            show(&e);
        }
        EndpointCmd::List { tenant } => {
            let list =
                c.list_endpoints(spb::ListEndpointsRequest { tenant_id: tenant }).await.map_err(status)?.into_inner();
            let value = Value::Array(list.endpoints.iter().map(endpoint_json).collect());
            let human = if list.endpoints.is_empty() {
                "no endpoints".to_owned()
            } else {
                list.endpoints.iter().map(endpoint_line).collect::<Vec<_>>().join("\n")
            };
            print(args.json, value, human);
        }
        EndpointCmd::Update { tenant, endpoint, fields, clear_auth_header, enable, disable } => {
            let e = c
                .update_endpoint(spb::UpdateEndpointRequest {
                    tenant_id: tenant,
                    endpoint_id: endpoint,
                    url: fields.url,
                    auth_header: fields.auth_header.as_deref().map(auth_header).transpose()?,
                    clear_auth_header,
                    event_types: (!fields.event_types.is_empty())
                        .then(|| spb::EventTypeList { event_types: event_types(&fields.event_types) }),
                    layout: fields.layout.map(|l| spb::PayloadLayout::from(l).into()),
                    enabled: if enable {
                        Some(true)
                    } else if disable {
                        Some(false)
                    } else {
                        None
                    },
                    description: fields.description,
                    email: fields.email,
                    rate_limit: fields.rate_limit,
                })
                .await
                .map_err(status)?
                .into_inner();
            show(&e);
        }
        EndpointCmd::Delete { tenant, endpoint } => {
            c.delete_endpoint(spb::DeleteEndpointRequest { tenant_id: tenant, endpoint_id: endpoint.clone() })
                .await
                .map_err(status)?;
            print(args.json, json!({"deleted": endpoint}), format!("deleted {endpoint}"));
        }
        EndpointCmd::Secret { tenant, endpoint } => {
            let s = c
                .get_endpoint_secret(spb::GetEndpointSecretRequest { tenant_id: tenant, endpoint_id: endpoint })
                .await
                .map_err(status)?
                .into_inner();
            print(args.json, json!({"endpoint_id": s.endpoint_id, "secret": s.secret}), s.secret.clone());
        }
        EndpointCmd::RotateSecret { tenant, endpoint, secret, grace_period } => {
            let s = c
                .rotate_endpoint_secret(spb::RotateEndpointSecretRequest {
                    tenant_id: tenant,
                    endpoint_id: endpoint,
                    secret: secret.unwrap_or_default(),
                    grace_period_seconds: grace_period,
                })
                .await
                .map_err(status)?
                .into_inner();
            print(args.json, json!({"endpoint_id": s.endpoint_id, "secret": s.secret}), s.secret.clone());
        }
        EndpointCmd::Recover { .. } => unreachable!("handled above"),
    }
    Ok(())
}

/// `hookline publish <tenant> <file|->`: one JSON event, or a JSON array of
/// events sent as one all-or-nothing batch.
pub async fn publish(args: &ClientArgs, tenant: String, file: String) -> anyhow::Result<()> {
    let text = if file == "-" {
        let mut s = String::new();
        std::io::stdin().read_to_string(&mut s).context("reading stdin")?;
        s
    } else {
        std::fs::read_to_string(&file).with_context(|| format!("reading {file}"))?
    };
    let parsed: Value = serde_json::from_str(&text).with_context(|| format!("{file}: not JSON"))?;
    let events: Vec<Value> = match parsed {
        Value::Array(a) => a,
        one => vec![one],
    };
    let requests: Vec<ipb::PublishRequest> = events
        .iter()
        .map(|e| ipb::PublishRequest {
            tenant_id: tenant.clone(),
            payload: Some(ipb::publish_request::Payload::Json(e.to_string())),
            ..Default::default()
        })
        .collect();
    let (channel, bearer) =
        connect(&args.ingest_url, "HOOKLINE_INGEST_URL", args.bearer().as_deref(), &args.tls()?).await?;
    let mut c = IngestServiceClient::with_interceptor(channel, bearer);
    let results = if requests.len() == 1 {
        vec![c.publish(requests.into_iter().next().expect("one")).await.map_err(status)?.into_inner()]
    } else {
        c.publish_batch(ipb::PublishBatchRequest { events: requests }).await.map_err(status)?.into_inner().results
    };
    let value = Value::Array(
        results
            .iter()
            .map(|r| json!({"event_id": r.event_id, "event_type": r.event_type, "duplicate": r.duplicate, "stream_sequence": r.stream_sequence}))
            .collect(),
    );
    let human = results
        .iter()
        .map(|r| {
            format!(
                "{}  {}{}",
                r.event_id,
                r.event_type,
                if r.duplicate { "  (duplicate: already accepted)" } else { "" }
            )
        })
        .collect::<Vec<_>>()
        .join("\n");
    print(args.json, value, human);
    Ok(())
}

// ------------------------------------------------------------ delivery log

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum StateArg {
    Succeeded,
    Failing,
    Failed,
    Archived,
}

impl From<StateArg> for dpb::DeliveryState {
    fn from(s: StateArg) -> Self {
        match s {
            StateArg::Succeeded => dpb::DeliveryState::Succeeded,
            StateArg::Failing => dpb::DeliveryState::Failing,
            StateArg::Failed => dpb::DeliveryState::Failed,
            StateArg::Archived => dpb::DeliveryState::Archived,
        }
    }
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum WindowArg {
    #[value(name = "24h")]
    Day,
    #[value(name = "7d")]
    Week,
    #[value(name = "30d")]
    Month,
}

impl From<WindowArg> for dpb::StatsWindow {
    fn from(w: WindowArg) -> Self {
        match w {
            WindowArg::Day => dpb::StatsWindow::Last24h,
            WindowArg::Week => dpb::StatsWindow::Last7d,
            WindowArg::Month => dpb::StatsWindow::Last30d,
        }
    }
}

/// `hookline delivery <verb>`; without a verb, `hookline delivery` runs the
/// delivery service, so each verb carries its own client options.
#[derive(Debug, Subcommand)]
pub enum DeliveryCmd {
    /// List an endpoint's deliveries, newest first.
    List {
        #[command(flatten)]
        client: ClientArgs,
        tenant: String,
        endpoint: String,
        /// Only deliveries in this state (repeat for several).
        #[arg(long, value_enum)]
        state: Vec<StateArg>,
        /// Only this event type.
        #[arg(long)]
        event_type: Option<String>,
        /// Created at or after, RFC 3339.
        #[arg(long)]
        since: Option<String>,
        /// Created before, RFC 3339.
        #[arg(long)]
        until: Option<String>,
        /// `true`: only replays; `false`: only originals.
        #[arg(long)]
        replayed: Option<bool>,
        /// Rows per page (1-200, default 50).
        #[arg(long)]
        limit: Option<u32>,
        /// The next-page token a previous list printed.
        #[arg(long)]
        page_token: Option<String>,
    },
    /// Show one delivery with every attempt.
    Get {
        #[command(flatten)]
        client: ClientArgs,
        tenant: String,
        delivery: String,
    },
    /// Print the exact request of an attempt (secrets and URL query values
    /// redacted), body included.
    Raw {
        #[command(flatten)]
        client: ClientArgs,
        tenant: String,
        delivery: String,
        /// Attempt number (default: the last).
        #[arg(long)]
        attempt: Option<u32>,
        /// Show the URL's query values (often the receiver's token) in clear.
        #[arg(long)]
        reveal_url: bool,
    },
    /// Write the delivered body, byte for byte, to a file.
    Download {
        #[command(flatten)]
        client: ClientArgs,
        tenant: String,
        delivery: String,
        /// Output file (default `<delivery>.json`).
        #[arg(short, long)]
        output: Option<std::path::PathBuf>,
    },
    /// Send the same event to the same endpoint again, as a new delivery.
    Replay {
        #[command(flatten)]
        client: ClientArgs,
        tenant: String,
        delivery: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum AdminCmd {
    /// Drop every projection and rebuild it from the streams; shows progress until caught up.
    RebuildProjections,
    /// How far each projector is behind its stream.
    Projections,
    /// After rotating HOOKLINE_MASTER_KEY: re-seal every endpoint's secrets
    /// under the new key (the services must run with the new key first and
    /// the old one in HOOKLINE_MASTER_KEY_PREVIOUS).
    Reseal,
}

async fn deliveries(args: &ClientArgs) -> anyhow::Result<DeliveryServiceClient<Authed>> {
    let (channel, bearer) =
        connect(&args.delivery_url, "HOOKLINE_DELIVERY_URL", args.bearer().as_deref(), &args.tls()?).await?;
    Ok(DeliveryServiceClient::with_interceptor(channel, bearer))
}

fn state_label(s: i32) -> &'static str {
    match dpb::DeliveryState::try_from(s) {
        Ok(dpb::DeliveryState::Succeeded) => "succeeded",
        Ok(dpb::DeliveryState::Failing) => "failing",
        Ok(dpb::DeliveryState::Failed) => "failed",
        Ok(dpb::DeliveryState::Archived) => "archived",
        _ => "unspecified",
    }
}

fn delivery_json(d: &dpb::Delivery) -> Value {
    let opt = |s: &str| (!s.is_empty()).then(|| s.to_owned());
    json!({"id": d.id, "event_id": d.event_id, "event_type": d.event_type, "endpoint_id": d.endpoint_id,
        "created_at": d.created_at, "last_attempt_at": d.last_attempt_at, "attempt_count": d.attempt_count,
        "last_status_code": (d.last_status_code != 0).then_some(d.last_status_code),
        "last_error_kind": opt(&d.last_error_kind), "state": state_label(d.state), "replay_of": opt(&d.replay_of),
        "replay_count": d.replay_count, "archived_at": opt(&d.archived_at)})
}

/// `id  created  state  attempts  last result  replay label`.
fn delivery_line(d: &dpb::Delivery) -> String {
    let last = match (d.last_status_code, d.last_error_kind.as_str()) {
        (0, "") => "-".to_owned(),
        (0, kind) => kind.to_owned(),
        (code, _) => code.to_string(),
    };
    let mut labels = Vec::new();
    if !d.replay_of.is_empty() {
        labels.push(format!("replay of {}", d.replay_of));
    }
    if d.replay_count > 0 {
        labels.push(format!("replayed {}×", d.replay_count));
    }
    format!(
        "{}  {}  {:<9}  {:>2} attempt{}  {:<18}  {}",
        d.id,
        d.created_at,
        state_label(d.state),
        d.attempt_count,
        if d.attempt_count == 1 { " " } else { "s" },
        last,
        labels.join(", ")
    )
    .trim_end()
    .to_owned()
}

fn attempt_json(a: &dpb::Attempt) -> Value {
    json!({"number": a.number, "started_at": a.started_at, "duration_ms": a.duration_ms,
        "status_code": (a.status_code != 0).then_some(a.status_code), "error_kind": (!a.error_kind.is_empty()).then_some(&a.error_kind),
        "error": (!a.error.is_empty()).then_some(&a.error), "outcome": a.outcome, "response_excerpt": (!a.response_excerpt.is_empty()).then_some(&a.response_excerpt)})
}

fn attempt_line(a: &dpb::Attempt) -> String {
    let result = if a.status_code != 0 { a.status_code.to_string() } else { a.error_kind.clone() };
    let error = if a.error.is_empty() { String::new() } else { format!("  {}", a.error) };
    format!("  #{:<2} {}  {:>6} ms  {:<18}  {}{error}", a.number, a.started_at, a.duration_ms, result, a.outcome)
}

fn raw_json(r: &dpb::RawRequest) -> Value {
    json!({"attempt": r.attempt, "method": r.method, "url": r.url,
        "headers": r.headers.iter().map(|h| json!({"name": h.name, "value": h.value})).collect::<Vec<_>>(),
        "body": String::from_utf8_lossy(&r.body)})
}

pub async fn delivery(cmd: DeliveryCmd) -> anyhow::Result<()> {
    match cmd {
        DeliveryCmd::List {
            client,
            tenant,
            endpoint,
            state,
            event_type,
            since,
            until,
            replayed,
            limit,
            page_token,
        } => {
            let page = deliveries(&client)
                .await?
                .list_deliveries(dpb::ListDeliveriesRequest {
                    tenant_id: tenant,
                    endpoint_id: endpoint,
                    states: state.into_iter().map(|s| dpb::DeliveryState::from(s).into()).collect(),
                    event_type: event_type.unwrap_or_default(),
                    created_after: since.unwrap_or_default(),
                    created_before: until.unwrap_or_default(),
                    replayed,
                    page_size: limit.unwrap_or_default(),
                    page_token: page_token.unwrap_or_default(),
                })
                .await
                .map_err(status)?
                .into_inner();
            let value = json!({"deliveries": page.deliveries.iter().map(delivery_json).collect::<Vec<_>>(),
                "next_page_token": (!page.next_page_token.is_empty()).then_some(&page.next_page_token)});
            let mut lines: Vec<String> = page.deliveries.iter().map(delivery_line).collect();
            if lines.is_empty() {
                lines.push("no deliveries".into());
            }
            if !page.next_page_token.is_empty() {
                lines.push(format!("more: --page-token {}", page.next_page_token));
            }
            print(client.json, value, lines.join("\n"));
        }
        DeliveryCmd::Get { client, tenant, delivery } => {
            let d = deliveries(&client)
                .await?
                .get_delivery(dpb::GetDeliveryRequest { tenant_id: tenant, delivery_id: delivery })
                .await
                .map_err(status)?
                .into_inner();
            let row = d.delivery.unwrap_or_default();
            let value = json!({"delivery": delivery_json(&row), "attempts": d.attempts.iter().map(attempt_json).collect::<Vec<_>>()});
            let human = std::iter::once(format!("{}  {}  {}", delivery_line(&row), row.event_id, row.event_type))
                .chain(d.attempts.iter().map(attempt_line))
                .collect::<Vec<_>>()
                .join("\n");
            print(client.json, value, human);
        }
        DeliveryCmd::Raw { client, tenant, delivery, attempt, reveal_url } => {
            let r = deliveries(&client)
                .await?
                .get_delivery_raw(dpb::GetDeliveryRawRequest {
                    tenant_id: tenant,
                    delivery_id: delivery,
                    attempt: attempt.unwrap_or_default(),
                    reveal_url,
                })
                .await
                .map_err(status)?
                .into_inner();
            let headers: String = r.headers.iter().map(|h| format!("{}: {}\n", h.name, h.value)).collect();
            let human = format!("{} {}\n{headers}\n{}", r.method, r.url, String::from_utf8_lossy(&r.body));
            print(client.json, raw_json(&r), human);
        }
        DeliveryCmd::Download { client, tenant, delivery, output } => {
            let path = output.unwrap_or_else(|| format!("{delivery}.json").into());
            let r = deliveries(&client)
                .await?
                .get_delivery_raw(dpb::GetDeliveryRawRequest {
                    tenant_id: tenant,
                    delivery_id: delivery,
                    attempt: 0,
                    reveal_url: false,
                })
                .await
                .map_err(status)?
                .into_inner();
            std::fs::write(&path, &r.body).with_context(|| format!("writing {}", path.display()))?;
            let shown = path.display().to_string();
            print(client.json, json!({"path": shown, "bytes": r.body.len()}), shown.clone());
        }
        DeliveryCmd::Replay { client, tenant, delivery } => {
            let r = deliveries(&client)
                .await?
                .replay_delivery(dpb::ReplayDeliveryRequest { tenant_id: tenant, delivery_id: delivery })
                .await
                .map_err(status)?
                .into_inner();
            let human = format!("queued {} (replay of {})", r.delivery_id, r.replay_of);
            print(client.json, json!({"delivery_id": r.delivery_id, "replay_of": r.replay_of}), human);
        }
    }
    Ok(())
}

/// How often long-running commands poll.
const POLL: Duration = Duration::from_millis(200);

/// Redraw `\r[#####.....] done/total` on stderr when it is a terminal.
fn progress(done: u64, total: u64) {
    let mut err = std::io::stderr();
    if !err.is_terminal() {
        return;
    }
    const WIDTH: u64 = 30;
    let filled = (done.min(total) * WIDTH).checked_div(total).unwrap_or(WIDTH) as usize;
    let _ = write!(err, "\r[{}{}] {done}/{total}", "#".repeat(filled), ".".repeat(WIDTH as usize - filled));
    let _ = err.flush();
}

fn progress_end() {
    if std::io::stderr().is_terminal() {
        eprintln!();
    }
}

fn job_json(j: &dpb::RecoverJob) -> Value {
    json!({"id": j.id, "endpoint_id": j.endpoint_id, "since": j.since, "total": j.total, "done": j.done,
        "state": j.state, "error": (!j.error.is_empty()).then_some(&j.error)})
}

/// `hookline endpoint recover`: start the job, follow it to its end.
async fn recover(args: &ClientArgs, tenant: String, endpoint: String, since: String) -> anyhow::Result<()> {
    let mut c = deliveries(args).await?;
    let mut job = c
        .recover_endpoint(dpb::RecoverEndpointRequest { tenant_id: tenant.clone(), endpoint_id: endpoint, since })
        .await
        .map_err(status)?
        .into_inner();
    while job.state == "running" {
        progress(job.done.into(), job.total.into());
        tokio::time::sleep(POLL).await;
        job = c
            .get_recover_job(dpb::GetRecoverJobRequest { tenant_id: tenant.clone(), job_id: job.id.clone() })
            .await
            .map_err(status)?
            .into_inner();
    }
    progress(job.done.into(), job.total.into());
    progress_end();
    let note = if job.error.is_empty() { String::new() } else { format!(" ({})", job.error) };
    let human = format!("job {} {}: {}/{} replays queued{note}", job.id, job.state, job.done, job.total);
    print(args.json, job_json(&job), human);
    if job.state == "failed" {
        anyhow::bail!("recover job {} failed: {}", job.id, job.error);
    }
    Ok(())
}

// ------------------------------------------------------------ statistics

fn stats_json(s: &dpb::Stats) -> Value {
    json!({"endpoint_id": (!s.endpoint_id.is_empty()).then_some(&s.endpoint_id), "attempts": s.attempts,
        "accepted": s.accepted, "not_accepted": s.not_accepted, "status_2xx": s.status_2xx, "status_3xx": s.status_3xx,
        "status_4xx": s.status_4xx, "status_5xx": s.status_5xx,
        "errors": s.errors.iter().map(|e| (e.kind.clone(), json!(e.count))).collect::<serde_json::Map<_, _>>(),
        "success_rate": s.success_rate, "latency_p50_ms": s.latency_p50_ms, "latency_p95_ms": s.latency_p95_ms,
        "latency_p99_ms": s.latency_p99_ms})
}

fn stats_line(name: &str, s: &dpb::Stats) -> String {
    let errors: Vec<String> = s.errors.iter().map(|e| format!("{} {}", e.kind, e.count)).collect();
    format!(
        "{name}  {} attempts  {} accepted ({:.1}%)  2xx {} 3xx {} 4xx {} 5xx {}  p50 {} ms  p95 {} ms  p99 {} ms{}",
        s.attempts,
        s.accepted,
        s.success_rate * 100.0,
        s.status_2xx,
        s.status_3xx,
        s.status_4xx,
        s.status_5xx,
        s.latency_p50_ms,
        s.latency_p95_ms,
        s.latency_p99_ms,
        if errors.is_empty() { String::new() } else { format!("  errors: {}", errors.join(", ")) }
    )
}

/// `hookline stats --tenant <t> [<endpoint>]`: one endpoint, or the tenant
/// total with a line per endpoint.
pub async fn stats(
    args: &ClientArgs,
    tenant: String,
    endpoint: Option<String>,
    window: WindowArg,
) -> anyhow::Result<()> {
    let mut c = deliveries(args).await?;
    let window = dpb::StatsWindow::from(window).into();
    match endpoint {
        Some(endpoint) => {
            let s = c
                .get_endpoint_stats(dpb::GetEndpointStatsRequest { tenant_id: tenant, endpoint_id: endpoint, window })
                .await
                .map_err(status)?
                .into_inner();
            print(args.json, stats_json(&s), stats_line(&s.endpoint_id, &s));
        }
        None => {
            let t = c
                .get_tenant_stats(dpb::GetTenantStatsRequest { tenant_id: tenant, window })
                .await
                .map_err(status)?
                .into_inner();
            let total = t.total.unwrap_or_default();
            let value = json!({"total": stats_json(&total), "endpoints": t.endpoints.iter().map(stats_json).collect::<Vec<_>>()});
            let human = std::iter::once(stats_line("total", &total))
                .chain(t.endpoints.iter().map(|s| stats_line(&s.endpoint_id, s)))
                .collect::<Vec<_>>()
                .join("\n");
            print(args.json, value, human);
        }
    }
    Ok(())
}

// ------------------------------------------------------------ admin

fn projections_json(p: &dpb::ProjectionStatus) -> Value {
    Value::Array(
        p.projectors
            .iter()
            .map(|s| {
                json!({"projector": s.projector, "applied_sequence": s.applied_sequence,
                "stream_sequence": s.stream_sequence, "lag": s.lag})
            })
            .collect(),
    )
}

fn projections_human(p: &dpb::ProjectionStatus) -> String {
    p.projectors
        .iter()
        .map(|s| format!("{:<9}  applied {}/{}  lag {}", s.projector, s.applied_sequence, s.stream_sequence, s.lag))
        .collect::<Vec<_>>()
        .join("\n")
}

pub async fn admin(args: &ClientArgs, cmd: AdminCmd) -> anyhow::Result<()> {
    if let AdminCmd::Reseal = cmd {
        let r = subscriptions(args).await?.reseal_secrets(spb::ResealSecretsRequest {}).await.map_err(status)?;
        let r = r.into_inner();
        let value = json!({"tenants": r.tenants, "endpoints": r.endpoints});
        print(args.json, value, format!("re-sealed {} endpoint(s) of {} tenant(s)", r.endpoints, r.tenants));
        return Ok(());
    }
    let mut c = deliveries(args).await?;
    let mut st = match cmd {
        AdminCmd::Projections => {
            let st = c.get_projection_status(dpb::GetProjectionStatusRequest {}).await.map_err(status)?.into_inner();
            print(args.json, projections_json(&st), projections_human(&st));
            return Ok(());
        }
        AdminCmd::RebuildProjections => {
            c.rebuild_projections(dpb::RebuildProjectionsRequest {}).await.map_err(status)?.into_inner()
        }
        AdminCmd::Reseal => unreachable!("handled above"),
    };
    loop {
        let (applied, total) =
            st.projectors.iter().fold((0, 0), |(a, t), p| (a + p.applied_sequence, t + p.stream_sequence));
        progress(applied.min(total), total);
        if st.projectors.iter().all(|p| p.lag == 0) {
            break;
        }
        tokio::time::sleep(POLL).await;
        st = c.get_projection_status(dpb::GetProjectionStatusRequest {}).await.map_err(status)?.into_inner();
    }
    progress_end();
    print(args.json, projections_json(&st), format!("projections rebuilt\n{}", projections_human(&st)));
    Ok(())
}

#[derive(Debug, Subcommand)]
pub enum ApiKeyCmd {
    /// Create an API key for a tenant; the key is printed once.
    Create {
        tenant: String,
        /// A label for humans.
        #[arg(long, default_value = "")]
        name: String,
    },
    /// List a tenant's API keys (ids and labels, never the keys).
    List { tenant: String },
    /// Revoke an API key at once.
    Revoke { tenant: String, key_id: String },
}

/// `hookline api-key ...` (operator token required when authentication is on).
pub async fn api_key(args: &ClientArgs, cmd: ApiKeyCmd) -> anyhow::Result<()> {
    let mut c = subscriptions(args).await?;
    match cmd {
        ApiKeyCmd::Create { tenant, name } => {
            let k = c
                .create_api_key(spb::CreateApiKeyRequest { tenant_id: tenant, name })
                .await
                .map_err(status)?
                .into_inner();
            let value = json!({"key_id": k.key_id, "name": k.name, "key": k.key, "created_at": k.created_at});
            print(args.json, value, format!("{}  {}\n(shown once: store it now)", k.key_id, k.key));
        }
        ApiKeyCmd::List { tenant } => {
            let keys =
                c.list_api_keys(spb::ListApiKeysRequest { tenant_id: tenant }).await.map_err(status)?.into_inner().keys;
            let value = serde_json::Value::Array(
                keys.iter().map(|k| json!({"key_id": k.key_id, "name": k.name, "created_at": k.created_at})).collect(),
            );
            let human = keys
                .iter()
                .map(|k| format!("{}  {}  {}", k.key_id, k.created_at, k.name))
                .collect::<Vec<_>>()
                .join("\n");
            print(args.json, value, if human.is_empty() { "no API keys".into() } else { human });
        }
        ApiKeyCmd::Revoke { tenant, key_id } => {
            c.revoke_api_key(spb::RevokeApiKeyRequest { tenant_id: tenant, key_id: key_id.clone() })
                .await
                .map_err(status)?;
            print(args.json, json!({"revoked": key_id}), format!("revoked {key_id}"));
        }
    }
    Ok(())
}
