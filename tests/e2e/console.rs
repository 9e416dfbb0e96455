//! The webhooks console over HTTP, as a browser without JavaScript uses it
//! (forms, cookies, redirects), against `hookline dev` with an operator
//! token, real NATS, Postgres and receivers. The browser tests (a real
//! chromium) live beside these and drive the same pages.

use std::time::Duration;

use hookline_e2e::{Receiver, console::ConsoleClient, eventually};
use hookline_proto::{
    delivery::v1::{self as dpb, delivery_service_client::DeliveryServiceClient},
    subscriptions::v1 as spb,
};
use serde_json::Value;
use tonic::Request;

use crate::common::*;

const TOKEN: &str = "console-operator-token-0123456789";

async fn console_stack() -> Stack {
    stack_with(&[("HOOKLINE_OPERATOR_TOKEN", TOKEN)]).await
}

fn op<T>(msg: T) -> Request<T> {
    with_bearer(msg, TOKEN)
}

async fn operator(s: &Stack) -> ConsoleClient {
    let mut c = ConsoleClient::new(&s.hookline.console_url());
    c.sign_in_operator(TOKEN).await.unwrap();
    c
}

/// Create `tenant` through the console as the operator.
async fn create_tenant(c: &mut ConsoleClient, tenant: &str, plan: &str) {
    c.get("/tenants").await.unwrap();
    let page =
        c.post("/tenants", &[("tenant_id", tenant), ("plan", plan), ("webhooks_enabled", "true")]).await.unwrap();
    assert_eq!(page.status, 303, "{}", page.text());
}

/// Add an endpoint through the form; returns its id.
async fn add_endpoint(c: &mut ConsoleClient, tenant: &str, fields: &[(&str, &str)]) -> String {
    c.get(&format!("/t/{tenant}/endpoints/new")).await.unwrap();
    let page = c.post(&format!("/t/{tenant}/endpoints"), fields).await.unwrap();
    assert_eq!(page.status, 303, "{}", page.text());
    let to = page.location().unwrap();
    to.split("/endpoints/").nth(1).unwrap().split('?').next().unwrap().to_owned()
}

async fn api_key(s: &Stack, tenant: &str) -> String {
    s.subscriptions_client()
        .await
        .create_api_key(op(spb::CreateApiKeyRequest { tenant_id: tenant.into(), name: "console".into() }))
        .await
        .unwrap()
        .into_inner()
        .key
}

/// The endpoint's deliveries once `n` exist and are final.
/// The page at `path`, fetched with `c`'s session until `shows` holds for
/// it (within `timeout`).
async fn page_once(
    s: &Stack,
    c: &ConsoleClient,
    path: &str,
    what: &str,
    timeout: Duration,
    shows: impl Fn(&str) -> bool,
) -> String {
    let cookie = c.cookie().map(str::to_owned);
    let shows = &shows;
    eventually(timeout, what, || {
        let mut viewer = ConsoleClient::new(&s.hookline.console_url());
        viewer.set_cookie(cookie.clone());
        async move {
            let page = viewer.get(path).await?.text();
            anyhow::Ok(shows(&page).then_some(page))
        }
    })
    .await
    .unwrap()
}

async fn deliveries(s: &Stack, tenant: &str, endpoint: &str, n: usize) -> Vec<dpb::Delivery> {
    let channel = s.hookline.channel().await;
    eventually(Duration::from_secs(40), &format!("{n} final deliveries"), || {
        let mut c = DeliveryServiceClient::new(channel.clone());
        async move {
            let rows = c
                .list_deliveries(op(dpb::ListDeliveriesRequest {
                    tenant_id: tenant.into(),
                    endpoint_id: endpoint.into(),
                    page_size: 200,
                    ..Default::default()
                }))
                .await?
                .into_inner()
                .deliveries;
            let done = rows.iter().all(|d| {
                d.state == dpb::DeliveryState::Succeeded as i32 || d.state == dpb::DeliveryState::Failed as i32
            });
            anyhow::Ok((rows.len() == n && done).then_some(rows))
        }
    })
    .await
    .unwrap()
}

