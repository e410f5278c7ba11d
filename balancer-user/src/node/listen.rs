//! The router's listening sockets: taken over from a predecessor ([`super::handover`]) or made
//! afresh, with deferred accept (`TCP_DEFER_ACCEPT`, as nginx's `deferred` and HAProxy's
//! `defer-accept`). HTTPS and HTTP clients speak first, so the kernel completes a connection's
//! handshake but hands it to the router only once its first bytes (the ClientHello) are in:
//! the router wakes once per new connection instead of twice, and connections that never send
//! anything stay out of the connection cap. After [`DEFER_ACCEPT_SECS`] of silence the
//! connection is handed over anyway, and the router's own timeouts take it from there.

use anyhow::Context as _;
use nix::libc;
use std::{
    net::SocketAddr,
    os::fd::{AsRawFd as _, OwnedFd},
};
use tokio::net::{TcpListener, TcpSocket};

/// Accept backlog of the listeners.
const BACKLOG: u32 = 4096;
/// How long the kernel holds a connection that has sent nothing before handing it over.
const DEFER_ACCEPT_SECS: libc::c_int = 1;

/// The listener for `addr`: an inherited socket bound to it (its options are kept), or a new
/// one.
pub fn listener(
    addr: SocketAddr,
    inherited: &mut [Option<OwnedFd>],
) -> anyhow::Result<TcpListener> {
    for slot in inherited.iter_mut() {
        let Some(fd) = slot.take() else { continue };
        let std = std::net::TcpListener::from(fd);
        if std.local_addr().ok() == Some(addr) {
            std.set_nonblocking(true)?;
            return Ok(TcpListener::from_std(std)?);
        }
        *slot = Some(std.into());
    }
    let socket = match addr {
        SocketAddr::V4(_) => TcpSocket::new_v4()?,
        SocketAddr::V6(_) => TcpSocket::new_v6()?,
    };
    socket.set_reuseaddr(true)?;
    socket
        .bind(addr)
        .with_context(|| format!("binding {addr}"))?;
    defer_accept(&socket, DEFER_ACCEPT_SECS).context("setting TCP_DEFER_ACCEPT")?;
    Ok(socket.listen(BACKLOG)?)
}

/// Neither nix nor socket2 wraps `TCP_DEFER_ACCEPT`.
#[allow(unsafe_code)]
fn defer_accept(socket: &TcpSocket, secs: libc::c_int) -> std::io::Result<()> {
    // SAFETY: the descriptor is open for the call, and the option is an int passed by pointer
    // with its size.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_DEFER_ACCEPT,
            (&secs as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    match rc {
        0 => Ok(()),
        _ => Err(std::io::Error::last_os_error()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use tokio::{io::AsyncWriteExt as _, net::TcpStream, time::timeout};

    #[tokio::test]
    async fn a_connection_is_accepted_once_it_has_sent_its_first_bytes() {
        let listener = listener("127.0.0.1:0".parse().unwrap(), &mut []).unwrap();
        let addr = listener.local_addr().unwrap();
        let mut client = TcpStream::connect(addr).await.unwrap();
        let early = timeout(Duration::from_millis(300), listener.accept()).await;
        assert!(
            early.is_err(),
            "a connection that has sent nothing is held by the kernel"
        );
        client.write_all(b"\x16\x03\x01").await.unwrap();
        let (accepted, _) = timeout(Duration::from_secs(5), listener.accept())
            .await
            .expect("accepted once its first bytes are in")
            .unwrap();
        let mut first = [0; 3];
        accepted.try_read(&mut first).unwrap();
        assert_eq!(&first, b"\x16\x03\x01", "and they are readable at once");
    }

    #[tokio::test]
    async fn an_inherited_listener_is_taken_as_it_is() {
        let original = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = original.local_addr().unwrap();
        let mut inherited = [None, Some(OwnedFd::from(original))];
        let listener = listener(addr, &mut inherited).unwrap();
        assert_eq!(listener.local_addr().unwrap(), addr);
        assert!(inherited.iter().all(Option::is_none), "the slot was taken");
        let _client = TcpStream::connect(addr).await.unwrap();
        timeout(Duration::from_secs(5), listener.accept())
            .await
            .expect("the inherited socket's options are kept: no deferred accept here")
            .unwrap();
    }
}
