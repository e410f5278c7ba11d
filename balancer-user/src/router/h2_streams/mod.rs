//! The streams of an HTTP/2 connection, run in the connection's own task. hyper hands each new
//! stream to its executor; given [`StreamExecutor`], the stream is kept with its connection
//! ([`Streams`]) instead of spawned as a task of its own, and polled beside the connection:
//! - no task is made (and scheduled, and woken) per request;
//! - an answer is framed by the connection in the task's poll that produced it (or, while other
//!   streams run, its next: see below), rather than after the tasks queued before the
//!   connection's, as HAProxy's multiplexer and nginx's event loop do it.
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
//!
//! Answers from upstream that wake the task while other streams of the connection run are
//! written one pass of the scheduler later (tokio's `yield_now`): once the runtime has run the
//! other tasks ready and looked at its sockets again, so that the answers that came back
//! meanwhile go out in the same write, and the client reads and decrypts fewer TLS records.
//! With h2load's 10 streams a connection, the router made 0.16 to 0.24 writes to the client a
//! request rather than 0.25 to 0.32, and h2load 0.36 to 0.50 reads rather than 0.58 to 0.71. An
//! answer on a connection with one stream running is written in the poll it wakes.

mod wakes;

use futures_util::{stream::FuturesUnordered, StreamExt as _};
use std::{
    future::Future,
    pin::{pin, Pin},
    sync::{Arc, Mutex},
    task::{Context, Poll},
};
use wakes::{Wakes, Woken};

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

    /// Polls the streams woken, then the connection (`poll_connection`) if it was woken, by
    /// them or otherwise; then again while either was woken meanwhile. (A stream that gives
    /// the connection something to do, a frame to send or its end to see, wakes it: `h2`
    /// does; so does what the connection waits for, its socket or its timers.) The streams
    /// the connection starts are polled in the next round.
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
        // Woken for its streams only, several running: answers from upstream, and others may
        // come back before the runtime comes back to this task.
        let answers_of_several = !woken.connection() && running.len() > 1;
        let mut rounds = 0;
        let polled = loop {
            if woken.streams() {
                let mut streams = Context::from_waker(wakes.streams());
                while let Poll::Ready(Some(())) = running.poll_next_unpin(&mut streams) {}
                woken = woken.but(Woken::STREAMS).and(wakes.take());
            }
            if woken.connection() {
                if rounds == 0 && answers_of_several {
                    wakes.keep(woken);
                    poll_after_the_driver(cx);
                    wakes.leave_for_next_poll();
                    return Poll::Pending;
                }
                let mut connection = Context::from_waker(wakes.connection());
                if let Poll::Ready(ended) = poll_connection(&mut connection) {
                    break Poll::Ready(ended);
                }
                woken = woken.but(Woken::CONNECTION);
                // The streams it started (only a poll of the connection starts any).
                let mut started = new.0.lock().expect("not poisoned");
                if !started.is_empty() {
                    running.extend(started.drain(..));
                    woken = woken.and(Woken::STREAMS);
                }
            }
            rounds += 1;
            if rounds == MAX_ROUNDS {
                // Yields: the wakes noted since are left to `leave`, which has the task polled
                // again, after the others queued on the thread.
                wakes.keep(woken);
                break Poll::Pending;
            }
            woken = woken.and(wakes.take());
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

/// Has the task whose context is `cx` polled again once the runtime has run the other tasks
/// ready and looked at its sockets and timers (or at once, outside a runtime).
fn poll_after_the_driver(cx: &mut Context<'_>) {
    let yielded = pin!(tokio::task::yield_now()).poll(cx);
    debug_assert!(yielded.is_pending(), "a first poll of yield_now yields");
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::rt::Executor as _;
    use std::{
        sync::atomic::{AtomicBool, AtomicUsize, Ordering},
        task::Waker,
    };
    use tokio::sync::oneshot;
    use wakes::tests::WakeCount;

    type PollConnection = Box<dyn FnMut(&mut Context<'_>) -> Poll<()>>;

    /// A stand-in for hyper's connection and its streams: on its first poll it starts its
    /// streams, each of which awaits its future then ends, waking the connection (as `h2` does
    /// when a stream lets go of its end); the connection ends once all of them have.
    struct Connection {
        streams: Streams,
        poll: PollConnection,
        /// How many times the connection was polled.
        polls: Arc<AtomicUsize>,
        /// How many of its streams ended.
        ended: Arc<AtomicUsize>,
    }

    impl Connection {
        fn new(first: impl Future<Output = ()> + Send + 'static) -> Self {
            Self::with_streams(vec![Box::pin(first)])
        }

        fn with_streams(waits: Vec<StreamFuture>) -> Self {
            let streams = Streams::default();
            let (polls, ended) = (Arc::<AtomicUsize>::default(), Arc::<AtomicUsize>::default());
            let polled_with = Arc::new(Mutex::new(None::<Waker>));
            let count = waits.len();
            let mut to_start: Vec<_> = waits
                .into_iter()
                .map(|wait| {
                    let (ended, connection) = (ended.clone(), polled_with.clone());
                    async move {
                        wait.await;
                        ended.fetch_add(1, Ordering::SeqCst);
                        if let Some(waker) = connection.lock().expect("not poisoned").take() {
                            waker.wake();
                        }
                    }
                })
                .collect();
            let (executor, counted, seen) = (streams.executor(), polls.clone(), ended.clone());
            let poll = move |cx: &mut Context<'_>| {
                counted.fetch_add(1, Ordering::SeqCst);
                *polled_with.lock().expect("not poisoned") = Some(cx.waker().clone());
                to_start
                    .drain(..)
                    .for_each(|stream| executor.execute(stream));
                match seen.load(Ordering::SeqCst) == count {
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
        let (tx, rx) = oneshot::channel::<()>();
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
        assert_eq!(connection.ended.load(Ordering::SeqCst), 1);
    }

    /// Two streams waiting for upstream, and the connection's poll when one answers.
    fn two_streams_one_answered(task: &Arc<WakeCount>) -> (Connection, oneshot::Sender<()>) {
        let (first_tx, first) = oneshot::channel::<()>();
        let (second_tx, second) = oneshot::channel::<()>();
        let waits: Vec<StreamFuture> = vec![
            Box::pin(async {
                let _ = first.await;
            }),
            Box::pin(async {
                let _ = second.await;
            }),
        ];
        let mut connection = Connection::with_streams(waits);
        assert!(connection.poll(task).is_pending());
        assert_eq!(connection.polls(), 1);
        first_tx.send(()).expect("the stream is waiting");
        assert_eq!(task.wakes(), 1, "the answer wakes the task");
        (connection, second_tx)
    }

    #[test]
    fn an_answer_is_written_a_pass_later_while_other_streams_run() {
        let task = Arc::default();
        let (mut connection, second) = two_streams_one_answered(&task);
        assert!(connection.poll(&task).is_pending());
        assert_eq!(
            connection.polls(),
            1,
            "the connection, woken by the answer, is not polled in the answer's poll"
        );
        assert_eq!(
            task.wakes(),
            2,
            "the task is polled again (outside a runtime, woken at once)"
        );
        second.send(()).expect("the other stream is waiting");
        assert!(
            connection.poll(&task).is_ready(),
            "the next poll takes both answers, then the connection sees both streams end"
        );
        assert_eq!(
            connection.polls(),
            2,
            "both answers in one poll of the connection"
        );
    }

    /// In a runtime, the task is polled again (tokio's `yield_now`): after the tasks ready,
    /// with no other wake.
    #[tokio::test(flavor = "current_thread")]
    async fn in_a_runtime_the_deferred_poll_comes_after_the_tasks_ready() {
        let task = Arc::default();
        let (mut connection, _second) = two_streams_one_answered(&task);
        let ran = Arc::new(AtomicBool::new(false));
        let other = ran.clone();
        tokio::spawn(async move { other.store(true, Ordering::SeqCst) });
        let deferred = std::future::poll_fn(|cx| {
            let _ = connection.streams.poll_with(cx, &mut connection.poll);
            match connection.polls() {
                1 => Poll::Pending,
                _ => Poll::Ready(ran.load(Ordering::SeqCst)),
            }
        });
        let ran_first = tokio::select! {
            biased;
            // Ahead of the poll: its wake would poll the connection as well.
            () = tokio::time::sleep(std::time::Duration::from_secs(10)) => {
                panic!("the connection was not polled again with nothing else waking the task")
            }
            ran_first = deferred => ran_first,
        };
        assert!(ran_first, "the task ready before the deferral ran first");
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
