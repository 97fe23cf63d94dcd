//! `containerd-shim-rshim-v1`: the shim core as containerd's runtime
//! `io.containerd.rshim.v1` (task API v2 over ttrpc).
//!
//! containerd runs it four ways, with Go-style flags before the action:
//!
//! - `-info` (containerd 2.2 and later, before a task's create): prints a
//!   protobuf `RuntimeInfo` with the OCI runtime's features (`runc
//!   features`, of the binary the options on stdin name) and exits;
//! - `-namespace NS -address SOCK -publish-binary BIN -id ID start`, in the
//!   bundle: binds the shim's socket, forks the long-running server that
//!   serves it (own session, stdio on /dev/null), writes the bundle's
//!   `address` file and answers: after containerd 2.3's bootstrap on stdin
//!   a `BootstrapResult` for task API v3 (its socket in the directory the
//!   bootstrap names), else the plain address (task API v2), then exits;
//! - the server, forked by `start`: the task service for the container and
//!   for every later container of its group (a Kubernetes pod: see
//!   `group_of`), logging to the first bundle's `log` FIFO, until Shutdown
//!   with no container left, or SIGTERM;
//! - `-namespace NS -address SOCK -id ID -bundle DIR delete`: cleans up after
//!   a shim that is gone (force-deletes the runc container, unmounts the
//!   rootfs) and prints a `DeleteResponse`.

use std::ffi::OsString;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use prost::Message;
use shim_core::{Reaper, RuncConfig, RuncShim, Shim};
use shim_transport_ttrpc::bootstrap::{runtime_info, start_answer, StartInput};
use shim_transport_ttrpc::events::{Forwarder, DEFAULT_CAPACITY};
use shim_transport_ttrpc::options::RuncOptions;
use shim_transport_ttrpc::proto::containerd::task::v2::DeleteResponse;
use shim_transport_ttrpc::server::Server;
use shim_transport_ttrpc::task::TaskService;

/// Where our sockets go; containerd's own shims use `/run/containerd/s`.
const SOCKET_DIR: &str = "/run/containerd/s";
/// runc's state root for a namespace, as containerd's runc shim sets it (so
/// `ctr` and tools that look there see the same containers).
const RUNC_ROOT: &str = "/run/containerd/runc";

#[derive(Debug, Default)]
struct Args {
    namespace: String,
    address: String,
    id: String,
    bundle: Option<PathBuf>,
    debug: bool,
    action: String,
}

fn parse(argv: impl Iterator<Item = OsString>) -> Result<Args, String> {
    let mut a = Args::default();
    let mut it = argv.map(|s| s.to_string_lossy().into_owned());
    while let Some(arg) = it.next() {
        // Go's flag package: `-name value`, `--name value` or `-name=value`.
        let name = arg.trim_start_matches('-');
        if name.len() == arg.len() {
            a.action = arg;
            continue;
        }
        let (name, inline) = match name.split_once('=') {
            Some((n, v)) => (n.to_string(), Some(v.to_string())),
            None => (name.to_string(), None),
        };
        if name == "debug" {
            a.debug = inline.is_none_or(|v| v != "false");
            continue;
        }
        if name == "v" || name == "version" {
            a.action = "version".into();
            continue;
        }
        // A Go bool flag, as containerd's shims take it.
        if name == "info" {
            if inline.is_none_or(|v| v != "false") {
                a.action = "info".into();
            }
            continue;
        }
        let value = match inline {
            Some(v) => v,
            None => it.next().ok_or_else(|| format!("flag -{name} needs a value"))?,
        };
        match name.as_str() {
            "namespace" => a.namespace = value,
            "address" => a.address = value,
            "id" => a.id = value,
            "bundle" => a.bundle = Some(PathBuf::from(value)),
            // Known to containerd's shims; not needed by this one.
            "publish-binary" | "socket" => {}
            other => return Err(format!("unknown flag -{other}")),
        }
    }
    Ok(a)
}

