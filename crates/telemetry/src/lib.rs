//! Telemetry shared by every Hookline service.
//!
//! * [`metrics()`]: the process's Prometheus metrics, served on `/metrics`.
//!   Labels are bounded sets (event type, outcome, error kind, gRPC service,
//!   method and code, stream, consumer, projector): tenant and endpoint ids
//!   are never labels, since each would create a series per customer and
//!   blow up Prometheus.
//! * [`Format`]: `/metrics` negotiates its format from the `Accept` header.
//!   A scraper that asks for OpenMetrics (Prometheus does, by default) gets
//!   OpenMetrics 1.0.0, the registry's native output, under its own media
//!   type. Everything else (curl, older scrapers, agents that only know the
//!   classic format) gets the Prometheus text format 0.0.4, which any client
//!   parses: no `# EOF` or `# UNIT` lines, and each counter's `# TYPE` names
//!   its `_total` samples. Serving OpenMetrics alone would break those
//!   clients; serving text alone would lose nothing today but makes
//!   Prometheus fall back and log it, so both are offered.
//! * [`trace`]: W3C `traceparent` values carried through every NATS hop.
//! * [`otlp`]: OpenTelemetry export of those traces over OTLP, when the
//!   standard `OTEL_EXPORTER_OTLP_*` variables ask for it.

pub mod otlp;
pub mod trace;

use std::sync::LazyLock;

use prometheus_client::{
    encoding::text::encode,
    metrics::{counter::Counter, family::Family, gauge::Gauge, histogram::Histogram},
    registry::{Registry, Unit},
};

