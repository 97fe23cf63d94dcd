//! OOM notifications from the container's memory cgroup.
//!
//! cgroup v1: an eventfd registered on `memory.oom_control` through
//! `cgroup.event_control`. cgroup v2: inotify on `memory.events`, counting
//! `oom_kill`. Both are checked once more, without waiting, right before the
//! init's EXIT is published, so an OOM is always reported before the exit it
//! caused.
//!
//! On cgroup v2 the count starts from zero when the watch is armed (at
//! create, the cgroup being the container's own): a kill the cgroup counted
//! before that is reported too, at the latest with the init's exit.
//!
//! On cgroup v2 the container's cgroup may be gone by the time its count is
//! read (removed by the runtime or a cgroup manager right after the kill);
//! its files then read as nothing. The parent's `memory.events` counts the
//! kills of its whole subtree, so the kills it gained since the watcher was
//! made, less those already reported, are reported instead. (A sibling's
//! kill in that window would be counted too: the lesser evil than losing
//! this container's.) Tested against a fake cgroup directory: this project's
//! hosts are cgroup v1.

use std::fs;
use std::io::Write;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use tokio::sync::Notify;

use nix::sys::eventfd::{EfdFlags, EventFd};
use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};
use tokio::io::unix::AsyncFd;

use crate::stats::CgroupPaths;

/// A watcher of one container's OOM kills.
pub struct OomWatcher(Source);

enum Source {
    /// cgroup v1 eventfd.
    V1 { efd: AsyncFd<OwnedFd>, dir: PathBuf },
    /// cgroup v2 inotify on `memory.events`.
    V2 {
        inotify: AsyncFd<OwnedFd>,
        events: PathBuf,
        /// The cgroup's `oom_kill` count last read.
        seen: AtomicU64,
        /// The parent's `memory.events`, and its count when the watch began.
        parent: Option<(PathBuf, u64)>,
        /// Kills reported so far.
        reported: AtomicU64,
    },
    /// Fired by hand (a fake runtime).
    Manual(Arc<ManualInner>),
}

struct ManualInner {
    pending: AtomicU64,
    notify: Notify,
}

/// Fires OOM notifications of a watcher made by [`OomWatcher::manual`].
#[derive(Clone)]
pub struct OomTrigger(Arc<ManualInner>);

impl OomTrigger {
    /// Reports one OOM kill.
    pub fn fire(&self) {
        self.0.pending.fetch_add(1, Ordering::SeqCst);
        self.0.notify.notify_one();
    }
}

impl std::fmt::Debug for OomWatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match &self.0 {
            Source::V1 { .. } => "cgroup v1",
            Source::V2 { .. } => "cgroup v2",
            Source::Manual(_) => "manual",
        };
        f.debug_tuple("OomWatcher").field(&kind).finish()
    }
}

fn oom_kills(events: &Path) -> u64 {
    read_oom_kills(events).unwrap_or(0)
}

fn read_oom_kills(events: &Path) -> Option<u64> {
    fs::read_to_string(events).ok().map(|t| parse_oom_kills(&t))
}

/// The `oom_kill` count of a cgroup v2 `memory.events` file.
fn parse_oom_kills(text: &str) -> u64 {
    text.lines().find_map(|l| l.strip_prefix("oom_kill ").and_then(|v| v.trim().parse().ok())).unwrap_or(0)
}

fn register(fd: OwnedFd) -> std::io::Result<AsyncFd<OwnedFd>> {
    // SAFETY: an `OwnedFd` keeps its descriptor open and unchanged for as long
    // as the `AsyncFd` owns it.
    Ok(unsafe { AsyncFd::register_with_interest(fd, tokio::io::Interest::READABLE) }?)
}

impl OomWatcher {
    /// A watcher fired by hand through the returned trigger.
    pub fn manual() -> (Self, OomTrigger) {
        let inner = Arc::new(ManualInner { pending: AtomicU64::new(0), notify: Notify::new() });
        (Self(Source::Manual(Arc::clone(&inner))), OomTrigger(inner))
    }

    /// Watches the memory cgroup of a container whose cgroups are `paths`;
    /// `None` when it has none that can be watched (logged, not an error:
    /// OOM events are then not reported).
    pub fn for_cgroup(paths: &CgroupPaths) -> Option<Self> {
        let result = match paths {
            CgroupPaths::V2(dir) => Self::v2(dir.clone()),
            CgroupPaths::V1(_) => match paths.memory_dir() {
                Some(dir) => Self::v1(dir.to_path_buf()),
                None => Err(std::io::Error::new(std::io::ErrorKind::NotFound, "no memory controller")),
            },
        };
        match result {
            Ok(w) => Some(w),
            Err(e) => {
                tracing::warn!(?paths, error = %e, "cannot watch the container's memory cgroup for oom");
                None
            }
        }
    }

