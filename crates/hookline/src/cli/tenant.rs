//! `hookline tenant create|get|set`.

use clap::{Subcommand, ValueEnum};
use hookline_proto::{json::plan_name, subscriptions::v1 as spb};

use super::{ClientArgs, print, status, subscriptions};

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

fn print_tenant(args: &ClientArgs, t: &spb::Tenant) {
    let human = format!(
        "tenant {}  plan {}  webhooks {}  endpoints {}/{}",
        t.id,
        plan_name(t.plan),
        if t.webhooks_enabled { "on" } else { "off" },
        t.endpoint_count,
        t.endpoint_limit
    );
    print(args.json, t, human);
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
