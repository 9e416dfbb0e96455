//! An endpoint's rate limit: a token bucket that spaces its attempts.

use std::{
    sync::Mutex,
    time::{Duration, Instant},
};

use hookline_domain::endpoint::RateLimit;

/// A token bucket refilled at the endpoint's limit, holding at most one
/// second's worth (the burst). Tokens may go below zero: each attempt takes
/// one as it is admitted, and a negative balance is the wait the next one
/// has, so attempts that arrive together are spread, not let through at once.
struct Bucket {
    limit: RateLimit,
    tokens: f64,
    at: Instant,
}

impl Bucket {
    fn new(limit: RateLimit) -> Self {
        Self { limit, tokens: f64::from(limit.per_second()), at: Instant::now() }
    }

    fn rate(&self) -> f64 {
        f64::from(self.limit.per_second())
    }

    fn refill(&mut self, now: Instant) {
        let earned = now.saturating_duration_since(self.at).as_secs_f64() * self.rate();
        self.tokens = (self.tokens + earned).min(self.rate());
        self.at = now;
    }

    /// How long until a token is free, without taking it.
    fn wait(&mut self, now: Instant) -> Duration {
        self.refill(now);
        Duration::from_secs_f64(((1.0 - self.tokens) / self.rate()).max(0.0))
    }

    /// Take a token if one is free within `within`, returning how long to
    /// wait for it.
    fn reserve(&mut self, now: Instant, within: Duration) -> Option<Duration> {
        let wait = self.wait(now);
        (wait <= within).then(|| {
            self.tokens -= 1.0;
            wait
        })
    }
}

/// The endpoint's rate limit as last seen, and its bucket; none without a
/// limit.
#[derive(Default)]
pub(super) struct Pace(Mutex<Option<Bucket>>);

impl Pace {
    /// Reserve the next moment `limit` allows, if it is within `within`,
    /// returning how long to wait for it; a changed limit starts a full
    /// bucket, and no limit lets the attempt go at once.
    pub(super) fn reserve(&self, limit: Option<RateLimit>, within: Duration) -> Option<Duration> {
        let mut bucket = self.0.lock().expect("bucket lock");
        let Some(limit) = limit else {
            *bucket = None;
            return Some(Duration::ZERO);
        };
        let b = match bucket.as_mut() {
            Some(b) if b.limit == limit => b,
            _ => bucket.insert(Bucket::new(limit)),
        };
        b.reserve(Instant::now(), within)
    }

    /// Tokens free now and over the next `ahead`, when rate-limited.
    pub(super) fn room(&self, ahead: Duration) -> Option<usize> {
        let mut bucket = self.0.lock().expect("bucket lock");
        let b = bucket.as_mut()?;
        b.refill(Instant::now());
        Some((b.tokens + ahead.as_secs_f64() * b.rate()).max(0.0) as usize)
    }

    /// Whether the next attempt would wait longer than `within`.
    pub(super) fn waits_longer_than(&self, within: Duration) -> bool {
        let mut bucket = self.0.lock().expect("bucket lock");
        bucket.as_mut().is_some_and(|b| b.wait(Instant::now()) > within)
    }
}
