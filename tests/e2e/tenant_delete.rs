//! Deleting a tenant: `DeleteTenant` over gRPC, `hookline tenant delete`
//! and the console's form, against real NATS, Postgres and receivers. What
//! is checked is what "deleted" promises: nothing of the tenant left in any
//! stream (counted per subject filter) or table, its queued work never
//! sent, and every other tenant untouched.

use std::{collections::HashMap, time::Duration};

use futures_util::TryStreamExt;
use hookline_e2e::{Receiver, console::ConsoleClient, eventually};
use hookline_proto::subscriptions::v1::{self as spb, PayloadLayout, Plan};
use serde_json::Value;
use tonic::Code;

use crate::common::*;

/// Where a tenant's messages live: (stream, subject filter). The same list
/// as `hookline_bus::tenant_filters`, written out so the test does not trust
/// the code it checks.
fn filters(tenant: &str) -> Vec<(&'static str, String)> {
    vec![
        ("HOOKLINE_INTAKE", format!("hookline.intake.{tenant}")),
        ("HOOKLINE_REJECTED", format!("hookline.rejected.{tenant}")),
        ("HOOKLINE_EVENTS", format!("hookline.events.{tenant}.>")),
        ("HOOKLINE_DISPATCH", format!("hookline.dispatch.{tenant}.>")),
        ("HOOKLINE_PARKED", format!("hookline.parked.{tenant}.>")),
        ("HOOKLINE_OUTCOMES", format!("hookline.outcomes.{tenant}.>")),
        ("HOOKLINE_CONFIG", format!("hookline.config.{tenant}")),
    ]
}

/// Messages per stream on the tenant's subjects ($JS.API.STREAM.INFO with
/// `subjects_filter`).
async fn counts(js: &async_nats::jetstream::Context, tenant: &str) -> HashMap<&'static str, u64> {
    let mut out = HashMap::new();
    for (stream, filter) in filters(tenant) {
        let s = js.get_stream(stream).await.unwrap();
        let subjects: Vec<(String, usize)> = s.info_with_subjects(&filter).await.unwrap().try_collect().await.unwrap();
        out.insert(stream, subjects.iter().map(|(_, n)| *n as u64).sum());
    }
    out
}

/// The tenant's retries waiting in HOOKLINE_RETRY: the ones stored as a
/// reference (one subject per due second for every tenant, the tenant in a
/// header), and the whole tasks an older version stored on
/// `hookline.retry.<due>.<tenant>.<endpoint>`, read message by message.
async fn waiting_retries(js: &async_nats::jetstream::Context, tenant: &str) -> u64 {
    stored_messages(js, "HOOKLINE_RETRY")
        .await
        .iter()
        .filter(|m| {
            let by_header = m.headers.get("Hookline-Tenant").map(|v| v.as_str()) == Some(tenant);
            let by_subject = m.subject.split('.').nth(3) == Some(tenant) && m.subject.split('.').count() == 5;
            by_header || by_subject
        })
        .count() as u64
}

/// Rows of the tenant in every table, keyed `table.column`: by `tenant_id`
/// in each table that has that column, by `endpoint_id` (the tenant's
/// endpoints) in each that has that one, and `tenants.id`.
async fn rows(pool: &sqlx::PgPool, tenant: &str, endpoints: &[String]) -> HashMap<String, i64> {
    let columns: Vec<(String, String)> = sqlx::query_as(
        "SELECT table_name::text, column_name::text FROM information_schema.columns
         WHERE table_schema = 'public' AND column_name IN ('tenant_id', 'endpoint_id')",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    assert!(columns.len() >= 7, "the tables with tenant or endpoint columns are found: {columns:?}");
    let mut out = HashMap::new();
    for (table, column) in columns {
        let sql = format!("SELECT count(*) FROM {table} WHERE {column} = ANY($1)");
        let keys: Vec<String> = if column == "tenant_id" { vec![tenant.to_owned()] } else { endpoints.to_vec() };
        let n: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(sql)).bind(&keys).fetch_one(pool).await.unwrap();
        out.insert(format!("{table}.{column}"), n);
    }
    let n: i64 =
        sqlx::query_scalar("SELECT count(*) FROM tenants WHERE id = $1").bind(tenant).fetch_one(pool).await.unwrap();
    out.insert("tenants.id".to_owned(), n);
    out
}

