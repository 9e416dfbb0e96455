//! `hookline publish`.

use std::io::Read;

use anyhow::Context as _;
use hookline_proto::ingest::v1 as ipb;
use serde_json::Value;

use super::{ClientArgs, ingest, print, status, table};

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
    let mut c = ingest(args).await?;
    let results = if requests.len() == 1 {
        vec![c.publish(requests.into_iter().next().expect("one")).await.map_err(status)?.into_inner()]
    } else {
        c.publish_batch(ipb::PublishBatchRequest { events: requests }).await.map_err(status)?.into_inner().results
    };
    let human = table(
        ["EVENT", "TYPE", "NOTE"],
        results.iter().map(|r| {
            let note = if r.duplicate { "duplicate: already accepted" } else { "" };
            [r.event_id.clone(), r.event_type.clone(), note.to_owned()]
        }),
    );
    print(args.json, &results, human);
    Ok(())
}
