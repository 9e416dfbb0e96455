//! Delivery settings.

use std::{str::FromStr, time::Duration};

use hookline_domain::ssrf::AddressPolicy;

use crate::guard::GuardSettings;

/// When each attempt happens, as in the Standard Webhooks schedule
/// "immediately, 5s, 5m, ...": the first entry is the first attempt and must
/// be 0; attempt `n` failing schedules attempt `n + 1` after entry `n`. Its
/// length is the number of attempts.
#[derive(Debug, Clone, PartialEq)]
pub struct RetrySchedule(Vec<Duration>);

impl RetrySchedule {
    pub fn attempts(&self) -> u32 {
        self.0.len() as u32
    }

    /// The delay after failed attempt `attempt` (1-based), if any remain.
    pub fn delay_after(&self, attempt: u32) -> Option<Duration> {
        self.0.get(attempt as usize).copied()
    }
}

impl Default for RetrySchedule {
    /// Standard Webhooks' example schedule: about three days.
    fn default() -> Self {
        "0s,5s,5m,30m,2h,5h,10h,14h,20h,24h".parse().expect("default schedule parses")
    }
}

/// Why a text is not a duration; `text` is the value as written (trimmed).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DurationError {
    #[error("`{text}` is not a duration like 90 (seconds), 500ms, 5m, 1h30m or 2d: {source}")]
    Invalid {
        text: String,
        #[source]
        source: humantime::DurationError,
    },
    #[error("`{text}` must be a non-negative, finite number of seconds")]
    OutOfRange { text: String },
}

/// The one way Hookline reads a duration, in settings and CLI flags alike:
/// humantime's spans (`500ms`, `5m`, `1h30m`, `2d`, `1h 30m`), or a bare
/// number of seconds (`90`, `1.5`) as before. One decimal number with one
/// unit (`1.5h`) also stays accepted, as the settings always took it.
pub fn parse_duration(s: &str) -> Result<Duration, DurationError> {
    let s = s.trim();
    if let Ok(secs) = s.parse::<f64>() {
        return Duration::try_from_secs_f64(secs).map_err(|_| DurationError::OutOfRange { text: s.to_owned() });
    }
    humantime::parse_duration(s)
        .or_else(|source| decimal_with_unit(s).ok_or_else(|| DurationError::Invalid { text: s.to_owned(), source }))
}

/// `1.5h`, `0.5s`: a fraction humantime does not read.
fn decimal_with_unit(s: &str) -> Option<Duration> {
    let split = s.find(|c: char| !c.is_ascii_digit() && c != '.')?;
    let (num, unit) = s.split_at(split);
    if !num.contains('.') {
        return None;
    }
    let n: f64 = num.parse().ok()?;
    let unit = humantime::parse_duration(&format!("1{unit}")).ok()?;
    Duration::try_from_secs_f64(n * unit.as_secs_f64()).ok()
}

