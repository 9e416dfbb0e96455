//! Acceptance 6: the auth header's value reaches the receiver and nothing else.

use std::time::Duration;

use hookline_e2e::Receiver;
use hookline_proto::subscriptions::v1::{self as spb, Plan};

use crate::common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_header_value_reaches_the_receiver_and_no_log_or_api_output() {
    const VALUE: &str = "Bearer tok-9f8e7d6c5b4a-never-log-me";
    let s = stack_with(&[("HOOKLINE_LOG", "debug")]).await;
    let receiver = Receiver::start().await;
    let mut subs = s.hookline.subscriptions_client().await;
    tenant(&mut subs, "acme", Plan::Professional, true).await;
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
        subs.get_endpoint(spb::GetEndpointRequest { tenant_id: "acme".into(), endpoint_id: ep.clone() })
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

    let mut ingest = s.hookline.ingest_client().await;
    ingest.publish(json_request("acme", &example("appointment.booking.created"))).await.unwrap();
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
    tenant(&mut subs, "acme", Plan::Basic, true).await;
    let (ep, old) = endpoint(&mut subs, "acme", &receiver.url(), &[], spb::PayloadLayout::Envelope).await;
    let rotate = |grace: u32| spb::RotateEndpointSecretRequest {
        tenant_id: "acme".into(),
        endpoint_id: ep.clone(),
        grace_period_seconds: Some(grace),
        ..Default::default()
    };
    let new = subs.rotate_endpoint_secret(rotate(3600)).await.unwrap().into_inner().secret;
    assert_ne!(new, old);
    let mut ingest = s.hookline.ingest_client().await;
    ingest.publish(json_request("acme", &example("customer.created"))).await.unwrap();
    let r = receiver.wait_for(1, Duration::from_secs(20)).await.unwrap().remove(0);
    assert_eq!(r.header("webhook-signature").unwrap().split(' ').count(), 2);
    assert!(r.verify(&old), "a receiver with only the old secret accepts");
    assert!(r.verify(&new), "a receiver with only the new secret accepts");

    // Rotating again without grace: the replaced secret stops at once; the
    // first one is still inside its own hour of grace.
    let newest = subs.rotate_endpoint_secret(rotate(0)).await.unwrap().into_inner().secret;
    ingest.publish(json_request("acme", &example("customer.updated"))).await.unwrap();
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
