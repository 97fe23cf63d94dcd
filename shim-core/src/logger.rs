//! Stdio named by URI, as containerd's shims take them: `file:///path`
//! (output appended to a file, its directory created) and
//! `binary:///path?arg=value` (output handed to a logging program).
//!
//! A binary logger is started before the process, with the process's stdout
//! and stderr as the read ends of two pipes on its fds 3 and 4, the write
//! end of a third pipe on fd 5, `CONTAINER_ID` and `CONTAINER_NAMESPACE` as
//! its whole environment, and stdin, stdout and stderr on `/dev/null`. It
//! says it is ready by writing a byte to fd 5 or closing it; the process
//! starts only then (within [`LOGGER_READY`]). The query's pairs become its
//! arguments in order (`?a=1&b` gives `a 1 b ""`). The process's output goes
//! to the logger's pipes directly: the shim copies nothing. After the
//! process exits the logger is given the grace period to finish on its own
//! (it sees end-of-file once every writer is gone); one still running when
//! the process is deleted gets SIGTERM, and SIGKILL [`LOGGER_STOP`] later.

use std::ffi::OsString;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStringExt;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use futures::future::BoxFuture;
use futures::FutureExt;
use percent_encoding::percent_decode_str;
use tokio::io::AsyncReadExt;

use crate::error::{Result, ShimError};
use crate::reaper::{Exit, Reaper};
use crate::signal::Signal;

/// How long a logger may take to say it is ready.
pub const LOGGER_READY: Duration = Duration::from_secs(10);
/// How long a logger has to exit after SIGTERM before SIGKILL, as
/// containerd's shims give it.
pub const LOGGER_STOP: Duration = Duration::from_secs(12);

/// What an output stdio field names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OutputTarget {
    /// A path (a FIFO or a file), or empty for `/dev/null`: a plain value
    /// or a `fifo://` URI.
    Path(String),
    /// A `file://` URI: appended to, created with its directory if missing.
    File(PathBuf),
    /// A `binary://` URI: a logging program and its arguments.
    Binary(LoggerSpec),
}

/// A logging program and its arguments, from a `binary://` URI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoggerSpec {
    /// The program: the URI's path.
    pub program: PathBuf,
    /// Its arguments: the query's keys and values, in order.
    pub args: Vec<OsString>,
}

/// Decodes `%XX` escapes (and, in a query, `+` as a space), as Go's URL
/// parser does for containerd.
fn decode(part: &str, query: bool) -> OsString {
    let spaced;
    let part = if query {
        spaced = part.replace('+', " ");
        spaced.as_str()
    } else {
        part
    };
    OsString::from_vec(percent_decode_str(part).collect())
}

/// What the stdout or stderr field `value` names.
pub fn output_target(field: &'static str, value: &str) -> Result<OutputTarget> {
    let Some((scheme, rest)) = value.split_once("://") else {
        return Ok(OutputTarget::Path(value.to_string()));
    };
    // `scheme://host/path?query`: the host is not used by any scheme here.
    let after_host = rest.find('/').map(|i| &rest[i..]).unwrap_or("");
    let (path, query) = after_host.split_once('?').unwrap_or((after_host, ""));
    let path = PathBuf::from(decode(path, false));
    if value.contains('\0') {
        return Err(ShimError::invalid(field, "contains a NUL byte"));
    }
    if !path.is_absolute() {
        return Err(ShimError::invalid(field, format!("{value:?} names no absolute path")));
    }
    match scheme {
        "fifo" => Ok(OutputTarget::Path(path.to_string_lossy().into_owned())),
        "file" => Ok(OutputTarget::File(path)),
        "binary" => {
            let mut args = Vec::new();
            for pair in query.split('&').filter(|p| !p.is_empty()) {
                let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
                args.push(decode(k, true));
                args.push(decode(v, true));
            }
            Ok(OutputTarget::Binary(LoggerSpec { program: path, args }))
        }
        other => Err(ShimError::invalid(
            field,
            format!("{value:?}: unknown scheme {other:?} (a path, or a fifo://, file:// or binary:// URI)"),
        )),
    }
}

/// A running logger of one process.
pub struct Logger {
    reaper: Reaper,
    pid: u32,
    /// Its exit, until seen.
    exit: Option<BoxFuture<'static, Option<Exit>>>,
}

impl std::fmt::Debug for Logger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Logger").field("pid", &self.pid).field("running", &self.exit.is_some()).finish()
    }
}

