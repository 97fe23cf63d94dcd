//! [`ContainerShim`]: the shim's logic over any [`Runtime`]: validation,
//! lifecycle state, stdio, and the ordering of events.

use std::collections::BTreeMap;
use std::os::fd::OwnedFd;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use futures::future::BoxFuture;
use shim_proto::v1::{
    CloseStdinRequest, CreateRequest, CreateResponse, DeleteRequest, DeleteResponse, Event, EventType, EventsRequest,
    ExecRequest, ExecResponse, KillRequest, ListPidsRequest, ListPidsResponse, PauseRequest, Process, ProcessInfo,
    PtyRequest, ResumeRequest, StartRequest, State, StateRequest, StateResponse, StatsRequest, StatsResponse,
    UpdateRequest, WaitRequest, WaitResponse,
};
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;

use crate::error::{Result, ShimError};
use crate::events::EventBus;
use crate::io::{self, PreparedIo, Pumps};
use crate::oom::OomWatcher;
use crate::runtime::{CreateSpec, Launched, Runtime};
use crate::shim::{EventStream, Shim};
use crate::signal::Signal;
use crate::spec::{self, ProcessDefaults};

/// Settings of the shim logic that do not depend on the runtime.
#[derive(Debug, Clone)]
pub struct ShimConfig {
    /// After a process exits, how long its output may make no progress before
    /// the shim stops waiting for it and publishes the EXIT anyway.
    pub io_grace: Duration,
    /// How long the init's EXIT waits for the EXITs of execs that die with it.
    pub exec_exit_grace: Duration,
    /// How many events a subscriber may fall behind before its stream ends.
    pub event_buffer: usize,
}

impl Default for ShimConfig {
    fn default() -> Self {
        Self {
            io_grace: Duration::from_secs(2),
            exec_exit_grace: Duration::from_secs(5),
            event_buffer: crate::events::DEFAULT_EVENT_BUFFER,
        }
    }
}

/// One process of the container, as the shim records it.
struct Proc {
    pid: u32,
    init: bool,
    terminal: bool,
    /// The pty master; dropped once the process has exited.
    console: Mutex<Option<Arc<OwnedFd>>>,
    stdin_closer: Mutex<Option<oneshot::Sender<()>>>,
    /// Set by the reaper's report; what `State` shows.
    reaped: Mutex<Option<u32>>,
    /// Set once the EXIT is published (output drained); what `Wait` waits for.
    exited: watch::Sender<Option<u32>>,
}

impl Proc {
    fn new(pid: u32, init: bool, pumps: &mut Pumps) -> Self {
        let (exited, _) = watch::channel(None);
        Self {
            pid,
            init,
            terminal: pumps.console().is_some(),
            console: Mutex::new(pumps.console()),
            stdin_closer: Mutex::new(pumps.take_stdin_closer()),
            reaped: Mutex::new(None),
            exited,
        }
    }

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
    init_pid: u32,
    started: bool,
    /// Frozen by Pause, until Resume (or the Delete that thaws it).
    paused: bool,
    defaults: ProcessDefaults,
    procs: BTreeMap<u32, Arc<Proc>>,
    oom_task: Option<JoinHandle<()>>,
}

#[derive(Default)]
struct ShimState {
    creating: bool,
    container: Option<Container>,
}

struct Inner<R> {
    config: ShimConfig,
    runtime: R,
    bus: EventBus,
    state: Mutex<ShimState>,
    /// Held across the runtime's start and the STARTED event, and taken by the
    /// init's exit before its EXIT and by the OOM watch before an OOM, so
    /// neither precedes STARTED.
    start_lock: tokio::sync::Mutex<()>,
    /// Serialises OOM reports with the init's EXIT.
    oom_lock: tokio::sync::Mutex<Option<Arc<OomWatcher>>>,
    /// Execs between their check of the init and their registration: the
    /// init's EXIT waits for them, so it cannot overtake their events.
    execs_starting: watch::Sender<usize>,
}

