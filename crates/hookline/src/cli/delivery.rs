//! `hookline log list|get|raw|download|replay|export`: the delivery log.

use anyhow::Context as _;
use clap::{Subcommand, ValueEnum};
use hookline_proto::{delivery::v1 as dpb, json::delivery_state_name};
use serde_json::json;

use super::{ClientArgs, deliveries, export, print, status, table};

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

/// `hookline delivery <verb>`; without a verb, `hookline delivery` runs the
/// delivery service, so each verb carries its own client options.
#[derive(Debug, Subcommand)]
pub enum DeliveryCmd {
    /// List an endpoint's deliveries, newest first.
    List {
        #[command(flatten)]
        client: ClientArgs,
        tenant: String,
        /// The endpoint; without it, the whole tenant's log (every endpoint).
        endpoint: Option<String>,
        /// Only deliveries in this state (repeat for several).
        #[arg(long, value_enum)]
        state: Vec<StateArg>,
        /// Only this event type.
        #[arg(long)]
        event_type: Option<String>,
        /// Created at or after: RFC 3339, or a duration ago like 2h or 1d.
        #[arg(long, value_parser = super::when::instant)]
        since: Option<String>,
        /// Created before: RFC 3339, or a duration ago like 30m.
        #[arg(long, value_parser = super::when::instant)]
        until: Option<String>,
        /// `true`: only replays; `false`: only originals.
        #[arg(long)]
        replayed: Option<bool>,
        /// `true`: only test events (`endpoint test`); `false`: none of them.
        #[arg(long)]
        test: Option<bool>,
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
    /// Export the log as NDJSON: one line per delivery, `{"delivery": {...},
    /// "attempts": [...]}` as `log get --json` prints it, newest first.
    /// Streamed: neither the service nor the CLI holds the whole log. Progress
    /// (count so far, rate) goes to stderr.
    Export {
        #[command(flatten)]
        client: ClientArgs,
        tenant: String,
        /// The endpoint; without it, every endpoint of the tenant.
        endpoint: Option<String>,
        /// Created at or after: RFC 3339, or a duration ago like 2h or 1d.
        #[arg(long, value_parser = super::when::instant)]
        since: Option<String>,
        /// Created before: RFC 3339, or a duration ago like 30m.
        #[arg(long, value_parser = super::when::instant)]
        until: Option<String>,
        /// Write to this file instead of stdout. It appears whole when the
        /// export has finished (written as `<FILE>.partial` until then).
        #[arg(short, long)]
        output: Option<std::path::PathBuf>,
        /// No progress on stderr.
        #[arg(short, long)]
        quiet: bool,
    },
}

/// The list's columns: id, created, state, attempts, last result, labels.
fn delivery_row(d: &dpb::Delivery) -> [String; 6] {
    let last = match (d.last_status_code, d.last_error_kind.as_str()) {
        (0, "") => "-".to_owned(),
        (0, kind) => kind.to_owned(),
        (code, _) => code.to_string(),
    };
    [
        d.id.clone(),
        d.created_at.clone(),
        delivery_state_name(d.state).to_owned(),
        d.attempt_count.to_string(),
        last,
        labels(d),
    ]
}

/// `test`, `replay of dlv_…`, `replayed 2×`.
fn labels(d: &dpb::Delivery) -> String {
    let mut labels = Vec::new();
    if d.test {
        labels.push("test".to_owned());
    }
    if !d.replay_of.is_empty() {
        labels.push(format!("replay of {}", d.replay_of));
    }
    if d.replay_count > 0 {
        labels.push(format!("replayed {}×", d.replay_count));
    }
    labels.join(", ")
}

/// `id  created  state  attempts  last result  replay label`, for one delivery.
fn delivery_line(d: &dpb::Delivery) -> String {
    let [id, created, state, attempts, last, labels] = delivery_row(d);
    let plural = if d.attempt_count == 1 { " " } else { "s" };
    format!("{id}  {created}  {state:<9}  {attempts:>2} attempt{plural}  {last:<18}  {labels}").trim_end().to_owned()
}

fn attempt_row(a: &dpb::Attempt) -> [String; 6] {
    let result = if a.status_code != 0 { a.status_code.to_string() } else { a.error_kind.clone() };
    [
        format!("#{}", a.number),
        a.started_at.clone(),
        format!("{} ms", a.duration_ms),
        result,
        a.outcome.clone(),
        a.error.clone(),
    ]
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
            test,
            limit,
            page_token,
        } => {
            let page = deliveries(&client)
                .await?
                .list_deliveries(dpb::ListDeliveriesRequest {
                    tenant_id: tenant,
                    endpoint_id: endpoint.clone().unwrap_or_default(),
                    states: state.into_iter().map(|s| dpb::DeliveryState::from(s).into()).collect(),
                    event_type: event_type.unwrap_or_default(),
                    created_after: since.unwrap_or_default(),
                    created_before: until.unwrap_or_default(),
                    replayed,
                    test,
                    page_size: limit.unwrap_or_default(),
                    page_token: page_token.unwrap_or_default(),
                })
                .await
                .map_err(status)?
                .into_inner();
            let mut lines = vec![if page.deliveries.is_empty() {
                "no deliveries".to_owned()
            } else if endpoint.is_some() {
                table(
                    ["DELIVERY", "CREATED", "STATE", "ATTEMPTS", "LAST", "LABELS"],
                    page.deliveries.iter().map(delivery_row),
                )
            } else {
                table(
                    ["DELIVERY", "ENDPOINT", "CREATED", "STATE", "ATTEMPTS", "LAST", "LABELS"],
                    page.deliveries.iter().map(|d| {
                        let [id, created, state, attempts, last, labels] = delivery_row(d);
                        [id, d.endpoint_id.clone(), created, state, attempts, last, labels]
                    }),
                )
            }];
            if !page.next_page_token.is_empty() {
                lines.push(format!("more: --page-token {}", page.next_page_token));
            }
            print(client.json, &page, lines.join("\n"));
        }
        DeliveryCmd::Get { client, tenant, delivery } => {
            let mut d = deliveries(&client)
                .await?
                .get_delivery(dpb::GetDeliveryRequest { tenant_id: tenant, delivery_id: delivery })
                .await
                .map_err(status)?
                .into_inner();
            // Absent, the delivery prints empty, never as `null`.
            let row = d.delivery.get_or_insert_default();
            let attempts = table(
                ["ATTEMPT", "STARTED", "DURATION", "RESULT", "OUTCOME", "ERROR"],
                d.attempts.iter().map(attempt_row),
            );
            let human = format!("{}  {}  {}\n{attempts}", delivery_line(row), row.event_id, row.event_type);
            print(client.json, &d, human);
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
            print(client.json, &r, human);
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
            print(client.json, &json!({"path": shown, "bytes": r.body.len()}), shown.clone());
        }
        DeliveryCmd::Export { client, tenant, endpoint, since, until, output, quiet } => {
            let request = dpb::ExportDeliveriesRequest {
                tenant_id: tenant,
                endpoint_id: endpoint.unwrap_or_default(),
                created_after: since.unwrap_or_default(),
                created_before: until.unwrap_or_default(),
            };
            let stream = deliveries(&client).await?.export_deliveries(request).await.map_err(status)?.into_inner();
            export::run(stream, output.as_deref(), quiet).await?;
        }
        DeliveryCmd::Replay { client, tenant, delivery } => {
            let r = deliveries(&client)
                .await?
                .replay_delivery(dpb::ReplayDeliveryRequest { tenant_id: tenant, delivery_id: delivery })
                .await
                .map_err(status)?
                .into_inner();
            let human = format!("queued {} (replay of {})", r.delivery_id, r.replay_of);
            print(client.json, &r, human);
        }
    }
    Ok(())
}
