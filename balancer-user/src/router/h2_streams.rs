//! The streams of an HTTP/2 connection, run in the connection's own task. hyper hands each new
//! stream to its executor; given [`StreamExecutor`], the stream is kept with its connection
//! ([`Streams`]) instead of spawned as a task of its own, and polled beside the connection:
//! - no task is made (and scheduled, and woken) per request;
//! - an answer is framed by the connection in the same poll that produced it, rather than after
//!   the tasks queued before the connection's, as HAProxy's multiplexer and nginx's event loop
//!   do it.
//!
//! A connection's streams share its turns on the thread: as a task per stream, they would take
//! turns with every other task. A connection that ends drops the streams still running (as an
//! HTTP/1.1 connection drops its request): their upstream requests are cancelled.

use futures_util::{stream::FuturesUnordered, StreamExt as _};
use std::{
    future::Future,
    pin::Pin,
    sync::{Arc, Mutex},
    task::{Context, Poll},
};

type StreamFuture = Pin<Box<dyn Future<Output = ()> + Send>>;

/// Where hyper puts a connection's new streams (its HTTP/2 executor).
#[derive(Clone, Default)]
pub struct StreamExecutor(Arc<Mutex<Vec<StreamFuture>>>);

impl<F> hyper::rt::Executor<F> for StreamExecutor
where
    F: Future<Output = ()> + Send + 'static,
{
    fn execute(&self, stream: F) {
        self.0.lock().expect("not poisoned").push(Box::pin(stream));
    }
}

/// The running streams of one connection.
#[derive(Default)]
pub struct Streams {
    new: StreamExecutor,
    running: FuturesUnordered<StreamFuture>,
}

impl Streams {
    /// The executor to build the connection with.
    pub fn executor(&self) -> StreamExecutor {
        self.new.clone()
    }

    /// Polls the connection (`poll_connection`) and the streams it started or that were woken;
    /// when a stream was started or ended, polls the connection again, which frames and sends
    /// what the streams gave it.
    pub fn poll_with<T>(
        &mut self,
        cx: &mut Context<'_>,
        mut poll_connection: impl FnMut(&mut Context<'_>) -> Poll<T>,
    ) -> Poll<T> {
        if let Poll::Ready(ended) = poll_connection(cx) {
            return Poll::Ready(ended);
        }
        match self.run(cx) {
            true => poll_connection(cx),
            false => Poll::Pending,
        }
    }

    /// Polls the new streams and those woken since; true if any was new or ended.
    fn run(&mut self, cx: &mut Context<'_>) -> bool {
        let mut progressed = false;
        {
            let mut new = self.new.0.lock().expect("not poisoned");
            progressed |= !new.is_empty();
            self.running.extend(new.drain(..));
        }
        while let Poll::Ready(Some(())) = self.running.poll_next_unpin(cx) {
            progressed = true;
        }
        progressed
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::rt::Executor as _;
    use std::{
        future::poll_fn,
        sync::atomic::{AtomicBool, AtomicUsize, Ordering},
    };

    /// A stand-in for hyper's connection, and its streams: on its first poll it starts one
    /// stream, which awaits `first` then ends; the connection ends once that stream has.
    /// Also returns the count of the connection's polls and whether the stream ended.
    fn connection(
        first: impl Future<Output = ()> + Send + 'static,
    ) -> (
        Streams,
        impl FnMut(&mut Context<'_>) -> Poll<()>,
        Arc<AtomicUsize>,
        Arc<AtomicBool>,
    ) {
        let streams = Streams::default();
        let (polls, ended) = (
            Arc::new(AtomicUsize::new(0)),
            Arc::new(AtomicBool::new(false)),
        );
        let (executor, counted, seen) = (streams.executor(), polls.clone(), ended.clone());
        let flag = ended.clone();
        let mut stream = Some(async move {
            first.await;
            flag.store(true, Ordering::SeqCst);
        });
        let conn = move |_: &mut Context<'_>| {
            counted.fetch_add(1, Ordering::SeqCst);
            if let Some(stream) = stream.take() {
                executor.execute(stream);
            }
            match seen.load(Ordering::SeqCst) {
                true => Poll::Ready(()),
                false => Poll::Pending,
            }
        };
        (streams, conn, polls, ended)
    }

    #[tokio::test]
    async fn a_new_stream_runs_in_the_connections_poll_and_the_connection_sees_its_end_at_once() {
        let (mut streams, mut conn, polls, _) = connection(async {});
        let first = poll_fn(|cx| Poll::Ready(streams.poll_with(cx, &mut conn))).await;
        assert!(
            first.is_ready(),
            "the stream ran, and the connection saw it, in one poll"
        );
        assert_eq!(polls.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_woken_stream_is_polled_with_its_connection() {
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let (mut streams, mut conn, _, ended) = connection(async {
            let _ = rx.await;
        });
        let first = poll_fn(|cx| Poll::Ready(streams.poll_with(cx, &mut conn))).await;
        assert!(first.is_pending(), "the stream waits for its answer");
        tx.send(()).expect("the stream is waiting");
        poll_fn(|cx| streams.poll_with(cx, &mut conn)).await;
        assert!(ended.load(Ordering::SeqCst));
    }

    /// Dropped with its connection, a stream still running lets go of what it holds (as an
    /// HTTP/1.1 connection drops its request).
    #[tokio::test]
    async fn streams_still_running_end_with_their_connection() {
        let held = Arc::new(());
        let mut streams = Streams::default();
        let hold = held.clone();
        streams.executor().execute(async move {
            let _hold = hold;
            std::future::pending::<()>().await
        });
        let first = poll_fn(|cx| Poll::Ready(streams.poll_with(cx, |_| Poll::<()>::Pending))).await;
        assert!(first.is_pending());
        assert_eq!(
            Arc::strong_count(&held),
            2,
            "the stream runs, holding its share"
        );
        drop(streams);
        assert_eq!(Arc::strong_count(&held), 1);
    }
}
