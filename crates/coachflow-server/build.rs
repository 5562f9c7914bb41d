//! Compiles `proto/coachflow/v1/*.proto` with protox (no `protoc` needed) into tonic code in
//! `OUT_DIR`, and writes the encoded descriptor set there for gRPC reflection.

use std::path::PathBuf;

use prost::Message as _;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto_root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../proto");
    let files = [
        "coachflow/v1/models.proto",
        "coachflow/v1/engagements.proto",
        "coachflow/v1/events.proto",
        "google/longrunning/operations.proto",
        "google/rpc/status.proto",
    ];
    for file in &files {
        println!("cargo:rerun-if-changed={}", proto_root.join(file).display());
    }
    let descriptors = protox::compile(files, [&proto_root])?;
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(out_dir.join("coachflow_descriptor.bin"), descriptors.encode_to_vec())?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_fds(descriptors)?;
    Ok(())
}
