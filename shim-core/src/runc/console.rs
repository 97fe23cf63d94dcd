//! The console socket: runc connects to it and sends the pty master of a
//! terminal process over `SCM_RIGHTS`.

use std::io::{self, IoSliceMut};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
use tokio::io::Interest;
use tokio::net::UnixListener;

/// The longest path a unix socket address holds (`sun_path` is 108 bytes,
/// one of them the terminating NUL).
const MAX_SOCKET_PATH: usize = 107;

/// A listening console socket; the file (and its fallback directory) is
/// removed on drop.
pub(crate) struct ConsoleSocket {
    path: PathBuf,
    /// A private directory made because the asked path was too long.
    fallback_dir: Option<PathBuf>,
    listener: UnixListener,
}

impl ConsoleSocket {
    /// Listens on `path` (inside the shim's private work directory). A path
    /// longer than a socket address allows (a deep work directory) is
    /// replaced by one in a fresh private directory (mode 0700) under the
    /// system's temporary directory, so a terminal works wherever the work
    /// directory is.
    pub fn bind(path: &Path) -> io::Result<Self> {
        let (path, fallback_dir) = if path.as_os_str().len() > MAX_SOCKET_PATH {
            let template = std::env::temp_dir().join("shim-console-XXXXXX");
            let dir = nix::unistd::mkdtemp(&template).map_err(io::Error::from)?;
            (dir.join("console.sock"), Some(dir))
        } else {
            (path.to_path_buf(), None)
        };
        if path.as_os_str().len() > MAX_SOCKET_PATH {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("console socket path {} is longer than {MAX_SOCKET_PATH} bytes", path.display()),
            ));
        }
        let _ = std::fs::remove_file(&path);
        let listener = UnixListener::bind(&path)?;
        Ok(Self { path, fallback_dir, listener })
    }

    /// The socket path to give runc.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Accepts runc's connection and receives the master.
    pub async fn receive(&self) -> io::Result<OwnedFd> {
        let (stream, _) = self.listener.accept().await?;
        loop {
            stream.readable().await?;
            let got = stream.try_io(Interest::READABLE, || {
                let mut name = [0u8; 4096];
                let mut iov = [IoSliceMut::new(&mut name)];
                let mut space = nix::cmsg_space!([std::os::fd::RawFd; 4]);
                let msg = recvmsg::<()>(stream.as_raw_fd(), &mut iov, Some(&mut space), MsgFlags::MSG_CMSG_CLOEXEC)
                    .map_err(io::Error::from)?;
                let mut fds = Vec::new();
                for cmsg in msg.cmsgs().map_err(io::Error::from)? {
                    if let ControlMessageOwned::ScmRights(received) = cmsg {
                        fds.extend(received);
                    }
                }
                Ok(fds)
            });
            match got {
                Ok(fds) => {
                    // SAFETY: these fds were just received over SCM_RIGHTS and
                    // are owned by nobody else in this process.
                    let mut owned: Vec<OwnedFd> =
                        fds.into_iter().map(|fd| unsafe { OwnedFd::from_raw_fd(fd) }).collect();
                    if owned.is_empty() {
                        return Err(io::Error::new(io::ErrorKind::InvalidData, "console socket message carried no fd"));
                    }
                    // One master is expected; any extra fds are closed here.
                    let master = owned.swap_remove(0);
                    // The pumps read and write it through tokio, which needs
                    // it non-blocking; runc's happens to be, another
                    // runtime's need not be (a blocking master would stall
                    // the shim's thread on a read).
                    let flags = nix::fcntl::fcntl(&master, nix::fcntl::FcntlArg::F_GETFL).map_err(io::Error::from)?;
                    let flags = nix::fcntl::OFlag::from_bits_retain(flags) | nix::fcntl::OFlag::O_NONBLOCK;
                    nix::fcntl::fcntl(&master, nix::fcntl::FcntlArg::F_SETFL(flags)).map_err(io::Error::from)?;
                    return Ok(master);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Err(e),
            }
        }
    }
}

impl Drop for ConsoleSocket {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
        if let Some(dir) = &self.fallback_dir {
            let _ = std::fs::remove_dir(dir);
        }
    }
}
