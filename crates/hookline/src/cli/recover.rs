//! `hookline endpoint recover`: replay an endpoint's failed deliveries as
//! a background job in the delivery service, and follow it.

use hookline_proto::delivery::v1 as dpb;

use super::{ClientArgs, POLL, deliveries, print, progress, progress_end, status};

/// `hookline endpoint recover`: start the job, follow it to its end.
pub(super) async fn recover(args: &ClientArgs, tenant: String, endpoint: String, since: String) -> anyhow::Result<()> {
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
    print(args.json, &job, human);
    if job.state == "failed" {
        anyhow::bail!("recover job {} failed: {}", job.id, job.error);
    }
    Ok(())
}
