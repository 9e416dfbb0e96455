//! The retry store (HOOKLINE_RETRY): a retry due later waits there under
//! its due second (a reference to its event), holding no ack-pending slot on the `workers` consumer,
//! and the mover in every delivery process brings it back to
//! HOOKLINE_DISPATCH once that second has passed: after a crash, and with
//! two movers at the same seconds, exactly once.

use std::{
    collections::HashMap,
    time::{Duration, Instant},
};

use hookline_e2e::{Receiver, Reply, eventually};
use hookline_proto::subscriptions::v1::{PayloadLayout, Plan};

use crate::common::*;

/// Subjects of the tasks waiting in HOOKLINE_RETRY.
async fn retry_subjects(js: &async_nats::jetstream::Context) -> Vec<String> {
    stored_messages(js, "HOOKLINE_RETRY").await.into_iter().map(|m| m.subject.to_string()).collect()
}

/// Tasks delivered to the `workers` consumer and not yet acked (the slots
/// a `Nak`ed retry would hold while it waits).
async fn workers_ack_pending(js: &async_nats::jetstream::Context) -> usize {
    let stream = js.get_stream("HOOKLINE_DISPATCH").await.unwrap();
    let mut consumer: async_nats::jetstream::consumer::PullConsumer = stream.get_consumer("workers").await.unwrap();
    consumer.info().await.unwrap().num_ack_pending
}

/// Requests per `webhook-id`, and per id the statuses answered in order.
fn statuses_by_id(rx: &Receiver) -> HashMap<String, Vec<u16>> {
    let mut by_id: HashMap<String, Vec<u16>> = HashMap::new();
    for r in rx.requests() {
        by_id.entry(r.header("webhook-id").unwrap().to_owned()).or_default().push(r.status);
    }
    by_id
}

/// Wait until HOOKLINE_RETRY holds `n` tasks.
async fn retries_waiting(js: &async_nats::jetstream::Context, n: u64, within: Duration) {
    eventually(within, &format!("{n} retries waiting in HOOKLINE_RETRY"), || async {
        (messages_in(js, "HOOKLINE_RETRY").await == n).then_some(())
    })
    .await
    .unwrap();
}

