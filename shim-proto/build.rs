//! Compiles `proto/shim.proto` with protox (no `protoc` needed) and generates
//! the prost types; with the `grpc` feature, also the tonic service code, from
//! the same descriptor set so codegen runs once.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto");
    let fds = protox::compile(["shim.proto"], ["proto"])?;

    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    // Kept for gRPC server reflection.
    let encoded = prost::Message::encode_to_vec(&fds);
    std::fs::write(out_dir.join("shim_descriptor.bin"), encoded)?;

    if std::env::var_os("CARGO_FEATURE_GRPC").is_some() {
        tonic_prost_build::configure().build_client(true).build_server(true).build_transport(false).compile_fds(fds)?;
    } else {
        prost_build::Config::new().compile_fds(fds)?;
    }
    Ok(())
}
