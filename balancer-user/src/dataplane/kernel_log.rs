//! The XDP program's log records (aya-log: rare events such as a peer that cannot be
//! forwarded to, at most one per kind per CPU per second) read from its ring buffer and
//! emitted through the `log` facade, which the `balancer` command's tracing subscriber
//! receives (`RUST_LOG=balancer_ebpf=warn` selects them).

use super::Loaded;
use anyhow::Context as _;
use aya_log::EbpfLogger;
use tokio::io::{unix::AsyncFd, Interest};

/// Forwards the program's records until the returned task is aborted or the runtime stops.
pub fn forward(loaded: &mut Loaded) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let logger = EbpfLogger::init(&mut loaded.ebpf).context("the XDP program's log buffer")?;
    forward_from(logger)
}

#[allow(unsafe_code)]
fn forward_from<T: log::Log + Send + 'static>(
    logger: EbpfLogger<T>,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    // SAFETY: the logger owns its ring buffer map and with it the descriptor `as_raw_fd`
    // returns, always the same one, open until the logger (owned by the AsyncFd) drops.
    let mut ready = unsafe { AsyncFd::register_with_interest(logger, Interest::READABLE) }
        .map_err(|e| e.into_parts().1)?;
    Ok(tokio::spawn(async move {
        loop {
            let Ok(mut guard) = ready.readable_mut().await else {
                return;
            };
            guard.get_inner_mut().flush();
            guard.clear_ready();
        }
    }))
}

/// The records the program has written so far, formatted (`LEVEL target: message`); for
/// tests, which read them once after running packets through the program.
pub fn drain(loaded: &mut Loaded) -> anyhow::Result<Vec<String>> {
    let records = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let mut logger = EbpfLogger::init_with_logger(&mut loaded.ebpf, Collect(records.clone()))
        .context("the XDP program's log buffer")?;
    logger.flush();
    let records = records.lock().expect("not poisoned").clone();
    Ok(records)
}

/// A `log::Log` that keeps formatted records.
struct Collect(std::sync::Arc<std::sync::Mutex<Vec<String>>>);

impl log::Log for Collect {
    fn enabled(&self, _: &log::Metadata) -> bool {
        true
    }

    fn log(&self, record: &log::Record) {
        let line = format!("{} {}: {}", record.level(), record.target(), record.args());
        self.0.lock().expect("not poisoned").push(line);
    }

    fn flush(&self) {}
}
