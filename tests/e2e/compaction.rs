//! Compaction of the config stream: a tenant's history becomes one
//! `tenant.snapshot` event and everything before it on its subject is
//! purged. Every reader (each process's Directory, the Postgres projection,
//! a process started afterwards, a projector rebuilding) ends with the same
//! tenant as before, secrets still sign, and a command that races a
//! compaction on another replica is never lost.

use std::time::Duration;

use base64::Engine;
use hookline_e2e::{NatsServer, Receiver, eventually};
use hookline_proto::{
    delivery::v1::{self as dpb, delivery_service_client::DeliveryServiceClient},
    subscriptions::v1::{self as spb, PayloadLayout, Plan, subscription_service_client::SubscriptionServiceClient},
};
use serde_json::Value;
use tonic::transport::Channel;

use crate::common::*;

const HEADER_VALUE: &str = "Bearer compaction-header-7f3a";

async fn config_of(nats: &NatsServer, tenant: &str) -> Vec<Value> {
    read_subject(nats, "HOOKLINE_CONFIG", &format!("hookline.config.{tenant}")).await
}

/// What the subscriptions API says about `tenant`: the tenant (without its
/// `version`, a stream sequence, which a snapshot moves on), its endpoints
/// and every endpoint's secrets.
async fn api_view(
    c: &mut SubscriptionServiceClient<Channel>,
    tenant: &str,
) -> (spb::Tenant, Vec<spb::Endpoint>, Vec<spb::EndpointSecret>) {
    let t = c.get_tenant(spb::GetTenantRequest { tenant_id: tenant.into() }).await.unwrap().into_inner();
    let t = spb::Tenant { version: 0, ..t };
    let eps =
        c.list_endpoints(spb::ListEndpointsRequest { tenant_id: tenant.into() }).await.unwrap().into_inner().endpoints;
    let mut secrets = Vec::new();
    for e in &eps {
        let req = spb::GetEndpointSecretRequest { tenant_id: tenant.into(), endpoint_id: e.id.clone() };
        secrets.push(c.get_endpoint_secret(req).await.unwrap().into_inner());
    }
    (t, eps, secrets)
}

/// An `endpoints` row as [`rows`] selects it.
type EndpointRow =
    (String, String, Option<String>, Vec<String>, String, bool, String, Option<String>, String, String, bool);

/// The tenant's Postgres rows, without the `version` column (a stream
/// sequence, which a snapshot moves on).
async fn rows(pool: &sqlx::PgPool, tenant: &str) -> Vec<String> {
    let tenants: Vec<(String, bool, String, String)> =
        sqlx::query_as("SELECT plan, webhooks_enabled, created_at::text, updated_at::text FROM tenants WHERE id = $1")
            .bind(tenant)
            .fetch_all(pool)
            .await
            .unwrap();
    let endpoints: Vec<EndpointRow> = sqlx::query_as(
        "SELECT id, url, auth_header_name, event_types, layout, enabled, description, disabled_reason,
                    created_at::text, updated_at::text, deleted_at IS NOT NULL
             FROM endpoints WHERE tenant_id = $1 ORDER BY id",
    )
    .bind(tenant)
    .fetch_all(pool)
    .await
    .unwrap();
    tenants.iter().map(|t| format!("{t:?}")).chain(endpoints.iter().map(|e| format!("{e:?}"))).collect()
}

/// Wait until the config projector has applied the whole config stream.
async fn projected(c: &DeliveryServiceClient<Channel>) {
    eventually(Duration::from_secs(20), "config projector caught up", || {
        let mut c = c.clone();
        async move {
            let st = c.get_projection_status(dpb::GetProjectionStatusRequest {}).await?.into_inner();
            Ok(st.projectors.iter().find(|p| p.projector == "config").is_some_and(|p| p.lag == 0).then_some(()))
        }
    })
    .await
    .unwrap();
}

