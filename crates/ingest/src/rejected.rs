//! The rejection records on `hookline.rejected.<tenant>` (HOOKLINE_REJECTED):
//! their format, which [`crate::intake`] writes, and the newest-first pages
//! that `ListRejectedEvents` reads.
//!
//! JetStream reads a subject only forwards, so a page is read backwards in
//! windows of stream sequences: the newest window first, each next one twice
//! as wide, until the page is full. Each window is read forwards with "next
//! message of this subject at or after this sequence", so other tenants'
//! records are skipped by the server, and only the newest records a page
//! still needs are held. The time range becomes a sequence range first (the
//! stream's stored times grow with its sequence), by bisection.

use std::collections::VecDeque;

use async_nats::jetstream::{
    Context,
    message::StreamMessage,
    stream::{RawMessageErrorKind, Stream},
};
use base64::{Engine as _, engine::general_purpose::STANDARD as BASE64};
use chrono::{DateTime, Utc};
use hookline_bus::{REJECTED_STREAM, rejected_subject};
use hookline_domain::ids::TenantId;
use serde::{Deserialize, Serialize};

use crate::Error;

/// One rejection record, as stored (JSON). Every field but the error and the
/// payload has a default, so a record missing one still reads.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// The intake message's sequence in HOOKLINE_INTAKE; 0 when unknown.
    #[serde(default)]
    pub intake_sequence: u64,
    /// The tenant id as the intake subject named it (it may name no tenant).
    #[serde(default)]
    pub tenant_id: String,
    /// When ingest refused it, RFC 3339 UTC (milliseconds).
    #[serde(default)]
    pub rejected_at: String,
    pub error: Refused,
    /// Size of the published payload.
    #[serde(default)]
    pub payload_bytes: u64,
    /// When HOOKLINE_INTAKE stored the message, RFC 3339 UTC (nanoseconds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub intake_stored_at: Option<String>,
    #[serde(flatten)]
    pub payload: Kept,
}

/// The rule an event broke, as a gRPC `BadRequest` field violation names it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Refused {
    /// The field's path, e.g. `data.customer.email`; `tenant_id` for an
    /// unknown tenant; `event` when the text is no JSON object.
    #[serde(default)]
    pub field: String,
    #[serde(default)]
    pub rule: String,
    /// `field: rule`, as ingest's error reads.
    #[serde(default)]
    pub message: String,
}

/// The published payload, exactly: under one of three keys.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kept {
    /// UTF-8 with no control characters but tab, line feed and carriage
    /// return (every JSON document): the text itself.
    Payload(String),
    /// Anything else, base64.
    PayloadBase64(String),
    /// A payload above [`MAX_KEPT_BYTES`] (only possible if an operator
    /// raised the intake's limit): its first bytes, base64.
    PayloadBase64Truncated(String),
    /// Records of the first format: the first 4 KiB, decoded lossily as
    /// UTF-8. Never written; read as truncated.
    PayloadExcerpt(String),
}

/// Largest payload a rejection record keeps whole: the intake's own limit,
/// so every message HOOKLINE_INTAKE took fits.
pub const MAX_KEPT_BYTES: usize = hookline_bus::INTAKE_MAX_MESSAGE_BYTES as usize;

impl Kept {
    /// The payload as a record keeps it: text when it is text (at most
    /// twice its size once escaped), else base64. A record still fits in a
    /// NATS message.
    pub fn of(payload: &[u8]) -> Self {
        if payload.len() > MAX_KEPT_BYTES {
            return Kept::PayloadBase64Truncated(BASE64.encode(&payload[..MAX_KEPT_BYTES]));
        }
        match std::str::from_utf8(payload) {
            Ok(text) if !text.chars().any(|c| c.is_control() && !matches!(c, '\t' | '\n' | '\r')) => {
                Kept::Payload(text.to_owned())
            }
            _ => Kept::PayloadBase64(BASE64.encode(payload)),
        }
    }

    /// The bytes kept, and whether they are only the first ones.
    pub fn bytes(&self) -> Result<(Vec<u8>, bool), base64::DecodeError> {
        Ok(match self {
            Kept::Payload(text) => (text.as_bytes().to_vec(), false),
            Kept::PayloadBase64(b) => (BASE64.decode(b)?, false),
            Kept::PayloadBase64Truncated(b) => (BASE64.decode(b)?, true),
            Kept::PayloadExcerpt(text) => (text.as_bytes().to_vec(), true),
        })
    }
}

