//! Hookline's gRPC API, generated from `proto/` at build time.
//!
//! The only crate that knows protobuf. Event payload messages derive
//! serde traits so ingest validates them with the same rules as the
//! JSON that NATS publishers send; the messages operators read derive
//! `Serialize` so the CLI prints them as JSON (see [`json`]).

pub mod json;

pub mod events {
    pub mod v1 {
        tonic::include_proto!("hookline.events.v1");
    }
}
/// `ErrorInfo.reason` values of every refusal (see `errors.proto`).
pub mod errors {
    pub mod v1 {
        tonic::include_proto!("hookline.errors.v1");
    }
}
pub mod ingest {
    pub mod v1 {
        tonic::include_proto!("hookline.ingest.v1");
    }
}
pub mod delivery {
    pub mod v1 {
        tonic::include_proto!("hookline.delivery.v1");
    }
}
pub mod subscriptions {
    pub mod v1 {
        tonic::include_proto!("hookline.subscriptions.v1");
    }
}

/// Encoded `FileDescriptorSet` of every Hookline proto, for gRPC reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/hookline_descriptor.bin"));

/// A client endpoint for one of Hookline's gRPC URLs. `https://` URLs use
/// TLS and trust the public web roots plus `extra_ca_pem` (the PEM file of
/// `HOOKLINE_TLS_CA`), so services behind a private CA can call each other.
/// `identity` (certificate chain and key, PEM) is presented to services
/// that require client certificates (`HOOKLINE_TLS_CLIENT_CA`).
pub fn endpoint(
    url: &str,
    extra_ca_pem: Option<&[u8]>,
    identity: Option<(&[u8], &[u8])>,
) -> Result<tonic::transport::Endpoint, tonic::transport::Error> {
    let endpoint = tonic::transport::Endpoint::from_shared(url.to_owned())?;
    if !url.starts_with("https://") {
        return Ok(endpoint);
    }
    let mut tls = tonic::transport::ClientTlsConfig::new().with_webpki_roots();
    if let Some(pem) = extra_ca_pem {
        tls = tls.ca_certificate(tonic::transport::Certificate::from_pem(pem));
    }
    if let Some((cert, key)) = identity {
        tls = tls.identity(tonic::transport::Identity::from_pem(cert, key));
    }
    endpoint.tls_config(tls)
}
