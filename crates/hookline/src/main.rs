//! `hookline`: the three services, alone or together, and the operator CLI.

mod cli;
mod config;
mod notices;
mod readiness;
mod serve;
mod settings;
mod telemetry;
mod tls;

/// glibc's malloc spends a large share of the delivery process's CPU (arena
/// locks, consolidation) on the many short-lived buffers per delivery; see
/// BENCHMARKS.md. The `system-allocator` feature keeps glibc's, for heap
/// profilers that hook malloc.
#[cfg(not(feature = "system-allocator"))]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// mimalloc's delay before it returns freed pages to the system, in ms,
/// unless `MIMALLOC_PURGE_DELAY` says otherwise. Its own default (10 ms,
/// and ten times that for whole arenas) keeps 12–35 MiB of freed pages in
/// delivery after bursts of attempts. Returning them at once bounds
/// delivery's memory by what it holds, for a few per cent of deliveries/s
/// on a machine already at capacity (BENCHMARKS.md has both figures).
#[cfg(not(feature = "system-allocator"))]
const PURGE_DELAY_MS: std::ffi::c_long = 0;

#[cfg(not(feature = "system-allocator"))]
fn tune_allocator() {
    /// `mi_option_purge_delay` in mimalloc's option enum (v2 and v3).
    const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
        // SAFETY: called first thing in main, before any other thread
        // exists (mimalloc's option setters are not thread-safe).
        unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, PURGE_DELAY_MS) };
    }
}

#[cfg(feature = "system-allocator")]
fn tune_allocator() {}

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use tracing_subscriber::{EnvFilter, fmt};

#[derive(Debug, Parser)]
#[command(
    name = "hookline",
    version,
    about = "Signed, retried, logged webhooks from booking events, on NATS JetStream.",
    after_help = cli::error::EXIT_CODES
)]
struct Cli {
    /// TOML file with settings (keys: HOOKLINE_* names in lower case without
    /// the prefix); the environment and flags override it.
    #[arg(long, global = true, env = "HOOKLINE_SETTINGS_FILE", value_name = "FILE")]
    settings_file: Option<std::path::PathBuf>,
    /// Deprecated: the former name of --settings-file (HOOKLINE_CONFIG is
    /// also the config stream's name); --settings-file and
    /// HOOKLINE_SETTINGS_FILE win over it.
    #[arg(long, global = true, env = "HOOKLINE_CONFIG", value_name = "FILE")]
    config: Option<std::path::PathBuf>,
    #[command(subcommand)]
    command: Command,
}

/// Trace export, read from the environment (the OpenTelemetry standard).
const TRACING_HELP: &str = "\
Tracing (OpenTelemetry, OTLP/HTTP protobuf; off unless an endpoint is set):
  OTEL_EXPORTER_OTLP_ENDPOINT         collector base URL; spans go to <url>/v1/traces
  OTEL_EXPORTER_OTLP_TRACES_ENDPOINT  full traces URL, used as is
  OTEL_SERVICE_NAME                   resource service.name (default hookline-<role>)
  OTEL_TRACES_SAMPLER, OTEL_TRACES_SAMPLER_ARG
                                      e.g. parentbased_traceidratio and 0.1; always_off
  HOOKLINE_OTLP_ENDPOINT              deprecated: read as OTEL_EXPORTER_OTLP_ENDPOINT
                                      when neither OTEL_ endpoint is set";

