//! The [`Runtime`] trait: what the shim logic needs from an OCI runtime.
//!
//! [`ContainerShim`](crate::ContainerShim) holds the shim's logic (validation,
//! lifecycle state, stdio, event ordering); a `Runtime` only starts, signals
//! and removes processes. [`RuncRuntime`](crate::runc::RuncRuntime) does it
//! with the runc command line; [`FakeRuntime`](crate::fake::FakeRuntime) with
//! scripted in-process programs, for tests without root or runc. Both run
//! behind the same logic, so the fake behaves like the real shim.

use async_trait::async_trait;
use futures::future::BoxFuture;
use std::os::fd::OwnedFd;

use crate::error::{Result, ShimError};
use crate::io::ProcessStdio;
use crate::oom::OomWatcher;
use crate::signal::Signal;

/// What the shim asks the runtime to create.
#[derive(Debug, Clone)]
pub struct CreateSpec {
    /// The container id (validated).
    pub id: String,
    /// The bundle directory (validated: absolute, holds `config.json`).
    pub bundle: String,
    /// The runtime binary asked for by the request; empty for the default.
    pub runtime: String,
    /// runc's `--no-pivot`.
    pub no_pivot: bool,
    /// The runtime's state directory (`--root`) asked for by the request;
    /// empty for the default.
    pub runtime_root: String,
    /// `--systemd-cgroup` asked for by the request (on top of the runtime's
    /// own setting).
    pub systemd_cgroup: bool,
    /// A checkpoint image to restore from, or empty.
    pub checkpoint: String,
}

/// A process the runtime started.
pub struct Launched {
    /// Its pid.
    pub pid: u32,
    /// Resolves to its exit status (code, or 128 + signal) once it was
    /// reaped; `None` if the runtime lost track of it. The subscription was
    /// made before the process could exit, so the exit is never missed.
    pub exit: BoxFuture<'static, Option<u32>>,
    /// The pty master, for a process with a terminal.
    pub console: Option<OwnedFd>,
    /// A watcher of the container's OOM kills (for the init only).
    pub oom: Option<OomWatcher>,
}

impl std::fmt::Debug for Launched {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Launched").field("pid", &self.pid).field("console", &self.console).finish_non_exhaustive()
    }
}

/// An OCI runtime, as the shim logic uses it.
///
/// Every method may be called concurrently. Errors should carry the runtime's
/// own message.
#[async_trait]
pub trait Runtime: Send + Sync + 'static {
    /// Creates the container; its init must not run its program before
    /// [`Runtime::start`].
    async fn create(&self, spec: &CreateSpec, stdio: ProcessStdio) -> Result<Launched>;
    /// Starts the init process.
    async fn start(&self, id: &str) -> Result<()>;
    /// Starts a process described by an OCI `process` object in the container.
    async fn exec(&self, id: &str, process: &serde_json::Value, stdio: ProcessStdio) -> Result<Launched>;
    /// Sends `signal` to every process of the container.
    async fn kill_all(&self, id: &str, signal: Signal) -> Result<()>;
    /// Sends `signal` to one process if it has not been reaped yet; `Ok(false)`
    /// when it has (so a reused pid is never signalled).
    fn signal(&self, pid: u32, signal: Signal) -> Result<bool>;
    /// Removes the container once its init has exited.
    async fn delete(&self, id: &str) -> Result<()>;
    /// Removes what a failed `create` may have left.
    async fn cleanup(&self, spec: &CreateSpec);
    /// Freezes every process of the container. The default says the runtime
    /// cannot.
    async fn pause(&self, id: &str) -> Result<()> {
        Err(ShimError::Unimplemented(format!("runtime cannot pause container {id}")))
    }
    /// Thaws a frozen container.
    async fn resume(&self, id: &str) -> Result<()> {
        Err(ShimError::Unimplemented(format!("runtime cannot resume container {id}")))
    }
    /// The pids of every process in the container.
    async fn pids(&self, id: &str) -> Result<Vec<u32>> {
        Err(ShimError::Unimplemented(format!("runtime cannot list the processes of container {id}")))
    }
    /// Applies new resource limits, an OCI `LinuxResources` object (already
    /// validated by the shim).
    async fn update(&self, id: &str, resources: &serde_json::Value) -> Result<()> {
        let _ = resources;
        Err(ShimError::Unimplemented(format!("runtime cannot update container {id}")))
    }
    /// Checkpoints the container to `image_path` (which exists); with
    /// `exit` it stops afterwards.
    async fn checkpoint(&self, id: &str, image_path: &str, exit: bool) -> Result<()> {
        let _ = (image_path, exit);
        Err(ShimError::Unimplemented(format!("runtime cannot checkpoint container {id}")))
    }
    /// The reaper this runtime's processes are reaped by, for the helper
    /// processes the shim starts itself (`binary://` loggers); `None` for a
    /// runtime that runs no real processes, which then refuses them.
    fn reaper(&self) -> Option<&crate::Reaper> {
        None
    }

    /// The resource usage of the container whose init is `pid`.
    async fn stats(&self, id: &str, pid: u32) -> Result<shim_proto::v1::StatsResponse> {
        let _ = pid;
        Err(ShimError::Unimplemented(format!("runtime cannot report the stats of container {id}")))
    }
}