/// A record read back, with where and when the stream stored it.
#[derive(Debug, Clone, PartialEq)]
pub struct Rejected {
    /// Its sequence in HOOKLINE_REJECTED.
    pub sequence: u64,
    /// When HOOKLINE_REJECTED stored it: what the time range filters on.
    pub stored_at: DateTime<Utc>,
    pub record: Record,
}

/// What one page asks for.
#[derive(Debug, Clone)]
pub struct Query {
    pub tenant: TenantId,
    /// Stored at or after.
    pub after: Option<DateTime<Utc>>,
    /// Stored strictly before.
    pub before: Option<DateTime<Utc>>,
    /// Records stored before this sequence only (the previous page's token).
    pub before_sequence: Option<u64>,
    pub page_size: usize,
}

/// One page, newest first.
#[derive(Debug, Clone, PartialEq)]
pub struct Page {
    pub records: Vec<Rejected>,
    /// The `before_sequence` of the next page; `None` on the last.
    pub next_before: Option<u64>,
}

/// Payload bytes after which a page ends early (it always holds one
/// record), so a page of large refused events stays inside a gRPC client's
/// default 4 MiB message limit.
pub const MAX_PAGE_PAYLOAD_BYTES: u64 = 1024 * 1024;

/// Newest first, under the query's bounds.
pub async fn page(js: &Context, q: &Query) -> Result<Page, Error> {
    let empty = Page { records: Vec::new(), next_before: None };
    let stream = js.get_stream(REJECTED_STREAM).await.map_err(unavailable)?;
    let state = &stream.cached_info().state;
    if state.messages == 0 {
        return Ok(empty);
    }
    let subject = rejected_subject(q.tenant.as_str());
    let (first, last) = (state.first_sequence, state.last_sequence);
    let floor = match q.after {
        None => first,
        Some(at) => match first_stored_at(&stream, &subject, first, last, at).await? {
            Some(seq) => seq,
            None => return Ok(empty),
        },
    };
    let mut end = last + 1;
    if let Some(at) = q.before
        && let Some(seq) = first_stored_at(&stream, &subject, first, last, at).await?
    {
        end = seq;
    }
    if let Some(token) = q.before_sequence {
        end = end.min(token);
    }
    // One more than the page, to know whether another follows.
    let want = q.page_size + 1;
    let mut newest_first: Vec<Rejected> = Vec::with_capacity(want);
    let mut width = want as u64;
    while newest_first.len() < want && end > floor {
        let start = end.saturating_sub(width).max(floor);
        let need = want - newest_first.len();
        let mut window: VecDeque<StreamMessage> = VecDeque::with_capacity(need + 1);
        let mut seq = start;
        while seq < end {
            let Some(msg) = next_at(&stream, &subject, seq).await? else { break };
            if msg.sequence >= end {
                break;
            }
            seq = msg.sequence + 1;
            window.push_back(msg);
            if window.len() > need {
                window.pop_front();
            }
        }
        newest_first.extend(window.into_iter().rev().filter_map(read));
        end = start;
        width = width.saturating_mul(2);
    }
    let mut records = Vec::with_capacity(q.page_size);
    let mut bytes = 0;
    for r in newest_first.iter() {
        bytes += r.record.payload_bytes;
        if records.len() == q.page_size || (!records.is_empty() && bytes > MAX_PAGE_PAYLOAD_BYTES) {
            break;
        }
        records.push(r.clone());
    }
    let more = newest_first.len() > records.len();
    let next_before = more.then(|| records.last().map(|r| r.sequence)).flatten();
    Ok(Page { records, next_before })
}

/// The record stored at `msg`, or `None` (logged) if it does not read.
fn read(msg: StreamMessage) -> Option<Rejected> {
    let stored_at = DateTime::from_timestamp_nanos(msg.time.unix_timestamp_nanos().try_into().unwrap_or(i64::MAX));
    match serde_json::from_slice::<Record>(&msg.payload) {
        Ok(record) => Some(Rejected { sequence: msg.sequence, stored_at, record }),
        Err(e) => {
            tracing::error!(stream = REJECTED_STREAM, seq = msg.sequence, error = %e, "unreadable rejection record skipped");
            None
        }
    }
}

/// The first message of `subject` at or after sequence `seq`.
async fn next_at(stream: &Stream, subject: &str, seq: u64) -> Result<Option<StreamMessage>, Error> {
    match stream.raw_message_builder().sequence(seq).next_by_subject(subject).send().await {
        Ok(msg) => Ok(Some(msg)),
        Err(e) if matches!(e.kind(), RawMessageErrorKind::NoMessageFound) => Ok(None),
        Err(e) => Err(unavailable(e)),
    }
}