fn main() -> ExitCode {
    let args = match parse(std::env::args_os().skip(1)) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("containerd-shim-rshim-v1: {e}");
            return ExitCode::from(2);
        }
    };
    let result = match args.action.as_str() {
        "start" => start(&args),
        "delete" => delete(&args),
        "info" => info(),
        "version" => {
            println!("containerd-shim-rshim-v1 {}", env!("CARGO_PKG_VERSION"));
            Ok(())
        }
        other => Err(format!("unknown action {other:?}: expected start, delete or -info")),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("containerd-shim-rshim-v1: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The annotations that put containers in one shim, the first found wins:
/// containerd's runc shim groups by the same two (CRI marks every container
/// of a pod, its sandbox too, with the pod's sandbox id).
const GROUP_ANNOTATIONS: [&str; 2] = ["io.containerd.runc.v2.group", "io.kubernetes.cri.sandbox-id"];

/// The group of the container whose bundle is `bundle`: the value of its
/// spec's first grouping annotation, or its own id. A spec that cannot be
/// read or parsed groups nothing: the container gets a shim of its own, and
/// its Create reports what is wrong with the spec.
fn group_of(bundle: &Path, id: &str) -> String {
    #[derive(serde::Deserialize)]
    struct Spec {
        #[serde(default)]
        annotations: std::collections::HashMap<String, String>,
    }
    let spec = std::fs::read(bundle.join("config.json")).ok().and_then(|b| serde_json::from_slice::<Spec>(&b).ok());
    spec.and_then(|s| GROUP_ANNOTATIONS.iter().find_map(|a| s.annotations.get(*a).filter(|v| !v.is_empty()).cloned()))
        .unwrap_or_else(|| id.to_string())
}

/// A short, stable socket path in `dir` for (containerd address,
/// namespace, group): unix socket paths are limited to 108 bytes (containerd
/// keeps its socket directory setting to 42).
fn socket_path(dir: &Path, args: &Args, group: &str) -> PathBuf {
    // FNV-1a: stable across runs and builds, unlike std's hasher.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in args.address.bytes().chain([0]).chain(args.namespace.bytes()).chain([0]).chain(group.bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    dir.join(format!("rshim-{h:016x}.sock"))
}

fn start(args: &Args) -> Result<(), String> {
    if args.id.is_empty() || args.namespace.is_empty() {
        return Err("start needs -namespace and -id".into());
    }
    let bundle = std::env::current_dir().map_err(|e| format!("cannot read the working directory (the bundle): {e}"))?;
    // containerd 2.3's bootstrap, or the runtime options alone (older
    // releases): read whole, so the writer never blocks on a full pipe.
    let mut stdin = Vec::new();
    let _ = std::io::Read::read_to_end(&mut std::io::stdin(), &mut stdin);
    let input = StartInput::parse(&stdin, &args.id);
    let socket_dir = Path::new(input.socket_dir().unwrap_or(SOCKET_DIR));
    if !socket_dir.is_absolute() {
        return Err(format!("the socket directory {} is not an absolute path", socket_dir.display()));
    }
    let path = socket_path(socket_dir, args, &group_of(&bundle, &args.id));
    std::fs::create_dir_all(socket_dir).map_err(|e| format!("cannot create {}: {e}", socket_dir.display()))?;
    let address = format!("unix://{}", path.display());
    let lock = lock_dir(socket_dir)?;
    // A shim already serves this container's group (another container of
    // its pod, or this one when containerd retried `start`): its address is
    // the answer, as containerd's runc shim gives it; containerd then sends
    // this container's Create there.
    if std::os::unix::net::UnixStream::connect(&path).is_ok() {
        drop(lock);
        write_address(&bundle, &address)?;
        return answer(&input, &address);
    }
    // Of the options only `ShimCgroup` matters here, for a new shim.
    // Options that cannot be used (a config file that is missing) are
    // passed over: the container's Create reports them, naming the file,
    // where containerd shows the error with the container's.
    let options = input.options().and_then(|any| RuncOptions::from_any(any).ok()).unwrap_or_default();
    let listener = bind(&path)?;
    // A `start` that waited for the lock now finds this socket listening.
    drop(lock);
    // Inherited by the server: just above containerd (our parent) for the
    // OOM killer, so a node short of memory kills a shim before containerd.
    adjust_oom_score()?;
    // The server is this process forked, not re-executed: `start` runs
    // single-threaded (no runtime exists yet), so the child may go on in
    // Rust, and containerd's wait for `start` saves an exec.
    // SAFETY: no other thread exists in this process (see above), so the
    // child's copy of every lock and allocator is consistent.
    match unsafe { nix::unistd::fork() } {
        Err(e) => return Err(format!("cannot start the shim server: {e}")),
        Ok(nix::unistd::ForkResult::Child) => {
            let code = match detach().and_then(|()| serve(args, &bundle, &path, listener)) {
                Ok(()) => 0,
                Err(e) => {
                    tracing::error!(error = %e, "the shim server failed");
                    1
                }
            };
            std::process::exit(code);
        }
        Ok(nix::unistd::ForkResult::Parent { child }) => {
            drop(listener);
            if let Err(e) = join_shim_cgroup(&options.shim_cgroup, child) {
                // As containerd's runc shim: no shim outside the cgroup
                // asked for.
                let _ = nix::sys::signal::kill(child, nix::sys::signal::Signal::SIGKILL);
                let _ = std::fs::remove_file(&path);
                return Err(e);
            }
        }
    }
    write_address(&bundle, &address)?;
    answer(&input, &address)
}

/// Moves the new shim server `pid` into `cgroup` (the `ShimCgroup` option,
/// from each hierarchy's root), unless it is empty.
fn join_shim_cgroup(cgroup: &str, pid: nix::unistd::Pid) -> Result<(), String> {
    if cgroup.is_empty() {
        return Ok(());
    }
    let pid = u32::try_from(pid.as_raw()).map_err(|e| format!("shim pid {pid}: {e}"))?;
    shim_core::cgroup::CgroupPaths::named_here(cgroup)
        .and_then(|paths| paths.add_process(pid))
        .map_err(|e| format!("cannot place the shim in its ShimCgroup {cgroup:?}: {e}"))
}

/// Prints `start`'s answer (see [`start_answer`]) and nothing else.
fn answer(input: &StartInput, address: &str) -> Result<(), String> {
    use std::io::Write;
    let mut out = std::io::stdout();
    out.write_all(&start_answer(input, address)).and_then(|()| out.flush()).map_err(|e| format!("stdout: {e}"))
}

/// `-info`: this runtime's name and version, the options on stdin, and the
/// features of the OCI runtime binary they name (`runc features`, bounded
/// by 5 s; left out where it gives none, as older runc releases do).
fn info() -> Result<(), String> {
    use std::io::{Read, Write};
    let mut stdin = Vec::new();
    let _ = std::io::stdin().read_to_end(&mut stdin);
    let options = if stdin.is_empty() {
        None
    } else {
        Some(prost_types::Any::decode(stdin.as_slice()).map_err(|e| format!("the runtime options on stdin: {e}"))?)
    };
    let runc = match &options {
        Some(any) => RuncOptions::from_any(any).map_err(|e| e.to_string())?,
        None => RuncOptions::default(),
    };
    let binary = if runc.binary_name.is_empty() { "runc" } else { runc.binary_name.as_str() };
    let features = runtime_features(binary);
    let out =
        runtime_info("io.containerd.rshim.v1", env!("CARGO_PKG_VERSION"), env!("SHIM_REVISION"), options, features);
    let mut stdout = std::io::stdout();
    stdout.write_all(&out).and_then(|()| stdout.flush()).map_err(|e| format!("stdout: {e}"))
}

/// What `BINARY features` prints, if it is JSON.
fn runtime_features(binary: &str) -> Option<Vec<u8>> {
    let mut child = std::process::Command::new(binary)
        .arg("features")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .ok()?;
    let mut stdout = child.stdout.take()?;
    // Read on a thread, so a runtime that hangs is killed at the bound.
    let reader = std::thread::spawn(move || {
        let mut out = Vec::new();
        std::io::Read::read_to_end(&mut stdout, &mut out).map(|_| out)
    });
    let status = wait_bounded(&mut child, std::time::Duration::from_secs(5)).ok()??;
    let out = reader.join().ok()?.ok()?;
    (status.success() && serde_json::from_slice::<serde_json::Value>(&out).is_ok()).then_some(out)
}

/// Sets this process's `oom_score_adj` to its parent's plus one (at most
/// 1000), as containerd's shims set theirs.
fn adjust_oom_score() -> Result<(), String> {
    let parent = nix::unistd::getppid();
    let path = format!("/proc/{parent}/oom_score_adj");
    let score: i32 = std::fs::read_to_string(&path)
        .map_err(|e| format!("cannot read {path}: {e}"))?
        .trim()
        .parse()
        .map_err(|e| format!("{path}: {e}"))?;
    let ours = (score + 1).min(1000);
    std::fs::write("/proc/self/oom_score_adj", ours.to_string())
        .map_err(|e| format!("cannot set the shim's oom_score_adj to {ours}: {e}"))
}

/// Removes the socket the bundle's `address` file names, if no server
/// answers on it: a dead server's, in `delete`. A live one serves other
/// containers of the same group.
fn remove_dead_socket(bundle: &Path) {
    if let Ok(address) = std::fs::read_to_string(bundle.join("address")) {
        let path = Path::new(address.trim().trim_start_matches("unix://"));
        if std::os::unix::net::UnixStream::connect(path).is_err() {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// Writes the bundle's `address` file atomically: containerd reads it to
/// reconnect after a restart.
fn write_address(bundle: &Path, address: &str) -> Result<(), String> {
    // One temporary name per process: `start`s of one container at once
    // each write the same address, and none renames another's file away.
    let tmp = bundle.join(format!(".address.{}.tmp", std::process::id()));
    std::fs::write(&tmp, address)
        .and_then(|()| std::fs::rename(&tmp, bundle.join("address")))
        .map_err(|e| format!("cannot write the address file in {}: {e}", bundle.display()))
}

/// Held while a `start` decides between answering a running server's
/// address and binding the socket itself: two `start`s of one group at once
/// (a retried `start`, or two containers of a pod) would otherwise both find
/// no server, and the second would remove the first one's socket and start
/// a second server. The socket directory is the lock (the containers of a
/// group have different bundles), held for a connect and a bind, so no file
/// is left behind. Released before the fork, so the server does not hold it.
fn lock_dir(dir: &Path) -> Result<nix::fcntl::Flock<std::fs::File>, String> {
    let f = std::fs::File::open(dir).map_err(|e| format!("cannot open {}: {e}", dir.display()))?;
    nix::fcntl::Flock::lock(f, nix::fcntl::FlockArg::LockExclusive)
        .map_err(|(_, e)| format!("cannot lock {}: {e}", dir.display()))
}

fn bind(path: &Path) -> Result<std::os::unix::net::UnixListener, String> {
    use std::os::unix::fs::PermissionsExt;
    // Nobody answers on it (checked by the caller, under the bundle's lock):
    // a socket left by a shim that died, ours to replace, as the path is
    // derived from this container's id.
    let _ = std::fs::remove_file(path);
    // Created 0600 with no window: the umask applies at bind().
    let old = nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o177));
    let bound = std::os::unix::net::UnixListener::bind(path);
    nix::sys::stat::umask(old);
    let l = bound.map_err(|e| format!("cannot bind {}: {e}", path.display()))?;
    let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600));
    Ok(l)
}

/// Sends stderr (and so the log) to the bundle's `log` FIFO, whose read end
/// containerd holds and copies into its own log.
fn log_to_fifo(bundle: &Path, debug: bool) {
    use std::os::unix::fs::OpenOptionsExt;
    let opened = std::fs::OpenOptions::new().write(true).custom_flags(libc::O_NONBLOCK).open(bundle.join("log"));
    if let Ok(f) = opened {
        // SAFETY: dup2 onto stderr of fds this process owns.
        unsafe { libc::dup2(f.as_raw_fd(), 2) };
    }
    let level = if debug {
        tracing_subscriber::filter::LevelFilter::DEBUG
    } else {
        tracing_subscriber::filter::LevelFilter::INFO
    };
    shim_examples::logs::init(level, shim_examples::logs::LogFormat::Text);
}

/// The server's own session, with stdio on /dev/null: containerd reads
/// `start`'s output until end-of-file, so the server must not hold it.
fn detach() -> Result<(), String> {
    nix::unistd::setsid().map_err(|e| format!("setsid: {e}"))?;
    let null =
        std::fs::OpenOptions::new().read(true).write(true).open("/dev/null").map_err(|e| format!("/dev/null: {e}"))?;
    for fd in 0..=2 {
        // SAFETY: dup2 onto the standard fds of this process.
        if unsafe { libc::dup2(null.as_raw_fd(), fd) } < 0 {
            return Err(format!("dup2 onto fd {fd}: {}", std::io::Error::last_os_error()));
        }
    }
    Ok(())
}

fn serve(args: &Args, bundle: &Path, socket: &Path, listener: std::os::unix::net::UnixListener) -> Result<(), String> {
    let bundle = bundle.to_path_buf();
    log_to_fifo(&bundle, args.debug);
    listener.set_nonblocking(true).map_err(|e| format!("listener: {e}"))?;
    // Before any other thread exists (see the function).
    shim_examples::memory::one_malloc_arena();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))?;
    let result = rt.block_on(async move {
        let listener = tokio::net::UnixListener::from_std(listener).map_err(|e| format!("listener: {e}"))?;
        let reaper = Reaper::start().map_err(|e| e.to_string())?;
        let runc_root = Path::new(RUNC_ROOT).join(&args.namespace);
        let namespace = args.namespace.clone();
        // One core shim per container, all on this process's reaper. A
        // bundle is its container's alone, so the runc call files go there
        // directly, as the Go shim's do; containerd removes the bundle after
        // the container.
        let shims = move |_id: &str, bundle: &Path| -> shim_core::Result<Arc<dyn Shim>> {
            let mut config = RuncConfig::new(bundle).private_subdir(false).runtime_root(runc_root.clone());
            // Given to `binary://` loggers, as containerd's shims do.
            config.shim.namespace.clone_from(&namespace);
            Ok(Arc::new(RuncShim::new(config, reaper.clone())?))
        };
        let ttrpc_address = std::env::var("TTRPC_ADDRESS").unwrap_or_else(|_| format!("{}.ttrpc", args.address));
        let events = Forwarder::start(&ttrpc_address, &args.namespace, DEFAULT_CAPACITY);
        let task = TaskService::with_factory(shims, Arc::clone(&events) as _, Some(&args.namespace));
        let stop = Arc::clone(&task);
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .map_err(|e| format!("cannot watch SIGTERM: {e}"))?;
        let shutdown = async move {
            tokio::select! {
                _ = stop.shutdown_requested() => {}
                _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
            }
        };
        let uid = nix::unistd::Uid::effective().as_raw();
        let gid = nix::unistd::Gid::effective().as_raw();
        // An idle shim holds only the memory it uses (measured: 2.0 MiB RSS
        // with a running container before, 1.47 MiB after).
        shim_examples::memory::after_start_up();
        Server::new(task).same_user(uid, gid).serve(listener, shutdown).await.map_err(|e| format!("serving: {e}"))?;
        // What containerd has not taken yet (the delete event) gets a moment.
        if !events.drain(std::time::Duration::from_secs(2)).await {
            tracing::warn!(pending = events.pending(), "exiting with events containerd did not take");
        }
        Ok::<(), String>(())
    });
    // By path: the first bundle, whose `address` names it, may be gone.
    let _ = std::fs::remove_file(socket);
    result
}

