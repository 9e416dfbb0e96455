//! An in-memory index of every tenant, kept current by an ordered consumer
//! on HOOKLINE_CONFIG. Reads never touch the network.
//!
//! Every process follows the stream on its own, so a replica may be a few
//! milliseconds (or, on a busy host, seconds) behind another. Where that
//! matters (a command, a tenant read, an event accepted after a change made
//! through another replica), the caller first asks the stream leader for
//! the tenant's last config sequence ([`Directory::sync_tenant`]) and waits,
//! bounded, until the index has applied it: read-your-writes across
//! replicas, at the price of one small request.
//!
//! Ingest needs this for every event, so it reads the whole stream's last
//! sequence instead, one read shared by every request waiting meanwhile
//! ([`Directory::fresh_stream_seq`]), and takes the tenant's sequence from
//! the index once it has applied that much ([`Directory::tenant_seq_as_of`]).
//! A message read per event would cost nats-server about a tenth of its CPU
//! and keep the config stream's blocks in its cache (BENCHMARKS.md). The one case
//! where the index can pass a sequence without holding a tenant's change is
//! a compaction that purged the change before this follower read it; the
//! follower notes every gap in the sequences it reads, and a tenant whose
//! range a gap crossed is read on its own as before.

use std::{
    collections::{HashMap, VecDeque},
    sync::{Arc, Mutex, RwLock},
    time::{Duration, Instant},
};

use async_nats::jetstream::{
    Context,
    consumer::{DeliverPolicy, pull::OrderedConfig},
    stream::{LastRawMessageErrorKind, Stream},
};
use futures_util::StreamExt;
use hookline_bus::CONFIG_STREAM;
use hookline_domain::{
    config::{ConfigEvent, TenantState},
    endpoint::EndpointConfig,
    ids::{EndpointId, TenantId},
};
use tokio::sync::{oneshot, watch};
use tokio_util::sync::CancellationToken;

use crate::Error;

/// Tenants, and the derived lookups kept in step with them on every event.
#[derive(Default)]
struct Index {
    tenants: HashMap<TenantId, Arc<TenantState>>,
    /// API key hash → tenant, so authentication is one lookup, not a scan.
    keys: HashMap<String, TenantId>,
    endpoints: usize,
    /// Deleted tenants (not created again since): the sequence of each
    /// one's `tenant.deleted`, the tenant subject's last message.
    deleted: HashMap<TenantId, u64>,
}

type Tenants = Arc<RwLock<Index>>;

/// Why a caller waits for the index to catch up: the `reason` label of
/// `hookline_config_wait_seconds` and `hookline_config_wait_timeouts_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WaitReason {
    /// A tenant or endpoint command, before it decides.
    Command,
    /// A tenant read on the subscriptions API (get, list).
    Read,
    /// `Resolve`, for an event stamped with a newer config sequence.
    Resolve,
    /// Ingest, before it checks an event's tenant.
    Ingest,
    /// Fan-out, before it reads an endpoint's payload filter for an event
    /// stamped with a newer config sequence.
    Fanout,
}

impl WaitReason {
    pub fn as_str(self) -> &'static str {
        match self {
            WaitReason::Command => "command",
            WaitReason::Read => "read",
            WaitReason::Resolve => "resolve",
            WaitReason::Ingest => "ingest",
            WaitReason::Fanout => "fanout",
        }
    }
}

/// How long a caller waits for its index to reach a sequence before it
/// answers UNAVAILABLE (and the client, or fan-out, retries).
pub const SYNC_WAIT: Duration = Duration::from_secs(3);

type Answer = Result<u64, Error>;

/// Coalesced reads of the stream's last sequence: one in flight; callers
/// arriving meanwhile wait for the next one, which starts after they
/// arrived (so it sees every change acknowledged before they asked).
#[derive(Default)]
struct ReadQueue {
    running: bool,
    waiting: Vec<oneshot::Sender<Answer>>,
}

/// The stream's last sequence, read after `asked_at`.
#[derive(Debug, Clone, Copy)]
pub struct FreshRead {
    pub seq: u64,
    pub asked_at: Instant,
}

