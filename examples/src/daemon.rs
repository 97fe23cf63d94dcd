//! The `shim` daemon: one container's runc shim served over gRPC.
//!
//! Life cycle:
//! - It is a child subreaper and keeps running when the client that started
//!   it dies; the container's exit is still reported to the next client.
//! - Once the init process has been deleted, it answers that call, removes its
//!   socket and work directory, and exits 0.
//! - On SIGTERM or SIGINT it kills the container's processes, deletes the
//!   container, cleans up and exits 0.
//! - After a SIGKILL, the next `shim` on the same socket path replaces the
//!   stale socket and starts cleanly.

use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use shim_core::proto::v1::*;
use shim_core::{EventStream, Reaper, RuncConfig, RuncShim, Shim};
use shim_transport_grpc::{serve_unix, ServerOptions};
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::watch;

/// Settings of the daemon.
#[derive(Debug, Clone)]
pub struct DaemonConfig {
    /// The socket to serve on.
    pub socket: PathBuf,
    /// The shim's private work directory (removed at exit).
    pub work_dir: PathBuf,
    /// The runtime binary.
    pub runtime_binary: String,
    /// runc's `--root`.
    pub runtime_root: Option<PathBuf>,
    /// runc's `--systemd-cgroup`.
    pub systemd_cgroup: bool,
}

/// The runc shim, noticing when its init process is deleted.
#[derive(Clone)]
struct DaemonShim {
    shim: RuncShim,
    done: Arc<watch::Sender<bool>>,
    /// Calls that can make a process hold a read guard; the teardown takes
    /// the write side, so it sees every process they made.
    gate: Arc<tokio::sync::RwLock<bool>>,
}

impl DaemonShim {
    /// Runs `work`, a call that may create a process, unless the shim is
    /// stopping. It runs in a task of its own that holds the admission: the
    /// shim finishes such work even when the caller goes away, so the
    /// admission must last as long as the work, not as long as the call.
    async fn admitted<T, Fut>(&self, work: impl FnOnce(DaemonShim) -> Fut) -> shim_core::Result<T>
    where
        T: Send + 'static,
        Fut: std::future::Future<Output = shim_core::Result<T>> + Send + 'static,
    {
        let admission = Arc::clone(&self.gate).read_owned().await;
        if *admission {
            return Err(shim_core::ShimError::Unavailable("the shim is shutting down".into()));
        }
        let work = work(self.clone());
        let task = tokio::spawn(async move {
            let _admission = admission;
            work.await
        });
        task.await.unwrap_or_else(|e| Err(shim_core::ShimError::Internal(format!("call task failed: {e}"))))
    }
}

#[async_trait]
impl Shim for DaemonShim {
    async fn create(&self, r: CreateRequest) -> shim_core::Result<CreateResponse> {
        self.admitted(|this| async move { this.shim.create(r).await }).await
    }
    async fn start(&self, r: StartRequest) -> shim_core::Result<()> {
        self.admitted(|this| async move { this.shim.start(r).await }).await
    }
    async fn delete(&self, r: DeleteRequest) -> shim_core::Result<DeleteResponse> {
        // One task for the delete and the notice, so a client that goes away
        // mid-call cannot leave the daemon running without its container.
        let this = self.clone();
        let task = tokio::spawn(async move {
            let init = this.shim.state(StateRequest {}).await?.processes.first().map(|p| p.pid);
            let result = this.shim.delete(r).await;
            if result.is_ok() && init == Some(r.pid) {
                // The container is gone: this shim's work is done.
                let _ = this.done.send(true);
            }
            result
        });
        task.await.unwrap_or_else(|e| Err(shim_core::ShimError::Internal(format!("delete task failed: {e}"))))
    }
    async fn exec(&self, r: ExecRequest) -> shim_core::Result<ExecResponse> {
        self.admitted(|this| async move { this.shim.exec(r).await }).await
    }
    async fn pty(&self, r: PtyRequest) -> shim_core::Result<()> {
        self.shim.pty(r).await
    }
    async fn events(&self, r: EventsRequest) -> shim_core::Result<EventStream> {
        self.shim.events(r).await
    }
    async fn state(&self, r: StateRequest) -> shim_core::Result<StateResponse> {
        self.shim.state(r).await
    }
    async fn kill(&self, r: KillRequest) -> shim_core::Result<()> {
        self.shim.kill(r).await
    }
    async fn wait(&self, r: WaitRequest) -> shim_core::Result<WaitResponse> {
        self.shim.wait(r).await
    }
    async fn close_stdin(&self, r: CloseStdinRequest) -> shim_core::Result<()> {
        self.shim.close_stdin(r).await
    }
    async fn pause(&self, r: shim_proto::v1::PauseRequest) -> shim_core::Result<()> {
        self.shim.pause(r).await
    }
    async fn resume(&self, r: shim_proto::v1::ResumeRequest) -> shim_core::Result<()> {
        self.shim.resume(r).await
    }
    async fn list_pids(
        &self,
        r: shim_proto::v1::ListPidsRequest,
    ) -> shim_core::Result<shim_proto::v1::ListPidsResponse> {
        self.shim.list_pids(r).await
    }
    async fn update(&self, r: shim_proto::v1::UpdateRequest) -> shim_core::Result<()> {
        self.shim.update(r).await
    }
    async fn checkpoint(&self, r: shim_proto::v1::CheckpointRequest) -> shim_core::Result<()> {
        self.shim.checkpoint(r).await
    }
    async fn stats(&self, r: shim_proto::v1::StatsRequest) -> shim_core::Result<shim_proto::v1::StatsResponse> {
        self.shim.stats(r).await
    }
}

