//! Test support shared by the project's tests and benches and by users' own
//! tests (feature `testing`).
//!
//! [`BundleBuilder`] lays out an OCI bundle from the host's static busybox so
//! a test can run a real container without any image. [`require_runc`] decides
//! whether a test that needs runc runs, skips, or fails loudly: with
//! `SHIM_REQUIRE_RUNC=1` in the environment (as `make test` sets) a missing
//! runc or a non-root user is a failure, not a skip.
//!
//! ```no_run
//! use shim_core::testing::BundleBuilder;
//!
//! let dir = std::env::temp_dir().join("bundle-doc-example");
//! let bundle = BundleBuilder::new()
//!     .args(["sh", "-c", "echo hello"])
//!     .memory_limit(64 << 20)
//!     .build(&dir)?;
//! assert!(bundle.path().join("config.json").is_file());
//! # Ok::<(), shim_core::testing::BundleError>(())
//! ```

use std::ffi::OsString;
use std::fs;
use std::io;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use crate::Reaper;

pub mod conformance;

/// Applets linked into every bundle's `/bin`.
pub const APPLETS: &[&str] = &[
    "sh", "echo", "cat", "sleep", "true", "false", "dd", "stty", "env", "id", "hostname", "ls", "ps", "kill", "head",
    "wc", "yes", "tail", "seq", "printf", "test", "[", "tr", "mkdir", "rm",
];

/// Where a static busybox is looked for when `SHIM_BUSYBOX` is not set.
pub const BUSYBOX_CANDIDATES: &[&str] = &["/bin/busybox", "/usr/bin/busybox"];

/// Errors of the bundle builder.
#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    /// No busybox binary was found.
    #[error("no busybox found (looked at $SHIM_BUSYBOX and {candidates:?}); install busybox-static")]
    NoBusybox {
        /// The paths that were tried.
        candidates: Vec<PathBuf>,
    },
    /// A file of the bundle could not be written.
    #[error("cannot write bundle file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// The config could not be serialised.
    #[error("cannot serialise config.json: {0}")]
    Json(#[from] serde_json::Error),
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> BundleError + '_ {
    move |source| BundleError::Io { path: path.to_path_buf(), source }
}

/// Finds the busybox binary to copy into bundles: `$SHIM_BUSYBOX`, else the
/// first of [`BUSYBOX_CANDIDATES`] that exists.
pub fn find_busybox() -> Result<PathBuf, BundleError> {
    let mut candidates: Vec<PathBuf> = Vec::new();
    if let Some(p) = std::env::var_os("SHIM_BUSYBOX") {
        candidates.push(PathBuf::from(p));
    }
    candidates.extend(BUSYBOX_CANDIDATES.iter().map(PathBuf::from));
    candidates.iter().find(|p| p.is_file()).cloned().ok_or(BundleError::NoBusybox { candidates })
}

/// A bundle laid out on disk.
#[derive(Debug, Clone)]
pub struct Bundle {
    path: PathBuf,
}

impl Bundle {
    /// The bundle directory (holds `config.json` and `rootfs`).
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Builds an OCI bundle from the host's static busybox.
///
/// The container gets a fresh pid, mount, ipc and uts namespace and shares the
/// host's network namespace (no network setup needed). The root filesystem is
/// read-only, except `/tmp` which is a tmpfs.
#[derive(Debug, Clone)]
pub struct BundleBuilder {
    args: Vec<String>,
    env: Vec<String>,
    cwd: String,
    terminal: bool,
    uid: u32,
    gid: u32,
    memory_limit: Option<i64>,
    hostname: String,
    pid_namespace: bool,
}

impl Default for BundleBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl BundleBuilder {
    /// A bundle running `sh` as root in `/`, without a terminal.
    pub fn new() -> Self {
        Self {
            args: vec!["sh".into()],
            env: vec!["PATH=/bin".into(), "HOME=/".into()],
            cwd: "/".into(),
            terminal: false,
            uid: 0,
            gid: 0,
            memory_limit: None,
            hostname: "shim-test".into(),
            pid_namespace: true,
        }
    }

    /// The init process's argv.
    pub fn args<I: IntoIterator<Item = S>, S: Into<String>>(mut self, args: I) -> Self {
        self.args = args.into_iter().map(Into::into).collect();
        self
    }

    /// Adds `KEY=VALUE` to the init's environment.
    pub fn env(mut self, kv: impl Into<String>) -> Self {
        self.env.push(kv.into());
        self
    }

    /// The init's working directory (absolute, inside the container).
    pub fn cwd(mut self, cwd: impl Into<String>) -> Self {
        self.cwd = cwd.into();
        self
    }

