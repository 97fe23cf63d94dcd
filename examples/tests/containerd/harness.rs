//! A private containerd 1.6 for tests, driven with `ctr`.
//!
//! [`Containerd::start`] runs the host's `containerd` binary with a config of
//! its own: root, state, temp, gRPC and ttrpc sockets all live in a fresh
//! short directory under `/tmp` (a unix socket path must stay within 104
//! bytes), the CRI plugin and the plugins that cannot work offline are
//! disabled, and the daemon's log goes to a file that is printed when a test
//! fails. Every `ctr` call is bounded by [`CTR_TIMEOUT`]; every wait polls a
//! condition against a deadline. Dropping the [`Containerd`] ends what the
//! test left (tasks, containers), stops the daemon (SIGTERM, then SIGKILL
//! after [`STOP_TIMEOUT`]) and removes what it made: runc state, stray shim
//! and container processes, mounts under its directory, its cgroups.
//!
//! A test runs a container through a [`Runtime`]: the reference Go shim
//! (`io.containerd.runc.v2`, Debian's `containerd-shim-runc-v2`) or a shim
//! binary given by absolute path (`ctr run --runtime /abs/path`), so that the
//! same session can be compared across both.
//!
//! What the host keeps regardless: the Go shim binds its socket under
//! `/run/containerd/s/` (a path it computes itself, removed when it exits),
//! and `ctr` passes runc options (`--runc-root`) only to the runtime named
//! `io.containerd.runc.v2`, so a shim given by path gets no options and keeps
//! its runc state where its default is (for the Go shim's defaults:
//! `/run/containerd/runc/<namespace>`). The namespace is unique per
//! [`Containerd`], so [`Containerd::leftovers`] looks there too.

#![allow(dead_code)] // each test uses only part of the harness

use std::ffi::{CString, OsStr, OsString};
use std::fs;
use std::io::{BufRead, BufReader, Read};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// The runtime name of the reference shim (Debian's Go shim).
pub const REFERENCE_RUNTIME: &str = "io.containerd.runc.v2";
/// The longest a single `ctr` call may take.
pub const CTR_TIMEOUT: Duration = Duration::from_secs(60);
/// The longest a test waits for a condition (an event, a task state, nothing
/// left behind).
pub const WAIT: Duration = Duration::from_secs(30);
/// The longest containerd may take to answer `ctr version` after its start.
pub const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How long containerd has to exit after SIGTERM before it is killed.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(10);
/// The snapshotter images are unpacked into and containers run on
/// (containerd's default; verified to work on ext4 here).
pub const SNAPSHOTTER: &str = "overlayfs";
/// Where the Go shim keeps runc state when it gets no `--runc-root`.
pub const DEFAULT_RUNC_ROOT: &str = "/run/containerd/runc";
/// The programs the harness runs, looked up in `PATH`.
pub const REQUIRED_TOOLS: &[&str] = &["containerd", "ctr", "containerd-shim-runc-v2", "tar", "sha256sum"];

const POLL: Duration = Duration::from_millis(20);
/// Plugins that either are not wanted (CRI), would touch the host
/// (`opt` installs into `/opt/containerd`), or cannot work here and only
/// clutter the log. `io.containerd.runtime.v1.linux` must stay: the tasks
/// service of 1.6 does not load without it.
const DISABLED_PLUGINS: &[&str] = &[
    "io.containerd.grpc.v1.cri",
    "io.containerd.internal.v1.opt",
    "io.containerd.internal.v1.tracing",
    "io.containerd.tracing.processor.v1.otlp",
    "io.containerd.snapshotter.v1.aufs",
    "io.containerd.snapshotter.v1.btrfs",
    "io.containerd.snapshotter.v1.devmapper",
    "io.containerd.snapshotter.v1.zfs",
];

/// One private containerd at a time per test process: a 2-core machine
/// running several daemons and their shims at once makes timeouts flaky.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());
static NEXT_NAMESPACE: AtomicUsize = AtomicUsize::new(1);

/// Which shim runs the containers of a session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Runtime {
    name: String,
}

impl Runtime {
    /// The reference shim, `io.containerd.runc.v2`.
    pub fn reference() -> Self {
        Self { name: REFERENCE_RUNTIME.to_string() }
    }

    /// A shim binary given by absolute path (`ctr run --runtime /abs/path`).
    pub fn binary(path: impl AsRef<Path>) -> Self {
        let path = path.as_ref();
        assert!(path.is_absolute(), "a runtime binary must be given by absolute path, got {}", path.display());
        Self { name: path.to_string_lossy().into_owned() }
    }

    /// What `ctr run --runtime` gets.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether this is the reference shim (the only runtime `ctr` passes
    /// runc options such as `--runc-root` to).
    pub fn is_reference(&self) -> bool {
        self.name == REFERENCE_RUNTIME
    }
}

/// The first `name` in `PATH`, if any.
pub fn find_in_path(name: &str) -> Option<PathBuf> {
    let paths = std::env::var_os("PATH")?;
    std::env::split_paths(&paths).map(|dir| dir.join(name)).find(|p| p.is_file())
}

/// Why the containerd tests cannot run on this machine, if they cannot.
pub fn containerd_unavailable_reason() -> Option<String> {
    if let Some(reason) = shim_core::testing::runc_unavailable_reason() {
        return Some(reason);
    }
    REQUIRED_TOOLS.iter().find(|tool| find_in_path(tool).is_none()).map(|tool| format!("{tool} not found in PATH"))
}

/// Whether a containerd test should run.
///
/// Mirrors `shim_core::testing::require_runc`: `true` when root, runc,
/// busybox, containerd, ctr and the reference shim are available; otherwise
/// prints why and returns `false` (the test returns early), unless
/// `SHIM_REQUIRE_RUNC=1`, in which case it panics so CI fails loudly.
pub fn require_containerd() -> bool {
    match containerd_unavailable_reason() {
        None => true,
        Some(reason) => {
            if std::env::var("SHIM_REQUIRE_RUNC").as_deref() == Ok("1") {
                panic!("SHIM_REQUIRE_RUNC=1 but containerd tests cannot run: {reason}");
            }
            eprintln!("skipping containerd test: {reason} (set SHIM_REQUIRE_RUNC=1 to fail instead)");
            false
        }
    }
}