/// Sequences the follower passed without reading them (purged before it
/// got there), and when it noticed.
#[derive(Debug, Clone, Copy)]
struct Gap {
    noticed: Instant,
    from: u64,
    to: u64,
}

/// How long noticed gaps are kept: longer than any caller waits for the
/// index ([`SYNC_WAIT`]) after its read.
const GAP_MEMORY: Duration = Duration::from_secs(10);
/// Gaps kept apart at most; more (a replay over purged history at start)
/// are merged into one that covers them all, which only sends more
/// tenants to the leader for a few seconds.
const MAX_GAPS: usize = 256;

type Gaps = Arc<Mutex<VecDeque<Gap>>>;

/// Shared, cheaply clonable handle to the index.
#[derive(Clone)]
pub struct Directory {
    tenants: Tenants,
    /// Stream sequence of the last config message applied.
    applied: watch::Receiver<u64>,
    /// HOOKLINE_CONFIG, for its last sequence and last-by-subject reads
    /// (both answered by the stream leader).
    stream: Stream<()>,
    stream_reads: Arc<Mutex<ReadQueue>>,
    gaps: Gaps,
}

impl Directory {
    /// Start following the config stream; returns once the index holds
    /// everything the stream held at start.
    pub async fn start(js: &Context, shutdown: CancellationToken) -> Result<Self, Error> {
        let (tx, applied) = watch::channel(0u64);
        let stream = js.get_stream_no_info(CONFIG_STREAM).await.map_err(Error::unavailable)?;
        let dir = Self { tenants: Arc::default(), applied, stream, stream_reads: Arc::default(), gaps: Arc::default() };
        let last = dir.stream_last_seq().await?;
        tokio::spawn(follow(js.clone(), dir.tenants.clone(), tx, dir.gaps.clone(), shutdown));
        dir.wait_applied(last, Duration::from_secs(60)).await?;
        Ok(dir)
    }

    async fn stream_last_seq(&self) -> Result<u64, Error> {
        // One STREAM.INFO on the handle held since start: this read is on
        // every ingest request's path.
        Ok(self.stream.get_info().await.map_err(Error::unavailable)?.state.last_sequence)
    }

    /// Wait until the index holds everything the stream holds now. For
    /// misses that may be a change made a moment ago through another replica;
    /// misses that come together (a deleted endpoint's tasks, taken by many
    /// workers at once) share one read of the stream's position
    /// ([`Self::fresh_stream_seq`]).
    pub async fn catch_up(&self) -> Result<(), Error> {
        let read = self.fresh_stream_seq().await?;
        self.wait_applied(read.seq, Duration::from_secs(2)).await
    }

    /// Wait until the index has applied stream sequence `seq`.
    pub async fn wait_applied(&self, seq: u64, timeout: Duration) -> Result<(), Error> {
        let mut rx = self.applied.clone();
        tokio::time::timeout(timeout, rx.wait_for(|s| *s >= seq))
            .await
            .map_err(|_| Error::unavailable(format!("config index did not reach sequence {seq} within {timeout:?}")))?
            .map_err(|_| Error::unavailable("config follower stopped"))?;
        Ok(())
    }

    /// The stream sequence of the last config message this index applied.
    pub fn applied(&self) -> u64 {
        *self.applied.borrow()
    }

    /// The sequence of the tenant's last config event, as the stream leader
    /// has it now; 0 when the tenant has none (it does not exist).
    pub async fn tenant_last_seq(&self, tenant: &TenantId) -> Result<u64, Error> {
        match self.stream.get_last_raw_message_by_subject(&hookline_bus::config_subject(tenant)).await {
            Ok(msg) => Ok(msg.sequence),
            Err(e) if e.kind() == LastRawMessageErrorKind::NoMessageFound => Ok(0),
            Err(source) => Err(Error::unavailable(crate::LastSeqError { tenant: tenant.clone(), source })),
        }
    }

