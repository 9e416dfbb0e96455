//! W3C Trace Context (`traceparent`): ingest starts or continues a trace,
//! every NATS message carries the header, and the outgoing webhook request
//! sends it on, so one trace id follows an event through all three
//! services' logs and into its attempt records.
//!
//! When spans are exported ([`crate::otlp`]), each `traceparent` is the
//! OpenTelemetry context of the span that sent it, so the exported spans
//! form one tree per event. When they are not, no OpenTelemetry span exists
//! at all: [`start`] only derives a child id, so the hot path pays nothing
//! for tracing it does not export.

use std::{
    fmt,
    sync::atomic::{AtomicBool, Ordering},
};

use opentelemetry::trace::{SpanContext, SpanId, TraceContextExt as _, TraceFlags, TraceId, TraceState};
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

static EXPORTING: AtomicBool = AtomicBool::new(false);

/// Whether this process exports spans (set once, at start).
pub fn exporting() -> bool {
    EXPORTING.load(Ordering::Relaxed)
}

pub(crate) fn set_exporting() {
    EXPORTING.store(true, Ordering::Relaxed);
}

/// `make()`'s span when this process exports spans, else a disabled one:
/// for spans that only the trace needs (logs have their own lines).
pub fn when_exporting(make: impl FnOnce() -> tracing::Span) -> tracing::Span {
    if exporting() { make() } else { tracing::Span::none() }
}

/// Begin `span` as a child of `parent` (the remote caller's context, when
/// there is one) and return the `traceparent` that `span`'s own children
/// continue. Exporting: `span`'s OpenTelemetry context. Otherwise: a child
/// id of `parent`'s trace, or a new trace.
pub fn start(span: &tracing::Span, parent: Option<TraceParent>) -> TraceParent {
    if exporting() && !span.is_disabled() {
        if let Some(p) = parent {
            // Fails only for a span already started, which has its parent.
            let _ = span.set_parent(opentelemetry::Context::new().with_remote_span_context(p.span_context()));
        }
        if let Some(own) = TraceParent::of(span) {
            return own;
        }
    }
    parent.map_or_else(TraceParent::new_root, |p| p.child())
}

/// NATS and HTTP header name.
pub const TRACEPARENT: &str = "traceparent";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceParent {
    trace_id: [u8; 16],
    span_id: [u8; 8],
    sampled: bool,
}

const DIGITS: &[u8; 16] = b"0123456789abcdef";

fn hex_into(bytes: &[u8], out: &mut [u8]) {
    for (b, pair) in bytes.iter().zip(out.chunks_exact_mut(2)) {
        pair[0] = DIGITS[usize::from(b >> 4)];
        pair[1] = DIGITS[usize::from(b & 15)];
    }
}

fn hex(bytes: &[u8]) -> String {
    let mut s = vec![0; 2 * bytes.len()];
    hex_into(bytes, &mut s);
    String::from_utf8(s).expect("hex digits are ASCII")
}

/// Lower-case hex only, as W3C Trace Context requires.
fn nibble(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        _ => None,
    }
}

fn unhex<const N: usize>(s: &str) -> Option<[u8; N]> {
    if s.len() != 2 * N {
        return None;
    }
    let mut out = [0u8; N];
    for (o, pair) in out.iter_mut().zip(s.as_bytes().chunks_exact(2)) {
        *o = nibble(pair[0])? << 4 | nibble(pair[1])?;
    }
    Some(out)
}

impl TraceParent {
    /// A new trace.
    pub fn new_root() -> Self {
        Self { trace_id: rand::random(), span_id: rand::random(), sampled: true }
    }

