//! (6) The retry backlog: the slow phase's load without, then beside,
//! `--backlog-retries` deliveries waiting for their next attempt hours
//! ahead in the retry store (HOOKLINE_RETRY), as failing endpoints leave
//! them.
//!
//! How the backlog is made: the bench stores each waiting retry itself, as
//! a worker does when an attempt fails (the task for attempt 2 of one of the
//! model's failing endpoints, due 2 to 3 hours ahead, for events read back
//! from HOOKLINE_EVENTS): by default as this build's workers store it
//! (`hookline.retry.<due second>.ref`, a reference to the event, the tenant
//! and traceparent in headers, no message id); with `--backlog-layout whole`
//! as versions before it did (the whole task with its message id on
//! `hookline.retry.<due second>.<tenant>.<endpoint>`), for the comparison. Making a million of them through
//! failing HTTP attempts costs a million attempts, outcomes and dispatch
//! tasks first, about ten minutes of both cores here; what the phase
//! measures is what the backlog costs while it waits, and the waiting tasks
//! are the same bytes either way.

use std::time::{Duration, Instant};

use anyhow::Context;
use async_nats::jetstream::{self, message::PublishMessage};
use futures_util::{StreamExt, TryStreamExt, stream};
use hookline_domain::{
    delivery::{DispatchTask, TaskRef},
    events::{StoredEvent, Timestamp},
    ids::{DeliveryId, EndpointId, TenantId},
};

use super::{
    BacklogLayout, Scale,
    model::Kind,
    population_run,
    probe::{Cpu, ask, stream_infos},
    receiver::Latency,
};
use crate::{report::Row, stack::rss_mib};

const RETRY_STREAM: &str = "HOOKLINE_RETRY";
/// Events read back from HOOKLINE_EVENTS to wrap the tasks around.
const SAMPLE_EVENTS: u64 = 256;
/// Stores awaited at once while seeding.
const IN_FLIGHT: usize = 1_024;

