//! Per-endpoint limits across delivery replicas. The cap, the
//! breaker and the rate limit live in each delivery process's memory (a
//! shared counter would put a network round trip in front of every
//! attempt), so N delivery processes let an endpoint get up to N times its
//! rate limit. These tests measure what a receiver actually sees with three
//! processes and with one, so the README can state the figure instead of
//! the theory, and fail if the multiplication ever exceeds N.

use std::time::{Duration, Instant};

use hookline_e2e::{HooklineProc, Receiver};
use hookline_proto::subscriptions::v1::{self as spb, Plan};

use crate::common::*;

const RATE: u32 = 10;
const EVENTS: usize = 200;

/// What the receiver saw.
#[derive(Debug)]
struct Arrivals {
    requests: usize,
    distinct: usize,
    /// First to last arrival.
    span: Duration,
    /// Requests per second over the span.
    mean: f64,
    /// Requests per second over the span after the processes' first bursts
    /// (`processes × rate` requests) are taken off.
    after_burst: f64,
    /// Most arrivals within any one second.
    peak: usize,
    /// From publishing to the last arrival: every request the buckets let
    /// through was let through within it.
    took: Duration,
}

impl std::fmt::Display for Arrivals {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} requests ({} events) over {:.1} s: mean {:.1}/s ({:.1}/s after the first burst), peak {} in one \
             second; last arrival {:.1} s after publishing",
            self.requests,
            self.distinct,
            self.span.as_secs_f64(),
            self.mean,
            self.after_burst,
            self.peak,
            self.took.as_secs_f64()
        )
    }
}

/// One nats-server, subscriptions, ingest and `deliveries` delivery
/// processes; an endpoint limited to [`RATE`] attempts a second; [`EVENTS`]
/// events published in one batch; returns once each has arrived.
async fn deliver_through(deliveries: usize) -> Arrivals {
    let env = [("HOOKLINE_TENANT_RATE", "0"), ("HOOKLINE_LOG", "warn,hookline=info")];
    let s = split(&env).await;
    let mut more: Vec<HooklineProc> = Vec::new();
    for _ in 1..deliveries {
        more.push(s.another("delivery", &env).spawn().await.unwrap());
    }
    let receiver = Receiver::start().await;
    s.create_tenant("acme", Plan::Professional, true).await;
    s.create_endpoint_as(spb::CreateEndpointRequest {
        tenant_id: "acme".into(),
        url: receiver.url(),
        rate_limit: RATE,
        ..Default::default()
    })
    .await;

    let published = Instant::now();
    let events = (0..EVENTS).map(|_| json_request("acme", &fresh("customer.updated"))).collect();
    let ids: Vec<String> = s.publish_batch(events).await.results.into_iter().map(|r| r.event_id).collect();
    assert_eq!(ids.len(), EVENTS);
    // One process needs about (200 - 10) / 10 = 19 s; give it twice that.
    let wanted: std::collections::HashSet<&str> = ids.iter().map(String::as_str).collect();
    hookline_e2e::eventually(Duration::from_secs(60), "every event at the receiver", || async {
        let got: std::collections::HashSet<String> =
            receiver.requests().iter().filter_map(|r| r.header("webhook-id").map(str::to_owned)).collect();
        Ok(wanted.iter().all(|id| got.contains(*id)).then_some(()))
    })
    .await
    .unwrap_or_else(|e| panic!("{e}: {} of {EVENTS} requests arrived", receiver.count()));
    let requests = receiver.requests();
    let times: Vec<Instant> = requests.iter().map(|r| r.received_at).collect();
    let last = *times.last().unwrap();
    let took = last - published;
    let distinct = requests.iter().filter_map(|r| r.header("webhook-id")).collect::<std::collections::HashSet<_>>();
    let span = last - times[0];
    let peak = times
        .iter()
        .map(|start| times.iter().filter(|t| **t >= *start && **t - *start < Duration::from_secs(1)).count())
        .max()
        .unwrap();
    Arrivals {
        requests: requests.len(),
        distinct: distinct.len(),
        span,
        mean: requests.len() as f64 / span.as_secs_f64(),
        after_burst: (requests.len() - deliveries * RATE as usize) as f64 / span.as_secs_f64(),
        peak,
        took,
    }
}

/// Each process's bucket holds one second's worth (the burst) and refills
/// at the rate, so `processes` buckets let through at most
/// `processes × (burst + rate × seconds)` in any stretch of time, plus one
/// request per process for the time between a send and its arrival.
fn most_allowed(processes: usize, window: Duration) -> f64 {
    processes as f64 * (f64::from(RATE) * (1.0 + window.as_secs_f64()) + 1.0)
}

/// Deliver through `processes` delivery processes: every event arrives, and
/// neither the whole run nor any one second exceeds what that many buckets
/// allow. The whole run is measured from publishing, not from the first
/// arrival: the first request to a new endpoint opens its connections and
/// can arrive a while after its bucket let it through, which would shorten
/// the span by more than the slack of one request.
async fn every_event_arrives_within_the_buckets_of(processes: usize) {
    let a = deliver_through(processes).await;
    eprintln!("limits: {processes} delivery process(es), rate_limit {RATE}/s, {EVENTS} events: {a}");
    assert_eq!(a.distinct, EVENTS, "every event arrived");
    assert!(
        a.requests as f64 <= most_allowed(processes, a.took),
        "{} requests in the {:?} from publishing to the last arrival is more than {processes} bucket(s) allow",
        a.requests,
        a.took
    );
    assert!(a.peak as f64 <= most_allowed(processes, Duration::from_secs(1)), "peak {} in one second", a.peak);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_delivery_processes_let_an_endpoint_limited_to_10_per_second_get_at_most_three_times_that() {
    every_event_arrives_within_the_buckets_of(3).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_delivery_process_holds_an_endpoint_to_its_rate_limit_of_10_per_second() {
    every_event_arrives_within_the_buckets_of(1).await;
}
