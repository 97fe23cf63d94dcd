//! What the task service records of each container and process:
//! containerd's names and stdio for them, the core shim that runs the
//! container, the pids it gave them, and their exits.

use std::collections::HashMap;
use std::sync::Arc;

use prost_types::Timestamp;
use shim_core::proto::v1 as core;
use shim_core::Shim;
use tokio::task::JoinHandle;

use super::TaskService;
use crate::proto::containerd::task::v2 as api;
use crate::proto::ttrpc::Status;
use crate::status::{status, Code};

/// What containerd told us about a process, and what happened to it.
#[derive(Debug, Clone, Default)]
pub(super) struct Proc {
    pub(super) stdin: String,
    pub(super) stdout: String,
    pub(super) stderr: String,
    pub(super) terminal: bool,
    /// The exec's request, until `Start` runs it.
    pub(super) exec: Option<core::ExecRequest>,
    /// Set by `Start` (exec) or `Create` (init).
    pub(super) pid: Option<u32>,
    pub(super) started: bool,
    /// Status and time, once the core reported the exit.
    pub(super) exit: Option<(u32, Timestamp)>,
}

/// One container of the service: containerd's Create request as the
/// events and `State` echo it, the core shim that runs it, its init and
/// execs by exec id, and the exec id of each pid the core gave them.
pub(super) struct Container {
    pub(super) shim: Arc<dyn Shim>,
    /// The task forwarding this container's events; stopped with the record.
    pub(super) forwarder: Option<JoinHandle<()>>,
    pub(super) id: String,
    pub(super) bundle: String,
    pub(super) rootfs: Vec<crate::proto::containerd::types::Mount>,
    pub(super) mounted: bool,
    pub(super) checkpoint: String,
    pub(super) init: Proc,
    pub(super) execs: HashMap<String, Proc>,
    /// exec id (or "" for the init) of each pid the core knows.
    pub(super) by_pid: HashMap<u32, String>,
}

impl Container {
    /// The record Create makes before the core creates anything.
    pub(super) fn new(req: &api::CreateTaskRequest, shim: Arc<dyn Shim>) -> Self {
        let init = Proc {
            stdin: req.stdin.clone(),
            stdout: req.stdout.clone(),
            stderr: req.stderr.clone(),
            terminal: req.terminal,
            ..Default::default()
        };
        Self {
            shim,
            forwarder: None,
            id: req.id.clone(),
            bundle: req.bundle.clone(),
            rootfs: req.rootfs.clone(),
            mounted: false,
            checkpoint: req.checkpoint.clone(),
            init,
            execs: HashMap::new(),
            by_pid: HashMap::new(),
        }
    }

    /// The init (`exec_id` empty) or an exec.
    pub(super) fn process(&self, exec_id: &str) -> Option<&Proc> {
        if exec_id.is_empty() {
            Some(&self.init)
        } else {
            self.execs.get(exec_id)
        }
    }

    fn process_mut(&mut self, exec_id: &str) -> Option<&mut Proc> {
        if exec_id.is_empty() {
            Some(&mut self.init)
        } else {
            self.execs.get_mut(exec_id)
        }
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        if let Some(task) = self.forwarder.take() {
            task.abort();
        }
    }
}

/// The service's one lock-protected record: its containers by id.
#[derive(Default)]
pub(super) struct State {
    pub(super) containers: HashMap<String, Container>,
}

impl TaskService {
    /// The process `exec_id` of container `id`, as a copy.
    pub(super) fn process(&self, id: &str, exec_id: &str) -> Result<Proc, Status> {
        let st = self.lock();
        let c = st.containers.get(id).ok_or_else(|| not_found(id))?;
        c.process(exec_id)
            .cloned()
            .ok_or_else(|| status(Code::NotFound, format!("exec {exec_id:?} not found in container {id:?}")))
    }

    /// The core shim that runs container `id`.
    pub(super) fn shim_of(&self, id: &str) -> Result<Arc<dyn Shim>, Status> {
        self.lock().containers.get(id).map(|c| Arc::clone(&c.shim)).ok_or_else(|| not_found(id))
    }

    /// Changes the record of process `exec_id` of container `id`, if any.
    pub(super) fn set(&self, id: &str, exec_id: &str, f: impl FnOnce(&mut Proc)) {
        if let Some(p) = self.lock().containers.get_mut(id).and_then(|c| c.process_mut(exec_id)) {
            f(p);
        }
    }
}

/// containerd's answer for a container it did not create here.
pub(super) fn not_found(id: &str) -> Status {
    status(Code::NotFound, format!("container {id:?} not found in this shim"))
}
