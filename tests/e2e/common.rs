//! Shared set-up: a stack of NATS + Postgres + hookline, and API helpers.

use std::time::Duration;

use hookline_e2e::{HooklineBuilder, HooklineProc, NatsServer, Receiver, TestDb};
use hookline_proto::{
    delivery::v1::delivery_service_client::DeliveryServiceClient,
    events::v1 as ev,
    ingest::v1::{
        PublishBatchRequest, PublishBatchResponse, PublishRequest, PublishResponse, publish_request::Payload as P,
    },
    subscriptions::v1::{self as spb, subscription_service_client::SubscriptionServiceClient},
};
use serde_json::Value;
use tonic::transport::Channel;

pub const TYPES: [&str; 12] = [
    "appointment.booking.created",
    "appointment.booking.cancelled",
    "appointment.updated",
    "appointment.manual.booking.created",
    "appointment.booking.rebooked",
    "event.booking.created",
    "event.booking.cancelled",
    "event.manual.booking.created",
    "event.booking.rebooked",
    "customer.created",
    "customer.updated",
    "customer.deleted",
];

/// A nats-server and a scratch database with no hookline process on them
/// yet: what [`split`] and [`stack_with`] start their processes on, and the
/// ground of tests that start roles themselves (two subscriptions replicas,
/// a role that must refuse to start, a role without loopback allowed).
pub struct Peers {
    pub nats: NatsServer,
    pub db: TestDb,
}

impl Peers {
    pub async fn start() -> Self {
        Self { nats: NatsServer::start().unwrap(), db: TestDb::create().await.unwrap() }
    }

    /// `hookline <role>` on these peers with `env` and nothing else set
    /// (no loopback receivers allowed, the default retry schedule).
    pub fn bare(&self, role: &str, env: &[(&str, &str)]) -> HooklineBuilder {
        role_on(&self.nats, &self.db, role).envs(env)
    }

    /// `hookline <role>` as [`Split`] starts it: loopback receivers allowed
    /// explicitly (this is not dev mode), then `env`.
    pub fn role(&self, role: &str, env: &[(&str, &str)]) -> HooklineBuilder {
        role_on(&self.nats, &self.db, role).envs(&[LOOPBACK]).envs(env)
    }

    /// The three services as separate processes, each with `env`.
    pub async fn split(self, env: &[(&str, &str)]) -> Split {
        let subscriptions = self.role("subscriptions", env).spawn().await.unwrap();
        let ingest = self.role("ingest", env).spawn().await.unwrap();
        let delivery = self
            .role("delivery", env)
            .env("HOOKLINE_SUBSCRIPTIONS_URL", &subscriptions.grpc_url())
            .spawn()
            .await
            .unwrap();
        let Self { nats, db } = self;
        Split { nats, db, subscriptions, ingest, delivery }
    }

    /// One `hookline dev` with a fast retry schedule, then `env`.
    pub async fn stack(self, env: &[(&str, &str)]) -> Stack {
        let fast =
            [("HOOKLINE_RETRY_SCHEDULE", "0s,1s,2s"), ("HOOKLINE_REQUEST_TIMEOUT", "3s"), ("HOOKLINE_ACK_WAIT", "5s")];
        let hookline = self.bare("dev", &fast).envs(env).spawn().await.unwrap();
        let Self { nats, db } = self;
        Stack { nats, db, hookline }
    }
}

/// `hookline <role>` on `nats` and `db`.
fn role_on(nats: &NatsServer, db: &TestDb, role: &str) -> HooklineBuilder {
    HooklineBuilder::new(role).env("HOOKLINE_NATS_URL", &nats.url()).env("HOOKLINE_DATABASE_URL", db.url())
}

/// Loopback receivers allowed, as outside dev mode they must be explicitly.
const LOOPBACK: (&str, &str) = ("HOOKLINE_DELIVERY_ALLOW_CIDRS", "127.0.0.0/8");

