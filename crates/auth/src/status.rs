//! How a refusal reaches a gRPC client: the one place where every service's
//! typed errors become a [`Status`] with `google.rpc` details.
//!
//! Each refusal names a stable [`Reason`]; the reason decides the gRPC code,
//! so two services never answer the same condition with different codes.
//! Every status carries `google.rpc.ErrorInfo` (the reason, domain
//! [`DOMAIN`], and a few facts as metadata); a bad request also carries
//! `google.rpc.BadRequest` with one field violation per bad field (the field
//! path and rule that the message text names too), and a rate refusal
//! `google.rpc.RetryInfo`. The message text is unchanged, so clients that read
//! only it keep working.

use std::{collections::HashMap, time::Duration};

use hookline_domain::{FieldError, config::ConfigError};
use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

/// `ErrorInfo.domain` of every Hookline error.
pub const DOMAIN: &str = "hookline";

/// Why a call was refused: `ErrorInfo.reason`. The names are a contract
/// (clients branch on them); add new ones, never rename.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reason {
    /// A request field breaks a rule (`BadRequest` names it).
    InvalidField,
    TenantNotFound,
    EndpointNotFound,
    ApiKeyNotFound,
    DeliveryNotFound,
    AttemptNotFound,
    RecoverJobNotFound,
    TenantAlreadyExists,
    /// The tenant's plan allows no more endpoints.
    PlanLimitReached,
    /// A plan change to one that allows fewer endpoints than the tenant has.
    PlanBelowEndpointCount,
    /// The delivery was archived: payload and raw requests are deleted.
    DeliveryArchived,
    /// The event left HOOKLINE_EVENTS with the stream's retention.
    PayloadArchived,
    /// The stored payload no longer matches what was sent.
    PayloadChanged,
    /// The attempt sent no request (the endpoint was unavailable).
    NothingSent,
    /// The endpoint is disabled; enable it first.
    EndpointDisabled,
    /// The tenant publishes faster than HOOKLINE_TENANT_RATE (`RetryInfo`).
    RateLimited,
    /// No `authorization: Bearer` metadata.
    MissingToken,
    /// A token that is neither the operator token nor a live API key.
    InvalidToken,
    /// A portal link that is malformed, forged or expired.
    InvalidPortalLink,
    /// The call needs the operator token; an API key was sent.
    OperatorOnly,
    /// Another writer changed the tenant at the same time; retry.
    ConcurrentUpdate,
    /// NATS JetStream (the source of truth) cannot be reached.
    StreamUnavailable,
    /// This replica's tenant index is behind the config stream; retry.
    IndexLagging,
    /// Postgres (the delivery log) cannot be reached.
    DatabaseUnavailable,
    /// A stored record does not read back; a defect, logged by the service.
    UnreadableRecord,
    /// Anything else that is the service's fault.
    Internal,
    /// The tenant has no operational contact, so no notice secret.
    NoticeSecretNotFound,
}

impl Reason {
    /// Every reason, in the order the README lists them.
    pub const ALL: [Reason; 27] = [
        Reason::InvalidField,
        Reason::TenantNotFound,
        Reason::EndpointNotFound,
        Reason::ApiKeyNotFound,
        Reason::DeliveryNotFound,
        Reason::AttemptNotFound,
        Reason::RecoverJobNotFound,
        Reason::TenantAlreadyExists,
        Reason::PlanLimitReached,
        Reason::PlanBelowEndpointCount,
        Reason::DeliveryArchived,
        Reason::PayloadArchived,
        Reason::PayloadChanged,
        Reason::NothingSent,
        Reason::EndpointDisabled,
        Reason::RateLimited,
        Reason::MissingToken,
        Reason::InvalidToken,
        Reason::InvalidPortalLink,
        Reason::OperatorOnly,
        Reason::ConcurrentUpdate,
        Reason::StreamUnavailable,
        Reason::IndexLagging,
        Reason::DatabaseUnavailable,
        Reason::UnreadableRecord,
        Reason::Internal,
        Reason::NoticeSecretNotFound,
    ];

