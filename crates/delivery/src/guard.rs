//! Per-endpoint isolation inside one delivery process: an in-flight cap and
//! a circuit breaker.
//!
//! A task for a busy endpoint waits briefly for one of its slots (healthy,
//! fast endpoints then run at their cap without churn); if none frees up in
//! `max_wait`, or the breaker is open, the task goes back to JetStream with a
//! delay, so a slow or failing endpoint holds no more than its cap of worker
//! slots plus short waits, and waiting work costs no memory here.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
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
}

/// An endpoint with no attempt finished for this long is stuck: tasks do
/// not wait for it, and go back to JetStream for longer.
const STUCK: Duration = Duration::from_millis(250);

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
    _permit: OwnedSemaphorePermit,
}

/// Why a task must wait, and for how long it should stay in JetStream.
#[derive(Debug, PartialEq)]
pub enum Wait {
    /// The endpoint has its cap of attempts in flight.
    Busy(Duration),
    /// The breaker is open (or a probe is out).
    Open(Duration),
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
                })
            })
            .clone()
    }

    /// A slot for an attempt, or how long the task should wait in JetStream.
    ///
    /// Every hand-back costs a pull and a redelivery, so the delay grows with
    /// how hopeless the endpoint looks: a busy endpoint making progress is
    /// retried in 0.2-0.3 s; a stuck one (nothing finished for a while) after
    /// as long as it has been stuck, up to one attempt timeout; an open
    /// breaker when its cooldown ends; a half-open one after as long as its
    /// probe has been out. A black-holed endpoint thus costs each of its
    /// tasks a few redeliveries, not one per second.
    pub async fn admit(&self, endpoint: &EndpointId) -> Result<Slot, Wait> {
        let gate = self.gate(endpoint);
        let timeout = self.settings.attempt_timeout;
        let probe = {
            let mut b = gate.breaker.lock().expect("breaker lock");
            let now = Instant::now();
            match (b.open_until, b.probing) {
                (Some(until), _) if now < until => return Err(Wait::Open(spread(until - now))),
                (Some(_), Some(started)) => return Err(Wait::Open(spread(patience(started.elapsed(), timeout)))),
                (Some(_), None) => {
                    b.probing = Some(now);
                    true
                }
                (None, _) => false,
            }
        };
        let stuck_for = gate.last_release.lock().expect("release lock").elapsed();
        let stuck = gate.slots.available_permits() == 0 && stuck_for > STUCK;
        let wait = if stuck { Duration::ZERO } else { MAX_WAIT };
        match tokio::time::timeout(wait, gate.slots.clone().acquire_owned()).await {
            Ok(Ok(permit)) => Ok(Slot { guard: self.clone(), gate, probe, finished: false, _permit: permit }),
            _ => {
                if probe {
                    gate.breaker.lock().expect("breaker lock").probing = None;
                }
                let delay = if stuck { patience(stuck_for, timeout) } else { Duration::from_millis(200) };
                Err(Wait::Busy(spread(delay)))
            }
        }
    }

    /// Endpoints whose breaker is open now.
    pub fn open_breakers(&self) -> usize {
        let now = Instant::now();
        let gates = self.gates.lock().expect("guard lock");
        gates.values().filter(|g| g.breaker.lock().expect("breaker lock").open_until.is_some_and(|u| u > now)).count()
    }

    fn release(&self, gate: &Gate, probe: bool, success: Option<bool>) {
        *gate.last_release.lock().expect("release lock") = Instant::now();
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

/// How long to keep a task away from an endpoint that has shown no result
/// for `stuck_for`: as long again, from 1 s up to one attempt timeout.
fn patience(stuck_for: Duration, attempt_timeout: Duration) -> Duration {
    stuck_for.clamp(Duration::from_secs(1), attempt_timeout.max(Duration::from_secs(1)))
}

impl Slot {
    /// Record the attempt's result (true = 2xx).
    pub fn finish(mut self, success: bool) {
        self.finished = true;
        self.guard.release(&self.gate, self.probe, Some(success));
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        if !self.finished {
            self.guard.release(&self.gate, self.probe, None);
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
        assert!(matches!(g.admit(&a).await, Err(Wait::Busy(_))), "no progress yet: a third goes back at once");
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
        assert!(matches!(g.admit(&a).await, Err(Wait::Open(_))));
        assert_eq!(g.open_breakers(), 1);
        tokio::time::sleep(Duration::from_millis(60)).await;
        let probe = g.admit(&a).await.unwrap();
        assert!(matches!(g.admit(&a).await, Err(Wait::Open(_))), "only one probe while half-open");
        probe.finish(false);
        assert!(matches!(g.admit(&a).await, Err(Wait::Open(_))), "a failed probe re-opens");
        tokio::time::sleep(Duration::from_millis(60)).await;
        g.admit(&a).await.unwrap().finish(true);
        assert!(g.admit(&a).await.is_ok(), "a successful probe closes");
        assert_eq!(g.open_breakers(), 0);
    }
}
