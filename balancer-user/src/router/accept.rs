//! Accepting connections under a cap, for the HTTPS and plain-HTTP fronts: while at the cap
//! the listener is not polled, so new connections wait in the kernel's backlog; a failed
//! accept (out of descriptors, say) is logged and retried after a pause rather than in a loop.
//! Accepted sockets send without Nagle's delay: an answer written in two parts (its head, then
//! a body that arrives later from the upstream) must not wait for the client's delayed ACK.

use std::{future::Future, net::SocketAddr, pin::Pin, sync::Arc, time::Duration};
use tokio::{
    net::{TcpListener, TcpStream},
    sync::{OwnedSemaphorePermit, Semaphore},
};
use tracing::{debug, warn};

/// How long to wait after a failed accept.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

pub struct CappedListener {
    listener: TcpListener,
    permits: Arc<Semaphore>,
}

/// An accepted connection; its slot under the cap is held until the permit drops.
pub struct Accepted {
    pub tcp: TcpStream,
    pub peer: SocketAddr,
    pub permit: OwnedSemaphorePermit,
}

impl CappedListener {
    pub fn new(listener: TcpListener, max_connections: usize) -> Self {
        Self {
            listener,
            permits: Arc::new(Semaphore::new(max_connections)),
        }
    }

    /// The next connection, or `None` once `shutdown` has completed.
    pub async fn next<F: Future<Output = ()>>(
        &self,
        shutdown: &mut Pin<&mut F>,
    ) -> Option<Accepted> {
        loop {
            let permit = tokio::select! {
                permit = self.permits.clone().acquire_owned() => permit.expect("the semaphore is never closed"),
                () = shutdown.as_mut() => return None,
            };
            tokio::select! {
                accepted = self.listener.accept() => match accepted {
                    Ok((tcp, peer)) => {
                        if let Err(e) = tcp.set_nodelay(true) {
                            debug!(%peer, error = %e, "TCP_NODELAY not set");
                        }
                        return Some(Accepted { tcp, peer, permit });
                    }
                    Err(e) => {
                        warn!(error = %e, "accept failed");
                        tokio::time::sleep(ACCEPT_BACKOFF).await;
                    }
                },
                () = shutdown.as_mut() => return None,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn accepted_sockets_send_without_nagle_delay() {
        let listener = CappedListener::new(TcpListener::bind("127.0.0.1:0").await.unwrap(), 4);
        let addr = listener.listener.local_addr().unwrap();
        let _client = TcpStream::connect(addr).await.unwrap();
        let never = std::future::pending::<()>();
        tokio::pin!(never);
        let accepted = listener.next(&mut never).await.unwrap();
        assert!(
            accepted.tcp.nodelay().unwrap(),
            "TCP_NODELAY on accepted sockets"
        );
    }
}
