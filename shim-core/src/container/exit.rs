//! How a process's exit becomes its EXIT event, in order: output drained
//! first, an init's EXIT after the EXITs of the execs that die with it and
//! after any OOM it caused, and never before STARTED. The OOM watch lives
//! here too, since it shares that ordering.

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use shim_proto::v1::EventType;
use tokio::task::JoinHandle;

use super::state::Proc;
use super::{lock, ContainerShim};
use crate::io::{self, Pumps};
use crate::oom::OomWatcher;
use crate::runtime::Runtime;
use crate::signal::Signal;

/// After an OOM event, how long further OOM notifications are taken as the
/// same OOM (see `watch_oom`).
const OOM_COALESCE: Duration = Duration::from_millis(100);

impl<R: Runtime> ContainerShim<R> {
    pub(super) fn spawn_exit(&self, proc: Arc<Proc>, id: String, exit: BoxFuture<'static, Option<u32>>, pumps: Pumps) {
        let shim = self.clone();
        tokio::spawn(async move { shim.on_exit(proc, id, exit, pumps).await });
    }

    /// Follows one process to its EXIT event.
    async fn on_exit(&self, proc: Arc<Proc>, id: String, exit: BoxFuture<'static, Option<u32>>, mut pumps: Pumps) {
        // Whatever happens below (a panic, the task dropped with its
        // runtime), the process's waiters complete and its EXIT goes out.
        let _exit_anyway = ExitOnDrop { shim: self, proc: &proc, id: &id };
        let status = exit.await.unwrap_or(255);
        {
            // Under the state lock: an Exec checks the init and counts itself
            // in `execs_starting` in one step, either before this or after.
            let _state = lock(&self.inner.state);
            *lock(&proc.reaped) = Some(status);
        }
        let kill_rest = proc.init && self.kill_all_on_exit();
        if kill_rest {
            // Sharing a pid namespace it does not own (a pod's, the host's),
            // the container's other processes outlive its init unless
            // killed, as containerd's runc shim kills them; and one of them
            // holding the output open would hold up this EXIT.
            if let Err(e) = self.inner.runtime.kill_all(&id, Signal::KILL).await {
                tracing::warn!(container = %id, error = %e, "cannot kill what is left of the container after its init exited");
            }
        }
        pumps.drain(self.inner.config.io_grace).await;
        if proc.init {
            let deadline = io::deadline_after(self.inner.config.exec_exit_grace);
            // An exec being started now is either refused or registered.
            let mut starting = self.inner.execs_starting.subscribe();
            let _ = tokio::time::timeout_at(deadline, starting.wait_for(|n| *n == 0)).await;
            // Execs die with the init (its pid namespace ends, or the kill
            // above ended them): their EXITs go first. Otherwise they live
            // on, and waiting for them would only delay this EXIT.
            let others: Vec<Arc<Proc>> = {
                let state = lock(&self.inner.state);
                state
                    .container
                    .as_ref()
                    .filter(|c| kill_rest || c.defaults.execs_die_with_init)
                    .map(|c| c.procs.values().filter(|p| !p.init).cloned().collect())
                    .unwrap_or_default()
            };
            let all_exited = futures::future::join_all(others.iter().map(|o| o.wait_exited()));
            let _ = tokio::time::timeout_at(deadline, all_exited).await;
            let _started = self.inner.start_lock.lock().await;
            let mut oom = self.inner.oom_lock.lock().await;
            if let Some(mut watch) = oom.take() {
                if watch.report() {
                    self.publish(&id, EventType::Oom, 0, 0);
                }
            }
            if let Some(task) = lock(&self.inner.state).container.as_mut().and_then(|c| c.oom_task.take()) {
                task.abort();
            }
            self.publish(&id, EventType::Exit, proc.pid, status);
            proc.exited.send_replace(Some(status));
        } else {
            self.publish(&id, EventType::Exit, proc.pid, status);
            proc.exited.send_replace(Some(status));
        }
        // Close the pty master now: the entry may live on until Delete.
        lock(&proc.console).take();
        *lock(&proc.logger) = pumps.take_logger();
        drop(pumps);
    }

    /// Whether the init's exit kills the rest of the container (see
    /// [`ProcessDefaults::kill_all_on_exit`](crate::spec::ProcessDefaults)).
    fn kill_all_on_exit(&self) -> bool {
        lock(&self.inner.state).container.as_ref().is_some_and(|c| c.defaults.kill_all_on_exit)
    }

    /// Registers the OOM watcher, then follows it in a task. Registered
    /// first, so the init's exit finds it even if the task never ran.
    pub(super) async fn watch_oom(&self, id: String, watcher: Option<OomWatcher>) -> Option<JoinHandle<()>> {
        let watcher = Arc::new(watcher?);
        *self.inner.oom_lock.lock().await = Some(OomWatch { watcher: Arc::clone(&watcher), pausing: false });
        let shim = self.clone();
        Some(tokio::spawn(async move {
            loop {
                watcher.ready().await;
                // A container can reach its memory limit while `runc start`
                // is still running: wait for Start's STARTED, so OOM never
                // precedes it (same lock order as the init's exit).
                let published = {
                    let _started = shim.inner.start_lock.lock().await;
                    let mut guard = shim.inner.oom_lock.lock().await;
                    let Some(watch) = guard.as_mut() else { return };
                    let oom = watch.report();
                    if oom {
                        shim.publish(&id, EventType::Oom, 0, 0);
                    }
                    oom
                };
                // cgroup v1 notifies for every charge that fails while the
                // victim is dying (thousands within a second were seen,
                // enough to push every other event out of a slow
                // subscriber's ring), and a v2 `memory.oom.group` kill
                // counts each process it kills: what comes in meanwhile is
                // the same OOM, taken after the pause and not reported again
                // (nor by the init's exit, within the pause).
                if published {
                    tokio::time::sleep(OOM_COALESCE).await;
                    let mut guard = shim.inner.oom_lock.lock().await;
                    let Some(watch) = guard.as_mut() else { return };
                    watch.watcher.take();
                    watch.pausing = false;
                }
            }
        }))
    }
}

/// A container's OOM watcher, and whether an OOM event was published and
/// its pause has not ended.
pub(super) struct OomWatch {
    watcher: Arc<OomWatcher>,
    pausing: bool,
}

impl OomWatch {
    /// Takes the kills counted since the last call; whether they call for
    /// an OOM event: not during the pause after one, which stands for them.
    fn report(&mut self) -> bool {
        if self.watcher.take() == 0 || self.pausing {
            return false;
        }
        self.pausing = true;
        true
    }
}

/// Publishes a process's EXIT and completes its waiters if its exit handling
/// ended without doing so (a panic in it, or its task dropped): a Wait or
/// Delete must never hang on a process that is gone. The status is the
/// reaped one, or 255 if not even that was known.
struct ExitOnDrop<'a, R: Runtime> {
    shim: &'a ContainerShim<R>,
    proc: &'a Arc<Proc>,
    id: &'a str,
}

impl<R: Runtime> Drop for ExitOnDrop<'_, R> {
    fn drop(&mut self) {
        if self.proc.exited.borrow().is_some() {
            return;
        }
        let status = self.proc.reaped().unwrap_or(255);
        {
            let _state = lock(&self.shim.inner.state);
            lock(&self.proc.reaped).get_or_insert(status);
        }
        tracing::error!(pid = self.proc.pid, status, "exit handling ended early; publishing the exit now");
        self.shim.publish(self.id, EventType::Exit, self.proc.pid, status);
        self.proc.exited.send_replace(Some(status));
        lock(&self.proc.console).take();
    }
}
