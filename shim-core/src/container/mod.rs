//! [`ContainerShim`]: the shim's logic over any [`Runtime`]: validation,
//! lifecycle state, stdio, and the ordering of events.
//!
//! One concern a file: `state` what is recorded of the container
//! and its processes; `init` the init's Create, Start and Delete; `exec`
//! extra processes; `process` operations on one process by pid; `exit` how
//! an exit becomes its EXIT event (and the OOM watch, which shares its
//! ordering); `control` Pause, Resume, Checkpoint, Update; `inspect`
//! ListPids and Stats. This file holds the shim value itself and the
//! [`Shim`] methods, which only dispatch.

mod control;
mod exec;
mod exit;
mod init;
mod inspect;
mod process;
mod state;

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use shim_proto::v1::{
    CheckpointRequest, CloseStdinRequest, CreateRequest, CreateResponse, DeleteRequest, DeleteResponse, Event,
    EventType, EventsRequest, ExecRequest, ExecResponse, KillRequest, ListPidsRequest, ListPidsResponse, PauseRequest,
    PtyRequest, ResumeRequest, StartRequest, StateRequest, StateResponse, StatsRequest, StatsResponse, UpdateRequest,
    WaitRequest, WaitResponse,
};
use tokio::sync::watch;

use self::state::{Proc, ShimState};
use crate::error::{Result, ShimError};
use crate::events::EventBus;
use crate::runtime::Runtime;
use crate::shim::{EventStream, Shim};

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
    /// The manager's namespace of the containers (containerd's), given to
    /// `binary://` loggers as `CONTAINER_NAMESPACE`.
    pub namespace: String,
}

impl Default for ShimConfig {
    fn default() -> Self {
        Self {
            io_grace: Duration::from_secs(2),
            exec_exit_grace: Duration::from_secs(5),
            event_buffer: crate::events::DEFAULT_EVENT_BUFFER,
            namespace: String::new(),
        }
    }
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
    oom_lock: tokio::sync::Mutex<Option<exit::OomWatch>>,
    /// Execs between their check of the init and their registration: the
    /// init's EXIT waits for them, so it cannot overtake their events.
    execs_starting: watch::Sender<usize>,
}

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

    async fn checkpoint(&self, req: CheckpointRequest) -> Result<()> {
        self.detached(|shim| async move { shim.checkpoint_now(req).await }).await
    }
}