/// After an OOM event, how long further OOM notifications add up before the
/// next one is published (see `watch_oom`).
const OOM_COALESCE: Duration = Duration::from_millis(100);

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A [`Shim`] holding one container, run by the runtime `R`.
///
/// [`RuncShim`](crate::RuncShim) uses runc; [`FakeShim`](crate::fake::FakeShim)
/// runs scripted programs without root. See the crate documentation for the
/// process model and event ordering. The lock on the shim's state is never
/// held across a runtime call or an I/O wait, so a slow `Exec` does not stall
/// `State`, `Kill` or reaping. One lock is, on purpose: the start lock is held
/// across the runtime's `start` (and taken by the init's exit before its
/// EXIT and by the OOM watch before an OOM), so that neither precedes
/// STARTED; a `runc start` that hangs therefore delays the init's EXIT until
/// `RuncConfig::command_timeout`, and a second `Start` waits for the first.
/// Pause, Resume and Checkpoint hold it too, so an OOM that happens during
/// one of them (a CRIU checkpoint can take long) is reported when it ends.
pub struct ContainerShim<R> {
    inner: Arc<Inner<R>>,
}

impl<R> Clone for ContainerShim<R> {
    fn clone(&self) -> Self {
        Self { inner: Arc::clone(&self.inner) }
    }
}

impl<R: std::fmt::Debug> std::fmt::Debug for ContainerShim<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ContainerShim").field("runtime", &self.inner.runtime).finish_non_exhaustive()
    }
}

impl<R: Runtime> ContainerShim<R> {
    /// A shim over `runtime`, publishing on `bus` or on a new bus.
    pub fn with_runtime(runtime: R, config: ShimConfig, bus: Option<EventBus>) -> Self {
        let bus = bus.unwrap_or_else(|| EventBus::new(config.event_buffer));
        Self {
            inner: Arc::new(Inner {
                config,
                runtime,
                bus,
                state: Mutex::new(ShimState::default()),
                start_lock: tokio::sync::Mutex::new(()),
                oom_lock: tokio::sync::Mutex::new(None),
                execs_starting: watch::channel(0).0,
            }),
        }
    }

    /// The runtime this shim drives.
    pub fn runtime(&self) -> &R {
        &self.inner.runtime
    }

    /// The bus this shim publishes on.
    pub fn event_bus(&self) -> &EventBus {
        &self.inner.bus
    }

    fn publish(&self, id: &str, ty: EventType, pid: u32, status: u32) {
        self.inner.bus.publish(Event::new(id, ty, pid, status));
    }

    fn lookup(&self, pid: u32) -> Result<(Arc<Proc>, String)> {
        let state = lock(&self.inner.state);
        let c = state.container.as_ref().ok_or(ShimError::ProcessNotFound { pid })?;
        let p = c.procs.get(&pid).ok_or(ShimError::ProcessNotFound { pid })?;
        Ok((Arc::clone(p), c.id.clone()))
    }

    fn spawn_exit(&self, proc: Arc<Proc>, id: String, exit: BoxFuture<'static, Option<u32>>, pumps: Pumps) {
        let shim = self.clone();
        tokio::spawn(async move { shim.on_exit(proc, id, exit, pumps).await });
    }

