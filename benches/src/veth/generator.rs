//! The traffic generator: BPF_PROG_TEST_RUN in live-frames mode (BPF_F_TEST_XDP_LIVE_FRAMES)
//! of `bench_generator`, a tiny XDP program of our own that writes a TCP segment and returns
//! XDP_TX, run with the generator's veth end as its ingress interface. The kernel turns XDP_TX
//! into a transmission on that interface: the frames reach the peer (the node's veth end) as
//! XDP frames, as from a NIC, with no socket buffer on the sending side.
//!
//! Each run writes the whole frame (a recycled page may hold what the node did to it), then
//! random fields: the client address's low half (172.16.0.0/16), and for new flows the source
//! port too. The checksums stay valid without being recomputed: for each rewritten field, a
//! companion field (IPv4 identification, TCP sequence number halves) takes the value that
//! keeps the one's complement sums unchanged (see `balancer_common::bench_traffic`). This
//! module computes that plan ([`Shape::plan`]) and writes it into the program's map.
//!
//! Also here: the sink ([`Sink`], `bench_sink`), an XDP program that drops, for the
//! generator's end to receive what the node sends back (a veth end takes XDP_TX frames only
//! if it runs an XDP program). Both programs are in the eBPF package's `bench-traffic` object,
//! loaded with aya.
use crate::threads::{join, spawn_in};
use anyhow::{ensure, Context as _};
use aya::{
    maps::Array,
    programs::{ProgramError, TestRun, TestRunAttrs, TestRunOptions, Xdp, XdpMode},
    sys::SyscallError,
    Ebpf,
};
use balancer_common::bench_traffic::{
    ones_complement_add, Rewrite, TrafficPlan, FRAME_LEN, GENERATOR_PROGRAM, MAX_REWRITES,
    SINK_PROGRAM, TRAFFIC_PLAN,
};
use balancer_tests::{
    netns::Netns,
    packets::{internet_checksum, ipv4_checksum_valid},
};
use balancer_user::dataplane::BENCH_TRAFFIC_OBJECT;
use std::{
    io::ErrorKind,
    net::{IpAddr, Ipv4Addr},
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc,
    },
    thread::JoinHandle,
};

const XDP_TX: u32 = 3;

/// Offsets in the frame (Ethernet 14 + IPv4 20 + TCP 20, no options).
const IP_ID: u8 = 14 + 4;
const SADDR_LOW: u8 = 14 + 14;
const SPORT: u8 = 14 + 20;
const TCP_SEQ_HIGH: u8 = 14 + 20 + 4;
const TCP_SEQ_LOW: u8 = 14 + 20 + 6;

/// Halves of the run's random word (right shifts): the low one goes to the client address,
/// the high one to the source port.
const LOW_HALF: u8 = 0;
const HIGH_HALF: u8 = 16;

/// The client network: the generator picks the low 16 bits at random.
pub const CLIENTS: Ipv4Addr = Ipv4Addr::new(172, 16, 0, 0);

/// What the generator sends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shape {
    /// SYNs, each of a new flow: random client address (65,536) and source port (65,536).
    NewFlows,
    /// ACKs (no payload) of 65,536 flows, one per client address: after the first packets,
    /// flows the steerer knows.
    Established,
}

impl Shape {
    /// The frame every run starts from, before the random fields.
    pub fn frame(self, src_mac: [u8; 6], dst_mac: [u8; 6], vip: Ipv4Addr, port: u16) -> Vec<u8> {
        use balancer_tests::packets::{ethernet, Tcp};
        let tcp = Tcp::new(IpAddr::V4(CLIENTS), 40000, IpAddr::V4(vip), port);
        let tcp = match self {
            Shape::NewFlows => tcp.syn(),
            Shape::Established => tcp.payload(Vec::new()),
        };
        ethernet(src_mac, dst_mac, &[], &tcp.packet())
    }

    /// (field, companion, half of the random word) the program rewrites: the field from 16
    /// random bits, the companion to keep the checksums.
    fn rewrites(self) -> &'static [(u8, u8, u8)] {
        match self {
            Shape::NewFlows => &[
                (SADDR_LOW, IP_ID, LOW_HALF),
                (SADDR_LOW, TCP_SEQ_LOW, LOW_HALF),
                (SPORT, TCP_SEQ_HIGH, HIGH_HALF),
            ],
            Shape::Established => &[
                (SADDR_LOW, IP_ID, LOW_HALF),
                (SADDR_LOW, TCP_SEQ_LOW, LOW_HALF),
            ],
        }
    }

    /// What the generator program writes: `frame`, then the rewrites, each companion's sum
    /// taken from `frame`.
    fn plan(self, frame: &[u8]) -> anyhow::Result<TrafficPlan> {
        let frame: [u8; FRAME_LEN] = frame.try_into().with_context(|| {
            format!(
                "the generator writes frames of {FRAME_LEN} bytes, not {}",
                frame.len()
            )
        })?;
        let mut rewrites = [Rewrite::default(); MAX_REWRITES];
        for (slot, &(field, companion, random_shift)) in rewrites.iter_mut().zip(self.rewrites()) {
            *slot = Rewrite {
                field_offset: field,
                companion_offset: companion,
                sum: ones_complement_add(word(&frame, field), word(&frame, companion)),
                random_shift,
                _pad: 0,
            };
        }
        Ok(TrafficPlan {
            frame,
            _pad0: [0; 2],
            rewrites,
            rewrite_count: self.rewrites().len() as u32,
            _pad1: 0,
        })
    }
}

