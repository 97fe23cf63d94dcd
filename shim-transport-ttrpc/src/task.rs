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

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use prost::Message;
use prost_types::{Any, Timestamp};
use shim_core::proto::v1 as core;
use shim_core::{Shim, StreamExt};
use tokio::sync::{watch, Notify};

use crate::options::RuncOptions;
use crate::proto::containerd::events as ev;
use crate::proto::containerd::task::v2 as api;
use crate::proto::containerd::v1::types::{ProcessInfo, Status as TaskStatus};
use crate::proto::ttrpc::Status;
use crate::rootfs;
use crate::server::{Request, Service};
use crate::status::{from_shim, status, Code};

/// The ttrpc service name of the task API.
pub const SERVICE: &str = "containerd.task.v2.Task";

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

/// What containerd told us about a process, and what happened to it.
#[derive(Debug, Clone, Default)]
struct Proc {
    stdin: String,
    stdout: String,
    stderr: String,
    terminal: bool,
    /// The exec's request, until `Start` runs it.
    exec: Option<core::ExecRequest>,
    /// Set by `Start` (exec) or `Create` (init).
    pid: Option<u32>,
    started: bool,
    /// Status and time, once the core reported the exit.
    exit: Option<(u32, Timestamp)>,
}

struct Container {
    id: String,
    bundle: String,
    rootfs: Vec<crate::proto::containerd::types::Mount>,
    mounted: bool,
    checkpoint: String,
    init: Proc,
    execs: HashMap<String, Proc>,
}

#[derive(Default)]
struct State {
    container: Option<Container>,
    /// exec id (or "" for the init) of each pid the core knows.
    by_pid: HashMap<u32, String>,
}

/// The task service: one container (containerd starts one shim per
/// container) and its execs, over a core [`Shim`].
pub struct TaskService {
    shim: Arc<dyn Shim>,
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
    /// A service over `shim`, forwarding events to `sink`. Subscribes to the
    /// core's events before returning, so none is missed.
    pub async fn new(shim: Arc<dyn Shim>, sink: Arc<dyn EventSink>) -> shim_core::Result<Arc<Self>> {
        Self::build(shim, sink, None).await
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
        Self::build(shim, sink, Some(namespace.to_string())).await
    }

    async fn build(
        shim: Arc<dyn Shim>,
        sink: Arc<dyn EventSink>,
        namespace: Option<String>,
    ) -> shim_core::Result<Arc<Self>> {
        let events = shim.events(core::EventsRequest::default()).await?;
        let service = Arc::new(Self {
            shim,
            sink,
            state: Mutex::new(State::default()),
            changed: Notify::new(),
            shutdown: watch::channel(false).0,
            namespace,
        });
        tokio::spawn(Arc::clone(&service).forward_events(events));
        Ok(service)
    }

    /// Resolves once `Shutdown` was called with no container left (or `now`).
    pub async fn shutdown_requested(&self) {
        let mut rx = self.shutdown.subscribe();
        let _ = rx.wait_for(|s| *s).await;
    }

