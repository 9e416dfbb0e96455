//! The retry store: a retry due later waits in HOOKLINE_RETRY under the
//! second it is due (`hookline.retry.<due second>.ref`), not in the shared
//! `workers` consumer.
//!
//! Why: a task handed back to JetStream with a delay (`Nak`) stays
//! delivered and unacknowledged on `workers` for its whole delay. Each one
//! takes one of the consumer's `max_ack_pending` slots and one entry in
//! nats-server's in-memory pending map, so with endpoints failing for hours
//! a million waiting retries reach the cap (then the consumer hands out
//! nothing, fresh deliveries included) and grow the server's memory. A
//! stored message that no consumer has taken costs neither.
//!
//! What a waiting retry is, and why: a [`TaskRef`] (the task without its
//! event, which stays in HOOKLINE_EVENTS at `event_seq`, as parked tasks
//! hold it), its tenant in the header [`RETRY_TENANT_HEADER`] and its
//! traceparent, on the one subject of its due second, with no message id.
//! What nats-server keeps in memory for a stored message is per subject
//! (about 170 bytes while the blocks just written are cached, 50 after) and
//! per message id in the duplicate window (about 120 bytes); the payload
//! stays on disk. One subject per retry (`<due>.<tenant>.<endpoint>`, the
//! layout before) and one id each took a million waiting retries to 469 MiB
//! of nats-server RSS; one subject per second is at most 86,400 a day
//! whatever the number of tenants and endpoints (BENCHMARKS.md has the
//! figures). The reference also cuts a retry from about 1.1 KB to about
//! 460 bytes on disk, and the mover reads the event back when it moves the
//! task. A retry whose event is gone by then (archived: waiting longer than
//! `HOOKLINE_ARCHIVE_AFTER`; or purged) cannot be sent: the mover records
//! its outcome instead, `failed` with error kind `event_expired`, as the
//! parking sweeper does, so the delivery log shows how it ended.
//!
//! Without a message id, duplicates are absorbed one step later. A retry
//! stored twice waits as two copies: a publish the writer repeats (same
//! second), or an attempt repeated after a lost ack, whose retry the
//! workers schedule with the same jitter (drawn from the delivery id and
//! attempt, not at random), so it is due later by only as long as the repeat
//! came later (`HOOKLINE_ACK_WAIT`, a minute by default). The mover stores
//! both copies on HOOKLINE_DISPATCH under the task's one message id
//! (`<delivery>.<attempt>`), and HOOKLINE_DISPATCH's 3 minute duplicate
//! window keeps the first: copies moved within three minutes of each other
//! are one attempt. An id per retry in HOOKLINE_RETRY's own window would
//! absorb them earlier, at a cost of memory proportional to the rate of
//! failures, which is what a burst of them must not cost.
//!
//! Erasing a tenant: the subject no longer names it, so `DeleteTenant`
//! reads HOOKLINE_RETRY's headers and deletes the tenant's retries one by
//! one (`hookline_bus::erase_tenant`); it purges the tenant's events first,
//! so a retry it has not reached yet has nothing left to send.
//!
//! Retries an older version stored (`hookline.retry.<due>.<tenant>.<endpoint>`,
//! the whole task, with its message id) wait under the same seconds; the
//! mover reads both layouts through the same filter (`hookline.retry.<due>.>`)
//! and moves an old one as it is.
//!
//! Writers: a worker whose next attempt is due at least
//! `HOOKLINE_RETRY_STORE_AFTER` ahead stores the task here and acks its own
//! task only once the store has acked. Sooner retries wait in
//! HOOKLINE_DISPATCH (`Nak` with the rest of the delay), where they are
//! short-lived.
//!
//! The mover ([`run`], in every delivery process) walks the due seconds in
//! order; a second is due once it has passed. For a second that holds
//! tasks, it reads them through an ephemeral consumer filtered on
//! `hookline.retry.<second>.>` (no acks), stores each on HOOKLINE_DISPATCH
//! under its message id, awaits those acks, then purges that second below
//! the last sequence it read (`filter` and `seq`), so a task stored into it
//! meanwhile stays. A crash between storing and purging repeats the move,
//! and a second mover makes the same moves: HOOKLINE_DISPATCH's 3 minute
//! duplicate window absorbs both while the repeat comes within it. A mover
//! abandons a batch it read more than [`BATCH_DEADLINE`] ago, so two
//! running movers stay well inside the window; a process killed between
//! storing and purging that comes back more than 3 minutes later, with no
//! other delivery process running meanwhile, sends those retries again (at
//! least once, as everywhere).
//!
//! Clocks: a writer stores a task at least `HOOKLINE_RETRY_STORE_AFTER`
//! ahead of its own clock; a mover reads a second once it has passed on its
//! own clock. The delivery processes' clocks must agree to well within that
//! setting (NTP keeps them within milliseconds); otherwise a writer may store
//! into a second that a running mover has passed, where the task waits
//! until a mover starts again.
//!
//! Start: the mover begins at the second the oldest stored message was
//! stored (everything stored later is due later than that), so a mover that
//! was down catches up, oldest first, at most [`MOVE_RATE`] tasks a second:
//! a large backlog coming due does not crowd fresh deliveries out of the
//! workers. A moved task keeps its `not_before`; one moved early (clock
//! skew) waits its rest in HOOKLINE_DISPATCH.
//!
//! Finding the due seconds that hold tasks: with a retry schedule of days
//! the oldest stored message is days old, so after a restart the seconds to
//! look at number in the hundred thousands, nearly all empty. The mover asks
//! the stream about [`SPAN`] seconds at once (an ephemeral consumer filtered
//! on each of their subjects, whose `num_pending` counts their tasks
//! without delivering any) and halves a span that holds tasks down to its
//! first non-empty second: a day behind costs a few hundred requests, not
//! one per second. Caught up, it looks at the second or two that came due
//! since its last round, one message get each. The stream's state (for the
//! `retries_waiting` gauge) is read once every [`INFO_EVERY`], not every
//! round: on a stream with a million messages and the holes that purging by
//! second leaves, it is the one request whose work grows with the stream.

