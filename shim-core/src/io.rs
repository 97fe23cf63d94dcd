//! A process's stdio: opening the client's FIFOs and files without ever
//! blocking, and copying between them and the process.
//!
//! Behaviour, per stream:
//! - An empty path is `/dev/null`.
//! - A regular file is given to the process directly (output files are
//!   opened for append and created if missing), so nothing needs copying.
//! - A stdin FIFO is opened read-write, which never blocks and never reads
//!   end-of-file when the client closes its end: the process sees EOF only on
//!   `CloseStdin`, and a client may re-open the FIFO to write more.
//! - A stdout or stderr FIFO is opened for writing in the background, so an
//!   RPC never waits for the client's reader: a non-blocking open is retried
//!   (1 ms doubling to 50 ms) until a reader is there, so no thread is ever
//!   parked on it. Until the reader comes the process can fill its pipe and
//!   then blocks on write. If the reader goes away later, the rest of the
//!   output is read and discarded, so the process is never blocked forever
//!   by a reader that left.
//! - Every output FIFO a request names is opened and closed, so its reader
//!   gets end-of-file: after the process's last byte (also when it wrote
//!   none, and for a terminal process's unused stderr), and at once for a
//!   process that never started.
//! - After an exit, every write to a reader counts as progress, partial
//!   writes included: a slow but live reader gets the whole tail.
//! - With a terminal, stdin is copied to the pty master and the master to
//!   stdout; stderr is unused.
//! - stdout and stderr may also be URIs, as containerd's shims take them
//!   (see [`logger`](crate::logger)): `fifo://` a path as above, `file://`
//!   a file appended to (its directory created, the file 0644), and
//!   `binary://` a logging program the process writes to directly (stderr
//!   then the same URI or empty; not with a terminal).

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::unix::pipe;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::error::{Result, ShimError};
use crate::logger::{output_target, Logger, LoggerSpec, OutputTarget};
use crate::reaper::Reaper;

const COPY_BUFFER: usize = 64 * 1024;

/// After a process exits, its output is waited for at most this many grace
/// periods in all.
const MAX_DRAIN_GRACES: u32 = 15;

/// The end-of-transmission character a terminal turns into end-of-file.
const VEOF: u8 = 0x04;

/// Where a stdin stream comes from.
#[derive(Debug)]
enum Input {
    Null,
    File(File),
    Fifo(OwnedFd),
}

/// Where an output stream goes.
#[derive(Debug)]
enum Output {
    Null,
    File(File),
    Fifo(PathBuf),
    Binary(LoggerSpec),
}

fn open_input(field: &'static str, path: &str) -> Result<Input> {
    if path.is_empty() {
        return Ok(Input::Null);
    }
    let meta = std::fs::metadata(path).map_err(|e| ShimError::invalid(field, format!("cannot use {path:?}: {e}")))?;
    let ft = meta.file_type();
    if ft.is_fifo() {
        // Read-write: never blocks, and keeps a writer so reads don't see EOF
        // before the client has even opened its end.
        let f = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC | libc::O_NOCTTY)
            .open(path)
            .map_err(|e| ShimError::io(format!("cannot open stdin fifo {path:?}"), e))?;
        Ok(Input::Fifo(f.into()))
    } else if ft.is_file() || ft.is_char_device() {
        let f = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_CLOEXEC | libc::O_NOCTTY)
            .open(path)
            .map_err(|e| ShimError::io(format!("cannot open stdin file {path:?}"), e))?;
        Ok(Input::File(f))
    } else {
        Err(ShimError::invalid(field, format!("{path:?} is neither a fifo nor a regular file")))
    }
}