/// Why a text is not a [`RetrySchedule`].
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ScheduleError {
    #[error(transparent)]
    Delay(#[from] DurationError),
    #[error("must list 1 to 50 delays, e.g. 0s,5s,5m,30m")]
    Length,
    #[error("the first entry is the first attempt, which is immediate: it must be 0s")]
    FirstNotImmediate,
}

impl FromStr for RetrySchedule {
    type Err = ScheduleError;
    fn from_str(s: &str) -> Result<Self, ScheduleError> {
        let delays = s.split(',').map(parse_duration).collect::<Result<Vec<_>, _>>()?;
        if delays.is_empty() || delays.len() > 50 {
            return Err(ScheduleError::Length);
        }
        if !delays[0].is_zero() {
            return Err(ScheduleError::FirstNotImmediate);
        }
        Ok(Self(delays))
    }
}

/// What the delivery service needs to run.
#[derive(Clone)]
pub struct DeliverySettings {
    pub retry_schedule: RetrySchedule,
    /// A retry due at least this far ahead waits in HOOKLINE_RETRY, one due
    /// sooner in HOOKLINE_DISPATCH (`HOOKLINE_RETRY_STORE_AFTER`, see
    /// [`crate::retry_store`]).
    pub retry_store_after: Duration,
    /// Whole-request timeout of one attempt.
    pub request_timeout: Duration,
    /// How long JetStream waits for a worker's ack before redelivering the
    /// task to another worker; must exceed `request_timeout`.
    pub ack_wait: Duration,
    /// How long HOOKLINE_EVENTS keeps an event (`HOOKLINE_ARCHIVE_AFTER`):
    /// a task still waiting at that age ends as `event_expired`.
    pub archive_after: Duration,
    /// gRPC address of the subscriptions service, for `Resolve`.
    pub subscriptions_url: String,
    /// Sent as `authorization: Bearer` to the subscriptions service.
    pub operator_token: Option<String>,
    /// PEM certificates trusted, besides the public roots, when
    /// `subscriptions_url` is `https://` (`HOOKLINE_TLS_CA`).
    pub tls_ca: Option<Vec<u8>>,
    /// This service's certificate and key (PEM), presented when it calls
    /// subscriptions over `https://` (needed when that requires client
    /// certificates, `HOOKLINE_TLS_CLIENT_CA`).
    pub tls_identity: Option<(Vec<u8>, Vec<u8>)>,
    /// Per-endpoint cap and circuit breaker.
    pub guard: GuardSettings,
    /// Which addresses deliveries may reach.
    pub address_policy: AddressPolicy,
    /// Where endpoint host names are resolved (`HOOKLINE_DNS_SERVERS`).
    pub dns: hookline_dns::Resolver,
    /// SMTP relay for e-mail endpoints; `None` when HOOKLINE_SMTP_URL is unset.
    pub mailer: Option<crate::mailer::Mailer>,
}

impl DeliverySettings {
    /// `HOOKLINE_DELIVERY_CONCURRENCY`: attempts in flight per process, at
    /// endpoints that answer. The guard holds the permits
    /// ([`GuardSettings::attempts`]); the HTTP pool, fan-out's places and
    /// the consumers' pulls are sized from the same number.
    pub fn concurrency(&self) -> usize {
        self.guard.attempts
    }
}

impl Default for DeliverySettings {
    fn default() -> Self {
        Self {
            retry_schedule: RetrySchedule::default(),
            retry_store_after: Duration::from_secs(30),
            request_timeout: Duration::from_secs(15),
            ack_wait: Duration::from_secs(60),
            archive_after: Duration::from_secs(60 * 24 * 3600),
            subscriptions_url: "http://127.0.0.1:50051".into(),
            operator_token: None,
            tls_ca: None,
            tls_identity: None,
            guard: GuardSettings {
                attempts: 1024,
                per_endpoint: 10,
                breaker_threshold: 5,
                breaker_cooldown: Duration::from_secs(30),
                breaker_first_cooldown: Duration::from_secs(1),
                unanswered: GuardSettings::unanswered_share(1024),
            },
            address_policy: AddressPolicy::default(),
            dns: hookline_dns::Resolver::system(),
            mailer: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedules() {
        let s: RetrySchedule = "0s,1s,2s".parse().unwrap();
        assert_eq!(s.attempts(), 3);
        assert_eq!(s.delay_after(1), Some(Duration::from_secs(1)));
        assert_eq!(s.delay_after(3), None);
        assert_eq!(RetrySchedule::default().attempts(), 10);
        assert!("1x".parse::<RetrySchedule>().is_err());
        assert_eq!("5s,10s".parse::<RetrySchedule>(), Err(ScheduleError::FirstNotImmediate));
        assert!(ScheduleError::FirstNotImmediate.to_string().ends_with("must be 0s"));
        assert!(matches!("0s,5x".parse::<RetrySchedule>(), Err(ScheduleError::Delay(DurationError::Invalid { .. }))));
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        let s: RetrySchedule = "0s,1h30m,2d".parse().unwrap();
        assert_eq!(s.delay_after(2), Some(Duration::from_secs(2 * 86400)));
    }

    #[test]
    fn durations_read_as_humantime_spans_and_as_bare_seconds() {
        let cases = [
            ("90", 90_000),
            ("1.5", 1_500),
            ("500ms", 500),
            ("5s", 5_000),
            ("1h30m", 5_400_000),
            ("1h 30m", 5_400_000),
            ("2d", 172_800_000),
            ("1.5h", 5_400_000),
            (" 15m ", 900_000),
        ];
        for (text, ms) in cases {
            assert_eq!(parse_duration(text).unwrap(), Duration::from_millis(ms), "{text}");
        }
    }

    #[test]
    fn a_bad_duration_says_what_was_written_and_the_rule() {
        for text in ["soon", "5x", "1h30", "-5", "h"] {
            let e = parse_duration(text).unwrap_err().to_string();
            assert!(e.starts_with(&format!("`{text}`")), "{e}");
            assert!(e.contains("like 90 (seconds), 500ms, 5m, 1h30m or 2d") || e.contains("non-negative"), "{e}");
        }
        assert_eq!(
            parse_duration("-5").unwrap_err(),
            DurationError::OutOfRange { text: "-5".into() },
            "a negative number of seconds"
        );
    }
}
