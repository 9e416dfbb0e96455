//! deploy/nats/hookline.conf lets a publisher write only to its own
//! tenant's intake subject and read nothing; the services run under it.

use std::time::Duration;

use hookline_e2e::{NatsServer, Receiver, TestDb};
use hookline_proto::subscriptions::v1::{PayloadLayout, Plan};

use crate::common::*;

/// nats-server under deploy/nats/hookline.conf, its store in the server's temp dir.
fn start_with_shipped_config() -> NatsServer {
    let shipped = std::fs::read_to_string(format!("{}/deploy/nats/hookline.conf", env!("CARGO_MANIFEST_DIR"))).unwrap();
    NatsServer::start_with_config(|dir| {
        let conf = shipped.replace("\"/data/jetstream\"", &format!("\"{}\"", dir.join("jetstream").display()));
        assert_ne!(conf, shipped, "the test points the store at a temporary directory");
        conf
    })
    .expect("nats-server starts with the shipped config")
}

async fn as_user(port: u16, user: &str, password: &str, inbox: &str) -> async_nats::Client {
    async_nats::ConnectOptions::new()
        .user_and_password(user.into(), password.into())
        .custom_inbox_prefix(inbox)
        .connect(format!("nats://127.0.0.1:{port}"))
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publishers_write_only_their_own_intake_subject_and_read_nothing() {
    let nats = start_with_shipped_config();
    let url = format!("nats://hookline:change-me-services@127.0.0.1:{}", nats.port());
    let s = Peers { nats, db: TestDb::create().await.unwrap() }.stack(&[("HOOKLINE_NATS_URL", &url)]).await;
    let receiver = Receiver::start().await;
    for t in ["acme", "globex"] {
        s.create_tenant(t, Plan::Basic, true).await;
    }
    s.create_endpoint("acme", &receiver.url(), &[], PayloadLayout::Envelope).await;

    let service = async_nats::jetstream::new(as_user(s.nats.port(), "hookline", "change-me-services", "_INBOX").await);
    let acme = async_nats::jetstream::new(as_user(s.nats.port(), "acme", "change-me-acme", "_INBOX_acme").await);

    // Its own subject: durably accepted and delivered.
    acme.publish("hookline.intake.acme", fresh("customer.created").to_string().into()).await.unwrap().await.unwrap();
    receiver.wait_for(1, Duration::from_secs(15)).await.unwrap();

    // Another tenant's subject and the events stream: refused by the server.
    let events_before = messages_in(&service, "HOOKLINE_EVENTS").await;
    for subject in ["hookline.intake.globex", "hookline.events.globex.customer.created", "hookline.config.acme"] {
        let attempt = async { acme.publish(subject, b"{}".as_slice().into()).await?.await.map_err(Into::into) };
        let result: Result<_, async_nats::Error> =
            tokio::time::timeout(Duration::from_secs(3), attempt).await.unwrap_or_else(|_| Err("no ack".into()));
        assert!(result.is_err(), "publishing to {subject} must be refused");
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(messages_in(&service, "HOOKLINE_EVENTS").await, events_before, "nothing reached the events stream");
    assert_eq!(messages_in(&service, "HOOKLINE_INTAKE").await, 0, "nothing queued for globex");
    let config = messages_in(&service, "HOOKLINE_CONFIG").await;
    assert_eq!(config, 3, "only the service wrote config events");

    // No reading: stream info, consumers, raw message access all fail.
    let read = tokio::time::timeout(Duration::from_secs(3), acme.get_stream("HOOKLINE_EVENTS")).await;
    assert!(!matches!(read, Ok(Ok(_))), "a publisher can read stream info");
    let core = as_user(s.nats.port(), "acme", "change-me-acme", "_INBOX_acme").await;
    let mut sniff = core.subscribe("hookline.>").await.unwrap();
    acme.publish("hookline.intake.acme", fresh("customer.updated").to_string().into()).await.unwrap().await.unwrap();
    let sniffed = tokio::time::timeout(Duration::from_secs(1), futures_util::StreamExt::next(&mut sniff)).await;
    assert!(!matches!(sniffed, Ok(Some(_))), "a publisher can subscribe to hookline subjects");
}
