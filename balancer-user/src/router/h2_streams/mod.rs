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
//!
//! The connection and its streams wake one another while the task polls them: a stream that
//! answers wakes the connection (`h2` queued a frame to send), and the connection wakes the
//! stream when it grants it room to send its body. Those wakes are taken up in the same poll
//! ([`wakes`]), which goes round again for the part woken only, rather than passed to the
//! runtime, which would poll the task once more for each. With one request at a time on a
//! connection, that was two more polls of the task per request, each with the connection's
//! timers and its socket's readiness checked again.

mod wakes;

use futures_util::{stream::FuturesUnordered, StreamExt as _};
use std::{
    future::Future,
    pin::Pin,
    sync::{Arc, Mutex},
    task::{Context, Poll},
};
use wakes::Wakes;

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

/// The most rounds one poll of the task makes while the connection and its streams keep
/// waking one another; then the task yields to the others on the thread. Answering a request
/// takes three (the answer, its headers sent and room granted for its body, the body sent).
const MAX_ROUNDS: usize = 8;

/// The running streams of one connection.
#[derive(Default)]
pub struct Streams {
    new: StreamExecutor,
    running: FuturesUnordered<StreamFuture>,
    wakes: Wakes,
}

impl Streams {
    /// The executor to build the connection with.
    pub fn executor(&self) -> StreamExecutor {
        self.new.clone()
    }

