//! The one owner of `waitpid` in the process.
//!
//! A shim is a child subreaper: the container processes that runc starts are
//! re-parented to it, and it must reap them and every orphan of theirs. Two
//! parties waiting for the same child lose exits (one steals the other's), so
//! a [`Reaper`] reaps every child of the process, and delivers each exit to
//! whoever subscribed to that pid. Children the shim starts must therefore be
//! spawned through [`Reaper::spawn`], never with `tokio::process` or
//! `Command::output`.
//!
//! Subscriptions are made before the process can exit:
//! - [`Reaper::spawn`] holds the reaper's lock from fork until the pid is
//!   registered, and the reaper takes that lock before it reaps, so even a
//!   child that exits at once is delivered.
//! - A process whose pid is learnt only later (runc writes it to a pid file)
//!   is covered by a [`Monitor`] taken before runc runs: it records every
//!   exit until it is dropped, and [`Monitor::watch`] finds an exit that
//!   already happened.
//!
//! The reaper is a dedicated thread, not a task of some tokio runtime, so it
//! works under any runtime and outlives test runtimes. It blocks in
//! `waitid(P_ALL, WEXITED | WNOWAIT)`, which reports a zombie without
//! reaping it, then takes the lock and reaps that pid. The lock is what makes
//! `spawn` safe: the standard library itself waits for a child whose `exec`
//! failed, and must not find it already reaped.
//!
//! Only one `Reaper` may exist per process; share it by cloning (it is an
//! `Arc` inside).

use std::collections::HashMap;
use std::io;
use std::process::{Child, Command};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use nix::errno::Errno;
use tokio::sync::oneshot;

use crate::signal::Signal;

/// Errors of the reaper.
#[derive(Debug, thiserror::Error)]
pub enum ReaperError {
    /// `prctl(PR_SET_CHILD_SUBREAPER)` failed.
    #[error("cannot become a child subreaper: {0}")]
    Subreaper(Errno),
    /// The reaper thread could not be started.
    #[error("cannot start the reaper thread: {0}")]
    Thread(io::Error),
}

/// The exit of a reaped process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exit {
    /// The pid that exited.
    pub pid: u32,
    /// Its exit code, or 128 + the signal that killed it.
    pub status: u32,
}

#[derive(Default)]
struct Table {
    /// Subscribers per pid; an entry exists until the pid is reaped.
    waiters: HashMap<i32, Vec<oneshot::Sender<Exit>>>,
    /// Active monitors, each with the exits seen since it was taken.
    monitors: HashMap<u64, Vec<Exit>>,
    next_monitor: u64,
    /// Bumped on each spawn, so an idle reaper knows to look again.
    generation: u64,
}

