//! `shim`: a standalone container shim serving the runc shim over gRPC.

use std::io::{BufRead, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use shim_examples::daemon::{run, DaemonConfig};
use shim_examples::logs::{self, LogFormat};

/// Serve one container's shim over gRPC on a unix socket.
///
/// Prints `ready <socket>` on stderr once the socket accepts connections.
/// Exits 0 after the container's init process was deleted, or on SIGTERM or
/// SIGINT after killing and deleting the container.
#[derive(Parser)]
#[command(
    name = "shim",
    version = env!("SHIM_VERSION"),
    after_help = "Examples:\n  shim --socket /run/shim/web.sock --daemonize\n  shim --socket /run/shim/web.sock --log-format json --log-level debug 2>>/var/log/shim-web.log"
)]
struct Args {
    /// The unix socket to serve on. A missing directory is created with mode
    /// 0700; an existing one (and those above it) must belong to root or
    /// this user and not be writable by group or others.
    #[arg(long)]
    socket: PathBuf,
    /// Private work directory for pid files and console sockets
    /// [default: the socket path with `.work` appended].
    #[arg(long)]
    work_dir: Option<PathBuf>,
    /// The OCI runtime binary.
    #[arg(long, default_value = "runc")]
    runtime_binary: String,
    /// The runtime's state directory (runc --root).
    #[arg(long)]
    runtime_root: Option<PathBuf>,
    /// Pass --systemd-cgroup to the runtime.
    #[arg(long)]
    systemd_cgroup: bool,
    /// Log level: off, error, warn, info, debug or trace.
    #[arg(long, default_value = "info")]
    log_level: String,
    /// Log format on stderr: text (coloured only on a terminal without
    /// NO_COLOR) or json (one object per line).
    #[arg(long, value_enum, default_value = "text")]
    log_format: LogFormat,
    /// Detach: run in a new session with stdio on /dev/null. The command
    /// returns once the socket is ready.
    #[arg(long)]
    daemonize: bool,
}

fn init_logs(args: &Args) {
    // A plain level, not a filter expression: the filter parser would put a
    // regex engine into the daemon's resident memory.
    let level = args.log_level.parse::<tracing_subscriber::filter::LevelFilter>().unwrap_or_else(|_| {
        eprintln!("shim: unknown --log-level {:?}; using info", args.log_level);
        tracing_subscriber::filter::LevelFilter::INFO
    });
    logs::init(level, args.log_format);
}

/// Forks; the parent waits for the child's readiness report on a pipe and
/// exits with it. Returns the write end in the child.
fn daemonize() -> Result<OwnedFd, String> {
    // With fds 0-2 closed, the pipe would take them and the dup2 below
    // would overwrite it: fill them first.
    loop {
        let null = std::fs::File::open("/dev/null").map_err(|e| format!("/dev/null: {e}"))?;
        if null.as_raw_fd() > 2 {
            break;
        }
        std::mem::forget(null);
    }
    let (r, w) = nix::unistd::pipe().map_err(|e| format!("pipe: {e}"))?;
    // SAFETY: no other thread exists yet (the runtime is not started), so the
    // child may run arbitrary code after fork.
    match unsafe { nix::unistd::fork() }.map_err(|e| format!("fork: {e}"))? {
        nix::unistd::ForkResult::Parent { .. } => {
            drop(w);
            // One line: the child keeps the pipe open while it runs.
            let mut report = String::new();
            let _ = std::io::BufReader::new(std::fs::File::from(r)).read_line(&mut report);
            if let Some(socket) = report.strip_prefix("ready ") {
                eprintln!("ready {}", socket.trim());
                std::process::exit(0);
            }
            eprintln!(
                "shim: {}",
                if report.is_empty() { "the daemon exited before it was ready" } else { report.trim() }
            );
            std::process::exit(1);
        }
        nix::unistd::ForkResult::Child => {
            drop(r);
            nix::unistd::setsid().map_err(|e| format!("setsid: {e}"))?;
            let null = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open("/dev/null")
                .map_err(|e| format!("/dev/null: {e}"))?;
            for fd in 0..3 {
                // SAFETY: dup2 onto the standard descriptors of this process.
                unsafe { libc::dup2(null.as_raw_fd(), fd) };
            }
            Ok(w)
        }
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    let report = if args.daemonize {
        match daemonize() {
            Ok(w) => Some(std::fs::File::from(w)),
            Err(e) => {
                eprintln!("shim: cannot daemonize: {e}");
                return ExitCode::FAILURE;
            }
        }
    } else {
        None
    };
    init_logs(&args);
    let work_dir = args.work_dir.clone().unwrap_or_else(|| {
        let mut p = args.socket.clone().into_os_string();
        p.push(".work");
        PathBuf::from(p)
    });
    let config = DaemonConfig {
        socket: args.socket.clone(),
        work_dir,
        runtime_binary: args.runtime_binary.clone(),
        runtime_root: args.runtime_root.clone(),
        systemd_cgroup: args.systemd_cgroup,
    };
    // Before any other thread exists (see the function).
    shim_examples::memory::one_malloc_arena();
    // One thread serves everything: the shim waits on runc and sockets, it
    // does not compute. (The reaper has its own thread.)
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("shim: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut report_err = report.as_ref().and_then(|f| f.try_clone().ok());
    let result = runtime.block_on(run(config, |socket| {
        // Not eprintln!: it panics when stderr's reader is gone.
        let _ = writeln!(std::io::stderr(), "ready {}", socket.display());
        if let Some(mut f) = report {
            let _ = writeln!(f, "ready {}", socket.display());
        }
        // What start-up allocated and freed (argument parsing, set-up) and,
        // a little later, the code it ran go back to the system rather than
        // staying resident for the shim's life.
        shim_examples::memory::after_start_up();
    }));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "shim failed");
            let _ = writeln!(std::io::stderr(), "shim: {e}");
            if let Some(f) = report_err.as_mut() {
                let _ = write!(f, "{e}");
            }
            ExitCode::FAILURE
        }
    }
}
