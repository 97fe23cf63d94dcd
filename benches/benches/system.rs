//! Real-runc measurements, interleaved against the runc command line doing
//! the same runc work, where the shim's own time goes, and the memory of the
//! standalone daemon; writes `docs/PERFORMANCE.md` together with the
//! criterion results of the `rpc` bench and the tables `make bench` saved
//! from the `many` and `containerd_shims` examples.
//!
//! Needs root, runc, busybox-static, and the operator build of the `shim`
//! binary (`make bench` builds it and passes it in `SHIM_BIN`).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, missing_docs)] // a bench may panic

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use shim_benches::{raw_launch, split_call, StepMarks};
use shim_core::proto::v1::*;
use shim_core::spec::{exec_process, ProcessDefaults};
use shim_core::testing::{require_runc, shared_reaper, BundleBuilder};
use shim_core::{Reaper, RuncShim, Shim};
use shim_transport_grpc::{ClientOptions, GrpcShim};
use tokio::io::AsyncBufReadExt;

const LIFECYCLE_ROUNDS: usize = 100;
const EXEC_ROUNDS: usize = 150;
const LEAK_EXECS: usize = 1000;
const SCALE_SHIMS: usize = 100;
const DAEMON_CALLS: usize = 5000;
/// How long after its start a daemon is measured as idle: it gives its code
/// pages back once it has been idle for 2 to 4 s.
const IDLE_AFTER: Duration = Duration::from_secs(5);
/// A tmpfs for the files of runc calls, work directories and sockets.
const RUN_DIR: &str = "/dev/shm";

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Samples by step name.
#[derive(Default)]
struct Samples(BTreeMap<&'static str, Vec<Duration>>);

impl Samples {
    fn add(&mut self, step: &'static str, d: Duration) {
        self.0.entry(step).or_default().push(d);
    }

    fn split(&mut self, call: [&'static str; 3], start: Instant, end: Instant, marks: &StepMarks) {
        if let Some(parts) = split_call(start, end, &marks.take()) {
            for (name, d) in call.into_iter().zip(parts) {
                self.add(name, d);
            }
        }
    }

    fn stats(&self, step: &str) -> Option<Stats> {
        let mut v = self.0.get(step)?.clone();
        (!v.is_empty()).then(|| stats(&mut v))
    }

    fn ms(&self, step: &str) -> String {
        self.stats(step).map(|s| format!("{:.2} ms", s.median)).unwrap_or_default()
    }
}

struct Stats {
    median: f64,
    p10: f64,
    p90: f64,
}

/// Median and spread, in ms.
fn stats(samples: &mut [Duration]) -> Stats {
    samples.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let at = |q: f64| ms(samples[((samples.len() - 1) as f64 * q).round() as usize]);
    Stats { median: at(0.5), p10: at(0.1), p90: at(0.9) }
}

/// A raw lifecycle (see [`shim_benches::raw_lifecycle`]), its steps recorded.
async fn raw_lifecycle(reaper: &Reaper, bundle: &Path, id: &str, dir: &Path, steps: &mut Samples) -> Duration {
    let start = Instant::now();
    let s = shim_benches::raw_lifecycle(reaper, bundle, id, dir).await;
    let took = start.elapsed();
    for (name, d) in [("create", s.create), ("start", s.start), ("wait", s.wait), ("delete", s.delete)] {
        steps.add(name, d);
    }
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

/// The same through a shim: Create, Start, the EXIT event, Delete. With
/// `marks`, each call is split into the shim's own work and runc's.
async fn shim_lifecycle(
    shim: &dyn Shim,
    bundle: &Path,
    id: &str,
    marks: Option<&StepMarks>,
    steps: &mut Samples,
) -> Duration {
    let start = Instant::now();
    let mut events = shim.events(EventsRequest::default()).await.unwrap();
    if let Some(m) = marks {
        m.record(true);
    }
    let t = Instant::now();
    let req = CreateRequest { id: id.into(), bundle: bundle.display().to_string(), ..Default::default() };
    let pid = shim.create(req).await.unwrap().pid;
    let created = Instant::now();
    if let Some(m) = marks {
        steps.split(["create: before runc", "create: runc", "create: after runc"], t, created, m);
    }
    let c = Instant::now();
    shim.start(StartRequest {}).await.unwrap();
    let s = Instant::now();
    if let Some(m) = marks {
        steps.split(["start: before runc", "start: runc", "start: after runc"], c, s, m);
    }
    exit_event(&mut events, pid).await;
    let w = Instant::now();
    shim.delete(DeleteRequest { pid }).await.unwrap();
    let d = Instant::now();
    if let Some(m) = marks {
        steps.split(["delete: before runc", "delete: runc", "delete: after runc"], w, d, m);
        m.record(false);
    }
    steps.add("create", created - t);
    steps.add("start", s - c);
    steps.add("wait", w - s);
    steps.add("delete", d - w);
    d - start
}

fn shim_bin() -> PathBuf {
    std::env::var_os("SHIM_BIN").map(PathBuf::from).unwrap_or_else(|| root().join("target/release/shim"))
}

/// A `shim` daemon started by the bench as a manager starts it (`shimctl`
/// does the same): in the foreground, its `ready` line read from stderr.
struct Daemon {
    pid: u32,
    exit: shim_core::reaper::ExitWaiter,
}

async fn spawn_daemon(reaper: &Reaper, socket: &Path) -> Daemon {
    let mut cmd = Command::new(shim_bin());
    cmd.arg("--socket").arg(socket).args(["--log-level", "warn"]);
    cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::piped());
    let (mut child, exit) = reaper.spawn(&mut cmd).unwrap();
    let stderr = std::fs::File::from(std::os::fd::OwnedFd::from(child.stderr.take().unwrap()));
    let pipe = tokio::net::unix::pipe::Receiver::from_file(stderr).unwrap();
    let mut lines = tokio::io::BufReader::new(pipe).lines();
    loop {
        match lines.next_line().await.unwrap() {
            Some(line) if line.starts_with("ready ") => break,
            Some(line) => eprintln!("shim: {line}"),
            None => panic!("the shim exited before it was ready"),
        }
    }
    // Whatever it still says goes to our stderr.
    tokio::spawn(async move {
        while let Ok(Some(line)) = lines.next_line().await {
            eprintln!("shim: {line}");
        }
    });
    Daemon { pid: child.id(), exit }
}

/// A container's whole life through its own daemon, as a manager drives
/// it: spawn the daemon, connect, Create, Start, Wait, Delete, and the
/// daemon's exit (it exits once its container is deleted).
async fn daemon_lifecycle(reaper: &Reaper, bundle: &Path, id: &str, dir: &Path, steps: &mut Samples) -> Duration {
    let socket = dir.join(format!("{id}.sock"));
    let start = Instant::now();
    let daemon = spawn_daemon(reaper, &socket).await;
    let ready = Instant::now();
    let client = connect(&socket).await;
    let connected = Instant::now();
    let req = CreateRequest { id: id.into(), bundle: bundle.display().to_string(), ..Default::default() };
    let pid = client.create(req).await.unwrap().pid;
    let created = Instant::now();
    client.start(StartRequest {}).await.unwrap();
    let started = Instant::now();
    client.wait(WaitRequest { pid }).await.unwrap();
    let waited = Instant::now();
    client.delete(DeleteRequest { pid }).await.unwrap();
    let deleted = Instant::now();
    drop(client);
    let exit = daemon.exit.wait().await.unwrap();
    assert_eq!(exit.status, 0, "the daemon failed");
    let end = Instant::now();
    steps.add("spawn until ready", ready - start);
    steps.add("connect", connected - ready);
    steps.add("create", created - connected);
    steps.add("start", started - created);
    steps.add("wait", waited - started);
    steps.add("delete", deleted - waited);
    steps.add("delete until exited", end - deleted);
    end - start
}

/// The process object the shim writes for an Exec of `true` in `bundle`.
fn exec_spec(bundle: &Path) -> serde_json::Value {
    let defaults = ProcessDefaults::from_bundle(&bundle.display().to_string()).unwrap();
    exec_process(&ExecRequest { args: vec!["true".into()], ..Default::default() }, &defaults).unwrap()
}

/// An exec as the shim does it: write the process file, `runc exec
/// --process F --detach --pid-file P`, wait for the process's exit.
async fn raw_exec(
    reaper: &Reaper,
    id: &str,
    spec: &serde_json::Value,
    dir: &Path,
    n: usize,
    steps: &mut Samples,
) -> Duration {
    let (file, pid_file, log) =
        (dir.join(format!("exec-{n}.json")), dir.join(format!("exec-{n}.pid")), dir.join(format!("exec-{n}.log")));
    let start = Instant::now();
    std::fs::write(&file, serde_json::to_vec(spec).unwrap()).unwrap();
    let args: [&OsStr; 7] = [
        "exec".as_ref(),
        "--process".as_ref(),
        file.as_ref(),
        "--detach".as_ref(),
        "--pid-file".as_ref(),
        pid_file.as_ref(),
        id.as_ref(),
    ];
    let (runc, exit) = raw_launch(reaper, &log, &args, &pid_file).await;
    steps.add("exec", runc);
    exit.wait().await.unwrap();
    let took = start.elapsed();
    let _ = std::fs::remove_file(file);
    let _ = std::fs::remove_file(pid_file);
    took
}

async fn shim_exec(shim: &dyn Shim, marks: &StepMarks, steps: &mut Samples) -> Duration {
    let start = Instant::now();
    let mut events = shim.events(EventsRequest::default()).await.unwrap();
    marks.record(true);
    let t = Instant::now();
    let pid = shim.exec(ExecRequest { args: vec!["true".into()], ..Default::default() }).await.unwrap().pid;
    let e = Instant::now();
    steps.split(["exec: before runc", "exec: runc", "exec: after runc"], t, e, marks);
    marks.record(false);
    exit_event(&mut events, pid).await;
    shim.delete(DeleteRequest { pid }).await.unwrap();
    start.elapsed()
}

async fn command_line(reaper: &Reaper, program: &str, args: &[&str]) -> String {
    reaper
        .output(Command::new(program).args(args).stdin(Stdio::null()))
        .await
        .map(|o| String::from_utf8_lossy(&o.stdout).lines().next().unwrap_or("").trim().to_string())
        .unwrap_or_default()
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
    let runc = command_line(reaper, "runc", &["--version"]).await;
    format!("{cores} cores ({cpu}), {mem} GiB, Linux {}, {runc}, {}", kernel.trim(), cgroup_move(reaper).await)
}

/// Whether moving a process into a cgroup waits for an RCU grace period,
/// as `runc create` does when it writes `cgroup.procs` (Linux 6.0 and later,
/// unless the kernel favours dynamic cgroup changes): much of runc's time
/// and of its spread (see the notes). Measured, not read from the mount
/// options or the boot flags: on this VM the favouring outlived the
/// hierarchy mounted to turn it on. A child is moved into the cgroup of its
/// own `pids` hierarchy (or of cgroup v2), which changes nothing, after a
/// pause that lets an earlier move's state lapse; the median of five.
async fn cgroup_move(reaper: &Reaper) -> String {
    let mut took = Vec::new();
    for _ in 0..5 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let Ok((mut child, exit)) = reaper.spawn(Command::new("sleep").arg("10").stdin(Stdio::null())) else {
            return "cgroup move not measured (no sleep binary)".into();
        };
        let own = std::fs::read_to_string(format!("/proc/{}/cgroup", child.id())).unwrap_or_default();
        let procs = own.lines().find_map(|line| {
            let mut parts = line.splitn(3, ':');
            let (_, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
            match controllers {
                "pids" => Some(format!("/sys/fs/cgroup/pids{path}/cgroup.procs")),
                "" => Some(format!("/sys/fs/cgroup{path}/cgroup.procs")),
                _ => None,
            }
        });
        let start = Instant::now();
        let moved = procs.map(|p| std::fs::write(p, child.id().to_string()));
        let elapsed = start.elapsed();
        let _ = child.kill();
        let _ = exit.wait().await;
        if matches!(moved, Some(Ok(()))) {
            took.push(elapsed);
        }
    }
    if took.is_empty() {
        return "cgroup move not measured".into();
    }
    let median = stats(&mut took).median;
    let verdict = if median >= 0.5 { "waits for an RCU grace period" } else { "no grace period" };
    format!("a cgroup move took {median:.2} ms ({verdict})")
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

/// Tables 1 and 2: the criterion results of the `rpc` bench.
fn criterion_tables(doc: &mut String) {
    writeln!(doc, "## 1. RPC cost per transport (fake shim)\n").unwrap();
    writeln!(doc, "| call | transport | median | 95% CI of the median | goal |\n|---|---|---|---|---|").unwrap();
    for call in ["state", "pty"] {
        for transport in ["direct", "mem", "mem-encoded", "grpc-unix", "grpc-unix-same-thread", "grpc-unix-one-cpu"] {
            let goal = match transport {
                "mem" | "mem-encoded" => "< 2 µs",
                "grpc-unix" => "≤ 2× the floor",
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
    if let (Some(grpc), Some(floor)) = (criterion_median("rpc/state/grpc-unix"), criterion_median("rpc_unix-pingpong"))
    {
        writeln!(
            doc,
            "\n`state` over gRPC across threads is {:.2}× the unix ping-pong floor of the same run (goal ≤ 2×).",
            grpc.0 / floor.0
        )
        .unwrap();
    }
    let buffer = shim_core::events::DEFAULT_EVENT_BUFFER;
    writeln!(doc, "\n## 2. Event throughput (fake shim, 20,000 events, the default ring of {buffer})\n").unwrap();
    writeln!(
        doc,
        "The publisher sends {} events (half the ring), then waits until every subscriber has them.\n",
        buffer / 2
    )
    .unwrap();
    writeln!(doc, "| transport | subscribers | median time for 20,000 | events/s to each subscriber | goal |\n|---|---|---|---|---|").unwrap();
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
}

/// A table an example printed, saved by `make bench` in `target/bench/`.
fn saved_table(doc: &mut String, file: &str, title: &str, command: &str) {
    writeln!(doc, "\n## {title}\n\n`{command}`\n").unwrap();
    match std::fs::read_to_string(root().join("target/bench").join(file)) {
        Ok(text) if !text.trim().is_empty() => writeln!(doc, "{}", text.trim_end()).unwrap(),
        _ => writeln!(doc, "Not run: `make bench` runs it before this bench and saves its tables.").unwrap(),
    }
}

// One thread, as the daemon and the containerd bench run: on this 2-core VM
// a multi-threaded runtime's hops between workers cost the shim variants
// (one task more per call than the raw side) a tail of up to 0.7 ms when
// runc and the container's exit hold both CPUs; the notes have the numbers.
#[tokio::main(flavor = "current_thread")]
async fn main() {
    if !require_runc() {
        return;
    }
    let marks = StepMarks::install();
    let mut doc = String::new();
    let reaper = shared_reaper();
    let dir = tempfile::tempdir().unwrap();
    let bundle_true = dir.path().join("bundle-true");
    BundleBuilder::new().args(["true"]).build(&bundle_true).unwrap();
    let bundle_sleep = dir.path().join("bundle-sleep");
    BundleBuilder::new().args(["sleep", "100000"]).build(&bundle_sleep).unwrap();
    // The files of runc calls (pid files, logs, process files), the shims'
    // work directories and sockets: on tmpfs, for both sides, as under /run
    // on a production host (here /run and /tmp are ext4, where creating,
    // unlinking and removing a directory each cost 0.1-0.4 ms).
    let run = tempfile::Builder::new()
        .prefix("shim-bench")
        .tempdir_in(RUN_DIR)
        .unwrap_or_else(|_| tempfile::tempdir().unwrap());
    let raw_dir = run.path().join("raw");
    std::fs::create_dir_all(&raw_dir).unwrap();

    writeln!(doc, "# Performance\n").unwrap();
    let date = command_line(&reaper, "date", &["-u", "+%Y-%m-%d %H:%M UTC"]).await;
    writeln!(
        doc,
        "Generated by `make bench` on {date} (criterion for the transports, `benches/benches/system.rs` for the rest, which also takes in the tables of the two example benches) on {}.\n",
        machine(&reaper).await
    )
    .unwrap();
    writeln!(doc, "Every ratio compares two things measured in the same run, interleaved; absolute times move by ±20 % between runs on this shared VM, and more from one day to the next. The raw-runc side of a ratio runs the runc commands the shim runs, with the same flags (`--log F --log-format json`, `--pid-file`, `--detach`, `--process`), and nothing else. In tables 3 to 7 the files of runc calls (pid files, logs, process files) of both sides, the shims' work directories and their sockets are on tmpfs (`/dev/shm`), as they are under `/run` on a production host; the bundles are on ext4. Table 8 keeps its bundles (where the shims' call files are), the raw side's files and the shims' sockets under `/tmp` and `/run`, both ext4 on this VM.\n").unwrap();
    criterion_tables(&mut doc);

    // 3: lifecycle, interleaved.
    eprintln!("lifecycle: {LIFECYCLE_ROUNDS} rounds of raw runc, shim direct, shim over gRPC, daemon");
    let work = run.path().join("work");
    let direct = Arc::new(RuncShim::new(shim_core::testing::runc_config(&work), reaper.clone()).unwrap());
    let server_shim: Arc<dyn Shim> =
        Arc::new(RuncShim::new(shim_core::testing::runc_config(run.path().join("work-grpc")), reaper.clone()).unwrap());
    let socket = run.path().join("grpc").join("bench.sock");
    let server = shim_transport_grpc::serve_unix(server_shim, &socket, Default::default()).unwrap();
    let grpc = connect(&socket).await;
    let daemons_dir = run.path().join("daemons");
    let (mut raw, mut dir_s, mut grpc_s, mut daemon_s) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let (mut raw_steps, mut direct_steps, mut grpc_steps, mut daemon_steps) =
        (Samples::default(), Samples::default(), Samples::default(), Samples::default());
    for i in 0..LIFECYCLE_ROUNDS {
        // Rotate the order so no variant always runs first.
        for k in 0..4 {
            let id = format!("bench-{i}-{k}");
            match (i + k) % 4 {
                0 => raw.push(raw_lifecycle(&reaper, &bundle_true, &id, &raw_dir, &mut raw_steps).await),
                1 => dir_s
                    .push(shim_lifecycle(direct.as_ref(), &bundle_true, &id, Some(&marks), &mut direct_steps).await),
                2 => grpc_s.push(shim_lifecycle(&grpc, &bundle_true, &id, None, &mut grpc_steps).await),
                _ => daemon_s.push(daemon_lifecycle(&reaper, &bundle_true, &id, &daemons_dir, &mut daemon_steps).await),
            }
        }
    }
    // Rounds run their variants back to back: a round's ratio compares
    // runs made under the same load, which a slow stretch of the VM moves less.
    let paired = |v: &[Duration]| {
        let mut ratios: Vec<f64> = v.iter().zip(&raw).map(|(x, r)| x.as_secs_f64() / r.as_secs_f64()).collect();
        ratios.sort_by(f64::total_cmp);
        ratios[ratios.len() / 2]
    };
    let (pd, pg, pdm) = (paired(&dir_s), paired(&grpc_s), paired(&daemon_s));
    let (r, d, g, dm) = (stats(&mut raw), stats(&mut dir_s), stats(&mut grpc_s), stats(&mut daemon_s));
    writeln!(doc, "\n## 3. Container lifecycle with real runc (busybox `true`: create, start, exit, delete)\n")
        .unwrap();
    writeln!(doc, "{LIFECYCLE_ROUNDS} rounds, the four variants interleaved in rotating order. Raw runc: `runc create --bundle B --pid-file P ID`, `runc start ID`, wait for the init's exit, `runc delete ID`, each with `--log F --log-format json`. The shim in process and over gRPC (a server in this process): Create, Start, the EXIT event, Delete. The bench, the shim in process and that server run on one current-thread tokio runtime, as the daemon does (see the notes for a 2-worker runtime). The daemon: `shim --socket S` started until its ready line, connect, Create, Start, Wait, Delete, and the daemon's own exit.\n").unwrap();
    writeln!(
        doc,
        "| variant | median | p10–p90 | ratio of the medians | median of the rounds' ratios | goal |\n|---|---|---|---|---|---|"
    )
    .unwrap();
    writeln!(doc, "| runc CLI | {:.1} ms | {:.1}–{:.1} ms | 1.00 | 1.00 | |", r.median, r.p10, r.p90).unwrap();
    for (name, s, p, goal) in [
        ("shim, in process (no transport)", &d, pd, "≤ 1.03"),
        ("shim over gRPC", &g, pg, ""),
        ("daemon, from its spawn to its exit", &dm, pdm, "≤ 1.10"),
    ] {
        writeln!(
            doc,
            "| {name} | {:.1} ms | {:.1}–{:.1} ms | {:.3} | {p:.3} | {goal} |",
            s.median,
            s.p10,
            s.p90,
            s.median / r.median
        )
        .unwrap();
    }
    writeln!(doc, "\nEach step, median of the same rounds:\n").unwrap();
    writeln!(doc, "| step | raw runc | shim, in process | shim over gRPC | daemon |\n|---|---|---|---|---|").unwrap();
    for step in ["spawn until ready", "connect", "create", "start", "wait", "delete", "delete until exited"] {
        writeln!(
            doc,
            "| {step} | {} | {} | {} | {} |",
            raw_steps.ms(step),
            direct_steps.ms(step),
            grpc_steps.ms(step),
            daemon_steps.ms(step)
        )
        .unwrap();
    }

    // 4: exec, interleaved.
    eprintln!("exec: {EXEC_ROUNDS} rounds");
    let id = "bench-exec";
    let req = CreateRequest { id: id.into(), bundle: bundle_sleep.display().to_string(), ..Default::default() };
    let init = direct.create(req).await.unwrap().pid;
    direct.start(StartRequest {}).await.unwrap();
    let spec = exec_spec(&bundle_sleep);
    let (mut raw_e, mut via) = (Vec::new(), Vec::new());
    for i in 0..EXEC_ROUNDS {
        for k in [i % 2, 1 - i % 2] {
            if k == 0 {
                raw_e.push(raw_exec(&reaper, id, &spec, &raw_dir, i, &mut raw_steps).await);
            } else {
                via.push(shim_exec(direct.as_ref(), &marks, &mut direct_steps).await);
            }
        }
    }
    direct.delete(DeleteRequest { pid: init }).await.unwrap();
    let (r, v) = (stats(&mut raw_e), stats(&mut via));
    writeln!(doc, "\n## 4. Exec with real runc (`true` in a running container)\n").unwrap();
    writeln!(doc, "{EXEC_ROUNDS} rounds, interleaved. Raw runc: write the process file (the JSON the shim writes for this request), `runc exec --process F --detach --pid-file P ID` with the same log flags, wait for the process's exit. Shim, in process: Exec, the EXIT event, Delete.\n").unwrap();
    writeln!(doc, "| variant | median | p10–p90 | ratio | goal |\n|---|---|---|---|---|").unwrap();
    writeln!(doc, "| runc exec --detach | {:.1} ms | {:.1}–{:.1} ms | 1.00 | |", r.median, r.p10, r.p90).unwrap();
    writeln!(
        doc,
        "| shim exec | {:.1} ms | {:.1}–{:.1} ms | {:.3} | ≤ 1.05 |",
        v.median,
        v.p10,
        v.p90,
        v.median / r.median
    )
    .unwrap();
    drop(grpc);
    server.shutdown().await.unwrap();

    // Where the shim's time goes, from the in-process rounds above.
    writeln!(doc, "\n## 5. Where the shim's own time goes (in process, the rounds of tables 3 and 4)\n").unwrap();
    writeln!(doc, "Each call split at the shim's debug events just before it spawns runc and just after it has runc's exit; raw is the same runc command, spawn to reaped, from this process and reaper.\n").unwrap();
    writeln!(
        doc,
        "| call | shim: before runc | runc, from the shim | shim: after runc | runc, raw |\n|---|---|---|---|---|"
    )
    .unwrap();
    for call in ["create", "start", "delete", "exec"] {
        writeln!(
            doc,
            "| {call} | {} | {} | {} | {} |",
            direct_steps.ms(&format!("{call}: before runc")),
            direct_steps.ms(&format!("{call}: runc")),
            direct_steps.ms(&format!("{call}: after runc")),
            raw_steps.ms(call),
        )
        .unwrap();
    }

    // 6: memory of the daemon.
    eprintln!("memory: daemon just after Start, idle, then after {LEAK_EXECS} and {} execs", 2 * LEAK_EXECS);
    let socket = run.path().join("mem").join("shim.sock");
    let daemon = spawn_daemon(&reaper, &socket).await;
    let client = connect(&socket).await;
    let req =
        CreateRequest { id: "bench-mem".into(), bundle: bundle_sleep.display().to_string(), ..Default::default() };
    let init = client.create(req).await.unwrap().pid;
    client.start(StartRequest {}).await.unwrap();
    let after_start = memory(daemon.pid);
    tokio::time::sleep(IDLE_AFTER).await;
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
        let busy = memory(daemon.pid);
        tokio::time::sleep(IDLE_AFTER).await;
        after.push((busy, memory(daemon.pid)));
    }
    client.delete(DeleteRequest { pid: init }).await.unwrap();
    drop(client);
    daemon.exit.wait().await.unwrap();
    writeln!(
        doc,
        "\n## 6. Memory of the standalone `shim` (`make daemon`: release build, linked statically against musl)\n"
    )
    .unwrap();
    writeln!(doc, "From `/proc/PID/smaps_rollup`. The daemon's code is linked in the order of `examples/code-order.txt` (the code it runs while idle first, then the rest of what a lifecycle runs; see the notes). After the first 2 s period in which it used under 5 ms of CPU it gives its code pages back; what it runs afterwards comes back on first use. Goal: < 3.0 MiB RSS with a running container and after 1000 execs. Reference: containerd's runc v2 shim (table 8).\n").unwrap();
    writeln!(doc, "| moment | RSS | PSS | threads |\n|---|---|---|---|").unwrap();
    writeln!(doc, "| just after Start | {} KiB | {} KiB | {} |", after_start.0, after_start.1, after_start.2).unwrap();
    writeln!(doc, "| {} s later (idle) | {} KiB | {} KiB | {} |", IDLE_AFTER.as_secs(), idle.0, idle.1, idle.2)
        .unwrap();
    for (i, (busy, m)) in after.iter().enumerate() {
        let n = (i + 1) * LEAK_EXECS;
        writeln!(doc, "| 0.5 s after {n} exec + wait + delete | {} KiB | {} KiB | {} |", busy.0, busy.1, busy.2)
            .unwrap();
        writeln!(doc, "| {} s later (idle) | {} KiB | {} KiB | {} |", IDLE_AFTER.as_secs(), m.0, m.1, m.2).unwrap();
    }
    writeln!(
        doc,
        "\nThe same daemon answers a `State` call over its socket in {:.1} µs (median of {DAEMON_CALLS}, p10–p90 {:.1}–{:.1} µs; client on a current-thread runtime in the bench process).",
        rtt.median, rtt.p10, rtt.p90
    )
    .unwrap();

    // 7: scale.
    eprintln!("scale: {SCALE_SHIMS} shims");
    let t = Instant::now();
    let mut daemons = Vec::new();
    for i in 0..SCALE_SHIMS {
        let socket = run.path().join(format!("scale-{i}")).join("shim.sock");
        let d = spawn_daemon(&reaper, &socket).await;
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
    tokio::time::sleep(IDLE_AFTER).await;
    let (mut rss, mut pss) = (0u64, 0u64);
    for (d, _, _) in &daemons {
        let (r, p, _) = memory(d.pid);
        rss += r;
        pss += p;
    }
    for (d, c, pid) in daemons {
        c.delete(DeleteRequest { pid }).await.unwrap();
        drop(c);
        d.exit.wait().await.unwrap();
    }
    writeln!(doc, "\n## 7. Scale: {SCALE_SHIMS} daemons, each with a running container\n").unwrap();
    writeln!(doc, "Measured {} s after the last one started.\n", IDLE_AFTER.as_secs()).unwrap();
    writeln!(doc, "| measure | value | goal |\n|---|---|---|").unwrap();
    writeln!(
        doc,
        "| time to start them all (daemon, create, start; one after another) | {:.2} s | |",
        started.as_secs_f64()
    )
    .unwrap();
    writeln!(doc, "| total RSS of the daemons | {:.1} MiB | < 250 MiB |", rss as f64 / 1024.0).unwrap();
    writeln!(
        doc,
        "| total PSS of the daemons | {:.1} MiB ({:.0} KiB each) | |",
        pss as f64 / 1024.0,
        pss as f64 / SCALE_SHIMS as f64
    )
    .unwrap();

    saved_table(
        &mut doc,
        "containerd.md",
        "8. As containerd's runtime (`containerd-shim-rshim-v1` against Debian's `containerd-shim-runc-v2`)",
        "cargo run --release -p shim-benches --example containerd_shims",
    );
    saved_table(
        &mut doc,
        "many.md",
        "9. Many containers in one process",
        "cargo run --release -p shim-benches --example many",
    );
    saved_table(
        &mut doc,
        "node.md",
        "10. A node through CRI: pods of 2 containers, the Go shim and ours interleaved",
        "NODE_PODS=10,50,110 RSHIM_BIN=<make daemon's containerd-shim-rshim-v1> cargo test -p shim-examples --test containerd node_benchmark -- --ignored --nocapture",
    );

    saved_table(
        &mut doc,
        "guest.md",
        "11. runc, then crun, as containerd's runtime in a cgroup v2 guest (emulated CPU: compare ratios, not times)",
        "make daemon; cargo build --release -p shim-benches --example containerd_shims; RSHIM_BIN=<make daemon's containerd-shim-rshim-v1> python3 tests/guest/run.py -- sh benches/scripts/guest_bench.sh 20",
    );

    let out = root().join("docs/PERFORMANCE.md");
    let existing = std::fs::read_to_string(&out).unwrap_or_default();
    // Keep hand-written notes below the generated part, and the summary
    // (what stands between the title and the generated header) above it.
    let notes = existing.split_once("\n## Notes").map(|(_, n)| format!("\n## Notes{n}")).unwrap_or_default();
    let summary = existing
        .split_once("# Performance\n")
        .and_then(|(_, rest)| rest.split_once("Generated by `make bench`"))
        .map(|(summary, _)| summary.trim())
        .filter(|summary| !summary.is_empty())
        .map(|summary| format!("# Performance\n\n{summary}\n\n"))
        .unwrap_or_else(|| "# Performance\n\n".to_string());
    let doc = doc.replacen("# Performance\n\n", &summary, 1);
    std::fs::write(&out, format!("{doc}{notes}")).unwrap();
    println!("{doc}");
    eprintln!("wrote {}", out.display());
}