use std::time::{Duration, Instant};

use async_nats::jetstream::message::PublishMessage;
use async_nats::jetstream::{
    Context,
    consumer::{AckPolicy, DeliverPolicy, pull},
    context::PublishAckFuture,
    response::Response,
    stream::{RawMessageErrorKind, Stream},
};
use futures_util::StreamExt;
use hookline_bus::{
    EVENTS_STREAM, MSG_ID, RETRY_STREAM, RETRY_TENANT_HEADER, RetryBucket, dispatch_subject, outcomes_subject,
    retry_bucket_filter, retry_subject, retry_tenant_and_endpoint_of,
};
use hookline_domain::{
    delivery::{DispatchTask, TaskRef},
    ids::TenantId,
};
use hookline_telemetry::{metrics, trace::TRACEPARENT};
use hookline_tenants::Directory;
use tokio_util::sync::CancellationToken;

use crate::{
    error::MoveError,
    park::{Restored, outcome_message, restore_ref},
    worker::{unavailable_outcome, usable_endpoint},
};

/// Tasks one process moves to HOOKLINE_DISPATCH per second at most.
pub const MOVE_RATE: usize = 2_000;
/// Tasks read and stored at once.
const BATCH: usize = 500;
/// A batch read longer ago than this is not stored: another mover may have
/// moved and purged it meanwhile, and a repeat must come well within
/// HOOKLINE_DISPATCH's duplicate window
/// ([`hookline_bus::DISPATCH_DUPLICATE_WINDOW`]), which the build checks.
pub const BATCH_DEADLINE: Duration = Duration::from_secs(60);
const _: () = assert!(
    2 * BATCH_DEADLINE.as_secs() < hookline_bus::DISPATCH_DUPLICATE_WINDOW.as_secs(),
    "a mover's repeat must come well within HOOKLINE_DISPATCH's duplicate window"
);
/// Seconds looked at per round at most, so a long walk over empty seconds
/// (after a restart) yields to shutdown and to the rate between rounds.
const SECONDS_PER_ROUND: u64 = 20_000;
/// Seconds one request asks about when the mover is behind: one consumer
/// filter subject each, so one create request stays well under NATS's
/// 1 MiB payload limit and the server's check of its filters stays cheap.
pub const SPAN: u64 = 256;
/// Rounds while there is a backlog, and while there is none.
const BUSY_ROUND: Duration = Duration::from_millis(100);
const IDLE_ROUND: Duration = Duration::from_millis(500);
/// How far before the oldest message's stored time the walk starts: the
/// writers' clocks may lag the server's a little.
const CLOCK_MARGIN_SECS: u64 = 60;
/// How often the mover reads the stream's state (the gauge of waiting
/// retries, and whether the stream is empty).
pub const INFO_EVERY: Duration = Duration::from_secs(10);
/// Events read back from HOOKLINE_EVENTS at once while a batch is moved.
const EVENT_READS: usize = 32;