fn total(rows: &HashMap<String, i64>) -> i64 {
    rows.values().sum()
}

fn delete(tenant: &str, confirm: &str) -> spb::DeleteTenantRequest {
    spb::DeleteTenantRequest { tenant_id: tenant.into(), confirm: confirm.into() }
}

/// `hookline tenant delete ...` against the stack: (success, stdout, stderr).
fn delete_cli(s: &Stack, args: &[&str]) -> (bool, String, String) {
    let (code, out, err) = cli(s, &[&["tenant", "delete"], args].concat());
    (code == 0, out, err)
}

/// Tenant `salon-a` with three endpoints: one that accepts, one that fails
/// (its tasks wait for a retry an hour away in the retry store) and one
/// whose breaker opens (its tasks are parked); tenant `salon-b` with one
/// that accepts and one that fails (its retries wait too). Both deliver;
/// then A is deleted with `hookline tenant delete`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_tenant_erases_it_from_every_stream_and_table_and_leaves_the_other_tenant_untouched() {
    let s = stack_with(&[
        ("HOOKLINE_RETRY_SCHEDULE", "0s,1h,1h"),
        ("HOOKLINE_BREAKER_THRESHOLD", "3"),
        ("HOOKLINE_BREAKER_COOLDOWN", "60s"),
        ("HOOKLINE_BREAKER_FIRST_COOLDOWN", "60s"),
        ("HOOKLINE_ENDPOINT_CONCURRENCY", "2"),
    ])
    .await;
    let js = s.nats.jetstream().await;
    let pool = s.db.pool().await;
    s.create_tenant("salon-a", Plan::Professional, true).await;
    s.create_tenant("salon-b", Plan::Professional, true).await;
    let (a_ok, a_retrying, a_down, b_ok) =
        (Receiver::start().await, Receiver::start().await, Receiver::start().await, Receiver::start().await);
    a_retrying.set_default(500);
    a_down.set_default(500);
    let (ok_ep, _) = s.create_endpoint("salon-a", &a_ok.url(), &[], PayloadLayout::Envelope).await;
    let (retry_ep, _) =
        s.create_endpoint("salon-a", &a_retrying.url(), &["customer.created"], PayloadLayout::Envelope).await;
    let (down_ep, _) =
        s.create_endpoint("salon-a", &a_down.url(), &["customer.updated"], PayloadLayout::Envelope).await;
    let (b_ep, _) = s.create_endpoint("salon-b", &b_ok.url(), &[], PayloadLayout::Envelope).await;
    let b_retrying = Receiver::start().await;
    b_retrying.set_default(500);
    let (b_retry_ep, _) =
        s.create_endpoint("salon-b", &b_retrying.url(), &["customer.created"], PayloadLayout::Envelope).await;
    let a_endpoints = vec![ok_ep.clone(), retry_ep.clone(), down_ep.clone()];

    let mut batch: Vec<_> = (0..2).map(|_| json_request("salon-a", &fresh("customer.created"))).collect();
    batch.extend((0..30).map(|_| json_request("salon-a", &fresh("customer.updated"))));
    s.publish_batch(batch).await;
    s.publish_batch((0..3).map(|_| json_request("salon-b", &fresh("customer.created"))).collect()).await;
    a_ok.wait_for(32, Duration::from_secs(20)).await.unwrap();
    a_retrying.wait_for(2, Duration::from_secs(10)).await.unwrap();
    b_ok.wait_for(3, Duration::from_secs(10)).await.unwrap();
    b_retrying.wait_for(3, Duration::from_secs(10)).await.unwrap();
    // And one retry of each stored whole by an older version, on its
    // endpoint's own subject.
    let due = chrono::Utc::now().timestamp() + 3600;
    for (tenant, ep) in [("salon-a", &retry_ep), ("salon-b", &b_retry_ep)] {
        let publish = async_nats::jetstream::message::PublishMessage::build()
            .payload(format!("{{\"tenant\":\"{tenant}\"}}").into())
            .message_id(format!("old-{tenant}"));
        js.send_publish(format!("hookline.retry.{due}.{tenant}.{ep}"), publish).await.unwrap().await.unwrap();
    }
    eventually(Duration::from_secs(20), "both tenants' retries waiting in the retry store", || async {
        let (a, b) = (waiting_retries(&js, "salon-a").await, waiting_retries(&js, "salon-b").await);
        Ok::<_, anyhow::Error>((a >= 3 && b == 4).then_some(()))
    })
    .await
    .unwrap();
    eventually(Duration::from_secs(20), "salon-a's tasks parked behind the open breaker", || async {
        Ok::<_, anyhow::Error>((counts(&js, "salon-a").await["HOOKLINE_PARKED"] > 0).then_some(()))
    })
    .await
    .unwrap();
    eventually(Duration::from_secs(20), "both tenants in the delivery log", || async {
        let (a, b) =
            (rows(&pool, "salon-a", &a_endpoints).await, rows(&pool, "salon-b", std::slice::from_ref(&b_ep)).await);
        Ok::<_, anyhow::Error>(
            (a["deliveries.tenant_id"] >= 34 && a["attempts.endpoint_id"] >= 34 && b["deliveries.tenant_id"] == 6)
                .then_some(()),
        )
    })
    .await
    .unwrap();
    let a_before = counts(&js, "salon-a").await;
    for stream in ["HOOKLINE_EVENTS", "HOOKLINE_OUTCOMES", "HOOKLINE_CONFIG", "HOOKLINE_PARKED"] {
        assert!(a_before[stream] > 0, "salon-a has messages in {stream} before: {a_before:?}");
    }
    let b_before = counts(&js, "salon-b").await;
    let b_rows_before = rows(&pool, "salon-b", std::slice::from_ref(&b_ep)).await;
    let an_outcome: Value = s.outcomes("salon-a", &ok_ep).await.remove(0);

    // The confirmation: missing or wrong, nothing happens, and the error names the field.
    let mut subs = s.hookline.subscriptions_client().await;
    for confirm in ["", "salon-b", "salon-"] {
        let refused = subs.delete_tenant(delete("salon-a", confirm)).await.unwrap_err();
        assert_eq!(refused.code(), Code::InvalidArgument, "{refused:?}");
        assert!(refused.message().starts_with("confirm: must repeat the tenant id `salon-a`"), "{refused:?}");
    }
    let (done, _, stderr) = delete_cli(&s, &["salon-a"]);
    assert!(!done && stderr.contains("--confirm"), "the CLI asks for --confirm: {stderr}");
    let (done, _, stderr) = delete_cli(&s, &["salon-a", "--confirm", "salon-b"]);
    assert!(!done && stderr.contains("confirm: must repeat the tenant id"), "{stderr}");
    assert_eq!(counts(&js, "salon-a").await["HOOKLINE_CONFIG"], a_before["HOOKLINE_CONFIG"], "nothing was appended");

    let (done, stdout, stderr) = delete_cli(&s, &["salon-a", "--confirm", "salon-a", "--json"]);
    assert!(done, "{stderr}");
    let printed: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(printed["tenant_id"], "salon-a");
    assert_eq!(printed["endpoints"], 3);
    assert_eq!(printed["already_deleted"], false);
    let erased = printed["messages_erased"].as_u64().unwrap();
    let at_least = a_before["HOOKLINE_EVENTS"] + a_before["HOOKLINE_OUTCOMES"] + a_before["HOOKLINE_CONFIG"];
    assert!(erased >= at_least, "{printed}, before: {a_before:?}");

    // Every stream: only the tombstone is left of salon-a, at once.
    let a_after = counts(&js, "salon-a").await;
    for (stream, n) in &a_after {
        let left = if *stream == "HOOKLINE_CONFIG" { 1 } else { 0 };
        assert_eq!(*n, left, "salon-a's messages in {stream} after the deletion: {a_after:?}");
    }
    assert_eq!(waiting_retries(&js, "salon-a").await, 0, "none of salon-a's waiting retries is left");
    assert_eq!(waiting_retries(&js, "salon-b").await, 4, "salon-b's waiting retries stay");
    let tombstone = read_subject(&s.nats, "HOOKLINE_CONFIG", "hookline.config.salon-a").await;
    assert_eq!(tombstone.len(), 1);
    assert_eq!(tombstone[0]["type"], "tenant.deleted");
    assert!(!tombstone[0].to_string().contains("whsec_") && !tombstone[0].to_string().contains("sealed:"));
    let parked_consumers: Vec<String> =
        js.get_stream("HOOKLINE_PARKED").await.unwrap().consumer_names().try_collect().await.unwrap();
    for ep in &a_endpoints {
        assert!(!parked_consumers.contains(&format!("parked_{ep}")), "{parked_consumers:?}");
    }
    // Postgres: no row of salon-a in any table, once the projector applied the tombstone.
    eventually(Duration::from_secs(10), "salon-a's rows deleted", || async {
        let left = rows(&pool, "salon-a", &a_endpoints).await;
        Ok::<_, anyhow::Error>((total(&left) == 0).then_some(()))
    })
    .await
    .unwrap();

    // The tenant is gone for every service.
    let gone = subs.get_tenant(spb::GetTenantRequest { tenant_id: "salon-a".into() }).await.unwrap_err();
    assert_eq!(gone.code(), Code::NotFound);
    let refused = s
        .hookline
        .ingest_client()
        .await
        .publish(json_request("salon-a", &fresh("customer.created")))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::NotFound, "{refused:?}");

    // Its queued retries and parked tasks are never sent, even to receivers
    // that would now accept them; salon-b keeps being delivered to.
    let (retried, parked_sent, ok_sent) = (a_retrying.count(), a_down.count(), a_ok.count());
    a_retrying.set_default(200);
    a_down.set_default(200);
    s.publish_batch((0..2).map(|_| json_request("salon-b", &fresh("customer.updated"))).collect()).await;
    b_ok.wait_for(5, Duration::from_secs(10)).await.unwrap();
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert_eq!(
        (a_retrying.count(), a_down.count(), a_ok.count()),
        (retried, parked_sent, ok_sent),
        "nothing of salon-a was sent after its deletion"
    );

    // salon-b: every message and row it had is still there.
    let b_after = counts(&js, "salon-b").await;
    assert_eq!(b_after["HOOKLINE_CONFIG"], b_before["HOOKLINE_CONFIG"]);
    assert_eq!(b_after["HOOKLINE_EVENTS"], b_before["HOOKLINE_EVENTS"] + 2);
    assert!(b_after["HOOKLINE_OUTCOMES"] >= b_before["HOOKLINE_OUTCOMES"] + 2, "{b_before:?} {b_after:?}");
    eventually(Duration::from_secs(10), "salon-b's new deliveries in the log", || async {
        let now = rows(&pool, "salon-b", std::slice::from_ref(&b_ep)).await;
        Ok::<_, anyhow::Error>(
            (now["deliveries.tenant_id"] == b_rows_before["deliveries.tenant_id"] + 2).then_some(now),
        )
    })
    .await
    .unwrap();
    assert_eq!(rows(&pool, "salon-b", std::slice::from_ref(&b_ep)).await["tenants.id"], 1);

    // An outcome of salon-a recorded after its deletion (an attempt that was
    // in flight) is not projected, and deleting again erases it from the stream.
    let ack = js
        .publish(format!("hookline.outcomes.salon-a.{ok_ep}"), an_outcome.to_string().into())
        .await
        .unwrap()
        .await
        .unwrap();
    eventually(Duration::from_secs(10), "the outcomes projector past the late outcome", || async {
        let at: i64 = sqlx::query_scalar("SELECT last_seq FROM projector_offsets WHERE projector = 'outcomes'")
            .fetch_one(&pool)
            .await?;
        Ok::<_, anyhow::Error>((at as u64 >= ack.sequence).then_some(()))
    })
    .await
    .unwrap();
    assert_eq!(total(&rows(&pool, "salon-a", &a_endpoints).await), 0, "the late outcome is not in the log");
    let again = subs.delete_tenant(delete("salon-a", "salon-a")).await.unwrap().into_inner();
    assert!(again.already_deleted);
    assert_eq!((again.endpoints, again.messages_erased), (0, 1));
    assert_eq!(counts(&js, "salon-a").await["HOOKLINE_OUTCOMES"], 0);

    // A tenant that never existed: NOT_FOUND.
    let missing = subs.delete_tenant(delete("salon-z", "salon-z")).await.unwrap_err();
    assert_eq!(missing.code(), Code::NotFound, "{missing:?}");

    // The id can be taken again, and it starts empty.
    s.create_tenant("salon-a", Plan::Basic, true).await;
    let fresh_a = subs.list_endpoints(spb::ListEndpointsRequest { tenant_id: "salon-a".into() }).await.unwrap();
    assert!(fresh_a.into_inner().endpoints.is_empty());
}

