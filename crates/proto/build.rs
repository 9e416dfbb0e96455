//! Compiles `proto/` with protox (pure Rust), so no `protoc` is needed.
use std::{env, fs, path::PathBuf};

use prost::Message;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = PathBuf::from(env::var("CARGO_MANIFEST_DIR")?).join("../../proto");
    println!("cargo:rerun-if-changed={}", root.display());
    let files = [
        "hookline/events/v1/events.proto",
        "hookline/ingest/v1/ingest.proto",
        "hookline/subscriptions/v1/subscriptions.proto",
        "hookline/delivery/v1/delivery.proto",
    ];
    let fds = protox::compile(files, [&root])?;
    let out = PathBuf::from(env::var("OUT_DIR")?);
    fs::write(out.join("hookline_descriptor.bin"), fds.encode_to_vec())?;
    tonic_prost_build::configure()
        .type_attribute(
            ".hookline.events.v1",
            "#[derive(serde::Serialize, serde::Deserialize)] #[serde(default, deny_unknown_fields)]",
        )
        .compile_fds(fds)?;
    Ok(())
}
