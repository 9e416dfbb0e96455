//! Fan-out makes fast endpoints' first attempts itself and holds each one
//! (its future, its body, its copy of the event) until it is recorded. An
//! event may go to many endpoints, so what fan-out holds is bounded by
//! attempts, not by events: at most twice `HOOKLINE_DELIVERY_CONCURRENCY`
//! at once; beyond that a task goes to the workers and waits in JetStream.

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
async fn fan_out_holds_no_more_first_attempts_than_twice_the_concurrency_setting_and_takes_one_again_when_one_is_recorded()
 {
    // As the binary does at start; the worker's HTTP client needs one.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let nats = NatsServer::start().unwrap();
    let js = hookline_bus::jetstream(nats.client().await);
    let shutdown = CancellationToken::new();
    let streams = StreamSettings { retention: Default::default(), replicas: None, apply_retention: true };
    hookline_bus::ensure_streams(&js, &streams, &shutdown).await.unwrap();
    let directory = Directory::start(&js, shutdown.clone()).await.unwrap();
    let settings = DeliverySettings { concurrency: 3, ..Default::default() };
    let worker = Worker::new(js, directory, settings.clone(), Guard::new(settings.guard.clone()));
    // Six endpoints of one event, or six events: the bound is per attempt.
    let endpoints: Vec<EndpointConfig> = (0..7).map(|_| endpoint()).collect();
    let mut held: Vec<_> = endpoints[..6]
        .iter()
        .map(|ep| worker.fan_out_attempt(ep).expect("an attempt within the bound is made in fan-out"))
        .collect();
    assert!(
        worker.fan_out_attempt(&endpoints[6]).is_none(),
        "a seventh attempt goes to the workers while six are held"
    );
    held.pop();
    assert!(worker.fan_out_attempt(&endpoints[6]).is_some(), "a recorded attempt frees its place");
    shutdown.cancel();
}
