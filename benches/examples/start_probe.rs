//! The in-process shim's own time around `runc start`, per call, on a
//! current-thread or a 2-worker tokio runtime: the system bench prints only
//! medians, and this shows the tail.
//!
//! ```text
//! cargo run --release -p shim-benches --example start_probe -- [ROUNDS] [current | multi]
//! ```
//!
//! (as root; defaults 80 and `current`). Each round creates a busybox `true`
//! container, then times Start, split at the shim's debug events into its
//! own work before runc, `runc start`, and its own work after, then waits
//! for the EXIT event and deletes. Prints p10, p50, p90 and the maximum of
//! each part.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, missing_docs)] // a probe may panic

use std::time::Instant;

use futures::StreamExt;
use shim_benches::{split_call, StepMarks};
use shim_core::proto::v1::{CreateRequest, DeleteRequest, EventType, EventsRequest, StartRequest};
use shim_core::testing::{require_runc, runc_config, shared_reaper, BundleBuilder};
use shim_core::{RuncShim, Shim};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let rounds: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(80);
    let runtime = match args.get(2).map(String::as_str) {
        Some("multi") => tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build(),
        None | Some("current") => tokio::runtime::Builder::new_current_thread().enable_all().build(),
        Some(other) => panic!("{other:?}: the runtime is `current` or `multi`"),
    };
    runtime.unwrap().block_on(probe(rounds.max(1)));
}

async fn probe(rounds: usize) {
    if !require_runc() {
        return;
    }
    let marks = StepMarks::install();
    let dir = tempfile::tempdir().unwrap();
    let bundle = dir.path().join("bundle");
    BundleBuilder::new().args(["true"]).build(&bundle).unwrap();
    let work = tempfile::tempdir_in("/dev/shm").unwrap_or_else(|_| tempfile::tempdir().unwrap());
    let shim = RuncShim::new(runc_config(work.path().join("work")), shared_reaper()).unwrap();
    let mut parts: [Vec<f64>; 4] = Default::default();
    for i in 0..rounds {
        let mut events = shim.events(EventsRequest::default()).await.unwrap();
        let req = CreateRequest {
            id: format!("probe-{}-{i}", std::process::id()),
            bundle: bundle.display().to_string(),
            ..Default::default()
        };
        let pid = shim.create(req).await.unwrap().pid;
        marks.record(true);
        let start = Instant::now();
        shim.start(StartRequest {}).await.unwrap();
        let end = Instant::now();
        let split = split_call(start, end, &marks.take()).unwrap();
        marks.record(false);
        for (column, d) in parts.iter_mut().zip([end - start, split[0], split[1], split[2]]) {
            column.push(d.as_secs_f64() * 1000.0);
        }
        while let Some(event) = events.next().await {
            let event = event.unwrap();
            if event.r#type == EventType::Exit as i32 && event.pid == pid {
                break;
            }
        }
        shim.delete(DeleteRequest { pid }).await.unwrap();
    }
    println!("| Start, {rounds} rounds | p10 | p50 | p90 | max |\n|---|---|---|---|---|");
    for (name, mut column) in
        ["whole call", "shim: before runc", "runc start", "shim: after runc"].into_iter().zip(parts)
    {
        column.sort_by(f64::total_cmp);
        let at = |q: f64| column[((column.len() - 1) as f64 * q).round() as usize];
        println!("| {name} | {:.3} ms | {:.3} ms | {:.3} ms | {:.3} ms |", at(0.1), at(0.5), at(0.9), at(1.0));
    }
}