#[derive(Debug, Subcommand)]
enum Command {
    /// Run ingest, subscriptions and delivery in one process (gRPC on
    /// HOOKLINE_GRPC_ADDR, health on HOOKLINE_HTTP_ADDR) with the webhooks
    /// console (HOOKLINE_CONSOLE_ADDR); creates the database and streams if
    /// missing; allows deliveries to loopback.
    #[command(after_help = TRACING_HELP)]
    Dev(settings::ServiceArgs),
    /// Run the webhooks console (pages for operators and tenants, portal
    /// links) on HOOKLINE_CONSOLE_ADDR: a gRPC client of subscriptions and
    /// delivery, as the CLI is.
    Console(settings::ConsoleRole),
    /// Run the ingest service alone (gRPC IngestService + NATS intake).
    #[command(after_help = TRACING_HELP)]
    Ingest(settings::IngestRole),
    /// Run the subscriptions service alone (gRPC SubscriptionService, API keys).
    #[command(after_help = TRACING_HELP)]
    Subscriptions(settings::SubscriptionsRole),
    /// Run the delivery service alone (fan-out, workers, projections and the
    /// delivery log API). With a verb, read the delivery log: deprecated
    /// spelling of `hookline log <verb>`.
    #[command(after_help = TRACING_HELP)]
    Delivery {
        #[command(flatten)]
        service: settings::DeliveryRole,
        #[command(subcommand)]
        cmd: Option<Box<cli::DeliveryCmd>>,
    },
    /// Read the delivery log: list, get, raw, download, replay, export (NDJSON).
    Log {
        #[command(subcommand)]
        cmd: Box<cli::DeliveryCmd>,
    },
    /// Manage tenants.
    Tenant {
        #[command(flatten)]
        client: cli::ClientArgs,
        #[command(subcommand)]
        cmd: cli::TenantCmd,
    },
    /// Manage a tenant's endpoints.
    Endpoint {
        #[command(flatten)]
        client: cli::ClientArgs,
        #[command(subcommand)]
        cmd: cli::EndpointCmd,
    },
    /// The event type catalog: each type's group, description, JSON Schema
    /// and example event (`list`, `show <type>`).
    EventType {
        #[command(flatten)]
        client: cli::ClientArgs,
        #[command(subcommand)]
        cmd: cli::EventTypeCmd,
    },
    /// What the NATS intake refused and why: `list <tenant>`, newest first,
    /// with the field and the rule each event broke.
    Rejected {
        #[command(flatten)]
        client: cli::ClientArgs,
        #[command(subcommand)]
        cmd: cli::RejectedCmd,
    },
    /// Manage tenant API keys (operator only).
    ApiKey {
        #[command(flatten)]
        client: cli::ClientArgs,
        #[command(subcommand)]
        cmd: cli::ApiKeyCmd,
    },
    /// Portal links: a tenant's console page for a platform to embed.
    Portal {
        #[command(flatten)]
        client: cli::ClientArgs,
        #[command(subcommand)]
        cmd: cli::PortalCmd,
    },
    /// Attempt statistics of an endpoint, or of a whole tenant.
    Stats {
        #[command(flatten)]
        client: cli::ClientArgs,
        /// Tenant id (first, as every command takes it).
        #[arg(required_unless_present = "tenant_flag")]
        tenant: Option<String>,
        /// Endpoint id; without it, the tenant total and one line per endpoint.
        endpoint: Option<String>,
        /// Deprecated: the tenant id as a flag (`stats --tenant acme ep_1`);
        /// give it first instead (`stats acme ep_1`).
        #[arg(long = "tenant", value_name = "TENANT")]
        tenant_flag: Option<String>,
        /// Window ending now.
        #[arg(long, value_enum, default_value = "24h")]
        window: cli::WindowArg,
    },
    /// Projection maintenance.
    Admin {
        #[command(flatten)]
        client: cli::ClientArgs,
        #[command(subcommand)]
        cmd: cli::AdminCmd,
    },
    /// Show the effective configuration (defaults, file, environment, flags),
    /// secrets masked.
    Config {
        #[command(subcommand)]
        cmd: ConfigCmd,
    },
    /// Publish a JSON event (or a JSON array of events) from a file or `-` (stdin).
    Publish {
        #[command(flatten)]
        client: cli::ClientArgs,
        /// Tenant id.
        tenant: String,
        /// Path to the JSON event, or `-` for stdin.
        file: String,
    },
    /// Print a shell completion script for every command and flag, e.g.
    /// `hookline completions bash > /etc/bash_completion.d/hookline`.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the man page, generated from this command line's definitions
    /// (`hookline man | man -l -`); with --out-dir, write hookline.1 and one
    /// page per command (hookline-tenant.1, ...) there instead.
    Man {
        #[arg(long, value_name = "DIR")]
        out_dir: Option<std::path::PathBuf>,
    },
}

