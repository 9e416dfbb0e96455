//! The webhooks console in a real browser: headless chromium (through the
//! kit's `Browser`) against `hookline dev` on its own NATS and Postgres,
//! delivering to a real receiver. Everything a user does goes through the
//! page; gRPC is used only to publish events (the producer's side), to set
//! up what a test is not about, and to check what the page claims.

use std::time::Duration;

use hookline_e2e::{
    Receiver,
    browser::{Browser, DESKTOP_WIDTH, Element, Key, Locator, PHONE_WIDTH, Role, WAIT},
    eventually,
};
use hookline_proto::subscriptions::v1::{self as spb, PayloadLayout, Plan};
use tonic::Request;

use crate::common::*;

const OPERATOR: &str = "console-operator-token-5c1d";
/// The auth header value typed into the form: it must never come back.
const HEADER_VALUE: &str = "Bearer hv-never-shown-8d2f6a";

/// A gRPC request carrying the operator token.
fn op<T>(msg: T) -> Request<T> {
    with_bearer(msg, OPERATOR)
}

async fn console(env: &[(&str, &str)]) -> (Stack, String) {
    let mut all = vec![("HOOKLINE_OPERATOR_TOKEN", OPERATOR)];
    all.extend_from_slice(env);
    let s = stack_with(&all).await;
    let url = s.hookline.console_url();
    (s, url)
}

/// Sign in on the page with the operator token, as an operator types it.
async fn sign_in_as_operator(b: &Browser, console: &str) {
    b.goto(&format!("{console}/signin")).await.unwrap();
    b.fill("Operator token", OPERATOR).await.unwrap();
    b.click_button("Sign in as operator").await.unwrap();
    b.wait_for_text("Signed in as the operator").await.unwrap();
}

/// Screenshots of the page at the desktop and the phone width, where the
/// page must fit without scrolling sideways; the window is left at desktop
/// width.
async fn screenshots(b: &Browser, name: &str) {
    for width in [DESKTOP_WIDTH, PHONE_WIDTH] {
        b.set_width(width).await.unwrap();
        let (scroll, client): (u32, u32) = b
            .script("const d = document.documentElement; return [d.scrollWidth, d.clientWidth]", vec![])
            .await
            .unwrap();
        assert!(scroll <= client, "{name} at {width} px scrolls sideways: {scroll} px of content in {client}");
        let path = b.screenshot(&format!("{name}-{width}")).await.unwrap();
        assert!(std::fs::metadata(&path).unwrap().len() > 1000, "{} is too small to show a page", path.display());
    }
    b.set_width(DESKTOP_WIDTH).await.unwrap();
}

/// The log row of the delivery whose visible text contains `needle`, once
/// the page (reloaded until then) shows one.
async fn log_row(b: &Browser, needle: &str, timeout: Duration) -> Element {
    let what = format!("a delivery log row containing {needle:?}");
    eventually(timeout, &what, || async {
        b.client().refresh().await.ok()?;
        for row in b.css_all("#log-rows tr[id^='delivery-']").await.ok()? {
            if row.text().await.ok()?.contains(needle) {
                return Some(row);
            }
        }
        None
    })
    .await
    .unwrap()
}

