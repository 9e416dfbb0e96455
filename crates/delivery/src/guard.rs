//! Per-endpoint isolation inside one delivery process: an in-flight cap and
//! a circuit breaker.
//!
//! A task for a busy endpoint that is making progress waits briefly for one
//! of its slots (healthy, fast endpoints then run at their cap without
//! churn), and goes back to JetStream for a moment if none frees up. A task
//! for an endpoint that is stuck (its cap in flight and nothing finished for
//! a while) or whose breaker is open is *parked* instead (see
//! [`crate::park`]): it waits in JetStream apart from the other endpoints'
//! tasks, and [`Guard::room`] says how many may come back. A slow or failing
//! endpoint therefore holds no more than its cap of worker slots, and its
//! waiting work costs neither memory here nor pulls from the shared consumer.

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use hookline_domain::ids::EndpointId;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

#[derive(Debug, Clone)]
pub struct GuardSettings {
    /// Attempts in flight per endpoint at most.
    pub per_endpoint: usize,
    /// Consecutive failures that open the breaker.
    pub breaker_threshold: u32,
    /// How long an open breaker waits before one probe is let through.
    pub breaker_cooldown: Duration,
    /// The longest one attempt can hold a slot (the request timeout).
    pub attempt_timeout: Duration,
}

/// How long a task waits for a busy endpoint before going back to JetStream.
const MAX_WAIT: Duration = Duration::from_millis(500);

/// The most parked tasks one endpoint gets back per round of the parking
/// sweeper, however fast it has been finishing them.
const MAX_ROOM: usize = 2_000;

#[derive(Default)]
struct Breaker {
    consecutive_failures: u32,
    open_until: Option<Instant>,
    /// Half-open: one probe is out (since then); the rest wait for its result.
    probing: Option<Instant>,
}

struct Gate {
    slots: Arc<Semaphore>,
    breaker: Mutex<Breaker>,
    /// When an attempt last finished (or the gate was made): waiting for a
    /// slot only pays off while the endpoint is making progress.
    last_release: Mutex<Instant>,
    /// Attempts finished so far, so the sweeper can return parked tasks at
    /// the pace the endpoint takes them.
    finished: AtomicU64,
    /// Moving average of attempt durations, in microseconds.
    latency_us: AtomicU64,
}

/// An endpoint with no attempt finished for this long, and its cap in
/// flight, is stuck: its tasks are parked.
const STUCK: Duration = Duration::from_millis(250);

impl Gate {
    fn stuck(&self) -> bool {
        self.slots.available_permits() == 0 && self.last_release.lock().expect("release lock").elapsed() > STUCK
    }
}

#[derive(Clone)]
pub struct Guard {
    settings: GuardSettings,
    gates: Arc<Mutex<HashMap<EndpointId, Arc<Gate>>>>,
}

/// Permission to attempt; report the result with [`Slot::finish`].
pub struct Slot {
    guard: Guard,
    gate: Arc<Gate>,
    probe: bool,
    finished: bool,
    started: Instant,
    _permit: OwnedSemaphorePermit,
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
}

impl Wait {
    /// The `reason` label of `hookline_delivery_deferrals_total`.
    pub fn reason(&self) -> &'static str {
        match self {
            Wait::Busy(_) => "endpoint_busy",
            Wait::Stuck => "endpoint_stuck",
            Wait::Open => "breaker_open",
        }
    }
}

impl Guard {
    pub fn new(settings: GuardSettings) -> Self {
        Self { settings, gates: Arc::default() }
    }

    fn gate(&self, endpoint: &EndpointId) -> Arc<Gate> {
        let mut gates = self.gates.lock().expect("guard lock");
        gates
            .entry(endpoint.clone())
            .or_insert_with(|| {
                Arc::new(Gate {
                    slots: Arc::new(Semaphore::new(self.settings.per_endpoint)),
                    breaker: Mutex::default(),
                    last_release: Mutex::new(Instant::now()),
                    finished: AtomicU64::new(0),
                    latency_us: AtomicU64::new(0),
                })
            })
            .clone()
    }

    fn existing(&self, endpoint: &EndpointId) -> Option<Arc<Gate>> {
        self.gates.lock().expect("guard lock").get(endpoint).cloned()
    }

