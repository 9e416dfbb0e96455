//! `Retry-After` comes from receivers we do not control: seconds or an HTTP
//! date, anything else ignored, never a panic or an unbounded seconds value.
#![no_main]

use hookline_domain::delivery::parse_retry_after;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    let Ok(value) = std::str::from_utf8(bytes) else { return };
    let now = chrono::Utc::now();
    if let Some(delay) = parse_retry_after(value, now) {
        if value.trim().bytes().all(|b| b.is_ascii_digit()) {
            assert!(delay.as_secs() <= 365 * 24 * 3600, "seconds are capped at a year");
        }
    }
});
