//! The parking sweeper's read-back of parked tasks' events, against a real
//! nats-server: many events per batched direct get, each one's own payload
//! whatever order they are asked in, another tenant's events between them
//! skipped, and a deleted one reported gone (its task is then recorded
//! `event_expired`). On a nats-server without batched direct gets (before
//! 2.11; run with `HOOKLINE_NATS_SERVER=/usr/sbin/nats-server` where that
//! is Debian's 2.9) the same read falls back to one request per event.

use async_nats::jetstream::{Context, message::PublishMessage};
use hookline_bus::StreamSettings;
use hookline_delivery::park::EventReader;
use hookline_domain::ids::TenantId;
use hookline_testkit::NatsServer;
use tokio_util::sync::CancellationToken;

async fn publish(js: &Context, subject: &str, n: usize) -> u64 {
    let publish = PublishMessage::build().payload(format!("{{\"n\":{n}}}").into());
    js.send_publish(subject.to_owned(), publish).await.unwrap().await.unwrap().sequence
}

/// Whether the server offers batched direct gets (2.11 and later).
fn batches_offered(client: &async_nats::Client) -> bool {
    let version = client.server_info().version;
    let mut parts = version.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
    (parts.next().unwrap_or(0), parts.next().unwrap_or(0)) >= (2, 11)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parked_tasks_events_are_read_back_in_a_few_batches_each_its_own_and_a_deleted_one_gone() {
    let nats = NatsServer::start().unwrap();
    let client = nats.client().await;
    let js = hookline_bus::jetstream(client.clone());
    let settings = StreamSettings { retention: Default::default(), replicas: None, apply_retention: true };
    hookline_bus::ensure_streams(&js, &settings, &CancellationToken::new()).await.unwrap();
    // 300 events of one tenant, each beside one of another tenant's.
    let mut ours = Vec::new();
    for n in 0..300 {
        ours.push((publish(&js, "hookline.events.acme.customer.updated", n).await, n));
        publish(&js, "hookline.events.other.customer.updated", 1000 + n).await;
    }
    let stream = js.get_stream("HOOKLINE_EVENTS").await.unwrap();
    let deleted = [ours[0].0, ours[150].0, ours[299].0];
    for seq in deleted {
        stream.delete_message(seq).await.unwrap();
    }
    // Asked newest first: the answer is by sequence, not by order asked.
    let wanted: Vec<u64> = ours.iter().rev().map(|(seq, _)| *seq).collect();
    let reader = EventReader::new(&js, stream);
    let tenant = TenantId::parse("acme").unwrap();
    let found = reader.read(&tenant, &wanted).await.unwrap();
    assert_eq!(found.len(), 297, "every event but the deleted ones");
    for (seq, n) in &ours {
        match found.get(seq) {
            Some(payload) => assert_eq!(payload.as_ref(), format!("{{\"n\":{n}}}").as_bytes(), "event at {seq}"),
            None => assert!(deleted.contains(seq), "event {n} at {seq} not read back"),
        }
    }
    let (batches, singles) = reader.requests();
    if batches_offered(&client) {
        assert!(reader.batched());
        // 256 and then the rest; the three deleted ones asked of the leader.
        assert!(batches <= 3, "{batches} batched gets for 300 events");
        assert_eq!(singles, 3, "only the events the batches passed over are asked one by one");
    } else {
        assert!(!reader.batched(), "a server without batches is noticed");
        assert!(
            batches <= 1 && singles >= 297,
            "one by one after the first answer: {batches} batches, {singles} single"
        );
    }
}
