//! The traffic generator: BPF_PROG_TEST_RUN in live-frames mode (BPF_F_TEST_XDP_LIVE_FRAMES)
//! of a tiny XDP program of our own that writes a TCP segment and returns XDP_TX, run with the
//! generator's veth end as its ingress interface. The kernel turns XDP_TX into a transmission
//! on that interface: the frames reach the peer (the node's veth end) as XDP frames, as from
//! a NIC, with no socket buffer on the sending side.
//!
//! Each run writes the whole frame (a recycled page may hold what the node did to it), then
//! random fields: the client address's low half (172.16.0.0/16), and for new flows the source
//! port too. The checksums stay valid without being recomputed: for each rewritten field, a
//! companion field (IPv4 identification, TCP sequence number halves) takes the value that
//! keeps the one's complement sums unchanged.
//!
//! Also here: the sink, an XDP program that drops, for the generator's end to receive what
//! the node sends back (a veth end takes XDP_TX frames only if it runs an XDP program).
//! Both are a few instructions assembled with [`super::bpf`].
use super::{
    bpf::{
        add_imm, add_reg, and_imm, call, exit, jump_if_greater, load_imm64, load_u32, mov_imm,
        mov_reg, rsh_imm, store, xor_imm, Insn, RawXdp,
    },
    topology::{join, spawn_in},
};
use anyhow::Context as _;
use balancer_tests::netns::Netns;
use std::{
    net::{IpAddr, Ipv4Addr},
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc,
    },
    thread::JoinHandle,
};

const XDP_DROP: i32 = 1;
const XDP_TX: i32 = 3;
/// `bpf_get_prandom_u32`.
const HELPER_PRANDOM: i32 = 7;

/// Offsets in the frame (Ethernet 14 + IPv4 20 + TCP 20, no options).
const IP_ID: i16 = 14 + 4;
const SADDR_LOW: i16 = 14 + 14;
const SPORT: i16 = 14 + 20;
const TCP_SEQ_HIGH: i16 = 14 + 20 + 4;
const TCP_SEQ_LOW: i16 = 14 + 20 + 6;

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

    /// (field, companion) pairs the program rewrites: the field from 16 random bits, the
    /// companion to keep the checksums. The first half of the random word goes to the client
    /// address, the second to the source port.
    fn rewrites(self) -> &'static [(i16, i16)] {
        match self {
            Shape::NewFlows => &[
                (SADDR_LOW, IP_ID),
                (SADDR_LOW, TCP_SEQ_LOW),
                (SPORT, TCP_SEQ_HIGH),
            ],
            Shape::Established => &[(SADDR_LOW, IP_ID), (SADDR_LOW, TCP_SEQ_LOW)],
        }
    }
}

/// One's complement addition of 16-bit words.
fn ones_add(a: u16, b: u16) -> u16 {
    let s = u32::from(a) + u32::from(b);
    ((s & 0xffff) + (s >> 16)) as u16
}

fn word(frame: &[u8], at: i16) -> u16 {
    u16::from_ne_bytes([frame[at as usize], frame[at as usize + 1]])
}