/// The next attempt's task as it is stored: on the retry store's second
/// when it is due at least `store_after` from now (a [`TaskRef`], see the
/// module doc), else whole on HOOKLINE_DISPATCH under its message id.
pub(crate) fn next_task_message(
    task: &DispatchTask,
    traceparent: &str,
    store_after: Duration,
) -> (String, PublishMessage) {
    let (tenant, endpoint) = (&task.event.tenant_id, &task.endpoint_id);
    let due = task.not_before.as_ref().map(|t| t.parsed().timestamp_millis());
    let now = chrono::Utc::now().timestamp_millis();
    match due {
        Some(due) if due.saturating_sub(now) >= i64::try_from(store_after.as_millis()).unwrap_or(i64::MAX) => {
            let payload = serde_json::to_vec(&TaskRef::from(task)).expect("tasks serialise");
            (retry_subject(RetryBucket::of_millis(due)), stored_ref(payload.into(), tenant, traceparent))
        }
        _ => {
            let payload = serde_json::to_vec(task).expect("tasks serialise").into();
            (dispatch_subject(tenant, endpoint), crate::task_message(payload, Some(traceparent), task.msg_id()))
        }
    }
}

/// A retry stored as a reference: its tenant and traceparent in headers,
/// no message id (see the module doc).
pub fn stored_ref(task_ref: bytes::Bytes, tenant: &TenantId, traceparent: &str) -> PublishMessage {
    PublishMessage::build()
        .payload(task_ref)
        .header(RETRY_TENANT_HEADER, tenant.as_str())
        .header(TRACEPARENT, traceparent)
}

/// Move due retries to HOOKLINE_DISPATCH until `shutdown`; `directory`
/// (delivery's config follower) says which endpoints take no attempts.
pub async fn run(js: Context, directory: Directory, shutdown: CancellationToken) -> Result<(), hookline_bus::BusError> {
    run_with_clock(js, directory, shutdown, || chrono::Utc::now().timestamp_millis()).await
}

/// [`run`] with the clock the mover reads due seconds by (Unix
/// milliseconds): a test moves it a day ahead to start a mover a day late.
pub async fn run_with_clock(
    js: Context,
    directory: Directory,
    shutdown: CancellationToken,
    clock: impl Fn() -> i64 + Send,
) -> Result<(), hookline_bus::BusError> {
    let err = |e| hookline_bus::BusError::Stream { stream: RETRY_STREAM, source: Box::new(e) };
    let stream = js.get_stream(RETRY_STREAM).await.map_err(err)?;
    let events = js.get_stream(EVENTS_STREAM).await.map_err(err)?;
    let mut mover = Mover { js, stream, events, directory, next: None, clock, spans: true, info_at: None };
    let mut round = Duration::ZERO;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            _ = tokio::time::sleep(round) => {}
        }
        round = match mover.round(&shutdown).await {
            Ok(Backlog::Behind) => BUSY_ROUND,
            Ok(Backlog::CaughtUp) => IDLE_ROUND,
            Err(e) => {
                tracing::warn!(error = %e, "retry store: moving due retries failed; retrying");
                IDLE_ROUND
            }
        };
    }
}

/// What a span of seconds holds.
enum Span {
    FirstAt(RetryBucket),
    Empty,
    /// The server cannot filter a consumer on several subjects.
    Unsupported,
}

/// Whether a round left due seconds for the next.
enum Backlog {
    Behind,
    CaughtUp,
}

struct Mover<C> {
    js: Context,
    stream: Stream,
    /// Where a retry stored as a reference finds its event.
    events: Stream,
    /// Which endpoints are disabled or deleted: their retries are recorded,
    /// not moved.
    directory: Directory,
    /// When the stream's state was last read (every [`INFO_EVERY`]).
    info_at: Option<Instant>,
    /// The oldest second that may still hold due tasks; `None` until the
    /// stream has been read once.
    next: Option<RetryBucket>,
    clock: C,
    /// Whether the server filters a consumer on several subjects
    /// (nats-server 2.10 and later); without it each second is looked at
    /// on its own.
    spans: bool,
}

