//! `Resolve` calls from fan-out: answered from a cache when an earlier
//! answer provably covers the event, else coalesced per (tenant, event type).
//!
//! **The guarantee:** an event sees every change to its tenant's endpoints
//! made before it was published. Ingest stamps each event with its tenant's
//! last config sequence as the stream had it at publish time (`min_seq`),
//! and `Resolve` answers with the tenant as of at least the sequence it is
//! asked for.
//!
//! **Reuse** ([`Answers`]): an answer fetched for `min_seq = S` reflects
//! every change of the tenant up to S. It serves a later event stamped
//! `m` with `0 < m <= S`, since every change made before that event was
//! published has a sequence of at most m. An event stamped above S (its
//! tenant changed after the answer was asked for) makes a call, whose answer
//! replaces the old one. As a second line, delivery's own config follower
//! (the Directory) retires answers per tenant: once it has applied a config
//! event of the tenant newer than an answer's S (an endpoint created,
//! disabled, re-typed; webhooks turned off; the tenant deleted), that answer
//! is dropped, even for events stamped before the change. Unstamped events
//! (stored before ingest stamped them) always make a call. Subscriptions
//! stays the authority on who gets what: the cache holds only its answers.
//!
//! **Coalescing:** at most one call per key is in flight; events that arrive
//! meanwhile wait for the *next* call, which starts after they arrived, so
//! they too see every change made before they were published (as if each
//! had made its own call). A burst of N events costs two calls, not N;
//! under sustained load, a short linger between calls makes each serve more.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use hookline_domain::{
    event_type::EventType,
    ids::{EndpointId, TenantId},
};
use hookline_proto::subscriptions::v1::{ResolveRequest, subscription_service_client::SubscriptionServiceClient};
use hookline_telemetry::trace::{TRACEPARENT, TraceParent};
use hookline_tenants::Directory;
use tokio::sync::oneshot;
use tonic::{Status, transport::Channel};

/// An endpoint subscribed to an event's type, as `Resolve` names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub id: EndpointId,
    /// The endpoint has a payload filter: fan-out reads its conditions
    /// from delivery's own config index before making a task.
    pub filtered: bool,
}

/// The endpoints (disabled ones included) subscribed to an event's type.
pub type Endpoints = Arc<[Target]>;
type Answer = Result<Endpoints, Status>;

const CALL_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);
/// A call that served this many events means load: the next one waits
/// [`LINGER`] first. A lone event (the usual case below a few hundred
/// events a second per tenant and type) never waits.
const BUSY: usize = 4;
const LINGER: std::time::Duration = std::time::Duration::from_millis(2);
/// Tenants whose answers are kept at most: past it, an arbitrary tenant's
/// answers make room (its next event makes a call). Each kept answer is a
/// list of endpoint ids, so 100,000 tenants with a few answers each stay
/// within tens of MiB.
pub const KEPT_TENANTS: usize = 100_000;

/// Answers kept for reuse, per tenant; the rules are in the module doc.
pub struct Answers {
    tenants: HashMap<TenantId, Vec<Kept>>,
    cap: usize,
}

/// One event type's answer and the config sequence it was asked for.
struct Kept {
    event_type: EventType,
    seq: u64,
    endpoints: Endpoints,
}

impl Answers {
    pub fn new(cap: usize) -> Self {
        Self { tenants: HashMap::new(), cap }
    }

    /// The kept answer for an event of `tenant` and `event_type` stamped
    /// `min_seq`, if it covers the event. `directory_seq` is the tenant's
    /// config sequence as delivery's Directory has applied it (`None`: it
    /// does not hold the tenant); answers older than that are dropped.
    pub fn get(
        &mut self,
        tenant: &TenantId,
        event_type: EventType,
        min_seq: u64,
        directory_seq: Option<u64>,
    ) -> Option<Endpoints> {
        let kept = self.tenants.get_mut(tenant)?;
        match directory_seq {
            Some(known) => kept.retain(|k| k.seq >= known),
            None => kept.clear(),
        }
        if kept.is_empty() {
            self.tenants.remove(tenant);
            return None;
        }
        if min_seq == 0 {
            return None;
        }
        kept.iter().find(|k| k.event_type == event_type && min_seq <= k.seq).map(|k| k.endpoints.clone())
    }

