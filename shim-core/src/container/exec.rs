//! Execs: extra processes started in the running container, their
//! registration (never before the init's check, never after its EXIT), and
//! their Delete.

use std::sync::Arc;

use shim_proto::v1::{DeleteResponse, EventType, ExecRequest, ExecResponse};

use super::state::{Proc, StartingGuard};
use super::{lock, ContainerShim};
use crate::error::{Result, ShimError};
use crate::io::{self, PreparedIo};
use crate::runtime::{Launched, Runtime};
use crate::signal::Signal;
use crate::spec;

impl<R: Runtime> ContainerShim<R> {
    pub(super) async fn exec_now(&self, req: ExecRequest) -> Result<ExecResponse> {
        io::validate_stdio(&req.stdin, &req.stdout, &req.stderr)?;
        let (id, defaults) = {
            let state = lock(&self.inner.state);
            let c = state
                .container
                .as_ref()
                .ok_or_else(|| ShimError::FailedPrecondition("no container to exec in: create it first".into()))?;
            if c.init_exited() {
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
        let (mut prepared, stdio) = PreparedIo::prepare(req.terminal, &req.stdin, &req.stdout, &req.stderr)?;
        prepared.start_logger(self.inner.runtime.reaper(), &id, &self.inner.config.namespace).await?;
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

    /// Delete of an exec: kills it if it still runs (refused while the
    /// container is paused), waits for its EXIT and forgets it.
    pub(super) async fn delete_exec(&self, proc: Arc<Proc>) -> Result<DeleteResponse> {
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
        proc.stop_logger().await;
        let removed = lock(&self.inner.state).container.as_mut().and_then(|c| c.procs.remove(&proc.pid));
        if removed.is_none() {
            return Err(ShimError::ProcessNotFound { pid: proc.pid });
        }
        Ok(DeleteResponse { exit_status: status })
    }
}
