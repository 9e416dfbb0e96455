//! What the console needs from the services, through the public gRPC API:
//! tenant search and paging, portal links, and test events.

use std::time::Duration;

use hookline_e2e::{HooklineBuilder, HooklineProc, Receiver, Reply, eventually};
use hookline_proto::{
    delivery::v1::{self as dpb, DeliveryState, delivery_service_client::DeliveryServiceClient},
    subscriptions::v1::{self as spb, PayloadLayout, Plan, subscription_service_client::SubscriptionServiceClient},
};
use tonic::{Code, Request, Status, transport::Channel};

use crate::common::*;

const OPERATOR: &str = "op-token-for-console-tests-5d1c";

fn as_operator<T>(msg: T) -> Request<T> {
    with_bearer(msg, OPERATOR)
}

fn refused<T: std::fmt::Debug>(what: &str, r: Result<tonic::Response<T>, Status>, code: Code) -> String {
    match r {
        Ok(resp) => panic!("{what}: expected {code:?}, got {:?}", resp.into_inner()),
        Err(s) => {
            assert_eq!(s.code(), code, "{what}: {}", s.message());
            s.message().to_owned()
        }
    }
}

fn list(query: &str, page_size: u32, page_token: &str) -> Request<spb::ListTenantsRequest> {
    as_operator(spb::ListTenantsRequest { query: query.into(), page_size, page_token: page_token.into() })
}

