//! The console socket: runc connects to it and sends the pty master of a
//! terminal process over `SCM_RIGHTS`.

use std::io::{self, IoSliceMut};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
use tokio::io::Interest;
use tokio::net::UnixListener;

/// A listening console socket; the file is removed on drop.
pub(crate) struct ConsoleSocket {
    path: PathBuf,
    listener: UnixListener,
}

impl ConsoleSocket {
    /// Listens on `path` (inside the shim's private work directory).
    pub fn bind(path: &Path) -> io::Result<Self> {
        let _ = std::fs::remove_file(path);
        let listener = UnixListener::bind(path)?;
        Ok(Self { path: path.to_path_buf(), listener })
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
                    return Ok(owned.swap_remove(0));
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
    }
}
