//! Read-your-writes across replicas without a read per tenant: a change
//! acknowledged through one process's `Commands` is held by another
//! process's Directory as soon as that one has read the stream's position
//! once, on a real nats-server.

use hookline_bus::StreamSettings;
use hookline_domain::{
    config::{Command, ContactPatch},
    endpoint::Plan,
    ids::TenantId,
};
use hookline_tenants::{
    Commands, Directory,
    directory::{FreshRead, WaitReason},
};
use hookline_testkit::NatsServer;
use tokio_util::sync::CancellationToken;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_made_through_another_process_is_held_after_one_read_of_the_stream_position() {
    let nats = NatsServer::start().unwrap();
    let js = nats.jetstream().await;
    let shutdown = CancellationToken::new();
    hookline_bus::ensure_streams(&js, &StreamSettings::default(), &shutdown).await.unwrap();
    // The writer (a subscriptions replica) and the reader (an ingest
    // replica), each on its own connection and follower.
    let writer = Commands::new(js.clone(), Directory::start(&js, shutdown.clone()).await.unwrap());
    let reader_js = nats.jetstream().await;
    let reader = Directory::start(&reader_js, shutdown.clone()).await.unwrap();

    let tenants: Vec<TenantId> = (0..4).map(|i| TenantId::parse(&format!("tenant-{i}")).unwrap()).collect();
    for t in &tenants {
        let create =
            Command::CreateTenant { plan: Plan::Basic, webhooks_enabled: true, contact: ContactPatch::default() };
        writer.execute(t, create).await.unwrap();
    }
    for round in 0..200 {
        let tenant = &tenants[round % tenants.len()];
        let update = Command::UpdateTenant {
            plan: None,
            webhooks_enabled: Some(round % 2 == 0),
            contact: ContactPatch::default(),
        };
        let written = writer.execute(tenant, update).await.unwrap();
        // Asked at once, as an event published right after the change.
        let read: FreshRead = reader.fresh_stream_seq().await.unwrap();
        assert!(read.seq >= written.version, "round {round}: the read sees the acknowledged change");
        let seq = reader.tenant_seq_as_of(tenant, read, WaitReason::Ingest).await.unwrap();
        assert_eq!(seq, written.version, "round {round}: the tenant's sequence is the change's");
        let held = reader.tenant(tenant).unwrap();
        assert_eq!(
            (held.version, held.webhooks_enabled),
            (written.version, round % 2 == 0),
            "round {round}: the reader's index holds the change"
        );
    }
    // A tenant that does not exist has no sequence.
    let read = reader.fresh_stream_seq().await.unwrap();
    let nobody = TenantId::parse("nobody").unwrap();
    assert_eq!(reader.tenant_seq_as_of(&nobody, read, WaitReason::Ingest).await.unwrap(), 0);
    shutdown.cancel();
}
