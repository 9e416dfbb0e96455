//! The NATS intake's edges: a refused event is kept whole, byte
//! for byte, with its reason; keyless events get ids that survive a
//! re-creation of HOOKLINE_INTAKE and still de-duplicate redeliveries;
//! `ListRejectedEvents` and `hookline rejected list` show the refusals.

use std::time::Duration;

use base64::{Engine as _, engine::general_purpose::STANDARD as B64};
use hookline_e2e::eventually;
use hookline_proto::{
    ingest::v1::{ListRejectedEventsRequest, RejectedEvent},
    subscriptions::v1::{self as spb, Plan},
};
use serde_json::{Value, json};
use tonic::Code;

use crate::common::*;

/// Publish raw bytes on the intake subject of `tenant`; the stream's ack or its error.
async fn intake_raw(
    nats: &hookline_e2e::NatsServer,
    tenant: &str,
    bytes: Vec<u8>,
) -> anyhow::Result<async_nats::jetstream::publish::PublishAck> {
    let js = nats.jetstream().await;
    let ack = js.publish(format!("hookline.intake.{tenant}"), bytes.into()).await?;
    Ok(ack.await?)
}

/// The rejection records, once there are `n`.
async fn rejected(nats: &hookline_e2e::NatsServer, n: usize) -> Vec<Value> {
    eventually(Duration::from_secs(15), &format!("{n} rejection records"), || async move {
        let r = read_subject(nats, "HOOKLINE_REJECTED", "hookline.rejected.>").await;
        (r.len() >= n).then_some(r)
    })
    .await
    .unwrap()
}

/// Wait until HOOKLINE_EVENTS holds at least `n` messages.
async fn events_reach(nats: &hookline_e2e::NatsServer, n: u64) -> anyhow::Result<u64> {
    eventually(Duration::from_secs(20), &format!("{n} events in HOOKLINE_EVENTS"), || async move {
        let now = stream_messages(nats, "HOOKLINE_EVENTS").await;
        (now >= n).then_some(now)
    })
    .await
}