impl Logger {
    /// Starts `spec` for a process of container `id` in `namespace`, reading
    /// `stdout` and `stderr` (the read ends of the process's pipes), and
    /// waits until it is ready.
    pub async fn start(
        reaper: &Reaper,
        spec: &LoggerSpec,
        id: &str,
        namespace: &str,
        stdout: OwnedFd,
        stderr: OwnedFd,
    ) -> Result<Self> {
        let (ready_r, ready_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
            .map_err(|e| ShimError::io("cannot create the logger's ready pipe", e))?;
        let fds = [stdout.as_raw_fd(), stderr.as_raw_fd(), ready_w.as_raw_fd()];
        let mut cmd = Command::new(&spec.program);
        cmd.args(&spec.args)
            .env_clear()
            .env("CONTAINER_ID", id)
            .env("CONTAINER_NAMESPACE", namespace)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        // SAFETY: between fork and exec only dup2 and fcntl run, both
        // async-signal-safe, on fds this process owns until `spawn` returns.
        unsafe {
            cmd.pre_exec(move || {
                // First out of the way of 3..=5, so no dup2 overwrites a
                // source still to be moved.
                let mut high = [0; 3];
                for (slot, fd) in high.iter_mut().zip(fds) {
                    *slot = libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 10);
                    if *slot < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                for (target, fd) in (3..).zip(high) {
                    // dup2 clears close-on-exec on the target.
                    if libc::dup2(fd, target) < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                Ok(())
            });
        }
        let (_child, exit) = reaper.spawn(&mut cmd).map_err(|e| {
            ShimError::invalid("stdout", format!("cannot start the logger {}: {e}", spec.program.display()))
        })?;
        let mut logger = Self { reaper: reaper.clone(), pid: exit.pid(), exit: Some(exit.wait().boxed()) };
        // Ours closed: the logger's own ends are all that is left.
        drop((stdout, stderr, ready_w));
        let mut ready = tokio::net::unix::pipe::Receiver::from_owned_fd(ready_r)
            .map_err(|e| ShimError::io("cannot watch the logger's ready pipe", e))?;
        let mut byte = [0u8; 1];
        match tokio::time::timeout(LOGGER_READY, ready.read(&mut byte)).await {
            // A byte, or end-of-file: ready (a logger that exits at once
            // closes it too; its output then goes nowhere, as with
            // containerd).
            Ok(Ok(_)) => Ok(logger),
            Ok(Err(e)) => {
                logger.stop().await;
                Err(ShimError::io(format!("cannot read the ready pipe of the logger {}", spec.program.display()), e))
            }
            Err(_) => {
                logger.stop().await;
                Err(ShimError::FailedPrecondition(format!(
                    "the logger {} was not ready within {LOGGER_READY:?}",
                    spec.program.display()
                )))
            }
        }
    }

    /// Waits up to `grace` for the logger to exit on its own; whether it did.
    pub async fn wait(&mut self, grace: Duration) -> bool {
        let Some(exit) = self.exit.as_mut() else { return true };
        let exited = tokio::time::timeout(grace, exit).await.is_ok();
        if exited {
            self.exit = None;
        }
        exited
    }

    /// SIGTERM, then SIGKILL after [`LOGGER_STOP`]; returns once it exited.
    pub async fn stop(&mut self) {
        let Some(mut exit) = self.exit.take() else { return };
        let _ = self.reaper.signal_unreaped(self.pid, Signal::TERM);
        if tokio::time::timeout(LOGGER_STOP, &mut exit).await.is_err() {
            tracing::warn!(pid = self.pid, "the logger did not exit after SIGTERM; killing it");
            let _ = self.reaper.signal_unreaped(self.pid, Signal::KILL);
            let _ = exit.await;
        }
    }
}

impl Drop for Logger {
    fn drop(&mut self) {
        // Not waited for: the reaper reaps it whenever it exits.
        if self.exit.is_some() {
            let _ = self.reaper.signal_unreaped(self.pid, Signal::TERM);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uris_as_containerd_sends_them() {
        assert_eq!(output_target("stdout", ""), Ok(OutputTarget::Path(String::new())));
        assert_eq!(output_target("stdout", "/run/x/stdout"), Ok(OutputTarget::Path("/run/x/stdout".into())));
        assert_eq!(output_target("stdout", "fifo:///run/x/o"), Ok(OutputTarget::Path("/run/x/o".into())));
        assert_eq!(
            output_target("stdout", "file:///var/log/a%20b.log"),
            Ok(OutputTarget::File("/var/log/a b.log".into()))
        );
        let spec = |args: &[&str]| {
            Ok(OutputTarget::Binary(LoggerSpec {
                program: "/usr/bin/logger".into(),
                args: args.iter().map(OsString::from).collect(),
            }))
        };
        assert_eq!(output_target("stdout", "binary:///usr/bin/logger"), spec(&[]));
        assert_eq!(
            output_target("stdout", "binary:///usr/bin/logger?a=1&b&c=x+y%2F"),
            spec(&["a", "1", "b", "", "c", "x y/"])
        );
        let bad = |v: &str| output_target("stdout", v).map_err(|e| e.code());
        assert_eq!(bad("http://host/x"), Err(crate::Code::InvalidArgument));
        assert_eq!(bad("file://relative"), Err(crate::Code::InvalidArgument));
        assert_eq!(bad("binary://"), Err(crate::Code::InvalidArgument));
    }
}