    /// The init's pid, if a container was created.
    pub fn task_pid(&self) -> Option<u32> {
        self.lock().container.as_ref().and_then(|c| c.init.pid)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    async fn forward_events(self: Arc<Self>, mut events: shim_core::EventStream) {
        let mut last: Option<u64> = None;
        loop {
            match events.next().await {
                Some(Ok(event)) => {
                    last = Some(event.seq);
                    self.translate(event).await;
                }
                Some(Err(e)) => {
                    // Fell behind the core's ring: resume after the last
                    // event handled, or, if those are gone, go on live.
                    tracing::error!(error = %e, "the core's event stream failed; resubscribing");
                    let resumed = self.shim.events(core::EventsRequest { since: last }).await;
                    events = match resumed {
                        Ok(s) => s,
                        Err(e) => {
                            tracing::error!(error = %e, "events were lost; forwarding goes on from now");
                            match self.shim.events(core::EventsRequest::default()).await {
                                Ok(s) => s,
                                Err(e) => {
                                    tracing::error!(error = %e, "cannot subscribe to the core's events; they stop here");
                                    return;
                                }
                            }
                        }
                    };
                }
                None => return,
            }
        }
    }

    /// The exec id of `pid`, waiting (bounded) for `Start` to record it: the
    /// core publishes an exec's first event before its Exec call returns.
    async fn exec_id_of(&self, pid: u32) -> Option<String> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let notified = self.changed.notified();
            if let Some(id) = self.lock().by_pid.get(&pid) {
                return Some(id.clone());
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return None;
            }
        }
    }

    async fn translate(&self, e: core::Event) {
        let kind = e.event_type().unwrap_or(core::EventType::Exit);
        let (cid, bundle, rootfs, checkpoint, io) = {
            let st = self.lock();
            let Some(c) = st.container.as_ref() else { return };
            let io = ev::TaskIo {
                stdin: c.init.stdin.clone(),
                stdout: c.init.stdout.clone(),
                stderr: c.init.stderr.clone(),
                terminal: c.init.terminal,
            };
            (c.id.clone(), c.bundle.clone(), c.rootfs.clone(), c.checkpoint.clone(), io)
        };
        match kind {
            core::EventType::Created => {
                let m = ev::TaskCreate { container_id: cid, bundle, rootfs, io: Some(io), checkpoint, pid: e.pid };
                self.sink.publish("/tasks/create", any("containerd.events.TaskCreate", &m));
            }
            core::EventType::Started => {
                let m = ev::TaskStart { container_id: cid, pid: e.pid };
                self.sink.publish("/tasks/start", any("containerd.events.TaskStart", &m));
            }
            core::EventType::ExecAdded => {
                let Some(exec_id) = self.exec_id_of(e.pid).await else {
                    tracing::warn!(pid = e.pid, "an exec's pid was never recorded; its start event is not forwarded");
                    return;
                };
                let m = ev::TaskExecStarted { container_id: cid, exec_id, pid: e.pid };
                self.sink.publish("/tasks/exec-started", any("containerd.events.TaskExecStarted", &m));
            }
            core::EventType::Exit => {
                let at = now();
                let Some(exec_id) = self.exec_id_of(e.pid).await else {
                    // Never the init's (its pid is recorded by Create): an
                    // exit nobody can name is logged, not misattributed.
                    tracing::warn!(
                        pid = e.pid,
                        status = e.exit_status,
                        "exit of a process with no exec id; not forwarded"
                    );
                    return;
                };
                // Queued before the exit is recorded: Delete and Wait see the
                // record, so what they publish comes after this.
                let id = if exec_id.is_empty() { cid.clone() } else { exec_id.clone() };
                let m =
                    ev::TaskExit { container_id: cid, id, pid: e.pid, exit_status: e.exit_status, exited_at: Some(at) };
                self.sink.publish("/tasks/exit", any("containerd.events.TaskExit", &m));
                self.set(&exec_id, |p| {
                    p.exit.get_or_insert((e.exit_status, at));
                });
                self.changed.notify_waiters();
            }
            core::EventType::Oom => {
                self.sink.publish("/tasks/oom", any("containerd.events.TaskOOM", &ev::TaskOom { container_id: cid }));
            }
            core::EventType::ContainerPaused => {
                self.sink.publish(
                    "/tasks/paused",
                    any("containerd.events.TaskPaused", &ev::TaskPaused { container_id: cid }),
                );
            }
            core::EventType::ContainerResumed => {
                let m = ev::TaskResumed { container_id: cid };
                self.sink.publish("/tasks/resumed", any("containerd.events.TaskResumed", &m));
            }
        }
    }

    /// The process `exec_id` of container `id`, as a copy.
    fn process(&self, id: &str, exec_id: &str) -> Result<Proc, Status> {
        let st = self.lock();
        let c = st
            .container
            .as_ref()
            .filter(|c| c.id == id)
            .ok_or_else(|| status(Code::NotFound, format!("container {id:?} not found in this shim")))?;
        if exec_id.is_empty() {
            return Ok(c.init.clone());
        }
        c.execs
            .get(exec_id)
            .cloned()
            .ok_or_else(|| status(Code::NotFound, format!("exec {exec_id:?} not found in container {id:?}")))
    }

    /// Waits until the process has a pid (an exec: until it was started).
    async fn pid_of(&self, id: &str, exec_id: &str) -> Result<u32, Status> {
        loop {
            let notified = self.changed.notified();
            if let Some(pid) = self.process(id, exec_id)?.pid {
                return Ok(pid);
            }
            notified.await;
        }
    }

    /// The exit of a process, after the core reported it (bounded wait for
    /// the event task to record the time).
    async fn exit_of(&self, id: &str, exec_id: &str, status: u32) -> Timestamp {
        let deadline = tokio::time::Instant::now() + EXIT_FORWARD_WAIT;
        loop {
            let notified = self.changed.notified();
            match self.process(id, exec_id) {
                Ok(Proc { exit: Some((_, at)), .. }) => return at,
                Ok(_) => {}
                Err(_) => return now(),
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                tracing::warn!(id, exec_id, status, "exit not seen on the event stream in time");
                return now();
            }
        }
    }

    async fn create(&self, req: api::CreateTaskRequest) -> Result<api::CreateTaskResponse, Status> {
        let init = Proc {
            stdin: req.stdin.clone(),
            stdout: req.stdout.clone(),
            stderr: req.stderr.clone(),
            terminal: req.terminal,
            ..Default::default()
        };
        {
            // Checked and reserved under one lock: a second Create waits
            // for nothing and fails. Recorded before the core's Create,
            // whose event the event task translates with these fields.
            let mut st = self.lock();
            if let Some(c) = st.container.as_ref() {
                return Err(status(Code::AlreadyExists, format!("this shim already holds container {:?}", c.id)));
            }
            st.container = Some(Container {
                id: req.id.clone(),
                bundle: req.bundle.clone(),
                rootfs: req.rootfs.clone(),
                mounted: false,
                checkpoint: req.checkpoint.clone(),
                init,
                execs: HashMap::new(),
            });
        }
        let (options, mounted) = match Self::prepare_bundle(&req) {
            Ok(prepared) => prepared,
            Err(e) => {
                self.release_reservation();
                return Err(e);
            }
        };
        if let Some(c) = self.lock().container.as_mut() {
            c.mounted = mounted;
        }
        let runtime_root = options.runtime_root(self.namespace.as_deref());
        let core_req = core::CreateRequest {
            id: req.id.clone(),
            bundle: req.bundle.clone(),
            runtime: options.binary_name,
            runtime_root: runtime_root.map(|r| r.display().to_string()).unwrap_or_default(),
            systemd_cgroup: options.systemd_cgroup,
            no_pivot: options.no_pivot_root,
            terminal: req.terminal,
            stdin: req.stdin,
            stdout: req.stdout,
            stderr: req.stderr,
            checkpoint: req.checkpoint,
        };
        match self.shim.create(core_req).await {
            Ok(r) => {
                {
                    let mut st = self.lock();
                    st.by_pid.insert(r.pid, String::new());
                    if let Some(c) = st.container.as_mut() {
                        c.init.pid = Some(r.pid);
                    }
                }
                self.changed.notify_waiters();
                Ok(api::CreateTaskResponse { pid: r.pid })
            }
            Err(e) => {
                if mounted {
                    rootfs::unmount(std::path::Path::new(&req.bundle));
                }
                self.release_reservation();
                Err(from_shim(&e))
            }
        }
    }

    /// What Create does in the bundle before the core sees the request: the
    /// runc options read and kept there (for a `delete` after this shim is
    /// gone), then the rootfs mounted. Returns the options and whether
    /// something was mounted.
    fn prepare_bundle(req: &api::CreateTaskRequest) -> Result<(RuncOptions, bool), Status> {
        let bundle = std::path::Path::new(&req.bundle);
        // Written to and mounted on before the core validates the request: a
        // relative bundle would land in the shim's working directory.
        if !bundle.is_absolute() {
            return Err(status(Code::InvalidArgument, format!("bundle {:?} is not an absolute path", req.bundle)));
        }
        let options = req.options.as_ref().map(RuncOptions::from_any).transpose().and_then(|o| {
            let o = o.unwrap_or_default();
            o.save(bundle).map(|()| o)
        });
        let options = options.map_err(|e| {
            // Options that cannot be used are the caller's; a bundle the shim
            // cannot write to is the host's.
            let code = match e {
                crate::options::OptionsError::File { .. } => Code::Internal,
                _ => Code::InvalidArgument,
            };
            status(code, e.to_string())
        })?;
        let mounted = rootfs::mount_all(&req.rootfs, bundle).map_err(|e| status(Code::Internal, e.to_string()))?;
        Ok((options, mounted))
    }

    /// Gives up the container Create reserved; a Wait that came during
    /// Create learns there is nothing.
    fn release_reservation(&self) {
        self.lock().container = None;
        self.changed.notify_waiters();
    }

    async fn start(&self, req: api::StartRequest) -> Result<api::StartResponse, Status> {
        let p = self.process(&req.id, &req.exec_id)?;
        if req.exec_id.is_empty() {
            self.shim.start(core::StartRequest {}).await.map_err(|e| from_shim(&e))?;
            self.set(&req.exec_id, |p| p.started = true);
            return Ok(api::StartResponse { pid: p.pid.unwrap_or(0) });
        }
        let mut taken = None;
        self.set(&req.exec_id, |p| taken = p.exec.take());
        let Some(exec) = taken else {
            return Err(status(Code::FailedPrecondition, format!("exec {:?} was started already", req.exec_id)));
        };
        match self.shim.exec(exec).await {
            Ok(r) => {
                self.lock().by_pid.insert(r.pid, req.exec_id.clone());
                self.set(&req.exec_id, |p| {
                    p.pid = Some(r.pid);
                    p.started = true;
                });
                self.changed.notify_waiters();
                Ok(api::StartResponse { pid: r.pid })
            }
            Err(e) => {
                // Never started: it exits with status 255 as containerd's
                // shim reports a process that failed to start, so a Wait
                // that came first returns.
                self.set(&req.exec_id, |p| {
                    p.pid = Some(0);
                    p.exit = Some((255, now()));
                });
                self.changed.notify_waiters();
                Err(from_shim(&e))
            }
        }
    }

    fn set(&self, exec_id: &str, f: impl FnOnce(&mut Proc)) {
        let mut st = self.lock();
        if let Some(c) = st.container.as_mut() {
            let p = if exec_id.is_empty() { Some(&mut c.init) } else { c.execs.get_mut(exec_id) };
            if let Some(p) = p {
                f(p);
            }
        }
    }

    async fn delete(&self, req: api::DeleteRequest) -> Result<api::DeleteResponse, Status> {
        let p = self.process(&req.id, &req.exec_id)?;
        let pid = p.pid.unwrap_or(0);
        if !req.exec_id.is_empty() {
            // Started: the core holds it. Registered only, or failed to
            // start: nothing ran, there is only our record.
            let (exit_status, exited_at) = if p.started && pid > 0 {
                let s = self.shim.delete(core::DeleteRequest { pid }).await.map_err(|e| from_shim(&e))?.exit_status;
                (s, Some(self.exit_of(&req.id, &req.exec_id, s).await))
            } else {
                p.exit.map(|(s, at)| (s, Some(at))).unwrap_or((0, None))
            };
            {
                let mut st = self.lock();
                st.by_pid.remove(&pid);
                if let Some(c) = st.container.as_mut() {
                    c.execs.remove(&req.exec_id);
                }
            }
            // A Wait for an exec that never started learns it is gone.
            self.changed.notify_waiters();
            return Ok(api::DeleteResponse { pid, exit_status, exited_at });
        }
        let exit_status = self.shim.delete(core::DeleteRequest { pid }).await.map_err(|e| from_shim(&e))?.exit_status;
        // Once the init's exit is recorded, its `/tasks/exit` was queued.
        let exited_at = self.exit_of(&req.id, "", exit_status).await;
        let container = {
            let mut st = self.lock();
            st.by_pid.clear();
            st.container.take()
        };
        self.changed.notify_waiters();
        if let Some(c) = container {
            if c.mounted {
                rootfs::unmount(std::path::Path::new(&c.bundle));
            }
            let m = ev::TaskDelete {
                container_id: c.id.clone(),
                pid,
                exit_status,
                exited_at: Some(exited_at),
                id: String::new(),
            };
            self.sink.publish("/tasks/delete", any("containerd.events.TaskDelete", &m));
        }
        Ok(api::DeleteResponse { pid, exit_status, exited_at: Some(exited_at) })
    }

    async fn exec(&self, req: api::ExecProcessRequest) -> Result<(), Status> {
        if req.exec_id.is_empty() {
            return Err(status(Code::InvalidArgument, "exec id is empty"));
        }
        let spec = req.spec.as_ref().map(|a| a.value.as_slice()).unwrap_or_default();
        let mut exec = exec_request(spec)?;
        exec.terminal = req.terminal;
        exec.stdin.clone_from(&req.stdin);
        exec.stdout.clone_from(&req.stdout);
        exec.stderr.clone_from(&req.stderr);
        {
            let mut st = self.lock();
            let c = st
                .container
                .as_mut()
                .filter(|c| c.id == req.id)
                .ok_or_else(|| status(Code::NotFound, format!("container {:?} not found in this shim", req.id)))?;
            if c.execs.contains_key(&req.exec_id) {
                return Err(status(Code::AlreadyExists, format!("exec {:?} already exists", req.exec_id)));
            }
            let p = Proc {
                stdin: req.stdin,
                stdout: req.stdout,
                stderr: req.stderr,
                terminal: req.terminal,
                exec: Some(exec),
                ..Default::default()
            };
            c.execs.insert(req.exec_id.clone(), p);
        }
        let m = ev::TaskExecAdded { container_id: req.id, exec_id: req.exec_id };
        self.sink.publish("/tasks/exec-added", any("containerd.events.TaskExecAdded", &m));
        Ok(())
    }

    async fn state(&self, req: api::StateRequest) -> Result<api::StateResponse, Status> {
        let p = self.process(&req.id, &req.exec_id)?;
        let bundle = self.lock().container.as_ref().map(|c| c.bundle.clone()).unwrap_or_default();
        let core_state = self.shim.state(core::StateRequest {}).await.map_err(|e| from_shim(&e))?;
        let pid = p.pid.unwrap_or(0);
        let listed = core_state.processes.iter().find(|q| q.pid == pid).map(|q| q.state());
        let st = match (&p.exit, listed) {
            (Some(_), _) => TaskStatus::Stopped,
            _ if !p.started => TaskStatus::Created,
            (None, Some(core::State::Running)) => TaskStatus::Running,
            (None, Some(core::State::Paused)) => TaskStatus::Paused,
            (None, Some(core::State::Stopped)) => TaskStatus::Stopped,
            (None, None) => TaskStatus::Unknown,
        };
        let (exit_status, exited_at) = match p.exit {
            Some((s, at)) => (s, Some(at)),
            None => (0, None),
        };
        Ok(api::StateResponse {
            id: if req.exec_id.is_empty() { req.id } else { req.exec_id.clone() },
            bundle,
            pid,
            status: st as i32,
            stdin: p.stdin,
            stdout: p.stdout,
            stderr: p.stderr,
            terminal: p.terminal,
            exit_status,
            exited_at,
            exec_id: req.exec_id,
        })
    }

    async fn kill(&self, req: api::KillRequest) -> Result<(), Status> {
        let p = self.process(&req.id, &req.exec_id)?;
        let Some(pid) = p.pid.filter(|_| p.started || req.exec_id.is_empty()) else {
            return Err(status(Code::NotFound, format!("process {:?} was not started", req.exec_id)));
        };
        if p.exit.is_some() {
            // CRI relies on this code for a process that already exited.
            return Err(status(Code::NotFound, "process already finished"));
        }
        // `all` is about the container's processes: containerd's runc shim
        // ignores it for an exec, and so does this one.
        let all = req.all && req.exec_id.is_empty();
        self.shim.kill(core::KillRequest { pid, signal: req.signal, all }).await.map_err(|e| {
            let st = from_shim(&e);
            if st.code == Code::FailedPrecondition as i32 {
                status(Code::NotFound, format!("process already finished: {}", st.message))
            } else {
                st
            }
        })
    }

    async fn wait(&self, req: api::WaitRequest) -> Result<api::WaitResponse, Status> {
        let pid = self.pid_of(&req.id, &req.exec_id).await?;
        if let Some((exit_status, at)) = self.process(&req.id, &req.exec_id)?.exit {
            return Ok(api::WaitResponse { exit_status, exited_at: Some(at) });
        }
        let exit_status = self.shim.wait(core::WaitRequest { pid }).await.map_err(|e| from_shim(&e))?.exit_status;
        let exited_at = self.exit_of(&req.id, &req.exec_id, exit_status).await;
        Ok(api::WaitResponse { exit_status, exited_at: Some(exited_at) })
    }

    async fn handle_call(&self, req: Request) -> Result<Vec<u8>, Status> {
        fn decode<M: Message + Default>(b: &[u8]) -> Result<M, Status> {
            M::decode(b).map_err(|e| status(Code::InvalidArgument, format!("cannot decode the request: {e}")))
        }
        let empty = Vec::new;
        let core_err = |e: shim_core::ShimError| from_shim(&e);
        let p = req.payload.as_slice();
        Ok(match req.method.as_str() {
            "Create" => self.create(decode(p)?).await?.encode_to_vec(),
            "Start" => self.start(decode(p)?).await?.encode_to_vec(),
            "Delete" => self.delete(decode(p)?).await?.encode_to_vec(),
            "Exec" => {
                self.exec(decode(p)?).await?;
                empty()
            }
            "State" => self.state(decode(p)?).await?.encode_to_vec(),
            "Kill" => {
                self.kill(decode(p)?).await?;
                empty()
            }
            "Wait" => self.wait(decode(p)?).await?.encode_to_vec(),
            "Pids" => {
                let r: api::PidsRequest = decode(p)?;
                self.process(&r.id, "")?;
                let list = self.shim.list_pids(core::ListPidsRequest {}).await.map_err(core_err)?;
                let by_pid = self.lock().by_pid.clone();
                let processes = list
                    .processes
                    .iter()
                    .map(|q| {
                        // Execs carry their id, as containerd's runc shim
                        // reports them (`ctr task ps` shows it as INFO).
                        let exec_id = by_pid.get(&q.shim_pid).filter(|id| q.shim_pid != 0 && !id.is_empty());
                        let info = exec_id.map(|id| {
                            any("containerd.runc.v1.ProcessDetails", &ProcessDetails { exec_id: id.clone() })
                        });
                        ProcessInfo { pid: q.pid, info }
                    })
                    .collect();
                api::PidsResponse { processes }.encode_to_vec()
            }
            "Pause" => {
                let r: api::PauseRequest = decode(p)?;
                self.process(&r.id, "")?;
                self.shim.pause(core::PauseRequest {}).await.map_err(core_err)?;
                empty()
            }
            "Resume" => {
                let r: api::ResumeRequest = decode(p)?;
                self.process(&r.id, "")?;
                self.shim.resume(core::ResumeRequest {}).await.map_err(core_err)?;
                empty()
            }
            "Checkpoint" => {
                let r: api::CheckpointTaskRequest = decode(p)?;
                self.process(&r.id, "")?;
                let exit = r.options.as_ref().is_some_and(|o| checkpoint_exits(&o.value));
                self.shim.checkpoint(core::CheckpointRequest { image_path: r.path, exit }).await.map_err(core_err)?;
                empty()
            }
            "ResizePty" => {
                let r: api::ResizePtyRequest = decode(p)?;
                let pid = self.pid_of(&r.id, &r.exec_id).await?;
                match self.shim.pty(core::PtyRequest { pid, width: r.width, height: r.height }).await {
                    // A process that already exited has no terminal to
                    // resize; containerd's runc shim answers success, and
                    // `ctr run -t` of a short command races with it.
                    Err(e) if e.code() == shim_core::Code::FailedPrecondition => {
                        tracing::debug!(pid, error = %e, "resize of a process that exited");
                    }
                    r => r.map_err(core_err)?,
                }
                empty()
            }
            "CloseIO" => {
                let r: api::CloseIoRequest = decode(p)?;
                if r.stdin {
                    let pid = self.pid_of(&r.id, &r.exec_id).await?;
                    self.shim.close_stdin(core::CloseStdinRequest { pid }).await.map_err(core_err)?;
                }
                empty()
            }
            "Update" => {
                let r: api::UpdateTaskRequest = decode(p)?;
                self.process(&r.id, "")?;
                let resources = r.resources.map(|a| a.value).unwrap_or_default();
                self.shim.update(core::UpdateRequest { resources }).await.map_err(core_err)?;
                empty()
            }
            "Stats" => {
                let r: api::StatsRequest = decode(p)?;
                self.process(&r.id, "")?;
                let s = self.shim.stats(core::StatsRequest {}).await.map_err(core_err)?;
                api::StatsResponse { stats: Some(crate::metrics::to_containerd(&s)) }.encode_to_vec()
            }
            "Connect" => {
                let _: api::ConnectRequest = decode(p)?;
                api::ConnectResponse {
                    shim_pid: std::process::id(),
                    task_pid: self.task_pid().unwrap_or(0),
                    version: String::new(),
                }
                .encode_to_vec()
            }
            "Shutdown" => {
                let r: api::ShutdownRequest = decode(p)?;
                // With a container still held, containerd's own shims stay.
                if r.now || self.lock().container.is_none() {
                    self.shutdown.send_replace(true);
                }
                empty()
            }
            other => {
                return Err(status(Code::Unimplemented, format!("{SERVICE}/{other} is not a method of this shim")))
            }
        })
    }
}

