//! 1,000 Exec/Delete cycles and 10,000 State calls from 8 concurrent
//! clients: no fd, thread or memory growth, every exit reported exactly once.
//! Its own test binary, so nothing else runs in the process meanwhile.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)] // tests may panic

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use shim_core::proto::v1::*;
use shim_core::testing::{require_runc, shared_reaper, BundleBuilder};
use shim_core::{RuncShim, Shim};

const CLIENTS: usize = 8;
const EXECS: usize = 1000;
const STATES: usize = 10_000;

fn fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

fn status_field(name: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status.lines().find(|l| l.starts_with(name)).and_then(|l| l.split_whitespace().nth(1)).unwrap().parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_execs_and_states_leak_nothing() {
    if !require_runc() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    BundleBuilder::new().args(["sleep", "100000"]).build(&dir.path().join("bundle")).unwrap();
    let shim =
        Arc::new(RuncShim::new(shim_core::testing::runc_config(dir.path().join("work")), shared_reaper()).unwrap());
    let req = CreateRequest {
        id: format!("soak-{}", std::process::id()),
        bundle: dir.path().join("bundle").display().to_string(),
        ..Default::default()
    };
    let init = shim.create(req).await.unwrap().pid;
    shim.start(StartRequest {}).await.unwrap();
    // Warm up, so lazily created runtime threads and buffers exist before
    // the first measurement.
    for _ in 0..20 {
        let pid = shim.exec(ExecRequest { args: vec!["true".into()], ..Default::default() }).await.unwrap().pid;
        shim.delete(DeleteRequest { pid }).await.unwrap();
    }
    let (fds_before, threads_before, rss_before) = (fds(), status_field("Threads:"), status_field("VmRSS:"));

    let events = shim.events(EventsRequest::default()).await.unwrap();
    let collector = tokio::spawn(async move {
        let mut exits: HashMap<u32, u32> = HashMap::new();
        let mut events = events;
        while let Some(ev) = events.next().await {
            let ev = ev.expect("the subscriber keeps up");
            if ev.r#type == EventType::Exit as i32 {
                *exits.entry(ev.pid).or_default() += 1;
                if exits.len() == EXECS {
                    break;
                }
            }
        }
        exits
    });
    let mut clients = Vec::new();
    for _ in 0..CLIENTS {
        let shim = Arc::clone(&shim);
        clients.push(tokio::spawn(async move {
            let mut pids = Vec::new();
            for i in 0..EXECS / CLIENTS {
                let pid = shim.exec(ExecRequest { args: vec!["true".into()], ..Default::default() }).await.unwrap().pid;
                assert_eq!(shim.wait(WaitRequest { pid }).await.unwrap().exit_status, 0);
                assert_eq!(shim.delete(DeleteRequest { pid }).await.unwrap().exit_status, 0);
                pids.push(pid);
                for _ in 0..STATES / EXECS {
                    let st = shim.state(StateRequest {}).await.unwrap();
                    assert_eq!(st.processes.first().map(|p| p.pid), Some(init), "round {i}");
                }
            }
            pids
        }));
    }
    let mut all = Vec::new();
    for c in clients {
        all.extend(tokio::time::timeout(Duration::from_secs(300), c).await.unwrap().unwrap());
    }
    assert_eq!(all.len(), EXECS);
    let exits = tokio::time::timeout(Duration::from_secs(60), collector).await.unwrap().unwrap();
    assert_eq!(exits.len(), EXECS, "every exec's exit was reported");
    assert!(exits.values().all(|n| *n == 1), "no exit reported twice");

    let (fds_after, threads_after, rss_after) = (fds(), status_field("Threads:"), status_field("VmRSS:"));
    println!("fds {fds_before} -> {fds_after}, threads {threads_before} -> {threads_after}, rss {rss_before} KiB -> {rss_after} KiB");
    assert!(fds_after <= fds_before + 2, "fds grew from {fds_before} to {fds_after}");
    // tokio's blocking pool may keep a few idle threads for a while.
    assert!(threads_after <= threads_before + 8, "threads grew from {threads_before} to {threads_after}");
    assert!(rss_after < rss_before + 16 * 1024, "rss grew from {rss_before} KiB to {rss_after} KiB");
    assert_eq!(shim.state(StateRequest {}).await.unwrap().processes.len(), 1);
    shim.delete(DeleteRequest { pid: init }).await.unwrap();
}
