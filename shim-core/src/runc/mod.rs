//! [`RuncRuntime`]: the [`Runtime`] that drives the runc command line, and
//! [`RuncShim`], the shim built on it.

mod cli;
mod console;

use std::collections::HashMap;
use std::ffi::OsString;
use std::os::fd::OwnedFd;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use futures::FutureExt;

use self::cli::{RuncCli, RuncStdio};
use self::console::ConsoleSocket;
use crate::container::{ContainerShim, ShimConfig};
use crate::error::{Result, ShimError};
use crate::events::EventBus;
use crate::io::ProcessStdio;
use crate::oom::OomWatcher;
use crate::reaper::{Monitor, Reaper};
use crate::runtime::{CreateSpec, Launched, Runtime};
use crate::signal::Signal;
use crate::stats::CgroupPaths;

/// Runtimes whose state layout is known: both keep a container's state in
/// `<root>/<id>/` (crun's seen on crun 1.8: `status`, `config.json`,
/// `exec.fifo` there) and refuse a create while that directory exists. With
/// each, where it keeps its state when run as root without `--root`: runc in
/// `/run/runc`; crun in `$XDG_RUNTIME_DIR/crun` when that is set, even for
/// root, so for crun only a given root is known.
const KNOWN_ROOTS: [(&str, Option<&str>); 2] = [("runc", Some("/run/runc")), ("crun", None)];

/// The state root of `binary` run with `root` (`--root`), when the runtime
/// is one of [`KNOWN_ROOTS`]; its default needs to be run as root to apply.
fn known_state_root(binary: &str, root: Option<&Path>, as_root: bool) -> Option<PathBuf> {
    let name = Path::new(binary).file_name()?;
    let (_, default) = KNOWN_ROOTS.iter().find(|(known, _)| name == *known)?;
    match root {
        Some(root) => Some(root.to_path_buf()),
        None => default.filter(|_| as_root).map(PathBuf::from),
    }
}

/// How long runc may take to send a terminal's pty master after it exited.
const CONSOLE_TIMEOUT: Duration = Duration::from_secs(10);

/// The shim running containers with runc.
pub type RuncShim = ContainerShim<RuncRuntime>;

/// Configuration of a [`RuncShim`].
#[derive(Debug, Clone)]
pub struct RuncConfig {
    /// The runtime binary (a name looked up in `PATH`, or a path). Default `runc`.
    pub runtime: String,
    /// runc's `--root`, where it keeps container state. Default: runc's own.
    pub runtime_root: Option<PathBuf>,
    /// Where the shim keeps pid files, process specs, logs and console
    /// sockets (created with mode 0700 if missing). By default each shim
    /// makes its own private subdirectory in it, so any number of shims, in
    /// one process or many, can share one `work_dir`; the subdirectory is
    /// removed when the shim is dropped (see [`RuncConfig::private_subdir`]
    /// for a `work_dir` that is one shim's alone). Each file is needed only
    /// during one runc call; it is removed while the next runc call runs,
    /// or when the shim is dropped.
    pub work_dir: PathBuf,
    /// Whether the shim makes its private subdirectory of `work_dir`
    /// (default `true`). `false` is for a `work_dir` that is this shim's
    /// alone, such as containerd's bundle of the shim's one container: the
    /// call files then live in `work_dir` itself, under a name prefix of
    /// this shim (`.rshim-`, its pid and two tokens), and those left are
    /// removed when the shim is dropped, the directory not. That saves a
    /// `mkdir` at the start and an `rmdir` at the end, 0.1-0.3 ms each on
    /// the ext4 of our benchmark machine (the directory's block is written
    /// and freed).
    pub private_subdir: bool,
    /// Pass `--systemd-cgroup` to runc.
    pub systemd_cgroup: bool,
    /// A runc call still running after this long (a hook that hangs) is
    /// killed and fails; `None` waits for ever. Default 60 s.
    pub command_timeout: Option<Duration>,
    /// The runtime-independent settings.
    pub shim: ShimConfig,
}

impl RuncConfig {
    /// A configuration with defaults and the given work directory.
    pub fn new(work_dir: impl Into<PathBuf>) -> Self {
        Self {
            runtime: "runc".into(),
            runtime_root: None,
            work_dir: work_dir.into(),
            private_subdir: true,
            systemd_cgroup: false,
            command_timeout: Some(Duration::from_secs(60)),
            shim: ShimConfig::default(),
        }
    }

