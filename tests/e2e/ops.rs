//! Every service's /metrics shows the documented families, and they
//! move when traffic flows.

use std::time::Duration;

use hookline_e2e::{Receiver, eventually, http_get};
use hookline_proto::subscriptions::v1::{PayloadLayout, Plan};

use crate::common::*;

/// The value of the first sample whose line starts with `prefix` (name and labels).
fn sample(text: &str, prefix: &str) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#') && l.starts_with(prefix))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

async fn scrape(url: &str) -> String {
    let (status, body) = http_get(&format!("{url}/metrics")).await.unwrap();
    assert_eq!(status, 200);
    body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_families_exist_per_service_and_move_with_traffic() {
    let s = split(&[("HOOKLINE_RETRY_SCHEDULE", "0s,1s"), ("HOOKLINE_BREAKER_THRESHOLD", "100")]).await;
    let Split { subscriptions, ingest, delivery, .. } = &s;
    let ok = Receiver::start().await;
    let failing = Receiver::start().await;
    failing.set_default(500);
    s.create_tenant("acme", Plan::Professional, true).await;
    s.create_endpoint("acme", &ok.url(), &[], PayloadLayout::Envelope).await;
    s.create_endpoint("acme", &failing.url(), &["customer.created"], PayloadLayout::Envelope).await;

    let before = (scrape(&ingest.http_url()).await, scrape(&delivery.http_url()).await);
    let mut client = ingest.ingest_client().await;
    for _ in 0..3 {
        client.publish(json_request("acme", &fresh("customer.created"))).await.unwrap();
    }
    let _ = client.publish(json_request("ghost", &fresh("customer.created"))).await;
    ok.wait_for(3, Duration::from_secs(20)).await.unwrap();
    failing.wait_for(6, Duration::from_secs(20)).await.unwrap();

    let ing = scrape(&ingest.http_url()).await;
    let accepted = "hookline_events_accepted_total{event_type=\"customer.created\",source=\"grpc\"}";
    assert_eq!(sample(&ing, accepted) - sample(&before.0, accepted), 3.0, "{ing}");
    assert_eq!(sample(&ing, "hookline_events_rejected_total{reason=\"unknown_tenant\",source=\"grpc\"}"), 1.0);
    let publish = "grpc_service=\"hookline.ingest.v1.IngestService\",grpc_method=\"Publish\"";
    assert!(sample(&ing, &format!("hookline_grpc_requests_total{{{publish},grpc_code=\"OK\"}}")) >= 3.0, "{ing}");
    assert!(ing.contains(&format!("hookline_grpc_requests_total{{{publish},grpc_code=\"NOT_FOUND\"}}")), "{ing}");
    assert!(ing.contains(&format!("hookline_grpc_request_duration_seconds_count{{{publish}}}")), "{ing}");

    let sub = scrape(&subscriptions.http_url()).await;
    assert_eq!(sample(&sub, "hookline_config_commands_total{command=\"create_endpoint\",result=\"ok\"}"), 2.0, "{sub}");
    // Fan-out coalesces concurrent Resolve calls for one tenant and type.
    assert!(sample(&sub, "hookline_resolve_duration_seconds_count") >= 1.0, "{sub}");
    assert_eq!(sample(&sub, "hookline_directory_endpoints"), 2.0);

    // The gauges come from a poll every 5 s, which may first run before
    // every consumer exists: wait for all of them.
    let families = [
        "hookline_delivery_in_flight",
        "hookline_delivery_breakers_open",
        "hookline_consumer_pending{",
        "hookline_consumer_ack_pending{stream=\"HOOKLINE_DISPATCH\",consumer=\"workers\"}",
        "hookline_consumer_redelivered{",
        "hookline_projector_lag{projector=\"outcomes\"}",
    ];
    let del = eventually(Duration::from_secs(15), "delivery metrics and lag gauges", || async {
        let del = scrape(&delivery.http_url()).await;
        Ok(families.iter().all(|f| del.contains(f)).then_some(del))
    })
    .await
    .unwrap();
    assert_eq!(sample(&del, "hookline_delivery_attempts_total{outcome=\"succeeded\""), 3.0, "{del}");
    assert_eq!(sample(&del, "hookline_delivery_attempts_total{outcome=\"retrying\",error_kind=\"http_status\"}"), 3.0);
    assert_eq!(sample(&del, "hookline_delivery_attempts_total{outcome=\"failed\",error_kind=\"http_status\"}"), 3.0);
    assert_eq!(sample(&del, "hookline_delivery_retries_scheduled_total"), 3.0);
    assert!(sample(&del, "hookline_delivery_attempt_duration_seconds_count{channel=\"http\"}") >= 9.0);
    // No tenant or endpoint ids as labels.
    for text in [&ing, &sub, &del] {
        assert!(!text.contains("acme") && !text.contains("ep_"), "ids must not be metric labels");
    }
}

/// `/metrics` answers OpenMetrics under its media type to a client that asks
/// for it (as Prometheus does), and the text format 0.0.4 otherwise.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_are_openmetrics_when_asked_for_and_the_text_format_otherwise() {
    let s = stack().await;
    let url = format!("{}/metrics", s.hookline.http_url());
    let content_type =
        |headers: &[(String, String)]| headers.iter().find(|(k, _)| k == "content-type").map(|(_, v)| v.clone());
    let prometheus = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,\
                      text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
    let (status, headers, open) = hookline_e2e::http_get_with(&url, &[("Accept", prometheus)]).await.unwrap();
    assert_eq!(status, 200);
    assert_eq!(content_type(&headers).as_deref(), Some("application/openmetrics-text; version=1.0.0; charset=utf-8"));
    assert!(open.ends_with("# EOF\n"), "{open}");
    assert!(open.contains("# TYPE hookline_config_conflicts counter\n"), "{open}");

    for accept in [None, Some("*/*"), Some("text/plain")] {
        let headers_in: Vec<(&str, &str)> = accept.map(|a| ("Accept", a)).into_iter().collect();
        let (status, headers, text) = hookline_e2e::http_get_with(&url, &headers_in).await.unwrap();
        assert_eq!(status, 200);
        assert_eq!(content_type(&headers).as_deref(), Some("text/plain; version=0.0.4; charset=utf-8"), "{accept:?}");
        assert!(!text.contains("# EOF") && !text.contains("# UNIT"), "{accept:?}: {text}");
        assert!(text.contains("# TYPE hookline_config_conflicts_total counter\nhookline_config_conflicts_total "));
        assert!(text.contains("# TYPE hookline_delivery_in_flight gauge\n"), "{text}");
    }
}