/// `hookline completions` and `hookline man`: both from the clap definitions,
/// so they always match what the parser accepts.
fn generate(command: &Command) -> std::io::Result<()> {
    let mut cmd = Cli::command();
    match command {
        Command::Completions { shell } => {
            clap_complete::generate(*shell, &mut cmd, "hookline", &mut std::io::stdout());
            Ok(())
        }
        Command::Man { out_dir: Some(dir) } => {
            std::fs::create_dir_all(dir)?;
            clap_mangen::generate_to(cmd, dir)
        }
        Command::Man { out_dir: None } => clap_mangen::Man::new(cmd).render(&mut std::io::stdout()),
        _ => unreachable!("only completions and man"),
    }
}

#[derive(Debug, Subcommand)]
enum ConfigCmd {
    /// Print every service setting, where its value came from, secrets masked.
    Show {
        #[command(flatten)]
        service: settings::ServiceArgs,
        /// Show only the settings this role takes (`hookline <role> --help`),
        /// checked as it checks them at start (an operator token is then
        /// required outside dev).
        #[arg(long, value_enum)]
        role: Option<serve::Role>,
        /// Print as JSON.
        #[arg(long)]
        json: bool,
    },
}

/// Log lines on stderr: one JSON object each, or text.
fn log_layer<S>(json: bool) -> Box<dyn tracing_subscriber::Layer<S> + Send + Sync>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    use tracing_subscriber::Layer as _;
    if json {
        fmt::layer().json().flatten_event(true).with_current_span(true).with_writer(std::io::stderr).boxed()
    } else {
        fmt::layer().with_writer(std::io::stderr).boxed()
    }
}

/// Logs to stderr (JSON with HOOKLINE_LOG_FORMAT=json), and spans to an
/// OTLP collector when `OTEL_EXPORTER_OTLP_ENDPOINT` (or
/// `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`, or the deprecated
/// `HOOKLINE_OTLP_ENDPOINT`) is set. The logs' filter (`HOOKLINE_LOG`) does
/// not decide which spans are exported.
fn init_tracing(service: &str, file: &config::SettingsFile) -> Option<hookline_telemetry::otlp::Tracing> {
    use tracing_subscriber::prelude::*;
    let filter =
        file.lookup("HOOKLINE_LOG").and_then(|f| EnvFilter::try_new(f).ok()).unwrap_or_else(|| EnvFilter::new("info"));
    let json = file.lookup("HOOKLINE_LOG_FORMAT").is_some_and(|f| f.eq_ignore_ascii_case("json"));
    let endpoint = hookline_telemetry::otlp::Endpoint::from_env(|name| match name {
        "HOOKLINE_OTLP_ENDPOINT" => file.lookup(name),
        _ => std::env::var(name).ok(),
    });
    let (otel, tracing, failed) =
        match endpoint.map(|e| hookline_telemetry::otlp::layer(&e, &format!("hookline-{service}"))) {
            Some(Ok((layer, tracing))) => (Some(layer), Some(tracing), None),
            Some(Err(e)) => (None, None, Some(e)),
            None => (None, None, None),
        };
    match otel {
        // HOOKLINE_LOG filters the logs only, so it cannot hide spans from the export.
        Some(otel) => tracing_subscriber::registry().with(log_layer(json).with_filter(filter)).with(otel).init(),
        None => tracing_subscriber::registry().with(filter).with(log_layer(json)).init(),
    }
    if let Some(e) = failed {
        tracing::error!(error = %anyhow::Error::from(e), "tracing: spans are not exported");
    }
    for name in ["OTEL_EXPORTER_OTLP_PROTOCOL", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"] {
        if let Ok(p) = std::env::var(name)
            && tracing.is_some()
            && p != "http/protobuf"
        {
            tracing::warn!(setting = name, value = %p, "tracing: only http/protobuf is offered; spans are sent with it");
        }
    }
    tracing
}

