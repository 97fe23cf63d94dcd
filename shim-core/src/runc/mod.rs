//! [`RuncShim`]: a [`Shim`] that runs one container with runc.

mod cli;
mod console;
mod io;
mod oom;
pub mod spec;

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::os::fd::OwnedFd;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use nix::sys::signal::Signal;
use shim_proto::v1::{
    CloseStdinRequest, CreateRequest, CreateResponse, DeleteRequest, DeleteResponse, Event, EventType, EventsRequest,
    ExecRequest, ExecResponse, KillRequest, Process, PtyRequest, StartRequest, State, StateRequest, StateResponse,
    WaitRequest, WaitResponse,
};
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;

use self::cli::{RuncCli, RuncStdio};
use self::console::ConsoleSocket;
use self::io::{PreparedIo, Pumps};
use self::oom::OomWatcher;
use self::spec::ProcessDefaults;
use crate::error::{Result, ShimError};
use crate::events::EventBus;
use crate::reaper::{ExitWaiter, Reaper};
use crate::shim::{EventStream, Shim};

/// How long runc may take to send a terminal's pty master after it exited.
const CONSOLE_TIMEOUT: Duration = Duration::from_secs(10);

/// Configuration of a [`RuncShim`].
#[derive(Debug, Clone)]
pub struct RuncConfig {
    /// The runtime binary (a name looked up in `PATH`, or a path). Default `runc`.
    pub runtime: String,
    /// runc's `--root`, where it keeps container state. Default: runc's own.
    pub runtime_root: Option<PathBuf>,
    /// A private directory for pid files, process specs, logs and console
    /// sockets; created with mode 0700.
    pub work_dir: PathBuf,
    /// Pass `--systemd-cgroup` to runc.
    pub systemd_cgroup: bool,
    /// After a process exits, how long its output may make no progress before
    /// the shim stops waiting for it and publishes the EXIT anyway.
    pub io_grace: Duration,
    /// How long the init's EXIT waits for the EXITs of execs that die with it.
    pub exec_exit_grace: Duration,
    /// How many events a subscriber may fall behind before its stream ends.
    pub event_buffer: usize,
}

impl RuncConfig {
    /// A configuration with defaults and the given work directory.
    pub fn new(work_dir: impl Into<PathBuf>) -> Self {
        Self {
            runtime: "runc".into(),
            runtime_root: None,
            work_dir: work_dir.into(),
            systemd_cgroup: false,
            io_grace: Duration::from_secs(2),
            exec_exit_grace: Duration::from_secs(5),
            event_buffer: crate::events::DEFAULT_EVENT_BUFFER,
        }
    }

    /// Sets the runtime binary.
    pub fn runtime(mut self, binary: impl Into<String>) -> Self {
        self.runtime = binary.into();
        self
    }

    /// Sets runc's `--root`.
    pub fn runtime_root(mut self, root: impl Into<PathBuf>) -> Self {
        self.runtime_root = Some(root.into());
        self
    }

    /// Sets `--systemd-cgroup`.
    pub fn systemd_cgroup(mut self, on: bool) -> Self {
        self.systemd_cgroup = on;
        self
    }

    /// Sets the output grace period; see [`RuncConfig::io_grace`].
    pub fn io_grace(mut self, grace: Duration) -> Self {
        self.io_grace = grace;
        self
    }
}

/// One process of the container, as the shim records it.
struct Proc {
    pid: u32,
    init: bool,
    console: Option<Arc<OwnedFd>>,
    stdin_closer: Mutex<Option<oneshot::Sender<()>>>,
    /// Set by the reaper's report; what `State` shows.
    reaped: Mutex<Option<u32>>,
    /// Set once the EXIT is published (output drained); what `Wait` waits for.
    exited: watch::Sender<Option<u32>>,
}

impl Proc {
    fn reaped(&self) -> Option<u32> {
        *lock(&self.reaped)
    }