impl<C: Fn() -> i64> Mover<C> {
    async fn round(&mut self, shutdown: &CancellationToken) -> Result<Backlog, MoveError> {
        let now = (self.clock)();
        let last_due = RetryBucket::last_due_at(now);
        let state = if self.next.is_none() || self.info_at.is_none_or(|at| at.elapsed() >= INFO_EVERY) {
            let state = self.stream.info().await?.state.clone();
            self.info_at = Some(Instant::now());
            metrics().retries_waiting.set(i64::try_from(state.messages).unwrap_or(i64::MAX));
            Some(state)
        } else {
            None
        };
        let next = match (self.next, state) {
            (_, Some(state)) if state.messages == 0 => {
                // Nothing waits: every second up to now is empty.
                self.next = Some(last_due.next());
                return Ok(Backlog::CaughtUp);
            }
            (Some(next), _) => next,
            (None, state) => {
                let state = state.expect("read when the walk has not started");
                let stored = u64::try_from(state.first_timestamp.unix_timestamp()).unwrap_or(0);
                let start = RetryBucket(stored.saturating_sub(CLOCK_MARGIN_SECS)).min(last_due.next());
                tracing::info!(waiting = state.messages, from = %start, "retry store: moving due retries from the oldest stored second");
                start
            }
        };
        let (started, mut budget, mut at, mut looked) = (Instant::now(), MOVE_RATE, next, 0);
        while at <= last_due && budget > 0 && looked < SECONDS_PER_ROUND && !shutdown.is_cancelled() {
            // More than one second to look at: skip the empty ones a span at a time.
            let to = RetryBucket(last_due.0.min(at.0 + (SECONDS_PER_ROUND - looked) - 1));
            if to > at && self.spans {
                match self.first_waiting(at, to).await? {
                    Span::FirstAt(found) => {
                        looked += found.0 - at.0;
                        at = found;
                    }
                    Span::Empty => {
                        looked += to.0 - at.0 + 1;
                        at = to.next();
                        continue;
                    }
                    Span::Unsupported => {
                        tracing::info!(
                            "retry store: this nats-server filters a consumer on one subject only; looking at each second on its own"
                        );
                        self.spans = false;
                    }
                }
            }
            let (moved, emptied) = self.move_second(at, budget).await?;
            budget -= moved;
            looked += 1;
            if !emptied {
                break;
            }
            at = at.next();
        }
        self.next = Some(at);
        // The rate: a round that moved a full budget waits out its second.
        if budget == 0 {
            let rest = Duration::from_secs(1).saturating_sub(started.elapsed());
            tokio::select! {
                _ = shutdown.cancelled() => {}
                _ = tokio::time::sleep(rest) => {}
            }
        }
        Ok(if at <= last_due { Backlog::Behind } else { Backlog::CaughtUp })
    }

    /// The first second in `from..=to` that holds tasks, if any: spans of
    /// [`SPAN`] seconds asked about at once, the first one holding tasks
    /// halved down to its first non-empty second.
    async fn first_waiting(&self, from: RetryBucket, to: RetryBucket) -> Result<Span, MoveError> {
        let mut start = from.0;
        while start <= to.0 {
            let end = to.0.min(start + SPAN - 1);
            match self.any_waiting(start, end).await? {
                None => return Ok(Span::Unsupported),
                Some(false) => {
                    start = end + 1;
                    continue;
                }
                Some(true) => {}
            }
            // `lo..=hi` holds tasks; halve it until it is one second.
            let (mut lo, mut hi) = (start, end);
            while lo < hi {
                let mid = lo + (hi - lo) / 2;
                match self.any_waiting(lo, mid).await? {
                    None => return Ok(Span::Unsupported),
                    Some(true) => hi = mid,
                    Some(false) => lo = mid + 1,
                }
            }
            return Ok(Span::FirstAt(RetryBucket(lo)));
        }
        Ok(Span::Empty)
    }

