//! The config rules: plan limits under concurrency,
//! downgrades, endpoint validation, Resolve freshness, rebuildable projections.

use std::time::{Duration, Instant};

use hookline_proto::subscriptions::v1::{
    self as spb, CreateEndpointRequest, EventTypeList, PayloadLayout, Plan, ResolveRequest, UpdateEndpointRequest,
    UpdateTenantRequest,
};
use tonic::Code;

use crate::common::*;

async fn projected_endpoints(pool: &sqlx::PgPool, tenant: &str) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM endpoints WHERE tenant_id = $1 AND deleted_at IS NULL")
        .bind(tenant)
        .fetch_one(pool)
        .await
        .unwrap_or(-1)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plan_limit_holds_under_20_concurrent_creates_and_projections_rebuild() {
    let mut s = stack().await;
    let mut subs = s.hookline.subscriptions_client().await;
    s.create_tenant("acme", Plan::Professional, true).await;

    let creates = (0..20).map(|i| {
        let mut c = subs.clone();
        async move {
            c.create_endpoint(CreateEndpointRequest {
                tenant_id: "acme".into(),
                url: format!("https://erp{i}.example.com/hooks"),
                ..Default::default()
            })
            .await
        }
    });
    let results = futures_util::future::join_all(creates).await;
    let ok = results.iter().filter(|r| r.is_ok()).count();
    assert_eq!(ok, 3, "exactly the plan's 3 endpoints");
    for err in results.iter().filter_map(|r| r.as_ref().err()) {
        assert_eq!(err.code(), Code::FailedPrecondition, "{}", err.message());
        assert!(err.message().contains("plan limit reached: the professional plan allows 3"), "{}", err.message());
    }
    let listed =
        subs.list_endpoints(spb::ListEndpointsRequest { tenant_id: "acme".into() }).await.unwrap().into_inner();
    assert_eq!(listed.endpoints.len(), 3);

    let pool = s.db.pool().await;
    hookline_e2e::eventually(Duration::from_secs(10), "projection shows 3", || {
        let pool = &pool;
        async move { Ok::<_, anyhow::Error>((projected_endpoints(pool, "acme").await == 3).then_some(())) }
    })
    .await
    .unwrap();

    let err = subs
        .update_tenant(UpdateTenantRequest {
            tenant_id: "acme".into(),
            plan: Some(Plan::Basic.into()),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert!(err.message().contains("allows 1 endpoint(s), while the tenant has 3"), "{}", err.message());

    // Projections are disposable: drop them, restart, and they come back from the stream.
    sqlx::raw_sql("DROP TABLE endpoints; DROP TABLE tenants; DROP TABLE projector_offsets")
        .execute(&pool)
        .await
        .unwrap();
    s.hookline.terminate();
    s.hookline.wait_exit(Duration::from_secs(20)).await.expect("graceful exit");
    s.hookline.respawn().await.unwrap();
    hookline_e2e::eventually(Duration::from_secs(15), "projection rebuilt", || {
        let pool = &pool;
        async move { Ok::<_, anyhow::Error>((projected_endpoints(pool, "acme").await == 3).then_some(())) }
    })
    .await
    .unwrap();
    let plan: String = sqlx::query_scalar("SELECT plan FROM tenants WHERE id = 'acme'").fetch_one(&pool).await.unwrap();
    assert_eq!(plan, "professional");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoint_rules_and_resolve_freshness() {
    let s = stack().await;
    let mut subs = s.hookline.subscriptions_client().await;
    s.create_tenant("acme", Plan::Business, true).await;
    let bad = |url: &str, name: &str, types: Vec<&str>| CreateEndpointRequest {
        tenant_id: "acme".into(),
        url: url.into(),
        auth_header: (!name.is_empty()).then(|| spb::AuthHeader { name: name.into(), value: "v".into() }),
        event_types: types.into_iter().map(String::from).collect(),
        ..Default::default()
    };
    for (req, message) in [
        (bad("ftp://x.example.com", "", vec![]), "url: must use the http or https scheme"),
        (bad("https://user:pw@x.example.com", "", vec![]), "url: must not contain a user name or password"),
        (bad("https://x.example.com", "Content-Type", vec![]), "auth_header.name: `Content-Type` is reserved"),
        (bad("https://x.example.com", "webhook-id", vec![]), "auth_header.name: `webhook-id` is reserved"),
        (bad("https://x.example.com", "Bad Header", vec![]), "auth_header.name: must be an HTTP header name"),
        (
            bad("https://x.example.com", "", vec!["customer.created", "customer.exploded"]),
            "event_types[1]: unknown event type",
        ),
    ] {
        let err = subs.create_endpoint(req).await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument);
        assert!(err.message().starts_with(message), "`{}` should start with `{message}`", err.message());
    }
    let err = subs.create_endpoint(bad("https://x.example.com", "", vec![]).clone()).await.map(|_| ());
    assert!(err.is_ok());

    let (ep, _) =
        s.create_endpoint("acme", "https://erp.example.com/h", &["customer.created"], PayloadLayout::Flat).await;
    let resolve = |t: &str| ResolveRequest { tenant_id: "acme".into(), event_type: t.into(), ..Default::default() };
    let r = subs.resolve(resolve("customer.created")).await.unwrap().into_inner();
    assert!(r.endpoints.iter().any(|e| e.endpoint_id == ep));
    let r = subs.resolve(resolve("customer.deleted")).await.unwrap().into_inner();
    assert!(!r.endpoints.iter().any(|e| e.endpoint_id == ep));

    // A change is visible to Resolve within one second.
    subs.update_endpoint(UpdateEndpointRequest {
        tenant_id: "acme".into(),
        endpoint_id: ep.clone(),
        event_types: Some(EventTypeList { event_types: vec!["customer.deleted".into()] }),
        ..Default::default()
    })
    .await
    .unwrap();
    let changed = Instant::now();
    loop {
        let r = subs.resolve(resolve("customer.deleted")).await.unwrap().into_inner();
        if r.endpoints.iter().any(|e| e.endpoint_id == ep) {
            break;
        }
        assert!(changed.elapsed() < Duration::from_secs(1), "Resolve still stale after 1 s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    subs.update_endpoint(UpdateEndpointRequest {
        tenant_id: "acme".into(),
        endpoint_id: ep.clone(),
        enabled: Some(false),
        ..Default::default()
    })
    .await
    .unwrap();
    let r = subs.resolve(resolve("customer.deleted")).await.unwrap().into_inner();
    assert!(!r.endpoints.iter().any(|e| e.endpoint_id == ep), "disabled endpoints are not resolved");

    // Rotation replaces the secret; deletion frees the slot.
    let before = subs
        .get_endpoint_secret(spb::GetEndpointSecretRequest { tenant_id: "acme".into(), endpoint_id: ep.clone() })
        .await
        .unwrap()
        .into_inner()
        .secret;
    let rotated = subs
        .rotate_endpoint_secret(spb::RotateEndpointSecretRequest {
            tenant_id: "acme".into(),
            endpoint_id: ep.clone(),
            secret: String::new(),
            grace_period_seconds: Some(0),
        })
        .await
        .unwrap()
        .into_inner()
        .secret;
    assert!(rotated.starts_with("whsec_") && rotated != before);
    subs.delete_endpoint(spb::DeleteEndpointRequest { tenant_id: "acme".into(), endpoint_id: ep.clone() })
        .await
        .unwrap();
    let err = subs
        .get_endpoint(spb::GetEndpointRequest { tenant_id: "acme".into(), endpoint_id: ep, reveal_url: false })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    let err = subs.get_tenant(spb::GetTenantRequest { tenant_id: "ghost".into() }).await.unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
}