/// The major version of the `containerd` on `PATH` (1 for Debian's 1.6, 2
/// for 2.x), from `containerd --version`.
pub fn containerd_major_version() -> u32 {
    let out = Command::new("containerd").arg("--version").output().expect("containerd --version runs");
    let text = text(&out.stdout);
    // "containerd github.com/containerd/containerd/v2 v2.3.4 <rev>", or
    // Debian's "containerd github.com/containerd/containerd 1.6.20~ds1 ...".
    let version = text.split_whitespace().nth(2).unwrap_or_default().trim_start_matches('v');
    version.split('.').next().and_then(|m| m.parse().ok()).unwrap_or_else(|| panic!("containerd --version: {text}"))
}

/// Bytes as text, for comparisons and messages.
pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn path_str(path: &Path) -> String {
    path.to_string_lossy().into_owned()
}

fn describe(program: &str, args: &[OsString]) -> String {
    let mut line = program.to_string();
    for arg in args {
        line.push(' ');
        line.push_str(&arg.to_string_lossy());
    }
    line
}

/// Reads `pipe` to its end in a thread of its own; the bytes arrive on the
/// returned channel.
fn collect<R: Read + Send + 'static>(pipe: Option<R>) -> mpsc::Receiver<Vec<u8>> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        if let Some(mut pipe) = pipe {
            let _ = pipe.read_to_end(&mut bytes);
        }
        let _ = tx.send(bytes);
    });
    rx
}

/// Runs `cmd` (stdin `/dev/null`, stdout and stderr captured) and waits for
/// it at most `timeout`; on timeout it is killed and the error carries what
/// it printed so far.
pub fn run_bounded(mut cmd: Command, timeout: Duration, what: &str) -> Result<Output, String> {
    cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd.spawn().map_err(|e| format!("cannot start {what}: {e}"))?;
    let stdout = collect(child.stdout.take());
    let stderr = collect(child.stderr.take());
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) => {}
            Err(e) => return Err(format!("cannot wait for {what}: {e}")),
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            let out = stdout.recv_timeout(Duration::from_secs(1)).unwrap_or_default();
            let err = stderr.recv_timeout(Duration::from_secs(1)).unwrap_or_default();
            return Err(format!(
                "`{what}` did not finish within {timeout:?} (killed); stdout so far: {:?}; stderr so far: {:?}",
                text(&out),
                text(&err)
            ));
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    // The pipes end with the process, unless something it started holds them.
    let rest = deadline.saturating_duration_since(Instant::now()).max(Duration::from_secs(1));
    let out =
        stdout.recv_timeout(rest).map_err(|_| format!("`{what}` exited ({status}) but its stdout stayed open"))?;
    let err =
        stderr.recv_timeout(rest).map_err(|_| format!("`{what}` exited ({status}) but its stderr stayed open"))?;
    Ok(Output { status, stdout: out, stderr: err })
}

/// `ctr`'s stderr less what ctr 2.x says about this host whatever the
/// runtime (its warning that cgroup v1 is deprecated), so that the two
/// shims' sessions compare on what the container wrote.
fn without_host_warnings(stderr: &[u8]) -> Vec<u8> {
    let text = String::from_utf8_lossy(stderr);
    let kept: Vec<&str> = text
        .split_inclusive('\n')
        .filter(|l| !(l.contains("level=warning") && l.contains("DEPRECATION: The support for cgroup v1")))
        .collect();
    kept.concat().into_bytes()
}

/// Lays out a root filesystem holding the host's static busybox in `dir`
/// (created if missing): `/bin/busybox` with the applet links of
/// `shim_core::testing::APPLETS`, `/etc/passwd`, `/etc/group`, and empty
/// `/proc`, `/dev`, `/sys`, `/tmp`, `/root`. Returns `dir`.
pub fn build_rootfs(dir: &Path) -> PathBuf {
    let busybox = shim_core::testing::find_busybox().unwrap_or_else(|e| panic!("{e}"));
    for sub in ["bin", "proc", "dev", "sys", "tmp", "etc", "root"] {
        let path = dir.join(sub);
        fs::create_dir_all(&path).unwrap_or_else(|e| panic!("cannot create {}: {e}", path.display()));
    }
    let target = dir.join("bin").join("busybox");
    if !target.exists() {
        fs::copy(&busybox, &target)
            .unwrap_or_else(|e| panic!("cannot copy {} to {}: {e}", busybox.display(), target.display()));
    }
    for applet in shim_core::testing::APPLETS {
        let link = dir.join("bin").join(applet);
        if fs::symlink_metadata(&link).is_err() {
            symlink("busybox", &link).unwrap_or_else(|e| panic!("cannot link {}: {e}", link.display()));
        }
    }
    let passwd = dir.join("etc").join("passwd");
    fs::write(&passwd, "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n")
        .unwrap_or_else(|e| panic!("cannot write {}: {e}", passwd.display()));
    let group = dir.join("etc").join("group");
    fs::write(&group, "root:x:0:\nnobody:x:65534:\n")
        .unwrap_or_else(|e| panic!("cannot write {}: {e}", group.display()));
    dir.to_path_buf()
}

/// Runs a helper program that must succeed (tar, sha256sum).
fn must_succeed(cmd: Command, what: &str) -> Output {
    let out = run_bounded(cmd, CTR_TIMEOUT, what).unwrap_or_else(|e| panic!("{e}"));
    assert!(
        out.status.success(),
        "`{what}` failed with {}: stdout {:?} stderr {:?}",
        out.status,
        text(&out.stdout),
        text(&out.stderr)
    );
    out
}

/// Stores `file` as a blob of an OCI layout: returns its digest
/// (`sha256:<hex>`) and size.
fn add_blob(blobs: &Path, file: &Path) -> (String, u64) {
    let mut cmd = Command::new("sha256sum");
    cmd.arg(file);
    let out = must_succeed(cmd, "sha256sum");
    let stdout = text(&out.stdout);
    let hex = stdout.split_whitespace().next().unwrap_or_default().to_string();
    assert!(
        hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()),
        "unexpected sha256sum output for {}: {stdout:?}",
        file.display()
    );
    let size = fs::metadata(file).unwrap_or_else(|e| panic!("cannot stat {}: {e}", file.display())).len();
    let blob = blobs.join(&hex);
    fs::copy(file, &blob).unwrap_or_else(|e| panic!("cannot copy {} to {}: {e}", file.display(), blob.display()));
    (format!("sha256:{hex}"), size)
}

