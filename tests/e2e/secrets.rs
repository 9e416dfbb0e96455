//! The auth header's value reaches the receiver and nothing else.

use std::time::Duration;

use hookline_e2e::{HooklineBuilder, Receiver};
use hookline_proto::subscriptions::v1::{self as spb, Plan};

use crate::common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_header_value_reaches_the_receiver_and_no_log_or_api_output() {
    const VALUE: &str = "Bearer tok-9f8e7d6c5b4a-never-log-me";
    let s = stack_with(&[("HOOKLINE_LOG", "debug")]).await;
    let receiver = Receiver::start().await;
    let mut subs = s.hookline.subscriptions_client().await;
    s.create_tenant("acme", Plan::Professional, true).await;
    let created = subs
        .create_endpoint(spb::CreateEndpointRequest {
            tenant_id: "acme".into(),
            url: receiver.url(),
            auth_header: Some(spb::AuthHeader { name: "Ocp-Apim-Subscription-Key".into(), value: VALUE.into() }),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let ep = created.id.clone();
    let mut outputs = vec![format!("{created:?}")];
    outputs.push(format!(
        "{:?}",
        subs.get_endpoint(spb::GetEndpointRequest {
            tenant_id: "acme".into(),
            endpoint_id: ep.clone(),
            reveal_url: false
        })
        .await
        .unwrap()
        .into_inner()
    ));
    outputs.push(format!(
        "{:?}",
        subs.list_endpoints(spb::ListEndpointsRequest { tenant_id: "acme".into() }).await.unwrap().into_inner()
    ));
    outputs.push(format!(
        "{:?}",
        subs.update_endpoint(spb::UpdateEndpointRequest {
            tenant_id: "acme".into(),
            endpoint_id: ep.clone(),
            description: Some("ERP".into()),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
    ));
    for o in &outputs {
        assert!(!o.contains(VALUE) && !o.contains("never-log-me"), "API output leaks the value: {o}");
        assert!(o.contains("Ocp-Apim-Subscription-Key") && o.contains("********"), "{o}");
    }

    s.publish_json("acme", &example("appointment.booking.created")).await;
    let got = receiver.wait_for(1, Duration::from_secs(20)).await.unwrap();
    let sent = got[0].headers.iter().find(|(k, _)| k == "ocp-apim-subscription-key").map(|(_, v)| v.as_str());
    assert_eq!(sent, Some(VALUE));

    // The CLI shows it masked too.
    let out = std::process::Command::new(hookline_e2e::hookline_bin())
        .args(["endpoint", "get", "acme", &ep, "--json"])
        .env("HOOKLINE_SUBSCRIPTIONS_URL", s.hookline.grpc_url())
        .output()
        .unwrap();
    let cli = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && cli.contains("********") && !cli.contains("never-log-me"), "{cli}");

    tokio::time::sleep(Duration::from_millis(500)).await;
    let log = s.hookline.log_contents();
    assert!(log.contains("attempt finished"), "debug log was captured");
    assert!(!log.contains("never-log-me"), "the value appears in the service log");
}

/// Secret rotation: during the grace period requests carry both signatures,
/// so a receiver that knows only the old or only the new secret accepts them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_signs_with_old_and_new_during_the_grace_period() {
    let s = stack().await;
    let receiver = Receiver::start().await;
    let mut subs = s.hookline.subscriptions_client().await;
    s.create_tenant("acme", Plan::Basic, true).await;
    let (ep, old) = s.create_endpoint("acme", &receiver.url(), &[], spb::PayloadLayout::Envelope).await;
    let rotate = |grace: u32| spb::RotateEndpointSecretRequest {
        tenant_id: "acme".into(),
        endpoint_id: ep.clone(),
        grace_period_seconds: Some(grace),
        ..Default::default()
    };
    let new = subs.rotate_endpoint_secret(rotate(3600)).await.unwrap().into_inner().secret;
    assert_ne!(new, old);
    s.publish_json("acme", &example("customer.created")).await;
    let r = receiver.wait_for(1, Duration::from_secs(20)).await.unwrap().remove(0);
    assert_eq!(r.header("webhook-signature").unwrap().split(' ').count(), 2);
    assert!(r.verify(&old), "a receiver with only the old secret accepts");
    assert!(r.verify(&new), "a receiver with only the new secret accepts");
    // The same with the Standard Webhooks reference library (Python).
    let verify_with = |secret: &str, library: &str| {
        let headers: serde_json::Map<String, serde_json::Value> =
            r.headers.iter().map(|(k, v)| (k.clone(), serde_json::Value::from(v.as_str()))).collect();
        let request = serde_json::json!({"headers": headers, "body": String::from_utf8_lossy(&r.body)});
        let mut child = std::process::Command::new("python3")
            .arg(format!("{}/tests/peers/verify_standard_webhooks.py", env!("CARGO_MANIFEST_DIR")))
            .args([secret, library])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("python3");
        use std::io::Write;
        child.stdin.take().unwrap().write_all(request.to_string().as_bytes()).unwrap();
        let out = child.wait_with_output().unwrap();
        (out.status.success(), String::from_utf8_lossy(&out.stdout).trim().to_owned())
    };
    let reference = |secret: &str| verify_with(secret, "standardwebhooks");
    assert!(reference(&old).0, "standardwebhooks with the old secret: {}", reference(&old).1);
    assert!(reference(&new).0, "standardwebhooks with the new secret: {}", reference(&new).1);
    let stranger = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    assert!(!reference(stranger).0, "standardwebhooks rejects another secret");
    // And with Svix's receiver library.
    for secret in [&old, &new] {
        let (ok, why) = verify_with(secret, "svix");
        assert!(ok, "svix with one of the two secrets: {why}");
    }
    assert!(!verify_with(stranger, "svix").0, "svix rejects another secret");

    // Rotating again without grace: the replaced secret stops at once; the
    // first one is still inside its own hour of grace.
    let newest = subs.rotate_endpoint_secret(rotate(0)).await.unwrap().into_inner().secret;
    s.publish_json("acme", &example("customer.updated")).await;
    let r = receiver.wait_for(2, Duration::from_secs(20)).await.unwrap().remove(1);
    assert!(r.verify(&newest));
    assert!(!r.verify(&new), "a secret rotated away without grace no longer signs");
    assert!(r.verify(&old));
    let err = subs
        .rotate_endpoint_secret(spb::RotateEndpointSecretRequest {
            grace_period_seconds: Some(8 * 24 * 3600),
            ..rotate(0)
        })
        .await
        .unwrap_err();
    assert!(err.message().starts_with("grace_period_seconds: must be at most"), "{}", err.message());
}

pub(crate) fn grep_dir(dir: &std::path::Path, needle: &[u8]) -> Vec<String> {
    let mut hits = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            hits.extend(grep_dir(&path, needle));
        } else if let Ok(bytes) = std::fs::read(&path)
            && bytes.windows(needle.len()).any(|w| w == needle)
        {
            hits.push(path.display().to_string());
        }
    }
    hits
}