    /// Sets the runtime binary.
    pub fn runtime(mut self, binary: impl Into<String>) -> Self {
        self.runtime = binary.into();
        self
    }

    /// Sets runc's `--root`.
    pub fn runtime_root(mut self, root: impl Into<PathBuf>) -> Self {
        self.runtime_root = Some(root.into());
        self
    }

    /// Sets whether the shim makes its own subdirectory of the work
    /// directory; see [`RuncConfig::private_subdir`].
    pub fn private_subdir(mut self, on: bool) -> Self {
        self.private_subdir = on;
        self
    }

    /// Sets `--systemd-cgroup`.
    pub fn systemd_cgroup(mut self, on: bool) -> Self {
        self.systemd_cgroup = on;
        self
    }

    /// Sets the runc call timeout; see [`RuncConfig::command_timeout`].
    pub fn command_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.command_timeout = timeout;
        self
    }

    /// Sets the output grace period; see [`ShimConfig::io_grace`].
    pub fn io_grace(mut self, grace: Duration) -> Self {
        self.shim.io_grace = grace;
        self
    }
}

impl ContainerShim<RuncRuntime> {
    /// A shim running containers with runc; creates the work directory.
    pub fn new(config: RuncConfig, reaper: Reaper) -> Result<Self> {
        Self::with_event_bus(config, reaper, None)
    }

    /// Like [`RuncShim::new`], publishing on the given bus (shared with other
    /// parts of the embedding program), or on a new one.
    pub fn with_event_bus(config: RuncConfig, reaper: Reaper, bus: Option<EventBus>) -> Result<Self> {
        let shim_config = config.shim.clone();
        let runtime = RuncRuntime::new(config, reaper)?;
        Ok(ContainerShim::with_runtime(runtime, shim_config, bus))
    }
}

/// Files of one runtime call in the work directory, handed to the
/// runtime's [`Trash`] when the call is done.
struct CallFiles {
    paths: Vec<PathBuf>,
    trash: Trash,
}

impl Drop for CallFiles {
    fn drop(&mut self) {
        self.trash.put(std::mem::take(&mut self.paths));
    }
}

/// Call files waiting to be removed.
///
/// Removing a file runc wrote is not free: runc writes its pid files with
/// `O_SYNC`, so their blocks are on disk, and unlinking one took 90–250 µs
/// on an ext4 work directory here (6 µs on tmpfs), as long as the rest of a
/// Create's own work. So a call does not remove its files before it
/// answers: they are removed while the next runtime process runs (when this
/// thread would only wait for it), and whatever is left when the runtime is
/// dropped goes with its directory (or, without a private subdirectory, is
/// removed then). At most the files of the calls since the
/// last runtime process are ever waiting.
#[derive(Clone, Default)]
pub(crate) struct Trash(Arc<Mutex<Vec<PathBuf>>>);

impl Trash {
    fn put(&self, mut paths: Vec<PathBuf>) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).append(&mut paths);
    }

    /// Removes every waiting file (a missing one is not an error: a call may
    /// never have created all of its files).
    pub(crate) fn empty(&self) {
        let paths = std::mem::take(&mut *self.0.lock().unwrap_or_else(|e| e.into_inner()));
        for p in paths {
            if let Err(e) = std::fs::remove_file(&p) {
                if e.kind() != std::io::ErrorKind::NotFound {
                    tracing::debug!(path = %p.display(), error = %e, "cannot remove a call file");
                }
            }
        }
    }
}

impl std::fmt::Debug for Trash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Trash")
    }
}

impl Drop for RuncRuntime {
    fn drop(&mut self) {
        if !self.config.private_subdir {
            // Every call file is in the trash once its call is done.
            self.trash.empty();
            return;
        }
        // Only this runtime's files are in it, and none is needed after its call.
        if let Err(e) = std::fs::remove_dir_all(&self.dir) {
            tracing::debug!(dir = %self.dir.display(), error = %e, "cannot remove the shim's work directory");
        }
    }
}

