//! The delivery engine against real receivers, NATS and Postgres: which
//! answers count as delivered, per-endpoint isolation, parking and rate
//! limits, e-mail endpoints, the SSRF guard, graceful shutdown and scale-out.

use std::{
    collections::HashSet,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use hookline_e2e::{Receiver, eventually};
use hookline_proto::subscriptions::v1::{self as spb, PayloadLayout, Plan};
use serde_json::json;
use tonic::Code;

use crate::common::*;

/// A receiver that accepts connections and never answers; counts how many
/// connections are open at once.
struct BlackHole {
    port: u16,
    open: Arc<AtomicUsize>,
    peak: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl BlackHole {
    async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (open, peak) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let (o, p) = (open.clone(), peak.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut sock, _)) = listener.accept().await else { return };
                let (o, p) = (o.clone(), p.clone());
                tokio::spawn(async move {
                    let now = o.fetch_add(1, Ordering::SeqCst) + 1;
                    p.fetch_max(now, Ordering::SeqCst);
                    let mut buf = [0u8; 4096];
                    // Read and ignore until the client gives up.
                    while let Ok(n) = tokio::io::AsyncReadExt::read(&mut sock, &mut buf).await {
                        if n == 0 {
                            break;
                        }
                    }
                    o.fetch_sub(1, Ordering::SeqCst);
                });
            }
        });
        Self { port, open, peak, task }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/hook", self.port)
    }
}

impl Drop for BlackHole {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Answers the first request `429 Retry-After: 1`, the rest 200; raw HTTP/1.1.
struct RateLimited {
    port: u16,
    times: Arc<std::sync::Mutex<Vec<Instant>>>,
    task: tokio::task::JoinHandle<()>,
}

impl RateLimited {
    async fn start() -> Self {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let times: Arc<std::sync::Mutex<Vec<Instant>>> = Arc::default();
        let t = times.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut sock, _)) = listener.accept().await else { return };
                let t = t.clone();
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 8192];
                    loop {
                        // One request per read cycle: headers, then content-length bytes.
                        let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
                            match sock.read(&mut chunk).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                            }
                            continue;
                        };
                        let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
                        let len: usize = head
                            .lines()
                            .find_map(|l| l.strip_prefix("content-length:"))
                            .and_then(|v| v.trim().parse().ok())
                            .unwrap_or(0);
                        while buf.len() < end + 4 + len {
                            match sock.read(&mut chunk).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                            }
                        }
                        buf.drain(..end + 4 + len);
                        let first = {
                            let mut times = t.lock().unwrap();
                            times.push(Instant::now());
                            times.len() == 1
                        };
                        let reply: &[u8] = if first {
                            b"HTTP/1.1 429 Too Many Requests\r\nretry-after: 1\r\ncontent-length: 0\r\n\r\n"
                        } else {
                            b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n"
                        };
                        if sock.write_all(reply).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        Self { port, times, task }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/hook", self.port)
    }
}

impl Drop for RateLimited {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gone_disables_the_endpoint_and_retry_after_is_honoured() {
    let s = stack_with(&[("HOOKLINE_RETRY_SCHEDULE", "0s,10s,10s")]).await;
    let subs = s.hookline.subscriptions_client().await;
    s.create_tenant("acme", Plan::Professional, true).await;
    let gone = Receiver::start().await;
    gone.set_default(410);
    let (gone_ep, _) = s.create_endpoint("acme", &gone.url(), &["customer.created"], PayloadLayout::Envelope).await;
    s.publish_json("acme", &fresh("customer.created")).await;
    gone.wait_for(1, Duration::from_secs(10)).await.unwrap();
    let ep = disabled(&subs, &gone_ep, Duration::from_secs(10)).await;
    assert!(ep.disabled_reason.contains("410"), "{}", ep.disabled_reason);
    let config = read_subject(&s.nats, "HOOKLINE_CONFIG", "hookline.config.acme").await;
    assert!(config.iter().any(|e| e["type"] == "endpoint.disabled"), "an endpoint.disabled config event");
    s.publish_json("acme", &fresh("customer.created")).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(gone.count(), 1, "no more requests after 410, not even retries");