/// The three services as separate processes on their own nats-server and
/// database, delivering to loopback (allowed explicitly: this is not dev mode).
pub struct Split {
    pub nats: NatsServer,
    pub db: TestDb,
    pub subscriptions: HooklineProc,
    pub ingest: HooklineProc,
    pub delivery: HooklineProc,
}

/// [`Peers::split`] on fresh peers.
pub async fn split(env: &[(&str, &str)]) -> Split {
    Peers::start().await.split(env).await
}

impl Split {
    /// One more process of `role` beside the three, on the same peers, with
    /// `env` (a second delivery process, another subscriptions replica); a
    /// delivery process resolves through the split's subscriptions.
    pub fn another(&self, role: &str, env: &[(&str, &str)]) -> HooklineBuilder {
        let b = role_on(&self.nats, &self.db, role).envs(&[LOOPBACK]);
        let b =
            if role == "delivery" { b.env("HOOKLINE_SUBSCRIPTIONS_URL", &self.subscriptions.grpc_url()) } else { b };
        b.envs(env)
    }
}

pub struct Stack {
    pub nats: NatsServer,
    pub db: TestDb,
    pub hookline: HooklineProc,
}

/// Everything in one `hookline dev` process, with a fast retry schedule.
pub async fn stack() -> Stack {
    stack_with(&[]).await
}

/// [`Peers::stack`] on fresh peers.
pub async fn stack_with(env: &[(&str, &str)]) -> Stack {
    Peers::start().await.stack(env).await
}

