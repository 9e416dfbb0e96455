//! Compiles `proto/` with protox (pure Rust), so no `protoc` is needed.
use std::{env, fs, path::PathBuf};

use prost::Message;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = PathBuf::from(env::var("CARGO_MANIFEST_DIR")?).join("../../proto");
    println!("cargo:rerun-if-changed={}", root.display());
    let files = [
        "hookline/events/v1/events.proto",
        "hookline/errors/v1/errors.proto",
        "hookline/ingest/v1/ingest.proto",
        "hookline/subscriptions/v1/subscriptions.proto",
        "hookline/delivery/v1/delivery.proto",
    ];
    let fds = protox::compile(files, [&root])?;
    let out = PathBuf::from(env::var("OUT_DIR")?);
    fs::write(out.join("hookline_descriptor.bin"), fds.encode_to_vec())?;
    let mut config = tonic_prost_build::configure().type_attribute(
        ".hookline.events.v1",
        "#[derive(serde::Serialize, serde::Deserialize)] #[serde(default, deny_unknown_fields)]",
    );
    // What operators read: the CLI prints these as JSON (`--json`) with the
    // field policy of `src/json.rs`.
    for message in PRINTED {
        config = config.type_attribute(message, "#[derive(serde::Serialize)]");
    }
    for (field, how) in PRINTED_AS {
        let attribute = match *how {
            "skip" => "#[serde(skip)]".to_owned(),
            with => format!("#[serde(serialize_with = \"crate::json::{with}\")]"),
        };
        config = config.field_attribute(field, attribute);
    }
    config.compile_fds(fds)?;
    Ok(())
}

/// The messages the CLI prints as JSON.
const PRINTED: &[&str] = &[
    ".hookline.ingest.v1.PublishResponse",
    ".hookline.ingest.v1.RejectedEvent",
    ".hookline.ingest.v1.ListRejectedEventsResponse",
    ".hookline.subscriptions.v1.Tenant",
    ".hookline.subscriptions.v1.AuthHeader",
    ".hookline.subscriptions.v1.Endpoint",
    ".hookline.subscriptions.v1.FilterCondition",
    ".hookline.subscriptions.v1.EndpointSecret",
    ".hookline.subscriptions.v1.TenantNoticeSecret",
    ".hookline.subscriptions.v1.CreatedApiKey",
    ".hookline.subscriptions.v1.ApiKey",
    ".hookline.subscriptions.v1.ResealSecretsResponse",
    ".hookline.subscriptions.v1.CompactConfigResponse",
    ".hookline.subscriptions.v1.DeleteTenantResponse",
    ".hookline.subscriptions.v1.ListTenantsResponse",
    ".hookline.subscriptions.v1.PortalLink",
    ".hookline.delivery.v1.Delivery",
    ".hookline.delivery.v1.Attempt",
    ".hookline.delivery.v1.ListDeliveriesResponse",
    ".hookline.delivery.v1.DeliveryDetail",
    ".hookline.delivery.v1.Header",
    ".hookline.delivery.v1.RawRequest",
    ".hookline.delivery.v1.ReplayDeliveryResponse",
    ".hookline.delivery.v1.SendTestEventResponse",
    ".hookline.delivery.v1.RecoverJob",
    ".hookline.delivery.v1.Stats",
    ".hookline.delivery.v1.TenantStats",
    ".hookline.delivery.v1.ProjectorStatus",
];

/// Fields of those messages that print otherwise than serde's default: an
/// enum by its name, "nothing" (0 or "") as `null`, left out (`skip`).
const PRINTED_AS: &[(&str, &str)] = &[
    (".hookline.subscriptions.v1.Tenant.plan", "plan"),
    (".hookline.subscriptions.v1.Tenant.operational_email", "empty_as_null"),
    (".hookline.subscriptions.v1.Tenant.operational_webhook_url", "empty_as_null"),
    (".hookline.subscriptions.v1.Endpoint.event_types", "all_if_empty"),
    (".hookline.subscriptions.v1.Endpoint.layout", "layout"),
    (".hookline.subscriptions.v1.Endpoint.disabled_reason", "empty_as_null"),
    (".hookline.subscriptions.v1.Endpoint.email", "skip"),
    (".hookline.subscriptions.v1.Endpoint.rate_limit", "zero_as_null"),
    (".hookline.subscriptions.v1.FilterCondition.operator", "filter_operator"),
    (".hookline.subscriptions.v1.FilterCondition.values", "json_texts"),
    (".hookline.delivery.v1.Delivery.last_status_code", "zero_as_null"),
    (".hookline.delivery.v1.Delivery.last_error_kind", "empty_as_null"),
    (".hookline.delivery.v1.Delivery.state", "delivery_state"),
    (".hookline.delivery.v1.Delivery.replay_of", "empty_as_null"),
    (".hookline.delivery.v1.Delivery.archived_at", "empty_as_null"),
    (".hookline.delivery.v1.Attempt.status_code", "zero_as_null"),
    (".hookline.delivery.v1.Attempt.error_kind", "empty_as_null"),
    (".hookline.delivery.v1.Attempt.error", "empty_as_null"),
    (".hookline.delivery.v1.Attempt.response_excerpt", "empty_as_null"),
    (".hookline.delivery.v1.Attempt.trace_id", "skip"),
    (".hookline.delivery.v1.ListDeliveriesResponse.next_page_token", "empty_as_null"),
    (".hookline.subscriptions.v1.ListTenantsResponse.next_page_token", "empty_as_null"),
    (".hookline.delivery.v1.RawRequest.body", "lossy_text"),
    (".hookline.ingest.v1.RejectedEvent.payload", "lossy_text"),
    (".hookline.ingest.v1.RejectedEvent.intake_stored_at", "empty_as_null"),
    (".hookline.ingest.v1.ListRejectedEventsResponse.next_page_token", "empty_as_null"),
    (".hookline.delivery.v1.RecoverJob.error", "empty_as_null"),
    (".hookline.delivery.v1.Stats.endpoint_id", "empty_as_null"),
    (".hookline.delivery.v1.Stats.errors", "error_counts"),
];
