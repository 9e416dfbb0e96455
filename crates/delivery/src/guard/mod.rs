//! Per-endpoint isolation inside one delivery process: an in-flight cap,
//! a circuit breaker and a rate limit.
//!
//! # Layout
//! * [`gate`]: one endpoint's slots and the attempts queued for them.
//! * [`breaker`]: its circuit breaker.
//! * [`bucket`]: its rate limit, a token bucket.
//! * here: the [`Guard`] that holds a gate per endpoint and runs attempts
//!   through them.
//!
//! A task for a busy endpoint that is making progress queues its attempt
//! briefly for one of the endpoint's slots, and goes back to JetStream for a
//! moment if none frees up. A slot that finishes an attempt goes straight
//! on to the next queued one in the same task ([`Guard::run`]): a fast
//! endpoint at its cap never waits for a woken task to be scheduled between
//! two attempts. A task for an endpoint that is stuck (its cap in flight and
//! nothing finished for a while) or whose breaker is open is *parked*
//! instead (see [`crate::park`]): it waits in JetStream apart from the other
//! endpoints' tasks, and [`Guard::room`] says how many may come back. A slow
//! or failing endpoint therefore holds no more than its cap of worker slots,
//! and its waiting work costs neither memory here nor pulls from the shared
//! consumer.
//!
//! An endpoint uses its slots by slow start (see [`gate`]): one until an
//! attempt is answered, growing by one per answer to its cap, and back to
//! one when an attempt goes unanswered for the whole request timeout. A
//! black-holed endpoint thus holds one attempt permit instead of its cap of
//! them, and its other tasks are parked while that one waits.
//!
//! The guard also holds the process's attempt permits
//! (`HOOKLINE_DELIVERY_CONCURRENCY`, [`GuardSettings::attempts`]). An
//! attempt takes its permit in its slot, just before it starts, and is
//! timed from then: a wait for a permit is the process's, and must not make
//! an endpoint look slow (fan-out would leave its first attempts to the
//! workers, and a drain would shrink its window). Endpoints whose last
//! attempt went unanswered do not take those permits: they have a
//! compartment of their own ([`GuardSettings::unanswered`], an eighth as
//! many), each of their attempts takes one of its permits instead, and
//! when none is free their tasks are parked. Hundreds of black holes, each
//! costing a permit for the whole timeout, then take none of the permits
//! endpoints that answer use, however many holes there are.
//!
//! An endpoint with a rate limit also spaces its attempts: each reserves
//! the next free moment of its bucket and waits for it when that is near;
//! when it is further off, the task is parked and comes back at the pace
//! the bucket refills.

mod breaker;
mod bucket;
mod gate;

use std::{
    collections::HashMap,
    future::Future,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU8, Ordering},
    },
    time::{Duration, Instant},
};

use hookline_domain::{endpoint::RateLimit, ids::EndpointId};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, oneshot};

use self::{
    breaker::{Admission, Cooldown, Outcome},
    gate::{ABANDONED, Gate, Made, QUEUED, Queued, STARTED},
};

#[derive(Debug, Clone)]
pub struct GuardSettings {
    /// `HOOKLINE_DELIVERY_CONCURRENCY`: attempts in flight at most, across
    /// all endpoints that answer.
    pub attempts: usize,
    /// Attempts in flight per endpoint at most.
    pub per_endpoint: usize,
    /// Consecutive failures that open the breaker.
    pub breaker_threshold: u32,
    /// How long an open breaker waits before one probe is let through, at
    /// most: each failed probe doubles the wait, from `breaker_first_cooldown`.
    pub breaker_cooldown: Duration,
    /// How long a breaker that just opened waits before its first probe.
    pub breaker_first_cooldown: Duration,
    /// Attempts in flight at most, across all endpoints whose last attempt
    /// went unanswered (timed out): permits of their own, besides
    /// `attempts`, so those endpoints take none of the others'.
    pub unanswered: usize,
}

impl GuardSettings {
    /// The permits endpoints whose last attempt went unanswered have
    /// besides `HOOKLINE_DELIVERY_CONCURRENCY`: an eighth as many, at
    /// least one.
    pub fn unanswered_share(concurrency: usize) -> usize {
        (concurrency / 8).max(1)
    }
}

/// How long a task waits for a busy endpoint before going back to JetStream.
pub(crate) const MAX_WAIT: Duration = Duration::from_millis(500);

/// How far ahead a draining endpoint's slots are kept fed: the time a
/// drain step takes to bring tasks to them (fetch the parked messages, read
/// their events back), with room to spare, and well under [`MAX_WAIT`], so
/// tasks that arrive together are all taken before any is handed back busy.
pub const DRAIN_AHEAD: Duration = Duration::from_millis(200);
/// The shortest attempt time a drain window is sized for: an endpoint
/// never tried (or answering in microseconds) is not sent thousands at once.
const DRAIN_LATENCY_FLOOR: Duration = Duration::from_millis(5);
/// The most parked tasks one endpoint's drain has moved and not finished.
const MAX_DRAIN_WINDOW: usize = 500;

/// The most parked tasks one endpoint gets back per round of the parking
/// sweeper, however fast it has been finishing them.
const MAX_ROOM: usize = 2_000;

#[derive(Clone)]
pub struct Guard {
    settings: GuardSettings,
    gates: Arc<Mutex<HashMap<EndpointId, Arc<Gate>>>>,
    /// Permits for attempts at endpoints that answer.
    attempts: Arc<Semaphore>,
    /// Permits for attempts at endpoints whose last attempt went unanswered.
    unanswered: Arc<Semaphore>,
}

