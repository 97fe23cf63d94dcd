//! The calls that pass through to the core with little translation: Pids,
//! Pause, Resume, Checkpoint, Update, Stats, ResizePty, CloseIO; and the
//! shim-level Connect and Shutdown.

use prost::Message;
use shim_core::proto::v1 as core;

use super::{any, TaskService};
use crate::proto::containerd::task::v2 as api;
use crate::proto::containerd::v1::types::ProcessInfo;
use crate::proto::ttrpc::Status;
use crate::status::from_shim;

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

fn core_err(e: shim_core::ShimError) -> Status {
    from_shim(&e)
}

impl TaskService {
    pub(super) async fn pids(&self, r: api::PidsRequest) -> Result<api::PidsResponse, Status> {
        let list = self.shim_of(&r.id)?.list_pids(core::ListPidsRequest {}).await.map_err(core_err)?;
        let by_pid = self.lock().containers.get(&r.id).map(|c| c.by_pid.clone()).unwrap_or_default();
        let processes = list
            .processes
            .iter()
            .map(|q| {
                // Execs carry their id, as containerd's runc shim
                // reports them (`ctr task ps` shows it as INFO).
                let exec_id = by_pid.get(&q.shim_pid).filter(|id| q.shim_pid != 0 && !id.is_empty());
                let info =
                    exec_id.map(|id| any("containerd.runc.v1.ProcessDetails", &ProcessDetails { exec_id: id.clone() }));
                ProcessInfo { pid: q.pid, info }
            })
            .collect();
        Ok(api::PidsResponse { processes })
    }

    pub(super) async fn pause(&self, r: api::PauseRequest) -> Result<(), Status> {
        self.shim_of(&r.id)?.pause(core::PauseRequest {}).await.map_err(core_err)
    }

    pub(super) async fn resume(&self, r: api::ResumeRequest) -> Result<(), Status> {
        self.shim_of(&r.id)?.resume(core::ResumeRequest {}).await.map_err(core_err)
    }

    pub(super) async fn checkpoint(&self, r: api::CheckpointTaskRequest) -> Result<(), Status> {
        let shim = self.shim_of(&r.id)?;
        let exit = r.options.as_ref().is_some_and(|o| checkpoint_exits(&o.value));
        shim.checkpoint(core::CheckpointRequest { image_path: r.path, exit }).await.map_err(core_err)
    }

    pub(super) async fn update(&self, r: api::UpdateTaskRequest) -> Result<(), Status> {
        let shim = self.shim_of(&r.id)?;
        let resources = r.resources.map(|a| a.value).unwrap_or_default();
        shim.update(core::UpdateRequest { resources }).await.map_err(core_err)
    }

    pub(super) async fn stats(&self, r: api::StatsRequest) -> Result<api::StatsResponse, Status> {
        let s = self.shim_of(&r.id)?.stats(core::StatsRequest {}).await.map_err(core_err)?;
        Ok(api::StatsResponse { stats: Some(crate::metrics::to_containerd(&s)) })
    }

    pub(super) async fn resize_pty(&self, r: api::ResizePtyRequest) -> Result<(), Status> {
        let pid = self.pid_of(&r.id, &r.exec_id).await?;
        match self.shim_of(&r.id)?.pty(core::PtyRequest { pid, width: r.width, height: r.height }).await {
            // A process that already exited has no terminal to resize;
            // containerd's runc shim answers success, and `ctr run -t` of a
            // short command races with it.
            Err(e) if e.code() == shim_core::Code::FailedPrecondition => {
                tracing::debug!(pid, error = %e, "resize of a process that exited");
                Ok(())
            }
            r => r.map_err(core_err),
        }
    }

    pub(super) async fn close_io(&self, r: api::CloseIoRequest) -> Result<(), Status> {
        if r.stdin {
            let pid = self.pid_of(&r.id, &r.exec_id).await?;
            self.shim_of(&r.id)?.close_stdin(core::CloseStdinRequest { pid }).await.map_err(core_err)?;
        }
        Ok(())
    }

    pub(super) fn connect(&self, r: api::ConnectRequest) -> api::ConnectResponse {
        api::ConnectResponse {
            shim_pid: std::process::id(),
            task_pid: self.task_pid(&r.id).unwrap_or(0),
            version: String::new(),
        }
    }

    pub(super) fn shutdown(&self, r: api::ShutdownRequest) {
        // With a container still held (a pod's other containers, say),
        // containerd's own shims stay.
        if r.now || self.lock().containers.is_empty() {
            self.shutdown.send_replace(true);
        }
    }
}
