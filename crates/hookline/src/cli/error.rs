//! How a failed command ends: a readable report (or JSON with `--json`) on
//! stderr, and an exit code per class of error that scripts can branch on.
//!
//! A service's refusal arrives as a gRPC status with `google.rpc` details
//! (`ErrorInfo`, `BadRequest`, `RetryInfo`; see `proto/hookline/errors`):
//! [`Refused`] keeps them, so the report shows each bad field and when to
//! retry, not only the message.

use std::{fmt, process::ExitCode, time::Duration};

use serde_json::{Value, json};
use tonic::Code;
use tonic_types::StatusExt;

/// The exit codes, as `hookline --help` and the README list them.
pub const EXIT_CODES: &str = "\
Exit codes:
  0  success
  1  any other error (the service's fault, a local file, a failed job)
  2  usage: an unknown command, flag or value (reported by the parser)
  3  invalid argument: a field breaks a rule (INVALID_ARGUMENT)
  4  not found (NOT_FOUND)
  5  conflict: already exists, changed concurrently or not in a state that
     allows it (ALREADY_EXISTS, ABORTED, FAILED_PRECONDITION)
  6  not allowed: a missing or unknown token, or an operator-only call
     (UNAUTHENTICATED, PERMISSION_DENIED)
  7  a limit: rate (RESOURCE_EXHAUSTED, retry after the delay shown) or plan
     (reason PLAN_LIMIT_REACHED, PLAN_BELOW_ENDPOINT_COUNT)
  8  unavailable: the service cannot be reached or its backing store is down
     (UNAVAILABLE, DEADLINE_EXCEEDED); retry later

Errors print on stderr: the message, each bad field as `field: rule`, and the
delay to retry after. With --json they print there as one JSON object
{\"error\": {\"code\", \"reason\", \"message\", \"field_violations\", \"retry_delay\", ...}},
so stdout only ever holds results.";

/// A call a service refused, with the details its status carried.
#[derive(Debug, Clone, PartialEq)]
pub struct Refused {
    pub code: Code,
    pub message: String,
    /// `ErrorInfo.reason`, when the service sent one.
    pub reason: Option<String>,
    pub metadata: Vec<(String, String)>,
    /// `BadRequest`: (field path, rule), one per bad field.
    pub fields: Vec<(String, String)>,
    /// `RetryInfo.retry_delay`.
    pub retry_delay: Option<Duration>,
}

impl From<tonic::Status> for Refused {
    fn from(s: tonic::Status) -> Self {
        let details = s.get_error_details();
        let (reason, metadata) = match details.error_info() {
            Some(info) => {
                let mut metadata: Vec<_> = info.metadata.clone().into_iter().collect();
                metadata.sort();
                (Some(info.reason.clone()), metadata)
            }
            None => (None, Vec::new()),
        };
        let fields = details
            .bad_request()
            .map(|b| b.field_violations.iter().map(|v| (v.field.clone(), v.description.clone())).collect())
            .unwrap_or_default();
        Refused {
            code: s.code(),
            message: s.message().to_owned(),
            reason,
            metadata,
            fields,
            retry_delay: details.retry_info().and_then(|r| r.retry_delay),
        }
    }
}

impl fmt::Display for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({}", self.message, hookline_auth::status::code_name(self.code))?;
        if let Some(reason) = &self.reason {
            write!(f, ", {reason}")?;
        }
        write!(f, ")")?;
        for (field, rule) in &self.fields {
            write!(f, "\n  {field}: {rule}")?;
        }
        if let Some(d) = self.retry_delay {
            write!(f, "\nretry after {}", humantime::format_duration(round_ms(d)))?;
        }
        Ok(())
    }
}

impl std::error::Error for Refused {}

/// A service that could not be reached at all.
#[derive(Debug, thiserror::Error)]
#[error("cannot reach {url} ({setting})")]
pub struct Unreachable {
    pub url: String,
    pub setting: &'static str,
    #[source]
    pub source: tonic::transport::Error,
}

fn round_ms(d: Duration) -> Duration {
    Duration::from_millis(d.as_millis().try_into().unwrap_or(u64::MAX))
}

/// The exit code of a failed command (see [`EXIT_CODES`]).
pub fn exit_code(e: &anyhow::Error) -> u8 {
    if e.chain().any(|c| c.is::<Unreachable>()) {
        return 8;
    }
    let Some(r) = e.chain().find_map(|c| c.downcast_ref::<Refused>()) else { return 1 };
    if matches!(r.reason.as_deref(), Some("PLAN_LIMIT_REACHED" | "PLAN_BELOW_ENDPOINT_COUNT")) {
        return 7;
    }
    match r.code {
        Code::InvalidArgument | Code::OutOfRange => 3,
        Code::NotFound => 4,
        Code::AlreadyExists | Code::Aborted | Code::FailedPrecondition => 5,
        Code::Unauthenticated | Code::PermissionDenied => 6,
        Code::ResourceExhausted => 7,
        Code::Unavailable | Code::DeadlineExceeded => 8,
        _ => 1,
    }
}

/// The `--json` form of a failed command.
pub fn to_json(e: &anyhow::Error) -> Value {
    let exit_code = exit_code(e);
    let Some(r) = e.chain().find_map(|c| c.downcast_ref::<Refused>()) else {
        let code = e.chain().any(|c| c.is::<Unreachable>()).then_some("UNAVAILABLE");
        return json!({"error": {
            "code": code, "reason": null, "message": format!("{e:#}"), "field_violations": [],
            "retry_delay": null, "exit_code": exit_code,
        }});
    };
    let metadata: serde_json::Map<String, Value> = r.metadata.iter().map(|(k, v)| (k.clone(), json!(v))).collect();
    json!({"error": {
        "code": hookline_auth::status::code_name(r.code),
        "reason": r.reason,
        "domain": r.reason.as_ref().map(|_| "hookline"),
        "message": r.message,
        "field_violations": r.fields.iter().map(|(field, rule)| json!({"field": field, "description": rule})).collect::<Vec<_>>(),
        // As protobuf's JSON mapping writes a Duration ("1.500s"), and in
        // milliseconds for scripts.
        "retry_delay": r.retry_delay.map(|d| format!("{:.3}s", d.as_secs_f64())),
        "retry_delay_ms": r.retry_delay.map(|d| d.as_millis() as u64),
        "metadata": metadata,
        "exit_code": exit_code,
    }})
}

/// Print the error on stderr (as JSON with `--json`) and pick the exit code.
pub fn report(e: &anyhow::Error, json_out: bool) -> ExitCode {
    if json_out {
        eprintln!("{}", serde_json::to_string_pretty(&to_json(e)).expect("JSON prints"));
    } else {
        eprintln!("error: {e:#}");
    }
    ExitCode::from(exit_code(e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic_types::ErrorDetails;

    fn refused(code: Code, details: ErrorDetails) -> anyhow::Error {
        Refused::from(tonic::Status::with_error_details(code, "it broke", details)).into()
    }

    #[test]
    fn each_class_of_error_has_its_exit_code() {
        let info = |reason: &str| ErrorDetails::with_error_info(reason, "hookline", std::collections::HashMap::new());
        let cases = [
            (Code::InvalidArgument, "INVALID_FIELD", 3),
            (Code::NotFound, "TENANT_NOT_FOUND", 4),
            (Code::AlreadyExists, "TENANT_ALREADY_EXISTS", 5),
            (Code::FailedPrecondition, "ENDPOINT_DISABLED", 5),
            (Code::Unauthenticated, "INVALID_TOKEN", 6),
            (Code::PermissionDenied, "OPERATOR_ONLY", 6),
            (Code::ResourceExhausted, "RATE_LIMITED", 7),
            (Code::FailedPrecondition, "PLAN_LIMIT_REACHED", 7),
            (Code::Unavailable, "STREAM_UNAVAILABLE", 8),
            (Code::Internal, "INTERNAL", 1),
        ];
        for (code, reason, exit) in cases {
            assert_eq!(exit_code(&refused(code, info(reason))), exit, "{reason}");
        }
        assert_eq!(exit_code(&anyhow::anyhow!("--tls-key: must be set")), 1);
    }

    #[test]
    fn a_bad_request_prints_each_field_and_a_rate_refusal_its_delay() {
        let mut d = ErrorDetails::with_error_info("INVALID_FIELD", "hookline", std::collections::HashMap::new());
        d.add_bad_request_violation("url", "must start with https://");
        let e = refused(Code::InvalidArgument, d);
        assert_eq!(format!("{e:#}"), "it broke (INVALID_ARGUMENT, INVALID_FIELD)\n  url: must start with https://");
        let v = to_json(&e);
        assert_eq!(
            v["error"]["field_violations"],
            json!([{"field": "url", "description": "must start with https://"}])
        );
        assert_eq!((&v["error"]["code"], &v["error"]["exit_code"]), (&json!("INVALID_ARGUMENT"), &json!(3)));

        let e = refused(Code::ResourceExhausted, ErrorDetails::with_retry_info(Some(Duration::from_millis(1500))));
        assert!(format!("{e:#}").ends_with("\nretry after 1s 500ms"), "{e:#}");
        assert_eq!(to_json(&e)["error"]["retry_delay"], json!("1.500s"));
    }
}
