//! Fan-out makes fast endpoints' first attempts itself and holds each one
//! (its future, its body, its copy of the event) until it is recorded. An
//! event may go to many endpoints, so what fan-out holds is bounded by
//! attempts, not by events: at most twice `HOOKLINE_DELIVERY_CONCURRENCY`
//! places at once. Up to eight times the setting more wait for a place,
//! holding only their turn, for at most 2 s; beyond either
//! bound a task goes to the workers and waits in JetStream.

use hookline_bus::StreamSettings;
use hookline_delivery::{DeliverySettings, guard::Guard, worker::Worker};
use hookline_domain::{
    endpoint::{EndpointConfig, SigningSecret},
    ids::EndpointId,
};
use hookline_tenants::Directory;
use hookline_testkit::NatsServer;
use tokio_util::sync::CancellationToken;

fn endpoint() -> EndpointConfig {
    serde_json::from_value(serde_json::json!({
        "id": EndpointId::generate(),
        "url": "https://erp.example.com/hooks",
        "enabled": true,
        "secret": SigningSecret::generate(),
        "created_at": "2026-12-06T10:00:00.000Z",
        "updated_at": "2026-12-06T10:00:00.000Z",
    }))
    .expect("an endpoint config")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fan_out_holds_twice_the_concurrency_in_places_and_eight_times_it_in_line_and_a_turn_gets_a_place_when_one_is_recorded()
 {
    // As the binary does at start; the worker's HTTP client needs one.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let nats = NatsServer::start().unwrap();
    let js = hookline_bus::jetstream(nats.client().await);
    let shutdown = CancellationToken::new();
    let streams = StreamSettings { retention: Default::default(), replicas: None, apply_retention: true };
    hookline_bus::ensure_streams(&js, &streams, &shutdown).await.unwrap();
    let directory = Directory::start(&js, shutdown.clone()).await.unwrap();
    let mut settings = DeliverySettings::default();
    settings.guard.attempts = 3;
    let worker = Worker::new(js, directory, settings.clone(), Guard::new(settings.guard.clone()));
    // Six endpoints of one event, or six events: the bound is per attempt.
    let endpoints: Vec<EndpointConfig> = (0..31).map(|_| endpoint()).collect();
    let mut places = Vec::new();
    for ep in &endpoints[..6] {
        let turn = worker.fan_out_turn(ep).expect("a turn within the bound");
        places.push(turn.place().await.expect("one of the six places, at once"));
    }
    // The next 24 wait in line; the 31st goes to the workers at once.
    let line: Vec<_> =
        endpoints[6..30].iter().map(|ep| worker.fan_out_turn(ep).expect("one of 24 turns in line")).collect();
    assert!(worker.fan_out_turn(&endpoints[30]).is_none(), "a 31st goes to the workers while 24 wait");
    let mut line = line.into_iter();
    let first = tokio::spawn(line.next().unwrap().place());
    places.pop();
    let place = tokio::time::timeout(std::time::Duration::from_millis(100), first).await;
    assert!(matches!(place, Ok(Ok(Some(_)))), "a recorded attempt's place goes to the first in line");
    // With all six places held, a turn waits what the ack wait leaves (2 s
    // at most; 60 s ack wait, 15 s request timeout here) and goes to the workers.
    let started = tokio::time::Instant::now();
    assert!(line.next().unwrap().place().await.is_none(), "no place freed: the task goes to the workers");
    let waited = started.elapsed();
    assert!(waited >= std::time::Duration::from_millis(1_950), "waited {waited:?} for a place");
    assert!(worker.fan_out_turn(&endpoints[30]).is_some(), "a turn ended frees its place in line");
    drop(places);
    shutdown.cancel();
}
