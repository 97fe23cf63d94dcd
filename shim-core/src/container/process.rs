//! Operations on one process by pid (the init or an exec): Delete, Kill,
//! Wait, CloseStdin, Pty; and State and Events, which read the whole.

use shim_proto::v1::{
    CloseStdinRequest, DeleteRequest, DeleteResponse, EventsRequest, KillRequest, Process, PtyRequest, State,
    StateRequest, StateResponse, WaitRequest, WaitResponse,
};

use super::state::Proc;
use super::{lock, ContainerShim};
use crate::error::{Result, ShimError};
use crate::io;
use crate::runtime::Runtime;
use crate::shim::EventStream;
use crate::signal::Signal;

impl<R: Runtime> ContainerShim<R> {
    pub(super) async fn delete_now(&self, req: DeleteRequest) -> Result<DeleteResponse> {
        if req.pid == 0 {
            return Err(ShimError::invalid("pid", "0 is not a process"));
        }
        let (proc, id) = self.lookup(req.pid)?;
        if proc.init {
            self.delete_init(proc, id).await
        } else {
            self.delete_exec(proc).await
        }
    }

    pub(super) async fn pty_now(&self, req: PtyRequest) -> Result<()> {
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

    pub(super) async fn events_now(&self, req: EventsRequest) -> Result<EventStream> {
        self.inner.bus.subscribe_since(req.since)
    }

    pub(super) async fn state_now(&self, _req: StateRequest) -> Result<StateResponse> {
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

    pub(super) async fn kill_now(&self, req: KillRequest) -> Result<()> {
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
        // With `all`, what is left of the container is signalled even after
        // its init exited (processes sharing a pid namespace it does not
        // own), as containerd's runc shim does.
        if req.all {
            return self.inner.runtime.kill_all(&id, signal).await;
        }
        if proc.reaped().is_some() {
            return Err(ShimError::FailedPrecondition(format!("process {} has already exited", req.pid)));
        }
        if self.inner.runtime.signal(proc.pid, signal)? {
            Ok(())
        } else {
            Err(ShimError::FailedPrecondition(format!("process {} has already exited", req.pid)))
        }
    }

    pub(super) async fn wait_now(&self, req: WaitRequest) -> Result<WaitResponse> {
        if req.pid == 0 {
            return Err(ShimError::invalid("pid", "0 is not a process"));
        }
        let (proc, _) = self.lookup(req.pid)?;
        Ok(WaitResponse { exit_status: proc.wait_exited().await })
    }

    pub(super) async fn close_stdin_now(&self, req: CloseStdinRequest) -> Result<()> {
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
