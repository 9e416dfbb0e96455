//! deploy/nats/hookline.conf lets a publisher write only to its own
//! tenant's intake subject and read nothing; the services run under it.

use std::time::Duration;

use hookline_e2e::{HooklineBuilder, Receiver, TestDb, free_port};
use hookline_proto::subscriptions::v1::{PayloadLayout, Plan};

use crate::common::*;

struct ConfiguredNats {
    port: u16,
    dir: std::path::PathBuf,
    child: std::process::Child,
}

impl Drop for ConfiguredNats {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn start_with_shipped_config() -> ConfiguredNats {
    let shipped = std::fs::read_to_string(format!("{}/deploy/nats/hookline.conf", env!("CARGO_MANIFEST_DIR"))).unwrap();
    let port = free_port();
    let dir = std::env::temp_dir().join(format!("hookline-nats-acct-{port}"));
    std::fs::create_dir_all(&dir).unwrap();
    let store = dir.join("jetstream");
    let conf = shipped.replace("\"/data/jetstream\"", &format!("\"{}\"", store.display()));
    assert_ne!(conf, shipped, "the test points the store at a temporary directory");
    std::fs::write(dir.join("nats.conf"), conf).unwrap();
    let child = std::process::Command::new("/usr/sbin/nats-server")
        .args(["-c"])
        .arg(dir.join("nats.conf"))
        .args(["-a", "127.0.0.1", "-p", &port.to_string()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(std::time::Instant::now() < deadline, "nats-server with the shipped config did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(300));
    ConfiguredNats { port, dir, child }
}

async fn as_user(port: u16, user: &str, password: &str, inbox: &str) -> async_nats::Client {
    async_nats::ConnectOptions::new()
        .user_and_password(user.into(), password.into())
        .custom_inbox_prefix(inbox)
        .connect(format!("nats://127.0.0.1:{port}"))
        .await
        .unwrap()
}

async fn count(js: &async_nats::jetstream::Context, stream: &str) -> u64 {
    js.get_stream(stream).await.unwrap().get_info().await.unwrap().state.messages
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publishers_write_only_their_own_intake_subject_and_read_nothing() {
    let nats = start_with_shipped_config();
    let db = TestDb::create().await.unwrap();
    let url = format!("nats://hookline:change-me-services@127.0.0.1:{}", nats.port);
    let hookline = HooklineBuilder::new("dev")
        .env("HOOKLINE_NATS_URL", &url)
        .env("HOOKLINE_DATABASE_URL", db.url())
        .spawn()
        .await
        .expect("the services run under the shipped NATS config");
    let receiver = Receiver::start().await;
    let mut subs = hookline.subscriptions_client().await;
    for t in ["acme", "globex"] {
        tenant(&mut subs, t, Plan::Basic, true).await;
    }
    endpoint(&mut subs, "acme", &receiver.url(), &[], PayloadLayout::Envelope).await;

    let service = async_nats::jetstream::new(as_user(nats.port, "hookline", "change-me-services", "_INBOX").await);
    let acme = async_nats::jetstream::new(as_user(nats.port, "acme", "change-me-acme", "_INBOX_acme").await);

    // Its own subject: durably accepted and delivered.
    acme.publish("hookline.intake.acme", fresh("customer.created").to_string().into()).await.unwrap().await.unwrap();
    receiver.wait_for(1, Duration::from_secs(15)).await.unwrap();

    // Another tenant's subject and the events stream: refused by the server.
    let events_before = count(&service, "HOOKLINE_EVENTS").await;
    for subject in ["hookline.intake.globex", "hookline.events.globex.customer.created", "hookline.config.acme"] {
        let attempt = async { acme.publish(subject, b"{}".as_slice().into()).await?.await.map_err(Into::into) };
        let result: Result<_, async_nats::Error> =
            tokio::time::timeout(Duration::from_secs(3), attempt).await.unwrap_or_else(|_| Err("no ack".into()));
        assert!(result.is_err(), "publishing to {subject} must be refused");
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(count(&service, "HOOKLINE_EVENTS").await, events_before, "nothing reached the events stream");
    assert_eq!(count(&service, "HOOKLINE_INTAKE").await, 0, "nothing queued for globex");
    let config = service.get_stream("HOOKLINE_CONFIG").await.unwrap().get_info().await.unwrap().state.messages;
    assert_eq!(config, 3, "only the service wrote config events");

    // No reading: stream info, consumers, raw message access all fail.
    let read = tokio::time::timeout(Duration::from_secs(3), acme.get_stream("HOOKLINE_EVENTS")).await;
    assert!(!matches!(read, Ok(Ok(_))), "a publisher can read stream info");
    let core = as_user(nats.port, "acme", "change-me-acme", "_INBOX_acme").await;
    let mut sniff = core.subscribe("hookline.>").await.unwrap();
    acme.publish("hookline.intake.acme", fresh("customer.updated").to_string().into()).await.unwrap().await.unwrap();
    let sniffed = tokio::time::timeout(Duration::from_secs(1), futures_util::StreamExt::next(&mut sniff)).await;
    assert!(!matches!(sniffed, Ok(Some(_))), "a publisher can subscribe to hookline subjects");
}
