//! Operations on the running container as a whole that change it: Pause,
//! Resume, Checkpoint, Update.

use shim_proto::v1::{CheckpointRequest, EventType, PauseRequest, ResumeRequest, UpdateRequest};

use super::{lock, ContainerShim};
use crate::error::{Result, ShimError};
use crate::io;
use crate::runtime::Runtime;
use crate::spec;

impl<R: Runtime> ContainerShim<R> {
    /// The id and init pid of a started container whose init still runs,
    /// checked under the start lock (which the init's EXIT also takes, so
    /// no PAUSED or RESUMED can follow it); `paused` is the state asked for.
    fn running_container(&self, verb: &str, paused: bool) -> Result<(String, u32)> {
        let state = lock(&self.inner.state);
        let c = state.container.as_ref().ok_or_else(|| {
            ShimError::FailedPrecondition(format!("no container to {verb}: create and start it first"))
        })?;
        if !c.started {
            return Err(ShimError::FailedPrecondition(format!("container {} is not started; cannot {verb}", c.id)));
        }
        if c.init_exited() {
            return Err(ShimError::FailedPrecondition(format!(
                "init process {} of container {} has exited; cannot {verb}",
                c.init_pid, c.id
            )));
        }
        if c.paused != paused {
            let now = if c.paused { "paused" } else { "not paused" };
            return Err(ShimError::FailedPrecondition(format!("container {} is {now}; cannot {verb}", c.id)));
        }
        Ok((c.id.clone(), c.init_pid))
    }

    fn set_paused(&self, id: &str, paused: bool) {
        if let Some(c) = lock(&self.inner.state).container.as_mut().filter(|c| c.id == id) {
            c.paused = paused;
        }
    }

    pub(super) async fn pause_now(&self, _req: PauseRequest) -> Result<()> {
        let _order = self.inner.start_lock.lock().await;
        let (id, pid) = self.running_container("pause", false)?;
        self.inner.runtime.pause(&id).await?;
        self.set_paused(&id, true);
        self.publish(&id, EventType::ContainerPaused, pid, 0);
        Ok(())
    }

    pub(super) async fn resume_now(&self, _req: ResumeRequest) -> Result<()> {
        let _order = self.inner.start_lock.lock().await;
        let (id, pid) = self.running_container("resume", true)?;
        self.inner.runtime.resume(&id).await?;
        self.set_paused(&id, false);
        self.publish(&id, EventType::ContainerResumed, pid, 0);
        Ok(())
    }

    pub(super) async fn checkpoint_now(&self, req: CheckpointRequest) -> Result<()> {
        if req.image_path.is_empty() {
            return Err(ShimError::invalid("image_path", "must not be empty"));
        }
        io::validate_path("image_path", &req.image_path)?;
        // Under the start lock, as Pause: the init's EXIT cannot slip in.
        let _order = self.inner.start_lock.lock().await;
        let (id, _) = self.running_container("checkpoint", false)?;
        std::fs::create_dir_all(&req.image_path)
            .map_err(|e| ShimError::io(format!("cannot create image directory {}", req.image_path), e))?;
        self.inner.runtime.checkpoint(&id, &req.image_path, req.exit).await
    }

    pub(super) async fn update_now(&self, req: UpdateRequest) -> Result<()> {
        let resources = spec::validate_resources(&req.resources)?;
        let id = {
            let state = lock(&self.inner.state);
            let c = state
                .container
                .as_ref()
                .ok_or_else(|| ShimError::FailedPrecondition("no container to update: create it first".into()))?;
            if c.init_exited() {
                return Err(ShimError::FailedPrecondition(format!(
                    "init process {} of container {} has exited; cannot update",
                    c.init_pid, c.id
                )));
            }
            c.id.clone()
        };
        self.inner.runtime.update(&id, &resources).await
    }
}