/// The OCI name of this machine's architecture.
fn oci_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        other => other,
    }
}

/// The entries of `dir` (none if it cannot be read).
fn entries(dir: &Path) -> Vec<PathBuf> {
    match fs::read_dir(dir) {
        Ok(list) => list.flatten().map(|e| e.path()).collect(),
        Err(_) => Vec::new(),
    }
}

/// The subdirectories of `dir` (not following symlinks).
fn subdirs(dir: &Path) -> Vec<PathBuf> {
    entries(dir).into_iter().filter(|p| fs::symlink_metadata(p).map(|m| m.is_dir()).unwrap_or(false)).collect()
}

/// Removes `dir` and its subdirectories, deepest first, with `rmdir` only
/// (the way cgroup directories are removed); errors are ignored.
fn rmdir_tree(dir: &Path) {
    for sub in subdirs(dir) {
        rmdir_tree(&sub);
    }
    let _ = fs::remove_dir(dir);
}

/// Detaches the mount at `path` (`umount2(MNT_DETACH)`).
fn umount_detach(path: &str) -> bool {
    let Ok(c_path) = CString::new(path) else { return false };
    // SAFETY: `c_path` is a NUL-terminated string that outlives the call.
    unsafe { libc::umount2(c_path.as_ptr(), libc::MNT_DETACH) == 0 }
}

/// Starts `containerd --config CONFIG`, its output appended to `log`.
fn spawn_containerd(config: &Path, log: &Path, path_first: Option<&Path>) -> Child {
    let log_out = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .unwrap_or_else(|e| panic!("cannot open {}: {e}", log.display()));
    let log_err = log_out.try_clone().unwrap_or_else(|e| panic!("cannot share {}: {e}", log.display()));
    let mut cmd = Command::new("containerd");
    if let Some(dir) = path_first {
        // Where containerd looks for `containerd-shim-<name>-<version>`
        // binaries of runtime types like `io.containerd.rshim.v1`.
        let path = std::env::var("PATH").unwrap_or_default();
        cmd.env("PATH", format!("{}:{path}", dir.display()));
    }
    cmd.arg("--config")
        .arg(config)
        .stdin(Stdio::null())
        .stdout(Stdio::from(log_out))
        .stderr(Stdio::from(log_err))
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start containerd: {e}"))
}

/// The CRI plugin of a private containerd: its `[plugins."io.containerd.grpc.v1.cri"]`
/// section (made from the containerd's directory), and the directory of
/// shim binaries put first in containerd's PATH.
pub struct CriSetup {
    /// TOML appended to the config, given the containerd's directory.
    pub plugin_toml: Box<dyn Fn(&Path) -> String>,
    /// Where `containerd-shim-rshim-v1` is.
    pub shim_dir: PathBuf,
}

/// A private containerd and the namespace a test uses in it.
pub struct Containerd {
    /// The namespace every `ctr` call of this harness uses (unique per
    /// instance, so that cgroups `/<namespace>/<id>` and runc state never
    /// collide with another test's).
    pub namespace: String,
    dir: PathBuf,
    address: PathBuf,
    log: PathBuf,
    child: Option<Child>,
    /// What was in the shims' socket directory before this containerd.
    sockets_before: Vec<String>,
    /// Put first in containerd's PATH (see [`CriSetup`]).
    path_first: Option<PathBuf>,
    tempdir: Option<tempfile::TempDir>,
    // Last: released only after the cleanup of `Drop` and the removal of
    // the directory.
    _turn: MutexGuard<'static, ()>,
}

impl Containerd {
    /// Starts a private containerd and waits (at most [`START_TIMEOUT`])
    /// until `ctr version` answers; creates the test's namespace.
    pub fn start() -> Self {
        Self::start_with(None)
    }

    /// [`start`](Self::start) with the CRI plugin on (see [`CriSetup`]); the
    /// namespace is CRI's, `k8s.io`.
    pub fn start_cri(cri: CriSetup) -> Self {
        Self::start_with(Some(cri))
    }

