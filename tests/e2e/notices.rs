//! Operational notices end to end: a real SMTP peer and a real HTTP
//! receiver as the tenant's operational contact, set with the CLI, and an
//! auto-disable window of seconds so the thresholds pass during the test.

use std::time::Duration;

use hookline_e2e::{Receiver, Recorded, Reply, eventually};
use hookline_proto::subscriptions::v1::{self as spb, PayloadLayout, Plan};
use serde_json::Value;

use crate::common::*;

/// The auto-disable window: long enough that each threshold (8 s, 12 s,
/// 14.4 s, 16 s) is its own round even on a loaded machine.
const WINDOW: &str = "16s";
const WINDOW_SECONDS: u64 = 16;
/// The order every contact hears about one failing period in.
const SEQUENCE: [&str; 4] = ["endpoint.failing 50", "endpoint.failing 75", "endpoint.failing 90", "endpoint.disabled"];

fn label(notice: &Value) -> String {
    match notice["threshold"].as_i64() {
        Some(t) => format!("{} {t}", notice["type"].as_str().unwrap_or("?")),
        None => notice["type"].as_str().unwrap_or("?").to_owned(),
    }
}

/// The notices the receiver accepted (a 2xx answer), in arrival order.
fn accepted(receiver: &Receiver) -> Vec<Recorded> {
    receiver.requests().into_iter().filter(|r| (200..300).contains(&r.status)).collect()
}