    /// Whether the init gets a terminal.
    pub fn terminal(mut self, terminal: bool) -> Self {
        self.terminal = terminal;
        self
    }

    /// The init's uid and gid.
    pub fn user(mut self, uid: u32, gid: u32) -> Self {
        self.uid = uid;
        self.gid = gid;
        self
    }

    /// Whether the container gets a pid namespace of its own (the default);
    /// without one, its processes live in the host's.
    pub fn pid_namespace(mut self, own: bool) -> Self {
        self.pid_namespace = own;
        self
    }

    /// A memory limit in bytes for the container's cgroup.
    pub fn memory_limit(mut self, bytes: i64) -> Self {
        self.memory_limit = Some(bytes);
        self
    }

    /// The container's hostname.
    pub fn hostname(mut self, hostname: impl Into<String>) -> Self {
        self.hostname = hostname.into();
        self
    }

    /// Writes only `config.json` into `dir` (created if missing): enough for
    /// the [`FakeShim`](crate::fake::FakeShim), and needs no busybox.
    pub fn build_config_only(&self, dir: &Path) -> Result<Bundle, BundleError> {
        fs::create_dir_all(dir).map_err(io_err(dir))?;
        let config = dir.join("config.json");
        let text = serde_json::to_vec_pretty(&self.config())?;
        fs::write(&config, text).map_err(io_err(&config))?;
        Ok(Bundle { path: dir.to_path_buf() })
    }

    /// Writes the bundle into `dir` (created if missing): `rootfs/` with
    /// busybox and its applet links, and `config.json`.
    pub fn build(&self, dir: &Path) -> Result<Bundle, BundleError> {
        let busybox = find_busybox()?;
        let rootfs = dir.join("rootfs");
        for sub in ["bin", "proc", "dev", "sys", "tmp", "etc", "root"] {
            let p = rootfs.join(sub);
            fs::create_dir_all(&p).map_err(io_err(&p))?;
        }
        let target = rootfs.join("bin/busybox");
        if !target.exists() {
            fs::copy(&busybox, &target).map_err(io_err(&target))?;
        }
        for applet in APPLETS {
            let link = rootfs.join("bin").join(applet);
            if fs::symlink_metadata(&link).is_err() {
                symlink("busybox", &link).map_err(io_err(&link))?;
            }
        }
        let passwd = rootfs.join("etc/passwd");
        fs::write(&passwd, "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n")
            .map_err(io_err(&passwd))?;
        let group = rootfs.join("etc/group");
        fs::write(&group, "root:x:0:\nnobody:x:65534:\n").map_err(io_err(&group))?;

        let config = dir.join("config.json");
        let text = serde_json::to_vec_pretty(&self.config())?;
        fs::write(&config, text).map_err(io_err(&config))?;
        Ok(Bundle { path: dir.to_path_buf() })
    }

