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
//! There is one reaper per process, because `waitpid` is per process: a
//! second one would steal exits from the first. [`Reaper::start`] therefore
//! returns the process's reaper, starting it on the first call; every caller
//! (any number of shims, tests, the embedding program) shares it. It is the
//! one process-wide registry of the library, kept because the kernel's child
//! table it guards is process-wide too.
//!
//! A program that links the library and runs its own children while the
//! reaper runs spawns them through [`Reaper::spawn`] (a `std::process::Child`
//! and its exit) or [`Reaper::output`] (the equivalent of
//! `Command::output`), never by waiting for them itself.
//!
//! If the reaper thread ever died (a panic), every pending and later
//! [`ExitWaiter::wait`] returns `None` instead of hanging, and the next
//! [`Reaper::start`] starts a new thread.

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
    /// The wait status as `waitpid` reported it (for
    /// `std::os::unix::process::ExitStatusExt::from_raw`).
    pub raw: i32,
}

#[derive(Default)]
struct Table {
    /// Set when the reaper thread has died: nothing will be delivered.
    dead: bool,
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

    /// Waits for the exit. `None` only if the reaper thread died (then at
    /// once, never a hang).
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
            // Dropping the sender makes the waiter return `None`.
            None if table.dead => drop(tx),
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
    /// The process's reaper: on the first call, makes the process a child
    /// subreaper and starts the reaper thread; later calls return the same
    /// reaper (a clone), so two parts of a program can never run two.
    pub fn start() -> Result<Self, ReaperError> {
        static PROCESS_REAPER: Mutex<Option<Reaper>> = Mutex::new(None);
        let mut slot = PROCESS_REAPER.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(reaper) = slot.as_ref().filter(|r| !r.inner.lock().dead) {
            return Ok(reaper.clone());
        }
        nix::sys::prctl::set_child_subreaper(true).map_err(ReaperError::Subreaper)?;
        let inner = Arc::new(Inner { table: Mutex::new(Table::default()), spawned: Condvar::new() });
        let thread_inner = Arc::clone(&inner);
        std::thread::Builder::new()
            .name("shim-reaper".into())
            .stack_size(64 * 1024)
            .spawn(move || {
                let _dead = DeadOnExit(&thread_inner);
                reap_loop(&thread_inner);
            })
            .map_err(ReaperError::Thread)?;
        let reaper = Self { inner };
        *slot = Some(reaper.clone());
        Ok(reaper)
    }

    /// Whether `self` and `other` are the same reaper.
    pub fn same_as(&self, other: &Reaper) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }

    /// Spawns `cmd` and subscribes to its exit before it can be reaped.
    pub fn spawn(&self, cmd: &mut Command) -> io::Result<(Child, ExitWaiter)> {
        let mut table = self.inner.lock();
        if table.dead {
            return Err(io::Error::other("the reaper thread has died; start a new one with Reaper::start"));
        }
        let child = cmd.spawn()?;
        let pid = child.id();
        let (tx, rx) = oneshot::channel();
        table.waiters.entry(pid_i32(pid)).or_default().push(tx);
        table.generation = table.generation.wrapping_add(1);
        drop(table);
        self.inner.spawned.notify_all();
        Ok((child, ExitWaiter { pid, rx }))
    }

    /// Runs `cmd` to its end and collects its output, like
    /// `std::process::Command::output`, with the reaper doing the waiting:
    /// a program that links the shim runs its own commands this way.
    /// stdin is what `cmd` sets (inherited by default, as with `spawn`);
    /// stdout and stderr are captured.
    pub async fn output(&self, cmd: &mut Command) -> io::Result<std::process::Output> {
        use std::os::unix::process::ExitStatusExt;
        use tokio::io::AsyncReadExt;
        cmd.stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped());
        let (mut child, waiter) = self.spawn(cmd)?;
        let read = |pipe: Option<std::fs::File>| async move {
            let mut buf = Vec::new();
            if let Some(file) = pipe {
                let mut rx = tokio::net::unix::pipe::Receiver::from_file_unchecked(file)?;
                rx.read_to_end(&mut buf).await?;
            }
            io::Result::Ok(buf)
        };
        let stdout = child.stdout.take().map(|p| std::fs::File::from(std::os::fd::OwnedFd::from(p)));
        let stderr = child.stderr.take().map(|p| std::fs::File::from(std::os::fd::OwnedFd::from(p)));
        let (stdout, stderr, exit) = tokio::join!(read(stdout), read(stderr), waiter.wait());
        let exit = exit.ok_or_else(|| io::Error::other("the reaper thread has died"))?;
        Ok(std::process::Output {
            status: std::process::ExitStatus::from_raw(exit.raw),
            stdout: stdout?,
            stderr: stderr?,
        })
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
        Some(Exit { pid, status: libc::WEXITSTATUS(status).unsigned_abs(), raw: status })
    } else if libc::WIFSIGNALED(status) {
        Some(Exit { pid, status: 128 + libc::WTERMSIG(status).unsigned_abs(), raw: status })
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

/// Marks the reaper dead when its thread ends (only by a panic) and drops
/// every pending subscription, so that no waiter hangs.
struct DeadOnExit<'a>(&'a Inner);

