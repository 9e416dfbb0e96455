//! OpenTelemetry trace export over OTLP/HTTP protobuf, configured by the
//! standard variables: `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` (used as is) or
//! `OTEL_EXPORTER_OTLP_ENDPOINT` (`/v1/traces` appended), `OTEL_SERVICE_NAME`
//! (default `hookline-<role>`), `OTEL_RESOURCE_ATTRIBUTES`,
//! `OTEL_TRACES_SAMPLER` and `OTEL_TRACES_SAMPLER_ARG`, `OTEL_EXPORTER_OTLP_HEADERS`
//! and `OTEL_EXPORTER_OTLP_TIMEOUT`. The deprecated `HOOKLINE_OTLP_ENDPOINT`
//! is read as `OTEL_EXPORTER_OTLP_ENDPOINT` when neither is set.
//!
//! Spans are batched on the Tokio runtime and sent with an async reqwest
//! client (the reqwest the process already has: one HTTP stack): a slow or
//! absent collector drops spans, never slows delivery. [`Tracing::shutdown`] flushes what is left.

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::{Resource, runtime, trace::SdkTracerProvider};
use tracing::{Subscriber, level_filters::LevelFilter};
use tracing_subscriber::{Layer, filter::Targets, registry::LookupSpan};

/// Where spans go, from the environment; `None`: no export.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// `OTEL_EXPORTER_OTLP_ENDPOINT` or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`:
    /// the exporter reads them itself.
    Standard,
    /// Only the deprecated `HOOKLINE_OTLP_ENDPOINT`: a base URL.
    Deprecated(String),
}

impl Endpoint {
    /// `env` looks a variable up (the process environment, or Hookline's
    /// settings file for `HOOKLINE_*`). `OTEL_SDK_DISABLED=true` and
    /// `OTEL_TRACES_EXPORTER=none` turn export off, as in other SDKs.
    pub fn from_env(env: impl Fn(&str) -> Option<String>) -> Option<Self> {
        let set = |name: &str| env(name).filter(|v| !v.trim().is_empty());
        if set("OTEL_SDK_DISABLED").is_some_and(|v| v.trim().eq_ignore_ascii_case("true"))
            || set("OTEL_TRACES_EXPORTER").is_some_and(|v| v.trim().eq_ignore_ascii_case("none"))
        {
            return None;
        }
        if set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT").or_else(|| set("OTEL_EXPORTER_OTLP_ENDPOINT")).is_some() {
            return Some(Self::Standard);
        }
        set("HOOKLINE_OTLP_ENDPOINT").map(Self::Deprecated)
    }
}

/// The running export; shut it down to flush the last batch.
pub struct Tracing {
    provider: SdkTracerProvider,
}

impl Tracing {
    /// Export the spans still queued, then stop. Blocks until the export
    /// task answers: call it off the runtime's worker threads
    /// (`spawn_blocking`), with the runtime still running.
    pub fn shutdown(self) {
        let _ = self.provider.shutdown();
    }
}

/// The tracing layer that turns Hookline's spans into OpenTelemetry spans,
/// and its exporter (needs a Tokio runtime). `service` names the resource
/// unless `OTEL_SERVICE_NAME` (or `service.name` in
/// `OTEL_RESOURCE_ATTRIBUTES`) does. Marks the process as exporting
/// ([`crate::trace::exporting`]). It sees only Hookline's own spans, at
/// info and above, whatever `HOOKLINE_LOG` lets the logs show.
pub fn layer<S>(endpoint: &Endpoint, service: &str) -> Result<(impl Layer<S> + use<S>, Tracing), Error>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    // The exporter builds its async reqwest client (our reqwest, rustls with
    // the process's crypto provider) with OTEL_EXPORTER_OTLP_TIMEOUT.
    let mut exporter =
        opentelemetry_otlp::SpanExporter::builder().with_http().with_protocol(opentelemetry_otlp::Protocol::HttpBinary);
    if let Endpoint::Deprecated(base) = endpoint {
        exporter = exporter.with_endpoint(format!("{}/v1/traces", base.trim_end_matches('/')));
    }
    let exporter = exporter.build()?;
    let named = std::env::var_os("OTEL_SERVICE_NAME").is_some_and(|v| !v.is_empty())
        || std::env::var("OTEL_RESOURCE_ATTRIBUTES").is_ok_and(|a| a.contains("service.name="));
    let resource = if named { Resource::builder() } else { Resource::builder().with_service_name(service.to_owned()) };
    let processor = opentelemetry_sdk::trace::span_processor_with_async_runtime::BatchSpanProcessor::builder(
        exporter,
        runtime::Tokio,
    )
    .build();
    let provider = SdkTracerProvider::builder().with_span_processor(processor).with_resource(resource.build()).build();
    let tracer = provider.tracer("hookline");
    let only_ours = Targets::new().with_target("hookline", LevelFilter::INFO);
    let layer = tracing_opentelemetry::layer()
        .with_tracer(tracer)
        .with_level(false)
        .with_target(false)
        .with_threads(false)
        .with_location(false)
        .with_tracked_inactivity(false)
        .with_filter(only_ours);
    crate::trace::set_exporting();
    Ok((layer, Tracing { provider }))
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("the OTLP exporter")]
    Exporter(#[from] opentelemetry_otlp::ExporterBuildError),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn standard_variables_win_and_the_deprecated_one_still_works() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |name: &str| pairs.iter().find(|(k, _)| *k == name).map(|(_, v)| (*v).to_owned())
        };
        assert_eq!(Endpoint::from_env(env(&[])), None);
        assert_eq!(Endpoint::from_env(env(&[("HOOKLINE_OTLP_ENDPOINT", " ")])), None);
        assert_eq!(
            Endpoint::from_env(env(&[("HOOKLINE_OTLP_ENDPOINT", "http://c:4318")])),
            Some(Endpoint::Deprecated("http://c:4318".into()))
        );
        for standard in ["OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"] {
            let pairs: &'static [(&str, &str)] = if standard.contains("TRACES") {
                &[("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://a/v1/traces"), ("HOOKLINE_OTLP_ENDPOINT", "http://b")]
            } else {
                &[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://a"), ("HOOKLINE_OTLP_ENDPOINT", "http://b")]
            };
            assert_eq!(Endpoint::from_env(env(pairs)), Some(Endpoint::Standard), "{standard}");
        }
        assert_eq!(
            Endpoint::from_env(env(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://a"), ("OTEL_SDK_DISABLED", "true")])),
            None
        );
        assert_eq!(
            Endpoint::from_env(env(&[("HOOKLINE_OTLP_ENDPOINT", "http://a"), ("OTEL_TRACES_EXPORTER", "none")])),
            None
        );
    }
}
