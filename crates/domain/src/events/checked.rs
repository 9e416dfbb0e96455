//! Strings that carry meaning, checked when they are deserialised: a value
//! of one of these types is valid.

use std::borrow::Cow;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Serialize};

use crate::FieldError;

macro_rules! checked_string {
    ($(#[$doc:meta])* $name:ident, $format:expr, |$s:ident| $check:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl TryFrom<String> for $name {
            type Error = RuleBroken;
            fn try_from($s: String) -> Result<Self, RuleBroken> {
                let rule: Result<(), RuleBroken> = $check;
                rule.map(|()| Self($s))
            }
        }

        impl From<$name> for String {
            fn from(v: $name) -> String {
                v.0
            }
        }

        impl JsonSchema for $name {
            fn schema_name() -> Cow<'static, str> {
                stringify!($name).into()
            }
            fn inline_schema() -> bool {
                true
            }
            fn json_schema(_: &mut SchemaGenerator) -> Schema {
                let format: Option<&str> = $format;
                match format {
                    Some(f) => json_schema!({"type": "string", "minLength": 1, "format": f}),
                    None => json_schema!({"type": "string", "minLength": 1, "maxLength": 1024}),
                }
            }
        }
    };
}

/// The rule a checked string broke; the message names the rule, the field
/// is named by whoever reads the value (serde's path, a [`FieldError`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RuleBroken {
    #[error("must not be empty")]
    Empty,
    #[error("must be at most 1024 bytes, got {len}")]
    TooLong { len: usize },
    #[error("must be an e-mail address like name@example.com, got `{got}`")]
    NotEmail { got: String },
    #[error("must be an RFC 3339 date-time with offset like 2026-03-02T09:00:00+01:00 ({source}), got `{got}`")]
    NotTimestamp {
        got: String,
        #[source]
        source: chrono::ParseError,
    },
    #[error("must be an IANA time zone name like Europe/Zurich, got `{got}`")]
    NotTimeZone { got: String },
    #[error("must be an http(s) URL, got `{got}`")]
    NotUrl { got: String },
}

fn text_rule(s: &str) -> Result<(), RuleBroken> {
    if s.trim().is_empty() {
        Err(RuleBroken::Empty)
    } else if s.len() > 1024 {
        Err(RuleBroken::TooLong { len: s.len() })
    } else {
        Ok(())
    }
}

checked_string!(
    /// Non-empty text of at most 1024 bytes.
    Text, None, |s| text_rule(&s)
);
checked_string!(
    /// An e-mail address: one `@` with text on both sides and a dot in the domain.
    Email, Some("email"), |s| {
        let parts: Vec<&str> = s.split('@').collect();
        if parts.len() == 2 && !parts[0].is_empty() && parts[1].contains('.') && !parts[1].starts_with('.')
            && !parts[1].ends_with('.') && !s.chars().any(char::is_whitespace) && s.len() <= 254 {
            Ok(())
        } else {
            Err(RuleBroken::NotEmail { got: s.clone() })
        }
    }
);
checked_string!(
    /// An IANA time zone name such as `Europe/Zurich` or `UTC`.
    TimeZone, Some("iana-time-zone"), |s| {
        let ok = !s.is_empty() && s.len() <= 64
            && s.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'/' | b'_' | b'-' | b'+'))
            && s.as_bytes()[0].is_ascii_uppercase();
        if ok { Ok(()) } else { Err(RuleBroken::NotTimeZone { got: s.clone() }) }
    }
);
checked_string!(
    /// A URL for online meetings.
    Url, Some("uri"), |s| {
        if (s.starts_with("https://") || s.starts_with("http://")) && s.len() <= 2048 && !s.chars().any(char::is_whitespace) {
            Ok(())
        } else {
            Err(RuleBroken::NotUrl { got: s.clone() })
        }
    }
);

impl Email {
    pub fn parse(s: &str) -> Result<Self, FieldError> {
        Self::try_from(s.to_owned()).map_err(|rule| FieldError::new("email", rule))
    }
}

/// An RFC 3339 date-time with offset, kept exactly as sent (the text is
/// what receivers and stored records see, byte for byte) and parsed once,
/// when it is read: workers compare task times on every attempt.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct Timestamp {
    text: String,
    at: chrono::DateTime<chrono::FixedOffset>,
}

impl Timestamp {
    pub fn as_str(&self) -> &str {
        &self.text
    }

    pub fn parsed(&self) -> chrono::DateTime<chrono::FixedOffset> {
        self.at
    }

    pub fn now() -> Self {
        Self::from_utc(chrono::Utc::now())
    }

    /// `t` in UTC with milliseconds, as Hookline stamps what it records.
    /// The time is cut to the milliseconds of the text, so it compares as
    /// it will once read back.
    pub fn from_utc(t: chrono::DateTime<chrono::Utc>) -> Self {
        use chrono::SubsecRound;
        Self { text: t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true), at: t.trunc_subsecs(3).fixed_offset() }
    }
}

