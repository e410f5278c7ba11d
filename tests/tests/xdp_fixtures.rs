//! BPF_PROG_TEST_RUN packet fixtures for the steering XDP program (`balancer_xdp`), in the
//! manner of Katran's: each case is a description, an input frame, the XDP action expected and
//! the output frame expected (or "unchanged"). Rules of MISSION.md: R1 (one array per site),
//! R2 (IP affinity on 80/443), R3 (a ring change breaks no established connection), R4 (what
//! is not for a VIP and port passes untouched), R16 (POP3/IMAP4 are not steered).
//!
//! Every test runs in a fresh network namespace holding a veth pair fx0/fx1. fx0 is this node
//! (node 1): MAC 02:00:00:00:00:01, underlay 10.0.0.1/24 and fd00::1/64, with permanent
//! neighbour entries for the peers' underlay addresses (node n at 10.0.0.n / fd00::n, MAC
//! 02:00:00:00:00:0n), so `bpf_fib_lookup` gives fixed MACs. Each run passes an `xdp_md` whose
//! ingress ifindex is fx0, so the program's route lookup and its XDP_TX decision use fx0.
//!
//! Besides each case's own expectation, every case's input is also run at every shorter
//! length: the program must then answer XDP_PASS (with the bytes unchanged) or XDP_DROP, never
//! TX, REDIRECT or ABORTED, and must drop a truncated packet whose IP header is complete and
//! whose destination is a VIP address.

use anyhow::{bail, ensure, Context as _};
use aya::programs::{ProgramError, TestRun, TestRunOptions, Xdp};
use balancer_common::{
    encap::{V4_ID_SECOND_CHANCE, V6_FLOW_HASH_MASK, V6_FLOW_SECOND_CHANCE},
    hash::{affinity_hash, FlowTuple},
    maps::{PROGRAM, UNATTRIBUTED_STATS_INDEX},
    node::{active_slot, ring_select, NODE_FLAG_CONFIGURED, NODE_FLAG_HEALTHY},
    stats::Counters,
    vip::{v4_mapped, AFFINITY_SINGLE, PROTO_TCP},
};
use balancer_tests::{
    client::connect_from,
    fixture::{
        self, fixture_netns, node_mac, underlay_v4, underlay_v6, CONFIG, HASH_SEED, RING_SIZE,
        SELF, SELF_MAC, VIP_V4, VIP_V6,
    },
    netns::Netns,
    packets::{self, Tag, Tcp},
};
use balancer_user::{
    config::Config,
    dataplane::{load, sync, LoadOptions, Loaded},
};
use etherparse::{
    icmpv4::TimeExceededCode, icmpv6::DestUnreachableCode, EtherType, Icmpv4Type, Icmpv6Type,
    IpNumber,
};
use std::{
    collections::HashMap,
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
};

const XDP_ABORTED: u32 = 0;
const XDP_DROP: u32 = 1;
const XDP_PASS: u32 = 2;
const XDP_TX: u32 = 3;
const XDP_REDIRECT: u32 = 4;

/// The upstream router that hands VIP traffic to this node.
const ROUTER_MAC: [u8; 6] = fixture::PEER_MAC;

const CLIENT4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 10);
const CLIENT6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 0x10);
const OTHER4: Ipv4Addr = Ipv4Addr::new(10, 201, 0, 99);
const OTHER6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x201, 0, 0, 0, 0, 0, 0x99);

// The configuration (`fixture::CONFIG`): node 1 of site "lab" with peers 2 and 3, two VIPs
// on 80 and 443 with single affinity, and another site whose node must never be a target (R1).

fn is_vip_address(addr: IpAddr) -> bool {
    addr == IpAddr::V4(VIP_V4) || addr == IpAddr::V6(VIP_V6)
}

/// The frame a client's packet arrives in: from the router to fx0, behind `tags`.
fn frame(tags: &[Tag], ip: &[u8]) -> Vec<u8> {
    packets::ethernet(ROUTER_MAC, SELF_MAC, tags, ip)
}

/// The frame this node sends to node `to`: fx0 to the peer's MAC, no tags, the outer header
/// (IPv4-in-IPv4 or IPv6-in-IPv6 after the inner family) and the inner IP packet.
fn forwarded(to: u32, second_chance: bool, inner: &[u8]) -> Vec<u8> {
    let outer = if inner[0] >> 4 == 4 {
        let id = if second_chance {
            V4_ID_SECOND_CHANCE
        } else {
            0
        };
        packets::ipip(underlay_v4(SELF), underlay_v4(to), id, inner)
    } else {
        packets::ip6ip6(underlay_v6(SELF), underlay_v6(to), second_chance, inner)
    };
    packets::ethernet(SELF_MAC, node_mac(to), &[], &outer)
}

/// A frame from peer `from` to this node carrying `inner` encapsulated (what `from`'s own
/// program sends), behind `tags`.
fn from_peer(from: u32, tags: &[Tag], second_chance: bool, inner: &[u8]) -> Vec<u8> {
    from_peer_to(from, SELF, tags, second_chance, inner)
}

/// As [`from_peer`], with the outer destination the underlay address of node `to`.
fn from_peer_to(from: u32, to: u32, tags: &[Tag], second_chance: bool, inner: &[u8]) -> Vec<u8> {
    let outer = if inner[0] >> 4 == 4 {
        let id = if second_chance {
            V4_ID_SECOND_CHANCE
        } else {
            0
        };
        packets::ipip(underlay_v4(from), underlay_v4(to), id, inner)
    } else {
        packets::ip6ip6(underlay_v6(from), underlay_v6(to), second_chance, inner)
    };
    packets::ethernet(node_mac(from), SELF_MAC, tags, &outer)
}

fn v4(a: Ipv4Addr) -> IpAddr {
    IpAddr::V4(a)
}

fn v6(a: Ipv6Addr) -> IpAddr {
    IpAddr::V6(a)
}

/// A ring: which node each slot names.
#[derive(Clone, Copy, Debug)]
enum Ring {
    /// Every slot names this node.
    All(u32),
    /// The Maglev table `sync::apply` built for nodes 1, 2 and 3.
    Maglev,
}

/// The data plane state a case runs in.
#[derive(Clone, Copy, Debug)]
enum Setup {
    /// Empty connection table; this ring active and no previous ring.
    Fresh(Ring),
    /// Empty connection table; `previous` was the active ring, then `active` was published.
    Changed { previous: Ring, active: Ring },
    /// This ring published over the state the previous case left (connection table kept).
    Publish(Ring),
    /// Node `.0` marked healthy or not in the NODES map, over the previous case's state.
    Health(u32, bool),
    /// The state the previous case left.
    Keep,
}

/// What the program must do with a case's input.
#[derive(Clone, Debug)]
enum Expect {
    /// XDP_PASS with the frame unchanged.
    Pass,
    /// XDP_PASS with the frame rewritten to these bytes (decapsulation).
    PassAs(Vec<u8>),
    /// XDP_DROP.
    Drop,
    /// Encapsulated to node `to` and sent as `link` says (XDP_TX back out of fx0, or
    /// XDP_REDIRECT out of another interface), the output exactly `frame`; the Ethernet and
    /// outer headers are also checked field by field against `inner`, the IP packet carried.
    Forward {
        to: u32,
        second_chance: bool,
        inner: Vec<u8>,
        frame: Vec<u8>,
        link: Link,
    },
}

/// How a forwarded frame leaves: the XDP action and the Ethernet addresses of the hop.
#[derive(Clone, Copy, Debug)]
struct Link {
    action: u32,
    src: [u8; 6],
    dst: [u8; 6],
}

/// Back out of fx0 (XDP_TX) to the peer itself, on fx0's subnet.
fn tx_link(to: u32) -> Link {
    Link {
        action: XDP_TX,
        src: SELF_MAC,
        dst: node_mac(to),
    }
}

/// A counter of [`Counters`].
#[derive(Clone, Copy, Debug)]
enum Stat {
    PassedLocal,
    Forwarded,
    Decapsulated,
    DroppedMalformed,
    ContinuityHits,
    SecondChance,
    FibFailures,
}

impl Stat {
    fn of(self, c: &Counters) -> u64 {
        match self {
            Stat::PassedLocal => c.passed_local,
            Stat::Forwarded => c.forwarded,
            Stat::Decapsulated => c.decapsulated,
            Stat::DroppedMalformed => c.dropped_malformed,
            Stat::ContinuityHits => c.continuity_hits,
            Stat::SecondChance => c.second_chance,
            Stat::FibFailures => c.fib_failures,
        }
    }
}

/// Which VIP_STATS entry a counter check reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum StatsOf {
    /// The (address, port) entry; port 0 is the address entry.
    Vip(IpAddr, u16),
    /// Packets that belong to no VIP.
    Unattributed,
}

/// One fixture.
#[derive(Clone, Debug)]
struct Case {
    name: String,
    setup: Setup,
    input: Vec<u8>,
    expect: Expect,
    /// Counter increments the full-length run must cause (exact).
    counts: Vec<(StatsOf, Stat, u64)>,
}

impl Case {
    fn new(name: impl Into<String>, setup: Setup, input: Vec<u8>, expect: Expect) -> Self {
        Self {
            name: name.into(),
            setup,
            input,
            expect,
            counts: Vec::new(),
        }
    }

    fn counts(mut self, of: StatsOf, stat: Stat, delta: u64) -> Self {
        self.counts.push((of, stat, delta));
        self
    }
}

/// `Expect::Forward` for `inner` (the client's IP packet) sent on to node `to`.
fn forward_to(to: u32, inner: &[u8]) -> Expect {
    forward_via(tx_link(to), to, inner)
}

/// `Expect::Forward` for `inner` sent on to node `to` over `link`.
fn forward_via(link: Link, to: u32, inner: &[u8]) -> Expect {
    let mut frame = forwarded(to, false, inner);
    frame[0..6].copy_from_slice(&link.dst);
    frame[6..12].copy_from_slice(&link.src);
    Expect::Forward {
        to,
        second_chance: false,
        inner: inner.to_vec(),
        frame,
        link,
    }
}

/// As [`forward_to`] for a frame that carried `padding` bytes of Ethernet padding after the
/// IP packet: they stay after it.
fn forward_padded_to(to: u32, inner: &[u8], padding: usize) -> Expect {
    let mut frame = forwarded(to, false, inner);
    frame.resize(frame.len() + padding, 0);
    Expect::Forward {
        to,
        second_chance: false,
        inner: inner.to_vec(),
        frame,
        link: tx_link(to),
    }
}

/// `Expect::Forward` for a second-chance forward of `inner` to the previous owner `to`.
fn second_chance_to(to: u32, inner: &[u8]) -> Expect {
    Expect::Forward {
        to,
        second_chance: true,
        inner: inner.to_vec(),
        frame: forwarded(to, true, inner),
        link: tx_link(to),
    }
}

