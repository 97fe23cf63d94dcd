//! [`FakeShim`]: the real shim logic over a scripted in-process runtime, for
//! unit tests that have neither root nor runc.
//!
//! [`FakeRuntime`] implements [`Runtime`] with programs that run as tokio
//! tasks instead of containers. Everything above the runtime is the code the
//! runc shim runs: request validation, lifecycle states and their error
//! codes, stdio through real FIFOs, files and ptys, and the ordering of
//! events. That is why the same conformance suite passes against both.
//!
//! # Programs
//!
//! A process's argv (the bundle's `process.args` for the init, `args` for an
//! exec) is a list of steps, run in order:
//!
//! | step | effect |
//! |---|---|
//! | `out:TEXT` | writes TEXT to stdout |
//! | `err:TEXT` | writes TEXT to stderr |
//! | `bytes:N` | writes N zero bytes to stdout |
//! | `cat` | copies stdin to stdout until end-of-file |
//! | `line` | reads one line from stdin |
//! | `winsize` | writes the terminal's `ROWS COLS` and a newline to stdout |
//! | `sleep` | runs until a signal kills it |
//! | `oom` | reports an OOM kill and dies of SIGKILL |
//! | `hog:N` | takes N bytes of the container's memory for a moment: past the limit set by `update`, reports an OOM kill and dies of SIGKILL |
//! | `exit:N` | exits with status N |
//!
//! A program that runs out of steps exits 0. An unknown step makes the
//! runtime fail as runc does for a missing binary. Signals follow the kernel's
//! rules for a pid namespace: the init ignores every signal but SIGKILL (it
//! is pid 1 and installs no handler), an exec dies of any terminating signal
//! with status 128 + signal, and the execs die with the init.
//!
//! ```
//! use shim_core::fake::FakeShim;
//! use shim_core::proto::v1::{CreateRequest, StartRequest, WaitRequest};
//! use shim_core::Shim;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let dir = tempfile::tempdir()?;
//! std::fs::write(dir.path().join("config.json"), r#"{"process":{"args":["out:hi\n","exit:3"],"cwd":"/"}}"#)?;
//! let shim = FakeShim::new();
//! let req = CreateRequest { id: "c1".into(), bundle: dir.path().display().to_string(), ..Default::default() };
//! let pid = shim.create(req).await?.pid;
//! shim.start(StartRequest {}).await?;
//! assert_eq!(shim.wait(WaitRequest { pid }).await?.exit_status, 3);
//! # Ok(())
//! # }
//! ```

use std::collections::HashMap;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use futures::FutureExt;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::unix::pipe;
use tokio::sync::{mpsc, oneshot, watch};

use crate::container::{ContainerShim, ShimConfig};
use crate::error::{Result, ShimError};
use crate::events::EventBus;
use crate::io::ProcessStdio;
use crate::oom::{OomTrigger, OomWatcher};
use crate::runtime::{CreateSpec, Launched, Runtime};
use crate::signal::Signal;

/// The shim logic over the [`FakeRuntime`].
pub type FakeShim = ContainerShim<FakeRuntime>;

impl ContainerShim<FakeRuntime> {
    /// A fake shim with default settings.
    pub fn new() -> Self {
        Self::with_runtime(FakeRuntime::new(), ShimConfig::default(), None)
    }

    /// A fake shim with the given settings and, optionally, a shared bus.
    pub fn with_config(config: ShimConfig, bus: Option<EventBus>) -> Self {
        Self::with_runtime(FakeRuntime::new(), config, bus)
    }
}