    /// Follows one process to its EXIT event.
    async fn on_exit(&self, proc: Arc<Proc>, id: String, exit: BoxFuture<'static, Option<u32>>, mut pumps: Pumps) {
        // Whatever happens below (a panic, the task dropped with its
        // runtime), the process's waiters complete and its EXIT goes out.
        let _exit_anyway = ExitOnDrop { shim: self, proc: &proc, id: &id };
        let status = exit.await.unwrap_or(255);
        {
            // Under the state lock: an Exec checks the init and counts itself
            // in `execs_starting` in one step, either before this or after.
            let _state = lock(&self.inner.state);
            *lock(&proc.reaped) = Some(status);
        }
        pumps.drain(self.inner.config.io_grace).await;
        if proc.init {
            let deadline = io::deadline_after(self.inner.config.exec_exit_grace);
            // An exec being started now is either refused or registered.
            let mut starting = self.inner.execs_starting.subscribe();
            let _ = tokio::time::timeout_at(deadline, starting.wait_for(|n| *n == 0)).await;
            // Execs die with the init (its pid namespace ends): their EXITs
            // go first. Without a pid namespace of its own they live on, and
            // waiting for them would only delay this EXIT.
            let others: Vec<Arc<Proc>> = {
                let state = lock(&self.inner.state);
                state
                    .container
                    .as_ref()
                    .filter(|c| c.defaults.execs_die_with_init)
                    .map(|c| c.procs.values().filter(|p| !p.init).cloned().collect())
                    .unwrap_or_default()
            };
            let all_exited = futures::future::join_all(others.iter().map(|o| o.wait_exited()));
            let _ = tokio::time::timeout_at(deadline, all_exited).await;
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
        // Close the pty master now: the entry may live on until Delete.
        lock(&proc.console).take();
        drop(pumps);
    }

    /// Registers the OOM watcher, then follows it in a task. Registered
    /// first, so the init's exit finds it even if the task never ran.
    async fn watch_oom(&self, id: String, watcher: Option<OomWatcher>) -> Option<JoinHandle<()>> {
        let watcher = Arc::new(watcher?);
        *self.inner.oom_lock.lock().await = Some(Arc::clone(&watcher));
        let shim = self.clone();
        Some(tokio::spawn(async move {
            loop {
                watcher.ready().await;
                // A container can reach its memory limit while `runc start`
                // is still running: wait for Start's STARTED, so OOM never
                // precedes it (same lock order as the init's exit).
                let published = {
                    let _started = shim.inner.start_lock.lock().await;
                    let guard = shim.inner.oom_lock.lock().await;
                    if guard.is_none() {
                        return;
                    }
                    let oom = watcher.take() > 0;
                    if oom {
                        shim.publish(&id, EventType::Oom, 0, 0);
                    }
                    oom
                };
                // cgroup v1 notifies for every charge that fails while the
                // victim is dying: thousands within a second were seen,
                // enough to push every other event out of a slow
                // subscriber's ring. What comes in meanwhile adds up in the
                // watcher and is reported once, after the pause; the init's
                // exit still takes what is pending right before its EXIT.
                if published {
                    tokio::time::sleep(OOM_COALESCE).await;
                }
            }
        }))
    }

    async fn do_create(&self, req: CreateRequest) -> Result<CreateResponse> {
        let defaults = ProcessDefaults::from_bundle(&req.bundle)?;
        let (prepared, stdio) = PreparedIo::prepare(req.terminal, &req.stdin, &req.stdout, &req.stderr)?;
        let spec = CreateSpec {
            id: req.id.clone(),
            bundle: req.bundle.clone(),
            runtime: req.runtime.clone(),
            no_pivot: req.no_pivot,
            runtime_root: req.runtime_root.clone(),
            systemd_cgroup: req.systemd_cgroup,
            checkpoint: req.checkpoint.clone(),
        };
        let launched = match self.inner.runtime.create(&spec, stdio).await {
            Ok(l) => l,
            Err(e) => {
                prepared.abandon();
                // The runtime may have created the container before failing;
                // but a container that existed before is not ours to remove.
                if e.code() != crate::Code::AlreadyExists {
                    self.inner.runtime.cleanup(&spec).await;
                }
                return Err(e);
            }
        };
        let Launched { pid, exit, console, oom } = launched;
        let mut pumps = match prepared.start(console) {
            Ok(p) => p,
            Err(e) => {
                self.inner.runtime.cleanup(&spec).await;
                return Err(e);
            }
        };
        let proc = Arc::new(Proc::new(pid, true, &mut pumps));
        {
            let mut state = lock(&self.inner.state);
            state.creating = false;
            let mut procs = BTreeMap::new();
            procs.insert(pid, Arc::clone(&proc));
            state.container = Some(Container {
                id: req.id.clone(),
                init_pid: pid,
                started: false,
                paused: false,
                defaults,
                procs,
                oom_task: None,
            });
            // Published before the lock is released: no Start or Exec can
            // see the container, and publish, before CREATED is out.
            self.publish(&req.id, EventType::Created, pid, 0);
        }
        let oom_task = self.watch_oom(req.id.clone(), oom).await;
        if let Some(c) = lock(&self.inner.state).container.as_mut() {
            c.oom_task = oom_task;
        }
        self.spawn_exit(proc, req.id, exit, pumps);
        Ok(CreateResponse { pid })
    }
}

/// Publishes a process's EXIT and completes its waiters if its exit handling
/// ended without doing so (a panic in it, or its task dropped): a Wait or
/// Delete must never hang on a process that is gone. The status is the
/// reaped one, or 255 if not even that was known.
struct ExitOnDrop<'a, R: Runtime> {
    shim: &'a ContainerShim<R>,
    proc: &'a Arc<Proc>,
    id: &'a str,
}