    // 429 with Retry-After: 1 is retried after about a second, not the scheduled 10 s.
    let limited = RateLimited::start().await;
    s.create_endpoint("acme", &limited.url(), &["customer.updated"], PayloadLayout::Envelope).await;
    s.publish_json("acme", &fresh("customer.updated")).await;
    let times = eventually(Duration::from_secs(8), "two requests", || async {
        let t = limited.times.lock().unwrap().clone();
        Ok((t.len() >= 2).then_some(t))
    })
    .await
    .unwrap();
    let gap = times[1] - times[0];
    assert!(gap >= Duration::from_millis(900) && gap < Duration::from_secs(5), "retried after {gap:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_black_holed_endpoint_holds_only_its_cap_and_cannot_slow_the_others() {
    let s = stack_with(&[
        ("HOOKLINE_REQUEST_TIMEOUT", "3s"),
        ("HOOKLINE_ACK_WAIT", "10s"),
        ("HOOKLINE_ENDPOINT_CONCURRENCY", "4"),
        ("HOOKLINE_DELIVERY_CONCURRENCY", "16"),
        ("HOOKLINE_BREAKER_THRESHOLD", "4"),
        ("HOOKLINE_BREAKER_COOLDOWN", "60s"),
        ("HOOKLINE_BREAKER_FIRST_COOLDOWN", "60s"),
    ])
    .await;
    s.create_tenant("acme", Plan::Professional, true).await;
    let hole = BlackHole::start().await;
    let healthy = Receiver::start().await;
    s.create_endpoint("acme", &hole.url(), &[], PayloadLayout::Envelope).await;
    s.create_endpoint("acme", &healthy.url(), &[], PayloadLayout::Envelope).await;
    let started = Instant::now();
    let events = (0..100).map(|_| json_request("acme", &fresh("customer.updated"))).collect();
    s.publish_batch(events).await;
    healthy.wait_for(100, Duration::from_secs(20)).await.unwrap();
    let took = started.elapsed();
    assert!(took < Duration::from_secs(10), "healthy deliveries took {took:?} beside a black hole");
    // Slow start: no answer yet, so one attempt at a time, not its cap of 4.
    assert_eq!(hole.peak.load(Ordering::SeqCst), 1, "black hole held more than one slot");
    // After 4 timeouts, one after the other, the breaker is open: no new
    // connections for a while.
    eventually(Duration::from_secs(25), "the breaker opened", || async {
        s.hookline.log_contents().contains("circuit breaker opened").then_some(())
    })
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(hole.open.load(Ordering::SeqCst), 0, "no attempts while the breaker is open");
    // The hole's tasks wait in HOOKLINE_PARKED (100 first attempts, less the
    // 4 made, plus those 4's retries), not cycling through the workers.
    let js = s.nats.jetstream().await;
    let parked = eventually(Duration::from_secs(10), "the black hole's tasks parked", || async {
        let n = parked_tasks(&js).await;
        (n == 100).then_some(n)
    })
    .await
    .unwrap();
    assert_eq!(parked, 100);
    assert_eq!(messages_in(&js, "HOOKLINE_DISPATCH").await, 0, "nothing left cycling through the workers");
    // Fan-out parks in batches, so fewer messages than tasks are stored;
    // the gauge shows the stored messages.
    let stored = messages_in(&js, "HOOKLINE_PARKED").await;
    assert!((1..=100).contains(&stored), "{stored} parked messages");
    // The gauge follows the sweeper's rounds.
    let metrics = eventually(Duration::from_secs(5), "the parked gauge shows them", || async {
        let metrics = hookline_e2e::http_get(&format!("{}/metrics", s.hookline.http_url())).await.unwrap().1;
        metrics.contains(&format!("hookline_delivery_parked_tasks {stored}\n")).then_some(metrics)
    })
    .await
    .unwrap();
    // The healthy endpoint's first attempts were made by fan-out itself, at least while it had free slots.
    let direct: f64 = metric(&metrics, "hookline_delivery_direct_attempts_total").unwrap();
    assert!(
        (1.0..=104.0).contains(&direct),
        "{direct} first attempts made by fan-out (100 healthy, at most 4 to the hole)"
    );
}

/// Black holes beside a healthy endpoint, with fewer attempt permits
/// (`HOOKLINE_DELIVERY_CONCURRENCY`) than the holes' caps add up to: each
/// hole holds one permit while its attempt waits out the request timeout
/// (slow start: one slot until an answer), and once they have gone
/// unanswered they use permits of their own, so the healthy endpoint
/// keeps getting every event within moments of its publication.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn black_holes_take_one_permit_each_and_leave_the_rest_to_an_endpoint_that_answers() {
    let s = stack_with(&[
        ("HOOKLINE_REQUEST_TIMEOUT", "4s"),
        ("HOOKLINE_ACK_WAIT", "10s"),
        ("HOOKLINE_ENDPOINT_CONCURRENCY", "4"),
        // 8 holes x 4 slots would be twice the permits.
        ("HOOKLINE_DELIVERY_CONCURRENCY", "16"),
    ])
    .await;
    s.create_tenant("acme", Plan::Enterprise, true).await;
    let hole = BlackHole::start().await;
    let healthy = Receiver::start().await;
    for i in 0..8 {
        s.create_endpoint("acme", &format!("{}{i}", hole.url()), &[], PayloadLayout::Envelope).await;
    }
    s.create_endpoint("acme", &healthy.url(), &[], PayloadLayout::Envelope).await;
    // An event every 150 ms for 9 s: past the holes' first timeouts and
    // their retries.
    let mut published = std::collections::HashMap::new();
    let n = 60;
    for _ in 0..n {
        let id = s.publish(json_request("acme", &fresh("customer.updated"))).await.event_id;
        published.insert(id, Instant::now());
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    let got = healthy.wait_for(n, Duration::from_secs(30)).await.unwrap();
    let mut late: Vec<Duration> =
        got.iter().map(|r| r.received_at.duration_since(published[r.header("webhook-id").unwrap()])).collect();
    late.sort();
    let slowest = *late.last().unwrap();
    assert!(slowest < Duration::from_secs(1), "healthy deliveries came this long after publication: {late:?}");
    let peak = hole.peak.load(Ordering::SeqCst);
    assert!(peak <= 8, "the 8 holes held {peak} attempts at once, more than one each");
    let metrics = hookline_e2e::http_get(&format!("{}/metrics", s.hookline.http_url())).await.unwrap().1;
    let unanswered: f64 =
        metric(&metrics, "hookline_delivery_deferrals_total{reason=\"endpoint_unanswered\"}").unwrap_or(0.0);
    assert!(unanswered > 0.0, "once unanswered, the holes' tasks were parked for want of the share:\n{metrics}");
}

/// A per-endpoint rate limit: 60 events to an endpoint limited to 5 a
/// second arrive spread out (never more than the limit plus its one-second
/// burst in any second), every one of them, each once; what could not wait
/// was parked in JetStream and came back at the rate. Another endpoint of
/// the same tenant, without a limit, gets its 60 at once. The limit is shown
/// by the API and can be lifted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rate_limited_endpoint_gets_its_events_spaced_and_none_lost() {
    let s = stack().await;
    let mut subs = s.hookline.subscriptions_client().await;
    s.create_tenant("acme", Plan::Professional, true).await;
    let (limited, free) = (Receiver::start().await, Receiver::start().await);
    let created = subs
        .create_endpoint(spb::CreateEndpointRequest {
            tenant_id: "acme".into(),
            url: limited.url(),
            rate_limit: 5,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(created.rate_limit, 5);
    s.create_endpoint("acme", &free.url(), &[], PayloadLayout::Envelope).await;
    let bad = subs
        .create_endpoint(spb::CreateEndpointRequest {
            tenant_id: "acme".into(),
            url: free.url(),
            rate_limit: 10_001,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(bad.code(), Code::InvalidArgument);
    assert!(bad.message().contains("rate_limit") && bad.message().contains("at most 10000"), "{}", bad.message());

    let events = (0..60).map(|_| json_request("acme", &fresh("customer.updated"))).collect();
    s.publish_batch(events).await;
    free.wait_for(60, Duration::from_secs(20)).await.unwrap();
    let ids = every_event_delivered(&limited, 60).await;
    assert_eq!(ids.len(), 60, "each event once");
    let arrivals: Vec<Instant> = limited.requests().iter().map(|r| r.received_at).collect();
    let span = arrivals[59] - arrivals[0];
    assert!(span >= Duration::from_secs(9), "60 at 5/s after a burst of 5 take 11 s, not {span:?}");
    let busiest = arrivals
        .iter()
        .map(|start| arrivals.iter().filter(|t| **t >= *start && **t - *start < Duration::from_secs(1)).count())
        .max()
        .unwrap();
    assert!(busiest <= 12, "{busiest} arrivals within one second at 5/s (burst 5)");
    let metrics = hookline_e2e::http_get(&format!("{}/metrics", s.hookline.http_url())).await.unwrap().1;
    let parked: f64 = metric(&metrics, "hookline_delivery_deferrals_total{reason=\"rate_limited\"}").unwrap();
    assert!(parked >= 1.0, "tasks that could not wait were parked: {parked}");

    // Lifted: the next events go out at once.
    let lifted = subs
        .update_endpoint(spb::UpdateEndpointRequest {
            tenant_id: "acme".into(),
            endpoint_id: created.id.clone(),
            rate_limit: Some(0),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(lifted.rate_limit, 0);
    let started = Instant::now();
    let events = (0..30).map(|_| json_request("acme", &fresh("customer.updated"))).collect();
    s.publish_batch(events).await;
    every_event_delivered(&limited, 90).await;
    assert!(started.elapsed() < Duration::from_secs(4), "no limit any more: {:?}", started.elapsed());
}

/// Parked tasks are in JetStream, not in the process: after a kill -9 the
/// next process finds them and delivers every one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parked_tasks_survive_a_crash_of_the_delivery_process() {
    let mut s = stack_with(&[
        ("HOOKLINE_BREAKER_THRESHOLD", "3"),
        ("HOOKLINE_BREAKER_COOLDOWN", "60s"),
        ("HOOKLINE_BREAKER_FIRST_COOLDOWN", "60s"),
        ("HOOKLINE_DELIVERY_CONCURRENCY", "16"),
        ("HOOKLINE_ENDPOINT_CONCURRENCY", "4"),
    ])
    .await;
    let down = failing_endpoint_with_parked_tasks(&s, 100, 95).await;
    s.hookline.kill9();
    down.set_default(200);
    s.hookline.respawn().await.unwrap();
    let delivered = every_event_delivered(&down, 100).await;
    // A kill -9 can land between a task's parked copy being stored and its
    // dispatch copy being acked: that task then exists twice. At most the
    // tasks in hand at the kill (HOOKLINE_DELIVERY_CONCURRENCY) can repeat.
    let duplicates = delivered.len() - 100;
    assert!(duplicates <= 16, "{duplicates} duplicates beyond the in-flight window of 16");
    parking_lot_empties(&s).await;
}

/// The `webhook-id`s a receiver answered with 200, in arrival order.
fn delivered_ids(rx: &Receiver) -> Vec<String> {
    rx.requests().iter().filter(|r| r.status == 200).filter_map(|r| r.header("webhook-id").map(str::to_owned)).collect()
}

/// Wait (30 s at most) until `rx` has answered 200 to `n` distinct events;
/// returns every id it answered 200 to, repeats included.
async fn every_event_delivered(rx: &Receiver, n: usize) -> Vec<String> {
    eventually(Duration::from_secs(30), "every event delivered", || async {
        let ok = delivered_ids(rx);
        (ok.iter().collect::<HashSet<_>>().len() == n).then_some(ok)
    })
    .await
    .unwrap()
}

/// Wait (10 s at most) until HOOKLINE_PARKED is empty.
async fn parking_lot_empties(s: &Stack) {
    let js = s.nats.jetstream().await;
    eventually(Duration::from_secs(10), "the parking lot empty", || async {
        (messages_in(&js, "HOOKLINE_PARKED").await == 0).then_some(())
    })
    .await
    .unwrap();
}

/// A tenant whose one endpoint answers 500, and `n` events published to it,
/// waited for until at least `parked` tasks sit in HOOKLINE_PARKED.
async fn failing_endpoint_with_parked_tasks(s: &Stack, n: usize, parked: u64) -> Receiver {
    s.create_tenant("acme", Plan::Professional, true).await;
    let down = Receiver::start().await;
    down.set_default(500);
    s.create_endpoint("acme", &down.url(), &[], PayloadLayout::Envelope).await;
    let events = (0..n).map(|_| json_request("acme", &fresh("customer.updated"))).collect();
    s.publish_batch(events).await;
    let js = s.nats.jetstream().await;
    eventually(Duration::from_secs(20), "tasks parked behind the open breaker", || async {
        (parked_tasks(&js).await >= parked).then_some(())
    })
    .await
    .unwrap();
    down
}

/// An endpoint's cap of 4, a breaker that opens after 3 failures and probes
/// every 2 s, retries a second apart: a failing endpoint parks its tasks
/// within moments, and a recovered one drains them within seconds.
const QUICK_BREAKER: [(&str, &str); 4] = [
    ("HOOKLINE_ENDPOINT_CONCURRENCY", "4"),
    ("HOOKLINE_BREAKER_THRESHOLD", "3"),
    ("HOOKLINE_BREAKER_COOLDOWN", "2s"),
    ("HOOKLINE_RETRY_SCHEDULE", "0s,1s,1s,1s,1s,1s,1s,1s,1s,1s"),
];

/// The endpoint of [`failing_endpoint_with_parked_tasks`] (300 events)
/// answers again: each event arrives once and the parking lot empties.
/// Returns how many tasks HOOKLINE_DISPATCH stored meanwhile.
async fn recovers_with_its_300_events_delivered_once(s: &Stack, down: &Receiver) -> u64 {
    let js = s.nats.jetstream().await;
    let dispatched_before = stored_ever(&js, "HOOKLINE_DISPATCH").await;
    down.set_default(200);
    every_event_delivered(down, 300).await;
    assert_eq!(delivered_ids(down).len(), 300, "no event delivered twice");
    parking_lot_empties(s).await;
    stored_ever(&js, "HOOKLINE_DISPATCH").await - dispatched_before
}

/// The header of a batch of tasks fan-out parked: how many it holds.
const PARKED_BATCH_HEADER: &str = "Hookline-Parked-Tasks";

/// Tasks waiting in HOOKLINE_PARKED: a batch that fan-out parked counts
/// its tasks (header `Hookline-Parked-Tasks`).
async fn parked_tasks(js: &async_nats::jetstream::Context) -> u64 {
    let batch = |m: &async_nats::jetstream::message::StreamMessage| {
        m.headers.get(PARKED_BATCH_HEADER).and_then(|v| v.as_str().parse().ok()).unwrap_or(1)
    };
    stored_messages(js, "HOOKLINE_PARKED").await.iter().map(batch).sum()
}

/// The payloads of the batches fan-out parked in HOOKLINE_PARKED (header
/// `Hookline-Parked-Tasks`). A task a worker took from HOOKLINE_DISPATCH
/// after the breaker opened is moved there whole, event and all, as one
/// message without that header: which tasks reach a worker first is timing.
async fn fanout_parked_batches(js: &async_nats::jetstream::Context) -> Vec<String> {
    stored_messages(js, "HOOKLINE_PARKED")
        .await
        .into_iter()
        .filter(|m| m.headers.get(PARKED_BATCH_HEADER).is_some())
        .map(|m| String::from_utf8(m.payload.to_vec()).unwrap())
        .collect()
}

/// A task parked longer than its event is kept (archived, or purged by an
/// operator) cannot be sent: it ends `failed` with error kind
/// `event_expired`, recorded in the log, and the parking lot still empties.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_parked_task_whose_event_is_gone_ends_failed_as_event_expired() {
    let s = stack_with(&[
        ("HOOKLINE_ENDPOINT_CONCURRENCY", "4"),
        ("HOOKLINE_BREAKER_THRESHOLD", "3"),
        ("HOOKLINE_BREAKER_COOLDOWN", "1s"),
    ])
    .await;
    let down = failing_endpoint_with_parked_tasks(&s, 50, 40).await;
    let js = s.nats.jetstream().await;
    js.get_stream("HOOKLINE_EVENTS").await.unwrap().purge().await.unwrap();
    let before = down.count();
    down.set_default(200);
    parking_lot_empties(&s).await;
    // Only tasks that were in the workers' hands (whole, not parked) can
    // still arrive. They are counted by delivery, not by request: one whose
    // attempt was in flight when the receiver turned healthy is answered 500
    // and sent again.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let sent = down.requests()[before..]
        .iter()
        .map(|r| r.header("webhook-id").unwrap_or_default().to_owned())
        .collect::<std::collections::HashSet<_>>()
        .len();
    assert!(sent <= 10, "{sent} parked tasks sent although their events are gone");
    let outcomes = read_subject(&s.nats, "HOOKLINE_OUTCOMES", "hookline.outcomes.acme.>").await;
    let expired = outcomes.iter().filter(|o| o["error_kind"] == "event_expired" && o["state"] == "failed").count();
    assert!(expired >= 40 - sent, "{expired} outcomes event_expired for at least {} parked tasks", 40 - sent);
}

/// A disabled endpoint's parked tasks are recorded as dropped where they
/// lie, as the workers record a disabled endpoint's task: nothing is sent,
/// every delivery ends in the log, and none of their events is read back
/// from HOOKLINE_EVENTS (an endpoint disabled after failing for days may
/// have a million parked, and reading each back only to drop it fills
/// nats-server's block cache).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disabled_endpoints_parked_tasks_end_dropped_without_their_events_read_back() {
    let s = stack_with(&[
        ("HOOKLINE_ENDPOINT_CONCURRENCY", "4"),
        ("HOOKLINE_BREAKER_THRESHOLD", "3"),
        ("HOOKLINE_BREAKER_COOLDOWN", "60s"),
        ("HOOKLINE_BREAKER_FIRST_COOLDOWN", "60s"),
    ])
    .await;
    let (n, parked) = (200, 190);
    let down = failing_endpoint_with_parked_tasks(&s, n, parked).await;
    let mut subs = s.hookline.subscriptions_client().await;
    let listed = subs.list_endpoints(spb::ListEndpointsRequest { tenant_id: "acme".into() }).await.unwrap();
    let ep = listed.into_inner().endpoints[0].id.clone();
    let sent_before = down.count();
    subs.update_endpoint(spb::UpdateEndpointRequest {
        tenant_id: "acme".into(),
        endpoint_id: ep,
        enabled: Some(false),
        ..Default::default()
    })
    .await
    .unwrap();
    parking_lot_empties(&s).await;
    let outcomes = eventually(Duration::from_secs(10), "a dropped outcome for every parked task", || async {
        let outcomes = read_subject(&s.nats, "HOOKLINE_OUTCOMES", "hookline.outcomes.acme.>").await;
        let dropped = outcomes
            .iter()
            .filter(|o| o["state"] == "dropped" && o["error_kind"] == "endpoint_unavailable")
            .filter(|o| o["error"] == "endpoint is disabled")
            .count();
        (dropped as u64 >= parked).then_some(outcomes)
    })
    .await
    .unwrap();
    assert!(outcomes.iter().all(|o| o["event_type"] == "customer.updated"), "the parked task's type is recorded");
    assert_eq!(down.count(), sent_before, "nothing is sent to a disabled endpoint");
    let metrics = hookline_e2e::http_get(&format!("{}/metrics", s.hookline.http_url())).await.unwrap().1;
    let reads: f64 = metrics
        .lines()
        .filter(|l| l.starts_with("hookline_delivery_parked_event_reads_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert_eq!(reads, 0.0, "no parked task's event was read back:\n{metrics}");
}

/// With a short archive age, events expire while their endpoint fails:
/// every delivery, whether retrying (the task carries the event) or parked
/// (the event is read back from the stream), ends `failed` with error kind
/// `event_expired` in the delivery log; none stays silently unfinished.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deliveries_whose_events_expire_while_the_endpoint_fails_end_failed_in_the_log() {
    use hookline_proto::delivery::v1 as dpb;
    let s = stack_with(&[
        ("HOOKLINE_ARCHIVE_AFTER", "4s"),
        ("HOOKLINE_ARCHIVE_INTERVAL", "1h"),
        ("HOOKLINE_RETRY_SCHEDULE", "0s,1s,1s,1s,1s,1s,1s,1s,1s,1s,1s,1s"),
        ("HOOKLINE_ENDPOINT_CONCURRENCY", "4"),
        ("HOOKLINE_BREAKER_THRESHOLD", "3"),
        ("HOOKLINE_BREAKER_COOLDOWN", "1s"),
    ])
    .await;
    let n = 30;
    let down = failing_endpoint_with_parked_tasks(&s, n, 1).await;
    let mut subs = s.hookline.subscriptions_client().await;
    let listed = subs.list_endpoints(spb::ListEndpointsRequest { tenant_id: "acme".into() }).await.unwrap();
    let ep = listed.into_inner().endpoints[0].id.clone();
    let mut log = s.delivery_client().await;
    let rows = eventually(Duration::from_secs(40), "every delivery failed as event_expired", || {
        let (mut log, ep) = (log.clone(), ep.clone());
        async move {
            let rows = log
                .list_deliveries(dpb::ListDeliveriesRequest {
                    tenant_id: "acme".into(),
                    endpoint_id: ep,
                    page_size: 100,
                    ..Default::default()
                })
                .await?
                .into_inner()
                .deliveries;
            let done = rows.iter().filter(|d| d.state == dpb::DeliveryState::Failed as i32).count();
            Ok((done == n).then_some(rows))
        }
    })
    .await
    .unwrap();
    let expired = rows.iter().filter(|d| d.last_error_kind == "event_expired").count();
    assert_eq!(expired, n, "every delivery ended as event_expired: {rows:?}");
    // Nothing is sent once the events are gone.
    let sent = down.count();
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(down.count(), sent, "attempts after every delivery ended");
    let _ = &mut log;
}

/// An endpoint that fails until its breaker opens has its tasks parked;
/// once it answers again, the probe closes the breaker and every parked task
/// is delivered, once, by a drain that makes the attempts itself: the
/// tasks do not pass through HOOKLINE_DISPATCH on their way back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parked_tasks_are_delivered_once_the_endpoint_recovers() {
    let s = stack_with(&QUICK_BREAKER).await;
    let down = failing_endpoint_with_parked_tasks(&s, 300, 280).await;
    // Fan-out parks tasks without their events: those stay in HOOKLINE_EVENTS.
    let js = s.nats.jetstream().await;
    let batches = fanout_parked_batches(&js).await;
    assert!(batches.iter().any(|p| p.lines().count() > 1), "fan-out parked tasks in batches");
    assert!(batches.iter().all(|p| !p.contains(r#""event":"#)), "a task fan-out parked carries no event");
    let failed_while_down = down.count();
    // The breaker opens after 3 (a few more were in flight); then one probe per 2 s cooldown.
    assert!(failed_while_down < 30, "{failed_while_down} attempts against an open breaker");
    let recovered = Instant::now();
    let dispatched = recovers_with_its_300_events_delivered_once(&s, &down).await;
    let drained_in = recovered.elapsed();
    assert!(drained_in < Duration::from_secs(20), "the backlog took {drained_in:?} to drain");
    // The probe goes through the workers; the drained tasks (a few handed
    // back busy aside) go straight into the endpoint's slots.
    assert!(dispatched < 40, "{dispatched} of the 280+ drained tasks passed through HOOKLINE_DISPATCH");
    // The parked tasks' events came back in batches, not one request each.
    let metrics = hookline_e2e::http_get(&format!("{}/metrics", s.hookline.http_url())).await.unwrap().1;
    let reads = |how: &str| {
        metric(&metrics, &format!("hookline_delivery_parked_event_reads_total{{how=\"{how}\"}}")).unwrap_or(0.0)
    };
    let (batches, singles) = (reads("batch"), reads("single"));
    assert!(
        batches >= 1.0 && batches + singles <= 60.0,
        "{batches} batched and {singles} single reads for 280+ parked tasks"
    );
}

/// A drain holds at most `HOOKLINE_DELIVERY_CONCURRENCY` tasks (each with
/// its event) in the process, however many endpoints recover at once: past
/// those places, its tasks go through HOOKLINE_DISPATCH and the workers as
/// before, and each is still delivered once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drain_past_the_process_places_sends_the_rest_through_the_workers_and_delivers_each_once() {
    let s = stack_with(&[QUICK_BREAKER.as_slice(), &[("HOOKLINE_DELIVERY_CONCURRENCY", "4")]].concat()).await;
    let down = failing_endpoint_with_parked_tasks(&s, 300, 280).await;
    let dispatched = recovers_with_its_300_events_delivered_once(&s, &down).await;
    assert!(dispatched >= 40, "only {dispatched} drained tasks went through HOOKLINE_DISPATCH with 4 places");
}

/// A drained task the recovered endpoint's slots do not take in time (new
/// events queue there too) goes to HOOKLINE_DISPATCH under the move's
/// message id, never its own: here fan-out stored every task there under
/// its own id (the endpoint answered too slowly for fan-out to attempt it)
/// before the workers parked them whole behind the open breaker, and a
/// second copy under that id within the duplicate window would be dropped
/// and its event never delivered. With the task's own id this test loses
/// events.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drained_task_handed_back_busy_after_fan_out_stored_it_for_the_workers_is_delivered_once() {
    let s = stack_with(&[
        ("HOOKLINE_ENDPOINT_CONCURRENCY", "1"),
        ("HOOKLINE_BREAKER_THRESHOLD", "3"),
        ("HOOKLINE_BREAKER_COOLDOWN", "1s"),
        ("HOOKLINE_RETRY_SCHEDULE", "0s,1s,1s,1s,1s,1s,1s,1s,1s,1s"),
    ])
    .await;
    s.create_tenant("acme", Plan::Professional, true).await;
    let down = Receiver::start().await;
    // Slower than fan-out's own attempts allow (250 ms), failing.
    down.set_delay(Duration::from_millis(300));
    down.set_default(500);
    s.create_endpoint("acme", &down.url(), &[], PayloadLayout::Envelope).await;
    let event = || json_request("acme", &fresh("customer.updated"));
    s.publish_batch(vec![event()]).await;
    down.wait_for(1, Duration::from_secs(10)).await.unwrap();
    // Its slot free again: fan-out stores the rest for the workers.
    tokio::time::sleep(Duration::from_millis(400)).await;
    let n = 13;
    s.publish_batch((1..n).map(|_| event()).collect()).await;
    let js = s.nats.jetstream().await;
    eventually(Duration::from_secs(30), "tasks from HOOKLINE_DISPATCH parked whole", || {
        let js = js.clone();
        async move {
            let parked = stored_messages(&js, "HOOKLINE_PARKED").await;
            let whole = parked.iter().filter(|m| m.headers.get(PARKED_BATCH_HEADER).is_none()).count();
            (whole >= n - 5).then_some(())
        }
    })
    .await
    .unwrap();
    // Answering again, in 100 ms, while new events keep its one slot's
    // queue longer than the 0.5 s a drained task waits in it: the drain
    // hands tasks back busy.
    down.set_delay(Duration::from_millis(100));
    down.set_default(200);
    let more = 48;
    for _ in 0..4 {
        s.publish_batch((0..more / 4).map(|_| event()).collect()).await;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    eventually(Duration::from_secs(60), "every event delivered", || async {
        (delivered_ids(&down).iter().collect::<HashSet<_>>().len() == n + more).then_some(())
    })
    .await
    .unwrap();
    assert_eq!(delivered_ids(&down).len(), n + more, "no event delivered twice");
    parking_lot_empties(&s).await;
    let metrics = hookline_e2e::http_get(&format!("{}/metrics", s.hookline.http_url())).await.unwrap().1;
    let handed_back: f64 = metric(&metrics, "hookline_delivery_drained_total{how=\"handed_back\"}").unwrap_or(0.0);
    assert!(handed_back >= 1.0, "no drained task was handed back, so this test showed nothing:\n{metrics}");
}

/// An endpoint failing behind an open breaker keeps no consumer on
/// HOOKLINE_PARKED between its probes: one is made when the sweeper moves
/// a task for a probe and goes a few seconds later. Endpoints failing for
/// days would otherwise hold one each, in nats-server's memory and against
/// its limit of consumers per stream. Once the endpoint answers again, its
/// backlog drains through a consumer made for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_endpoint_keeps_no_parked_consumer_between_its_probes_and_drains_once_it_recovers() {
    let s = stack_with(&[
        ("HOOKLINE_ENDPOINT_CONCURRENCY", "4"),
        ("HOOKLINE_BREAKER_THRESHOLD", "3"),
        ("HOOKLINE_BREAKER_COOLDOWN", "30s"),
        ("HOOKLINE_BREAKER_FIRST_COOLDOWN", "1s"),
        ("HOOKLINE_RETRY_SCHEDULE", "0s,1s,1s,1s,1s,1s,1s,1s,1s,1s"),
    ])
    .await;
    let down = failing_endpoint_with_parked_tasks(&s, 100, 90).await;
    let js = s.nats.jetstream().await;
    let consumers = || async {
        let mut parked = js.get_stream("HOOKLINE_PARKED").await.unwrap();
        parked.info().await.unwrap().state.consumer_count
    };
    // Probes after 1, 2, 4, 8 and 16 s of cooldown; each one's consumer
    // goes about 5 s after it, so the longer cooldowns pass without one.
    let (probes, seen_one) = (std::cell::Cell::new(down.count()), std::cell::Cell::new(false));
    eventually(Duration::from_secs(40), "a probe's consumer, then none while tasks stay parked", || async {
        let (now, attempts) = (consumers().await, down.count());
        seen_one.set(seen_one.get() || now > 0);
        let probing = attempts > probes.replace(attempts);
        (seen_one.get() && !probing && now == 0 && parked_tasks(&js).await >= 80).then_some(())
    })
    .await
    .unwrap();
    down.set_default(200);
    every_event_delivered(&down, 100).await;
    parking_lot_empties(&s).await;
    eventually(Duration::from_secs(10), "no consumer left once drained", || async {
        (consumers().await == 0).then_some(())
    })
    .await
    .unwrap();
}

/// The breaker's cooldown starts short and backs off: an endpoint that
/// comes back after a few seconds down is found by a probe within about as
/// long, and its parked backlog drains at its cap, long before the longest
/// cooldown (60 s here) would have let a probe through; while it was down,
/// the backed-off probes cost only a few attempts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recovered_endpoint_is_caught_up_without_waiting_the_longest_breaker_cooldown() {
    let s = stack_with(&[
        ("HOOKLINE_ENDPOINT_CONCURRENCY", "4"),
        ("HOOKLINE_BREAKER_THRESHOLD", "3"),
        ("HOOKLINE_BREAKER_COOLDOWN", "60s"),
        ("HOOKLINE_BREAKER_FIRST_COOLDOWN", "500ms"),
        ("HOOKLINE_RETRY_SCHEDULE", "0s,1s,1s,1s,1s,1s,1s,1s,1s,1s"),
    ])
    .await;
    let down = failing_endpoint_with_parked_tasks(&s, 300, 280).await;
    let parked_at = down.count();
    // Probes after 0.5, 1, 2 and 4 s of cooldown, and no more.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let failed_while_down = down.count();
    assert!(failed_while_down > parked_at, "a probe within the first cooldowns: {parked_at} then {failed_while_down}");
    assert!(failed_while_down < 30, "{failed_while_down} attempts against an open breaker");
    down.set_default(200);
    let recovered = Instant::now();
    every_event_delivered(&down, 300).await;
    let drained_in = recovered.elapsed();
    assert!(drained_in < Duration::from_secs(15), "caught up {drained_in:?} after it came back, not after 60 s");
    assert_eq!(delivered_ids(&down).len(), 300, "no event delivered twice");
    parking_lot_empties(&s).await;
    let log = s.hookline.log_contents();
    assert!(log.contains("circuit breaker opened"), "the breaker did open");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn private_and_loopback_targets_are_refused_outside_dev_mode() {
    let peers = Peers::start().await;
    let one_attempt = [("HOOKLINE_RETRY_SCHEDULE", "0s")];
    let subscriptions = peers.bare("subscriptions", &one_attempt).spawn().await.unwrap();
    let mut subs = subscriptions.subscriptions_client().await;
    tenant(&mut subs, "acme", Plan::Enterprise, true).await;
    for url in [
        "http://127.0.0.1:8080/h",
        "http://localhost:8080/h",
        "http://10.0.0.7/h",
        "http://172.20.1.1/h",
        "http://192.168.1.10/h",
        "http://169.254.169.254/latest/meta-data",
        "http://100.64.1.1/h",
        "http://[::1]/h",
        "http://[fd00::1]/h",
        "http://[fe80::1]/h",
        "http://[::ffff:127.0.0.1]/h",
        "http://0.0.0.0/h",
        "http://224.0.0.1/h",
    ] {
        let err = subs
            .create_endpoint(spb::CreateEndpointRequest {
                tenant_id: "acme".into(),
                url: url.into(),
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{url}");
        assert!(
            err.message().starts_with("url: ") && err.message().contains("public addresses"),
            "{url}: {}",
            err.message()
        );
    }
    // Subscriptions allows loopback here, delivery does not: the send-time check refuses it.
    let open_subs = peers.role("subscriptions", &one_attempt).spawn().await.unwrap();
    let ingest = peers.bare("ingest", &one_attempt).spawn().await.unwrap();
    let delivery = peers
        .bare("delivery", &one_attempt)
        .env("HOOKLINE_SUBSCRIPTIONS_URL", &open_subs.grpc_url())
        .spawn()
        .await
        .unwrap();
    let Peers { nats, db } = peers;
    let s = Split { nats, db, subscriptions: open_subs, ingest, delivery };
    let receiver = Receiver::start().await;
    let (ep, _) = s.create_endpoint("acme", &receiver.url(), &[], PayloadLayout::Envelope).await;
    s.publish_json("acme", &fresh("customer.created")).await;
    let outcome = s.first_outcome("acme", &ep, Duration::from_secs(15)).await;
    assert_eq!(outcome["error_kind"], "ssrf", "{outcome}");
    assert!(outcome["error"].as_str().unwrap().contains("loopback"), "{outcome}");
    assert_eq!(receiver.count(), 0, "nothing reached the loopback receiver");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_and_two_delivery_processes_share_the_work() {
    let mut s = split(&[("HOOKLINE_ACK_WAIT", "20s")]).await;
    let second = s.another("delivery", &[("HOOKLINE_ACK_WAIT", "20s")]).spawn().await.unwrap();
    let receiver = Receiver::start().await;
    receiver.set_delay(Duration::from_millis(30));
    s.create_tenant("acme", Plan::Professional, true).await;
    for _ in 0..2 {
        s.create_endpoint("acme", &receiver.url(), &[], PayloadLayout::Envelope).await;
    }
    let mut published = HashSet::new();
    for i in 0..2 {
        let events = (0..250)
            .map(|j| {
                let mut e = example("customer.updated");
                e["idempotency_key"] = json!(format!("so-{i}-{j}"));
                json_request("acme", &e)
            })
            .collect();
        published.extend(s.publish_batch(events).await.results.into_iter().map(|r| r.event_id));
    }
    receiver.wait_for(100, Duration::from_secs(30)).await.unwrap();
    // A graceful stop of one process mid-flight: exits 0 quickly, hands work back.
    s.delivery.terminate();
    let status = s.delivery.wait_exit(Duration::from_secs(25)).await.expect("exits within the drain deadline");
    assert!(status.success(), "exit status {status:?}");
    let got = receiver.wait_for(1000, Duration::from_secs(60)).await.unwrap();
    let pairs: HashSet<(String, String)> = got
        .iter()
        .map(|r| (r.header("webhook-id").unwrap().to_owned(), r.header("webhook-signature").unwrap().to_owned()))
        .collect();
    let ids: HashSet<&str> = got.iter().map(|r| r.header("webhook-id").unwrap()).collect();
    assert_eq!(ids.len(), 500, "every event");
    assert!(published.iter().all(|id| ids.contains(id.as_str())));
    let duplicates = got.len() - 1000;
    eprintln!(
        "requests {} for 1000 deliveries; duplicates {duplicates}; distinct (id, signature) {}",
        got.len(),
        pairs.len()
    );
    assert_eq!(duplicates, 0, "a graceful stop causes no duplicate deliveries");
    let logs = [s.delivery.log_contents(), second.log_contents()];
    assert!(logs.iter().all(|l| l.contains("attempt finished")), "both processes delivered");
}

/// The endpoint of tenant `acme` once it is disabled.
async fn disabled(
    subs: &spb::subscription_service_client::SubscriptionServiceClient<tonic::transport::Channel>,
    endpoint_id: &str,
    within: Duration,
) -> spb::Endpoint {
    eventually(within, "endpoint disabled", || {
        let (mut subs, id) = (subs.clone(), endpoint_id.to_owned());
        async move {
            let e = subs
                .get_endpoint(spb::GetEndpointRequest { tenant_id: "acme".into(), endpoint_id: id, reveal_url: false })
                .await?;
            let e = e.into_inner();
            Ok((!e.enabled).then_some(e))
        }
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn email_endpoints_get_the_json_by_smtp_and_no_http_request() {
    let sink = SmtpSink::start(None);
    let rejecting = SmtpSink::start(Some(550));
    let s = stack_with(&[("HOOKLINE_SMTP_URL", &format!("smtp://127.0.0.1:{}", sink.port))]).await;
    let mut subs = s.hookline.subscriptions_client().await;
    s.create_tenant("acme", Plan::Professional, true).await;
    let receiver = Receiver::start().await;
    let created = subs
        .create_endpoint(spb::CreateEndpointRequest {
            tenant_id: "acme".into(),
            url: receiver.url(),
            email: "erp-inbox@example.com".into(),
            layout: PayloadLayout::Flat.into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(created.email, "erp-inbox@example.com");
    let secret = subs
        .get_endpoint_secret(spb::GetEndpointSecretRequest {
            tenant_id: "acme".into(),
            endpoint_id: created.id.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .secret;
    let event_id = s.publish_json("acme", &fresh("appointment.booking.created")).await.event_id;
    let mail = eventually(Duration::from_secs(15), "an e-mail", || async { Ok(sink.messages().into_iter().next()) })
        .await
        .unwrap();
    assert_eq!(mail["rcpt_to"], json!(["erp-inbox@example.com"]));
    let subject = mail["headers"]["subject"].as_str().unwrap();
    assert!(subject.contains("appointment.booking.created") && subject.contains("acme"), "{subject}");
    let text = mail["text"].as_str().unwrap();
    let body: serde_json::Value = serde_json::from_str(text).unwrap();
    assert_eq!(body["type"], "appointment.booking.created");
    assert_eq!(body["customer_email"], "anna.muster@example.com", "flat layout as chosen");
    let attachment = &mail["attachments"][0];
    assert_eq!(attachment["filename"], format!("{event_id}.json"));
    assert_eq!(attachment["content_type"], "application/json");
    assert_eq!(attachment["content"].as_str().unwrap(), text, "attachment carries the same JSON");
    // Signed like a webhook, so the ERP can verify the e-mail too.
    let h = &mail["headers"];
    assert!(hookline_e2e::verify_standard_webhook(
        &secret,
        h["webhook-id"].as_str().unwrap(),
        h["webhook-timestamp"].as_str().unwrap(),
        text.as_bytes(),
        h["webhook-signature"].as_str().unwrap(),
    ));
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(receiver.count(), 0, "no HTTP request for an e-mail endpoint");
    let outcome = s.outcomes("acme", &created.id).await;
    assert_eq!(outcome[0]["state"], "succeeded");
    assert_eq!(outcome[0]["status_code"], 250);
    assert!(h.get("hookline-test").is_none(), "a real event is not marked as a test");

    // A test event is marked in the subject and a header, and signed alike.
    use hookline_proto::delivery::v1::SendTestEventRequest;
    let mut log = s.delivery_client().await;
    let sent = log
        .send_test_event(SendTestEventRequest {
            tenant_id: "acme".into(),
            endpoint_id: created.id.clone(),
            event_type: "customer.updated".into(),
        })
        .await
        .unwrap()
        .into_inner();
    let test_mail = eventually(Duration::from_secs(15), "the test e-mail", || async {
        Ok(sink.messages().into_iter().find(|m| m["headers"]["webhook-id"] == sent.event_id.as_str()))
    })
    .await
    .unwrap();
    let h = &test_mail["headers"];
    assert!(h["subject"].as_str().unwrap().starts_with("[Hookline test] customer.updated"), "{}", h["subject"]);
    assert_eq!(h["hookline-test"], "true");
    let text = test_mail["text"].as_str().unwrap();
    assert_eq!(serde_json::from_str::<serde_json::Value>(text).unwrap()["type"], "customer.updated");
    assert!(hookline_e2e::verify_standard_webhook(
        &secret,
        &sent.event_id,
        h["webhook-timestamp"].as_str().unwrap(),
        text.as_bytes(),
        h["webhook-signature"].as_str().unwrap(),
    ));
    assert_eq!(receiver.count(), 0, "no HTTP request for an e-mail endpoint");

    // A relay that refuses: retried like HTTP failures, with the SMTP code recorded.
    let s2 = stack_with(&[("HOOKLINE_SMTP_URL", &format!("smtp://127.0.0.1:{}", rejecting.port))]).await;
    let mut subs2 = s2.hookline.subscriptions_client().await;
    s2.create_tenant("acme", Plan::Basic, true).await;
    let ep = subs2
        .create_endpoint(spb::CreateEndpointRequest {
            tenant_id: "acme".into(),
            url: receiver.url(),
            email: "erp@example.com".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .id;
    s2.publish_json("acme", &fresh("customer.created")).await;
    let outcomes = eventually(Duration::from_secs(20), "three refused attempts", || async {
        let o = s2.outcomes("acme", &ep).await;
        Ok((o.len() >= 3).then_some(o))
    })
    .await
    .unwrap();
    assert!(outcomes.iter().all(|o| o["error_kind"] == "smtp" && o["status_code"] == 550), "{outcomes:#?}");
    assert_eq!(outcomes[2]["state"], "failed");
}

/// The relay of a real deployment: STARTTLS and AUTH required, its
/// certificate from a private CA trusted through HOOKLINE_TLS_CA.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn email_goes_through_a_relay_that_requires_starttls_and_auth() {
    let sink = SmtpSink::start_secure("hookline", "relay-pass");
    let ca = format!("{}/tests/fixtures/tls/ca.pem", env!("CARGO_MANIFEST_DIR"));
    let send_with = |password: &str| format!("smtp://hookline:{password}@localhost:{}?tls=required", sink.port);
    let s = stack_with(&[("HOOKLINE_SMTP_URL", &send_with("relay-pass")), ("HOOKLINE_TLS_CA", &ca)]).await;
    let mut subs = s.hookline.subscriptions_client().await;
    s.create_tenant("acme", Plan::Basic, true).await;
    let email_endpoint = |subs: &mut spb::subscription_service_client::SubscriptionServiceClient<_>| {
        let req = spb::CreateEndpointRequest {
            tenant_id: "acme".into(),
            url: "https://erp.example.com/unused".into(),
            email: "erp-inbox@example.com".into(),
            ..Default::default()
        };
        let mut subs = subs.clone();
        async move { subs.create_endpoint(req).await.unwrap().into_inner().id }
    };
    email_endpoint(&mut subs).await;
    s.publish_json("acme", &fresh("customer.created")).await;
    let mail = eventually(Duration::from_secs(15), "an e-mail", || async { Ok(sink.messages().into_iter().next()) })
        .await
        .unwrap();
    assert_eq!(mail["tls"], true, "sent after STARTTLS");
    assert_eq!(mail["auth_user"], "hookline", "sent after AUTH");
    assert_eq!(mail["rcpt_to"], json!(["erp-inbox@example.com"]));

    // A wrong password: the relay refuses, the attempt fails as `smtp`, and
    // the password appears in no outcome.
    let s2 = stack_with(&[("HOOKLINE_SMTP_URL", &send_with("wrong-pass")), ("HOOKLINE_TLS_CA", &ca)]).await;
    let mut subs2 = s2.hookline.subscriptions_client().await;
    s2.create_tenant("acme", Plan::Basic, true).await;
    let ep = email_endpoint(&mut subs2).await;
    s2.publish_json("acme", &fresh("customer.created")).await;
    let outcome = eventually(Duration::from_secs(15), "a refused attempt", || async {
        Ok(s2.outcomes("acme", &ep).await.into_iter().next())
    })
    .await
    .unwrap();
    assert_eq!(outcome["error_kind"], "smtp", "{outcome}");
    assert!(!outcome.to_string().contains("wrong-pass"), "the relay password leaked: {outcome}");
    assert_eq!(sink.messages().len(), 1, "nothing accepted without a valid login");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoints_failing_long_enough_are_disabled_and_missed_events_recovered() {
    use hookline_proto::delivery::v1 as dpb;
    let s = stack_with(&[
        ("HOOKLINE_RETRY_SCHEDULE", "0s,1s,1s,1s,1s,1s,1s,1s,1s,1s"),
        ("HOOKLINE_AUTO_DISABLE_AFTER", "3s"),
        ("HOOKLINE_AUTO_DISABLE_INTERVAL", "300ms"),
        ("HOOKLINE_BREAKER_THRESHOLD", "100"),
    ])
    .await;
    let mut subs = s.hookline.subscriptions_client().await;
    s.create_tenant("acme", Plan::Basic, true).await;
    let receiver = Receiver::start().await;
    receiver.set_default(500);
    let (ep, _) = s.create_endpoint("acme", &receiver.url(), &[], PayloadLayout::Envelope).await;
    let mut ingest = s.hookline.ingest_client().await;
    let first = ingest.publish(json_request("acme", &fresh("customer.created"))).await.unwrap().into_inner().event_id;
    let disabled = disabled(&subs, &ep, Duration::from_secs(15)).await;
    assert!(disabled.disabled_reason.contains("every attempt failed since"), "{}", disabled.disabled_reason);

    // Events arriving while disabled are listed as such...
    let since = chrono::Utc::now().to_rfc3339();
    let mut missed = Vec::new();
    for _ in 0..2 {
        missed.push(
            ingest.publish(json_request("acme", &fresh("customer.updated"))).await.unwrap().into_inner().event_id,
        );
    }
    let mut log = s.delivery_client().await;
    let listed = eventually(Duration::from_secs(15), "missed deliveries listed", || {
        let mut log = log.clone();
        let (ep, missed, first) = (ep.clone(), missed.clone(), first.clone());
        async move {
            let r = log
                .list_deliveries(dpb::ListDeliveriesRequest {
                    tenant_id: "acme".into(),
                    endpoint_id: ep,
                    ..Default::default()
                })
                .await?
                .into_inner();
            // The first event's retries end once one finds the endpoint
            // disabled; re-enabling before that would let a retry through.
            let first_done =
                r.deliveries.iter().any(|d| d.event_id == first && d.state == dpb::DeliveryState::Failed as i32);
            let rows: Vec<_> = r.deliveries.into_iter().filter(|d| missed.contains(&d.event_id)).collect();
            Ok((rows.len() == 2 && first_done).then_some(rows))
        }
    })
    .await
    .unwrap();
    assert!(
        listed
            .iter()
            .all(|d| d.last_error_kind == "endpoint_unavailable" && d.state == dpb::DeliveryState::Failed as i32)
    );

    // ...and recovered once the endpoint is enabled again.
    receiver.set_default(200);
    subs.update_endpoint(spb::UpdateEndpointRequest {
        tenant_id: "acme".into(),
        endpoint_id: ep.clone(),
        enabled: Some(true),
        ..Default::default()
    })
    .await
    .unwrap();
    let before = receiver.count();
    log.recover_endpoint(dpb::RecoverEndpointRequest { tenant_id: "acme".into(), endpoint_id: ep.clone(), since })
        .await
        .unwrap();
    let got = receiver.wait_for(before + 2, Duration::from_secs(15)).await.unwrap();
    let id = |r: &hookline_e2e::Recorded| r.header("webhook-id").unwrap().to_owned();
    // Recovery sends the missed events and nothing else, and they are accepted.
    let sent: HashSet<String> = got[before..].iter().map(id).collect();
    assert_eq!(sent, missed.iter().cloned().collect::<HashSet<_>>(), "recovery sends exactly the missed events");
    let accepted: HashSet<String> = got[before..].iter().filter(|r| r.status == 200).map(id).collect();
    assert_eq!(accepted, sent, "every recovered event is answered 200");

    // Failing again after the successes: the clock starts at the new failure.
    receiver.set_default(500);
    let failing_again = chrono::Utc::now();
    ingest.publish(json_request("acme", &fresh("customer.updated"))).await.unwrap();
    let again = self::disabled(&subs, &ep, Duration::from_secs(15)).await;
    let since = again.disabled_reason.split("since ").nth(1).and_then(|r| r.split(' ').next()).unwrap();
    let since = chrono::DateTime::parse_from_rfc3339(since).unwrap();
    assert!(since >= failing_again - chrono::Duration::seconds(1), "{}", again.disabled_reason);
}
