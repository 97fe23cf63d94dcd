//! Running the OCI runtime's command line.

use std::ffi::OsString;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::error::{Result, ShimError};
use crate::reaper::Reaper;

/// Most bytes of runtime output kept for an error message.
const MAX_MESSAGE: usize = 4096;

/// The stdio given to one runtime invocation.
#[derive(Default)]
pub(crate) struct RuncStdio {
    /// `None` is `/dev/null`.
    pub stdin: Option<Stdio>,
    /// `None` is `/dev/null`.
    pub stdout: Option<Stdio>,
    /// `None` is captured for the error message (in a file beside the call's
    /// log), except when `process` is set: then it is `/dev/null`.
    pub stderr: Option<Stdio>,
    /// The runtime starts a process that inherits this stdio (`create`,
    /// `exec`). Its stderr is then never a pipe of ours: a process asked to
    /// have none gets `/dev/null`, as it would from any runtime, not a pipe
    /// that breaks when the shim goes away. The runtime's own errors still
    /// come through its `--log` file.
    pub process: bool,
}

/// One runtime binary with its global flags.
#[derive(Debug, Clone)]
pub(crate) struct RuncCli {
    pub binary: String,
    pub root: Option<PathBuf>,
    pub systemd_cgroup: bool,
    pub reaper: Reaper,
    /// A call still running after this is killed and fails.
    pub timeout: Option<std::time::Duration>,
    /// Files of earlier calls, removed while this call's process runs.
    pub trash: super::Trash,
}

impl RuncCli {
    /// The binary and its `--root`, as an operator would type them.
    pub fn command_prefix(&self) -> String {
        match &self.root {
            Some(root) => format!("{} --root {}", self.binary, root.display()),
            None => self.binary.clone(),
        }
    }

    /// Runs `<binary> [global flags] --log <log> --log-format json <args>`.
    ///
    /// The log file is read for the error message on failure and removed in
    /// every case. When `stdio.stderr` is `None` (and `process` is not set),
    /// stderr goes to a file beside the log (`<log>` with the extension
    /// `err`), read only on failure: a pipe read to its end cost each call
    /// about 0.3 ms more than a file (runc's exit woke the shim twice, and
    /// runc itself ran slower with a pipe as stderr), measured on `runc
    /// start`. Like the log, the file is not bounded while the runtime
    /// runs (a runtime or hook that writes without end fills the work
    /// directory until the call's timeout kills it); both are removed when
    /// the call ends, and at most [`MAX_LOG`] and 4 KiB of them are read.
    pub async fn run(&self, args: &[OsString], log: &Path, stdio: RuncStdio) -> Result<()> {
        let command = args.first().map(|a| a.to_string_lossy().into_owned()).unwrap_or_default();
        let mut cmd = Command::new(&self.binary);
        if let Some(root) = &self.root {
            cmd.arg("--root").arg(root);
        }
        if self.systemd_cgroup {
            cmd.arg("--systemd-cgroup");
        }
        cmd.arg("--log").arg(log).arg("--log-format").arg("json").args(args);
        cmd.stdin(stdio.stdin.unwrap_or_else(Stdio::null));
        cmd.stdout(stdio.stdout.unwrap_or_else(Stdio::null));
        let captured = match stdio.stderr {
            Some(s) => {
                cmd.stderr(s);
                None
            }
            None if stdio.process => {
                cmd.stderr(Stdio::null());
                None
            }
            None => {
                let path = log.with_extension("err");
                debug_assert_ne!(path, log, "a call's log must not end in .err");
                // A new file: a name already taken is a bug, not something
                // to write through.
                let file = std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(&path)
                    .map_err(|e| ShimError::io(format!("cannot create {}", path.display()), e))?;
                cmd.stderr(Stdio::from(file));
                Some(Captured { path })
            }
        };
        tracing::debug!(binary = %self.binary, args = ?args, "runtime");
        let spawned = self.reaper.spawn(&mut cmd);
        // Our copies of the child's stdio are not needed any more.
        drop(cmd);
        let (_child, waiter) = spawned.map_err(|e| {
            let _ = std::fs::remove_file(log);
            ShimError::Runtime {
                binary: self.binary.clone(),
                command: command.clone(),
                message: format!("cannot execute the runtime binary: {e}"),
            }
        })?;
        let pid = waiter.pid();
        // The runtime takes milliseconds; this thread would only wait.
        self.trash.empty();
        // What the runtime said: its log and its stderr, read only when the
        // call failed or hung.
        let said = || (read_head(log, MAX_LOG), captured.as_ref().map(Captured::read).unwrap_or_default());
        let finished = waiter.wait_reaping();
        let outcome = match self.timeout {
            Some(limit) => tokio::time::timeout(limit, finished).await.ok(),
            None => Some(finished.await),
        };
        let Some(exit) = outcome else {
            // A hung runtime (a hook that never returns) must not hang the
            // shim's caller forever: kill it and say so.
            let _ = self.reaper.signal_unreaped(pid, crate::signal::Signal::KILL);
            // What it said before it was killed often says why it hung.
            let (log_text, stderr_text) = said();
            let _ = std::fs::remove_file(log);
            let mut message = format!("did not finish within {:?}; killed", self.timeout.unwrap_or_default());
            if !log_text.is_empty() || !stderr_text.is_empty() {
                message = format!("{message}: {}", error_message(&log_text, &stderr_text, 0));
            }
            return Err(ShimError::Runtime { binary: self.binary.clone(), command, message });
        };
        tracing::debug!(command = %command, pid, status = ?exit.as_ref().map(|e| e.status), "runtime exited");
        let result = match exit {
            Some(exit) if exit.status == 0 => Ok(()),
            Some(exit) => {
                let (log_text, stderr_text) = said();
                Err(ShimError::Runtime {
                    binary: self.binary.clone(),
                    command,
                    message: error_message(&log_text, &stderr_text, exit.status),
                })
            }
            None => Err(ShimError::Internal("the reaper stopped".into())),
        };
        let _ = std::fs::remove_file(log);
        result
    }
}