/// The loaded program and its maps, configured from [`CONFIG`], in the fixture namespace.
struct Lab {
    loaded: Loaded,
    /// Test runs made, and truncated inputs the kernel refused (shorter than Ethernet).
    runs: std::cell::Cell<u64>,
    refused: std::cell::Cell<u64>,
    ifindex: u32,
    /// The Maglev ring `sync::apply` published, read back from the RING map.
    maglev: Vec<u32>,
    /// VIP_STATS index of each (address, port) VIP entry (port 0: the address entry).
    vip_index: HashMap<(IpAddr, u16), u32>,
}

impl Lab {
    /// Loads the program and applies [`CONFIG`]; call on a thread inside `ns`.
    fn new(ns: &Netns) -> anyhow::Result<Self> {
        let ifindex = ns.ifindex("fx0")?;
        let mut loaded = load(&LoadOptions {
            pin_dir: None,
            ring_size: RING_SIZE,
            conn_table_entries: 1024,
            directory_entries: 1024,
        })?;
        let config = Config::parse(CONFIG)?;
        // Every member up: the array forms with this configuration.
        sync::apply(&config, &mut loaded.maps, sync::NewMembers::Up)?;
        let cfg = loaded.maps.config()?;
        ensure!(
            cfg.self_node == SELF && cfg.ring_size == RING_SIZE && cfg.hash_seed == HASH_SEED,
            "config not applied: {cfg:?}"
        );
        let maglev = loaded
            .maps
            .ring_table(active_slot(cfg.ring_select), RING_SIZE)?;
        let vip_index = sync::vip_entries(&config.dataplane)
            .into_iter()
            .map(|e| {
                let addr = match e.key.addr {
                    [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, a, b, c, d] => {
                        v4(Ipv4Addr::new(a, b, c, d))
                    }
                    bytes => v6(Ipv6Addr::from(bytes)),
                };
                ((addr, e.key.port), e.info.vip_index)
            })
            .collect();
        Ok(Self {
            loaded,
            ifindex,
            maglev,
            vip_index,
            runs: Default::default(),
            refused: Default::default(),
        })
    }

    fn program(&self) -> &Xdp {
        self.loaded
            .ebpf
            .program(PROGRAM)
            .expect("load() checked the program")
            .try_into()
            .expect("an XDP program")
    }

    /// Runs the program once on `input`, as received on fx0. The kernel refuses (EINVAL)
    /// frames shorter than an Ethernet header.
    fn run(&self, input: &[u8]) -> Result<(u32, Vec<u8>), ProgramError> {
        let ctx = fixture::xdp_md(self.ifindex, input.len());
        // Room for the largest growth (outer Ethernet + IPv6 header) and more.
        let mut out = vec![0u8; input.len() + 512];
        self.runs.set(self.runs.get() + 1);
        let result = self.program().test_run(TestRunOptions {
            data_in: Some(input),
            data_out: Some(&mut out),
            ctx_in: Some(&ctx),
            ..TestRunOptions::default()
        })?;
        out.truncate(result.data_size_out as usize);
        Ok((result.return_value, out))
    }

    fn uniform(node: u32) -> Vec<u32> {
        vec![node; RING_SIZE as usize]
    }

    fn table(&self, ring: Ring) -> Vec<u32> {
        match ring {
            Ring::All(node) => Self::uniform(node),
            Ring::Maglev => self.maglev.clone(),
        }
    }

    fn clear_conn_table(&mut self) -> anyhow::Result<()> {
        let keys: Vec<_> = self
            .loaded
            .maps
            .conn_table
            .keys()
            .collect::<Result<_, _>>()?;
        for key in keys {
            self.loaded.maps.conn_table.remove(&key)?;
        }
        Ok(())
    }

    fn set_node_health(&mut self, id: u32, healthy: bool) -> anyhow::Result<()> {
        let mut node = self.loaded.maps.nodes.get(&id, 0)?;
        // Only the health bit: the program's notion of usable is configured and healthy.
        node.flags =
            (node.flags & !NODE_FLAG_HEALTHY) | if healthy { NODE_FLAG_HEALTHY } else { 0 };
        ensure!(
            node.flags & NODE_FLAG_CONFIGURED != 0,
            "node {id} is not configured"
        );
        self.loaded.maps.nodes.set(id, node, 0)?;
        Ok(())
    }

    fn setup(&mut self, setup: Setup) -> anyhow::Result<()> {
        match setup {
            Setup::Fresh(ring) => {
                self.clear_conn_table()?;
                for id in 1..=3 {
                    self.set_node_health(id, true)?;
                }
                self.loaded.maps.publish_ring(&self.table(ring))?;
                // No previous ring: the selector names the active slot twice.
                let mut cfg = self.loaded.maps.config()?;
                let active = active_slot(cfg.ring_select);
                cfg.ring_select = ring_select(active, active);
                self.loaded.maps.set_config(cfg)?;
            }
            Setup::Changed { previous, active } => {
                self.clear_conn_table()?;
                for id in 1..=3 {
                    self.set_node_health(id, true)?;
                }
                // Publishing the active ring again changes nothing, so `previous` is active
                // after this either way.
                self.loaded.maps.publish_ring(&self.table(previous))?;
                let changed = self.loaded.maps.publish_ring(&self.table(active))?;
                ensure!(changed, "{previous:?} -> {active:?} is no ring change");
            }
            Setup::Publish(ring) => {
                self.loaded.maps.publish_ring(&self.table(ring))?;
            }
            Setup::Health(id, healthy) => self.set_node_health(id, healthy)?,
            Setup::Keep => {}
        }
        Ok(())
    }

    fn stats_index(&self, of: StatsOf) -> u32 {
        match of {
            StatsOf::Vip(addr, port) => *self
                .vip_index
                .get(&(addr, port))
                .unwrap_or_else(|| panic!("no VIP entry {addr}:{port}")),
            StatsOf::Unattributed => UNATTRIBUTED_STATS_INDEX,
        }
    }

    fn counters(&self, of: StatsOf) -> anyhow::Result<Counters> {
        self.loaded.maps.vip_counters(self.stats_index(of))
    }

    /// The ring owner of `client` under single affinity: what the program must compute,
    /// computed here from `balancer_common::hash` and the Maglev ring read back from the map.
    fn maglev_owner(&self, client: IpAddr) -> u32 {
        let (src, is_v4) = match client {
            IpAddr::V4(a) => (v4_mapped(a.octets()), true),
            IpAddr::V6(a) => (a.octets(), false),
        };
        // Single affinity reads the source address only; the rest of the tuple is ignored.
        let tuple = FlowTuple {
            src,
            dst: [0; 16],
            sport_be: 0,
            dport_be: 0,
            proto: PROTO_TCP,
            is_v4,
        };
        self.maglev[(affinity_hash(HASH_SEED, AFFINITY_SINGLE, &tuple) % RING_SIZE) as usize]
    }

    /// The first address from `candidates` that the Maglev ring gives to a node `accept`s.
    fn client_owned_by(
        &self,
        candidates: impl Iterator<Item = IpAddr>,
        accept: impl Fn(u32) -> bool,
    ) -> (IpAddr, u32) {
        candidates
            .map(|c| (c, self.maglev_owner(c)))
            .find(|(_, owner)| accept(*owner))
            .expect("the 13-slot ring gives some candidate to the wanted node")
    }

    /// Runs the cases in order; returns a line per failure.
    fn run_cases(&mut self, cases: &[Case]) -> anyhow::Result<Vec<String>> {
        let mut failures = Vec::new();
        for case in cases {
            self.setup(case.setup)
                .with_context(|| format!("setting up {:?}", case.name))?;
            let before: Vec<Counters> = case
                .counts
                .iter()
                .map(|(of, _, _)| self.counters(*of))
                .collect::<Result<_, _>>()?;
            let mut problems = Vec::new();
            match self.run(&case.input) {
                Ok((action, out)) => {
                    problems.extend(check_expectation(&case.expect, &case.input, action, &out))
                }
                Err(e) => problems.push(format!("test run failed: {e:#}")),
            }
            for ((of, stat, delta), before) in case.counts.iter().zip(&before) {
                let after = self.counters(*of)?;
                let got = stat.of(&after).wrapping_sub(stat.of(before));
                if got != *delta {
                    problems.push(format!(
                        "counter {stat:?} of {of:?} went up by {got}, expected {delta}"
                    ));
                }
            }
            problems.extend(self.truncations(&case.input)?);
            if problems.is_empty() {
                eprintln!("ok    {}", case.name);
            } else {
                eprintln!("FAIL  {}", case.name);
                for p in &problems {
                    eprintln!("      {}", p.replace('\n', "\n      "));
                }
                failures.push(format!("{}: {}", case.name, problems.join("; ")));
            }
        }
        eprintln!(
            "{} cases, {} test runs ({} truncated inputs under {} bytes refused by the kernel)",
            cases.len(),
            self.runs.get(),
            self.refused.get(),
            packets::ETH_LEN
        );
        Ok(failures)
    }

    /// Runs `input` cut at every shorter length (see the module documentation). Cutting
    /// only Ethernet padding after the IP packet truncates no header, so those lengths are
    /// left out.
    fn truncations(&self, input: &[u8]) -> anyhow::Result<Vec<String>> {
        let mut problems = Vec::new();
        let end = packets::ip_packet_end(input).map_or(input.len(), |end| end.min(input.len()));
        for len in 0..end {
            let data = &input[..len];
            let (action, out) = match self.run(data) {
                Ok(r) => r,
                // BPF_PROG_TEST_RUN refuses XDP input shorter than an Ethernet header
                // (EINVAL): lengths 0..14 are not runnable, so there is nothing to check.
                Err(_) if len < packets::ETH_LEN => {
                    self.refused.set(self.refused.get() + 1);
                    continue;
                }
                Err(e) => bail!("test run of {len} of {} bytes failed: {e:#}", input.len()),
            };
            if len < packets::ETH_LEN {
                // The kernel took it after all: the rules below apply as for any length.
                eprintln!("      note: the kernel ran a {len}-byte frame");
            }
            match action {
                XDP_PASS if out != data => {
                    problems.push(format!(
                        "truncated to {len}: XDP_PASS but the frame changed"
                    ));
                }
                XDP_PASS | XDP_DROP => {}
                other => problems.push(format!(
                    "truncated to {len}: {} (only PASS or DROP allowed)",
                    action_name(other)
                )),
            }
            let (l3, _) = packets::l3_offset(data).unwrap_or((usize::MAX, 0));
            if let Some((dst, fixed_len)) = packets::ip_destination(data) {
                if is_vip_address(dst) && l3 + fixed_len <= len && action != XDP_DROP {
                    problems.push(format!("truncated to {len}: {} for a truncated packet to VIP address {dst} (must drop)", action_name(action)));
                }
            }
            if problems.len() >= 5 {
                problems.push("(more truncation failures left out)".into());
                break;
            }
        }
        Ok(problems)
    }
}

fn action_name(action: u32) -> String {
    match action {
        XDP_ABORTED => "XDP_ABORTED".into(),
        XDP_DROP => "XDP_DROP".into(),
        XDP_PASS => "XDP_PASS".into(),
        XDP_TX => "XDP_TX".into(),
        XDP_REDIRECT => "XDP_REDIRECT".into(),
        other => format!("action {other}"),
    }
}