    /// Polls the connection (`poll_connection`) if it was woken, then the streams it started
    /// or that were woken; then again while either was woken meanwhile. (A stream that gives
    /// the connection something to do, a frame to send or its end to see, wakes it: `h2`
    /// does; so does what the connection waits for, its socket or its timers.)
    pub fn poll_with<T>(
        &mut self,
        cx: &mut Context<'_>,
        mut poll_connection: impl FnMut(&mut Context<'_>) -> Poll<T>,
    ) -> Poll<T> {
        let Self {
            new,
            running,
            wakes,
        } = self;
        let mut woken = wakes.enter(cx.waker());
        let mut rounds = 0;
        let polled = loop {
            if woken.connection() {
                let mut connection = Context::from_waker(wakes.connection());
                if let Poll::Ready(ended) = poll_connection(&mut connection) {
                    break Poll::Ready(ended);
                }
                // The streams it started (only a poll of the connection starts any).
                running.extend(new.0.lock().expect("not poisoned").drain(..));
            }
            let mut streams = Context::from_waker(wakes.streams());
            while let Poll::Ready(Some(())) = running.poll_next_unpin(&mut streams) {}
            rounds += 1;
            if rounds == MAX_ROUNDS {
                // Yields: the wakes noted since are left to `leave`, which has the task polled
                // again, after the others queued on the thread.
                break Poll::Pending;
            }
            woken = wakes.take();
            if !woken.any() {
                break Poll::Pending;
            }
        };
        wakes.leave(cx.waker());
        polled
    }

    /// Has the connection polled at the task's next poll, as after a call that changes its
    /// state other than through its waker (`graceful_shutdown`).
    pub fn wake_connection(&self) {
        self.wakes.connection().wake_by_ref();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::rt::Executor as _;
    use std::{
        sync::atomic::{AtomicBool, AtomicUsize, Ordering},
        task::Waker,
    };
    use wakes::tests::WakeCount;

    type PollConnection = Box<dyn FnMut(&mut Context<'_>) -> Poll<()>>;

    /// A stand-in for hyper's connection and its streams: on its first poll it starts one
    /// stream, which awaits `first` then ends, waking the connection (as `h2` does when a
    /// stream lets go of its end); the connection ends once that stream has.
    struct Connection {
        streams: Streams,
        poll: PollConnection,
        /// How many times the connection was polled.
        polls: Arc<AtomicUsize>,
        ended: Arc<AtomicBool>,
    }

    impl Connection {
        fn new(first: impl Future<Output = ()> + Send + 'static) -> Self {
            let streams = Streams::default();
            let (polls, ended) = (Arc::<AtomicUsize>::default(), Arc::<AtomicBool>::default());
            let polled_with = Arc::new(Mutex::new(None::<Waker>));
            let (executor, counted, seen) = (streams.executor(), polls.clone(), ended.clone());
            let (flag, connection) = (ended.clone(), polled_with.clone());
            let mut stream = Some(async move {
                first.await;
                flag.store(true, Ordering::SeqCst);
                if let Some(waker) = connection.lock().expect("not poisoned").take() {
                    waker.wake();
                }
            });
            let poll = move |cx: &mut Context<'_>| {
                counted.fetch_add(1, Ordering::SeqCst);
                *polled_with.lock().expect("not poisoned") = Some(cx.waker().clone());
                if let Some(stream) = stream.take() {
                    executor.execute(stream);
                }
                match seen.load(Ordering::SeqCst) {
                    true => Poll::Ready(()),
                    false => Poll::Pending,
                }
            };
            Self {
                streams,
                poll: Box::new(poll),
                polls,
                ended,
            }
        }

        /// One poll of the task, whose waker is `task`.
        fn poll(&mut self, task: &Arc<WakeCount>) -> Poll<()> {
            let waker = Waker::from(task.clone());
            let mut cx = Context::from_waker(&waker);
            self.streams.poll_with(&mut cx, &mut self.poll)
        }

        fn polls(&self) -> usize {
            self.polls.load(Ordering::SeqCst)
        }
    }

    #[test]
    fn a_new_stream_runs_in_the_connections_poll_and_the_connection_sees_its_end_at_once() {
        let mut connection = Connection::new(async {});
        let task = Arc::default();
        assert!(
            connection.poll(&task).is_ready(),
            "the stream ran, and the connection saw it end, in one poll"
        );
        assert_eq!(connection.polls(), 2);
        assert_eq!(
            task.wakes(),
            0,
            "the stream's wake of its connection was taken up in the poll, not passed on"
        );
    }

    #[test]
    fn a_stream_woken_between_polls_wakes_the_task_and_is_polled_with_its_connection() {
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let mut connection = Connection::new(async {
            let _ = rx.await;
        });
        let task = Arc::default();
        assert!(
            connection.poll(&task).is_pending(),
            "the stream waits for its answer"
        );
        assert_eq!(
            (connection.polls(), task.wakes()),
            (1, 0),
            "nothing woke the connection: it was polled once"
        );
        tx.send(()).expect("the stream is waiting");
        assert_eq!(task.wakes(), 1, "the stream's answer wakes the task");
        assert!(connection.poll(&task).is_ready());
        assert!(connection.ended.load(Ordering::SeqCst));
    }

    #[test]
    fn a_connection_that_keeps_waking_itself_yields_to_the_other_tasks() {
        let mut streams = Streams::default();
        let task = Arc::<WakeCount>::default();
        let waker = Waker::from(task.clone());
        let polls = AtomicUsize::new(0);
        let busy = |cx: &mut Context<'_>| {
            polls.fetch_add(1, Ordering::SeqCst);
            cx.waker().wake_by_ref();
            Poll::<()>::Pending
        };
        let polled = streams.poll_with(&mut Context::from_waker(&waker), busy);
        assert!(polled.is_pending());
        assert_eq!(polls.load(Ordering::SeqCst), MAX_ROUNDS);
        assert_eq!(task.wakes(), 1, "the task is polled again later");
        let _ = streams.poll_with(&mut Context::from_waker(&waker), busy);
        assert_eq!(
            polls.load(Ordering::SeqCst),
            2 * MAX_ROUNDS,
            "its last wake was kept for the next poll"
        );
    }

    /// Dropped with its connection, a stream still running lets go of what it holds (as an
    /// HTTP/1.1 connection drops its request).
    #[test]
    fn streams_still_running_end_with_their_connection() {
        let held = Arc::new(());
        let mut streams = Streams::default();
        let hold = held.clone();
        streams.executor().execute(async move {
            let _hold = hold;
            std::future::pending::<()>().await
        });
        let task = Arc::<WakeCount>::default();
        let waker = Waker::from(task);
        let first = streams.poll_with(&mut Context::from_waker(&waker), |_| Poll::<()>::Pending);
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