/// containerd's `containerd.runc.v1.ProcessDetails`: the exec id of a
/// process in a Pids answer.
#[derive(Clone, PartialEq, Message)]
struct ProcessDetails {
    #[prost(string, tag = "1")]
    exec_id: String,
}

/// Whether runc's `CheckpointOptions` (field 1: exit) asks to stop.
fn checkpoint_exits(value: &[u8]) -> bool {
    #[derive(Clone, PartialEq, Message)]
    struct CheckpointOptions {
        #[prost(bool, tag = "1")]
        exit: bool,
    }
    CheckpointOptions::decode(value).map(|o| o.exit).unwrap_or(false)
}

/// The core's exec request from the OCI process JSON containerd sends in
/// `ExecProcessRequest.spec` (stdio and terminal come from the request).
/// The core then keeps the exec within the container's own privileges.
pub fn exec_request(spec: &[u8]) -> Result<core::ExecRequest, Status> {
    let bad = |why: String| status(Code::InvalidArgument, format!("exec spec: {why}"));
    let v: serde_json::Value = serde_json::from_slice(spec).map_err(|e| bad(format!("not JSON: {e}")))?;
    let strings = |key: &str| -> Vec<String> {
        v.get(key)
            .and_then(|a| a.as_array())
            .map(|a| a.iter().filter_map(|s| s.as_str().map(String::from)).collect())
            .unwrap_or_default()
    };
    let args = strings("args");
    if args.is_empty() {
        return Err(bad("process.args is empty".into()));
    }
    let user = v.get("user").map(|u| core::User {
        uid: u.get("uid").and_then(|x| x.as_u64()).and_then(|x| u32::try_from(x).ok()).unwrap_or(0),
        gid: u.get("gid").and_then(|x| x.as_u64()).and_then(|x| u32::try_from(x).ok()).unwrap_or(0),
        additional_gids: u
            .get("additionalGids")
            .and_then(|a| a.as_array())
            .map(|a| a.iter().filter_map(|g| g.as_u64().and_then(|g| u32::try_from(g).ok())).collect())
            .unwrap_or_default(),
    });
    let capabilities = v
        .pointer("/capabilities/bounding")
        .and_then(|a| a.as_array())
        .map(|a| a.iter().filter_map(|s| s.as_str().map(String::from)).collect())
        .unwrap_or_default();
    let rlimits = v
        .get("rlimits")
        .and_then(|a| a.as_array())
        .map(|a| {
            a.iter()
                .map(|r| core::Rlimit {
                    r#type: r.get("type").and_then(|t| t.as_str()).unwrap_or_default().to_string(),
                    hard: r.get("hard").and_then(|x| x.as_u64()).unwrap_or(0),
                    soft: r.get("soft").and_then(|x| x.as_u64()).unwrap_or(0),
                })
                .collect()
        })
        .unwrap_or_default();
    let text = |key: &str| v.get(key).and_then(|s| s.as_str()).unwrap_or_default().to_string();
    Ok(core::ExecRequest {
        args,
        env: strings("env"),
        cwd: text("cwd"),
        user,
        capabilities,
        rlimits,
        no_new_privileges: v.get("noNewPrivileges").and_then(|b| b.as_bool()).unwrap_or(false),
        apparmor_profile: text("apparmorProfile"),
        selinux_label: text("selinuxLabel"),
        ..Default::default()
    })
}

#[async_trait]
impl Service for TaskService {
    async fn handle(&self, req: Request) -> Result<Vec<u8>, Status> {
        if req.service != SERVICE {
            return Err(status(Code::Unimplemented, format!("service {:?} is not served here", req.service)));
        }
        self.handle_call(req).await
    }
}
