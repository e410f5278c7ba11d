//! The back end of the streaming measure: it reads a request's body to the end before it
//! answers, as an RPC over HTTP back end does. The upstream nginx answers `return 200` as soon
//! as it has the head, and a proxy that sees the answer may stop forwarding the body (nginx
//! does, and drains the rest unread): the measure would then compare work not done. So the
//! upstream passes `/rpc/` on to this sink, which every proxy's upload reaches in full.
//!
//! The sink is the tests' upstream (it answers `... bytes=<body length>`), in plain HTTP/1.1,
//! on a thread of the bench in the bench namespace, pinned to the generator's core.

use crate::threads::{join, spawn_in};
use balancer_tests::{netns::Netns, upstream::upstream_on};
use std::{net::SocketAddr, thread::JoinHandle};
use tokio::sync::oneshot;

/// A running sink, stopped when dropped.
pub struct Sink {
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<anyhow::Result<()>>>,
}

impl Sink {
    pub fn start(ns: &Netns, addr: SocketAddr, core: Option<usize>) -> anyhow::Result<Self> {
        let (stop, stopped) = oneshot::channel::<()>();
        let (bound, listening) = std::sync::mpsc::channel::<std::io::Result<()>>();
        let thread = spawn_in(ns, core, move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            runtime.block_on(async move {
                let listener = match tokio::net::TcpListener::bind(addr).await {
                    Ok(l) => l,
                    Err(e) => {
                        let _ = bound.send(Err(e));
                        return;
                    }
                };
                let _sink = upstream_on("sink", None, listener);
                let _ = bound.send(Ok(()));
                let _ = stopped.await;
            });
            Ok(())
        })?;
        listening.recv()??;
        Ok(Self {
            stop: Some(stop),
            thread: Some(thread),
        })
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            if let Err(e) = join(thread) {
                eprintln!("bench: the streaming sink: {e:#}");
            }
        }
    }
}
