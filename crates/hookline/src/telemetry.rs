//! Operational telemetry wiring: gRPC request metrics as a tower layer, and
//! a poller that turns JetStream consumer state and projector offsets into
//! gauges.

use std::{
    future::Future,
    pin::Pin,
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
        let method = req.uri().path().to_owned();
        let started = Instant::now();
        let call = self.inner.call(req);
        Box::pin(async move {
            let result = call.await;
            // Errors are "trailers-only" responses with the status in the
            // headers; a success carries it in trailers, as OK.
            let code = match &result {
                Ok(r) => r
                    .headers()
                    .get("grpc-status")
                    .and_then(|v| v.to_str().ok()?.parse::<i32>().ok())
                    .map_or_else(|| "Ok".to_owned(), |c| format!("{:?}", tonic::Code::from(c))),
                Err(_) => "Transport".to_owned(),
            };
            let m = metrics();
            m.grpc_requests.get_or_create(&labels([("method", &method), ("code", &code)])).inc();
            m.grpc_duration.get_or_create(&labels([("method", &method)])).observe(started.elapsed().as_secs_f64());
            result
        })
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
