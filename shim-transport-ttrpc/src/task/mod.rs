//! containerd's `containerd.task.v2.Task` service over one [`Shim`]: the
//! wire is translated here, and only here, into the core's requests.
//!
//! containerd names processes by exec id (empty for the init); the core by
//! pid. An exec is registered by `Exec` and only run by `Start`, as
//! containerd expects (the core's Exec starts at once), so its pid exists
//! from `Start` on; a `Wait` that comes earlier waits for it.
//!
//! Events: the core's events are read in order by one task and forwarded
//! as containerd's (`/tasks/create`, `/tasks/start`, `/tasks/exit`, ...),
//! so an exit never overtakes the start it follows. `/tasks/exec-added` is
//! published by `Exec` (the core knows nothing before `Start`), and
//! `/tasks/delete` by `Delete` once the init's exit was forwarded.
//!
//! One concern a file: `container` what is recorded of the container and
//! its processes; `lifecycle` Create, Start, Delete; `process` the calls on
//! one process (Exec, State, Kill, Wait); `control` the calls that pass
//! through (Pids, Pause, Stats, ...); `translate` the events; `spec` the
//! exec's process JSON. This file holds the service and its dispatch.

mod container;
mod control;
mod lifecycle;
mod process;
mod spec;
mod translate;

use std::path::Path;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use prost::Message;
use prost_types::{Any, Timestamp};
use shim_core::Shim;
use tokio::sync::{watch, Notify};

use self::container::State;
pub use self::spec::exec_request;
use crate::proto::ttrpc::Status;
use crate::server::{Request, Service};
use crate::status::{status, Code};

/// The ttrpc service name of the task API.
pub const SERVICE: &str = "containerd.task.v2.Task";

/// The ttrpc service name of task API v3 (containerd 2.3 and later, after
/// the bootstrap, see [`bootstrap`](crate::bootstrap)). Its methods and
/// messages are v2's on the wire, so one service answers both names.
pub const SERVICE_V3: &str = "containerd.task.v3.Task";

/// How long `Delete` waits for the init's exit to be forwarded before it
/// publishes `/tasks/delete` anyway.
const EXIT_FORWARD_WAIT: Duration = Duration::from_secs(5);

/// Where translated events go: containerd's event service (see
/// [`Forwarder`](crate::events::Forwarder)) or a test's recorder.
pub trait EventSink: Send + Sync + 'static {
    /// Queues one event; never blocks.
    fn publish(&self, topic: &'static str, event: Any);
}

/// An `Any` with the bare type URL containerd expects (`containerd.events.TaskExit`).
pub fn any<M: Message>(type_name: &str, m: &M) -> Any {
    Any { type_url: type_name.to_string(), value: m.encode_to_vec() }
}

fn now() -> Timestamp {
    Timestamp::from(SystemTime::now())
}

/// Makes the core [`Shim`] of each container the service creates: one per
/// container, as the core holds one container per shim; they may share a
/// reaper and a work directory.
pub trait ShimFactory: Send + Sync + 'static {
    /// The shim for the new container `id`, whose bundle is `bundle`.
    fn shim_for(&self, id: &str, bundle: &Path) -> shim_core::Result<Arc<dyn Shim>>;
}

impl<F> ShimFactory for F
where
    F: Fn(&str, &Path) -> shim_core::Result<Arc<dyn Shim>> + Send + Sync + 'static,
{
    fn shim_for(&self, id: &str, bundle: &Path) -> shim_core::Result<Arc<dyn Shim>> {
        self(id, bundle)
    }
}

/// The task service: the containers containerd created through this shim
/// (one, or every container of a pod when containerd groups them, see
/// [`TaskService::with_factory`]) and their execs, each container over a
/// core [`Shim`] of its own.
pub struct TaskService {
    /// This service, for the tasks it spawns.
    me: Weak<TaskService>,
    shims: Box<dyn ShimFactory>,
    sink: Arc<dyn EventSink>,
    state: Mutex<State>,
    /// Woken whenever a process gets its pid or its exit.
    changed: Notify,
    shutdown: watch::Sender<bool>,
    /// containerd's namespace of the container, where known: runc's `Root`
    /// option is a base directory, the state going in `<Root>/<namespace>`.
    namespace: Option<String>,
}