    /// Wait (up to `timeout`) until the index holds `tenant` as of its
    /// config sequence `seq` (see [`Self::holds`]). A wait is observed in
    /// `hookline_config_wait_seconds{reason}`, a timeout counted in
    /// `hookline_config_wait_timeouts_total{reason}` and answered
    /// [`Error::Lagging`].
    pub async fn reach(&self, tenant: &TenantId, seq: u64, timeout: Duration, reason: WaitReason) -> Result<(), Error> {
        if self.holds(tenant, seq, self.applied()) {
            return Ok(());
        }
        self.observed_wait(seq, timeout, reason, self.wait_holds(tenant, seq, timeout)).await
    }

    /// Wait for `until` (bounded by `timeout`, for sequence `seq`),
    /// observed in `hookline_config_wait_seconds{reason}`; a timeout is
    /// counted and answered [`Error::Lagging`].
    async fn observed_wait(
        &self,
        seq: u64,
        timeout: Duration,
        reason: WaitReason,
        until: impl std::future::Future<Output = Result<Result<(), watch::error::RecvError>, tokio::time::error::Elapsed>>,
    ) -> Result<(), Error> {
        let started = Instant::now();
        let labels = hookline_telemetry::labels([("reason", reason.as_str())]);
        let m = hookline_telemetry::metrics();
        let reached = until.await;
        m.config_wait.get_or_create(&labels).observe(started.elapsed().as_secs_f64());
        match reached {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(_)) => Err(Error::unavailable("config follower stopped")),
            Err(_) => {
                m.config_wait_timeouts.get_or_create(&labels).inc();
                Err(Error::Lagging { wanted: seq, applied: self.applied(), waited: timeout })
            }
        }
    }

    /// Wait until the index holds `tenant` as of its config sequence `seq`
    /// (a command's own append); unavailable after `timeout`.
    pub async fn wait_tenant(&self, tenant: &TenantId, seq: u64, timeout: Duration) -> Result<(), Error> {
        self.wait_holds(tenant, seq, timeout)
            .await
            .map_err(|_| {
                Error::unavailable(format!(
                    "config index did not reach sequence {seq} of `{tenant}` within {timeout:?}"
                ))
            })?
            .map_err(|_| Error::unavailable("config follower stopped"))?;
        Ok(())
    }

    async fn wait_holds(
        &self,
        tenant: &TenantId,
        seq: u64,
        timeout: Duration,
    ) -> Result<Result<(), watch::error::RecvError>, tokio::time::error::Elapsed> {
        let mut rx = self.applied.clone();
        tokio::time::timeout(timeout, async move {
            rx.wait_for(|applied| self.holds(tenant, seq, *applied)).await.map(drop)
        })
        .await
    }

    /// Whether the index holds `tenant` as of its config sequence `seq`,
    /// having applied the stream up to `applied`.
    ///
    /// A tenant's own version, not the stream position, decides: compaction
    /// purges a tenant's events before its snapshot, so a follower may pass
    /// `seq` without having seen the event at `seq`, whose effect it gets
    /// only from the snapshot later on. A tenant the index does not hold is
    /// waited for by stream position, as without compaction.
    fn holds(&self, tenant: &TenantId, seq: u64, applied: u64) -> bool {
        match self.tenants.read().expect("directory lock").tenants.get(tenant) {
            Some(t) => t.version >= seq,
            None => applied >= seq,
        }
    }

    /// Read-your-writes for one tenant: wait until the index holds every
    /// config event of `tenant` that the stream held when this was called.
    /// Returns that event's sequence (0: the tenant has none).
    pub async fn sync_tenant(&self, tenant: &TenantId, reason: WaitReason) -> Result<u64, Error> {
        let seq = self.tenant_last_seq(tenant).await?;
        self.reach(tenant, seq, SYNC_WAIT, reason).await?;
        Ok(seq)
    }

    /// The stream's last sequence, read from the stream leader after this
    /// call began, one read shared by every caller that arrives while
    /// another is in flight: a burst of events for ten thousand tenants
    /// costs a read per round trip, not one per tenant.
    pub async fn fresh_stream_seq(&self) -> Result<FreshRead, Error> {
        let asked_at = Instant::now();
        let (tx, rx) = oneshot::channel();
        let lead = {
            let mut queue = self.stream_reads.lock().expect("reads lock");
            queue.waiting.push(tx);
            !std::mem::replace(&mut queue.running, true)
        };
        if lead {
            let this = self.clone();
            tokio::spawn(async move {
                loop {
                    let waiters = {
                        let mut queue = this.stream_reads.lock().expect("reads lock");
                        if queue.waiting.is_empty() {
                            queue.running = false;
                            return;
                        }
                        std::mem::take(&mut queue.waiting)
                    };
                    let answer = this.stream_last_seq().await;
                    for w in waiters {
                        let _ = w.send(answer.clone());
                    }
                }
            });
        }
        let seq = rx.await.unwrap_or_else(|_| Err(Error::unavailable("config sequence read was cancelled")))?;
        Ok(FreshRead { seq, asked_at })
    }

    /// The tenant's last config sequence as the stream held it at `read`
    /// (0: none), once the index holds it: what [`Self::sync_tenant`]
    /// answers, without a read per tenant. The index applies the stream in
    /// order, so having applied `read.seq` it holds each of the tenant's
    /// changes up to it, unless compaction purged one before the follower
    /// read it (the snapshot with its effect then comes later): a gap
    /// noticed since `read` in the tenant's range sends this tenant to the
    /// stream leader on its own.
    pub async fn tenant_seq_as_of(&self, tenant: &TenantId, read: FreshRead, reason: WaitReason) -> Result<u64, Error> {
        if self.applied() < read.seq {
            let mut rx = self.applied.clone();
            let applied =
                tokio::time::timeout(SYNC_WAIT, async move { rx.wait_for(|s| *s >= read.seq).await.map(drop) });
            self.observed_wait(read.seq, SYNC_WAIT, reason, applied).await?;
        }
        let seq = self.version_of(tenant);
        if skipped_since(&self.gaps.lock().expect("gaps lock"), read.asked_at, seq, read.seq) {
            tracing::debug!(tenant = %tenant, "config index passed a purged sequence; reading the tenant's own");
            return self.sync_tenant(tenant, reason).await;
        }
        Ok(seq)
    }

    /// The sequence of the tenant's last config event the index applied:
    /// its state's version, its tombstone's, or 0.
    fn version_of(&self, tenant: &TenantId) -> u64 {
        let index = self.tenants.read().expect("directory lock");
        match index.tenants.get(tenant) {
            Some(t) => t.version,
            None => index.deleted.get(tenant).copied().unwrap_or(0),
        }
    }

    pub fn tenant(&self, id: &TenantId) -> Option<Arc<TenantState>> {
        self.tenants.read().expect("directory lock").tenants.get(id).cloned()
    }

    /// Shared with the index: an attempt holds a pointer, not a copy.
    pub fn endpoint(&self, tenant: &TenantId, endpoint: &EndpointId) -> Option<Arc<EndpointConfig>> {
        self.tenant(tenant)?.endpoints.get(endpoint).cloned()
    }

    /// [`Self::endpoint`], catching up once on a miss: it may have been
    /// created a moment ago through another replica. A miss after that is
    /// an endpoint that does not exist (deleted).
    pub async fn find_endpoint(&self, tenant: &TenantId, endpoint: &EndpointId) -> Option<Arc<EndpointConfig>> {
        let found = self.endpoint(tenant, endpoint);
        if found.is_some() {
            return found;
        }
        let _ = self.catch_up().await;
        self.endpoint(tenant, endpoint)
    }

    /// The tenant owning the API key with this hash.
    pub fn tenant_of_key(&self, hash: &str) -> Option<TenantId> {
        self.tenants.read().expect("directory lock").keys.get(hash).cloned()
    }

    /// The sequence of the tenant's `tenant.deleted` when the tenant was
    /// deleted and not created again.
    pub fn tombstone(&self, id: &TenantId) -> Option<u64> {
        self.tenants.read().expect("directory lock").deleted.get(id).copied()
    }

    /// Every deleted tenant (not created again) with its tombstone's sequence.
    pub fn tombstones(&self) -> Vec<(TenantId, u64)> {
        self.tenants.read().expect("directory lock").deleted.iter().map(|(t, s)| (t.clone(), *s)).collect()
    }

    pub fn tenant_ids(&self) -> Vec<TenantId> {
        self.tenants.read().expect("directory lock").tenants.keys().cloned().collect()
    }

    /// One page of the tenants whose id contains `query` (ignoring case),
    /// ordered by id, starting after `after`. One pass over the index under
    /// the read lock, and only the page is sorted, so a page of 10,000
    /// tenants costs a scan, not a sort of them all.
    pub fn find_tenants(&self, query: &str, after: Option<&TenantId>, limit: usize) -> TenantPage {
        let index = self.tenants.read().expect("directory lock");
        page_of(index.tenants.values(), query, after, limit)
    }
}

