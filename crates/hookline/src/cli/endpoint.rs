//! `hookline endpoint create|get|list|update|delete|secret|rotate-secret|test`,
//! and `recover` (see `recover.rs`).

use anyhow::Context as _;
use clap::{Args, Subcommand, ValueEnum};
use hookline_proto::{
    delivery::v1 as dpb,
    json::{filter_text, layout_name},
    subscriptions::v1 as spb,
};
use serde_json::json;

use super::{ClientArgs, deliveries, print, status, subscriptions, table};

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
    /// Payload filter: deliver only events whose data meets the condition
    /// (repeat; all must hold). `PATH=VALUE`, `PATH in V1,V2,...` or
    /// `PATH exists`, PATH a dotted field of the event's data
    /// (`customer.email`); a value is JSON (`12`, `true`, `"12"`) or else a
    /// plain string (`widget`). On update, replaces the endpoint's filter.
    #[arg(long = "filter", value_name = "CONDITION", value_parser = filter_condition)]
    filters: Vec<spb::FilterCondition>,
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
        /// Remove the payload filter: every subscribed event is delivered.
        #[arg(long, conflicts_with = "filters")]
        clear_filters: bool,
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
        /// How long the old secret keeps signing: seconds (default 86400;
        /// 0 = stop at once) or a duration like 12h or 1d.
        #[arg(long, value_parser = super::when::grace_period)]
        grace_period: Option<u32>,
    },
    /// Send an example event of one type to this endpoint only, through the
    /// normal delivery path (signed, retried, logged as a test); receivers
    /// see the header `hookline-test: true`. Prints the delivery id.
    Test {
        tenant: String,
        endpoint: String,
        /// The event type, e.g. `appointment.booking.created`.
        #[arg(long = "type", value_name = "EVENT_TYPE")]
        event_type: String,
    },
    /// Replay every failed delivery created since a time, as a background
    /// job; shows its progress until it ends.
    Recover {
        tenant: String,
        endpoint: String,
        /// Failed deliveries created at or after this: RFC 3339, or a
        /// duration ago like 2h or 1d.
        #[arg(long, value_parser = super::when::instant)]
        since: String,
    },
}

/// One `--filter` condition, in the syntax `endpoint get` prints it.
fn filter_condition(s: &str) -> Result<spb::FilterCondition, String> {
    let s = s.trim();
    let condition = |path: &str, op: spb::FilterOperator, values: Vec<String>| spb::FilterCondition {
        path: path.trim().to_owned(),
        operator: op.into(),
        values,
    };
    if let Some(path) = s.strip_suffix(" exists") {
        return Ok(condition(path, spb::FilterOperator::Exists, vec![]));
    }
    if let Some((path, values)) = s.split_once(" in ") {
        let values = values.split(',').map(|v| json_scalar(v.trim())).collect();
        return Ok(condition(path, spb::FilterOperator::In, values));
    }
    if let Some((path, value)) = s.split_once('=') {
        return Ok(condition(path, spb::FilterOperator::Equals, vec![json_scalar(value.trim())]));
    }
    Err("expected `PATH=VALUE`, `PATH in V1,V2,...` or `PATH exists`".to_owned())
}

/// A value as JSON text: as given when it is a JSON scalar, else quoted as
/// a string (so `widget` means `"widget"`).
fn json_scalar(v: &str) -> String {
    match serde_json::from_str::<serde_json::Value>(v) {
        Ok(j) if !j.is_array() && !j.is_object() => v.to_owned(),
        _ => serde_json::Value::from(v).to_string(),
    }
}

fn endpoint_line(e: &spb::Endpoint) -> String {
    let types = if e.event_types.is_empty() { "all".to_owned() } else { e.event_types.join(",") };
    format!(
        "{}  {}  {}  layout={}  types={}{}{}{}",
        e.id,
        if e.enabled { "enabled " } else { "disabled" },
        e.url,
        layout_name(e.layout),
        types,
        if e.rate_limit > 0 { format!("  rate<={}/s", e.rate_limit) } else { String::new() },
        e.auth_header.as_ref().map(|h| format!("  {}: {}", h.name, h.value)).unwrap_or_default(),
        if e.filters.is_empty() { String::new() } else { format!("  filter: {}", filter_text(&e.filters)) },
    )
}

