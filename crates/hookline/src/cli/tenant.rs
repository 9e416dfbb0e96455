//! `hookline tenant create|get|set (update)|list|delete|notice-secret`.

use clap::{Subcommand, ValueEnum};
use hookline_proto::{json::plan_name, subscriptions::v1 as spb};

use super::{ClientArgs, print, status, subscriptions, table};

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
        #[command(flatten)]
        contact: ContactArgs,
    },
    /// Show a tenant.
    Get { tenant: String },
    /// List tenants ordered by id, a page at a time (operator only).
    List {
        /// Only tenants whose id contains this text (ignoring case).
        #[arg(long, default_value = "", hide_default_value = true)]
        query: String,
        /// Tenants per page, at most 500 (default 50).
        #[arg(long, default_value_t = 0, hide_default_value = true)]
        page_size: u32,
        /// The `next page:` token a previous `tenant list` printed.
        #[arg(long, default_value = "", hide_default_value = true)]
        page_token: String,
    },
    /// Change a tenant's plan, switch its webhooks on or off, or set its
    /// operational contact.
    #[command(visible_alias = "update")]
    Set {
        tenant: String,
        #[arg(long, value_enum)]
        plan: Option<PlanArg>,
        #[arg(long, value_enum)]
        webhooks: Option<OnOff>,
        #[command(flatten)]
        contact: ContactArgs,
    },
    /// Print the secret that signs the tenant's operational notices (made
    /// when the first operational contact is set).
    NoticeSecret { tenant: String },
    /// Delete a tenant with its endpoints, secrets, API keys, stored and
    /// queued events and delivery log (operator only). Cannot be undone.
    ///
    /// Deleting a deleted tenant again finishes an erasure that was cut
    /// short. The id may be created again afterwards; it starts empty.
    Delete {
        tenant: String,
        /// The tenant id once more, to confirm the deletion.
        #[arg(long, value_name = "TENANT")]
        confirm: String,
    },
}

/// The operational contact: who hears, by e-mail and/or a signed POST, when
/// one of the tenant's endpoints has failed for 50 %, 75 % and 90 % of the
/// auto-disable window (HOOKLINE_AUTO_DISABLE_AFTER) and when it is
/// disabled. Verify the POST's `webhook-signature` with `tenant
/// notice-secret`.
#[derive(Debug, clap::Args)]
pub struct ContactArgs {
    /// E-mail address for operational notices ("" removes it).
    #[arg(long, value_name = "ADDRESS")]
    ops_email: Option<String>,
    /// URL that gets operational notices as signed JSON POSTs, checked as
    /// endpoint URLs are ("" removes it).
    #[arg(long, value_name = "URL")]
    ops_webhook: Option<String>,
}

impl ContactArgs {
    fn is_empty(&self) -> bool {
        self.ops_email.is_none() && self.ops_webhook.is_none()
    }
}

fn tenant_line(t: &spb::Tenant) -> String {
    let mut line = format!(
        "tenant {}  plan {}  webhooks {}  endpoints {}/{}",
        t.id,
        plan_name(t.plan),
        if t.webhooks_enabled { "on" } else { "off" },
        t.endpoint_count,
        t.endpoint_limit
    );
    if !t.operational_email.is_empty() {
        line.push_str(&format!("  ops e-mail {}", t.operational_email));
    }
    if !t.operational_webhook_url.is_empty() {
        line.push_str(&format!("  ops webhook {}", t.operational_webhook_url));
    }
    line
}

fn print_tenant(args: &ClientArgs, t: &spb::Tenant) {
    print(args.json, t, tenant_line(t));
}

/// A table of the page, then how many match and the next page's token.
fn tenant_table(page: &spb::ListTenantsResponse) -> String {
    let rows = page.tenants.iter().map(|t| {
        [
            t.id.clone(),
            plan_name(t.plan).to_owned(),
            if t.webhooks_enabled { "on" } else { "off" }.to_owned(),
            format!("{}/{}", t.endpoint_count, t.endpoint_limit),
        ]
    });
    let mut out = table(["TENANT", "PLAN", "WEBHOOKS", "ENDPOINTS"], rows);
    out.push_str(&format!("\n{} of {} matching", page.tenants.len(), page.total_matching));
    if !page.next_page_token.is_empty() {
        out.push_str(&format!("; next page: --page-token {}", page.next_page_token));
    }
    out
}

pub async fn tenant(args: &ClientArgs, cmd: TenantCmd) -> anyhow::Result<()> {
    let mut c = subscriptions(args).await?;
    let t = match cmd {
        TenantCmd::Create { tenant, plan, webhooks, contact } => c.create_tenant(spb::CreateTenantRequest {
            tenant_id: tenant,
            plan: spb::Plan::from(plan).into(),
            webhooks_enabled: matches!(webhooks, OnOff::On),
            operational_email: contact.ops_email.unwrap_or_default(),
            operational_webhook_url: contact.ops_webhook.unwrap_or_default(),
        }),
        TenantCmd::NoticeSecret { tenant } => {
            let s = c
                .get_tenant_notice_secret(spb::GetTenantNoticeSecretRequest { tenant_id: tenant })
                .await
                .map_err(status)?
                .into_inner();
            print(args.json, &s, s.secret.clone());
            return Ok(());
        }
        TenantCmd::List { query, page_size, page_token } => {
            let page = c
                .list_tenants(spb::ListTenantsRequest { query, page_size, page_token })
                .await
                .map_err(status)?
                .into_inner();
            print(args.json, &page, tenant_table(&page));
            return Ok(());
        }
        TenantCmd::Delete { tenant, confirm } => {
            let d = c
                .delete_tenant(spb::DeleteTenantRequest { tenant_id: tenant, confirm })
                .await
                .map_err(status)?
                .into_inner();
            let human = if d.already_deleted {
                format!("tenant {} was deleted already; erased {} more message(s)", d.tenant_id, d.messages_erased)
            } else {
                format!(
                    "deleted tenant {} with {} endpoint(s); erased {} message(s)",
                    d.tenant_id, d.endpoints, d.messages_erased
                )
            };
            print(args.json, &d, human);
            return Ok(());
        }
        TenantCmd::Get { tenant } => {
            let t = c.get_tenant(spb::GetTenantRequest { tenant_id: tenant }).await.map_err(status)?.into_inner();
            print_tenant(args, &t);
            return Ok(());
        }
        TenantCmd::Set { tenant, plan, webhooks, contact } => {
            if plan.is_none() && webhooks.is_none() && contact.is_empty() {
                anyhow::bail!("nothing to change: give --plan, --webhooks, --ops-email and/or --ops-webhook");
            }
            let t = c
                .update_tenant(spb::UpdateTenantRequest {
                    tenant_id: tenant,
                    plan: plan.map(|p| spb::Plan::from(p).into()),
                    webhooks_enabled: webhooks.map(|w| matches!(w, OnOff::On)),
                    operational_email: contact.ops_email,
                    operational_webhook_url: contact.ops_webhook,
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