/// The sequence of the first message of `subject` stored at or after `at`,
/// searching `first..=last` by bisection: the first message at or after a
/// sequence is stored at or after `at` from some sequence on.
async fn first_stored_at(
    stream: &Stream,
    subject: &str,
    first: u64,
    last: u64,
    at: DateTime<Utc>,
) -> Result<Option<u64>, Error> {
    let at = at.timestamp_nanos_opt().map_or(i128::MAX, i128::from);
    let (mut lo, mut hi) = (first, last + 1);
    let mut found = None;
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        match next_at(stream, subject, mid).await? {
            Some(msg) if msg.time.unix_timestamp_nanos() < at => lo = msg.sequence + 1,
            next => {
                hi = mid;
                found = next.map(|m| m.sequence);
            }
        }
    }
    Ok(found)
}

fn unavailable(e: impl std::error::Error + Send + Sync + 'static) -> Error {
    Error::Unavailable(Box::new(e))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn a_rejected_payload_comes_back_byte_for_byte() {
        let json_text = "{\"type\": \"customer.created\",\n\t\"data\": {\"note\": \"caf\u{e9} \\\" \u{1f600}\"}}  ";
        let not_utf8 = b"{\"type\": \"\xff\xfe\"}".to_vec();
        let control = "a\u{0}b\u{1b}c".as_bytes().to_vec();
        for (bytes, key) in [
            (json_text.as_bytes().to_vec(), "payload"),
            (not_utf8, "payload_base64"),
            (control, "payload_base64"),
            (Vec::new(), "payload"),
        ] {
            let record = Record {
                intake_sequence: 7,
                tenant_id: "acme".into(),
                rejected_at: "2026-11-29T04:02:47.769Z".into(),
                error: Refused {
                    field: "type".into(),
                    rule: "is required".into(),
                    message: "type: is required".into(),
                },
                payload_bytes: bytes.len() as u64,
                intake_stored_at: None,
                payload: Kept::of(&bytes),
            };
            let stored = serde_json::to_vec(&record).unwrap();
            let value: serde_json::Value = serde_json::from_slice(&stored).unwrap();
            assert!(value.get(key).is_some(), "{key} in {value}");
            let back: Record = serde_json::from_slice(&stored).unwrap();
            assert_eq!(back, record);
            assert_eq!(back.payload.bytes().unwrap(), (bytes, false));
        }
    }

    /// Records as intake has written them read back, with or without the
    /// intake's stored time.
    #[test]
    fn records_written_before_read_back() {
        let old = json!({
            "intake_sequence": 3, "tenant_id": "acme", "rejected_at": "2026-11-29T04:02:47.769Z",
            "error": {"field": "data.customer.email", "rule": "must be an e-mail address",
                "message": "data.customer.email: must be an e-mail address"},
            "payload_bytes": 2, "payload_base64": "e30="
        });
        let r: Record = serde_json::from_value(old).unwrap();
        assert_eq!((r.error.field.as_str(), r.intake_stored_at), ("data.customer.email", None));
        assert_eq!(r.payload.bytes().unwrap(), (b"{}".to_vec(), false));
        let first_format = json!({
            "intake_sequence": 1, "tenant_id": "acme", "rejected_at": "2026-11-20T04:02:47.769Z",
            "error": {"field": "type", "rule": "is required", "message": "type: is required"},
            "payload_bytes": 5000, "payload_excerpt": "{\"data\": "
        });
        let r: Record = serde_json::from_value(first_format).unwrap();
        assert_eq!(r.payload.bytes().unwrap(), (b"{\"data\": ".to_vec(), true), "an excerpt reads as truncated");
    }

    #[test]
    fn the_intake_limit_keeps_every_event_and_its_record_fits_a_nats_message() {
        const { assert!(MAX_KEPT_BYTES >= hookline_domain::events::MAX_EVENT_BYTES) };
        // Worst case: every byte escaped to two, plus the record's other fields.
        let worst = "\"".repeat(MAX_KEPT_BYTES);
        assert!(serde_json::to_vec(&Kept::of(worst.as_bytes())).unwrap().len() + 4096 < 1024 * 1024);
        let truncated = Kept::of(&vec![b'x'; MAX_KEPT_BYTES + 1]);
        assert!(matches!(truncated, Kept::PayloadBase64Truncated(_)));
        assert_eq!(truncated.bytes().unwrap(), (vec![b'x'; MAX_KEPT_BYTES], true));
    }
}