#[tokio::test]
async fn operators_and_tenants_sign_in_and_a_wrong_token_or_key_is_refused() {
    let s = console_stack().await;
    // `hookline dev` says where its console is, on stdout, for the person who ran it.
    let printed = format!("console: {}\n", s.hookline.console_url());
    assert!(s.hookline.log_contents().contains(&printed), "dev did not print {printed:?}");
    let mut anonymous = ConsoleClient::new(&s.hookline.console_url());
    let page = anonymous.get("/tenants").await.unwrap();
    assert_eq!((page.status, page.location()), (303, Some("/signin")), "pages need a session");

    let mut wrong = ConsoleClient::new(&s.hookline.console_url());
    wrong.get("/signin").await.unwrap();
    let page = wrong.post("/signin", &[("as", "operator"), ("token", "not-the-operator-token")]).await.unwrap();
    assert_eq!(page.status, 401);
    assert!(page.text().contains("That is not the operator token."));
    assert_eq!(wrong.get("/tenants").await.unwrap().status, 303, "no session after a wrong token");

    let mut c = operator(&s).await;
    assert_eq!(c.get("/tenants").await.unwrap().status, 200);
    create_tenant(&mut c, "acme", "professional").await;
    let key = api_key(&s, "acme").await;

    let mut tenant = ConsoleClient::new(&s.hookline.console_url());
    let page = tenant.sign_in_tenant("acme", &key).await.unwrap();
    assert_eq!((page.status, page.location()), (303, Some("/t/acme")));
    let page = tenant.get("/t/acme").await.unwrap();
    assert_eq!(page.status, 200);
    assert!(page.text().contains("Enable Webhooks"));
    assert_eq!(tenant.get("/tenants").await.unwrap().status, 404, "a tenant has no operator pages");
    assert_eq!(tenant.post("/tenants", &[("tenant_id", "mine"), ("plan", "basic")]).await.unwrap().status, 404);
    assert_eq!(tenant.post("/t/acme/plan", &[("plan", "enterprise")]).await.unwrap().status, 404, "nor its plan");
    assert_eq!(tenant.post("/t/acme/portal-link", &[("ttl_seconds", "3600")]).await.unwrap().status, 404);
    let plan = s.subscriptions_client().await.get_tenant(op(spb::GetTenantRequest { tenant_id: "acme".into() })).await;
    assert_eq!(plan.unwrap().into_inner().plan, spb::Plan::Professional as i32);

    let mut bad = ConsoleClient::new(&s.hookline.console_url());
    let page = bad.sign_in_tenant("acme", "hlk_not_a_real_key_at_all_0000000000").await.unwrap();
    assert_eq!(page.status, 401);
    assert!(page.text().contains("Unknown tenant or API key."));
    let page = bad.sign_in_tenant("globex", &key).await.unwrap();
    assert_eq!(page.status, 401, "acme's key does not open another tenant");
    assert_eq!(bad.get("/t/acme").await.unwrap().status, 303);
}