/// The runc command line as a [`Runtime`].
pub struct RuncRuntime {
    config: RuncConfig,
    /// Where the call files are: this runtime's own subdirectory of
    /// `config.work_dir`, or `work_dir` itself (see
    /// [`RuncConfig::private_subdir`]).
    dir: PathBuf,
    /// The start of every call file's name: empty in a private
    /// subdirectory, this runtime's own in a work directory without one.
    prefix: String,
    reaper: Reaper,
    counter: AtomicU64,
    /// Files of finished calls, removed during the next runtime call.
    trash: Trash,
    /// The binary of each container (a Create may name its own).
    binaries: Mutex<HashMap<String, RuncCli>>,
    /// Containers restored from a checkpoint and not started yet: their
    /// processes already run, so Start has no runc work to do.
    restored: Mutex<std::collections::HashSet<String>>,
    /// The cgroups of each container, read from its init at create: Stats
    /// still finds them once the init has exited (until Delete), as kubelet
    /// and CRI read the metrics of an exited container.
    cgroups: Mutex<HashMap<String, CgroupPaths>>,
}

impl std::fmt::Debug for RuncRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RuncRuntime").field("config", &self.config).finish_non_exhaustive()
    }
}

impl RuncRuntime {
    /// Creates the runtime and, unless [`RuncConfig::private_subdir`] is
    /// off, its private subdirectory of the work directory (both mode 0700;
    /// the work directory only if missing).
    pub fn new(config: RuncConfig, reaper: Reaper) -> Result<Self> {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&config.work_dir)
            .map_err(|e| ShimError::io(format!("cannot create work directory {}", config.work_dir.display()), e))?;
        // Call files are named by a counter of this runtime, which another
        // runtime on the same work_dir repeats: hence a fresh directory per
        // runtime, or, in a work directory that is this one's alone, a
        // prefix that a runtime before it there (a shim that died) did not
        // use either.
        let (dir, prefix) = if config.private_subdir {
            let template = config.work_dir.join("shim-XXXXXX");
            let dir = nix::unistd::mkdtemp(&template).map_err(|e| {
                ShimError::io(format!("cannot create a private directory in {}", config.work_dir.display()), e)
            })?;
            (dir, String::new())
        } else {
            // The pid and the time tell this runtime's files from those of a
            // process before it; the sequence number from those of another
            // runtime of this process made in the same clock tick (the
            // directory should be one runtime's alone, but two given the
            // same one must still not overwrite each other's files). It
            // only names files: no shim's behaviour depends on it.
            static SEQUENCE: AtomicU64 = AtomicU64::new(0);
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.subsec_nanos())
                .unwrap_or_default();
            let n = SEQUENCE.fetch_add(1, Ordering::Relaxed);
            (config.work_dir.clone(), format!(".rshim-{}-{nanos:08x}-{n}-", std::process::id()))
        };
        Ok(Self {
            config,
            dir,
            prefix,
            reaper,
            counter: AtomicU64::new(0),
            trash: Trash::default(),
            binaries: Mutex::new(HashMap::new()),
            restored: Mutex::new(Default::default()),
            cgroups: Mutex::new(HashMap::new()),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &RuncConfig {
        &self.config
    }

    /// Where the files of this shim's runc calls live while they run: its
    /// private subdirectory of [`RuncConfig::work_dir`], or that directory
    /// itself (see [`RuncConfig::private_subdir`]).
    pub fn work_dir(&self) -> &Path {
        &self.dir
    }

    fn files<const N: usize>(&self, kind: &str, exts: [&str; N]) -> (CallFiles, [PathBuf; N]) {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        let name = |ext: &str| format!("{}{kind}-{n}.{ext}", self.prefix);
        let paths = exts.map(|ext| self.dir.join(name(ext)));
        let mut owned = paths.to_vec();
        // runc writes a pid file as "." and its name, then renames it: a
        // runc that failed or was killed in between leaves that one, which
        // only a private subdirectory would take away with it.
        if !self.config.private_subdir {
            let pid_files = exts.iter().filter(|ext| **ext == "pid");
            owned.extend(pid_files.map(|ext| self.dir.join(format!(".{}", name(ext)))));
        }
        (CallFiles { paths: owned, trash: self.trash.clone() }, paths)
    }

    fn cli(&self, id: &str) -> RuncCli {
        let known = self.binaries.lock().unwrap_or_else(|e| e.into_inner()).get(id).cloned();
        known.unwrap_or_else(|| self.default_cli())
    }

    fn default_cli(&self) -> RuncCli {
        RuncCli {
            binary: self.config.runtime.clone(),
            root: self.config.runtime_root.clone(),
            systemd_cgroup: self.config.systemd_cgroup,
            reaper: self.reaper.clone(),
            timeout: self.config.command_timeout,
            trash: self.trash.clone(),
        }
    }

    /// The runtime binary and global flags for the container of `spec`: the
    /// request's, where it asks for any, over this runtime's configuration.
    fn cli_for(&self, spec: &CreateSpec) -> RuncCli {
        let mut cli = self.default_cli();
        if !spec.runtime.is_empty() {
            cli.binary = spec.runtime.clone();
        }
        if !spec.runtime_root.is_empty() {
            cli.root = Some(PathBuf::from(&spec.runtime_root));
        }
        cli.systemd_cgroup |= spec.systemd_cgroup;
        cli
    }

    /// Whether the runtime already holds a container `id`. For runc and
    /// crun, whose state directories are known, a look at it; for other
    /// runtimes, their `state` command (a process more per Create: with crun
    /// that was about half of the shim's own time in a lifecycle).
    async fn exists(&self, cli: &RuncCli, id: &str) -> bool {
        if let Some(root) = known_state_root(&cli.binary, cli.root.as_deref(), nix::unistd::Uid::effective().is_root())
        {
            return std::fs::symlink_metadata(root.join(id)).is_ok();
        }
        let (_files, [log]) = self.files("state", ["log"]);
        cli.run(&["state".into(), id.into()], &log, RuncStdio::default()).await.is_ok()
    }

    async fn control(&self, id: &str, args: Vec<OsString>) -> Result<()> {
        let (_files, [log]) = self.files("ctl", ["log"]);
        self.cli(id).run(&args, &log, RuncStdio::default()).await
    }

    /// Whether CRIU can checkpoint on this host: `criu check`, whose last
    /// error line becomes the reason of a `FAILED_PRECONDITION`.
    async fn criu_check(&self) -> Result<()> {
        let mut cmd = std::process::Command::new("criu");
        cmd.arg("check").stdin(Stdio::null());
        let out = match self.reaper.output(&mut cmd).await {
            Ok(out) => out,
            Err(e) => {
                return Err(ShimError::FailedPrecondition(format!(
                    "checkpoints need CRIU, which cannot be run here (criu: {e}); install it (Debian: apt-get install criu)"
                )))
            }
        };
        if out.status.success() {
            return Ok(());
        }
        let text = String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
        let reason = text.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("no message").trim().to_string();
        Err(ShimError::FailedPrecondition(format!("CRIU cannot work on this host: `criu check` says: {reason}")))
    }

    /// Runs `create` or `exec`: a runc call that leaves a process behind.
    async fn launch(
        &self,
        cli: &RuncCli,
        mut args: Vec<OsString>,
        id: &str,
        stdio: ProcessStdio,
        files: (&Path, &Path, &Path),
    ) -> Result<(u32, Monitor, Option<OwnedFd>)> {
        let (pid_file, log, sock) = files;
        let console = if stdio.terminal {
            let c = ConsoleSocket::bind(sock)
                .map_err(|e| ShimError::io(format!("cannot bind console socket {}", sock.display()), e))?;
            args.push("--console-socket".into());
            args.push(c.path().into());
            Some(c)
        } else {
            None
        };
        args.push(id.into());
        let runc_stdio = RuncStdio {
            stdin: stdio.stdin.map(Stdio::from),
            stdout: stdio.stdout.map(Stdio::from),
            stderr: stdio.stderr.map(Stdio::from),
            process: true,
        };
        // Taken before runc runs: a process that exits before its pid file is
        // read is still caught.
        let monitor = self.reaper.monitor();
        let run = cli.run(&args, log, runc_stdio);
        let master = match &console {
            None => {
                run.await?;
                None
            }
            Some(console) => {
                let recv = console.receive();
                tokio::pin!(run, recv);
                let mut master = None;
                loop {
                    tokio::select! {
                        r = &mut run => { r?; break; }
                        m = &mut recv, if master.is_none() => master = Some(m),
                    }
                }
                let master = match master {
                    Some(m) => m,
                    None => tokio::time::timeout(CONSOLE_TIMEOUT, recv)
                        .await
                        .unwrap_or_else(|_| Err(std::io::Error::other("the runtime sent no pty master"))),
                };
                match master {
                    Ok(m) => Some(m),
                    Err(e) => {
                        // The process runs but cannot be given its terminal: stop it.
                        if let Ok(pid) = read_pid(pid_file) {
                            let _watch = monitor.watch(pid);
                            let _ = self.reaper.signal_unreaped(pid, Signal::KILL);
                        }
                        return Err(ShimError::io("cannot receive the pty master", e));
                    }
                }
            }
        };
        let pid = read_pid(pid_file)?;
        Ok((pid, monitor, master))
    }
}

/// Creates a call file of the work directory (mode 0600; it must not exist
/// yet) holding `bytes`, and returns it open for writing.
fn write_private(path: &Path, bytes: &[u8]) -> Result<std::fs::File> {
    use std::io::Write;
    let err = |e| ShimError::io(format!("cannot write {}", path.display()), e);
    let mut file = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path).map_err(err)?;
    file.write_all(bytes).map_err(err)?;
    Ok(file)
}

