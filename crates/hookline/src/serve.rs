//! Running the services: alone (`hookline ingest|subscriptions|delivery`)
//! or together (`hookline dev`).

use std::{future::Future, sync::Arc};

use anyhow::Context as _;
use axum::{Router, http::StatusCode, routing::get};
use hookline_bus::{Retention, StreamSettings};
use hookline_delivery::DeliverySettings;
use hookline_delivery_log::DeliveryApi;
use hookline_ingest::{Appender, IngestApi};
use hookline_proto::{
    delivery::v1::delivery_service_server::DeliveryServiceServer,
    ingest::v1::ingest_service_server::IngestServiceServer,
    subscriptions::v1::subscription_service_server::SubscriptionServiceServer,
};
use hookline_subscriptions::SubscriptionsApi;
use hookline_tenants::{Commands, Directory};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::{
    readiness::{Needs, Readiness},
    settings::{OperatorAuth, RoleSettings},
};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Role {
    Dev,
    Ingest,
    Subscriptions,
    Delivery,
    /// The webhooks console (a gRPC client; `dev` runs it too).
    Console,
}

impl Role {
    pub fn has(self, other: Role) -> bool {
        self == Role::Dev || self == other
    }

    pub fn name(self) -> &'static str {
        match self {
            Role::Dev => "dev",
            Role::Ingest => "ingest",
            Role::Subscriptions => "subscriptions",
            Role::Delivery => "delivery",
            Role::Console => "console",
        }
    }
}

/// Resolves on SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = ctrl_c => {}
        _ = term.recv() => {}
    }
}