    /// A slot for an attempt, or why the task must wait.
    pub async fn admit(&self, endpoint: &EndpointId) -> Result<Slot, Wait> {
        let gate = self.gate(endpoint);
        let probe = {
            let mut b = gate.breaker.lock().expect("breaker lock");
            let now = Instant::now();
            match (b.open_until, b.probing) {
                (Some(until), _) if now < until => return Err(Wait::Open),
                (Some(_), Some(_)) => return Err(Wait::Open),
                (Some(_), None) => {
                    b.probing = Some(now);
                    true
                }
                (None, _) => false,
            }
        };
        let wait = if gate.stuck() { Duration::ZERO } else { MAX_WAIT };
        match tokio::time::timeout(wait, gate.slots.clone().acquire_owned()).await {
            // The breaker may have opened while this task waited.
            Ok(Ok(_)) if !probe && gate.breaker.lock().expect("breaker lock").open_until.is_some() => Err(Wait::Open),
            Ok(Ok(permit)) => Ok(Slot::new(self, gate, probe, permit)),
            _ => {
                if probe {
                    gate.breaker.lock().expect("breaker lock").probing = None;
                }
                if gate.stuck() { Err(Wait::Stuck) } else { Err(Wait::Busy(spread(Duration::from_millis(200)))) }
            }
        }
    }

    /// A slot at once, for fan-out's first attempt, or `None`: only for an
    /// endpoint with a free slot, a closed breaker and attempts that have
    /// been taking less than `fast` on average, since fan-out holds its
    /// event until the attempt is recorded.
    pub fn try_admit(&self, endpoint: &EndpointId, fast: Duration) -> Option<Slot> {
        let gate = self.gate(endpoint);
        if gate.breaker.lock().expect("breaker lock").open_until.is_some()
            || gate.latency_us.load(Ordering::Relaxed) > fast.as_micros() as u64
        {
            return None;
        }
        let permit = gate.slots.clone().try_acquire_owned().ok()?;
        Some(Slot::new(self, gate, false, permit))
    }

    /// Whether (and why) a new task for `endpoint` would be parked now:
    /// fan-out then parks it at once instead of sending it to the workers.
    pub fn blocked(&self, endpoint: &EndpointId) -> Option<Wait> {
        let gate = self.existing(endpoint)?;
        let b = gate.breaker.lock().expect("breaker lock");
        let open = match (b.open_until, b.probing) {
            (Some(until), _) if Instant::now() < until => true,
            (Some(_), probing) => probing.is_some(),
            (None, _) => false,
        };
        drop(b);
        if open {
            Some(Wait::Open)
        } else if gate.stuck() {
            Some(Wait::Stuck)
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
        {
            let b = gate.breaker.lock().expect("breaker lock");
            match (b.open_until, b.probing) {
                (Some(until), _) if Instant::now() < until => return 0,
                (Some(_), Some(_)) => return 0,
                (Some(_), None) => return 1,
                (None, _) => {}
            }
        }
        if gate.stuck() {
            return 0;
        }
        let finished = gate.finished.load(Ordering::Relaxed);
        let recent = finished - seen.unwrap_or(finished);
        *seen = Some(finished);
        (gate.slots.available_permits() + 2 * recent as usize).min(MAX_ROOM)
    }

    /// Endpoints whose breaker is open now.
    pub fn open_breakers(&self) -> usize {
        let now = Instant::now();
        let gates = self.gates.lock().expect("guard lock");
        gates.values().filter(|g| g.breaker.lock().expect("breaker lock").open_until.is_some_and(|u| u > now)).count()
    }

    fn release(&self, gate: &Gate, probe: bool, took: Duration, success: Option<bool>) {
        *gate.last_release.lock().expect("release lock") = Instant::now();
        gate.finished.fetch_add(1, Ordering::Relaxed);
        let took = took.as_micros().min(u64::MAX as u128) as u64;
        let _ = gate.latency_us.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |avg| Some((avg * 7 + took) / 8));
        let mut b = gate.breaker.lock().expect("breaker lock");
        if probe {
            b.probing = None;
        }
        match success {
            Some(true) => {
                b.consecutive_failures = 0;
                b.open_until = None;
            }
            Some(false) => {
                b.consecutive_failures += 1;
                if probe || b.consecutive_failures >= self.settings.breaker_threshold {
                    if b.open_until.is_none() {
                        tracing::warn!(failures = b.consecutive_failures, "circuit breaker opened");
                    }
                    b.open_until = Some(Instant::now() + self.settings.breaker_cooldown);
                }
            }
            None => {}
        }
    }
}

/// `d` to `1.5 d`, so tasks handed back together do not return together.
fn spread(d: Duration) -> Duration {
    d.mul_f64(1.0 + rand::random::<f64>() / 2.0)
}

impl Slot {
    fn new(guard: &Guard, gate: Arc<Gate>, probe: bool, permit: OwnedSemaphorePermit) -> Self {
        Slot { guard: guard.clone(), gate, probe, finished: false, started: Instant::now(), _permit: permit }
    }

