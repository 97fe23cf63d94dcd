//! Compiles the containerd and ttrpc `.proto` files with protox (no
//! `protoc`) into prost types. The well-known `google.protobuf` types map to
//! `prost-types`, as in `shim-proto`.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto");
    let files = [
        "ttrpc/ttrpc.proto",
        "containerd/task/v2/shim.proto",
        "containerd/events/task.proto",
        "containerd/services/events/ttrpc/v1/events.proto",
        "containerd/cgroups/v1/metrics.proto",
        "containerd/cgroups/v2/metrics.proto",
        "runtimeoptions/v1/api.proto",
        "containerd/types/introspection.proto",
        "containerd/runtime/bootstrap/v1/bootstrap.proto",
    ];
    let fds = protox::compile(files, ["proto"])?;
    prost_build::Config::new().compile_fds(fds)?;
    Ok(())
}
