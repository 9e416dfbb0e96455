//! Optional TLS works on every gRPC and HTTP listener: the three services
//! run as separate processes with a certificate from a private CA; delivery
//! reaches subscriptions over TLS, clients that do not trust the CA or speak
//! plain text get nothing, and the CLI works with `--tls-ca`.

use std::{path::PathBuf, time::Duration};

use hookline_e2e::{HooklineProc, Receiver, hookline_bin, http_get, https_get};
use hookline_proto::{ingest::v1::ingest_service_client::IngestServiceClient, subscriptions::v1 as spb};

use crate::common::*;

fn fixture(name: &str) -> String {
    fixture_in("tls", name)
}

fn fixture_in(dir: &str, name: &str) -> String {
    let p: PathBuf = [env!("CARGO_MANIFEST_DIR"), "tests", "fixtures", dir, name].iter().collect();
    p.to_string_lossy().into_owned()
}

/// Tenant `acme` with one endpoint, one event published through `ingest`:
/// it must arrive, signed, at a loopback receiver.
async fn one_signed_webhook(subscriptions: &HooklineProc, ingest: &HooklineProc) {
    let mut subs = subscriptions.subscriptions_client().await;
    tenant(&mut subs, "acme", spb::Plan::Basic, true).await;
    let receiver = Receiver::start().await;
    let (_ep, secret) = endpoint(&mut subs, "acme", &receiver.url(), &[], spb::PayloadLayout::Envelope).await;
    let mut publisher = IngestServiceClient::new(ingest.channel().await);
    publisher.publish(json_request("acme", &fresh("customer.created"))).await.unwrap();
    let got = receiver.wait_for(1, Duration::from_secs(20)).await.unwrap();
    assert!(got[0].verify(&secret));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_listener_serves_tls_and_services_call_each_other_over_it() {
    let (cert, key, ca) = (fixture("server.pem"), fixture("server.key"), fixture("ca.pem"));
    let tls =
        [("HOOKLINE_TLS_CERT", cert.as_str()), ("HOOKLINE_TLS_KEY", key.as_str()), ("HOOKLINE_TLS_CA", ca.as_str())];
    let Split { nats: _nats, db: _db, subscriptions, ingest, delivery } = split(&tls).await;
    assert!(subscriptions.grpc_url().starts_with("https://"));
    let ca_pem = std::fs::read(&ca).unwrap();

    // A webhook end to end: every gRPC hop (client → subscriptions, client →
    // ingest, delivery → subscriptions for Resolve) runs over TLS.
    one_signed_webhook(&subscriptions, &ingest).await;

    // Health, readiness and metrics answer over TLS, and only over TLS.
    for proc in [&subscriptions, &ingest, &delivery] {
        let (status, _) = https_get(&format!("{}/readyz", proc.http_url()), &ca_pem).await.unwrap();
        assert_eq!(status, 200);
        let (status, body) = https_get(&format!("{}/metrics", proc.http_url()), &ca_pem).await.unwrap();
        assert_eq!(status, 200);
        assert!(body.contains("hookline_"), "metrics over TLS: {body:.200}");
        let plain = proc.http_url().replace("https://", "http://");
        assert!(http_get(&format!("{plain}/healthz")).await.is_err(), "plain HTTP must not be served");
    }

    // gRPC refuses plain text and clients that do not trust the CA.
    let plain = subscriptions.grpc_url().replace("https://", "http://");
    let mut c = spb::subscription_service_client::SubscriptionServiceClient::new(
        hookline_proto::endpoint(&plain, None, None).unwrap().connect_lazy(),
    );
    let get = || spb::GetTenantRequest { tenant_id: "acme".into() };
    assert!(c.get_tenant(get()).await.is_err(), "plain-text gRPC answered on a TLS port");
    let untrusting = hookline_proto::endpoint(&subscriptions.grpc_url(), None, None).unwrap().connect().await;
    assert!(untrusting.is_err(), "a client without the CA must not connect");

    // The operator CLI over TLS, trusting the CA with --tls-ca.
    let cli = |extra: &[&str]| {
        std::process::Command::new(hookline_bin())
            .args(["tenant", "get", "acme", "--json", "--subscriptions-url", &subscriptions.grpc_url()])
            .args(extra)
            .env_remove("HOOKLINE_TLS_CA")
            .output()
            .unwrap()
    };
    let out = cli(&["--tls-ca", &ca]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("acme"));
    let out = cli(&[]);
    assert!(!out.status.success(), "the CLI trusted an unknown CA");
    drop(delivery);
}

/// Mutual TLS: with `HOOKLINE_TLS_CLIENT_CA`, a service's gRPC port takes
/// only clients with a certificate from that CA. Delivery calls subscriptions
/// (`Resolve`) with its own certificate and the CLI with `--tls-cert` and
/// `--tls-key`; a client without a certificate, or with one from another CA,
/// gets nothing, while the HTTP port still answers probes without one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_admits_only_clients_with_a_certificate_from_the_client_ca() {
    let m = |name: &str| fixture_in("mtls", name);
    let (cert, key, ca) = (m("service.pem"), m("service.key"), m("ca.pem"));
    let tls = [
        ("HOOKLINE_TLS_CERT", cert.as_str()),
        ("HOOKLINE_TLS_KEY", key.as_str()),
        ("HOOKLINE_TLS_CA", ca.as_str()),
        ("HOOKLINE_TLS_CLIENT_CA", ca.as_str()),
    ];
    let Split { nats: _nats, db: _db, subscriptions, ingest, delivery } = split(&tls).await;

    // End to end: delivery's Resolve call to subscriptions is admitted with
    // delivery's certificate (the test kit's clients present the service one).
    one_signed_webhook(&subscriptions, &ingest).await;

    // Without a certificate, or with one from another CA: no gRPC at all.
    let ca_pem = std::fs::read(&ca).unwrap();
    let get = || spb::GetTenantRequest { tenant_id: "acme".into() };
    let stranger = (std::fs::read(m("stranger.pem")).unwrap(), std::fs::read(m("stranger.key")).unwrap());
    for (who, identity) in [("no certificate", None), ("another CA's certificate", Some(&stranger))] {
        let identity = identity.map(|(c, k)| (c.as_slice(), k.as_slice()));
        let endpoint = hookline_proto::endpoint(&subscriptions.grpc_url(), Some(&ca_pem), identity).unwrap();
        let answered = match endpoint.connect().await {
            Ok(channel) => spb::subscription_service_client::SubscriptionServiceClient::new(channel)
                .get_tenant(get())
                .await
                .is_ok(),
            Err(_) => false,
        };
        assert!(!answered, "a client with {who} was answered");
    }
    // The HTTP port asks for no client certificate.
    let (status, _) = https_get(&format!("{}/readyz", subscriptions.http_url()), &ca_pem).await.unwrap();
    assert_eq!(status, 200);

    // The operator CLI with its own certificate, and refused without one.
    let cli = |extra: &[&str]| {
        std::process::Command::new(hookline_bin())
            .args(["tenant", "get", "acme", "--json", "--subscriptions-url", &subscriptions.grpc_url()])
            .args(["--tls-ca", &ca])
            .args(extra)
            .env_remove("HOOKLINE_TLS_CERT")
            .env_remove("HOOKLINE_TLS_KEY")
            .output()
            .unwrap()
    };
    let out = cli(&["--tls-cert", &m("operator.pem"), "--tls-key", &m("operator.key")]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("acme"));
    assert!(!cli(&[]).status.success(), "the CLI was answered without a client certificate");
    let out = cli(&["--tls-cert", &m("operator.pem")]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("--tls-key / HOOKLINE_TLS_KEY: must be set together"));
    drop(delivery);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_tls_settings_stop_start_up_with_the_key_named() {
    let (cert, key, ca) = (fixture("server.pem"), fixture("server.key"), fixture("ca.pem"));
    let cases: [(&[(&str, &str)], &str); 6] = [
        (&[("HOOKLINE_TLS_CERT", &cert)], "HOOKLINE_TLS_KEY: must be set together"),
        (&[("HOOKLINE_TLS_CLIENT_CA", &ca)], "HOOKLINE_TLS_CLIENT_CA: needs HOOKLINE_TLS_CERT"),
        (
            &[("HOOKLINE_TLS_CERT", &cert), ("HOOKLINE_TLS_KEY", &key), ("HOOKLINE_TLS_CLIENT_CA", &key)],
            "HOOKLINE_TLS_CLIENT_CA",
        ),
        (
            &[("HOOKLINE_TLS_CERT", &cert), ("HOOKLINE_TLS_KEY", "/nonexistent/key.pem")],
            "HOOKLINE_TLS_KEY: cannot read",
        ),
        (&[("HOOKLINE_TLS_CERT", &key), ("HOOKLINE_TLS_KEY", &key)], "HOOKLINE_TLS_CERT"),
        // The CA's certificate with the server's key: they do not belong together.
        (&[("HOOKLINE_TLS_CERT", &ca), ("HOOKLINE_TLS_KEY", &key)], "does not fit HOOKLINE_TLS_CERT"),
    ];
    for (env, expected) in cases {
        let mut cmd = std::process::Command::new(hookline_bin());
        cmd.arg("subscriptions").env("HOOKLINE_NATS_URL", "nats://127.0.0.1:1");
        for (k, v) in env {
            cmd.env(k, v);
        }
        let out = tokio::time::timeout(Duration::from_secs(20), tokio::task::spawn_blocking(move || cmd.output()))
            .await
            .expect("hookline must exit on bad TLS settings")
            .unwrap()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success());
        assert!(stderr.contains(expected), "expected `{expected}` in:\n{stderr}");
    }
}