    async fn wait_exited(&self) -> u32 {
        let mut rx = self.exited.subscribe();
        let status = match rx.wait_for(Option::is_some).await {
            Ok(v) => v.unwrap_or_default(),
            // The sender lives in `self`, so this cannot happen.
            Err(_) => 255,
        };
        status
    }
}

struct Container {
    id: String,
    runc: RuncCli,
    init_pid: u32,
    started: bool,
    defaults: ProcessDefaults,
    procs: BTreeMap<u32, Arc<Proc>>,
    oom_task: Option<JoinHandle<()>>,
}

#[derive(Default)]
struct ShimState {
    creating: bool,
    container: Option<Container>,
}

struct Inner {
    config: RuncConfig,
    reaper: Reaper,
    bus: EventBus,
    state: Mutex<ShimState>,
    /// Held across `runc start` and the STARTED event, and taken by the init's
    /// exit before its EXIT, so EXIT never precedes STARTED.
    start_lock: tokio::sync::Mutex<()>,
    /// Serialises OOM reports with the init's EXIT.
    oom_lock: tokio::sync::Mutex<Option<Arc<OomWatcher>>>,
    counter: AtomicU64,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A [`Shim`] running one container with runc (or a runc-compatible runtime).
///
/// See the crate documentation for the process model and event ordering.
/// No lock is held across a runtime call or an I/O wait, so a slow `Exec`
/// does not stall `State`, `Kill` or reaping.
#[derive(Clone)]
pub struct RuncShim {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for RuncShim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RuncShim").field("config", &self.inner.config).finish_non_exhaustive()
    }
}

/// Files of one runtime call in the work directory, removed on drop.
struct CallFiles {
    paths: Vec<PathBuf>,
}

impl Drop for CallFiles {
    fn drop(&mut self) {
        for p in &self.paths {
            let _ = std::fs::remove_file(p);
        }
    }
}

impl RuncShim {
    /// Creates the shim, its work directory (mode 0700) and its event bus.
    pub fn new(config: RuncConfig, reaper: Reaper) -> Result<Self> {
        Self::with_event_bus(config, reaper, None)
    }