/// Secrets are sealed at rest: neither the NATS store nor a Postgres dump
/// holds a signing secret or auth header value in clear; rotation re-seals.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_are_sealed_in_the_nats_store_and_absent_from_postgres() {
    use base64::Engine;
    const VALUE: &str = "Bearer sealed-header-value-5d2c";
    let (k1, k2) = (
        base64::engine::general_purpose::STANDARD.encode([1u8; 32]),
        base64::engine::general_purpose::STANDARD.encode([2u8; 32]),
    );
    let mut s = stack_with(&[("HOOKLINE_MASTER_KEY", &k1)]).await;
    let receiver = Receiver::start().await;
    let mut subs = s.hookline.subscriptions_client().await;
    s.create_tenant("acme", Plan::Basic, true).await;
    let ep = subs
        .create_endpoint(spb::CreateEndpointRequest {
            tenant_id: "acme".into(),
            url: receiver.url(),
            auth_header: Some(spb::AuthHeader { name: "Authorization".into(), value: VALUE.into() }),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .id;
    let secret = subs
        .get_endpoint_secret(spb::GetEndpointSecretRequest { tenant_id: "acme".into(), endpoint_id: ep.clone() })
        .await
        .unwrap()
        .into_inner()
        .secret;
    s.publish_json("acme", &fresh("customer.created")).await;
    let got = receiver.wait_for(1, Duration::from_secs(20)).await.unwrap();
    assert!(got[0].verify(&secret), "sealed secrets still sign");
    assert_eq!(got[0].header("authorization"), Some(VALUE));

    // At rest: nothing in clear in the JetStream store or in Postgres.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let store = s.nats.log_path().parent().unwrap().join("store");
    let key_part = secret.trim_start_matches("whsec_");
    for needle in [VALUE, "sealed-header-value", key_part] {
        assert!(grep_dir(&store, needle.as_bytes()).is_empty(), "`{needle}` found in the NATS store");
    }
    let dump = std::process::Command::new("pg_dump")
        .args(["-h", "127.0.0.1", "-U", "postgres", "-d", s.db.name()])
        .output()
        .expect("pg_dump");
    assert!(dump.status.success(), "{}", String::from_utf8_lossy(&dump.stderr));
    let dump = String::from_utf8_lossy(&dump.stdout);
    assert!(dump.contains(&ep), "the dump holds the endpoint projection");
    assert!(!dump.contains(key_part) && !dump.contains("sealed-header-value"), "a secret in the Postgres dump");

    // Rotation: restart with the new key (old one kept to open history), re-seal.
    s.hookline.terminate();
    s.hookline.wait_exit(Duration::from_secs(20)).await.expect("graceful exit");
    let s2 = HooklineBuilder::new("dev")
        .env("HOOKLINE_NATS_URL", &s.nats.url())
        .env("HOOKLINE_DATABASE_URL", s.db.url())
        .env("HOOKLINE_MASTER_KEY", &k2)
        .env("HOOKLINE_MASTER_KEY_PREVIOUS", &k1)
        .spawn()
        .await
        .unwrap();
    let out = std::process::Command::new(hookline_e2e::hookline_bin())
        .args(["admin", "reseal", "--json"])
        .env("HOOKLINE_SUBSCRIPTIONS_URL", s2.grpc_url())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let resealed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(resealed["endpoints"], 1);
    let config = read_subject_raw(&s.nats, "HOOKLINE_CONFIG", "hookline.config.acme").await;
    let last = config.last().unwrap();
    let k2_id: String = {
        use sha2::Digest;
        sha2::Sha256::digest([2u8; 32])[..4].iter().map(|b| format!("{b:02x}")).collect()
    };
    assert!(
        last.contains(&format!("sealed:v1:{k2_id}:")),
        "the latest endpoint record is sealed with the new key: {last}"
    );
    s2.ingest_client().await.publish(json_request("acme", &fresh("customer.updated"))).await.unwrap();
    let got = receiver.wait_for(2, Duration::from_secs(20)).await.unwrap();
    assert!(got[1].verify(&secret));
}

async fn read_subject_raw(nats: &hookline_e2e::NatsServer, stream: &str, subject: &str) -> Vec<String> {
    read_subject(nats, stream, subject).await.into_iter().map(|v| v.to_string()).collect()
}

/// A token in the URL's query reaches the receiver, and every output shows
/// the query values masked, except the two calls that ask to reveal them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn query_values_of_endpoint_urls_are_masked_in_every_output_unless_revealed() {
    use hookline_proto::delivery::v1::{DeliveryState, GetDeliveryRawRequest, ListDeliveriesRequest};
    const TOKEN: &str = "qtok-4b1d9e-never-show-me";
    let s = stack_with(&[("HOOKLINE_LOG", "debug")]).await;
    let receiver = Receiver::start().await;
    let mut subs = s.hookline.subscriptions_client().await;
    s.create_tenant("acme", Plan::Professional, true).await;
    let url = format!("{}?code={TOKEN}&v=2", receiver.url());
    let masked = format!("{}?code=********&v=********", receiver.url());
    let created = subs
        .create_endpoint(spb::CreateEndpointRequest {
            tenant_id: "acme".into(),
            url: url.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(created.url, masked);
    let ep = created.id.clone();
    let get = |reveal_url| spb::GetEndpointRequest { tenant_id: "acme".into(), endpoint_id: ep.clone(), reveal_url };
    assert_eq!(subs.get_endpoint(get(false)).await.unwrap().into_inner().url, masked);
    assert_eq!(subs.get_endpoint(get(true)).await.unwrap().into_inner().url, url, "reveal_url shows it in clear");
    let mut outputs = vec![format!("{created:?}")];
    outputs.push(format!(
        "{:?}",
        subs.list_endpoints(spb::ListEndpointsRequest { tenant_id: "acme".into() }).await.unwrap().into_inner()
    ));
    outputs.push(format!(
        "{:?}",
        subs.resolve(spb::ResolveRequest {
            tenant_id: "acme".into(),
            event_type: "appointment.booking.created".into(),
            include_disabled: false,
            min_config_sequence: 0,
        })
        .await
        .unwrap()
        .into_inner()
    ));

    // Sending the masked URL back (a client that read and re-saves the
    // endpoint) keeps the stored one.
    let updated = subs
        .update_endpoint(spb::UpdateEndpointRequest {
            tenant_id: "acme".into(),
            endpoint_id: ep.clone(),
            url: Some(masked.clone()),
            description: Some("ERP".into()),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(updated.description, "ERP");
    outputs.push(format!("{updated:?}"));
    assert_eq!(subs.get_endpoint(get(true)).await.unwrap().into_inner().url, url, "the stored URL is kept");

    s.publish_json("acme", &example("appointment.booking.created")).await;
    let got = receiver.wait_for(1, Duration::from_secs(20)).await.unwrap();
    assert_eq!(got[0].query.as_deref(), Some(format!("code={TOKEN}&v=2").as_str()), "the receiver gets the query");

    // The delivery log's Raw masks it too, unless asked.
    let mut log = s.delivery_client().await;
    let delivery = hookline_e2e::eventually(Duration::from_secs(20), "the delivery is logged", || {
        let (mut log, ep) = (log.clone(), ep.clone());
        async move {
            let page = log
                .list_deliveries(ListDeliveriesRequest {
                    tenant_id: "acme".into(),
                    endpoint_id: ep.clone(),
                    ..Default::default()
                })
                .await
                .ok()?
                .into_inner();
            page.deliveries.into_iter().find(|d| d.state == DeliveryState::Succeeded as i32).map(|d| d.id)
        }
    })
    .await
    .unwrap();
    let raw = |reveal_url| GetDeliveryRawRequest {
        tenant_id: "acme".into(),
        delivery_id: delivery.clone(),
        attempt: 0,
        reveal_url,
    };
    let shown = log.get_delivery_raw(raw(false)).await.unwrap().into_inner();
    assert_eq!(shown.url, masked);
    outputs.push(format!("{shown:?}"));
    assert_eq!(log.get_delivery_raw(raw(true)).await.unwrap().into_inner().url, url);

    // The CLI prints what the API gives, and reveals on request.
    let cli = |args: &[&str]| {
        let out = std::process::Command::new(hookline_e2e::hookline_bin())
            .args(args)
            .env("HOOKLINE_SUBSCRIPTIONS_URL", s.hookline.grpc_url())
            .env("HOOKLINE_DELIVERY_URL", s.hookline.grpc_url())
            .output()
            .unwrap();
        assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    outputs.push(cli(&["endpoint", "get", "acme", &ep]));
    outputs.push(cli(&["endpoint", "list", "acme", "--json"]));
    outputs.push(cli(&["delivery", "raw", "acme", &delivery]));
    assert!(cli(&["endpoint", "get", "acme", &ep, "--reveal-url"]).contains(TOKEN));
    assert!(cli(&["delivery", "raw", "acme", &delivery, "--reveal-url", "--json"]).contains(TOKEN));

    tokio::time::sleep(Duration::from_millis(500)).await;
    outputs.push(s.hookline.log_contents());
    for o in &outputs {
        assert!(!o.contains(TOKEN) && !o.contains("never-show-me"), "an output shows the query token: {o}");
    }
    assert!(outputs[0].contains("code=********"), "{}", outputs[0]);
}

/// Every header a receiver gets from Hookline, besides the tenant's own auth
/// header, is refused as an auth header name: a tenant can neither replace
/// one nor have its header silently replaced.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_header_hookline_sends_is_refused_as_an_auth_header_name() {
    let s = stack().await;
    let receiver = Receiver::start().await;
    let mut subs = s.hookline.subscriptions_client().await;
    s.create_tenant("acme", Plan::Enterprise, true).await;
    subs.create_endpoint(spb::CreateEndpointRequest {
        tenant_id: "acme".into(),
        url: receiver.url(),
        auth_header: Some(spb::AuthHeader { name: "X-Api-Key".into(), value: "k".into() }),
        ..Default::default()
    })
    .await
    .unwrap();
    s.publish_json("acme", &example("appointment.booking.created")).await;
    let got = receiver.wait_for(1, Duration::from_secs(20)).await.unwrap();
    let names: Vec<&str> = got[0].headers.iter().map(|(k, _)| k.as_str()).filter(|k| *k != "x-api-key").collect();
    for expected in ["accept", "content-length", "content-type", "host", "traceparent", "user-agent", "webhook-id"] {
        assert!(names.contains(&expected), "the receiver got {expected}: {names:?}");
    }
    for name in names {
        let err = subs
            .create_endpoint(spb::CreateEndpointRequest {
                tenant_id: "acme".into(),
                url: receiver.url(),
                auth_header: Some(spb::AuthHeader { name: name.to_ascii_uppercase(), value: "v".into() }),
                ..Default::default()
            })
            .await
            .expect_err(&format!("`{name}` must be refused as an auth header name"));
        assert_eq!(err.code(), tonic::Code::InvalidArgument, "{name}: {}", err.message());
        assert!(err.message().contains("auth_header.name"), "{name}: {}", err.message());
    }
    let listed = subs.list_endpoints(spb::ListEndpointsRequest { tenant_id: "acme".into() }).await.unwrap();
    assert_eq!(listed.into_inner().endpoints.len(), 1, "nothing half-saved");
}