    /// Keep an answer that `Resolve` gave when asked for `seq` (0: an
    /// unstamped call, not kept). A newer answer is not replaced by an
    /// older one.
    pub fn put(&mut self, tenant: &TenantId, event_type: EventType, seq: u64, endpoints: Endpoints) {
        if seq == 0 {
            return;
        }
        if !self.tenants.contains_key(tenant)
            && self.tenants.len() >= self.cap
            && let Some(evicted) = self.tenants.keys().next().cloned()
        {
            self.tenants.remove(&evicted);
        }
        let kept = self.tenants.entry(tenant.clone()).or_default();
        // Types often resolve to the same endpoints (those taking every
        // type): one list serves them all.
        let endpoints = match kept.iter().find(|k| k.endpoints == endpoints) {
            Some(same) => same.endpoints.clone(),
            None => endpoints,
        };
        match kept.iter_mut().find(|k| k.event_type == event_type) {
            Some(k) if k.seq <= seq => *k = Kept { event_type, seq, endpoints },
            Some(_) => {}
            None => kept.push(Kept { event_type, seq, endpoints }),
        }
    }

    /// Tenants with answers kept.
    pub fn tenants(&self) -> usize {
        self.tenants.len()
    }
}

#[derive(Default)]
struct Queue {
    /// A call for this key is running; new waiters go into `waiting`.
    running: bool,
    waiting: Vec<oneshot::Sender<Answer>>,
    /// The highest config sequence the waiting events were stamped with.
    min_seq: u64,
}

struct State {
    queues: HashMap<(TenantId, EventType), Queue>,
    answers: Answers,
}

#[derive(Clone)]
pub struct Resolver {
    client: SubscriptionServiceClient<Channel>,
    /// `Bearer <operator token>`, when authentication is on.
    authorization: Option<Arc<str>>,
    directory: Directory,
    state: Arc<Mutex<State>>,
}

impl Resolver {
    pub fn new(client: SubscriptionServiceClient<Channel>, operator_token: Option<&str>, directory: Directory) -> Self {
        Self {
            client,
            authorization: operator_token.map(|t| Arc::from(format!("Bearer {t}"))),
            directory,
            state: Arc::new(Mutex::new(State { queues: HashMap::new(), answers: Answers::new(KEPT_TENANTS) })),
        }
    }