impl Default for ContainerShim<FakeRuntime> {
    fn default() -> Self {
        Self::new()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Step {
    Out(String),
    Err(String),
    Bytes(usize),
    Cat,
    Line,
    Winsize,
    Sleep,
    Oom,
    Hog(u64),
    Exit(u32),
}

fn parse(args: &[String]) -> std::result::Result<Vec<Step>, String> {
    args.iter()
        .map(|a| {
            let (verb, arg) = a.split_once(':').unwrap_or((a.as_str(), ""));
            Ok(match verb {
                "out" => Step::Out(arg.to_string()),
                "err" => Step::Err(arg.to_string()),
                "bytes" => Step::Bytes(arg.parse().map_err(|_| format!("bad byte count in {a:?}"))?),
                "cat" => Step::Cat,
                "line" => Step::Line,
                "winsize" => Step::Winsize,
                "sleep" => Step::Sleep,
                "oom" => Step::Oom,
                "hog" => Step::Hog(arg.parse().map_err(|_| format!("bad byte count in {a:?}"))?),
                "exit" => Step::Exit(arg.parse().map_err(|_| format!("bad exit status in {a:?}"))?),
                _ => return Err(format!("exec: {a:?}: executable file not found in $PATH")),
            })
        })
        .collect()
}

struct FakeProc {
    container: String,
    init: bool,
    /// Signals to the process; closed once it exited.
    signals: mpsc::UnboundedSender<Signal>,
}

struct FakeContainer {
    init_pid: u32,
    start: Option<oneshot::Sender<()>>,
    oom: OomTrigger,
    /// Set when the init exits; execs die with it.
    init_done: watch::Sender<bool>,
    /// Frozen by `pause` (a flag only: the fake's programs keep running).
    paused: bool,
    /// Bytes its programs wrote to `bytes:N`: the fake's "memory usage".
    written: Arc<AtomicU64>,
    /// The memory limit set by `update` (0: none).
    limit: Arc<AtomicU64>,
}

#[derive(Default)]
struct FakeState {
    containers: HashMap<String, FakeContainer>,
    procs: HashMap<u32, FakeProc>,
    /// Pids to hand out before counting on, as a kernel whose pids wrapped.
    reuse: Vec<u32>,
}

/// A [`Runtime`] running scripted programs as tasks; see the module docs.
pub struct FakeRuntime {
    state: Arc<Mutex<FakeState>>,
    next_pid: AtomicU32,
}

impl std::fmt::Debug for FakeRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeRuntime").finish_non_exhaustive()
    }
}

impl Default for FakeRuntime {
    fn default() -> Self {
        Self::new()
    }
}

fn lock(m: &Mutex<FakeState>) -> MutexGuard<'_, FakeState> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn fail(command: &str, message: impl Into<String>) -> ShimError {
    ShimError::Runtime { binary: "fake".into(), command: command.into(), message: message.into() }
}

/// Where a fake process writes.
enum Sink {
    Null,
    Writer(Box<dyn AsyncWrite + Unpin + Send>),
}

impl Sink {
    fn new(fd: Option<OwnedFd>) -> Self {
        let Some(fd) = fd else { return Sink::Null };
        let writer: Option<Box<dyn AsyncWrite + Unpin + Send>> = if is_fifo(&fd) {
            pipe::Sender::from_owned_fd(fd).ok().map(|s| Box::new(s) as _)
        } else {
            Some(Box::new(tokio::fs::File::from_std(std::fs::File::from(fd))))
        };
        writer.map(Sink::Writer).unwrap_or(Sink::Null)
    }

    async fn write(&mut self, data: &[u8]) {
        if let Sink::Writer(w) = self {
            if w.write_all(data).await.is_err() || w.flush().await.is_err() {
                *self = Sink::Null;
            }
        }
    }
}

fn is_fifo(fd: &OwnedFd) -> bool {
    nix::sys::stat::fstat(fd)
        .map(|st| {
            nix::sys::stat::SFlag::from_bits_truncate(st.st_mode) & nix::sys::stat::SFlag::S_IFMT
                == nix::sys::stat::SFlag::S_IFIFO
        })
        .unwrap_or(false)
}

fn source(fd: Option<OwnedFd>) -> Option<Box<dyn AsyncRead + Unpin + Send>> {
    let fd = fd?;
    if is_fifo(&fd) {
        pipe::Receiver::from_owned_fd(fd).ok().map(|r| Box::new(r) as _)
    } else {
        Some(Box::new(tokio::fs::File::from_std(std::fs::File::from(fd))))
    }
}

