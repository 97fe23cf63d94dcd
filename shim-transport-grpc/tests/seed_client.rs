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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_python_client_from_the_seed_proto_runs_a_container() {
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
    let id = format!("py-{}", std::process::id());
    // This process has a reaper (the shim's), which owns every child's exit:
    // the client is spawned and waited for through it.
    let (stdout, stderr) = (dir.path().join("py.out"), dir.path().join("py.err"));
    let mut cmd = Command::new("python3");
    cmd.arg(script).arg(proto_dir).arg(&socket).arg(&bundle).arg(&id);
    cmd.stdout(std::fs::File::create(&stdout).unwrap()).stderr(std::fs::File::create(&stderr).unwrap());
    let (_child, exit) = shared_reaper().spawn(&mut cmd).unwrap();
    drop(cmd);
    let exit = tokio::time::timeout(std::time::Duration::from_secs(60), exit.wait()).await.unwrap().unwrap();
    let text = std::fs::read_to_string(&stdout).unwrap();
    let err = std::fs::read_to_string(&stderr).unwrap();
    assert_eq!(exit.status, 0, "python client failed:\n{text}\n{err}");
    assert!(text.contains("event EXIT"), "{text}");
    assert!(text.contains("deleted exit_status=5"), "{text}");
    assert!(text.contains("second delete: NOT_FOUND"), "{text}");
    server.shutdown().await.unwrap();
}