fn ids(page: &spb::ListTenantsResponse) -> Vec<&str> {
    page.tenants.iter().map(|t| t.id.as_str()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operators_search_and_page_tenants_by_id_and_tenant_keys_are_denied_every_console_call() {
    let s = stack_with(&[("HOOKLINE_OPERATOR_TOKEN", OPERATOR)]).await;
    let mut subs = s.hookline.subscriptions_client().await;
    // Created out of order: the list is ordered by id, not by creation.
    let mut created: Vec<String> = (0..57).rev().map(|i| format!("salon-{i:03}")).collect();
    created.extend(["clinic-bern", "clinic-basel", "physio-zurich"].map(String::from));
    for id in &created {
        s.create_tenant(id, Plan::Professional, true).await;
    }
    created.sort();

    // The first page holds the default 50, with the total and a token.
    let first = subs.list_tenants(list("", 0, "")).await.unwrap().into_inner();
    assert_eq!(first.total_matching, 60);
    assert_eq!(ids(&first), created[..50].iter().map(String::as_str).collect::<Vec<_>>());
    assert!(!first.next_page_token.is_empty());
    assert_eq!(first.tenants[0].plan, Plan::Professional as i32);
    assert_eq!((first.tenants[0].endpoint_limit, first.tenants[0].webhooks_enabled), (3, true));

    // Every tenant once, in order, through pages of 7.
    let (mut seen, mut token) = (Vec::new(), String::new());
    loop {
        let page = subs.list_tenants(list("", 7, &token)).await.unwrap().into_inner();
        assert!(page.tenants.len() <= 7);
        assert_eq!(page.total_matching, 60);
        seen.extend(page.tenants.into_iter().map(|t| t.id));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(seen, created);

    // Search ignores case and matches anywhere in the id.
    let found = subs.list_tenants(list("CLINIC", 0, "")).await.unwrap().into_inner();
    assert_eq!((ids(&found), found.total_matching), (vec!["clinic-basel", "clinic-bern"], 2));
    assert!(found.next_page_token.is_empty());
    let found = subs.list_tenants(list("-05", 3, "")).await.unwrap().into_inner();
    assert_eq!((ids(&found), found.total_matching), (vec!["salon-050", "salon-051", "salon-052"], 7));
    let rest = subs.list_tenants(list("-05", 3, &found.next_page_token)).await.unwrap().into_inner();
    assert_eq!(ids(&rest), ["salon-053", "salon-054", "salon-055"]);
    let none = subs.list_tenants(list("dentist", 0, "")).await.unwrap().into_inner();
    assert_eq!((none.tenants.len(), none.total_matching, none.next_page_token.as_str()), (0, 0, ""));

    // Bad input names the field.
    let m = refused("page_size 501", subs.list_tenants(list("", 501, "")).await, Code::InvalidArgument);
    assert!(m.starts_with("page_size: must be at most 500"), "{m}");
    let m = refused("page_token", subs.list_tenants(list("", 0, "not a token!")).await, Code::InvalidArgument);
    assert!(m.starts_with("page_token:"), "{m}");

    // The CLI prints the same, as a table or as JSON.
    let cli = |args: &[&str]| {
        let out = std::process::Command::new(hookline_e2e::hookline_bin())
            .args(args)
            .env("HOOKLINE_SUBSCRIPTIONS_URL", s.hookline.grpc_url())
            .env("HOOKLINE_TOKEN", OPERATOR)
            .output()
            .unwrap();
        assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    };
    let json: serde_json::Value =
        serde_json::from_str(&cli(&["tenant", "list", "--query", "clinic", "--json"])).unwrap();
    assert_eq!(json["total_matching"], 2);
    assert_eq!(json["tenants"][1]["id"], "clinic-bern");
    assert_eq!(json["next_page_token"], serde_json::Value::Null);
    let table = cli(&["tenant", "list", "--page-size", "2"]);
    assert!(table.contains("clinic-basel") && table.contains("professional"), "{table}");
    assert!(table.contains("2 of 60 matching; next page: --page-token "), "{table}");

    // A tenant's own API key may not list, mint or redeem.
    let key = subs
        .create_api_key(as_operator(spb::CreateApiKeyRequest { tenant_id: "clinic-bern".into(), name: "ERP".into() }))
        .await
        .unwrap()
        .into_inner()
        .key;
    let link = subs
        .create_portal_link(as_operator(spb::CreatePortalLinkRequest {
            tenant_id: "clinic-bern".into(),
            ttl_seconds: 0,
        }))
        .await
        .unwrap()
        .into_inner();
    let q = spb::ListTenantsRequest::default();
    refused("ListTenants with a key", subs.list_tenants(with_bearer(q, &key)).await, Code::PermissionDenied);
    let r = spb::CreatePortalLinkRequest { tenant_id: "clinic-bern".into(), ttl_seconds: 0 };
    refused("CreatePortalLink with a key", subs.create_portal_link(with_bearer(r, &key)).await, Code::PermissionDenied);
    let r = spb::RedeemPortalLinkRequest { token: link.token.clone() };
    refused("RedeemPortalLink with a key", subs.redeem_portal_link(with_bearer(r, &key)).await, Code::PermissionDenied);
    let r = spb::RedeemPortalLinkRequest { token: link.token };
    refused("RedeemPortalLink without a token", subs.redeem_portal_link(r).await, Code::Unauthenticated);
}

async fn mint(subs: &mut SubscriptionServiceClient<Channel>, tenant: &str, ttl_seconds: u32) -> spb::PortalLink {
    subs.create_portal_link(as_operator(spb::CreatePortalLinkRequest { tenant_id: tenant.into(), ttl_seconds }))
        .await
        .unwrap()
        .into_inner()
}

async fn redeem(subs: &mut SubscriptionServiceClient<Channel>, token: &str) -> Result<spb::PortalSession, Status> {
    subs.redeem_portal_link(as_operator(spb::RedeemPortalLinkRequest { token: token.into() }))
        .await
        .map(tonic::Response::into_inner)
}

fn unauthenticated(r: Result<spb::PortalSession, Status>) -> String {
    match r {
        Ok(s) => panic!("expected UNAUTHENTICATED, the link opened {s:?}"),
        Err(s) => {
            assert_eq!(s.code(), Code::Unauthenticated, "{}", s.message());
            s.message().to_owned()
        }
    }
}

fn seconds_until(rfc3339: &str) -> i64 {
    let at = chrono::DateTime::parse_from_rfc3339(rfc3339).unwrap();
    (at.with_timezone(&chrono::Utc) - chrono::Utc::now()).num_seconds()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn portal_links_open_one_tenant_until_they_expire_and_altered_links_are_refused() {
    let s = stack_with(&[("HOOKLINE_OPERATOR_TOKEN", OPERATOR)]).await;
    let mut subs = s.hookline.subscriptions_client().await;
    s.create_tenant("alpha", Plan::Professional, true).await;
    s.create_tenant("beta", Plan::Professional, true).await;

    // A link opens its tenant (and only it) for the default hour.
    let link = mint(&mut subs, "alpha", 0).await;
    assert!(link.token.starts_with("hpl_"), "{}", link.token);
    assert_eq!(link.tenant_id, "alpha");
    assert!((3590..=3600).contains(&seconds_until(&link.expires_at)), "{}", link.expires_at);
    let session = redeem(&mut subs, &link.token).await.unwrap();
    assert_eq!((session.tenant_id.as_str(), session.expires_at.as_str()), ("alpha", link.expires_at.as_str()));
    let beta_link = mint(&mut subs, "beta", 600).await;
    let beta = redeem(&mut subs, &beta_link.token).await.unwrap();
    assert_eq!(beta.tenant_id, "beta");
    assert!((590..=600).contains(&seconds_until(&beta.expires_at)));

    // Altered links: another tenant spliced into the payload, a flipped
    // signature, beta's signature on alpha's payload, and no link at all.
    let (payload, signature) = link.token.split_once('.').unwrap();
    let beta_token = mint(&mut subs, "beta", 0).await.token;
    let (beta_payload, beta_signature) = beta_token.split_once('.').unwrap();
    let mut flipped: Vec<char> = signature.chars().collect();
    flipped[3] = if flipped[3] == 'A' { 'B' } else { 'A' };
    let flipped: String = flipped.into_iter().collect();
    for altered in
        [format!("{beta_payload}.{signature}"), format!("{payload}.{beta_signature}"), format!("{payload}.{flipped}")]
    {
        let m = unauthenticated(redeem(&mut subs, &altered).await);
        assert!(m.contains("signature does not match"), "{m}");
    }
    for (junk, why) in [("", "must start `hpl_`"), ("hpl_abc", "hpl_<payload>.<signature>"), ("hpl_!!.x", "base64url")]
    {
        let m = unauthenticated(redeem(&mut subs, junk).await);
        assert!(m.starts_with("malformed portal link") && m.contains(why), "{junk}: {m}");
    }

    // Bad requests name the field; unknown tenants get no link.
    let r = subs.create_portal_link(as_operator(spb::CreatePortalLinkRequest {
        tenant_id: "alpha".into(),
        ttl_seconds: 7 * 24 * 3600 + 1,
    }));
    let m = refused("ttl too long", r.await, Code::InvalidArgument);
    assert!(m.starts_with("ttl_seconds: must be at most 604800"), "{m}");
    let r = subs.create_portal_link(as_operator(spb::CreatePortalLinkRequest {
        tenant_id: "Not Valid".into(),
        ttl_seconds: 0,
    }));
    assert!(refused("bad id", r.await, Code::InvalidArgument).starts_with("tenant_id:"));
    let r = subs
        .create_portal_link(as_operator(spb::CreatePortalLinkRequest { tenant_id: "gamma".into(), ttl_seconds: 0 }));
    assert!(refused("unknown tenant", r.await, Code::NotFound).contains("gamma"));

    // A one-second link works, then stays refused however often it is presented.
    let short = mint(&mut subs, "alpha", 1).await;
    let opened = redeem(&mut subs, &short.token).await;
    let expired_at = chrono::DateTime::parse_from_rfc3339(&short.expires_at).unwrap();
    tokio::time::sleep(Duration::from_millis(2100)).await;
    if let Ok(session) = opened {
        assert_eq!(session.tenant_id, "alpha", "before it expired");
    }
    for _ in 0..3 {
        let m = unauthenticated(redeem(&mut subs, &short.token).await);
        assert_eq!(m, format!("portal link expired at {}", short.expires_at));
    }
    assert!(chrono::Utc::now() > expired_at);

    // The CLI prints the console URL and the expiry.
    let out = std::process::Command::new(hookline_e2e::hookline_bin())
        .args(["portal", "link", "beta", "--ttl", "2h", "--json"])
        .env("HOOKLINE_SUBSCRIPTIONS_URL", s.hookline.grpc_url())
        .env("HOOKLINE_TOKEN", OPERATOR)
        .env("HOOKLINE_CONSOLE_PUBLIC_URL", "https://console.example.com/")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let printed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let url = printed["url"].as_str().unwrap();
    let token = url.strip_prefix("https://console.example.com/portal/").unwrap_or_else(|| panic!("{url}"));
    assert_eq!(printed["token"], token);
    assert!((7190..=7200).contains(&seconds_until(printed["expires_at"].as_str().unwrap())));
    assert_eq!(redeem(&mut subs, token).await.unwrap().tenant_id, "beta");
    let out = std::process::Command::new(hookline_e2e::hookline_bin())
        .args(["portal", "link", "beta", "--ttl", "8d"])
        .env("HOOKLINE_SUBSCRIPTIONS_URL", s.hookline.grpc_url())
        .env("HOOKLINE_TOKEN", OPERATOR)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("ttl_seconds"), "{}", String::from_utf8_lossy(&out.stderr));
}

/// A `hookline dev` on an existing NATS and database, with `env`.
async fn dev_on(s: &Stack, env: &[(&str, &str)]) -> HooklineProc {
    let mut b =
        HooklineBuilder::new("dev").env("HOOKLINE_NATS_URL", &s.nats.url()).env("HOOKLINE_DATABASE_URL", s.db.url());
    for (k, v) in env {
        b = b.env(k, v);
    }
    b.spawn().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn portal_links_survive_restarts_and_rotations_when_a_master_key_or_operator_token_is_set() {
    // Signed under the operator token: a restart keeps links working.
    let mut s = stack_with(&[("HOOKLINE_OPERATOR_TOKEN", OPERATOR)]).await;
    let mut subs = s.hookline.subscriptions_client().await;
    s.create_tenant("acme", Plan::Professional, true).await;
    let before = mint(&mut subs, "acme", 0).await;
    s.hookline.respawn().await.unwrap();
    let mut subs = s.hookline.subscriptions_client().await;
    assert_eq!(redeem(&mut subs, &before.token).await.unwrap().tenant_id, "acme");

    // Another deployment with the same token redeems the signature, but its
    // tenant does not exist there.
    let other = stack_with(&[("HOOKLINE_OPERATOR_TOKEN", OPERATOR)]).await;
    let mut other_subs = other.hookline.subscriptions_client().await;
    let m = unauthenticated(redeem(&mut other_subs, &before.token).await);
    assert_eq!(m, "portal link: tenant `acme` does not exist");
    drop(other);

    // Rotating the operator token keeps links signed under the former one.
    s.hookline.terminate();
    s.hookline.wait_exit(Duration::from_secs(20)).await.expect("graceful exit");
    const ROTATED: &str = "op-token-for-console-tests-rotated-88e2";
    let rotated =
        dev_on(&s, &[("HOOKLINE_OPERATOR_TOKEN", ROTATED), ("HOOKLINE_OPERATOR_TOKEN_PREVIOUS", OPERATOR)]).await;
    let mut subs = rotated.subscriptions_client().await;
    let redeemed =
        subs.redeem_portal_link(with_bearer(spb::RedeemPortalLinkRequest { token: before.token.clone() }, ROTATED));
    assert_eq!(redeemed.await.unwrap().into_inner().tenant_id, "acme");
    drop(rotated);

    // Under a master key (which takes precedence), then rotated to a new one.
    let (k1, k2) = ("bWFzdGVyLWtleS1vbmUtZm9yLXRoZS1jb25zb2xlLXQ=", "bWFzdGVyLWtleS10d28tZm9yLXRoZS1jb25zb2xlLXQ=");
    let mut keyed = dev_on(&s, &[("HOOKLINE_MASTER_KEY", k1), ("HOOKLINE_OPERATOR_TOKEN", OPERATOR)]).await;
    let mut subs = keyed.subscriptions_client().await;
    let m = unauthenticated(redeem(&mut subs, &before.token).await);
    assert!(m.contains("signature does not match"), "a token-signed link under a master key: {m}");
    let link = mint(&mut subs, "acme", 0).await;
    keyed.respawn().await.unwrap();
    let mut subs = keyed.subscriptions_client().await;
    assert_eq!(redeem(&mut subs, &link.token).await.unwrap().tenant_id, "acme");
    keyed.terminate();
    keyed.wait_exit(Duration::from_secs(20)).await.expect("graceful exit");
    let rotated = dev_on(
        &s,
        &[("HOOKLINE_MASTER_KEY", k2), ("HOOKLINE_MASTER_KEY_PREVIOUS", k1), ("HOOKLINE_OPERATOR_TOKEN", OPERATOR)],
    )
    .await;
    let mut subs = rotated.subscriptions_client().await;
    assert_eq!(redeem(&mut subs, &link.token).await.unwrap().tenant_id, "acme");
    drop(rotated);

    // Without either, the key is the process's own: a restart ends its links.
    let mut open = dev_on(&s, &[]).await;
    let mut subs = open.subscriptions_client().await;
    let link = subs
        .create_portal_link(spb::CreatePortalLinkRequest { tenant_id: "acme".into(), ttl_seconds: 0 })
        .await
        .unwrap()
        .into_inner();
    let again = |subs: &mut SubscriptionServiceClient<Channel>| {
        let mut subs = subs.clone();
        let token = link.token.clone();
        async move { subs.redeem_portal_link(spb::RedeemPortalLinkRequest { token }).await.map(|r| r.into_inner()) }
    };
    assert_eq!(again(&mut subs).await.unwrap().tenant_id, "acme");
    open.respawn().await.unwrap();
    let mut subs = open.subscriptions_client().await;
    assert!(unauthenticated(again(&mut subs).await).contains("signature does not match"));
    assert!(open.log_contents().contains("portal links are signed with a random key of this process"));
}

fn send_test(tenant: &str, endpoint: &str, event_type: &str) -> dpb::SendTestEventRequest {
    dpb::SendTestEventRequest { tenant_id: tenant.into(), endpoint_id: endpoint.into(), event_type: event_type.into() }
}

async fn test_rows(
    c: &mut DeliveryServiceClient<Channel>,
    tenant: &str,
    ep: &str,
    test: Option<bool>,
) -> Vec<dpb::Delivery> {
    c.list_deliveries(dpb::ListDeliveriesRequest {
        tenant_id: tenant.into(),
        endpoint_id: ep.into(),
        test,
        ..Default::default()
    })
    .await
    .unwrap()
    .into_inner()
    .deliveries
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_test_event_reaches_only_its_endpoint_signed_retried_and_logged_as_a_test() {
    let s = stack().await;
    let mut log = s.delivery_client().await;
    s.create_tenant("acme", Plan::Professional, true).await;
    // The first attempt fails: the test event is retried like any other.
    let target = Receiver::with_script(vec![Reply::new(503)]).await;
    let bystander = Receiver::start().await;
    let (ep, secret) = s.create_endpoint("acme", &target.url(), &["customer.created"], PayloadLayout::Envelope).await;
    let (other, _) = s.create_endpoint("acme", &bystander.url(), &[], PayloadLayout::Envelope).await;

    // A type the endpoint is not subscribed to is still sent: it is a test.
    let sent = log.send_test_event(send_test("acme", &ep, "appointment.booking.created")).await.unwrap().into_inner();
    assert!(sent.delivery_id.starts_with("dlv_") && sent.event_id.starts_with("evt_"), "{sent:?}");
    let got = target.wait_for(2, Duration::from_secs(20)).await.unwrap();
    assert_eq!((got[0].status, got[1].status), (503, 200));
    let request = &got[1];
    assert!(request.verify(&secret), "signed with the endpoint's secret");
    assert_eq!(request.header("webhook-id"), Some(sent.event_id.as_str()));
    assert_eq!(request.header("hookline-test"), Some("true"));
    let body = request.json().unwrap();
    assert_eq!(body["type"], "appointment.booking.created");
    assert_eq!(body["data"]["channel"], "widget");
    assert!(body["data"]["appointment"]["starts_at"].is_string() && body["data"]["customer"]["last_name"].is_string());

    // In the log: one delivery, marked test, two attempts; the filter finds it.
    let row = eventually(Duration::from_secs(10), "the test delivery in the log", || {
        let mut log = log.clone();
        let ep = ep.clone();
        async move {
            let rows = test_rows(&mut log, "acme", &ep, None).await;
            Ok(rows.into_iter().find(|d| d.state == DeliveryState::Succeeded as i32))
        }
    })
    .await
    .unwrap();
    assert_eq!((row.id.as_str(), row.event_id.as_str()), (sent.delivery_id.as_str(), sent.event_id.as_str()));
    assert!(row.test);
    assert_eq!(
        (row.attempt_count, row.last_status_code, row.event_type.as_str()),
        (2, 200, "appointment.booking.created")
    );
    assert_eq!(test_rows(&mut log, "acme", &ep, Some(true)).await.len(), 1);
    assert!(test_rows(&mut log, "acme", &ep, Some(false)).await.is_empty());
    // Raw is the exact request, the test header included.
    let raw = log
        .get_delivery_raw(dpb::GetDeliveryRawRequest {
            tenant_id: "acme".into(),
            delivery_id: sent.delivery_id.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(raw.body, request.body.to_vec());
    assert!(raw.headers.iter().any(|h| h.name == "hookline-test" && h.value == "true"), "{:?}", raw.headers);

    // Nothing reached the other endpoint, though it takes every type.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(bystander.count(), 0);
    assert!(test_rows(&mut log, "acme", &other, None).await.is_empty());

    // Replayed, it is a test again, with the same webhook-id.
    let replay = log
        .replay_delivery(dpb::ReplayDeliveryRequest { tenant_id: "acme".into(), delivery_id: sent.delivery_id.clone() })
        .await
        .unwrap()
        .into_inner();
    let got = target.wait_for(3, Duration::from_secs(20)).await.unwrap();
    assert_eq!(got[2].header("webhook-id"), Some(sent.event_id.as_str()));
    assert_eq!(got[2].header("hookline-test"), Some("true"));
    let replayed = eventually(Duration::from_secs(10), "the replay in the log", || {
        let mut log = log.clone();
        let (ep, id) = (ep.clone(), replay.delivery_id.clone());
        async move { Ok(test_rows(&mut log, "acme", &ep, Some(true)).await.into_iter().find(|d| d.id == id)) }
    })
    .await
    .unwrap();
    assert_eq!(replayed.replay_of, sent.delivery_id);

    // The CLI sends one too.
    let out = std::process::Command::new(hookline_e2e::hookline_bin())
        .args(["endpoint", "test", "acme", &ep, "--type", "customer.deleted", "--json"])
        .env("HOOKLINE_DELIVERY_URL", s.hookline.grpc_url())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let printed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let got = target.wait_for(4, Duration::from_secs(20)).await.unwrap();
    assert_eq!(got[3].header("webhook-id"), printed["event_id"].as_str());
    assert_eq!(got[3].json().unwrap()["data"], serde_json::json!({"customer_id": "cus_example_1042"}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_events_are_refused_with_the_field_named_for_unknown_types_and_endpoints_and_disabled_endpoints() {
    let s = stack_with(&[("HOOKLINE_OPERATOR_TOKEN", OPERATOR)]).await;
    let mut subs = s.hookline.subscriptions_client().await;
    let mut log = s.delivery_client().await;
    s.create_tenant("acme", Plan::Professional, true).await;
    s.create_tenant("other", Plan::Professional, true).await;
    let receiver = Receiver::start().await;
    let ep = subs
        .create_endpoint(as_operator(spb::CreateEndpointRequest {
            tenant_id: "acme".into(),
            url: receiver.url(),
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner()
        .id;

    let m = refused(
        "unknown type",
        log.send_test_event(as_operator(send_test("acme", &ep, "appointment.booked"))).await,
        Code::InvalidArgument,
    );
    assert!(m.starts_with("event_type: unknown event type `appointment.booked`"), "{m}");
    let m =
        refused("no type", log.send_test_event(as_operator(send_test("acme", &ep, ""))).await, Code::InvalidArgument);
    assert_eq!(m, "event_type: is required");
    let m = refused(
        "bad endpoint id",
        log.send_test_event(as_operator(send_test("acme", "42", "customer.created"))).await,
        Code::InvalidArgument,
    );
    assert!(m.starts_with("endpoint_id:"), "{m}");
    let unknown = "ep_01KBZZZZZZZZZZZZZZZZZZZZZZ";
    let m = refused(
        "unknown endpoint",
        log.send_test_event(as_operator(send_test("acme", unknown, "customer.created"))).await,
        Code::NotFound,
    );
    assert!(m.contains(unknown), "{m}");
    // Another tenant's key sees no endpoint, and no tenant.
    let key = subs
        .create_api_key(as_operator(spb::CreateApiKeyRequest { tenant_id: "other".into(), name: String::new() }))
        .await
        .unwrap()
        .into_inner()
        .key;
    let r = log.send_test_event(with_bearer(send_test("acme", &ep, "customer.created"), &key)).await;
    refused("another tenant's key", r, Code::NotFound);
    let r = log.send_test_event(with_bearer(send_test("other", &ep, "customer.created"), &key)).await;
    refused("the endpoint under the key's own tenant", r, Code::NotFound);

    // Disabled: refused, naming why; its own tenant's key may send once enabled.
    subs.update_endpoint(as_operator(spb::UpdateEndpointRequest {
        tenant_id: "acme".into(),
        endpoint_id: ep.clone(),
        enabled: Some(false),
        ..Default::default()
    }))
    .await
    .unwrap();
    let m = refused(
        "disabled endpoint",
        log.send_test_event(as_operator(send_test("acme", &ep, "customer.created"))).await,
        Code::FailedPrecondition,
    );
    assert!(m.contains(&ep) && m.contains("disabled"), "{m}");
    subs.update_endpoint(as_operator(spb::UpdateEndpointRequest {
        tenant_id: "acme".into(),
        endpoint_id: ep.clone(),
        enabled: Some(true),
        ..Default::default()
    }))
    .await
    .unwrap();
    // Webhooks off stop the booking platform's events, not a test.
    subs.update_tenant(as_operator(spb::UpdateTenantRequest {
        tenant_id: "acme".into(),
        webhooks_enabled: Some(false),
        ..Default::default()
    }))
    .await
    .unwrap();
    let acme_key = subs
        .create_api_key(as_operator(spb::CreateApiKeyRequest { tenant_id: "acme".into(), name: String::new() }))
        .await
        .unwrap()
        .into_inner()
        .key;
    log.send_test_event(with_bearer(send_test("acme", &ep, "customer.created"), &acme_key)).await.unwrap();
    let got = receiver.wait_for(1, Duration::from_secs(20)).await.unwrap();
    assert_eq!(got[0].header("hookline-test"), Some("true"));
    assert_eq!(receiver.count(), 1, "only the accepted test was sent");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recovering_an_endpoint_replays_its_missed_events_but_not_its_failed_test_events() {
    // The breaker stays closed, so every attempt is made and both end `failed`.
    let s = stack_with(&[("HOOKLINE_BREAKER_THRESHOLD", "100")]).await;
    let mut log = s.delivery_client().await;
    s.create_tenant("acme", Plan::Basic, true).await;
    let receiver = Receiver::start().await;
    receiver.set_default(500);
    let (ep, _) = s.create_endpoint("acme", &receiver.url(), &[], PayloadLayout::Envelope).await;
    let since = chrono::Utc::now() - chrono::TimeDelta::minutes(1);
    let real = s
        .hookline
        .ingest_client()
        .await
        .publish(json_request("acme", &fresh("customer.created")))
        .await
        .unwrap()
        .into_inner()
        .event_id;
    let test = log.send_test_event(send_test("acme", &ep, "customer.created")).await.unwrap().into_inner();
    // Both fail every attempt of the schedule (0s, 1s, 2s).
    eventually(Duration::from_secs(30), "both deliveries failed", || {
        let (mut log, ep) = (log.clone(), ep.clone());
        async move {
            let rows = test_rows(&mut log, "acme", &ep, None).await;
            Ok((rows.len() == 2 && rows.iter().all(|d| d.state == DeliveryState::Failed as i32)).then_some(()))
        }
    })
    .await
    .unwrap();

    receiver.set_default(200);
    let seen = receiver.count();
    let since = since.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let job = log
        .recover_endpoint(dpb::RecoverEndpointRequest { tenant_id: "acme".into(), endpoint_id: ep.clone(), since })
        .await
        .unwrap()
        .into_inner();
    let job = eventually(Duration::from_secs(20), "the recover job completed", || {
        let (mut log, id) = (log.clone(), job.id.clone());
        async move {
            let j = log
                .get_recover_job(dpb::GetRecoverJobRequest { tenant_id: "acme".into(), job_id: id })
                .await?
                .into_inner();
            Ok((j.state == "completed").then_some(j))
        }
    })
    .await
    .unwrap();
    assert_eq!((job.total, job.done), (1, 1), "only the real event is replayed");
    let got = receiver.wait_for(seen + 1, Duration::from_secs(20)).await.unwrap();
    assert_eq!(got[seen].header("webhook-id"), Some(real.as_str()));
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(receiver.count(), seen + 1);
    assert!(receiver.requests()[seen..].iter().all(|r| r.header("webhook-id") != Some(test.event_id.as_str())));
}