    /// Like [`RuncShim::new`], publishing on the given bus (shared with
    /// other components of the embedding program), or a new one.
    pub fn with_event_bus(config: RuncConfig, reaper: Reaper, bus: Option<EventBus>) -> Result<Self> {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&config.work_dir)
            .map_err(|e| ShimError::io(format!("cannot create work directory {}", config.work_dir.display()), e))?;
        let bus = bus.unwrap_or_else(|| EventBus::new(config.event_buffer));
        Ok(Self {
            inner: Arc::new(Inner {
                config,
                reaper,
                bus,
                state: Mutex::new(ShimState::default()),
                start_lock: tokio::sync::Mutex::new(()),
                oom_lock: tokio::sync::Mutex::new(None),
                counter: AtomicU64::new(0),
            }),
        })
    }

    /// The bus this shim publishes on.
    pub fn event_bus(&self) -> &EventBus {
        &self.inner.bus
    }

    /// The shim's configuration.
    pub fn config(&self) -> &RuncConfig {
        &self.inner.config
    }

    fn files(&self, kind: &str, exts: &[&str]) -> (CallFiles, Vec<PathBuf>) {
        let n = self.inner.counter.fetch_add(1, Ordering::Relaxed);
        let paths: Vec<PathBuf> =
            exts.iter().map(|ext| self.inner.config.work_dir.join(format!("{kind}-{n}.{ext}"))).collect();
        (CallFiles { paths: paths.clone() }, paths)
    }

    fn publish(&self, id: &str, ty: EventType, pid: u32, status: u32) {
        self.inner.bus.publish(Event::new(id, ty, pid, status));
    }

    fn lookup(&self, pid: u32) -> Result<(Arc<Proc>, String, RuncCli)> {
        let state = lock(&self.inner.state);
        let c = state.container.as_ref().ok_or(ShimError::ProcessNotFound { pid })?;
        let p = c.procs.get(&pid).ok_or(ShimError::ProcessNotFound { pid })?;
        Ok((Arc::clone(p), c.id.clone(), c.runc.clone()))
    }

    /// Runs a runtime command with stdio, receiving a console if asked.
    async fn run_with_console(
        &self,
        runc: &RuncCli,
        args: Vec<OsString>,
        log: &Path,
        stdio: RuncStdio,
        console: Option<&ConsoleSocket>,
    ) -> Result<Option<OwnedFd>> {
        let run = runc.run(&args, log, stdio);
        let Some(console) = console else {
            run.await?;
            return Ok(None);
        };
        let recv = console.receive();
        tokio::pin!(run, recv);
        let mut master = None;
        let result = loop {
            tokio::select! {
                r = &mut run => break r,
                m = &mut recv, if master.is_none() => master = Some(m),
            }
        };
        result?;
        let master = match master {
            Some(m) => m,
            None => tokio::time::timeout(CONSOLE_TIMEOUT, recv)
                .await
                .map_err(|_| ShimError::Internal("the runtime sent no pty master on the console socket".into()))?,
        };
        master.map(Some).map_err(|e| ShimError::io("cannot receive the pty master", e))
    }

    fn spawn_exit(&self, proc: Arc<Proc>, id: String, waiter: ExitWaiter, pumps: Pumps) {
        let shim = self.clone();
        tokio::spawn(async move { shim.on_exit(proc, id, waiter, pumps).await });
    }

    /// Follows one process to its EXIT event.
    async fn on_exit(&self, proc: Arc<Proc>, id: String, waiter: ExitWaiter, mut pumps: Pumps) {
        let status = waiter.wait().await.map(|e| e.status).unwrap_or(255);
        *lock(&proc.reaped) = Some(status);
        pumps.drain(self.inner.config.io_grace).await;
        if proc.init {
            // Execs die with the init (its pid namespace ends): their EXITs go first.
            let others: Vec<Arc<Proc>> = {
                let state = lock(&self.inner.state);
                state
                    .container
                    .as_ref()
                    .map(|c| c.procs.values().filter(|p| !p.init).cloned().collect())
                    .unwrap_or_default()
            };
            for other in others {
                let _ = tokio::time::timeout(self.inner.config.exec_exit_grace, other.wait_exited()).await;
            }
            let _started = self.inner.start_lock.lock().await;
            let mut oom = self.inner.oom_lock.lock().await;
            if let Some(watcher) = oom.take() {
                if watcher.take() > 0 {
                    self.publish(&id, EventType::Oom, 0, 0);
                }
            }
            if let Some(task) = lock(&self.inner.state).container.as_mut().and_then(|c| c.oom_task.take()) {
                task.abort();
            }
            self.publish(&id, EventType::Exit, proc.pid, status);
            proc.exited.send_replace(Some(status));
        } else {
            self.publish(&id, EventType::Exit, proc.pid, status);
            proc.exited.send_replace(Some(status));
        }
        // Dropping the pumps closes the pty master, if any.
        drop(pumps);
    }

    fn watch_oom(&self, id: String, pid: u32) -> Option<JoinHandle<()>> {
        let watcher = Arc::new(OomWatcher::for_pid(pid)?);
        let shim = self.clone();
        Some(tokio::spawn(async move {
            *shim.inner.oom_lock.lock().await = Some(Arc::clone(&watcher));
            loop {
                watcher.ready().await;
                let guard = shim.inner.oom_lock.lock().await;
                if guard.is_none() {
                    return;
                }
                if watcher.take() > 0 {
                    shim.publish(&id, EventType::Oom, 0, 0);
                }
            }
        }))
    }

    async fn do_create(&self, req: CreateRequest) -> Result<CreateResponse> {
        let defaults = ProcessDefaults::from_bundle(&req.bundle)?;
        let runc = RuncCli {
            binary: if req.runtime.is_empty() { self.inner.config.runtime.clone() } else { req.runtime.clone() },
            root: self.inner.config.runtime_root.clone(),
            systemd_cgroup: self.inner.config.systemd_cgroup,
            reaper: self.inner.reaper.clone(),
        };
        let mut prepared = PreparedIo::prepare(req.terminal, &req.stdin, &req.stdout, &req.stderr)?;
        let (_files, paths) = self.files("init", &["pid", "log", "sock"]);
        let [pid_file, log, sock] = paths.as_slice() else {
            return Err(ShimError::Internal("work file paths".into()));
        };
        let console = if req.terminal {
            Some(
                ConsoleSocket::bind(sock)
                    .map_err(|e| ShimError::io(format!("cannot bind console socket {}", sock.display()), e))?,
            )
        } else {
            None
        };
        let mut args: Vec<OsString> =
            vec!["create".into(), "--bundle".into(), req.bundle.clone().into(), "--pid-file".into(), pid_file.into()];
        if let Some(c) = &console {
            args.push("--console-socket".into());
            args.push(c.path().into());
        }
        if req.no_pivot {
            args.push("--no-pivot".into());
        }
        args.push(req.id.clone().into());
        let stdio = RuncStdio {
            stdin: prepared.runc_stdin.take(),
            stdout: prepared.runc_stdout.take(),
            stderr: prepared.runc_stderr.take(),
            process: true,
        };
        let monitor = self.inner.reaper.monitor();
        let created = self.run_with_console(&runc, args, log, stdio, console.as_ref()).await;
        let after = async {
            let master = created?;
            let pid = read_pid(pid_file)?;
            let waiter = monitor.watch(pid);
            let pumps = prepared.start(master)?;
            Ok::<_, ShimError>((pid, waiter, pumps))
        }
        .await;
        drop(monitor);
        let (pid, waiter, mut pumps) = match after {
            Ok(v) => v,
            Err(e) => {
                // runc may have created the container before failing: remove it.
                let (_f, paths) = self.files("cleanup", &["log"]);
                if let Some(log) = paths.first() {
                    let args = vec!["delete".into(), "--force".into(), req.id.clone().into()];
                    let _ = runc.run(&args, log, RuncStdio::default()).await;
                }
                return Err(e);
            }
        };
        let (exited, _) = watch::channel(None);
        let proc = Arc::new(Proc {
            pid,
            init: true,
            console: pumps.console(),
            stdin_closer: Mutex::new(pumps.take_stdin_closer()),
            reaped: Mutex::new(None),
            exited,
        });
        {
            let mut state = lock(&self.inner.state);
            state.creating = false;
            let mut procs = BTreeMap::new();
            procs.insert(pid, Arc::clone(&proc));
            state.container = Some(Container {
                id: req.id.clone(),
                runc,
                init_pid: pid,
                started: false,
                defaults,
                procs,
                oom_task: None,
            });
        }
        self.publish(&req.id, EventType::Created, pid, 0);
        let oom_task = self.watch_oom(req.id.clone(), pid);
        if let Some(c) = lock(&self.inner.state).container.as_mut() {
            c.oom_task = oom_task;
        }
        self.spawn_exit(proc, req.id, waiter, pumps);
        Ok(CreateResponse { pid })
    }
}