fn open_output(field: &'static str, value: &str) -> Result<Output> {
    let path = match output_target(field, value)? {
        OutputTarget::Path(path) => path,
        OutputTarget::Binary(spec) => return Ok(Output::Binary(spec)),
        OutputTarget::File(path) => {
            // As containerd's shims do for a `file://` URI.
            if let Some(dir) = path.parent() {
                std::fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o755)
                    .create(dir)
                    .map_err(|e| ShimError::invalid(field, format!("cannot create {}: {e}", dir.display())))?;
            }
            let f = OpenOptions::new()
                .append(true)
                .create(true)
                .mode(0o644)
                .custom_flags(libc::O_CLOEXEC | libc::O_NOCTTY)
                .open(&path)
                .map_err(|e| ShimError::invalid(field, format!("cannot open {} for append: {e}", path.display())))?;
            return Ok(Output::File(f));
        }
    };
    let path = path.as_str();
    if path.is_empty() {
        return Ok(Output::Null);
    }
    match std::fs::metadata(path) {
        Ok(meta) if meta.file_type().is_fifo() => Ok(Output::Fifo(PathBuf::from(path))),
        Ok(meta) if !(meta.file_type().is_file() || meta.file_type().is_char_device()) => {
            Err(ShimError::invalid(field, format!("{path:?} is neither a fifo nor a regular file")))
        }
        Ok(_) | Err(_) => {
            let f = OpenOptions::new()
                .append(true)
                .create(true)
                .mode(0o600)
                // A shim that leads its session must not gain a controlling
                // terminal because a client named one as a stdio path.
                .custom_flags(libc::O_CLOEXEC | libc::O_NOCTTY)
                .open(path)
                .map_err(|e| ShimError::invalid(field, format!("cannot open {path:?} for append: {e}")))?;
            Ok(Output::File(f))
        }
    }
}

fn pipe() -> Result<(OwnedFd, OwnedFd)> {
    nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| ShimError::io("cannot create a pipe", e))
}

/// The process's side of its stdio, handed to the runtime. `None` is
/// `/dev/null`. With a terminal all three are `None`: the runtime creates the
/// pty and hands back its master.
#[derive(Debug, Default)]
pub struct ProcessStdio {
    /// Whether the process gets a terminal.
    pub terminal: bool,
    /// The process's stdin.
    pub stdin: Option<OwnedFd>,
    /// The process's stdout.
    pub stdout: Option<OwnedFd>,
    /// The process's stderr.
    pub stderr: Option<OwnedFd>,
}

/// The shim's side of a process's stdio, before the process exists.
pub(crate) struct PreparedIo {
    stdin: Option<(OwnedFd, OwnedFd)>,
    outputs: Vec<(OwnedFd, PathBuf)>,
    terminal: Option<(Input, Output)>,
    /// A FIFO named as stderr of a terminal process, which writes none: its
    /// reader still gets an end-of-file.
    unused: Option<PathBuf>,
    /// A `binary://` logger to start, with the read ends of the process's
    /// stdout and stderr pipes; then the started logger.
    logger: Option<(LoggerSpec, OwnedFd, OwnedFd)>,
    started_logger: Option<Logger>,
}

impl PreparedIo {
    /// Opens what can be opened at once and creates the pipes the process
    /// is given.
    pub fn prepare(terminal: bool, stdin: &str, stdout: &str, stderr: &str) -> Result<(Self, ProcessStdio)> {
        let input = open_input("stdin", stdin)?;
        let out = open_output("stdout", stdout)?;
        let mut prepared =
            Self { stdin: None, outputs: Vec::new(), terminal: None, unused: None, logger: None, started_logger: None };
        if let Output::Binary(spec) = out {
            if terminal {
                return Err(ShimError::invalid("stdout", "a binary:// logger cannot take a terminal's output"));
            }
            if !(stderr.is_empty() || stderr == stdout) {
                return Err(ShimError::invalid(
                    "stderr",
                    format!("{stderr:?}: with a binary:// stdout, stderr goes to the same logger (leave it empty or name the same URI)"),
                ));
            }
            let (out_r, out_w) = pipe()?;
            let (err_r, err_w) = pipe()?;
            prepared.logger = Some((spec, out_r, err_r));
            let stdin = prepared.input(input)?;
            return Ok((prepared, ProcessStdio { terminal: false, stdin, stdout: Some(out_w), stderr: Some(err_w) }));
        }
        if terminal {
            // stderr is unused with a terminal, but a bad path is still an error.
            prepared.unused = match open_output("stderr", stderr)? {
                Output::Fifo(path) => Some(path),
                Output::Null | Output::File(_) => None,
                Output::Binary(_) => {
                    return Err(ShimError::invalid("stderr", "a binary:// logger cannot take a terminal's output"))
                }
            };
            prepared.terminal = Some((input, out));
            return Ok((prepared, ProcessStdio { terminal: true, ..Default::default() }));
        }
        let err = open_output("stderr", stderr)?;
        let stdin = prepared.input(input)?;
        let stdout = prepared.output(out)?;
        let stderr = prepared.output(err)?;
        Ok((prepared, ProcessStdio { terminal: false, stdin, stdout, stderr }))
    }

