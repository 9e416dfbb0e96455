//! Operator commands. Each talks gRPC to a running Hookline and prints a
//! short human summary, or the full result as JSON with `--json`.
//!
//! # Layout
//! * here: the client options every verb shares ([`ClientArgs`]: URLs,
//!   token, TLS), connecting, and printing.
//! * one module per verb group: `tenant`, `endpoint` (with `recover`),
//!   `api_key`, `portal` (portal links), `publish`, `delivery` (the delivery
//!   log), `rejected` (what the NATS intake refused), `stats`, `admin`.
//!
//! JSON output is the API's messages as they are: they derive `Serialize`
//! (see `hookline_proto::json`), and [`print`] prints whatever it is given.

mod admin;
mod api_key;
mod delivery;
mod endpoint;
pub mod error;
mod event_type;
mod export;
mod portal;
mod publish;
mod recover;
mod rejected;
mod stats;
mod tenant;
mod when;

use std::{
    io::{IsTerminal, Write},
    time::Duration,
};

use anyhow::Context as _;
use clap::Args;
use hookline_proto::{
    delivery::v1::delivery_service_client::DeliveryServiceClient,
    ingest::v1::ingest_service_client::IngestServiceClient,
    subscriptions::v1::subscription_service_client::SubscriptionServiceClient,
};
use serde::Serialize;
use tonic::transport::Channel;

pub use self::{
    admin::{AdminCmd, admin},
    api_key::{ApiKeyCmd, api_key},
    delivery::{DeliveryCmd, delivery},
    endpoint::{EndpointCmd, endpoint},
    event_type::{EventTypeCmd, event_type},
    portal::{PortalCmd, portal},
    publish::publish,
    rejected::{RejectedCmd, rejected},
    stats::{WindowArg, stats},
    tenant::{TenantCmd, tenant},
};

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
async fn connect(
    url: &str,
    setting: &'static str,
    token: Option<&str>,
    tls: &Tls,
) -> anyhow::Result<(Channel, Bearer)> {
    let bearer = match token {
        Some(t) => Some(format!("Bearer {t}").parse().context("--token / HOOKLINE_TOKEN: not a valid header value")?),
        None => None,
    };
    let identity = tls.identity.as_ref().map(|(c, k)| (c.as_slice(), k.as_slice()));
    let channel = hookline_proto::endpoint(url, tls.ca.as_deref(), identity)
        .with_context(|| format!("{setting}: `{url}` is not a URL"))?
        .connect()
        .await
        .map_err(|source| error::Unreachable { url: url.to_owned(), setting, source })?;
    Ok((channel, Bearer(bearer)))
}

async fn subscriptions(args: &ClientArgs) -> anyhow::Result<SubscriptionServiceClient<Authed>> {
    let (channel, bearer) =
        connect(&args.subscriptions_url, "HOOKLINE_SUBSCRIPTIONS_URL", args.bearer().as_deref(), &args.tls()?).await?;
    Ok(SubscriptionServiceClient::with_interceptor(channel, bearer))
}

async fn deliveries(args: &ClientArgs) -> anyhow::Result<DeliveryServiceClient<Authed>> {
    let (channel, bearer) =
        connect(&args.delivery_url, "HOOKLINE_DELIVERY_URL", args.bearer().as_deref(), &args.tls()?).await?;
    Ok(DeliveryServiceClient::with_interceptor(channel, bearer))
}

async fn ingest(args: &ClientArgs) -> anyhow::Result<IngestServiceClient<Authed>> {
    let (channel, bearer) =
        connect(&args.ingest_url, "HOOKLINE_INGEST_URL", args.bearer().as_deref(), &args.tls()?).await?;
    Ok(IngestServiceClient::with_interceptor(channel, bearer))
}

/// A refused call, with the status's details kept for the report and the
/// exit code ([`error::report`]).
fn status(s: tonic::Status) -> anyhow::Error {
    error::Refused::from(s).into()
}

/// Print `value` as JSON with `--json`, else the `human` summary.
fn print<T: Serialize + ?Sized>(json_out: bool, value: &T, human: String) {
    if json_out {
        // Through a `Value`, so a repeated map key prints once.
        let value = serde_json::to_value(value).expect("printed messages serialise");
        println!("{}", serde_json::to_string_pretty(&value).expect("JSON prints"));
    } else {
        println!("{human}");
    }
}