fn read_pid(path: &Path) -> Result<u32> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| ShimError::io(format!("cannot read pid file {}", path.display()), e))?;
    match text.trim().parse::<u32>() {
        Ok(pid) if pid > 0 => Ok(pid),
        _ => Err(ShimError::Internal(format!("pid file {} holds {:?}, not a pid", path.display(), text.trim()))),
    }
}

fn signal_of(n: u32) -> Result<Signal> {
    i32::try_from(n)
        .ok()
        .and_then(|n| Signal::try_from(n).ok())
        .ok_or_else(|| ShimError::invalid("signal", format!("{n} is not a signal number")))
}

/// Resets `creating` if a Create fails.
struct CreatingGuard<'a> {
    state: &'a Mutex<ShimState>,
}

impl Drop for CreatingGuard<'_> {
    fn drop(&mut self) {
        lock(self.state).creating = false;
    }
}

#[async_trait]
impl Shim for RuncShim {
    async fn create(&self, req: CreateRequest) -> Result<CreateResponse> {
        spec::validate_id(&req.id)?;
        spec::validate_bundle(&req.bundle)?;
        io::validate_path("stdin", &req.stdin)?;
        io::validate_path("stdout", &req.stdout)?;
        io::validate_path("stderr", &req.stderr)?;
        if req.runtime.contains('\0') {
            return Err(ShimError::invalid("runtime", "contains a NUL byte"));
        }
        {
            let mut state = lock(&self.inner.state);
            if let Some(c) = &state.container {
                return Err(ShimError::AlreadyExists { id: c.id.clone() });
            }
            if state.creating {
                return Err(ShimError::AlreadyExists { id: req.id.clone() });
            }
            state.creating = true;
        }
        let _guard = CreatingGuard { state: &self.inner.state };
        self.do_create(req).await
    }

