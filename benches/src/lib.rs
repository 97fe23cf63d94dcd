//! Shared set-up of the benchmarks: shims over each transport.
//!
//! `cargo bench -p shim-benches` (or `make bench`) runs:
//! - `rpc`: criterion benchmarks of a `State` round trip and a `Pty` call
//!   directly, through the in-memory transport and over gRPC, and of event
//!   throughput to 1 and 8 subscribers;
//! - `system`: real-runc measurements (lifecycle and exec through the shim
//!   against the runc command line, memory of the daemon, many shims), which
//!   writes `docs/PERFORMANCE.md` together with the criterion results.

use std::path::Path;
use std::sync::Arc;

use shim_core::proto::v1::{CreateRequest, StartRequest};
use shim_core::{FakeShim, Shim, ShimConfig};
use shim_transport_grpc::{serve_unix, ClientOptions, GrpcServer, GrpcShim, ServerOptions};
use shim_transport_mem::{serve, MemClient, MemOptions, MemServer};

/// A fake shim with a running container whose init has a terminal; returns
/// the shim and the init's pid.
pub async fn fake_with_container(dir: &Path, event_buffer: usize) -> (Arc<FakeShim>, u32) {
    let bundle = dir.join("bundle");
    let _ = std::fs::create_dir_all(&bundle);
    let _ = std::fs::write(bundle.join("config.json"), r#"{"process":{"terminal":true,"args":["sleep"]}}"#);
    let shim = Arc::new(FakeShim::with_config(ShimConfig { event_buffer, ..Default::default() }, None));
    let req = CreateRequest {
        id: "bench".into(),
        bundle: bundle.display().to_string(),
        terminal: true,
        ..Default::default()
    };
    let pid = match shim.create(req).await {
        Ok(r) => r.pid,
        Err(e) => panic!("create: {e}"),
    };
    if let Err(e) = shim.start(StartRequest {}).await {
        panic!("start: {e}");
    }
    (shim, pid)
}

/// `shim` served in memory.
pub fn over_mem(shim: Arc<dyn Shim>, encode: bool) -> (MemServer, MemClient) {
    serve(shim, MemOptions { encode, ..Default::default() })
}

/// `shim` served over gRPC on a unix socket in `dir`.
pub async fn over_grpc(shim: Arc<dyn Shim>, dir: &Path) -> (GrpcServer, GrpcShim) {
    let socket = dir.join("run").join("bench.sock");
    let server = match serve_unix(shim, &socket, ServerOptions::default()) {
        Ok(s) => s,
        Err(e) => panic!("serve: {e}"),
    };
    match GrpcShim::connect(&socket, ClientOptions::default()).await {
        Ok(c) => (server, c),
        Err(e) => panic!("connect: {e}"),
    }
}
