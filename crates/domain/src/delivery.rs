//! Delivery records: the dispatch task a worker executes and the outcome
//! event every attempt writes back.

use serde::{Deserialize, Serialize};

use crate::{
    endpoint::Layout,
    event_type::EventType,
    events::{StoredEvent, Timestamp},
    ids::{DeliveryId, EndpointId, EventId, TenantId},
};

/// One (event, endpoint) pair on HOOKLINE_DISPATCH.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DispatchTask {
    pub delivery_id: DeliveryId,
    /// When fan-out (or a replay) created the delivery, RFC 3339 UTC.
    pub created_at: Timestamp,
    pub endpoint_id: EndpointId,
    /// The event's sequence in HOOKLINE_EVENTS, where Raw and Replay read it.
    pub event_seq: u64,
    /// For a replay: the delivery it repeats.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replay_of: Option<DeliveryId>,
    /// Which attempt this task is (1-based). Kept in the task, not taken from
    /// JetStream's delivery count, so deferrals (a busy endpoint, an open
    /// breaker) never use up retries.
    #[serde(default = "first_attempt")]
    pub attempt: u32,
    /// Not to be attempted before this time (RFC 3339 UTC): the retry delay.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_before: Option<Timestamp>,
    pub event: StoredEvent,
}

fn first_attempt() -> u32 {
    1
}

fn task_msg_id(event: &EventId, endpoint: &EndpointId, delivery: &DeliveryId, replay: bool, attempt: u32) -> String {
    match (replay, attempt) {
        (false, 1) => format!("{event}.{endpoint}"),
        (_, 1) => delivery.to_string(),
        (_, n) => format!("{delivery}.{n}"),
    }
}

impl DispatchTask {
    /// `Nats-Msg-Id` of the task: fan-out redeliveries of an event
    /// de-duplicate on (event, endpoint); each replay is its own delivery.
    pub fn msg_id(&self) -> String {
        task_msg_id(&self.event.id, &self.endpoint_id, &self.delivery_id, self.replay_of.is_some(), self.attempt)
    }

    /// The task for the next attempt, due at `not_before`.
    pub fn retry(&self, not_before: Timestamp) -> Self {
        Self { attempt: self.attempt + 1, not_before: Some(not_before), ..self.clone() }
    }
}

/// A parked task without its event: the event stays in HOOKLINE_EVENTS at
/// `event_seq`, where it is read back when the task is unparked. Beside a
/// black hole, parking a copy of every payload would take throughput from
/// the healthy endpoints (BENCHMARKS.md).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskRef {
    pub delivery_id: DeliveryId,
    pub created_at: Timestamp,
    pub endpoint_id: EndpointId,
    pub event_seq: u64,
    /// Checked against what is at `event_seq`: a re-created stream reuses sequences.
    pub event_id: EventId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replay_of: Option<DeliveryId>,
    #[serde(default = "first_attempt")]
    pub attempt: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_before: Option<Timestamp>,
    /// The event's type, so a task whose event expired while parked can
    /// still be recorded; optional, so a stored ref without it still reads.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_type: Option<EventType>,
    /// Whether its event is a test event (`SendTestEvent`), so an outcome
    /// recorded from the reference alone says so; absent reads as not.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub test: bool,
}

impl TaskRef {
    /// The same `Nats-Msg-Id` as the whole task's.
    pub fn msg_id(&self) -> String {
        task_msg_id(&self.event_id, &self.endpoint_id, &self.delivery_id, self.replay_of.is_some(), self.attempt)
    }

    /// The task again, once its event is read back; `None` when `event` is
    /// not the one the task was made for.
    pub fn with_event(self, event: StoredEvent) -> Option<DispatchTask> {
        (event.id == self.event_id).then(|| self.into_task(event))
    }

    /// The whole task, with `event`: the one this ref was made for.
    pub fn into_task(self, event: StoredEvent) -> DispatchTask {
        debug_assert_eq!(event.id, self.event_id);
        DispatchTask {
            delivery_id: self.delivery_id,
            created_at: self.created_at,
            endpoint_id: self.endpoint_id,
            event_seq: self.event_seq,
            replay_of: self.replay_of,
            attempt: self.attempt,
            not_before: self.not_before,
            event,
        }
    }
}

impl From<&DispatchTask> for TaskRef {
    fn from(t: &DispatchTask) -> Self {
        TaskRef {
            delivery_id: t.delivery_id.clone(),
            created_at: t.created_at.clone(),
            endpoint_id: t.endpoint_id.clone(),
            event_seq: t.event_seq,
            event_id: t.event.id.clone(),
            replay_of: t.replay_of.clone(),
            attempt: t.attempt,
            not_before: t.not_before.clone(),
            event_type: Some(t.event.event_type),
            test: t.event.test,
        }
    }
}

