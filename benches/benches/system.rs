//! Real-runc measurements, interleaved against the runc command line, and the
//! memory of the standalone daemon; writes `docs/PERFORMANCE.md` together with
//! the criterion results of the `rpc` bench.
//!
//! Needs root, runc, busybox-static, and a release build of the `shim` binary
//! (`make bench` builds it).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, missing_docs)] // a bench may panic

use std::ffi::OsStr;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use shim_core::proto::v1::*;
use shim_core::testing::{require_runc, shared_reaper, BundleBuilder};
use shim_core::{Reaper, RuncShim, Shim};
use shim_transport_grpc::{ClientOptions, GrpcShim};

const LIFECYCLE_ROUNDS: usize = 100;
const EXEC_ROUNDS: usize = 150;
const LEAK_EXECS: usize = 1000;
const SCALE_SHIMS: usize = 100;
const DAEMON_CALLS: usize = 5000;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Runs a command through the reaper (the process's only waiter) and checks it.
async fn run(reaper: &Reaper, program: &str, args: &[&OsStr]) {
    let mut cmd = Command::new(program);
    cmd.args(args).stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null());
    let (_child, waiter) = reaper.spawn(&mut cmd).unwrap();
    let exit = waiter.wait().await.unwrap();
    assert_eq!(exit.status, 0, "{program} {args:?} failed");
}

/// Create, start, wait for the init's exit, delete, with the runc CLI.
async fn raw_lifecycle(reaper: &Reaper, bundle: &Path, id: &str, dir: &Path) -> Duration {
    let pid_file = dir.join(format!("{id}.pid"));
    let start = Instant::now();
    let monitor = reaper.monitor();
    run(
        reaper,
        "runc",
        &[
            "create".as_ref(),
            "--bundle".as_ref(),
            bundle.as_os_str(),
            "--pid-file".as_ref(),
            pid_file.as_os_str(),
            id.as_ref(),
        ],
    )
    .await;
    let pid: u32 = std::fs::read_to_string(&pid_file).unwrap().trim().parse().unwrap();
    let exit = monitor.watch(pid);
    drop(monitor);
    run(reaper, "runc", &["start".as_ref(), id.as_ref()]).await;
    exit.wait().await.unwrap();
    run(reaper, "runc", &["delete".as_ref(), id.as_ref()]).await;
    let took = start.elapsed();
    let _ = std::fs::remove_file(pid_file);
    took
}

/// Reads events until the EXIT of `pid`.
async fn exit_event(events: &mut shim_core::EventStream, pid: u32) {
    while let Some(ev) = events.next().await {
        let ev = ev.unwrap();
        if ev.r#type == EventType::Exit as i32 && ev.pid == pid {
            return;
        }
    }
    panic!("the event stream ended before the EXIT of {pid}");
}

/// The same through a shim: Create, Start, the EXIT event, Delete.
async fn shim_lifecycle(shim: &dyn Shim, bundle: &Path, id: &str) -> Duration {
    let start = Instant::now();
    let mut events = shim.events(EventsRequest::default()).await.unwrap();
    let req = CreateRequest { id: id.into(), bundle: bundle.display().to_string(), ..Default::default() };
    let pid = shim.create(req).await.unwrap().pid;
    shim.start(StartRequest {}).await.unwrap();
    exit_event(&mut events, pid).await;
    shim.delete(DeleteRequest { pid }).await.unwrap();
    start.elapsed()
}

async fn shim_exec(shim: &dyn Shim) -> Duration {
    let start = Instant::now();
    let mut events = shim.events(EventsRequest::default()).await.unwrap();
    let pid = shim.exec(ExecRequest { args: vec!["true".into()], ..Default::default() }).await.unwrap().pid;
    exit_event(&mut events, pid).await;
    shim.delete(DeleteRequest { pid }).await.unwrap();
    start.elapsed()
}

struct Stats {
    median: f64,
    p10: f64,
    p90: f64,
}

fn stats(samples: &mut [Duration]) -> Stats {
    samples.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let at = |q: f64| ms(samples[((samples.len() - 1) as f64 * q).round() as usize]);
    Stats { median: at(0.5), p10: at(0.1), p90: at(0.9) }
}