/// An erasure a crash cut short (here: a message of the deleted tenant that
/// reappeared in a stream) is finished when subscriptions starts again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_a_deletion_left_behind_is_erased_when_the_service_starts_again() {
    let mut s = stack().await;
    let js = s.nats.jetstream().await;
    s.create_tenant("salon-c", Plan::Basic, true).await;
    let rx = Receiver::start().await;
    s.create_endpoint("salon-c", &rx.url(), &[], PayloadLayout::Envelope).await;
    s.publish_json("salon-c", &fresh("customer.created")).await;
    rx.wait_for(1, Duration::from_secs(10)).await.unwrap();
    let mut subs = s.hookline.subscriptions_client().await;
    subs.delete_tenant(delete("salon-c", "salon-c")).await.unwrap();
    let event = fresh("customer.created");
    js.publish("hookline.events.salon-c.customer.created", event.to_string().into()).await.unwrap().await.unwrap();
    assert_eq!(counts(&js, "salon-c").await["HOOKLINE_EVENTS"], 1);
    s.hookline.respawn().await.unwrap();
    eventually(Duration::from_secs(10), "the left-over event erased at start", || async {
        Ok::<_, anyhow::Error>((counts(&js, "salon-c").await["HOOKLINE_EVENTS"] == 0).then_some(()))
    })
    .await
    .unwrap();
    assert_eq!(counts(&js, "salon-c").await["HOOKLINE_CONFIG"], 1, "the tombstone stays");
}