/// The stdio of a running fake process.
struct Stdio {
    stdin: Option<Box<dyn AsyncRead + Unpin + Send>>,
    stdout: Sink,
    stderr: Sink,
    tty: Option<OwnedFd>,
}

fn stdio_of(stdio: ProcessStdio) -> Result<(Stdio, Option<OwnedFd>)> {
    if !stdio.terminal {
        return Ok((
            Stdio {
                stdin: source(stdio.stdin),
                stdout: Sink::new(stdio.stdout),
                stderr: Sink::new(stdio.stderr),
                tty: None,
            },
            None,
        ));
    }
    let pty = nix::pty::openpty(None, None).map_err(|e| fail("create", format!("cannot open a pty: {e}")))?;
    let dup = |fd: &OwnedFd| fd.try_clone().map_err(|e| fail("create", format!("cannot dup the pty: {e}")));
    let stdin = pipe::Receiver::from_owned_fd_unchecked(dup(&pty.slave)?).ok().map(|r| Box::new(r) as _);
    let stdout = pipe::Sender::from_owned_fd_unchecked(dup(&pty.slave)?)
        .ok()
        .map(|s| Sink::Writer(Box::new(s)))
        .unwrap_or(Sink::Null);
    Ok((Stdio { stdin, stdout, stderr: Sink::Null, tty: Some(pty.slave) }, Some(pty.master)))
}

async fn run_steps(
    steps: Vec<Step>,
    io: &mut Stdio,
    oom: &OomTrigger,
    (written, limit): (&AtomicU64, &AtomicU64),
) -> u32 {
    let mut buf = vec![0u8; 64 * 1024];
    for step in steps {
        match step {
            Step::Out(text) => io.stdout.write(text.as_bytes()).await,
            Step::Err(text) => io.stderr.write(text.as_bytes()).await,
            Step::Bytes(mut n) => {
                written.fetch_add(n as u64, Ordering::Relaxed);
                let zeros = vec![0u8; 64 * 1024];
                while n > 0 {
                    let chunk = n.min(zeros.len());
                    io.stdout.write(zeros.get(..chunk).unwrap_or_default()).await;
                    n -= chunk;
                }
            }
            Step::Cat => {
                if let Some(stdin) = io.stdin.as_mut() {
                    while let Ok(n) = stdin.read(&mut buf).await {
                        if n == 0 {
                            break;
                        }
                        io.stdout.write(buf.get(..n).unwrap_or_default()).await;
                    }
                }
            }
            Step::Line => {
                if let Some(stdin) = io.stdin.as_mut() {
                    let mut one = [0u8; 1];
                    while let Ok(1) = stdin.read(&mut one).await {
                        if one[0] == b'\n' {
                            break;
                        }
                    }
                }
            }
            Step::Winsize => {
                let text = match io.tty.as_ref().and_then(|t| nix::sys::termios::tcgetattr(t.as_fd()).ok().map(|_| t)) {
                    Some(tty) => match winsize(tty) {
                        Some((rows, cols)) => format!("{rows} {cols}\n"),
                        None => "stty: standard input: Not a tty\n".into(),
                    },
                    None => "stty: standard input: Not a tty\n".into(),
                };
                io.stdout.write(text.as_bytes()).await;
            }
            Step::Sleep => std::future::pending::<()>().await,
            Step::Oom => {
                oom.fire();
                return 128 + Signal::KILL.number().unsigned_abs();
            }
            Step::Hog(n) => {
                let limit = limit.load(Ordering::Relaxed);
                if limit > 0 && written.load(Ordering::Relaxed).saturating_add(n) > limit {
                    oom.fire();
                    return 128 + Signal::KILL.number().unsigned_abs();
                }
            }
            Step::Exit(code) => return code,
        }
    }
    0
}

fn winsize(tty: &OwnedFd) -> Option<(u16, u16)> {
    use std::os::fd::AsRawFd;
    let mut ws = libc::winsize { ws_row: 0, ws_col: 0, ws_xpixel: 0, ws_ypixel: 0 };
    // SAFETY: TIOCGWINSZ writes one `winsize` to the valid pointer; the fd is a
    // live pty slave owned by this process.
    let rc = unsafe { libc::ioctl(tty.as_raw_fd(), libc::TIOCGWINSZ, &mut ws) };
    (rc == 0).then_some((ws.ws_row, ws.ws_col))
}