async fn machine(reaper: &Reaper) -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_default();
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0);
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .next()
                .map(|l| l.split_whitespace().nth(1).unwrap_or("0").parse::<u64>().unwrap_or(0) / 1024 / 1024)
        })
        .unwrap_or(0);
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let runc = reaper
        .output(Command::new("runc").arg("--version"))
        .await
        .map(|o| String::from_utf8_lossy(&o.stdout).lines().next().unwrap_or("").to_string())
        .unwrap_or_default();
    format!("{cores} cores ({cpu}), {mem} GiB, Linux {}, {runc}", kernel.trim())
}

struct Daemon {
    pid: u32,
}

fn shim_bin() -> PathBuf {
    std::env::var_os("SHIM_BIN").map(PathBuf::from).unwrap_or_else(|| root().join("target/release/shim"))
}

/// Starts a daemon; every command of the bench runs through the reaper, the
/// process's only waiter.
async fn start_daemon(reaper: &Reaper, socket: &Path) -> Daemon {
    let out = reaper
        .output(
            Command::new(shim_bin())
                .arg("--socket")
                .arg(socket)
                .args(["--log-level", "warn", "--daemonize"])
                .stdin(Stdio::null()),
        )
        .await
        .unwrap();
    assert!(out.status.success(), "shim --daemonize failed: {}", String::from_utf8_lossy(&out.stderr));
    Daemon { pid: pid_of_socket(reaper, socket).await }
}

async fn pid_of_socket(reaper: &Reaper, socket: &Path) -> u32 {
    let out = reaper.output(Command::new("fuser").arg(socket)).await.unwrap();
    String::from_utf8_lossy(&out.stdout).split_whitespace().next().and_then(|p| p.parse().ok()).expect("shim pid")
}

