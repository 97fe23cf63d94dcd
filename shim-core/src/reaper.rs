//! The one owner of `waitpid` for the shim's processes.
//!
//! A shim is a child subreaper: the container processes that runc starts are
//! re-parented to it, and it must reap them and every orphan of theirs. Two
//! parties waiting for the same child lose exits (one steals the other's),
//! so the [`Reaper`] reaps the processes that are the shim's, and delivers
//! each exit to whoever subscribed to that pid. A program that links the
//! library keeps its own children: see "Children of the embedding program".
//!
//! Which children are the shim's:
//! - those spawned through [`Reaper::spawn`] (runc calls; [`Reaper::output`]
//!   for the embedder's own commands), subscribed before they can exit: the
//!   reaper's lock is held from fork until the pid is registered;
//! - those whose pid is learnt later (runc writes it to a pid file) and
//!   watched through a [`Monitor`] taken before runc runs; [`Monitor::watch`]
//!   finds an exit that already happened;
//! - orphans re-parented to the subreaper, which nobody else will ever reap.
//!
//! How: each known pid gets a pidfd (`pidfd_open`), and the reaper thread
//! polls them; a pidfd turns readable when its process exits, and that pid
//! alone is reaped (`waitpid(pid)`). The thread never waits for "any child",
//! so a child the embedding program spawned itself is left to it. A task
//! that waits with [`ExitWaiter::wait_reaping`] polls the pidfd itself and
//! runs that same reap on its own thread, under the same lock, while the
//! reaper thread leaves the pid to it.
//!
//! # Children of the embedding program
//!
//! The kernel cannot tell the reaper which of the process's children were
//! forked by the program itself (`std::process::Command`, `tokio::process`,
//! a CNI plugin call) and which are orphans of a container. So an unknown
//! zombie child is left alone for [`STRANGER_GRACE`] (2 s), which is ample
//! for a program that waits for its own children (`output()`, `status()`,
//! `wait()`, tokio's SIGCHLD handling all reap at once); one still a zombie
//! after that is an orphan, and is reaped so that no zombie stays. Every
//! [`SCAN_INTERVAL`] (1 s) the reaper asks whether any child is a zombie
//! (`waitid` with `WNOWAIT`, which reaps nothing), and only then looks
//! through `/proc/self/task/*/children`. A program that waits for a child of its own
//! later than 2 s after it exited must spawn it through [`Reaper::spawn`]
//! instead.
//!
//! The reaper is a dedicated thread, not a task of some tokio runtime, so it
//! works under any runtime and outlives test runtimes. There is one per
//! process: [`Reaper::start`] returns the process's reaper, starting it on
//! the first call; every caller (any number of shims, tests, the embedding
//! program) shares it. It is the one process-wide registry of the library,
//! kept because the kernel's child table it guards is process-wide too.
//!
//! If the reaper thread ever died (a panic), every pending and later
//! [`ExitWaiter::wait`] returns `None` instead of hanging, and the next
//! [`Reaper::start`] starts a new thread.

use std::collections::HashMap;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::process::{Child, Command};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

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
    /// A pidfd of each subscribed pid, which the reaper thread polls.
    pidfds: HashMap<i32, OwnedFd>,
    /// Unknown zombie children, and when each was first seen.
    strangers: HashMap<i32, Instant>,
    /// Pids whose pidfd a waiting task polls itself (and how many tasks):
    /// the reaper thread leaves them out of its poll, so that an exit wakes
    /// one thread, not two that then contend for this table.
    direct: HashMap<i32, usize>,
}

impl Table {
    /// Subscribes `tx` to `pid`'s exit.
    fn subscribe(&mut self, pid: i32, tx: oneshot::Sender<Exit>) {
        self.waiters.entry(pid).or_default().push(tx);
        if let std::collections::hash_map::Entry::Vacant(slot) = self.pidfds.entry(pid) {
            // Fails only if the pid was reaped by someone else already (or
            // on a kernel before 5.3): the scan then tries it directly.
            if let Some(fd) = pidfd_open(pid) {
                slot.insert(fd);
            }
        }
        self.strangers.remove(&pid);
    }
}

