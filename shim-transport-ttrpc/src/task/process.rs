//! Calls on one process named by exec id: Exec (registration), State,
//! Kill, Wait; and how a call waits for a pid or an exit it needs.

use std::sync::Arc;

use prost_types::Timestamp;
use shim_core::proto::v1 as core;

use super::container::{not_found, Proc};
use super::spec::exec_request;
use super::{any, now, TaskService, EXIT_FORWARD_WAIT};
use crate::proto::containerd::events as ev;
use crate::proto::containerd::task::v2 as api;
use crate::proto::containerd::v1::types::Status as TaskStatus;
use crate::proto::ttrpc::Status;
use crate::status::{from_shim, status, Code};

impl TaskService {
    /// Waits until the process has a pid (an exec: until it was started).
    pub(super) async fn pid_of(&self, id: &str, exec_id: &str) -> Result<u32, Status> {
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
    pub(super) async fn exit_of(&self, id: &str, exec_id: &str, status: u32) -> Timestamp {
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

    pub(super) async fn exec(&self, req: api::ExecProcessRequest) -> Result<(), Status> {
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
            let c = st.containers.get_mut(&req.id).ok_or_else(|| not_found(&req.id))?;
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

    pub(super) async fn state(&self, req: api::StateRequest) -> Result<api::StateResponse, Status> {
        let p = self.process(&req.id, &req.exec_id)?;
        let (bundle, shim) = {
            let st = self.lock();
            let c = st.containers.get(&req.id).ok_or_else(|| not_found(&req.id))?;
            (c.bundle.clone(), Arc::clone(&c.shim))
        };
        let core_state = shim.state(core::StateRequest {}).await.map_err(|e| from_shim(&e))?;
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

    pub(super) async fn kill(&self, req: api::KillRequest) -> Result<(), Status> {
        let p = self.process(&req.id, &req.exec_id)?;
        let Some(pid) = p.pid.filter(|_| p.started || req.exec_id.is_empty()) else {
            return Err(status(Code::NotFound, format!("process {:?} was not started", req.exec_id)));
        };
        // `all` is about the container's processes: containerd's runc shim
        // ignores it for an exec, and so does this one. For the init it
        // reaches what is left of the container even after the init exited.
        let all = req.all && req.exec_id.is_empty();
        if p.exit.is_some() && !all {
            // CRI relies on this code for a process that already exited.
            return Err(status(Code::NotFound, "process already finished"));
        }
        self.shim_of(&req.id)?.kill(core::KillRequest { pid, signal: req.signal, all }).await.map_err(|e| {
            let st = from_shim(&e);
            if st.code == Code::FailedPrecondition as i32 {
                status(Code::NotFound, format!("process already finished: {}", st.message))
            } else {
                st
            }
        })
    }

    pub(super) async fn wait(&self, req: api::WaitRequest) -> Result<api::WaitResponse, Status> {
        let pid = self.pid_of(&req.id, &req.exec_id).await?;
        if let Some((exit_status, at)) = self.process(&req.id, &req.exec_id)?.exit {
            return Ok(api::WaitResponse { exit_status, exited_at: Some(at) });
        }
        let exit_status =
            self.shim_of(&req.id)?.wait(core::WaitRequest { pid }).await.map_err(|e| from_shim(&e))?.exit_status;
        let exited_at = self.exit_of(&req.id, &req.exec_id, exit_status).await;
        Ok(api::WaitResponse { exit_status, exited_at: Some(exited_at) })
    }
}