/// Compares bytes, with both dumps and the first difference on mismatch.
fn same_bytes(what: &str, got: &[u8], want: &[u8]) -> Option<String> {
    if got == want {
        return None;
    }
    let first = got
        .iter()
        .zip(want)
        .position(|(a, b)| a != b)
        .unwrap_or(got.len().min(want.len()));
    Some(format!(
        "{what}: {} bytes, expected {}; first difference at byte {first}\ngot:\n{}\nexpected:\n{}",
        got.len(),
        want.len(),
        packets::hex(got),
        packets::hex(want)
    ))
}

fn check_expectation(expect: &Expect, input: &[u8], action: u32, out: &[u8]) -> Vec<String> {
    let want_action = match expect {
        Expect::Pass | Expect::PassAs(_) => XDP_PASS,
        Expect::Drop => XDP_DROP,
        Expect::Forward { link, .. } => link.action,
    };
    if action != want_action {
        return vec![format!(
            "{}, expected {}",
            action_name(action),
            action_name(want_action)
        )];
    }
    let mut problems = Vec::new();
    match expect {
        Expect::Pass => problems.extend(same_bytes("passed frame (must be unchanged)", out, input)),
        Expect::PassAs(want) => problems.extend(same_bytes("passed frame", out, want)),
        Expect::Drop => {}
        Expect::Forward {
            to,
            second_chance,
            inner,
            frame,
            link,
        } => {
            problems.extend(same_bytes("forwarded frame", out, frame));
            problems.extend(check_outer(inner, out, *to, *second_chance, link));
        }
    }
    problems
}

/// Checks a forwarded frame field by field against the IP packet it must carry (`inner`):
/// Ethernet over `link` with no VLAN tags, then the outer header as `balancer_common::encap`
/// says, then the inner packet unchanged (then any padding).
fn check_outer(inner: &[u8], out: &[u8], to: u32, second_chance: bool, link: &Link) -> Vec<String> {
    let mut p = Vec::new();
    let mut expect = |what: &str, got: u64, want: u64| {
        if got != want {
            p.push(format!("outer {what} is {got:#x}, expected {want:#x}"));
        }
    };
    if out.len() < 14 + 40 {
        return vec![format!(
            "forwarded frame of {} bytes is too short",
            out.len()
        )];
    }
    expect("destination MAC", mac(&out[0..6]), mac(&link.dst));
    expect("source MAC", mac(&out[6..12]), mac(&link.src));
    let ether_type = u16::from_be_bytes([out[12], out[13]]);
    if inner[0] >> 4 == 4 {
        let o = &out[14..34];
        expect("EtherType (no VLAN tag kept)", ether_type.into(), 0x0800);
        expect("version/IHL", o[0].into(), 0x45);
        expect(
            "TOS (copied from the inner header)",
            o[1].into(),
            inner[1].into(),
        );
        expect(
            "total length",
            u16::from_be_bytes([o[2], o[3]]).into(),
            (inner.len() + 20) as u64,
        );
        let id = if second_chance {
            V4_ID_SECOND_CHANCE
        } else {
            0
        };
        expect(
            "identification",
            u16::from_be_bytes([o[4], o[5]]).into(),
            id.into(),
        );
        expect(
            "flags/fragment offset (DF only)",
            u16::from_be_bytes([o[6], o[7]]).into(),
            0x4000,
        );
        expect("TTL", o[8].into(), 64);
        expect("protocol", o[9].into(), 4);
        expect(
            "header checksum valid",
            packets::ipv4_checksum_valid(o).into(),
            1,
        );
        expect(
            "source",
            u32::from_be_bytes([o[12], o[13], o[14], o[15]]).into(),
            u32::from(underlay_v4(SELF)).into(),
        );
        expect(
            "destination",
            u32::from_be_bytes([o[16], o[17], o[18], o[19]]).into(),
            u32::from(underlay_v4(to)).into(),
        );
        if !out[34..].starts_with(inner) {
            p.push(
                "the inner packet after the outer IPv4 header differs from the input's IP packet"
                    .into(),
            );
        }
    } else {
        let o = &out[14..54];
        let vcf = u32::from_be_bytes([o[0], o[1], o[2], o[3]]);
        let inner_vcf = u32::from_be_bytes([inner[0], inner[1], inner[2], inner[3]]);
        expect("EtherType (no VLAN tag kept)", ether_type.into(), 0x86dd);
        expect("version", (vcf >> 28).into(), 6);
        expect(
            "traffic class (copied)",
            ((vcf >> 20) & 0xff).into(),
            ((inner_vcf >> 20) & 0xff).into(),
        );
        let label = inner_vcf & V6_FLOW_HASH_MASK
            | if second_chance {
                V6_FLOW_SECOND_CHANCE
            } else {
                0
            };
        expect("flow label", (vcf & 0xf_ffff).into(), label.into());
        expect(
            "payload length",
            u16::from_be_bytes([o[4], o[5]]).into(),
            inner.len() as u64,
        );
        expect("next header", o[6].into(), 41);
        expect("hop limit", o[7].into(), 64);
        expect(
            "source",
            u128::from_be_bytes(o[8..24].try_into().unwrap()) as u64,
            u128::from(underlay_v6(SELF)) as u64,
        );
        expect(
            "destination",
            u128::from_be_bytes(o[24..40].try_into().unwrap()) as u64,
            u128::from(underlay_v6(to)) as u64,
        );
        if o[8..24] != underlay_v6(SELF).octets() || o[24..40] != underlay_v6(to).octets() {
            p.push("outer IPv6 addresses differ".into());
        }
        if !out[54..].starts_with(inner) {
            p.push(
                "the inner packet after the outer IPv6 header differs from the input's IP packet"
                    .into(),
            );
        }
    }
    p
}

fn mac(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0, |acc, b| acc << 8 | u64::from(*b))
}

/// Runs `body` with a fresh [`Lab`] inside a fresh fixture namespace; fails with every case
/// that failed.
fn with_lab(
    body: impl FnOnce(&mut Lab, &Netns) -> anyhow::Result<Vec<String>> + Send,
) -> anyhow::Result<()> {
    let ns = fixture_netns()?;
    let failures = ns.run_in(|| -> anyhow::Result<Vec<String>> {
        let mut lab = Lab::new(&ns)?;
        body(&mut lab, &ns)
    })??;
    if !failures.is_empty() {
        bail!(
            "{} case(s) failed:\n{}",
            failures.len(),
            failures.join("\n")
        );
    }
    Ok(())
}

/// A client's established-flow segment to a VIP.
fn tcp(client: IpAddr, sport: u16, vip: IpAddr, dport: u16) -> Tcp {
    Tcp::new(client, sport, vip, dport)
}

/// 4n bytes of IPv4 options: NOPs (any option bytes do; NOPs are valid everywhere).
fn nop_options(words: usize) -> Vec<u8> {
    vec![1; words * 4]
}

/// A SYN's usual options: MSS 1460, SACK permitted, timestamps, NOP, window scale 7.
fn syn_options() -> Vec<u8> {
    let mut o = vec![2, 4, 0x05, 0xb4, 4, 2, 8, 10];
    o.extend_from_slice(&0x0102_0304u32.to_be_bytes());
    o.extend_from_slice(&0u32.to_be_bytes());
    o.extend_from_slice(&[1, 3, 3, 7]);
    o
}

