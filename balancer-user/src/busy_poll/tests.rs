use super::*;
use std::sync::atomic::{AtomicU32, Ordering};

fn runtime(window: Option<Duration>) -> (tokio::runtime::Runtime, Option<Arc<BusyPoll>>) {
    let mut builder = tokio::runtime::Builder::new_current_thread();
    let busy_poll = window.map(|window| BusyPoll::install(&mut builder, window));
    let runtime = builder.enable_all().build().unwrap();
    if let Some(busy_poll) = &busy_poll {
        runtime.spawn(busy_poll.clone().run());
    }
    (runtime, busy_poll)
}

/// How many times the runtime blocked in its driver (slept) while `f` ran.
async fn parks_during(f: impl std::future::Future<Output = ()>) -> u64 {
    let metrics = tokio::runtime::Handle::current().metrics();
    let before = metrics.worker_park_count(0);
    f.await;
    metrics.worker_park_count(0) - before
}

#[test]
fn the_spin_lasts_while_other_tasks_work_and_ends_a_window_after() {
    let (runtime, _) = runtime(None);
    runtime.block_on(async {
        let done = Arc::new(AtomicU32::new(0));
        let worker = done.clone();
        // 50 passes of 200 µs of work: 10 ms of it, five times the window.
        tokio::spawn(async move {
            for _ in 0..50 {
                let start = Instant::now();
                while start.elapsed() < Duration::from_micros(200) {
                    std::hint::spin_loop();
                }
                worker.fetch_add(1, Ordering::Relaxed);
                tokio::task::yield_now().await;
            }
        });
        let busy_poll = BusyPoll {
            window: Duration::from_millis(2),
            woken: Notify::new(),
        };
        let passes = busy_poll.spin().await;
        assert_eq!(
            done.load(Ordering::Relaxed),
            50,
            "stopped while work went on"
        );
        assert!(passes > 50, "{passes} passes");
    });
}

#[test]
fn after_a_wake_up_the_runtime_polls_instead_of_sleeping() {
    // A window far longer than the test: once woken, the runtime never sleeps again.
    let (runtime, _) = runtime(Some(Duration::from_secs(3600)));
    runtime.block_on(async {
        // The first sleep wakes the runtime from a park; from then on it spins.
        tokio::time::sleep(Duration::from_millis(1)).await;
        let parks = parks_during(tokio::time::sleep(Duration::from_millis(20))).await;
        assert_eq!(parks, 0);
    });
}

#[test]
fn a_window_with_nothing_to_do_and_the_runtime_sleeps_again() {
    for window in [None, Some(Duration::from_millis(1))] {
        let (runtime, _) = runtime(window);
        runtime.block_on(async {
            tokio::time::sleep(Duration::from_millis(1)).await;
            let parks = parks_during(tokio::time::sleep(Duration::from_millis(50))).await;
            assert!(parks > 0, "{window:?}: never slept");
        });
    }
}