    /// The `config.json` this builder writes.
    pub fn config(&self) -> serde_json::Value {
        let caps = serde_json::json!([
            "CAP_AUDIT_WRITE",
            "CAP_KILL",
            "CAP_NET_BIND_SERVICE",
            "CAP_CHOWN",
            "CAP_SETUID",
            "CAP_SETGID",
            "CAP_DAC_OVERRIDE",
            "CAP_FOWNER"
        ]);
        let mut resources = serde_json::json!({
            "devices": [{ "allow": false, "access": "rwm" }]
        });
        if let (Some(limit), Some(obj)) = (self.memory_limit, resources.as_object_mut()) {
            // Where swap is accounted (cgroup v1 memsw), forbid it too, so a
            // host with swap still hits the limit instead of swapping.
            let memory = if Path::new("/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes").exists() {
                serde_json::json!({ "limit": limit, "swap": limit })
            } else {
                serde_json::json!({ "limit": limit })
            };
            obj.insert("memory".into(), memory);
        }
        let mut namespaces = vec![
            serde_json::json!({ "type": "ipc" }),
            serde_json::json!({ "type": "uts" }),
            serde_json::json!({ "type": "mount" }),
        ];
        if self.pid_namespace {
            namespaces.insert(0, serde_json::json!({ "type": "pid" }));
        }
        serde_json::json!({
            "ociVersion": "1.0.2",
            "process": {
                "terminal": self.terminal,
                "user": { "uid": self.uid, "gid": self.gid },
                "args": self.args,
                "env": self.env,
                "cwd": self.cwd,
                "capabilities": {
                    "bounding": caps, "effective": caps, "permitted": caps, "ambient": caps
                },
                "rlimits": [{ "type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024 }],
                "noNewPrivileges": true
            },
            "root": { "path": "rootfs", "readonly": true },
            "hostname": self.hostname,
            "mounts": [
                { "destination": "/proc", "type": "proc", "source": "proc" },
                { "destination": "/dev", "type": "tmpfs", "source": "tmpfs",
                  "options": ["nosuid", "strictatime", "mode=755", "size=65536k"] },
                { "destination": "/dev/pts", "type": "devpts", "source": "devpts",
                  "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"] },
                { "destination": "/dev/shm", "type": "tmpfs", "source": "shm",
                  "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"] },
                { "destination": "/sys", "type": "sysfs", "source": "sysfs",
                  "options": ["nosuid", "noexec", "nodev", "ro"] },
                { "destination": "/tmp", "type": "tmpfs", "source": "tmpfs",
                  "options": ["nosuid", "nodev", "mode=1777"] }
            ],
            "linux": {
                "resources": resources,
                "namespaces": namespaces,
                "maskedPaths": ["/proc/kcore", "/proc/keys", "/proc/timer_list", "/sys/firmware"],
                "readonlyPaths": ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"]
            }
        })
    }
}

/// The runtime binary the tests run: `$SHIM_RUNC`, else `runc`.
pub fn runc_binary() -> String {
    runc_binary_from(std::env::var_os("SHIM_RUNC"))
}

fn runc_binary_from(var: Option<OsString>) -> String {
    var.filter(|v| !v.is_empty()).map(|v| v.to_string_lossy().into_owned()).unwrap_or_else(|| "runc".into())
}

/// A [`RuncConfig`](crate::RuncConfig) for a test: `work_dir`, and the
/// runtime binary of [`runc_binary`], so that `SHIM_RUNC` selects the binary
/// the shims under test run, not only the one the availability check finds.
pub fn runc_config(work_dir: impl Into<PathBuf>) -> crate::RuncConfig {
    // The systemd leg of `make test` (a guest with systemd as PID 1) runs the
    // same tests with runc's systemd cgroup driver.
    let systemd = std::env::var("SHIM_SYSTEMD_CGROUP").as_deref() == Ok("1");
    crate::RuncConfig::new(work_dir).runtime(runc_binary()).systemd_cgroup(systemd)
}

/// Why runc-backed tests cannot run on this machine, if they cannot.
pub fn runc_unavailable_reason() -> Option<String> {
    if !nix::unistd::Uid::effective().is_root() {
        return Some("not running as root".into());
    }
    let runc = OsString::from(runc_binary());
    let found = if Path::new(&runc).is_absolute() {
        Path::new(&runc).is_file()
    } else {
        std::env::var_os("PATH")
            .map(|paths| std::env::split_paths(&paths).any(|d| d.join(&runc).is_file()))
            .unwrap_or(false)
    };
    if !found {
        return Some(format!("runtime binary {runc:?} not found in PATH"));
    }
    if let Err(e) = find_busybox() {
        return Some(e.to_string());
    }
    None
}

/// For a test fixture's `Drop`: when the test is failing (panicking),
/// force-deletes the container `id` with [`runc_binary`] (the runtime the
/// shims under test run; its default root, as the test fixtures use), so a
/// failed run does not leave it, and its cgroup, on the machine. Does
/// nothing when the test passed: it deleted its container.
pub fn remove_container_if_failing(id: &str) {
    if std::thread::panicking() {
        let _ = std::process::Command::new(runc_binary())
            .args(["delete", "--force", id])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status();
    }
}

/// Whether a test that needs runc should run.
///
/// Returns `true` when runc, busybox and root are available. Otherwise prints
/// why and returns `false` (the test should return early), unless
/// `SHIM_REQUIRE_RUNC=1`, in which case it panics so CI fails loudly.
pub fn require_runc() -> bool {
    require("runc", runc_unavailable_reason())
}

/// Whether a test that needs root (but not runc: mounts, a shim binary of
/// its own) should run; like [`require_runc`], it panics instead of skipping
/// under `SHIM_REQUIRE_RUNC=1`.
pub fn require_root() -> bool {
    let reason = (!nix::unistd::Uid::effective().is_root()).then(|| "not running as root".to_string());
    require("root", reason)
}

/// `true` without a `reason` not to run; otherwise skips with it, or under
/// `SHIM_REQUIRE_RUNC=1` panics so CI fails loudly.
fn require(what: &str, reason: Option<String>) -> bool {
    let Some(reason) = reason else { return true };
    if std::env::var("SHIM_REQUIRE_RUNC").as_deref() == Ok("1") {
        panic!("SHIM_REQUIRE_RUNC=1 but {what} tests cannot run: {reason}");
    }
    eprintln!("skipping {what} test: {reason} (set SHIM_REQUIRE_RUNC=1 to fail instead)");
    false
}

/// The one reaper of a test process.
///
/// A process may have only one reaper (it owns `waitpid(-1)`), while the test
/// harness runs many tests as threads of one process; they share this one.
pub fn shared_reaper() -> Reaper {
    static REAPER: OnceLock<Reaper> = OnceLock::new();
    REAPER
        .get_or_init(|| match Reaper::start() {
            Ok(r) => r,
            Err(e) => panic!("cannot start the test reaper: {e}"),
        })
        .clone()
}

/// Creates a FIFO at `path` (mode 0600).
pub fn mkfifo(path: &Path) -> io::Result<()> {
    nix::unistd::mkfifo(path, nix::sys::stat::Mode::from_bits_truncate(0o600)).map_err(io::Error::from)
}

/// Reads a FIFO the way a client does: opens it for reading (waiting for the
/// shim's writer) and reads to end-of-file, in a thread of its own.
///
/// A detached thread rather than tokio's blocking pool: a reader that never
/// sees EOF (the bug a test looks for) then fails the test at its timeout,
/// instead of holding the test's runtime open at shutdown for ever.
pub fn read_fifo(path: &Path) -> tokio::task::JoinHandle<io::Result<Vec<u8>>> {
    let path = path.to_path_buf();
    let (tx, rx) = tokio::sync::oneshot::channel();
    let spawned = std::thread::Builder::new().name("fifo-reader".into()).spawn(move || {
        use std::io::Read;
        let read = fs::File::open(&path).and_then(|mut f| {
            let mut out = Vec::new();
            f.read_to_end(&mut out).map(|_| out)
        });
        let _ = tx.send(read);
    });
    tokio::spawn(async move {
        spawned?;
        rx.await.unwrap_or_else(|_| Err(io::Error::other("fifo reader thread ended without a result")))
    })
}

/// A reader of a FIFO that is open from the moment it is made (unlike
/// [`read_fifo`], whose thread may not have reached `open` yet), for tests
/// that need a reader present before a call.
pub struct FifoReader {
    file: fs::File,
}

impl FifoReader {
    /// Opens `path` for reading without waiting for a writer.
    pub fn open_now(path: &Path) -> io::Result<Self> {
        use std::os::unix::fs::OpenOptionsExt;
        let file = fs::OpenOptions::new().read(true).custom_flags(libc::O_NONBLOCK).open(path)?;
        Ok(Self { file })
    }