/// R4, R16, R2: what passes, what is delivered here, what is forwarded and how; VLANs,
/// IPv4 options; decapsulation. Also the verifier's instruction count.
#[test]
fn steering_fixtures() -> anyhow::Result<()> {
    with_lab(|lab, _ns| {
        let info = lab.program().info()?;
        let verified = info.verified_instruction_count();
        eprintln!("balancer_xdp: verified instruction count {verified:?}");
        ensure!(
            verified.is_some_and(|n| n > 0),
            "the kernel reports no verified instruction count"
        );

        // R1: the ring and NODES hold this site's nodes only.
        ensure!(
            lab.maglev.iter().all(|n| (1..=3).contains(n)),
            "R1: ring {:?} names a node outside the site",
            lab.maglev
        );
        ensure!(
            (1..=3).all(|n| lab.maglev.contains(&n)),
            "every healthy node has slots: {:?}",
            lab.maglev
        );
        ensure!(
            lab.loaded.maps.nodes.get(&4, 0)?.flags == 0,
            "R1: another site's node 4 is in NODES"
        );

        let (c4, c6) = (v4(CLIENT4), v6(CLIENT6));
        let (vip4, vip6) = (v4(VIP_V4), v6(VIP_V6));
        let local = Setup::Fresh(Ring::All(SELF));
        let to2 = Setup::Fresh(Ring::All(2));
        let to3 = Setup::Fresh(Ring::All(3));
        let ack4 = tcp(c4, 40000, vip4, 443).tos(0xb8).packet();
        let syn4 = tcp(c4, 40001, vip4, 80).syn().packet();
        let ack6 = tcp(c6, 40000, vip6, 443)
            .tos(0x28)
            .flow_label(0xabcde)
            .packet();
        let syn6 = tcp(c6, 40001, vip6, 80).syn().flow_label(0x12345).packet();
        let q = [Tag::Dot1Q(100)];
        let qinq = [Tag::Dot1Ad(300), Tag::Dot1Q(100)];
        let s443_4 = StatsOf::Vip(vip4, 443);
        let s443_6 = StatsOf::Vip(vip6, 443);

        let mut cases = vec![
            // R4: not for a VIP and port: untouched, whatever the ring says.
            Case::new("R4: IPv4 TCP to a non-VIP address passes untouched", to2, frame(&[], &tcp(c4, 40000, v4(OTHER4), 443).packet()), Expect::Pass),
            Case::new("R4: IPv6 TCP to a non-VIP address passes untouched", to2, frame(&[], &tcp(c6, 40000, v6(OTHER6), 443).packet()), Expect::Pass),
            Case::new("R4: IPv4 TCP to the VIP on port 22 (not configured) passes", to2, frame(&[], &tcp(c4, 40000, vip4, 22).packet()), Expect::Pass),
            Case::new("R4: IPv6 TCP to the VIP on port 22 (not configured) passes", to2, frame(&[], &tcp(c6, 40000, vip6, 22).syn().packet()), Expect::Pass),
            Case::new("R16: IMAP4 over TLS (TCP 993) to the IPv4 VIP passes", to2, frame(&[], &tcp(c4, 40000, vip4, 993).packet()), Expect::Pass),
            Case::new("R16: POP3 (TCP 110) to the IPv6 VIP passes", to2, frame(&[], &tcp(c6, 40000, vip6, 110).packet()), Expect::Pass),
            Case::new("R4: UDP to the IPv4 VIP port 443 passes (only TCP is steered)", to2, frame(&[], &packets::udp(c4, 40000, vip4, 443, b"quic initial")), Expect::Pass),
            Case::new("R4: UDP to the IPv6 VIP port 443 passes", to2, frame(&[], &packets::udp(c6, 40000, vip6, 443, b"quic initial")), Expect::Pass),
            Case::new("R4: ARP request for the VIP passes", to2, packets::arp_request(ROUTER_MAC, Ipv4Addr::new(10, 200, 0, 1), VIP_V4), Expect::Pass),
            Case::new("R4: ICMP echo request to the VIP passes", to2, frame(&[], &packets::icmpv4_echo(CLIENT4, VIP_V4)), Expect::Pass),
            // R2: this node owns the client: up the local stack, unchanged.
            Case::new("R2: IPv4 VIP:443 segment owned by this node passes unchanged", local, frame(&[], &ack4), Expect::Pass)
                .counts(s443_4, Stat::PassedLocal, 1)
                .counts(s443_4, Stat::Forwarded, 0),
            Case::new("R2: IPv4 VIP:80 SYN owned by this node passes unchanged", local, frame(&[], &syn4), Expect::Pass),
            Case::new("R2: IPv6 VIP:443 segment owned by this node passes unchanged", local, frame(&[], &ack6), Expect::Pass)
                .counts(s443_6, Stat::PassedLocal, 1),
            Case::new("R2: IPv6 VIP:80 SYN owned by this node passes unchanged", local, frame(&[], &syn6), Expect::Pass),
            // R2: another node owns the client: IP-in-IP to it, out of fx0 (XDP_TX).
            Case::new("R2: IPv4 VIP:443 segment owned by node 2 is forwarded IPv4-in-IPv4 (TOS copied)", to2, frame(&[], &ack4), forward_to(2, &ack4))
                .counts(s443_4, Stat::Forwarded, 1)
                .counts(s443_4, Stat::PassedLocal, 0),
            Case::new("R2: IPv4 VIP:80 SYN owned by node 3 is forwarded to node 3", to3, frame(&[], &syn4), forward_to(3, &syn4)),
            Case::new("R2: IPv6 VIP:443 segment owned by node 2 is forwarded IPv6-in-IPv6 (class copied, label masked)", to2, frame(&[], &ack6), forward_to(2, &ack6))
                .counts(s443_6, Stat::Forwarded, 1),
            Case::new("R2: IPv6 VIP:80 SYN owned by node 3 is forwarded to node 3", to3, frame(&[], &syn6), forward_to(3, &syn6)),
            // VLANs: kept when passed, stripped when forwarded (the outer frame is new).
            Case::new("802.1Q IPv4 VIP segment owned here passes with its tag", local, frame(&q, &ack4), Expect::Pass),
            Case::new("802.1Q IPv4 VIP segment owned by node 2 is forwarded, tag stripped", to2, frame(&q, &ack4), forward_to(2, &ack4)),
            Case::new("802.1Q IPv6 VIP segment owned here passes with its tag", local, frame(&q, &ack6), Expect::Pass),
            Case::new("802.1Q IPv6 VIP segment owned by node 3 is forwarded, tag stripped", to3, frame(&q, &ack6), forward_to(3, &ack6)),
            Case::new("QinQ (802.1ad + 802.1Q) IPv4 VIP segment owned here passes with its tags", local, frame(&qinq, &ack4), Expect::Pass),
            Case::new("QinQ IPv4 VIP SYN owned by node 2 is forwarded, tags stripped", to2, frame(&qinq, &syn4), forward_to(2, &syn4)),
            Case::new("QinQ IPv6 VIP segment owned here passes with its tags", local, frame(&qinq, &ack6), Expect::Pass),
            Case::new("QinQ IPv6 VIP segment owned by node 2 is forwarded, tags stripped", to2, frame(&qinq, &ack6), forward_to(2, &ack6)),
        ];

        // TCP options, IPv6 extension headers, Ethernet padding, too many tags.
        let syn_opts4 = tcp(c4, 40100, vip4, 443)
            .syn()
            .tcp_options(syn_options())
            .packet();
        let syn_opts6 = tcp(c6, 40100, vip6, 443)
            .syn()
            .tcp_options(syn_options())
            .packet();
        let segment6 = tcp(c6, 40101, vip6, 443).segment();
        let ext6 = |headers: Vec<Vec<u8>>, first: IpNumber| {
            let payload: Vec<u8> = headers
                .into_iter()
                .flatten()
                .chain(segment6.iter().copied())
                .collect();
            packets::ipv6(
                CLIENT6,
                VIP_V6,
                first,
                packets::V6Fields {
                    traffic_class: 0,
                    flow_label: 0x3_3333,
                },
                &payload,
            )
        };
        let hbh_dst6 = ext6(
            vec![
                packets::ipv6_options_header(IpNumber::IPV6_DESTINATION_OPTIONS, 8),
                packets::ipv6_options_header(IpNumber::TCP, 16),
            ],
            IpNumber::IPV6_HEADER_HOP_BY_HOP,
        );
        let ah6 = ext6(
            vec![packets::ipv6_auth_header(IpNumber::TCP)],
            IpNumber::AUTHENTICATION_HEADER,
        );
        let runt4 = tcp(c4, 40102, vip4, 443).payload(Vec::new()).packet();
        let mut runt_frame = frame(&[], &runt4);
        let padding = 60 - runt_frame.len();
        runt_frame.resize(60, 0);
        cases.extend([
            Case::new("IPv4 SYN with MSS, SACK, timestamp and window-scale options owned by node 2 is forwarded", to2, frame(&[], &syn_opts4), forward_to(2, &syn_opts4)),
            Case::new("IPv6 SYN with TCP options owned by node 3 is forwarded", to3, frame(&[], &syn_opts6), forward_to(3, &syn_opts6)),
            Case::new("IPv6 with hop-by-hop and destination-options headers before TCP is forwarded whole", to2, frame(&[], &hbh_dst6), forward_to(2, &hbh_dst6)),
            Case::new("IPv6 with hop-by-hop and destination-options headers, owned here, passes", local, frame(&[], &hbh_dst6), Expect::Pass),
            Case::new("IPv6 with an authentication header before TCP is forwarded whole", to3, frame(&[], &ah6), forward_to(3, &ah6)),
            Case::new("60-byte runt frame (6 bytes of Ethernet padding) owned here passes unchanged", local, runt_frame.clone(), Expect::Pass),
            Case::new("60-byte runt frame owned by node 2 is forwarded; outer length from the IP header, padding kept after it", to2, runt_frame, forward_padded_to(2, &runt4, padding)),
            Case::new("R4: three VLAN tags (more than the two parsed) pass untouched", to2, frame(&[Tag::Dot1Ad(1), Tag::Dot1Q(2), Tag::Dot1Q(3)], &ack4), Expect::Pass),
        ]);

        // IPv4 options: every IHL from 6 to 15, forwarded with the options intact.
        for ihl in 6..=15usize {
            let inner = tcp(c4, 41000 + ihl as u16, vip4, 443)
                .tos(0x10)
                .ipv4_options(nop_options(ihl - 5))
                .packet();
            cases.push(Case::new(
                format!("IPv4 options, IHL {ihl}: VIP segment owned by node 2 is forwarded"),
                to2,
                frame(&[], &inner),
                forward_to(2, &inner),
            ));
        }
        let opts15 = tcp(c4, 41100, vip4, 443)
            .ipv4_options(nop_options(10))
            .packet();
        cases.push(Case::new(
            "IPv4 options, IHL 15, QinQ: VIP segment owned here passes unchanged",
            local,
            frame(&qinq, &opts15),
            Expect::Pass,
        ));
        cases.push(Case::new(
            "IPv4 options, IHL 15, 802.1Q: forwarded to node 3, tag stripped",
            to3,
            frame(&q, &opts15),
            forward_to(3, &opts15),
        ));

        // Decapsulation: a peer's forwarded packet for this node. The outer IP header goes,
        // Ethernet and VLAN tags stay, and the inner packet goes up the stack here even if
        // this node's own ring names someone else (the sender already chose).
        let dec = StatsOf::Unattributed;
        cases.extend([
            Case::new(
                "decap: IPv4-in-IPv4 from node 2 for VIP:443 passes with the outer header removed",
                local,
                from_peer(2, &[], false, &ack4),
                Expect::PassAs(packets::ethernet(node_mac(2), SELF_MAC, &[], &ack4)),
            )
            .counts(s443_4, Stat::Decapsulated, 1)
            .counts(s443_4, Stat::PassedLocal, 1),
            Case::new(
                "decap: IPv6-in-IPv6 from node 3 for VIP:443 passes with the outer header removed",
                local,
                from_peer(3, &[], false, &ack6),
                Expect::PassAs(packets::ethernet(node_mac(3), SELF_MAC, &[], &ack6)),
            )
            .counts(s443_6, Stat::Decapsulated, 1),
            Case::new(
                "decap: 802.1Q IPv4-in-IPv4 keeps Ethernet and the tag",
                local,
                from_peer(2, &q, false, &syn4),
                Expect::PassAs(packets::ethernet(node_mac(2), SELF_MAC, &q, &syn4)),
            ),
            Case::new(
                "decap: QinQ IPv6-in-IPv6 keeps Ethernet and both tags",
                local,
                from_peer(2, &qinq, false, &ack6),
                Expect::PassAs(packets::ethernet(node_mac(2), SELF_MAC, &qinq, &ack6)),
            ),
            Case::new(
                "decap: QinQ IPv4-in-IPv4 with IPv4 options inside keeps Ethernet and both tags",
                local,
                from_peer(3, &qinq, false, &opts15),
                Expect::PassAs(packets::ethernet(node_mac(3), SELF_MAC, &qinq, &opts15)),
            ),
            Case::new(
                "decap: an outer IPv4 header with options (IHL 8) is removed whole",
                local,
                packets::ethernet(
                    node_mac(2),
                    SELF_MAC,
                    &[],
                    &packets::ipv4(
                        underlay_v4(2),
                        underlay_v4(SELF),
                        IpNumber::IPV4,
                        &packets::V4Fields {
                            dont_fragment: true,
                            options: nop_options(3),
                            ..Default::default()
                        },
                        &ack4,
                    ),
                ),
                Expect::PassAs(packets::ethernet(node_mac(2), SELF_MAC, &[], &ack4)),
            ),
            Case::new(
                "decap: delivered here even when this node's ring names node 3",
                to3,
                from_peer(2, &[], false, &ack4),
                Expect::PassAs(packets::ethernet(node_mac(2), SELF_MAC, &[], &ack4)),
            )
            .counts(s443_4, Stat::Forwarded, 0),
            Case::new(
                "decap: IPv4 inner packet not for a VIP is dropped",
                local,
                from_peer(2, &[], false, &tcp(c4, 40000, v4(OTHER4), 443).packet()),
                Expect::Drop,
            )
            .counts(dec, Stat::DroppedMalformed, 1),
            Case::new(
                "decap: IPv6 inner packet to the VIP on port 22 is dropped",
                local,
                from_peer(2, &[], false, &tcp(c6, 40000, vip6, 22).packet()),
                Expect::Drop,
            )
            .counts(dec, Stat::DroppedMalformed, 1),
            Case::new(
                "decap: inner UDP to the VIP is dropped",
                local,
                from_peer(2, &[], false, &packets::udp(c4, 40000, vip4, 443, b"x")),
                Expect::Drop,
            ),
            Case::new(
                "decap: IPv4-in-IPv4 to another node's underlay address passes untouched",
                local,
                from_peer_to(2, 3, &[], false, &ack4),
                Expect::Pass,
            ),
            Case::new(
                "decap: IPv6-in-IPv6 to another node's underlay address passes untouched",
                local,
                from_peer_to(2, 3, &[], false, &ack6),
                Expect::Pass,
            ),
        ]);
        lab.run_cases(&cases)
    })
}