fn read_pid(path: &Path) -> Result<u32> {
    let text = std::fs::read(path).map_err(|e| ShimError::io(format!("cannot read pid file {}", path.display()), e))?;
    parse_pid(&text).map_err(|e| ShimError::Internal(format!("pid file {}: {e}", path.display())))
}

/// Parses the content of a runc pid file: a positive decimal pid, maybe with
/// surrounding whitespace.
pub fn parse_pid(text: &[u8]) -> std::result::Result<u32, String> {
    let text = String::from_utf8_lossy(text);
    match text.trim().parse::<u32>() {
        Ok(pid) if pid > 0 && i32::try_from(pid).is_ok() => Ok(pid),
        _ => {
            let shown: String = text.trim().chars().take(64).collect();
            Err(format!("{shown:?} is not a pid"))
        }
    }
}

pub use self::cli::error_message;

/// Parses `runc ps --format json`: a JSON array of pids (`null` when the
/// container has none).
pub fn parse_pids(text: &[u8]) -> std::result::Result<Vec<u32>, String> {
    let value: Option<Vec<u32>> = serde_json::from_slice(text).map_err(|e| format!("not a list of pids: {e}"))?;
    Ok(value.unwrap_or_default())
}

/// Whether a failed `create` says the id was taken: runc 1.1 "container
/// with given ID already exists", runc 1.0 "container with id exists",
/// crun "container `ID` already exists".
fn is_exists_error(e: &ShimError) -> bool {
    match e {
        ShimError::Runtime { message, .. } => {
            message.contains("container with given ID already exists")
                || message.contains("container with id exists")
                || (message.contains("container `") && message.contains("` already exists"))
        }
        _ => false,
    }
}