/// After the receiver got `n` requests, nothing more arrives for a while,
/// and every event got exactly one failed attempt and one successful retry.
async fn each_retried_exactly_once(rx: &Receiver, events: usize) {
    rx.wait_for(2 * events, Duration::from_secs(60)).await.unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let by_id = statuses_by_id(rx);
    assert_eq!(by_id.len(), events, "every event arrived");
    let wrong: Vec<_> = by_id.iter().filter(|(_, s)| s.as_slice() != [500, 200]).collect();
    assert!(wrong.is_empty(), "each event once failed, then once retried; not so: {wrong:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_due_later_waits_in_the_retry_store_holds_no_ack_pending_slot_and_is_delivered_when_due() {
    // Attempt 2 comes 1 s after the first (under the threshold: it waits in
    // HOOKLINE_DISPATCH), attempt 3 8 s after the second (the retry store).
    let s = stack_with(&[("HOOKLINE_RETRY_SCHEDULE", "0s,1s,8s"), ("HOOKLINE_RETRY_STORE_AFTER", "3s")]).await;
    let rx = Receiver::with_script(vec![Reply::new(500), Reply::new(500)]).await;
    s.create_tenant("acme", Plan::Professional, true).await;
    let (ep, _) = s.create_endpoint("acme", &rx.url(), &[], PayloadLayout::Envelope).await;
    let js = s.nats.jetstream().await;
    s.publish_json("acme", &fresh("customer.updated")).await;

    // The retry due in about 1 s waits on the workers' consumer, as before.
    rx.wait_for(1, Duration::from_secs(20)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(messages_in(&js, "HOOKLINE_RETRY").await, 0, "a retry due soon is not in the retry store");
    assert_eq!(workers_ack_pending(&js).await, 1, "a retry due soon waits on the workers' consumer");
    rx.wait_for(2, Duration::from_secs(20)).await.unwrap();
    let second_failed = Instant::now();
    retries_waiting(&js, 1, Duration::from_secs(5)).await;
    let subjects = retry_subjects(&js).await;
    let due: u64 = subjects[0].split('.').nth(2).unwrap().parse().unwrap();
    assert_eq!(subjects[0], format!("hookline.retry.{due}.ref"), "one subject per due second, for every endpoint");
    let stored = stored_messages(&js, "HOOKLINE_RETRY").await.remove(0);
    assert_eq!(stored.headers.get("Hookline-Tenant").map(|v| v.as_str()), Some("acme"));
    assert!(stored.headers.get("Nats-Msg-Id").is_none(), "no message id held in the retry store's window");
    let waiting: serde_json::Value = serde_json::from_slice(&stored.payload).unwrap();
    assert_eq!(waiting["endpoint_id"], ep.as_str());
    assert!(waiting.get("event").is_none(), "a reference to the event, not the event: {waiting}");
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    assert!((now + 4..=now + 11).contains(&due), "due second {due} is about 8 s (±20 %) after {now}");
    // While it waits, nothing of it is on the workers' consumer.
    for _ in 0..3 {
        assert_eq!(workers_ack_pending(&js).await, 0, "a waiting retry holds no ack-pending slot");
        assert_eq!(messages_in(&js, "HOOKLINE_DISPATCH").await, 0);
        assert_eq!(rx.count(), 2, "not before it is due");
        tokio::time::sleep(Duration::from_secs(1)).await;
    }

    let got = rx.wait_for(3, Duration::from_secs(20)).await.unwrap();
    let waited = second_failed.elapsed();
    assert!(waited >= Duration::from_millis(6_000), "delivered when due (8 s ± 20 %), not after {waited:?}");
    assert_eq!(got[2].status, 200);
    assert_eq!(got[2].header("webhook-id"), got[0].header("webhook-id"), "the same delivery");
    retries_waiting(&js, 0, Duration::from_secs(5)).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(rx.count(), 3, "delivered once");
    let outcomes = s.outcomes("acme", &ep).await;
    let states: Vec<&str> = outcomes.iter().map(|o| o["state"].as_str().unwrap()).collect();
    assert_eq!(states, ["retrying", "retrying", "succeeded"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_waiting_while_the_delivery_process_is_killed_are_delivered_exactly_once_after_restart() {
    const EVENTS: usize = 30;
    let mut s = stack_with(&[
        ("HOOKLINE_RETRY_SCHEDULE", "0s,4s"),
        ("HOOKLINE_RETRY_STORE_AFTER", "2s"),
        ("HOOKLINE_BREAKER_THRESHOLD", "100000"),
    ])
    .await;
    let rx = Receiver::with_script(vec![Reply::new(500); EVENTS]).await;
    s.create_tenant("acme", Plan::Professional, true).await;
    s.create_endpoint("acme", &rx.url(), &[], PayloadLayout::Envelope).await;
    let js = s.nats.jetstream().await;
    s.publish_batch((0..EVENTS).map(|_| json_request("acme", &fresh("customer.updated"))).collect()).await;
    retries_waiting(&js, EVENTS as u64, Duration::from_secs(20)).await;

    s.hookline.kill9();
    // Every retry comes due while no delivery process runs.
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert_eq!(rx.count(), EVENTS, "nothing retried while delivery was down");
    s.hookline.respawn().await.unwrap();

    each_retried_exactly_once(&rx, EVENTS).await;
    assert_eq!(messages_in(&js, "HOOKLINE_RETRY").await, 0, "the retry store is empty");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_delivery_processes_moving_the_same_seconds_deliver_each_retry_exactly_once() {
    const EVENTS: usize = 200;
    let env = [
        ("HOOKLINE_RETRY_SCHEDULE", "0s,5s"),
        ("HOOKLINE_RETRY_STORE_AFTER", "2s"),
        ("HOOKLINE_BREAKER_THRESHOLD", "100000"),
    ];
    let s = split(&env).await;
    let second = s.another("delivery", &env).spawn().await.unwrap();
    let rx = Receiver::with_script(vec![Reply::new(500); EVENTS]).await;
    s.create_tenant("acme", Plan::Professional, true).await;
    s.create_endpoint("acme", &rx.url(), &[], PayloadLayout::Envelope).await;
    s.publish_batch((0..EVENTS).map(|_| json_request("acme", &fresh("customer.updated"))).collect()).await;

    each_retried_exactly_once(&rx, EVENTS).await;
    let js = s.nats.jetstream().await;
    assert_eq!(messages_in(&js, "HOOKLINE_RETRY").await, 0, "the retry store is empty");
    let mut moved = Vec::new();
    for p in [&s.delivery, &second] {
        let (_, text) = hookline_e2e::http_get(&format!("{}/metrics", p.http_url())).await.unwrap();
        let n: f64 = text
            .lines()
            .find_map(|l| l.strip_prefix("hookline_delivery_retries_moved_total "))
            .expect("the moved counter is exposed")
            .parse()
            .unwrap();
        moved.push(n);
    }
    eprintln!("retries moved by each delivery process (repeats included): {moved:?}");
    assert!(moved.iter().sum::<f64>() >= EVENTS as f64, "every retry was moved: {moved:?}");
}

/// The cost of retries waiting, for BENCHMARKS.md: `HOOKLINE_MEASURE_RETRIES`
/// deliveries (100,000 by default) fail once and wait for a retry two hours
/// away; then nats-server's RSS and the `workers` consumer's ack-pending
/// count are printed. Run it against another build with `HOOKLINE_BIN` to
/// compare (the retry store disabled in effect: a build without it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement: minutes of load; run it by name"]
async fn measure_what_waiting_retries_cost_nats_and_the_workers_consumer() {
    let n: usize = std::env::var("HOOKLINE_MEASURE_RETRIES").ok().and_then(|v| v.parse().ok()).unwrap_or(100_000);
    const ENDPOINTS: usize = 10;
    let s = stack_with(&[
        ("HOOKLINE_RETRY_SCHEDULE", "0s,2h"),
        ("HOOKLINE_BREAKER_THRESHOLD", "100000000"),
        ("HOOKLINE_ENDPOINT_CONCURRENCY", "64"),
        ("HOOKLINE_TENANT_RATE", "0"),
        ("HOOKLINE_LOG", "warn,hookline::serve=info"),
    ])
    .await;
    let pid = s.nats.pid().unwrap();
    let rx = Receiver::start().await;
    rx.set_default(500);
    s.create_tenant("acme", Plan::Enterprise, true).await;
    for _ in 0..ENDPOINTS {
        s.create_endpoint("acme", &rx.url(), &[], PayloadLayout::Envelope).await;
    }
    let js = s.nats.jetstream().await;
    let idle = memory_mib(pid).0;
    let started = Instant::now();
    let events = n.div_ceil(ENDPOINTS);
    let mut ingest = s.hookline.ingest_client().await;
    for chunk in (0..events).collect::<Vec<_>>().chunks(500) {
        let events = chunk.iter().map(|_| json_request("acme", &fresh("customer.updated"))).collect();
        ingest.publish_batch(hookline_proto::ingest::v1::PublishBatchRequest { events }).await.unwrap();
    }
    let deliveries = (events * ENDPOINTS) as u64;
    eventually(Duration::from_secs(1800), "every first attempt recorded", || async {
        (messages_in(&js, "HOOKLINE_OUTCOMES").await >= deliveries).then_some(())
    })
    .await
    .unwrap();
    let attempted = started.elapsed();
    tokio::time::sleep(Duration::from_secs(10)).await;
    // A build without the retry store has no HOOKLINE_RETRY.
    let retry = match js.get_stream("HOOKLINE_RETRY").await {
        Ok(mut stream) => stream.info().await.unwrap().state.messages,
        Err(_) => 0,
    };
    let dispatch = messages_in(&js, "HOOKLINE_DISPATCH").await;
    let ack_pending = workers_ack_pending(&js).await;
    let waiting_rss = memory_mib(pid).0;
    // A minute on: what the waiting costs while nothing else happens.
    tokio::time::sleep(Duration::from_secs(60)).await;
    let later_rss = memory_mib(pid).0;
    let later_ack_pending = workers_ack_pending(&js).await;
    let requests = rx.count();
    eprintln!(
        "waiting retries: {deliveries} deliveries failed once in {attempted:.0?} ({requests} requests); \
         HOOKLINE_RETRY {retry} messages, HOOKLINE_DISPATCH {dispatch}; workers num_ack_pending {ack_pending} \
         (a minute later {later_ack_pending}); nats-server RSS idle {idle:.0} MiB, with the retries waiting \
         {waiting_rss:.0} MiB, a minute later {later_rss:.0} MiB"
    );
    assert!(requests as u64 >= deliveries);
}