    fn start_with(cri: Option<CriSetup>) -> Self {
        let turn = ONE_AT_A_TIME.lock().unwrap_or_else(PoisonError::into_inner);
        let tempdir = tempfile::Builder::new()
            .prefix("ctd")
            .tempdir_in("/tmp")
            .unwrap_or_else(|e| panic!("cannot create a temporary directory under /tmp: {e}"));
        let dir = tempdir.path().to_path_buf();
        let address = dir.join("c.sock");
        let ttrpc_len = address.as_os_str().len() + ".ttrpc".len();
        assert!(ttrpc_len <= 104, "socket path {}.ttrpc is too long for a unix socket", address.display());
        for sub in ["root", "state", "tmp", "fifo", "runc", "work", "cni/bin", "cni/conf", "logs"] {
            let path = dir.join(sub);
            fs::create_dir_all(&path).unwrap_or_else(|e| panic!("cannot create {}: {e}", path.display()));
        }
        let config = dir.join("config.toml");
        let mut toml = config_toml(&dir, &address, cri.is_some());
        if let Some(cri) = &cri {
            toml.push_str(&(cri.plugin_toml)(&dir));
        }
        fs::write(&config, toml).unwrap_or_else(|e| panic!("cannot write {}: {e}", config.display()));
        let log = dir.join("containerd.log");
        let path_first = cri.as_ref().map(|c| c.shim_dir.clone());
        let child = spawn_containerd(&config, &log, path_first.as_deref());
        let namespace = match cri {
            Some(_) => "k8s.io".to_string(),
            None => format!("shimtest-{}-{}", std::process::id(), NEXT_NAMESPACE.fetch_add(1, Ordering::Relaxed)),
        };
        let mut containerd = Containerd {
            namespace,
            dir,
            address,
            log,
            child: Some(child),
            sockets_before: shim_sockets(),
            path_first,
            tempdir: Some(tempdir),
            _turn: turn,
        };
        containerd.wait_ready();
        let namespace = containerd.namespace.clone();
        if containerd.namespace != "k8s.io" {
            containerd.ctr_ok(["namespaces", "create", namespace.as_str()]);
        }
        containerd
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            let exited = match self.child.as_mut() {
                Some(child) => child.try_wait().ok().flatten(),
                None => None,
            };
            if let Some(status) = exited {
                panic!("containerd exited during start-up ({status}); its log:\n{}", self.log_tail());
            }
            if self.address.exists() {
                let version = run_bounded(self.ctr_command(["version"]), Duration::from_secs(5), "ctr version");
                if version.is_ok_and(|out| out.status.success()) {
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "containerd did not answer `ctr version` within {:?}; its log:\n{}",
                START_TIMEOUT,
                self.log_tail()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The directory holding everything of this containerd.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// containerd's gRPC socket (`ctr --address`).
    pub fn address(&self) -> &Path {
        &self.address
    }

    /// The FIFO directory given to `ctr run` and `ctr task exec`
    /// (`--fifo-dir`; ctr's default is `/run/containerd/fifo`).
    pub fn fifo_dir(&self) -> PathBuf {
        self.dir.join("fifo")
    }

    /// The runc root given to the reference shim (`--runc-root`); the shim
    /// keeps its containers' state in `<this>/<namespace>`.
    pub fn runc_root(&self) -> PathBuf {
        self.dir.join("runc")
    }

    /// containerd's log so far.
    pub fn log(&self) -> String {
        fs::read(&self.log).map(|b| text(&b)).unwrap_or_else(|e| format!("(cannot read {}: {e})", self.log.display()))
    }

    /// The last lines of containerd's log, for failure messages.
    pub fn log_tail(&self) -> String {
        let log = self.log();
        let lines: Vec<&str> = log.lines().collect();
        let from = lines.len().saturating_sub(80);
        lines.get(from..).unwrap_or_default().join("\n")
    }

    /// A `ctr` command with this containerd's address and namespace.
    pub fn ctr_command<I, S>(&self, args: I) -> Command
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut cmd = Command::new("ctr");
        cmd.arg("--address").arg(&self.address).arg("--namespace").arg(&self.namespace).args(args);
        cmd
    }

    /// Runs `ctr ARGS` (with `--address` and `--namespace` set, stdin
    /// `/dev/null`) and returns its output whatever its status; panics if it
    /// does not finish within [`CTR_TIMEOUT`].
    pub fn ctr<I, S>(&self, args: I) -> Output
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let args: Vec<OsString> = args.into_iter().map(|a| a.as_ref().to_os_string()).collect();
        let what = describe("ctr", &args);
        match run_bounded(self.ctr_command(&args), CTR_TIMEOUT, &what) {
            Ok(mut out) => {
                out.stderr = without_host_warnings(&out.stderr);
                out
            }
            Err(e) => panic!("{e}\ncontainerd log:\n{}", self.log_tail()),
        }
    }

    /// [`ctr`](Self::ctr), failing the test unless it exits 0.
    pub fn ctr_ok<I, S>(&self, args: I) -> Output
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let args: Vec<OsString> = args.into_iter().map(|a| a.as_ref().to_os_string()).collect();
        let out = self.ctr(&args);
        self.check_ok(&out, &describe("ctr", &args));
        out
    }

    /// Fails the test unless `out` (of `what`) has exit status 0.
    pub fn check_ok(&self, out: &Output, what: &str) {
        assert!(
            out.status.success(),
            "`{what}` failed with {}:\nstdout: {:?}\nstderr: {:?}\ncontainerd log:\n{}",
            out.status,
            text(&out.stdout),
            text(&out.stderr),
            self.log_tail()
        );
    }

    /// The flags `ctr run` needs for `runtime`: `--runtime`, `--fifo-dir`,
    /// and for the reference shim `--runc-root` (so its runc state stays in
    /// this containerd's directory).
    pub fn run_flags(&self, runtime: &Runtime) -> Vec<String> {
        let mut flags = vec!["--runtime".to_string(), runtime.name().to_string()];
        flags.push("--fifo-dir".to_string());
        flags.push(path_str(&self.fifo_dir()));
        if runtime.is_reference() {
            flags.push("--runc-root".to_string());
            flags.push(path_str(&self.runc_root()));
        }
        flags
    }

    /// `ctr run [run_flags] ARGS`: `args` holds further flags (`--rm`, `-d`,
    /// `--rootfs`) then the image or rootfs, the id and the command.
    pub fn run(&self, runtime: &Runtime, args: &[&str]) -> Output {
        let mut all = vec!["run".to_string()];
        all.extend(self.run_flags(runtime));
        all.extend(args.iter().map(|a| a.to_string()));
        self.ctr(&all)
    }

    /// `ctr task exec --fifo-dir F ARGS` (`args`: `--exec-id X`, the id, the
    /// command).
    pub fn exec(&self, args: &[&str]) -> Output {
        let mut all =
            vec!["task".to_string(), "exec".to_string(), "--fifo-dir".to_string(), path_str(&self.fifo_dir())];
        all.extend(args.iter().map(|a| a.to_string()));
        self.ctr(&all)
    }

    /// A busybox root filesystem for `ctr run --rootfs`, made under this
    /// containerd's directory as `work/rootfs-<name>`.
    pub fn rootfs(&self, name: &str) -> PathBuf {
        build_rootfs(&self.dir.join("work").join(format!("rootfs-{name}")))
    }

    /// Builds a one-layer OCI image archive holding busybox (uncompressed
    /// layer, config with `Env PATH=/bin` and `Cmd /bin/sh`), imports it with
    /// `ctr images import` (which unpacks it into [`SNAPSHOTTER`]) and
    /// returns its reference, `docker.io/library/<name>:latest`.
    pub fn import_image(&self, name: &str) -> String {
        self.import_image_running(name, &["/bin/sh"])
    }