    async fn start(&self, _req: StartRequest) -> Result<()> {
        let _started = self.inner.start_lock.lock().await;
        let (id, runc, pid) = {
            let mut state = lock(&self.inner.state);
            let c = state
                .container
                .as_mut()
                .ok_or_else(|| ShimError::FailedPrecondition("no container to start: create it first".into()))?;
            if c.started {
                return Err(ShimError::FailedPrecondition(format!("container {} is already started", c.id)));
            }
            let init = c.procs.get(&c.init_pid);
            if init.is_none_or(|p| p.reaped().is_some()) {
                return Err(ShimError::FailedPrecondition(format!(
                    "init process {} of container {} has already exited",
                    c.init_pid, c.id
                )));
            }
            c.started = true;
            (c.id.clone(), c.runc.clone(), c.init_pid)
        };
        let (_files, paths) = self.files("start", &["log"]);
        let log = paths.first().cloned().unwrap_or_default();
        if let Err(e) = runc.run(&["start".into(), id.clone().into()], &log, RuncStdio::default()).await {
            if let Some(c) = lock(&self.inner.state).container.as_mut() {
                c.started = false;
            }
            return Err(e);
        }
        self.publish(&id, EventType::Started, pid, 0);
        Ok(())
    }

    async fn delete(&self, req: DeleteRequest) -> Result<DeleteResponse> {
        if req.pid == 0 {
            return Err(ShimError::invalid("pid", "0 is not a process"));
        }
        let (proc, id, runc) = self.lookup(req.pid)?;
        if proc.init {
            if proc.reaped().is_none() {
                let (_f, paths) = self.files("kill", &["log"]);
                let log = paths.first().cloned().unwrap_or_default();
                let args = vec!["kill".into(), "--all".into(), id.clone().into(), "KILL".into()];
                if let Err(e) = runc.run(&args, &log, RuncStdio::default()).await {
                    // It may have exited meanwhile; otherwise kill the init directly.
                    tracing::debug!(error = %e, "runc kill --all failed");
                    let _ = self.inner.reaper.signal_unreaped(proc.pid, Signal::SIGKILL);
                }
            }
            let status = proc.wait_exited().await;
            let (_f, paths) = self.files("delete", &["log"]);
            let log = paths.first().cloned().unwrap_or_default();
            if runc.run(&["delete".into(), id.clone().into()], &log, RuncStdio::default()).await.is_err() {
                runc.run(&["delete".into(), "--force".into(), id.clone().into()], &log, RuncStdio::default()).await?;
            }
            let removed = {
                let mut state = lock(&self.inner.state);
                match &state.container {
                    Some(c) if c.init_pid == proc.pid && c.id == id => state.container.take(),
                    _ => None,
                }
            };
            if let Some(mut c) = removed {
                if let Some(t) = c.oom_task.take() {
                    t.abort();
                }
            } else {
                return Err(ShimError::ProcessNotFound { pid: req.pid });
            }
            Ok(DeleteResponse { exit_status: status })
        } else {
            if proc.reaped().is_none() {
                self.inner
                    .reaper
                    .signal_unreaped(proc.pid, Signal::SIGKILL)
                    .map_err(|e| ShimError::io(format!("cannot kill process {}", proc.pid), e))?;
            }
            let status = proc.wait_exited().await;
            let removed = lock(&self.inner.state).container.as_mut().and_then(|c| c.procs.remove(&proc.pid));
            if removed.is_none() {
                return Err(ShimError::ProcessNotFound { pid: req.pid });
            }
            Ok(DeleteResponse { exit_status: status })
        }
    }