/// Run `role` with its settings: `settings` carries a group exactly when
/// the role runs the part that reads it (see `crate::settings`).
pub async fn run(role: Role, settings: RoleSettings, signal: impl Future<Output = ()>) -> anyhow::Result<()> {
    let RoleSettings { common: args, address, config_history, delivery: delivery_args, ingest, console } = settings;
    // Only the roles that write config events (subscriptions, delivery) take it.
    let snapshot_after =
        config_history.map_or(hookline_tenants::commands::DEFAULT_SNAPSHOT_AFTER, |c| c.config_snapshot_after);
    // A `SettingError`'s message already names its cause; `Error::msg` keeps
    // `{:#}` from printing the cause a second time.
    let tls = args.tls_identity().map_err(anyhow::Error::msg)?;
    let mut delivery: Option<DeliverySettings> = match (&delivery_args, &address) {
        (Some(d), Some(a)) => Some(d.settings(&args, a, role == Role::Dev, tls.as_ref()).map_err(anyhow::Error::msg)?),
        _ => None,
    };
    let operator_auth = args.operator_auth(role == Role::Dev).map_err(anyhow::Error::msg)?;
    let tenant_rate = ingest.as_ref().map(|i| i.tenant_rate()).transpose().map_err(anyhow::Error::msg)?;
    args.install_keyring().map_err(anyhow::Error::msg)?;
    if !hookline_domain::seal::enabled() {
        tracing::warn!("HOOKLINE_MASTER_KEY is not set: endpoint secrets are stored in clear");
    }
    let nats_servers = hookline_bus::NatsServers::parse(&args.nats_url)?;
    let shutdown = CancellationToken::new();
    // The HTTP and gRPC servers stop only after the drain, so probes see it.
    let serving = CancellationToken::new();
    // A stop asked for while start-up still waits for NATS ends the wait.
    tokio::pin!(signal);
    let mut tasks: JoinSet<anyhow::Result<()>> = JoinSet::new();
    let mut servers: JoinSet<anyhow::Result<()>> = JoinSet::new();

    // The health port comes up first so orchestrators see "alive, not ready".
    let http = tokio::net::TcpListener::bind(args.http_addr)
        .await
        .with_context(|| format!("HOOKLINE_HTTP_ADDR: cannot listen on {}", args.http_addr))?;
    // With port 0 the system picks the port; this line says which.
    let http_addr = http.local_addr().context("HOOKLINE_HTTP_ADDR")?;
    tracing::info!(http = %http_addr, "HTTP listening on {http_addr}");
    // Dev mode's console: its port is bound now, its app is built once this
    // process's own gRPC address (which it calls, as delivery does) is known.
    let console_listener = match &console {
        Some(c) => {
            let listener = tokio::net::TcpListener::bind(c.console_addr)
                .await
                .with_context(|| format!("HOOKLINE_CONSOLE_ADDR: cannot listen on {}", c.console_addr))?;
            let bound = listener.local_addr().context("HOOKLINE_CONSOLE_ADDR")?;
            tracing::info!(console = %bound, "console listening on {bound}");
            Some((listener, c.url(bound)))
        }
        None => None,
    };
    let nats_client = hookline_bus::connect(&nats_servers, &format!("hookline-{}", role.name())).await?;
    let postgres: Arc<std::sync::OnceLock<sqlx::PgPool>> = Arc::default();
    let needs_postgres = delivery_args.is_some();
    let (health, health_service) = tonic_health::server::health_reporter();
    let readiness = Readiness::new(health, nats_client.clone(), needs_postgres.then(|| postgres.clone())).await;
    tasks.spawn({
        let (readiness, shutdown) = (readiness.clone(), shutdown.clone());
        async move {
            readiness.watch(shutdown).await;
            Ok(())
        }
    });
    let probes = Probes {
        readiness: readiness.clone(),
        metrics_token: args.metrics_token.as_deref().map(|t| Arc::new(hookline_auth::hash(t))),
    };
    match &tls {
        Some(identity) => {
            let listener = crate::tls::TlsListener::new(http, identity, serving.clone())?;
            servers.spawn(health_server(listener, probes, serving.clone()));
        }
        None => {
            servers.spawn(health_server(http, probes, serving.clone()));
        }
    }

    let js = hookline_bus::jetstream(nats_client.clone());
    let streams = StreamSettings {
        retention: Retention { events_max_age: args.archive_after },
        replicas: args.stream_replicas,
        // Delivery owns archiving, so only it applies HOOKLINE_ARCHIVE_AFTER to an existing stream.
        apply_retention: role.has(Role::Delivery),
    };
    // Both steps wait (logged, with back-off) while NATS or its JetStream
    // meta leader is unavailable; /readyz answers 503 meanwhile.
    let start_up = async {
        hookline_bus::ensure_streams(&js, &streams, &shutdown).await?;
        start_directory(&js, &shutdown).await
    };
    let directory = tokio::select! {
        directory = start_up => directory?,
        _ = &mut signal => {
            tracing::info!("stopped before ready");
            shutdown.cancel();
            return Ok(());
        }
    };

    let authenticator = match &operator_auth {
        OperatorAuth::Token { current, previous } => {
            hookline_auth::Authenticator::new(Some(current), directory.clone()).also_accepting(previous)
        }
        OperatorAuth::Open { why } => {
            if role == Role::Dev {
                tracing::warn!("HOOKLINE_OPERATOR_TOKEN is not set: gRPC calls are not authenticated ({why})");
            } else {
                tracing::error!(
                    "AUTHENTICATION IS OFF ({why}): every gRPC caller acts as the operator; set HOOKLINE_OPERATOR_TOKEN"
                );
            }
            hookline_auth::Authenticator::new(None, directory.clone())
        }
    };
    let mut grpc = tonic::service::Routes::default();
    // Delivery owns Postgres: the projector (config and outcomes, one
    // writer), the archive janitor and, with them, the log's read API.
    let pool = if let Some(d) = &delivery_args {
        let pool = hookline_store::lazy(&d.database_url).context("HOOKLINE_DATABASE_URL")?;
        // Postgres may be down: webhooks still flow; the log catches up later.
        let url = d.database_url.clone();
        let schema_ready = {
            let (pool, shutdown, postgres) = (pool.clone(), shutdown.clone(), postgres.clone());
            async move {
                loop {
                    match hookline_store::prepare(&pool, &url).await {
                        Ok(()) => {
                            // From here on, readiness also depends on Postgres answering.
                            let _ = postgres.set(pool);
                            return true;
                        }
                        Err(e) => tracing::warn!(error = %e, "Postgres not ready; delivery log waits, webhooks flow"),
                    }
                    tokio::select! {
                        _ = shutdown.cancelled() => return false,
                        _ = tokio::time::sleep(std::time::Duration::from_secs(2)) => {}
                    }
                }
            }
        };
        let schema_ready = futures_util::future::FutureExt::shared(Box::pin(schema_ready));
        tasks.spawn({
            let (js, pool, shutdown, ready) = (js.clone(), pool.clone(), shutdown.clone(), schema_ready.clone());
            async move {
                if ready.await {
                    hookline_store::projector::run(js, pool, shutdown).await;
                }
                Ok(())
            }
        });
        tasks.spawn({
            let (pool, shutdown, after, every) =
                (pool.clone(), shutdown.clone(), args.archive_after, d.archive_interval);
            let ready = schema_ready.clone();
            async move {
                if ready.await {
                    hookline_store::janitor::run(pool, after, every, shutdown).await;
                }
                Ok(())
            }
        });
        tasks.spawn({
            let (pool, js, shutdown, after) = (pool.clone(), js.clone(), shutdown.clone(), args.archive_after);
            let ready = schema_ready.clone();
            async move {
                if ready.await {
                    hookline_delivery_log::replay::resume_jobs(pool, js, after, shutdown).await;
                }
                Ok(())
            }
        });
        tasks.spawn({
            let commands = Commands::new(js.clone(), directory.clone()).with_snapshot_after(snapshot_after);
            let (pool, directory, shutdown, after, every) =
                (pool.clone(), directory.clone(), shutdown.clone(), d.auto_disable_after, d.auto_disable_interval);
            let ready = schema_ready.clone();
            async move {
                if ready.await {
                    hookline_delivery_log::autodisable::run(pool, commands, directory, after, every, shutdown).await;
                }
                Ok(())
            }
        });
        if let Some(settings) = &delivery {
            let transport = std::sync::Arc::new(crate::notices::DeliveryTransport::new(settings));
            let (pool, directory, shutdown) = (pool.clone(), directory.clone(), shutdown.clone());
            let ready = schema_ready.clone();
            tasks.spawn(async move {
                if ready.await {
                    hookline_delivery_log::notices::run(pool, directory, transport, shutdown).await;
                }
                Ok(())
            });
        }
        Some(pool)
    } else {
        None
    };
    if let Some(pool) = &pool {
        let api = DeliveryApi::new(pool.clone(), js.clone(), args.archive_after, directory.clone());
        grpc = grpc.add_service(DeliveryServiceServer::with_interceptor(api, authenticator.clone()));
        readiness.register::<DeliveryServiceServer<DeliveryApi>>(Needs::NatsAndPostgres).await;
    }
    if role.has(Role::Subscriptions)
        && let Some(address) = &address
    {
        let (policy, dns) = (address.address_policy(role == Role::Dev), address.dns_resolver());
        let portal = args.portal_keys();
        if args.master_key.is_none() && args.operator_token.is_none() {
            tracing::warn!(
                "portal links are signed with a random key of this process: they stop working when it restarts (set HOOKLINE_MASTER_KEY or HOOKLINE_OPERATOR_TOKEN)"
            );
        }
        let commands = Commands::new(js.clone(), directory.clone()).with_snapshot_after(snapshot_after);
        tasks.spawn({
            let (commands, shutdown) = (commands.clone(), shutdown.clone());
            async move {
                hookline_tenants::commands::sweep(commands, shutdown).await;
                Ok(())
            }
        });
        tasks.spawn(finish_deletions(commands.clone(), shutdown.clone()));
        let api = SubscriptionsApi::new(commands, directory.clone(), policy, dns, portal);
        grpc = grpc.add_service(SubscriptionServiceServer::with_interceptor(api, authenticator.clone()));
        readiness.register::<SubscriptionServiceServer<SubscriptionsApi>>(Needs::Nats).await;
    }
    if let Some(tenant_rate) = tenant_rate {
        let appender = Appender::new(js.clone(), directory.clone());
        let limiter = hookline_ingest::limit::TenantLimiter::new(tenant_rate);
        let api = IngestApi::new(appender.clone(), limiter.clone());
        grpc = grpc.add_service(IngestServiceServer::with_interceptor(api, authenticator.clone()));
        readiness.register::<IngestServiceServer<IngestApi>>(Needs::Nats).await;
        tasks.spawn({
            let (limiter, shutdown) = (limiter.clone(), shutdown.clone());
            async move {
                limiter.forget_idle_until(shutdown).await;
                Ok(())
            }
        });
        tasks.spawn({
            let (js, shutdown) = (js.clone(), shutdown.clone());
            async move { Ok(hookline_ingest::intake::run(js, appender, limiter, shutdown).await?) }
        });
    }
    let reflection = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(hookline_proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
    };
    // Health stays open for orchestrators' probes; reflection describes the
    // API surface, so it asks for the same credentials as the API.
    use tonic::service::interceptor::InterceptedService;
    grpc = grpc
        .add_service(health_service)
        .add_service(InterceptedService::new(reflection().build_v1()?, authenticator.clone()))
        .add_service(InterceptedService::new(reflection().build_v1alpha()?, authenticator.clone()));
    let grpc_listener = tokio::net::TcpListener::bind(args.grpc_addr)
        .await
        .with_context(|| format!("HOOKLINE_GRPC_ADDR: cannot listen on {}", args.grpc_addr))?;
    let grpc_addr = grpc_listener.local_addr().context("HOOKLINE_GRPC_ADDR")?;
    tracing::info!(grpc = %grpc_addr, "gRPC listening on {grpc_addr}");
    if role == Role::Dev
        && let Some(d) = &mut delivery
    {
        // Dev mode calls its own gRPC port (the bound one, for port 0); over
        // TLS the certificate must name the address (or HOOKLINE_TLS_CA must
        // be set for a private CA).
        let mut own = grpc_addr;
        if own.ip().is_unspecified() {
            own.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
        }
        let scheme = if tls.is_some() { "https" } else { "http" };
        d.subscriptions_url = format!("{scheme}://{own}");
    }
    let mut server = tonic::transport::Server::builder();
    if let Some(identity) = &tls {
        server = server.tls_config(identity.grpc()).context("HOOKLINE_TLS_CERT / HOOKLINE_TLS_KEY")?;
    }
    servers.spawn({
        let serving = serving.clone();
        async move {
            server
                .layer(crate::telemetry::GrpcMetricsLayer)
                .add_routes(grpc)
                .serve_with_incoming_shutdown(
                    // Without TCP_NODELAY, an answer written in more than one
                    // segment waits for the client's delayed ACK (~40 ms).
                    tonic::transport::server::TcpIncoming::from(grpc_listener).with_nodelay(Some(true)),
                    serving.cancelled_owned(),
                )
                .await
                .context("gRPC server")
        }
    });
    let console_url = console_listener.as_ref().map(|(_, url)| url.clone());
    if let (Some(c), Some((listener, url)), Some(d), Some(own)) =
        (&console, console_listener, &delivery_args, &delivery)
    {
        let settings = hookline_console::ConsoleSettings {
            backend: hookline_console::BackendSettings {
                subscriptions_url: own.subscriptions_url.clone(),
                delivery_url: own.subscriptions_url.clone(),
                tls_ca: d.tls_ca_pem().map_err(anyhow::Error::msg)?,
                tls_identity: tls.as_ref().map(crate::tls::Identity::pem),
            },
            operator_token: args.operator_token.clone(),
            frame_ancestors: c.console_frame_ancestors.clone(),
            public_url: Some(url),
        };
        let app = hookline_console::App::new(settings)?;
        let serving = serving.clone();
        servers.spawn(async move {
            hookline_console::serve(listener, app, serving.cancelled_owned()).await.context("console server")
        });
    }
    if let Some(settings) = delivery {
        // One guard and one attempt budget per process, shared by fan-out
        // (first attempts, parking), the workers and the parking sweeper.
        let guard = hookline_delivery::guard::Guard::new(settings.guard.clone());
        let worker =
            hookline_delivery::worker::Worker::new(js.clone(), directory.clone(), settings.clone(), guard.clone());
        tasks.spawn({
            let (js, settings, worker, shutdown) = (js.clone(), settings.clone(), worker.clone(), shutdown.clone());
            async move { Ok(hookline_delivery::fanout::run(js, settings, worker, shutdown).await?) }
        });
        tasks.spawn({
            let (js, directory, worker, shutdown) = (js.clone(), directory.clone(), worker.clone(), shutdown.clone());
            async move { Ok(hookline_delivery::park::run(js, directory, worker, shutdown).await?) }
        });
        tasks.spawn({
            let (js, directory, shutdown) = (js.clone(), directory.clone(), shutdown.clone());
            async move { Ok(hookline_delivery::retry_store::run(js, directory, shutdown).await?) }
        });
        tasks.spawn({
            let shutdown = shutdown.clone();
            async move { Ok(hookline_delivery::worker::run(worker, shutdown).await?) }
        });
    }
    let mut consumers = Vec::new();
    if role.has(Role::Ingest) {
        consumers.push((hookline_bus::INTAKE_STREAM, hookline_bus::INGEST_CONSUMER));
    }
    if role.has(Role::Delivery) {
        consumers.push((hookline_bus::EVENTS_STREAM, hookline_bus::FANOUT_CONSUMER));
        consumers.push((hookline_bus::DISPATCH_STREAM, hookline_bus::WORKERS_CONSUMER));
    }
    tasks.spawn({
        let (js, pool, shutdown) = (js.clone(), pool.clone(), shutdown.clone());
        async move {
            crate::telemetry::poll(js, consumers, pool, shutdown).await;
            Ok(())
        }
    });
    readiness.started().await;
    tracing::info!(role = role.name(), grpc = %grpc_addr, http = %http_addr, tls = tls.is_some(), "hookline ready");
    if let Some(url) = console_url {
        // On stdout, for the person who ran `hookline dev`.
        println!("console: {url}");
    }

    let stopped = |done: Result<anyhow::Result<()>, tokio::task::JoinError>| match done {
        Ok(Ok(())) => anyhow::anyhow!("a service task stopped unexpectedly"),
        Ok(Err(e)) => e,
        Err(e) => anyhow::anyhow!("a service task panicked: {e}"),
    };
    let failure = tokio::select! {
        _ = &mut signal => None,
        Some(done) = tasks.join_next() => Some(stopped(done)),
        Some(done) = servers.join_next() => Some(stopped(done)),
    };
    tracing::info!("shutting down");
    // Probes say so before anything stops; the servers answer until the drain ends.
    readiness.drain().await;
    shutdown.cancel();
    while let Some(done) = tasks.join_next().await {
        if let Ok(Err(e)) = done {
            tracing::warn!(error = %e, "task ended with an error during shutdown");
        }
    }
    serving.cancel();
    while let Some(done) = servers.join_next().await {
        if let Ok(Err(e)) = done {
            tracing::warn!(error = %e, "server ended with an error during shutdown");
        }
    }
    // Push out whatever the client still buffers (intake and fan-out acks,
    // hand-backs) before the process exits.
    if tokio::time::timeout(std::time::Duration::from_secs(5), nats_client.flush()).await.is_err() {
        tracing::warn!("could not flush the last acks to NATS; some tasks may be delivered again");
    }
    match failure {
        Some(e) => Err(e),
        None => {
            tracing::info!("stopped");
            Ok(())
        }
    }
}