/// Publish one event and check that each receiver got it as its `n`th
/// request, signed with each of the given secrets.
async fn delivered_and_signed(split: &Split, receivers: &[(&Receiver, &[&str])], n: usize, event_type: &str) {
    split.publish_json("acme", &fresh(event_type)).await;
    for (r, secrets) in receivers {
        let got = r.wait_for(n, Duration::from_secs(20)).await.unwrap();
        for secret in *secrets {
            assert!(got[n - 1].verify(secret), "signed with every live secret after compaction");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_history_compacts_to_one_snapshot_that_every_reader_and_every_restart_sees_as_the_same_tenant() {
    let key = base64::engine::general_purpose::STANDARD.encode([5u8; 32]);
    let mut split = split(&[("HOOKLINE_MASTER_KEY", &key), ("HOOKLINE_CONFIG_SNAPSHOT_AFTER", "0")]).await;
    let (r1, r2) = (Receiver::start().await, Receiver::start().await);
    let mut subs = split.subscriptions.subscriptions_client().await;
    split.create_tenant("acme", Plan::Enterprise, true).await;
    let e1 = subs
        .create_endpoint(spb::CreateEndpointRequest {
            tenant_id: "acme".into(),
            url: r1.url(),
            auth_header: Some(spb::AuthHeader { name: "Authorization".into(), value: HEADER_VALUE.into() }),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .id;
    let (e2, _) = split.create_endpoint("acme", &r2.url(), &[], PayloadLayout::Flat).await;
    let (e3, _) = split.create_endpoint("acme", &r1.url(), &["customer.deleted"], PayloadLayout::Envelope).await;
    for i in 0..30 {
        let update = spb::UpdateEndpointRequest {
            tenant_id: "acme".into(),
            endpoint_id: e2.clone(),
            description: Some(format!("revision {i}")),
            ..Default::default()
        };
        subs.update_endpoint(update).await.unwrap();
    }
    let get_secret = spb::GetEndpointSecretRequest { tenant_id: "acme".into(), endpoint_id: e1.clone() };
    let s1_former = subs.get_endpoint_secret(get_secret).await.unwrap().into_inner().secret;
    let rotate = spb::RotateEndpointSecretRequest {
        tenant_id: "acme".into(),
        endpoint_id: e1.clone(),
        grace_period_seconds: Some(3600),
        ..Default::default()
    };
    subs.rotate_endpoint_secret(rotate).await.unwrap();
    subs.delete_endpoint(spb::DeleteEndpointRequest { tenant_id: "acme".into(), endpoint_id: e3 }).await.unwrap();
    subs.create_api_key(spb::CreateApiKeyRequest { tenant_id: "acme".into(), name: "erp".into() }).await.unwrap();
    let keys = subs.list_api_keys(spb::ListApiKeysRequest { tenant_id: "acme".into() }).await.unwrap().into_inner();

    let before = api_view(&mut subs, "acme").await;
    assert_eq!(before.1.len(), 2);
    let delivery = split.delivery_client().await;
    projected(&delivery).await;
    let pool = split.db.pool().await;
    let rows_before = rows(&pool, "acme").await;
    let history = config_of(&split.nats, "acme").await.len() as u64;
    assert_eq!(history, 37);

    let r = subs.compact_config(spb::CompactConfigRequest { min_events: 0 }).await.unwrap().into_inner();
    assert_eq!((r.tenants, r.purged, r.failed), (1, history, 0));
    let config = config_of(&split.nats, "acme").await;
    assert_eq!(config.len(), 1, "one snapshot is left: {config:?}");
    assert_eq!(config[0]["type"], "tenant.snapshot");
    let stored = config[0].to_string();
    for clear in before.2.iter().map(|s| s.secret.as_str()).chain([s1_former.as_str()]) {
        assert!(!stored.contains(clear.trim_start_matches("whsec_")), "a secret in clear in the snapshot");
    }
    assert!(!stored.contains("compaction-header"), "the auth header value in clear");

    // The same tenant through the API, and in Postgres once projected.
    assert_eq!(api_view(&mut subs, "acme").await, before);
    let after_keys = subs.list_api_keys(spb::ListApiKeysRequest { tenant_id: "acme".into() }).await.unwrap();
    assert_eq!(after_keys.into_inner(), keys);
    projected(&delivery).await;
    assert_eq!(rows(&pool, "acme").await, rows_before);
    // Ingest's and delivery's Directories deliver with the same secrets and header.
    let secret_of = |id: &str| before.2.iter().find(|s| s.endpoint_id == id).unwrap().secret.clone();
    let (s1, s2) = (secret_of(&e1), secret_of(&e2));
    let signers: [(&Receiver, &[&str]); 2] = [(&r1, &[&s1, &s1_former]), (&r2, &[&s2])];
    delivered_and_signed(&split, &signers, 1, "customer.created").await;
    assert_eq!(r1.requests()[0].header("authorization"), Some(HEADER_VALUE));

    // A projector rebuilding from the compacted stream ends with the same
    // live endpoints and tenant; the deleted endpoint's history was purged,
    // so it has no row, and the tenant's `updated_at` is the snapshot's.
    let mut d = delivery.clone();
    d.rebuild_projections(dpb::RebuildProjectionsRequest {}).await.unwrap();
    let live = |rows: &[String]| -> Vec<String> {
        let tenant = rows[0].rsplit_once(", ").unwrap().0.to_owned();
        std::iter::once(tenant).chain(rows[1..].iter().filter(|r| r.ends_with("false)")).cloned()).collect()
    };
    let want = live(&rows_before);
    assert_eq!(want.len(), 3, "{rows_before:?}");
    eventually(Duration::from_secs(20), "rebuilt config projection", || {
        let (pool, want) = (pool.clone(), want.clone());
        async move {
            let now = rows(&pool, "acme").await;
            (now.len() == 3 && live(&now) == want).then_some(())
        }
    })
    .await
    .unwrap();

    // Every process restarted starts from the compacted stream.
    split.subscriptions.respawn().await.unwrap();
    split.ingest.respawn().await.unwrap();
    split.delivery.respawn().await.unwrap();
    let mut subs = split.subscriptions.subscriptions_client().await;
    assert_eq!(api_view(&mut subs, "acme").await, before);
    delivered_and_signed(&split, &signers, 2, "customer.updated").await;
    // And the history goes on after the snapshot.
    let update = spb::UpdateEndpointRequest {
        tenant_id: "acme".into(),
        endpoint_id: e2.clone(),
        description: Some("after compaction".into()),
        ..Default::default()
    };
    subs.update_endpoint(update).await.unwrap();
    let config = config_of(&split.nats, "acme").await;
    assert_eq!(
        config.iter().map(|c| c["type"].as_str().unwrap()).collect::<Vec<_>>(),
        ["tenant.snapshot", "endpoint.updated"]
    );
    projected(&split.delivery_client().await).await;
    let description: String =
        sqlx::query_scalar("SELECT description FROM endpoints WHERE id = $1").bind(&e2).fetch_one(&pool).await.unwrap();
    assert_eq!(description, "after compaction");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_racing_a_compaction_on_another_replica_is_never_lost() {
    let peers = Peers::start().await;
    let env = [("HOOKLINE_CONFIG_SNAPSHOT_AFTER", "0")];
    let a = peers.role("subscriptions", &env).spawn().await.unwrap();
    let b = peers.role("subscriptions", &env).spawn().await.unwrap();
    let (mut ca, mut cb) = (a.subscriptions_client().await, b.subscriptions_client().await);
    tenant(&mut ca, "acme", Plan::Enterprise, true).await;

    // B writes while A compacts the same tenant, over and over.
    let writer = tokio::spawn(async move {
        let mut created = Vec::new();
        for i in 0..40 {
            if i % 4 == 0 {
                let (id, _) =
                    endpoint(&mut cb, "acme", "https://erp.example.com/h", &[], PayloadLayout::Envelope).await;
                created.push(id);
            } else {
                let update = spb::UpdateEndpointRequest {
                    tenant_id: "acme".into(),
                    endpoint_id: created.last().unwrap().clone(),
                    description: Some(format!("write {i}")),
                    ..Default::default()
                };
                cb.update_endpoint(update).await.unwrap();
            }
        }
        created
    });
    let mut snapshots = 0;
    while !writer.is_finished() {
        let r = ca.compact_config(spb::CompactConfigRequest { min_events: 0 }).await.unwrap().into_inner();
        assert_eq!(r.failed, 0);
        snapshots += r.tenants;
    }
    let created = writer.await.unwrap();
    assert!(snapshots >= 3, "compactions raced the writes: {snapshots}");

    // Every acknowledged write is there, on both replicas and on a new one.
    let c = peers.role("subscriptions", &env).spawn().await.unwrap();
    for p in [&a, &b, &c] {
        let mut client = p.subscriptions_client().await;
        let eps = client.list_endpoints(spb::ListEndpointsRequest { tenant_id: "acme".into() }).await.unwrap();
        let eps = eps.into_inner().endpoints;
        assert_eq!(eps.iter().map(|e| e.id.clone()).collect::<Vec<_>>(), created);
        let descriptions: Vec<&str> = eps.iter().map(|e| e.description.as_str()).collect();
        assert_eq!(
            descriptions,
            [
                "write 3", "write 7", "write 11", "write 15", "write 19", "write 23", "write 27", "write 31",
                "write 35", "write 39"
            ]
        );
    }
    peers.db.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenants_config_subject_stays_bounded_however_often_it_changes() {
    let s = stack_with(&[("HOOKLINE_CONFIG_SNAPSHOT_AFTER", "10")]).await;
    s.create_tenant("acme", Plan::Basic, true).await;
    let (ep, secret) = s.create_endpoint("acme", "https://erp.example.com/h", &[], PayloadLayout::Envelope).await;
    let mut subs = s.hookline.subscriptions_client().await;
    let mut longest = 0;
    for i in 0..100 {
        let update = spb::UpdateEndpointRequest {
            tenant_id: "acme".into(),
            endpoint_id: ep.clone(),
            description: Some(format!("revision {i}")),
            ..Default::default()
        };
        subs.update_endpoint(update).await.unwrap();
        if i % 7 == 0 {
            longest = longest.max(config_of(&s.nats, "acme").await.len());
        }
    }
    let config = config_of(&s.nats, "acme").await;
    longest = longest.max(config.len());
    assert!(longest <= 11, "at most a snapshot and 10 events: {longest}");
    assert_eq!(config[0]["type"], "tenant.snapshot");
    assert_eq!(stream_messages(&s.nats, "HOOKLINE_CONFIG").await, config.len() as u64);

    let e = subs.get_endpoint(spb::GetEndpointRequest {
        tenant_id: "acme".into(),
        endpoint_id: ep.clone(),
        ..Default::default()
    });
    assert_eq!(e.await.unwrap().into_inner().description, "revision 99");
    let kept =
        subs.get_endpoint_secret(spb::GetEndpointSecretRequest { tenant_id: "acme".into(), endpoint_id: ep.clone() });
    assert_eq!(kept.await.unwrap().into_inner().secret, secret);
    projected(&s.delivery_client().await).await;
    let pool = s.db.pool().await;
    let description: String =
        sqlx::query_scalar("SELECT description FROM endpoints WHERE id = $1").bind(&ep).fetch_one(&pool).await.unwrap();
    assert_eq!(description, "revision 99");
}
