//! W3C Trace Context (`traceparent`) without an OpenTelemetry SDK: ingest
//! starts or continues a trace, every NATS message carries the header, and
//! the outgoing webhook request sends it on, so one trace id follows an
//! event through all three services' logs and into its attempt records.

use std::fmt;

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