/// The payload a rejection record keeps, decoded back to bytes.
fn kept(record: &Value) -> Vec<u8> {
    match (record["payload"].as_str(), record["payload_base64"].as_str()) {
        (Some(text), None) => text.as_bytes().to_vec(),
        (None, Some(b64)) => B64.decode(b64).unwrap(),
        _ => panic!("no payload or payload_base64 in {record}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejected_intake_event_is_kept_whole_byte_for_byte_with_its_reason() {
    let s = stack().await;
    s.create_tenant("acme", Plan::Basic, true).await;

    // 100 KiB: an invalid e-mail in pretty-printed JSON, then padding the
    // JSON allows (whitespace), which a re-serialisation would lose.
    let mut event = example("appointment.booking.created");
    event["data"]["customer"]["email"] = json!("nope");
    event["data"]["customer"]["last_name"] = json!("Müller \"the \\ one\" 😀");
    let mut big = serde_json::to_string_pretty(&event).unwrap().into_bytes();
    big.resize(100 * 1024, b' ');
    big.extend_from_slice(b"\n\t\r\n");
    intake_raw(&s.nats, "acme", big.clone()).await.unwrap();
    // Not UTF-8 at all.
    let binary = b"{\"type\": \"customer.created\", \"data\": \"\xff\xfe\x00\x01\"}".to_vec();
    intake_raw(&s.nats, "acme", binary.clone()).await.unwrap();

    let records = rejected(&s.nats, 2).await;
    let big_record = records.iter().find(|r| r["payload_bytes"] == json!(big.len())).expect("the 100 KiB record");
    assert_eq!(big_record["error"]["field"], "data.customer.email", "{}", big_record["error"]);
    assert!(big_record["error"]["rule"].as_str().unwrap().contains("e-mail"), "{}", big_record["error"]);
    assert!(big_record["error"]["message"].as_str().unwrap().starts_with("data.customer.email: "));
    assert_eq!(big_record["tenant_id"], "acme");
    assert!(big_record["payload"].is_string(), "UTF-8 text is kept as text");
    assert!(kept(big_record) == big, "the 100 KiB payload comes back byte for byte");

    let binary_record = records.iter().find(|r| r["payload_bytes"] == json!(binary.len())).expect("the binary record");
    assert!(binary_record["payload_base64"].is_string(), "bytes that are not UTF-8 are kept as base64");
    assert_eq!(kept(binary_record), binary);
    assert!(!binary_record["error"]["field"].as_str().unwrap().is_empty(), "{}", binary_record["error"]);

    // Above the intake limit the publisher is told at once, by the stream's ack.
    let err = intake_raw(&s.nats, "acme", vec![b' '; 300 * 1024]).await.unwrap_err();
    assert!(format!("{err:#}").to_lowercase().contains("maximum"), "{err:#}");
}

/// Keyless intake events get `intake:<sequence>:<stored time>`: after
/// HOOKLINE_INTAKE is deleted and re-created (sequences start at 1 again),
/// new events are appended, not dropped as duplicates of the old ones.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keyless_intake_events_are_all_appended_after_the_intake_stream_is_recreated() {
    let mut s = stack().await;
    s.create_tenant("acme", Plan::Basic, true).await;
    let before = s.events_stored().await;
    for _ in 0..3 {
        s.intake_publish("acme", &fresh("customer.created")).await;
    }
    events_reach(&s.nats, before + 3).await.unwrap();

    // Delete the intake stream; the restarted process creates it anew.
    s.nats.jetstream().await.delete_stream("HOOKLINE_INTAKE").await.unwrap();
    s.hookline.respawn().await.unwrap();
    for _ in 0..3 {
        let ack = intake_raw(&s.nats, "acme", fresh("customer.updated").to_string().into_bytes()).await.unwrap();
        assert!(ack.sequence <= 3, "the new stream counts from 1 again (seq {})", ack.sequence);
    }
    let got = events_reach(&s.nats, before + 6).await;
    assert!(got.is_ok(), "{got:?}: keyless events after the re-creation were dropped as duplicates");
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(s.events_stored().await, before + 6);
}

/// An intake message processed again (its append stored, its ack lost) is
/// de-duplicated by its id: here the first append is stood in for by a
/// message carrying the id ingest gives it, before ingest ever sees it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_keyless_intake_message_processed_again_is_not_appended_twice() {
    let mut s = stack().await;
    s.create_tenant("acme", Plan::Basic, true).await;
    let before = s.events_stored().await;
    s.intake_publish("acme", &fresh("customer.created")).await;
    let js = s.nats.jetstream().await;
    let events = js.get_stream("HOOKLINE_EVENTS").await.unwrap();
    let template = eventually(Duration::from_secs(20), "the first event", || async {
        events.get_last_raw_message_by_subject("hookline.events.acme.>").await.ok()
    })
    .await
    .unwrap();

    s.hookline.kill9();
    let ack = intake_raw(&s.nats, "acme", fresh("customer.created").to_string().into_bytes()).await.unwrap();
    let stored = js.get_stream("HOOKLINE_INTAKE").await.unwrap().get_raw_message(ack.sequence).await.unwrap();
    let id = format!("intake:{}:{}", ack.sequence, stored.time.unix_timestamp_nanos());
    let mut headers = template.headers.clone();
    headers.insert("Nats-Msg-Id", id.as_str());
    js.publish_with_headers(template.subject.clone(), headers, template.payload.clone()).await.unwrap().await.unwrap();
    assert_eq!(s.events_stored().await, before + 2);

    s.hookline.respawn().await.unwrap();
    // The killed process's last pull request may still be pending at the
    // server and take the message; it comes back after the intake's 30 s
    // ack wait.
    eventually(Duration::from_secs(45), "the intake message taken", || async {
        (stream_messages(&s.nats, "HOOKLINE_INTAKE").await == 0).then_some(())
    })
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(s.events_stored().await, before + 2, "no second append");
}

const OPERATOR: &str = "op-token-for-the-rejected-tests";