/// Label pairs; every use keeps the value sets small and fixed.
pub type Labels = Vec<(&'static str, String)>;

fn latency_buckets() -> Histogram {
    Histogram::new([0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 15.0, 30.0])
}

fn fast_buckets() -> Histogram {
    Histogram::new([0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05, 0.25, 1.0])
}

type HistogramFamily = Family<Labels, Histogram, fn() -> Histogram>;

pub struct Metrics {
    registry: Registry,
    /// ingest: events appended, by `event_type` and `source` (grpc, nats).
    pub events_accepted: Family<Labels, Counter>,
    /// ingest: events refused, by `reason` (invalid, unknown_tenant) and `source`.
    pub events_rejected: Family<Labels, Counter>,
    /// ingest: tenants the per-tenant publish limiter holds an entry for.
    pub ingest_rate_limiter_keys: Gauge,
    /// subscriptions: config commands by `command` and `result` (ok, refused, error).
    pub config_commands: Family<Labels, Counter>,
    /// subscriptions: optimistic-concurrency conflicts retried.
    pub config_conflicts: Counter,
    /// subscriptions: config messages purged by compaction (replaced by snapshots).
    pub config_purged: Counter,
    /// Every service: time spent waiting for this process's config index to
    /// apply a change acknowledged elsewhere, by `reason` (command, read,
    /// resolve, ingest). Observed only when a wait was needed.
    pub config_wait: HistogramFamily,
    /// Every service: such waits that ran out (answered UNAVAILABLE, retried), by `reason`.
    pub config_wait_timeouts: Family<Labels, Counter>,
    /// subscriptions: `Resolve` latency.
    pub resolve_duration: Histogram,
    /// Tenants and endpoints in this process's config index.
    pub directory_tenants: Gauge,
    pub directory_endpoints: Gauge,
    /// delivery: attempts by `outcome` (succeeded, retrying, failed, dropped) and `error_kind`.
    pub attempts: Family<Labels, Counter>,
    /// delivery: attempt latency by `channel` (http, email).
    pub attempt_duration: HistogramFamily,
    /// delivery: retries scheduled.
    pub retries_scheduled: Counter,
    /// delivery: first attempts fan-out made itself (the rest went through the workers).
    pub direct_attempts: Counter,
    /// delivery: tasks handed back (busy endpoint) or parked (stuck endpoint, open breaker), by `reason`.
    pub deferrals: Family<Labels, Counter>,
    /// delivery: tasks waiting in HOOKLINE_PARKED, as the parking sweeper last saw them.
    pub parked: Gauge,
    /// delivery: parked tasks this process moved back to HOOKLINE_DISPATCH
    /// or, draining a recovered endpoint, into its slots.
    pub unparked: Counter,
    /// delivery: tasks a recovered endpoint's drain took, by `how`: made in
    /// its slots here (`here`), sent through HOOKLINE_DISPATCH because the
    /// process's drain places were taken (`past_places`), or because the
    /// slots did not take the task in time or the endpoint was blocked
    /// again (`handed_back`).
    pub drained: Family<Labels, Counter>,
    /// delivery: requests the parking sweeper made to read parked tasks'
    /// events back from HOOKLINE_EVENTS, by `how` (batch: one batched
    /// direct get for many events; single: one event each).
    pub parked_event_reads: Family<Labels, Counter>,
    /// delivery: retries waiting in HOOKLINE_RETRY, as the retry mover last saw them.
    pub retries_waiting: Gauge,
    /// delivery: retries this process moved from HOOKLINE_RETRY to HOOKLINE_DISPATCH.
    pub retries_moved: Counter,
    /// delivery: endpoints whose circuit breaker is open now.
    pub breakers_open: Gauge,
    /// delivery: endpoints disabled by Hookline, by `reason` (gone, failing).
    pub endpoints_disabled: Family<Labels, Counter>,
    /// delivery: attempts in flight in this process.
    pub in_flight: Gauge,
    /// JetStream consumers: messages not yet delivered, by `stream` and `consumer`.
    pub consumer_pending: Family<Labels, Gauge>,
    /// JetStream consumers: delivered, not yet acked (includes scheduled retries).
    pub consumer_ack_pending: Family<Labels, Gauge>,
    /// JetStream consumers: messages redelivered at least once.
    pub consumer_redelivered: Family<Labels, Gauge>,
    /// Postgres projectors: stream messages not yet applied, by `projector`.
    pub projector_lag: Family<Labels, Gauge>,
    /// gRPC requests by `method` and `code`.
    pub grpc_requests: Family<Labels, Counter>,
    /// gRPC latency by `method`.
    pub grpc_duration: HistogramFamily,
}

impl Metrics {
    fn new() -> Self {
        let mut r = Registry::with_prefix("hookline");
        let m = Self {
            events_accepted: Family::default(),
            events_rejected: Family::default(),
            ingest_rate_limiter_keys: Gauge::default(),
            config_commands: Family::default(),
            config_conflicts: Counter::default(),
            config_purged: Counter::default(),
            config_wait: Family::new_with_constructor(fast_buckets),
            config_wait_timeouts: Family::default(),
            resolve_duration: fast_buckets(),
            directory_tenants: Gauge::default(),
            directory_endpoints: Gauge::default(),
            attempts: Family::default(),
            attempt_duration: Family::new_with_constructor(latency_buckets),
            retries_scheduled: Counter::default(),
            direct_attempts: Counter::default(),
            deferrals: Family::default(),
            breakers_open: Gauge::default(),
            parked: Gauge::default(),
            unparked: Counter::default(),
            drained: Family::default(),
            parked_event_reads: Family::default(),
            retries_waiting: Gauge::default(),
            retries_moved: Counter::default(),
            endpoints_disabled: Family::default(),
            in_flight: Gauge::default(),
            consumer_pending: Family::default(),
            consumer_ack_pending: Family::default(),
            consumer_redelivered: Family::default(),
            projector_lag: Family::default(),
            grpc_requests: Family::default(),
            grpc_duration: Family::new_with_constructor(latency_buckets),
            registry: Registry::default(),
        };
        r.register("events_accepted", "Events appended to HOOKLINE_EVENTS", m.events_accepted.clone());
        r.register("events_rejected", "Events refused by validation", m.events_rejected.clone());
        r.register(
            "ingest_rate_limiter_keys",
            "Tenants the per-tenant publish limiter holds an entry for (idle ones are dropped)",
            m.ingest_rate_limiter_keys.clone(),
        );
        r.register("config_commands", "Tenant and endpoint commands", m.config_commands.clone());
        r.register(
            "config_conflicts",
            "Optimistic-concurrency conflicts on config subjects",
            m.config_conflicts.clone(),
        );
        r.register(
            "config_purged",
            "Config messages purged by compaction, each replaced by its tenant's snapshot",
            m.config_purged.clone(),
        );
        r.register_with_unit(
            "config_wait",
            "Waits for this process's config index to apply a change acknowledged elsewhere",
            Unit::Seconds,
            m.config_wait.clone(),
        );
        r.register(
            "config_wait_timeouts",
            "Config index waits that ran out (answered UNAVAILABLE and retried)",
            m.config_wait_timeouts.clone(),
        );
        r.register_with_unit("resolve_duration", "Resolve latency", Unit::Seconds, m.resolve_duration.clone());
        r.register("directory_tenants", "Tenants in the in-memory config index", m.directory_tenants.clone());
        r.register("directory_endpoints", "Endpoints in the in-memory config index", m.directory_endpoints.clone());
        r.register("delivery_attempts", "Delivery attempts by outcome and error kind", m.attempts.clone());
        r.register_with_unit(
            "delivery_attempt_duration",
            "Delivery attempt latency",
            Unit::Seconds,
            m.attempt_duration.clone(),
        );
        r.register(
            "delivery_direct_attempts",
            "First attempts made by fan-out itself, without a dispatch task",
            m.direct_attempts.clone(),
        );
        r.register(
            "delivery_retries_scheduled",
            "Retries scheduled after failed attempts",
            m.retries_scheduled.clone(),
        );
        r.register(
            "delivery_deferrals",
            "Tasks handed back to JetStream (busy endpoint) or parked (stuck or unanswered endpoint, open breaker, rate limit)",
            m.deferrals.clone(),
        );
        r.register("delivery_breakers_open", "Endpoints whose circuit breaker is open", m.breakers_open.clone());
        r.register("delivery_parked_tasks", "Tasks parked in HOOKLINE_PARKED", m.parked.clone());
        r.register(
            "delivery_unparked",
            "Parked tasks moved back to HOOKLINE_DISPATCH, or into a recovered endpoint's slots, by this process",
            m.unparked.clone(),
        );
        r.register(
            "delivery_drained",
            "Tasks a recovered endpoint's drain took, by how (here, past_places, handed_back)",
            m.drained.clone(),
        );
        r.register(
            "delivery_parked_event_reads",
            "Requests reading parked tasks' events back from HOOKLINE_EVENTS, by how (batch, single)",
            m.parked_event_reads.clone(),
        );
        r.register(
            "delivery_retries_waiting",
            "Retries waiting in HOOKLINE_RETRY until they are due",
            m.retries_waiting.clone(),
        );
        r.register(
            "delivery_retries_moved",
            "Due retries moved from HOOKLINE_RETRY to HOOKLINE_DISPATCH by this process",
            m.retries_moved.clone(),
        );
        r.register("endpoints_disabled", "Endpoints disabled by Hookline", m.endpoints_disabled.clone());
        r.register("delivery_in_flight", "Delivery attempts in flight", m.in_flight.clone());
        r.register(
            "consumer_pending",
            "JetStream messages not yet delivered to the consumer",
            m.consumer_pending.clone(),
        );
        r.register(
            "consumer_ack_pending",
            "JetStream messages delivered and not yet acked",
            m.consumer_ack_pending.clone(),
        );
        r.register("consumer_redelivered", "JetStream messages redelivered", m.consumer_redelivered.clone());
        r.register("projector_lag", "Stream messages not yet applied to Postgres", m.projector_lag.clone());
        r.register("grpc_requests", "gRPC requests by method and status code", m.grpc_requests.clone());
        r.register_with_unit("grpc_request_duration", "gRPC request latency", Unit::Seconds, m.grpc_duration.clone());
        // Known label values start at zero, so rates and alerts see a series
        // before the first occurrence.
        for reason in ["endpoint_busy", "endpoint_stuck", "breaker_open", "rate_limited", "endpoint_unanswered"] {
            let _ = m.deferrals.get_or_create(&labels([("reason", reason)]));
        }
        for reason in ["command", "read", "resolve", "ingest"] {
            let _ = m.config_wait_timeouts.get_or_create(&labels([("reason", reason)]));
        }
        for reason in ["gone", "failing"] {
            let _ = m.endpoints_disabled.get_or_create(&labels([("reason", reason)]));
        }
        Self { registry: r, ..m }
    }

    /// The OpenMetrics 1.0.0 exposition of every metric.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        encode(&mut out, &self.registry).expect("encoding into a String cannot fail");
        out
    }

    /// Every metric in `format`, with the `Content-Type` to send it under.
    pub fn encode_as(&self, format: Format) -> (&'static str, String) {
        let open = self.encode();
        match format {
            Format::OpenMetrics => (format.content_type(), open),
            Format::Text => (format.content_type(), openmetrics_to_text(&open)),
        }
    }
}

