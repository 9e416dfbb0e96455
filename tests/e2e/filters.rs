//! Payload filters end to end: conditions set with the real CLI, held to
//! the event types' schemas on save, applied at fan-out (an event filtered
//! out reaches no receiver and leaves no delivery), shown by `endpoint get`.

use std::{collections::HashSet, time::Duration};

use hookline_e2e::Receiver;
use hookline_proto::{
    delivery::v1 as dpb,
    subscriptions::v1::{self as spb, Plan},
};
use serde_json::{Value, json};
use tonic::Code;
use tonic_types::StatusExt;

use crate::common::*;

/// An `appointment.booking.created` event built from the example by `edit`.
fn booking(edit: impl FnOnce(&mut Value)) -> Value {
    let mut e = fresh("appointment.booking.created");
    edit(&mut e["data"]);
    e
}

/// Every delivery the log shows for `endpoint` of tenant `acme`, any state.
async fn logged_event_ids(s: &Stack, endpoint: &str) -> HashSet<String> {
    let mut client = s.delivery_client().await;
    let page = client
        .list_deliveries(dpb::ListDeliveriesRequest {
            tenant_id: "acme".into(),
            endpoint_id: endpoint.into(),
            page_size: 200,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    page.deliveries.into_iter().map(|d| d.event_id).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endpoint_with_a_filter_gets_only_matching_events_and_filtered_ones_leave_no_delivery() {
    let s = stack().await;
    s.create_tenant("acme", Plan::Professional, true).await;
    let (filtered, everything) = (Receiver::start().await, Receiver::start().await);
    let (_, stdout, stderr) = cli(
        &s,
        &[
            "endpoint",
            "create",
            "acme",
            "--url",
            &filtered.url(),
            "--event-type",
            "appointment.booking.created",
            "--filter",
            "channel=widget",
            "--filter",
            "appointment.location.kind in onsite,online",
            "--filter",
            "customer.email exists",
            "--json",
        ],
    );
    let created: Value = serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout} {stderr}"));
    let ep = created["id"].as_str().unwrap().to_owned();
    let (plain, _) = s.create_endpoint("acme", &everything.url(), &[], spb::PayloadLayout::Envelope).await;

    // `endpoint get` shows the filter, as JSON and as text.
    let (code, stdout, stderr) = cli(&s, &["endpoint", "get", "acme", &ep, "--json"]);
    assert_eq!(code, 0, "{stderr}");
    let got: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(
        got["filters"],
        json!([
            {"path": "channel", "operator": "equals", "values": ["widget"]},
            {"path": "appointment.location.kind", "operator": "in", "values": ["onsite", "online"]},
            {"path": "customer.email", "operator": "exists", "values": []},
        ])
    );
    let (_, text, _) = cli(&s, &["endpoint", "get", "acme", &ep]);
    assert!(
        text.contains(
            r#"filter: channel="widget" AND appointment.location.kind in "onsite","online" AND customer.email exists"#
        ),
        "{text}"
    );

    // Four events that each fail one condition, between two that meet all.
    let first = s.publish_json("acme", &booking(|_| {})).await.event_id;
    let mut missed = Vec::new();
    for edit in [
        (|d: &mut Value| d["channel"] = json!("manual")) as fn(&mut Value),
        |d| d["appointment"]["location"]["kind"] = json!("phone"),
        |d| {
            d["customer"].as_object_mut().unwrap().remove("email");
        },
        |d| {
            d["appointment"].as_object_mut().unwrap().remove("location");
        },
    ] {
        missed.push(s.publish_json("acme", &booking(edit)).await.event_id);
    }
    let last = s.publish_json("acme", &booking(|_| {})).await.event_id;

    // The barrier: the unfiltered endpoint has all six in the log, so fan-out
    // has handled every event, and the filtered one has both of its own.
    let all: HashSet<String> = missed.iter().cloned().chain([first.clone(), last.clone()]).collect();
    let wanted: HashSet<String> = [first, last].into();
    hookline_e2e::eventually(Duration::from_secs(60), "the log shows every delivery", || {
        let (s, all, wanted, ep, plain) = (&s, &all, &wanted, &ep, &plain);
        async move {
            let done = logged_event_ids(s, plain).await == *all && logged_event_ids(s, ep).await == *wanted;
            Ok::<_, anyhow::Error>(done.then_some(()))
        }
    })
    .await
    .unwrap();
    let sent = [&filtered, &everything].map(|r| webhook_ids(std::slice::from_ref(r)).remove(0));
    assert_eq!((sent[0].len(), sent[1].len()), (2, 6), "only the two matching events were sent to the filtered one");
    let recorded: HashSet<String> =
        s.outcomes("acme", &ep).await.iter().filter_map(|o| o["event_id"].as_str().map(str::to_owned)).collect();
    assert!(recorded.is_subset(&wanted), "no outcome for a filtered event: {recorded:?}");

    // Without the filter, the same events get through again.
    let (code, _, stderr) = cli(&s, &["endpoint", "update", "acme", &ep, "--clear-filters"]);
    assert_eq!(code, 0, "{stderr}");
    let (_, stdout, _) = cli(&s, &["endpoint", "get", "acme", &ep, "--json"]);
    assert_eq!(serde_json::from_str::<Value>(&stdout).unwrap()["filters"], json!([]));
    let unfiltered = s.publish_json("acme", &booking(|d| d["channel"] = json!("manual"))).await.event_id;
    filtered.wait_for(3, Duration::from_secs(30)).await.unwrap();
    hookline_e2e::eventually(Duration::from_secs(30), "the log shows it", || {
        let (s, ep, unfiltered) = (&s, &ep, &unfiltered);
        async move { Ok::<_, anyhow::Error>(logged_event_ids(s, ep).await.contains(unfiltered).then_some(())) }
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_filter_that_does_not_fit_the_schema_is_refused_naming_the_field_and_nothing_is_written() {
    let s = stack().await;
    s.create_tenant("acme", Plan::Professional, true).await;
    let mut subs = s.hookline.subscriptions_client().await;
    let condition = |path: &str, op: spb::FilterOperator, values: &[&str]| spb::FilterCondition {
        path: path.into(),
        operator: op.into(),
        values: values.iter().map(|v| (*v).to_owned()).collect(),
    };
    let ok = condition("channel", spb::FilterOperator::Equals, &[r#""widget""#]);
    let config_before = stream_messages(&s.nats, "HOOKLINE_CONFIG").await;
    for (bad, field, rule) in [
        (
            condition("booking.status", spb::FilterOperator::Equals, &[r#""confirmed""#]),
            "filters[1].path",
            "`booking.status` is not a field of `appointment.booking.created` events' data",
        ),
        (
            condition("event.capacity", spb::FilterOperator::Equals, &["12"]),
            "filters[1].path",
            "`event.capacity` is not a field of `appointment.booking.created`",
        ),
        (condition("customer.email", spb::FilterOperator::Equals, &["42"]), "filters[1].values[0]", "must be string"),
        (
            condition("appointment.location.kind", spb::FilterOperator::In, &[r#""onsite""#, r#""moon""#]),
            "filters[1].values[1]",
            r#"must be one of "onsite", "online", "phone""#,
        ),
        (
            condition("channel", spb::FilterOperator::Unspecified, &[]),
            "filters[1].operator",
            "must be FILTER_OPERATOR_",
        ),
        (spb::FilterCondition { operator: 9, ..ok.clone() }, "filters[1].operator", "must be FILTER_OPERATOR_"),
        (condition("customer", spb::FilterOperator::Equals, &[r#""x""#]), "filters[1].operator", "is an object"),
    ] {
        let e = subs
            .create_endpoint(spb::CreateEndpointRequest {
                tenant_id: "acme".into(),
                url: "https://erp.example.com/h".into(),
                event_types: vec!["appointment.booking.created".into()],
                filters: vec![ok.clone(), bad],
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument, "{}", e.message());
        assert!(e.message().starts_with(&format!("{field}: ")) && e.message().contains(rule), "{}", e.message());
        let violations = e.get_details_bad_request().expect("BadRequest").field_violations;
        assert_eq!(violations[0].field, field);
    }
    let too_many = vec![ok.clone(); 11];
    let e = subs
        .create_endpoint(spb::CreateEndpointRequest {
            tenant_id: "acme".into(),
            url: "https://erp.example.com/h".into(),
            filters: too_many,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.message(), "filters: must hold at most 10 conditions");
    assert_eq!(stream_messages(&s.nats, "HOOKLINE_CONFIG").await, config_before, "nothing was written");
    let listed = subs.list_endpoints(spb::ListEndpointsRequest { tenant_id: "acme".into() }).await.unwrap();
    assert!(listed.into_inner().endpoints.is_empty());

    // The CLI says the same, and exits with the code of a bad request.
    let (code, _, stderr) =
        cli(&s, &["endpoint", "create", "acme", "--url", "https://erp.example.com/h", "--filter", "booking.status=x"]);
    assert_eq!(code, 3, "{stderr}");
    assert!(stderr.contains("filters[0].path: `booking.status` is not a field of any event type"), "{stderr}");

    // A new type list is held to the filter the endpoint keeps.
    let created = subs
        .create_endpoint(spb::CreateEndpointRequest {
            tenant_id: "acme".into(),
            url: "https://erp.example.com/h".into(),
            event_types: vec!["appointment.booking.created".into()],
            filters: vec![ok.clone()],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let e = subs
        .update_endpoint(spb::UpdateEndpointRequest {
            tenant_id: "acme".into(),
            endpoint_id: created.id.clone(),
            event_types: Some(spb::EventTypeList { event_types: vec!["customer.deleted".into()] }),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert!(e.message().starts_with("filters[0].path: `channel` is not a field of `customer.deleted`"), "{e:?}");
    let get = spb::GetEndpointRequest { tenant_id: "acme".into(), endpoint_id: created.id, reveal_url: false };
    let kept = subs.get_endpoint(get).await.unwrap().into_inner();
    assert_eq!((kept.event_types, kept.filters), (vec!["appointment.booking.created".to_owned()], vec![ok]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_services_in_separate_processes_events_published_right_after_a_save_meet_its_filter() {
    // Delivery reads filters from its own config index, which the event's
    // config sequence makes it wait for (here it is rarely behind: the test
    // shows the path across processes, not a forced lag).
    let s = split(&[]).await;
    s.create_tenant("acme", Plan::Business, true).await;
    let receiver = Receiver::start().await;
    let mut subs = s.subscriptions_proc().subscriptions_client().await;
    let mut events = Vec::new();
    for round in 0..3 {
        let channel = if round % 2 == 0 { "widget" } else { "manual" };
        let condition = spb::FilterCondition {
            path: "channel".into(),
            operator: spb::FilterOperator::Equals.into(),
            values: vec![format!("\"{channel}\"")],
        };
        let ep = subs
            .create_endpoint(spb::CreateEndpointRequest {
                tenant_id: "acme".into(),
                url: format!("{}/{round}", receiver.url()),
                filters: vec![condition],
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner()
            .id;
        // At once: one event that meets the filter, one that does not.
        let other = if channel == "widget" { "manual" } else { "widget" };
        let hit = s.publish_json("acme", &booking(|d| d["channel"] = json!(channel))).await.event_id;
        let miss = s.publish_json("acme", &booking(|d| d["channel"] = json!(other))).await.event_id;
        events.push((ep, hit, miss));
    }
    // Wait until each endpoint has its own matching event, then check that
    // none has the event published right after its save that does not match.
    hookline_e2e::eventually(Duration::from_secs(60), "every hit is recorded", || {
        let (s, events) = (&s, &events);
        async move {
            for (ep, hit, _) in events {
                let recorded: HashSet<String> = s
                    .outcomes("acme", ep)
                    .await
                    .iter()
                    .filter_map(|o| o["event_id"].as_str().map(str::to_owned))
                    .collect();
                if !recorded.contains(hit) {
                    return Ok::<_, anyhow::Error>(None);
                }
            }
            Ok(Some(()))
        }
    })
    .await
    .unwrap();
    for (i, (ep, hit, miss)) in events.iter().enumerate() {
        let recorded: HashSet<String> =
            s.outcomes("acme", ep).await.iter().filter_map(|o| o["event_id"].as_str().map(str::to_owned)).collect();
        assert!(recorded.contains(hit), "round {i}: its matching event was delivered");
        assert!(!recorded.contains(miss), "round {i}: the event published right after the save was filtered out");
    }
}
