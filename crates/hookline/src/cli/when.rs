//! Times and durations on the command line, read as the settings read them
//! ([`hookline_delivery::settings::parse_duration`]).

use std::time::{Duration, SystemTime};

use hookline_delivery::settings::{DurationError, parse_duration};

/// Why a `--since` / `--until` value is refused.
#[derive(Debug, thiserror::Error)]
pub enum InstantError {
    #[error("`{0}` is neither an RFC 3339 time (2026-12-06T08:00:00Z) nor a duration ago (2h, 1h30m, 2d)")]
    Neither(String),
    #[error("`{0}` reaches back before 1970")]
    TooFarBack(String),
}

/// An RFC 3339 time, as written (the service checks it and names the
/// field), or a duration meaning that long ago (`2h`, `1d12h`), turned
/// into the RFC 3339 time it stands for.
pub fn instant(s: &str) -> Result<String, InstantError> {
    let s = s.trim();
    match parse_duration(s) {
        Ok(ago) => {
            let at = SystemTime::now().checked_sub(ago).ok_or_else(|| InstantError::TooFarBack(s.to_owned()))?;
            Ok(humantime::format_rfc3339_millis(at).to_string())
        }
        // A date has dashes; anything else is a mistyped duration.
        Err(_) if s.len() >= 10 && s.as_bytes()[4] == b'-' => Ok(s.to_owned()),
        Err(_) => Err(InstantError::Neither(s.to_owned())),
    }
}

/// Why a `--grace-period` is refused.
#[derive(Debug, thiserror::Error)]
pub enum GraceError {
    #[error(transparent)]
    Duration(#[from] DurationError),
    #[error("must be whole seconds, at most {} (about 136 years)", u32::MAX)]
    Seconds,
}

/// Whole seconds: `86400` as before, or `1d`, `12h`, `90m`.
pub fn grace_period(s: &str) -> Result<u32, GraceError> {
    let d: Duration = parse_duration(s)?;
    if d.subsec_nanos() != 0 {
        return Err(GraceError::Seconds);
    }
    d.as_secs().try_into().map_err(|_| GraceError::Seconds)
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[test]
    fn a_grace_period_takes_seconds_as_before_and_durations() {
        assert_eq!(grace_period("86400").unwrap(), 86_400);
        assert_eq!(grace_period("0").unwrap(), 0);
        assert_eq!(grace_period("1d").unwrap(), 86_400);
        assert_eq!(grace_period("1h30m").unwrap(), 5_400);
        assert!(grace_period("1.5").unwrap_err().to_string().contains("whole seconds"));
        assert!(grace_period("tomorrow").unwrap_err().to_string().contains("like 90 (seconds), 500ms, 5m"));
    }

    #[test]
    fn since_takes_rfc_3339_as_written_or_a_duration_ago() {
        assert_eq!(instant("2026-12-01T00:00:00+01:00").unwrap(), "2026-12-01T00:00:00+01:00");
        let two_hours_ago = humantime::parse_rfc3339(&instant("2h").unwrap()).unwrap();
        let ago = SystemTime::now().duration_since(two_hours_ago).unwrap();
        assert!(ago >= Duration::from_secs(7200) && ago < Duration::from_secs(7260), "{ago:?}");
        let e = instant("yesterday").unwrap_err().to_string();
        assert!(e.contains("neither an RFC 3339 time") && e.contains("duration ago"), "{e}");
    }

    /// The flag's name and the rule reach the user through clap.
    #[test]
    fn a_bad_flag_value_names_the_flag_and_the_rule() {
        #[derive(Parser, Debug)]
        struct Flags {
            #[arg(long, value_parser = grace_period)]
            grace_period: Option<u32>,
            #[arg(long, value_parser = instant)]
            since: Option<String>,
        }
        let e = Flags::try_parse_from(["t", "--grace-period", "1x"]).unwrap_err().to_string();
        assert!(e.contains("--grace-period") && e.contains("`1x` is not a duration like"), "{e}");
        let e = Flags::try_parse_from(["t", "--since", "later"]).unwrap_err().to_string();
        assert!(e.contains("--since") && e.contains("neither an RFC 3339 time"), "{e}");
    }
}