/// The exposition formats `/metrics` serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// OpenMetrics 1.0.0.
    OpenMetrics,
    /// The Prometheus text format 0.0.4.
    Text,
}

impl Format {
    pub fn content_type(self) -> &'static str {
        match self {
            Format::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
            Format::Text => "text/plain; version=0.0.4; charset=utf-8",
        }
    }

    /// The format an `Accept` header asks for: OpenMetrics when it accepts
    /// `application/openmetrics-text` (version 1.0.0 or any) with a quality
    /// above zero and at least that of the text format; else text.
    pub fn negotiate(accept: Option<&str>) -> Self {
        let (mut open, mut text) = (0.0_f32, 0.0_f32);
        for range in accept.unwrap_or_default().split(',') {
            let mut parts = range.split(';').map(str::trim);
            let media = parts.next().unwrap_or_default().to_ascii_lowercase();
            let (mut q, mut version) = (1.0_f32, None);
            for param in parts {
                let Some((k, v)) = param.split_once('=') else { continue };
                match k.trim().to_ascii_lowercase().as_str() {
                    "q" => q = v.trim().parse().unwrap_or(0.0),
                    "version" => version = Some(v.trim().trim_matches('"').to_owned()),
                    _ => {}
                }
            }
            match media.as_str() {
                "application/openmetrics-text" if version.as_deref().is_none_or(|v| v == "1.0.0") => {
                    open = open.max(q);
                }
                "text/plain" if version.as_deref().is_none_or(|v| v == "0.0.4") => text = text.max(q),
                "text/*" | "*/*" => text = text.max(q),
                _ => {}
            }
        }
        if open > 0.0 && open >= text { Format::OpenMetrics } else { Format::Text }
    }
}