    /// Whether any task waits in the seconds `from..=to`: one message get
    /// for one second; for more, an ephemeral consumer filtered on each of
    /// them, whose pending count answers without delivering a message.
    /// `None` when the server ignored the filters (before 2.10), so the
    /// count would be the whole stream's.
    async fn any_waiting(&self, from: u64, to: u64) -> Result<Option<bool>, MoveError> {
        if from == to {
            return match self.stream.get_next_raw_message_by_subject(&retry_bucket_filter(RetryBucket(from))).await {
                Ok(_) => Ok(Some(true)),
                Err(e) if matches!(e.kind(), RawMessageErrorKind::NoMessageFound) => Ok(Some(false)),
                Err(e) => Err(e.into()),
            };
        }
        // The request by hand: async-nats's consumer config has no
        // `filter_subjects` without its `server_2_10` feature, which
        // changes every consumer request the services make.
        #[derive(serde::Serialize)]
        struct Create {
            stream_name: &'static str,
            config: SpanConfig,
        }
        #[derive(serde::Serialize)]
        struct SpanConfig {
            filter_subjects: Vec<String>,
            deliver_policy: &'static str,
            ack_policy: &'static str,
            mem_storage: bool,
            /// Nanoseconds: a consumer left behind by a crash goes by itself.
            inactive_threshold: u64,
        }
        #[derive(serde::Deserialize)]
        struct Created {
            name: String,
            num_pending: u64,
            config: CreatedConfig,
        }
        #[derive(serde::Deserialize)]
        struct CreatedConfig {
            #[serde(default)]
            filter_subjects: Vec<String>,
        }
        let create = Create {
            stream_name: RETRY_STREAM,
            config: SpanConfig {
                filter_subjects: (from..=to).map(|s| retry_bucket_filter(RetryBucket(s))).collect(),
                deliver_policy: "all",
                ack_policy: "none",
                mem_storage: true,
                inactive_threshold: 30_000_000_000,
            },
        };
        let subject = format!("CONSUMER.CREATE.{RETRY_STREAM}");
        let created = match self.js.request(subject, &create).await.map_err(MoveError::Span)? {
            Response::Ok(created) => created,
            Response::Err { error } => return Err(MoveError::SpanRefused(error)),
        };
        let Created { name, num_pending, config } = created;
        let _ = self.stream.delete_consumer(&name).await;
        Ok((!config.filter_subjects.is_empty()).then_some(num_pending > 0))
    }

    /// Move up to `budget` tasks of second `due`; returns how many moved and
    /// whether the second is empty now.
    async fn move_second(&self, due: RetryBucket, budget: usize) -> Result<(usize, bool), MoveError> {
        let filter = retry_bucket_filter(due);
        match self.stream.get_next_raw_message_by_subject(&filter).await {
            Ok(_) => {}
            Err(e) if matches!(e.kind(), RawMessageErrorKind::NoMessageFound) => return Ok((0, true)),
            Err(e) => return Err(e.into()),
        }
        let consumer = self
            .stream
            .create_consumer(pull::Config {
                filter_subject: filter.clone(),
                deliver_policy: DeliverPolicy::All,
                ack_policy: AckPolicy::None,
                inactive_threshold: Duration::from_secs(30),
                ..Default::default()
            })
            .await?;
        let moved = self.drain(&consumer, &filter, due, budget).await;
        let name = consumer.cached_info().name.clone();
        let _ = self.stream.delete_consumer(&name).await;
        moved
    }

    async fn drain(
        &self,
        consumer: &async_nats::jetstream::consumer::Consumer<pull::Config>,
        filter: &str,
        due: RetryBucket,
        budget: usize,
    ) -> Result<(usize, bool), MoveError> {
        let mut moved = 0;
        loop {
            let want = BATCH.min(budget - moved);
            if want == 0 {
                return Ok((moved, false));
            }
            let read_at = Instant::now();
            let mut messages = consumer.fetch().max_messages(want).messages().await?;
            let mut batch = Vec::with_capacity(want);
            while let Some(msg) = messages.next().await {
                batch.push(msg.map_err(MoveError::Read)?);
            }
            if batch.is_empty() {
                return Ok((moved, true));
            }
            let _budget = hookline_bus::ack_budget(batch.len()).await;
            let mut acks: Vec<PublishAckFuture> = Vec::with_capacity(batch.len());
            let mut last_seq = 0;
            for chunk in batch.chunks(EVENT_READS) {
                let moves = futures_util::future::try_join_all(chunk.iter().map(|m| self.move_of(m))).await?;
                if read_at.elapsed() > BATCH_DEADLINE {
                    return Err(MoveError::Late { due: due.0 });
                }
                for (msg, to) in chunk.iter().zip(moves) {
                    last_seq = hookline_bus::stream_sequence(msg.reply.as_deref()).ok_or(MoveError::NoSequence)?;
                    if let Some((subject, publish)) = to {
                        acks.push(self.js.send_publish(subject, publish).await?);
                    }
                }
            }
            for ack in acks {
                ack.await?;
            }
            // Stored in HOOKLINE_DISPATCH: only what was read goes.
            self.stream.purge().filter(filter).sequence(last_seq + 1).await?;
            moved += batch.len();
            metrics().retries_moved.inc_by(batch.len() as u64);
            tracing::debug!(due = due.0, moved = batch.len(), "retry store: moved due retries to dispatch");
        }
    }
}

