//! The daemon's logging: plain text for people, JSON for machines, and never
//! a reason for the shim to stop.

use std::io::{IsTerminal, Write};

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// One human-readable line per event; coloured only on a terminal.
    Text,
    /// One JSON object per line.
    Json,
}

/// stderr that never fails: a log line that cannot be written (the reader of
/// the pipe is gone, the disk is full) is dropped. A shim outlives the
/// terminal or the `shimctl run` that started it; its container must not die
/// of a broken log.
#[derive(Debug, Clone, Copy, Default)]
pub struct LossyStderr;

impl Write for LossyStderr {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let _ = std::io::stderr().write_all(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        let _ = std::io::stderr().flush();
        Ok(())
    }
}

/// Whether text logs get ANSI colours: only on a terminal, and never when
/// `NO_COLOR` is set to anything non-empty (no-color.org).
pub fn use_colour(stderr_is_terminal: bool, no_color: Option<&std::ffi::OsStr>) -> bool {
    stderr_is_terminal && no_color.is_none_or(|v| v.is_empty())
}

/// Installs the process's log subscriber at `level` in `format`.
pub fn init(level: tracing_subscriber::filter::LevelFilter, format: LogFormat) {
    let colour = use_colour(std::io::stderr().is_terminal(), std::env::var_os("NO_COLOR").as_deref());
    let builder = tracing_subscriber::fmt()
        .with_max_level(level)
        .with_writer(|| LossyStderr)
        // Its own error report would be an eprintln!, which panics when
        // stderr is gone.
        .log_internal_errors(false);
    match format {
        LogFormat::Text => builder.with_ansi(colour).init(),
        LogFormat::Json => builder.with_ansi(false).json().init(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colour_only_on_a_terminal_without_no_color() {
        assert!(use_colour(true, None));
        assert!(use_colour(true, Some("".as_ref())));
        assert!(!use_colour(true, Some("1".as_ref())));
        assert!(!use_colour(false, None));
    }
}
