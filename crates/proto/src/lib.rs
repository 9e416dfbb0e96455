//! Hookline's gRPC API, generated from `proto/` at build time.
//!
//! The only crate that knows protobuf. Event payload messages derive
//! serde traits so ingest validates them with the same rules as the
//! JSON that NATS publishers send.

pub mod events {
    pub mod v1 {
        tonic::include_proto!("hookline.events.v1");
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