    /// [`import_image`](Self::import_image) whose image runs `cmd` by default
    /// (CRI's sandbox image must run until the sandbox is stopped).
    pub fn import_image_running(&self, name: &str, cmd: &[&str]) -> String {
        let reference = format!("docker.io/library/{name}:latest");
        let work = self.dir.join("work").join(format!("image-{name}"));
        let layer_dir = build_rootfs(&work.join("layer"));
        let oci = work.join("oci");
        let blobs = oci.join("blobs").join("sha256");
        fs::create_dir_all(&blobs).unwrap_or_else(|e| panic!("cannot create {}: {e}", blobs.display()));

        // The layer: the rootfs's top-level entries, owned by root.
        let mut top: Vec<OsString> = fs::read_dir(&layer_dir)
            .unwrap_or_else(|e| panic!("cannot list {}: {e}", layer_dir.display()))
            .flatten()
            .map(|e| e.file_name())
            .collect();
        top.sort();
        let layer_tar = work.join("layer.tar");
        let mut tar = Command::new("tar");
        tar.args(["--numeric-owner", "--owner=0", "--group=0", "-C"])
            .arg(&layer_dir)
            .arg("-cf")
            .arg(&layer_tar)
            .args(&top);
        must_succeed(tar, "tar (image layer)");
        let (layer_digest, layer_size) = add_blob(&blobs, &layer_tar);

        let arch = oci_arch();
        let config = serde_json::json!({
            "architecture": arch,
            "os": "linux",
            "config": { "Env": ["PATH=/bin"], "Cmd": cmd },
            "rootfs": { "type": "layers", "diff_ids": [layer_digest.as_str()] }
        });
        let config_file = work.join("config.json");
        let config_bytes = serde_json::to_vec(&config).unwrap_or_else(|e| panic!("cannot serialise config: {e}"));
        fs::write(&config_file, config_bytes).unwrap_or_else(|e| panic!("cannot write {}: {e}", config_file.display()));
        let (config_digest, config_size) = add_blob(&blobs, &config_file);

        let manifest = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": config_digest,
                "size": config_size
            },
            "layers": [{
                "mediaType": "application/vnd.oci.image.layer.v1.tar",
                "digest": layer_digest,
                "size": layer_size
            }]
        });
        let manifest_file = work.join("manifest.json");
        let manifest_bytes = serde_json::to_vec(&manifest).unwrap_or_else(|e| panic!("cannot serialise manifest: {e}"));
        fs::write(&manifest_file, manifest_bytes)
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", manifest_file.display()));
        let (manifest_digest, manifest_size) = add_blob(&blobs, &manifest_file);

        let index = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": [{
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "digest": manifest_digest,
                "size": manifest_size,
                "annotations": { "org.opencontainers.image.ref.name": reference.as_str() },
                "platform": { "architecture": arch, "os": "linux" }
            }]
        });
        let index_file = oci.join("index.json");
        let index_bytes = serde_json::to_vec(&index).unwrap_or_else(|e| panic!("cannot serialise index: {e}"));
        fs::write(&index_file, index_bytes).unwrap_or_else(|e| panic!("cannot write {}: {e}", index_file.display()));
        let layout = oci.join("oci-layout");
        fs::write(&layout, r#"{"imageLayoutVersion":"1.0.0"}"#)
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", layout.display()));

        let archive = work.join("image.tar");
        let mut tar = Command::new("tar");
        tar.args(["--numeric-owner", "--owner=0", "--group=0", "-C"]).arg(&oci).arg("-cf").arg(&archive).args([
            "oci-layout",
            "index.json",
            "blobs",
        ]);
        must_succeed(tar, "tar (image archive)");

        let archive = path_str(&archive);
        self.ctr_ok(["images", "import", "--snapshotter", SNAPSHOTTER, archive.as_str()]);
        reference
    }

    /// Starts `ctr events` and returns once its subscription is live: a
    /// probe label set on the namespace came back as `/namespaces/update`.
    pub fn events(&self) -> EventRecorder {
        let mut cmd = self.ctr_command(["events"]);
        cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = cmd.spawn().unwrap_or_else(|e| panic!("cannot start ctr events: {e}"));
        let shared = Arc::new(Lines { lines: Mutex::new(Vec::new()), changed: Condvar::new() });
        if let Some(stdout) = child.stdout.take() {
            spawn_line_reader(stdout, "", Arc::clone(&shared));
        }
        if let Some(stderr) = child.stderr.take() {
            spawn_line_reader(stderr, "ctr events stderr: ", Arc::clone(&shared));
        }
        let recorder = EventRecorder { child, shared };
        let deadline = Instant::now() + WAIT;
        let mut probe: u32 = 0;
        loop {
            probe += 1;
            let label = format!("shimtest-probe={probe}");
            self.ctr_ok(["namespaces", "label", self.namespace.as_str(), label.as_str()]);
            let needle = format!("\"shimtest-probe\":\"{probe}\"");
            let seen = recorder
                .wait_for(Duration::from_secs(1), |lines| lines.iter().any(|l| l.contains(&needle)).then_some(()));
            if seen.is_some() {
                return recorder;
            }
            assert!(
                Instant::now() < deadline,
                "`ctr events` did not report a namespace update within {:?}; its lines: {:?}\ncontainerd log:\n{}",
                WAIT,
                recorder.lines(),
                self.log_tail()
            );
        }
    }

    /// The status column of `ctr task ls` for `id` (`RUNNING`, `PAUSED`,
    /// `STOPPED`, ...), if the task is listed.
    pub fn task_status(&self, id: &str) -> Option<String> {
        self.task_row(id).and_then(|row| row.get(2).cloned())
    }

    /// The pid column of `ctr task ls` for `id`.
    pub fn task_pid(&self, id: &str) -> Option<u32> {
        self.task_row(id).and_then(|row| row.get(1).and_then(|p| p.parse().ok()))
    }

    fn task_row(&self, id: &str) -> Option<Vec<String>> {
        let out = self.ctr_ok(["task", "ls"]);
        text(&out.stdout)
            .lines()
            .skip(1)
            .map(|l| l.split_whitespace().map(str::to_string).collect::<Vec<String>>())
            .find(|row| row.first().map(String::as_str) == Some(id))
    }

    /// Waits until `ctr task ls` shows `id` with `status`.
    pub fn wait_task_status(&self, id: &str, status: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            let now = self.task_status(id);
            if now.as_deref() == Some(status) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "task {id} did not reach {status} within {timeout:?} (last seen: {now:?})\ncontainerd log:\n{}",
                self.log_tail()
            );
            std::thread::sleep(POLL);
        }
    }

    /// The runc roots a shim of this containerd may keep state in, for this
    /// namespace: the one given to the reference shim, and the Go shim's
    /// default (used by shims that get no runc options).
    fn runc_state_roots(&self) -> Vec<PathBuf> {
        vec![self.runc_root().join(&self.namespace), Path::new(DEFAULT_RUNC_ROOT).join(&self.namespace)]
    }

    /// The cgroup directories of this namespace (`/<namespace>` in every
    /// hierarchy, and at the root of a pure cgroup v2 mount).
    fn cgroup_namespace_dirs(&self) -> Vec<PathBuf> {
        let root = Path::new("/sys/fs/cgroup");
        let mut dirs = vec![root.join(&self.namespace)];
        dirs.extend(subdirs(root).into_iter().map(|h| h.join(&self.namespace)));
        dirs.into_iter().filter(|d| d.is_dir()).collect()
    }

    /// Processes that belong to this containerd's containers: shims (an
    /// argument `-address <our socket>`, or `TTRPC_ADDRESS=<our
    /// socket>.ttrpc` in their environment) and processes in a cgroup under
    /// `/<namespace>/`. Returns (pid, description).
    fn processes(&self) -> Vec<(i32, String)> {
        let address = self.address.as_os_str().as_bytes();
        let ttrpc_env = {
            let mut v = b"TTRPC_ADDRESS=".to_vec();
            v.extend_from_slice(address);
            v.extend_from_slice(b".ttrpc");
            v
        };
        let cgroup_prefix = format!("/{}/", self.namespace);
        let me = std::process::id();
        let mut found = Vec::new();
        for proc_dir in entries(Path::new("/proc")) {
            let Some(pid) = proc_dir.file_name().and_then(|n| n.to_str()).and_then(|n| n.parse::<u32>().ok()) else {
                continue;
            };
            if pid == me {
                continue;
            }
            let Ok(pid_i32) = i32::try_from(pid) else { continue };
            let cmdline = fs::read(proc_dir.join("cmdline")).unwrap_or_default();
            let shown = text(&cmdline).replace('\0', " ").trim().to_string();
            let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
            let by_arg = flag_is(&args, b"-address", address);
            let environ = fs::read(proc_dir.join("environ")).unwrap_or_default();
            let by_env = environ.split(|b| *b == 0).any(|kv| kv == ttrpc_env.as_slice());
            if by_arg || by_env {
                found.push((pid_i32, format!("shim process {pid}: {shown}")));
                continue;
            }
            let cgroups = fs::read_to_string(proc_dir.join("cgroup")).unwrap_or_default();
            let in_ours =
                cgroups.lines().any(|l| l.splitn(3, ':').nth(2).is_some_and(|path| path.starts_with(&cgroup_prefix)));
            if in_ours {
                found.push((pid_i32, format!("container process {pid}: {shown}")));
            }
        }
        found
    }

    /// Mount points under this containerd's directory, from
    /// `/proc/self/mountinfo`.
    fn mounts(&self) -> Vec<String> {
        let dir = path_str(&self.dir);
        let under = format!("{dir}/");
        let info = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        info.lines()
            .filter_map(|l| l.split(' ').nth(4))
            .filter(|m| *m == dir || m.starts_with(&under))
            .map(str::to_string)
            .collect()
    }

    /// What a finished session must not leave behind: shim and container
    /// processes, mounts under this containerd's directory, runc state of
    /// this namespace, bundles in containerd's runtime v2 dirs, container
    /// cgroups (`/<namespace>/<id>`; the namespace's own cgroup directory
    /// is containerd's and is removed on drop).
    pub fn leftovers(&self) -> Vec<String> {
        let mut found: Vec<String> = self.processes().into_iter().map(|(_, what)| what).collect();
        found.extend(self.mounts().into_iter().map(|m| format!("mount {m}")));
        for root in self.runc_state_roots() {
            found.extend(entries(&root).into_iter().map(|p| format!("runc state {}", p.display())));
        }
        for base in [self.dir.join("state"), self.dir.join("root")] {
            let bundles = base.join("io.containerd.runtime.v2.task").join(&self.namespace);
            found.extend(entries(&bundles).into_iter().map(|p| format!("bundle {}", p.display())));
        }
        for ns_dir in self.cgroup_namespace_dirs() {
            found.extend(subdirs(&ns_dir).into_iter().map(|p| format!("cgroup {}", p.display())));
        }
        found
    }

    /// Shim sockets in `/run/containerd/s` that appeared since this
    /// containerd started and are still there.
    pub fn new_sockets(&self) -> Vec<String> {
        shim_sockets().into_iter().filter(|s| !self.sockets_before.contains(s)).collect()
    }

    /// Waits (at most [`WAIT`]) until [`leftovers`](Self::leftovers) is
    /// empty: a shim may still be exiting when `ctr` returns.
    pub fn assert_no_leftovers(&self) {
        let deadline = Instant::now() + WAIT;
        loop {
            let left = self.leftovers();
            if left.is_empty() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "left behind after {:?}:\n  {}\ncontainerd log:\n{}",
                WAIT,
                left.join("\n  "),
                self.log_tail()
            );
            std::thread::sleep(POLL);
        }
    }

    /// Stops containerd (as [`stop`](Self::stop)) and starts it again on the
    /// same directories and sockets, as after an upgrade or a crash; waits
    /// until it answers. Running shims and containers are left alone.
    pub fn restart(&mut self) {
        self.stop();
        self.child = Some(spawn_containerd(&self.dir.join("config.toml"), &self.log, self.path_first.as_deref()));
        self.wait_ready();
    }

    /// Pids of the shim processes serving container `id` in this
    /// containerd (their command line names its address and the id).
    pub fn shim_pids(&self, id: &str) -> Vec<i32> {
        self.shims_started_for(Some(id))
    }

    /// Every shim process of this containerd, whatever container it was
    /// started for.
    pub fn all_shim_pids(&self) -> Vec<i32> {
        self.shims_started_for(None)
    }

    fn shims_started_for(&self, id: Option<&str>) -> Vec<i32> {
        let address = self.address.as_os_str().as_bytes();
        let mut pids = Vec::new();
        for proc_dir in entries(Path::new("/proc")) {
            let Some(pid) = proc_dir.file_name().and_then(|n| n.to_str()).and_then(|n| n.parse::<i32>().ok()) else {
                continue;
            };
            let cmdline = fs::read(proc_dir.join("cmdline")).unwrap_or_default();
            let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
            if flag_is(&args, b"-address", address) && id.is_none_or(|id| flag_is(&args, b"-id", id.as_bytes())) {
                pids.push(pid);
            }
        }
        pids
    }

    /// The containerd process's pid, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Whether the containerd process still runs.
    pub fn is_running(&mut self) -> bool {
        self.child.as_mut().is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// Stops containerd: SIGTERM, then SIGKILL if it has not exited within
    /// [`STOP_TIMEOUT`]. Shims outlive it (that is how containerd works);
    /// `Drop` deals with them.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else { return };
        if !matches!(child.try_wait(), Ok(None)) {
            return;
        }
        if let Ok(pid) = i32::try_from(child.id()) {
            let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
        }
        let deadline = Instant::now() + STOP_TIMEOUT;
        loop {
            if !matches!(child.try_wait(), Ok(None)) {
                return;
            }
            if Instant::now() >= deadline {
                eprintln!("containerd did not exit within {:?} of SIGTERM; killing it", STOP_TIMEOUT);
                let _ = child.kill();
                let _ = child.wait();
                return;
            }
            std::thread::sleep(POLL);
        }
    }

    /// Asks containerd to end every task and container of the namespace.
    fn delete_everything(&self) {
        let bound = Duration::from_secs(20);
        if let Ok(out) = run_bounded(self.ctr_command(["task", "ls", "-q"]), bound, "ctr task ls -q") {
            for id in text(&out.stdout).lines().map(str::trim).filter(|l| !l.is_empty()) {
                let what = format!("ctr task delete --force {id}");
                if let Err(e) = run_bounded(self.ctr_command(["task", "delete", "--force", id]), bound, &what) {
                    eprintln!("cleanup: {e}");
                }
            }
        }
        if let Ok(out) = run_bounded(self.ctr_command(["container", "ls", "-q"]), bound, "ctr container ls -q") {
            for id in text(&out.stdout).lines().map(str::trim).filter(|l| !l.is_empty()) {
                let what = format!("ctr container delete {id}");
                if let Err(e) = run_bounded(self.ctr_command(["container", "delete", id]), bound, &what) {
                    eprintln!("cleanup: {e}");
                }
            }
        }
    }

    /// Removes by force what containerd and the shims did not: runc
    /// containers, shim and container processes, mounts, cgroups.
    fn force_clean(&self) {
        let runc = shim_core::testing::runc_binary();
        for root in self.runc_state_roots() {
            for state in entries(&root) {
                let Some(id) = state.file_name().map(OsStr::to_os_string) else { continue };
                let mut cmd = Command::new(&runc);
                cmd.arg("--root").arg(&root).args(["delete", "--force"]).arg(&id);
                if let Err(e) = run_bounded(cmd, Duration::from_secs(10), "runc delete --force") {
                    eprintln!("cleanup: {e}");
                }
            }
            // Only if empty: the namespace's directory, never the root itself.
            let _ = fs::remove_dir(&root);
        }
        for (pid, what) in self.processes() {
            eprintln!("cleanup: killing {what}");
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
        let mut mounts = self.mounts();
        mounts.sort_by_key(|m| std::cmp::Reverse(m.len()));
        for mount in mounts {
            if !umount_detach(&mount) {
                eprintln!("cleanup: cannot unmount {mount}: {}", std::io::Error::last_os_error());
            }
        }
        // A killed process leaves its cgroup a moment later.
        let deadline = Instant::now() + STOP_TIMEOUT;
        loop {
            let dirs = self.cgroup_namespace_dirs();
            for dir in &dirs {
                rmdir_tree(dir);
            }
            let left = self.cgroup_namespace_dirs();
            if left.is_empty() {
                break;
            }
            if Instant::now() >= deadline {
                eprintln!("cleanup: cannot remove cgroups {left:?}");
                break;
            }
            std::thread::sleep(POLL);
        }
    }
}

