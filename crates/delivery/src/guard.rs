//! Per-endpoint isolation inside one delivery process: an in-flight cap and
//! a circuit breaker. A task that may not run now is handed back to
//! JetStream with a delay, so waiting work costs no memory here.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use hookline_domain::ids::EndpointId;

#[derive(Debug, Clone)]
pub struct GuardSettings {
    /// Attempts in flight per endpoint at most.
    pub per_endpoint: usize,
    /// Consecutive failures that open the breaker.
    pub breaker_threshold: u32,
    /// How long an open breaker waits before one probe is let through.
    pub breaker_cooldown: Duration,
}

#[derive(Default)]
struct EndpointState {
    in_flight: usize,
    consecutive_failures: u32,
    open_until: Option<Instant>,
    /// Half-open: one probe is out; the rest wait for its result.
    probing: bool,
}

#[derive(Clone)]
pub struct Guard {
    settings: GuardSettings,
    endpoints: Arc<Mutex<HashMap<EndpointId, EndpointState>>>,
}

/// Permission to attempt; report the result with [`Slot::finish`].
pub struct Slot {
    guard: Guard,
    endpoint: EndpointId,
    probe: bool,
    finished: bool,
}

/// Why a task must wait.
#[derive(Debug, PartialEq)]
pub enum Wait {
    /// The endpoint has its cap of attempts in flight.
    Busy(Duration),
    /// The breaker is open (or a probe is out).
    Open(Duration),
}

impl Guard {
    pub fn new(settings: GuardSettings) -> Self {
        Self { settings, endpoints: Arc::default() }
    }

    pub fn admit(&self, endpoint: &EndpointId) -> Result<Slot, Wait> {
        let mut map = self.endpoints.lock().expect("guard lock");
        let s = map.entry(endpoint.clone()).or_default();
        let now = Instant::now();
        let mut probe = false;
        if let Some(until) = s.open_until {
            if now < until {
                return Err(Wait::Open(until - now));
            }
            if s.probing {
                return Err(Wait::Open(Duration::from_secs(1)));
            }
            s.probing = true;
            probe = true;
        }
        if s.in_flight >= self.settings.per_endpoint {
            if probe {
                s.probing = false;
            }
            return Err(Wait::Busy(Duration::from_millis(200 + rand::random::<u64>() % 300)));
        }
        s.in_flight += 1;
        Ok(Slot { guard: self.clone(), endpoint: endpoint.clone(), probe, finished: false })
    }

    /// Endpoints whose breaker is open now.
    pub fn open_breakers(&self) -> usize {
        let now = Instant::now();
        self.endpoints.lock().expect("guard lock").values().filter(|s| s.open_until.is_some_and(|u| u > now)).count()
    }

    fn release(&self, endpoint: &EndpointId, probe: bool, success: Option<bool>) {
        let mut map = self.endpoints.lock().expect("guard lock");
        let Some(s) = map.get_mut(endpoint) else { return };
        s.in_flight = s.in_flight.saturating_sub(1);
        if probe {
            s.probing = false;
        }
        match success {
            Some(true) => {
                s.consecutive_failures = 0;
                s.open_until = None;
            }
            Some(false) => {
                s.consecutive_failures += 1;
                if probe || s.consecutive_failures >= self.settings.breaker_threshold {
                    if s.open_until.is_none() {
                        tracing::warn!(endpoint_id = %endpoint, failures = s.consecutive_failures, "circuit breaker opened");
                    }
                    s.open_until = Some(Instant::now() + self.settings.breaker_cooldown);
                }
            }
            None => {}
        }
    }
}

impl Slot {
    /// Record the attempt's result (true = 2xx).
    pub fn finish(mut self, success: bool) {
        self.finished = true;
        self.guard.release(&self.endpoint, self.probe, Some(success));
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        if !self.finished {
            self.guard.release(&self.endpoint, self.probe, None);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn guard() -> Guard {
        Guard::new(GuardSettings { per_endpoint: 2, breaker_threshold: 3, breaker_cooldown: Duration::from_millis(50) })
    }

    #[test]
    fn cap_limits_in_flight_per_endpoint() {
        let g = guard();
        let (a, b) = (EndpointId::generate(), EndpointId::generate());
        let s1 = g.admit(&a).unwrap();
        let _s2 = g.admit(&a).unwrap();
        assert!(matches!(g.admit(&a), Err(Wait::Busy(_))));
        assert!(g.admit(&b).is_ok(), "other endpoints are unaffected");
        drop(s1);
        assert!(g.admit(&a).is_ok());
    }

    #[test]
    fn breaker_opens_half_opens_with_one_probe_and_closes() {
        let g = guard();
        let a = EndpointId::generate();
        for _ in 0..3 {
            g.admit(&a).unwrap().finish(false);
        }
        assert!(matches!(g.admit(&a), Err(Wait::Open(_))));
        assert_eq!(g.open_breakers(), 1);
        std::thread::sleep(Duration::from_millis(60));
        let probe = g.admit(&a).unwrap();
        assert!(matches!(g.admit(&a), Err(Wait::Open(_))), "only one probe while half-open");
        probe.finish(false);
        assert!(matches!(g.admit(&a), Err(Wait::Open(_))), "a failed probe re-opens");
        std::thread::sleep(Duration::from_millis(60));
        g.admit(&a).unwrap().finish(true);
        assert!(g.admit(&a).is_ok(), "a successful probe closes");
        assert_eq!(g.open_breakers(), 0);
    }
}