/// How an attempt went, as the guard counts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Accepted (2xx).
    Succeeded,
    /// Answered otherwise, or failed fast: the breaker counts a failure.
    Failed,
    /// No answer within the request timeout: a failure that also shrinks
    /// the endpoint's window to one and puts it among the unanswered.
    Unanswered,
}

impl From<bool> for Verdict {
    fn from(succeeded: bool) -> Self {
        if succeeded { Verdict::Succeeded } else { Verdict::Failed }
    }
}

/// A slot held by an attempt made in its caller's task; report the result
/// with [`Slot::finish`]. Dropping it hands the slot on to the queue.
struct Slot {
    guard: Guard,
    gate: Arc<Gate>,
    probe: bool,
    finished: bool,
    started: Instant,
    permit: Option<OwnedSemaphorePermit>,
}

/// Why a task must wait, and where.
#[derive(Debug, PartialEq)]
pub enum Wait {
    /// The endpoint has its cap in flight but is making progress: back to
    /// JetStream for this long.
    Busy(Duration),
    /// The endpoint has its cap in flight and nothing finished for a while:
    /// park the task.
    Stuck,
    /// The breaker is open, or half-open with its probe out: park the task.
    Open,
    /// The endpoint's rate limit has no room for it soon: park the task.
    Limited,
    /// The endpoint's last attempt went unanswered and the permits such
    /// endpoints share are taken: park the task.
    Unanswered,
}

impl Wait {
    /// The `reason` label of `hookline_delivery_deferrals_total`.
    pub fn reason(&self) -> &'static str {
        match self {
            Wait::Busy(_) => "endpoint_busy",
            Wait::Stuck => "endpoint_stuck",
            Wait::Open => "breaker_open",
            Wait::Limited => "rate_limited",
            Wait::Unanswered => "endpoint_unanswered",
        }
    }
}

/// A queued attempt whose result never came: a slot dropped it unmade,
/// which it does only when the breaker opened while it was queued.
fn turned_away(_: oneshot::error::RecvError) -> Wait {
    Wait::Open
}

impl Guard {
    pub fn new(settings: GuardSettings) -> Self {
        let attempts = Arc::new(Semaphore::new(settings.attempts.max(1)));
        let unanswered = Arc::new(Semaphore::new(settings.unanswered.max(1)));
        Self { settings, gates: Arc::default(), attempts, unanswered }
    }

    /// Whether one of the attempt permits of endpoints that answer is free
    /// now: fan-out makes a first attempt itself only then (see
    /// `Worker::fan_out_turn`).
    pub fn has_free_permit(&self) -> bool {
        self.attempts.available_permits() > 0
    }

    fn gate(&self, endpoint: &EndpointId) -> Arc<Gate> {
        let mut gates = self.gates.lock().expect("guard lock");
        gates.entry(endpoint.clone()).or_insert_with(|| Arc::new(Gate::new(self.settings.per_endpoint))).clone()
    }

    fn existing(&self, endpoint: &EndpointId) -> Option<Arc<Gate>> {
        self.gates.lock().expect("guard lock").get(endpoint).cloned()
    }

