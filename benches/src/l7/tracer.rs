//! `perf record`, started so that the caller knows when it records. perf attaches to the
//! processes it traces after it has started, in a time that grows with the events asked for
//! and how busy the box is; a load started before that goes partly untraced (the dwell time
//! then misses the connections accepted meanwhile). perf's control channel (`--control`)
//! answers a `ping` once its events are on, so the load starts after that answer.

use anyhow::{bail, Context as _};
use nix::{
    poll::{PollFd, PollFlags, PollTimeout},
    sys::stat::Mode,
};
use std::{
    fs::OpenOptions,
    io::{Read as _, Write as _},
    os::fd::AsFd as _,
    path::Path,
    process::{Child, Command, Stdio},
};

/// How long perf is given to answer, in milliseconds.
const ANSWER_WITHIN_MS: u16 = 30_000;

/// Starts `record` (a `perf record` command, to which the control channel is added, in
/// `dir`) and returns once it records.
pub fn start(record: &mut Command, dir: &Path) -> anyhow::Result<Child> {
    let (ctl_path, ack_path) = (dir.join("perf-ctl.fifo"), dir.join("perf-ack.fifo"));
    for path in [&ctl_path, &ack_path] {
        let _ = std::fs::remove_file(path);
        nix::unistd::mkfifo(path, Mode::S_IRUSR | Mode::S_IWUSR)
            .with_context(|| format!("making the FIFO {}", path.display()))?;
    }
    // Opened for reading and writing, a FIFO's open does not wait for perf to open its end.
    let open = |path: &Path| OpenOptions::new().read(true).write(true).open(path);
    let (mut ctl, mut ack) = (open(&ctl_path)?, open(&ack_path)?);
    record.arg(format!(
        "--control=fifo:{},{}",
        ctl_path.display(),
        ack_path.display()
    ));
    crate::provenance::command(record);
    let mut tracer = record
        .stdout(Stdio::null())
        .spawn()
        .context("starting perf record (Debian package linux-perf)")?;
    ctl.write_all(b"ping\n")?;
    let mut ready = [PollFd::new(ack.as_fd(), PollFlags::POLLIN)];
    let answered = nix::poll::poll(&mut ready, PollTimeout::from(ANSWER_WITHIN_MS))?;
    let mut answer = [0; 4];
    if answered == 0 || ack.read_exact(&mut answer).is_err() || &answer != b"ack\n" {
        let _ = tracer.kill();
        let ended = tracer.wait()?;
        bail!(
            "perf record did not answer its control channel within {ANSWER_WITHIN_MS} ms ({ended})"
        );
    }
    for path in [&ctl_path, &ack_path] {
        let _ = std::fs::remove_file(path);
    }
    Ok(tracer)
}
