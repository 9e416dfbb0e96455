//! Operational telemetry wiring: gRPC request metrics as a tower layer, and
//! a poller that turns JetStream consumer state and projector offsets into
//! gauges.
//!
//! gRPC metrics carry the labels operators know from other gRPC servers:
//! `grpc_service` and `grpc_method` as the protos spell them, and
//! `grpc_code` as the gRPC spec does (`OK`, `NOT_FOUND`, ...). Service and
//! method come from the descriptor sets this binary serves, so a request
//! for any other path counts under `unknown` and cannot add label values.

use std::{
    collections::HashMap,
    future::Future,
    pin::Pin,
    sync::LazyLock,
    task::{Context, Poll},
    time::{Duration, Instant},
};

use async_nats::jetstream;
use hookline_store::projector::{Projection, stored_offset};
use hookline_telemetry::{labels, metrics};
use tokio_util::sync::CancellationToken;

/// Counts every gRPC call by method and status code and times it.
#[derive(Clone, Copy, Default)]
pub struct GrpcMetricsLayer;

impl<S> tower_layer::Layer<S> for GrpcMetricsLayer {
    type Service = GrpcMetrics<S>;
    fn layer(&self, inner: S) -> Self::Service {
        GrpcMetrics { inner }
    }
}

#[derive(Clone)]
pub struct GrpcMetrics<S> {
    inner: S,
}

impl<S, B, RB> tower_service::Service<http::Request<B>> for GrpcMetrics<S>
where
    S: tower_service::Service<http::Request<B>, Response = http::Response<RB>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let (service, method) = GRPC_METHODS.labels(req.uri().path());
        let started = Instant::now();
        let call = self.inner.call(req);
        Box::pin(async move {
            let result = call.await;
            // Errors are "trailers-only" responses with the status in the
            // headers; a success carries it in trailers, as OK. No response
            // at all has no gRPC status: the client sees UNKNOWN. A streaming
            // call that fails after its first message has its code in the
            // trailers, which this does not read: it counts as OK.
            let code = match &result {
                Ok(r) => r
                    .headers()
                    .get("grpc-status")
                    .and_then(|v| v.to_str().ok()?.parse::<i32>().ok())
                    .map_or(tonic::Code::Ok, tonic::Code::from),
                Err(_) => tonic::Code::Unknown,
            };
            let m = metrics();
            m.grpc_requests
                .get_or_create(&labels([
                    ("grpc_service", service),
                    ("grpc_method", method),
                    ("grpc_code", hookline_auth::status::code_name(code)),
                ]))
                .inc();
            m.grpc_duration
                .get_or_create(&labels([("grpc_service", service), ("grpc_method", method)]))
                .observe(started.elapsed().as_secs_f64());
            result
        })
    }
}

/// Label value for requests whose path names no served method.
pub const UNKNOWN: &str = "unknown";

/// Every method of the services this binary can serve: Hookline's own,
/// gRPC health and reflection (both versions), by request path.
static GRPC_METHODS: LazyLock<GrpcMethods> = LazyLock::new(|| {
    GrpcMethods::from_descriptor_sets(&[
        hookline_proto::FILE_DESCRIPTOR_SET,
        tonic_health::pb::FILE_DESCRIPTOR_SET,
        tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET,
        tonic_reflection::pb::v1alpha::FILE_DESCRIPTOR_SET,
    ])
});

/// Request path (`/package.Service/Method`) → (`package.Service`, `Method`).
pub struct GrpcMethods(HashMap<String, (String, String)>);

impl GrpcMethods {
    /// The methods of every service in these encoded `FileDescriptorSet`s.
    pub fn from_descriptor_sets(sets: &[&[u8]]) -> Self {
        use prost::Message as _;
        let mut methods = HashMap::new();
        for set in sets {
            let set = prost_types::FileDescriptorSet::decode(*set).expect("compiled-in descriptor sets decode");
            for file in set.file {
                let package = file.package();
                for service in &file.service {
                    let service_name = match package {
                        "" => service.name().to_owned(),
                        p => format!("{p}.{}", service.name()),
                    };
                    for method in &service.method {
                        let path = format!("/{service_name}/{}", method.name());
                        methods.insert(path, (service_name.clone(), method.name().to_owned()));
                    }
                }
            }
        }
        Self(methods)
    }

    /// `grpc_service` and `grpc_method` for a request path; [`UNKNOWN`] for
    /// both when no served service has that method.
    pub fn labels(&self, path: &str) -> (&str, &str) {
        self.0.get(path).map_or((UNKNOWN, UNKNOWN), |(s, m)| (s.as_str(), m.as_str()))
    }
}

/// Every 5 s: pending, ack-pending and redelivered counts of `consumers`,
/// and (with a pool) how far each projector is behind its stream.
pub async fn poll(
    js: jetstream::Context,
    consumers: Vec<(&'static str, &'static str)>,
    pool: Option<sqlx::PgPool>,
    shutdown: CancellationToken,
) {
    loop {
        for (stream, consumer) in &consumers {
            let info = async {
                let s = js.get_stream(*stream).await.ok()?;
                let mut c = s.get_consumer::<jetstream::consumer::pull::Config>(consumer).await.ok()?;
                c.info().await.ok().cloned()
            };
            if let Some(info) = info.await {
                let l = labels([("stream", stream), ("consumer", consumer)]);
                let m = metrics();
                m.consumer_pending.get_or_create(&l).set(info.num_pending as i64);
                m.consumer_ack_pending.get_or_create(&l).set(info.num_ack_pending as i64);
                m.consumer_redelivered.get_or_create(&l).set(info.num_redelivered as i64);
            }
        }
        if let Some(pool) = &pool {
            for p in Projection::ALL {
                let last = async {
                    js.get_stream(p.stream()).await.ok()?.get_info().await.ok().map(|i| i.state.last_sequence)
                };
                if let (Some(last), Ok(applied)) = (last.await, stored_offset(pool, p).await) {
                    metrics()
                        .projector_lag
                        .get_or_create(&labels([("projector", p.name())]))
                        .set(last.saturating_sub(applied) as i64);
                }
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_secs(5)) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_paths_name_service_and_method_and_others_are_unknown() {
        let m = &*GRPC_METHODS;
        assert_eq!(
            m.labels("/hookline.ingest.v1.IngestService/Publish"),
            ("hookline.ingest.v1.IngestService", "Publish")
        );
        assert_eq!(m.labels("/grpc.health.v1.Health/Check"), ("grpc.health.v1.Health", "Check"));
        assert_eq!(
            m.labels("/grpc.reflection.v1.ServerReflection/ServerReflectionInfo"),
            ("grpc.reflection.v1.ServerReflection", "ServerReflectionInfo")
        );
        for path in ["/hookline.ingest.v1.IngestService/Nope", "/x/y", "/", "/hookline.ingest.v1.IngestService/"] {
            assert_eq!(m.labels(path), (UNKNOWN, UNKNOWN), "{path}");
        }
    }
}