/// See [`Directory::find_tenants`].
fn page_of<'a>(
    tenants: impl Iterator<Item = &'a Arc<TenantState>>,
    query: &str,
    after: Option<&TenantId>,
    limit: usize,
) -> TenantPage {
    // Ids are lower-case by construction.
    let query = query.to_lowercase();
    let mut total = 0;
    let mut rest: Vec<&Arc<TenantState>> = Vec::new();
    for t in tenants {
        if !t.id.as_str().contains(query.as_str()) {
            continue;
        }
        total += 1;
        if after.is_none_or(|a| &t.id > a) {
            rest.push(t);
        }
    }
    let more = rest.len() > limit;
    if more {
        rest.select_nth_unstable_by(limit, |a, b| a.id.cmp(&b.id));
        rest.truncate(limit);
    }
    rest.sort_unstable_by(|a, b| a.id.cmp(&b.id));
    TenantPage { tenants: rest.into_iter().cloned().collect(), total, more }
}

/// What [`Directory::find_tenants`] found.
#[derive(Debug)]
pub struct TenantPage {
    /// The page, ordered by id.
    pub tenants: Vec<Arc<TenantState>>,
    /// Tenants matching the query in all.
    pub total: usize,
    /// Whether matching tenants follow the page.
    pub more: bool,
}