const TOKEN: &str = "console-operator-token-0123456789";

/// The console's "Delete tenant" posts with the CSRF token, and deletes only
/// when the operator typed the tenant id; tenants have no such form.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_deletes_a_tenant_in_the_console_only_after_typing_its_id() {
    let s = stack_with(&[("HOOKLINE_OPERATOR_TOKEN", TOKEN)]).await;
    let mut subs = s.hookline.subscriptions_client().await;
    for id in ["salon-d", "salon-e"] {
        subs.create_tenant(with_bearer(
            spb::CreateTenantRequest {
                tenant_id: id.into(),
                plan: Plan::Basic.into(),
                webhooks_enabled: true,
                ..Default::default()
            },
            TOKEN,
        ))
        .await
        .unwrap();
    }
    let reader = subs.clone();
    let exists = |id: &'static str| {
        let mut subs = reader.clone();
        async move { subs.get_tenant(with_bearer(spb::GetTenantRequest { tenant_id: id.into() }, TOKEN)).await }
    };
    let mut c = ConsoleClient::new(&s.hookline.console_url());
    c.sign_in_operator(TOKEN).await.unwrap();
    let page = c.get("/t/salon-d").await.unwrap();
    assert!(page.text().contains("id=\"delete-tenant-form\""), "{}", page.text());

    // A forged form without the CSRF token is refused.
    let forged = c.post_exactly("/t/salon-d/delete", &[("confirm", "salon-d")]).await.unwrap();
    assert_eq!(forged.status, 403, "{}", forged.text());
    // A wrong id: back to the tenant with the reason beside the field.
    c.get("/t/salon-d").await.unwrap();
    let wrong = c.post("/t/salon-d/delete", &[("confirm", "salon-e")]).await.unwrap();
    assert_eq!(wrong.status, 303, "{}", wrong.text());
    let back = wrong.location().unwrap().to_owned();
    assert!(back.starts_with("/t/salon-d?delete=unconfirmed"), "{back}");
    let page = c.get(&back).await.unwrap();
    assert!(page.text().contains("Tenant ID: type salon-d exactly to delete this tenant."), "{}", page.text());
    assert!(exists("salon-d").await.is_ok(), "salon-d is still there");

    let done = c.post("/t/salon-d/delete", &[("confirm", "salon-d")]).await.unwrap();
    assert_eq!(done.status, 303, "{}", done.text());
    assert_eq!(done.location(), Some("/tenants?notice=tenant-deleted"));
    assert_eq!(exists("salon-d").await.unwrap_err().code(), Code::NotFound);
    assert!(exists("salon-e").await.is_ok(), "the other tenant stays");
    let list = c.get("/tenants?notice=tenant-deleted").await.unwrap();
    assert!(list.text().contains("Tenant deleted.") && !list.text().contains("tenant-salon-d"), "{}", list.text());

    // A tenant signed in with its API key sees no delete form and cannot post one.
    let key = subs
        .create_api_key(with_bearer(spb::CreateApiKeyRequest { tenant_id: "salon-e".into(), name: "t".into() }, TOKEN))
        .await
        .unwrap()
        .into_inner()
        .key;
    // Nor over gRPC with its API key: deleting is the operator's.
    let denied = subs.delete_tenant(with_bearer(delete("salon-e", "salon-e"), &key)).await.unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied, "{denied:?}");
    let mut tenant = ConsoleClient::new(&s.hookline.console_url());
    assert_eq!(tenant.sign_in_tenant("salon-e", &key).await.unwrap().status, 303);
    let own = tenant.get("/t/salon-e").await.unwrap();
    assert!(!own.text().contains("delete-tenant-form"));
    let refused = tenant.post("/t/salon-e/delete", &[("confirm", "salon-e")]).await.unwrap();
    assert_eq!(refused.status, 404, "{}", refused.text());
    assert!(exists("salon-e").await.is_ok());
}

