//! The init's lifecycle: Create (validation, the runtime's create, the
//! CREATED event, the OOM watch), Start, and the Delete that removes the
//! container.

use std::collections::BTreeMap;
use std::sync::Arc;

use shim_proto::v1::{CreateRequest, CreateResponse, DeleteResponse, EventType, StartRequest};

use super::state::{Container, CreatingGuard, Proc};
use super::{lock, ContainerShim};
use crate::error::{Result, ShimError};
use crate::io::{self, PreparedIo};
use crate::runtime::{CreateSpec, Launched, Runtime};
use crate::signal::Signal;
use crate::spec::{self, ProcessDefaults};

impl<R: Runtime> ContainerShim<R> {
    pub(super) async fn create_now(&self, req: CreateRequest) -> Result<CreateResponse> {
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

    pub(super) async fn start_now(&self, _req: StartRequest) -> Result<()> {
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
            if c.init_exited() {
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

    async fn do_create(&self, req: CreateRequest) -> Result<CreateResponse> {
        let defaults = ProcessDefaults::from_bundle(&req.bundle)?;
        let (mut prepared, stdio) = PreparedIo::prepare(req.terminal, &req.stdin, &req.stdout, &req.stderr)?;
        let runtime = &self.inner.runtime;
        prepared.start_logger(runtime.reaper(), &req.id, &self.inner.config.namespace).await?;
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

    /// Delete of the init: kills what is left of the container (thawing a
    /// paused one so the kill lands), waits for the init's EXIT, then has
    /// the runtime remove the container.
    pub(super) async fn delete_init(&self, proc: Arc<Proc>, id: String) -> Result<DeleteResponse> {
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
        proc.stop_logger().await;
        self.inner.runtime.delete(&id).await?;
        let removed = {
            let mut state = lock(&self.inner.state);
            match &state.container {
                Some(c) if c.init_pid == proc.pid && c.id == id => state.container.take(),
                _ => None,
            }
        };
        let Some(mut c) = removed else {
            return Err(ShimError::ProcessNotFound { pid: proc.pid });
        };
        if let Some(t) = c.oom_task.take() {
            t.abort();
        }
        Ok(DeleteResponse { exit_status: status })
    }
}