impl FakeRuntime {
    /// A runtime with no containers; its pids count from 1000.
    pub fn new() -> Self {
        Self::with_first_pid(1000)
    }

    /// A runtime whose pids count from `first`, so that several fakes in one
    /// test do not hand out the same pids.
    pub fn with_first_pid(first: u32) -> Self {
        Self { state: Arc::new(Mutex::new(FakeState::default())), next_pid: AtomicU32::new(first.max(1)) }
    }

    /// Makes the next process get `pid` again, as the kernel does once its
    /// pids wrapped around: the pid of a process that has exited (and been
    /// reaped) is free for the next one. For testing how a shim tells a new
    /// process from an old one of the same pid.
    pub fn reuse_pid(&self, pid: u32) {
        lock(&self.state).reuse.push(pid);
    }

    fn set_paused(&self, id: &str, paused: bool) -> Result<()> {
        let verb = if paused { "pause" } else { "resume" };
        let mut st = lock(&self.state);
        let c = st.containers.get_mut(id).ok_or_else(|| fail(verb, format!("container {id:?} does not exist")))?;
        if c.paused == paused {
            let now = if paused { "paused" } else { "not paused" };
            return Err(fail(verb, format!("container {id} is {now}")));
        }
        c.paused = paused;
        Ok(())
    }

    /// Starts a fake process; it waits for `start` (the init) before running.
    fn spawn(
        &self,
        container: &str,
        init: bool,
        steps: Vec<Step>,
        stdio: ProcessStdio,
        start: Option<oneshot::Receiver<()>>,
    ) -> Result<Launched> {
        let (mut io, console) = stdio_of(stdio)?;
        let reused = lock(&self.state).reuse.pop();
        let pid = reused.unwrap_or_else(|| self.next_pid.fetch_add(1, Ordering::Relaxed));
        let (sig_tx, mut sig_rx) = mpsc::unbounded_channel::<Signal>();
        let (exit_tx, exit_rx) = oneshot::channel::<u32>();
        let (oom, written, limit, mut init_done) = {
            let mut st = lock(&self.state);
            let c = st
                .containers
                .get(container)
                .ok_or_else(|| fail("exec", format!("container {container:?} does not exist")))?;
            let oom = c.oom.clone();
            let written = Arc::clone(&c.written);
            let limit = Arc::clone(&c.limit);
            let done = c.init_done.subscribe();
            st.procs.insert(pid, FakeProc { container: container.to_string(), init, signals: sig_tx });
            (oom, written, limit, done)
        };
        let state = Arc::clone(&self.state);
        let container = container.to_string();
        tokio::spawn(async move {
            let killed_by = |sig: Option<Signal>| sig.map(|s| 128 + s.number().unsigned_abs());
            let mut program = Box::pin(async move {
                if let Some(start) = start {
                    if start.await.is_err() {
                        // Deleted before start: it never runs.
                        return None;
                    }
                }
                Some(run_steps(steps, &mut io, &oom, (&written, &limit)).await)
            });
            let status = loop {
                tokio::select! {
                    status = &mut program => break status.unwrap_or(137),
                    sig = sig_rx.recv() => {
                        let Some(sig) = sig else { continue };
                        // pid 1 of a namespace ignores all but SIGKILL.
                        if (init && sig == Signal::KILL) || (!init && sig.terminates_by_default()) {
                            break killed_by(Some(sig)).unwrap_or(137);
                        }
                    }
                    changed = init_done.wait_for(|done| *done), if !init => {
                        if changed.is_ok() {
                            break 137;
                        }
                    }
                }
            };
            // Dropping the program closes its stdio before the exit is
            // reported, as a dying process does.
            drop(program);
            let mut st = lock(&state);
            st.procs.remove(&pid);
            if init {
                if let Some(c) = st.containers.get(&container) {
                    c.init_done.send_replace(true);
                }
            }
            drop(st);
            let _ = exit_tx.send(status);
        });
        Ok(Launched { pid, exit: exit_rx.map(|r| r.ok()).boxed(), console, oom: None })
    }
}

