//! Busy polling (`balancer run --busy-poll 200us`), off unless asked for.
//!
//! On a virtual machine, a core with nothing to run halts, and the hypervisor may give it to
//! another guest; the next packet for it then costs the core that sends it an exit to the
//! hypervisor (the wake-up interrupt) and waits until the halted core is running again. A
//! proxy whose core has time to spare halts between most events and pays that on each. With
//! busy polling, once the runtime wakes from an idle wait it keeps looking at its sockets (a
//! zero-timeout `epoll_wait` between passes) until a `window` has gone by with nothing to do,
//! and only then sleeps again. It spends the core's idle time, in full while traffic keeps
//! coming, to save those wake-ups; when traffic stops, the core sleeps after one `window`.
//! HAProxy's `busy-polling` does the same with no window.
//!
//! A spinning task, woken by the runtime's unpark hook, yields ([`tokio::task::yield_now`]):
//! a yielded task makes the scheduler poll its driver without blocking before it runs the task
//! again.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};
use tokio::{runtime::Builder, sync::Notify};

/// Between two polls of the spinning task, a gap longer than this means that other tasks ran
/// in it: there was work. A pass that only looks at the sockets is one system call that finds
/// nothing.
const WORK: Duration = Duration::from_micros(8);

pub struct BusyPoll {
    window: Duration,
    woken: Notify,
}

impl BusyPoll {
    /// Sets the runtime `builder` up to spin `window` after each wake-up; spawn [`Self::run`]
    /// once it is built.
    pub fn install(builder: &mut Builder, window: Duration) -> Arc<Self> {
        let busy_poll = Arc::new(Self {
            window,
            woken: Notify::new(),
        });
        let hook = busy_poll.clone();
        builder.on_thread_unpark(move || hook.woken.notify_one());
        busy_poll
    }

    /// How long a spin lasts with nothing to do.
    pub fn window(&self) -> Duration {
        self.window
    }

    /// Spins after each wake-up of the runtime, until the runtime shuts down.
    pub async fn run(self: Arc<Self>) {
        loop {
            self.woken.notified().await;
            self.spin().await;
        }
    }

    /// Yields until `window` has gone by with no other task run; the passes it made.
    async fn spin(&self) -> u64 {
        let mut passes = 0;
        let mut last = Instant::now();
        let mut idle_since = last;
        while last.duration_since(idle_since) < self.window {
            tokio::task::yield_now().await;
            passes += 1;
            let now = Instant::now();
            if now.duration_since(last) > WORK {
                idle_since = now;
            }
            last = now;
        }
        passes
    }
}

#[cfg(test)]
mod tests;
