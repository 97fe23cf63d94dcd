//! What the shim records of its container and processes, and the guards
//! that keep those records right when an operation fails half-way.

use std::collections::BTreeMap;
use std::os::fd::OwnedFd;
use std::sync::{Arc, Mutex};

use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;

use super::lock;
use crate::io::Pumps;
use crate::logger::Logger;
use crate::spec::ProcessDefaults;

/// One process of the container, as the shim records it.
pub(super) struct Proc {
    pub(super) pid: u32,
    pub(super) init: bool,
    pub(super) terminal: bool,
    /// The pty master; dropped once the process has exited.
    pub(super) console: Mutex<Option<Arc<OwnedFd>>>,
    pub(super) stdin_closer: Mutex<Option<oneshot::Sender<()>>>,
    /// Set by the reaper's report; what `State` shows.
    pub(super) reaped: Mutex<Option<u32>>,
    /// Set once the EXIT is published (output drained); what `Wait` waits for.
    pub(super) exited: watch::Sender<Option<u32>>,
    /// A `binary://` logger still running after the exit: stopped by Delete.
    pub(super) logger: Mutex<Option<Logger>>,
}

impl Proc {
    pub(super) fn new(pid: u32, init: bool, pumps: &mut Pumps) -> Self {
        let (exited, _) = watch::channel(None);
        Self {
            pid,
            init,
            terminal: pumps.console().is_some(),
            console: Mutex::new(pumps.console()),
            stdin_closer: Mutex::new(pumps.take_stdin_closer()),
            reaped: Mutex::new(None),
            exited,
            logger: Mutex::new(None),
        }
    }

    pub(super) fn reaped(&self) -> Option<u32> {
        *lock(&self.reaped)
    }

    /// Stops the process's logger, if one still runs (see
    /// [`Logger::stop`]).
    pub(super) async fn stop_logger(&self) {
        let logger = lock(&self.logger).take();
        if let Some(mut logger) = logger {
            logger.stop().await;
        }
    }

    pub(super) async fn wait_exited(&self) -> u32 {
        let mut rx = self.exited.subscribe();
        let status = match rx.wait_for(Option::is_some).await {
            Ok(v) => v.unwrap_or_default(),
            // The sender lives in `self`, so this cannot happen.
            Err(_) => 255,
        };
        status
    }
}

/// The container: its init, its execs, and what Start and Pause changed.
pub(super) struct Container {
    pub(super) id: String,
    pub(super) init_pid: u32,
    pub(super) started: bool,
    /// Frozen by Pause, until Resume (or the Delete that thaws it).
    pub(super) paused: bool,
    pub(super) defaults: ProcessDefaults,
    pub(super) procs: BTreeMap<u32, Arc<Proc>>,
    pub(super) oom_task: Option<JoinHandle<()>>,
}

impl Container {
    /// Whether the init was reaped (or is not recorded at all).
    pub(super) fn init_exited(&self) -> bool {
        self.procs.get(&self.init_pid).is_none_or(|p| p.reaped().is_some())
    }
}

/// The shim's one lock-protected record: at most one container.
#[derive(Default)]
pub(super) struct ShimState {
    pub(super) creating: bool,
    pub(super) container: Option<Container>,
}

/// Counts an exec out of `execs_starting` however it ends.
pub(super) struct StartingGuard<'a>(pub(super) &'a watch::Sender<usize>);

impl Drop for StartingGuard<'_> {
    fn drop(&mut self) {
        self.0.send_modify(|n| *n = n.saturating_sub(1));
    }
}

/// Resets `creating` if a Create fails.
pub(super) struct CreatingGuard<'a> {
    pub(super) state: &'a Mutex<ShimState>,
}

impl Drop for CreatingGuard<'_> {
    fn drop(&mut self) {
        lock(self.state).creating = false;
    }
}