impl TaskService {
    /// A service over `shim`, forwarding events to `sink`: one container at
    /// a time, as the core shim holds one (a second Create while it holds
    /// one is refused with `AlreadyExists`).
    pub async fn new(shim: Arc<dyn Shim>, sink: Arc<dyn EventSink>) -> shim_core::Result<Arc<Self>> {
        Ok(Self::build(Box::new(move |_: &str, _: &Path| Ok(Arc::clone(&shim))), sink, None))
    }

    /// [`TaskService::new`] for a container of containerd's `namespace`: a
    /// runc `Root` option then puts the runtime's state in
    /// `<Root>/<namespace>`, as containerd's runc shim does (see
    /// [`options`](crate::options)).
    pub async fn in_namespace(
        shim: Arc<dyn Shim>,
        sink: Arc<dyn EventSink>,
        namespace: &str,
    ) -> shim_core::Result<Arc<Self>> {
        Ok(Self::build(Box::new(move |_: &str, _: &Path| Ok(Arc::clone(&shim))), sink, Some(namespace.to_string())))
    }

    /// A service for any number of containers of containerd's `namespace`
    /// (a pod, when containerd groups its containers in one shim), each
    /// over the shim `shims` makes for it at its Create.
    pub fn with_factory(shims: impl ShimFactory, sink: Arc<dyn EventSink>, namespace: Option<&str>) -> Arc<Self> {
        Self::build(Box::new(shims), sink, namespace.map(str::to_string))
    }

    fn build(shims: Box<dyn ShimFactory>, sink: Arc<dyn EventSink>, namespace: Option<String>) -> Arc<Self> {
        Arc::new_cyclic(|me| Self {
            me: me.clone(),
            shims,
            sink,
            state: Mutex::new(State::default()),
            changed: Notify::new(),
            shutdown: watch::channel(false).0,
            namespace,
        })
    }

    /// Resolves once `Shutdown` was called with no container left (or `now`).
    pub async fn shutdown_requested(&self) {
        let mut rx = self.shutdown.subscribe();
        let _ = rx.wait_for(|s| *s).await;
    }

    /// The init's pid of container `id`, if it was created.
    pub fn task_pid(&self, id: &str) -> Option<u32> {
        self.lock().containers.get(id).and_then(|c| c.init.pid)
    }

    /// How many containers the service holds.
    pub fn containers(&self) -> usize {
        self.lock().containers.len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    async fn handle_call(&self, req: Request) -> Result<Vec<u8>, Status> {
        fn decode<M: Message + Default>(b: &[u8]) -> Result<M, Status> {
            M::decode(b).map_err(|e| status(Code::InvalidArgument, format!("cannot decode the request: {e}")))
        }
        let empty = Vec::new;
        let p = req.payload.as_slice();
        Ok(match req.method.as_str() {
            "Create" => self.create(decode(p)?).await?.encode_to_vec(),
            "Start" => self.start(decode(p)?).await?.encode_to_vec(),
            "Delete" => self.delete(decode(p)?).await?.encode_to_vec(),
            "Exec" => self.exec(decode(p)?).await.map(|()| empty())?,
            "State" => self.state(decode(p)?).await?.encode_to_vec(),
            "Kill" => self.kill(decode(p)?).await.map(|()| empty())?,
            "Wait" => self.wait(decode(p)?).await?.encode_to_vec(),
            "Pids" => self.pids(decode(p)?).await?.encode_to_vec(),
            "Pause" => self.pause(decode(p)?).await.map(|()| empty())?,
            "Resume" => self.resume(decode(p)?).await.map(|()| empty())?,
            "Checkpoint" => self.checkpoint(decode(p)?).await.map(|()| empty())?,
            "ResizePty" => self.resize_pty(decode(p)?).await.map(|()| empty())?,
            "CloseIO" => self.close_io(decode(p)?).await.map(|()| empty())?,
            "Update" => self.update(decode(p)?).await.map(|()| empty())?,
            "Stats" => self.stats(decode(p)?).await?.encode_to_vec(),
            "Connect" => self.connect(decode(p)?).encode_to_vec(),
            "Shutdown" => {
                self.shutdown(decode(p)?);
                empty()
            }
            other => {
                let service = &req.service;
                return Err(status(Code::Unimplemented, format!("{service}/{other} is not a method of this shim")));
            }
        })
    }
}

#[async_trait]
impl Service for TaskService {
    async fn handle(&self, req: Request) -> Result<Vec<u8>, Status> {
        if req.service != SERVICE && req.service != SERVICE_V3 {
            return Err(status(Code::Unimplemented, format!("service {:?} is not served here", req.service)));
        }
        self.handle_call(req).await
    }
}