    /// Make the attempt `job` in one of the endpoint's slots, or say why
    /// the task must wait instead. `ok` tells the breaker whether it
    /// succeeded. The job runs in a slot's own task, which goes on to the
    /// next queued attempt; the caller waits for the result, at most a
    /// moment for a slot (none at all when the endpoint is stuck). With a
    /// slot free, the attempt is made in the caller's task. With a `limit`,
    /// the attempt first waits for its moment in the endpoint's bucket. In
    /// its slot, the job waits for an attempt permit before it starts.
    pub async fn run<R: Send + 'static, V: Into<Verdict>>(
        &self,
        endpoint: &EndpointId,
        limit: Option<RateLimit>,
        job: impl Future<Output = R> + Send + 'static,
        ok: impl FnOnce(&R) -> V + Send + 'static,
    ) -> Result<R, Wait> {
        let gate = self.gate(endpoint);
        let probe = match gate.breaker.lock().expect("breaker lock").admit(Instant::now()) {
            Admission::Through => false,
            Admission::Probe => true,
            Admission::TurnedAway => return Err(Wait::Open),
        };
        // An endpoint that last went unanswered makes its attempt only with
        // one of the permits such endpoints have, instead of one of the
        // others'; it holds it until the attempt is over (or dropped unmade).
        let share = if gate.is_unanswered() {
            match self.unanswered.clone().try_acquire_owned() {
                Ok(permit) => Some(permit),
                Err(_) => {
                    gate.drop_probe(probe);
                    return Err(Wait::Unanswered);
                }
            }
        } else {
            None
        };
        match gate.pace.reserve(limit, MAX_WAIT) {
            Some(wait) if wait.is_zero() => {}
            Some(wait) => tokio::time::sleep(wait).await,
            None => {
                gate.drop_probe(probe);
                return Err(Wait::Limited);
            }
        }
        let (tx, rx) = oneshot::channel();
        let state = Arc::new(AtomicU8::new(QUEUED));
        let attempts = self.attempts.clone();
        let queued = Queued {
            job: Box::pin(async move {
                let _permit = match share {
                    Some(share) => share,
                    None => attempts.acquire_owned().await.expect("the attempt permits are never closed"),
                };
                let started = Instant::now();
                let result = job.await;
                let verdict = ok(&result).into();
                let _ = tx.send(result);
                Made { verdict, took: started.elapsed() }
            }),
            probe,
            state: state.clone(),
        };
        let admitted = {
            let mut queue = gate.queue.lock().expect("queue lock");
            match gate.take_slot() {
                Some(permit) => Some((permit, queued)),
                None if gate.stuck() => {
                    gate.drop_probe(probe);
                    return Err(Wait::Stuck);
                }
                None => {
                    queue.push_back(queued);
                    None
                }
            }
        };
        match admitted {
            // A free slot: the attempt is made right here.
            Some((permit, queued)) => {
                let slot = Slot::new(self, gate, probe, permit);
                let made = queued.job.await;
                slot.finish(made);
                rx.await.map_err(turned_away)
            }
            None => self.wait_for(&gate, probe, state, rx).await,
        }
    }

    /// Wait for a queued attempt's result, or give up on it after a moment
    /// if no slot has taken it yet.
    async fn wait_for<R>(
        &self,
        gate: &Gate,
        probe: bool,
        state: Arc<AtomicU8>,
        mut rx: oneshot::Receiver<R>,
    ) -> Result<R, Wait> {
        if let Ok(result) = tokio::time::timeout(MAX_WAIT, &mut rx).await {
            return result.map_err(turned_away);
        }
        if state.compare_exchange(QUEUED, ABANDONED, Ordering::AcqRel, Ordering::Acquire).is_err() {
            // A slot took it just now: it is being made.
            return rx.await.map_err(turned_away);
        }
        gate.drop_probe(probe);
        Err(if gate.stuck() { Wait::Stuck } else { Wait::Busy(spread(Duration::from_millis(200))) })
    }

    /// A slot's task: make `next`, then every attempt queued behind it,
    /// then free the slot.
    async fn serve(self, gate: Arc<Gate>, mut permit: OwnedSemaphorePermit, mut next: Queued) {
        loop {
            let Queued { job, probe, state } = next;
            let taken = state.compare_exchange(QUEUED, STARTED, Ordering::AcqRel, Ordering::Acquire).is_ok();
            // The breaker may have opened while it was queued: turn it away
            // (dropping the job tells its task to park it).
            let open = !probe && !gate.breaker.lock().expect("breaker lock").is_closed();
            if taken && !open {
                let made = job.await;
                self.release(&gate, probe, made.took, Some(made.verdict));
                // An answer widened the window: more queued attempts may start.
                self.start_queued(&gate);
            }
            match gate.next_or_free(permit) {
                Some((p, queued)) => (permit, next) = (p, queued),
                None => return,
            }
        }
    }

    /// A slot freed by a [`Slot`] (an attempt made in its caller's task)
    /// goes on, in a task of its own, to the next queued attempt, if any.
    fn pass_slot_on(&self, gate: &Arc<Gate>, permit: OwnedSemaphorePermit) {
        if let Some((permit, queued)) = gate.next_or_free(permit) {
            tokio::spawn(Box::pin(self.clone().serve(gate.clone(), permit, queued)));
        }
        self.start_queued(gate);
    }

    /// Start queued attempts in slots of their own while the endpoint's
    /// window has room for them (it grows with answers).
    fn start_queued(&self, gate: &Arc<Gate>) {
        loop {
            let started = {
                let mut queue = gate.queue.lock().expect("queue lock");
                if queue.is_empty() {
                    return;
                }
                match gate.take_slot() {
                    Some(permit) => (permit, queue.pop_front().expect("not empty")),
                    None => return,
                }
            };
            tokio::spawn(Box::pin(self.clone().serve(gate.clone(), started.0, started.1)));
        }
    }

    /// Whether `endpoint`'s breaker is closed and its attempts have been
    /// taking at most `max_latency` on average: fan-out then makes its first
    /// attempts itself, since it holds its event until they are recorded.
    pub fn answers_within(&self, endpoint: &EndpointId, max_latency: Duration) -> bool {
        let gate = self.gate(endpoint);
        gate.breaker.lock().expect("breaker lock").is_closed()
            && !gate.is_unanswered()
            && gate.latency_us.load(Ordering::Relaxed) <= max_latency.as_micros() as u64
    }

    /// Whether (and why) a new task for `endpoint` would be parked now:
    /// fan-out then parks it at once instead of sending it to the workers.
    pub fn blocked(&self, endpoint: &EndpointId) -> Option<Wait> {
        let gate = self.existing(endpoint)?;
        let open = gate.breaker.lock().expect("breaker lock").turns_away(Instant::now());
        if open {
            Some(Wait::Open)
        } else if gate.stuck() {
            Some(Wait::Stuck)
        } else if gate.is_unanswered() && self.unanswered.available_permits() == 0 {
            Some(Wait::Unanswered)
        } else if gate.pace.waits_longer_than(MAX_WAIT) {
            Some(Wait::Limited)
        } else {
            None
        }
    }

    /// How many parked tasks `endpoint` may get back now. `seen` is the
    /// caller's record of the endpoint's finished attempts at its last look:
    /// the room grows with what finished since (slow start), so a recovered
    /// endpoint drains its backlog quickly and a slow one is not flooded.
    /// An open breaker whose cooldown is over gets one task, its probe.
    pub fn room(&self, endpoint: &EndpointId, seen: &mut Option<u64>) -> usize {
        let Some(gate) = self.existing(endpoint) else {
            return self.settings.per_endpoint;
        };
        if let Some(room) = gate.breaker.lock().expect("breaker lock").room(Instant::now()) {
            return room;
        }
        if gate.stuck() {
            return 0;
        }
        let finished = gate.finished.load(Ordering::Relaxed);
        let recent = finished - seen.unwrap_or(finished);
        *seen = Some(finished);
        // Unanswered: one at a time, while the share has a permit for it.
        if gate.is_unanswered() {
            return usize::from(gate.has_room() && self.unanswered.available_permits() > 0);
        }
        let free = gate.window().saturating_sub(gate.in_flight());
        let room = (free + 2 * recent as usize).min(MAX_ROOM);
        // A rate-limited endpoint gets back what its bucket lets through
        // before the sweeper's next look.
        gate.pace.room(crate::park::BUSY_ROUND).map_or(room, |r| r.min(MAX_ROOM))
    }

    /// How many of `endpoint`'s parked tasks a continuous drain may have
    /// moved back and not yet seen finished here: enough to keep its cap
    /// busy for [`DRAIN_AHEAD`] beyond the attempts in its slots, at the
    /// pace its attempts have been taking, so its slots never wait for the
    /// next task and no task queues long enough to be handed back busy
    /// (see [`crate::park`]). `None` while it must not drain: breaker not
    /// closed, stuck, or rate-limited (the sweeper's rounds return those
    /// tasks one probe, or one bucket's worth, at a time).
    pub fn drain_window(&self, endpoint: &EndpointId) -> Option<usize> {
        let cap = self.settings.per_endpoint;
        let Some(gate) = self.existing(endpoint) else {
            return Some(2 * cap);
        };
        if !gate.breaker.lock().expect("breaker lock").is_closed() || gate.stuck() || gate.is_unanswered() {
            return None;
        }
        if gate.pace.room(Duration::ZERO).is_some() {
            return None;
        }
        let latency = Duration::from_micros(gate.latency_us.load(Ordering::Relaxed)).max(DRAIN_LATENCY_FLOOR);
        let ahead = (cap as f64 * DRAIN_AHEAD.as_secs_f64() / latency.as_secs_f64()) as usize;
        Some((cap + ahead).clamp(2 * cap, MAX_DRAIN_WINDOW.max(2 * cap)))
    }

    /// `HOOKLINE_ENDPOINT_CONCURRENCY`: attempts in flight per endpoint at most.
    pub fn per_endpoint(&self) -> usize {
        self.settings.per_endpoint
    }

    /// Attempts at `endpoint` finished in this process so far.
    pub fn finished(&self, endpoint: &EndpointId) -> u64 {
        self.existing(endpoint).map_or(0, |gate| gate.finished.load(Ordering::Relaxed))
    }

    /// Endpoints whose breaker is open now.
    pub fn open_breakers(&self) -> usize {
        let now = Instant::now();
        let gates = self.gates.lock().expect("guard lock");
        gates.values().filter(|g| g.breaker.lock().expect("breaker lock").cooling_down(now)).count()
    }

    /// Record a finished attempt; `verdict` is `None` when it gave no
    /// result (its future was dropped).
    fn release(&self, gate: &Gate, probe: bool, took: Duration, verdict: Option<Verdict>) {
        let outcome = match verdict {
            Some(Verdict::Succeeded) => Outcome::Succeeded,
            Some(Verdict::Failed | Verdict::Unanswered) => Outcome::Failed,
            None => Outcome::Unknown,
        };
        if let Some(verdict) = verdict {
            gate.answered(verdict != Verdict::Unanswered);
        }
        let now = Instant::now();
        *gate.last_release.lock().expect("release lock") = now;
        gate.finished.fetch_add(1, Ordering::Relaxed);
        let took = took.as_micros().min(u64::MAX as u128) as u64;
        let _ = gate.latency_us.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |avg| Some((avg * 7 + took) / 8));
        let threshold = self.settings.breaker_threshold;
        let cooldown =
            Cooldown { first: self.settings.breaker_first_cooldown, longest: self.settings.breaker_cooldown };
        gate.breaker.lock().expect("breaker lock").record(probe, outcome, threshold, cooldown, now);
    }
}