fn launched(pid: u32, monitor: Monitor, console: Option<OwnedFd>, oom: Option<OomWatcher>) -> Launched {
    let waiter = monitor.watch(pid);
    drop(monitor);
    Launched { pid, exit: waiter.wait_reaping().map(|e| e.map(|e| e.status)).boxed(), console, oom }
}

#[async_trait]
impl Runtime for RuncRuntime {
    async fn create(&self, spec: &CreateSpec, stdio: ProcessStdio) -> Result<Launched> {
        let cli = self.cli_for(spec);
        // A container of this id in the runtime's root belongs to someone
        // else (another shim, or one that died): refuse before touching it,
        // so the cleanup of a failed create can never remove it.
        if self.exists(&cli, &spec.id).await {
            return Err(ShimError::ExistsInRuntime { id: spec.id.clone(), runtime: cli.command_prefix() });
        }
        let restore = !spec.checkpoint.is_empty();
        if restore {
            // Say first whether CRIU can work here at all: its own reason is
            // more use than runc's.
            self.criu_check().await?;
        }
        let (_files, [pid_file, log, sock]) = self.files("init", ["pid", "log", "sock"]);
        let mut args: Vec<OsString> = if restore {
            // The restored processes run as soon as runc returns: there is
            // no "created" stage to hold them in, so Start only records it.
            vec!["restore".into(), "--detach".into(), "--image-path".into(), spec.checkpoint.clone().into()]
        } else {
            vec!["create".into()]
        };
        args.extend(["--bundle".into(), spec.bundle.clone().into(), "--pid-file".into(), pid_file.clone().into()]);
        if spec.no_pivot {
            args.push("--no-pivot".into());
        }
        let (pid, monitor, console) =
            self.launch(&cli, args, &spec.id, stdio, (&pid_file, &log, &sock)).await.map_err(|e| {
                // Another shim created the id between our check and runc's:
                // it is theirs, so the failed create must not clean it up.
                if is_exists_error(&e) {
                    ShimError::ExistsInRuntime { id: spec.id.clone(), runtime: cli.command_prefix() }
                } else {
                    e
                }
            })?;
        self.binaries.lock().unwrap_or_else(|e| e.into_inner()).insert(spec.id.clone(), cli);
        if restore {
            self.restored.lock().unwrap_or_else(|e| e.into_inner()).insert(spec.id.clone());
        }
        let oom = match CgroupPaths::of_pid(pid) {
            Ok(paths) => {
                let watcher = OomWatcher::for_cgroup(&paths);
                self.cgroups.lock().unwrap_or_else(|e| e.into_inner()).insert(spec.id.clone(), paths);
                watcher
            }
            Err(e) => {
                tracing::warn!(pid, error = %e, "cannot find the container's cgroups: no oom events or stats");
                None
            }
        };
        Ok(launched(pid, monitor, console, oom))
    }