impl<R: Runtime> Drop for ExitOnDrop<'_, R> {
    fn drop(&mut self) {
        if self.proc.exited.borrow().is_some() {
            return;
        }
        let status = self.proc.reaped().unwrap_or(255);
        {
            let _state = lock(&self.shim.inner.state);
            lock(&self.proc.reaped).get_or_insert(status);
        }
        tracing::error!(pid = self.proc.pid, status, "exit handling ended early; publishing the exit now");
        self.shim.publish(self.id, EventType::Exit, self.proc.pid, status);
        self.proc.exited.send_replace(Some(status));
        lock(&self.proc.console).take();
    }
}

/// Counts an exec out of `execs_starting` however it ends.
struct StartingGuard<'a>(&'a watch::Sender<usize>);

impl Drop for StartingGuard<'_> {
    fn drop(&mut self) {
        self.0.send_modify(|n| *n = n.saturating_sub(1));
    }
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

/// The operations themselves; the [`Shim`] methods below call them.
impl<R: Runtime> ContainerShim<R> {
    async fn create_now(&self, req: CreateRequest) -> Result<CreateResponse> {
        spec::validate_id(&req.id)?;
        spec::validate_bundle(&req.bundle)?;
        io::validate_stdio(&req.stdin, &req.stdout, &req.stderr)?;
        if req.runtime.contains('\0') {
            return Err(ShimError::invalid("runtime", "contains a NUL byte"));
        }
        io::validate_path("checkpoint", &req.checkpoint)?;
        io::validate_path("runtime_root", &req.runtime_root)?;
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

    async fn start_now(&self, _req: StartRequest) -> Result<()> {
        let _started = self.inner.start_lock.lock().await;
        let (id, pid) = {
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
            (c.id.clone(), c.init_pid)
        };
        if let Err(e) = self.inner.runtime.start(&id).await {
            if let Some(c) = lock(&self.inner.state).container.as_mut() {
                c.started = false;
            }
            return Err(e);
        }
        self.publish(&id, EventType::Started, pid, 0);
        Ok(())
    }

    async fn delete_now(&self, req: DeleteRequest) -> Result<DeleteResponse> {
        if req.pid == 0 {
            return Err(ShimError::invalid("pid", "0 is not a process"));
        }
        let (proc, id) = self.lookup(req.pid)?;
        if proc.init {
            if proc.reaped().is_none() {
                if let Err(e) = self.inner.runtime.kill_all(&id, Signal::KILL).await {
                    // It may have exited meanwhile; otherwise kill the init directly.
                    tracing::debug!(error = %e, "kill of all processes failed");
                    let _ = self.inner.runtime.signal(proc.pid, Signal::KILL);
                }
                // A frozen container takes its SIGKILL only once thawed.
                let paused = lock(&self.inner.state).container.as_ref().is_some_and(|c| c.paused);
                if paused {
                    if let Err(e) = self.inner.runtime.resume(&id).await {
                        tracing::warn!(error = %e, "cannot thaw the paused container being deleted");
                    }
                    if let Some(c) = lock(&self.inner.state).container.as_mut() {
                        c.paused = false;
                    }
                }
            }
            let status = proc.wait_exited().await;
            self.inner.runtime.delete(&id).await?;
            let removed = {
                let mut state = lock(&self.inner.state);
                match &state.container {
                    Some(c) if c.init_pid == proc.pid && c.id == id => state.container.take(),
                    _ => None,
                }
            };
            let Some(mut c) = removed else {
                return Err(ShimError::ProcessNotFound { pid: req.pid });
            };
            if let Some(t) = c.oom_task.take() {
                t.abort();
            }
            Ok(DeleteResponse { exit_status: status })
        } else {
            if proc.reaped().is_none() {
                let paused = lock(&self.inner.state).container.as_ref().is_some_and(|c| c.paused);
                if paused {
                    // Its SIGKILL would wait for the thaw, and so would this call.
                    return Err(ShimError::FailedPrecondition(format!(
                        "process {} is frozen with its paused container; resume the container or delete its init",
                        proc.pid
                    )));
                }
                self.inner.runtime.signal(proc.pid, Signal::KILL)?;
            }
            let status = proc.wait_exited().await;
            let removed = lock(&self.inner.state).container.as_mut().and_then(|c| c.procs.remove(&proc.pid));
            if removed.is_none() {
                return Err(ShimError::ProcessNotFound { pid: req.pid });
            }
            Ok(DeleteResponse { exit_status: status })
        }
    }

    async fn exec_now(&self, req: ExecRequest) -> Result<ExecResponse> {
        io::validate_stdio(&req.stdin, &req.stdout, &req.stderr)?;
        let (id, defaults) = {
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
            if c.paused {
                return Err(ShimError::FailedPrecondition(format!(
                    "container {} is paused; resume it before exec",
                    c.id
                )));
            }
            // Counted under the same lock the init's exit takes to list the
            // execs it waits for.
            self.inner.execs_starting.send_modify(|n| *n += 1);
            (c.id.clone(), c.defaults.clone())
        };
        let _starting = StartingGuard(&self.inner.execs_starting);
        let process = spec::exec_process(&req, &defaults)?;
        let (prepared, stdio) = PreparedIo::prepare(req.terminal, &req.stdin, &req.stdout, &req.stderr)?;
        let Launched { pid, exit, console, .. } = match self.inner.runtime.exec(&id, &process, stdio).await {
            Ok(launched) => launched,
            Err(e) => {
                prepared.abandon();
                return Err(e);
            }
        };
        // From here on a failure must not leave the process running untracked.
        let kill = |e: ShimError| {
            let _ = self.inner.runtime.signal(pid, Signal::KILL);
            e
        };
        let mut pumps = prepared.start(console).map_err(kill)?;
        let proc = Arc::new(Proc::new(pid, false, &mut pumps));
        {
            let mut state = lock(&self.inner.state);
            match state.container.as_mut() {
                Some(c) if c.procs.contains_key(&pid) => {
                    // The kernel gave an exited exec's pid to this one while
                    // the old entry waits for its Delete: taking the new one
                    // would make Wait, Kill and Delete of the old pid reach a
                    // live process. The old one keeps its pid until deleted.
                    let e = ShimError::FailedPrecondition(format!(
                        "the new process got pid {pid}, which still belongs to an exited process of container {id} \
                         that was not deleted; delete pid {pid} and exec again"
                    ));
                    return Err(kill(e));
                }
                Some(c) if c.id == id => {
                    c.procs.insert(pid, Arc::clone(&proc));
                    self.publish(&id, EventType::ExecAdded, pid, 0);
                }
                _ => {
                    let e = ShimError::FailedPrecondition(format!("container {id} was deleted during exec"));
                    return Err(kill(e));
                }
            }
        }
        self.spawn_exit(proc, id, exit, pumps);
        Ok(ExecResponse { pid })
    }

    async fn pty_now(&self, req: PtyRequest) -> Result<()> {
        if req.pid == 0 {
            return Err(ShimError::invalid("pid", "0 is not a process"));
        }
        let cols = u16::try_from(req.width)
            .map_err(|_| ShimError::invalid("width", format!("{} columns is more than {}", req.width, u16::MAX)))?;
        let rows = u16::try_from(req.height)
            .map_err(|_| ShimError::invalid("height", format!("{} rows is more than {}", req.height, u16::MAX)))?;
        let (proc, _) = self.lookup(req.pid)?;
        if !proc.terminal {
            return Err(ShimError::FailedPrecondition(format!("process {} has no terminal", req.pid)));
        }
        let console = lock(&proc.console).clone();
        let console = console.ok_or_else(|| {
            ShimError::FailedPrecondition(format!("process {} has exited: its terminal is closed", req.pid))
        })?;
        io::resize(&console, cols, rows)
            .map_err(|e| ShimError::io(format!("cannot resize the terminal of process {}", req.pid), e))
    }

    async fn events_now(&self, req: EventsRequest) -> Result<EventStream> {
        self.inner.bus.subscribe_since(req.since)
    }

    async fn state_now(&self, _req: StateRequest) -> Result<StateResponse> {
        let state = lock(&self.inner.state);
        let Some(c) = &state.container else {
            return Ok(StateResponse::default());
        };
        let live = if c.paused { State::Paused } else { State::Running };
        let entry = |p: &Proc| Process::new(p.pid, if p.reaped().is_some() { State::Stopped } else { live });
        let mut processes: Vec<Process> = c.procs.get(&c.init_pid).map(|p| entry(p)).into_iter().collect();
        processes.extend(c.procs.values().filter(|p| !p.init).map(|p| entry(p)));
        Ok(StateResponse { id: c.id.clone(), processes })
    }

    async fn kill_now(&self, req: KillRequest) -> Result<()> {
        if req.pid == 0 {
            return Err(ShimError::invalid("pid", "0 is not a process"));
        }
        let signal = Signal::new(req.signal)?;
        let (proc, id) = self.lookup(req.pid)?;
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
            return self.inner.runtime.kill_all(&id, signal).await;
        }
        if self.inner.runtime.signal(proc.pid, signal)? {
            Ok(())
        } else {
            Err(ShimError::FailedPrecondition(format!("process {} has already exited", req.pid)))
        }
    }