    fn input(&mut self, input: Input) -> Result<Option<OwnedFd>> {
        Ok(match input {
            Input::Null => None,
            Input::File(f) => Some(f.into()),
            Input::Fifo(fifo) => {
                let (r, w) = pipe()?;
                self.stdin = Some((fifo, w));
                Some(r)
            }
        })
    }

    fn output(&mut self, out: Output) -> Result<Option<OwnedFd>> {
        Ok(match out {
            Output::Null => None,
            Output::File(f) => Some(f.into()),
            Output::Fifo(path) => {
                let (r, w) = pipe()?;
                self.outputs.push((r, path));
                Some(w)
            }
            Output::Binary(_) => {
                return Err(ShimError::invalid("stderr", "a binary:// logger takes stdout and stderr together"))
            }
        })
    }

    /// Starts the `binary://` logger, if the stdio names one, for a process
    /// of container `id`: before the process, which writes to it directly.
    /// `reaper` is the runtime's; without one there is no logger.
    pub async fn start_logger(&mut self, reaper: Option<&Reaper>, id: &str, namespace: &str) -> Result<()> {
        let Some((spec, out, err)) = self.logger.take() else { return Ok(()) };
        let reaper = reaper.ok_or_else(|| {
            ShimError::Unimplemented(format!("this runtime cannot start the logger {}", spec.program.display()))
        })?;
        self.started_logger = Some(Logger::start(reaper, &spec, id, namespace, out, err).await?);
        Ok(())
    }

    /// Gives up on a process that never started: the readers of its output
    /// FIFOs get their end-of-file now (see [`close_fifos`]).
    pub fn abandon(self) {
        let mut paths: Vec<PathBuf> = self.outputs.into_iter().map(|(_, path)| path).collect();
        if let Some((_, Output::Fifo(path))) = self.terminal {
            paths.push(path);
        }
        paths.extend(self.unused);
        close_fifos(paths);
    }

    /// Starts the copies, once the process exists. `console` is the pty master of
    /// a terminal process.
    pub fn start(self, console: Option<OwnedFd>) -> Result<Pumps> {
        let mut pumps = Pumps::default();
        pumps.logger = self.started_logger;
        if let Some(path) = self.unused {
            // Opened and closed like an output that was never written to;
            // the drain bounds the wait for its reader.
            pumps.outputs.push(tokio::spawn(async move {
                let _ = open_fifo_writer(path).await;
            }));
        }
        if let Some((input, output)) = self.terminal {
            let Some(master) = console else {
                return Err(ShimError::Internal("terminal process without a console".into()));
            };
            let master = Arc::new(master);
            let dup = |fd: &OwnedFd| fd.try_clone().map_err(|e| ShimError::io("cannot duplicate the pty master", e));
            if let Input::Fifo(fifo) = input {
                let src = fifo_reader(fifo)?;
                let dst = pipe::Sender::from_owned_fd_unchecked(dup(&master)?)
                    .map_err(|e| ShimError::io("cannot register the pty master", e))?;
                pumps.stdin = Some(spawn_stdin(src, dst, true));
            } else if let Input::File(file) = input {
                // A file's content is typed into the terminal, then EOF.
                let dst = pipe::Sender::from_owned_fd_unchecked(dup(&master)?)
                    .map_err(|e| ShimError::io("cannot register the pty master", e))?;
                let src = tokio::fs::File::from_std(file);
                let handle = tokio::spawn(async move {
                    let _ = copy_then_eof(src, dst).await;
                });
                pumps.stdin = Some(StdinPump { close: None, handle });
            }
            let src = pipe::Receiver::from_owned_fd_unchecked(dup(&master)?)
                .map_err(|e| ShimError::io("cannot register the pty master", e))?;
            match output {
                Output::Fifo(path) => pumps.spawn_output(src, OutputSink::Fifo(path)),
                Output::File(file) => pumps.spawn_output(src, OutputSink::File(tokio::fs::File::from_std(file))),
                Output::Null | Output::Binary(_) => pumps.spawn_output(src, OutputSink::Discard),
            }
            pumps.console = Some(master);
            return Ok(pumps);
        }
        if let Some((fifo, w)) = self.stdin {
            let src = fifo_reader(fifo)?;
            let dst = pipe::Sender::from_owned_fd(w).map_err(|e| ShimError::io("cannot register stdin pipe", e))?;
            pumps.stdin = Some(spawn_stdin(src, dst, false));
        }
        for (r, path) in self.outputs {
            let src = pipe::Receiver::from_owned_fd(r).map_err(|e| ShimError::io("cannot register output pipe", e))?;
            pumps.spawn_output(src, OutputSink::Fifo(path));
        }
        Ok(pumps)
    }
}