/// RSS and PSS in KiB, and the thread count.
fn memory(pid: u32) -> (u64, u64, u64) {
    let (rss, pss) = shim_benches::resident_kib(pid);
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let threads = status
        .lines()
        .find(|l| l.starts_with("Threads:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    (rss, pss, threads)
}

fn criterion_median(path: &str) -> Option<(f64, f64, f64)> {
    let file = root().join("target/criterion").join(path).join("new/estimates.json");
    let text = std::fs::read_to_string(file).ok()?;
    let median = text.split("\"median\"").nth(1)?;
    let num = |key: &str| -> Option<f64> {
        let rest = median.split(&format!("\"{key}\":")).nth(1)?;
        rest.trim_start().split([',', '}']).next()?.trim().parse().ok()
    };
    Some((num("point_estimate")?, num("lower_bound")?, num("upper_bound")?))
}

/// `State` round trips to the daemon at `socket` from a client on a thread
/// and current-thread runtime of its own (as a manager would call it), one
/// call at a time; per-call times in µs.
fn daemon_round_trips(socket: &Path, calls: usize) -> Stats {
    let socket = socket.to_path_buf();
    std::thread::spawn(move || {
        shim_benches::runtime().block_on(async {
            let client = connect(&socket).await;
            for _ in 0..calls / 10 {
                client.state(StateRequest {}).await.unwrap();
            }
            let mut samples = Vec::with_capacity(calls);
            for _ in 0..calls {
                let t = Instant::now();
                client.state(StateRequest {}).await.unwrap();
                samples.push(t.elapsed());
            }
            let s = stats(&mut samples);
            Stats { median: s.median * 1000.0, p10: s.p10 * 1000.0, p90: s.p90 * 1000.0 }
        })
    })
    .join()
    .unwrap()
}

async fn connect(socket: &Path) -> GrpcShim {
    GrpcShim::connect(socket, ClientOptions::default()).await.unwrap()
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    if !require_runc() {
        return;
    }
    let command = "make bench";
    let mut doc = String::new();
    let reaper = shared_reaper();
    let dir = tempfile::tempdir().unwrap();
    let bundle_true = dir.path().join("bundle-true");
    BundleBuilder::new().args(["true"]).build(&bundle_true).unwrap();
    let bundle_sleep = dir.path().join("bundle-sleep");
    BundleBuilder::new().args(["sleep", "100000"]).build(&bundle_sleep).unwrap();

    writeln!(doc, "# Performance\n").unwrap();
    writeln!(
        doc,
        "Measured with `{command}` (criterion for the transports, `benches/benches/system.rs` for the rest) on {}.\n",
        machine(&reaper).await
    )
    .unwrap();
    writeln!(doc, "The numbers are from one run on a shared 2-core machine: compare ratios within a table, not absolute times across runs.\n").unwrap();

    // 1 and 2: criterion results.
    writeln!(doc, "## 1. RPC cost per transport (fake shim)\n").unwrap();
    writeln!(doc, "| call | transport | median | 95% CI of the median | goal |\n|---|---|---|---|---|").unwrap();
    for call in ["state", "pty"] {
        for transport in ["direct", "mem", "mem-encoded", "grpc-unix", "grpc-unix-same-thread", "grpc-unix-one-cpu"] {
            let goal = match transport {
                "mem" | "mem-encoded" => "< 2 µs",
                "grpc-unix" => "< 50 µs",
                _ => "",
            };
            match criterion_median(&format!("rpc/{call}/{transport}")) {
                Some((m, lo, hi)) => writeln!(
                    doc,
                    "| {call} | {transport} | {:.2} µs | {:.2}–{:.2} µs | {goal} |",
                    m / 1e3,
                    lo / 1e3,
                    hi / 1e3
                ),
                None => writeln!(doc, "| {call} | {transport} | not measured (run the `rpc` bench first) | | {goal} |"),
            }
            .unwrap();
        }
    }
    for (path, what) in [
        ("rpc_unix-pingpong", "one byte each way over a unix socket pair, echoed by another thread"),
        ("rpc_unix-pingpong-one-cpu", "the same, both threads on CPU 0"),
    ] {
        if let Some((m, lo, hi)) = criterion_median(path) {
            writeln!(doc, "| (floor) | {what} | {:.2} µs | {:.2}–{:.2} µs | |", m / 1e3, lo / 1e3, hi / 1e3).unwrap();
        }
    }
    writeln!(doc, "\n## 2. Event throughput (fake shim, bursts of 20,000 events)\n").unwrap();
    writeln!(doc, "| transport | subscribers | median time per burst | events/s to each subscriber | goal |\n|---|---|---|---|---|").unwrap();
    for transport in ["mem", "grpc-unix"] {
        for subs in [1, 8] {
            let goal = match (transport, subs) {
                ("mem", 1) => "≥ 500k/s",
                ("grpc-unix", 1) => "≥ 100k/s",
                _ => "",
            };
            match criterion_median(&format!("events/{transport}/{subs}-subscribers")) {
                Some((m, _, _)) => writeln!(
                    doc,
                    "| {transport} | {subs} | {:.2} ms | {:.0}k | {goal} |",
                    m / 1e6,
                    20_000.0 / (m / 1e9) / 1e3
                ),
                None => writeln!(doc, "| {transport} | {subs} | not measured | | {goal} |"),
            }
            .unwrap();
        }
    }

    // 3: lifecycle, interleaved.
    eprintln!("lifecycle: {LIFECYCLE_ROUNDS} rounds of raw runc, shim direct, shim over gRPC");
    let work = dir.path().join("work");
    let direct = Arc::new(RuncShim::new(shim_core::testing::runc_config(&work), reaper.clone()).unwrap());
    let server_shim: Arc<dyn Shim> =
        Arc::new(RuncShim::new(shim_core::testing::runc_config(dir.path().join("work-grpc")), reaper.clone()).unwrap());
    let socket = dir.path().join("run").join("bench.sock");
    let server = shim_transport_grpc::serve_unix(server_shim, &socket, Default::default()).unwrap();
    let grpc = connect(&socket).await;
    let (mut raw, mut dir_s, mut grpc_s) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..LIFECYCLE_ROUNDS {
        // Rotate the order so no variant always runs first.
        for k in 0..3 {
            let id = format!("bench-{i}-{k}");
            match (i + k) % 3 {
                0 => raw.push(raw_lifecycle(&reaper, &bundle_true, &id, dir.path()).await),
                1 => dir_s.push(shim_lifecycle(direct.as_ref(), &bundle_true, &id).await),
                _ => grpc_s.push(shim_lifecycle(&grpc, &bundle_true, &id).await),
            }
        }
    }
    let (r, d, g) = (stats(&mut raw), stats(&mut dir_s), stats(&mut grpc_s));
    writeln!(doc, "\n## 3. Container lifecycle with real runc (busybox `true`: create, start, exit, delete)\n")
        .unwrap();
    writeln!(doc, "{LIFECYCLE_ROUNDS} rounds, interleaved in one run. Goal: shim / raw ≤ 1.05.\n").unwrap();
    writeln!(doc, "| variant | median | p10–p90 | ratio to raw runc (medians) |\n|---|---|---|---|").unwrap();
    writeln!(doc, "| runc CLI | {:.1} ms | {:.1}–{:.1} ms | 1.00 |", r.median, r.p10, r.p90).unwrap();
    writeln!(doc, "| shim, direct | {:.1} ms | {:.1}–{:.1} ms | {:.3} |", d.median, d.p10, d.p90, d.median / r.median)
        .unwrap();
    writeln!(doc, "| shim, gRPC | {:.1} ms | {:.1}–{:.1} ms | {:.3} |", g.median, g.p10, g.p90, g.median / r.median)
        .unwrap();

    // 4: exec, interleaved.
    eprintln!("exec: {EXEC_ROUNDS} rounds");
    let id = "bench-exec";
    let req = CreateRequest { id: id.into(), bundle: bundle_sleep.display().to_string(), ..Default::default() };
    let init = direct.create(req).await.unwrap().pid;
    direct.start(StartRequest {}).await.unwrap();
    let (mut raw, mut via) = (Vec::new(), Vec::new());
    for i in 0..EXEC_ROUNDS {
        if i % 2 == 0 {
            let t = Instant::now();
            run(&reaper, "runc", &["exec".as_ref(), id.as_ref(), "true".as_ref()]).await;
            raw.push(t.elapsed());
            via.push(shim_exec(direct.as_ref()).await);
        } else {
            via.push(shim_exec(direct.as_ref()).await);
            let t = Instant::now();
            run(&reaper, "runc", &["exec".as_ref(), id.as_ref(), "true".as_ref()]).await;
            raw.push(t.elapsed());
        }
    }
    direct.delete(DeleteRequest { pid: init }).await.unwrap();
    let (r, v) = (stats(&mut raw), stats(&mut via));
    writeln!(doc, "\n## 4. Exec with real runc (`true` in a running container)\n").unwrap();
    writeln!(doc, "{EXEC_ROUNDS} rounds, interleaved. Shim: Exec, EXIT event, Delete; raw: `runc exec <id> true`. Goal: ≤ 1.05.\n").unwrap();
    writeln!(doc, "| variant | median | p10–p90 | ratio |\n|---|---|---|---|").unwrap();
    writeln!(doc, "| runc exec | {:.1} ms | {:.1}–{:.1} ms | 1.00 |", r.median, r.p10, r.p90).unwrap();
    writeln!(doc, "| shim exec | {:.1} ms | {:.1}–{:.1} ms | {:.3} |", v.median, v.p10, v.p90, v.median / r.median)
        .unwrap();
    drop(grpc);
    server.shutdown().await.unwrap();

    // 5: memory of the daemon.
    eprintln!("memory: daemon idle, then after {LEAK_EXECS} and {} execs", 2 * LEAK_EXECS);
    let socket = dir.path().join("mem").join("shim.sock");
    let daemon = start_daemon(&reaper, &socket).await;
    let client = connect(&socket).await;
    let req =
        CreateRequest { id: "bench-mem".into(), bundle: bundle_sleep.display().to_string(), ..Default::default() };
    let init = client.create(req).await.unwrap().pid;
    client.start(StartRequest {}).await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let idle = memory(daemon.pid);
    let rtt = daemon_round_trips(&socket, DAEMON_CALLS);
    let mut after = Vec::new();
    for _ in 0..2 {
        for _ in 0..LEAK_EXECS {
            let pid = client.exec(ExecRequest { args: vec!["true".into()], ..Default::default() }).await.unwrap().pid;
            client.wait(WaitRequest { pid }).await.unwrap();
            client.delete(DeleteRequest { pid }).await.unwrap();
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        after.push(memory(daemon.pid));
    }
    client.delete(DeleteRequest { pid: init }).await.unwrap();
    writeln!(doc, "\n## 5. Memory of the standalone `shim` (`make daemon`: release build, glibc linked statically)\n")
        .unwrap();
    writeln!(doc, "From `/proc/PID/smaps_rollup`; the second {LEAK_EXECS} execs show whether anything grows with use. Goal: < 3 MiB RSS. Reference: containerd's Go v1 shim 7.5 MiB RSS, its runc v2 shim 13 MiB.\n").unwrap();
    writeln!(doc, "| moment | RSS | PSS | threads |\n|---|---|---|---|").unwrap();
    writeln!(doc, "| idle, one running container | {} KiB | {} KiB | {} |", idle.0, idle.1, idle.2).unwrap();
    for (i, m) in after.iter().enumerate() {
        writeln!(doc, "| after {} exec + wait + delete | {} KiB | {} KiB | {} |", (i + 1) * LEAK_EXECS, m.0, m.1, m.2)
            .unwrap();
    }
    writeln!(
        doc,
        "\nThe same daemon answers a `State` call over its socket in {:.1} µs (median of {DAEMON_CALLS}, p10–p90 {:.1}–{:.1} µs; client on a current-thread runtime in the bench process).",
        rtt.median, rtt.p10, rtt.p90
    )
    .unwrap();

    // 6: scale.
    eprintln!("scale: {SCALE_SHIMS} shims");
    let t = Instant::now();
    let mut daemons = Vec::new();
    for i in 0..SCALE_SHIMS {
        let socket = dir.path().join(format!("scale-{i}")).join("shim.sock");
        let d = start_daemon(&reaper, &socket).await;
        let c = connect(&socket).await;
        let req = CreateRequest {
            id: format!("bench-scale-{i}"),
            bundle: bundle_sleep.display().to_string(),
            ..Default::default()
        };
        let pid = c.create(req).await.unwrap().pid;
        c.start(StartRequest {}).await.unwrap();
        daemons.push((d, c, pid));
    }
    let started = t.elapsed();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (mut rss, mut pss) = (0u64, 0u64);
    for (d, _, _) in &daemons {
        let (r, p, _) = memory(d.pid);
        rss += r;
        pss += p;
    }
    for (_, c, pid) in &daemons {
        c.delete(DeleteRequest { pid: *pid }).await.unwrap();
    }
    writeln!(doc, "\n## 6. Scale: {SCALE_SHIMS} shims, each with a running container\n").unwrap();
    writeln!(doc, "| measure | value |\n|---|---|").unwrap();
    writeln!(
        doc,
        "| time to start them all (daemon, create, start; one after another) | {:.2} s |",
        started.as_secs_f64()
    )
    .unwrap();
    writeln!(doc, "| total RSS of the shims | {:.1} MiB |", rss as f64 / 1024.0).unwrap();
    writeln!(
        doc,
        "| total PSS of the shims | {:.1} MiB ({:.0} KiB each) |",
        pss as f64 / 1024.0,
        pss as f64 / SCALE_SHIMS as f64
    )
    .unwrap();

    let out = root().join("docs/PERFORMANCE.md");
    let existing = std::fs::read_to_string(&out).unwrap_or_default();
    // Keep hand-written notes below the generated part.
    let notes = existing.split_once("\n## Notes").map(|(_, n)| format!("\n## Notes{n}")).unwrap_or_default();
    std::fs::write(&out, format!("{doc}{notes}")).unwrap();
    println!("{doc}");
    eprintln!("wrote {}", out.display());
}