impl Drop for DeadOnExit<'_> {
    fn drop(&mut self) {
        let mut table = self.0.lock();
        table.dead = true;
        table.waiters.clear();
        tracing::error!("the reaper thread has died; exits are no longer delivered");
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

#[cfg(test)]
mod tests {
    use super::*;

    fn runtime() -> tokio::runtime::Runtime {
        match tokio::runtime::Builder::new_current_thread().enable_all().build() {
            Ok(rt) => rt,
            Err(e) => panic!("runtime: {e}"),
        }
    }

    #[test]
    fn a_process_has_one_reaper_and_its_own_commands_run_through_it() {
        let (a, b) = match (Reaper::start(), Reaper::start()) {
            (Ok(a), Ok(b)) => (a, b),
            _ => panic!("cannot start the reaper"),
        };
        assert!(a.same_as(&b), "a second start must return the first reaper");
        let rt = runtime();
        for i in 0..25 {
            let mut cmd = Command::new("sh");
            cmd.args(["-c", &format!("echo out{i}; echo err >&2; exit {}", i % 3)]);
            let out = rt
                .block_on(async { tokio::time::timeout(std::time::Duration::from_secs(30), b.output(&mut cmd)).await });
            let out = match out {
                Ok(Ok(out)) => out,
                other => panic!("command {i}: {other:?}"),
            };
            assert_eq!(out.status.code(), Some(i % 3));
            assert_eq!(out.stdout, format!("out{i}\n").into_bytes());
            assert_eq!(out.stderr, b"err\n".to_vec());
        }
    }

    #[test]
    fn waiters_of_a_dead_reaper_return_none_instead_of_hanging() {
        let inner = Arc::new(Inner { table: Mutex::new(Table::default()), spawned: Condvar::new() });
        let (tx, rx) = oneshot::channel();
        inner.lock().waiters.entry(12345).or_default().push(tx);
        let pending = ExitWaiter { pid: 12345, rx };
        let monitor = Monitor { inner: Arc::clone(&inner), id: 0 };
        let thread_inner = Arc::clone(&inner);
        let died = std::thread::spawn(move || {
            let _dead = DeadOnExit(&thread_inner);
            panic!("the reaper thread fails");
        })
        .join();
        assert!(died.is_err());
        let rt = runtime();
        let later = monitor.watch(54321);
        let got = rt.block_on(async {
            tokio::time::timeout(std::time::Duration::from_secs(10), async {
                (pending.wait().await, later.wait().await)
            })
            .await
        });
        assert_eq!(got.ok(), Some((None, None)));
        let reaper = Reaper { inner };
        assert!(reaper.spawn(&mut Command::new("true")).is_err());
    }
}