/// Whether Go-style flag `flag` is followed by `value` in a command line.
fn flag_is(args: &[&[u8]], flag: &[u8], value: &[u8]) -> bool {
    args.windows(2).any(|w| matches!(w, [f, v] if *f == flag && *v == value))
}

/// The entries of the directory where shims (ours and containerd's) put
/// their sockets.
fn shim_sockets() -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(SHIM_SOCKET_DIR)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// Where shims put their sockets (containerd's own and ours).
const SHIM_SOCKET_DIR: &str = "/run/containerd/s";

impl Drop for Containerd {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("containerd log ({}), last lines:\n{}", self.log.display(), self.log_tail());
        }
        if self.is_running() {
            self.delete_everything();
        }
        self.stop();
        self.force_clean();
        // A socket a killed shim could not remove (the Go shim's, after
        // SIGKILL) is this test's to clean up; nothing listens on it now.
        for name in self.new_sockets() {
            let path = Path::new(SHIM_SOCKET_DIR).join(&name);
            if std::os::unix::net::UnixStream::connect(&path).is_err() {
                let _ = fs::remove_file(path);
            }
        }
        if let Some(dir) = self.tempdir.take() {
            let path = dir.path().to_path_buf();
            if let Err(e) = dir.close() {
                eprintln!("cleanup: cannot remove {}: {e}", path.display());
            }
        }
    }
}