fn args_of(process: &serde_json::Value) -> Vec<String> {
    process
        .get("args")
        .and_then(|a| a.as_array())
        .map(|a| a.iter().filter_map(|v| v.as_str().map(String::from)).collect())
        .unwrap_or_default()
}

#[async_trait]
impl Runtime for FakeRuntime {
    async fn create(&self, spec: &CreateSpec, stdio: ProcessStdio) -> Result<Launched> {
        if !spec.checkpoint.is_empty() {
            return Err(ShimError::Unimplemented(format!(
                "the fake runtime cannot restore from a checkpoint ({})",
                spec.checkpoint
            )));
        }
        let path = std::path::Path::new(&spec.bundle).join("config.json");
        let text = std::fs::read(&path).map_err(|e| fail("create", format!("cannot read {}: {e}", path.display())))?;
        let config: serde_json::Value =
            serde_json::from_slice(&text).map_err(|e| fail("create", format!("bad config.json: {e}")))?;
        let terminal = config.pointer("/process/terminal").and_then(|v| v.as_bool()).unwrap_or(false);
        if terminal != stdio.terminal {
            return Err(fail("create", "terminal of the request and of config.json differ"));
        }
        let steps = parse(&args_of(config.get("process").unwrap_or(&serde_json::Value::Null)))
            .map_err(|m| fail("create", m))?;
        let (oom_watcher, oom) = OomWatcher::manual();
        let (start_tx, start_rx) = oneshot::channel();
        {
            let mut st = lock(&self.state);
            if st.containers.contains_key(&spec.id) {
                return Err(ShimError::AlreadyExists { id: spec.id.clone() });
            }
            let (init_done, _) = watch::channel(false);
            st.containers.insert(
                spec.id.clone(),
                FakeContainer {
                    init_pid: 0,
                    start: Some(start_tx),
                    oom,
                    init_done,
                    paused: false,
                    written: Arc::new(AtomicU64::new(0)),
                    limit: Arc::new(AtomicU64::new(0)),
                },
            );
        }
        let mut launched = match self.spawn(&spec.id, true, steps, stdio, Some(start_rx)) {
            Ok(l) => l,
            Err(e) => {
                lock(&self.state).containers.remove(&spec.id);
                return Err(e);
            }
        };
        if let Some(c) = lock(&self.state).containers.get_mut(&spec.id) {
            c.init_pid = launched.pid;
        }
        launched.oom = Some(oom_watcher);
        Ok(launched)
    }

    async fn start(&self, id: &str) -> Result<()> {
        let mut st = lock(&self.state);
        let c = st.containers.get_mut(id).ok_or_else(|| fail("start", format!("container {id:?} does not exist")))?;
        let start = c.start.take().ok_or_else(|| fail("start", "cannot start an already running container"))?;
        let _ = start.send(());
        Ok(())
    }

    async fn exec(&self, id: &str, process: &serde_json::Value, stdio: ProcessStdio) -> Result<Launched> {
        let steps = parse(&args_of(process)).map_err(|m| fail("exec", m))?;
        {
            let st = lock(&self.state);
            let c = st.containers.get(id).ok_or_else(|| fail("exec", format!("container {id:?} does not exist")))?;
            if *c.init_done.borrow() {
                return Err(fail("exec", "cannot exec in a stopped container"));
            }
        }
        self.spawn(id, false, steps, stdio, None)
    }

    async fn kill_all(&self, id: &str, signal: Signal) -> Result<()> {
        let st = lock(&self.state);
        if !st.containers.contains_key(id) {
            return Err(fail("kill", format!("container {id:?} does not exist")));
        }
        for p in st.procs.values().filter(|p| p.container == id) {
            let _ = p.signals.send(signal);
        }
        Ok(())
    }