fn delete(args: &Args) -> Result<(), String> {
    let bundle = match &args.bundle {
        Some(b) => b.clone(),
        None => std::env::current_dir().map_err(|e| format!("cannot read the working directory: {e}"))?,
    };
    use std::io::Write;
    // The runc options the container was created with, which the shim kept
    // in the bundle: the same runtime binary and root find it.
    let options = RuncOptions::load(&bundle).unwrap_or_else(|e| {
        // Not eprintln!: it panics when stderr is gone.
        let _ = writeln!(std::io::stderr(), "containerd-shim-rshim-v1: delete: {e}; using the default runc options");
        RuncOptions::default()
    });
    let root =
        options.runtime_root(Some(&args.namespace)).unwrap_or_else(|| Path::new(RUNC_ROOT).join(&args.namespace));
    // Bounded: containerd gives delete about 5 s. A failure here (runc
    // missing, say) is reported but does not stop the rest of the cleanup:
    // a rootfs left mounted would keep containerd from removing the bundle.
    if let Err(e) = force_delete(&options, &root, &args.id) {
        let _ = writeln!(std::io::stderr(), "containerd-shim-rshim-v1: delete: {e}");
    }
    shim_transport_ttrpc::rootfs::unmount(&bundle);
    remove_dead_socket(&bundle);
    remove_call_files(&bundle);
    let resp = DeleteResponse {
        pid: 0,
        exit_status: 128 + 9,
        exited_at: Some(prost_types::Timestamp::from(std::time::SystemTime::now())),
    };
    let mut out = std::io::stdout();
    out.write_all(&resp.encode_to_vec()).and_then(|()| out.flush()).map_err(|e| format!("stdout: {e}"))?;
    Ok(())
}