pub(super) async fn phase(s: &mut Scale) -> anyhow::Result<()> {
    let (n, secs, rate) = (s.args.backlog_retries, s.args.secs, f64::from(s.args.rate));
    println!("(6) retry backlog: {secs} s at {rate} deliveries/s without, then beside {n} waiting retries");
    s.rx.set_latency(Latency::Fixed);
    let keep = s.healthy();
    let (without, ..) = population_run(s, rate, keep).await?;
    let js = jetstream::new(s.nats.clone());
    let (msgs_before, bytes_before) = retry_state(&js).await?;

    let t_seed = Instant::now();
    seed(s, &js, n).await?;
    let seeded = t_seed.elapsed().as_secs_f64();
    let (msgs, bytes) = retry_state(&js).await?;
    let waiting = msgs.saturating_sub(msgs_before);
    let nats_pids: Vec<u32> = s.procs().iter().filter(|p| p.label == "nats-server").map(|p| p.pid).collect();
    let nats_rss = move || nats_pids.iter().map(|&pid| rss_mib(pid).unwrap_or(0.0)).fold(0.0, f64::max);
    let rss_seeded = nats_rss();
    println!("  {waiting} retries stored in {seeded:.1} s; HOOKLINE_RETRY {msgs} msgs, {:.0} MiB", bytes / 1048576.0);
    s.report.push(Row::new(format!("backlog: {waiting} waiting retries stored in"), seeded, "s"));
    s.report.push(Row::new("  backlog: retries stored per second", waiting as f64 / seeded.max(1e-3), "/s"));
    let per_retry = (bytes - bytes_before) / (waiting.max(1) as f64);
    s.report.push(Row::new("backlog: HOOKLINE_RETRY bytes per waiting retry", per_retry, "B"));
    s.report.push(Row::new("backlog: HOOKLINE_RETRY size with the backlog", bytes / 1048576.0, "MiB"));
    if s.args.backlog_pause > 0 {
        println!("  pausing {} s before the run beside the backlog", s.args.backlog_pause);
        tokio::time::sleep(Duration::from_secs(s.args.backlog_pause)).await;
        let row = Row::new(
            format!("backlog: nats-server RSS {} s after storing (beside: once stored)", t_seed.elapsed().as_secs()),
            nats_rss(),
            "MiB",
        );
        s.report.push(row.beside(rss_seeded));
    }

    let procs = s.procs();
    let cpu = Cpu::now(&procs);
    let keep = s.healthy();
    let (with, _, end, _) = population_run(s, rate, keep).await?;
    let note = format!("backlog (with): {}", cpu.since(&procs));
    println!("  {note}");
    s.notes.push(note);
    let ratio = with.rate / without.rate.max(1e-9);
    let row = Row::new(format!("backlog: healthy deliveries/s beside {waiting} waiting retries"), with.rate, "/s");
    s.report.push(row.vs(without.rate).target(">= 0.9 x without", ratio >= 0.9));
    let (w, wo) = (
        crate::report::percentiles(&mut with.receipt.clone()),
        crate::report::percentiles(&mut without.receipt.clone()),
    );
    s.report.push(
        Row::new("backlog: publish -> receipt p99 beside the backlog (beside: without)", w.p99, "ms").beside(wo.p99),
    );
    let (msgs_end, _) = retry_state(&js).await?;
    s.report.push(
        Row::new("backlog: retries still waiting at the end (beside: stored)", msgs_end as f64, "").beside(msgs as f64),
    );
    let reached = limits(&s.nats).await?;
    let text = if reached.is_empty() { "none".to_owned() } else { reached.join("; ") };
    s.notes.push(format!("backlog: stream and consumer limits at 90 % or more: {text}"));
    s.report.push(
        Row::new("backlog: stream or consumer limits at 90 % or more", reached.len() as f64, "")
            .target("0", reached.is_empty()),
    );
    s.resources("backlog", t_seed, end).await?;
    let rss_end = nats_rss();
    s.report
        .push(Row::new("backlog: nats-server RSS once stored (beside: at the end)", rss_seeded, "MiB").beside(rss_end));
    if s.args.backlog_hold > 0 {
        tokio::time::sleep(Duration::from_secs(s.args.backlog_hold)).await;
        let after = t_seed.elapsed().as_secs();
        let row = Row::new(
            format!("backlog: nats-server RSS {after} s after storing (beside: once stored)"),
            nats_rss(),
            "MiB",
        );
        s.report.push(row.beside(rss_seeded));
    }
    // Seeded retries are due hours from now: they leave with the run's
    // nats-server, not through the endpoints.
    s.stack.check_alive()
}

/// HOOKLINE_RETRY's messages and bytes.
async fn retry_state(js: &jetstream::Context) -> anyhow::Result<(u64, f64)> {
    let mut stream = js.get_stream(RETRY_STREAM).await.context("HOOKLINE_RETRY")?;
    let state = &stream.info().await.context("HOOKLINE_RETRY info")?.state;
    Ok((state.messages, state.bytes as f64))
}

