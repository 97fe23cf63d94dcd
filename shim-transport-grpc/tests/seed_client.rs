//! A client generated from the seed proto alone, in Python (grpcio), runs a
//! container lifecycle against our gRPC server and the runc shim.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)] // tests may panic

use std::process::Command;
use std::sync::Arc;

use shim_core::testing::{require_runc, shared_reaper, BundleBuilder};
use shim_core::RuncShim;
use shim_transport_grpc::{serve_unix, ServerOptions};

fn python_grpc_available() -> bool {
    let ok = Command::new("python3").args(["-c", "import grpc, grpc_tools"]).output().is_ok_and(|o| o.status.success());
    if !ok && std::env::var("SHIM_REQUIRE_RUNC").as_deref() == Ok("1") {
        panic!("python3 with grpcio and grpcio-tools is required (make deps installs them)");
    }
    ok
}

/// Runs the Python client's lifecycle with its channel made as `mode` says
/// (see the script's usage).
async fn python_lifecycle(mode: &str) {
    if !require_runc() || !python_grpc_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let bundle = dir.path().join("bundle");
    BundleBuilder::new().args(["sh", "-c", "exit 5"]).build(&bundle).unwrap();
    let shim =
        Arc::new(RuncShim::new(shim_core::testing::runc_config(dir.path().join("work")), shared_reaper()).unwrap());
    let socket = dir.path().join("run").join("shim.sock");
    let server = serve_unix(shim, &socket, ServerOptions::default()).unwrap();
    let proto_dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../shim-proto/proto");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python/seed_client.py");
    let id = format!("py-{mode}-{}", std::process::id());
    // This process has a reaper (the shim's), which owns every child's exit:
    // the client runs through it.
    let mut cmd = Command::new("python3");
    cmd.arg(script).arg(proto_dir).arg(&socket).arg(&bundle).arg(&id).arg(mode);
    let out = tokio::time::timeout(std::time::Duration::from_secs(60), shared_reaper().output(&mut cmd))
        .await
        .unwrap()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "python client ({mode}) failed:\n{text}\n{err}");
    assert!(text.contains(&format!("channel authority mode {mode}")), "{text}");
    assert!(text.contains("event EXIT"), "{text}");
    assert!(text.contains("deleted exit_status=5"), "{text}");
    assert!(text.contains("second delete: NOT_FOUND"), "{text}");
    server.shutdown().await.unwrap();
}

/// A stock grpcio channel with no options at all: it sends the socket path
/// as `:authority`, which h2 alone would refuse.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_python_client_with_no_channel_options_runs_a_container() {
    python_lifecycle("default").await;
}

/// The socket path percent-encoded as the authority.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_python_client_with_a_percent_encoded_authority_runs_a_container() {
    python_lifecycle("percent").await;
}

/// The documented work-around still works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_python_client_from_the_seed_proto_runs_a_container() {
    python_lifecycle("localhost").await;
}