fn fifo_reader(fd: OwnedFd) -> Result<pipe::Receiver> {
    pipe::Receiver::from_owned_fd_unchecked(fd).map_err(|e| ShimError::io("cannot register stdin fifo", e))
}

async fn copy_then_eof(mut src: tokio::fs::File, mut dst: pipe::Sender) -> io::Result<()> {
    tokio::io::copy(&mut src, &mut dst).await?;
    dst.write_all(&[VEOF]).await
}

struct StdinPump {
    close: Option<oneshot::Sender<()>>,
    handle: JoinHandle<()>,
}

fn spawn_stdin(mut src: pipe::Receiver, mut dst: pipe::Sender, terminal: bool) -> StdinPump {
    let (close_tx, mut close_rx) = oneshot::channel::<()>();
    let handle = tokio::spawn(async move {
        let mut buf = vec![0u8; COPY_BUFFER];
        loop {
            tokio::select! {
                _ = &mut close_rx => break,
                read = src.read(&mut buf) => match read {
                    Ok(0) | Err(_) => return,
                    Ok(n) => {
                        let Some(chunk) = buf.get(..n) else { return };
                        if dst.write_all(chunk).await.is_err() {
                            return;
                        }
                    }
                },
            }
        }
        // Closing: first pass on what the client already wrote. Read the fd
        // directly: the reactor may not have seen its readiness yet.
        loop {
            match nix::unistd::read(src.as_fd(), &mut buf) {
                Ok(n) if n > 0 => {
                    let Some(chunk) = buf.get(..n) else { break };
                    if dst.write_all(chunk).await.is_err() {
                        return;
                    }
                }
                _ => break,
            }
        }
        if terminal {
            let _ = dst.write_all(&[VEOF]).await;
        }
        // Dropping `dst` closes the process's stdin.
    });
    StdinPump { close: Some(close_tx), handle }
}

enum OutputSink {
    Fifo(PathBuf),
    File(tokio::fs::File),
    Discard,
}

/// The running copies of one process.
#[derive(Default)]
pub(crate) struct Pumps {
    stdin: Option<StdinPump>,
    outputs: Vec<JoinHandle<()>>,
    progress: Arc<AtomicU64>,
    console: Option<Arc<OwnedFd>>,
    /// The process's `binary://` logger, if any.
    logger: Option<Logger>,
}