/// Where an attempt left the delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AttemptState {
    /// 2xx: done.
    Succeeded,
    /// Failed; another attempt is scheduled.
    Retrying,
    /// Failed and the retry schedule is exhausted.
    Failed,
    /// Not attempted: the endpoint was deleted or disabled meanwhile.
    Dropped,
}

impl AttemptState {
    /// The name in JSON and in `attempts.outcome`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Succeeded => "succeeded",
            Self::Retrying => "retrying",
            Self::Failed => "failed",
            Self::Dropped => "dropped",
        }
    }
}

impl TryFrom<String> for AttemptState {
    type Error = UnknownAttemptState;

    fn try_from(s: String) -> Result<Self, UnknownAttemptState> {
        match s.as_str() {
            "succeeded" => Ok(Self::Succeeded),
            "retrying" => Ok(Self::Retrying),
            "failed" => Ok(Self::Failed),
            "dropped" => Ok(Self::Dropped),
            _ => Err(UnknownAttemptState(s)),
        }
    }
}

/// Text that names no [`AttemptState`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown attempt state `{0}`")]
pub struct UnknownAttemptState(pub String);

/// Why an attempt failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// The receiver answered, but not with 2xx (nor 3xx).
    HttpStatus,
    /// The receiver answered 3xx; redirects are never followed.
    Redirect,
    /// No complete answer within the request timeout.
    Timeout,
    /// The receiver refused the TCP connection.
    ConnectionRefused,
    /// The connection failed otherwise (reset, closed, malformed HTTP).
    Connection,
    /// The host name did not resolve.
    Dns,
    /// TLS handshake or certificate failure.
    Tls,
    /// The endpoint was deleted or disabled before the attempt.
    EndpointUnavailable,
    /// The address policy refused the target (SSRF guard): it is, or
    /// resolves only to, an address deliveries may not reach (loopback,
    /// private, link-local, metadata, ...). Nothing was sent. Outcomes
    /// recorded before the kind had this name read `forbidden_address`.
    #[serde(alias = "forbidden_address")]
    Ssrf,
    /// The SMTP relay refused or failed the e-mail (`status_code` holds its reply code).
    Smtp,
    /// The event left HOOKLINE_EVENTS at its archive age
    /// (`HOOKLINE_ARCHIVE_AFTER`) while the delivery was still waiting
    /// (parked, or between retries); nothing more is sent and the delivery
    /// ends `failed`.
    EventExpired,
}

impl ErrorKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::HttpStatus => "http_status",
            Self::Redirect => "redirect",
            Self::Timeout => "timeout",
            Self::ConnectionRefused => "connection_refused",
            Self::Connection => "connection",
            Self::Dns => "dns",
            Self::Tls => "tls",
            Self::EndpointUnavailable => "endpoint_unavailable",
            Self::Ssrf => "ssrf",
            Self::Smtp => "smtp",
            Self::EventExpired => "event_expired",
        }
    }
}

/// One attempt, as recorded on `hookline.outcomes.<tenant>.<endpoint>`.
///
/// `R` is how the request is held: delivery writes a [`SentRequest`]; the
/// projector, which only stores it, reads it as JSON text
/// (`AttemptOutcome<Box<RawValue>>`) and so never parses and prints it again.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AttemptOutcome<R = SentRequest> {
    pub delivery_id: DeliveryId,
    /// When the delivery was created (the task's `created_at`).
    pub delivery_created_at: Timestamp,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replay_of: Option<DeliveryId>,
    pub event_id: EventId,
    pub event_seq: u64,
    pub tenant_id: TenantId,
    pub endpoint_id: EndpointId,
    pub event_type: EventType,
    /// 1 for the first attempt.
    pub attempt: u32,
    pub state: AttemptState,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_code: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_kind: Option<ErrorKind>,
    /// Human-readable error; never contains header values.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub started_at: Timestamp,
    /// How long the request took, to the nearest millisecond.
    pub duration_ms: u64,
    /// When the next attempt is due, for a `retrying` attempt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_attempt_at: Option<Timestamp>,
    /// The first 4 KiB of the response body, lossily decoded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_excerpt: Option<String>,
    /// What went on the wire, for Raw: the body is the event rendered in
    /// `layout` (checked against `body_sha256`); header values that are
    /// secrets read `********`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request: Option<R>,
    /// W3C trace id shared with the ingest and fan-out logs of this event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace_id: Option<String>,
    /// The event is a test event (see [`StoredEvent::test`]).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub test: bool,
}