/// Every rejection record of `tenant` `ListRejectedEvents` pages through,
/// `page_size` at a time, with `bearer`.
async fn list_rejected(
    s: &Stack,
    bearer: &str,
    request: ListRejectedEventsRequest,
) -> Result<Vec<RejectedEvent>, tonic::Status> {
    let mut ingest = s.hookline.ingest_client().await;
    let (mut out, mut token) = (Vec::new(), String::new());
    loop {
        let page = ListRejectedEventsRequest { page_token: token.clone(), ..request.clone() };
        let page = ingest.list_rejected_events(with_bearer(page, bearer)).await?.into_inner();
        out.extend(page.events);
        if page.next_page_token.is_empty() {
            return Ok(out);
        }
        token = page.next_page_token;
    }
}

/// Wait until `tenant` has `n` rejection records listed.
async fn rejected_listed(s: &Stack, tenant: &str, n: usize) -> Vec<RejectedEvent> {
    eventually(Duration::from_secs(15), &format!("{n} rejected events of {tenant}"), || async move {
        let all =
            list_rejected(s, OPERATOR, ListRejectedEventsRequest { tenant_id: tenant.into(), ..Default::default() })
                .await?;
        Ok((all.len() >= n).then_some(all))
    })
    .await
    .unwrap()
}