    /// [`OomWatcher::for_cgroup`] of the cgroups of process `pid`.
    pub fn for_pid(pid: u32) -> Option<Self> {
        Self::for_cgroup(&CgroupPaths::of_pid(pid).ok()?)
    }

    fn v1(dir: PathBuf) -> std::io::Result<Self> {
        let efd = EventFd::from_flags(EfdFlags::EFD_CLOEXEC | EfdFlags::EFD_NONBLOCK)?;
        let control = fs::File::open(dir.join("memory.oom_control"))?;
        let mut event_control = fs::OpenOptions::new().write(true).open(dir.join("cgroup.event_control"))?;
        // One write: the kernel parses each write call on its own.
        let line = format!("{} {}", efd.as_fd().as_raw_fd(), control.as_raw_fd());
        event_control.write_all(line.as_bytes())?;
        let fd: OwnedFd = efd.into();
        Ok(Self(Source::V1 { efd: register(fd)?, dir }))
    }

    fn v2(dir: PathBuf) -> std::io::Result<Self> {
        let events = dir.join("memory.events");
        let inotify = Inotify::init(InitFlags::IN_CLOEXEC | InitFlags::IN_NONBLOCK)?;
        inotify.add_watch(&events, AddWatchFlags::IN_MODIFY)?;
        // Counted from zero, not from what the file holds now: the cgroup is
        // the container's own (made by its `runc create`), so a kill it
        // already counts happened before the watch was armed and is this
        // container's, to be reported with the rest. The parent's base
        // leaves those in for the same reason.
        let before = oom_kills(&events);
        let parent = dir
            .parent()
            .map(|p| p.join("memory.events"))
            .and_then(|p| read_oom_kills(&p).map(|n| (p, n.saturating_sub(before))));
        let fd: OwnedFd = inotify.into();
        Ok(Self(Source::V2 {
            inotify: register(fd)?,
            events,
            seen: AtomicU64::new(0),
            parent,
            reported: AtomicU64::new(0),
        }))
    }

    /// Waits until the watcher may have something to report.
    pub async fn ready(&self) {
        let fd = match &self.0 {
            Source::V1 { efd, .. } => efd,
            Source::V2 { inotify, .. } => inotify,
            Source::Manual(m) => {
                if m.pending.load(Ordering::SeqCst) == 0 {
                    m.notify.notified().await;
                }
                return;
            }
        };
        match fd.readable().await {
            Ok(mut guard) => guard.clear_ready(),
            // Cannot wait on it any more: never ready again.
            Err(_) => std::future::pending::<()>().await,
        }
    }