/// HTTP/2 where the receiver offers it. Deliveries to an `https://`
/// receiver offering `h2` by ALPN go over HTTP/2, to one offering only
/// `http/1.1` over HTTP/1.1, and both verify. On Linux the platform verifier
/// takes extra roots from `SSL_CERT_FILE`, which is how delivery trusts the
/// test CA here.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_receivers_get_http2_when_they_offer_it_and_http1_otherwise() {
    let ca = fixture("ca.pem");
    let s = stack_with(&[("SSL_CERT_FILE", ca.as_str())]).await;
    s.create_tenant("acme", spb::Plan::Enterprise, true).await;
    let h2 = Receiver::start_tls(&[b"h2", b"http/1.1"]).await;
    let h1 = Receiver::start_tls(&[b"http/1.1"]).await;
    assert!(h2.url().starts_with("https://127.0.0.1:"));
    let (_, h2_secret) = s.create_endpoint("acme", &h2.url(), &[], spb::PayloadLayout::Envelope).await;
    let (_, h1_secret) = s.create_endpoint("acme", &h1.url(), &[], spb::PayloadLayout::Envelope).await;

    let mut ingest = s.hookline.ingest_client().await;
    for _ in 0..5 {
        ingest.publish(json_request("acme", &fresh("appointment.booking.created"))).await.unwrap();
    }
    for (receiver, secret, version) in [(&h2, &h2_secret, "HTTP/2.0"), (&h1, &h1_secret, "HTTP/1.1")] {
        let got = receiver.wait_for(5, Duration::from_secs(20)).await.unwrap();
        for r in &got {
            assert_eq!(r.version, version, "{}", receiver.url());
            assert!(r.verify(secret), "signature over {version}");
            assert_eq!(r.header("content-type"), Some("application/json"));
            assert_eq!(r.header("content-length"), Some(r.body.len().to_string().as_str()));
        }
    }
}