    /// Reads until end-of-file, which on Linux a reader sees only once a
    /// writer has opened the FIFO and every writer has closed it (a FIFO
    /// nobody ever opened for writing never reports it). `None` if that did
    /// not happen within `timeout`.
    pub async fn read_to_eof(self, timeout: std::time::Duration) -> Option<Vec<u8>> {
        use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
        use std::os::fd::AsFd;
        let task = tokio::task::spawn_blocking(move || {
            let deadline = std::time::Instant::now() + timeout;
            let mut out = Vec::new();
            let mut buf = [0u8; 65536];
            loop {
                let left = deadline.saturating_duration_since(std::time::Instant::now());
                if left.is_zero() {
                    return None;
                }
                let ms = PollTimeout::try_from(left.as_millis().min(1000) as i32).unwrap_or(PollTimeout::NONE);
                let mut fds = [PollFd::new(self.file.as_fd(), PollFlags::POLLIN)];
                if poll(&mut fds, ms).is_err() {
                    continue;
                }
                let revents = fds.first().and_then(PollFd::revents).unwrap_or(PollFlags::empty());
                if revents.contains(PollFlags::POLLIN) {
                    match nix::unistd::read(self.file.as_fd(), &mut buf) {
                        Ok(n) if n > 0 => out.extend_from_slice(buf.get(..n).unwrap_or_default()),
                        Ok(_) if revents.contains(PollFlags::POLLHUP) => return Some(out),
                        _ => {}
                    }
                } else if revents.contains(PollFlags::POLLHUP) {
                    return Some(out);
                }
            }
        });
        task.await.ok().flatten()
    }
}

/// Opens a stdin FIFO for writing, as a client does (the shim holds its
/// reader open, so this does not block once the process was created).
pub fn open_fifo_writer(path: &Path) -> io::Result<fs::File> {
    fs::OpenOptions::new().write(true).open(path)
}

/// Collects events from `stream` until `done` returns true for one of them,
/// failing after `timeout`.
pub async fn collect_events<F>(
    stream: &mut crate::EventStream,
    timeout: std::time::Duration,
    mut done: F,
) -> Result<Vec<shim_proto::v1::Event>, String>
where
    F: FnMut(&shim_proto::v1::Event) -> bool,
{
    use futures::StreamExt;
    let mut events = Vec::new();
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        match tokio::time::timeout_at(deadline, stream.next()).await {
            Err(_) => return Err(format!("timed out after {timeout:?}; events so far: {events:?}")),
            Ok(None) => return Err(format!("event stream ended; events so far: {events:?}")),
            Ok(Some(Err(e))) => return Err(format!("event stream error {e}; events so far: {events:?}")),
            Ok(Some(Ok(ev))) => {
                let stop = done(&ev);
                events.push(ev);
                if stop {
                    return Ok(events);
                }
            }
        }
    }
}