    /// Consumes pending notifications without waiting; returns how many OOM
    /// kills happened since the last call.
    pub fn take(&self) -> u64 {
        match &self.0 {
            Source::Manual(m) => m.pending.swap(0, Ordering::SeqCst),
            Source::V1 { efd, dir } => {
                let mut buf = [0u8; 8];
                match nix::unistd::read(efd.get_ref().as_fd(), &mut buf) {
                    // The eventfd also fires when the cgroup is removed.
                    Ok(8) if dir.join("cgroup.event_control").exists() => u64::from_ne_bytes(buf),
                    _ => 0,
                }
            }
            Source::V2 { inotify, events, seen, parent, reported } => {
                let mut buf = [0u8; 4096];
                while matches!(nix::unistd::read(inotify.get_ref().as_fd(), &mut buf), Ok(n) if n > 0) {}
                let new = match read_oom_kills(events) {
                    Some(now) => now.saturating_sub(seen.swap(now, Ordering::Relaxed)),
                    // The cgroup is gone: ask its parent (see the module docs).
                    None => parent
                        .as_ref()
                        .and_then(|(path, base)| read_oom_kills(path).map(|now| now.saturating_sub(*base)))
                        .map(|subtree| subtree.saturating_sub(reported.load(Ordering::Relaxed)))
                        .unwrap_or(0),
                };
                reported.fetch_add(new, Ordering::Relaxed);
                new
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oom_kill_count_of_memory_events() {
        let events = "low 0\nhigh 0\nmax 12\noom 3\noom_kill 2\noom_group_kill 0\n";
        assert_eq!(parse_oom_kills(events), 2);
        assert_eq!(parse_oom_kills("oom 1\n"), 0);
        assert_eq!(parse_oom_kills("oom_kill x\n"), 0);
    }

    fn write_events(path: &Path, kills: u64) {
        let text = format!("low 0\nhigh 0\nmax 3\noom 1\noom_kill {kills}\noom_group_kill 0\n");
        if let Err(e) = fs::write(path, text) {
            panic!("{}: {e}", path.display());
        }
    }

    /// A cgroup v2 layout on a temporary directory: `parent/ctr`, each with
    /// a `memory.events`.
    fn fake_v2() -> (tempfile::TempDir, PathBuf) {
        let dir = match tempfile::tempdir() {
            Ok(d) => d,
            Err(e) => panic!("tempdir: {e}"),
        };
        let ctr = dir.path().join("ctr");
        if let Err(e) = fs::create_dir(&ctr) {
            panic!("{e}");
        }
        write_events(&dir.path().join("memory.events"), 5);
        write_events(&ctr.join("memory.events"), 0);
        (dir, ctr)
    }

    #[tokio::test]
    async fn a_v2_watcher_reports_a_kill_when_memory_events_changes() {
        let (_dir, ctr) = fake_v2();
        let watcher = match OomWatcher::v2(ctr.clone()) {
            Ok(w) => w,
            Err(e) => panic!("v2 watcher: {e}"),
        };
        assert_eq!(watcher.take(), 0);
        write_events(&ctr.join("memory.events"), 1);
        let ready = tokio::time::timeout(std::time::Duration::from_secs(10), watcher.ready()).await;
        assert!(ready.is_ok(), "no inotify wake-up for a changed memory.events");
        assert_eq!(watcher.take(), 1);
        assert_eq!(watcher.take(), 0);
    }

    #[tokio::test]
    async fn a_v2_kill_is_not_lost_when_the_cgroup_is_gone_before_it_was_read() {
        let (dir, ctr) = fake_v2();
        let watcher = match OomWatcher::v2(ctr.clone()) {
            Ok(w) => w,
            Err(e) => panic!("v2 watcher: {e}"),
        };
        // Killed, counted in the cgroup and (hierarchically) in its parent,
        // then the cgroup removed before the watcher looked.
        write_events(&ctr.join("memory.events"), 1);
        write_events(&dir.path().join("memory.events"), 6);
        if let Err(e) = fs::remove_dir_all(&ctr) {
            panic!("{e}");
        }
        assert_eq!(watcher.take(), 1);
        assert_eq!(watcher.take(), 0);
    }

    #[tokio::test]
    async fn a_v2_kill_read_before_the_cgroup_went_is_not_counted_twice() {
        let (dir, ctr) = fake_v2();
        let watcher = match OomWatcher::v2(ctr.clone()) {
            Ok(w) => w,
            Err(e) => panic!("v2 watcher: {e}"),
        };
        write_events(&ctr.join("memory.events"), 1);
        write_events(&dir.path().join("memory.events"), 6);
        assert_eq!(watcher.take(), 1);
        if let Err(e) = fs::remove_dir_all(&ctr) {
            panic!("{e}");
        }
        assert_eq!(watcher.take(), 0);
    }

    #[tokio::test]
    async fn a_v2_kill_before_the_watch_was_armed_is_reported() {
        let (dir, ctr) = fake_v2();
        write_events(&ctr.join("memory.events"), 1);
        write_events(&dir.path().join("memory.events"), 6);
        let watcher = OomWatcher::v2(ctr.clone()).unwrap_or_else(|e| panic!("v2 watcher: {e}"));
        assert_eq!(watcher.take(), 1);
        assert_eq!(watcher.take(), 0);
        // Also when the cgroup is gone by the time it is read.
        let watcher = OomWatcher::v2(ctr.clone()).unwrap_or_else(|e| panic!("v2 watcher: {e}"));
        fs::remove_dir_all(&ctr).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(watcher.take(), 1);
    }

    #[tokio::test]
    async fn a_manual_watcher_reports_each_kill_once() {
        let (watcher, trigger) = OomWatcher::manual();
        assert_eq!(watcher.take(), 0);
        trigger.fire();
        trigger.fire();
        watcher.ready().await;
        assert_eq!(watcher.take(), 2);
        assert_eq!(watcher.take(), 0);
    }
}