/// Removes what a server that died left of its runc call files in the
/// bundle (see `serve`), and the `.rshim` directory that held them in
/// earlier versions.
fn remove_call_files(bundle: &Path) {
    let _ = std::fs::remove_dir_all(bundle.join(".rshim"));
    let Ok(entries) = std::fs::read_dir(bundle) else { return };
    for entry in entries.flatten() {
        // runc's temporary pid files are the same names with a dot first.
        let name = entry.file_name();
        let name = name.as_encoded_bytes();
        if name.starts_with(b".rshim-") || name.starts_with(b"..rshim-") {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

/// `runc --root ROOT delete --force ID` (with the container's runtime binary
/// and cgroup manager), killed if it takes over 4 s.
fn force_delete(options: &RuncOptions, root: &Path, id: &str) -> Result<(), String> {
    let binary = if options.binary_name.is_empty() { "runc" } else { options.binary_name.as_str() };
    let mut cmd = std::process::Command::new(binary);
    cmd.arg("--root").arg(root);
    if options.systemd_cgroup {
        cmd.arg("--systemd-cgroup");
    }
    let mut child = cmd
        .args(["delete", "--force", id])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot run {binary}: {e}"))?;
    match wait_bounded(&mut child, std::time::Duration::from_secs(4)) {
        Ok(Some(_)) => Ok(()),
        Ok(None) => Err(format!("{binary} delete --force took over 4 s; killed")),
        Err(e) => Err(format!("waiting for {binary}: {e}")),
    }
}

/// Waits at most `bound` for `child` (these short-lived `start`, `delete`
/// and `-info` processes have no reaper: they wait for their own child);
/// past it the child is killed and reaped, and the answer is `None`.
fn wait_bounded(
    child: &mut std::process::Child,
    bound: std::time::Duration,
) -> std::io::Result<Option<std::process::ExitStatus>> {
    let deadline = std::time::Instant::now() + bound;
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(Some(status));
        }
        if std::time::Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Ok(None);
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}
