//! Next-hop resolution for forwarding. `bpf_fib_lookup` cannot resolve a neighbour: it fails
//! (and the packet is dropped and counted as a fib failure) until the kernel has an entry
//! for the next hop towards a peer. A node whose packets all belong to other nodes might never
//! send anything itself, so userspace primes the entries: one empty UDP datagram from this
//! node's underlay address to each peer's discard port makes the kernel resolve the next hop.
//! Entries then stay usable (stale entries are valid for the lookup).

use crate::config::Config;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use tracing::{debug, warn};

/// The discard port (RFC 863): the datagram carries nothing and asks for nothing.
const DISCARD_PORT: u16 = 9;

/// Sends one empty datagram to each peer of this node's array, per underlay family.
pub fn prime(config: &Config) {
    let me = config.this_node();
    for peer in config.site().nodes.iter().filter(|n| n.id != me.id) {
        let pairs = [
            (
                me.underlay_v4.map(IpAddr::V4),
                peer.underlay_v4.map(IpAddr::V4),
            ),
            (
                me.underlay_v6.map(IpAddr::V6),
                peer.underlay_v6.map(IpAddr::V6),
            ),
        ];
        for (from, to) in pairs {
            let (Some(from), Some(to)) = (from, to) else {
                continue;
            };
            let sent = UdpSocket::bind(SocketAddr::new(from, 0))
                .and_then(|s| s.send_to(&[], SocketAddr::new(to, DISCARD_PORT)));
            match sent {
                Ok(_) => debug!(peer = %peer.name, %to, "primed the next hop"),
                Err(e) => {
                    warn!(peer = %peer.name, %to, error = %e, "cannot reach peer to resolve its next hop")
                }
            }
        }
    }
}