/// With the services as separate processes, the deletion made through
/// subscriptions reaches delivery through the config stream: its workers
/// never send the deleted tenant's pending retries, and its projector
/// deletes the tenant's rows, while the other tenant is still delivered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deletion_through_subscriptions_stops_the_separate_delivery_process_sending_its_retries() {
    let s = split(&[("HOOKLINE_RETRY_SCHEDULE", "0s,4s,4s"), ("HOOKLINE_BREAKER_THRESHOLD", "100")]).await;
    let js = s.nats.jetstream().await;
    let pool = s.db.pool().await;
    s.create_tenant("salon-f", Plan::Basic, true).await;
    s.create_tenant("salon-g", Plan::Basic, true).await;
    let (failing, ok) = (Receiver::start().await, Receiver::start().await);
    failing.set_default(503);
    let (f_ep, _) = s.create_endpoint("salon-f", &failing.url(), &[], PayloadLayout::Envelope).await;
    let (g_ep, _) = s.create_endpoint("salon-g", &ok.url(), &[], PayloadLayout::Envelope).await;
    s.publish_batch((0..5).map(|_| json_request("salon-f", &fresh("customer.created"))).collect()).await;
    failing.wait_for(5, Duration::from_secs(10)).await.unwrap();
    eventually(Duration::from_secs(10), "salon-f's first attempts in the log", || async {
        Ok::<_, anyhow::Error>(
            (rows(&pool, "salon-f", std::slice::from_ref(&f_ep)).await["deliveries.tenant_id"] == 5).then_some(()),
        )
    })
    .await
    .unwrap();

    let mut subs = s.subscriptions.subscriptions_client().await;
    let deleted = subs.delete_tenant(delete("salon-f", "salon-f")).await.unwrap().into_inner();
    assert_eq!((deleted.endpoints, deleted.already_deleted), (1, false));
    let sent = failing.count();
    failing.set_default(200);
    let refused = s.ingest.ingest_client().await.publish(json_request("salon-f", &fresh("customer.created"))).await;
    assert_eq!(refused.unwrap_err().code(), Code::NotFound);
    s.publish_json("salon-g", &fresh("customer.created")).await;
    ok.wait_for(1, Duration::from_secs(10)).await.unwrap();
    // Longer than the retry schedule's next step.
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert_eq!(failing.count(), sent, "no retry of salon-f was sent after its deletion");
    let left = counts(&js, "salon-f").await;
    assert_eq!(left.values().sum::<u64>(), 1, "only the tombstone is left: {left:?}");
    eventually(Duration::from_secs(10), "salon-f's rows deleted by the delivery process", || async {
        Ok::<_, anyhow::Error>((total(&rows(&pool, "salon-f", std::slice::from_ref(&f_ep)).await) == 0).then_some(()))
    })
    .await
    .unwrap();
    let g = rows(&pool, "salon-g", std::slice::from_ref(&g_ep)).await;
    assert_eq!((g["tenants.id"], g["endpoints.tenant_id"]), (1, 1));
}