impl Pumps {
    fn spawn_output<R: AsyncRead + Unpin + Send + 'static>(&mut self, src: R, sink: OutputSink) {
        let progress = Arc::clone(&self.progress);
        self.outputs.push(tokio::spawn(copy_out(src, sink, progress)));
    }

    /// The pty master, for resizing.
    pub fn console(&self) -> Option<Arc<OwnedFd>> {
        self.console.clone()
    }

    /// Takes the trigger that closes the process's stdin (after passing on
    /// what the client already wrote). `None` when the shim holds no writer to
    /// the process's stdin.
    pub fn take_stdin_closer(&mut self) -> Option<oneshot::Sender<()>> {
        self.stdin.as_mut().and_then(|pump| pump.close.take())
    }

    /// Waits until every output copy has reached end-of-file, giving up when
    /// no byte has moved for `grace` (a background child holding the pipe
    /// open, or a reader that never came), or after 15 graces in all.
    pub async fn drain(&mut self, grace: Duration) {
        // Progress alone could hold the EXIT forever (a surviving background
        // child that keeps writing): cap the whole wait too.
        let cap = deadline_after(grace.saturating_mul(MAX_DRAIN_GRACES));
        let mut last = self.progress.load(Ordering::Relaxed);
        for handle in &mut self.outputs {
            loop {
                match tokio::time::timeout(grace, &mut *handle).await {
                    Ok(_) => break,
                    Err(_) => {
                        let now = self.progress.load(Ordering::Relaxed);
                        if now == last || tokio::time::Instant::now() >= cap {
                            tracing::warn!("output still open after the process exited; giving up on it");
                            handle.abort();
                            break;
                        }
                        last = now;
                    }
                }
            }
        }
        self.outputs.clear();
        if let Some(logger) = self.logger.as_mut() {
            // It reads the output itself: done once it exits.
            if !logger.wait(grace).await {
                tracing::warn!(?logger, "the logger still runs after the process exited");
            }
        }
    }

    /// The logger, to be stopped when the process is deleted.
    pub fn take_logger(&mut self) -> Option<Logger> {
        self.logger.take()
    }
}

impl Drop for Pumps {
    fn drop(&mut self) {
        for h in &self.outputs {
            h.abort();
        }
        if let Some(pump) = &self.stdin {
            pump.handle.abort();
        }
    }
}

/// The first and the longest pause between two attempts to open an output
/// FIFO whose reader has not come yet.
const FIFO_RETRY_FIRST: Duration = Duration::from_millis(1);
const FIFO_RETRY_MAX: Duration = Duration::from_millis(50);

/// Opens an output FIFO for writing once a reader has it open.
///
/// Never parks a thread: a blocking `open(O_WRONLY)` waits in the kernel
/// until a reader comes, and one whose FIFO was unlinked meanwhile waits for
/// ever, so each such stream would hold a blocking-pool thread for good.
/// Instead a non-blocking open is tried (`ENXIO` while there is no reader),
/// again after 1, 2, 4 … up to 50 ms. Dropping the future gives up at once,
/// and a reader that comes later never meets a writer of an abandoned
/// stream. An unlinked FIFO fails with its error (`ENOENT`).
async fn open_fifo_writer(path: PathBuf) -> io::Result<pipe::Sender> {
    let mut pause = FIFO_RETRY_FIRST;
    loop {
        match try_open_fifo_writer(&path) {
            Ok(Some(file)) => return pipe::Sender::from_file(file),
            Ok(None) => {
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(FIFO_RETRY_MAX);
            }
            Err(e) => return Err(e),
        }
    }
}