impl<C> Mover<C> {
    /// Where a waiting retry goes and as what: the whole task to
    /// HOOKLINE_DISPATCH (a reference with its event read back; an older
    /// version's whole task as it is), or its outcome to HOOKLINE_OUTCOMES:
    /// `dropped` when its endpoint is disabled or deleted, `event_expired`
    /// when its event is gone. `None`: dropped (unreadable), with an error
    /// logged.
    ///
    /// A disabled endpoint's retries are recorded from the reference, as
    /// the workers would record them, without reading their events back:
    /// an endpoint auto-disabled after days of failure may have a million
    /// retries waiting, whose events lie scattered over the whole of
    /// HOOKLINE_EVENTS, and every block such a read touches stays in
    /// nats-server's memory for a while (README, "Memory of nats-server").
    async fn move_of(
        &self,
        msg: &async_nats::jetstream::Message,
    ) -> Result<Option<(String, PublishMessage)>, MoveError> {
        let headers = msg.headers.as_ref();
        let traceparent = hookline_bus::header(headers, TRACEPARENT);
        let Some(tenant) = hookline_bus::header(headers, RETRY_TENANT_HEADER) else {
            // Stored by an older version: the whole task, on its endpoint's subject.
            let Some(subject) = dispatch_subject_of(&msg.subject) else {
                tracing::error!(subject = %msg.subject, "retry store: a message outside the retry subjects dropped");
                return Ok(None);
            };
            let Some(msg_id) = hookline_bus::header(headers, MSG_ID) else {
                tracing::error!(subject = %msg.subject, "retry store: a retry without a message id dropped");
                return Ok(None);
            };
            return Ok(Some((subject, crate::task_message(msg.payload.clone(), traceparent, msg_id.to_owned()))));
        };
        let Ok(tenant) = TenantId::parse(tenant) else {
            tracing::error!(tenant, "retry store: a retry with an unreadable tenant dropped");
            return Ok(None);
        };
        let Ok(task_ref) = serde_json::from_slice::<TaskRef>(&msg.payload) else {
            tracing::error!(subject = %msg.subject, "retry store: an unreadable retry dropped");
            return Ok(None);
        };
        let (endpoint, msg_id) = (task_ref.endpoint_id.clone(), task_ref.msg_id());
        if let Err(why) = usable_endpoint(&self.directory, &tenant, &endpoint).await
            && let Some(outcome) = unavailable_outcome(&task_ref, &tenant, traceparent.unwrap_or_default(), why)
        {
            return Ok(Some((outcomes_subject(&tenant, &endpoint), outcome_message(&outcome))));
        }
        Ok(match restore_ref(&self.events, &tenant, task_ref).await.map_err(MoveError::Restore)? {
            Restored::Task(task) => {
                Some((dispatch_subject(&tenant, &endpoint), crate::task_message(task, traceparent, msg_id)))
            }
            Restored::Expired(outcome) => Some((outcomes_subject(&tenant, &endpoint), outcome_message(&outcome))),
            Restored::Dropped => None,
        })
    }
}

/// `hookline.dispatch.<tenant>.<endpoint>` for a retry stored on
/// `hookline.retry.<due>.<tenant>.<endpoint>`.
fn dispatch_subject_of(retry_subject: &str) -> Option<String> {
    let (tenant, endpoint) = retry_tenant_and_endpoint_of(retry_subject)?;
    Some(dispatch_subject(&tenant, &endpoint))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_retry_subject_maps_to_its_endpoints_dispatch_subject() {
        let s = "hookline.retry.1733480000.acme.ep_01JABCDEFGHJKMNPQRSTVWXYZ0";
        assert_eq!(dispatch_subject_of(s).as_deref(), Some("hookline.dispatch.acme.ep_01JABCDEFGHJKMNPQRSTVWXYZ0"));
        assert_eq!(dispatch_subject_of("hookline.retry.1.ACME!.ep_x"), None);
        assert_eq!(dispatch_subject_of("hookline.retry.1.acme"), None);
    }
}