pub fn example(event_type: &str) -> Value {
    let path = format!("{}/examples/events/{event_type}.json", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

/// The example without its idempotency key, so each publish is a new event.
pub fn fresh(event_type: &str) -> Value {
    let mut e = example(event_type);
    e.as_object_mut().unwrap().remove("idempotency_key");
    e
}

/// The example's `data` as the typed proto payload of its type.
pub fn typed_payload(event_type: &str, data: &Value) -> P {
    fn de<T: serde::de::DeserializeOwned>(v: &Value) -> T {
        serde_json::from_value(v.clone()).unwrap()
    }
    match event_type {
        "appointment.booking.created" => P::AppointmentBookingCreated(de::<ev::AppointmentBookingCreated>(data)),
        "appointment.booking.cancelled" => P::AppointmentBookingCancelled(de::<ev::AppointmentBookingCancelled>(data)),
        "appointment.updated" => P::AppointmentUpdated(de::<ev::AppointmentUpdated>(data)),
        "appointment.manual.booking.created" => {
            P::AppointmentManualBookingCreated(de::<ev::AppointmentManualBookingCreated>(data))
        }
        "appointment.booking.rebooked" => P::AppointmentBookingRebooked(de::<ev::AppointmentBookingRebooked>(data)),
        "event.booking.created" => P::EventBookingCreated(de::<ev::EventBookingCreated>(data)),
        "event.booking.cancelled" => P::EventBookingCancelled(de::<ev::EventBookingCancelled>(data)),
        "event.manual.booking.created" => P::EventManualBookingCreated(de::<ev::EventManualBookingCreated>(data)),
        "event.booking.rebooked" => P::EventBookingRebooked(de::<ev::EventBookingRebooked>(data)),
        "customer.created" => P::CustomerCreated(de::<ev::CustomerCreated>(data)),
        "customer.updated" => P::CustomerUpdated(de::<ev::CustomerUpdated>(data)),
        "customer.deleted" => P::CustomerDeleted(de::<ev::CustomerDeleted>(data)),
        other => panic!("unknown type {other}"),
    }
}

/// A gRPC publish of a producer JSON event.
pub fn json_request(tenant: &str, event: &Value) -> PublishRequest {
    PublishRequest { tenant_id: tenant.into(), payload: Some(P::Json(event.to_string())), ..Default::default() }
}

/// `msg` as a gRPC request carrying `authorization: Bearer <token>`.
pub fn with_bearer<T>(msg: T, token: &str) -> tonic::Request<T> {
    let mut r = tonic::Request::new(msg);
    r.metadata_mut().insert("authorization", format!("Bearer {token}").parse().unwrap());
    r
}

pub async fn tenant(c: &mut SubscriptionServiceClient<Channel>, id: &str, plan: spb::Plan, on: bool) {
    c.create_tenant(spb::CreateTenantRequest {
        tenant_id: id.into(),
        plan: plan.into(),
        webhooks_enabled: on,
        ..Default::default()
    })
    .await
    .unwrap();
}

/// A `CreateEndpoint` of `url` for `types` (all when empty) in `layout`.
pub fn endpoint_request(
    tenant: &str,
    url: &str,
    types: &[&str],
    layout: spb::PayloadLayout,
) -> spb::CreateEndpointRequest {
    spb::CreateEndpointRequest {
        tenant_id: tenant.into(),
        url: url.into(),
        event_types: types.iter().map(|s| s.to_string()).collect(),
        layout: layout.into(),
        ..Default::default()
    }
}

pub async fn endpoint(
    c: &mut SubscriptionServiceClient<Channel>,
    tenant: &str,
    url: &str,
    types: &[&str],
    layout: spb::PayloadLayout,
) -> (String, String) {
    let e = c.create_endpoint(endpoint_request(tenant, url, types, layout)).await.unwrap().into_inner();
    let secret = c
        .get_endpoint_secret(spb::GetEndpointSecretRequest { tenant_id: tenant.into(), endpoint_id: e.id.clone() })
        .await
        .unwrap()
        .into_inner()
        .secret;
    (e.id, secret)
}

/// Every message a stream holds now, read one by one (for streams of a
/// test's size).
pub async fn stored_messages(
    js: &async_nats::jetstream::Context,
    stream: &str,
) -> Vec<async_nats::jetstream::message::StreamMessage> {
    let mut stream = js.get_stream(stream).await.unwrap();
    let state = stream.info().await.unwrap().state.clone();
    let mut messages = Vec::new();
    if state.messages == 0 {
        return messages;
    }
    for seq in state.first_sequence..=state.last_sequence {
        if let Ok(m) = stream.get_raw_message(seq).await {
            messages.push(m);
        }
    }
    messages
}

/// Resident memory of process `pid` now (`VmRSS`) and at its peak
/// (`VmHWM`), in MiB; 0 for a process that is gone.
pub fn memory_mib(pid: u32) -> (f64, f64) {
    let mib = |field| hookline_e2e::status_mib(pid, field).unwrap_or(0.0);
    (mib("VmRSS:"), mib("VmHWM:"))
}

/// How many messages `stream` holds, read on a fresh client.
pub async fn stream_messages(nats: &NatsServer, stream: &str) -> u64 {
    messages_in(&nats.jetstream().await, stream).await
}

/// How many messages `stream` holds, read through `js` (a context of the
/// test's own, or one with credentials).
pub async fn messages_in(js: &async_nats::jetstream::Context, stream: &str) -> u64 {
    js.get_stream(stream).await.unwrap().get_info().await.unwrap().state.messages
}

/// Messages `stream` has stored since it was made (its last sequence),
/// including those already taken from a work queue.
pub async fn stored_ever(js: &async_nats::jetstream::Context, stream: &str) -> u64 {
    js.get_stream(stream).await.unwrap().get_info().await.unwrap().state.last_sequence
}

/// The value of one series in a `/metrics` text, named as it is printed
/// (`name{label="value"}`); `None` when it is not there.
pub fn metric(metrics: &str, series: &str) -> Option<f64> {
    metrics.lines().find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

/// All messages on `subject` in `stream`, as JSON.
pub async fn read_subject(nats: &NatsServer, stream: &str, subject: &str) -> Vec<Value> {
    use async_nats::jetstream::consumer::{DeliverPolicy, pull};
    use futures_util::StreamExt;
    let js = async_nats::jetstream::new(nats.client().await);
    let s = js.get_stream(stream).await.unwrap();
    let consumer = s
        .create_consumer(pull::Config {
            filter_subject: subject.into(),
            deliver_policy: DeliverPolicy::All,
            ack_policy: async_nats::jetstream::consumer::AckPolicy::None,
            ..Default::default()
        })
        .await
        .unwrap();
    let mut out = Vec::new();
    loop {
        let before = out.len();
        let mut batch =
            consumer.fetch().max_messages(10_000).expires(Duration::from_millis(500)).messages().await.unwrap();
        while let Some(Ok(m)) = batch.next().await {
            out.push(serde_json::from_slice(&m.payload).unwrap());
        }
        if out.len() == before {
            return out;
        }
    }
}

async fn intake_publish(nats: &NatsServer, tenant: &str, body: &Value) {
    let js = async_nats::jetstream::new(nats.client().await);
    js.publish(format!("hookline.intake.{tenant}"), body.to_string().into()).await.unwrap().await.unwrap();
}

/// The API a test drives, as methods on the running processes (zero2prod's
/// `TestApp`): one `hookline dev` ([`Stack`]) or the split services
/// ([`Split`]) answer the same calls. Each call opens its own gRPC channel,
/// carries the operator token the processes were started with, and panics
/// on an error.
pub trait App {
    /// The process serving `SubscriptionService`.
    fn subscriptions_proc(&self) -> &HooklineProc;
    /// The process serving `IngestService`.
    fn ingest_proc(&self) -> &HooklineProc;
    /// The process serving `DeliveryService` (the delivery log).
    fn delivery_proc(&self) -> &HooklineProc;
    /// The nats-server the processes run on.
    fn nats_server(&self) -> &NatsServer;

    /// A `SubscriptionService` client on the subscriptions process; calls
    /// through [`as_operator`](Self::as_operator) carry its operator token.
    async fn subscriptions_client(&self) -> SubscriptionServiceClient<Channel> {
        self.subscriptions_proc().subscriptions_client().await
    }

    /// `msg` as a request carrying the operator token the processes were
    /// started with (`HOOKLINE_OPERATOR_TOKEN`), if any.
    fn as_operator<T>(&self, msg: T) -> tonic::Request<T> {
        match self.subscriptions_proc().var("HOOKLINE_OPERATOR_TOKEN") {
            "" => tonic::Request::new(msg),
            token => with_bearer(msg, token),
        }
    }

    /// Create tenant `id` on `plan`, with webhooks `on` or off.
    async fn create_tenant(&self, id: &str, plan: spb::Plan, on: bool) {
        let request = spb::CreateTenantRequest {
            tenant_id: id.into(),
            plan: plan.into(),
            webhooks_enabled: on,
            ..Default::default()
        };
        self.subscriptions_client().await.create_tenant(self.as_operator(request)).await.unwrap();
    }

    /// Tenant `id` as `GetTenant` answers.
    async fn get_tenant(&self, id: &str) -> spb::Tenant {
        let request = spb::GetTenantRequest { tenant_id: id.into() };
        self.subscriptions_client().await.get_tenant(self.as_operator(request)).await.unwrap().into_inner()
    }

    /// Create an endpoint; returns (endpoint id, signing secret).
    async fn create_endpoint(
        &self,
        tenant: &str,
        url: &str,
        types: &[&str],
        layout: spb::PayloadLayout,
    ) -> (String, String) {
        let e = self.create_endpoint_as(endpoint_request(tenant, url, types, layout)).await;
        let secret = self.signing_secret(tenant, &e.id).await;
        (e.id, secret)
    }

    /// The signing secret of `endpoint` of `tenant`, as `GetEndpointSecret` reveals it.
    async fn signing_secret(&self, tenant: &str, endpoint: &str) -> String {
        let request = spb::GetEndpointSecretRequest { tenant_id: tenant.into(), endpoint_id: endpoint.into() };
        let secret = self.subscriptions_client().await.get_endpoint_secret(self.as_operator(request)).await.unwrap();
        secret.into_inner().secret
    }

    /// A `CreateEndpoint` with every field the test chose.
    async fn create_endpoint_as(&self, request: spb::CreateEndpointRequest) -> spb::Endpoint {
        self.subscriptions_client().await.create_endpoint(self.as_operator(request)).await.unwrap().into_inner()
    }

    /// Every endpoint of `tenant`.
    async fn endpoints(&self, tenant: &str) -> Vec<spb::Endpoint> {
        let request = spb::ListEndpointsRequest { tenant_id: tenant.into() };
        self.subscriptions_client()
            .await
            .list_endpoints(self.as_operator(request))
            .await
            .unwrap()
            .into_inner()
            .endpoints
    }

    /// A `DeliveryService` client on the delivery process.
    async fn delivery_client(&self) -> DeliveryServiceClient<Channel> {
        DeliveryServiceClient::new(self.delivery_proc().channel().await)
    }

    /// A gRPC `Publish`.
    async fn publish(&self, request: PublishRequest) -> PublishResponse {
        self.ingest_proc().ingest_client().await.publish(self.as_operator(request)).await.unwrap().into_inner()
    }

    /// A gRPC `PublishBatch` of `events`.
    async fn publish_batch(&self, events: Vec<PublishRequest>) -> PublishBatchResponse {
        self.ingest_proc()
            .ingest_client()
            .await
            .publish_batch(self.as_operator(PublishBatchRequest { events }))
            .await
            .unwrap()
            .into_inner()
    }

    /// A gRPC `Publish` of a producer JSON event ([`json_request`]).
    async fn publish_json(&self, tenant: &str, event: &Value) -> PublishResponse {
        self.publish(json_request(tenant, event)).await
    }

    /// A publish on the NATS intake subject ([`intake_publish`]).
    async fn intake_publish(&self, tenant: &str, body: &Value) {
        intake_publish(self.nats_server(), tenant, body).await
    }

    /// How many events the `HOOKLINE_EVENTS` stream holds.
    async fn events_stored(&self) -> u64 {
        stream_messages(self.nats_server(), "HOOKLINE_EVENTS").await
    }

    /// Every outcome event recorded so far for `endpoint` of `tenant`.
    async fn outcomes(&self, tenant: &str, endpoint: &str) -> Vec<Value> {
        read_subject(self.nats_server(), "HOOKLINE_OUTCOMES", &format!("hookline.outcomes.{tenant}.{endpoint}")).await
    }

    /// The first outcome event of `endpoint` of `tenant`, waited for up to `within`.
    async fn first_outcome(&self, tenant: &str, endpoint: &str, within: Duration) -> Value {
        hookline_e2e::eventually(within, &format!("an outcome of {tenant}/{endpoint}"), || async {
            self.outcomes(tenant, endpoint).await.into_iter().next()
        })
        .await
        .unwrap()
    }
}

impl App for Stack {
    fn subscriptions_proc(&self) -> &HooklineProc {
        &self.hookline
    }

    fn ingest_proc(&self) -> &HooklineProc {
        &self.hookline
    }

    fn delivery_proc(&self) -> &HooklineProc {
        &self.hookline
    }

    fn nats_server(&self) -> &NatsServer {
        &self.nats
    }
}

impl App for Split {
    fn subscriptions_proc(&self) -> &HooklineProc {
        &self.subscriptions
    }

    fn ingest_proc(&self) -> &HooklineProc {
        &self.ingest
    }

    fn delivery_proc(&self) -> &HooklineProc {
        &self.delivery
    }

    fn nats_server(&self) -> &NatsServer {
        &self.nats
    }
}

/// The `webhook-id`s each receiver got, in the receivers' order.
pub fn webhook_ids(receivers: &[Receiver]) -> Vec<std::collections::HashSet<String>> {
    receivers
        .iter()
        .map(|r| r.requests().iter().filter_map(|q| q.header("webhook-id").map(str::to_owned)).collect())
        .collect()
}

/// How many of tenant `acme`'s events the delivery log shows succeeded at
/// endpoint `ep` (distinct event ids, every page read).
pub async fn succeeded(
    client: &hookline_proto::delivery::v1::delivery_service_client::DeliveryServiceClient<Channel>,
    ep: &str,
) -> anyhow::Result<usize> {
    let mut client = client.clone();
    let mut seen = std::collections::HashSet::new();
    let mut token = String::new();
    loop {
        let r = client
            .list_deliveries(hookline_proto::delivery::v1::ListDeliveriesRequest {
                tenant_id: "acme".into(),
                endpoint_id: ep.into(),
                states: vec![hookline_proto::delivery::v1::DeliveryState::Succeeded.into()],
                page_size: 200,
                page_token: token.clone(),
                ..Default::default()
            })
            .await?
            .into_inner();
        seen.extend(r.deliveries.into_iter().map(|d| d.event_id));
        if r.next_page_token.is_empty() {
            return Ok(seen.len());
        }
        token = r.next_page_token;
    }
}

/// A real SMTP server process (tests/peers/smtp_sink.py) writing each
/// message it accepts as JSON into a directory.
pub struct SmtpSink {
    pub port: u16,
    dir: std::path::PathBuf,
    child: std::process::Child,
}

impl SmtpSink {
    pub fn start(reject: Option<u16>) -> Self {
        let args: Vec<String> = reject.map(|code| vec!["--reject".into(), code.to_string()]).unwrap_or_default();
        Self::spawn(&args)
    }

    /// STARTTLS and AUTH required, with the test CA's `localhost` certificate.
    pub fn start_secure(user: &str, password: &str) -> Self {
        let fixture = |f: &str| format!("{}/tests/fixtures/tls/{f}", env!("CARGO_MANIFEST_DIR"));
        Self::spawn(&["--secure".into(), fixture("server.pem"), fixture("server.key"), user.into(), password.into()])
    }

    fn spawn(args: &[String]) -> Self {
        let port = hookline_e2e::free_port();
        let dir = std::env::temp_dir().join(format!("hookline-smtp-{port}-{}", rand_suffix()));
        std::fs::create_dir_all(&dir).unwrap();
        let script = format!("{}/tests/peers/smtp_sink.py", env!("CARGO_MANIFEST_DIR"));
        let mut cmd = std::process::Command::new("python3");
        cmd.arg(&script).arg(port.to_string()).arg(&dir).args(args).stdout(std::process::Stdio::null());
        let child = cmd.spawn().expect("python3");
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(std::time::Instant::now() < deadline, "SMTP sink did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        Self { port, dir, child }
    }

    pub fn messages(&self) -> Vec<serde_json::Value> {
        let mut files: Vec<_> = std::fs::read_dir(&self.dir)
            .unwrap()
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.extension().is_some_and(|x| x == "json") && !p.file_name().unwrap().to_string_lossy().starts_with('.')
            })
            .collect();
        files.sort();
        files.iter().map(|p| serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()).collect()
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn rand_suffix() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64
}

/// `hookline <args>` against the stack's single process: (exit code, stdout, stderr).
pub fn cli(s: &Stack, args: &[&str]) -> (i32, String, String) {
    cli_with(s, &[], args)
}

/// [`cli`] with more environment (a `HOOKLINE_TOKEN`, say).
pub fn cli_with(s: &Stack, env: &[(&str, &str)], args: &[&str]) -> (i32, String, String) {
    let out = hookline_e2e::hookline_command()
        .unwrap()
        .args(args)
        .envs(env.iter().copied())
        .env("HOOKLINE_SUBSCRIPTIONS_URL", s.hookline.grpc_url())
        .env("HOOKLINE_INGEST_URL", s.hookline.grpc_url())
        .env("HOOKLINE_DELIVERY_URL", s.hookline.grpc_url())
        .output()
        .unwrap();
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (out.status.code().expect("exited"), text(&out.stdout), text(&out.stderr))
}
