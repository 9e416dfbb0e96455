//! `hookline rejected list <tenant>`: what the NATS intake refused and why
//! (`ListRejectedEvents`), newest first. The group is not called `intake`
//! or `ingest`: a CLI group never shares a word with a service role.

use clap::Subcommand;
use hookline_proto::ingest::v1 as ipb;

use super::{ClientArgs, ingest, print, status, table};

#[derive(Debug, Subcommand)]
pub enum RejectedCmd {
    /// List a tenant's refused intake events, newest first, with the field
    /// and the rule each broke.
    List {
        /// The tenant id the intake subject named (`hookline.intake.<tenant>`).
        tenant: String,
        /// Rejected at or after: RFC 3339, or a duration ago like 2h or 1d.
        #[arg(long, value_parser = super::when::instant)]
        since: Option<String>,
        /// Rejected before: RFC 3339, or a duration ago like 30m.
        #[arg(long, value_parser = super::when::instant)]
        until: Option<String>,
        /// Records per page (1-100, default 20).
        #[arg(long)]
        limit: Option<u32>,
        /// The next-page token a previous list printed.
        #[arg(long)]
        page_token: Option<String>,
    },
}

/// The table's columns: when, the intake sequence, the field, the rule and
/// the payload's size.
fn row(e: &ipb::RejectedEvent) -> [String; 5] {
    let field = if e.field.is_empty() { "-".to_owned() } else { e.field.clone() };
    let size =
        if e.payload_truncated { format!("{} B (truncated)", e.payload_size) } else { format!("{} B", e.payload_size) };
    [e.rejected_at.clone(), e.intake_sequence.to_string(), field, e.rule.clone(), size]
}

pub async fn rejected(args: &ClientArgs, cmd: RejectedCmd) -> anyhow::Result<()> {
    let RejectedCmd::List { tenant, since, until, limit, page_token } = cmd;
    let page = ingest(args)
        .await?
        .list_rejected_events(ipb::ListRejectedEventsRequest {
            tenant_id: tenant,
            rejected_after: since.unwrap_or_default(),
            rejected_before: until.unwrap_or_default(),
            page_size: limit.unwrap_or_default(),
            page_token: page_token.unwrap_or_default(),
        })
        .await
        .map_err(status)?
        .into_inner();
    let mut lines = vec![if page.events.is_empty() {
        "no rejected events".to_owned()
    } else {
        table(["REJECTED", "INTAKE SEQ", "FIELD", "RULE", "PAYLOAD"], page.events.iter().map(row))
    }];
    if !page.next_page_token.is_empty() {
        lines.push(format!("more: --page-token {}", page.next_page_token));
    }
    print(args.json, &page, lines.join("\n"));
    Ok(())
}