    async fn wait_now(&self, req: WaitRequest) -> Result<WaitResponse> {
        if req.pid == 0 {
            return Err(ShimError::invalid("pid", "0 is not a process"));
        }
        let (proc, _) = self.lookup(req.pid)?;
        Ok(WaitResponse { exit_status: proc.wait_exited().await })
    }

    async fn close_stdin_now(&self, req: CloseStdinRequest) -> Result<()> {
        if req.pid == 0 {
            return Err(ShimError::invalid("pid", "0 is not a process"));
        }
        let (proc, _) = self.lookup(req.pid)?;
        if let Some(tx) = lock(&proc.stdin_closer).take() {
            let _ = tx.send(());
        }
        Ok(())
    }
}

/// Pause, Resume, ListPids, Update.
impl<R: Runtime> ContainerShim<R> {
    /// The id and init pid of a started container whose init still runs,
    /// checked under the start lock (which the init's EXIT also takes, so
    /// no PAUSED or RESUMED can follow it); `paused` is the state asked for.
    fn running_container(&self, verb: &str, paused: bool) -> Result<(String, u32)> {
        let state = lock(&self.inner.state);
        let c = state.container.as_ref().ok_or_else(|| {
            ShimError::FailedPrecondition(format!("no container to {verb}: create and start it first"))
        })?;
        if !c.started {
            return Err(ShimError::FailedPrecondition(format!("container {} is not started; cannot {verb}", c.id)));
        }
        if c.procs.get(&c.init_pid).is_none_or(|p| p.reaped().is_some()) {
            return Err(ShimError::FailedPrecondition(format!(
                "init process {} of container {} has exited; cannot {verb}",
                c.init_pid, c.id
            )));
        }
        if c.paused != paused {
            let now = if c.paused { "paused" } else { "not paused" };
            return Err(ShimError::FailedPrecondition(format!("container {} is {now}; cannot {verb}", c.id)));
        }
        Ok((c.id.clone(), c.init_pid))
    }