/// The OpenMetrics text `prometheus-client` writes, in the Prometheus text
/// format 0.0.4: a counter family `x` is `# TYPE x_total counter` there
/// (its samples are `x_total` in both), `unknown` is `untyped`, and
/// `# UNIT` and `# EOF` do not exist. The registry holds no exemplars, info
/// or state sets, so nothing else differs.
fn openmetrics_to_text(open: &str) -> String {
    let counters: std::collections::HashSet<&str> =
        open.lines().filter_map(|l| l.strip_prefix("# TYPE ")?.strip_suffix(" counter")).collect();
    let mut out = String::with_capacity(open.len());
    for line in open.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        let meta = ["# HELP ", "# TYPE "].into_iter().find_map(|p| Some((p, line.strip_prefix(p)?)));
        match meta {
            Some((prefix, rest)) => {
                let (name, tail) = rest.split_once(' ').unwrap_or((rest, ""));
                out.push_str(prefix);
                out.push_str(name);
                if counters.contains(name) {
                    out.push_str("_total");
                }
                out.push(' ');
                out.push_str(if prefix == "# TYPE " && tail == "unknown" { "untyped" } else { tail });
            }
            None => out.push_str(line),
        }
        out.push('\n');
    }
    out
}

static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);

pub fn metrics() -> &'static Metrics {
    &METRICS
}

/// Shorthand for a label set.
pub fn labels<const N: usize>(pairs: [(&'static str, &str); N]) -> Labels {
    pairs.into_iter().map(|(k, v)| (k, v.to_owned())).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_prometheus_conventions() {
        let m = metrics();
        m.events_accepted.get_or_create(&labels([("event_type", "customer.created"), ("source", "grpc")])).inc();
        m.attempt_duration.get_or_create(&labels([("channel", "http")])).observe(0.02);
        let text = m.encode();
        assert!(
            text.contains("hookline_events_accepted_total{event_type=\"customer.created\",source=\"grpc\"} 1"),
            "{text}"
        );
        assert!(text.contains("hookline_delivery_attempt_duration_seconds_bucket"), "{text}");
        assert!(text.contains("# TYPE hookline_delivery_in_flight gauge"), "{text}");
    }

    #[test]
    fn the_text_format_has_total_in_counter_types_and_no_openmetrics_lines() {
        let m = metrics();
        m.config_conflicts.inc();
        m.resolve_duration.observe(0.001);
        let (open_type, open) = m.encode_as(Format::OpenMetrics);
        assert!(open_type.starts_with("application/openmetrics-text; version=1.0.0"));
        assert!(open.ends_with("# EOF\n"), "{open}");
        assert!(open.contains("# TYPE hookline_config_conflicts counter\n"), "{open}");
        let (text_type, text) = m.encode_as(Format::Text);
        assert_eq!(text_type, "text/plain; version=0.0.4; charset=utf-8");
        assert!(!text.contains("# EOF") && !text.contains("# UNIT"), "{text}");
        assert!(text.contains("# HELP hookline_config_conflicts_total Optimistic"), "{text}");
        assert!(text.contains("# TYPE hookline_config_conflicts_total counter\nhookline_config_conflicts_total "));
        assert!(text.contains("# TYPE hookline_resolve_duration_seconds histogram\n"), "{text}");
        assert!(text.contains("hookline_resolve_duration_seconds_bucket{le=\"+Inf\"} "), "{text}");
        // Every sample line follows the # TYPE line of its family.
        let mut family = String::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                family = rest.split(' ').next().unwrap().to_owned();
            } else if !line.starts_with('#') {
                assert!(line.starts_with(&family), "`{line}` outside its family `{family}`");
            }
        }
    }

    #[test]
    fn openmetrics_is_served_only_to_clients_that_ask_for_it() {
        let prometheus = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
        for (accept, want) in [
            (Some(prometheus), Format::OpenMetrics),
            (Some("application/openmetrics-text"), Format::OpenMetrics),
            (Some("text/plain;version=0.0.4;q=1,application/openmetrics-text;q=0.5"), Format::Text),
            (Some("application/openmetrics-text; version=0.0.1"), Format::Text),
            (Some("application/openmetrics-text;q=0"), Format::Text),
            (Some("*/*"), Format::Text),
            (Some("text/plain"), Format::Text),
            (None, Format::Text),
        ] {
            assert_eq!(Format::negotiate(accept), want, "{accept:?}");
        }
    }
}