/// The generator program: write `frame` over the packet, the random fields, XDP_TX.
///
/// A field `f` and its companion `c` sum to `k = f0 + c0` (one's complement, the frame's
/// values): with `f = v`, `c = k + !v` keeps the sum, so every checksum covering both stays
/// valid. (The sum is the same in either byte order, so the words are taken as they lie.)
fn generator_insns(frame: &[u8], shape: Shape) -> Vec<Insn> {
    let mut p = vec![
        mov_reg(6, 1), // r6 = ctx
        call(HELPER_PRANDOM),
        mov_reg(7, 0),     // r7 = random
        load_u32(2, 6, 0), // r2 = data
        load_u32(3, 6, 4), // r3 = data_end
        mov_reg(4, 2),
        add_imm(4, frame.len() as i32),
    ];
    let bounds_check = p.len();
    p.push(exit()); // placeholder: `if r4 > r3 goto drop`
    let mut at = 0;
    for size in [8, 4, 2, 1] {
        while frame.len() - at >= size {
            let mut bytes = [0u8; 8];
            bytes[..size].copy_from_slice(&frame[at..at + size]);
            p.extend(load_imm64(5, u64::from_ne_bytes(bytes)));
            p.push(store(size, 2, 5, at as i16));
            at += size;
        }
    }
    for &(field, companion) in shape.rewrites() {
        let k = ones_add(word(frame, field), word(frame, companion));
        let shift = if field == SPORT { 16 } else { 0 };
        p.extend([
            mov_reg(8, 7),
            rsh_imm(8, shift),
            and_imm(8, 0xffff), // r8 = v
            store(2, 2, 8, field),
            xor_imm(8, 0xffff), // r8 = !v
            add_imm(8, i32::from(k)),
            mov_reg(9, 8),
            rsh_imm(9, 16),
            and_imm(8, 0xffff),
            add_reg(8, 9), // end-around carry: r8 = k + !v
            store(2, 2, 8, companion),
        ]);
    }
    p.extend([mov_imm(0, XDP_TX), exit()]);
    let drop = p.len();
    p.extend([mov_imm(0, XDP_DROP), exit()]);
    p[bounds_check] = jump_if_greater(4, 3, (drop - bounds_check - 1) as i16);
    p
}

/// The sink: XDP_DROP.
pub fn sink() -> anyhow::Result<RawXdp> {
    RawXdp::load("veth_sink", &[mov_imm(0, XDP_DROP), exit()])
}

/// Runs per test-run call: some 60 ms of frames. Each call also has a fixed cost of tens of
/// milliseconds in which it sends nothing and leaves the core idle (seen on Linux 6.18: calls
/// of 4,096 frames sent only 150,000 frames/s), so calls are long and two sending threads take
/// turns on the core: one sends while the other's call winds up.
const REPEAT: u32 = 1 << 18;
const SENDERS: usize = 2;

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
        let program = Arc::new(RawXdp::load("veth_gen", &generator_insns(&frame, shape))?);
        let frame = Arc::new(frame);
        let stop = Arc::new(AtomicBool::new(false));
        let sent = Arc::new(AtomicU64::new(0));
        let mut threads = Vec::new();
        for _ in 0..SENDERS {
            let (program, frame) = (program.clone(), frame.clone());
            let (stop, sent) = (stop.clone(), sent.clone());
            threads.push(spawn_in(ns, core, move || {
                while !stop.load(Ordering::Relaxed) {
                    program.run_live(&frame, ifindex, REPEAT)?;
                    sent.fetch_add(u64::from(REPEAT), Ordering::Relaxed);
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
    use balancer_tests::packets::{internet_checksum, ipv4_checksum_valid};

    /// What the generator program writes, done in Rust: the checksums must stay valid.
    #[test]
    fn rewritten_fields_keep_checksums_valid() {
        for shape in [Shape::NewFlows, Shape::Established] {
            let base = shape.frame([2; 6], [4; 6], Ipv4Addr::new(10, 200, 0, 10), 443);
            for random in [0u32, 1, 0x00ff_00ff, 0x1234_5678, 0xfffe_0001, u32::MAX] {
                let mut f = base.clone();
                for &(field, companion) in shape.rewrites() {
                    let k = ones_add(word(&base, field), word(&base, companion));
                    let v = if field == SPORT { random >> 16 } else { random } as u16;
                    f[field as usize..field as usize + 2].copy_from_slice(&v.to_ne_bytes());
                    let c = ones_add(k, !v);
                    f[companion as usize..companion as usize + 2].copy_from_slice(&c.to_ne_bytes());
                }
                let ip = &f[14..];
                assert!(
                    ipv4_checksum_valid(ip),
                    "{shape:?} IPv4 checksum, {random:#x}"
                );
                // TCP: pseudo-header (addresses, protocol, length) and segment sum to zero.
                let mut pseudo = ip[12..20].to_vec();
                pseudo.extend_from_slice(&[0, 6, 0, 20]);
                pseudo.extend_from_slice(&ip[20..]);
                assert_eq!(
                    internet_checksum(&pseudo),
                    0,
                    "{shape:?} TCP checksum, {random:#x}"
                );
                if shape == Shape::Established {
                    assert_eq!(f[30..34], base[30..34], "one source port");
                }
            }
        }
    }
}
