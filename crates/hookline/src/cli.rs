//! Operator commands. Each talks gRPC to a running Hookline and prints a
//! short human summary, or the full result as JSON with `--json`.

use std::io::Read;

use anyhow::Context as _;
use clap::{Args, Subcommand, ValueEnum};
use hookline_proto::{
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
    /// Show one endpoint (auth header value masked).
    Get { tenant: String, endpoint: String },
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
    /// Replace the signing secret (generated unless given).
    RotateSecret {
        tenant: String,
        endpoint: String,
        #[arg(long)]
        secret: Option<String>,
    },
}

async fn subscriptions(args: &ClientArgs) -> anyhow::Result<SubscriptionServiceClient<Channel>> {
    SubscriptionServiceClient::connect(args.subscriptions_url.clone()).await.with_context(|| {
        format!("cannot reach the subscriptions service at {} (HOOKLINE_SUBSCRIPTIONS_URL)", args.subscriptions_url)
    })
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
        "{}  {}  {}  layout={}  types={}{}",
        e.id,
        if e.enabled { "enabled " } else { "disabled" },
        e.url,
        layout_name(e.layout),
        types,
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
                })
                .await
                .map_err(status)?
                .into_inner();
            show(&e);
        }
        EndpointCmd::Get { tenant, endpoint } => {
            let e = c
                .get_endpoint(spb::GetEndpointRequest { tenant_id: tenant, endpoint_id: endpoint })
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
        EndpointCmd::RotateSecret { tenant, endpoint, secret } => {
            let s = c
                .rotate_endpoint_secret(spb::RotateEndpointSecretRequest {
                    tenant_id: tenant,
                    endpoint_id: endpoint,
                    secret: secret.unwrap_or_default(),
                })
                .await
                .map_err(status)?
                .into_inner();
            print(args.json, json!({"endpoint_id": s.endpoint_id, "secret": s.secret}), s.secret.clone());
        }
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
    let mut c = IngestServiceClient::connect(args.ingest_url.clone())
        .await
        .with_context(|| format!("cannot reach the ingest service at {} (HOOKLINE_INGEST_URL)", args.ingest_url))?;
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