async fn row_action(b: &Browser, row: &Element, name: &str) -> Element {
    b.find_within(row, Role::Any, name).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_product_walk_through_from_enabling_webhooks_to_an_archived_row_works_in_a_browser() {
    // Rows archive 40 s after they are written: time for the Raw, Download
    // and Replay steps first, then the archived row within the test.
    let (s, console) = console(&[("HOOKLINE_ARCHIVE_AFTER", "40s"), ("HOOKLINE_ARCHIVE_INTERVAL", "500ms")]).await;
    let receiver = Receiver::start().await;
    let b = Browser::start().await.unwrap();

    // Sign in, create the tenant on the operator's page.
    sign_in_as_operator(&b, &console).await;
    let create = b.find(Role::Region, "Create a tenant").await.unwrap();
    b.field_within(&create, "Tenant ID").await.unwrap().send_keys("acme").await.unwrap();
    b.field_within(&create, "Plan").await.unwrap().select_by_value("professional").await.unwrap();
    b.click_button("Create tenant").await.unwrap();
    b.wait_for_text("Tenant created.").await.unwrap();
    assert!(b.text().await.unwrap().contains("0 of 3 endpoints"));

    // Enable Webhooks: a switch, off, then on.
    let switch = b.find(Role::Switch, "Enable Webhooks").await.unwrap();
    assert_eq!(switch.attr("aria-checked").await.unwrap().as_deref(), Some("false"));
    switch.click().await.unwrap();
    b.wait_for_text("Webhooks enabled.").await.unwrap();
    let switch = b.find(Role::Switch, "Enable Webhooks").await.unwrap();
    assert_eq!(switch.attr("aria-checked").await.unwrap().as_deref(), Some("true"));
    assert!(s.get_tenant("acme").await.webhooks_enabled, "the switch changed the tenant");

    // "+": the endpoint form, filled as the product describes it.
    b.click_link("Add endpoint").await.unwrap();
    b.fill("URL", &receiver.url()).await.unwrap();
    b.fill("Header Key", "Authorization").await.unwrap();
    b.fill("Header Value", HEADER_VALUE).await.unwrap();
    b.field("appointment.booking.created").await.unwrap().click().await.unwrap();
    b.field("Flat").await.unwrap().click().await.unwrap();
    screenshots(&b, "console-endpoint-form").await;
    b.click_button("Save").await.unwrap();
    b.wait_for_text("Endpoint added.").await.unwrap();
    let page = b.source().await.unwrap();
    assert!(!page.contains(HEADER_VALUE) && !page.contains("hv-never-shown"), "the Header Value is in the page");
    let saved = s.endpoints("acme").await;
    assert_eq!(saved.len(), 1);
    assert_eq!(saved[0].url, receiver.url());
    assert_eq!(saved[0].event_types, ["appointment.booking.created"]);
    assert_eq!(saved[0].layout, spb::PayloadLayout::Flat as i32);

    // An event, published by the producer, arrives with the header and flat.
    s.publish_json("acme", &fresh("appointment.booking.created")).await;
    let got = receiver.wait_for(1, Duration::from_secs(20)).await.unwrap();
    assert_eq!(got[0].header("authorization"), Some(HEADER_VALUE));
    let body = got[0].json().unwrap();
    assert_eq!(body["type"], "appointment.booking.created");
    assert!(body.get("data").is_none(), "flat hierarchy: {body}");
    let webhook_id = got[0].header("webhook-id").unwrap().to_owned();

    // The endpoint's log: time stamp, status, HTTP code.
    let row = log_row(&b, "Succeeded", Duration::from_secs(20)).await;
    let text = row.text().await.unwrap();
    assert!(text.contains("appointment.booking.created") && text.contains("200"), "{text}");
    let stamp = row.find(Locator::Css("time")).await.unwrap();
    let datetime = stamp.attr("datetime").await.unwrap().unwrap();
    assert!(chrono::DateTime::parse_from_rfc3339(&datetime).is_ok(), "time stamp {datetime:?}");
    assert!(text.contains(&datetime[..10]), "the row shows the date: {text}");
    // The endpoint's page without the one-off "Endpoint added." notice.
    let log_url = b.url().await.unwrap().split('?').next().unwrap().to_owned();

    // Raw: the request as sent, and still no Header Value on the page.
    row_action(&b, &row, "Raw").await.click().await.unwrap();
    let raw = b.wait_for_text("Request headers").await.unwrap();
    assert!(raw.contains(&webhook_id), "Raw shows the webhook-id");
    let headers = b.css("#raw-headers").await.unwrap().text().await.unwrap().to_ascii_lowercase();
    for h in ["webhook-id", "webhook-timestamp", "webhook-signature", "content-type", "authorization"] {
        assert!(headers.contains(h), "Raw headers lack {h}: {headers}");
    }
    let shown: serde_json::Value =
        serde_json::from_str(&b.css("#raw-body").await.unwrap().text().await.unwrap()).unwrap();
    assert_eq!(shown, body, "Raw shows the body the receiver got");
    assert!(!b.source().await.unwrap().contains("hv-never-shown"), "Raw shows the Header Value");

    // Download: the exact bytes the receiver got.
    b.click_link("Download").await.unwrap();
    let (file, bytes) = b.downloaded(Duration::from_secs(10)).await.unwrap();
    assert_eq!(bytes, got[0].body.to_vec(), "{} differs from what the receiver got", file.display());

    // Replay, with confirmation: same webhook-id, and the log says so.
    b.goto(&log_url).await.unwrap();
    let row = log_row(&b, "Succeeded", Duration::from_secs(5)).await;
    row_action(&b, &row, "Replay").await.click().await.unwrap();
    b.wait_for_text("again?").await.unwrap();
    assert_eq!(receiver.count(), 1, "nothing is sent before the confirmation");
    b.click_button("Replay").await.unwrap();
    b.wait_for_text("Replay queued").await.unwrap();
    let got = receiver.wait_for(2, Duration::from_secs(20)).await.unwrap();
    assert_eq!(got[1].header("webhook-id"), Some(webhook_id.as_str()));
    log_row(&b, "Replayed", Duration::from_secs(20)).await;

    // The tenant view: usage, and the statistics beside the endpoint count
    // both requests as accepted.
    b.click_link("← Webhooks").await.unwrap();
    let stats = eventually(Duration::from_secs(20), "statistics of two accepted requests", || async {
        b.client().refresh().await.ok()?;
        let row = b.css("#endpoint-list tbody tr").await.ok()?;
        row.text().await.ok().filter(|t| t.contains("2 × 2xx"))
    })
    .await
    .unwrap();
    assert!(stats.contains(&receiver.url()), "{stats}");
    assert!(b.text().await.unwrap().contains("1 of 3 endpoints"));
    screenshots(&b, "console-tenant").await;
    b.goto(&log_url).await.unwrap();

    // Archived: the date stays, "Archived" under it, the actions greyed out
    // and not clickable.
    let row = log_row(&b, "Archived", Duration::from_secs(90)).await;
    let id = row.attr("id").await.unwrap().unwrap();
    let text_color = b.css("body").await.unwrap().css_value("color").await.unwrap();
    for name in ["Raw", "Download", "Replay"] {
        let action = row_action(&b, &row, name).await;
        assert_eq!(b.role_of(&action).await.unwrap(), "button", "{name} of an archived row");
        assert!(!action.is_enabled().await.unwrap(), "{name} of an archived row is enabled");
        assert_eq!(action.attr("href").await.unwrap(), None, "{name} links somewhere");
        let opacity: f64 = action.css_value("opacity").await.unwrap().parse().unwrap();
        let color = action.css_value("color").await.unwrap();
        assert!(opacity < 1.0 || color != text_color, "{name} is not greyed out (opacity {opacity}, {color})");
        // A screen reader hears why it is greyed out: the row's "Archived".
        let note = action.attr("aria-describedby").await.unwrap().expect("the greyed-out action says why");
        assert_eq!(b.css(&format!("#{note}")).await.unwrap().text().await.unwrap(), "Archived", "{name}");
    }
    let filters = b.find(Role::Region, "Filter the log").await.unwrap();
    let status = b.field_within(&filters, "Status").await.unwrap();
    assert!(status.text().await.unwrap().contains("Archived"), "the status filter offers Archived");
    let before = b.url().await.unwrap();
    let _ = row_action(&b, &row, "Raw").await.click().await;
    assert_eq!(b.url().await.unwrap(), before, "clicking a greyed-out action went somewhere");
    let date = row.find(Locator::Css("time")).await.unwrap().text().await.unwrap();
    assert!(!date.is_empty(), "the archived row keeps its date");
    let cell = row.find(Locator::Css("td")).await.unwrap().text().await.unwrap();
    let (at_date, at_archived) = (cell.find(&date).unwrap(), cell.find("Archived").unwrap());
    assert!(at_date < at_archived, "\"Archived\" is under the date: {cell:?}");
    eprintln!("archived row {id}");
    screenshots(&b, "console-log-archived").await;
}

/// The field labelled `label` once the page (the refused form, which may
/// still be loading) marks it `aria-invalid`; looked up afresh each time, as
/// the form before the save is replaced.
async fn marked_invalid(b: &Browser, label: &str) -> Element {
    let what = format!("the {label} field marked invalid");
    eventually(Duration::from_secs(10), &what, || async {
        let field = b.field(label).await.ok()?;
        let invalid = field.attr("aria-invalid").await.ok().flatten();
        (invalid.as_deref() == Some("true")).then_some(field)
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_plan_limit_disables_the_plus_with_its_reason_and_field_errors_show_beside_their_fields() {
    let (s, console) = console(&[]).await;
    s.create_tenant("full", Plan::Basic, true).await;
    s.create_tenant("room", Plan::Basic, true).await;
    let receiver = Receiver::start().await;
    s.create_endpoint("full", &receiver.url(), &[], PayloadLayout::Envelope).await;
    let b = Browser::start().await.unwrap();
    sign_in_as_operator(&b, &console).await;

    // At the limit: "+" is a disabled button that says why.
    b.goto(&format!("{console}/t/full")).await.unwrap();
    let text = b.wait_for_text("1 of 1 endpoints").await.unwrap();
    let plus = b.button("Add endpoint").await.unwrap();
    assert!(!plus.is_enabled().await.unwrap(), "the + is enabled at the plan limit");
    let reason_id = plus.attr("aria-describedby").await.unwrap().expect("the + points to its reason");
    let reason = b.css(&format!("#{reason_id}")).await.unwrap().text().await.unwrap();
    assert!(reason.contains("Basic plan allows 1 endpoint"), "{reason}");
    assert!(text.contains(&reason));
    assert!(!b.has(Role::Link, "Add endpoint").await.unwrap());

    // Field errors: a bad URL is refused beside the URL field, nothing is
    // saved, and the typed Header Value is not sent back.
    b.goto(&format!("{console}/t/room")).await.unwrap();
    b.click_link("Add endpoint").await.unwrap();
    b.fill("URL", "ftp://erp.example.com/hook").await.unwrap();
    b.fill("Header Key", "Authorization").await.unwrap();
    b.fill("Header Value", HEADER_VALUE).await.unwrap();
    b.click_button("Save").await.unwrap();
    let url = marked_invalid(&b, "URL").await;
    let described = url.attr("aria-describedby").await.unwrap().unwrap_or_default();
    let error_id = described.split(' ').find(|id| id.ends_with("error")).expect("the URL field names its error");
    let error = b.css(&format!("#{error_id}")).await.unwrap();
    let message = error.text().await.unwrap();
    assert!(message.contains("http"), "the URL error says the rule: {message}");
    // Beside the field: in the same field group, right below it.
    let (_, url_y, _, url_h) = url.rectangle().await.unwrap();
    let (_, error_y, _, _) = error.rectangle().await.unwrap();
    assert!(error_y >= url_y + url_h && error_y - (url_y + url_h) < 120.0, "the error is not beside the URL field");
    assert_eq!(
        url.prop("value").await.unwrap().as_deref(),
        Some("ftp://erp.example.com/hook"),
        "the form keeps what was typed"
    );
    assert_eq!(b.field("Header Value").await.unwrap().prop("value").await.unwrap().as_deref(), Some(""));
    assert!(!b.source().await.unwrap().contains("hv-never-shown"), "the refused form echoes the Header Value");
    assert!(s.endpoints("room").await.is_empty(), "a refused save stored something");

    // A rate limit the API refuses is shown beside its own field.
    b.fill("URL", &receiver.url()).await.unwrap();
    b.fill("Header Value", HEADER_VALUE).await.unwrap();
    b.fill("Rate limit", "20000").await.unwrap();
    b.click_button("Save").await.unwrap();
    marked_invalid(&b, "Rate limit").await;
    assert_eq!(b.field("URL").await.unwrap().attr("aria-invalid").await.unwrap(), None);
    assert!(s.endpoints("room").await.is_empty());

    // Corrected, it saves, and the value stays write-only.
    b.fill("Rate limit", "5").await.unwrap();
    b.fill("Header Value", HEADER_VALUE).await.unwrap();
    b.click_button("Save").await.unwrap();
    b.wait_for_text("Endpoint added.").await.unwrap();
    assert!(!b.source().await.unwrap().contains("hv-never-shown"));
    b.click_link("Edit").await.unwrap();
    assert_eq!(b.field("Header Value").await.unwrap().prop("value").await.unwrap().as_deref(), Some(""));
    assert!(!b.source().await.unwrap().contains("hv-never-shown"), "the edit form shows the Header Value");
    let saved = s.endpoints("room").await;
    assert_eq!((saved.len(), saved[0].rate_limit), (1, 5));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forms_without_the_csrf_token_are_refused_and_event_data_renders_as_text() {
    let (s, console) = console(&[]).await;
    s.create_tenant("acme", Plan::Professional, false).await;
    let receiver = Receiver::start().await;
    let b = Browser::start().await.unwrap();
    sign_in_as_operator(&b, &console).await;

    // The switch's form with its token stripped: refused, nothing changes.
    b.goto(&format!("{console}/t/acme")).await.unwrap();
    let switch = b.find(Role::Switch, "Enable Webhooks").await.unwrap();
    let removed: u32 = b
        .script(
            "const f = document.getElementById('webhooks-form');\
             const t = f.querySelectorAll('input[name=csrf]'); t.forEach(e => e.remove()); return t.length;",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(removed, 1, "the form carries one CSRF token");
    switch.click().await.unwrap();
    b.wait_for_text("Refused").await.unwrap();
    assert!(!s.get_tenant("acme").await.webhooks_enabled, "a form without its token changed the tenant");

    // The same post from a page on another origin, where the token cannot be read.
    let attacker = CrossSitePage::serve(format!(
        r#"<!doctype html><form method="post" action="{console}/t/acme/webhooks">
           <input type="hidden" name="webhooks_enabled" value="true">
           <button type="submit">Win a prize</button></form>"#
    ))
    .await;
    b.goto(&attacker.url("evil")).await.unwrap();
    b.click_button("Win a prize").await.unwrap();
    eventually(Duration::from_secs(10), "the cross-site post to be answered", || async {
        b.url().await.ok().filter(|u| u.starts_with(&console))
    })
    .await
    .unwrap();
    assert!(!b.text().await.unwrap().contains("Webhooks enabled."));
    assert!(!s.get_tenant("acme").await.webhooks_enabled, "a cross-site post changed the tenant");

    // An event whose data carries markup: shown as text in the log and Raw.
    s.hookline
        .subscriptions_client()
        .await
        .update_tenant(op(spb::UpdateTenantRequest {
            tenant_id: "acme".into(),
            plan: None,
            webhooks_enabled: Some(true),
            ..Default::default()
        }))
        .await
        .unwrap();
    let ep = s.create_endpoint("acme", &receiver.url(), &[], PayloadLayout::Envelope).await.0;
    const SCRIPT: &str = "<script>alert(1)</script>";
    const IMG: &str = r#""><img src=x onerror=alert(1)>"#;
    let mut event = fresh("customer.created");
    event["data"]["customer"]["first_name"] = SCRIPT.into();
    event["data"]["customer"]["last_name"] = IMG.into();
    event["data"]["customer"]["company"] = format!("{SCRIPT}{IMG}").into();
    s.publish_json("acme", &event).await;
    receiver.wait_for(1, Duration::from_secs(20)).await.unwrap();

    b.goto(&format!("{console}/t/acme/endpoints/{ep}")).await.unwrap();
    let row = log_row(&b, "customer.created", Duration::from_secs(20)).await;
    row_action(&b, &row, "Raw").await.click().await.unwrap();
    let body = b.css("#raw-body").await.unwrap().text().await.unwrap();
    // (JSON escapes the quote the image tag starts with.)
    assert!(body.contains(SCRIPT) && body.contains(&IMG[1..]), "the data is shown as text: {body}");
    assert_eq!(b.alert_text().await.unwrap(), None, "the event's script ran");
    let injected: u32 = b
        .script(
            "return document.querySelectorAll('img[src=x], img[onerror], main script, pre script, pre img').length",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(injected, 0, "the event's markup became elements");
    let scripts: Vec<String> =
        b.script("return Array.from(document.scripts).map(s => s.src || s.textContent)", vec![]).await.unwrap();
    assert!(scripts.iter().all(|s| s.contains("/assets/")), "scripts other than the console's own: {scripts:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_main_flow_works_with_the_keyboard_alone_and_every_control_is_named() {
    let (s, console) = console(&[]).await;
    s.create_tenant("acme", Plan::Professional, false).await;
    let receiver = Receiver::start().await;
    let b = Browser::start().await.unwrap();

    // Sign in: Tab to the token, type it, Tab to the button, Enter.
    b.goto(&format!("{console}/signin")).await.unwrap();
    assert_unnamed_none(&b).await;
    b.tab_to("Operator token", 20).await.unwrap();
    b.type_text(OPERATOR).await.unwrap();
    b.tab_to("Sign in as operator", 5).await.unwrap();
    b.press(Key::Enter).await.unwrap();
    b.wait_for_text("Signed in as the operator").await.unwrap();
    assert_unnamed_none(&b).await;

    // Open the tenant from the list.
    b.tab_to("acme", 30).await.unwrap();
    b.press(Key::Enter).await.unwrap();
    b.wait_for_text("0 of 3 endpoints").await.unwrap();
    assert_unnamed_none(&b).await;

    // Enable Webhooks with Space.
    b.tab_to("Enable Webhooks", 20).await.unwrap();
    b.press(Key::Space).await.unwrap();
    b.wait_for_text("Webhooks enabled.").await.unwrap();
    assert!(s.get_tenant("acme").await.webhooks_enabled);

    // "+" with Enter, then the form.
    b.tab_to("Add endpoint", 20).await.unwrap();
    b.press(Key::Enter).await.unwrap();
    b.field("URL").await.unwrap();
    assert_unnamed_none(&b).await;
    b.tab_to("URL", 20).await.unwrap();
    b.type_text(&receiver.url()).await.unwrap();
    b.tab_to("Header Key", 5).await.unwrap();
    b.type_text("X-Api-Key").await.unwrap();
    b.tab_to("Header Value", 5).await.unwrap();
    b.type_text("k3y-typed-by-keyboard").await.unwrap();
    b.tab_to("customer.created", 40).await.unwrap();
    b.press(Key::Space).await.unwrap();
    b.tab_to("Save", 40).await.unwrap();
    b.press(Key::Enter).await.unwrap();
    b.wait_for_text("Endpoint added.").await.unwrap();
    assert_unnamed_none(&b).await;
    let saved = s.endpoints("acme").await;
    assert_eq!(saved.len(), 1);
    assert_eq!(saved[0].url, receiver.url());
    assert_eq!(saved[0].event_types, ["customer.created"]);
    assert_eq!(saved[0].auth_header.as_ref().map(|h| h.name.as_str()), Some("X-Api-Key"));

    // Send test event: its type defaults to the endpoint's first, Enter sends it.
    b.tab_to("Send test event", 60).await.unwrap();
    b.press(Key::Enter).await.unwrap();
    b.wait_for_text("Test event sent.").await.unwrap();
    let got = receiver.wait_for(1, Duration::from_secs(20)).await.unwrap();
    let webhook_id = got[0].header("webhook-id").unwrap().to_owned();
    log_row(&b, "Succeeded", Duration::from_secs(20)).await;
    assert_unnamed_none(&b).await;

    // Raw with Tab and Enter, and back to the log.
    b.tab_to("Raw", 80).await.unwrap();
    b.press(Key::Enter).await.unwrap();
    b.wait_for_text("Request headers").await.unwrap();
    assert!(b.text().await.unwrap().contains(&webhook_id), "Raw names the webhook-id");
    assert_unnamed_none(&b).await;
    b.tab_to("← Delivery log", 20).await.unwrap();
    b.press(Key::Enter).await.unwrap();
    b.wait_for_text("Delivery log").await.unwrap();

    // Download, then the row's next control, Replay, and the confirmation's Replay.
    b.tab_to("Download", 80).await.unwrap();
    b.press(Key::Enter).await.unwrap();
    let (_, bytes) = b.downloaded(Duration::from_secs(10)).await.unwrap();
    assert_eq!(bytes, got[0].body.to_vec(), "the download is what the receiver got");
    b.tab_to("Replay", 2).await.unwrap();
    b.press(Key::Enter).await.unwrap();
    b.wait_for_text("again?").await.unwrap();
    assert_unnamed_none(&b).await;
    b.tab_to("Replay", 20).await.unwrap();
    b.press(Key::Enter).await.unwrap();
    b.wait_for_text("Replay queued").await.unwrap();
    let got = receiver.wait_for(2, Duration::from_secs(20)).await.unwrap();
    assert_eq!(got[1].header("webhook-id"), Some(webhook_id.as_str()), "the replay keeps the webhook-id");
    log_row(&b, "Replayed", Duration::from_secs(20)).await;
}

/// Every displayed control on the page has an accessible name.
async fn assert_unnamed_none(b: &Browser) {
    let controls = b.controls().await.unwrap();
    let unnamed: Vec<_> = controls.iter().filter(|(_, name)| name.is_empty()).collect();
    assert!(unnamed.is_empty(), "unnamed controls on {}: {unnamed:?}", b.url().await.unwrap());
}

/// A page served from another origin (`http://<name>.test:<port>`, which the
/// kit's browser maps to loopback): an attacker's page, or a platform's
/// admin that embeds a portal link. Its HTML can be set after it started,
/// since the console must know the origin before the link exists.
struct CrossSitePage {
    port: u16,
    html: std::sync::Arc<std::sync::Mutex<String>>,
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl CrossSitePage {
    async fn serve(html: String) -> Self {
        use axum::{Router, response::Html};
        let shared = std::sync::Arc::new(std::sync::Mutex::new(html));
        let app = Router::new().fallback({
            let shared = shared.clone();
            move || {
                let html = shared.lock().unwrap().clone();
                async move { Html(html) }
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = rx.await;
                })
                .await;
        });
        Self { port, html: shared, _stop: tx }
    }

    fn set(&self, html: String) {
        *self.html.lock().unwrap() = html;
    }

    /// The page's origin under host `<name>.test`.
    fn origin(&self, name: &str) -> String {
        format!("http://{name}.test:{}", self.port)
    }

    /// The page's URL under host `<name>.test`.
    fn url(&self, name: &str) -> String {
        format!("{}/", self.origin(name))
    }
}

/// Tenants `alpha` and `beta`, each with an endpoint at `receiver` and one
/// delivered event; returns (endpoint, delivery) ids per tenant.
async fn two_tenants_with_a_delivery(s: &Stack, receiver: &Receiver) -> [(String, String); 2] {
    use hookline_proto::delivery::v1::{ListDeliveriesRequest, delivery_service_client::DeliveryServiceClient};
    let mut out = Vec::new();
    for t in ["alpha", "beta"] {
        s.create_tenant(t, Plan::Basic, true).await;
        let ep = s.create_endpoint(t, &receiver.url(), &[], PayloadLayout::Envelope).await.0;
        s.publish_json(t, &fresh("customer.created")).await;
        let log = DeliveryServiceClient::new(s.hookline.channel().await);
        let delivery = eventually(Duration::from_secs(20), "the delivery in the log", || {
            let (mut log, ep) = (log.clone(), ep.clone());
            async move {
                let request = ListDeliveriesRequest { tenant_id: t.into(), endpoint_id: ep, ..Default::default() };
                let rows = log.list_deliveries(op(request)).await?.into_inner().deliveries;
                anyhow::Ok(rows.into_iter().next().map(|d| d.id))
            }
        })
        .await
        .unwrap();
        out.push((ep, delivery));
    }
    out.try_into().unwrap()
}

/// Whether the page shown is the console's "Not found" page.
async fn not_found(b: &Browser) -> bool {
    let title = b.client().title().await.unwrap_or_default();
    let text = b.text().await.unwrap_or_default();
    title.starts_with("Not found") && text.contains("There is no such page.")
}

/// Every one of `paths` under `console` shows the "Not found" page.
async fn assert_all_not_found(b: &Browser, console: &str, paths: impl IntoIterator<Item = String>) {
    for path in paths {
        b.goto(&format!("{console}{path}")).await.unwrap();
        assert!(not_found(b).await, "{path} shows: {}", b.text().await.unwrap());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_signed_in_with_its_api_key_gets_404_for_another_tenants_pages_ids_and_downloads() {
    let (s, console) = console(&[]).await;
    let receiver = Receiver::start().await;
    let [(alpha_ep, alpha_dlv), (beta_ep, beta_dlv)] = two_tenants_with_a_delivery(&s, &receiver).await;
    let key = s
        .hookline
        .subscriptions_client()
        .await
        .create_api_key(op(spb::CreateApiKeyRequest { tenant_id: "alpha".into(), name: "browser".into() }))
        .await
        .unwrap()
        .into_inner()
        .key;
    let b = Browser::start().await.unwrap();

    // A wrong key is refused on the page; the right one signs in.
    b.goto(&format!("{console}/signin")).await.unwrap();
    let tenant_form = b.find(Role::Region, "Tenant").await.unwrap();
    b.field_within(&tenant_form, "Tenant ID").await.unwrap().send_keys("alpha").await.unwrap();
    b.field_within(&tenant_form, "API key").await.unwrap().send_keys("hlk_not-a-key").await.unwrap();
    b.find_within(&tenant_form, Role::Button, "Sign in").await.unwrap().click().await.unwrap();
    b.wait_for_text("Unknown tenant or API key.").await.unwrap();
    let tenant_form = b.find(Role::Region, "Tenant").await.unwrap();
    b.field_within(&tenant_form, "Tenant ID").await.unwrap().send_keys("alpha").await.unwrap();
    b.field_within(&tenant_form, "API key").await.unwrap().send_keys(&key).await.unwrap();
    b.find_within(&tenant_form, Role::Button, "Sign in").await.unwrap().click().await.unwrap();
    let text = b.wait_for_text("1 of 1 endpoints").await.unwrap();
    assert!(text.contains("alpha") && !text.contains("beta"), "{text}");
    assert!(!b.source().await.unwrap().contains(&key), "the API key is on the page");

    // Its own pages work...
    b.goto(&format!("{console}/t/alpha/endpoints/{alpha_ep}")).await.unwrap();
    b.wait_for_text("Delivery log").await.unwrap();
    b.goto(&format!("{console}/t/alpha/deliveries/{alpha_dlv}/raw")).await.unwrap();
    b.wait_for_text("Request headers").await.unwrap();

    // ...every page, id and download of beta's is "Not found", under either tenant.
    assert_all_not_found(
        &b,
        &console,
        [
            "/t/beta".to_owned(),
            format!("/t/beta/endpoints/{beta_ep}"),
            format!("/t/beta/endpoints/{beta_ep}/edit"),
            format!("/t/beta/deliveries/{beta_dlv}/raw"),
            format!("/t/beta/deliveries/{beta_dlv}/replay"),
            format!("/t/alpha/endpoints/{beta_ep}"),
            format!("/t/alpha/deliveries/{beta_dlv}/raw"),
            "/tenants".to_owned(),
        ],
    )
    .await;
    let downloads =
        [format!("/t/beta/deliveries/{beta_dlv}/download"), format!("/t/alpha/deliveries/{beta_dlv}/download")];
    assert_all_not_found(&b, &console, downloads).await;
    assert_eq!(std::fs::read_dir(b.download_dir()).unwrap().count(), 0, "a download of beta's data arrived");
}

/// A portal link minted the way an operator does, with `hookline portal
/// link`: (URL, expiry). The console is addressed as `localhost`, where
/// browsers keep the `Secure` cookie an embedded portal session needs.
async fn portal_link(s: &Stack, console: &str, tenant: &str, ttl: &str) -> (String, chrono::DateTime<chrono::Utc>) {
    let out = hookline_e2e::hookline_command()
        .unwrap()
        .args(["portal", "link", tenant, "--ttl", ttl, "--json"])
        .args(["--console-url", console, "--subscriptions-url", &s.hookline.grpc_url(), "--token", OPERATOR])
        .output()
        .unwrap();
    assert!(out.status.success(), "hookline portal link: {}", String::from_utf8_lossy(&out.stderr));
    let printed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let url = printed["url"].as_str().unwrap().to_owned();
    assert!(url.starts_with(&format!("{console}/portal/")), "{url}");
    let expires = printed["expires_at"].as_str().unwrap().parse().unwrap();
    (url, expires)
}

fn iframe(src: &str) -> String {
    format!(
        r#"<!doctype html><html lang="en"><meta name="viewport" content="width=device-width, initial-scale=1">
           <title>Partner admin</title><body style="margin:0;font-family:sans-serif"><h1 style="margin:8px">Partner admin</h1>
           <iframe src="{src}" title="Webhooks" style="width:100%;height:1000px;border:0"></iframe>"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_portal_link_works_in_an_iframe_on_a_listed_origin_and_the_browser_refuses_it_on_another() {
    let host = CrossSitePage::serve(String::new()).await;
    let (s, console) = console(&[("HOOKLINE_CONSOLE_FRAME_ANCESTORS", &host.origin("partner"))]).await;
    let console = console.replace("127.0.0.1", "localhost");
    let receiver = Receiver::start().await;
    let [(alpha_ep, _), _] = two_tenants_with_a_delivery(&s, &receiver).await;
    let b = Browser::start().await.unwrap();

    // Embedded by the listed origin: alpha's page, and it works in the frame
    // (the switch posts with the session and its CSRF token).
    let (link, _) = portal_link(&s, &console, "alpha", "1h").await;
    host.set(iframe(&link));
    b.goto(&host.url("partner")).await.unwrap();
    b.enter_frame(0).await.unwrap();
    let text = match b.wait_for_text("1 of 1 endpoints").await {
        Ok(text) => text,
        Err(e) => {
            let framed_url: String = b.script("return document.URL", vec![]).await.unwrap_or_default();
            // chrome-error:// here means the frame was sent somewhere that
            // refuses framing (the sign-in page): the session cookie set by
            // /portal/<token> did not come back inside the cross-site frame.
            panic!("the portal link in the partner's frame shows {framed_url}: {e:#}");
        }
    };
    assert!(text.contains("alpha") && !text.contains("beta"), "{text}");
    assert!(!b.has(Role::Button, "Sign out").await.unwrap(), "a portal session has nothing to sign out of");
    b.find(Role::Switch, "Enable Webhooks").await.unwrap().click().await.unwrap();
    b.wait_for_text("Webhooks disabled.").await.unwrap();
    assert!(!s.get_tenant("alpha").await.webhooks_enabled, "the switch in the frame did not change the tenant");
    b.click_link(&receiver.url()).await.unwrap();
    b.wait_for_text("Delivery log").await.unwrap();
    // (The WebDriver URL is the top page's; the frame's own is the document's.)
    let framed_url: String = b.script("return document.URL", vec![]).await.unwrap();
    assert!(framed_url.ends_with(&format!("/t/alpha/endpoints/{alpha_ep}")), "{framed_url}");
    b.leave_frames().await.unwrap();
    screenshots(&b, "console-portal-iframe").await;

    // The same page from an origin not listed: the browser refuses to show it.
    let (link, _) = portal_link(&s, &console, "alpha", "1h").await;
    host.set(iframe(&link));
    b.goto(&host.url("stranger")).await.unwrap();
    b.enter_frame(0).await.unwrap();
    let framed_url: String = b.script("return document.URL", vec![]).await.unwrap();
    assert!(framed_url.starts_with("chrome-error://"), "the browser showed {framed_url} in the frame");
    let framed = b.text().await.unwrap_or_default();
    assert!(!framed.contains("alpha") && !b.has(Role::Switch, "Enable Webhooks").await.unwrap(), "{framed}");
    b.leave_frames().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn portal_links_tampered_or_expired_open_nothing_and_a_link_for_one_tenant_opens_nothing_of_another() {
    let host = CrossSitePage::serve(String::new()).await;
    let (s, console) = console(&[("HOOKLINE_CONSOLE_FRAME_ANCESTORS", &host.origin("partner"))]).await;
    let console = console.replace("127.0.0.1", "localhost");
    let receiver = Receiver::start().await;
    let [_, (beta_ep, beta_dlv)] = two_tenants_with_a_delivery(&s, &receiver).await;
    let b = Browser::start().await.unwrap();

    // A short link opens alpha until it expires; a tampered copy, in a
    // browser of its own, opens nothing.
    let (link, expires) = portal_link(&s, &console, "alpha", "10s").await;
    b.goto(&link).await.unwrap();
    b.wait_for_text("1 of 1 endpoints").await.unwrap();
    let tampered = format!("{}{}", &link[..link.len() - 2], if link.ends_with("AA") { "BB" } else { "AA" });
    let other = Browser::start().await.unwrap();
    other.goto(&tampered).await.unwrap();
    assert!(!other.text().await.unwrap().contains("Enable Webhooks"), "a tampered link opened the tenant");
    other.goto(&format!("{console}/t/alpha")).await.unwrap();
    assert!(other.url().await.unwrap().ends_with("/signin"), "a tampered link left a session");
    drop(other);

    // After the link's expiry (which the link carries), the session it
    // opened is over, and the same link presented again opens nothing.
    let wait = (expires - chrono::Utc::now()).to_std().unwrap_or_default() + Duration::from_secs(1);
    tokio::time::sleep(wait).await;
    b.goto(&format!("{console}/t/alpha")).await.unwrap();
    assert!(b.url().await.unwrap().ends_with("/signin"), "the portal session outlived its link");
    b.goto(&link).await.unwrap();
    assert!(!b.text().await.unwrap().contains("Enable Webhooks"), "an expired link opened the tenant");
    b.goto(&format!("{console}/t/alpha")).await.unwrap();
    assert!(b.url().await.unwrap().ends_with("/signin"), "no session after an expired link");

    // A link for alpha, in a browser fresh to the console, opens nothing of beta's.
    drop(b);
    let b = Browser::start().await.unwrap();
    let (link, _) = portal_link(&s, &console, "alpha", "1h").await;
    b.goto(&link).await.unwrap();
    b.wait_for_text("1 of 1 endpoints").await.unwrap();
    assert_all_not_found(
        &b,
        &console,
        [
            "/t/beta".to_owned(),
            format!("/t/beta/endpoints/{beta_ep}"),
            format!("/t/beta/deliveries/{beta_dlv}/raw"),
            format!("/t/beta/deliveries/{beta_dlv}/download"),
            format!("/t/alpha/deliveries/{beta_dlv}/download"),
            "/tenants".to_owned(),
        ],
    )
    .await;
    assert_eq!(std::fs::read_dir(b.download_dir()).unwrap().count(), 0, "a download of beta's data arrived");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_portal_link_opens_its_tenant_in_a_browser_that_has_seen_the_sign_in_page() {
    let host = CrossSitePage::serve(String::new()).await;
    let (s, console) = console(&[("HOOKLINE_CONSOLE_FRAME_ANCESTORS", &host.origin("partner"))]).await;
    let console = console.replace("127.0.0.1", "localhost");
    s.create_tenant("alpha", Plan::Basic, true).await;
    let b = Browser::start().await.unwrap();
    // The sign-in page gives every visitor an anonymous session (for its CSRF token).
    b.goto(&format!("{console}/signin")).await.unwrap();
    b.field("Operator token").await.unwrap();
    let (link, _) = portal_link(&s, &console, "alpha", "1h").await;
    b.goto(&link).await.unwrap();
    if let Err(e) = b.wait_for_text("0 of 1 endpoints").await {
        let cookies: Vec<String> = b
            .client()
            .get_all_cookies()
            .await
            .unwrap()
            .iter()
            .map(|c| format!("{}; {:?}", c.name(), c.same_site()))
            .collect();
        panic!("the portal link did not open alpha; the browser holds {cookies:?}: {e:#}");
    }
}

/// `body` without its `timestamp`, the one field that differs between two
/// renderings of the same example (the moment it was rendered).
fn without_timestamp(mut body: serde_json::Value) -> serde_json::Value {
    body.as_object_mut().expect("a JSON object").remove("timestamp");
    body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_preview_follows_the_chosen_type_and_hierarchy_as_you_choose_and_is_what_a_receiver_gets() {
    let (s, console) = console(&[]).await;
    s.create_tenant("acme", Plan::Professional, true).await;
    let receiver = Receiver::start().await;
    let b = Browser::start().await.unwrap();
    sign_in_as_operator(&b, &console).await;
    b.goto(&format!("{console}/t/acme")).await.unwrap();
    b.click_link("Add endpoint").await.unwrap();

    // With the script, the preview follows the choices without a button.
    let preview_json = || async {
        let text = b.css("#preview").await.ok()?.text().await.ok()?;
        serde_json::from_str::<serde_json::Value>(&text).ok()
    };
    let first = eventually(Duration::from_secs(10), "a JSON preview", || async { preview_json().await }).await.unwrap();
    assert_eq!(first["type"], "appointment.booking.created", "{first}");
    assert!(first["data"].is_object(), "envelope by default: {first}");
    assert!(!b.has(Role::Button, "Show preview").await.unwrap(), "the script hides the no-script button");
    b.field("Preview for").await.unwrap().select_by_value("customer.created").await.unwrap();
    let envelope = eventually(Duration::from_secs(10), "the preview of customer.created", || async {
        preview_json().await.filter(|p| p["type"] == "customer.created")
    })
    .await
    .unwrap();
    assert!(envelope["data"]["customer"].is_object(), "{envelope}");
    b.field("Flat").await.unwrap().click().await.unwrap();
    let flat = eventually(Duration::from_secs(10), "the flat preview", || async {
        preview_json().await.filter(|p| p.get("data").is_none())
    })
    .await
    .unwrap();
    assert_eq!(flat["type"], "customer.created");
    assert_eq!(flat["customer_email"], envelope["data"]["customer"]["email"], "{flat}");
    assert!(b.url().await.unwrap().ends_with("/endpoints/new"), "choosing changed the page");

    // The previewed body is what a receiver of that type gets: save the
    // endpoint as previewed and send a test event of the type.
    b.fill("URL", &receiver.url()).await.unwrap();
    b.field("customer.created").await.unwrap().click().await.unwrap();
    b.click_button("Save").await.unwrap();
    b.wait_for_text("Endpoint added.").await.unwrap();
    let test = b.find(Role::Region, "Send test event").await.unwrap();
    let kind = b.field_within(&test, "Event type").await.unwrap();
    assert_eq!(kind.prop("value").await.unwrap().as_deref(), Some("customer.created"), "the endpoint's type first");
    b.find_within(&test, Role::Button, "Send test event").await.unwrap().click().await.unwrap();
    b.wait_for_text("Test event sent.").await.unwrap();
    let got = receiver.wait_for(1, Duration::from_secs(20)).await.unwrap();
    assert_eq!(without_timestamp(got[0].json().unwrap()), without_timestamp(flat), "the receiver got the preview");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endpoint_with_an_e_mail_address_gets_the_json_by_mail_and_no_http_request() {
    let sink = SmtpSink::start(None);
    let (s, console) = console(&[("HOOKLINE_SMTP_URL", &format!("smtp://127.0.0.1:{}", sink.port))]).await;
    s.create_tenant("acme", Plan::Professional, true).await;
    let receiver = Receiver::start().await;
    let b = Browser::start().await.unwrap();
    sign_in_as_operator(&b, &console).await;
    b.goto(&format!("{console}/t/acme")).await.unwrap();
    b.click_link("Add endpoint").await.unwrap();
    b.fill("URL", &receiver.url()).await.unwrap();
    b.fill("E-mail address (optional)", "erp-inbox@example.com").await.unwrap();
    b.click_button("Save").await.unwrap();
    b.wait_for_text("Endpoint added.").await.unwrap();
    assert!(b.text().await.unwrap().contains("E-mail: erp-inbox@example.com"), "the endpoint says where it sends");
    assert_eq!(s.endpoints("acme").await[0].email, "erp-inbox@example.com");

    s.publish_json("acme", &fresh("appointment.booking.created")).await;
    let mail = eventually(Duration::from_secs(20), "an e-mail", || async { sink.messages().into_iter().next() })
        .await
        .unwrap();
    assert_eq!(mail["rcpt_to"], serde_json::json!(["erp-inbox@example.com"]));
    let body: serde_json::Value = serde_json::from_str(mail["text"].as_str().unwrap()).unwrap();
    assert_eq!(body["type"], "appointment.booking.created");
    let row = log_row(&b, "Succeeded", Duration::from_secs(20)).await;
    assert!(row.text().await.unwrap().contains("250"), "the log shows the relay's 250");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(receiver.count(), 0, "an e-mail endpoint made an HTTP request");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_secret_shows_when_revealed_rotates_with_a_grace_period_and_a_disabled_endpoint_recovers_with_progress() {
    let (s, console) = console(&[]).await;
    s.create_tenant("acme", Plan::Professional, true).await;
    let receiver = Receiver::start().await;
    let ep = s.create_endpoint("acme", &receiver.url(), &[], PayloadLayout::Envelope).await.0;
    let old = s.signing_secret("acme", &ep).await;
    let b = Browser::start().await.unwrap();
    sign_in_as_operator(&b, &console).await;
    b.goto(&format!("{console}/t/acme/endpoints/{ep}")).await.unwrap();

    // Not on the page until asked for; then shown, with a copy button.
    b.wait_for_text("Signing secret").await.unwrap();
    assert!(!b.source().await.unwrap().contains(&old), "the secret is on the page unasked");
    b.click_button("Reveal signing secret").await.unwrap();
    let shown = b.css("#signing-secret").await.unwrap().text().await.unwrap();
    assert_eq!(shown, old);
    b.find(Role::Button, "Copy").await.unwrap();

    // Rotate, keeping the old secret for an hour: confirmed in a dialog,
    // and the next request is signed with both.
    b.field("Old secret keeps signing for").await.unwrap().select_by_value("3600").await.unwrap();
    b.click_button("Rotate signing secret").await.unwrap();
    let question = eventually(WAIT, "the confirmation", || async { b.alert_text().await.ok().flatten() }).await;
    assert_eq!(question.unwrap(), "Rotate the signing secret?");
    b.accept_alert().await.unwrap();
    b.wait_for_text("Signing secret rotated.").await.unwrap();
    let new = s.signing_secret("acme", &ep).await;
    assert_ne!(new, old, "rotated");
    let page = b.source().await.unwrap();
    assert!(!page.contains(&old) && !page.contains(&new), "a secret is on the page after rotating");
    s.publish_json("acme", &fresh("customer.created")).await;
    let got = receiver.wait_for(1, Duration::from_secs(20)).await.unwrap();
    assert!(got[0].verify(&new) && got[0].verify(&old), "signed with the new and, for the grace period, the old");

    // The receiver answers 410: the endpoint is disabled, and says why.
    receiver.set_default(410);
    s.publish_json("acme", &fresh("customer.updated")).await;
    let gone = receiver.wait_for(2, Duration::from_secs(20)).await.unwrap()[1].clone();
    let reason = eventually(Duration::from_secs(30), "the page to say the endpoint is disabled", || async {
        b.client().refresh().await.ok()?;
        b.css_all("#disabled-reason").await.ok()?.into_iter().next()?.text().await.ok()
    })
    .await
    .unwrap();
    assert!(reason.contains("410"), "{reason}");
    receiver.set_default(200);
    b.click_button("Re-enable").await.unwrap();
    b.wait_for_text("Endpoint enabled again.").await.unwrap();
    assert!(s.endpoints("acme").await[0].enabled);

    // "Recover failed since" a date typed into the page: the failed delivery
    // goes out again, and the page shows the job's progress to its end.
    let yesterday = (chrono::Utc::now() - chrono::Duration::days(1)).date_naive();
    b.fill_date("Recover failed since", yesterday).await.unwrap();
    b.click_button("Recover").await.unwrap();
    let job = b.wait_for_text("failed deliveries queued again").await.unwrap();
    assert!(job.contains("Recovering:"), "{job}");
    let progress = b.find(Role::Any, "Recover progress").await.unwrap();
    assert_eq!(progress.attr("max").await.unwrap().as_deref(), Some("1"));
    let again = receiver.wait_for(3, Duration::from_secs(20)).await.unwrap();
    assert_eq!(again[2].header("webhook-id"), gone.header("webhook-id"), "the failed event went out again");
    // The script refreshes the progress while the job runs; a reload shows it too.
    let done = eventually(Duration::from_secs(20), "the job's end", || async {
        b.client().refresh().await.ok()?;
        b.text().await.ok().filter(|t| t.contains("1 of 1 failed deliveries queued again (completed)"))
    })
    .await;
    done.unwrap();
    let progress = b.find(Role::Any, "Recover progress").await.unwrap();
    assert_eq!(progress.attr("value").await.unwrap().as_deref(), Some("1"), "the bar is full");
}

/// Choose `value` in the log's filter `label` and apply it.
async fn filter_log(b: &Browser, label: &str, value: &str) {
    let filters = b.find(Role::Region, "Filter the log").await.unwrap();
    b.field_within(&filters, label).await.unwrap().select_by_value(value).await.unwrap();
    b.click_button("Filter").await.unwrap();
    b.wait_for_text("Clear").await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_log_pages_newest_first_and_filters_by_status_event_type_and_date_range() {
    let (s, console) = console(&[]).await;
    s.create_tenant("acme", Plan::Professional, true).await;
    let receiver = Receiver::start().await;
    let ep = s.create_endpoint("acme", &receiver.url(), &[], PayloadLayout::Envelope).await.0;
    // 26 accepted customer.created, then 2 customer.deleted the receiver refuses.
    for _ in 0..26 {
        s.publish_json("acme", &fresh("customer.created")).await;
    }
    receiver.wait_for(26, Duration::from_secs(30)).await.unwrap();
    receiver.set_default(500);
    for _ in 0..2 {
        s.publish_json("acme", &fresh("customer.deleted")).await;
    }
    let b = Browser::start().await.unwrap();
    sign_in_as_operator(&b, &console).await;
    let log = format!("{console}/t/acme/endpoints/{ep}");
    b.goto(&log).await.unwrap();
    let rows = || async {
        let mut out = Vec::new();
        for row in b.css_all("#log-rows tr[id^='delivery-']").await.unwrap() {
            let stamp = row.find(Locator::Css("time")).await.unwrap().attr("datetime").await.unwrap().unwrap();
            out.push((stamp, row.text().await.unwrap()));
        }
        out
    };
    // Both refused deliveries final (retries exhausted) on the newest page.
    let first = eventually(Duration::from_secs(60), "two failed rows on the first page", || async {
        b.client().refresh().await.ok()?;
        let rows = rows().await;
        (rows.iter().filter(|(_, t)| t.contains("Failed")).count() == 2).then_some(rows)
    })
    .await
    .unwrap();

    // 25 a page, newest first; "Older" shows the rest, "Newest" goes back.
    assert_eq!(first.len(), 25);
    assert!(first.windows(2).all(|w| w[0].0 >= w[1].0), "newest first: {first:?}");
    assert!(first[0].1.contains("customer.deleted") && first[1].1.contains("customer.deleted"));
    b.click_link("Older").await.unwrap();
    b.wait_for_text("Newest").await.unwrap();
    let older = rows().await;
    assert_eq!(older.len(), 3, "28 rows: 25 and 3");
    assert!(older[0].0 <= first[24].0, "the older page continues where the first ended");
    assert!(!b.has(Role::Link, "Older").await.unwrap(), "no page after the last");
    b.click_link("Newest").await.unwrap();
    b.wait_for_text("Older").await.unwrap();

    // Filters, chosen on the page.
    filter_log(&b, "Status", "failed").await;
    let failed = rows().await;
    assert_eq!(failed.len(), 2, "{failed:?}");
    assert!(failed.iter().all(|(_, t)| t.contains("Failed") && t.contains("500")), "{failed:?}");
    b.click_link("Clear").await.unwrap();

    filter_log(&b, "Event type", "customer.created").await;
    let created = rows().await;
    assert_eq!(created.len(), 25, "a full page of customer.created");
    assert!(created.iter().all(|(_, t)| t.contains("customer.created") && t.contains("Succeeded")));
    b.click_link("Older").await.unwrap();
    b.wait_for_text("Newest").await.unwrap();
    assert_eq!(rows().await.len(), 1, "paging keeps the filter: 26 customer.created");
    b.click_link("Clear").await.unwrap();

    // Date range: today holds all 28; a range that ends yesterday none.
    let today = chrono::Utc::now().date_naive();
    let yesterday = today - chrono::Duration::days(1);
    b.fill_date("From", today).await.unwrap();
    b.fill_date("To", today).await.unwrap();
    b.click_button("Filter").await.unwrap();
    b.wait_for_text("Clear").await.unwrap();
    assert_eq!(rows().await.len(), 25);
    assert!(b.has(Role::Link, "Older").await.unwrap());
    b.fill_date("From", yesterday - chrono::Duration::days(6)).await.unwrap();
    b.fill_date("To", yesterday).await.unwrap();
    b.click_button("Filter").await.unwrap();
    b.wait_for_text("No deliveries match.").await.unwrap();
    assert!(rows().await.is_empty());
}