    /// Parse `00-<32 hex>-<16 hex>-<2 hex>`; all-zero ids are invalid.
    pub fn parse(s: &str) -> Option<Self> {
        let mut parts = s.trim().split('-');
        let (version, trace, span, flags) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        if version != "00" || parts.next().is_some() {
            return None;
        }
        let trace_id = unhex::<16>(trace).filter(|t| t != &[0; 16])?;
        let span_id = unhex::<8>(span).filter(|s| s != &[0; 8])?;
        let flags = unhex::<1>(flags)?;
        Some(Self { trace_id, span_id, sampled: flags[0] & 1 == 1 })
    }

    /// Continue `header`'s trace, or start one when it is absent or malformed.
    pub fn continue_or_start(header: Option<&str>) -> Self {
        header.and_then(Self::parse).map(|p| p.child()).unwrap_or_else(Self::new_root)
    }

    /// A new span in the same trace.
    pub fn child(&self) -> Self {
        Self { span_id: rand::random(), ..*self }
    }

    pub fn trace_id(&self) -> String {
        hex(&self.trace_id)
    }

    /// The trace id, printed without allocating (for span fields).
    pub fn trace_id_display(&self) -> impl fmt::Display + use<> {
        TraceIdHex(self.trace_id)
    }

    /// `span`'s OpenTelemetry context, when spans are exported and `span`
    /// has one.
    pub fn of(span: &tracing::Span) -> Option<Self> {
        if !exporting() || span.is_disabled() {
            return None;
        }
        let cx = span.context();
        let sc = cx.span().span_context().clone();
        sc.is_valid().then(|| Self {
            trace_id: sc.trace_id().to_bytes(),
            span_id: sc.span_id().to_bytes(),
            sampled: sc.is_sampled(),
        })
    }

    fn span_context(&self) -> SpanContext {
        let flags = if self.sampled { TraceFlags::SAMPLED } else { TraceFlags::default() };
        SpanContext::new(
            TraceId::from_bytes(self.trace_id),
            SpanId::from_bytes(self.span_id),
            flags,
            true,
            TraceState::default(),
        )
    }
}

struct TraceIdHex([u8; 16]);

impl fmt::Display for TraceIdHex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut buf = [0u8; 32];
        hex_into(&self.0, &mut buf);
        f.write_str(std::str::from_utf8(&buf).expect("hex digits are ASCII"))
    }
}

impl fmt::Display for TraceParent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Printed for every attempt and task: one buffer, no allocation.
        let mut buf = *b"00-00000000000000000000000000000000-0000000000000000-00";
        hex_into(&self.trace_id, &mut buf[3..35]);
        hex_into(&self.span_id, &mut buf[36..52]);
        buf[54] = if self.sampled { b'1' } else { b'0' };
        f.write_str(std::str::from_utf8(&buf).expect("hex digits are ASCII"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_export_no_span_is_made_and_the_trace_still_continues() {
        assert!(!exporting(), "nothing in these tests sets up an exporter");
        let span = when_exporting(|| unreachable!("no span is made when nothing is exported"));
        assert!(span.is_disabled());
        let parent = TraceParent::parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01").unwrap();
        let own = start(&span, Some(parent));
        assert_eq!(own.trace_id(), parent.trace_id());
        assert_eq!(own.trace_id_display().to_string(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_ne!(own, parent, "a child id");
        assert_eq!(TraceParent::of(&span), None);
        assert_eq!(start(&span, None).to_string().len(), 55, "a new trace");
    }

    #[test]
    fn round_trip_and_children_keep_the_trace() {
        let p = TraceParent::parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01").unwrap();
        assert_eq!(p.to_string(), "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
        let unsampled = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00";
        assert_eq!(TraceParent::parse(unsampled).unwrap().to_string(), unsampled);
        let c = p.child();
        assert_eq!(c.trace_id(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_ne!(c.to_string(), p.to_string());
        for bad in [
            "",
            "00-0000-0000-01",
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
        ] {
            assert!(TraceParent::parse(bad).is_none(), "{bad}");
        }
        assert_eq!(TraceParent::continue_or_start(Some("junk")).to_string().len(), 55);
    }
}