/// Apply the stream to the index for as long as the process runs; if the
/// consumer ends, a new one resumes after the last applied sequence.
async fn follow(js: Context, tenants: Tenants, tx: watch::Sender<u64>, gaps: Gaps, shutdown: CancellationToken) {
    while !shutdown.is_cancelled() {
        let start = *tx.borrow() + 1;
        let messages = async {
            let consumer = js
                .get_stream(CONFIG_STREAM)
                .await?
                .create_consumer(OrderedConfig {
                    filter_subject: hookline_bus::CONFIG_ALL.into(),
                    deliver_policy: DeliverPolicy::ByStartSequence { start_sequence: start },
                    ..Default::default()
                })
                .await?;
            Ok::<_, hookline_bus::Source>(consumer.messages().await?)
        };
        let mut messages = match messages.await {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(error = %e, "config follower: cannot consume; retrying");
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
        };
        loop {
            let next = tokio::select! {
                _ = shutdown.cancelled() => return,
                next = messages.next() => next,
            };
            let msg = match next {
                Some(Ok(m)) => m,
                Some(Err(e)) => {
                    tracing::warn!(error = %e, "config follower: consumer error, continuing");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                }
                None => break,
            };
            let Ok(seq) = msg.info().map(|i| i.stream_sequence) else { continue };
            let previous = *tx.borrow();
            if seq > previous + 1 {
                // Noted before the sequence is published, so a caller woken
                // by it sees the gap.
                note_gap(&gaps, previous + 1, seq - 1);
            }
            match serde_json::from_slice::<ConfigEvent>(&msg.payload) {
                Ok(event) => apply(&tenants, msg.subject.as_str(), &event, seq),
                Err(e) => tracing::error!(seq, error = %e, "config follower: unreadable config event skipped"),
            }
            tx.send_replace(seq);
        }
        tracing::warn!("config follower: consumer ended; resuming");
    }
}

/// Whether the follower, since `since`, passed a purged sequence in
/// `(after, upto]`.
fn skipped_since(gaps: &VecDeque<Gap>, since: Instant, after: u64, upto: u64) -> bool {
    gaps.iter().any(|g| g.noticed >= since && g.to > after && g.from <= upto)
}