/// R2: first and later fragments of a datagram meet at one node (by source address, like
/// every packet under single affinity), and ICMP errors about a flow go to the node that owns
/// the flow's client. The ring is the real Maglev table for nodes 1-3.
#[test]
fn fragments_and_icmp_errors_follow_the_client() -> anyhow::Result<()> {
    with_lab(|lab, _ns| {
        let maglev = Setup::Fresh(Ring::Maglev);
        let (vip4, vip6) = (v4(VIP_V4), v6(VIP_V6));
        let v4_clients = || (1..=254u8).map(|i| v4(Ipv4Addr::new(192, 0, 2, i)));
        let v6_clients =
            || (1..=254u16).map(|i| v6(Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, i)));
        let (far4, owner4) = lab.client_owned_by(v4_clients(), |n| n != SELF);
        let (near4, _) = lab.client_owned_by(v4_clients(), |n| n == SELF);
        let (far6, owner6) = lab.client_owned_by(v6_clients(), |n| n != SELF);
        let (near6, _) = lab.client_owned_by(v6_clients(), |n| n == SELF);
        // ICMP errors come from a router whose own address hashes to another node: only
        // the quoted client may decide.
        let routers4 = (1..=254u8).map(|i| v4(Ipv4Addr::new(198, 51, 100, i)));
        let (router4, _) = lab.client_owned_by(routers4, |n| n != owner4);
        let routers6 =
            (1..=254u16).map(|i| v6(Ipv6Addr::new(0x2001, 0xdb8, 0xffff, 0, 0, 0, 0, i)));
        let (router6, _) = lab.client_owned_by(routers6, |n| n != owner6);
        eprintln!("clients: {far4} -> node {owner4}, {far6} -> node {owner6}, {near4} and {near6} -> node 1");

        let big = vec![0x5a; 96];
        let [first4, rest4] = tcp(far4, 42000, vip4, 443)
            .payload(big.clone())
            .fragments(48);
        let [first6, rest6] = tcp(far6, 42000, vip6, 443)
            .payload(big.clone())
            .fragments(48);
        let [near_first4, near_rest4] = tcp(near4, 42000, vip4, 443)
            .payload(big.clone())
            .fragments(48);
        let [near_first6, near_rest6] = tcp(near6, 42000, vip6, 443)
            .payload(big.clone())
            .fragments(48);
        let whole4 = tcp(far4, 42001, vip4, 443).packet();
        let other_port4 = tcp(far4, 52001, vip4, 80).syn().packet();
        let whole6 = tcp(far6, 42001, vip6, 443).packet();
        // Fragmentable part starting with a Destination Options header: every fragment header
        // says 60, but only the first fragment has the header; later ones start with data.
        let dst_opts = packets::ipv6_options_header(IpNumber::TCP, 16);
        let [opts_first6, opts_rest6] = tcp(far6, 42004, vip6, 443)
            .payload(big.clone())
            .ipv6_fragments(&dst_opts, IpNumber::IPV6_DESTINATION_OPTIONS, 56);
        let [near_opts_first6, near_opts_rest6] = tcp(near6, 42004, vip6, 443)
            .payload(big.clone())
            .ipv6_fragments(&dst_opts, IpNumber::IPV6_DESTINATION_OPTIONS, 56);
        // An atomic fragment (offset 0, M clear; RFC 6946) is a whole packet.
        let atomic6 = {
            let segment = tcp(far6, 42005, vip6, 443).segment();
            let payload: Vec<u8> = packets::ipv6_fragment_header(IpNumber::TCP, 0, false, 9)
                .into_iter()
                .chain(segment)
                .collect();
            packets::ipv6(
                ip6(far6),
                VIP_V6,
                IpNumber::IPV6_FRAGMENTATION_HEADER,
                packets::V6Fields::default(),
                &payload,
            )
        };
        let frag_stats4 = StatsOf::Vip(vip4, 0);

        // The packet the server sent (VIP:443 -> client), which a router could not pass on.
        let sent4 = tcp(vip4, 443, far4, 42002).payload(vec![0x11; 64]).packet();
        let icmp4 = packets::icmpv4_frag_needed(ip4(router4), VIP_V4, &sent4, 1400);
        let sent6 = tcp(vip6, 443, far6, 42002)
            .payload(vec![0x11; 64])
            .flow_label(0x54321)
            .packet();
        let icmp6 = packets::icmpv6_packet_too_big(ip6(router6), VIP_V6, &sent6, 1280);
        let sent_ssh = tcp(vip4, 22, far4, 42003).packet();
        let icmp_ssh = packets::icmpv4_frag_needed(ip4(router4), VIP_V4, &sent_ssh, 1400);
        // The quoted header may carry options (IHL 7 here); other error types count too.
        let sent_opts4 = tcp(vip4, 443, far4, 42006)
            .ipv4_options(nop_options(2))
            .packet();
        let icmp_opts4 = packets::icmpv4_frag_needed(ip4(router4), VIP_V4, &sent_opts4, 1400);
        let ttl_exceeded4 = packets::icmpv4_error(
            ip4(router4),
            VIP_V4,
            Icmpv4Type::TimeExceeded(TimeExceededCode::TtlExceededInTransit),
            &sent4,
        );
        let unreachable6 = packets::icmpv6_error(
            ip6(router6),
            VIP_V6,
            Icmpv6Type::DestinationUnreachable(DestUnreachableCode::Address),
            &sent6,
        );
        let icmp_near4 = packets::icmpv4_frag_needed(
            ip4(router4),
            VIP_V4,
            &tcp(vip4, 443, near4, 42007).packet(),
            1400,
        );
        let echo_reply_quote = packets::icmpv4_echo(ip4(router4), VIP_V4);

        let cases = vec![
            Case::new(format!("R2: IPv4 first fragment from {far4} goes to its owner, node {owner4}"), maglev, frame(&[], &first4), forward_to(owner4, &first4))
                .counts(frag_stats4, Stat::Forwarded, 1),
            Case::new(format!("R2: IPv4 non-first fragment of the same datagram goes to node {owner4} too"), Setup::Keep, frame(&[], &rest4), forward_to(owner4, &rest4))
                .counts(frag_stats4, Stat::Forwarded, 1),
            Case::new(format!("R2: an unfragmented segment from {far4} goes to node {owner4} too"), Setup::Keep, frame(&[], &whole4), forward_to(owner4, &whole4)),
            Case::new("R2: single affinity: another port and connection of the same client, same node", Setup::Keep, frame(&[], &other_port4), forward_to(owner4, &other_port4)),
            Case::new(format!("R2: IPv4 fragments from {near4} (owned here) pass: first"), Setup::Keep, frame(&[], &near_first4), Expect::Pass),
            Case::new(format!("R2: IPv4 fragments from {near4} (owned here) pass: non-first"), Setup::Keep, frame(&[], &near_rest4), Expect::Pass),
            Case::new(format!("R2: IPv6 first fragment (fragment header) from {far6} goes to node {owner6}"), Setup::Keep, frame(&[], &first6), forward_to(owner6, &first6)),
            Case::new(format!("R2: IPv6 non-first fragment of the same datagram goes to node {owner6} too"), Setup::Keep, frame(&[], &rest6), forward_to(owner6, &rest6)),
            Case::new(format!("R2: an unfragmented IPv6 segment from {far6} goes to node {owner6} too"), Setup::Keep, frame(&[], &whole6), forward_to(owner6, &whole6)),
            Case::new(format!("R2: IPv6 first fragment starting with a destination-options header goes to node {owner6}"), Setup::Keep, frame(&[], &opts_first6), forward_to(owner6, &opts_first6)),
            Case::new(format!("R2: IPv6 non-first fragment of that datagram (fragment header names 60) goes to node {owner6} too"), Setup::Keep, frame(&[], &opts_rest6), forward_to(owner6, &opts_rest6)),
            Case::new(format!("R2: the same two fragments from {near6} (owned here) pass: first"), Setup::Keep, frame(&[], &near_opts_first6), Expect::Pass),
            Case::new(format!("R2: the same two fragments from {near6} (owned here) pass: non-first"), Setup::Keep, frame(&[], &near_opts_rest6), Expect::Pass),
            Case::new(format!("R2: IPv6 atomic fragment (offset 0, M clear) is the TCP segment it carries: node {owner6}"), Setup::Keep, frame(&[], &atomic6), forward_to(owner6, &atomic6))
                .counts(StatsOf::Vip(vip6, 443), Stat::Forwarded, 1),
            Case::new(format!("R2: IPv6 fragments from {near6} (owned here) pass: first"), Setup::Keep, frame(&[], &near_first6), Expect::Pass),
            Case::new(format!("R2: IPv6 fragments from {near6} (owned here) pass: non-first"), Setup::Keep, frame(&[], &near_rest6), Expect::Pass),
            Case::new(format!("R2: 802.1Q IPv6 non-first fragment goes to node {owner6}, tag stripped"), Setup::Keep, frame(&[Tag::Dot1Q(7)], &rest6), forward_to(owner6, &rest6)),
            Case::new(format!("ICMPv4 fragmentation needed from {router4} quoting VIP:443 -> {far4} goes to node {owner4}"), Setup::Keep, frame(&[], &icmp4), forward_to(owner4, &icmp4))
                .counts(StatsOf::Vip(vip4, 443), Stat::Forwarded, 1),
            Case::new(format!("ICMPv6 packet too big from {router6} quoting VIP:443 -> {far6} goes to node {owner6}"), Setup::Keep, frame(&[], &icmp6), forward_to(owner6, &icmp6))
                .counts(StatsOf::Vip(vip6, 443), Stat::Forwarded, 1),
            Case::new("R4: ICMPv4 fragmentation needed quoting VIP:22 (not steered) passes", Setup::Keep, frame(&[], &icmp_ssh), Expect::Pass),
            Case::new(format!("ICMPv4 fragmentation needed quoting a header with options (IHL 7) goes to node {owner4}"), Setup::Keep, frame(&[], &icmp_opts4), forward_to(owner4, &icmp_opts4)),
            Case::new(format!("ICMPv4 time exceeded quoting VIP:443 -> {far4} goes to node {owner4}"), Setup::Keep, frame(&[], &ttl_exceeded4), forward_to(owner4, &ttl_exceeded4)),
            Case::new(format!("ICMPv6 destination unreachable quoting VIP:443 -> {far6} goes to node {owner6}"), Setup::Keep, frame(&[], &unreachable6), forward_to(owner6, &unreachable6)),
            Case::new(format!("ICMPv4 fragmentation needed about {near4} (owned here) passes"), Setup::Keep, frame(&[], &icmp_near4), Expect::Pass),
            Case::new("R4: ICMPv4 echo request (not an error) to the VIP passes", Setup::Keep, frame(&[], &echo_reply_quote), Expect::Pass),
            // R3: fragments carry no ports to look a socket up by: never a second chance.
            Case::new("R3: after a ring change, a fragment owned here is not sent for a second chance", Setup::Changed { previous: Ring::All(3), active: Ring::All(SELF) }, frame(&[], &rest4), Expect::Pass),
        ];
        lab.run_cases(&cases)
    })
}