    fn signal(&self, pid: u32, signal: Signal) -> Result<bool> {
        let st = lock(&self.state);
        Ok(st.procs.get(&pid).is_some_and(|p| p.signals.send(signal).is_ok()))
    }

    async fn delete(&self, id: &str) -> Result<()> {
        let mut st = lock(&self.state);
        let running = st.procs.values().any(|p| p.container == id && p.init);
        if running {
            return Err(fail("delete", format!("cannot delete container {id} that is not stopped")));
        }
        st.containers.remove(id);
        Ok(())
    }

    async fn pause(&self, id: &str) -> Result<()> {
        self.set_paused(id, true)
    }

    async fn resume(&self, id: &str) -> Result<()> {
        self.set_paused(id, false)
    }

    async fn pids(&self, id: &str) -> Result<Vec<u32>> {
        let st = lock(&self.state);
        if !st.containers.contains_key(id) {
            return Err(fail("ps", format!("container {id:?} does not exist")));
        }
        let mut pids: Vec<u32> = st.procs.iter().filter(|(_, p)| p.container == id).map(|(pid, _)| *pid).collect();
        pids.sort_unstable();
        Ok(pids)
    }

    /// Takes `memory.limit` as the limit `hog:N` steps run into; like runc
    /// on cgroup v1, refuses a limit below the current usage.
    async fn update(&self, id: &str, resources: &serde_json::Value) -> Result<()> {
        let st = lock(&self.state);
        let c = st.containers.get(id).ok_or_else(|| fail("update", format!("container {id:?} does not exist")))?;
        let Some(limit) = resources.pointer("/memory/limit").and_then(serde_json::Value::as_i64) else {
            return Ok(());
        };
        let usage = c.written.load(Ordering::Relaxed);
        match u64::try_from(limit) {
            Ok(limit) if limit > 0 && limit < usage => Err(ShimError::FailedPrecondition(format!(
                "memory limit {limit} is below the container's usage of {usage} bytes"
            ))),
            Ok(limit) => {
                c.limit.store(limit, Ordering::Relaxed);
                Ok(())
            }
            // -1: unlimited.
            Err(_) => {
                c.limit.store(0, Ordering::Relaxed);
                Ok(())
            }
        }
    }

    /// Scripted stats: the number of the container's live processes, as
    /// memory usage the bytes its programs wrote (`bytes:N` and the rest),
    /// the limit `update` set; reported as cgroup v1, whose rules `update`
    /// follows.
    async fn stats(&self, id: &str, _pid: u32) -> Result<shim_proto::v1::StatsResponse> {
        let st = lock(&self.state);
        let c = st.containers.get(id).ok_or_else(|| fail("stats", format!("container {id:?} does not exist")))?;
        let current = st.procs.values().filter(|p| p.container == id).count() as u64;
        let written = c.written.load(Ordering::Relaxed);
        Ok(shim_proto::v1::StatsResponse {
            cgroup_version: 1,
            memory: Some(shim_proto::v1::MemoryStats {
                usage: written,
                max_usage: written,
                limit: c.limit.load(Ordering::Relaxed),
                ..Default::default()
            }),
            cpu: Some(Default::default()),
            pids: Some(shim_proto::v1::PidsStats { current, limit: 0 }),
            blkio: Some(Default::default()),
        })
    }

    async fn cleanup(&self, spec: &CreateSpec) {
        let mut st = lock(&self.state);
        st.containers.remove(&spec.id);
        let pids: Vec<u32> = st.procs.iter().filter(|(_, p)| p.container == spec.id).map(|(pid, _)| *pid).collect();
        for pid in pids {
            if let Some(p) = st.procs.get(&pid) {
                let _ = p.signals.send(Signal::KILL);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn programs_parse() {
        assert_eq!(
            parse(&["out:a:b".into(), "exit:3".into(), "sleep".into()]),
            Ok(vec![Step::Out("a:b".into()), Step::Exit(3), Step::Sleep])
        );
        assert!(parse(&["/bin/nope".into()]).is_err());
        assert!(parse(&["exit:x".into()]).is_err());
    }
}
