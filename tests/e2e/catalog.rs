//! The event type catalog from the API (`ListEventTypes`) and the CLI
//! (`hookline event-type`): each type's group, description, JSON Schema and
//! an example that Publish accepts and a receiver gets, for the operator and
//! for a tenant's key alike.

use std::{collections::HashMap, time::Duration};

use hookline_e2e::Receiver;
use hookline_proto::{
    ingest::v1::{PublishRequest, publish_request::Payload as P},
    subscriptions::v1::{self as spb, Plan},
};
use serde_json::Value;
use tonic::Code;

use crate::common::*;

const OPERATOR: &str = "op-token-for-the-catalog-tests";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_catalog_serves_the_twelve_types_with_their_schemas_and_examples_that_publish_accepts_and_receivers_get() {
    let s = stack_with(&[("HOOKLINE_OPERATOR_TOKEN", OPERATOR)]).await;
    let mut subs = s.hookline.subscriptions_client().await;
    let tenant = spb::CreateTenantRequest {
        tenant_id: "acme".into(),
        plan: Plan::Professional.into(),
        webhooks_enabled: true,
        ..Default::default()
    };
    subs.create_tenant(with_bearer(tenant, OPERATOR)).await.unwrap();
    let key = spb::CreateApiKeyRequest { tenant_id: "acme".into(), name: "ERP".into() };
    let key = subs.create_api_key(with_bearer(key, OPERATOR)).await.unwrap().into_inner().key;

    let refused = subs.list_event_types(spb::ListEventTypesRequest {}).await.unwrap_err();
    assert_eq!(refused.code(), Code::Unauthenticated, "without credentials: {refused:?}");
    let types = subs.list_event_types(with_bearer(spb::ListEventTypesRequest {}, OPERATOR)).await.unwrap().into_inner();
    let for_tenant =
        subs.list_event_types(with_bearer(spb::ListEventTypesRequest {}, &key)).await.unwrap().into_inner();
    assert_eq!(types, for_tenant, "the catalog is the same for a tenant's key");
    let types = types.event_types;
    let names: Vec<&str> = types.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, TYPES, "the twelve types in the product's order");

    let schemas = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("schemas");
    for t in &types {
        assert!(
            ["Appointments", "Group events", "Customers"].contains(&t.group.as_str()),
            "{}: group {}",
            t.name,
            t.group
        );
        assert!(t.description.len() > 10, "{}: description {:?}", t.name, t.description);
        let schema: Value = serde_json::from_str(&t.json_schema).unwrap();
        assert_eq!(schema["properties"]["type"]["const"], t.name.as_str(), "{}'s schema", t.name);
        let published: Value =
            serde_json::from_str(&std::fs::read_to_string(schemas.join(format!("{}.json", t.name))).unwrap()).unwrap();
        assert_eq!(schema, published, "{}'s schema is the repository's schemas/{0}.json", t.name);
        let example: Value = serde_json::from_str(&t.example).unwrap();
        assert_eq!(example["type"], t.name.as_str(), "{}'s example", t.name);
    }

    // Each example, published with the tenant's key, reaches an endpoint
    // subscribed to every type with its data as the catalog showed it.
    let receiver = Receiver::start().await;
    let endpoint = spb::CreateEndpointRequest { tenant_id: "acme".into(), url: receiver.url(), ..Default::default() };
    subs.create_endpoint(with_bearer(endpoint, OPERATOR)).await.unwrap();
    let mut ingest = s.hookline.ingest_client().await;
    let mut examples = HashMap::new();
    for t in &types {
        let publish = PublishRequest {
            tenant_id: "acme".into(),
            payload: Some(P::Json(t.example.clone())),
            ..Default::default()
        };
        ingest
            .publish(with_bearer(publish, &key))
            .await
            .unwrap_or_else(|e| panic!("{}'s example refused: {e:?}", t.name));
        examples.insert(t.name.clone(), serde_json::from_str::<Value>(&t.example).unwrap());
    }
    let got = receiver.wait_for(12, Duration::from_secs(60)).await.unwrap();
    for r in &got {
        let b: Value = serde_json::from_slice(&r.body).unwrap();
        let name = b["type"].as_str().unwrap();
        let example = examples.remove(name).unwrap_or_else(|| panic!("{name} arrived twice or was not published"));
        assert_eq!(b["data"], example["data"], "{name} arrived as the catalog's example");
    }
    assert!(examples.is_empty(), "never arrived: {:?}", examples.keys());

    // The CLI prints the same catalog: a table, and one type in full as JSON.
    let cli = |args: &[&str]| {
        let out = hookline_e2e::hookline_command()
            .unwrap()
            .args(args)
            .env("HOOKLINE_SUBSCRIPTIONS_URL", s.hookline.grpc_url())
            .env("HOOKLINE_TOKEN", &key)
            .output()
            .unwrap();
        assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    };
    let table = cli(&["event-type", "list"]);
    let mut lines = table.lines();
    assert!(lines.next().unwrap().starts_with("NAME"), "a header: {table}");
    let listed: Vec<&str> = lines.map(|l| l.split_whitespace().next().unwrap()).collect();
    assert_eq!(listed, TYPES);
    let one: Value = serde_json::from_str(&cli(&["event-type", "show", "customer.deleted", "--json"])).unwrap();
    assert_eq!(one["name"], "customer.deleted");
    assert_eq!(one["json_schema"]["properties"]["type"]["const"], "customer.deleted");
    assert_eq!(one["example"]["type"], "customer.deleted");
}
