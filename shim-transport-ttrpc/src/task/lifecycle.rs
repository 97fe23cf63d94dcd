//! Create, Start and Delete, of the init (the container) and of execs.

use std::path::Path;
use std::sync::Arc;

use shim_core::proto::v1 as core;

use super::container::Container;
use super::{any, now, TaskService};
use crate::options::RuncOptions;
use crate::proto::containerd::events as ev;
use crate::proto::containerd::task::v2 as api;
use crate::proto::ttrpc::Status;
use crate::rootfs;
use crate::status::{from_shim, status, Code};

impl TaskService {
    pub(super) async fn create(&self, req: api::CreateTaskRequest) -> Result<api::CreateTaskResponse, Status> {
        let bundle = Path::new(&req.bundle);
        // Written to and mounted on before the core validates the request: a
        // relative bundle would land in the shim's working directory.
        if !bundle.is_absolute() {
            return Err(status(Code::InvalidArgument, format!("bundle {:?} is not an absolute path", req.bundle)));
        }
        let shim = self.shims.shim_for(&req.id, bundle).map_err(|e| from_shim(&e))?;
        // Subscribed before the core's Create, whose CREATED is the first
        // event the forwarder translates.
        let events = shim.events(core::EventsRequest::default()).await.map_err(|e| from_shim(&e))?;
        {
            // Checked and reserved under one lock: a second Create of the
            // same id waits for nothing and fails. Recorded before the
            // core's Create, whose event the forwarder translates with these
            // fields.
            let mut st = self.lock();
            if st.containers.contains_key(&req.id) {
                return Err(status(Code::AlreadyExists, format!("container {:?} already exists in this shim", req.id)));
            }
            let mut c = Container::new(&req, Arc::clone(&shim));
            if let Some(me) = self.me.upgrade() {
                c.forwarder = Some(tokio::spawn(me.forward_events(req.id.clone(), Arc::clone(&shim), events)));
            }
            st.containers.insert(req.id.clone(), c);
        }
        let (options, mounted) = match Self::prepare_bundle(&req) {
            Ok(prepared) => prepared,
            Err(e) => {
                self.release_reservation(&req.id);
                return Err(e);
            }
        };
        if let Some(c) = self.lock().containers.get_mut(&req.id) {
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
        match shim.create(core_req).await {
            Ok(r) => {
                if let Some(c) = self.lock().containers.get_mut(&req.id) {
                    c.by_pid.insert(r.pid, String::new());
                    c.init.pid = Some(r.pid);
                }
                self.changed.notify_waiters();
                Ok(api::CreateTaskResponse { pid: r.pid })
            }
            Err(e) => {
                if mounted {
                    rootfs::unmount(bundle);
                }
                self.release_reservation(&req.id);
                Err(from_shim(&e))
            }
        }
    }

    /// What Create does in the bundle before the core sees the request: the
    /// runc options read and kept there (for a `delete` after this shim is
    /// gone), then the rootfs mounted. Returns the options and whether
    /// something was mounted.
    pub(super) fn prepare_bundle(req: &api::CreateTaskRequest) -> Result<(RuncOptions, bool), Status> {
        let bundle = Path::new(&req.bundle);
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
    pub(super) fn release_reservation(&self, id: &str) {
        let removed = self.lock().containers.remove(id);
        drop(removed);
        self.changed.notify_waiters();
    }

    pub(super) async fn start(&self, req: api::StartRequest) -> Result<api::StartResponse, Status> {
        let p = self.process(&req.id, &req.exec_id)?;
        let shim = self.shim_of(&req.id)?;
        if req.exec_id.is_empty() {
            shim.start(core::StartRequest {}).await.map_err(|e| from_shim(&e))?;
            self.set(&req.id, &req.exec_id, |p| p.started = true);
            return Ok(api::StartResponse { pid: p.pid.unwrap_or(0) });
        }
        let mut taken = None;
        self.set(&req.id, &req.exec_id, |p| taken = p.exec.take());
        let Some(exec) = taken else {
            return Err(status(Code::FailedPrecondition, format!("exec {:?} was started already", req.exec_id)));
        };
        match shim.exec(exec).await {
            Ok(r) => {
                if let Some(c) = self.lock().containers.get_mut(&req.id) {
                    c.by_pid.insert(r.pid, req.exec_id.clone());
                }
                self.set(&req.id, &req.exec_id, |p| {
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
                self.set(&req.id, &req.exec_id, |p| {
                    p.pid = Some(0);
                    p.exit = Some((255, now()));
                });
                self.changed.notify_waiters();
                Err(from_shim(&e))
            }
        }
    }

    pub(super) async fn delete(&self, req: api::DeleteRequest) -> Result<api::DeleteResponse, Status> {
        let p = self.process(&req.id, &req.exec_id)?;
        let shim = self.shim_of(&req.id)?;
        let pid = p.pid.unwrap_or(0);
        if p.started && p.exit.is_none() {
            // As containerd's runc shim: a started process is deleted once
            // it exited; the caller kills it first (containerd's client does,
            // with a kill option). Its code there is Unknown only because its
            // error is untyped; the state is the caller's to change.
            let listed = shim.state(core::StateRequest {}).await.map_err(|e| from_shim(&e))?;
            match listed.processes.iter().find(|q| q.pid == pid).map(|q| q.state()) {
                Some(core::State::Running) => {
                    return Err(status(Code::FailedPrecondition, "cannot delete a running process"));
                }
                Some(core::State::Paused) => {
                    return Err(status(Code::FailedPrecondition, "cannot delete a paused process"));
                }
                _ => {}
            }
        }
        if !req.exec_id.is_empty() {
            // Started: the core holds it. Registered only, or failed to
            // start: nothing ran, there is only our record.
            let (exit_status, exited_at) = if p.started && pid > 0 {
                let s = shim.delete(core::DeleteRequest { pid }).await.map_err(|e| from_shim(&e))?.exit_status;
                (s, Some(self.exit_of(&req.id, &req.exec_id, s).await))
            } else {
                p.exit.map(|(s, at)| (s, Some(at))).unwrap_or((0, None))
            };
            if let Some(c) = self.lock().containers.get_mut(&req.id) {
                c.by_pid.remove(&pid);
                c.execs.remove(&req.exec_id);
            }
            // A Wait for an exec that never started learns it is gone.
            self.changed.notify_waiters();
            return Ok(api::DeleteResponse { pid, exit_status, exited_at });
        }
        let exit_status = shim.delete(core::DeleteRequest { pid }).await.map_err(|e| from_shim(&e))?.exit_status;
        // Once the init's exit is recorded, its `/tasks/exit` was queued.
        let exited_at = self.exit_of(&req.id, "", exit_status).await;
        let container = self.lock().containers.remove(&req.id);
        self.changed.notify_waiters();
        if let Some(c) = container {
            if c.mounted {
                rootfs::unmount(Path::new(&c.bundle));
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
}
