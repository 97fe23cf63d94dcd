//! Output FIFOs whose reader never comes, unlinked while the shim waits for
//! it, cost no thread. In a file of its own: it counts the process's threads.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)] // tests may panic

use std::time::Duration;

use shim_core::proto::v1::*;
use shim_core::testing::mkfifo;
use shim_core::{FakeShim, Shim, ShimConfig};

const STREAMS: usize = 40;

fn threads() -> usize {
    std::fs::read_dir("/proc/self/task").unwrap().count()
}

#[test]
fn unlinked_fifos_without_readers_park_no_thread() {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let (before, after) = rt.block_on(abandon_fifos());
    // Not a plain drop: a thread parked in open(2) for ever would make the
    // runtime's shutdown wait for ever, and the test hang instead of fail.
    rt.shutdown_background();
    assert!(after < before + STREAMS / 4, "{before} threads before, {after} after {STREAMS} abandoned fifos");
}

/// Runs the streams; returns the thread counts before and after.
async fn abandon_fifos() -> (usize, usize) {
    let dir = tempfile::tempdir().unwrap();
    let config = serde_json::json!({ "process": { "args": ["sleep"], "cwd": "/" } });
    std::fs::write(dir.path().join("config.json"), config.to_string()).unwrap();
    let shim = FakeShim::with_config(ShimConfig { io_grace: Duration::from_millis(50), ..Default::default() }, None);
    let req = CreateRequest { id: "fifos".into(), bundle: dir.path().display().to_string(), ..Default::default() };
    let init = shim.create(req).await.unwrap().pid;
    shim.start(StartRequest {}).await.unwrap();
    let before = threads();
    let mut pids = Vec::new();
    let mut fifos = Vec::new();
    for i in 0..STREAMS {
        let fifo = dir.path().join(format!("out-{i}"));
        mkfifo(&fifo).unwrap();
        fifos.push(fifo.clone());
        let req = ExecRequest {
            args: vec!["out:x".into(), "sleep".into()],
            stdout: fifo.display().to_string(),
            ..Default::default()
        };
        pids.push(shim.exec(req).await.unwrap().pid);
    }
    // The readers never come, and the FIFOs go away while the shim waits for
    // them (a blocking open(2) would be parked in the kernel by now).
    for fifo in fifos {
        std::fs::remove_file(&fifo).unwrap();
    }
    for pid in pids {
        let deleted = tokio::time::timeout(Duration::from_secs(20), shim.delete(DeleteRequest { pid })).await;
        assert_eq!(deleted.unwrap().unwrap().exit_status, 137);
    }
    tokio::time::timeout(Duration::from_secs(20), shim.delete(DeleteRequest { pid: init })).await.unwrap().unwrap();
    (before, threads())
}