/// Whether `pid` is a zombie child of this process right now.
pub fn is_zombie_child(pid: u32) -> bool {
    let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else { return false };
    // The command may hold spaces and parentheses: fields start after the last ')'.
    let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else { return false };
    let mut fields = rest.split_whitespace();
    let state = fields.next();
    let ppid = fields.next().and_then(|p| p.parse::<u32>().ok());
    state == Some("Z") && ppid == Some(std::process::id())
}

/// A shim that keeps something alive (a server, a temporary directory) for
/// as long as the shim is used; every call goes to `shim`.
pub struct Guarded<G> {
    /// Where calls go.
    pub shim: std::sync::Arc<dyn crate::Shim>,
    /// Kept alive with the shim.
    pub guard: G,
}

#[async_trait::async_trait]
impl<G: Send + Sync> crate::Shim for Guarded<G> {
    async fn create(&self, r: shim_proto::v1::CreateRequest) -> crate::Result<shim_proto::v1::CreateResponse> {
        self.shim.create(r).await
    }
    async fn start(&self, r: shim_proto::v1::StartRequest) -> crate::Result<()> {
        self.shim.start(r).await
    }
    async fn delete(&self, r: shim_proto::v1::DeleteRequest) -> crate::Result<shim_proto::v1::DeleteResponse> {
        self.shim.delete(r).await
    }
    async fn exec(&self, r: shim_proto::v1::ExecRequest) -> crate::Result<shim_proto::v1::ExecResponse> {
        self.shim.exec(r).await
    }
    async fn pty(&self, r: shim_proto::v1::PtyRequest) -> crate::Result<()> {
        self.shim.pty(r).await
    }
    async fn events(&self, r: shim_proto::v1::EventsRequest) -> crate::Result<crate::EventStream> {
        self.shim.events(r).await
    }
    async fn state(&self, r: shim_proto::v1::StateRequest) -> crate::Result<shim_proto::v1::StateResponse> {
        self.shim.state(r).await
    }
    async fn kill(&self, r: shim_proto::v1::KillRequest) -> crate::Result<()> {
        self.shim.kill(r).await
    }
    async fn wait(&self, r: shim_proto::v1::WaitRequest) -> crate::Result<shim_proto::v1::WaitResponse> {
        self.shim.wait(r).await
    }
    async fn close_stdin(&self, r: shim_proto::v1::CloseStdinRequest) -> crate::Result<()> {
        self.shim.close_stdin(r).await
    }
    async fn pause(&self, r: shim_proto::v1::PauseRequest) -> crate::Result<()> {
        self.shim.pause(r).await
    }
    async fn resume(&self, r: shim_proto::v1::ResumeRequest) -> crate::Result<()> {
        self.shim.resume(r).await
    }
    async fn list_pids(&self, r: shim_proto::v1::ListPidsRequest) -> crate::Result<shim_proto::v1::ListPidsResponse> {
        self.shim.list_pids(r).await
    }
    async fn update(&self, r: shim_proto::v1::UpdateRequest) -> crate::Result<()> {
        self.shim.update(r).await
    }
    async fn checkpoint(&self, r: shim_proto::v1::CheckpointRequest) -> crate::Result<()> {
        self.shim.checkpoint(r).await
    }
    async fn stats(&self, r: shim_proto::v1::StatsRequest) -> crate::Result<shim_proto::v1::StatsResponse> {
        self.shim.stats(r).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shim_runc_selects_the_binary_of_the_shims_under_test() {
        assert_eq!(runc_binary_from(None), "runc");
        assert_eq!(runc_binary_from(Some("".into())), "runc");
        assert_eq!(runc_binary_from(Some("/opt/runc-1.2/runc".into())), "/opt/runc-1.2/runc");
        let _ = runc_config("/tmp/x");
    }
}