/// The file a runtime call's stderr goes to, removed when dropped, at once
/// like the log (runc writes nothing there unless it fails, so it has no
/// blocks to free, unlike the pid files the trash takes).
struct Captured {
    path: PathBuf,
}

impl Captured {
    /// Its first [`MAX_MESSAGE`] bytes, trimmed.
    fn read(&self) -> String {
        read_head(&self.path, MAX_MESSAGE).trim().to_string()
    }
}

/// Most bytes of a runtime's JSON log read for an error message: its error
/// lines come after whatever it logged before, but a log this long is not
/// runc's.
const MAX_LOG: usize = 1 << 20;

/// The first `limit` bytes of a file, invalid UTF-8 replaced; empty if it
/// cannot be read.
fn read_head(path: &Path, limit: usize) -> String {
    use std::io::Read;
    let mut kept = Vec::new();
    if let Ok(file) = std::fs::File::open(path) {
        let _ = file.take(limit as u64).read_to_end(&mut kept);
    }
    String::from_utf8_lossy(&kept).into_owned()
}

impl Drop for Captured {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Builds the error text of a failed runtime call from its JSON log (the
/// `msg` of error-level lines), else its stderr, else its exit status. At
/// most 4 KiB; any input is accepted.
pub fn error_message(log: &str, stderr: &str, status: u32) -> String {
    let mut errors: Vec<String> = Vec::new();
    let mut last_line = None;
    for line in log.lines().filter(|l| !l.trim().is_empty()) {
        last_line = Some(line);
        if let Ok(entry) = serde_json::from_str::<serde_json::Value>(line) {
            let level = entry.get("level").and_then(|v| v.as_str()).unwrap_or("");
            if matches!(level, "error" | "fatal" | "panic") {
                if let Some(msg) = entry.get("msg").and_then(|v| v.as_str()) {
                    errors.push(msg.to_string());
                }
            }
        }
    }
    let mut message = if !errors.is_empty() {
        errors.join("; ")
    } else if !stderr.is_empty() {
        stderr.to_string()
    } else if let Some(line) = last_line {
        line.to_string()
    } else {
        format!("exited with status {status}")
    };
    if message.len() > MAX_MESSAGE {
        let mut cut = MAX_MESSAGE;
        while !message.is_char_boundary(cut) {
            cut -= 1;
        }
        message.truncate(cut);
    }
    message
}

#[cfg(test)]
mod tests {
    use super::error_message;

    #[test]
    fn error_lines_of_the_json_log_win() {
        let log = r#"{"level":"warning","msg":"w","time":"t"}
{"level":"error","msg":"container_linux.go:380: starting container process caused: exec: \"nope\": executable file not found in $PATH","time":"t"}
"#;
        assert_eq!(
            error_message(log, "ignored", 1),
            "container_linux.go:380: starting container process caused: exec: \"nope\": executable file not found in $PATH"
        );
    }

    #[test]
    fn stderr_then_raw_log_then_status() {
        assert_eq!(error_message("", "boom", 1), "boom");
        assert_eq!(error_message("not json\n", "", 1), "not json");
        assert_eq!(error_message("", "", 2), "exited with status 2");
        assert!(error_message(&"x".repeat(10_000), "", 1).len() <= 4096);
    }
}
