//! Per-tenant publish rate: a token bucket per tenant in each ingest
//! process. gRPC callers over the rate get RESOURCE_EXHAUSTED (nothing is
//! appended, nothing dropped silently); NATS intake events, already durably
//! accepted by JetStream, wait in the intake stream until there is room.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

#[derive(Debug, Clone, Copy)]
pub struct RateSettings {
    /// Sustained events per second per tenant; 0 disables the limit.
    pub per_second: f64,
    /// Events a tenant may send at once above the rate.
    pub burst: f64,
}

struct Bucket {
    tokens: f64,
    last: Instant,
}

#[derive(Clone)]
pub struct TenantLimiter {
    settings: RateSettings,
    buckets: Arc<Mutex<HashMap<String, Bucket>>>,
}

impl TenantLimiter {
    pub fn new(settings: RateSettings) -> Self {
        Self { settings, buckets: Arc::default() }
    }

    pub fn per_second(&self) -> f64 {
        self.settings.per_second
    }

    /// Take `n` tokens at once, or say how long until they would be there.
    pub fn take(&self, tenant: &str, n: usize) -> Result<(), Duration> {
        let RateSettings { per_second, burst } = self.settings;
        if per_second <= 0.0 {
            return Ok(());
        }
        let n = n as f64;
        let now = Instant::now();
        let mut map = self.buckets.lock().expect("limiter lock");
        let b = map.entry(tenant.to_owned()).or_insert(Bucket { tokens: burst, last: now });
        b.tokens = (b.tokens + now.duration_since(b.last).as_secs_f64() * per_second).min(burst.max(n));
        b.last = now;
        if b.tokens >= n {
            b.tokens -= n;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((n - b.tokens) / per_second))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bursts_then_refuses_then_refills() {
        let l = TenantLimiter::new(RateSettings { per_second: 100.0, burst: 10.0 });
        for _ in 0..10 {
            l.take("a", 1).unwrap();
        }
        let wait = l.take("a", 1).unwrap_err();
        assert!(wait <= Duration::from_millis(11), "{wait:?}");
        assert!(l.take("b", 5).is_ok(), "tenants are independent");
        std::thread::sleep(Duration::from_millis(30));
        assert!(l.take("a", 2).is_ok());
        assert!(TenantLimiter::new(RateSettings { per_second: 0.0, burst: 0.0 }).take("a", 1000).is_ok());
    }
}