    /// The endpoints (disabled ones included) subscribed to `event_type`
    /// as of at least config sequence `min_seq` of `tenant`: kept from an
    /// earlier call that covers it, or from a call that started after this
    /// one was made. `traceparent` goes with the call if this request
    /// starts it.
    pub async fn resolve(
        &self,
        tenant: &TenantId,
        event_type: EventType,
        min_seq: u64,
        traceparent: TraceParent,
    ) -> Answer {
        let directory_seq = self.directory.tenant(tenant).map(|t| t.version);
        let key = (tenant.clone(), event_type);
        let (tx, rx) = oneshot::channel();
        let lead = {
            let mut state = self.state.lock().expect("resolver lock");
            if let Some(endpoints) = state.answers.get(tenant, event_type, min_seq, directory_seq) {
                return Ok(endpoints);
            }
            let queue = state.queues.entry(key.clone()).or_default();
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
    async fn drive(self, key: (TenantId, EventType), traceparent: TraceParent) {
        loop {
            let (waiters, min_seq) = {
                let mut state = self.state.lock().expect("resolver lock");
                let queue = state.queues.get_mut(&key).expect("a running queue exists");
                if queue.waiting.is_empty() {
                    state.queues.remove(&key);
                    return;
                }
                (std::mem::take(&mut queue.waiting), std::mem::take(&mut queue.min_seq))
            };
            let busy = waiters.len() >= BUSY;
            let answer = self.call(&key.0, key.1, min_seq, &traceparent).await;
            // The answer reflects the tenant as of at least `min_seq`,
            // whichever events asked.
            if let Ok(endpoints) = &answer {
                let mut state = self.state.lock().expect("resolver lock");
                state.answers.put(&key.0, key.1, min_seq, endpoints.clone());
            }
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

    async fn call(&self, tenant: &TenantId, event_type: EventType, min_seq: u64, traceparent: &TraceParent) -> Answer {
        let mut request = tonic::Request::new(ResolveRequest {
            tenant_id: tenant.to_string(),
            event_type: event_type.as_str().to_owned(),
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
            Ok(Ok(r)) => Ok(r
                .into_inner()
                .endpoints
                .iter()
                .filter_map(|e| Some(Target { id: EndpointId::parse(&e.endpoint_id).ok()?, filtered: e.filtered }))
                .collect()),
            // The tenant does not exist: the replica has applied the event's
            // config sequence (or, for an unstamped event, looked the tenant
            // up on the stream) before answering so.
            Ok(Err(s)) if s.code() == tonic::Code::NotFound => Ok(Endpoints::from([])),
            Ok(Err(s)) => Err(s),
            Err(_) => Err(Status::deadline_exceeded(format!("Resolve took longer than {CALL_TIMEOUT:?}"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CREATED: EventType = EventType::AppointmentBookingCreated;
    const CANCELLED: EventType = EventType::AppointmentBookingCancelled;

    fn tenant(id: &str) -> TenantId {
        TenantId::parse(id).expect("a tenant id")
    }

    fn endpoints(n: usize) -> Endpoints {
        (0..n).map(|_| Target { id: EndpointId::generate(), filtered: false }).collect()
    }

    /// A cache holding one answer for `acme`'s `CREATED`, asked for at sequence 10.
    fn with_answer() -> (Answers, Endpoints) {
        let mut answers = Answers::new(KEPT_TENANTS);
        let kept = endpoints(2);
        answers.put(&tenant("acme"), CREATED, 10, kept.clone());
        (answers, kept)
    }

    #[test]
    fn an_answer_serves_events_stamped_at_or_below_the_sequence_it_was_asked_for() {
        let (mut answers, kept) = with_answer();
        for stamped in [1, 9, 10] {
            assert_eq!(
                answers.get(&tenant("acme"), CREATED, stamped, Some(10)),
                Some(kept.clone()),
                "stamped {stamped}"
            );
        }
    }

    #[test]
    fn an_event_stamped_after_the_answer_was_asked_for_is_not_served_from_it() {
        let (mut answers, _) = with_answer();
        // The tenant changed at 11 before the event was published; the
        // Directory may not have applied that change yet.
        assert_eq!(answers.get(&tenant("acme"), CREATED, 11, Some(10)), None);
        assert_eq!(answers.get(&tenant("acme"), CREATED, 11, Some(11)), None);
    }

    #[test]
    fn an_unstamped_event_is_never_served_from_a_kept_answer() {
        let (mut answers, _) = with_answer();
        assert_eq!(answers.get(&tenant("acme"), CREATED, 0, Some(10)), None);
    }

    #[test]
    fn an_answer_from_an_unstamped_call_is_not_kept() {
        let mut answers = Answers::new(KEPT_TENANTS);
        answers.put(&tenant("acme"), CREATED, 0, endpoints(1));
        assert_eq!(answers.tenants(), 0);
    }

    #[test]
    fn a_config_event_of_the_tenant_in_the_directory_drops_its_older_answers_and_no_other_tenants() {
        let (mut answers, kept) = with_answer();
        answers.put(&tenant("other"), CREATED, 10, kept.clone());
        // Delivery's Directory applied a change of `acme` at 12: even an
        // event stamped before it gets a fresh answer, and the dropped
        // answer does not come back for it.
        assert_eq!(answers.get(&tenant("acme"), CREATED, 5, Some(12)), None);
        assert_eq!(answers.get(&tenant("acme"), CREATED, 5, Some(10)), None);
        assert_eq!(answers.get(&tenant("other"), CREATED, 5, Some(10)), Some(kept));
    }

    #[test]
    fn a_tenant_the_directory_does_not_hold_is_not_served_from_kept_answers() {
        let (mut answers, _) = with_answer();
        assert_eq!(answers.get(&tenant("acme"), CREATED, 10, None), None);
        assert_eq!(answers.tenants(), 0, "a deleted tenant's answers are dropped");
    }

    #[test]
    fn answers_are_kept_per_event_type() {
        let (mut answers, kept) = with_answer();
        assert_eq!(answers.get(&tenant("acme"), CANCELLED, 10, Some(10)), None);
        let other = endpoints(1);
        answers.put(&tenant("acme"), CANCELLED, 10, other.clone());
        assert_eq!(answers.get(&tenant("acme"), CANCELLED, 10, Some(10)), Some(other));
        assert_eq!(answers.get(&tenant("acme"), CREATED, 10, Some(10)), Some(kept));
    }

    #[test]
    fn a_newer_answer_replaces_an_older_one_and_not_the_other_way_round() {
        let (mut answers, _) = with_answer();
        let newer = endpoints(3);
        answers.put(&tenant("acme"), CREATED, 20, newer.clone());
        answers.put(&tenant("acme"), CREATED, 15, endpoints(1));
        assert_eq!(answers.get(&tenant("acme"), CREATED, 20, Some(20)), Some(newer));
    }

    #[test]
    fn types_that_resolve_alike_share_one_list() {
        let (mut answers, kept) = with_answer();
        let same: Endpoints = kept.iter().cloned().collect();
        answers.put(&tenant("acme"), CANCELLED, 10, same);
        let shared = answers.get(&tenant("acme"), CANCELLED, 10, Some(10)).unwrap();
        assert!(Arc::ptr_eq(&shared, &kept));
    }

    #[test]
    fn no_more_tenants_are_kept_than_the_cap() {
        let mut answers = Answers::new(3);
        for i in 0..10 {
            answers.put(&tenant(&format!("t{i}")), CREATED, 1, endpoints(1));
        }
        assert_eq!(answers.tenants(), 3);
        let latest = answers.get(&tenant("t9"), CREATED, 1, Some(1));
        assert!(latest.is_some(), "the tenant just kept is there");
    }
}