struct Inner {
    table: Mutex<Table>,
    /// An eventfd that wakes the reaper thread when a pid is subscribed.
    wake: OwnedFd,
}

impl Inner {
    fn new() -> io::Result<Self> {
        // SAFETY: eventfd takes two integers and returns a new descriptor.
        let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` was just created and is owned by nothing else.
        let wake = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(Self { table: Mutex::new(Table::default()), wake })
    }

    /// Wakes the reaper thread so that it polls the new pidfds.
    fn poke(&self) {
        let one: u64 = 1;
        // SAFETY: writes 8 bytes from a valid u64 to our eventfd.
        let _ = unsafe { libc::write(self.wake.as_raw_fd(), std::ptr::addr_of!(one).cast(), 8) };
    }

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
pub struct ExitWaiter {
    pid: u32,
    rx: oneshot::Receiver<Exit>,
    /// The reaper, with which [`ExitWaiter::wait_reaping`] reaps the pid
    /// from the waiting task; `None` when the exit was known at once.
    direct: Option<Arc<Inner>>,
}

impl std::fmt::Debug for ExitWaiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExitWaiter").field("pid", &self.pid).finish_non_exhaustive()
    }
}

impl ExitWaiter {
    /// The pid waited for.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Waits for the exit. `None` only if the reaper thread died (then at
    /// once, never a hang). Works under any executor: the reaper thread
    /// delivers the exit.
    pub async fn wait(self) -> Option<Exit> {
        self.rx.await.ok()
    }

    /// Like [`wait`](Self::wait), but the waiting task also polls the pid's
    /// pidfd and, when it fires, reaps the pid on its own thread, with the
    /// reaper's code under the reaper's lock (and the reaper thread leaves
    /// the pid alone meanwhile). An exit then wakes one thread instead of
    /// two, the reaper thread and then the task's: 20-35 us less per exit
    /// on our benchmark VM, which halts idle CPUs. The shim waits for runc
    /// and container processes this way.
    ///
    /// Outside a tokio runtime it is [`wait`](Self::wait).
    ///
    /// Poll the future to its end or drop it: while it is pending the
    /// reaper thread leaves the pid to it, and its exit reaches other
    /// waiters only through it (or through the reaper's scan for zombies,
    /// once a second, if the future is never polled again).
    ///
    /// # Panics
    ///
    /// In a tokio runtime without its I/O driver (`enable_io`), as
    /// `tokio::net` types do.
    pub async fn wait_reaping(mut self) -> Option<Exit> {
        if let Some(inner) = self.direct.take() {
            if tokio::runtime::Handle::try_current().is_ok() {
                if let Some((claim, fd)) = Direct::take(&inner, pid_i32(self.pid)) {
                    // SAFETY: an OwnedFd stays open, and the same descriptor,
                    // for as long as the AsyncFd owns it.
                    let registered =
                        unsafe { tokio::io::unix::AsyncFd::register_with_interest(fd, tokio::io::Interest::READABLE) };
                    if let Ok(fd) = registered {
                        return wait_direct(self.pid, self.rx, &inner, claim, &fd).await;
                    }
                }
            }
        }
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
        let subscribed = match seen {
            Some(exit) => {
                let _ = tx.send(exit);
                false
            }
            // Dropping the sender makes the waiter return `None`.
            None if table.dead => false,
            None => {
                table.subscribe(pid_i32(pid), tx);
                true
            }
        };
        drop(table);
        self.inner.poke();
        ExitWaiter { pid, rx, direct: subscribed.then(|| Arc::clone(&self.inner)) }
    }
}

impl Drop for Monitor {
    fn drop(&mut self) {
        self.inner.lock().monitors.remove(&self.id);
    }
}

/// [`ExitWaiter::wait_reaping`] with the pid's pidfd registered in the runtime.
async fn wait_direct(
    pid: u32,
    mut rx: oneshot::Receiver<Exit>,
    inner: &Inner,
    direct: Direct<'_>,
    fd: &tokio::io::unix::AsyncFd<OwnedFd>,
) -> Option<Exit> {
    tokio::select! {
        biased;
        got = &mut rx => return got.ok(),
        ready = fd.readable() => {
            if ready.is_ok() {
                let mut table = inner.lock();
                // Still subscribed means not reaped: the pid cannot have
                // been reused, and nobody else has its exit.
                if !table.dead && table.waiters.contains_key(&pid_i32(pid)) {
                    reap_known(&mut table, pid_i32(pid));
                }
            }
        }
    }
    // Delivered by the reap above; or else (the process was not reapable
    // yet, or the pidfd could not be polled) by the reaper thread, whose
    // poll of the pid the released claim resumes.
    drop(direct);
    rx.await.ok()
}

/// A waiting task's claim on polling a pid's pidfd, for as long as the task
/// waits. Dropped (the exit came, or the wait was cancelled), the reaper
/// thread polls the pid again if it is still unreaped.
struct Direct<'a> {
    inner: &'a Inner,
    pid: i32,
}

impl<'a> Direct<'a> {
    /// Claims `pid`, with a descriptor of its pidfd to poll, if it is still
    /// subscribed (not reaped) and has a pidfd.
    fn take(inner: &'a Inner, pid: i32) -> Option<(Self, OwnedFd)> {
        let mut table = inner.lock();
        if table.dead || !table.waiters.contains_key(&pid) {
            return None;
        }
        let fd = table.pidfds.get(&pid)?.try_clone().ok()?;
        *table.direct.entry(pid).or_default() += 1;
        drop(table);
        // The reaper thread may be polling the pid's pidfd already.
        inner.poke();
        Some((Self { inner, pid }, fd))
    }
}

impl Drop for Direct<'_> {
    fn drop(&mut self) {
        let mut table = self.inner.lock();
        if let std::collections::hash_map::Entry::Occupied(mut claims) = table.direct.entry(self.pid) {
            *claims.get_mut() = claims.get().saturating_sub(1);
            if *claims.get() == 0 {
                claims.remove();
            }
        }
        // The reaper thread's poll is level-triggered: an exit that came
        // while only this (now cancelled) waiter watched is found at once.
        let orphaned = table.pidfds.contains_key(&self.pid) && !table.direct.contains_key(&self.pid);
        drop(table);
        if orphaned {
            self.inner.poke();
        }
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
        let inner = Arc::new(Inner::new().map_err(ReaperError::Thread)?);
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
        table.subscribe(pid_i32(pid), tx);
        drop(table);
        self.inner.poke();
        Ok((child, ExitWaiter { pid, rx, direct: Some(Arc::clone(&self.inner)) }))
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
                // `from_file` makes the pipe non-blocking: read blocking, one
                // pipe's read would stall the runtime's thread, and a child
                // filling the other pipe meanwhile would never finish.
                let mut rx = tokio::net::unix::pipe::Receiver::from_file(file)?;
                rx.read_to_end(&mut buf).await?;
            }
            io::Result::Ok(buf)
        };
        let stdout = child.stdout.take().map(|p| std::fs::File::from(std::os::fd::OwnedFd::from(p)));
        let stderr = child.stderr.take().map(|p| std::fs::File::from(std::os::fd::OwnedFd::from(p)));
        let (stdout, stderr, exit) = tokio::join!(read(stdout), read(stderr), waiter.wait_reaping());
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

/// How long an unknown zombie child is left for its owner to reap.
pub const STRANGER_GRACE: Duration = Duration::from_secs(2);
/// How often the process's children are looked through for strangers.
pub const SCAN_INTERVAL: Duration = Duration::from_secs(1);

fn pidfd_open(pid: i32) -> Option<OwnedFd> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    let fd = i32::try_from(fd).ok().filter(|fd| *fd >= 0)?;
    // SAFETY: `fd` was just created and is owned by nothing else.
    Some(unsafe { OwnedFd::from_raw_fd(fd) })
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

/// Reaps a subscribed pid whose pidfd fired (or that has none), under the
/// table's lock.
fn reap_known(table: &mut Table, pid: i32) {
    match reap(pid) {
        Ok(Some(exit)) => deliver(table, exit),
        Ok(None) => {}
        Err(Errno::ECHILD) => {
            // Not our child (any more): somebody else reaped it, or it is not
            // a child at all. Its waiters learn nothing (None) rather than
            // waiting for ever.
            table.waiters.remove(&pid);
            table.pidfds.remove(&pid);
        }
        Err(e) => tracing::warn!(pid, error = %e, "waitpid failed"),
    }
}

/// Whether any child of this process (of any of its threads) is a zombie
/// now. Nothing is reaped: `WNOWAIT` leaves it waitable.
fn any_zombie_child() -> bool {
    // SAFETY: an all-zero siginfo_t is valid; waitid writes into it.
    let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
    // SAFETY: waitid with a valid siginfo pointer; WNOHANG so it never blocks.
    let rc = unsafe { libc::waitid(libc::P_ALL, 0, &mut info, libc::WEXITED | libc::WNOHANG | libc::WNOWAIT) };
    // SAFETY: si_pid is the field waitid fills (0 when no child was ready).
    rc == 0 && unsafe { info.si_pid() } != 0
}

/// The process's children that are zombies now.
fn zombie_children() -> Vec<i32> {
    let mut zombies = Vec::new();
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else { return zombies };
    for task in tasks.flatten() {
        let Ok(children) = std::fs::read_to_string(task.path().join("children")) else { continue };
        for pid in children.split_whitespace().filter_map(|p| p.parse::<i32>().ok()) {
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { continue };
            // The command may hold spaces and parentheses: the state follows the last ')'.
            let state = stat.rsplit_once(')').and_then(|(_, rest)| rest.split_whitespace().next());
            if state == Some("Z") {
                zombies.push(pid);
            }
        }
    }
    zombies
}

/// Looks through the children: subscribed pids without a pidfd are tried
/// directly; unknown zombies are reaped once they were seen for
/// [`STRANGER_GRACE`].
fn scan(inner: &Inner) {
    {
        let table = inner.lock();
        let unpolled = table.waiters.keys().any(|p| !table.pidfds.contains_key(p));
        // The usual case, every second of an idle shim: nothing to do. One
        // syscall says so, instead of reading a /proc file per child (which
        // also kept the code for it resident).
        if !unpolled && table.strangers.is_empty() && !any_zombie_child() {
            return;
        }
    }
    let zombies = zombie_children();
    let now = Instant::now();
    let mut table = inner.lock();
    let unpolled: Vec<i32> = table.waiters.keys().filter(|p| !table.pidfds.contains_key(p)).copied().collect();
    for pid in unpolled {
        reap_known(&mut table, pid);
    }
    table.strangers.retain(|pid, _| zombies.contains(pid));
    for pid in zombies {
        if table.waiters.contains_key(&pid) {
            // A task claimed it (`wait_reaping`) and should have reaped it
            // at once; one that is no longer polled must not keep it from
            // the others who wait for it.
            if table.direct.contains_key(&pid) {
                reap_known(&mut table, pid);
            }
            continue;
        }
        let first = *table.strangers.entry(pid).or_insert(now);
        if now.duration_since(first) >= STRANGER_GRACE {
            table.strangers.remove(&pid);
            if let Ok(Some(exit)) = reap(pid) {
                tracing::debug!(pid, "reaped an orphan");
                deliver(&mut table, exit);
            }
        }
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
        table.pidfds.clear();
        tracing::error!("the reaper thread has died; exits are no longer delivered");
    }
}

fn reap_loop(inner: &Inner) {
    let mut last_scan = Instant::now();
    loop {
        let watched: Vec<(i32, libc::c_int)> = {
            let table = inner.lock();
            table
                .pidfds
                .iter()
                .filter(|(p, _)| !table.direct.contains_key(p))
                .map(|(p, fd)| (*p, fd.as_raw_fd()))
                .collect()
        };
        let mut fds: Vec<libc::pollfd> = Vec::with_capacity(watched.len() + 1);
        fds.push(libc::pollfd { fd: inner.wake.as_raw_fd(), events: libc::POLLIN, revents: 0 });
        fds.extend(watched.iter().map(|(_, fd)| libc::pollfd { fd: *fd, events: libc::POLLIN, revents: 0 }));
        let until_scan = SCAN_INTERVAL.saturating_sub(last_scan.elapsed());
        let timeout = libc::c_int::try_from(until_scan.as_millis()).unwrap_or(1000).max(1);
        let nfds = libc::nfds_t::try_from(fds.len()).unwrap_or(libc::nfds_t::MAX);
        // SAFETY: `fds` is a valid array of `nfds` pollfd structs for the call.
        let rc = unsafe { libc::poll(fds.as_mut_ptr(), nfds, timeout) };
        if rc < 0 && Errno::last() != Errno::EINTR {
            tracing::error!(error = %Errno::last(), "poll failed");
            std::thread::sleep(Duration::from_millis(10));
        }
        let mut ready = fds.iter().map(|p| p.revents != 0);
        if ready.next() == Some(true) {
            let mut buf = [0u8; 8];
            // SAFETY: reads 8 bytes into a valid buffer from our eventfd.
            let _ = unsafe { libc::read(inner.wake.as_raw_fd(), buf.as_mut_ptr().cast(), 8) };
        }
        let fired: Vec<i32> = watched.iter().zip(ready).filter(|(_, r)| *r).map(|((pid, _), _)| *pid).collect();
        if !fired.is_empty() {
            let mut table = inner.lock();
            // A waiting task may have reaped one of them since the poll
            // began (see `wait_direct`): only a pid still subscribed is
            // unreaped, and so still the process the pidfd was opened on.
            for pid in fired {
                if table.waiters.contains_key(&pid) {
                    reap_known(&mut table, pid);
                }
            }
        }
        if last_scan.elapsed() >= SCAN_INTERVAL {
            scan(inner);
            last_scan = Instant::now();
        }
    }
}

fn deliver(table: &mut Table, exit: Exit) {
    tracing::trace!(pid = exit.pid, status = exit.status, "reaped");
    table.pidfds.remove(&pid_i32(exit.pid));
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

    fn reaper() -> Reaper {
        match Reaper::start() {
            Ok(r) => r,
            Err(e) => panic!("reaper: {e}"),
        }
    }

    /// `sh -c script` through the reaper, and a second waiter for it taken
    /// through a monitor.
    fn spawned_with_two_waiters(reaper: &Reaper, script: &str) -> (ExitWaiter, ExitWaiter) {
        let monitor = reaper.monitor();
        let mut cmd = Command::new("sh");
        cmd.args(["-c", script]);
        let (_child, first) = match reaper.spawn(&mut cmd) {
            Ok(s) => s,
            Err(e) => panic!("spawn: {e}"),
        };
        let second = monitor.watch(first.pid());
        (first, second)
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
    fn output_never_blocks_the_runtime_on_a_pipe() {
        let reaper = reaper();
        // 32 bytes (what the first read of the output asks for) and then a
        // second of silence: a blocking pipe would hold the runtime's only
        // thread in read() for that second, and the ticker could not run.
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let rt = runtime();
            let got = rt.block_on(async {
                let ticker = tokio::spawn(async {
                    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                    Instant::now()
                });
                let mut cmd = Command::new("sh");
                cmd.args(["-c", "printf %032d 0; sleep 1; head -c 204800 /dev/zero >&2; echo"]);
                let out = reaper.output(&mut cmd).await;
                let finished = Instant::now();
                let ticked = ticker.await.unwrap_or(finished);
                let out = out.map(|o| (o.stdout.len(), o.stderr.len())).ok();
                (out, finished.saturating_duration_since(ticked) > Duration::from_millis(500))
            });
            let _ = tx.send(got);
        });
        let got = rx.recv_timeout(Duration::from_secs(30));
        assert_eq!(got.ok(), Some((Some((33, 204_800)), true)), "(output, the runtime ran during the command)");
    }

    #[test]
    fn many_exits_are_reaped_by_the_tasks_that_wait_for_them() {
        let reaper = reaper();
        let rt = runtime();
        let mut pids = Vec::new();
        let statuses = rt.block_on(async {
            let mut waits = Vec::new();
            for i in 0..40u32 {
                let mut cmd = Command::new("sh");
                cmd.args(["-c", &format!("exit {}", i % 7)]);
                let (_child, waiter) = match reaper.spawn(&mut cmd) {
                    Ok(s) => s,
                    Err(e) => panic!("spawn: {e}"),
                };
                pids.push(pid_i32(waiter.pid()));
                waits.push(tokio::spawn(waiter.wait_reaping()));
            }
            let mut got = Vec::new();
            for w in waits {
                let exit = tokio::time::timeout(Duration::from_secs(30), w).await;
                got.push(exit.ok().and_then(|j| j.ok()).flatten().map(|e| e.status));
            }
            got
        });
        let expected: Vec<Option<u32>> = (0..40u32).map(|i| Some(i % 7)).collect();
        assert_eq!(statuses, expected);
        // Every claim on polling a pid was given back (the reaper is the
        // process's: other tests' claims may be there).
        let table = reaper.inner.lock();
        assert!(pids.iter().all(|p| !table.direct.contains_key(p)));
    }

    #[test]
    fn a_cancelled_wait_gives_the_pid_back_to_the_reaper_thread() {
        let reaper = reaper();
        let (first, second) = spawned_with_two_waiters(&reaper, "sleep 0.3; exit 5");
        let rt = runtime();
        // The first waiter claims the pid, then gives up before the exit.
        let cancelled =
            rt.block_on(async { tokio::time::timeout(Duration::from_millis(50), first.wait_reaping()).await });
        assert!(cancelled.is_err(), "the process exited too early for the test");
        assert!(!reaper.inner.lock().direct.contains_key(&pid_i32(second.pid())));
        // The second does not poll the pid itself: only the reaper thread
        // can deliver to it.
        let got = rt.block_on(async { tokio::time::timeout(Duration::from_secs(30), second.wait()).await });
        assert_eq!(got.ok().flatten().map(|e| e.status), Some(5));
    }

    #[test]
    fn a_claim_left_pending_does_not_keep_the_exit_from_others() {
        let reaper = reaper();
        let (first, second) = spawned_with_two_waiters(&reaper, "sleep 0.2; exit 4");
        let pid = pid_i32(first.pid());
        let rt = runtime();
        // Polled once (the claim is taken), then neither polled nor dropped.
        let mut parked = Box::pin(first.wait_reaping());
        let pending = rt.block_on(async {
            std::future::poll_fn(|cx| {
                std::task::Poll::Ready(std::future::Future::poll(parked.as_mut(), cx).is_pending())
            })
            .await
        });
        assert!(pending, "the process exited too early for the test");
        assert!(reaper.inner.lock().direct.contains_key(&pid));
        // The reaper's scan for zombies reaps it for the others.
        let got = rt.block_on(async { tokio::time::timeout(Duration::from_secs(10), second.wait()).await });
        assert_eq!(got.ok().flatten().map(|e| e.status), Some(4));
        drop(parked);
        assert!(!reaper.inner.lock().direct.contains_key(&pid));
    }

    #[test]
    fn waiters_of_a_dead_reaper_return_none_instead_of_hanging() {
        let inner = Arc::new(Inner::new().unwrap_or_else(|e| panic!("eventfd: {e}")));
        let (tx, rx) = oneshot::channel();
        inner.lock().waiters.entry(12345).or_default().push(tx);
        let pending = ExitWaiter { pid: 12345, rx, direct: None };
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
