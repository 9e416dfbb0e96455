//! `hookline admin rebuild-projections|projections|reseal|compact-config`.

use clap::Subcommand;
use hookline_proto::{delivery::v1 as dpb, subscriptions::v1 as spb};

use super::{ClientArgs, POLL, deliveries, print, progress, progress_end, status, subscriptions, table};

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
    /// Compact the config stream: give each tenant with a long history one
    /// snapshot of its state and purge the events before it, so services
    /// start faster. Runs by itself too (HOOKLINE_CONFIG_SNAPSHOT_AFTER).
    CompactConfig {
        /// Only tenants with at least this many events since their last
        /// snapshot; 0 compacts every tenant (after a master-key rotation:
        /// no value sealed under a former key is left in the stream).
        #[arg(long, default_value_t = 1)]
        min_events: u32,
    },
}

fn projections_human(p: &dpb::ProjectionStatus) -> String {
    table(
        ["PROJECTOR", "APPLIED", "STREAM", "LAG"],
        p.projectors.iter().map(|s| {
            [s.projector.clone(), s.applied_sequence.to_string(), s.stream_sequence.to_string(), s.lag.to_string()]
        }),
    )
}

pub async fn admin(args: &ClientArgs, cmd: AdminCmd) -> anyhow::Result<()> {
    if let AdminCmd::Reseal = cmd {
        let r = subscriptions(args).await?.reseal_secrets(spb::ResealSecretsRequest {}).await.map_err(status)?;
        let r = r.into_inner();
        print(args.json, &r, format!("re-sealed {} endpoint(s) of {} tenant(s)", r.endpoints, r.tenants));
        return Ok(());
    }
    if let AdminCmd::CompactConfig { min_events } = cmd {
        let mut c = subscriptions(args).await?;
        let r = c.compact_config(spb::CompactConfigRequest { min_events }).await.map_err(status)?.into_inner();
        let failed = if r.failed > 0 { format!(", {} failed (run it again)", r.failed) } else { String::new() };
        print(
            args.json,
            &r,
            format!("compacted {} tenant(s), purged {} config message(s){failed}", r.tenants, r.purged),
        );
        return Ok(());
    }
    let mut c = deliveries(args).await?;
    let mut st = match cmd {
        AdminCmd::Projections => {
            let st = c.get_projection_status(dpb::GetProjectionStatusRequest {}).await.map_err(status)?.into_inner();
            print(args.json, &st.projectors, projections_human(&st));
            return Ok(());
        }
        AdminCmd::RebuildProjections => {
            c.rebuild_projections(dpb::RebuildProjectionsRequest {}).await.map_err(status)?.into_inner()
        }
        AdminCmd::Reseal | AdminCmd::CompactConfig { .. } => unreachable!("handled above"),
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
    print(args.json, &st.projectors, format!("projections rebuilt\n{}", projections_human(&st)));
    Ok(())
}
