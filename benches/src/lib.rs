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

/// Runs `runc --log LOG --log-format json ARGS` through `reaper`, with stdio
/// on `/dev/null`, exactly as the shim runs runc for a container that asks
/// for no stdio (a pipe would be inherited by the container's init, and
/// reading it to its end would wait for the container). Panics unless runc
/// succeeds; returns how long it took, spawn to reaped. The log is removed.
pub async fn raw_runc(reaper: &shim_core::Reaper, log: &Path, args: &[&std::ffi::OsStr]) -> std::time::Duration {
    use std::process::{Command, Stdio};
    let mut cmd = Command::new("runc");
    cmd.arg("--log").arg(log).args(["--log-format", "json"]).args(args);
    cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null());
    let start = std::time::Instant::now();
    let waiter = match reaper.spawn(&mut cmd) {
        Ok((_child, waiter)) => waiter,
        Err(e) => panic!("runc: {e}"),
    };
    let exit = waiter.wait().await;
    let took = start.elapsed();
    if exit.map(|e| e.status) != Some(0) {
        let log_text = std::fs::read_to_string(log).unwrap_or_default();
        panic!("runc {args:?} failed: {log_text}");
    }
    let _ = std::fs::remove_file(log);
    took
}

/// Runs a runc command that leaves a process behind (`create`, `exec
/// --detach`) with [`raw_runc`], and watches that process's exit from before
/// runc runs, so an exit before the pid file is read is still seen. Returns
/// runc's time and the watch.
pub async fn raw_launch(
    reaper: &shim_core::Reaper,
    log: &Path,
    args: &[&std::ffi::OsStr],
    pid_file: &Path,
) -> (std::time::Duration, shim_core::reaper::ExitWaiter) {
    let monitor = reaper.monitor();
    let took = raw_runc(reaper, log, args).await;
    (took, monitor.watch(read_pid(pid_file)))
}

/// Reads a runc pid file.
pub fn read_pid(path: &Path) -> u32 {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    text.trim().parse().unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Instants of the shim's own debug events around each runtime process
/// ("runtime": about to spawn it; "runtime exited": reaped), recorded while
/// switched on. Install with [`StepMarks::install`] before any shim runs.
#[derive(Clone, Default)]
pub struct StepMarks {
    on: Arc<std::sync::atomic::AtomicBool>,
    seen: Arc<std::sync::Mutex<Vec<(std::time::Instant, Mark)>>>,
}

/// What a [`StepMarks`] instant marks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mark {
    /// The shim is about to spawn a runtime process.
    Spawn,
    /// The shim has the runtime process's exit.
    Reaped,
}

impl StepMarks {
    /// Makes a recorder the process's tracing subscriber (for `shim_core`'s
    /// debug events only) and returns it.
    pub fn install() -> Self {
        use tracing_subscriber::layer::SubscriberExt;
        let marks = Self::default();
        let subscriber = tracing_subscriber::registry()
            .with(tracing_subscriber::filter::Targets::new().with_target("shim_core", tracing::Level::DEBUG))
            .with(marks.clone());
        if tracing::subscriber::set_global_default(subscriber).is_err() {
            panic!("a tracing subscriber was installed already");
        }
        marks
    }

    /// Starts or stops recording; either way, forgets what was recorded.
    pub fn record(&self, on: bool) {
        self.take();
        self.on.store(on, std::sync::atomic::Ordering::SeqCst);
    }

    /// What was recorded since the last call.
    pub fn take(&self) -> Vec<(std::time::Instant, Mark)> {
        std::mem::take(&mut *self.seen.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

struct MessageOf(Option<Mark>);

impl tracing::field::Visit for MessageOf {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            self.0 = match format!("{value:?}").as_str() {
                "runtime" => Some(Mark::Spawn),
                "runtime exited" => Some(Mark::Reaped),
                _ => None,
            };
        }
    }
}

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for StepMarks {
    fn on_event(&self, event: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        if !self.on.load(std::sync::atomic::Ordering::Relaxed) {
            return;
        }
        let now = std::time::Instant::now();
        let mut message = MessageOf(None);
        event.record(&mut message);
        if let Some(mark) = message.0 {
            self.seen.lock().unwrap_or_else(|e| e.into_inner()).push((now, mark));
        }
    }
}

/// Splits one call of the shim, from `start` to `end`, into its own work
/// before the first runtime process, the runtime processes, and its own
/// work after the last: `None` if it ran none.
pub fn split_call(
    start: std::time::Instant,
    end: std::time::Instant,
    marks: &[(std::time::Instant, Mark)],
) -> Option<[std::time::Duration; 3]> {
    let spawn = marks.iter().find(|m| m.1 == Mark::Spawn)?.0;
    let reaped = marks.iter().rev().find(|m| m.1 == Mark::Reaped)?.0;
    Some([
        spawn.saturating_duration_since(start),
        reaped.saturating_duration_since(spawn),
        end.saturating_duration_since(reaped),
    ])
}

/// The runc calls of one raw lifecycle, each from spawn to reaped, and the
/// wait for the container's init between start and delete.
#[derive(Debug, Clone, Copy)]
pub struct RawSteps {
    /// `runc create --bundle B --pid-file P ID`.
    pub create: std::time::Duration,
    /// `runc start ID`.
    pub start: std::time::Duration,
    /// From `start`'s end to the init's exit.
    pub wait: std::time::Duration,
    /// `runc delete ID`.
    pub delete: std::time::Duration,
}

/// Create, start, wait for the init's exit, delete, with the runc command
/// line: the runc commands and flags the shim runs (see [`raw_runc`]), no
/// more. Its pid file and logs go in `dir`.
pub async fn raw_lifecycle(reaper: &shim_core::Reaper, bundle: &Path, id: &str, dir: &Path) -> RawSteps {
    use std::ffi::OsStr;
    let (pid_file, log) = (dir.join(format!("{id}.pid")), dir.join(format!("{id}.log")));
    let args: [&OsStr; 6] = [
        "create".as_ref(),
        "--bundle".as_ref(),
        bundle.as_ref(),
        "--pid-file".as_ref(),
        pid_file.as_ref(),
        id.as_ref(),
    ];
    let (create, exit) = raw_launch(reaper, &log, &args, &pid_file).await;
    let start = raw_runc(reaper, &log, &["start".as_ref(), id.as_ref()]).await;
    let t = std::time::Instant::now();
    if exit.wait().await.is_none() {
        panic!("the reaper stopped before the init of {id} exited");
    }
    let wait = t.elapsed();
    let delete = raw_runc(reaper, &log, &["delete".as_ref(), id.as_ref()]).await;
    let _ = std::fs::remove_file(pid_file);
    RawSteps { create, start, wait, delete }
}
