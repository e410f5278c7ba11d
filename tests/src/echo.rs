//! The stand-in for the router on a lab node: a TCP server on the VIP that says which node it
//! is ("<node>\n") and then echoes everything back, so clients can tell who served them and
//! stream through long-lived connections.

use std::{
    io::{Read, Write},
    net::{SocketAddr, TcpListener},
    os::fd::AsRawFd,
    sync::Arc,
    thread::JoinHandle,
};

use crate::netns::Netns;

/// A running echo server; stopped on drop.
pub struct EchoServer {
    listener: Arc<TcpListener>,
    thread: Option<JoinHandle<()>>,
}

impl EchoServer {
    /// Binds `addr` inside `ns` and serves until stopped.
    pub fn start(ns: &Netns, addr: SocketAddr, node: &str) -> anyhow::Result<Self> {
        // The socket belongs to the namespace it was created in, whichever thread uses it.
        let listener = Arc::new(ns.run_in(|| TcpListener::bind(addr))??);
        let name = format!("{node}\n");
        let accepting = listener.clone();
        let thread = std::thread::spawn(move || {
            while let Ok((mut stream, _)) = accepting.accept() {
                let hello = name.clone();
                std::thread::spawn(move || {
                    let _ = stream.set_nodelay(true);
                    if stream.write_all(hello.as_bytes()).is_err() {
                        return;
                    }
                    let mut buf = [0u8; 16 * 1024];
                    while let Ok(n) = stream.read(&mut buf) {
                        if n == 0 || stream.write_all(&buf[..n]).is_err() {
                            break;
                        }
                    }
                });
            }
        });
        Ok(Self {
            listener,
            thread: Some(thread),
        })
    }
}

impl Drop for EchoServer {
    fn drop(&mut self) {
        // Shutting a listening socket down wakes the blocked accept() with an error.
        let _ =
            nix::sys::socket::shutdown(self.listener.as_raw_fd(), nix::sys::socket::Shutdown::Both);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
