//! `Resolve` calls from fan-out, coalesced per (tenant, event type).
//!
//! Under load, fan-out handles many events of the same tenant and type at
//! once; one gRPC call each would repeat the same answer. Here, at most one call per
//! key is in flight; events that arrive meanwhile wait for the *next* call,
//! which starts after they arrived, so every event still sees every change
//! to the tenant's endpoints made before it was published (as if it had made
//! its own call). A burst of N events costs two calls, not N; under
//! sustained load, a short linger between calls makes each serve more.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use hookline_proto::subscriptions::v1::{
    ResolveRequest, ResolvedEndpoint, subscription_service_client::SubscriptionServiceClient,
};
use hookline_telemetry::trace::{TRACEPARENT, TraceParent};
use tokio::sync::oneshot;
use tonic::{Status, transport::Channel};

type Answer = Result<Vec<ResolvedEndpoint>, Status>;

const CALL_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);
/// A call that served this many events means load: the next one waits
/// [`LINGER`] first. A lone event (the usual case below a few hundred
/// events a second per tenant and type) never waits.
const BUSY: usize = 4;
const LINGER: std::time::Duration = std::time::Duration::from_millis(2);

#[derive(Default)]
struct Queue {
    /// A call for this key is running; new waiters go into `waiting`.
    running: bool,
    waiting: Vec<oneshot::Sender<Answer>>,
    /// The highest config sequence the waiting events were stamped with.
    min_seq: u64,
}

#[derive(Clone)]
pub struct Resolver {
    client: SubscriptionServiceClient<Channel>,
    /// `Bearer <operator token>`, when authentication is on.
    authorization: Option<Arc<str>>,
    queues: Arc<Mutex<HashMap<(String, String), Queue>>>,
}

impl Resolver {
    pub fn new(client: SubscriptionServiceClient<Channel>, operator_token: Option<&str>) -> Self {
        Self { client, authorization: operator_token.map(|t| Arc::from(format!("Bearer {t}"))), queues: Arc::default() }
    }

    /// The endpoints (disabled ones included) subscribed to `event_type`,
    /// from a call that started after this one was made. `traceparent`
    /// goes with the call if this request starts it.
    pub async fn resolve(&self, tenant: &str, event_type: &str, min_seq: u64, traceparent: TraceParent) -> Answer {
        let key = (tenant.to_owned(), event_type.to_owned());
        let (tx, rx) = oneshot::channel();
        let lead = {
            let mut queues = self.queues.lock().expect("resolver lock");
            let queue = queues.entry(key.clone()).or_default();
            queue.waiting.push(tx);
            queue.min_seq = queue.min_seq.max(min_seq);
            !std::mem::replace(&mut queue.running, true)
        };
        if lead {
            let this = self.clone();
            tokio::spawn(async move { this.drive(key, traceparent).await });
        }
        rx.await.unwrap_or_else(|_| Err(Status::unavailable("resolve was cancelled")))
    }

    /// Call for everyone waiting on `key`, then for whoever arrived during
    /// that call, until nobody waits.
    async fn drive(self, key: (String, String), traceparent: TraceParent) {
        loop {
            let waiters = {
                let mut queues = self.queues.lock().expect("resolver lock");
                let queue = queues.get_mut(&key).expect("a running queue exists");
                if queue.waiting.is_empty() {
                    queues.remove(&key);
                    return;
                }
                (std::mem::take(&mut queue.waiting), std::mem::take(&mut queue.min_seq))
            };
            let (waiters, min_seq) = waiters;
            let busy = waiters.len() >= BUSY;
            let answer = self.call(&key.0, &key.1, min_seq, &traceparent).await;
            for w in waiters {
                let _ = w.send(answer.clone());
            }
            // Under load, let the next call gather a few more events: each
            // call costs both sides far more than the wait costs an event.
            if busy {
                tokio::time::sleep(LINGER).await;
            }
        }
    }

    async fn call(&self, tenant: &str, event_type: &str, min_seq: u64, traceparent: &TraceParent) -> Answer {
        let mut request = tonic::Request::new(ResolveRequest {
            tenant_id: tenant.to_owned(),
            event_type: event_type.to_owned(),
            // Disabled subscribers get a delivery too, logged as not sent, so
            // what they missed can be listed and recovered.
            include_disabled: true,
            min_config_sequence: min_seq,
        });
        if let Ok(tp) = traceparent.to_string().parse() {
            request.metadata_mut().insert(TRACEPARENT, tp);
        }
        if let Some(Ok(auth)) = self.authorization.as_deref().map(str::parse) {
            request.metadata_mut().insert("authorization", auth);
        }
        // Everyone waiting on this key waits on this call: never forever.
        let mut client = self.client.clone();
        match tokio::time::timeout(CALL_TIMEOUT, client.resolve(request)).await {
            Ok(Ok(r)) => Ok(r.into_inner().endpoints),
            // The tenant does not exist: the replica has applied the event's
            // config sequence (or, for an unstamped event, looked the tenant
            // up on the stream) before answering so.
            Ok(Err(s)) if s.code() == tonic::Code::NotFound => Ok(Vec::new()),
            Ok(Err(s)) => Err(s),
            Err(_) => Err(Status::deadline_exceeded(format!("Resolve took longer than {CALL_TIMEOUT:?}"))),
        }
    }
}
