//! Shared set-up of the benchmarks: shims over each transport.
//!
//! `cargo bench -p shim-benches` (or `make bench`) runs:
//! - `rpc`: criterion benchmarks of a `State` round trip and a `Pty` call
//!   directly, through the in-memory transport and over gRPC, and of event
//!   throughput to 1 and 8 subscribers;
//! - `system`: real-runc measurements (lifecycle and exec through the shim
//!   against the runc command line, memory of the daemon, many shims), which
//!   writes `docs/PERFORMANCE.md` together with the criterion results.

use std::path::{Path, PathBuf};
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

/// A current-thread runtime, as an embedding manager or our daemon runs
/// one. (On a multi-threaded runtime every call also pays for waking a
/// parked worker thread, which costs tens of µs on a VM.)
pub fn runtime() -> tokio::runtime::Runtime {
    match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => panic!("runtime: {e}"),
    }
}

/// A fake shim with a running container, served over gRPC on a unix socket
/// in `dir` from a thread and current-thread runtime of its own, as the
/// daemon is a process of its own. `on_thread` runs first on that thread
/// (to pin it to a CPU, say). Returns the socket and the init's pid.
pub fn fake_server_thread(dir: PathBuf, on_thread: impl FnOnce() + Send + 'static) -> (PathBuf, u32) {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        on_thread();
        runtime().block_on(async move {
            let (fake, pid) = fake_with_container(&dir, 1024).await;
            let socket = dir.join("run").join("bench.sock");
            let _server = match serve_unix(fake, &socket, ServerOptions::default()) {
                Ok(s) => s,
                Err(e) => panic!("serve: {e}"),
            };
            let _ = tx.send((socket, pid));
            std::future::pending::<()>().await;
        });
    });
    match rx.recv() {
        Ok(r) => r,
        Err(_) => panic!("the server thread failed before serving"),
    }
}

/// RSS and PSS in KiB of process `pid` (a number, or `"self"`), from
/// `/proc/PID/smaps_rollup`; panics if the process is gone.
pub fn resident_kib(pid: impl std::fmt::Display) -> (u64, u64) {
    let path = format!("/proc/{pid}/smaps_rollup");
    let rollup = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let field = |name: &str| {
        rollup
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("Rss:"), field("Pss:"))
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