    fn set_paused(&self, id: &str, paused: bool) {
        if let Some(c) = lock(&self.inner.state).container.as_mut().filter(|c| c.id == id) {
            c.paused = paused;
        }
    }

    async fn pause_now(&self, _req: PauseRequest) -> Result<()> {
        let _order = self.inner.start_lock.lock().await;
        let (id, pid) = self.running_container("pause", false)?;
        self.inner.runtime.pause(&id).await?;
        self.set_paused(&id, true);
        self.publish(&id, EventType::ContainerPaused, pid, 0);
        Ok(())
    }

    async fn resume_now(&self, _req: ResumeRequest) -> Result<()> {
        let _order = self.inner.start_lock.lock().await;
        let (id, pid) = self.running_container("resume", true)?;
        self.inner.runtime.resume(&id).await?;
        self.set_paused(&id, false);
        self.publish(&id, EventType::ContainerResumed, pid, 0);
        Ok(())
    }

    async fn list_pids_now(&self, _req: ListPidsRequest) -> Result<ListPidsResponse> {
        let (id, ours) = {
            let state = lock(&self.inner.state);
            let c = state
                .container
                .as_ref()
                .ok_or_else(|| ShimError::FailedPrecondition("no container to list: create it first".into()))?;
            (c.id.clone(), c.procs.keys().copied().collect::<std::collections::BTreeSet<u32>>())
        };
        let pids = self.inner.runtime.pids(&id).await?;
        let processes = pids
            .into_iter()
            .map(|pid| ProcessInfo { pid, shim_pid: if ours.contains(&pid) { pid } else { 0 } })
            .collect();
        Ok(ListPidsResponse { processes })
    }