/// `YYYY-MM-DDTHH:MM:SS.mmmZ`, the form Hookline stamps times in, read
/// without the general RFC 3339 parser: fan-out and the workers read two or
/// three of them with every event and task. `None` for anything else (a
/// producer's own form, a leap second), which the general parser reads.
fn hookline_stamp(text: &str) -> Option<chrono::DateTime<chrono::FixedOffset>> {
    let b = text.as_bytes();
    let shape = b.len() == 24
        && [(4, b'-'), (7, b'-'), (10, b'T'), (13, b':'), (16, b':'), (19, b'.'), (23, b'Z')]
            .iter()
            .all(|&(i, c)| b[i] == c);
    if !shape {
        return None;
    }
    let n = |from: usize, to: usize| {
        b[from..to].iter().try_fold(0u32, |n, &c| c.is_ascii_digit().then(|| n * 10 + u32::from(c - b'0')))
    };
    let date = chrono::NaiveDate::from_ymd_opt(n(0, 4)? as i32, n(5, 7)?, n(8, 10)?)?;
    let time = chrono::NaiveTime::from_hms_milli_opt(n(11, 13)?, n(14, 16)?, n(17, 19)?, n(20, 23)?)?;
    Some(date.and_time(time).and_utc().fixed_offset())
}

impl TryFrom<String> for Timestamp {
    type Error = RuleBroken;
    fn try_from(text: String) -> Result<Self, RuleBroken> {
        if let Some(at) = hookline_stamp(&text) {
            return Ok(Self { text, at });
        }
        match chrono::DateTime::parse_from_rfc3339(&text) {
            Ok(at) => Ok(Self { text, at }),
            Err(source) => Err(RuleBroken::NotTimestamp { got: text, source }),
        }
    }
}

impl std::str::FromStr for Timestamp {
    type Err = RuleBroken;
    fn from_str(s: &str) -> Result<Self, RuleBroken> {
        Self::try_from(s.to_owned())
    }
}

impl From<Timestamp> for String {
    fn from(t: Timestamp) -> String {
        t.text
    }
}

impl std::fmt::Display for Timestamp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

/// The text as it came, without copying it first (as `into = "String"` would).
impl Serialize for Timestamp {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.text)
    }
}

impl JsonSchema for Timestamp {
    fn schema_name() -> Cow<'static, str> {
        "Timestamp".into()
    }
    fn inline_schema() -> bool {
        true
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({"type": "string", "minLength": 1, "format": "date-time"})
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_keep_their_text_and_compare_by_time() {
        let t: Timestamp = "2026-11-29T11:00:00.5+01:00".parse().unwrap();
        assert_eq!(serde_json::to_string(&t).unwrap(), r#""2026-11-29T11:00:00.5+01:00""#);
        let utc: Timestamp = serde_json::from_str(r#""2026-11-29T10:00:00.500Z""#).unwrap();
        assert_eq!(t.parsed(), utc.parsed());
        assert_ne!(t, utc, "the same time written otherwise is another text");
    }

    #[test]
    fn hookline_stamps_read_as_the_general_parser_reads_them() {
        let mut t = chrono::DateTime::parse_from_rfc3339("1970-01-01T00:00:00Z").unwrap().to_utc();
        // Every month and day of a leap and a common year, and times across the day.
        for step in 0..(2 * 366 * 24) {
            let text = t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
            let general = chrono::DateTime::parse_from_rfc3339(&text).unwrap();
            assert_eq!(hookline_stamp(&text), Some(general), "{text}");
            t += chrono::TimeDelta::milliseconds(3_600_000 + 61_001 * (step % 7) + step % 1000)
                + chrono::TimeDelta::days(10 * (step % 3));
        }
        for other in [
            "2026-11-29T10:00:00Z",
            "2026-11-29T10:00:00.5Z",
            "2026-11-29T11:00:00.000+01:00",
            "2026-11-29t10:00:00.000z",
            "2016-12-31T23:59:60.000Z",
            "2026-02-30T10:00:00.000Z",
            "2026-11-29T24:00:00.000Z",
            "2026-1a-29T10:00:00.000Z",
        ] {
            assert_eq!(hookline_stamp(other), None, "{other}");
        }
        // Those the stamp does not read still parse as before (or fail as before).
        assert_eq!(
            Timestamp::try_from("2016-12-31T23:59:60.000Z".to_owned()).map(|t| t.parsed()).ok(),
            chrono::DateTime::parse_from_rfc3339("2016-12-31T23:59:60.000Z").ok()
        );
        assert!(Timestamp::try_from("2026-02-30T10:00:00.000Z".to_owned()).is_err());
    }

    #[test]
    fn hookline_stamps_read_back_as_the_same_time() {
        let now = chrono::Utc::now();
        let stamp = Timestamp::from_utc(now);
        let back: Timestamp = stamp.as_str().parse().unwrap();
        assert_eq!(back, stamp);
        assert!(back.parsed() <= now && now - back.parsed().to_utc() < chrono::TimeDelta::milliseconds(1));
    }
}