/// The 16-bit word at `at`, as it lies in memory (the sums do not depend on byte order).
fn word(frame: &[u8], at: u8) -> u16 {
    let at = usize::from(at);
    u16::from_ne_bytes([frame[at], frame[at + 1]])
}

/// Whether the IPv4 header's and the TCP segment's checksums of `frame` (Ethernet, IPv4
/// without options, TCP without payload) are valid.
fn checksums_valid(frame: &[u8]) -> bool {
    let ip = &frame[14..];
    // TCP: pseudo-header (addresses, protocol, length) and segment sum to zero.
    let mut pseudo = ip[12..20].to_vec();
    pseudo.extend_from_slice(&[0, 6, 0, 20]);
    pseudo.extend_from_slice(&ip[20..]);
    ipv4_checksum_valid(ip) && internet_checksum(&pseudo) == 0
}

/// The `bench-traffic` object, with `program` loaded (verified).
fn load(program: &str) -> anyhow::Result<Ebpf> {
    let mut object =
        Ebpf::load(BENCH_TRAFFIC_OBJECT).context("loading the bench-traffic eBPF object")?;
    xdp_mut(&mut object, program)?
        .load()
        .with_context(|| format!("loading the {program} XDP program"))?;
    Ok(object)
}

fn xdp_mut<'a>(object: &'a mut Ebpf, name: &str) -> anyhow::Result<&'a mut Xdp> {
    let program = object
        .program_mut(name)
        .with_context(|| format!("no {name} program in the bench-traffic object"))?;
    Ok(program.try_into()?)
}

fn xdp<'a>(object: &'a Ebpf, name: &str) -> anyhow::Result<&'a Xdp> {
    let program = object
        .program(name)
        .with_context(|| format!("no {name} program in the bench-traffic object"))?;
    Ok(program.try_into()?)
}

/// The sink (XDP_DROP) on an interface, attached in native mode while this lives.
pub struct Sink {
    _object: Ebpf,
}

impl Sink {
    /// Attaches the sink to `interface` of `ns`, from inside `ns` (where the name resolves).
    pub fn attach(ns: &Netns, interface: &str) -> anyhow::Result<Self> {
        let mut object = load(SINK_PROGRAM)?;
        ns.run_in(|| {
            xdp_mut(&mut object, SINK_PROGRAM)?
                .attach(interface, XdpMode::Driver)
                .with_context(|| format!("attaching the sink to {interface} (native mode)"))
        })??;
        Ok(Self { _object: object })
    }
}

/// Runs the generator once on a frame of zeros, without live frames (the output comes back),
/// and checks that it wrote the planned frame, random fields aside, with valid checksums: a
/// wrong plan fails here, loudly, not as frames the node silently drops.
fn check_one_run(program: &Xdp, plan: &TrafficPlan) -> anyhow::Result<()> {
    let input = [0u8; FRAME_LEN];
    let mut output = [0u8; FRAME_LEN];
    let run = program
        .test_run(TestRunOptions {
            data_in: Some(&input),
            data_out: Some(&mut output),
            ..TestRunOptions::new()
        })
        .context("BPF_PROG_TEST_RUN of the generator")?;
    ensure!(
        run.return_value == XDP_TX,
        "the generator returned {} instead of XDP_TX: the harness is broken",
        run.return_value
    );
    let mut random = [false; FRAME_LEN];
    for r in &plan.rewrites[..plan.rewrite_count as usize] {
        for at in [r.field_offset, r.companion_offset] {
            random[usize::from(at)..usize::from(at) + 2].fill(true);
        }
    }
    let as_planned = (0..FRAME_LEN).all(|i| random[i] || output[i] == plan.frame[i]);
    ensure!(
        as_planned && checksums_valid(&output),
        "the generator wrote a frame other than planned, or with bad checksums: the harness \
         is broken\n  planned {:02x?}\n  written {output:02x?}",
        plan.frame
    );
    Ok(())
}

/// Runs per test-run call: some 60 ms of frames. Each call also has a fixed cost of tens of
/// milliseconds in which it sends nothing and leaves the core idle (seen on Linux 6.18: calls
/// of 4,096 frames sent only 150,000 frames/s), so calls are long and two sending threads take
/// turns on the core: one sends while the other's call winds up.
const REPEAT: u32 = 1 << 18;
const SENDERS: usize = 2;
/// Frames per batch of a live-frames run: the largest the kernel takes.
const BATCH: u32 = 256;