    /// The `ErrorInfo.reason` text.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::InvalidField => "INVALID_FIELD",
            Reason::TenantNotFound => "TENANT_NOT_FOUND",
            Reason::EndpointNotFound => "ENDPOINT_NOT_FOUND",
            Reason::ApiKeyNotFound => "API_KEY_NOT_FOUND",
            Reason::DeliveryNotFound => "DELIVERY_NOT_FOUND",
            Reason::AttemptNotFound => "ATTEMPT_NOT_FOUND",
            Reason::RecoverJobNotFound => "RECOVER_JOB_NOT_FOUND",
            Reason::TenantAlreadyExists => "TENANT_ALREADY_EXISTS",
            Reason::PlanLimitReached => "PLAN_LIMIT_REACHED",
            Reason::PlanBelowEndpointCount => "PLAN_BELOW_ENDPOINT_COUNT",
            Reason::DeliveryArchived => "DELIVERY_ARCHIVED",
            Reason::PayloadArchived => "PAYLOAD_ARCHIVED",
            Reason::PayloadChanged => "PAYLOAD_CHANGED",
            Reason::NothingSent => "NOTHING_SENT",
            Reason::EndpointDisabled => "ENDPOINT_DISABLED",
            Reason::RateLimited => "RATE_LIMITED",
            Reason::MissingToken => "MISSING_TOKEN",
            Reason::InvalidToken => "INVALID_TOKEN",
            Reason::InvalidPortalLink => "INVALID_PORTAL_LINK",
            Reason::OperatorOnly => "OPERATOR_ONLY",
            Reason::ConcurrentUpdate => "CONCURRENT_UPDATE",
            Reason::StreamUnavailable => "STREAM_UNAVAILABLE",
            Reason::IndexLagging => "INDEX_LAGGING",
            Reason::DatabaseUnavailable => "DATABASE_UNAVAILABLE",
            Reason::UnreadableRecord => "UNREADABLE_RECORD",
            Reason::Internal => "INTERNAL",
            Reason::NoticeSecretNotFound => "NOTICE_SECRET_NOT_FOUND",
        }
    }

    /// The gRPC code every refusal with this reason gets.
    pub fn code(self) -> Code {
        match self {
            Reason::InvalidField => Code::InvalidArgument,
            Reason::TenantNotFound
            | Reason::EndpointNotFound
            | Reason::ApiKeyNotFound
            | Reason::DeliveryNotFound
            | Reason::AttemptNotFound
            | Reason::RecoverJobNotFound
            | Reason::NoticeSecretNotFound => Code::NotFound,
            Reason::TenantAlreadyExists => Code::AlreadyExists,
            Reason::PlanLimitReached
            | Reason::PlanBelowEndpointCount
            | Reason::DeliveryArchived
            | Reason::PayloadArchived
            | Reason::PayloadChanged
            | Reason::NothingSent
            | Reason::EndpointDisabled => Code::FailedPrecondition,
            Reason::RateLimited => Code::ResourceExhausted,
            Reason::MissingToken | Reason::InvalidToken | Reason::InvalidPortalLink => Code::Unauthenticated,
            Reason::OperatorOnly => Code::PermissionDenied,
            Reason::ConcurrentUpdate => Code::Aborted,
            Reason::StreamUnavailable | Reason::IndexLagging | Reason::DatabaseUnavailable => Code::Unavailable,
            Reason::UnreadableRecord | Reason::Internal => Code::Internal,
        }
    }
}

/// A refusal on its way to the client: build one, add what is known, and
/// turn it into a [`Status`] with `into()`.
#[derive(Debug, Clone)]
pub struct Refusal {
    reason: Reason,
    message: String,
    fields: Vec<FieldError>,
    retry_after: Option<Duration>,
    metadata: HashMap<String, String>,
}

impl Refusal {
    pub fn new(reason: Reason, message: impl Into<String>) -> Self {
        Self { reason, message: message.into(), fields: Vec::new(), retry_after: None, metadata: HashMap::new() }
    }

    /// A bad request: one field violation per bad field; the message is
    /// their `field: rule` texts, as the services have always written it.
    pub fn invalid(fields: impl IntoIterator<Item = FieldError>) -> Self {
        let fields: Vec<FieldError> = fields.into_iter().collect();
        let message = fields.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ");
        Self { fields, ..Self::new(Reason::InvalidField, message) }
    }

    /// When the client may try again (`RetryInfo.retry_delay`).
    pub fn retry_after(mut self, delay: Duration) -> Self {
        self.retry_after = Some(delay);
        self
    }

    /// A fact for `ErrorInfo.metadata`, e.g. the plan and its limit.
    pub fn with(mut self, key: &str, value: impl ToString) -> Self {
        self.metadata.insert(key.to_owned(), value.to_string());
        self
    }

    pub fn reason(&self) -> Reason {
        self.reason
    }
}

impl From<Refusal> for Status {
    fn from(r: Refusal) -> Status {
        let mut details = ErrorDetails::new();
        details.set_error_info(r.reason.as_str(), DOMAIN, r.metadata);
        for f in &r.fields {
            details.add_bad_request_violation(f.field.clone(), f.rule.clone());
        }
        if let Some(delay) = r.retry_after {
            details.set_retry_info(Some(delay));
        }
        Status::with_error_details(r.reason.code(), r.message, details)
    }
}

impl From<FieldError> for Refusal {
    fn from(e: FieldError) -> Self {
        Refusal::invalid([e])
    }
}

impl From<&ConfigError> for Refusal {
    fn from(e: &ConfigError) -> Self {
        let message = e.to_string();
        match e {
            ConfigError::Invalid(f) => Refusal::invalid([f.clone()]),
            ConfigError::TenantNotFound(t) => Refusal::new(Reason::TenantNotFound, message).with("tenant_id", t),
            ConfigError::EndpointNotFound(id) => {
                Refusal::new(Reason::EndpointNotFound, message).with("endpoint_id", id)
            }
            ConfigError::ApiKeyNotFound(id) => Refusal::new(Reason::ApiKeyNotFound, message).with("key_id", id),
            ConfigError::TenantExists(t) => Refusal::new(Reason::TenantAlreadyExists, message).with("tenant_id", t),
            ConfigError::PlanLimit { plan, limit } => {
                Refusal::new(Reason::PlanLimitReached, message).with("plan", plan).with("limit", limit)
            }
            ConfigError::PlanBelowCount { plan, limit, count } => Refusal::new(Reason::PlanBelowEndpointCount, message)
                .with("plan", plan)
                .with("limit", limit)
                .with("count", count),
        }
    }
}

