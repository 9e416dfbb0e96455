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
    assert!(
        sample(&ing, "hookline_grpc_requests_total{method=\"/hookline.ingest.v1.IngestService/Publish\",code=\"Ok\"}")
            >= 3.0,
        "{ing}"
    );
    assert!(ing.contains(
        "hookline_grpc_requests_total{method=\"/hookline.ingest.v1.IngestService/Publish\",code=\"NotFound\"}"
    ));

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
    tokio::time::sleep(Duration::from_secs(6)).await;

    let dashboard: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(format!("{root}/deploy/grafana/dashboards/hookline.json")).unwrap(),
    )
    .unwrap();
    let mut checked = 0;
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().unwrap() {
            let expr = target["expr"].as_str().unwrap();
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
    assert!(checked >= 18, "every panel checked");

    // Every alert rule loaded, healthy, and its expression evaluates.
    let (_, rules) = http_get(&format!("{prom}/api/v1/rules")).await.unwrap();
    let rules: serde_json::Value = serde_json::from_str(&rules).unwrap();
    let loaded = rules["data"]["groups"][0]["rules"].as_array().unwrap();
    assert_eq!(loaded.len(), 6, "{rules}");
    for rule in loaded {
        prom_query(&prom, rule["query"].as_str().unwrap()).await;
        assert_ne!(rule["health"], "err", "{rule}");
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

/// Optional OTLP export: spans of one event reach the collector under its trace id.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_are_exported_to_an_otlp_collector_when_configured() {
    let collector = Receiver::start().await;
    let otlp = collector.url().trim_end_matches("/hook").to_owned();
    let s = stack_with(&[("HOOKLINE_OTLP_ENDPOINT", &otlp)]).await;
    let receiver = Receiver::start().await;
    s.create_tenant("acme", Plan::Basic, true).await;
    s.create_endpoint("acme", &receiver.url(), &[], PayloadLayout::Envelope).await;
    let trace_id = "0af7651916cd43dd8448eb211c80319c";
    let mut req = tonic::Request::new(json_request("acme", &fresh("customer.created")));
    req.metadata_mut().insert("traceparent", format!("00-{trace_id}-b7ad6b7169203331-01").parse().unwrap());
    s.hookline.ingest_client().await.publish(req).await.unwrap();
    receiver.wait_for(1, Duration::from_secs(15)).await.unwrap();
    let names = eventually(Duration::from_secs(15), "ingest, fanout and attempt spans", || async {
        let mut names = std::collections::BTreeSet::new();
        for r in collector.requests().iter().filter(|r| r.path == "/v1/traces") {
            let body: serde_json::Value = serde_json::from_slice(&r.body)?;
            for span in body["resourceSpans"][0]["scopeSpans"][0]["spans"].as_array().into_iter().flatten() {
                if span["traceId"] == trace_id {
                    names.insert(span["name"].as_str().unwrap_or_default().to_owned());
                }
            }
        }
        Ok((names.len() >= 3).then_some(names))
    })
    .await
    .unwrap();
    assert!(["ingest", "fanout", "attempt"].iter().all(|n| names.contains(*n)), "{names:?}");
}