/// The generator running in the background: [`SENDERS`] threads in the generator namespace,
/// pinned to one core, until dropped.
pub struct Generator {
    stop: Arc<AtomicBool>,
    sent: Arc<AtomicU64>,
    threads: Vec<JoinHandle<anyhow::Result<()>>>,
}

impl Generator {
    /// Starts sending `shape` out of `interface` of `ns`, from `core` if given.
    pub fn start(
        ns: &Netns,
        interface: &str,
        core: Option<usize>,
        shape: Shape,
        frame: Vec<u8>,
    ) -> anyhow::Result<Self> {
        let ifindex = ns.ifindex(interface)?;
        let plan = shape.plan(&frame)?;
        let mut object = load(GENERATOR_PROGRAM)?;
        let map = object
            .map_mut(TRAFFIC_PLAN)
            .with_context(|| format!("no {TRAFFIC_PLAN} map in the bench-traffic object"))?;
        Array::<_, TrafficPlan>::try_from(map)?
            .set(0, plan, 0)
            .context("writing the generator's plan")?;
        check_one_run(xdp(&object, GENERATOR_PROGRAM)?, &plan)?;
        let object = Arc::new(object);
        let frame = Arc::new(frame);
        let stop = Arc::new(AtomicBool::new(false));
        let sent = Arc::new(AtomicU64::new(0));
        let mut threads = Vec::new();
        for _ in 0..SENDERS {
            let (object, frame) = (object.clone(), frame.clone());
            let (stop, sent) = (stop.clone(), sent.clone());
            threads.push(spawn_in(ns, core, move || {
                let program = xdp(&object, GENERATOR_PROGRAM)?;
                // As if received on `interface`: XDP_TX sends out of it.
                let ctx = balancer_tests::fixture::xdp_md(ifindex, frame.len());
                while !stop.load(Ordering::Relaxed) {
                    let run = program.test_run(TestRunOptions {
                        data_in: Some(&frame),
                        ctx_in: Some(&ctx),
                        repeat: REPEAT,
                        attrs: TestRunAttrs::new().xdp_live_frames(BATCH),
                        ..TestRunOptions::new()
                    });
                    match run {
                        Ok(_) => {
                            sent.fetch_add(u64::from(REPEAT), Ordering::Relaxed);
                        }
                        // A signal cut the call short (the kernel looks between batches): what
                        // it sent is on the link counters, which the figures come from.
                        Err(ProgramError::SyscallError(SyscallError { io_error, .. }))
                            if io_error.kind() == ErrorKind::Interrupted => {}
                        Err(e) => return Err(e).context("BPF_PROG_TEST_RUN in live-frames mode"),
                    }
                }
                Ok(())
            })?);
        }
        Ok(Self {
            stop,
            sent,
            threads,
        })
    }

    /// Frames produced so far (counted per call: a call's worth of precision).
    pub fn sent(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }

    /// Stops the senders; fails if one failed.
    pub fn stop(mut self) -> anyhow::Result<()> {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            join(t).context("the generator")?;
        }
        Ok(())
    }
}

impl Drop for Generator {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the generator program does with its plan, done in Rust with the same functions
    /// (`Rewrite::value`, `Rewrite::companion`): the checksums must stay valid.
    #[test]
    fn rewritten_fields_keep_checksums_valid() {
        for shape in [Shape::NewFlows, Shape::Established] {
            let base = shape.frame([2; 6], [4; 6], Ipv4Addr::new(10, 200, 0, 10), 443);
            let plan = shape.plan(&base).unwrap();
            assert!(checksums_valid(&plan.frame), "{shape:?} template");
            for random in [0u32, 1, 0x00ff_00ff, 0x1234_5678, 0xfffe_0001, u32::MAX] {
                let mut f = plan.frame;
                for r in &plan.rewrites[..plan.rewrite_count as usize] {
                    let value = r.value(random);
                    for (at, v) in [
                        (r.field_offset, value),
                        (r.companion_offset, r.companion(value)),
                    ] {
                        let at = usize::from(at);
                        f[at..at + 2].copy_from_slice(&v.to_ne_bytes());
                    }
                }
                assert!(checksums_valid(&f), "{shape:?}, {random:#x}");
                assert_eq!(f[26..28], base[26..28], "{shape:?}: the client's /16 stays");
                assert_eq!(
                    u16::from_ne_bytes([f[28], f[29]]),
                    random as u16,
                    "{shape:?}: the client address's low half"
                );
                if shape == Shape::Established {
                    assert_eq!(f[34..36], base[34..36], "one source port");
                }
            }
        }
    }

    /// The program writes 16-bit words inside the frame, at even offsets.
    #[test]
    fn rewrites_lie_inside_the_frame() {
        for shape in [Shape::NewFlows, Shape::Established] {
            assert!(shape.rewrites().len() <= MAX_REWRITES);
            for &(field, companion, shift) in shape.rewrites() {
                for at in [field, companion] {
                    assert!(at % 2 == 0 && usize::from(at) + 2 <= FRAME_LEN, "{at}");
                }
                assert!(shift == LOW_HALF || shift == HIGH_HALF);
            }
        }
    }
}