fn note_gap(gaps: &Mutex<VecDeque<Gap>>, from: u64, to: u64) {
    let now = Instant::now();
    let mut gaps = gaps.lock().expect("gaps lock");
    while gaps.front().is_some_and(|g| now.duration_since(g.noticed) > GAP_MEMORY) {
        gaps.pop_front();
    }
    if gaps.len() >= MAX_GAPS {
        let first = gaps.front().map_or(from, |g| g.from);
        gaps.clear();
        gaps.push_back(Gap { noticed: now, from: first, to });
    } else {
        gaps.push_back(Gap { noticed: now, from, to });
    }
}

fn apply(index: &RwLock<Index>, subject: &str, event: &ConfigEvent, seq: u64) {
    let Some(id) = hookline_bus::tenant_of(subject).and_then(|t| TenantId::parse(t).ok()) else {
        tracing::error!(subject, "config follower: subject without a valid tenant skipped");
        return;
    };
    let mut guard = index.write().expect("directory lock");
    let index = &mut *guard;
    // Taken out of the map so that, when no reader holds it (always during
    // the replay at start), the state changes in place instead of being
    // copied for every event.
    let current = index.tenants.remove(&id).map(|old| {
        index.endpoints -= old.endpoints.len();
        for k in old.api_keys.values() {
            index.keys.remove(&k.hash);
        }
        Arc::try_unwrap(old).unwrap_or_else(|shared| (*shared).clone())
    });
    if let ConfigEvent::TenantDeleted { .. } = event {
        forget(index, id, seq);
        return;
    }
    match TenantState::evolve(current, event, seq) {
        Some(next) => {
            index.deleted.remove(&id);
            index.endpoints += next.endpoints.len();
            for k in next.api_keys.values() {
                index.keys.insert(k.hash.clone(), id.clone());
            }
            index.tenants.insert(id, Arc::new(next));
        }
        None => tracing::error!(
            subject,
            seq,
            kind = event.kind(),
            "config follower: event for a tenant that does not exist"
        ),
    }
    let m = hookline_telemetry::metrics();
    m.directory_tenants.set(index.tenants.len() as i64);
    m.directory_endpoints.set(index.endpoints as i64);
}

/// `tenant.deleted`: the tenant, its endpoints and its API keys leave the
/// index (the caller has already uncounted them), and its tombstone is kept
/// for the erasure and for a later `tenant.created` to append after.
fn forget(index: &mut Index, id: TenantId, seq: u64) {
    index.tenants.remove(&id);
    index.deleted.insert(id, seq);
    let m = hookline_telemetry::metrics();
    m.directory_tenants.set(index.tenants.len() as i64);
    m.directory_endpoints.set(index.endpoints as i64);
}

#[cfg(test)]
mod tests {
    #[test]
    fn only_a_gap_noticed_after_the_read_within_the_tenants_range_sends_it_to_the_leader() {
        use super::{Gap, MAX_GAPS, VecDeque, note_gap, skipped_since};
        use std::{sync::Mutex, time::Instant};
        let before = Instant::now();
        let gaps = Mutex::new(VecDeque::new());
        note_gap(&gaps, 10, 12);
        let after = Instant::now();
        let gaps = gaps.into_inner().unwrap();
        // The tenant's version 9, the stream read at 20: sequences 10..=12
        // may have been its own.
        assert!(skipped_since(&gaps, before, 9, 20));
        assert!(skipped_since(&gaps, before, 11, 20), "a gap reaching past the version");
        assert!(!skipped_since(&gaps, before, 12, 20), "the tenant's own change is past the gap");
        assert!(!skipped_since(&gaps, before, 3, 9), "the read ended before the gap");
        assert!(!skipped_since(&gaps, after, 9, 20), "noticed before the read began");

        let many = Mutex::new(VecDeque::new());
        for i in 0..(MAX_GAPS as u64 + 5) {
            note_gap(&many, 10 * i + 1, 10 * i + 2);
        }
        let many = many.into_inner().unwrap();
        assert!(many.len() < MAX_GAPS, "merged, not grown without bound");
        let Gap { from, to, .. } = *many.front().unwrap();
        assert!(from <= 1 && to >= 10 * MAX_GAPS as u64 + 2, "the merged gap still covers every one: {from}..={to}");
        assert!(skipped_since(&many, before, 40, 45));
    }

