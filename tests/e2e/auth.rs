//! Tenants are isolated: every RPC called with one tenant's key and
//! another tenant's ids returns no data.

use std::time::Duration;

use hookline_e2e::Receiver;
use hookline_proto::{
    delivery::v1::{self as dpb, delivery_service_client::DeliveryServiceClient},
    ingest::v1::{PublishBatchRequest, ingest_service_client::IngestServiceClient},
    subscriptions::v1::{self as spb, PayloadLayout, Plan},
};
use tonic::{Code, Request, Status};

use crate::common::*;

const OPERATOR: &str = "op-token-for-tests-7f3a";

fn with<T>(msg: T, token: Option<&str>) -> Request<T> {
    match token {
        Some(t) => with_bearer(msg, t),
        None => Request::new(msg),
    }
}

fn denied<T: std::fmt::Debug>(what: &str, r: Result<tonic::Response<T>, Status>, codes: &[Code]) {
    match r {
        Ok(resp) => panic!("{what}: expected {codes:?}, got data {:?}", resp.into_inner()),
        Err(s) => assert!(codes.contains(&s.code()), "{what}: {:?} {}", s.code(), s.message()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenant_keys_reach_only_their_tenant_and_unauthenticated_calls_are_refused() {
    let s = stack_with(&[("HOOKLINE_OPERATOR_TOKEN", OPERATOR)]).await;
    let mut subs = s.hookline.subscriptions_client().await;
    let mut ingest: IngestServiceClient<_> = s.hookline.ingest_client().await;
    let mut log = DeliveryServiceClient::connect(s.hookline.grpc_url()).await.unwrap();
    let op = Some(OPERATOR);

    // Unauthenticated and unknown tokens.
    let get = |t: &str| spb::GetTenantRequest { tenant_id: t.into() };
    denied("no token", subs.get_tenant(with(get("a"), None)).await, &[Code::Unauthenticated]);
    denied("bad token", subs.get_tenant(with(get("a"), Some("hlk_nope"))).await, &[Code::Unauthenticated]);

    // Two tenants, each with an endpoint, a key, and one delivered event.
    let receiver = Receiver::start().await;
    let mut eps = Vec::new();
    let mut keys = Vec::new();
    for t in ["alpha", "beta"] {
        subs.create_tenant(with(
            spb::CreateTenantRequest {
                tenant_id: t.into(),
                plan: Plan::Basic.into(),
                webhooks_enabled: true,
                ..Default::default()
            },
            op,
        ))
        .await
        .unwrap();
        let ep = subs
            .create_endpoint(with(
                spb::CreateEndpointRequest {
                    tenant_id: t.into(),
                    url: receiver.url(),
                    layout: PayloadLayout::Envelope.into(),
                    ..Default::default()
                },
                op,
            ))
            .await
            .unwrap()
            .into_inner()
            .id;
        eps.push(ep);
        let key = subs
            .create_api_key(with(spb::CreateApiKeyRequest { tenant_id: t.into(), name: format!("{t} ERP") }, op))
            .await
            .unwrap();
        let key = key.into_inner();
        assert!(key.key.starts_with("hlk_"));
        keys.push(key);
    }
    let (alpha_key, beta_ep) = (keys[0].key.clone(), eps[1].clone());
    let a = Some(alpha_key.as_str());
    // A tenant key publishes for its own tenant; delivery works with auth on.
    ingest.publish(with(json_request("alpha", &fresh("customer.created")), a)).await.unwrap();
    ingest.publish(with(json_request("beta", &fresh("customer.created")), op)).await.unwrap();
    receiver.wait_for(2, Duration::from_secs(20)).await.unwrap();
    let beta_delivery = hookline_e2e::eventually(Duration::from_secs(10), "beta's delivery row", || {
        let mut log = log.clone();
        let ep = beta_ep.clone();
        async move {
            let r = log
                .list_deliveries(with(
                    dpb::ListDeliveriesRequest { tenant_id: "beta".into(), endpoint_id: ep, ..Default::default() },
                    op,
                ))
                .await?
                .into_inner();
            Ok(r.deliveries.into_iter().next())
        }
    })
    .await
    .unwrap();
    // Own data is reachable with the key.
    let own = subs.list_endpoints(with(spb::ListEndpointsRequest { tenant_id: "alpha".into() }, a)).await.unwrap();
    assert_eq!(own.into_inner().endpoints.len(), 1);

    let nf = &[Code::NotFound];
    let pd = &[Code::PermissionDenied];
    let b = || "beta".to_string();
    // SubscriptionService, with beta's ids and alpha's key.
    denied(
        "CreateTenant",
        subs.create_tenant(with(
            spb::CreateTenantRequest {
                tenant_id: "gamma".into(),
                plan: Plan::Basic.into(),
                webhooks_enabled: true,
                ..Default::default()
            },
            a,
        ))
        .await,
        pd,
    );
    denied("GetTenant", subs.get_tenant(with(get("beta"), a)).await, nf);
    denied(
        "UpdateTenant",
        subs.update_tenant(with(
            spb::UpdateTenantRequest { tenant_id: b(), webhooks_enabled: Some(false), ..Default::default() },
            a,
        ))
        .await,
        nf,
    );
    denied(
        "UpdateTenant own plan",
        subs.update_tenant(with(
            spb::UpdateTenantRequest {
                tenant_id: "alpha".into(),
                plan: Some(Plan::Enterprise.into()),
                ..Default::default()
            },
            a,
        ))
        .await,
        pd,
    );
    denied(
        "CreateEndpoint",
        subs.create_endpoint(with(
            spb::CreateEndpointRequest { tenant_id: b(), url: receiver.url(), ..Default::default() },
            a,
        ))
        .await,
        nf,
    );
    denied(
        "GetEndpoint",
        subs.get_endpoint(with(
            spb::GetEndpointRequest { tenant_id: b(), endpoint_id: beta_ep.clone(), reveal_url: false },
            a,
        ))
        .await,
        nf,
    );
    denied(
        "GetEndpoint via own tenant",
        subs.get_endpoint(with(
            spb::GetEndpointRequest { tenant_id: "alpha".into(), endpoint_id: beta_ep.clone(), reveal_url: false },
            a,
        ))
        .await,
        nf,
    );
    denied("ListEndpoints", subs.list_endpoints(with(spb::ListEndpointsRequest { tenant_id: b() }, a)).await, nf);
    denied(
        "UpdateEndpoint",
        subs.update_endpoint(with(
            spb::UpdateEndpointRequest {
                tenant_id: b(),
                endpoint_id: beta_ep.clone(),
                enabled: Some(false),
                ..Default::default()
            },
            a,
        ))
        .await,
        nf,
    );
    denied(
        "DeleteEndpoint",
        subs.delete_endpoint(with(spb::DeleteEndpointRequest { tenant_id: b(), endpoint_id: beta_ep.clone() }, a))
            .await,
        nf,
    );
    denied(
        "GetEndpointSecret",
        subs.get_endpoint_secret(with(
            spb::GetEndpointSecretRequest { tenant_id: b(), endpoint_id: beta_ep.clone() },
            a,
        ))
        .await,
        nf,
    );
    denied(
        "RotateEndpointSecret",
        subs.rotate_endpoint_secret(with(
            spb::RotateEndpointSecretRequest { tenant_id: b(), endpoint_id: beta_ep.clone(), ..Default::default() },
            a,
        ))
        .await,
        nf,
    );
    denied(
        "Resolve",
        subs.resolve(with(
            spb::ResolveRequest { tenant_id: b(), event_type: "customer.created".into(), ..Default::default() },
            a,
        ))
        .await,
        pd,
    );
    denied(
        "CreateApiKey",
        subs.create_api_key(with(spb::CreateApiKeyRequest { tenant_id: b(), name: String::new() }, a)).await,
        pd,
    );
    denied("ListApiKeys", subs.list_api_keys(with(spb::ListApiKeysRequest { tenant_id: b() }, a)).await, pd);
    denied(
        "RevokeApiKey",
        subs.revoke_api_key(with(spb::RevokeApiKeyRequest { tenant_id: b(), key_id: keys[1].key_id.clone() }, a)).await,
        pd,
    );
    // IngestService.
    denied("Publish", ingest.publish(with(json_request("beta", &fresh("customer.created")), a)).await, nf);
    let mixed = PublishBatchRequest {
        events: vec![
            json_request("alpha", &fresh("customer.created")),
            json_request("beta", &fresh("customer.created")),
        ],
    };
    denied("PublishBatch", ingest.publish_batch(with(mixed, a)).await, nf);
    // DeliveryService.
    let d = beta_delivery.id.clone();
    denied(
        "ListDeliveries via own tenant",
        log.list_deliveries(with(
            dpb::ListDeliveriesRequest {
                tenant_id: "alpha".into(),
                endpoint_id: beta_ep.clone(),
                ..Default::default()
            },
            a,
        ))
        .await,
        nf,
    );
    denied(
        "ListDeliveries",
        log.list_deliveries(with(
            dpb::ListDeliveriesRequest { tenant_id: b(), endpoint_id: beta_ep.clone(), ..Default::default() },
            a,
        ))
        .await,
        nf,
    );
    denied(
        "GetDelivery",
        log.get_delivery(with(dpb::GetDeliveryRequest { tenant_id: b(), delivery_id: d.clone() }, a)).await,
        nf,
    );
    denied(
        "GetDelivery via own tenant",
        log.get_delivery(with(dpb::GetDeliveryRequest { tenant_id: "alpha".into(), delivery_id: d.clone() }, a)).await,
        nf,
    );
    denied(
        "GetDeliveryRaw",
        log.get_delivery_raw(with(
            dpb::GetDeliveryRawRequest { tenant_id: b(), delivery_id: d.clone(), attempt: 0, reveal_url: false },
            a,
        ))
        .await,
        nf,
    );
    denied(
        "ReplayDelivery",
        log.replay_delivery(with(dpb::ReplayDeliveryRequest { tenant_id: b(), delivery_id: d.clone() }, a)).await,
        nf,
    );
    denied(
        "ReplayDelivery via own tenant",
        log.replay_delivery(with(dpb::ReplayDeliveryRequest { tenant_id: "alpha".into(), delivery_id: d.clone() }, a))
            .await,
        nf,
    );
    denied(
        "RecoverEndpoint",
        log.recover_endpoint(with(
            dpb::RecoverEndpointRequest {
                tenant_id: b(),
                endpoint_id: beta_ep.clone(),
                since: "2026-01-01T00:00:00Z".into(),
            },
            a,
        ))
        .await,
        nf,
    );
    denied(
        "GetRecoverJob",
        log.get_recover_job(with(
            dpb::GetRecoverJobRequest { tenant_id: b(), job_id: "job_01M8JSETE1N01VGXYPSGH2EWPC".into() },
            a,
        ))
        .await,
        nf,
    );
    denied(
        "GetEndpointStats",
        log.get_endpoint_stats(with(
            dpb::GetEndpointStatsRequest { tenant_id: b(), endpoint_id: beta_ep.clone(), window: 0 },
            a,
        ))
        .await,
        nf,
    );
    denied(
        "GetEndpointStats via own tenant",
        log.get_endpoint_stats(with(
            dpb::GetEndpointStatsRequest { tenant_id: "alpha".into(), endpoint_id: beta_ep.clone(), window: 0 },
            a,
        ))
        .await,
        nf,
    );
    denied(
        "GetTenantStats",
        log.get_tenant_stats(with(dpb::GetTenantStatsRequest { tenant_id: b(), window: 0 }, a)).await,
        nf,
    );
    denied("GetProjectionStatus", log.get_projection_status(with(dpb::GetProjectionStatusRequest {}, a)).await, pd);
    denied("RebuildProjections", log.rebuild_projections(with(dpb::RebuildProjectionsRequest {}, a)).await, pd);

    // Revoked keys stop working at once.
    subs.revoke_api_key(with(
        spb::RevokeApiKeyRequest { tenant_id: "alpha".into(), key_id: keys[0].key_id.clone() },
        op,
    ))
    .await
    .unwrap();
    denied("revoked key", subs.get_tenant(with(get("alpha"), a)).await, &[Code::Unauthenticated]);
    let listed =
        subs.list_api_keys(with(spb::ListApiKeysRequest { tenant_id: "alpha".into() }, op)).await.unwrap().into_inner();
    assert!(listed.keys.is_empty());
    let beta_keys =
        subs.list_api_keys(with(spb::ListApiKeysRequest { tenant_id: b() }, op)).await.unwrap().into_inner();
    assert_eq!(beta_keys.keys.len(), 1);
    assert!(!format!("{beta_keys:?}").contains(&keys[1].key), "keys are never listed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reflection_and_metrics_want_credentials_while_health_stays_open() {
    use tonic_reflection::pb::v1::{
        ServerReflectionRequest, server_reflection_client::ServerReflectionClient,
        server_reflection_request::MessageRequest, server_reflection_response::MessageResponse,
    };
    const METRICS: &str = "scrape-token-for-tests";
    let s = stack_with(&[("HOOKLINE_OPERATOR_TOKEN", OPERATOR), ("HOOKLINE_METRICS_TOKEN", METRICS)]).await;

    let list = |token: Option<&'static str>| {
        let proc = &s.hookline;
        async move {
            let mut c = ServerReflectionClient::new(proc.channel().await);
            let req = ServerReflectionRequest {
                host: String::new(),
                message_request: Some(MessageRequest::ListServices(String::new())),
            };
            let mut stream =
                c.server_reflection_info(with(futures_util::stream::iter([req]), token)).await?.into_inner();
            let reply = stream.message().await?.expect("one reply");
            match reply.message_response {
                Some(MessageResponse::ListServicesResponse(l)) => {
                    Ok::<_, Status>(l.service.into_iter().map(|s| s.name).collect::<Vec<_>>())
                }
                other => panic!("unexpected reflection reply {other:?}"),
            }
        }
    };
    let err = list(None).await.unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated, "reflection without a token: {}", err.message());
    let services = list(Some(OPERATOR)).await.unwrap();
    assert!(services.iter().any(|n| n == "hookline.subscriptions.v1.SubscriptionService"), "{services:?}");

    // Health answers probes without credentials.
    let mut health = tonic_health::pb::health_client::HealthClient::new(s.hookline.channel().await);
    let status = health.check(tonic_health::pb::HealthCheckRequest { service: String::new() }).await.unwrap();
    assert_eq!(status.into_inner().status, tonic_health::pb::health_check_response::ServingStatus::Serving as i32);
    let (code, _) = hookline_e2e::http_get(&format!("{}/readyz", s.hookline.http_url())).await.unwrap();
    assert_eq!(code, 200);

    // /metrics wants its bearer token.
    let metrics = format!("{}/metrics", s.hookline.http_url());
    let (code, _) = hookline_e2e::http_get(&metrics).await.unwrap();
    assert_eq!(code, 401);
    let (code, _) =
        hookline_e2e::http_request("GET", &metrics, &[("Authorization", "Bearer wrong")], b"").await.unwrap();
    assert_eq!(code, 401);
    let bearer = format!("Bearer {METRICS}");
    let (code, body) = hookline_e2e::http_request("GET", &metrics, &[("Authorization", &bearer)], b"").await.unwrap();
    assert_eq!(code, 200);
    assert!(body.contains("hookline_"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn separate_services_refuse_to_start_without_an_operator_token_unless_explicitly_open() {
    let peers = Peers::start().await;
    for role in ["ingest", "subscriptions", "delivery"] {
        let closed = peers.role(role, &[("HOOKLINE_ALLOW_UNAUTHENTICATED", "false")]);
        let err = format!("{:#}", closed.spawn().await.err().unwrap_or_else(|| panic!("{role} started open")));
        assert!(
            err.contains("HOOKLINE_OPERATOR_TOKEN: is required") && err.contains("HOOKLINE_ALLOW_UNAUTHENTICATED"),
            "{role}: the refusal names the key and the way out: {err}"
        );
        let short = peers.role(role, &[("HOOKLINE_OPERATOR_TOKEN", "short")]);
        let err = format!("{:#}", short.spawn().await.err().unwrap_or_else(|| panic!("{role} took a short token")));
        assert!(err.contains("HOOKLINE_OPERATOR_TOKEN: must be at least 16 characters"), "{role}: {err}");
    }
    // Opened on purpose: it starts, says so loudly, and anyone is the operator.
    let open = peers.role("subscriptions", &[("HOOKLINE_ALLOW_UNAUTHENTICATED", "true")]).spawn().await.unwrap();
    assert!(open.log_contents().contains("ERROR") && open.log_contents().contains("AUTHENTICATION IS OFF"));
    let mut subs = open.subscriptions_client().await;
    let err = subs.get_tenant(spb::GetTenantRequest { tenant_id: "nobody".into() }).await.unwrap_err();
    assert_eq!(err.code(), Code::NotFound, "an open service answers without a token: {}", err.message());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_operator_token_keeps_working_beside_the_new_one_until_it_is_dropped() {
    const OLD: &str = "old-operator-token-0123456789";
    const NEW: &str = "new-operator-token-9876543210";
    let peers = Peers::start().await;
    let env = [("HOOKLINE_OPERATOR_TOKEN", NEW), ("HOOKLINE_OPERATOR_TOKEN_PREVIOUS", OLD)];
    let mut subscriptions = peers.role("subscriptions", &env).spawn().await.unwrap();
    let mut subs = subscriptions.subscriptions_client().await;
    let create = |id: &str| spb::CreateTenantRequest {
        tenant_id: id.into(),
        plan: Plan::Basic.into(),
        webhooks_enabled: true,
        ..Default::default()
    };
    subs.create_tenant(with(create("by-new"), Some(NEW))).await.unwrap();
    subs.create_tenant(with(create("by-old"), Some(OLD))).await.unwrap();
    denied(
        "a stranger",
        subs.create_tenant(with(create("x"), Some("stranger-token-000000"))).await,
        &[Code::Unauthenticated],
    );
    denied("no token", subs.create_tenant(with(create("x"), None)).await, &[Code::Unauthenticated]);

    // The rotation ends: the old token is dropped from the settings.
    subscriptions.kill9();
    let mut subscriptions = peers.role("subscriptions", &[("HOOKLINE_OPERATOR_TOKEN", NEW)]).spawn().await.unwrap();
    let mut subs = subscriptions.subscriptions_client().await;
    denied(
        "the old token",
        subs.get_tenant(with(spb::GetTenantRequest { tenant_id: "by-old".into() }, Some(OLD))).await,
        &[Code::Unauthenticated],
    );
    subs.get_tenant(with(spb::GetTenantRequest { tenant_id: "by-old".into() }, Some(NEW))).await.unwrap();
    subscriptions.terminate();
}