fn main() -> std::process::ExitCode {
    tune_allocator();
    // The file layer becomes clap defaults; the environment is only read.
    let file = match config::SettingsFile::load() {
        Ok(file) => file,
        Err(e) => {
            eprintln!("error: configuration: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let matches = file.apply(Cli::command()).try_get_matches().map_err(config::explain).unwrap_or_else(|e| e.exit());
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    if let Command::Config { cmd: ConfigCmd::Show { service, role, json } } = &cli.command {
        let sub = matches.subcommand_matches("config").and_then(|m| m.subcommand_matches("show"));
        return config::show(service, *role, *json, sub, &file.applied());
    }
    if matches!(cli.command, Command::Completions { .. } | Command::Man { .. }) {
        return match generate(&cli.command) {
            Ok(()) => std::process::ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e}");
                std::process::ExitCode::FAILURE
            }
        };
    }
    let json_out = wants_json(&matches);
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
        .block_on(run(cli, file, json_out))
}

/// The tenant and endpoint of `hookline stats`: `stats acme [ep_1]`, or the
/// deprecated `stats --tenant acme [ep_1]`, where the one positional is the
/// endpoint.
fn stats_target(
    first: Option<String>,
    second: Option<String>,
    flag: Option<String>,
) -> anyhow::Result<(String, Option<String>)> {
    match (flag, first, second) {
        (None, Some(tenant), endpoint) => Ok((tenant, endpoint)),
        (Some(tenant), endpoint, None) => {
            eprintln!("warning: `stats --tenant T` is deprecated; write `hookline stats T [ENDPOINT]`");
            Ok((tenant, endpoint))
        }
        (Some(_), _, Some(_)) => {
            anyhow::bail!("stats: give the tenant once, first (`hookline stats TENANT [ENDPOINT]`), without --tenant")
        }
        (None, None, _) => anyhow::bail!("stats: the tenant id is required (`hookline stats TENANT [ENDPOINT]`)"),
    }
}

/// Whether the innermost command was given `--json` (a global flag of every
/// CLI verb), so an error prints as JSON too.
fn wants_json(matches: &clap::ArgMatches) -> bool {
    let mut m = matches;
    while let Some((_, sub)) = m.subcommand() {
        m = sub;
    }
    matches!(m.try_get_one::<bool>("json"), Ok(Some(true)))
}

async fn run(cli: Cli, file: config::SettingsFile, json_out: bool) -> std::process::ExitCode {
    let service = match &cli.command {
        Command::Dev(_) => "dev",
        Command::Ingest(_) => "ingest",
        Command::Subscriptions(_) => "subscriptions",
        Command::Delivery { cmd: None, .. } => "delivery",
        Command::Console(_) => "console",
        _ => "cli",
    };
    // Before anything builds an HTTP client (the OTLP exporter does, in init_tracing).
    rustls::crypto::ring::default_provider().install_default().expect("one crypto provider");
    let tracing = init_tracing(service, &file);
    let result = match cli.command {
        Command::Dev(a) => serve::run(serve::Role::Dev, a.into(), serve::shutdown_signal()).await,
        Command::Console(a) => serve::run_console(a, serve::shutdown_signal()).await,
        Command::Ingest(a) => serve::run(serve::Role::Ingest, a.into(), serve::shutdown_signal()).await,
        Command::Subscriptions(a) => serve::run(serve::Role::Subscriptions, a.into(), serve::shutdown_signal()).await,
        Command::Delivery { service, cmd: None } => {
            serve::run(serve::Role::Delivery, service.into(), serve::shutdown_signal()).await
        }
        Command::Delivery { cmd: Some(cmd), .. } | Command::Log { cmd } => cli::delivery(*cmd).await,
        Command::Tenant { client, cmd } => cli::tenant(&client, cmd).await,
        Command::Endpoint { client, cmd } => cli::endpoint(&client, cmd).await,
        Command::Publish { client, tenant, file } => cli::publish(&client, tenant, file).await,
        Command::Stats { client, tenant, endpoint, tenant_flag, window } => {
            match stats_target(tenant, endpoint, tenant_flag) {
                Ok((tenant, endpoint)) => cli::stats(&client, tenant, endpoint, window).await,
                Err(e) => Err(e),
            }
        }
        Command::Admin { client, cmd } => cli::admin(&client, cmd).await,
        Command::ApiKey { client, cmd } => cli::api_key(&client, cmd).await,
        Command::EventType { client, cmd } => cli::event_type(&client, cmd).await,
        Command::Rejected { client, cmd } => cli::rejected(&client, cmd).await,
        Command::Portal { client, cmd } => cli::portal(&client, cmd).await,
        Command::Config { .. } | Command::Completions { .. } | Command::Man { .. } => {
            unreachable!("handled before the runtime starts")
        }
    };
    // The last spans, flushed while the runtime still drives the exporter.
    if let Some(tracing) = tracing {
        let _ = tokio::task::spawn_blocking(move || tracing.shutdown()).await;
    }
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => cli::error::report(&e, json_out),
    }
}
