//! The parking sweeper moves an endpoint's parked tasks through a durable
//! consumer of its own (`parked_<endpoint>`). nats-server 2.15 allows a
//! stream that sets no limit 1,000 consumers, and more endpoints than that
//! can recover at once after an outage of a host many of them share: the
//! parking stream sets its own limit, and raises it on a stream made
//! without one.

use async_nats::jetstream::{
    consumer::pull,
    stream::{self, RetentionPolicy},
};
use hookline_bus::{PARKED_ALL, PARKED_STREAM, StreamSettings, parked_consumer, parked_subject};
use hookline_domain::ids::{EndpointId, TenantId};
use hookline_testkit::NatsServer;
use tokio_util::sync::CancellationToken;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_parking_stream_takes_a_consumer_for_each_of_1200_endpoints_also_when_an_earlier_version_made_it() {
    let nats = NatsServer::start().unwrap();
    let js = hookline_bus::jetstream(nats.client().await);
    // As a version without the limit made it: none of its own, so
    // nats-server's default applies.
    let earlier = stream::Config {
        name: PARKED_STREAM.into(),
        subjects: vec![PARKED_ALL.into()],
        retention: RetentionPolicy::WorkQueue,
        ..Default::default()
    };
    js.create_stream(earlier).await.unwrap();
    let shutdown = CancellationToken::new();
    let streams = StreamSettings { retention: Default::default(), replicas: None, apply_retention: true };
    hookline_bus::ensure_streams(&js, &streams, &shutdown).await.unwrap();

    let parked = js.get_stream(PARKED_STREAM).await.unwrap();
    let tenant = TenantId::parse("erp-host-outage").unwrap();
    for n in 0..1_200 {
        let endpoint = EndpointId::generate();
        let config = pull::Config {
            durable_name: Some(parked_consumer(&endpoint)),
            filter_subject: parked_subject(&tenant, &endpoint),
            ..Default::default()
        };
        if let Err(e) = parked.create_consumer(config).await {
            panic!("consumer {} of HOOKLINE_PARKED refused: {e}", n + 1);
        }
    }
    shutdown.cancel();
}
