//! Misbehaving receivers get the right error kind, their response
//! bodies are read only up to a cap, and healthy endpoints keep flowing.

use std::{
    collections::HashMap,
    time::{Duration, Instant},
};

use hookline_e2e::{Receiver, eventually, test_tls_acceptor};
use hookline_proto::subscriptions::v1::{PayloadLayout, Plan};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::common::*;

/// A raw TCP peer with one bad behaviour per connection.
async fn misbehaving(kind: &'static str) -> (String, tokio::task::JoinHandle<()>) {
    if kind == "dns" {
        // `.invalid` never resolves (RFC 6761); no peer needed.
        return ("http://hookline-e2e.invalid/hook".into(), tokio::spawn(async {}));
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let scheme = if kind == "tls" { "https" } else { "http" };
    let url = format!("{scheme}://127.0.0.1:{}/hook", listener.local_addr().unwrap().port());
    // Signed by the test CA, which deliveries (trusting only the public
    // web roots) must refuse.
    let tls = test_tls_acceptor(&[]);
    let task = tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = listener.accept().await else { return };
            let tls = tls.clone();
            tokio::spawn(async move {
                if kind == "tls" {
                    // The handshake fails on the client's side; nothing else to do.
                    let _ = tls.accept(sock).await;
                    return;
                }
                let mut buf = vec![0u8; 65536];
                let _ = sock.read(&mut buf).await;
                match kind {
                    "reset" => {
                        // Zero linger: closing sends RST, a connection reset.
                        #[allow(deprecated)]
                        let _ = sock.set_linger(Some(Duration::ZERO));
                        drop(sock);
                    }
                    "malformed" => {
                        let _ = sock.write_all(b"HTTP/9.9 lol nope\r\n\x00\x01garbage\r\n\r\n").await;
                    }
                    "huge" => {
                        // 100 MiB announced and streamed; Hookline must stop reading early.
                        let head = format!("HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n", 100 * 1024 * 1024);
                        if sock.write_all(head.as_bytes()).await.is_err() {
                            return;
                        }
                        let chunk = vec![b'x'; 1024 * 1024];
                        for _ in 0..100 {
                            if sock.write_all(&chunk).await.is_err() {
                                return;
                            }
                        }
                    }
                    "slow" => {
                        tokio::time::sleep(Duration::from_secs(30)).await;
                        let _ = sock.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n").await;
                    }
                    _ => tokio::time::sleep(Duration::from_secs(3600)).await, // never answers
                }
            });
        }
    });
    (url, task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn misbehaving_receivers_get_the_right_error_kind_and_healthy_ones_keep_flowing() {
    let s = stack_with(&[
        ("HOOKLINE_RETRY_SCHEDULE", "0s"),
        ("HOOKLINE_REQUEST_TIMEOUT", "2s"),
        ("HOOKLINE_ACK_WAIT", "10s"),
        ("HOOKLINE_BREAKER_THRESHOLD", "1000"),
    ])
    .await;
    s.create_tenant("acme", Plan::Enterprise, true).await;
    let mut peers = Vec::new();
    let mut endpoints = HashMap::new();
    for kind in ["reset", "malformed", "huge", "slow", "silent", "tls", "dns"] {
        let (url, task) = misbehaving(kind).await;
        let (ep, _) = s.create_endpoint("acme", &url, &[], PayloadLayout::Envelope).await;
        endpoints.insert(ep, kind);
        peers.push(task);
    }
    let healthy = Receiver::start().await;
    s.create_endpoint("acme", &healthy.url(), &[], PayloadLayout::Envelope).await;

    let started = Instant::now();
    let mut ingest = s.hookline.ingest_client().await;
    for _ in 0..20 {
        ingest.publish(json_request("acme", &fresh("customer.updated"))).await.unwrap();
    }
    healthy.wait_for(20, Duration::from_secs(15)).await.unwrap();
    assert!(started.elapsed() < Duration::from_secs(10), "healthy deliveries slowed to {:?}", started.elapsed());

    let outcomes = eventually(Duration::from_secs(30), "an outcome for every misbehaving endpoint", || async {
        let all = read_subject(&s.nats, "HOOKLINE_OUTCOMES", "hookline.outcomes.>").await;
        let mut by_kind: HashMap<&str, serde_json::Value> = HashMap::new();
        for o in all {
            if let Some(kind) = endpoints.get(o["endpoint_id"].as_str().unwrap()) {
                by_kind.entry(kind).or_insert(o);
            }
        }
        Ok((by_kind.len() == 7).then_some(by_kind))
    })
    .await
    .unwrap();
    let kind = |k: &str| outcomes[k]["error_kind"].as_str().unwrap_or("none").to_owned();
    assert_eq!(kind("reset"), "connection", "{}", outcomes["reset"]);
    assert_eq!(kind("malformed"), "connection", "{}", outcomes["malformed"]);
    assert_eq!(kind("slow"), "timeout");
    assert_eq!(kind("silent"), "timeout");
    assert_eq!(kind("tls"), "tls", "{}", outcomes["tls"]);
    assert_eq!(kind("dns"), "dns", "{}", outcomes["dns"]);
    // The 100 MiB answer is a 2xx: accepted, with only the first 4 KiB kept.
    let huge = &outcomes["huge"];
    assert_eq!(huge["state"], "succeeded", "{huge}");
    assert_eq!(huge["response_excerpt"].as_str().unwrap().len(), 4096);
    assert!(huge["duration_ms"].as_u64().unwrap() < 2000, "the body was not read to the end: {huge}");
    for p in peers {
        p.abort();
    }
}