/// containerd's config: everything inside `dir`, nothing of the host's.
fn config_toml(dir: &Path, address: &Path, cri: bool) -> String {
    let d = path_str(dir);
    let a = path_str(address);
    let disabled: Vec<String> = DISABLED_PLUGINS
        .iter()
        .filter(|p| !(cri && **p == "io.containerd.grpc.v1.cri"))
        .map(|p| format!("\"{p}\""))
        .collect();
    let disabled = disabled.join(", ");
    format!(
        r#"version = 2
root = "{d}/root"
state = "{d}/state"
temp = "{d}/tmp"
disabled_plugins = [{disabled}]

[grpc]
  address = "{a}"

[ttrpc]
  address = "{a}.ttrpc"

[debug]
  level = "debug"

[plugins]
  [plugins."io.containerd.runtime.v1.linux"]
    runtime_root = "{d}/runc-v1"
"#
    )
}

/// The lines `ctr events` printed so far, shared with its reader threads.
struct Lines {
    lines: Mutex<Vec<String>>,
    changed: Condvar,
}

fn spawn_line_reader<R: Read + Send + 'static>(pipe: R, prefix: &'static str, shared: Arc<Lines>) {
    std::thread::spawn(move || {
        for line in BufReader::new(pipe).lines() {
            let Ok(line) = line else { break };
            let mut lines = shared.lines.lock().unwrap_or_else(PoisonError::into_inner);
            lines.push(format!("{prefix}{line}"));
            shared.changed.notify_all();
        }
    });
}