    async fn checkpoint_now(&self, req: shim_proto::v1::CheckpointRequest) -> Result<()> {
        if req.image_path.is_empty() {
            return Err(ShimError::invalid("image_path", "must not be empty"));
        }
        io::validate_path("image_path", &req.image_path)?;
        // Under the start lock, as Pause: the init's EXIT cannot slip in.
        let _order = self.inner.start_lock.lock().await;
        let (id, _) = self.running_container("checkpoint", false)?;
        std::fs::create_dir_all(&req.image_path)
            .map_err(|e| ShimError::io(format!("cannot create image directory {}", req.image_path), e))?;
        self.inner.runtime.checkpoint(&id, &req.image_path, req.exit).await
    }

    async fn stats_now(&self, _req: StatsRequest) -> Result<StatsResponse> {
        let (id, pid) = {
            let state = lock(&self.inner.state);
            let c = state
                .container
                .as_ref()
                .ok_or_else(|| ShimError::FailedPrecondition("no container to measure: create it first".into()))?;
            if c.procs.get(&c.init_pid).is_none_or(|p| p.reaped().is_some()) {
                return Err(ShimError::FailedPrecondition(format!(
                    "init process {} of container {} has exited; its cgroup has no stats",
                    c.init_pid, c.id
                )));
            }
            (c.id.clone(), c.init_pid)
        };
        self.inner.runtime.stats(&id, pid).await
    }