/// `d` to `1.5 d`, so tasks handed back together do not return together.
fn spread(d: Duration) -> Duration {
    d.mul_f64(1.0 + rand::random::<f64>() / 2.0)
}

impl Slot {
    fn new(guard: &Guard, gate: Arc<Gate>, probe: bool, permit: OwnedSemaphorePermit) -> Self {
        Slot { guard: guard.clone(), gate, probe, finished: false, started: Instant::now(), permit: Some(permit) }
    }

    /// Record the attempt's result.
    fn finish(mut self, made: Made) {
        self.finished = true;
        self.guard.release(&self.gate, self.probe, made.took, Some(made.verdict));
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        if !self.finished {
            self.guard.release(&self.gate, self.probe, self.started.elapsed(), None);
        }
        if let Some(permit) = self.permit.take() {
            self.guard.pass_slot_on(&self.gate, permit);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicU64;

    use super::*;

    fn guard() -> Guard {
        Guard::new(GuardSettings {
            attempts: 64,
            per_endpoint: 2,
            breaker_threshold: 3,
            breaker_cooldown: Duration::from_millis(50),
            breaker_first_cooldown: Duration::from_millis(50),
            unanswered: 2,
        })
    }

    /// An attempt that holds its slot until told how it went.
    fn hold(g: &Guard, ep: &EndpointId) -> (tokio::task::JoinHandle<Result<bool, Wait>>, oneshot::Sender<bool>) {
        let (tx, rx) = oneshot::channel();
        let (g, ep) = (g.clone(), ep.clone());
        let run =
            tokio::spawn(async move { g.run(&ep, None, async move { rx.await.unwrap_or(false) }, |ok| *ok).await });
        (run, tx)
    }

    type Held = (tokio::task::JoinHandle<Result<bool, Wait>>, oneshot::Sender<bool>);

    /// One answered attempt: a new endpoint's window grows from one slot
    /// to two, the test guard's cap.
    async fn warm(g: &Guard, ep: &EndpointId) {
        attempt(g, ep, true).await.unwrap();
        assert_eq!(g.gate(ep).window(), 2);
    }

    /// Both of `ep`'s slots held (the test guard's cap is 2).
    async fn fill(g: &Guard, ep: &EndpointId) -> [Held; 2] {
        warm(g, ep).await;
        let held = [hold(g, ep), hold(g, ep)];
        settle().await;
        held
    }

    /// Let held attempts finish with `succeeded`; what each caller got.
    async fn free(held: [Held; 2], succeeded: bool) -> Vec<Result<bool, Wait>> {
        let mut got = Vec::new();
        for (run, done) in held {
            done.send(succeeded).unwrap();
            got.push(run.await.unwrap());
        }
        got
    }

    async fn attempt(g: &Guard, ep: &EndpointId, succeeds: bool) -> Result<bool, Wait> {
        g.run(ep, None, async move { succeeds }, |ok| *ok).await
    }

    async fn settle() {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    #[tokio::test]
    async fn cap_limits_in_flight_per_endpoint() {
        let g = guard();
        let (a, b) = (EndpointId::generate(), EndpointId::generate());
        warm(&g, &a).await;
        let (first, done1) = hold(&g, &a);
        let (_second, _done2) = hold(&g, &a);
        settle().await;
        let asked = Instant::now();
        assert_eq!(attempt(&g, &a, true).await.err(), Some(Wait::Stuck), "a third waited, nothing finished: park");
        assert!(asked.elapsed() >= MAX_WAIT, "it waited for a slot first");
        let asked = Instant::now();
        assert_eq!(attempt(&g, &a, true).await.err(), Some(Wait::Stuck));
        assert!(asked.elapsed() < MAX_WAIT, "once stuck, tasks do not wait");
        assert_eq!(g.blocked(&a), Some(Wait::Stuck), "fan-out parks too");
        assert_eq!(g.room(&a, &mut None), 0, "and nothing comes back");
        assert!(attempt(&g, &b, true).await.is_ok(), "other endpoints are unaffected");
        // Once attempts finish, a queued attempt is made as soon as a slot frees up.
        done1.send(true).unwrap();
        assert_eq!(first.await.unwrap(), Ok(true));
        let (third, done3) = hold(&g, &a);
        settle().await;
        let waiter = tokio::spawn({
            let (g, a) = (g.clone(), a.clone());
            async move { attempt(&g, &a, true).await }
        });
        settle().await;
        assert!(!waiter.is_finished(), "both slots are taken");
        done3.send(true).unwrap();
        assert_eq!(third.await.unwrap(), Ok(true));
        assert_eq!(waiter.await.unwrap(), Ok(true));
    }

    /// An attempt that holds its slot until told its verdict.
    fn hold_verdict(
        g: &Guard,
        ep: &EndpointId,
    ) -> (tokio::task::JoinHandle<Result<Verdict, Wait>>, oneshot::Sender<Verdict>) {
        let (tx, rx) = oneshot::channel();
        let (g, ep) = (g.clone(), ep.clone());
        let job = async move { rx.await.unwrap_or(Verdict::Failed) };
        (tokio::spawn(async move { g.run(&ep, None, job, |v| *v).await }), tx)
    }

    async fn unanswered(g: &Guard, ep: &EndpointId) -> Result<Verdict, Wait> {
        g.run(ep, None, async { Verdict::Unanswered }, |v| *v).await
    }

    #[tokio::test]
    async fn an_endpoint_idle_for_a_while_is_not_stuck_when_a_second_task_comes_during_its_one_attempt() {
        let g = Guard::new(GuardSettings { per_endpoint: 4, ..guard().settings });
        let a = EndpointId::generate();
        // Attempted once long ago (the gate is made), then idle for longer
        // than an endpoint may go without progress.
        let _ = g.gate(&a);
        tokio::time::sleep(Duration::from_millis(300)).await;
        let (first, done) = hold_verdict(&g, &a);
        settle().await;
        assert_eq!(g.blocked(&a), None, "busy for a moment only: not stuck");
        let second = tokio::spawn({
            let (g, a) = (g.clone(), a.clone());
            async move { attempt(&g, &a, true).await }
        });
        settle().await;
        done.send(Verdict::Succeeded).unwrap();
        assert_eq!(first.await.unwrap(), Ok(Verdict::Succeeded));
        assert_eq!(second.await.unwrap(), Ok(true), "queued for the slot and made, not parked");
    }

    #[tokio::test]
    async fn a_new_endpoint_has_one_attempt_in_flight_until_one_is_answered() {
        let g = Guard::new(GuardSettings { per_endpoint: 4, ..guard().settings });
        let a = EndpointId::generate();
        let (first, done) = hold_verdict(&g, &a);
        settle().await;
        assert_eq!(g.gate(&a).in_flight(), 1);
        // Its one attempt is out and nothing has finished: the next waits,
        // then is parked, and fan-out parks new tasks at once.
        let second = tokio::spawn({
            let (g, a) = (g.clone(), a.clone());
            async move { attempt(&g, &a, true).await }
        });
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(g.gate(&a).in_flight(), 1, "one slot until an answer");
        assert_eq!(g.blocked(&a), Some(Wait::Stuck));
        assert_eq!(g.room(&a, &mut None), 0);
        // The answer frees the slot for the queued attempt and widens the window.
        done.send(Verdict::Failed).unwrap();
        assert_eq!(first.await.unwrap(), Ok(Verdict::Failed));
        assert_eq!(second.await.unwrap(), Ok(true), "the queued attempt was made");
        assert_eq!(g.gate(&a).window(), 3, "one more slot per answer, failed or not");
        let held: Vec<_> = (0..4).map(|_| hold_verdict(&g, &a)).collect();
        settle().await;
        assert_eq!(g.gate(&a).in_flight(), 3, "the window, not the cap");
        let mut held = held.into_iter();
        let (run, done) = held.next().unwrap();
        done.send(Verdict::Succeeded).unwrap();
        run.await.unwrap().unwrap();
        settle().await;
        assert_eq!(g.gate(&a).window(), 4, "grown to the cap");
        assert_eq!(g.gate(&a).in_flight(), 3, "the queued one started in the slot freed");
        let (run, done) = held.next().unwrap();
        done.send(Verdict::Succeeded).unwrap();
        run.await.unwrap().unwrap();
        settle().await;
        assert_eq!(g.gate(&a).window(), 4, "never beyond the cap");
        for (run, done) in held {
            done.send(Verdict::Succeeded).unwrap();
            run.await.unwrap().unwrap();
        }
    }

    #[tokio::test]
    async fn endpoints_that_go_unanswered_get_one_slot_each_and_share_a_bounded_set_of_permits_of_their_own() {
        // The test guard gives unanswered endpoints 2 permits between them.
        let g = guard();
        let (a, b, c, healthy) =
            (EndpointId::generate(), EndpointId::generate(), EndpointId::generate(), EndpointId::generate());
        warm(&g, &a).await;
        assert_eq!(unanswered(&g, &a).await, Ok(Verdict::Unanswered));
        assert_eq!(g.gate(&a).window(), 1, "no answer: back to one slot");
        assert!(!g.answers_within(&a, Duration::from_secs(1)), "fan-out leaves it to the workers");
        assert_eq!(g.drain_window(&a), None, "and no drain");
        for ep in [&b, &c] {
            assert_eq!(unanswered(&g, ep).await, Ok(Verdict::Unanswered));
        }
        // a and b take the two permits; c's attempt is parked at once.
        let (run_a, done_a) = hold_verdict(&g, &a);
        let (run_b, done_b) = hold_verdict(&g, &b);
        settle().await;
        let asked = Instant::now();
        assert_eq!(unanswered(&g, &c).await, Err(Wait::Unanswered));
        assert!(asked.elapsed() < MAX_WAIT, "parked without waiting");
        assert_eq!(Wait::Unanswered.reason(), "endpoint_unanswered");
        assert_eq!(g.blocked(&c), Some(Wait::Unanswered), "fan-out parks it too");
        assert_eq!(g.room(&c, &mut None), 0, "and nothing comes back");
        for _ in 0..10 {
            assert_eq!(attempt(&g, &healthy, true).await, Ok(true), "endpoints that answer are unaffected");
        }
        // An answer takes b out of the share: c gets a permit.
        done_b.send(Verdict::Succeeded).unwrap();
        assert_eq!(run_b.await.unwrap(), Ok(Verdict::Succeeded));
        assert_eq!(g.room(&c, &mut None), 1, "one at a time while unanswered");
        assert_eq!(g.blocked(&c), None);
        assert_eq!(attempt(&g, &b, true).await, Ok(true), "b answered: no longer in the share");
        assert!(g.gate(&b).window() >= 2);
        done_a.send(Verdict::Unanswered).unwrap();
        assert_eq!(run_a.await.unwrap(), Ok(Verdict::Unanswered));
        assert_eq!(g.unanswered.available_permits(), 2, "the share is free again");
    }

    /// A guard with one attempt permit for endpoints that answer.
    fn one_permit() -> Guard {
        Guard::new(GuardSettings { attempts: 1, ..guard().settings })
    }

    #[tokio::test]
    async fn an_attempt_waits_in_its_slot_for_a_permit_and_the_wait_is_not_counted_as_the_endpoints_latency() {
        let g = one_permit();
        let (slow, quick) = (EndpointId::generate(), EndpointId::generate());
        let (held, done) = hold(&g, &slow);
        settle().await;
        assert!(!g.has_free_permit(), "the one permit is taken");
        let waiting = tokio::spawn({
            let (g, quick) = (g.clone(), quick.clone());
            async move { g.run(&quick, None, tokio::time::sleep(Duration::from_millis(2)), |_| true).await }
        });
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(!waiting.is_finished(), "no permit: the attempt waits");
        assert_eq!(g.gate(&quick).in_flight(), 1, "in its slot");
        done.send(true).unwrap();
        assert_eq!(held.await.unwrap(), Ok(true));
        waiting.await.unwrap().unwrap();
        // The moving average counts a first attempt an eighth: 300 ms of
        // waiting would read as over 37 ms.
        let latency = Duration::from_micros(g.gate(&quick).latency_us.load(Ordering::Relaxed));
        assert!(latency < Duration::from_millis(5), "timed from its permit: {latency:?}");
        assert!(g.answers_within(&quick, Duration::from_millis(5)));
        assert!(g.has_free_permit());
    }

    #[tokio::test]
    async fn endpoints_that_go_unanswered_use_permits_of_their_own_and_none_of_the_others() {
        let g = one_permit();
        let (hole, healthy) = (EndpointId::generate(), EndpointId::generate());
        assert_eq!(unanswered(&g, &hole).await, Ok(Verdict::Unanswered));
        let (run_hole, done_hole) = hold_verdict(&g, &hole);
        settle().await;
        assert_eq!(g.gate(&hole).in_flight(), 1, "the hole's next attempt is in flight");
        assert_eq!(g.unanswered.available_permits(), 1, "on one of its share's permits");
        assert!(g.has_free_permit(), "and on none of the others'");
        for _ in 0..3 {
            let made = tokio::time::timeout(Duration::from_millis(100), attempt(&g, &healthy, true)).await;
            assert_eq!(made, Ok(Ok(true)), "an endpoint that answers is not kept waiting by the hole");
        }
        done_hole.send(Verdict::Unanswered).unwrap();
        assert_eq!(run_hole.await.unwrap(), Ok(Verdict::Unanswered));
        assert_eq!(g.unanswered.available_permits(), 2);
        assert!(g.has_free_permit());
    }

    #[tokio::test]
    async fn a_freed_slot_makes_every_queued_attempt_once_and_never_more_than_the_cap() {
        let g = guard();
        let a = EndpointId::generate();
        let held = fill(&g, &a).await;
        let (running, most, order) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)), Arc::default());
        let waiters: Vec<_> = (0..6)
            .map(|i| {
                let (g, a, running, most) = (g.clone(), a.clone(), running.clone(), most.clone());
                let order: Arc<Mutex<Vec<u64>>> = Arc::clone(&order);
                let job = async move {
                    let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                    most.fetch_max(now, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    order.lock().unwrap().push(i);
                    running.fetch_sub(1, Ordering::SeqCst);
                    i
                };
                let run = tokio::spawn(async move { g.run(&a, None, job, |_| true).await });
                (i, run)
            })
            .collect();
        settle().await;
        assert_eq!(free(held, true).await, [Ok(true), Ok(true)]);
        for (i, run) in waiters {
            assert_eq!(run.await.unwrap(), Ok(i), "each task gets its own attempt's result");
        }
        assert!(most.load(Ordering::SeqCst) <= 2, "never more than the cap in flight");
        let order = order.lock().unwrap().clone();
        let mut sorted = order.clone();
        sorted.sort();
        assert_eq!(sorted, (0..6).collect::<Vec<_>>(), "every queued attempt was made once: {order:?}");
        assert_eq!(g.gate(&a).slots.available_permits(), 2, "both slots are free again");
    }

    #[tokio::test]
    async fn a_queued_attempt_given_up_on_is_never_made() {
        let g = guard();
        let a = EndpointId::generate();
        // Progress keeps the endpoint from counting as stuck.
        let held = fill(&g, &a).await;
        let made = Arc::new(AtomicU64::new(0));
        let job = {
            let made = made.clone();
            async move {
                made.fetch_add(1, Ordering::SeqCst);
            }
        };
        let keep_busy = tokio::spawn({
            let (g, a) = (g.clone(), a.clone());
            async move {
                // Finish an attempt now and then without ever freeing a slot for long.
                for _ in 0..7 {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    *g.gate(&a).last_release.lock().unwrap() = Instant::now();
                }
            }
        });
        let waited = g.run(&a, None, job, |_| true).await;
        assert!(matches!(waited, Err(Wait::Busy(_))), "gave up on a busy endpoint: {waited:?}");
        keep_busy.await.unwrap();
        free(held, true).await;
        settle().await;
        assert_eq!(made.load(Ordering::SeqCst), 0, "handed back to JetStream, so not made here too");
        assert_eq!(g.gate(&a).slots.available_permits(), 2);
    }

    #[tokio::test]
    async fn breaker_opens_half_opens_with_one_probe_and_closes() {
        let g = guard();
        let a = EndpointId::generate();
        for _ in 0..3 {
            assert_eq!(attempt(&g, &a, false).await, Ok(false));
        }
        assert_eq!(attempt(&g, &a, true).await.err(), Some(Wait::Open));
        assert_eq!(g.blocked(&a), Some(Wait::Open));
        assert_eq!(g.open_breakers(), 1);
        assert_eq!(g.room(&a, &mut None), 0, "parked tasks stay parked while open");
        tokio::time::sleep(Duration::from_millis(60)).await;
        assert_eq!(g.room(&a, &mut None), 1, "cooldown over: one comes back as the probe");
        assert_eq!(g.blocked(&a), None);
        let (probe, result) = hold(&g, &a);
        settle().await;
        assert_eq!(attempt(&g, &a, true).await.err(), Some(Wait::Open), "only one probe while half-open");
        assert_eq!(g.room(&a, &mut None), 0, "nor another from the parking lot");
        result.send(false).unwrap();
        assert_eq!(probe.await.unwrap(), Ok(false));
        assert_eq!(attempt(&g, &a, true).await.err(), Some(Wait::Open), "a failed probe re-opens");
        tokio::time::sleep(Duration::from_millis(60)).await;
        assert_eq!(attempt(&g, &a, true).await, Ok(true));
        assert!(attempt(&g, &a, true).await.is_ok(), "a successful probe closes");
        assert_eq!(g.open_breakers(), 0);
    }

    #[tokio::test]
    async fn queued_attempts_are_turned_away_when_the_breaker_opens() {
        let g = guard();
        let a = EndpointId::generate();
        let held = fill(&g, &a).await;
        let made = Arc::new(AtomicU64::new(0));
        let queued: Vec<_> = (0..3)
            .map(|_| {
                let (g, a, made) = (g.clone(), a.clone(), made.clone());
                tokio::spawn(async move {
                    g.run(&a, None, async move { made.fetch_add(1, Ordering::SeqCst) }, |_| true).await
                })
            })
            .collect();
        settle().await;
        for _ in 0..3 {
            // Three failures (of attempts made elsewhere) open the breaker.
            g.release(&g.gate(&a), false, Duration::ZERO, Some(Verdict::Failed));
        }
        assert_eq!(free(held, false).await, [Ok(false), Ok(false)]);
        for run in queued {
            assert_eq!(run.await.unwrap().err(), Some(Wait::Open), "parked, not attempted");
        }
        assert_eq!(made.load(Ordering::SeqCst), 0);
    }

    #[tokio::test]
    async fn room_grows_with_what_the_endpoint_finishes() {
        let g = guard();
        let a = EndpointId::generate();
        assert_eq!(g.room(&a, &mut None), 2, "an endpoint never tried here gets its cap");
        let mut seen = None;
        attempt(&g, &a, true).await.unwrap();
        assert_eq!(g.room(&a, &mut seen), 2, "first look: free slots only");
        for _ in 0..5 {
            attempt(&g, &a, true).await.unwrap();
        }
        assert_eq!(g.room(&a, &mut seen), 2 + 10, "twice what finished since the last look");
        assert_eq!(g.room(&a, &mut seen), 2);
    }

    #[tokio::test]
    async fn a_drain_keeps_a_fast_endpoint_fed_for_a_moment_and_stops_while_its_breaker_is_open() {
        let g = guard();
        let a = EndpointId::generate();
        assert_eq!(g.drain_window(&a), Some(4), "never tried: twice the cap");
        let quick = async { tokio::time::sleep(Duration::from_millis(10)).await };
        g.run(&a, None, quick, |_| true).await.unwrap();
        let window = g.drain_window(&a).unwrap();
        // About 2 slots x 200 ms / 10 ms ahead, beside the 2 in the slots;
        // the average starts from zero, so the first attempt counts an eighth.
        assert!(window > 40 && window <= MAX_DRAIN_WINDOW, "a fast endpoint's window: {window}");
        for _ in 0..8 {
            let slow = async { tokio::time::sleep(Duration::from_millis(400)).await };
            g.run(&a, None, slow, |_| true).await.unwrap();
        }
        assert_eq!(g.drain_window(&a), Some(4), "a slow one gets twice its cap: {:?}", g.drain_window(&a));
        assert_eq!(g.finished(&a), 9);
        for _ in 0..3 {
            attempt(&g, &a, false).await.unwrap();
        }
        assert_eq!(g.drain_window(&a), None, "breaker open: no drain");
        let limited = EndpointId::generate();
        g.run(&limited, RateLimit::parse(10).unwrap(), async {}, |_| true).await.unwrap();
        assert_eq!(g.drain_window(&limited), None, "rate-limited: the sweeper's rounds pace it");
    }

    #[tokio::test]
    async fn fan_out_attempts_itself_only_at_a_fast_endpoint_with_a_closed_breaker() {
        let g = guard();
        let a = EndpointId::generate();
        let fast = Duration::from_millis(20);
        assert!(g.answers_within(&a, fast), "never tried: fast");
        let slow = async { tokio::time::sleep(Duration::from_millis(200)).await };
        g.run(&a, None, slow, |_| true).await.unwrap();
        assert!(!g.answers_within(&a, fast), "slow on average");
        assert!(g.answers_within(&a, Duration::from_secs(1)));
        for _ in 0..3 {
            attempt(&g, &a, false).await.unwrap();
        }
        assert!(!g.answers_within(&a, Duration::from_secs(1)), "breaker open");
    }

    #[tokio::test]
    async fn a_rate_limit_spaces_attempts_and_parks_what_would_wait_too_long() {
        let g = guard();
        let a = EndpointId::generate();
        let limit = RateLimit::parse(10).unwrap();
        let started = Instant::now();
        let runs: Vec<_> = (0..25)
            .map(|_| {
                let (g, a) = (g.clone(), a.clone());
                tokio::spawn(async move { g.run(&a, limit, async { Instant::now() }, |_| true).await })
            })
            .collect();
        // While the reserved ones wait, new tasks are parked, and parked
        // ones come back only at the rate.
        tokio::time::sleep(Duration::from_millis(30)).await;
        assert_eq!(g.blocked(&a), Some(Wait::Limited), "fan-out parks new tasks too");
        assert_eq!(g.room(&a, &mut None), 0, "the bucket owes half a second");
        let (mut made, mut limited) = (Vec::new(), 0);
        for run in runs {
            match run.await.unwrap() {
                Ok(at) => made.push(at.duration_since(started)),
                Err(Wait::Limited) => limited += 1,
                Err(other) => panic!("unexpected {other:?}"),
            }
        }
        made.sort();
        // A second's burst at once, then one every 100 ms while waiting
        // 500 ms at most; a few more come in as the bucket refills.
        assert!(made[..10].iter().all(|t| *t < Duration::from_millis(100)), "the burst: {made:?}");
        assert!((15..=17).contains(&made.len()), "made {}, parked {limited}: {made:?}", made.len());
        for pair in made[10..].windows(2) {
            assert!(pair[1] - pair[0] >= Duration::from_millis(90), "spaced by the rate: {made:?}");
        }
        tokio::time::sleep(Duration::from_millis(1100)).await;
        assert_eq!(g.blocked(&a), None);
        assert!(g.room(&a, &mut None) >= 10, "a refilled bucket");
        // Without the limit the endpoint runs free again.
        for _ in 0..20 {
            g.run(&a, None, async {}, |_| true).await.unwrap();
        }
    }
}