struct Inner {
    table: Mutex<Table>,
    spawned: Condvar,
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, Table> {
        // A poisoned lock only means a panic elsewhere; the table is still
        // consistent because every critical section is a few map operations.
        self.table.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The process-wide reaper. Cloning shares it.
#[derive(Clone)]
pub struct Reaper {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Reaper {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reaper").finish_non_exhaustive()
    }
}

/// A future-like handle on one pid's exit.
#[derive(Debug)]
pub struct ExitWaiter {
    pid: u32,
    rx: oneshot::Receiver<Exit>,
}

impl ExitWaiter {
    /// The pid waited for.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Waits for the exit. `None` only if the reaper thread died.
    pub async fn wait(self) -> Option<Exit> {
        self.rx.await.ok()
    }

    /// The exit, if it has already been reaped.
    pub fn try_wait(&mut self) -> Option<Exit> {
        self.rx.try_recv().ok()
    }
}

/// Records every exit from its creation until it is dropped; see the module
/// documentation.
pub struct Monitor {
    inner: Arc<Inner>,
    id: u64,
}

impl Monitor {
    /// Subscribes to `pid`: if it exited since the monitor was taken, the
    /// waiter is ready at once.
    pub fn watch(&self, pid: u32) -> ExitWaiter {
        let mut table = self.inner.lock();
        let seen = table.monitors.get(&self.id).and_then(|exits| exits.iter().rev().find(|e| e.pid == pid).copied());
        let (tx, rx) = oneshot::channel();
        match seen {
            Some(exit) => {
                let _ = tx.send(exit);
            }
            None => table.waiters.entry(pid_i32(pid)).or_default().push(tx),
        }
        ExitWaiter { pid, rx }
    }
}

impl Drop for Monitor {
    fn drop(&mut self) {
        self.inner.lock().monitors.remove(&self.id);
    }
}

fn pid_i32(pid: u32) -> i32 {
    i32::try_from(pid).unwrap_or(i32::MAX)
}

impl Reaper {
    /// Makes the process a child subreaper and starts the reaper thread.
    ///
    /// Call it once per process (tests share one through
    /// `testing::shared_reaper`).
    pub fn start() -> Result<Self, ReaperError> {
        nix::sys::prctl::set_child_subreaper(true).map_err(ReaperError::Subreaper)?;
        let inner = Arc::new(Inner { table: Mutex::new(Table::default()), spawned: Condvar::new() });
        let thread_inner = Arc::clone(&inner);
        std::thread::Builder::new()
            .name("shim-reaper".into())
            .stack_size(64 * 1024)
            .spawn(move || reap_loop(&thread_inner))
            .map_err(ReaperError::Thread)?;
        Ok(Self { inner })
    }

    /// Spawns `cmd` and subscribes to its exit before it can be reaped.
    pub fn spawn(&self, cmd: &mut Command) -> io::Result<(Child, ExitWaiter)> {
        let mut table = self.inner.lock();
        let child = cmd.spawn()?;
        let pid = child.id();
        let (tx, rx) = oneshot::channel();
        table.waiters.entry(pid_i32(pid)).or_default().push(tx);
        table.generation = table.generation.wrapping_add(1);
        drop(table);
        self.inner.spawned.notify_all();
        Ok((child, ExitWaiter { pid, rx }))
    }

    /// Starts recording exits; see [`Monitor`].
    pub fn monitor(&self) -> Monitor {
        let mut table = self.inner.lock();
        let id = table.next_monitor;
        table.next_monitor = table.next_monitor.wrapping_add(1);
        table.monitors.insert(id, Vec::new());
        // A process started under a monitor is a descendant of ours, but it may
        // not be spawned through us (runc's children): make sure we look.
        table.generation = table.generation.wrapping_add(1);
        drop(table);
        self.inner.spawned.notify_all();
        Monitor { inner: Arc::clone(&self.inner), id }
    }

    /// Sends `signal` to `pid` if someone is subscribed to it and it has not
    /// been reaped yet.
    ///
    /// Because reaping takes the same lock, the pid cannot have been reused by
    /// another process: until we reap it, it stays ours (at worst a zombie).
    /// Returns `false` when the pid was not signalled for that reason.
    pub fn signal_unreaped(&self, pid: u32, signal: Signal) -> Result<bool, Errno> {
        let table = self.inner.lock();
        if !table.waiters.contains_key(&pid_i32(pid)) {
            return Ok(false);
        }
        match signal.send(pid) {
            Ok(()) => Ok(true),
            Err(e) => match Errno::from_raw(e.raw_os_error().unwrap_or(libc::EINVAL)) {
                // A zombie cannot be signalled but is still ours: report success.
                Errno::ESRCH => Ok(true),
                errno => Err(errno),
            },
        }
    }
}

/// Decodes a `waitpid` status. Done by hand rather than with nix's
/// `WaitStatus`, which has no real-time signals: a process killed by SIGRTMIN+3
/// must be reaped like any other.
fn exit_status(pid: i32, status: libc::c_int) -> Option<Exit> {
    let pid = pid.unsigned_abs();
    if libc::WIFEXITED(status) {
        Some(Exit { pid, status: libc::WEXITSTATUS(status).unsigned_abs() })
    } else if libc::WIFSIGNALED(status) {
        Some(Exit { pid, status: 128 + libc::WTERMSIG(status).unsigned_abs() })
    } else {
        None
    }
}

/// Waits until some child has exited and returns its pid, leaving it a
/// zombie (`WNOWAIT`), so that it is reaped only under the table's lock.
fn next_exited() -> Result<i32, Errno> {
    // SAFETY: an all-zero siginfo_t is a valid value of this plain C struct.
    let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
    // SAFETY: waitid writes one siginfo_t to the valid pointer.
    let rc = unsafe { libc::waitid(libc::P_ALL, 0, &mut info, libc::WEXITED | libc::WNOWAIT) };
    if rc < 0 {
        return Err(Errno::last());
    }
    // SAFETY: waitid filled si_pid for a WEXITED report (0 if none).
    Ok(unsafe { info.si_pid() })
}

/// Reaps `pid` if it has exited.
fn reap(pid: i32) -> Result<Option<Exit>, Errno> {
    let mut status: libc::c_int = 0;
    // SAFETY: waitpid writes one int to the valid pointer.
    let rc = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
    match rc {
        0 => Ok(None),
        r if r < 0 => Err(Errno::last()),
        r => Ok(exit_status(r, status)),
    }
}

fn reap_loop(inner: &Inner) {
    loop {
        let generation = inner.lock().generation;
        match next_exited() {
            Ok(0) => {}
            Ok(pid) => {
                let mut table = inner.lock();
                match reap(pid) {
                    Ok(Some(exit)) => deliver(&mut table, exit),
                    Ok(None) => {}
                    // Someone else reaped it: the standard library does for a
                    // child whose exec failed, while `spawn` holds the lock.
                    Err(Errno::ECHILD) => {}
                    Err(e) => tracing::warn!(pid, error = %e, "waitpid failed"),
                }
            }
            Err(Errno::EINTR) => {}
            Err(Errno::ECHILD) => {
                // No children: sleep until something is spawned.
                let mut table = inner.lock();
                while table.generation == generation {
                    table = inner.spawned.wait(table).unwrap_or_else(|e| e.into_inner());
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "waitid failed");
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
        }
    }
}

fn deliver(table: &mut Table, exit: Exit) {
    tracing::trace!(pid = exit.pid, status = exit.status, "reaped");
    for seen in table.monitors.values_mut() {
        seen.push(exit);
    }
    if let Some(waiters) = table.waiters.remove(&pid_i32(exit.pid)) {
        for tx in waiters {
            let _ = tx.send(exit);
        }
    }
}
