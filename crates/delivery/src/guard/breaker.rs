//! The circuit breaker of one endpoint.
//!
//! Closed, it lets every attempt through and counts consecutive failures.
//! At the threshold it opens: attempts are turned away (their tasks are
//! parked) until the cooldown is over. Then the next attempt is the one
//! probe of a half-open breaker, and everything else still waits: a probe
//! that succeeds closes the breaker, one that fails opens it for another
//! cooldown. A success of any attempt closes it.
//!
//! The cooldown backs off: the first is short, and each failed probe
//! doubles it up to the longest ([`Cooldown`]). A receiver that was down
//! for a moment (a restart, a deploy) is found back within about the first
//! cooldown, so its backlog drains at its cap instead of waiting out the
//! longest; one that stays down costs a probe per longest cooldown.

use std::time::{Duration, Instant};

/// How an attempt made in one of the endpoint's slots went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Outcome {
    /// The receiver accepted it.
    Succeeded,
    /// It failed: an error or a status that is not 2xx.
    Failed,
    /// It gave no result (its future was dropped): the breaker learns nothing.
    Unknown,
}

impl From<bool> for Outcome {
    fn from(succeeded: bool) -> Self {
        if succeeded { Outcome::Succeeded } else { Outcome::Failed }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Closed,
    /// Attempts are turned away until `until`; after it, the next one is
    /// let through as the probe.
    Open {
        until: Instant,
    },
    /// The probe is out; every other attempt is turned away until it
    /// reports. `until` is the end of the cooldown, which a failure of an
    /// attempt let through before the breaker opened can still extend.
    HalfOpen {
        until: Instant,
    },
}

/// How long an open breaker waits before its next probe: `first` after it
/// opens, doubled by each failed probe, at most `longest`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cooldown {
    pub first: Duration,
    pub longest: Duration,
}

impl Cooldown {
    /// The cooldown after `failed_probes` probes in a row failed.
    fn after(&self, failed_probes: u32) -> Duration {
        let first = self.first.min(self.longest);
        first.saturating_mul(1u32.checked_shl(failed_probes).unwrap_or(u32::MAX)).min(self.longest)
    }
}

#[derive(Debug)]
pub(super) struct Breaker {
    /// Consecutive failures, reset by a success.
    failures: u32,
    /// Probes that failed since the breaker last closed: the cooldown's back-off.
    failed_probes: u32,
    state: State,
}

impl Default for Breaker {
    fn default() -> Self {
        Self { failures: 0, failed_probes: 0, state: State::Closed }
    }
}

/// What the breaker does with an attempt that asks to go through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Admission {
    /// Closed: the attempt goes through.
    Through,
    /// The cooldown is over: the attempt goes through as the probe.
    Probe,
    /// Open, or half-open with the probe out: the attempt waits.
    TurnedAway,
}

impl Breaker {
    /// Let an attempt through, as the probe once the cooldown is over.
    pub(super) fn admit(&mut self, now: Instant) -> Admission {
        match self.state {
            State::Closed => Admission::Through,
            State::Open { until } if now >= until => {
                self.state = State::HalfOpen { until };
                Admission::Probe
            }
            State::Open { .. } | State::HalfOpen { .. } => Admission::TurnedAway,
        }
    }

    /// Whether a new attempt would be turned away now.
    pub(super) fn turns_away(&self, now: Instant) -> bool {
        match self.state {
            State::Closed => false,
            State::Open { until } => now < until,
            State::HalfOpen { .. } => true,
        }
    }

    /// How many parked tasks may come back while the breaker is not closed:
    /// none during the cooldown or while the probe is out, then one, the
    /// probe. `None` when it is closed.
    pub(super) fn room(&self, now: Instant) -> Option<usize> {
        match self.state {
            State::Closed => None,
            State::Open { until } if now >= until => Some(1),
            State::Open { .. } | State::HalfOpen { .. } => Some(0),
        }
    }

    pub(super) fn is_closed(&self) -> bool {
        self.state == State::Closed
    }

    /// Whether its cooldown is still running (the `breakers_open` gauge).
    pub(super) fn cooling_down(&self, now: Instant) -> bool {
        match self.state {
            State::Closed => false,
            State::Open { until } | State::HalfOpen { until } => until > now,
        }
    }

