//! A program that links the shim keeps working: its own child processes,
//! spawned with std or tokio while containers run and exit, are its own to
//! wait for, and no zombie is left (orphans included). In a file of its own:
//! it looks at every child of the test process.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)] // tests may panic

use std::sync::Arc;
use std::time::{Duration, Instant};

use shim_core::proto::v1::*;
use shim_core::testing::{require_runc, runc_config, shared_reaper, BundleBuilder};
use shim_core::{RuncShim, Shim};

const T: Duration = Duration::from_secs(30);

fn zombie_children() -> Vec<u32> {
    let mut zombies = Vec::new();
    for task in std::fs::read_dir("/proc/self/task").unwrap().flatten() {
        let children = std::fs::read_to_string(task.path().join("children")).unwrap_or_default();
        for pid in children.split_whitespace().filter_map(|p| p.parse::<u32>().ok()) {
            if shim_core::testing::is_zombie_child(pid) {
                zombies.push(pid);
            }
        }
    }
    zombies
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_programs_own_children_are_its_own_while_containers_run() {
    if !require_runc() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let shim = Arc::new(RuncShim::new(runc_config(dir.path().join("work")), shared_reaper()).unwrap());
    let bundle = dir.path().join("bundle");
    BundleBuilder::new().args(["sleep", "1000"]).build(&bundle).unwrap();
    let req = CreateRequest {
        id: format!("embed-{}", std::process::id()),
        bundle: bundle.display().to_string(),
        ..Default::default()
    };
    let init = shim.create(req).await.unwrap().pid;
    shim.start(StartRequest {}).await.unwrap();

    // Containers' processes exit while the program runs its own commands.
    let execs = {
        let shim = Arc::clone(&shim);
        tokio::spawn(async move {
            for _ in 0..10 {
                let pid = shim.exec(ExecRequest { args: vec!["true".into()], ..Default::default() }).await.unwrap().pid;
                assert_eq!(shim.wait(WaitRequest { pid }).await.unwrap().exit_status, 0);
                shim.delete(DeleteRequest { pid }).await.unwrap();
            }
        })
    };
    let mut std_runs = Vec::new();
    for i in 0..25 {
        std_runs.push(tokio::task::spawn_blocking(move || {
            std::process::Command::new("sh").args(["-c", &format!("echo {i}; exit {}", i % 4)]).output()
        }));
    }
    let mut tokio_runs = Vec::new();
    for i in 0..25 {
        tokio_runs.push(tokio::spawn(async move {
            tokio::process::Command::new("sh").args(["-c", &format!("echo {i}; exit {}", i % 5)]).output().await
        }));
    }
    for (i, run) in std_runs.into_iter().enumerate() {
        let out =
            tokio::time::timeout(T, run).await.unwrap().unwrap().unwrap_or_else(|e| panic!("std command {i}: {e}"));
        assert_eq!(out.status.code(), Some(i as i32 % 4), "std command {i}");
        assert_eq!(out.stdout, format!("{i}\n").into_bytes());
    }
    for (i, run) in tokio_runs.into_iter().enumerate() {
        let out =
            tokio::time::timeout(T, run).await.unwrap().unwrap().unwrap_or_else(|e| panic!("tokio command {i}: {e}"));
        assert_eq!(out.status.code(), Some(i as i32 % 5), "tokio command {i}");
    }
    tokio::time::timeout(T, execs).await.unwrap().unwrap();

    // An orphan: the grandchild outlives its parent, is re-parented to this
    // subreaper, and must still be reaped once it exits.
    let out = std::process::Command::new("sh").args(["-c", "(sleep 0.2 &); exit 0"]).output().unwrap();
    assert!(out.status.success());
    assert_eq!(shim.delete(DeleteRequest { pid: init }).await.unwrap().exit_status, 137);

    // No zombie stays: the reaper takes orphans after its grace period.
    let limit = shim_core::reaper::STRANGER_GRACE + shim_core::reaper::SCAN_INTERVAL * 3 + Duration::from_secs(2);
    let started = Instant::now();
    loop {
        let zombies = zombie_children();
        if zombies.is_empty() {
            break;
        }
        assert!(started.elapsed() < limit, "zombies left: {zombies:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