/// Calls to paths no served service has count under one `unknown` label
/// value, whatever the path, and known methods under their service and name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_grpc_paths_add_no_label_values() {
    let s = stack().await;
    let channel = tonic::transport::Endpoint::from_shared(s.hookline.grpc_url()).unwrap().connect().await.unwrap();
    let mut grpc = tonic::client::Grpc::new(channel);
    for i in 0..50 {
        grpc.ready().await.unwrap();
        let path = http::uri::PathAndQuery::try_from(format!("/made.up.Service{i}/Method{i}")).unwrap();
        let answer: Result<tonic::Response<()>, tonic::Status> =
            grpc.unary(tonic::Request::new(()), path, tonic_prost::ProstCodec::<(), ()>::default()).await;
        assert_eq!(answer.unwrap_err().code(), tonic::Code::Unimplemented);
    }
    let _ = s.hookline.ingest_client().await.publish(json_request("ghost", &fresh("customer.created"))).await;
    let text = scrape(&s.hookline.http_url()).await;
    let grpc_lines: Vec<&str> = text.lines().filter(|l| l.starts_with("hookline_grpc_requests_total{")).collect();
    assert!(!text.contains("made.up") && !text.contains("Method7"), "{text}");
    assert_eq!(
        sample(
            &text,
            "hookline_grpc_requests_total{grpc_service=\"unknown\",grpc_method=\"unknown\",grpc_code=\"UNIMPLEMENTED\"}"
        ),
        50.0,
        "{grpc_lines:#?}"
    );
    assert_eq!(
        sample(
            &text,
            "hookline_grpc_requests_total{grpc_service=\"hookline.ingest.v1.IngestService\",grpc_method=\"Publish\",grpc_code=\"NOT_FOUND\"}"
        ),
        1.0,
        "{grpc_lines:#?}"
    );
    // Every series' labels come from the known set.
    for line in &grpc_lines {
        assert!(line.contains("grpc_code=\"") && !line.contains("method=\"/"), "{line}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_trace_id_follows_an_event_through_all_three_services() {
    let s = split(&[("HOOKLINE_LOG_FORMAT", "json")]).await;
    let Split { subscriptions, ingest, delivery, .. } = &s;
    let receiver = Receiver::start().await;
    s.create_tenant("acme", Plan::Basic, true).await;
    let (ep, _) = s.create_endpoint("acme", &receiver.url(), &[], PayloadLayout::Envelope).await;

    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let mut req = tonic::Request::new(json_request("acme", &fresh("customer.created")));
    req.metadata_mut().insert("traceparent", format!("00-{trace_id}-00f067aa0ba902b7-01").parse().unwrap());
    let event_id = ingest.ingest_client().await.publish(req).await.unwrap().into_inner().event_id;
    let got = receiver.wait_for(1, Duration::from_secs(15)).await.unwrap();
    let sent = got[0].header("traceparent").unwrap();
    assert!(sent.starts_with(&format!("00-{trace_id}-")), "the webhook request continues the trace: {sent}");

    let outcome = eventually(Duration::from_secs(10), "outcome", || async {
        Ok(s.outcomes("acme", &ep).await.into_iter().next())
    })
    .await
    .unwrap();
    assert_eq!(outcome["trace_id"], trace_id, "the attempt record carries the trace id");
    // And the delivery log shows it.
    let log = s.delivery_client().await;
    let attempt_trace = eventually(Duration::from_secs(10), "the log row", || {
        let mut log = log.clone();
        let ep = ep.clone();
        async move {
            let page = log
                .list_deliveries(hookline_proto::delivery::v1::ListDeliveriesRequest {
                    tenant_id: "acme".into(),
                    endpoint_id: ep,
                    ..Default::default()
                })
                .await?
                .into_inner();
            let Some(d) = page.deliveries.into_iter().next() else { return Ok(None) };
            let detail = log
                .get_delivery(hookline_proto::delivery::v1::GetDeliveryRequest {
                    tenant_id: "acme".into(),
                    delivery_id: d.id,
                })
                .await?
                .into_inner();
            Ok(detail.attempts.into_iter().next().map(|a| a.trace_id))
        }
    })
    .await
    .unwrap();
    assert_eq!(attempt_trace, trace_id);

    for (name, proc) in [("ingest", &ingest), ("subscriptions", &subscriptions), ("delivery", &delivery)] {
        let log = proc.log_contents();
        let lines: Vec<serde_json::Value> =
            log.lines().filter(|l| l.contains(trace_id)).filter_map(|l| serde_json::from_str(l).ok()).collect();
        assert!(!lines.is_empty(), "{name} logged nothing with trace id {trace_id}");
        assert!(lines.iter().all(|l| l.is_object()), "{name}: JSON log lines");
        if name != "subscriptions" {
            assert!(
                log.lines().any(|l| l.contains(trace_id) && l.contains(&event_id)),
                "{name}: trace id beside event id"
            );
        }
    }
    let delivery_log = delivery.log_contents();
    assert!(delivery_log.lines().any(|l| l.contains(trace_id) && l.contains(&ep) && l.contains("attempt finished")));
}

/// The anchor GitHub gives a heading: lower case, punctuation dropped,
/// spaces as hyphens.
fn github_anchor(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
            _ => None,
        })
        .collect()
}

fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

async fn prom_query(base: &str, expr: &str) -> serde_json::Value {
    let (status, body) = http_get(&format!("{base}/api/v1/query?query={}", percent_encode(expr))).await.unwrap();
    let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_else(|_| panic!("{status}: {body}"));
    assert_eq!(v["status"], "success", "query `{expr}` is invalid: {body}");
    v
}

/// A real Prometheus (Debian's package) scrapes the services; every dashboard
/// panel query returns series, every alert rule loads and evaluates, and the
/// endpoint-disabled alert fires after a 410.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_queries_and_alert_rules_work_against_a_real_prometheus() {
    let root = env!("CARGO_MANIFEST_DIR");
    let s = split(&[("HOOKLINE_RETRY_SCHEDULE", "0s,1s")]).await;
    let Split { subscriptions, ingest, delivery, .. } = &s;

    let dir = hookline_e2e::temp_dir("hookline-prom");
    let port = hookline_e2e::free_port();
    let targets: Vec<String> =
        [&subscriptions, &ingest, &delivery].iter().map(|p| format!("\"{}\"", p.http_addr())).collect();
    let config = format!(
        "global: {{scrape_interval: 1s, evaluation_interval: 1s}}\nrule_files: [\"{root}/deploy/prometheus/alerts.yml\"]\nscrape_configs:\n  - job_name: hookline\n    static_configs:\n      - targets: [{}]\n",
        targets.join(", ")
    );
    std::fs::write(dir.join("prometheus.yml"), config).unwrap();
    let mut prometheus = std::process::Command::new("prometheus")
        .arg(format!("--config.file={}", dir.join("prometheus.yml").display()))
        .arg(format!("--storage.tsdb.path={}", dir.join("data").display()))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(dir.join("prometheus.log")).unwrap())
        .spawn()
        .expect("prometheus is installed (.ci/run installs Debian's package)");
    let prom = format!("http://127.0.0.1:{port}");
    eventually(Duration::from_secs(30), "prometheus ready", || async {
        Ok(matches!(http_get(&format!("{prom}/-/ready")).await, Ok((200, _))).then_some(()))
    })
    .await
    .unwrap();

    // Counters must be seen at zero before traffic, as in production.
    eventually(Duration::from_secs(20), "all three services scraped", || async {
        let v = prom_query(&prom, "count(up{job=\"hookline\"} == 1)").await;
        Ok((v["data"]["result"][0]["value"][1] == "3").then_some(()))
    })
    .await
    .unwrap();
    // Traffic: successes, failures with retries, and a 410 that disables an endpoint.
    let ok = Receiver::start().await;
    let failing = Receiver::start().await;
    failing.set_default(500);
    let gone = Receiver::start().await;
    gone.set_default(410);
    s.create_tenant("acme", Plan::Professional, true).await;
    s.create_endpoint("acme", &ok.url(), &[], PayloadLayout::Envelope).await;
    s.create_endpoint("acme", &failing.url(), &["customer.updated"], PayloadLayout::Envelope).await;
    s.create_endpoint("acme", &gone.url(), &["customer.deleted"], PayloadLayout::Envelope).await;
    let mut client = ingest.ingest_client().await;
    for t in ["customer.created", "customer.updated", "customer.deleted", "customer.updated"] {
        client.publish(json_request("acme", &fresh(t))).await.unwrap();
    }
    let _ = client.publish(json_request("nobody", &fresh("customer.created"))).await;
    ok.wait_for(4, Duration::from_secs(20)).await.unwrap();
    gone.wait_for(1, Duration::from_secs(20)).await.unwrap();
    // A gRPC method's series appear with its first call: calls spread over
    // later scrapes give its latency histogram a rate to draw.
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        client.publish(json_request("acme", &fresh("customer.created"))).await.unwrap();
    }
    tokio::time::sleep(Duration::from_secs(6)).await;

    let dashboard: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(format!("{root}/deploy/grafana/dashboards/hookline.json")).unwrap(),
    )
    .unwrap();
    // The data source is the dashboard's variable, never a fixed uid.
    let variables = dashboard["templating"]["list"].as_array().expect("dashboard variables");
    assert!(
        variables.iter().any(|v| v["name"] == "datasource" && v["type"] == "datasource" && v["query"] == "prometheus"),
        "a Prometheus data source variable: {variables:?}"
    );
    let mut checked = 0;
    for panel in dashboard["panels"].as_array().unwrap() {
        assert_eq!(panel["datasource"]["uid"], "${datasource}", "panel {}", panel["title"]);
        for target in panel["targets"].as_array().unwrap() {
            assert_eq!(target["datasource"]["uid"], "${datasource}", "panel {}", panel["title"]);
            let expr = target["expr"].as_str().unwrap();
            // Rates over Grafana's $__rate_interval, never a fixed window.
            for (i, _) in expr.match_indices("rate(") {
                let window = expr[i..].split_once('[').and_then(|(_, w)| w.split_once(']')).map(|(w, _)| w);
                assert_eq!(window, Some("$__rate_interval"), "panel {}: `{expr}`", panel["title"]);
            }
            // Grafana puts at least four scrape intervals there, more when
            // zoomed out; five minutes cover all of this test's traffic, as
            // the dashboard's default 6 h view would.
            let expr = &expr.replace("$__rate_interval", "5m");
            // A panel shows something only if a series has a number to draw.
            // A rate needs two scrapes that saw the counter move, so a
            // quantile of rates is NaN until then: wait for a finite value.
            let drawable = |v: &serde_json::Value| {
                v["data"]["result"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|s| s["value"][1].as_str().and_then(|x| x.parse::<f64>().ok()).is_some_and(f64::is_finite))
            };
            let last = std::sync::Mutex::new(serde_json::Value::Null);
            eventually(Duration::from_secs(30), expr, || async {
                let v = prom_query(&prom, expr).await;
                let ok = drawable(&v);
                *last.lock().unwrap() = v;
                Ok(ok.then_some(()))
            })
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "panel `{}`: `{expr}` has no finite value: {e}; last answer {}",
                    panel["title"],
                    last.lock().unwrap()
                )
            });
            checked += 1;
        }
    }
    assert!(checked >= 22, "every panel checked: {checked}");

    // Every alert rule loaded, healthy, and its expression evaluates.
    let (_, rules) = http_get(&format!("{prom}/api/v1/rules")).await.unwrap();
    let rules: serde_json::Value = serde_json::from_str(&rules).unwrap();
    let loaded = rules["data"]["groups"][0]["rules"].as_array().unwrap();
    assert_eq!(loaded.len(), 6, "{rules}");
    let runbook = std::fs::read_to_string(format!("{root}/docs/RUNBOOK.md")).unwrap();
    let anchors: Vec<String> = runbook.lines().filter_map(|l| l.strip_prefix("## ")).map(github_anchor).collect();
    for rule in loaded {
        prom_query(&prom, rule["query"].as_str().unwrap()).await;
        assert_ne!(rule["health"], "err", "{rule}");
        // Every rule tells the person paged what it means and where to read on.
        let name = rule["name"].as_str().unwrap();
        let notes = &rule["annotations"];
        for key in ["summary", "description", "runbook_url"] {
            assert!(notes[key].as_str().is_some_and(|v| v.len() > 20), "{name}: no {key}: {rule}");
        }
        let url = notes["runbook_url"].as_str().unwrap();
        let (file, anchor) = url.split_once('#').unwrap_or_else(|| panic!("{name}: no anchor in {url}"));
        assert_eq!(file, "docs/RUNBOOK.md", "{name}");
        assert_eq!(anchor, github_anchor(name), "{name}: one section per alert, named after it");
        assert!(anchors.iter().any(|a| a == anchor), "{name}: docs/RUNBOOK.md has no section #{anchor}");
        let section = runbook.split("\n## ").find(|s| github_anchor(s.lines().next().unwrap()) == anchor).unwrap();
        assert!(
            section.contains("**Check:**") && section.contains("**Do:**"),
            "{name}: the section says what to check and do"
        );
    }
    // The endpoint disabled by the 410 raises its alert.
    eventually(Duration::from_secs(20), "HooklineEndpointDisabled firing", || async {
        let (_, body) = http_get(&format!("{prom}/api/v1/alerts")).await?;
        Ok(body.contains("\"alertname\":\"HooklineEndpointDisabled\"") && body.contains("\"state\":\"firing\""))
            .map(|firing| firing.then_some(()))
    })
    .await
    .unwrap_or_else(|e| {
        let del = std::fs::read_to_string(dir.join("prometheus.log")).unwrap_or_default();
        panic!(
            "{e}\n{}\n{del}",
            delivery.log_contents().lines().filter(|l| l.contains("disabled")).collect::<Vec<_>>().join("\n")
        )
    });
    let _ = prometheus.kill();
    let _ = prometheus.wait();
    let _ = std::fs::remove_dir_all(&dir);
}
