//! Structured errors end to end: the `google.rpc` details a real server
//! puts on its statuses, and what the real `hookline` CLI makes of them
//! (exit codes, JSON on stderr), plus its completions, man page and tables.

use std::{path::Path, time::Duration};

use hookline_proto::subscriptions::v1::{self as spb, Plan};
use serde_json::{Value, json};
use tonic::Code;
use tonic_types::StatusExt;

use crate::common::*;

/// `hookline <args>` needing no server.
fn offline(args: &[&str]) -> (i32, String, String) {
    let out = hookline_e2e::hookline_command().unwrap().args(args).output().unwrap();
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (out.status.code().expect("exited"), text(&out.stdout), text(&out.stderr))
}

/// The `ErrorInfo` of a status: (reason, domain, metadata).
fn error_info(s: &tonic::Status) -> (String, String, std::collections::HashMap<String, String>) {
    let info = s.get_details_error_info().unwrap_or_else(|| panic!("no ErrorInfo on {s:?}"));
    (info.reason, info.domain, info.metadata)
}

/// The field path a message names: the text before the first `: `.
fn path_in(message: &str) -> &str {
    message.split_once(": ").map(|(p, _)| p).unwrap_or_else(|| panic!("no field path in `{message}`"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_batch_names_every_bad_field_in_bad_request_with_the_paths_of_the_messages() {
    let s = stack().await;
    s.create_tenant("acme", Plan::Basic, true).await;
    let mut ingest = s.hookline.ingest_client().await;

    let mut bad_email = fresh("customer.created");
    bad_email["data"]["customer"]["email"] = json!("not an address");
    let mut bad_type = fresh("customer.created");
    bad_type["type"] = json!("customer.teleported");
    // Alone, each names its field in the message, as it always has.
    let mut alone = Vec::new();
    for bad in [&bad_email, &bad_type] {
        let e = ingest.publish(json_request("acme", bad)).await.unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument, "{}", e.message());
        let violations = e.get_details_bad_request().expect("BadRequest").field_violations;
        assert_eq!(violations.len(), 1, "{violations:?}");
        assert_eq!(violations[0].field, path_in(e.message()), "the violation's path is the message's");
        assert_eq!(error_info(&e).0, "INVALID_FIELD");
        alone.push(violations[0].field.clone());
    }
    assert!(alone[0].starts_with("data.customer.email"), "{alone:?}");

    // In one batch, both at once, under their index; nothing is appended.
    let events = [fresh("customer.created"), bad_email, fresh("customer.updated"), bad_type];
    let events = events.iter().map(|e| json_request("acme", e)).collect();
    let e = ingest.publish_batch(hookline_proto::ingest::v1::PublishBatchRequest { events }).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    let fields: Vec<String> =
        e.get_details_bad_request().expect("BadRequest").field_violations.into_iter().map(|v| v.field).collect();
    assert_eq!(fields, [format!("events[1].{}", alone[0]), format!("events[3].{}", alone[1])]);
    assert!(e.message().starts_with(&format!("events[1].{}: ", alone[0])), "{}", e.message());
    let (reason, domain, _) = error_info(&e);
    assert_eq!((reason.as_str(), domain.as_str()), ("INVALID_FIELD", "hookline"));
    assert_eq!(s.events_stored().await, 0, "a refused batch appends nothing");

    // Other refusals carry their own reason.
    let mut subs = s.hookline.subscriptions_client().await;
    let e = subs.get_tenant(spb::GetTenantRequest { tenant_id: "nobody".into() }).await.unwrap_err();
    assert_eq!((e.code(), error_info(&e).0.as_str()), (Code::NotFound, "TENANT_NOT_FOUND"));
    assert_eq!(error_info(&e).2.get("tenant_id").map(String::as_str), Some("nobody"));
    let e = subs
        .create_tenant(spb::CreateTenantRequest {
            tenant_id: "acme".into(),
            plan: Plan::Basic.into(),
            webhooks_enabled: true,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!((e.code(), error_info(&e).0.as_str()), (Code::AlreadyExists, "TENANT_ALREADY_EXISTS"));
    let e = subs
        .create_endpoint(spb::CreateEndpointRequest {
            tenant_id: "acme".into(),
            url: "ftp://example.com/hook".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    let violations = e.get_details_bad_request().expect("BadRequest").field_violations;
    assert_eq!((violations.len(), violations[0].field.as_str()), (1, "url"), "{}", e.message());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rate_refusal_carries_retry_info_and_the_cli_exits_7_with_the_delay_in_its_json() {
    // One event per 20 s, a burst of one: the second publish is refused.
    let s = stack_with(&[("HOOKLINE_TENANT_RATE", "0.05"), ("HOOKLINE_TENANT_BURST", "1")]).await;
    s.create_tenant("acme", Plan::Basic, true).await;
    let mut ingest = s.hookline.ingest_client().await;
    ingest.publish(json_request("acme", &fresh("customer.created"))).await.unwrap();
    let e = ingest.publish(json_request("acme", &fresh("customer.created"))).await.unwrap_err();
    assert_eq!(e.code(), Code::ResourceExhausted, "{}", e.message());
    let delay = e.get_details_retry_info().and_then(|r| r.retry_delay).expect("RetryInfo with a delay");
    assert!(delay > Duration::from_secs(10) && delay <= Duration::from_secs(20), "{delay:?}");
    let (reason, domain, metadata) = error_info(&e);
    assert_eq!((reason.as_str(), domain.as_str()), ("RATE_LIMITED", "hookline"));
    assert_eq!(metadata.get("tenant_id").map(String::as_str), Some("acme"));

    let file = std::env::temp_dir().join(format!("hookline-rate-{}.json", std::process::id()));
    std::fs::write(&file, fresh("customer.created").to_string()).unwrap();
    let (code, stdout, stderr) = cli(&s, &["publish", "acme", file.to_str().unwrap(), "--json"]);
    assert_eq!(code, 7, "{stderr}");
    assert!(stdout.is_empty(), "errors never go to stdout: {stdout}");
    let v: Value = serde_json::from_str(&stderr).unwrap_or_else(|e| panic!("{e}: {stderr}"));
    assert_eq!(v["error"]["code"], "RESOURCE_EXHAUSTED");
    assert_eq!(v["error"]["reason"], "RATE_LIMITED");
    assert_eq!(v["error"]["exit_code"], 7);
    let ms = v["error"]["retry_delay_ms"].as_u64().expect("retry_delay_ms");
    assert!((1..=20_000).contains(&ms), "{v}");
    assert!(v["error"]["retry_delay"].as_str().unwrap().ends_with('s'), "{v}");

    // Readable without --json: the message, then when to retry.
    let (code, _, stderr) = cli(&s, &["publish", "acme", file.to_str().unwrap()]);
    assert_eq!(code, 7, "{stderr}");
    assert!(stderr.starts_with("error: tenant `acme` publishes faster than 0.05 events/s"), "{stderr}");
    assert!(stderr.contains("(RESOURCE_EXHAUSTED, RATE_LIMITED)\nretry after "), "{stderr}");
    let _ = std::fs::remove_file(&file);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_exits_with_the_class_of_each_refusal_and_prints_it_as_json_under_json() {
    let s = stack().await;
    s.create_tenant("acme", Plan::Basic, true).await;
    let mut subs = s.hookline.subscriptions_client().await;
    subs.create_endpoint(spb::CreateEndpointRequest {
        tenant_id: "acme".into(),
        url: "http://127.0.0.1:9/hook".into(),
        ..Default::default()
    })
    .await
    .unwrap();

    // The plan limit: ErrorInfo with its plan and limit, and exit 7.
    let e = subs
        .create_endpoint(spb::CreateEndpointRequest {
            tenant_id: "acme".into(),
            url: "http://127.0.0.1:9/other".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition);
    let (reason, domain, metadata) = error_info(&e);
    assert_eq!((reason.as_str(), domain.as_str()), ("PLAN_LIMIT_REACHED", "hookline"));
    assert_eq!((metadata["plan"].as_str(), metadata["limit"].as_str()), ("basic", "1"));
    let (code, stdout, stderr) =
        cli(&s, &["endpoint", "create", "acme", "--url", "http://127.0.0.1:9/other", "--json"]);
    assert_eq!(code, 7, "{stderr}");
    assert!(stdout.is_empty(), "{stdout}");
    let v: Value = serde_json::from_str(&stderr).unwrap_or_else(|e| panic!("{e}: {stderr}"));
    assert_eq!(
        (&v["error"]["code"], &v["error"]["reason"], &v["error"]["metadata"]["limit"]),
        (&json!("FAILED_PRECONDITION"), &json!("PLAN_LIMIT_REACHED"), &json!("1"))
    );
    assert!(v["error"]["message"].as_str().unwrap().starts_with("plan limit reached"), "{v}");

    // A bad field: exit 3, the violation in JSON and as `field: rule` in text.
    s.create_tenant("roomy", Plan::Professional, true).await;
    let (code, _, stderr) = cli(&s, &["endpoint", "create", "roomy", "--url", "ftp://example.com/hook", "--json"]);
    assert_eq!(code, 3, "{stderr}");
    let v: Value = serde_json::from_str(&stderr).unwrap_or_else(|e| panic!("{e}: {stderr}"));
    assert_eq!(v["error"]["reason"], "INVALID_FIELD");
    assert_eq!(v["error"]["field_violations"][0]["field"], "url", "{v}");
    assert_eq!(v["error"]["retry_delay"], Value::Null);
    let (code, _, stderr) = cli(&s, &["endpoint", "create", "roomy", "--url", "ftp://example.com/hook"]);
    assert_eq!(code, 3, "{stderr}");
    assert!(stderr.contains("(INVALID_ARGUMENT, INVALID_FIELD)\n  url: "), "{stderr}");

    // Not found (4), already exists (5), a usage error (2), unreachable (8).
    let (code, _, stderr) = cli(&s, &["tenant", "get", "nobody"]);
    assert_eq!(code, 4, "{stderr}");
    assert!(stderr.contains("TENANT_NOT_FOUND"), "{stderr}");
    let (code, _, stderr) = cli(&s, &["tenant", "create", "acme", "--plan", "basic"]);
    assert_eq!(code, 5, "{stderr}");
    let (code, _, stderr) = cli(&s, &["endpoint", "rotate-secret", "acme", "ep_x", "--grace-period", "soon"]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("--grace-period") && stderr.contains("`soon` is not a duration like"), "{stderr}");
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let out = hookline_e2e::hookline_command()
        .unwrap()
        .args(["tenant", "get", "acme", "--json"])
        .env("HOOKLINE_SUBSCRIPTIONS_URL", format!("http://{closed}"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(8), "{stderr}");
    let v: Value = serde_json::from_str(&stderr).unwrap_or_else(|e| panic!("{e}: {stderr}"));
    assert_eq!((&v["error"]["code"], &v["error"]["reason"]), (&json!("UNAVAILABLE"), &Value::Null));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lists_print_headers_durations_read_one_way_and_the_tenant_comes_first_everywhere() {
    let s = stack().await;
    s.create_tenant("acme", Plan::Professional, true).await;
    let (ep, _) = s.create_endpoint("acme", "http://127.0.0.1:9/hook", &[], spb::PayloadLayout::Envelope).await;

    let (code, table, stderr) = cli(&s, &["endpoint", "list", "acme"]);
    assert_eq!(code, 0, "{stderr}");
    let lines: Vec<&str> = table.lines().collect();
    assert!(lines[0].starts_with("ENDPOINT") && lines[0].contains("  URL"), "{table}");
    // Aligned: the URL column starts at the same place in the header and the row.
    assert_eq!(lines[0].find("URL"), lines[1].find("http://127.0.0.1:9/hook"), "{table}");
    assert!(lines[1].starts_with(&ep), "{table}");

    let file = std::env::temp_dir().join(format!("hookline-table-{}.json", std::process::id()));
    std::fs::write(&file, fresh("customer.created").to_string()).unwrap();
    let (code, out, stderr) = cli(&s, &["publish", "acme", file.to_str().unwrap()]);
    let _ = std::fs::remove_file(&file);
    assert_eq!(code, 0, "{stderr}");
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines[0].starts_with("EVENT ") && lines[0].contains(" TYPE"), "{out}");
    assert!(lines[1].starts_with("evt_") && lines[1].contains("customer.created"), "{out}");
    assert_eq!(lines[0].find("TYPE"), lines[1].find("customer.created"), "{out}");

    // Durations: seconds or spans for the grace period, a span ago for --since.
    for grace in ["3600", "1h30m"] {
        let (code, _, stderr) = cli(&s, &["endpoint", "rotate-secret", "acme", &ep, "--grace-period", grace]);
        assert_eq!(code, 0, "--grace-period {grace}: {stderr}");
    }
    // The published event's delivery was created within the last 2 h (the
    // projection trails by moments), and none before 1 h ago.
    let mut listed = String::new();
    for _ in 0..50 {
        let (code, out, stderr) = cli(&s, &["log", "list", "acme", &ep, "--since", "2h"]);
        assert_eq!(code, 0, "{stderr}");
        listed = out;
        if listed.lines().count() > 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        listed.starts_with("DELIVERY ") && listed.lines().nth(1).is_some_and(|l| l.starts_with("dlv_")),
        "{listed}"
    );
    let (code, out, stderr) = cli(&s, &["log", "list", "acme", &ep, "--until", "1h"]);
    assert_eq!((code, out.trim()), (0, "no deliveries"), "{stderr}");

    // The tenant first in `stats` too; the former `--tenant` still works.
    let (code, new, stderr) = cli(&s, &["stats", "acme"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(new.starts_with("ENDPOINT") && new.lines().nth(1).is_some_and(|l| l.starts_with("total ")), "{new}");
    let (code, old, stderr) = cli(&s, &["stats", "--tenant", "acme", &ep]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains("deprecated"), "{stderr}");
    assert!(old.lines().nth(1).is_some_and(|l| l.starts_with(&ep)), "{old}");
}

#[test]
fn completions_and_the_man_page_come_from_the_command_line_definitions() {
    let (code, bash, stderr) = offline(&["completions", "bash"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(bash.contains("_hookline()") && bash.contains("rotate-secret") && bash.contains("--grace-period"));
    let (code, zsh, _) = offline(&["completions", "zsh"]);
    assert_eq!(code, 0);
    assert!(zsh.starts_with("#compdef hookline"), "{}", &zsh[..zsh.len().min(200)]);
    let (code, _, stderr) = offline(&["completions", "tcsh"]);
    assert_eq!(code, 2, "an unknown shell is a usage error: {stderr}");

    let (code, man, stderr) = offline(&["man"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(man.contains(".TH hookline 1"), "{}", &man[..man.len().min(300)]);
    assert!(man.contains("completions") && man.contains("Exit codes:"), "the man page lists commands and exit codes");
    let dir = std::env::temp_dir().join(format!("hookline-man-{}", std::process::id()));
    let (code, _, stderr) = offline(&["man", "--out-dir", dir.to_str().unwrap()]);
    assert_eq!(code, 0, "{stderr}");
    for page in ["hookline.1", "hookline-tenant.1", "hookline-endpoint-rotate-secret.1"] {
        assert!(Path::new(&dir).join(page).is_file(), "{page} missing");
    }
    let _ = std::fs::remove_dir_all(&dir);

    let (code, help, _) = offline(&["--help"]);
    assert_eq!(code, 0);
    assert!(help.contains("Exit codes:") && help.contains("7  a limit"), "{help}");
}
