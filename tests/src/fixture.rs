//! The namespace and configuration the packet fixtures and the L4 benchmark run the XDP
//! program in with BPF_PROG_TEST_RUN.
//!
//! One namespace holds a veth pair fx0/fx1. This node (id 1) has underlay 10.0.0.1 and
//! fd00::1 on fx0 (MAC 02:00:00:00:00:01); peers 2 and 3 have permanent neighbour entries
//! (10.0.0.N / fd00::N at 02:00:00:00:00:0N), so `bpf_fib_lookup` answers deterministically
//! and forwarded frames leave by XDP_TX on fx0. The program runs with `ctx_in` naming fx0 as
//! the ingress interface.

use crate::{netns::Netns, privileges};
use std::net::{Ipv4Addr, Ipv6Addr};

/// This node's id.
pub const SELF: u32 = 1;
/// fx0's MAC address.
pub const SELF_MAC: [u8; 6] = [2, 0, 0, 0, 0, 1];
/// The MAC address client packets arrive from.
pub const PEER_MAC: [u8; 6] = [2, 0, 0, 0, 0, 0xfe];
/// A small prime ring, so that publishing is fast.
pub const RING_SIZE: u32 = 13;
pub const HASH_SEED: u32 = 7;
pub const VIP_V4: Ipv4Addr = Ipv4Addr::new(10, 200, 0, 10);
pub const VIP_V6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x200, 0, 0, 0, 0, 0, 0x10);

/// The configuration of node 1: VIPs on 80 and 443 with single affinity; nodes 1-3 in site
/// "lab", node 4 in another site (R1: never balanced to).
pub const CONFIG: &str = r#"
[node]
site = "lab"
name = "node-1"

[dataplane]
interfaces = ["fx0"]
ring_size = 13
hash_seed = 7
conn_table_entries = 1024

[[dataplane.vips]]
address = "10.200.0.10"
ports = [80, 443]
affinity = "single"

[[dataplane.vips]]
address = "fd00:200::10"
ports = [80, 443]
affinity = "single"

[[sites]]
name = "lab"

[[sites.nodes]]
id = 1
name = "node-1"
underlay_v4 = "10.0.0.1"
underlay_v6 = "fd00::1"

[[sites.nodes]]
id = 2
name = "node-2"
underlay_v4 = "10.0.0.2"
underlay_v6 = "fd00::2"

[[sites.nodes]]
id = 3
name = "node-3"
underlay_v4 = "10.0.0.3"
underlay_v6 = "fd00::3"

[[sites]]
name = "elsewhere"

[[sites.nodes]]
id = 4
name = "elsewhere-4"
underlay_v4 = "10.0.0.4"
underlay_v6 = "fd00::4"
"#;

/// The MAC address of node `id` (neighbour entries of the namespace).
pub fn node_mac(id: u32) -> [u8; 6] {
    [2, 0, 0, 0, 0, id as u8]
}

pub fn underlay_v4(id: u32) -> Ipv4Addr {
    Ipv4Addr::new(10, 0, 0, id as u8)
}

pub fn underlay_v6(id: u32) -> Ipv6Addr {
    Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, id as u16)
}

/// The namespace described in the module documentation.
pub fn fixture_netns() -> anyhow::Result<Netns> {
    privileges::require_root_and_bpffs()?;
    let ns = Netns::new("xdpfx")?;
    ns.ip("link add fx0 type veth peer name fx1")?;
    ns.ip("link set fx0 address 02:00:00:00:00:01")?;
    ns.ip("link set fx0 mtu 9000")?;
    ns.ip("link set fx1 mtu 9000")?;
    ns.ip("addr add 10.0.0.1/24 dev fx0")?;
    ns.ip("addr add fd00::1/64 dev fx0 nodad")?;
    ns.ip("link set fx0 up")?;
    ns.ip("link set fx1 up")?;
    // bpf_fib_lookup answers "forwarding disabled" for an interface without IP forwarding,
    // BPF_FIB_LOOKUP_OUTPUT or not (Linux 6.18); `dataplane::bring_up` sets the same.
    ns.sysctl("net.ipv4.conf.fx0.forwarding", "1")?;
    ns.sysctl("net.ipv6.conf.fx0.forwarding", "1")?;
    for peer in [2u32, 3] {
        let mac = node_mac(peer).map(|b| format!("{b:02x}")).join(":");
        ns.ip(&format!(
            "neigh replace {} lladdr {mac} dev fx0 nud permanent",
            underlay_v4(peer)
        ))?;
        ns.ip(&format!(
            "neigh replace {} lladdr {mac} dev fx0 nud permanent",
            underlay_v6(peer)
        ))?;
    }
    Ok(ns)
}

/// The `xdp_md` context for BPF_PROG_TEST_RUN of a `len`-byte frame received on `ifindex`
/// (data, data_end, data_meta, ingress_ifindex, rx_queue_index, egress_ifindex). The ingress
/// ifindex makes that interface the receiving one (route lookup, XDP_TX decision, socket
/// lookups in its namespace). `data_end` must be the input's length: with 0 the program sees
/// an empty packet and passes it, so every fixture would pass vacuously (Linux 6.18).
pub fn xdp_md(ifindex: u32, len: usize) -> [u8; 24] {
    let mut md = [0u8; 24];
    md[4..8].copy_from_slice(&(len as u32).to_ne_bytes());
    md[12..16].copy_from_slice(&ifindex.to_ne_bytes());
    md
}