fn ip4(a: IpAddr) -> Ipv4Addr {
    match a {
        IpAddr::V4(a) => a,
        IpAddr::V6(_) => panic!("IPv4 expected"),
    }
}

fn ip6(a: IpAddr) -> Ipv6Addr {
    match a {
        IpAddr::V6(a) => a,
        IpAddr::V4(_) => panic!("IPv6 expected"),
    }
}

/// R3, second chance: the ring moved the client from node 3 to this node. A segment of an
/// existing connection for which this node has no socket goes on to node 3, marked; a SYN,
/// or a segment of a connection this node does hold, stays here.
#[test]
fn second_chance_after_a_ring_change() -> anyhow::Result<()> {
    with_lab(|lab, ns| {
        let changed = Setup::Changed {
            previous: Ring::All(3),
            active: Ring::All(SELF),
        };
        let (c4, c6) = (v4(CLIENT4), v6(CLIENT6));
        let (vip4, vip6) = (v4(VIP_V4), v6(VIP_V6));
        let ack4 = tcp(c4, 43000, vip4, 443).tos(0x20).packet();
        let ack6 = tcp(c6, 43000, vip6, 443).flow_label(0x12345).packet();
        let syn4 = tcp(c4, 43001, vip4, 443).syn().packet();
        let syn6 = tcp(c6, 43001, vip6, 443).syn().packet();

        // A connection this node does hold: VIP and a client address on lo, a listener on
        // VIP:443 and a connection from the client address (loopback inside the namespace).
        let ns_client4 = v4(Ipv4Addr::new(192, 0, 2, 77));
        let held4 = LocalConnection::open(ns, ns_client4, vip4, 443)?;
        let held_ack4 = tcp(ns_client4, held4.client_port, vip4, 443).packet();
        let ns_client6 = v6(Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 0x77));
        let held6 = LocalConnection::open(ns, ns_client6, vip6, 443)?;
        let held_ack6 = tcp(ns_client6, held6.client_port, vip6, 443)
            .flow_label(0xf_ffff)
            .packet();
        // ICMP errors about those flows (what the server sent, quoted by a router).
        let router4 = Ipv4Addr::new(198, 51, 100, 1);
        let router6 = Ipv6Addr::new(0x2001, 0xdb8, 0xffff, 0, 0, 0, 0, 1);
        let icmp_lost4 =
            packets::icmpv4_frag_needed(router4, VIP_V4, &tcp(vip4, 443, c4, 43000).packet(), 1400);
        let icmp_lost6 = packets::icmpv6_packet_too_big(
            router6,
            VIP_V6,
            &tcp(vip6, 443, c6, 43000).packet(),
            1280,
        );
        let icmp_held4 = packets::icmpv4_frag_needed(
            router4,
            VIP_V4,
            &tcp(vip4, 443, ns_client4, held4.client_port).packet(),
            1400,
        );
        let icmp_held6 = packets::icmpv6_packet_too_big(
            router6,
            VIP_V6,
            &tcp(vip6, 443, ns_client6, held6.client_port).packet(),
            1280,
        );

        let s4 = StatsOf::Vip(vip4, 443);
        let s6 = StatsOf::Vip(vip6, 443);
        let cases = vec![
            Case::new("R3: IPv4 ACK with no local socket goes on to the previous owner, node 3, marked (id 0x5c5c)", changed, frame(&[], &ack4), second_chance_to(3, &ack4))
                .counts(s4, Stat::SecondChance, 1)
                .counts(s4, Stat::Forwarded, 1),
            Case::new("R3: IPv4 SYN stays here (new connections follow the new ring)", changed, frame(&[], &syn4), Expect::Pass)
                .counts(s4, Stat::SecondChance, 0)
                .counts(s4, Stat::PassedLocal, 1),
            Case::new("R3: IPv6 ACK with no local socket goes on to node 3, marked (flow label bit 0x80000)", changed, frame(&[], &ack6), second_chance_to(3, &ack6))
                .counts(s6, Stat::SecondChance, 1),
            Case::new("R3: IPv6 SYN stays here", changed, frame(&[], &syn6), Expect::Pass),
            Case::new("R3: 802.1Q IPv4 ACK with no local socket goes on to node 3, tag stripped", changed, frame(&[Tag::Dot1Q(5)], &ack4), second_chance_to(3, &ack4)),
            Case::new("R3: IPv4 ACK of a connection this node holds (socket found) stays here", changed, frame(&[], &held_ack4), Expect::Pass)
                .counts(s4, Stat::SecondChance, 0),
            Case::new("R3: IPv6 ACK of a connection this node holds (socket found) stays here", changed, frame(&[], &held_ack6), Expect::Pass)
                .counts(s6, Stat::SecondChance, 0),
            Case::new("R3: ICMPv4 fragmentation needed about a flow with no local socket goes on to node 3, marked", changed, frame(&[], &icmp_lost4), second_chance_to(3, &icmp_lost4))
                .counts(s4, Stat::SecondChance, 1),
            Case::new("R3: ICMPv6 packet too big about a flow with no local socket goes on to node 3, marked", changed, frame(&[], &icmp_lost6), second_chance_to(3, &icmp_lost6))
                .counts(s6, Stat::SecondChance, 1),
            Case::new("R3: ICMPv4 fragmentation needed about a connection this node holds stays here", changed, frame(&[], &icmp_held4), Expect::Pass),
            Case::new("R3: ICMPv6 packet too big about a connection this node holds stays here", changed, frame(&[], &icmp_held6), Expect::Pass),
            Case::new("R3: a peer's second-chance packet (marked) is delivered here, never bounced again", changed, from_peer(2, &[], true, &ack4), Expect::PassAs(packets::ethernet(node_mac(2), SELF_MAC, &[], &ack4)))
                .counts(s4, Stat::Decapsulated, 1)
                .counts(s4, Stat::Forwarded, 0),
            Case::new("R3: a peer's IPv6 second-chance packet (marked) is delivered here", changed, from_peer(2, &[], true, &ack6), Expect::PassAs(packets::ethernet(node_mac(2), SELF_MAC, &[], &ack6))),
            Case::new("R3: a peer's unmarked packet this node has no socket for goes on to node 3, marked", changed, from_peer(2, &[], false, &ack4), second_chance_to(3, &ack4))
                .counts(s4, Stat::Decapsulated, 1)
                .counts(s4, Stat::SecondChance, 1),
            Case::new("R3: with the previous owner unhealthy, the ACK stays here", Setup::Health(3, false), frame(&[], &ack4), Expect::Pass)
                .counts(s4, Stat::SecondChance, 0),
        ];
        let failures = lab.run_cases(&cases);
        drop((held4, held6));
        failures
    })
}

/// R3, connection table: a flow keeps going to the node its SYN went to after the ring
/// changes, while that node is usable.
#[test]
fn connection_table_keeps_flows_across_a_ring_change() -> anyhow::Result<()> {
    with_lab(|lab, _ns| {
        let (c4, c6) = (v4(CLIENT4), v6(CLIENT6));
        let (vip4, vip6) = (v4(VIP_V4), v6(VIP_V6));
        let syn4 = tcp(c4, 44000, vip4, 443).syn().packet();
        let ack4 = tcp(c4, 44000, vip4, 443).packet();
        let other4 = tcp(v4(Ipv4Addr::new(192, 0, 2, 99)), 44000, vip4, 443).packet();
        let syn6 = tcp(c6, 44000, vip6, 80).syn().packet();
        let ack6 = tcp(c6, 44000, vip6, 80).flow_label(0xfffff).packet();
        let router4 = Ipv4Addr::new(198, 51, 100, 1);
        let router6 = Ipv6Addr::new(0x2001, 0xdb8, 0xffff, 0, 0, 0, 0, 1);
        let icmp4 =
            packets::icmpv4_frag_needed(router4, VIP_V4, &tcp(vip4, 443, c4, 44000).packet(), 1400);
        let icmp6 = packets::icmpv6_packet_too_big(
            router6,
            VIP_V6,
            &tcp(vip6, 80, c6, 44000).packet(),
            1280,
        );
        let s4 = StatsOf::Vip(vip4, 443);
        let s6 = StatsOf::Vip(vip6, 80);
        let cases = vec![
            Case::new("R3: IPv4 SYN with ring all-node-2 goes to node 2 (and is recorded)", Setup::Fresh(Ring::All(2)), frame(&[], &syn4), forward_to(2, &syn4))
                .counts(s4, Stat::ContinuityHits, 0),
            Case::new("R3: ring now all-node-3: the flow's ACK still goes to node 2 (continuity hit)", Setup::Publish(Ring::All(3)), frame(&[], &ack4), forward_to(2, &ack4))
                .counts(s4, Stat::ContinuityHits, 1)
                .counts(s4, Stat::Forwarded, 1),
            Case::new("R3: the flow's next ACK goes to node 2 again", Setup::Keep, frame(&[Tag::Dot1Q(9)], &ack4), forward_to(2, &ack4))
                .counts(s4, Stat::ContinuityHits, 1),
            Case::new("R3: ICMPv4 fragmentation needed about the flow follows its record to node 2", Setup::Keep, frame(&[], &icmp4), forward_to(2, &icmp4))
                .counts(s4, Stat::ContinuityHits, 1),
            Case::new("R3: another client's ACK (no record) follows the new ring to node 3", Setup::Keep, frame(&[], &other4), forward_to(3, &other4))
                .counts(s4, Stat::ContinuityHits, 0),
            Case::new("R3: node 2 fails: the flow moves to the ring's node 3 (no continuity to an unusable node)", Setup::Health(2, false), frame(&[], &ack4), forward_to(3, &ack4))
                .counts(s4, Stat::ContinuityHits, 0),
            Case::new("R3: a new SYN on the same 5-tuple follows the ring (node 3)", Setup::Health(2, true), frame(&[], &syn4), forward_to(3, &syn4))
                .counts(s4, Stat::ContinuityHits, 0),
            Case::new("R3: and that new connection's ACK follows its new record (node 3)", Setup::Keep, frame(&[], &ack4), forward_to(3, &ack4))
                .counts(s4, Stat::ContinuityHits, 0),
            Case::new("R3: IPv6 SYN with ring all-node-2 goes to node 2", Setup::Fresh(Ring::All(2)), frame(&[], &syn6), forward_to(2, &syn6)),
            Case::new("R3: ring now all-node-3: the IPv6 flow's ACK still goes to node 2", Setup::Publish(Ring::All(3)), frame(&[], &ack6), forward_to(2, &ack6))
                .counts(s6, Stat::ContinuityHits, 1),
            Case::new("R3: ICMPv6 packet too big about the IPv6 flow follows its record to node 2", Setup::Keep, frame(&[], &icmp6), forward_to(2, &icmp6))
                .counts(s6, Stat::ContinuityHits, 1),
        ];
        lab.run_cases(&cases)
    })
}

