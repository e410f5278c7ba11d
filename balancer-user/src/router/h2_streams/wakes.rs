//! The wakers of an HTTP/2 connection and of its streams, which run in the connection's task
//! ([`super::Streams`]). A wake is noted for the part it is for (the connection, or the
//! streams), so that a poll of the task polls the parts woken only. While the task polls
//! them, a wake is taken up by another round of the same poll; between polls, it also wakes
//! the task. The notes and whether a poll runs are one atomic state, so that a wake from
//! another thread as a poll ends is never lost: it either finds the poll still running (and
//! [`Wakes::leave`] sees it) or finds it over (and wakes the task).

use futures_util::task::AtomicWaker;
use std::{
    sync::{
        atomic::{AtomicU8, Ordering},
        Arc,
    },
    task::{Wake, Waker},
};

/// The task polls the connection and its streams.
const POLLING: u8 = 1;
/// Woken since last asked: the connection, the streams.
const CONNECTION: u8 = 2;
const STREAMS: u8 = 4;

/// The parts woken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Woken(u8);

impl Woken {
    pub const CONNECTION: Self = Self(CONNECTION);
    pub const STREAMS: Self = Self(STREAMS);
    const ALL: Self = Self(CONNECTION | STREAMS);

    pub fn connection(self) -> bool {
        self.0 & CONNECTION != 0
    }

    pub fn streams(self) -> bool {
        self.0 & STREAMS != 0
    }

    pub fn any(self) -> bool {
        self.0 != 0
    }

    /// These parts and `other`'s.
    pub fn and(self, other: Self) -> Self {
        Self(self.0 | other.0)
    }

    /// These parts but `other`'s.
    pub fn but(self, other: Self) -> Self {
        Self(self.0 & !other.0)
    }
}

/// The two wakers and their shared state.
pub struct Wakes {
    shared: Arc<Shared>,
    connection: Waker,
    streams: Waker,
}

impl Default for Wakes {
    fn default() -> Self {
        let shared = Arc::new(Shared::default());
        let part = |part| {
            Waker::from(Arc::new(PartWaker {
                shared: shared.clone(),
                part,
            }))
        };
        Self {
            connection: part(CONNECTION),
            streams: part(STREAMS),
            shared,
        }
    }
}

impl Wakes {
    /// What the connection is polled with.
    pub fn connection(&self) -> &Waker {
        &self.connection
    }

    /// What the streams are polled with.
    pub fn streams(&self) -> &Waker {
        &self.streams
    }

    /// Begins a poll of the task whose waker is `task`: the parts woken since the last poll
    /// (both, before the first).
    pub fn enter(&self, task: &Waker) -> Woken {
        self.shared.task.register(task);
        Woken(self.shared.state.swap(POLLING, Ordering::SeqCst) & !POLLING)
    }

    /// The parts woken since the poll began or this was last asked.
    pub fn take(&self) -> Woken {
        Woken(self.shared.state.fetch_and(POLLING, Ordering::SeqCst) & !POLLING)
    }

    /// Notes `woken` again: wakes taken but not taken up, for the next round, or for the next
    /// poll once this one ends.
    pub fn keep(&self, woken: Woken) {
        self.shared.state.fetch_or(woken.0, Ordering::SeqCst);
    }

    /// Ends the poll: a wake noted and not taken up wakes the task (and stays noted).
    pub fn leave(&self, task: &Waker) {
        if self.shared.state.fetch_and(!POLLING, Ordering::SeqCst) & !POLLING != 0 {
            task.wake_by_ref();
        }
    }

    /// Ends a poll whose task will be polled again (the caller saw to it): the wakes noted
    /// stay for that poll, and wake nothing now.
    pub fn leave_for_next_poll(&self) {
        self.shared.state.fetch_and(!POLLING, Ordering::SeqCst);
    }
}

struct Shared {
    task: AtomicWaker,
    state: AtomicU8,
}

impl Default for Shared {
    fn default() -> Self {
        Self {
            task: AtomicWaker::new(),
            state: AtomicU8::new(Woken::ALL.0),
        }
    }
}

/// The waker of one part.
struct PartWaker {
    shared: Arc<Shared>,
    part: u8,
}

impl Wake for PartWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        let before = self.shared.state.fetch_or(self.part, Ordering::SeqCst);
        if before & POLLING == 0 {
            self.shared.task.wake();
        }
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    /// A task's waker: counts its wakes.
    #[derive(Default)]
    pub struct WakeCount(AtomicUsize);

    impl Wake for WakeCount {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    impl WakeCount {
        pub fn wakes(&self) -> usize {
            self.0.load(Ordering::SeqCst)
        }
    }

    /// A task's wake count, its waker, and the wakes of its connection.
    fn task() -> (Arc<WakeCount>, Waker, Wakes) {
        let count = Arc::<WakeCount>::default();
        (count.clone(), Waker::from(count), Wakes::default())
    }

    #[test]
    fn the_first_poll_polls_both_parts() {
        let (_, task, wakes) = task();
        assert_eq!(wakes.enter(&task), Woken::ALL);
    }

    #[test]
    fn a_wake_during_the_poll_is_noted_for_its_part_and_not_passed_on() {
        let (count, task, wakes) = task();
        wakes.enter(&task);
        wakes.streams().wake_by_ref();
        assert_eq!(wakes.take(), Woken(STREAMS));
        assert_eq!(wakes.take(), Woken(0), "taken once");
        wakes.connection().wake_by_ref();
        wakes.streams().wake_by_ref();
        assert_eq!(wakes.take(), Woken::ALL);
        wakes.leave(&task);
        assert_eq!(count.wakes(), 0);
    }

    #[test]
    fn a_wake_not_taken_up_before_the_poll_ends_wakes_the_task_for_its_part() {
        let (count, task, wakes) = task();
        wakes.enter(&task);
        wakes.connection().wake_by_ref();
        wakes.leave(&task);
        assert_eq!(count.wakes(), 1);
        assert_eq!(wakes.enter(&task), Woken(CONNECTION));
    }

    #[test]
    fn wakes_kept_for_the_next_poll_are_its_own() {
        let (count, task, wakes) = task();
        let woken = wakes.enter(&task);
        wakes.keep(woken);
        wakes.leave_for_next_poll();
        assert_eq!(count.wakes(), 0, "the caller has the task polled again");
        assert_eq!(wakes.enter(&task), Woken::ALL);
        wakes.leave(&task);
        wakes.connection().wake_by_ref();
        assert_eq!(
            count.wakes(),
            1,
            "a wake between polls still wakes the task"
        );
    }

    #[test]
    fn between_polls_a_wake_wakes_the_task_for_its_part() {
        let (count, task, wakes) = task();
        wakes.enter(&task);
        wakes.leave(&task);
        assert_eq!(wakes.enter(&task), Woken(0), "nothing woke it since");
        wakes.leave(&task);
        wakes.streams().wake_by_ref();
        assert_eq!(count.wakes(), 1);
        assert_eq!(wakes.enter(&task), Woken(STREAMS));
        assert_eq!(
            wakes.take(),
            Woken(0),
            "the next round starts from nothing noted"
        );
    }
}
