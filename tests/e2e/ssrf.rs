//! The SSRF guard against DNS rebinding, end to end: the split services
//! resolve endpoint names through `HOOKLINE_DNS_SERVERS`, here a test DNS
//! server whose answers change while the test runs. Loopback is not opened
//! (`HOOKLINE_DELIVERY_ALLOW_CIDRS` is empty), as in production.

use std::{
    net::IpAddr,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use hookline_e2e::dns::DnsServer;
use hookline_proto::subscriptions::v1::{self as spb, PayloadLayout, Plan};
use tonic::Code;

use crate::common::*;

/// A public address (example.com's former one); nothing here ever connects to it.
const PUBLIC: &str = "93.184.216.34";

/// A loopback TCP listener that counts the connections it accepts and the
/// bytes it is sent, and answers nothing.
struct Tripwire {
    port: u16,
    connections: Arc<AtomicUsize>,
    bytes: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Tripwire {
    async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (connections, bytes) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let (c, b) = (connections.clone(), bytes.clone());
        let task = tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                c.fetch_add(1, Ordering::SeqCst);
                let b = b.clone();
                tokio::spawn(async move {
                    use tokio::io::AsyncReadExt;
                    let mut buf = [0u8; 4096];
                    while let Ok(n @ 1..) = stream.read(&mut buf).await {
                        b.fetch_add(n, Ordering::SeqCst);
                    }
                });
            }
        });
        Self { port, connections, bytes, task }
    }
}

impl Drop for Tripwire {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The settings of this file's services: the test DNS server, loopback not
/// opened, one attempt.
fn guarded(dns: &DnsServer) -> [(&'static str, String); 5] {
    [
        ("HOOKLINE_DNS_SERVERS", dns.addr().to_string()),
        ("HOOKLINE_DELIVERY_ALLOW_CIDRS", String::new()),
        ("HOOKLINE_RETRY_SCHEDULE", "0s".into()),
        ("HOOKLINE_REQUEST_TIMEOUT", "3s".into()),
        ("HOOKLINE_ACK_WAIT", "5s".into()),
    ]
}

fn env<'a>(settings: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    settings.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_name_that_rebinds_to_loopback_after_saving_is_refused_at_send_time() {
    let dns = DnsServer::start().await;
    let name = "hooks.rebind.test";
    dns.set_answer(name, PUBLIC.parse().unwrap());
    let tripwire = Tripwire::start().await;
    let settings = guarded(&dns);
    let env = env(&settings);
    let s = split(&env).await;
    s.create_tenant("acme", Plan::Enterprise, true).await;

    // Saved while the name resolves to a public address: accepted.
    let url = format!("http://{name}:{}/hook", tripwire.port);
    let (ep, _) = s.create_endpoint("acme", &url, &[], PayloadLayout::Envelope).await;
    let at_save = dns.queries_for(name);
    assert!(at_save >= 1, "the save-time check asked the configured nameserver");

    // The name now points at the loopback listener.
    dns.set_answer(name, "127.0.0.1".parse().unwrap());
    s.publish_json("acme", &fresh("customer.created")).await;
    let outcome = s.first_outcome("acme", &ep, Duration::from_secs(20)).await;
    assert_eq!(outcome["state"], "failed", "{outcome}");
    assert_eq!(outcome["error_kind"], "ssrf", "{outcome}");
    let error = outcome["error"].as_str().unwrap();
    assert!(error.contains(&format!("`{name}` resolves to 127.0.0.1 is in a loopback range")), "{error}");
    assert!(dns.queries_for(name) > at_save, "delivery resolved the name again at send time");
    // Give a connection that slipped through every chance to arrive.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(tripwire.connections.load(Ordering::SeqCst), 0, "no connection reached the loopback listener");
    assert_eq!(tripwire.bytes.load(Ordering::SeqCst), 0, "no byte reached the loopback listener");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_name_that_resolves_to_loopback_when_saved_is_refused_naming_the_url_field() {
    let dns = DnsServer::start().await;
    dns.set_answer("hooks.loopback.test", "127.0.0.1".parse().unwrap());
    dns.set_answer("hooks.metadata6.test", "::ffff:169.254.169.254".parse::<IpAddr>().unwrap());
    dns.set_answer("hooks.public.test", PUBLIC.parse().unwrap());
    let settings = guarded(&dns);
    let peers = Peers::start().await;
    let subscriptions = peers.role("subscriptions", &env(&settings)).spawn().await.unwrap();
    let mut subs = subscriptions.subscriptions_client().await;
    tenant(&mut subs, "acme", Plan::Enterprise, true).await;
    let create =
        |url: &str| spb::CreateEndpointRequest { tenant_id: "acme".into(), url: url.into(), ..Default::default() };
    for (name, says) in [
        ("hooks.loopback.test", "`hooks.loopback.test` resolves to 127.0.0.1 is in a loopback range"),
        (
            "hooks.metadata6.test",
            "`hooks.metadata6.test` resolves to ::ffff:169.254.169.254 is an IPv4-mapped address carrying 169.254.169.254, in a cloud metadata service range",
        ),
    ] {
        let err = subs.create_endpoint(create(&format!("https://{name}/hook"))).await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{name}");
        assert!(err.message().starts_with(&format!("url: {says}")), "{name}: {}", err.message());
        assert!(dns.queries_for(name) >= 1, "{name} was asked of the configured nameserver");
    }
    subs.create_endpoint(create("https://hooks.public.test/hook")).await.expect("a public answer is accepted");

    // A tenant's operational notification URL is checked the same way.
    let contact = |url: &str| spb::UpdateTenantRequest {
        tenant_id: "acme".into(),
        operational_webhook_url: Some(url.into()),
        ..Default::default()
    };
    let err = subs.update_tenant(contact("https://hooks.loopback.test/notices")).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(
        err.message().starts_with("operational_webhook_url: `hooks.loopback.test` resolves to 127.0.0.1"),
        "{}",
        err.message()
    );
    let t = subs.update_tenant(contact("https://hooks.public.test/notices")).await.unwrap().into_inner();
    assert_eq!(t.operational_webhook_url, "https://hooks.public.test/notices");
}

#[tokio::test]
async fn a_malformed_dns_servers_setting_stops_the_start_naming_the_key() {
    let peers = Peers::start().await;
    let started = peers.role("subscriptions", &[("HOOKLINE_DNS_SERVERS", "10.0.0.53,dns.example.com")]).spawn().await;
    let err = format!("{:#}", started.err().expect("the start fails"));
    assert!(err.contains("HOOKLINE_DNS_SERVERS: `dns.example.com` is not a nameserver address"), "{err}");
}