    async fn start(&self, id: &str) -> Result<()> {
        if self.restored.lock().unwrap_or_else(|e| e.into_inner()).remove(id) {
            // Restored from a checkpoint: already running (see `create`).
            return Ok(());
        }
        self.control(id, vec!["start".into(), id.into()]).await
    }

    async fn exec(&self, id: &str, process: &serde_json::Value, stdio: ProcessStdio) -> Result<Launched> {
        let (_files, [spec_file, pid_file, log, sock]) = self.files("exec", ["json", "pid", "log", "sock"]);
        let bytes = serde_json::to_vec(process).map_err(|e| ShimError::Internal(format!("process spec: {e}")))?;
        write_private(&spec_file, &bytes)?;
        let args: Vec<OsString> = vec![
            "exec".into(),
            "--process".into(),
            spec_file.clone().into(),
            "--detach".into(),
            "--pid-file".into(),
            pid_file.clone().into(),
        ];
        let (pid, monitor, console) = self.launch(&self.cli(id), args, id, stdio, (&pid_file, &log, &sock)).await?;
        Ok(launched(pid, monitor, console, None))
    }

    async fn kill_all(&self, id: &str, signal: Signal) -> Result<()> {
        self.control(id, vec!["kill".into(), "--all".into(), id.into(), signal.number().to_string().into()]).await
    }

    fn signal(&self, pid: u32, signal: Signal) -> Result<bool> {
        self.reaper.signal_unreaped(pid, signal).map_err(|e| ShimError::io(format!("cannot signal process {pid}"), e))
    }

    async fn delete(&self, id: &str) -> Result<()> {
        if self.control(id, vec!["delete".into(), id.into()]).await.is_err() {
            self.control(id, vec!["delete".into(), "--force".into(), id.into()]).await?;
        }
        self.binaries.lock().unwrap_or_else(|e| e.into_inner()).remove(id);
        self.restored.lock().unwrap_or_else(|e| e.into_inner()).remove(id);
        self.cgroups.lock().unwrap_or_else(|e| e.into_inner()).remove(id);
        Ok(())
    }

    async fn pause(&self, id: &str) -> Result<()> {
        self.control(id, vec!["pause".into(), id.into()]).await
    }

    async fn resume(&self, id: &str) -> Result<()> {
        self.control(id, vec!["resume".into(), id.into()]).await
    }