/// A peer whose next hop has no neighbour entry cannot be forwarded to: the packet is dropped
/// and counted as a fib failure (`bpf_fib_lookup` resolves no neighbour; userspace primes the
/// entries, see `neighbours.rs`).
#[test]
fn unresolved_next_hop_is_dropped_and_counted() -> anyhow::Result<()> {
    with_lab(|lab, ns| {
        ns.ip(&format!("neigh del {} dev fx0", underlay_v4(3)))?;
        ns.ip(&format!("neigh del {} dev fx0", underlay_v6(3)))?;
        let (vip4, vip6) = (v4(VIP_V4), v6(VIP_V6));
        let ack4 = tcp(v4(CLIENT4), 46000, vip4, 443).packet();
        let ack6 = tcp(v6(CLIENT6), 46000, vip6, 443).packet();
        let cases = vec![
            Case::new(
                "IPv4 VIP segment for node 3, no neighbour entry for 10.0.0.3: dropped",
                Setup::Fresh(Ring::All(3)),
                frame(&[], &ack4),
                Expect::Drop,
            )
            .counts(StatsOf::Vip(vip4, 443), Stat::FibFailures, 1)
            .counts(StatsOf::Vip(vip4, 443), Stat::Forwarded, 0),
            Case::new(
                "IPv6 VIP segment for node 3, no neighbour entry for fd00::3: dropped",
                Setup::Keep,
                frame(&[], &ack6),
                Expect::Drop,
            )
            .counts(StatsOf::Vip(vip6, 443), Stat::FibFailures, 1),
            Case::new(
                "node 2's entry is still there: forwarded",
                Setup::Fresh(Ring::All(2)),
                frame(&[], &ack4),
                forward_to(2, &ack4),
            )
            .counts(StatsOf::Vip(vip4, 443), Stat::FibFailures, 0),
        ];
        let mut failures = lab.run_cases(&cases)?;
        // The drop is also reported to the logs (aya-log), at most once a second per CPU.
        let records = balancer_user::dataplane::kernel_log::drain(&mut lab.loaded)?;
        let reported = records
            .iter()
            .filter(|r| r.starts_with("WARN") && r.contains("cannot forward to node 3"))
            .count();
        if reported == 0 || records.len() > 2 {
            failures.push(format!("kernel log records: {records:?}"));
        }
        Ok(failures)
    })
}

/// A peer routed through another interface than the one the packet came in on: the frame
/// leaves by XDP_REDIRECT to that interface, with its MAC as source and the gateway's as
/// destination, for both families. (Before the fix in `next_hop`, balancer-ebpf's tunnel.rs,
/// IPv4 was dropped as a fib failure: the kernel's IPv4 output lookup only looks at routes
/// through the ingress interface.)
#[test]
fn next_hop_through_another_interface_is_redirected() -> anyhow::Result<()> {
    with_lab(|lab, ns| {
        const FX2_MAC: [u8; 6] = [2, 0, 0, 0, 1, 1];
        const GATEWAY_MAC: [u8; 6] = [2, 0, 0, 0, 1, 0xfe];
        ns.ip(&format!("neigh del {} dev fx0", underlay_v4(3)))?;
        ns.ip(&format!("neigh del {} dev fx0", underlay_v6(3)))?;
        ns.ip("link add fx2 type veth peer name fx3")?;
        ns.ip("link set fx2 address 02:00:00:00:01:01")?;
        ns.ip("link set fx2 up")?;
        ns.ip("link set fx3 up")?;
        ns.ip("addr add 10.0.1.1/24 dev fx2")?;
        ns.ip("addr add fd00:1::1/64 dev fx2 nodad")?;
        ns.ip("neigh replace 10.0.1.254 lladdr 02:00:00:00:01:fe dev fx2 nud permanent")?;
        ns.ip("neigh replace fd00:1::fe lladdr 02:00:00:00:01:fe dev fx2 nud permanent")?;
        ns.ip(&format!(
            "route add {}/32 via 10.0.1.254 dev fx2",
            underlay_v4(3)
        ))?;
        ns.ip(&format!(
            "route add {}/128 via fd00:1::fe dev fx2",
            underlay_v6(3)
        ))?;
        let via_fx2 = Link {
            action: XDP_REDIRECT,
            src: FX2_MAC,
            dst: GATEWAY_MAC,
        };
        let (vip4, vip6) = (v4(VIP_V4), v6(VIP_V6));
        let ack4 = tcp(v4(CLIENT4), 46000, vip4, 443).tos(0x48).packet();
        let ack6 = tcp(v6(CLIENT6), 46000, vip6, 443)
            .flow_label(0x4_5678)
            .packet();
        let cases = vec![
            Case::new("IPv4 VIP segment for node 3, routed via fx2: XDP_REDIRECT with fx2's and the gateway's MACs", Setup::Fresh(Ring::All(3)), frame(&[Tag::Dot1Q(4)], &ack4), forward_via(via_fx2, 3, &ack4))
                .counts(StatsOf::Vip(vip4, 443), Stat::Forwarded, 1)
                .counts(StatsOf::Vip(vip4, 443), Stat::FibFailures, 0),
            Case::new("IPv6 VIP segment for node 3, routed via fx2: XDP_REDIRECT with fx2's and the gateway's MACs", Setup::Keep, frame(&[], &ack6), forward_via(via_fx2, 3, &ack6))
                .counts(StatsOf::Vip(vip6, 443), Stat::Forwarded, 1),
            Case::new("node 2 is still behind fx0: XDP_TX", Setup::Fresh(Ring::All(2)), frame(&[], &ack4), forward_to(2, &ack4)),
        ];
        lab.run_cases(&cases)
    })
}

/// The outer header adds 20 (IPv4) or 40 (IPv6) bytes. A packet that no longer fits the
/// path MTU to the owner once encapsulated is dropped and counted as a fib failure (the route
/// lookup answers "fragmentation needed"; the outer header has DF set, and the program sends
/// no ICMP error back): the underlay needs that much more MTU than the clients' path.
#[test]
fn encapsulated_packet_beyond_the_path_mtu_is_dropped_and_counted() -> anyhow::Result<()> {
    with_lab(|lab, ns| {
        ns.ip(&format!(
            "route add {}/32 dev fx0 mtu lock 1400",
            underlay_v4(3)
        ))?;
        // Locked: an unlocked IPv6 route MTU is not what the kernel's fib lookup checks against.
        ns.ip(&format!(
            "route add {}/128 dev fx0 mtu lock 1400",
            underlay_v6(3)
        ))?;
        let (vip4, vip6) = (v4(VIP_V4), v6(VIP_V6));
        // 1380 + 20 fits exactly; 1381 + 20 does not. IPv6: 1360 + 40 fits, 1361 + 40 not.
        let fits4 = tcp(v4(CLIENT4), 47000, vip4, 443)
            .payload(vec![7; 1380 - 40])
            .packet();
        let over4 = tcp(v4(CLIENT4), 47000, vip4, 443)
            .payload(vec![7; 1381 - 40])
            .packet();
        let fits6 = tcp(v6(CLIENT6), 47000, vip6, 443)
            .payload(vec![7; 1360 - 60])
            .packet();
        let over6 = tcp(v6(CLIENT6), 47000, vip6, 443)
            .payload(vec![7; 1361 - 60])
            .packet();
        let (s4, s6) = (StatsOf::Vip(vip4, 443), StatsOf::Vip(vip6, 443));
        let to3 = Setup::Fresh(Ring::All(3));
        let cases = vec![
            Case::new("1380-byte IPv4 packet for node 3 (path MTU 1400) is forwarded: 1400 bytes encapsulated", to3, frame(&[], &fits4), forward_to(3, &fits4)),
            Case::new("1381-byte IPv4 packet for node 3 (path MTU 1400) is dropped, fib failure", to3, frame(&[], &over4), Expect::Drop)
                .counts(s4, Stat::FibFailures, 1)
                .counts(s4, Stat::Forwarded, 0),
            Case::new("1360-byte IPv6 packet for node 3 (path MTU 1400) is forwarded: 1400 bytes encapsulated", to3, frame(&[], &fits6), forward_to(3, &fits6)),
            Case::new("1361-byte IPv6 packet for node 3 (path MTU 1400) is dropped, fib failure", to3, frame(&[], &over6), Expect::Drop)
                .counts(s6, Stat::FibFailures, 1),
        ];
        lab.run_cases(&cases)
    })
}

/// Until userspace names this node (CONFIG's self_node is 0), the program passes everything,
/// even what it would otherwise forward, drop or decapsulate (R4: nothing is steered before
/// the maps are filled). A ring whose slots name no node (no healthy node) delivers here.
#[test]
fn an_unconfigured_program_passes_everything() -> anyhow::Result<()> {
    with_lab(|lab, _ns| {
        let (vip4, vip6) = (v4(VIP_V4), v6(VIP_V6));
        let ack4 = tcp(v4(CLIENT4), 48000, vip4, 443).packet();
        let ack6 = tcp(v6(CLIENT6), 48000, vip6, 443).packet();
        let mut lying = ack4.clone();
        packets::set_ipv4_header_byte(&mut lying, 0, 0x44);
        let mut failures = lab.run_cases(&[Case::new(
            "R2: a ring whose slots name no node delivers VIP traffic here",
            Setup::Fresh(Ring::All(0)),
            frame(&[], &ack4),
            Expect::Pass,
        )
        .counts(StatsOf::Vip(vip4, 443), Stat::PassedLocal, 1)])?;
        lab.setup(Setup::Fresh(Ring::All(2)))?;
        let mut cfg = lab.loaded.maps.config()?;
        cfg.self_node = 0;
        lab.loaded.maps.set_config(cfg)?;
        let cases = vec![
            Case::new(
                "unconfigured: IPv4 VIP segment for node 2 passes",
                Setup::Keep,
                frame(&[], &ack4),
                Expect::Pass,
            )
            .counts(StatsOf::Vip(vip4, 443), Stat::Forwarded, 0),
            Case::new(
                "unconfigured: IPv6 VIP segment for node 2 passes",
                Setup::Keep,
                frame(&[], &ack6),
                Expect::Pass,
            ),
            Case::new(
                "unconfigured: a peer's encapsulated packet passes as it is",
                Setup::Keep,
                from_peer(2, &[], false, &ack4),
                Expect::Pass,
            ),
        ];
        // Every input here passes whole when unconfigured, so truncations must pass too; the
        // sweep's "drop truncated VIP packets" rule does not hold before configuration.
        for case in &cases {
            lab.setup(case.setup)?;
            match lab.run(&case.input) {
                Ok((XDP_PASS, out)) if out == case.input => eprintln!("ok    {}", case.name),
                Ok((action, _)) => failures.push(format!(
                    "{}: {} or a changed frame, expected XDP_PASS unchanged",
                    case.name,
                    action_name(action)
                )),
                Err(e) => failures.push(format!("{}: test run failed: {e:#}", case.name)),
            }
            for len in packets::ETH_LEN..case.input.len() {
                if !matches!(lab.run(&case.input[..len]), Ok((XDP_PASS, ref out)) if out.as_slice() == &case.input[..len])
                {
                    failures.push(format!(
                        "{}: truncated to {len}, not passed unchanged",
                        case.name
                    ));
                    break;
                }
            }
        }
        match lab.run(&frame(&[], &lying)) {
            Ok((XDP_PASS, _)) => eprintln!("ok    unconfigured: a lying IHL to the VIP passes"),
            other => failures.push(format!(
                "unconfigured: lying IHL to the VIP: {other:?}, expected XDP_PASS"
            )),
        }
        Ok(failures)
    })
}