    async fn exec(&self, req: ExecRequest) -> Result<ExecResponse> {
        io::validate_path("stdin", &req.stdin)?;
        io::validate_path("stdout", &req.stdout)?;
        io::validate_path("stderr", &req.stderr)?;
        let (id, runc, defaults) = {
            let state = lock(&self.inner.state);
            let c = state
                .container
                .as_ref()
                .ok_or_else(|| ShimError::FailedPrecondition("no container to exec in: create it first".into()))?;
            if c.procs.get(&c.init_pid).is_none_or(|p| p.reaped().is_some()) {
                return Err(ShimError::FailedPrecondition(format!(
                    "init process {} of container {} has exited; cannot exec",
                    c.init_pid, c.id
                )));
            }
            (c.id.clone(), c.runc.clone(), c.defaults.clone())
        };
        let process = spec::exec_process(&req, &defaults)?;
        let mut prepared = PreparedIo::prepare(req.terminal, &req.stdin, &req.stdout, &req.stderr)?;
        let (_files, paths) = self.files("exec", &["json", "pid", "log", "sock"]);
        let [spec_file, pid_file, log, sock] = paths.as_slice() else {
            return Err(ShimError::Internal("work file paths".into()));
        };
        let bytes = serde_json::to_vec(&process).map_err(|e| ShimError::Internal(format!("process spec: {e}")))?;
        {
            use std::io::Write;
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(spec_file)
                .map_err(|e| ShimError::io(format!("cannot write {}", spec_file.display()), e))?;
            f.write_all(&bytes).map_err(|e| ShimError::io(format!("cannot write {}", spec_file.display()), e))?;
        }
        let console = if req.terminal {
            Some(
                ConsoleSocket::bind(sock)
                    .map_err(|e| ShimError::io(format!("cannot bind console socket {}", sock.display()), e))?,
            )
        } else {
            None
        };
        let mut args: Vec<OsString> = vec![
            "exec".into(),
            "--process".into(),
            spec_file.into(),
            "--detach".into(),
            "--pid-file".into(),
            pid_file.into(),
        ];
        if let Some(c) = &console {
            args.push("--console-socket".into());
            args.push(c.path().into());
        }
        args.push(id.clone().into());
        let stdio = RuncStdio {
            stdin: prepared.runc_stdin.take(),
            stdout: prepared.runc_stdout.take(),
            stderr: prepared.runc_stderr.take(),
            process: true,
        };
        // Taken before runc runs: an exec that exits before its pid file is
        // read is still caught.
        let monitor = self.inner.reaper.monitor();
        let master = self.run_with_console(&runc, args, log, stdio, console.as_ref()).await?;
        let pid = read_pid(pid_file)?;
        let waiter = monitor.watch(pid);
        drop(monitor);
        let mut pumps = prepared.start(master)?;
        let (exited, _) = watch::channel(None);
        let proc = Arc::new(Proc {
            pid,
            init: false,
            console: pumps.console(),
            stdin_closer: Mutex::new(pumps.take_stdin_closer()),
            reaped: Mutex::new(None),
            exited,
        });
        {
            let mut state = lock(&self.inner.state);
            match state.container.as_mut() {
                Some(c) if c.id == id => {
                    c.procs.insert(pid, Arc::clone(&proc));
                }
                _ => return Err(ShimError::FailedPrecondition(format!("container {id} was deleted during exec"))),
            }
        }
        self.publish(&id, EventType::ExecAdded, pid, 0);
        self.spawn_exit(proc, id, waiter, pumps);
        Ok(ExecResponse { pid })
    }