fn endpoint_table(endpoints: &[spb::Endpoint]) -> String {
    let rows = endpoints.iter().map(|e| {
        [
            e.id.clone(),
            if e.enabled { "enabled" } else { "disabled" }.to_owned(),
            e.url.clone(),
            layout_name(e.layout).to_owned(),
            if e.event_types.is_empty() { "all".to_owned() } else { e.event_types.join(",") },
            if e.rate_limit > 0 { format!("{}/s", e.rate_limit) } else { "-".to_owned() },
            e.auth_header.as_ref().map(|h| format!("{}: {}", h.name, h.value)).unwrap_or_else(|| "-".to_owned()),
            if e.filters.is_empty() { "-".to_owned() } else { filter_text(&e.filters) },
        ]
    });
    table(["ENDPOINT", "STATE", "URL", "LAYOUT", "TYPES", "RATE", "AUTH HEADER", "FILTER"], rows)
}

fn auth_header(s: &str) -> anyhow::Result<spb::AuthHeader> {
    let (name, value) = s.split_once(':').context("--auth-header: expected `Name: value`")?;
    Ok(spb::AuthHeader { name: name.trim().to_owned(), value: value.trim().to_owned() })
}

fn event_types(v: &[String]) -> Vec<String> {
    v.iter().map(|s| s.trim().to_owned()).filter(|s| !s.is_empty() && s != "all").collect()
}

pub async fn endpoint(args: &ClientArgs, cmd: EndpointCmd) -> anyhow::Result<()> {
    if let EndpointCmd::Recover { tenant, endpoint, since } = cmd {
        return super::recover::recover(args, tenant, endpoint, since).await;
    }
    if let EndpointCmd::Test { tenant, endpoint, event_type } = cmd {
        let sent = deliveries(args)
            .await?
            .send_test_event(dpb::SendTestEventRequest { tenant_id: tenant, endpoint_id: endpoint, event_type })
            .await
            .map_err(status)?
            .into_inner();
        let human = format!("test event {} queued as delivery {}", sent.event_id, sent.delivery_id);
        print(args.json, &sent, human);
        return Ok(());
    }
    let mut c = subscriptions(args).await?;
    let show = |e: &spb::Endpoint| print(args.json, e, endpoint_line(e));
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
                    filters: fields.filters,
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
            let human =
                if list.endpoints.is_empty() { "no endpoints".to_owned() } else { endpoint_table(&list.endpoints) };
            print(args.json, &list.endpoints, human);
        }
        EndpointCmd::Update { tenant, endpoint, fields, clear_auth_header, clear_filters, enable, disable } => {
            let filters = (clear_filters || !fields.filters.is_empty())
                .then(|| spb::FilterList { conditions: fields.filters.clone() });
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
                    filters,
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
            print(args.json, &json!({"deleted": endpoint}), format!("deleted {endpoint}"));
        }
        EndpointCmd::Secret { tenant, endpoint } => {
            let s = c
                .get_endpoint_secret(spb::GetEndpointSecretRequest { tenant_id: tenant, endpoint_id: endpoint })
                .await
                .map_err(status)?
                .into_inner();
            print(args.json, &s, s.secret.clone());
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
            print(args.json, &s, s.secret.clone());
        }
        EndpointCmd::Recover { .. } | EndpointCmd::Test { .. } => unreachable!("handled above"),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filter_conditions_parse_and_print_in_one_syntax() {
        let c = filter_condition("channel=widget").unwrap();
        assert_eq!((c.path.as_str(), c.operator, c.values.clone()), ("channel", 1, vec![r#""widget""#.to_owned()]));
        let c = filter_condition("appointment.location.kind in onsite, online").unwrap();
        assert_eq!(c.values, [r#""onsite""#, r#""online""#]);
        let n = filter_condition("event.capacity=12").unwrap();
        assert_eq!(n.values, ["12"], "JSON scalars stay as they are");
        let quoted = filter_condition(r#"customer.id="12""#).unwrap();
        assert_eq!(quoted.values, [r#""12""#]);
        let e = filter_condition("customer.email exists").unwrap();
        assert_eq!((e.path.as_str(), e.operator, e.values.len()), ("customer.email", 3, 0));
        assert!(filter_condition("customer.email").is_err());
        assert_eq!(
            filter_text(&[filter_condition("channel=widget").unwrap(), c, e]),
            r#"channel="widget" AND appointment.location.kind in "onsite","online" AND customer.email exists"#
        );
    }
}
