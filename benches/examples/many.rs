//! Many containers in one process: the memory each extra running container
//! costs the embedding program, and 100 concurrent lifecycles through shims
//! against 100 concurrent raw runc lifecycles doing the same runc work.
//!
//! `cargo run --release -p shim-benches --example many [-- RUNNING ROUNDS]`
//! (as root; defaults 50 and 100). Prints markdown tables.
//!
//! Both sides of the ratio run `runc create --bundle B --pid-file F ID`,
//! `runc start ID`, wait for the init's exit (busybox `true`) and
//! `runc delete ID` (each with `--log F --log-format json`, as the shim
//! runs them), all concurrently, in the same process, with the same
//! reaper; the shim side also opens no stdio (empty paths) and publishes
//! events on one shared bus.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)] // a benchmark may panic

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use shim_core::proto::v1::{CreateRequest, DeleteRequest, StartRequest, WaitRequest};
use shim_core::testing::{require_runc, runc_config, BundleBuilder};
use shim_core::{EventBus, Reaper, RuncShim, Shim};

/// One raw lifecycle: the runc commands and flags the shim runs, nothing else.
async fn raw_lifecycle(reaper: Reaper, bundle: PathBuf, dir: PathBuf, id: String) {
    shim_benches::raw_lifecycle(&reaper, &bundle, &id, &dir).await;
}

async fn shim_lifecycle(shim: Arc<RuncShim>, bundle: PathBuf, id: String) {
    let req = CreateRequest { id, bundle: bundle.display().to_string(), ..Default::default() };
    let pid = shim.create(req).await.unwrap().pid;
    shim.start(StartRequest {}).await.unwrap();
    shim.wait(WaitRequest { pid }).await.unwrap();
    shim.delete(DeleteRequest { pid }).await.unwrap();
}

/// Interleaved rounds of the concurrent-lifecycle comparison.
const ROUNDS: usize = 5;

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    if !require_runc() {
        return;
    }
    let running: usize = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(50);
    let rounds: usize = std::env::args().nth(2).and_then(|a| a.parse().ok()).unwrap_or(100);
    let dir = tempfile::tempdir().unwrap();
    let reaper = Reaper::start().unwrap();
    let work = dir.path().join("work");
    let bus = EventBus::new(16 * running.max(rounds) + 64);
    let sleeper = dir.path().join("sleeper");
    BundleBuilder::new().args(["sleep", "100000"]).build(&sleeper).unwrap();
    let quick = dir.path().join("quick");
    BundleBuilder::new().args(["true"]).build(&quick).unwrap();
    let tag = std::process::id();

    // 1. Memory per running container, one shim each.
    let make = || Arc::new(RuncShim::with_event_bus(runc_config(&work), reaper.clone(), Some(bus.clone())).unwrap());
    // Warm up: one container through the whole path first, so allocator
    // arenas and lazy statics are not billed to the first measured one.
    shim_lifecycle(make(), quick.clone(), format!("many-warm-{tag}")).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let before = shim_benches::resident_kib("self").0;
    let mut held = Vec::new();
    for i in 0..running {
        let shim = make();
        let req = CreateRequest {
            id: format!("many-run-{tag}-{i}"),
            bundle: sleeper.display().to_string(),
            ..Default::default()
        };
        let pid = shim.create(req).await.unwrap().pid;
        shim.start(StartRequest {}).await.unwrap();
        held.push((shim, pid));
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let after = shim_benches::resident_kib("self").0;
    for (shim, pid) in held.drain(..) {
        shim.delete(DeleteRequest { pid }).await.unwrap();
    }
    let per = (after.saturating_sub(before)) as f64 / running as f64;

    // 2. Concurrent lifecycles, interleaved rounds; which side goes first
    // alternates, so neither always runs on a machine still tidying up
    // after the other's 100 containers.
    let mut shim_times = Vec::new();
    let mut raw_times = Vec::new();
    for round in 0..ROUNDS {
        for side in [round % 2, 1 - round % 2] {
            let t = Instant::now();
            let tasks: Vec<_> = (0..rounds)
                .map(|i| {
                    if side == 0 {
                        tokio::spawn(shim_lifecycle(make(), quick.clone(), format!("many-s{round}-{tag}-{i}")))
                    } else {
                        let (reaper, bundle, dir) = (reaper.clone(), quick.clone(), dir.path().to_path_buf());
                        tokio::spawn(raw_lifecycle(reaper, bundle, dir, format!("many-r{round}-{tag}-{i}")))
                    }
                })
                .collect();
            for task in tasks {
                task.await.unwrap();
            }
            let took = t.elapsed();
            if side == 0 {
                shim_times.push(took)
            } else {
                raw_times.push(took)
            }
        }
    }
    let (s, r) = (median(shim_times.clone()), median(raw_times.clone()));
    println!("| measure | value |\n|---|---|");
    println!("| RSS of the process before {running} running containers | {before} KiB |");
    println!("| RSS with {running} running containers, one RuncShim each | {after} KiB |");
    println!("| per extra running container | {per:.1} KiB |");
    println!();
    let ms = |v: &[Duration]| v.iter().map(|d| format!("{:.0}", d.as_secs_f64() * 1e3)).collect::<Vec<_>>().join(", ");
    println!("| {rounds} concurrent lifecycles (`true`) | median of {ROUNDS} | all rounds (ms) |\n|---|---|---|");
    println!("| through {rounds} RuncShims in one process | {:.0} ms | {} |", s.as_secs_f64() * 1e3, ms(&shim_times));
    println!(
        "| raw runc (create --pid-file, start, wait, delete; the shim's log flags) | {:.0} ms | {} |",
        r.as_secs_f64() * 1e3,
        ms(&raw_times)
    );
    println!("| ratio | {:.3} | |", s.as_secs_f64() / r.as_secs_f64());
    let left = std::fs::read_dir(&work).map(|d| d.count()).unwrap_or(0);
    assert_eq!(left, 0, "work directories left behind");
}
