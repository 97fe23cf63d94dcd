//! [`Signal`]: a signal number the kernel accepts, real-time signals
//! included.
//!
//! `nix::sys::signal::Signal` has no SIGRTMIN..SIGRTMAX, yet containers use
//! them: systemd as a container's init stops on SIGRTMIN+3 (signal 37 with
//! glibc). So the shim and the [`Runtime`](crate::Runtime) trait carry signals
//! as this number, checked once against the kernel's range.

use crate::error::{Result, ShimError};

/// The highest signal number Linux accepts (`SIGRTMAX` as the kernel sees
/// it, `_NSIG - 1`).
pub const MAX_SIGNAL: u32 = 64;

/// A signal number in `1..=64`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Signal(i32);

impl Signal {
    /// SIGHUP.
    pub const HUP: Signal = Signal(libc::SIGHUP);
    /// SIGINT.
    pub const INT: Signal = Signal(libc::SIGINT);
    /// SIGKILL.
    pub const KILL: Signal = Signal(libc::SIGKILL);
    /// SIGTERM.
    pub const TERM: Signal = Signal(libc::SIGTERM);
    /// SIGSTOP.
    pub const STOP: Signal = Signal(libc::SIGSTOP);
    /// SIGCONT.
    pub const CONT: Signal = Signal(libc::SIGCONT);

    /// The signal numbered `n`, if the kernel accepts it (`1..=64`).
    pub fn new(n: u32) -> Result<Self> {
        match i32::try_from(n) {
            Ok(v) if (1..=MAX_SIGNAL as i32).contains(&v) => Ok(Self(v)),
            _ => Err(ShimError::invalid("signal", format!("{n} is not a signal number (1 to {MAX_SIGNAL})"))),
        }
    }

    /// Its number.
    pub fn number(self) -> i32 {
        self.0
    }

    /// Whether the kernel's default action for it ends the process (every
    /// signal but those ignored, stopping or continuing by default; the
    /// real-time signals terminate).
    pub fn terminates_by_default(self) -> bool {
        !matches!(
            self.0,
            libc::SIGCHLD
                | libc::SIGCONT
                | libc::SIGURG
                | libc::SIGWINCH
                | libc::SIGSTOP
                | libc::SIGTSTP
                | libc::SIGTTIN
                | libc::SIGTTOU
        )
    }

    /// Sends it to `pid` with `kill(2)`.
    pub fn send(self, pid: u32) -> std::io::Result<()> {
        let pid =
            i32::try_from(pid).ok().filter(|p| *p > 0).ok_or_else(|| std::io::Error::from_raw_os_error(libc::ESRCH))?;
        // SAFETY: kill(2) takes two integers and touches no memory of ours;
        // the pid is positive, so it addresses one process, never a group.
        let rc = unsafe { libc::kill(pid, self.0) };
        if rc == 0 {
            Ok(())
        } else {
            Err(std::io::Error::last_os_error())
        }
    }
}

impl std::fmt::Display for Signal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl TryFrom<u32> for Signal {
    type Error = ShimError;

    fn try_from(n: u32) -> Result<Self> {
        Self::new(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kernel_signal_and_nothing_else() {
        for n in 1..=64 {
            assert_eq!(Signal::new(n).map(Signal::number).ok(), Some(n as i32));
        }
        for n in [0, 65, 1000, u32::MAX] {
            assert_eq!(Signal::new(n).map_err(|e| e.code()).err(), Some(crate::Code::InvalidArgument));
        }
        assert!(Signal::new(37).map(Signal::terminates_by_default).unwrap_or(false));
        assert!(!Signal::CONT.terminates_by_default());
    }
}