/// `hookline rejected <args>` with `token`: (success, stdout, stderr).
fn rejected_cli(s: &Stack, token: &str, args: &[&str]) -> (bool, String, String) {
    let (code, out, err) = cli_with(s, &[("HOOKLINE_TOKEN", token)], &[&["rejected"], args].concat());
    (code == 0, out, err)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejected_intake_events_are_listed_newest_first_with_field_and_rule_and_only_to_their_tenant() {
    let s = stack_with(&[("HOOKLINE_OPERATOR_TOKEN", OPERATOR)]).await;
    let mut subs = s.hookline.subscriptions_client().await;
    let mut keys = std::collections::HashMap::new();
    for t in ["acme", "globex"] {
        let tenant = spb::CreateTenantRequest {
            tenant_id: t.into(),
            plan: Plan::Basic.into(),
            webhooks_enabled: true,
            ..Default::default()
        };
        subs.create_tenant(with_bearer(tenant, OPERATOR)).await.unwrap();
        let key = spb::CreateApiKeyRequest { tenant_id: t.into(), name: "ERP".into() };
        keys.insert(t, subs.create_api_key(with_bearer(key, OPERATOR)).await.unwrap().into_inner().key);
    }

    // acme: a bad e-mail, then (once it is recorded) an event without a type;
    // a valid one between them is appended, not listed.
    let mut bad_email = fresh("customer.created");
    bad_email["data"]["customer"]["email"] = json!("nope");
    let bad_email = serde_json::to_vec_pretty(&bad_email).unwrap();
    intake_raw(&s.nats, "acme", bad_email.clone()).await.unwrap();
    rejected_listed(&s, "acme", 1).await;
    intake_raw(&s.nats, "acme", fresh("customer.updated").to_string().into_bytes()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;
    let untyped = br#"{"data": {}}"#.to_vec();
    intake_raw(&s.nats, "acme", untyped.clone()).await.unwrap();
    let mut globex_bad = fresh("customer.deleted");
    globex_bad["occurred_at"] = json!("yesterday");
    intake_raw(&s.nats, "globex", globex_bad.to_string().into_bytes()).await.unwrap();
    // An id no tenant has: recorded under it, listed to the operator.
    intake_raw(&s.nats, "nobody", fresh("customer.updated").to_string().into_bytes()).await.unwrap();

    let acme = rejected_listed(&s, "acme", 2).await;
    assert_eq!(acme.len(), 2, "the valid event is not listed: {acme:#?}");
    let (newest, oldest) = (&acme[0], &acme[1]);
    assert_eq!((newest.field.as_str(), newest.rule.as_str()), ("type", "is required"), "newest first: {newest:?}");
    assert_eq!(newest.payload, untyped);
    assert_eq!(oldest.field, "data.customer.email", "{oldest:?}");
    assert!(oldest.rule.contains("e-mail"), "{oldest:?}");
    assert_eq!(oldest.message, format!("data.customer.email: {}", oldest.rule));
    assert_eq!((oldest.payload.clone(), oldest.payload_size), (bad_email.clone(), bad_email.len() as u64));
    assert!(newest.sequence > oldest.sequence && oldest.intake_sequence > 0 && !oldest.intake_stored_at.is_empty());
    let globex = rejected_listed(&s, "globex", 1).await;
    assert_eq!(globex[0].field, "occurred_at", "{globex:?}");
    let nobody = rejected_listed(&s, "nobody", 1).await;
    assert_eq!((nobody[0].field.as_str(), nobody[0].rule.as_str()), ("tenant_id", "tenant `nobody` not found"));

    // One a page, and the time range: each bound at the newest's time.
    let request = |after: &str, before: &str, page_size: u32| ListRejectedEventsRequest {
        tenant_id: "acme".into(),
        rejected_after: after.into(),
        rejected_before: before.into(),
        page_size,
        page_token: String::new(),
    };
    let paged = list_rejected(&s, OPERATOR, request("", "", 1)).await.unwrap();
    assert_eq!(paged, acme, "page by page, the same records");
    let since_newest = list_rejected(&s, OPERATOR, request(&newest.rejected_at, "", 1)).await.unwrap();
    assert_eq!(since_newest, vec![newest.clone()]);
    let before_newest = list_rejected(&s, OPERATOR, request("", &newest.rejected_at, 1)).await.unwrap();
    assert_eq!(before_newest, vec![oldest.clone()]);
    assert!(
        list_rejected(&s, OPERATOR, request("2026-01-01T00:00:00Z", "2026-01-02T00:00:00Z", 0))
            .await
            .unwrap()
            .is_empty()
    );
    let bad = list_rejected(&s, OPERATOR, request("yesterday", "", 0)).await.unwrap_err();
    assert_eq!(bad.code(), Code::InvalidArgument);
    assert!(bad.message().starts_with("rejected_after: "), "{}", bad.message());

    // A tenant's key: its own records, never another tenant's.
    let own = list_rejected(&s, &keys["acme"], request("", "", 0)).await.unwrap();
    assert_eq!(own, acme);
    let other = list_rejected(&s, &keys["globex"], request("", "", 0)).await.unwrap_err();
    assert_eq!(other.code(), Code::NotFound, "{other:?}");

    // The CLI: a table with a header, JSON, `--since` as a duration ago.
    let (ok, out, err) = rejected_cli(&s, &keys["acme"], &["list", "acme", "--since", "1h"]);
    assert!(ok, "{err}");
    let mut lines = out.lines();
    let header: Vec<&str> = lines.next().unwrap().split("  ").filter(|c| !c.is_empty()).map(str::trim).collect();
    assert_eq!(header, ["REJECTED", "INTAKE SEQ", "FIELD", "RULE", "PAYLOAD"], "{out}");
    let rows: Vec<&str> = lines.collect();
    assert_eq!(rows.len(), 2, "{out}");
    let field = |row: &str| row.split_whitespace().nth(2).unwrap_or_default().to_owned();
    assert_eq!((field(rows[0]), field(rows[1])), ("type".into(), "data.customer.email".into()), "{out}");
    assert!(rows[0].contains("is required") && rows[1].contains("e-mail"), "{out}");
    let (ok, out, err) = rejected_cli(&s, &keys["acme"], &["list", "acme", "--json", "--limit", "1"]);
    assert!(ok, "{err}");
    let page: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(page["events"][0]["field"], "type", "{page}");
    assert!(page["next_page_token"].is_string(), "a second page follows: {page}");
    let (ok, out, _) = rejected_cli(&s, &keys["acme"], &["list", "acme", "--until", "1h"]);
    assert!(ok && out.trim() == "no rejected events", "{out}");
    let (ok, _, err) = rejected_cli(&s, &keys["globex"], &["list", "acme"]);
    assert!(!ok && err.contains("not found"), "{err}");
}