async fn stack_for_notices(sink: &SmtpSink) -> Stack {
    stack_with(&[
        ("HOOKLINE_SMTP_URL", &format!("smtp://127.0.0.1:{}", sink.port)),
        ("HOOKLINE_RETRY_SCHEDULE", "0s,1s,1s,1s,1s,1s,1s,1s,1s,1s,1s,1s,1s,1s,1s,1s,1s,1s,1s,1s,1s,1s,1s,1s"),
        ("HOOKLINE_AUTO_DISABLE_AFTER", WINDOW),
        ("HOOKLINE_AUTO_DISABLE_INTERVAL", "200ms"),
        ("HOOKLINE_BREAKER_THRESHOLD", "1000"),
        ("HOOKLINE_LOG", "debug"),
    ])
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_endpoint_notifies_each_threshold_once_then_its_disabling_by_signed_post_and_email() {
    let sink = SmtpSink::start(None);
    let s = stack_for_notices(&sink).await;
    let contact = Receiver::start().await;
    // The first notice is refused once: the sender tries it again.
    contact.script([Reply::new(503)]);
    s.create_tenant("acme", Plan::Basic, true).await;
    s.create_tenant("quiet", Plan::Basic, true).await;

    // The contact is set with the CLI; the secret is read back the same way.
    let (code, out, err) =
        cli(&s, &["tenant", "update", "acme", "--ops-email", "ops@acme.example", "--ops-webhook", &contact.url()]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("ops e-mail ops@acme.example"), "{out}");
    let (code, secret, err) = cli(&s, &["tenant", "notice-secret", "acme"]);
    assert_eq!(code, 0, "{err}");
    let secret = secret.trim().to_owned();
    assert!(secret.starts_with("whsec_"), "{secret}");
    let (code, _, err) = cli(&s, &["tenant", "notice-secret", "quiet"]);
    assert_ne!(code, 0, "a tenant without a contact has no notice secret");
    assert!(err.contains("no operational contact"), "{err}");
    let (_, shown, _) = cli(&s, &["tenant", "get", "acme", "--json"]);
    assert!(!shown.contains(&secret), "the secret is only shown by notice-secret: {shown}");

    // Both tenants' endpoints fail every attempt.
    let failing = Receiver::start().await;
    failing.set_default(500);
    let (ep, _) = s.create_endpoint("acme", &failing.url(), &[], PayloadLayout::Envelope).await;
    let (quiet_ep, _) = s.create_endpoint("quiet", &failing.url(), &[], PayloadLayout::Envelope).await;
    s.publish_json("acme", &fresh("customer.created")).await;
    s.publish_json("quiet", &fresh("customer.created")).await;

    let posts = eventually(Duration::from_secs(60), "the disabled notice by POST", || async {
        let got = accepted(&contact);
        got.iter().any(|r| r.json().is_ok_and(|n| n["type"] == "endpoint.disabled")).then_some(got)
    })
    .await
    .unwrap();
    let mails = eventually(Duration::from_secs(30), "the disabled notice by e-mail", || async {
        let got = sink.messages();
        got.iter().any(|m| m["headers"]["subject"].as_str().is_some_and(|s| s.contains("was disabled"))).then_some(got)
    })
    .await
    .unwrap();
    let subs = s.hookline.subscriptions_client().await;
    for (tenant, id) in [("acme", &ep), ("quiet", &quiet_ep)] {
        eventually(Duration::from_secs(30), "both endpoints disabled", || {
            let mut subs = subs.clone();
            async move {
                let e = subs
                    .get_endpoint(spb::GetEndpointRequest {
                        tenant_id: tenant.into(),
                        endpoint_id: id.clone(),
                        ..Default::default()
                    })
                    .await?
                    .into_inner();
                Ok((!e.enabled).then_some(()))
            }
        })
        .await
        .unwrap();
    }
    // A few more rounds of auto-disable and of the sender: nothing is sent again.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(accepted(&contact).len(), posts.len(), "no notice after the disabled one");
    assert_eq!(sink.messages().len(), mails.len(), "no e-mail after the disabled one");

    // The POSTs: each threshold once, in order, signed with the notice secret.
    let notices: Vec<Value> = posts.iter().map(|r| r.json().unwrap()).collect();
    assert_eq!(notices.iter().map(label).collect::<Vec<_>>(), SEQUENCE, "{notices:#?}");
    for (r, n) in posts.iter().zip(&notices) {
        assert!(r.verify(&secret), "the notice is signed with the tenant's notice secret: {n}");
        assert_eq!(n["tenant_id"], "acme");
        assert_eq!(n["endpoint_id"], ep.as_str());
        assert_eq!(n["endpoint_url"], failing.url());
        assert_eq!(n["window_seconds"], WINDOW_SECONDS);
        assert_eq!(n["failing_since"], notices[0]["failing_since"], "one failing period");
        assert!(n["last_error"].as_str().is_some_and(|e| e.contains("500")), "{n}");
        let since = chrono::DateTime::parse_from_rfc3339(n["failing_since"].as_str().unwrap()).unwrap();
        let disable_at = chrono::DateTime::parse_from_rfc3339(n["disable_at"].as_str().unwrap()).unwrap();
        assert_eq!((disable_at - since).num_seconds(), WINDOW_SECONDS as i64, "{n}");
    }
    let ids: std::collections::HashSet<_> = posts.iter().map(|r| r.header("webhook-id").unwrap()).collect();
    assert_eq!(ids.len(), SEQUENCE.len(), "one webhook id per notice");
    let refused = contact.requests().into_iter().filter(|r| r.status == 503).collect::<Vec<_>>();
    assert_eq!(refused.len(), 1);
    assert_eq!(
        refused[0].header("webhook-id"),
        posts[0].header("webhook-id"),
        "the refused notice is tried again with the same id"
    );

    // The e-mails: the same notices, readable, with the JSON attached and signed.
    assert_eq!(mails.len(), SEQUENCE.len(), "{mails:#?}");
    for (mail, notice) in mails.iter().zip(&notices) {
        assert_eq!(mail["rcpt_to"], serde_json::json!(["ops@acme.example"]));
        let text = mail["text"].as_str().unwrap();
        for fact in
            ["acme", ep.as_str(), notice["failing_since"].as_str().unwrap(), notice["disable_at"].as_str().unwrap()]
        {
            assert!(text.contains(fact), "the e-mail states {fact}:\n{text}");
        }
        assert!(text.contains("HTTP 500"), "the e-mail states the last error:\n{text}");
        let json = mail["attachments"][0]["content"].as_str().unwrap();
        let attached: Value = serde_json::from_str(json).unwrap();
        assert_eq!(label(&attached), label(notice));
        let h = &mail["headers"];
        assert!(hookline_e2e::verify_standard_webhook(
            &secret,
            h["webhook-id"].as_str().unwrap(),
            h["webhook-timestamp"].as_str().unwrap(),
            json.as_bytes(),
            h["webhook-signature"].as_str().unwrap(),
        ));
    }
    let subjects: Vec<&str> = mails.iter().map(|m| m["headers"]["subject"].as_str().unwrap()).collect();
    assert!(subjects[0].contains("50 %") && subjects[3].contains("was disabled"), "{subjects:?}");

    let log = s.hookline.log_contents();
    assert!(log.contains("operational notice sent"), "the service log was captured");
    assert!(!log.contains(secret.trim_start_matches("whsec_")), "the notice secret appears in the service log");

    // The tenant without a contact heard nothing.
    let everything =
        format!("{:?}{:?}", contact.requests().iter().map(|r| r.json().ok()).collect::<Vec<_>>(), sink.messages());
    assert!(!everything.contains(quiet_ep.as_str()), "a notice about the quiet tenant's endpoint was sent");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_failing_period_after_recovery_is_notified_again() {
    let sink = SmtpSink::start(None);
    let s = stack_for_notices(&sink).await;
    let contact = Receiver::start().await;
    let mut subs = s.hookline.subscriptions_client().await;
    subs.create_tenant(spb::CreateTenantRequest {
        tenant_id: "acme".into(),
        plan: Plan::Basic.into(),
        webhooks_enabled: true,
        operational_webhook_url: contact.url(),
        ..Default::default()
    })
    .await
    .unwrap();
    let failing = Receiver::start().await;
    failing.set_default(500);
    let (ep, _) = s.create_endpoint("acme", &failing.url(), &[], PayloadLayout::Envelope).await;
    s.publish_json("acme", &fresh("customer.created")).await;
    let first = eventually(Duration::from_secs(40), "the 50 % notice", || async {
        accepted(&contact).into_iter().find_map(|r| r.json().ok().filter(|n| label(n) == SEQUENCE[0]))
    })
    .await
    .unwrap();

    // A success ends the period; the next failure starts another one.
    failing.set_default(200);
    s.publish_json("acme", &fresh("customer.updated")).await;
    eventually(Duration::from_secs(20), "a success", || async {
        failing.requests().iter().any(|r| r.status == 200).then_some(())
    })
    .await
    .unwrap();
    failing.set_default(500);
    s.publish_json("acme", &fresh("customer.updated")).await;
    let again = eventually(Duration::from_secs(40), "the 50 % notice of the new period", || async {
        accepted(&contact)
            .into_iter()
            .filter_map(|r| r.json().ok())
            .find(|n| label(n) == SEQUENCE[0] && n["failing_since"] != first["failing_since"])
    })
    .await
    .unwrap();
    assert_eq!(again["endpoint_id"], ep.as_str());
    assert!(again["failing_since"].as_str() > first["failing_since"].as_str(), "{again}");
    assert!(sink.messages().is_empty(), "no e-mail without an operational e-mail address");
}