    async fn pids(&self, id: &str) -> Result<Vec<u32>> {
        let (_files, [out, log]) = self.files("ps", ["out", "log"]);
        let file = write_private(&out, &[])?;
        let stdio = RuncStdio { stdout: Some(Stdio::from(file)), ..Default::default() };
        let args: Vec<OsString> = vec!["ps".into(), "--format".into(), "json".into(), id.into()];
        self.cli(id).run(&args, &log, stdio).await?;
        let text = std::fs::read(&out).map_err(|e| ShimError::io(format!("cannot read {}", out.display()), e))?;
        parse_pids(&text).map_err(|e| ShimError::Internal(format!("runc ps: {e}")))
    }

    async fn update(&self, id: &str, resources: &serde_json::Value) -> Result<()> {
        let (_files, [spec_file, log]) = self.files("update", ["json", "log"]);
        let bytes = serde_json::to_vec(resources).map_err(|e| ShimError::Internal(format!("resources: {e}")))?;
        write_private(&spec_file, &bytes)?;
        let args: Vec<OsString> = vec!["update".into(), "--resources".into(), spec_file.clone().into(), id.into()];
        self.cli(id).run(&args, &log, RuncStdio::default()).await.map_err(|e| match e {
            // cgroup v1 refuses a memory limit it cannot reclaim down to; the
            // container is unchanged and keeps running (v2 would OOM-kill).
            ShimError::Runtime { ref message, .. } if message.contains("unable to set memory limit") => {
                ShimError::FailedPrecondition(format!("the memory limit was refused and not applied: {message}"))
            }
            e => e,
        })
    }

    async fn checkpoint(&self, id: &str, image_path: &str, exit: bool) -> Result<()> {
        self.criu_check().await?;
        let mut args: Vec<OsString> = vec!["checkpoint".into(), "--image-path".into(), image_path.into()];
        if !exit {
            args.push("--leave-running".into());
        }
        args.push(id.into());
        self.control(id, args).await
    }

    fn reaper(&self) -> Option<&Reaper> {
        Some(&self.reaper)
    }

    async fn stats(&self, id: &str, pid: u32) -> Result<shim_proto::v1::StatsResponse> {
        // Read from the cgroup directly: no runc process per call.
        let known = self.cgroups.lock().unwrap_or_else(|e| e.into_inner()).get(id).cloned();
        match known {
            Some(paths) => crate::stats::of_cgroup(&paths),
            None => crate::stats::of_pid(pid),
        }
    }

    async fn cleanup(&self, spec: &CreateSpec) {
        let (_files, [log]) = self.files("ctl", ["log"]);
        let args = vec!["delete".into(), "--force".into(), spec.id.clone().into()];
        let _ = self.cli_for(spec).run(&args, &log, RuncStdio::default()).await;
        self.binaries.lock().unwrap_or_else(|e| e.into_inner()).remove(&spec.id);
        self.restored.lock().unwrap_or_else(|e| e.into_inner()).remove(&spec.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_roots_of_known_runtimes() {
        let given = Some(Path::new("/run/containerd/runc/k8s.io"));
        assert_eq!(known_state_root("runc", None, true), Some(PathBuf::from("/run/runc")));
        // crun's default follows XDG_RUNTIME_DIR even for root: ask it.
        assert_eq!(known_state_root("/usr/bin/crun", None, true), None);
        assert_eq!(known_state_root("crun", given, false), given.map(Path::to_path_buf));
        // Not root: the runtime's default is somewhere per user; ask it.
        assert_eq!(known_state_root("runc", None, false), None);
        // A runtime whose layout is not known, or a wrapper named otherwise.
        assert_eq!(known_state_root("youki", given, true), None);
        assert_eq!(known_state_root("/opt/runc-wrapper", given, true), None);
    }

    #[test]
    fn a_taken_id_is_told_apart_in_each_runtimes_words() {
        let failed = |message: &str| ShimError::Runtime {
            binary: "rt".into(),
            command: "create".into(),
            message: message.into(),
        };
        // crun 1.8, seen in the guest; runc 1.1.
        assert!(is_exists_error(&failed("container `c1` already exists")));
        assert!(is_exists_error(&failed("container with given ID already exists")));
        assert!(!is_exists_error(&failed("mkdir /sys/fs/cgroup/x: file exists")));
        assert!(!is_exists_error(&failed("cgroup already exists")));
    }
}