    use hookline_domain::endpoint::Plan;

    use super::*;

    fn tenant(id: &str) -> Arc<TenantState> {
        Arc::new(TenantState {
            id: TenantId::parse(id).unwrap(),
            plan: Plan::Basic,
            webhooks_enabled: false,
            created_at: "2026-12-06T00:00:00.000Z".parse().unwrap(),
            endpoints: Default::default(),
            version: 1,
            api_keys: Default::default(),
            events_since_snapshot: 1,
            contact: Default::default(),
        })
    }

    #[test]
    fn a_deleted_tenant_leaves_the_index_with_its_keys_and_endpoints_and_its_tombstone_stays_until_it_is_created_again()
    {
        use hookline_domain::{
            config::{Command, decide},
            endpoint::{EndpointUrl, Layout},
        };
        let index = RwLock::new(Index::default());
        let id = TenantId::parse("acme").unwrap();
        let mut seq = 0;
        let mut run = |cmd: Command| {
            let state = index.read().unwrap().tenants.get(&id).cloned();
            for event in decide(&id, state.as_deref(), cmd).unwrap() {
                seq += 1;
                apply(&index, "hookline.config.acme", &event, seq);
            }
            seq
        };
        run(Command::CreateTenant { plan: Plan::Business, webhooks_enabled: true, contact: Default::default() });
        for _ in 0..2 {
            run(Command::CreateEndpoint {
                url: EndpointUrl::parse("https://erp.example.com/h").unwrap(),
                email: None,
                auth_header: None,
                event_types: vec![],
                layout: Layout::Envelope,
                enabled: true,
                description: String::new(),
                rate_limit: None,
                filters: Vec::new(),
            });
        }
        run(Command::CreateApiKey { key_id: "key_1".into(), name: "k".into(), hash: "ab12".into() });
        assert_eq!((index.read().unwrap().endpoints, index.read().unwrap().keys.len()), (2, 1));
        let tombstone = run(Command::DeleteTenant { confirm: "acme".into() });
        {
            let i = index.read().unwrap();
            assert!(i.tenants.is_empty() && i.keys.is_empty(), "the tenant and its API key are gone");
            assert_eq!(i.endpoints, 0);
            assert_eq!(i.deleted.get(&id), Some(&tombstone));
        }
        run(Command::CreateTenant { plan: Plan::Basic, webhooks_enabled: false, contact: Default::default() });
        let i = index.read().unwrap();
        assert!(i.deleted.is_empty(), "created again, it is no longer deleted");
        assert!(i.tenants[&id].endpoints.is_empty());
    }

    fn ids(page: &TenantPage) -> Vec<&str> {
        page.tenants.iter().map(|t| t.id.as_str()).collect()
    }

    #[test]
    fn pages_of_ten_thousand_tenants_come_in_id_order_with_the_match_count() {
        let all: Vec<_> = (0..10_000).rev().map(|i| tenant(&format!("salon-{i:05}"))).collect();
        let started = Instant::now();
        let first = page_of(all.iter(), "", None, 50);
        let took = started.elapsed();
        assert_eq!(first.total, 10_000);
        assert!(first.more);
        assert_eq!(ids(&first)[..2], ["salon-00000", "salon-00001"]);
        assert_eq!(first.tenants.len(), 50);
        let second = page_of(all.iter(), "", first.tenants.last().map(|t| &t.id), 50);
        assert_eq!(ids(&second)[0], "salon-00050");
        // Case is ignored; the page after the last match is empty.
        let found = page_of(all.iter(), "SALON-0999", None, 500);
        assert_eq!((found.total, found.more, found.tenants.len()), (10, false, 10));
        let last = found.tenants.last().map(|t| t.id.clone());
        let after_last = page_of(all.iter(), "salon-0999", last.as_ref(), 500);
        assert_eq!((after_last.total, after_last.more, after_last.tenants.len()), (10, false, 0));
        eprintln!("a page of 50 out of 10,000 tenants: {took:?}");
    }
}