#[tokio::test]
async fn a_post_without_the_csrf_token_is_refused_and_changes_nothing() {
    let s = console_stack().await;
    let mut c = operator(&s).await;
    c.get("/tenants").await.unwrap();
    let page = c.post_exactly("/tenants", &[("tenant_id", "forged"), ("plan", "basic")]).await.unwrap();
    assert_eq!(page.status, 403);
    let page =
        c.post_exactly("/tenants", &[("tenant_id", "forged"), ("plan", "basic"), ("csrf", "guessed")]).await.unwrap();
    assert_eq!(page.status, 403);
    let err = s.subscriptions_client().await.get_tenant(op(spb::GetTenantRequest { tenant_id: "forged".into() })).await;
    assert_eq!(err.unwrap_err().code(), tonic::Code::NotFound, "the tenant was not created");

    create_tenant(&mut c, "acme", "basic").await;
    let before = s
        .subscriptions_client()
        .await
        .get_tenant(op(spb::GetTenantRequest { tenant_id: "acme".into() }))
        .await
        .unwrap()
        .into_inner();
    let page = c.post_exactly("/t/acme/webhooks", &[("webhooks_enabled", "false")]).await.unwrap();
    assert_eq!(page.status, 403);
    let after = s
        .subscriptions_client()
        .await
        .get_tenant(op(spb::GetTenantRequest { tenant_id: "acme".into() }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!((after.webhooks_enabled, after.version), (before.webhooks_enabled, before.version));

    // Another session's token is no good either.
    let other = operator(&s).await;
    let stolen = other.csrf.clone().unwrap();
    let page = c.post_exactly("/t/acme/webhooks", &[("webhooks_enabled", "false"), ("csrf", &stolen)]).await.unwrap();
    assert_eq!(page.status, 403);
    let page = c.post("/t/acme/webhooks", &[("webhooks_enabled", "false")]).await.unwrap();
    assert_eq!(page.status, 303, "with the session's own token it works");
}

#[tokio::test]
async fn a_tenant_session_gets_404_for_every_page_id_and_download_of_another_tenant() {
    let s = console_stack().await;
    let receiver = Receiver::start().await;
    let mut c = operator(&s).await;
    create_tenant(&mut c, "alpha", "basic").await;
    create_tenant(&mut c, "bravo", "basic").await;
    let url = receiver.url();
    let bravo_ep = add_endpoint(&mut c, "bravo", &[("url", &url), ("layout", "envelope")]).await;
    s.publish_json("bravo", &fresh("customer.created")).await;
    let bravo_dlv = deliveries(&s, "bravo", &bravo_ep, 1).await.remove(0).id;

    let key = api_key(&s, "alpha").await;
    let mut alpha = ConsoleClient::new(&s.hookline.console_url());
    assert_eq!(alpha.sign_in_tenant("alpha", &key).await.unwrap().status, 303);
    assert_eq!(alpha.get("/t/alpha").await.unwrap().status, 200);
    for path in [
        "/t/bravo".to_owned(),
        format!("/t/bravo/endpoints/{bravo_ep}"),
        format!("/t/bravo/endpoints/{bravo_ep}/edit"),
        format!("/t/bravo/deliveries/{bravo_dlv}/raw"),
        format!("/t/bravo/deliveries/{bravo_dlv}/download"),
        format!("/t/bravo/deliveries/{bravo_dlv}/replay"),
        // Bravo's ids under alpha's own URLs.
        format!("/t/alpha/endpoints/{bravo_ep}"),
        format!("/t/alpha/deliveries/{bravo_dlv}/raw"),
        format!("/t/alpha/deliveries/{bravo_dlv}/download"),
    ] {
        let page = alpha.get(&path).await.unwrap();
        assert_eq!(page.status, 404, "GET {path}");
        assert!(!page.text().contains("cus_4711"), "GET {path} shows nothing of bravo's");
    }
    let posts = [
        format!("/t/bravo/deliveries/{bravo_dlv}/replay"),
        format!("/t/bravo/endpoints/{bravo_ep}/secret"),
        "/t/bravo/webhooks".to_owned(),
    ];
    for path in posts {
        assert_eq!(alpha.post(&path, &[("webhooks_enabled", "false")]).await.unwrap().status, 404, "POST {path}");
    }
    // Bravo's ids under alpha's own URLs: every action is "Not found" too.
    let bravo_secret = s.signing_secret("bravo", &bravo_ep).await;
    let today = chrono::Utc::now().format("%Y-%m-%d").to_string();
    let actions: [(String, Vec<(&str, &str)>); 8] = [
        (format!("/t/alpha/endpoints/{bravo_ep}"), vec![("url", "https://attacker.example/hook"), ("action", "save")]),
        (format!("/t/alpha/endpoints/{bravo_ep}/enable"), vec![]),
        (format!("/t/alpha/endpoints/{bravo_ep}/recover"), vec![("since", &today)]),
        (format!("/t/alpha/endpoints/{bravo_ep}/secret"), vec![]),
        (format!("/t/alpha/endpoints/{bravo_ep}/secret/rotate"), vec![("grace_seconds", "0")]),
        (format!("/t/alpha/endpoints/{bravo_ep}/test"), vec![("event_type", "customer.created")]),
        (format!("/t/alpha/deliveries/{bravo_dlv}/replay"), vec![]),
        (format!("/t/alpha/endpoints/{bravo_ep}/delete"), vec![]),
    ];
    for (path, fields) in actions {
        let page = alpha.post(&path, &fields).await.unwrap();
        assert_eq!(page.status, 404, "POST {path}: {}", page.text());
        assert!(!page.text().contains(&bravo_secret), "POST {path} shows bravo's secret");
    }
    let kept = s
        .subscriptions_client()
        .await
        .get_endpoint(op(spb::GetEndpointRequest {
            tenant_id: "bravo".into(),
            endpoint_id: bravo_ep.clone(),
            reveal_url: true,
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(kept.url, url, "bravo's endpoint unchanged");
    assert_eq!(s.signing_secret("bravo", &bravo_ep).await, bravo_secret, "bravo's secret unchanged");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(receiver.count(), 1, "no replay, recovery or test event reached bravo's receiver");
}

#[tokio::test]
async fn the_header_value_never_appears_in_a_page_after_saving_and_field_errors_sit_beside_their_fields() {
    let s = console_stack().await;
    let receiver = Receiver::start().await;
    let mut c = operator(&s).await;
    create_tenant(&mut c, "acme", "professional").await;
    let secret_value = "Bearer s3cr3t-header-value-xyz";

    // A refused save: the URL's rule beside the URL, the typed values kept, nothing saved.
    c.get("/t/acme/endpoints/new").await.unwrap();
    let page = c
        .post(
            "/t/acme/endpoints",
            &[
                ("url", "ftp://erp.example.com/hook"),
                ("header_key", "Authorization"),
                ("header_value", secret_value),
                ("event_types", "customer.created"),
            ],
        )
        .await
        .unwrap();
    assert_eq!(page.status, 422);
    let html = page.text();
    let url_field = html.find("id=\"url\"").unwrap();
    let url_error = html.find("id=\"url-error\"").expect("an error beside the URL");
    let next_field = html.find("id=\"header-key\"").unwrap();
    assert!(url_field < url_error && url_error < next_field, "the error sits between the URL and the next field");
    assert!(html.contains("aria-describedby=\"url-hint url-error\""));
    assert!(html.contains("value=\"ftp://erp.example.com/hook\""), "what was typed stays");
    assert!(html.contains("value=\"customer.created\" checked"), "ticked types stay ticked");
    assert!(!html.contains(secret_value), "the header value is not sent back");
    let count = s
        .subscriptions_client()
        .await
        .get_tenant(op(spb::GetTenantRequest { tenant_id: "acme".into() }))
        .await
        .unwrap()
        .into_inner()
        .endpoint_count;
    assert_eq!(count, 0, "nothing was saved");

    let page = c
        .post("/t/acme/endpoints", &[("url", &receiver.url()), ("header_key", "Bad Header"), ("header_value", "x")])
        .await
        .unwrap();
    assert_eq!(page.status, 422);
    assert!(page.text().contains("id=\"header-key-error\""), "{}", page.text());
    let page = c.post("/t/acme/endpoints", &[("url", &receiver.url()), ("rate_limit", "lots")]).await.unwrap();
    assert!(page.text().contains("id=\"rate-limit-error\""));

    let url = receiver.url();
    let ep = add_endpoint(
        &mut c,
        "acme",
        &[("url", &url), ("header_key", "Authorization"), ("header_value", secret_value), ("layout", "flat")],
    )
    .await;
    s.publish_json("acme", &fresh("customer.created")).await;
    let dlv = deliveries(&s, "acme", &ep, 1).await.remove(0).id;
    assert_eq!(receiver.requests()[0].header("authorization"), Some(secret_value), "the receiver got it");
    for path in [
        "/t/acme".to_owned(),
        format!("/t/acme/endpoints/{ep}"),
        format!("/t/acme/endpoints/{ep}/edit"),
        format!("/t/acme/deliveries/{dlv}/raw"),
        format!("/t/acme/deliveries/{dlv}/replay"),
    ] {
        let page = c.get(&path).await.unwrap();
        assert_eq!(page.status, 200, "GET {path}");
        assert!(!page.text().contains("s3cr3t-header-value"), "GET {path} shows the header value");
    }
    let raw = c.get(&format!("/t/acme/deliveries/{dlv}/raw")).await.unwrap().text();
    assert!(raw.contains("Authorization: ********") || raw.contains("authorization: ********"), "{raw}");

    // Saving the edit form with the Header Value left empty keeps it.
    c.get(&format!("/t/acme/endpoints/{ep}/edit")).await.unwrap();
    let page = c
        .post(
            &format!("/t/acme/endpoints/{ep}"),
            &[
                ("url", &url),
                ("header_key", "Authorization"),
                ("header_value", ""),
                ("layout", "flat"),
                ("description", "ERP"),
            ],
        )
        .await
        .unwrap();
    assert_eq!(page.status, 303, "{}", page.text());
    s.publish_json("acme", &fresh("customer.created")).await;
    deliveries(&s, "acme", &ep, 2).await;
    assert_eq!(receiver.requests()[1].header("authorization"), Some(secret_value));
}

#[tokio::test]
async fn without_javascript_show_preview_redraws_the_form_with_the_chosen_preview_and_saves_nothing() {
    let s = console_stack().await;
    let mut c = operator(&s).await;
    create_tenant(&mut c, "acme", "professional").await;
    let form = c.get("/t/acme/endpoints/new").await.unwrap().text();
    assert!(form.contains("id=\"show-preview\""), "the form has a no-script preview button");
    let page = c
        .post(
            "/t/acme/endpoints",
            &[
                ("url", "https://erp.example.com/hook"),
                ("header_key", "Authorization"),
                ("header_value", "Bearer never-echoed-77"),
                ("event_types", "event.booking.created"),
                ("layout", "flat"),
                ("preview_type", "event.booking.cancelled"),
                ("action", "preview"),
            ],
        )
        .await
        .unwrap();
    assert_eq!(page.status, 200);
    let html = page.text();
    let preview = html.split("id=\"preview\"").nth(1).unwrap().split('>').skip(1).collect::<Vec<_>>().join(">");
    let preview = preview.split("</pre>").next().unwrap().replace("&quot;", "\"").replace("&amp;", "&");
    let preview: Value = serde_json::from_str(&preview).unwrap_or_else(|e| panic!("{e}: {preview}"));
    assert_eq!(preview["type"], "event.booking.cancelled", "the type chosen: {preview}");
    assert!(preview.get("data").is_none(), "the hierarchy chosen (flat): {preview}");
    assert!(html.contains("value=\"https://erp.example.com/hook\""), "what was typed stays");
    assert!(html.contains("value=\"event.booking.created\" checked"), "ticked types stay ticked");
    assert!(!html.contains("never-echoed-77"), "the Header Value is not sent back");
    let tenant =
        s.subscriptions_client().await.get_tenant(op(spb::GetTenantRequest { tenant_id: "acme".into() })).await;
    assert_eq!(tenant.unwrap().into_inner().endpoint_count, 0, "a preview saves nothing");

    // The script's own preview source answers the same for the same choice.
    let live = c.get("/t/acme/preview?type=event.booking.cancelled&layout=flat").await.unwrap();
    let live: Value = serde_json::from_str(&live.text()).unwrap();
    let (mut a, mut b) = (live, preview);
    a.as_object_mut().unwrap().remove("timestamp");
    b.as_object_mut().unwrap().remove("timestamp");
    assert_eq!(a, b);
}

#[tokio::test]
async fn event_data_with_script_shows_as_text_and_download_is_byte_identical_to_what_the_receiver_got() {
    let s = console_stack().await;
    let receiver = Receiver::start().await;
    let mut c = operator(&s).await;
    create_tenant(&mut c, "acme", "basic").await;
    let url = receiver.url();
    let ep = add_endpoint(&mut c, "acme", &[("url", &url), ("layout", "envelope")]).await;
    let mut event = fresh("customer.created");
    event["data"]["customer"]["first_name"] = "<script>alert(1)</script>".into();
    event["data"]["customer"]["last_name"] = "\"><img src=x onerror=alert(2)>".into();
    s.publish_json("acme", &event).await;
    let d = deliveries(&s, "acme", &ep, 1).await.remove(0);

    let raw = c.get(&format!("/t/acme/deliveries/{}/raw", d.id)).await.unwrap();
    assert_eq!(raw.status, 200);
    let html = raw.text();
    assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"), "{html}");
    assert!(html.contains("&lt;img src=x onerror=alert(2)&gt;"), "{html}");
    assert!(!html.contains("<script>alert") && !html.contains("<img src=x"), "no markup from event data");

    let download = c.get(&format!("/t/acme/deliveries/{}/download", d.id)).await.unwrap();
    assert_eq!(download.status, 200);
    assert!(download.header("content-disposition").unwrap().starts_with("attachment;"));
    assert_eq!(download.body, receiver.requests()[0].body.to_vec(), "Download is the exact bytes the receiver got");

    // Replay: a confirmation page, then the same webhook-id again, labelled in the log.
    let confirm = c.get(&format!("/t/acme/deliveries/{}/replay", d.id)).await.unwrap();
    assert!(confirm.text().contains("id=\"confirm-replay\""));
    let page = c.post(&format!("/t/acme/deliveries/{}/replay", d.id), &[]).await.unwrap();
    assert_eq!(page.status, 303);
    let requests = receiver.wait_for(2, Duration::from_secs(20)).await.unwrap();
    assert_eq!(requests[1].header("webhook-id"), requests[0].header("webhook-id"));
    deliveries(&s, "acme", &ep, 2).await;
    let log = c.get(&format!("/t/acme/endpoints/{ep}")).await.unwrap().text();
    assert!(log.contains(">Replayed<"), "the replay is labelled");
    // The endpoint's own statistics count both requests as accepted.
    let stats_of = |page: &str| -> String {
        page.split("id=\"endpoint-stats\"")
            .nth(1)
            .unwrap_or_default()
            .split("</table>")
            .next()
            .unwrap_or_default()
            .to_owned()
    };
    let what = "two accepted requests in the endpoint's statistics";
    page_once(&s, &c, &format!("/t/acme/endpoints/{ep}"), what, Duration::from_secs(20), |page| {
        stats_of(page).contains("2 × 2xx")
    })
    .await;
}

#[tokio::test]
async fn the_plus_is_disabled_with_the_reason_at_the_plan_limit() {
    let s = console_stack().await;
    let receiver = Receiver::start().await;
    let mut c = operator(&s).await;
    create_tenant(&mut c, "acme", "basic").await;
    let page = c.get("/t/acme").await.unwrap().text();
    assert!(page.contains("0 of 1 endpoints"));
    assert!(page.contains("<a class=\"plus\" href=\"/t/acme/endpoints/new\" id=\"add-endpoint\""), "{page}");
    add_endpoint(&mut c, "acme", &[("url", &receiver.url())]).await;
    let page = c.get("/t/acme").await.unwrap().text();
    assert!(page.contains("1 of 1 endpoints"));
    assert!(page.contains("id=\"add-endpoint\" disabled"), "{page}");
    assert!(page.contains("The Basic plan allows 1 endpoint."));
    // The form refuses too, at the form level.
    let page = c.post("/t/acme/endpoints", &[("url", &receiver.url())]).await.unwrap();
    assert_eq!(page.status, 422);
    assert!(page.text().contains("id=\"form-error\""));

    let page = c.post("/t/acme/plan", &[("plan", "professional")]).await.unwrap();
    assert_eq!(page.status, 303);
    let page = c.get("/t/acme").await.unwrap().text();
    assert!(page.contains("1 of 3 endpoints") && !page.contains("disabled aria-label=\"Add endpoint\""));
}

#[tokio::test]
async fn pages_carry_a_strict_csp_and_the_session_cookie_is_httponly_and_samesite() {
    let s = console_stack().await;
    let mut c = ConsoleClient::new(&s.hookline.console_url());
    let page = c.get("/signin").await.unwrap();
    let csp = page.header("content-security-policy").unwrap();
    for rule in [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "frame-ancestors 'none'",
        "form-action 'self'",
        "base-uri 'none'",
    ] {
        assert!(csp.contains(rule), "{csp} lacks {rule}");
    }
    assert!(!csp.contains("unsafe-inline"));
    assert_eq!(page.header("x-content-type-options"), Some("nosniff"));
    assert_eq!(page.header("referrer-policy"), Some("no-referrer"));
    assert!(!page.text().contains("<script>") && !page.text().contains("style="), "no inline script or style");
    c.get("/signin").await.unwrap();
    let page = c.post("/signin", &[("as", "operator"), ("token", TOKEN)]).await.unwrap();
    let cookie = page.header("set-cookie").unwrap();
    assert!(cookie.starts_with("hookline_session="));
    assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Lax") && cookie.contains("Path=/"), "{cookie}");
    assert!(!cookie.contains("Secure"), "plain http: no Secure (the browser would drop the cookie)");
    assert!(!cookie.contains(TOKEN));
    let assets: Vec<String> = page_assets(&c.get("/tenants").await.unwrap().text());
    assert_eq!(assets.len(), 2, "one stylesheet, one script");
    for a in assets {
        let asset = c.get(&a).await.unwrap();
        assert_eq!(asset.status, 200, "{a}");
        assert!(asset.header("cache-control").unwrap().contains("immutable"));
    }
}

fn page_assets(html: &str) -> Vec<String> {
    html.match_indices("/assets/").map(|(i, _)| html[i..].split('"').next().unwrap().to_owned()).collect()
}

async fn portal_link(s: &Stack, tenant: &str, ttl_seconds: u32) -> String {
    s.subscriptions_client()
        .await
        .create_portal_link(op(spb::CreatePortalLinkRequest { tenant_id: tenant.into(), ttl_seconds }))
        .await
        .unwrap()
        .into_inner()
        .token
}

#[tokio::test]
async fn a_portal_link_opens_one_tenant_until_it_expires_and_a_tampered_link_opens_nothing() {
    let s = stack_with(&[
        ("HOOKLINE_OPERATOR_TOKEN", TOKEN),
        ("HOOKLINE_CONSOLE_FRAME_ANCESTORS", "http://localhost:3000"),
    ])
    .await;
    let receiver = Receiver::start().await;
    let mut c = operator(&s).await;
    create_tenant(&mut c, "alpha", "basic").await;
    create_tenant(&mut c, "bravo", "basic").await;
    let bravo_ep = add_endpoint(&mut c, "bravo", &[("url", &receiver.url())]).await;

    let token = portal_link(&s, "alpha", 3600).await;
    let mut portal = ConsoleClient::new(&s.hookline.console_url());
    let page = portal.get(&format!("/portal/{token}")).await.unwrap();
    assert_eq!((page.status, page.location()), (303, Some("/t/alpha")));
    let cookie = page.header("set-cookie").unwrap();
    assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=None; Secure"), "embeddable: {cookie}");
    let max_age: i64 = cookie.split("Max-Age=").nth(1).unwrap().split(';').next().unwrap().parse().unwrap();
    assert!(max_age <= 3600, "the session ends no later than the link: {max_age}");
    let page = portal.get("/t/alpha").await.unwrap();
    assert_eq!(page.status, 200);
    let csp = page.header("content-security-policy").unwrap();
    assert!(csp.contains("frame-ancestors http://localhost:3000;"), "{csp}");
    for path in [
        "/t/bravo".to_owned(),
        format!("/t/bravo/endpoints/{bravo_ep}"),
        format!("/t/alpha/endpoints/{bravo_ep}"),
        "/tenants".to_owned(),
    ] {
        assert_eq!(portal.get(&path).await.unwrap().status, 404, "GET {path}");
    }
    // The operator's own pages still refuse to be framed.
    let csp = c.get("/tenants").await.unwrap().header("content-security-policy").unwrap().to_owned();
    assert!(csp.contains("frame-ancestors 'none'"), "{csp}");

    let (payload, signature) = token.split_once('.').unwrap();
    let mut tampered_payload = payload.to_owned();
    let last = tampered_payload.pop().unwrap();
    tampered_payload.push(if last == 'A' { 'B' } else { 'A' });
    for bad in [
        format!("{tampered_payload}.{signature}"),
        format!("{payload}.{}", signature.chars().rev().collect::<String>()),
        "hpl_nonsense".to_owned(),
    ] {
        let mut visitor = ConsoleClient::new(&s.hookline.console_url());
        let page = visitor.get(&format!("/portal/{bad}")).await.unwrap();
        assert_eq!(page.status, 401, "/portal/{bad}");
        assert!(page.header("set-cookie").is_none(), "no session from a bad link");
        assert_eq!(visitor.get("/t/alpha").await.unwrap().status, 303);
    }

    let short = portal_link(&s, "alpha", 1).await;
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let mut late = ConsoleClient::new(&s.hookline.console_url());
    let page = late.get(&format!("/portal/{short}")).await.unwrap();
    assert_eq!(page.status, 401, "an expired link");
    assert!(page.text().contains("expired or not valid"));
}

#[tokio::test]
async fn operators_search_and_page_through_tenants_and_send_test_events() {
    let s = console_stack().await;
    let receiver = Receiver::start().await;
    let mut c = operator(&s).await;
    for i in 0..30 {
        let id = format!("tenant-{i:02}");
        s.subscriptions_client()
            .await
            .create_tenant(op(spb::CreateTenantRequest {
                tenant_id: id,
                plan: spb::Plan::Basic.into(),
                webhooks_enabled: false,
                ..Default::default()
            }))
            .await
            .unwrap();
    }
    create_tenant(&mut c, "acme", "basic").await;
    let first = c.get("/tenants").await.unwrap().text();
    assert!(first.contains("31 tenants"), "{first}");
    assert!(first.contains("id=\"tenant-acme\"") && first.contains("id=\"tenant-tenant-23\""));
    assert!(!first.contains("id=\"tenant-tenant-24\""), "25 per page");
    let next = first
        .split("id=\"next-page\"")
        .next()
        .unwrap()
        .rsplit("href=\"")
        .next()
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .replace("&amp;", "&");
    let second = c.get(&next).await.unwrap().text();
    assert!(second.contains("id=\"tenant-tenant-29\"") && !second.contains("id=\"tenant-acme\""), "{second}");
    let found = c.get("/tenants?q=ACM").await.unwrap().text();
    assert!(found.contains("1 matching") && found.contains("id=\"tenant-acme\"") && !found.contains("tenant-tenant-"));

    let ep = add_endpoint(&mut c, "acme", &[("url", &receiver.url()), ("event_types", "customer.created")]).await;
    c.get(&format!("/t/acme/endpoints/{ep}")).await.unwrap();
    let page = c
        .post(&format!("/t/acme/endpoints/{ep}/test"), &[("event_type", "appointment.booking.created")])
        .await
        .unwrap();
    assert_eq!(page.status, 303, "{}", page.text());
    let got = receiver.wait_for(1, Duration::from_secs(20)).await.unwrap();
    assert_eq!(got[0].header("hookline-test"), Some("true"));
    assert_eq!(got[0].json().unwrap()["type"], "appointment.booking.created");
    deliveries(&s, "acme", &ep, 1).await;
    let log = c.get(&format!("/t/acme/endpoints/{ep}")).await.unwrap().text();
    assert!(log.contains(">Test<"), "the test delivery is marked in the log");
}

#[tokio::test]
async fn the_signing_secret_shows_only_when_asked_and_a_disabled_endpoint_is_re_enabled_and_recovered() {
    // The failures below open the endpoint's breaker; the recovered
    // deliveries go out once it lets a probe through.
    let s = stack_with(&[("HOOKLINE_OPERATOR_TOKEN", TOKEN), ("HOOKLINE_BREAKER_COOLDOWN", "1s")]).await;
    let receiver = Receiver::start().await;
    let mut c = operator(&s).await;
    create_tenant(&mut c, "acme", "basic").await;
    let ep = add_endpoint(&mut c, "acme", &[("url", &receiver.url())]).await;
    let first = s.signing_secret("acme", &ep).await;
    let view = c.get(&format!("/t/acme/endpoints/{ep}")).await.unwrap().text();
    assert!(!view.contains(&first), "not shown unasked");
    let revealed = c.post(&format!("/t/acme/endpoints/{ep}/secret"), &[]).await.unwrap();
    assert_eq!(revealed.status, 200);
    assert!(revealed.text().contains(&format!("<code id=\"signing-secret\">{first}</code>")));
    assert_eq!(revealed.header("cache-control"), Some("no-store"));
    let page = c.post(&format!("/t/acme/endpoints/{ep}/secret/rotate"), &[("grace_seconds", "3600")]).await.unwrap();
    assert_eq!(page.status, 303);
    assert_ne!(s.signing_secret("acme", &ep).await, first, "rotated");
    let page =
        c.post(&format!("/t/acme/endpoints/{ep}/secret/rotate"), &[("grace_seconds", "99999999")]).await.unwrap();
    assert_eq!(page.status, 400, "only the periods offered");

    // Failed deliveries while the receiver answers 500, then the endpoint is disabled.
    receiver.set_default(500);
    s.publish_json("acme", &fresh("customer.created")).await;
    s.publish_json("acme", &fresh("customer.updated")).await;
    deliveries(&s, "acme", &ep, 2).await;
    let failed = c.get(&format!("/t/acme/endpoints/{ep}?status=failed")).await.unwrap().text();
    assert_eq!(failed.matches("id=\"delivery-dlv_").count(), 2, "{failed}");
    let only = c.get(&format!("/t/acme/endpoints/{ep}?type=customer.updated")).await.unwrap().text();
    assert_eq!(only.matches("id=\"delivery-dlv_").count(), 1, "the event type filter");
    let none = c.get(&format!("/t/acme/endpoints/{ep}?status=succeeded")).await.unwrap().text();
    assert!(none.contains("No deliveries match."));

    s.subscriptions_client()
        .await
        .update_endpoint(op(spb::UpdateEndpointRequest {
            tenant_id: "acme".into(),
            endpoint_id: ep.clone(),
            enabled: Some(false),
            ..Default::default()
        }))
        .await
        .unwrap();
    let page = page_once(
        &s,
        &c,
        &format!("/t/acme/endpoints/{ep}"),
        "the endpoint reads disabled",
        Duration::from_secs(30),
        |page| page.contains("This endpoint is disabled"),
    )
    .await;
    assert!(page.contains("id=\"re-enable\"") && page.contains("id=\"disabled-reason\""), "{page}");
    c.get(&format!("/t/acme/endpoints/{ep}")).await.unwrap();
    let page = c.post(&format!("/t/acme/endpoints/{ep}/enable"), &[]).await.unwrap();
    assert_eq!(page.status, 303);
    assert!(!c.get(&format!("/t/acme/endpoints/{ep}")).await.unwrap().text().contains("This endpoint is disabled"));

    receiver.set_default(200);
    // Every attempt of the two failed deliveries reached the receiver already.
    let before = receiver.count();
    let today = chrono::Utc::now().format("%Y-%m-%d").to_string();
    let page = c.post(&format!("/t/acme/endpoints/{ep}/recover"), &[("since", &today)]).await.unwrap();
    assert_eq!(page.status, 303);
    let job_page = page.location().unwrap().to_owned();
    assert!(job_page.contains("?job=job_"), "{job_page}");
    let got = receiver.wait_for(before + 2, Duration::from_secs(30)).await.unwrap();
    assert!(got[before..].iter().all(|r| r.status == 200), "the recovered deliveries were accepted");
    let what = "the recover job's end on its page";
    let page = page_once(&s, &c, &job_page, what, Duration::from_secs(30), |page| {
        page.contains("2 of 2 failed deliveries queued again (completed)")
    })
    .await;
    assert!(page.contains("<progress value=\"2\" max=\"2\""), "{page}");
}

#[tokio::test]
async fn hookline_console_runs_alone_against_the_separate_services_and_refuses_to_start_without_a_token() {
    let s = split(&[("HOOKLINE_OPERATOR_TOKEN", TOKEN)]).await;
    let console = hookline_e2e::HooklineBuilder::new("console")
        .env("HOOKLINE_SUBSCRIPTIONS_URL", &s.subscriptions.grpc_url())
        .env("HOOKLINE_DELIVERY_URL", &s.delivery.grpc_url())
        .env("HOOKLINE_OPERATOR_TOKEN", TOKEN)
        .spawn()
        .await
        .unwrap();
    let mut c = ConsoleClient::new(&console.console_url());
    c.sign_in_operator(TOKEN).await.unwrap();
    create_tenant(&mut c, "acme", "business").await;
    let page = c.get("/t/acme").await.unwrap().text();
    assert!(page.contains("0 of 5 endpoints"), "{page}");
    let listed = c.get("/tenants").await.unwrap().text();
    assert!(listed.contains("id=\"tenant-acme\""));

    // A console whose token the services do not take says so, instead of showing pages.
    let wrong = hookline_e2e::HooklineBuilder::new("console")
        .env("HOOKLINE_SUBSCRIPTIONS_URL", &s.subscriptions.grpc_url())
        .env("HOOKLINE_DELIVERY_URL", &s.delivery.grpc_url())
        .env("HOOKLINE_OPERATOR_TOKEN", "another-operator-token-456")
        .spawn()
        .await
        .unwrap();
    let mut c = ConsoleClient::new(&wrong.console_url());
    c.sign_in_operator("another-operator-token-456").await.unwrap();
    let page = c.get("/t/acme").await.unwrap();
    assert_eq!(page.status, 502);
    assert!(page.text().contains("check HOOKLINE_OPERATOR_TOKEN"));

    let unset = hookline_e2e::HooklineBuilder::new("console")
        .env("HOOKLINE_SUBSCRIPTIONS_URL", &s.subscriptions.grpc_url())
        .spawn()
        .await;
    let Err(err) = unset else { panic!("the console started without an operator token") };
    let err = format!("{err:#}");
    assert!(err.contains("HOOKLINE_OPERATOR_TOKEN: is required by the console"), "{err}");
}

#[tokio::test]
async fn an_endpoint_that_answered_410_says_why_it_is_disabled_and_re_enables() {
    let s = console_stack().await;
    let receiver = Receiver::start().await;
    receiver.set_default(410);
    let mut c = operator(&s).await;
    create_tenant(&mut c, "acme", "basic").await;
    let ep = add_endpoint(&mut c, "acme", &[("url", &receiver.url())]).await;
    s.publish_json("acme", &fresh("customer.created")).await;
    let page = page_once(
        &s,
        &c,
        &format!("/t/acme/endpoints/{ep}"),
        "the endpoint reads disabled",
        Duration::from_secs(20),
        |page| page.contains("This endpoint is disabled"),
    )
    .await;
    assert!(page.contains("410 Gone"), "the reason is shown: {page}");
    let tenant_view = c.get("/t/acme").await.unwrap().text();
    assert!(tenant_view.contains(">Disabled<"), "the list marks it too");
    receiver.set_default(200);
    c.get(&format!("/t/acme/endpoints/{ep}")).await.unwrap();
    assert_eq!(c.post(&format!("/t/acme/endpoints/{ep}/enable"), &[]).await.unwrap().status, 303);
    s.publish_json("acme", &fresh("customer.updated")).await;
    let got = receiver.wait_for(2, Duration::from_secs(20)).await.unwrap();
    assert_eq!(got[1].json().unwrap()["type"], "customer.updated", "delivering again");
}