/// One non-blocking attempt: `None` while the FIFO has no reader.
fn try_open_fifo_writer(path: &Path) -> io::Result<Option<File>> {
    match OpenOptions::new().write(true).custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC | libc::O_NOCTTY).open(path) {
        Ok(file) => Ok(Some(file)),
        Err(e) if e.raw_os_error() == Some(libc::ENXIO) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Gives the readers of output FIFOs their end-of-file when the process
/// that was to write them never ran: each FIFO that has a reader now is
/// opened and closed at once. A reader that comes later is not waited for.
fn close_fifos(paths: impl IntoIterator<Item = PathBuf>) {
    for path in paths {
        if let Ok(Some(file)) = try_open_fifo_writer(&path) {
            drop(file);
        }
    }
}

async fn copy_out<R: AsyncRead + Unpin>(mut src: R, sink: OutputSink, progress: Arc<AtomicU64>) {
    let mut buf = vec![0u8; COPY_BUFFER];
    let mut writer: Option<Box<dyn AsyncWrite + Unpin + Send>> = None;
    let mut pending_open = match sink {
        OutputSink::Fifo(path) => Some(Box::pin(open_fifo_writer(path))),
        OutputSink::File(f) => {
            writer = Some(Box::new(f));
            None
        }
        OutputSink::Discard => None,
    };
    loop {
        // Wait for data; meanwhile let the FIFO open complete.
        let n = loop {
            match pending_open.as_mut() {
                Some(open) => {
                    tokio::select! {
                        opened = open => {
                            pending_open = None;
                            match opened {
                                Ok(tx) => writer = Some(Box::new(tx)),
                                Err(e) => tracing::warn!(error = %e, "cannot open output fifo; discarding output"),
                            }
                        }
                        read = src.read(&mut buf) => break read,
                    }
                }
                None => break src.read(&mut buf).await,
            }
        };
        let n = match n {
            Ok(n) if n > 0 => n,
            // 0: end of output. EIO: a pty master whose slave side is closed.
            Ok(_) | Err(_) => {
                if writer.is_none() {
                    if let Some(open) = pending_open.take() {
                        // The process wrote nothing (or nothing since): its
                        // reader still gets an end-of-file, once it is there.
                        // The drain's grace bounds this wait.
                        if let Ok(tx) = open.await {
                            writer = Some(Box::new(tx));
                        }
                    }
                }
                break;
            }
        };
        progress.fetch_add(n as u64, Ordering::Relaxed);
        let Some(chunk) = buf.get(..n) else { break };
        if writer.is_none() {
            if let Some(open) = pending_open.as_mut() {
                // Output arrived before the reader: wait for the reader (the
                // process blocks once its pipe is full, as it would writing
                // to the FIFO itself).
                match open.await {
                    Ok(tx) => writer = Some(Box::new(tx)),
                    Err(e) => tracing::warn!(error = %e, "cannot open output fifo; discarding output"),
                }
                pending_open = None;
            }
        }
        if let Some(w) = writer.as_mut() {
            if let Err(e) = write_counting(w, chunk, &progress).await {
                // The reader went away: keep draining so the process is not
                // blocked, discarding what nobody can read.
                tracing::info!(error = %e, "output reader gone; discarding the rest");
                writer = None;
            }
        }
    }
    if let Some(mut w) = writer {
        let _ = w.flush().await;
    }
}

/// Writes all of `chunk`, counting every partial write as progress: a slow
/// reader that takes a byte at a time is alive, and the drain after an exit
/// must keep waiting for it.
async fn write_counting<W: AsyncWrite + Unpin + ?Sized>(
    w: &mut W,
    chunk: &[u8],
    progress: &AtomicU64,
) -> io::Result<()> {
    let mut rest = chunk;
    while !rest.is_empty() {
        let n = w.write(rest).await?;
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        progress.fetch_add(1, Ordering::Relaxed);
        rest = rest.get(n..).unwrap_or_default();
    }
    Ok(())
}

/// The instant `d` from now, or a century from now for a `d` beyond what an
/// `Instant` holds (`Duration::MAX` as "no limit" must not panic).
pub(crate) fn deadline_after(d: Duration) -> tokio::time::Instant {
    let now = tokio::time::Instant::now();
    now.checked_add(d).unwrap_or_else(|| now + Duration::from_secs(100 * 365 * 24 * 3600))
}

/// Sets the window size of a pty (columns and rows).
pub fn resize(master: &OwnedFd, cols: u16, rows: u16) -> io::Result<()> {
    let ws = libc::winsize { ws_row: rows, ws_col: cols, ws_xpixel: 0, ws_ypixel: 0 };
    // SAFETY: TIOCSWINSZ reads one `winsize` from the pointer, which is valid
    // for the duration of the call; the fd is a live pty master we own.
    let rc = unsafe { libc::ioctl(master.as_fd().as_raw_fd(), libc::TIOCSWINSZ, &ws) };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// Checks the three stdio paths of a Create or Exec request.
pub fn validate_stdio(stdin: &str, stdout: &str, stderr: &str) -> Result<()> {
    validate_path("stdin", stdin)?;
    for (field, value) in [("stdout", stdout), ("stderr", stderr)] {
        if let OutputTarget::Path(path) = output_target(field, value)? {
            validate_path(field, &path)?;
        }
    }
    Ok(())
}

/// Checks a stdio path before anything is created: empty or absolute.
pub fn validate_path(field: &'static str, path: &str) -> Result<()> {
    if path.is_empty() || Path::new(path).is_absolute() {
        if path.contains('\0') {
            return Err(ShimError::invalid(field, "path contains a NUL byte"));
        }
        Ok(())
    } else {
        Err(ShimError::invalid(field, format!("{path:?} is not an absolute path")))
    }
}