/// Rows under a header, in aligned columns two spaces apart, without
/// borders: easy to read and to cut with `awk`. Widths count characters;
/// what the CLI prints in tables is ids, times, numbers and URLs, so no
/// display-width library is needed.
fn table<const N: usize>(header: [&str; N], rows: impl IntoIterator<Item = [String; N]>) -> String {
    let rows: Vec<[String; N]> = rows.into_iter().collect();
    let mut widths = header.map(|h| h.chars().count());
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: [&str; N]| {
        let mut out = String::new();
        for (i, (cell, w)) in cells.iter().zip(widths).enumerate() {
            out.push_str(cell);
            if i + 1 < N {
                out.push_str(&" ".repeat(w - cell.chars().count() + 2));
            }
        }
        out.trim_end().to_owned()
    };
    std::iter::once(line(header))
        .chain(rows.iter().map(|r| line(std::array::from_fn(|i| r[i].as_str()))))
        .collect::<Vec<_>>()
        .join("\n")
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

#[cfg(test)]
mod tests {
    use hookline_proto::{delivery::v1 as dpb, subscriptions::v1 as spb};
    use serde_json::{Value, json};

    fn printed<T: serde::Serialize>(v: &T) -> Value {
        serde_json::to_value(v).unwrap()
    }

    #[test]
    fn tables_have_a_header_and_aligned_columns() {
        let t = super::table(
            ["ID", "STATE", "ATTEMPTS"],
            [["dlv_1".into(), "succeeded".into(), "1".into()], ["dlv_22".into(), "failing".into(), "12".into()]],
        );
        assert_eq!(t, "ID      STATE      ATTEMPTS\ndlv_1   succeeded  1\ndlv_22  failing    12");
        let t = super::table(["A", "B"], [["replayed 2×".into(), "".into()], ["x".into(), "y".into()]]);
        assert_eq!(t, "A            B\nreplayed 2×\nx            y", "widths count characters, not bytes");
    }

    #[test]
    fn enums_print_by_name_and_none_prints_as_null() {
        let t = spb::Tenant { id: "acme".into(), plan: spb::Plan::Professional.into(), ..Default::default() };
        assert_eq!(
            printed(&t),
            json!({"id": "acme", "plan": "professional", "webhooks_enabled": false, "endpoint_limit": 0,
                "endpoint_count": 0, "created_at": "", "version": 0, "operational_email": null,
                "operational_webhook_url": null})
        );
        let e = spb::Endpoint { id: "ep_1".into(), email: "ops@example.com".into(), ..Default::default() };
        assert_eq!(
            printed(&e),
            json!({"id": "ep_1", "tenant_id": "", "url": "", "auth_header": null, "event_types": "all",
                "layout": "envelope", "enabled": false, "description": "", "disabled_reason": null,
                "rate_limit": null, "created_at": "", "updated_at": "", "filters": []}),
            "the e-mail address is not printed"
        );
        let e = spb::Endpoint {
            auth_header: Some(spb::AuthHeader { name: "X-Key".into(), value: "***".into() }),
            event_types: vec!["customer.created".into()],
            layout: spb::PayloadLayout::Flat.into(),
            disabled_reason: "auto".into(),
            rate_limit: 10,
            ..Default::default()
        };
        let v = printed(&e);
        assert_eq!(v["auth_header"], json!({"name": "X-Key", "value": "***"}));
        assert_eq!(v["event_types"], json!(["customer.created"]));
        assert_eq!(
            (&v["layout"], &v["disabled_reason"], &v["rate_limit"]),
            (&json!("flat"), &json!("auto"), &json!(10))
        );
    }

    #[test]
    fn the_delivery_log_prints_as_before() {
        let d = dpb::Delivery { id: "dlv_1".into(), state: dpb::DeliveryState::Failing.into(), ..Default::default() };
        assert_eq!(
            printed(&d),
            json!({"id": "dlv_1", "event_id": "", "event_type": "", "endpoint_id": "", "created_at": "",
                "last_attempt_at": "", "attempt_count": 0, "last_status_code": null, "last_error_kind": null,
                "state": "failing", "replay_of": null, "replay_count": 0, "archived_at": null, "test": false})
        );
        let a = dpb::Attempt { number: 1, status_code: 502, trace_id: "abc".into(), ..Default::default() };
        assert_eq!(
            printed(&a),
            json!({"number": 1, "started_at": "", "duration_ms": 0, "status_code": 502, "error_kind": null,
                "error": null, "outcome": "", "response_excerpt": null}),
            "the trace id is not printed"
        );
        let r = dpb::RawRequest { body: vec![b'{', 0xff, b'}'], ..Default::default() };
        assert_eq!(printed(&r)["body"], json!("{\u{fffd}}"));
        let s = dpb::Stats {
            errors: vec![
                dpb::ErrorKindCount { kind: "timeout".into(), count: 2 },
                dpb::ErrorKindCount { kind: "dns".into(), count: 1 },
            ],
            ..Default::default()
        };
        let v = printed(&s);
        assert_eq!((&v["endpoint_id"], &v["errors"]), (&Value::Null, &json!({"timeout": 2, "dns": 1})));
        let page = dpb::ListDeliveriesResponse { deliveries: vec![], next_page_token: String::new() };
        assert_eq!(printed(&page), json!({"deliveries": [], "next_page_token": null}));
    }
}