/// How long the teardown after SIGTERM or SIGINT may take.
const TEARDOWN_LIMIT: std::time::Duration = std::time::Duration::from_secs(30);

/// Why the daemon failed.
pub type DaemonError = Box<dyn std::error::Error + Send + Sync>;

/// Runs the daemon until its container is deleted or it is told to stop.
/// `ready` is called once the socket accepts connections.
pub async fn run(config: DaemonConfig, ready: impl FnOnce(&std::path::Path)) -> Result<(), DaemonError> {
    let reaper = Reaper::start()?;
    let mut runc =
        RuncConfig::new(&config.work_dir).runtime(config.runtime_binary.clone()).systemd_cgroup(config.systemd_cgroup);
    runc.runtime_root = config.runtime_root.clone();
    let shim = RuncShim::new(runc, reaper)?;
    let (done_tx, mut done) = watch::channel(false);
    let gate = Arc::new(tokio::sync::RwLock::new(false));
    let daemon = Arc::new(DaemonShim { shim: shim.clone(), done: Arc::new(done_tx), gate: Arc::clone(&gate) });
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let server = serve_unix(daemon, &config.socket, ServerOptions::default())?;
    tracing::info!(socket = %config.socket.display(), "serving");
    ready(&config.socket);
    let why = tokio::select! {
        _ = done.wait_for(|d| *d) => None,
        _ = term.recv() => Some("SIGTERM"),
        _ = int.recv() => Some("SIGINT"),
    };
    match why {
        None => tracing::info!("container deleted; exiting"),
        Some(why) => {
            // Bounded, and a second signal cuts it short.
            tokio::select! {
                r = tokio::time::timeout(TEARDOWN_LIMIT, async {
                    // No new Create, Start or Exec from now on, and those in
                    // progress finish first, so the teardown sees what they made.
                    *gate.write().await = true;
                    teardown(&shim, why).await
                }) => {
                    if r.is_err() {
                        tracing::error!("teardown did not finish within {TEARDOWN_LIMIT:?}; exiting anyway");
                    }
                }
                _ = term.recv() => tracing::warn!("second signal; exiting without finishing the teardown"),
                _ = int.recv() => tracing::warn!("second signal; exiting without finishing the teardown"),
            }
        }
    }
    let result = server.shutdown().await;
    if let Err(e) = std::fs::remove_dir_all(&config.work_dir) {
        if e.kind() != std::io::ErrorKind::NotFound {
            tracing::warn!(error = %e, dir = %config.work_dir.display(), "cannot remove work directory");
        }
    }
    result.map_err(Into::into)
}

/// Kills and deletes the container, if there is one.
async fn teardown(shim: &RuncShim, why: &str) {
    tracing::info!("{why}: deleting the container");
    let init = shim.state(StateRequest {}).await.ok().and_then(|s| s.processes.first().map(|p| p.pid));
    if let Some(pid) = init {
        match shim.delete(DeleteRequest { pid }).await {
            Ok(r) => tracing::info!(pid, exit_status = r.exit_status, "container deleted"),
            Err(e) => tracing::error!(pid, error = %e, "cannot delete the container"),
        }
    }
}
