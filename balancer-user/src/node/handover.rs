//! Restarting `balancer run` without closing the listening sockets (R18, issue 4): the new
//! process connects to the running one's handover socket (a Unix socket) and receives the
//! listeners' file descriptors (`SCM_RIGHTS`). Both processes then hold the same sockets and the
//! same accept queues, so no connection is refused or reset; the old process stops accepting,
//! drains its own connections and exits. The same scheme as HAProxy's `-x` and Envoy's hot
//! restart.
//!
//! Order, so that the socket path is never lost: the old process sends the descriptors, removes
//! its socket path, and closes the connection; the new one, on end of stream, binds the path.

use anyhow::Context as _;
use nix::sys::socket::{recvmsg, sendmsg, ControlMessage, ControlMessageOwned, MsgFlags};
use std::{
    io::{IoSlice, IoSliceMut, Read as _},
    os::{
        fd::{AsRawFd, FromRawFd, OwnedFd, RawFd},
        unix::net::UnixStream,
    },
    path::{Path, PathBuf},
};
use tokio::net::UnixListener;
use tracing::{info, warn};

/// Most descriptors handed over (HTTPS and HTTP listeners today).
const MAX_FDS: usize = 4;

/// Takes the listeners of a running predecessor, if one answers at `path`.
pub fn take(path: &Path) -> anyhow::Result<Option<Vec<OwnedFd>>> {
    let mut stream = match UnixStream::connect(path) {
        Ok(s) => s,
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused
            ) =>
        {
            return Ok(None)
        }
        Err(e) => return Err(e).with_context(|| format!("connecting to {}", path.display())),
    };
    let mut byte = [0u8; 1];
    let mut space = nix::cmsg_space!([RawFd; MAX_FDS]);
    let mut iov = [IoSliceMut::new(&mut byte)];
    let msg = recvmsg::<()>(
        stream.as_raw_fd(),
        &mut iov,
        Some(&mut space),
        MsgFlags::MSG_CMSG_CLOEXEC,
    )
    .context("receiving the listeners")?;
    let mut fds = Vec::new();
    for cmsg in msg.cmsgs()? {
        if let ControlMessageOwned::ScmRights(raw) = cmsg {
            // SAFETY: the kernel installed these descriptors in this process for us; each is
            // owned once, here.
            #[allow(unsafe_code)]
            fds.extend(
                raw.into_iter()
                    .map(|fd| unsafe { OwnedFd::from_raw_fd(fd) }),
            );
        }
    }
    // Wait for the predecessor to remove its socket path (end of stream).
    let mut rest = Vec::new();
    let _ = stream.read_to_end(&mut rest);
    Ok(Some(fds))
}

/// Offers `fds` to a successor at `path`; completes when one took them (the caller then stops
/// accepting and drains).
pub struct Offer {
    listener: UnixListener,
    path: PathBuf,
}

impl Offer {
    pub fn bind(path: &Path) -> anyhow::Result<Self> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        // A path left by a process that died: nothing answers it (`take` checked).
        let _ = std::fs::remove_file(path);
        let listener = UnixListener::bind(path)
            .with_context(|| format!("binding the handover socket {}", path.display()))?;
        Ok(Self {
            listener,
            path: path.to_path_buf(),
        })
    }

    /// Waits for a successor and hands it `fds`.
    pub async fn hand_over(self, fds: &[OwnedFd]) {
        loop {
            let stream = match self.listener.accept().await {
                Ok((s, _)) => s,
                Err(e) => {
                    warn!(error = %e, "handover socket accept failed");
                    continue;
                }
            };
            let sent = stream.into_std().and_then(|s| {
                s.set_nonblocking(false)?;
                let raw: Vec<RawFd> = fds.iter().map(AsRawFd::as_raw_fd).collect();
                sendmsg::<()>(
                    s.as_raw_fd(),
                    &[IoSlice::new(b"L")],
                    &[ControlMessage::ScmRights(&raw)],
                    MsgFlags::empty(),
                    None,
                )?;
                Ok(s)
            });
            match sent {
                Ok(stream) => {
                    let _ = std::fs::remove_file(&self.path);
                    drop(stream);
                    info!("listeners handed over to a new process");
                    return;
                }
                Err(e) => warn!(error = %e, "handing the listeners over failed"),
            }
        }
    }
}