/// Without a master key the signing secret is in clear in the config
/// stream's files; after the deletion those bytes are overwritten, not
/// only dropped from the stream's index (which is all a purge does).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_tenants_signing_secret_is_overwritten_in_the_nats_files() {
    let s = stack().await;
    s.create_tenant("salon-p", Plan::Basic, true).await;
    s.create_tenant("salon-q", Plan::Basic, true).await;
    let (_, p_secret) = s.create_endpoint("salon-p", "https://p.example.com/h", &[], PayloadLayout::Envelope).await;
    let (_, q_secret) = s.create_endpoint("salon-q", "https://q.example.com/h", &[], PayloadLayout::Envelope).await;
    let store = s.nats.log_path().parent().unwrap().join("store");
    let on_disk = |needle: &str| crate::secrets::grep_dir(&store, needle.as_bytes()).len();
    let secret = |s: &str| s.strip_prefix("whsec_").unwrap().to_owned();
    let (p_secret, q_secret) = (secret(&p_secret), secret(&q_secret));
    eventually(Duration::from_secs(5), "both secrets written to the store", || async {
        (on_disk(&p_secret) > 0 && on_disk(&q_secret) > 0).then_some(())
    })
    .await
    .unwrap();
    let mut subs = s.hookline.subscriptions_client().await;
    subs.delete_tenant(delete("salon-p", "salon-p")).await.unwrap();
    // The server writes the overwritten block back on its own flush, not
    // before it answers the delete.
    let erased = eventually(Duration::from_secs(10), "salon-p's secret gone from the NATS files", || async {
        Ok((on_disk(&p_secret) == 0).then_some(()))
    })
    .await;
    assert!(erased.is_ok(), "{:?} still hold salon-p's secret", crate::secrets::grep_dir(&store, p_secret.as_bytes()));
    assert!(on_disk(&q_secret) > 0, "salon-q's secret is untouched");
    let q_endpoint = subs
        .list_endpoints(spb::ListEndpointsRequest { tenant_id: "salon-q".into() })
        .await
        .unwrap()
        .into_inner()
        .endpoints
        .remove(0)
        .id;
    let q = subs
        .get_endpoint_secret(spb::GetEndpointSecretRequest { tenant_id: "salon-q".into(), endpoint_id: q_endpoint })
        .await;
    assert_eq!(secret(&q.unwrap().into_inner().secret), q_secret);
}