/// Store `n` waiting retries for the model's failing endpoints, due
/// between 2 and 3 hours ahead.
async fn seed(s: &Scale, js: &jetstream::Context, n: usize) -> anyhow::Result<()> {
    let failing: Vec<(TenantId, EndpointId)> = s
        .model
        .endpoints
        .iter()
        .zip(&s.ids)
        .filter(|(e, _)| e.kind == Kind::Failing)
        .map(|(e, id)| Ok((TenantId::parse(&s.model.tenants[e.tenant as usize].name)?, EndpointId::parse(id)?)))
        .collect::<anyhow::Result<_>>()?;
    anyhow::ensure!(!failing.is_empty(), "the model has no failing endpoint to leave retries");
    let events = sample_events(js).await?;
    let now = chrono::Utc::now();
    let created = Timestamp::from_utc(now - chrono::Duration::minutes(5));
    let (js, failing, events, layout) = (js.clone(), &failing, &events, s.args.backlog_layout);
    stream::iter(0..n)
        .map(|i| {
            let (tenant, endpoint) = &failing[i % failing.len()];
            let (seq, event) = &events[i % events.len()];
            let due = now + chrono::Duration::seconds(7_200 + (i as i64 * 3_600) / n as i64);
            let task = DispatchTask {
                delivery_id: DeliveryId::generate(),
                created_at: created.clone(),
                endpoint_id: endpoint.clone(),
                event_seq: *seq,
                replay_of: None,
                attempt: 2,
                not_before: Some(Timestamp::from_utc(due)),
                event: StoredEvent { tenant_id: tenant.clone(), ..event.clone() },
            };
            let traceparent = format!("00-{:032x}-{:016x}-01", rand::random::<u128>(), rand::random::<u64>());
            let (subject, publish) = match layout {
                BacklogLayout::Ref => {
                    let payload = serde_json::to_vec(&TaskRef::from(&task)).expect("tasks serialise");
                    let publish = PublishMessage::build()
                        .payload(payload.into())
                        .header("Hookline-Tenant", tenant.as_str())
                        .header("traceparent", traceparent);
                    (format!("hookline.retry.{}.ref", due.timestamp()), publish)
                }
                BacklogLayout::Whole => {
                    let payload = serde_json::to_vec(&task).expect("tasks serialise");
                    let publish = PublishMessage::build()
                        .payload(payload.into())
                        .message_id(task.msg_id())
                        .header("traceparent", traceparent);
                    (format!("hookline.retry.{}.{}.{}", due.timestamp(), tenant.as_str(), endpoint.as_str()), publish)
                }
            };
            let js = js.clone();
            async move { js.send_publish(subject, publish).await?.await.map(|_| ()).context("storing a retry") }
        })
        .buffer_unordered(IN_FLIGHT)
        .try_for_each(|()| async { Ok(()) })
        .await
}

/// Up to [`SAMPLE_EVENTS`] stored events, the latest, with their sequences.
async fn sample_events(js: &jetstream::Context) -> anyhow::Result<Vec<(u64, StoredEvent)>> {
    let mut stream = js.get_stream("HOOKLINE_EVENTS").await.context("HOOKLINE_EVENTS")?;
    let state = stream.info().await?.state.clone();
    let mut events = Vec::new();
    for seq in state.last_sequence.saturating_sub(SAMPLE_EVENTS - 1).max(state.first_sequence)..=state.last_sequence {
        let Ok(msg) = stream.get_raw_message(seq).await else { continue };
        if let Ok(event) = serde_json::from_slice::<StoredEvent>(&msg.payload) {
            events.push((seq, event));
        }
    }
    anyhow::ensure!(!events.is_empty(), "no stored event in HOOKLINE_EVENTS to wrap the retries around");
    Ok(events)
}

/// Streams whose messages or bytes, and consumers whose ack-pending
/// count, are at 90 % or more of a configured limit.
async fn limits(nats: &async_nats::Client) -> anyhow::Result<Vec<String>> {
    let near = |used: f64, limit: f64| limit > 0.0 && used >= 0.9 * limit;
    let mut reached = Vec::new();
    for (name, info) in stream_infos(nats).await? {
        let (config, state) = (&info["config"], &info["state"]);
        for (used, limit, what) in
            [(&state["messages"], &config["max_msgs"], "messages"), (&state["bytes"], &config["max_bytes"], "bytes")]
        {
            let (used, limit) = (used.as_f64().unwrap_or(0.0), limit.as_f64().unwrap_or(-1.0));
            if near(used, limit) {
                reached.push(format!("{name} {what} {used:.0} of {limit:.0}"));
            }
        }
        let list = ask(nats, &format!("$JS.API.CONSUMER.LIST.{name}")).await?;
        for c in list["consumers"].as_array().into_iter().flatten() {
            let used = c["num_ack_pending"].as_f64().unwrap_or(0.0);
            let limit = c["config"]["max_ack_pending"].as_f64().unwrap_or(-1.0);
            if near(used, limit) {
                reached
                    .push(format!("{name}/{} ack pending {used:.0} of {limit:.0}", c["name"].as_str().unwrap_or("?")));
            }
        }
    }
    Ok(reached)
}