    async fn pty(&self, req: PtyRequest) -> Result<()> {
        if req.pid == 0 {
            return Err(ShimError::invalid("pid", "0 is not a process"));
        }
        let cols = u16::try_from(req.width)
            .map_err(|_| ShimError::invalid("width", format!("{} columns is more than {}", req.width, u16::MAX)))?;
        let rows = u16::try_from(req.height)
            .map_err(|_| ShimError::invalid("height", format!("{} rows is more than {}", req.height, u16::MAX)))?;
        let (proc, _, _) = self.lookup(req.pid)?;
        let console = proc
            .console
            .as_ref()
            .ok_or_else(|| ShimError::FailedPrecondition(format!("process {} has no terminal", req.pid)))?;
        io::resize(console, cols, rows)
            .map_err(|e| ShimError::io(format!("cannot resize the terminal of process {}", req.pid), e))
    }

    async fn events(&self, _req: EventsRequest) -> Result<EventStream> {
        Ok(self.inner.bus.subscribe())
    }

    async fn state(&self, _req: StateRequest) -> Result<StateResponse> {
        let state = lock(&self.inner.state);
        let Some(c) = &state.container else {
            return Ok(StateResponse::default());
        };
        let entry = |p: &Proc| Process::new(p.pid, if p.reaped().is_some() { State::Stopped } else { State::Running });
        let mut processes: Vec<Process> = c.procs.get(&c.init_pid).map(|p| entry(p)).into_iter().collect();
        processes.extend(c.procs.values().filter(|p| !p.init).map(|p| entry(p)));
        Ok(StateResponse { id: c.id.clone(), processes })
    }

    async fn kill(&self, req: KillRequest) -> Result<()> {
        if req.pid == 0 {
            return Err(ShimError::invalid("pid", "0 is not a process"));
        }
        let signal = signal_of(req.signal)?;
        let (proc, id, runc) = self.lookup(req.pid)?;
        if req.all && !proc.init {
            return Err(ShimError::invalid(
                "all",
                format!("applies to the init process only, not to exec {}", req.pid),
            ));
        }
        if proc.reaped().is_some() {
            return Err(ShimError::FailedPrecondition(format!("process {} has already exited", req.pid)));
        }
        if req.all {
            let (_f, paths) = self.files("kill", &["log"]);
            let log = paths.first().cloned().unwrap_or_default();
            let args = vec!["kill".into(), "--all".into(), id.into(), req.signal.to_string().into()];
            return runc.run(&args, &log, RuncStdio::default()).await;
        }
        match self.inner.reaper.signal_unreaped(proc.pid, signal) {
            Ok(true) => Ok(()),
            Ok(false) => Err(ShimError::FailedPrecondition(format!("process {} has already exited", req.pid))),
            Err(e) => Err(ShimError::io(format!("cannot signal process {}", req.pid), e)),
        }
    }

    async fn wait(&self, req: WaitRequest) -> Result<WaitResponse> {
        if req.pid == 0 {
            return Err(ShimError::invalid("pid", "0 is not a process"));
        }
        let (proc, _, _) = self.lookup(req.pid)?;
        Ok(WaitResponse { exit_status: proc.wait_exited().await })
    }

    async fn close_stdin(&self, req: CloseStdinRequest) -> Result<()> {
        if req.pid == 0 {
            return Err(ShimError::invalid("pid", "0 is not a process"));
        }
        let (proc, _, _) = self.lookup(req.pid)?;
        if let Some(tx) = lock(&proc.stdin_closer).take() {
            let _ = tx.send(());
        }
        Ok(())
    }
}