/// One line of `ctr events`:
/// `2026-12-03 06:57:30.07 +0000 UTC <namespace> <topic> <json>`.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// The namespace the event was published in.
    pub namespace: String,
    /// The topic, e.g. `/tasks/exit`.
    pub topic: String,
    /// The event as JSON (fields with zero values are omitted by containerd,
    /// e.g. `exit_status` 0).
    pub payload: serde_json::Value,
}

impl Event {
    /// Parses a line of `ctr events`; `None` for anything else.
    pub fn parse(line: &str) -> Option<Event> {
        if !matches!(line.as_bytes().first(), Some(b) if b.is_ascii_digit()) {
            return None;
        }
        let tokens: Vec<&str> = line.split(' ').collect();
        let at = tokens.iter().position(|t| t.starts_with('/'))?;
        let namespace = tokens.get(at.checked_sub(1)?)?;
        let topic = tokens.get(at)?;
        let rest = tokens.get(at + 1..).unwrap_or_default().join(" ");
        // What is not JSON (an event type ctr cannot decode) is kept as text.
        let payload = if rest.trim().is_empty() {
            serde_json::Value::Null
        } else {
            serde_json::from_str(&rest).unwrap_or(serde_json::Value::String(rest))
        };
        Some(Event { namespace: namespace.to_string(), topic: topic.to_string(), payload })
    }

    /// The container the event is about: `container_id` of task events,
    /// `id` of container events, `key` of snapshot events (a container's
    /// snapshot is keyed by its id).
    pub fn container(&self) -> Option<&str> {
        let key = if self.topic.starts_with("/tasks/") {
            "container_id"
        } else if self.topic.starts_with("/containers/") {
            "id"
        } else if self.topic.starts_with("/snapshot/") {
            "key"
        } else {
            return None;
        };
        self.payload.get(key).and_then(serde_json::Value::as_str)
    }
}

/// `ctr events` running in the background, its lines recorded.
pub struct EventRecorder {
    child: Child,
    shared: Arc<Lines>,
}

impl EventRecorder {
    /// Waits until `check` over the lines so far returns something.
    fn wait_for<T>(&self, timeout: Duration, mut check: impl FnMut(&[String]) -> Option<T>) -> Option<T> {
        let deadline = Instant::now() + timeout;
        let mut lines = self.shared.lines.lock().unwrap_or_else(PoisonError::into_inner);
        loop {
            if let Some(found) = check(lines.as_slice()) {
                return Some(found);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            let (guard, _) = self.shared.changed.wait_timeout(lines, left).unwrap_or_else(PoisonError::into_inner);
            lines = guard;
        }
    }

    /// Every line so far (including `ctr events stderr: ...` lines).
    pub fn lines(&self) -> Vec<String> {
        self.shared.lines.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// Every event so far.
    pub fn events(&self) -> Vec<Event> {
        self.lines().iter().filter_map(|l| Event::parse(l)).collect()
    }

    /// Waits until an event satisfies `done` and returns all events up to
    /// that one; fails the test after `timeout`.
    pub fn until(&self, mut done: impl FnMut(&Event) -> bool, timeout: Duration) -> Vec<Event> {
        let found = self.wait_for(timeout, |lines| {
            let mut events = Vec::new();
            for event in lines.iter().filter_map(|l| Event::parse(l)) {
                let stop = done(&event);
                events.push(event);
                if stop {
                    return Some(events);
                }
            }
            None
        });
        match found {
            Some(events) => events,
            None => {
                panic!("the awaited event did not come within {timeout:?}; lines so far:\n{}", self.lines().join("\n"))
            }
        }
    }

    /// The events about `container` so far (see [`Event::container`]).
    pub fn for_container(&self, container: &str) -> Vec<Event> {
        self.events().into_iter().filter(|e| e.container() == Some(container)).collect()
    }

    /// The topics of [`for_container`](Self::for_container), in order.
    pub fn topics_for(&self, container: &str) -> Vec<String> {
        self.for_container(container).into_iter().map(|e| e.topic).collect()
    }
}

impl Drop for EventRecorder {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_ctr_event_lines() {
        let line = "2026-12-03 06:57:30.259861479 +0000 UTC t1 /tasks/exit \
                    {\"container_id\":\"d1\",\"id\":\"d1\",\"pid\":29618,\"exit_status\":137}";
        let event = Event::parse(line).expect("a task exit line parses");
        assert_eq!(event.namespace, "t1");
        assert_eq!(event.topic, "/tasks/exit");
        assert_eq!(event.container(), Some("d1"));
        assert_eq!(event.payload["exit_status"], 137);

        // A snapshot key may hold a space.
        let line = "2026-12-03 07:00:31.05 +0000 UTC ns1 /snapshot/prepare {\"key\":\"extract-1 sha256:ab\"}";
        let event = Event::parse(line).expect("a snapshot line parses");
        assert_eq!(event.payload["key"], "extract-1 sha256:ab");

        assert_eq!(Event::parse("ctr events stderr: ctr: rpc error: /x"), None);
    }

    #[test]
    fn config_keeps_everything_in_the_directory() {
        let config = config_toml(Path::new("/tmp/ctdX"), Path::new("/tmp/ctdX/c.sock"), false);
        assert!(config.contains("root = \"/tmp/ctdX/root\""), "{config}");
        assert!(config.contains("address = \"/tmp/ctdX/c.sock.ttrpc\""), "{config}");
        assert!(config.contains("\"io.containerd.grpc.v1.cri\", \"io.containerd.internal.v1.opt\""), "{config}");
    }
}