/// Headers that lie about lengths: dropped and counted when addressed to a VIP (whatever the
/// ring says: here every slot names node 2, so a wrongly accepted packet would be forwarded);
/// passed untouched otherwise (R4).
#[test]
fn lying_lengths_are_dropped_for_vips() -> anyhow::Result<()> {
    with_lab(|lab, _ns| {
        let to2 = Setup::Fresh(Ring::All(2));
        let (c4, c6) = (v4(CLIENT4), v6(CLIENT6));
        let (vip4, vip6) = (v4(VIP_V4), v6(VIP_V6));
        let addr4 = StatsOf::Vip(vip4, 0);
        let addr6 = StatsOf::Vip(vip6, 0);
        let syn4 = tcp(c4, 45000, vip4, 443).syn().packet();
        let ack4 = tcp(c4, 45000, vip4, 443).packet();
        let syn6 = tcp(c6, 45000, vip6, 443).syn().packet();
        let ack6 = tcp(c6, 45000, vip6, 443).packet();

        let v4_lie = |base: &[u8], offset: usize, bytes: &[u8]| {
            let mut p = base.to_vec();
            packets::set_ipv4_header_bytes(&mut p, offset, bytes);
            p
        };
        let tcp_doff = |base: &[u8], l4: usize, doff: u8| {
            // Data offset in the high nibble of TCP byte 12 (checksum left as it was: the
            // program does not verify it, and the lie is the length).
            let mut p = base.to_vec();
            p[l4 + 12] = doff << 4 | (p[l4 + 12] & 0x0f);
            p
        };
        let v6_payload_len = |base: &[u8], len: u16| {
            let mut p = base.to_vec();
            p[4..6].copy_from_slice(&len.to_be_bytes());
            p
        };
        let len4 = ack4.len() as u16;
        let len6 = (ack6.len() - 40) as u16;
        let drop4 = |name: &str, ip: Vec<u8>| {
            Case::new(name, to2, frame(&[], &ip), Expect::Drop)
                .counts(addr4, Stat::DroppedMalformed, 1)
                .counts(StatsOf::Vip(vip4, 443), Stat::Forwarded, 0)
        };
        let drop6 = |name: &str, ip: Vec<u8>| {
            Case::new(name, to2, frame(&[], &ip), Expect::Drop)
                .counts(addr6, Stat::DroppedMalformed, 1)
                .counts(StatsOf::Vip(vip6, 443), Stat::Forwarded, 0)
        };

        let cases = vec![
            drop4(
                "IPv4 IHL 4 (< 5) to the VIP is dropped",
                v4_lie(&ack4, 0, &[0x44]),
            ),
            drop4(
                "IPv4 IHL 0 to the VIP is dropped",
                v4_lie(&ack4, 0, &[0x40]),
            ),
            drop4(
                "IPv4 IHL 15 on a 40-byte SYN (header longer than the packet) is dropped",
                v4_lie(&syn4, 0, &[0x4f]),
            ),
            drop4(
                "IPv4 IHL 15 with the total length of 60 in a 40-byte frame is dropped",
                v4_lie(&syn4, 0, &[0x4f, 0, 0, 60]),
            ),
            drop4(
                "IPv4 total length one more than the frame is dropped",
                v4_lie(&ack4, 2, &(len4 + 1).to_be_bytes()),
            ),
            drop4(
                "IPv4 total length 65535 is dropped",
                v4_lie(&ack4, 2, &[0xff, 0xff]),
            ),
            drop4(
                "IPv4 total length 19 (smaller than IHL) is dropped",
                v4_lie(&ack4, 2, &19u16.to_be_bytes()),
            ),
            drop4("IPv4 total length 0 is dropped", v4_lie(&ack4, 2, &[0, 0])),
            drop4(
                "IPv4 total length 39 (cuts the TCP header) is dropped",
                v4_lie(&ack4, 2, &39u16.to_be_bytes()),
            ),
            Case::new(
                "IPv4 version 6 in an IPv4 (0x0800) frame to the VIP is dropped",
                to2,
                packets::ethernet_raw(
                    ROUTER_MAC,
                    SELF_MAC,
                    &[],
                    EtherType::IPV4,
                    &v4_lie(&ack4, 0, &[0x65]),
                ),
                Expect::Drop,
            )
            .counts(addr4, Stat::DroppedMalformed, 1),
            drop4(
                "TCP data offset 4 (< 5) to the IPv4 VIP is dropped",
                tcp_doff(&ack4, 20, 4),
            ),
            drop4(
                "TCP data offset 0 to the IPv4 VIP is dropped",
                tcp_doff(&ack4, 20, 0),
            ),
            drop4(
                "TCP data offset 15 beyond the IPv4 packet is dropped",
                tcp_doff(&syn4, 20, 15),
            ),
            drop6(
                "TCP data offset 4 to the IPv6 VIP is dropped",
                tcp_doff(&ack6, 40, 4),
            ),
            drop6(
                "TCP data offset 15 beyond the IPv6 packet is dropped",
                tcp_doff(&syn6, 40, 15),
            ),
            drop6(
                "IPv6 payload length one more than the frame is dropped",
                v6_payload_len(&ack6, len6 + 1),
            ),
            drop6(
                "IPv6 payload length 65535 is dropped",
                v6_payload_len(&ack6, 0xffff),
            ),
            drop6(
                "IPv6 payload length 8 (cuts the TCP header) is dropped",
                v6_payload_len(&ack6, 8),
            ),
            drop6("IPv6 payload length 0 is dropped", v6_payload_len(&ack6, 0)),
            drop6(
                "IPv6 chain of 7 extension headers (more than walked) to the VIP is dropped",
                {
                    let mut payload = Vec::new();
                    for _ in 0..6 {
                        payload.extend(packets::ipv6_options_header(
                            IpNumber::IPV6_DESTINATION_OPTIONS,
                            8,
                        ));
                    }
                    payload.extend(packets::ipv6_options_header(IpNumber::TCP, 8));
                    payload.extend(tcp(c6, 45000, vip6, 443).segment());
                    packets::ipv6(
                        CLIENT6,
                        VIP_V6,
                        IpNumber::IPV6_DESTINATION_OPTIONS,
                        packets::V6Fields::default(),
                        &payload,
                    )
                },
            ),
            drop6(
                "IPv6 hop-by-hop header whose length runs past the packet is dropped",
                {
                    let mut hbh = packets::ipv6_options_header(IpNumber::TCP, 8);
                    hbh[1] = 200; // claims 1608 bytes
                    let payload: Vec<u8> = hbh
                        .into_iter()
                        .chain(tcp(c6, 45000, vip6, 443).segment())
                        .collect();
                    packets::ipv6(
                        CLIENT6,
                        VIP_V6,
                        IpNumber::IPV6_HEADER_HOP_BY_HOP,
                        packets::V6Fields::default(),
                        &payload,
                    )
                },
            ),
            Case::new(
                "decap: inner IPv4 total length beyond the outer packet is dropped",
                to2,
                from_peer(2, &[], false, &v4_lie(&ack4, 2, &(len4 + 1).to_be_bytes())),
                Expect::Drop,
            )
            .counts(StatsOf::Unattributed, Stat::DroppedMalformed, 1),
            Case::new(
                "decap: inner IPv6 payload length 8 (cuts TCP) is dropped",
                to2,
                from_peer(3, &[], false, &v6_payload_len(&ack6, 8)),
                Expect::Drop,
            )
            .counts(StatsOf::Unattributed, Stat::DroppedMalformed, 1),
            Case::new(
                "QinQ IPv4 IHL 4 to the VIP is dropped",
                to2,
                frame(&[Tag::Dot1Ad(1), Tag::Dot1Q(2)], &v4_lie(&ack4, 0, &[0x44])),
                Expect::Drop,
            )
            .counts(addr4, Stat::DroppedMalformed, 1),
            Case::new(
                "802.1Q IPv6 payload length beyond the frame to the VIP is dropped",
                to2,
                frame(&[Tag::Dot1Q(2)], &v6_payload_len(&ack6, len6 + 8)),
                Expect::Drop,
            )
            .counts(addr6, Stat::DroppedMalformed, 1),
            Case::new(
                "R4: IPv4 IHL 4 to a non-VIP address passes untouched",
                to2,
                frame(
                    &[],
                    &v4_lie(&tcp(c4, 45000, v4(OTHER4), 443).packet(), 0, &[0x44]),
                ),
                Expect::Pass,
            )
            .counts(addr4, Stat::DroppedMalformed, 0),
            Case::new(
                "R4: IPv6 payload length beyond the frame to a non-VIP address passes untouched",
                to2,
                frame(
                    &[],
                    &v6_payload_len(&tcp(c6, 45000, v6(OTHER6), 443).packet(), len6 + 1),
                ),
                Expect::Pass,
            ),
        ];
        lab.run_cases(&cases)
    })
}

/// An established TCP connection inside the namespace, over lo: `client`:ephemeral to
/// `vip`:`port`, both addresses added to lo. Its server side is the socket the program's
/// `bpf_skc_lookup_tcp` finds for packets of that flow.
struct LocalConnection {
    _listener: std::net::TcpListener,
    _client: std::net::TcpStream,
    _server: std::net::TcpStream,
    client_port: u16,
}

impl LocalConnection {
    /// Must run on a thread inside the fixture namespace.
    fn open(ns: &Netns, client: IpAddr, vip: IpAddr, port: u16) -> anyhow::Result<Self> {
        for addr in [client, vip] {
            match addr {
                IpAddr::V4(a) => ns.ip(&format!("addr add {a}/32 dev lo"))?,
                IpAddr::V6(a) => ns.ip(&format!("addr add {a}/128 dev lo nodad"))?,
            };
        }
        let listener = std::net::TcpListener::bind((vip, port))?;
        let client_stream = connect_from(client, SocketAddr::new(vip, port))?;
        let (server, _) = listener.accept()?;
        let client_port = client_stream.local_addr()?.port();
        Ok(Self {
            _listener: listener,
            _client: client_stream,
            _server: server,
            client_port,
        })
    }
}
