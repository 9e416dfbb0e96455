//! Per-tenant publish rate in each ingest process: `governor`'s keyed GCRA
//! limiter (one timestamp per tenant, in a sharded map). gRPC callers over
//! the rate get RESOURCE_EXHAUSTED (nothing is appended, nothing dropped
//! silently); NATS intake events, already durably accepted by JetStream,
//! wait in the intake stream until there is room.
//!
//! Memory stays bounded by the tenants that published lately: callers admit
//! only tenants the Directory holds (an unknown tenant id is refused before
//! it reaches [`TenantLimiter::take`]), and [`TenantLimiter::forget_idle`],
//! run every [`FORGET_IDLE_EVERY`], drops each tenant whose bucket has
//! refilled, since its entry is then no different from no entry.

use std::{num::NonZeroU32, sync::Arc, time::Duration};

use governor::{DefaultKeyedRateLimiter, Quota, clock::Clock as _};
use hookline_domain::ids::TenantId;
use tokio_util::sync::CancellationToken;

/// How often idle tenants' entries are dropped.
pub const FORGET_IDLE_EVERY: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, Copy)]
pub struct RateSettings {
    /// Sustained events per second per tenant; 0 disables the limit.
    pub per_second: f64,
    /// Events a tenant may send at once above the rate (at least 1).
    pub burst: f64,
}

/// Why [`TenantLimiter::take`] did not admit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Over the rate: `n` events fit after this wait.
    Wait(Duration),
    /// More events at once than the burst holds: they never fit together.
    OverBurst { burst: u32 },
}

#[derive(Clone)]
pub struct TenantLimiter {
    settings: RateSettings,
    limiter: Option<Arc<DefaultKeyedRateLimiter<TenantId>>>,
}

impl TenantLimiter {
    pub fn new(settings: RateSettings) -> Self {
        let limiter = (settings.per_second > 0.0).then(|| {
            // One event's share of a second, at least a nanosecond (governor's resolution).
            let period = Duration::from_secs_f64(1.0 / settings.per_second).max(Duration::from_nanos(1));
            let burst = NonZeroU32::new(settings.burst.clamp(1.0, u32::MAX as f64) as u32).unwrap_or(NonZeroU32::MIN);
            let quota = Quota::with_period(period).expect("a period of at least 1 ns").allow_burst(burst);
            Arc::new(DefaultKeyedRateLimiter::keyed(quota))
        });
        let this = Self { settings, limiter };
        this.report_keys();
        this
    }

    pub fn per_second(&self) -> f64 {
        self.settings.per_second
    }

    /// Take `n` events at once for a tenant the Directory holds, or say how
    /// long until they would fit.
    pub fn take(&self, tenant: &TenantId, n: usize) -> Result<(), Refusal> {
        let Some(limiter) = &self.limiter else { return Ok(()) };
        let Some(cells) = NonZeroU32::new(u32::try_from(n).unwrap_or(u32::MAX)) else { return Ok(()) };
        let outcome = limiter.check_key_n(tenant, cells);
        self.report_keys();
        match outcome {
            Ok(Ok(())) => Ok(()),
            Ok(Err(not_until)) => {
                Err(Refusal::Wait(not_until.wait_time_from(governor::clock::DefaultClock::default().now())))
            }
            Err(governor::InsufficientCapacity(burst)) => Err(Refusal::OverBurst { burst }),
        }
    }

    /// Tenants with an entry now.
    pub fn keys(&self) -> usize {
        self.limiter.as_ref().map_or(0, |l| l.len())
    }

    /// Drop the entries of tenants whose bucket is full again, and the
    /// map's spare capacity with them.
    pub fn forget_idle(&self) {
        if let Some(limiter) = &self.limiter {
            limiter.retain_recent();
            limiter.shrink_to_fit();
        }
        self.report_keys();
    }

    /// Run [`Self::forget_idle`] every [`FORGET_IDLE_EVERY`] until `shutdown`.
    pub async fn forget_idle_until(self, shutdown: CancellationToken) {
        let mut tick = tokio::time::interval(FORGET_IDLE_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tick.tick() => self.forget_idle(),
            }
        }
    }

    fn report_keys(&self) {
        hookline_telemetry::metrics().ingest_rate_limiter_keys.set(i64::try_from(self.keys()).unwrap_or(i64::MAX));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> TenantId {
        TenantId::parse(s).unwrap()
    }

    #[test]
    fn bursts_then_refuses_then_refills() {
        let l = TenantLimiter::new(RateSettings { per_second: 100.0, burst: 10.0 });
        for _ in 0..10 {
            l.take(&t("a"), 1).unwrap();
        }
        let Err(Refusal::Wait(wait)) = l.take(&t("a"), 1) else { panic!("the 11th event is over the burst") };
        assert!(wait <= Duration::from_millis(11), "{wait:?}");
        assert!(l.take(&t("b"), 5).is_ok(), "tenants are independent");
        std::thread::sleep(Duration::from_millis(30));
        assert!(l.take(&t("a"), 2).is_ok());
        assert_eq!(l.take(&t("c"), 11), Err(Refusal::OverBurst { burst: 10 }));
        assert!(TenantLimiter::new(RateSettings { per_second: 0.0, burst: 0.0 }).take(&t("a"), 1000).is_ok());
    }

    #[test]
    fn idle_tenants_are_forgotten_and_busy_ones_kept() {
        let l = TenantLimiter::new(RateSettings { per_second: 1000.0, burst: 20.0 });
        for i in 0..1000 {
            l.take(&t(&format!("tenant-{i}")), 1).unwrap();
        }
        assert_eq!(l.keys(), 1000);
        // 20 ms refills every bucket: each entry is like no entry at all.
        std::thread::sleep(Duration::from_millis(25));
        for _ in 0..20 {
            l.take(&t("busy"), 1).unwrap();
        }
        l.forget_idle();
        assert_eq!(l.keys(), 1, "only the tenant with an empty bucket is kept");
        assert!(matches!(l.take(&t("busy"), 1), Err(Refusal::Wait(_))), "forgetting others keeps its state");
    }
}