/// The request of an attempt, without its body (which is re-rendered from
/// the event, so payloads live in one place and are archived with it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SentRequest {
    pub url: String,
    pub layout: Layout,
    pub headers: Vec<(String, String)>,
    /// Lower-case hex SHA-256 of the body.
    pub body_sha256: String,
}

impl<R> AttemptOutcome<R> {
    /// `Nats-Msg-Id`: an outcome of the same attempt published again within
    /// HOOKLINE_OUTCOMES's duplicate window is dropped; a later copy is
    /// stored, and readers (the projector) keep the first.
    pub fn msg_id(&self) -> String {
        format!("{}.{}", self.delivery_id, self.attempt)
    }
}

/// Parse a `Retry-After` value: delay seconds or an HTTP date. `None` when
/// malformed; a date in the past is zero.
pub fn parse_retry_after(value: &str, now: chrono::DateTime<chrono::Utc>) -> Option<std::time::Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(std::time::Duration::from_secs(secs.min(365 * 24 * 3600)));
    }
    let at = chrono::DateTime::parse_from_rfc2822(value).ok()?;
    Some((at.with_timezone(&chrono::Utc) - now).to_std().unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attempt_states_read_back_from_the_names_they_are_stored_under() {
        for state in [AttemptState::Succeeded, AttemptState::Retrying, AttemptState::Failed, AttemptState::Dropped] {
            assert_eq!(serde_json::to_value(state).unwrap(), state.as_str());
            assert_eq!(AttemptState::try_from(state.as_str().to_owned()), Ok(state));
        }
        assert!(AttemptState::try_from("failing".to_owned()).is_err());
    }

    #[test]
    fn policy_refusals_read_ssrf_and_the_former_name_still_parses() {
        assert_eq!(serde_json::to_string(&ErrorKind::Ssrf).unwrap(), "\"ssrf\"");
        assert_eq!(ErrorKind::Ssrf.as_str(), "ssrf");
        let stored: ErrorKind = serde_json::from_str("\"forbidden_address\"").unwrap();
        assert_eq!(stored, ErrorKind::Ssrf);
    }

    #[test]
    fn a_reference_keeps_whether_its_event_was_a_test_and_an_old_one_reads_as_not() {
        let event = StoredEvent { test: true, ..event() };
        let task = DispatchTask {
            delivery_id: DeliveryId::original(&event.id, &EndpointId::generate()),
            created_at: Timestamp::now(),
            endpoint_id: EndpointId::generate(),
            event_seq: 7,
            replay_of: None,
            attempt: 2,
            not_before: None,
            event,
        };
        let stored = serde_json::to_value(TaskRef::from(&task)).unwrap();
        assert_eq!(stored["test"], true);
        assert!(serde_json::from_value::<TaskRef>(stored.clone()).unwrap().test);
        let mut old = stored.clone();
        old.as_object_mut().unwrap().remove("test");
        assert!(!serde_json::from_value::<TaskRef>(old).unwrap().test, "a ref stored without it is not a test");
        let mut plain = task.clone();
        plain.event.test = false;
        let stored = serde_json::to_value(TaskRef::from(&plain)).unwrap();
        assert!(stored.get("test").is_none(), "not written when false: {stored}");
    }

    #[test]
    fn retry_after_seconds_and_dates() {
        let now = chrono::DateTime::parse_from_rfc3339("2026-11-29T10:00:00Z").unwrap().with_timezone(&chrono::Utc);
        assert_eq!(parse_retry_after("120", now), Some(std::time::Duration::from_secs(120)));
        assert_eq!(parse_retry_after(" 7 ", now), Some(std::time::Duration::from_secs(7)));
        assert_eq!(parse_retry_after("Sun, 29 Nov 2026 10:01:30 GMT", now), Some(std::time::Duration::from_secs(90)));
        assert_eq!(parse_retry_after("Sun, 29 Nov 2026 09:00:00 GMT", now), Some(std::time::Duration::ZERO));
        assert_eq!(parse_retry_after("-5", now), None);
        assert_eq!(parse_retry_after("soon", now), None);
    }

    fn event() -> StoredEvent {
        StoredEvent {
            id: EventId::generate(),
            tenant_id: TenantId::parse("acme").unwrap(),
            event_type: EventType::CustomerCreated,
            occurred_at: "2026-11-29T10:00:00Z".parse().unwrap(),
            received_at: "2026-11-29T10:00:01Z".parse().unwrap(),
            idempotency_key: None,
            data: serde_json::value::to_raw_value(&serde_json::json!({"id": "c1"})).unwrap(),
            test: false,
        }
    }

    #[test]
    fn a_task_ref_reads_back_as_the_task_only_with_its_own_event() {
        let event = event();
        let endpoint_id = EndpointId::generate();
        let task = DispatchTask {
            delivery_id: DeliveryId::original(&event.id, &endpoint_id),
            created_at: Timestamp::try_from("2026-11-29T10:00:02.000Z".to_owned()).unwrap(),
            endpoint_id,
            event_seq: 42,
            replay_of: None,
            attempt: 1,
            not_before: None,
            event: event.clone(),
        };
        let json = serde_json::to_vec(&TaskRef::from(&task)).unwrap();
        assert!(json.len() < 250, "a ref is small: {} bytes", json.len());
        let back: TaskRef = serde_json::from_slice(&json).unwrap();
        assert_eq!(back.msg_id(), task.msg_id());
        assert_eq!(back.clone().with_event(event), Some(task));
        assert_eq!(back.with_event(self::event()), None, "another event at the same sequence");
    }

    type Recorded = AttemptOutcome<Box<serde_json::value::RawValue>>;

    /// Outcomes already in HOOKLINE_OUTCOMES carry their times as RFC 3339
    /// strings in whatever precision and offset they were written with; they
    /// must read back and print byte for byte as they are stored.
    #[test]
    fn stored_outcomes_read_back_and_print_the_same_bytes() {
        let retrying = concat!(
            r#"{"delivery_id":"dlv_01KB0000000000000000000000","delivery_created_at":"2026-11-29T10:00:02.000Z","#,
            r#""event_id":"evt_01KB0000000000000000000000","event_seq":42,"tenant_id":"acme","#,
            r#""endpoint_id":"ep_01KB0000000000000000000000","event_type":"customer.created","attempt":2,"#,
            r#""state":"retrying","status_code":503,"error_kind":"http_status","error":"HTTP 503","#,
            r#""started_at":"2026-11-29T10:00:07.125Z","duration_ms":31,"next_attempt_at":"2026-11-29T10:05:07.156Z","#,
            r#""response_excerpt":"busy","request":{"url":"https://example.com/hook","layout":"envelope","#,
            r#""headers":[["content-type","application/json"],["webhook-signature","********"]],"#,
            r#""body_sha256":"e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"},"#,
            r#""trace_id":"4bf92f3577b34da6a3ce929d0e0e4736"}"#
        );
        // A replay's outcome, times with another offset and no fraction.
        let succeeded = concat!(
            r#"{"delivery_id":"dlv_01KB0000000000000000000001","delivery_created_at":"2026-11-29T11:00:02+01:00","#,
            r#""replay_of":"dlv_01KB0000000000000000000000","event_id":"evt_01KB0000000000000000000000","#,
            r#""event_seq":42,"tenant_id":"acme","endpoint_id":"ep_01KB0000000000000000000000","#,
            r#""event_type":"customer.created","attempt":1,"state":"succeeded","status_code":200,"#,
            r#""started_at":"2026-11-29T11:00:03+01:00","duration_ms":8}"#
        );
        for stored in [retrying, succeeded] {
            // As the projector reads them: the request kept as JSON text.
            let outcome: Recorded = serde_json::from_str(stored).unwrap();
            assert_eq!(serde_json::to_string(&outcome).unwrap(), stored);
        }
        let outcome: Recorded = serde_json::from_str(retrying).unwrap();
        assert_eq!(outcome.next_attempt_at.unwrap().parsed().timestamp_millis() % 1000, 156);
    }

    #[test]
    fn an_outcome_with_a_time_that_is_not_rfc_3339_is_refused_naming_it() {
        let stored = concat!(
            r#"{"delivery_id":"dlv_01KB0000000000000000000000","delivery_created_at":"2026-11-29T10:00:02.000Z","#,
            r#""event_id":"evt_01KB0000000000000000000000","event_seq":42,"tenant_id":"acme","#,
            r#""endpoint_id":"ep_01KB0000000000000000000000","event_type":"customer.created","attempt":1,"#,
            r#""state":"succeeded","started_at":"yesterday","duration_ms":8}"#
        );
        let e = serde_json::from_str::<Recorded>(stored).unwrap_err().to_string();
        assert!(e.contains("must be an RFC 3339 date-time") && e.contains("`yesterday`"), "{e}");
    }
}