impl From<&hookline_tenants::Error> for Refusal {
    fn from(e: &hookline_tenants::Error) -> Self {
        use hookline_tenants::Error;
        match e {
            Error::Config(c) => c.into(),
            Error::Unavailable(_) => Refusal::new(Reason::StreamUnavailable, e.to_string()),
            Error::Lagging { .. } => Refusal::new(Reason::IndexLagging, e.to_string()),
            Error::Contention(_) => Refusal::new(Reason::ConcurrentUpdate, e.to_string()),
        }
    }
}

/// The code's name as the gRPC spec spells it (`doc/statuscodes.md`).
pub fn code_name(code: Code) -> &'static str {
    use Code as C;
    match code {
        C::Ok => "OK",
        C::Cancelled => "CANCELLED",
        C::Unknown => "UNKNOWN",
        C::InvalidArgument => "INVALID_ARGUMENT",
        C::DeadlineExceeded => "DEADLINE_EXCEEDED",
        C::NotFound => "NOT_FOUND",
        C::AlreadyExists => "ALREADY_EXISTS",
        C::PermissionDenied => "PERMISSION_DENIED",
        C::ResourceExhausted => "RESOURCE_EXHAUSTED",
        C::FailedPrecondition => "FAILED_PRECONDITION",
        C::Aborted => "ABORTED",
        C::OutOfRange => "OUT_OF_RANGE",
        C::Unimplemented => "UNIMPLEMENTED",
        C::Internal => "INTERNAL",
        C::Unavailable => "UNAVAILABLE",
        C::DataLoss => "DATA_LOSS",
        C::Unauthenticated => "UNAUTHENTICATED",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_spelled_as_in_the_grpc_spec() {
        assert_eq!(code_name(Code::NotFound), "NOT_FOUND");
        assert_eq!(code_name(Code::from(8)), "RESOURCE_EXHAUSTED");
        assert_eq!(code_name(Code::from(99)), "UNKNOWN");
    }

    #[test]
    fn a_bad_field_becomes_a_violation_with_its_path_and_the_same_message() {
        let status: Status = Refusal::invalid([
            FieldError::new("events[1].data.email", "must be an e-mail address"),
            FieldError::new("events[3].type", "unknown event type"),
        ])
        .into();
        assert_eq!(status.code(), Code::InvalidArgument);
        assert_eq!(
            status.message(),
            "events[1].data.email: must be an e-mail address; events[3].type: unknown event type"
        );
        let details = status.get_error_details();
        let fields: Vec<_> = details
            .bad_request()
            .expect("BadRequest")
            .field_violations
            .iter()
            .map(|v| (v.field.as_str(), v.description.as_str()))
            .collect();
        assert_eq!(
            fields,
            [("events[1].data.email", "must be an e-mail address"), ("events[3].type", "unknown event type")]
        );
        let info = details.error_info().expect("ErrorInfo");
        assert_eq!((info.reason.as_str(), info.domain.as_str()), ("INVALID_FIELD", "hookline"));
    }

    #[test]
    fn a_rate_refusal_carries_its_retry_delay() {
        let status: Status =
            Refusal::new(Reason::RateLimited, "slow down").retry_after(Duration::from_millis(250)).into();
        assert_eq!(status.code(), Code::ResourceExhausted);
        assert_eq!(status.get_details_retry_info().unwrap().retry_delay, Some(Duration::from_millis(250)));
    }

    #[test]
    fn a_plan_limit_names_its_reason_plan_and_limit() {
        let status: Status = Refusal::from(&ConfigError::PlanLimit { plan: "basic", limit: 1 }).into();
        assert_eq!(status.code(), Code::FailedPrecondition);
        let info = status.get_details_error_info().unwrap();
        assert_eq!(info.reason, "PLAN_LIMIT_REACHED");
        assert_eq!((info.metadata["plan"].as_str(), info.metadata["limit"].as_str()), ("basic", "1"));
    }

    #[test]
    fn every_reason_is_distinct_and_listed_in_the_readme_and_the_proto() {
        let readme = include_str!("../../../README.md");
        let proto = include_str!("../../../proto/hookline/errors/v1/errors.proto");
        let mut seen = std::collections::HashSet::new();
        for r in Reason::ALL {
            assert!(seen.insert(r.as_str()), "{} twice", r.as_str());
            let row = format!("| `{}` | `{}` |", r.as_str(), code_name(r.code()));
            assert!(readme.contains(&row), "README's error table lacks the row {row}");
            assert!(proto.contains(&format!("`{}`", r.as_str())), "errors.proto does not document {}", r.as_str());
        }
    }
}
