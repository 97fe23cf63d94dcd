//! What `shimctl` does: one function per subcommand, and `run`.

use std::io::{BufRead, Read, Write};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use futures::StreamExt;
use shim_core::proto::v1::*;
use shim_core::testing::mkfifo;
use shim_core::{Shim, ShimError};
use shim_transport_grpc::{ClientOptions, GrpcShim};

/// An error of a `shimctl` command.
pub type CtlError = Box<dyn std::error::Error + Send + Sync>;

/// Formats a shim error as `CODE: message`.
pub fn describe(e: &ShimError) -> String {
    format!("{}: {e}", e.code())
}

/// Connects to the shim on `socket`.
pub async fn connect(socket: &Path) -> Result<GrpcShim, ShimError> {
    GrpcShim::connect(socket, ClientOptions::default()).await
}

/// The `shim` binary: `$SHIM_BIN`, else next to this executable, else `PATH`.
pub fn shim_binary() -> PathBuf {
    if let Some(p) = std::env::var_os("SHIM_BIN") {
        return PathBuf::from(p);
    }
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|d| d.join("shim")))
        .filter(|p| p.is_file())
        .unwrap_or_else(|| PathBuf::from("shim"))
}

/// Starts a detached `shim` daemon on `socket` (in a new session, so it
/// outlives this process and its terminal) and waits for its ready line.
pub fn spawn_shim(socket: &Path) -> Result<Child, CtlError> {
    use std::os::unix::process::CommandExt;
    let mut cmd = Command::new(shim_binary());
    cmd.arg("--socket").arg(socket).arg("--log-level").arg("warn");
    cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::piped());
    // SAFETY: setsid is async-signal-safe and touches only the child.
    unsafe {
        cmd.pre_exec(|| nix::unistd::setsid().map(|_| ()).map_err(std::io::Error::from));
    }
    let mut child = cmd.spawn().map_err(|e| format!("cannot start {}: {e}", shim_binary().display()))?;
    let stderr = child.stderr.take().ok_or("no stderr pipe")?;
    let mut lines = std::io::BufReader::new(stderr);
    let mut line = String::new();
    loop {
        line.clear();
        if lines.read_line(&mut line)? == 0 {
            let status = child.wait()?;
            return Err(format!("shim exited before it was ready ({status})").into());
        }
        if line.starts_with("ready ") {
            break;
        }
        eprint!("shim: {line}");
    }
    // Keep passing on the daemon's warnings while we live.
    std::thread::spawn(move || {
        let mut rest = String::new();
        while matches!(lines.read_line(&mut rest), Ok(n) if n > 0) {
            eprint!("shim: {rest}");
            rest.clear();
        }
    });
    Ok(child)
}

/// One event as a line of text, or of JSON.
pub fn event_line(ev: &Event, json: bool) -> String {
    let ty = ev.event_type().map(|t| t.as_str_name()).unwrap_or("UNKNOWN");
    if json {
        serde_json::json!({ "seq": ev.seq, "id": ev.id, "type": ty, "pid": ev.pid, "exit_status": ev.exit_status })
            .to_string()
    } else {
        format!("{ty} id={} pid={} exit_status={} seq={}", ev.id, ev.pid, ev.exit_status, ev.seq)
    }
}

/// Prints events until the stream ends.
pub async fn events(shim: &GrpcShim, json: bool, since: Option<u64>) -> Result<(), ShimError> {
    let mut stream = shim.events(EventsRequest { since }).await?;
    while let Some(ev) = stream.next().await {
        println!("{}", event_line(&ev?, json));
    }
    Ok(())
}

/// Options of `shimctl run`.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// The bundle directory.
    pub bundle: PathBuf,
    /// The container id.
    pub id: String,
    /// Whether to attach the caller's terminal.
    pub tty: bool,
    /// Socket to serve the shim on; a private temporary one by default.
    pub socket: Option<PathBuf>,
}

fn copy_thread(
    mut from: impl Read + Send + 'static,
    mut to: impl Write + Send + 'static,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let mut buf = [0u8; 8192];
        while let Ok(n) = from.read(&mut buf) {
            let Some(chunk) = buf.get(..n).filter(|c| !c.is_empty()) else { break };
            if to.write_all(chunk).and_then(|_| to.flush()).is_err() {
                break;
            }
        }
    })
}

/// Puts the caller's terminal in raw mode until dropped.
struct RawMode(Option<nix::sys::termios::Termios>);

impl RawMode {
    fn enter() -> Self {
        let stdin = std::io::stdin();
        let Ok(saved) = nix::sys::termios::tcgetattr(stdin.as_fd()) else { return Self(None) };
        let mut raw = saved.clone();
        nix::sys::termios::cfmakeraw(&mut raw);
        let _ = nix::sys::termios::tcsetattr(stdin.as_fd(), nix::sys::termios::SetArg::TCSANOW, &raw);
        Self(Some(saved))
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        if let Some(saved) = &self.0 {
            let _ = nix::sys::termios::tcsetattr(std::io::stdin().as_fd(), nix::sys::termios::SetArg::TCSANOW, saved);
        }
    }
}