    /// The probe was let through but not made: the next attempt may be it.
    pub(super) fn probe_not_made(&mut self) {
        if let State::HalfOpen { until } = self.state {
            self.state = State::Open { until };
        }
    }

    /// Record an attempt's outcome. A failed probe opens the breaker again
    /// whatever the count, for a cooldown twice as long as the last.
    pub(super) fn record(&mut self, probe: bool, outcome: Outcome, threshold: u32, cooldown: Cooldown, now: Instant) {
        if probe {
            self.probe_not_made();
        }
        match outcome {
            Outcome::Succeeded => {
                self.failures = 0;
                self.failed_probes = 0;
                self.state = State::Closed;
            }
            Outcome::Failed => {
                self.failures += 1;
                if probe && !self.is_closed() {
                    self.failed_probes = self.failed_probes.saturating_add(1);
                }
                if probe || self.failures >= threshold {
                    let until = now + cooldown.after(self.failed_probes);
                    self.state = match self.state {
                        State::Closed => {
                            tracing::warn!(failures = self.failures, "circuit breaker opened");
                            State::Open { until }
                        }
                        State::Open { .. } => State::Open { until },
                        State::HalfOpen { .. } => State::HalfOpen { until },
                    };
                }
            }
            Outcome::Unknown => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const THRESHOLD: u32 = 3;
    const COOLDOWN: Duration = Duration::from_secs(10);

    fn record(b: &mut Breaker, probe: bool, outcome: Outcome, now: Instant) {
        b.record(probe, outcome, THRESHOLD, Cooldown { first: COOLDOWN, longest: COOLDOWN }, now);
    }

    /// A breaker opened at `now` by the threshold's failures.
    fn opened(now: Instant) -> Breaker {
        let mut b = Breaker::default();
        for _ in 0..THRESHOLD {
            record(&mut b, false, Outcome::Failed, now);
        }
        b
    }

    #[test]
    fn closed_lets_everything_through_until_the_threshold() {
        let now = Instant::now();
        let mut b = Breaker::default();
        for _ in 1..THRESHOLD {
            record(&mut b, false, Outcome::Failed, now);
            assert_eq!(b.admit(now), Admission::Through);
        }
        assert!(b.is_closed());
        assert_eq!(b.room(now), None);
        record(&mut b, false, Outcome::Failed, now);
        assert!(!b.is_closed(), "the threshold opens it");
        assert!(b.cooling_down(now));
    }

    #[test]
    fn a_success_resets_the_count() {
        let now = Instant::now();
        let mut b = Breaker::default();
        for _ in 1..THRESHOLD {
            record(&mut b, false, Outcome::Failed, now);
        }
        record(&mut b, false, Outcome::Succeeded, now);
        record(&mut b, false, Outcome::Failed, now);
        assert!(b.is_closed(), "one failure since the success");
    }

    #[test]
    fn an_attempt_without_result_changes_nothing() {
        let now = Instant::now();
        let mut b = Breaker::default();
        for _ in 0..10 {
            record(&mut b, false, Outcome::Unknown, now);
        }
        assert!(b.is_closed());
        let mut b = opened(now);
        record(&mut b, false, Outcome::Unknown, now);
        assert!(b.turns_away(now));
    }

    #[test]
    fn open_turns_away_until_the_cooldown_then_lets_one_probe_through() {
        let now = Instant::now();
        let mut b = opened(now);
        assert_eq!(b.admit(now), Admission::TurnedAway);
        assert!(b.turns_away(now));
        assert_eq!(b.room(now), Some(0));
        let later = now + COOLDOWN;
        assert!(!b.turns_away(later), "cooldown over: the next one may probe");
        assert_eq!(b.room(later), Some(1));
        assert!(!b.cooling_down(later));
        assert_eq!(b.admit(later), Admission::Probe);
        // Half-open: the probe is out.
        assert_eq!(b.admit(later), Admission::TurnedAway, "one probe at a time");
        assert!(b.turns_away(later));
        assert_eq!(b.room(later), Some(0));
        assert!(!b.is_closed());
    }

    #[test]
    fn a_successful_probe_closes() {
        let now = Instant::now();
        let mut b = opened(now);
        let later = now + COOLDOWN;
        assert_eq!(b.admit(later), Admission::Probe);
        record(&mut b, true, Outcome::Succeeded, later);
        assert!(b.is_closed());
        assert_eq!(b.admit(later), Admission::Through);
        for _ in 1..THRESHOLD {
            record(&mut b, false, Outcome::Failed, later);
        }
        assert!(b.is_closed(), "the count started again");
    }

    #[test]
    fn a_failed_probe_opens_for_another_cooldown() {
        let now = Instant::now();
        let mut b = opened(now);
        let later = now + COOLDOWN;
        assert_eq!(b.admit(later), Admission::Probe);
        record(&mut b, true, Outcome::Failed, later);
        assert_eq!(b.admit(later), Admission::TurnedAway);
        assert!(b.cooling_down(later));
        assert_eq!(b.admit(later + COOLDOWN), Admission::Probe);
    }

    #[test]
    fn a_probe_not_made_lets_the_next_attempt_probe() {
        let now = Instant::now();
        let mut b = opened(now);
        let later = now + COOLDOWN;
        assert_eq!(b.admit(later), Admission::Probe);
        b.probe_not_made();
        assert_eq!(b.admit(later), Admission::Probe);
        // Its result unknown, the probe frees the way as well.
        record(&mut b, true, Outcome::Unknown, later);
        assert_eq!(b.admit(later), Admission::Probe);
    }

    #[test]
    fn an_earlier_attempt_failing_while_half_open_extends_the_cooldown_and_keeps_the_probe() {
        let now = Instant::now();
        let mut b = opened(now);
        let later = now + COOLDOWN;
        assert_eq!(b.admit(later), Admission::Probe);
        record(&mut b, false, Outcome::Failed, later);
        assert!(b.cooling_down(later));
        assert_eq!(b.admit(later + COOLDOWN), Admission::TurnedAway, "the probe is still out");
        b.probe_not_made();
        assert_eq!(b.admit(later), Admission::TurnedAway, "the extended cooldown runs");
        assert_eq!(b.admit(later + COOLDOWN), Admission::Probe);
    }

    #[test]
    fn a_success_of_any_attempt_closes() {
        let now = Instant::now();
        let mut b = opened(now);
        record(&mut b, false, Outcome::Succeeded, now);
        assert!(b.is_closed());
        assert!(!b.cooling_down(now));
    }

    #[test]
    fn the_cooldown_doubles_with_each_failed_probe_up_to_the_longest_and_a_success_starts_it_again() {
        let cooldown = Cooldown { first: Duration::from_secs(1), longest: Duration::from_secs(5) };
        let start = Instant::now();
        let mut b = Breaker::default();
        for _ in 0..THRESHOLD {
            b.record(false, Outcome::Failed, THRESHOLD, cooldown, start);
        }
        let mut now = start;
        let mut waited = Vec::new();
        for _ in 0..5 {
            let opened = now;
            while b.admit(now) != Admission::Probe {
                now += Duration::from_millis(100);
            }
            waited.push((now - opened).as_millis());
            b.record(true, Outcome::Failed, THRESHOLD, cooldown, now);
        }
        assert_eq!(waited, [1000, 2000, 4000, 5000, 5000], "first, doubled, capped at the longest");
        while b.admit(now) != Admission::Probe {
            now += Duration::from_millis(100);
        }
        b.record(true, Outcome::Succeeded, THRESHOLD, cooldown, now);
        assert!(b.is_closed());
        for _ in 0..THRESHOLD {
            b.record(false, Outcome::Failed, THRESHOLD, cooldown, now);
        }
        assert!(b.turns_away(now + Duration::from_millis(900)));
        assert_eq!(b.admit(now + cooldown.first), Admission::Probe, "opened again: the first cooldown");
    }

    #[test]
    fn a_first_cooldown_longer_than_the_longest_is_the_longest() {
        let cooldown = Cooldown { first: Duration::from_secs(1), longest: Duration::from_millis(50) };
        assert_eq!(cooldown.after(0), Duration::from_millis(50));
        assert_eq!(cooldown.after(40), Duration::from_millis(50), "no overflow");
    }
}