    async fn update_now(&self, req: UpdateRequest) -> Result<()> {
        let resources = spec::validate_resources(&req.resources)?;
        let id = {
            let state = lock(&self.inner.state);
            let c = state
                .container
                .as_ref()
                .ok_or_else(|| ShimError::FailedPrecondition("no container to update: create it first".into()))?;
            if c.procs.get(&c.init_pid).is_none_or(|p| p.reaped().is_some()) {
                return Err(ShimError::FailedPrecondition(format!(
                    "init process {} of container {} has exited; cannot update",
                    c.init_pid, c.id
                )));
            }
            c.id.clone()
        };
        self.inner.runtime.update(&id, &resources).await
    }
}

impl<R: Runtime> ContainerShim<R> {
    /// Runs an operation that changes state in a task of its own, so that it
    /// completes even when the caller stops waiting (a client that
    /// disconnects mid-Create must not leave a container the shim does not
    /// know about). Only the reply is lost.
    async fn detached<T, F, Fut>(&self, op: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(Self) -> Fut,
        Fut: std::future::Future<Output = Result<T>> + Send + 'static,
    {
        match tokio::spawn(op(self.clone())).await {
            Ok(r) => r,
            Err(e) => Err(ShimError::Internal(format!("operation task failed: {e}"))),
        }
    }
}

#[async_trait]
impl<R: Runtime> Shim for ContainerShim<R> {
    async fn create(&self, req: CreateRequest) -> Result<CreateResponse> {
        self.detached(|shim| async move { shim.create_now(req).await }).await
    }

    async fn start(&self, req: StartRequest) -> Result<()> {
        self.detached(|shim| async move { shim.start_now(req).await }).await
    }

    async fn delete(&self, req: DeleteRequest) -> Result<DeleteResponse> {
        self.detached(|shim| async move { shim.delete_now(req).await }).await
    }

    async fn exec(&self, req: ExecRequest) -> Result<ExecResponse> {
        self.detached(|shim| async move { shim.exec_now(req).await }).await
    }

    async fn pty(&self, req: PtyRequest) -> Result<()> {
        self.pty_now(req).await
    }

    async fn events(&self, req: EventsRequest) -> Result<EventStream> {
        self.events_now(req).await
    }

    async fn state(&self, req: StateRequest) -> Result<StateResponse> {
        self.state_now(req).await
    }

    async fn kill(&self, req: KillRequest) -> Result<()> {
        self.detached(|shim| async move { shim.kill_now(req).await }).await
    }

    async fn wait(&self, req: WaitRequest) -> Result<WaitResponse> {
        self.wait_now(req).await
    }

    async fn close_stdin(&self, req: CloseStdinRequest) -> Result<()> {
        self.close_stdin_now(req).await
    }

    async fn pause(&self, req: PauseRequest) -> Result<()> {
        self.detached(|shim| async move { shim.pause_now(req).await }).await
    }

    async fn resume(&self, req: ResumeRequest) -> Result<()> {
        self.detached(|shim| async move { shim.resume_now(req).await }).await
    }

    async fn list_pids(&self, req: ListPidsRequest) -> Result<ListPidsResponse> {
        self.list_pids_now(req).await
    }

    async fn update(&self, req: UpdateRequest) -> Result<()> {
        self.detached(|shim| async move { shim.update_now(req).await }).await
    }

    async fn stats(&self, req: StatsRequest) -> Result<StatsResponse> {
        self.stats_now(req).await
    }

    async fn checkpoint(&self, req: shim_proto::v1::CheckpointRequest) -> Result<()> {
        self.detached(|shim| async move { shim.checkpoint_now(req).await }).await
    }
}
