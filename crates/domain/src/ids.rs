//! Identifiers. Generated ids are a prefix plus 26 characters of Crockford
//! base32 over 48 bits of milliseconds and 80 random bits, so they sort by
//! creation time and double as pagination cursors.

use std::{fmt, str::FromStr};

use serde::{Deserialize, Serialize};

use crate::FieldError;

const CROCKFORD: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";
/// Ids are parsed wherever a task or outcome is read: a table, not a search.
const IS_CROCKFORD: [bool; 256] = {
    let mut table = [false; 256];
    let mut i = 0;
    while i < CROCKFORD.len() {
        table[CROCKFORD[i] as usize] = true;
        i += 1;
    }
    table
};

fn sortable_suffix() -> String {
    let millis = chrono::Utc::now().timestamp_millis().max(0) as u128;
    let random: [u8; 10] = rand::random();
    let mut n = millis << 80;
    for (i, b) in random.iter().enumerate() {
        n |= (*b as u128) << (8 * (9 - i));
    }
    (0..26).rev().map(|i| CROCKFORD[((n >> (i * 5)) & 31) as usize] as char).collect()
}

macro_rules! prefixed_id {
    ($(#[$doc:meta])* $name:ident, $prefix:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            pub const PREFIX: &'static str = $prefix;

            pub fn generate() -> Self {
                Self(format!("{}{}", $prefix, sortable_suffix()))
            }

            pub fn parse(s: &str) -> Result<Self, FieldError> {
                Self::check(s)?;
                Ok(Self(s.to_owned()))
            }

            fn check(s: &str) -> Result<(), FieldError> {
                let rest = s.strip_prefix($prefix).ok_or_else(|| {
                    FieldError::new("", format!("must start with `{}`", $prefix))
                })?;
                if rest.len() != 26 || !rest.bytes().all(|b| IS_CROCKFORD[b as usize]) {
                    return Err(FieldError::new(
                        "",
                        format!("must be `{}` followed by 26 base32 characters", $prefix),
                    ));
                }
                Ok(())
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl TryFrom<String> for $name {
            type Error = FieldError;
            fn try_from(s: String) -> Result<Self, FieldError> {
                Self::check(&s)?;
                Ok(Self(s))
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.0
            }
        }

        impl FromStr for $name {
            type Err = FieldError;
            fn from_str(s: &str) -> Result<Self, FieldError> {
                Self::parse(s)
            }
        }
    };
}

prefixed_id!(
    /// An event, `evt_…`; receivers see it as `webhook-id`.
    EventId,
    "evt_"
);
prefixed_id!(
    /// An endpoint, `ep_…`.
    EndpointId,
    "ep_"
);
prefixed_id!(
    /// One delivery of an event to an endpoint (a replay is a new one), `dlv_…`.
    DeliveryId,
    "dlv_"
);
impl DeliveryId {
    /// The lowest delivery id of millisecond `t` (its time part, then zero
    /// bits): every id whose time part is earlier sorts below it, as ids are
    /// fixed-length and time first.
    pub fn floor_at(t: chrono::DateTime<chrono::Utc>) -> Self {
        let n = (t.timestamp_millis().max(0) as u128) << 80;
        let suffix: String = (0..26).rev().map(|i| CROCKFORD[((n >> (i * 5)) & 31) as usize] as char).collect();
        Self(format!("{}{suffix}", Self::PREFIX))
    }

    /// The id of an event's original delivery to an endpoint: the event id's
    /// time part and 80 bits of SHA-256 over both ids. Whichever fan-out
    /// makes the delivery (a repeat after a crash included) names it alike,
    /// so its attempts land on one delivery in the log.
    pub fn original(event: &EventId, endpoint: &EndpointId) -> Self {
        use sha2::{Digest, Sha256};
        let time = &event.as_str()[EventId::PREFIX.len()..][..10];
        let digest =
            Sha256::new().chain_update(event.as_str()).chain_update(b"/").chain_update(endpoint.as_str()).finalize();
        let mut n = 0u128;
        for b in &digest[..10] {
            n = (n << 8) | *b as u128;
        }
        let rest: String = (0..16).rev().map(|i| CROCKFORD[((n >> (i * 5)) & 31) as usize] as char).collect();
        Self(format!("{}{time}{rest}", Self::PREFIX))
    }

    /// The replay of delivery `original` made by recover job `job`: the
    /// job's time part and 80 bits of SHA-256 over both ids. A job resumed
    /// after a crash names its replays alike, so the dispatch message id
    /// (the delivery id) de-duplicates what it queued before the crash, and
    /// the log tells which originals the job already replayed.
    pub fn recovery(job: &JobId, original: &DeliveryId) -> Self {
        use sha2::{Digest, Sha256};
        let time = &job.as_str()[JobId::PREFIX.len()..][..10];
        let digest =
            Sha256::new().chain_update(job.as_str()).chain_update(b"/").chain_update(original.as_str()).finalize();
        let mut n = 0u128;
        for b in &digest[..10] {
            n = (n << 8) | *b as u128;
        }
        let rest: String = (0..16).rev().map(|i| CROCKFORD[((n >> (i * 5)) & 31) as usize] as char).collect();
        Self(format!("{}{time}{rest}", Self::PREFIX))
    }
}

prefixed_id!(
    /// A background recover job, `job_…`.
    JobId,
    "job_"
);

/// A tenant, chosen by the booking platform. Also a NATS subject token, so
/// it may not hold `.`, `*`, `>` or white space.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct TenantId(String);

impl TenantId {
    pub const RULE: &'static str = "must be 1-64 characters of a-z, 0-9, `-` or `_`, starting with a letter or digit";

    pub fn parse(s: &str) -> Result<Self, FieldError> {
        Self::check(s)?;
        Ok(Self(s.to_owned()))
    }

    fn check(s: &str) -> Result<(), FieldError> {
        let ok = !s.is_empty()
            && s.len() <= 64
            && s.as_bytes()[0].is_ascii_alphanumeric()
            && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
        if ok {
            Ok(())
        } else if s.is_empty() {
            Err(FieldError::new("", "is required"))
        } else {
            Err(FieldError::new("", Self::RULE))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for TenantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for TenantId {
    type Error = FieldError;
    fn try_from(s: String) -> Result<Self, FieldError> {
        Self::check(&s)?;
        Ok(Self(s))
    }
}

impl From<TenantId> for String {
    fn from(id: TenantId) -> String {
        id.0
    }
}

impl FromStr for TenantId {
    type Err = FieldError;
    fn from_str(s: &str) -> Result<Self, FieldError> {
        Self::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn original_delivery_ids_are_stable_and_sort_with_their_event() {
        let (e, a, b) = (EventId::generate(), EndpointId::generate(), EndpointId::generate());
        let d = DeliveryId::original(&e, &a);
        assert_eq!(d, DeliveryId::original(&e, &a));
        assert_ne!(d, DeliveryId::original(&e, &b));
        assert_eq!(DeliveryId::parse(d.as_str()).unwrap(), d);
        assert_eq!(&d.as_str()[4..14], &e.as_str()[4..14], "same time part as the event");
    }

    #[test]
    fn recovery_delivery_ids_are_stable_per_job_and_original() {
        let (j, k) = (JobId::generate(), JobId::generate());
        let (e, a) = (EventId::generate(), EndpointId::generate());
        let original = DeliveryId::original(&e, &a);
        let d = DeliveryId::recovery(&j, &original);
        assert_eq!(d, DeliveryId::recovery(&j, &original));
        assert_ne!(d, DeliveryId::recovery(&k, &original), "another job makes another delivery");
        assert_eq!(DeliveryId::parse(d.as_str()).unwrap(), d);
    }

    #[test]
    fn the_floor_of_a_millisecond_sorts_between_the_ids_before_it_and_those_of_it() {
        let before = DeliveryId::generate();
        std::thread::sleep(std::time::Duration::from_millis(3));
        let now = chrono::Utc::now();
        let floor = DeliveryId::floor_at(now);
        std::thread::sleep(std::time::Duration::from_millis(2));
        let after = DeliveryId::generate();
        assert!(before < floor && floor < after, "{before} < {floor} < {after}");
        assert_eq!(DeliveryId::parse(floor.as_str()).unwrap(), floor);
        assert!(DeliveryId::floor_at(now + chrono::TimeDelta::milliseconds(1)) > floor);
    }

    #[test]
    fn generated_ids_parse_and_sort_by_time() {
        let a = EventId::generate();
        std::thread::sleep(std::time::Duration::from_millis(2));
        let b = EventId::generate();
        assert!(a < b);
        assert_eq!(EventId::parse(a.as_str()).unwrap(), a);
        assert!(EndpointId::parse(a.as_str()).is_err());
    }

    #[test]
    fn tenant_ids_are_subject_safe() {
        assert!(TenantId::parse("acme-dental_01").is_ok());
        for bad in ["", "Acme", "a.b", "a*", "a>", "a b", "-x", &"x".repeat(65)] {
            assert!(TenantId::parse(bad).is_err(), "{bad}");
        }
    }
}