    /// Record the attempt's result (true = 2xx).
    pub fn finish(mut self, success: bool) {
        self.finished = true;
        self.guard.release(&self.gate, self.probe, self.started.elapsed(), Some(success));
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        if !self.finished {
            self.guard.release(&self.gate, self.probe, self.started.elapsed(), None);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn guard() -> Guard {
        Guard::new(GuardSettings {
            per_endpoint: 2,
            breaker_threshold: 3,
            breaker_cooldown: Duration::from_millis(50),
            attempt_timeout: Duration::from_secs(1),
        })
    }

    #[tokio::test]
    async fn cap_limits_in_flight_per_endpoint() {
        let g = guard();
        let (a, b) = (EndpointId::generate(), EndpointId::generate());
        let s1 = g.admit(&a).await.unwrap();
        let _s2 = g.admit(&a).await.unwrap();
        let asked = Instant::now();
        assert_eq!(g.admit(&a).await.err(), Some(Wait::Stuck), "a third waited, nothing finished: park");
        assert!(asked.elapsed() >= MAX_WAIT, "it waited for a slot first");
        let asked = Instant::now();
        assert_eq!(g.admit(&a).await.err(), Some(Wait::Stuck));
        assert!(asked.elapsed() < MAX_WAIT, "once stuck, tasks do not wait");
        assert_eq!(g.blocked(&a), Some(Wait::Stuck), "fan-out parks too");
        assert_eq!(g.room(&a, &mut None), 0, "and nothing comes back");
        assert!(g.admit(&b).await.is_ok(), "other endpoints are unaffected");
        // Once attempts finish, a waiter gets the slot as soon as one frees up.
        drop(s1);
        let s1 = g.admit(&a).await.unwrap();
        let waiter = tokio::spawn({
            let (g, a) = (g.clone(), a.clone());
            async move { g.admit(&a).await.is_ok() }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        drop(s1);
        assert!(waiter.await.unwrap());
    }

    #[tokio::test]
    async fn breaker_opens_half_opens_with_one_probe_and_closes() {
        let g = guard();
        let a = EndpointId::generate();
        for _ in 0..3 {
            g.admit(&a).await.unwrap().finish(false);
        }
        assert_eq!(g.admit(&a).await.err(), Some(Wait::Open));
        assert_eq!(g.blocked(&a), Some(Wait::Open));
        assert_eq!(g.open_breakers(), 1);
        assert_eq!(g.room(&a, &mut None), 0, "parked tasks stay parked while open");
        tokio::time::sleep(Duration::from_millis(60)).await;
        assert_eq!(g.room(&a, &mut None), 1, "cooldown over: one comes back as the probe");
        assert_eq!(g.blocked(&a), None);
        let probe = g.admit(&a).await.unwrap();
        assert_eq!(g.admit(&a).await.err(), Some(Wait::Open), "only one probe while half-open");
        assert_eq!(g.room(&a, &mut None), 0, "nor another from the parking lot");
        probe.finish(false);
        assert_eq!(g.admit(&a).await.err(), Some(Wait::Open), "a failed probe re-opens");
        tokio::time::sleep(Duration::from_millis(60)).await;
        g.admit(&a).await.unwrap().finish(true);
        assert!(g.admit(&a).await.is_ok(), "a successful probe closes");
        assert_eq!(g.open_breakers(), 0);
    }

    #[tokio::test]
    async fn room_grows_with_what_the_endpoint_finishes() {
        let g = guard();
        let a = EndpointId::generate();
        assert_eq!(g.room(&a, &mut None), 2, "an endpoint never tried here gets its cap");
        let mut seen = None;
        g.admit(&a).await.unwrap().finish(true);
        assert_eq!(g.room(&a, &mut seen), 2, "first look: free slots only");
        for _ in 0..5 {
            g.admit(&a).await.unwrap().finish(true);
        }
        assert_eq!(g.room(&a, &mut seen), 2 + 10, "twice what finished since the last look");
        assert_eq!(g.room(&a, &mut seen), 2);
    }

    #[tokio::test]
    async fn fan_out_gets_a_slot_only_at_once_and_only_for_a_fast_endpoint() {
        let g = guard();
        let a = EndpointId::generate();
        let fast = Duration::from_millis(20);
        let s1 = g.try_admit(&a, fast).unwrap();
        let _s2 = g.try_admit(&a, fast).unwrap();
        assert!(g.try_admit(&a, fast).is_none(), "no free slot: no waiting either");
        tokio::time::sleep(Duration::from_millis(200)).await;
        s1.finish(true);
        assert!(g.try_admit(&a, fast).is_none(), "slow on average");
        assert!(g.try_admit(&a, Duration::from_secs(1)).is_some());
    }
}