fn window_size() -> Option<(u16, u16)> {
    let ws = nix::pty::Winsize { ws_row: 0, ws_col: 0, ws_xpixel: 0, ws_ypixel: 0 };
    let mut ws = ws;
    use std::os::fd::AsRawFd;
    // SAFETY: TIOCGWINSZ writes one winsize into the valid pointer.
    let rc = unsafe { libc::ioctl(std::io::stdin().as_raw_fd(), libc::TIOCGWINSZ, &mut ws) };
    (rc == 0 && ws.ws_col > 0).then_some((ws.ws_col, ws.ws_row))
}

/// Stops the daemon `run` started when `run` fails half-way (SIGTERM: it
/// deletes its container and exits), so no shim is left without a client
/// that knows its socket. A `shimctl` killed outright skips this on purpose:
/// the container outlives its client.
struct StopOnError(Option<Child>);

impl Drop for StopOnError {
    fn drop(&mut self) {
        if let Some(child) = self.0.take() {
            let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id()).unwrap_or(0));
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        }
    }
}

/// `shimctl run`: starts a shim, runs the bundle with the caller's stdio,
/// waits, deletes, and returns the container's exit status.
pub async fn run(opts: RunOptions) -> Result<u32, CtlError> {
    let bundle = std::fs::canonicalize(&opts.bundle).map_err(|e| format!("bundle {}: {e}", opts.bundle.display()))?;
    let dir = tempfile::Builder::new().prefix("shimctl-").tempdir()?;
    let socket = opts.socket.clone().unwrap_or_else(|| dir.path().join("run").join("shim.sock"));
    let mut daemon = StopOnError(Some(spawn_shim(&socket)?));
    let shim = connect(&socket).await?;

    let fifo = |name: &str| -> Result<PathBuf, CtlError> {
        let p = dir.path().join(name);
        mkfifo(&p)?;
        Ok(p)
    };
    let (stdin, stdout) = (fifo("stdin")?, fifo("stdout")?);
    let stderr = if opts.tty { None } else { Some(fifo("stderr")?) };
    let reader = |path: PathBuf, to: Box<dyn Write + Send>| {
        std::thread::spawn(move || {
            if let Ok(f) = std::fs::File::open(&path) {
                let _ = copy_thread(f, to).join();
            }
        })
    };
    let out_thread = reader(stdout.clone(), Box::new(std::io::stdout()));
    let err_thread = stderr.clone().map(|p| reader(p, Box::new(std::io::stderr())));

    let s = |p: &Path| p.to_string_lossy().into_owned();
    let pid = shim
        .create(CreateRequest {
            id: opts.id.clone(),
            bundle: s(&bundle),
            terminal: opts.tty,
            stdin: s(&stdin),
            stdout: s(&stdout),
            stderr: stderr.as_deref().map(s).unwrap_or_default(),
            ..Default::default()
        })
        .await?
        .pid;

    // Our stdin goes to the container; at its end, the container gets EOF.
    let (eof_tx, mut eof_rx) = tokio::sync::mpsc::channel::<()>(1);
    {
        let stdin_path = stdin.clone();
        std::thread::spawn(move || {
            if let Ok(f) = std::fs::OpenOptions::new().write(true).open(&stdin_path) {
                let _ = copy_thread(std::io::stdin(), f).join();
            }
            let _ = eof_tx.blocking_send(());
        });
    }
    // Listening before the size is first read: a resize from then on is
    // forwarded. (Registered after Start, a resize that came in between was
    // lost, SIGWINCH being ignored by default, and the container kept the
    // old size.)
    let mut winch = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::window_change())?;
    let raw = opts.tty.then(RawMode::enter);
    if opts.tty {
        if let Some((cols, rows)) = window_size() {
            shim.pty(PtyRequest { pid, width: cols.into(), height: rows.into() }).await?;
        }
    }
    shim.start(StartRequest {}).await?;

    let wait = shim.wait(WaitRequest { pid });
    tokio::pin!(wait);
    let mut stdin_open = true;
    let status = loop {
        tokio::select! {
            r = &mut wait => break r?.exit_status,
            _ = winch.recv(), if opts.tty => {
                if let Some((cols, rows)) = window_size() {
                    let _ = shim.pty(PtyRequest { pid, width: cols.into(), height: rows.into() }).await;
                }
            }
            got = eof_rx.recv(), if stdin_open => {
                stdin_open = false;
                if got.is_some() {
                    let _ = shim.close_stdin(CloseStdinRequest { pid }).await;
                }
            }
        }
    };
    drop(raw);
    shim.delete(DeleteRequest { pid }).await?;
    // Its container deleted, the daemon exits by itself.
    daemon.0 = None;
    // The output FIFOs end once the shim has copied everything out.
    let join = tokio::task::spawn_blocking(move || {
        let _ = out_thread.join();
        if let Some(t) = err_thread {
            let _ = t.join();
        }
    });
    let _ = tokio::time::timeout(Duration::from_secs(5), join).await;
    Ok(status)
}
