//! Delivery records: the dispatch task a worker executes and the outcome
//! event every attempt writes back.

use serde::{Deserialize, Serialize};

use crate::{
    endpoint::Layout,
    event_type::EventType,
    events::StoredEvent,
    ids::{DeliveryId, EndpointId, EventId, TenantId},
};

/// One (event, endpoint) pair on HOOKLINE_DISPATCH.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DispatchTask {
    pub delivery_id: DeliveryId,
    /// When fan-out (or a replay) created the delivery, RFC 3339 UTC.
    pub created_at: String,
    pub endpoint_id: EndpointId,
    /// The event's sequence in HOOKLINE_EVENTS, where Raw and Replay read it.
    pub event_seq: u64,
    /// For a replay: the delivery it repeats.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replay_of: Option<DeliveryId>,
    pub event: StoredEvent,
}

impl DispatchTask {
    /// `Nats-Msg-Id` of the task: fan-out redeliveries of an event
    /// de-duplicate on (event, endpoint); each replay is its own delivery.
    pub fn msg_id(&self) -> String {
        match &self.replay_of {
            None => format!("{}.{}", self.event.id, self.endpoint_id),
            Some(_) => self.delivery_id.to_string(),
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
        }
    }
}

/// One attempt, as recorded on `hookline.outcomes.<tenant>.<endpoint>`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AttemptOutcome {
    pub delivery_id: DeliveryId,
    pub delivery_created_at: String,
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
    pub started_at: String,
    pub duration_ms: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_attempt_at: Option<String>,
    /// The first 4 KiB of the response body, lossily decoded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_excerpt: Option<String>,
    /// What went on the wire, for Raw: the body is the event rendered in
    /// `layout` (checked against `body_sha256`); header values that are
    /// secrets read `********`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request: Option<SentRequest>,
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

impl AttemptOutcome {
    /// `Nats-Msg-Id`: a re-published outcome of the same attempt is dropped.
    pub fn msg_id(&self) -> String {
        format!("{}.{}", self.delivery_id, self.attempt)
    }
}