/// `hookline console`: serve the console until `signal`.
pub async fn run_console(
    role: crate::settings::ConsoleRole,
    signal: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let addr = role.console.console_addr;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("HOOKLINE_CONSOLE_ADDR: cannot listen on {addr}"))?;
    let bound = listener.local_addr().context("HOOKLINE_CONSOLE_ADDR")?;
    tracing::info!(console = %bound, "console listening on {bound}");
    let settings = role.settings(bound).map_err(anyhow::Error::msg)?;
    let app = hookline_console::App::new(settings)?;
    tracing::info!(addr = %bound, url = %role.console.url(bound), "console ready");
    hookline_console::serve(listener, app, signal).await.context("console server")?;
    tracing::info!("stopped");
    Ok(())
}

/// Why start-up gave up on the config index.
#[derive(Debug, thiserror::Error)]
enum StartError {
    #[error("cannot load tenants from HOOKLINE_CONFIG")]
    Directory(#[source] hookline_tenants::Error),
    #[error("shut down while waiting for the tenants of HOOKLINE_CONFIG")]
    ShutDown,
}

/// Load the tenant index, waiting with back-off while JetStream cannot
/// serve the config stream (a stream leader being elected, say).
async fn start_directory(
    js: &async_nats::jetstream::Context,
    shutdown: &CancellationToken,
) -> anyhow::Result<Directory> {
    let mut backoff = hookline_bus::Backoff::new();
    loop {
        // Each attempt's follower stops with the attempt if it fails.
        let attempt = shutdown.child_token();
        match Directory::start(js, attempt.clone()).await {
            Ok(directory) => return Ok(directory),
            Err(e @ hookline_tenants::Error::Unavailable(_)) => {
                attempt.cancel();
                let wait = backoff.next_wait();
                tracing::warn!(error = %e, retry_in = ?wait, "cannot load tenants yet; waiting for NATS JetStream");
                tokio::select! {
                    _ = shutdown.cancelled() => return Err(StartError::ShutDown.into()),
                    _ = tokio::time::sleep(wait) => {}
                }
            }
            Err(e) => return Err(StartError::Directory(e).into()),
        }
    }
}

/// What the HTTP port answers from.
struct Probes {
    /// `/readyz` answers what gRPC health answers for `""`.
    readiness: Readiness,
    /// SHA-256 of HOOKLINE_METRICS_TOKEN: `/metrics` then wants it as a bearer token.
    metrics_token: Option<Arc<String>>,
}

async fn health_server<L>(listener: L, probes: Probes, shutdown: CancellationToken) -> anyhow::Result<()>
where
    L: axum::serve::Listener,
    L::Addr: std::fmt::Debug,
{
    let Probes { readiness, metrics_token } = probes;
    let metrics = get(move |headers: axum::http::HeaderMap| async move {
        if let Some(expected) = &metrics_token {
            let given = headers
                .get(axum::http::header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("Bearer "))
                .map(hookline_auth::hash);
            if given.as_deref() != Some(expected.as_str()) {
                return (
                    StatusCode::UNAUTHORIZED,
                    [(axum::http::header::WWW_AUTHENTICATE, "Bearer")],
                    "/metrics needs HOOKLINE_METRICS_TOKEN as a bearer token\n".to_owned(),
                );
            }
        }
        let accept = headers.get(axum::http::header::ACCEPT).and_then(|v| v.to_str().ok());
        let (content_type, body) =
            hookline_telemetry::metrics().encode_as(hookline_telemetry::Format::negotiate(accept));
        (StatusCode::OK, [(axum::http::header::CONTENT_TYPE, content_type)], body)
    });
    let app = Router::new().route("/healthz", get(|| async { "ok\n" })).route("/metrics", metrics).route(
        "/readyz",
        get(move || {
            let state = readiness.state();
            async move {
                match state.overall() {
                    Ok(()) => (StatusCode::OK, "ready\n".to_owned()),
                    Err(why) => (StatusCode::SERVICE_UNAVAILABLE, format!("{why}\n")),
                }
            }
        }),
    );
    axum::serve(listener, app).with_graceful_shutdown(shutdown.cancelled_owned()).await.context("health server")
}

/// Erase every deleted tenant once more at start, so an erasure that a
/// crash or an outage cut short is finished; retried until it succeeds.
/// Then idle until shutdown, as every service task does.
async fn finish_deletions(commands: Commands, shutdown: CancellationToken) -> anyhow::Result<()> {
    let mut backoff = hookline_bus::Backoff::new();
    loop {
        match commands.finish_deletions().await {
            Ok(n) => {
                if n > 0 {
                    tracing::info!(tenants = n, "erasure of deleted tenants finished");
                }
                shutdown.cancelled().await;
                return Ok(());
            }
            Err(e) => {
                let wait = backoff.next_wait();
                tracing::warn!(error = %e, retry_in = ?wait, "cannot finish erasing deleted tenants yet");
                tokio::select! {
                    _ = shutdown.cancelled() => return Ok(()),
                    _ = tokio::time::sleep(wait) => {}
                }
            }
        }
    }
}
