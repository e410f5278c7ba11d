//! The node's configuration file (TOML): this node, its site's array, and the data plane.
//!
//! Parsing refuses unknown fields; [`Config::validate`] then checks what types cannot, and
//! every error names the field (`sites[0].nodes[1].id`) and says what is wrong.
//! `config/example.toml` in the repository is an annotated example.

mod router;

pub use router::{Backend, RouterConfig, VdirUrls};

use crate::router::version::Version;
use anyhow::{bail, Context as _};
use balancer_common::{maps::MAX_NODES, node::DEFAULT_RING_SIZE};
use serde::Deserialize;
use std::{
    collections::HashSet,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    path::{Path, PathBuf},
};

/// The whole file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Which node of which site this is.
    pub node: ThisNode,
    /// The L4 data plane on this node.
    pub dataplane: Dataplane,
    /// The sites of the organisation; only this node's site is used by the data plane (R1).
    pub sites: Vec<Site>,
    /// The L7 router (`balancer run`); the `xdp` commands do not need it.
    pub router: Option<RouterConfig>,
    /// A directory file `balancer run` imports at start and at every reload.
    pub directory: Option<DirectoryFile>,
}

/// The mailbox directory's source of truth, if it is a file: `balancer run` imports it with
/// replacement (names not in the file are removed) at start and at every reload, so a node is
/// rebuilt from its config and this file (R18). Without it, the pinned directory is what
/// `balancer directory` last wrote.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DirectoryFile {
    pub file: PathBuf,
    /// `csv` or `jsonl`; guessed from the content if unset.
    pub format: Option<crate::router::directory::records::Format>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ThisNode {
    pub site: String,
    pub name: String,
}

/// Client affinity (R2), as Windows NLB named it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Affinity {
    /// Every connection from one client address to one node.
    #[default]
    Single,
    /// Every connection from one client /24 (IPv4) or /64 (IPv6) to one node.
    Network,
    /// Each connection placed on its own.
    None,
}

impl Affinity {
    /// The `AFFINITY_*` constant the XDP program understands.
    pub fn to_map_value(self) -> u32 {
        use balancer_common::vip::{AFFINITY_NETWORK, AFFINITY_NONE, AFFINITY_SINGLE};
        match self {
            Affinity::Single => AFFINITY_SINGLE,
            Affinity::Network => AFFINITY_NETWORK,
            Affinity::None => AFFINITY_NONE,
        }
    }
}

/// How to attach the XDP program.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum XdpMode {
    /// Native (driver) mode, falling back to generic with a warning.
    #[default]
    Auto,
    /// Native (driver) mode only.
    Native,
    /// Generic (skb) mode.
    Generic,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Dataplane {
    /// Interfaces the site's VIP traffic and the peers' encapsulated traffic arrive on.
    pub interfaces: Vec<String>,
    #[serde(default)]
    pub xdp_mode: XdpMode,
    /// bpffs directory of the pinned maps and links.
    #[serde(default = "default_pin_dir")]
    pub pin_dir: PathBuf,
    /// Maglev table size: a prime, about 100 times the number of nodes or more.
    #[serde(default = "default_ring_size")]
    pub ring_size: u32,
    /// Seed of the affinity hash: must be the same on every node of the array.
    #[serde(default)]
    pub hash_seed: u32,
    /// Capacity of the connection table (flows remembered per receiving node).
    #[serde(default = "default_conn_table_entries")]
    pub conn_table_entries: u32,
    /// Names (addresses and aliases) the mailbox directory can hold; the map is not
    /// preallocated, each name costs about 256 bytes of kernel memory.
    #[serde(default = "default_directory_entries")]
    pub directory_entries: u32,
    /// The site's virtual IPs.
    pub vips: Vec<Vip>,
    /// `balancer run`'s checks of the other nodes of the array.
    #[serde(default)]
    pub peer_checks: PeerChecks,
}

/// `balancer run` checks the other nodes of its array and marks them down or up in the
/// table (R3, R17): a failed node's clients move to the others, and only they move. Each
/// check is an HTTP `GET http://<underlay address>:<port><path>`, 2xx = pass (the router's
/// plain-HTTP listener answers it). Without `balancer run`, `balancer xdp health` does this.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PeerChecks {
    pub enabled: bool,
    pub port: u16,
    pub path: String,
    #[serde(with = "humantime_serde")]
    pub interval: std::time::Duration,
    #[serde(with = "humantime_serde")]
    pub timeout: std::time::Duration,
    /// Consecutive passes that bring a node (back) into the table.
    pub rise: u32,
    /// Consecutive failures that take a node out of the table.
    pub fall: u32,
}

impl Default for PeerChecks {
    fn default() -> Self {
        Self {
            enabled: true,
            port: 80,
            path: "/owa/healthcheck.htm".into(),
            interval: std::time::Duration::from_secs(2),
            timeout: std::time::Duration::from_secs(1),
            rise: 2,
            fall: 3,
        }
    }
}

fn default_pin_dir() -> PathBuf {
    PathBuf::from(balancer_common::maps::DEFAULT_PIN_DIR)
}
fn default_ring_size() -> u32 {
    DEFAULT_RING_SIZE
}
fn default_conn_table_entries() -> u32 {
    balancer_common::maps::DEFAULT_CONN_TABLE_ENTRIES
}
fn default_directory_entries() -> u32 {
    balancer_common::directory::DEFAULT_DIRECTORY_ENTRIES
}
fn default_ports() -> Vec<u16> {
    vec![80, 443]
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Vip {
    pub address: IpAddr,
    /// TCP ports steered on this address (R2: 80 and 443 by default).
    #[serde(default = "default_ports")]
    pub ports: Vec<u16>,
    #[serde(default)]
    pub affinity: Affinity,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Site {
    pub name: String,
    /// The Exchange version of the site's Client Access servers (R10, R12, R13).
    #[serde(default = "default_version")]
    pub version: Version,
    /// Base of the site's ExternalURLs (`https://www.usa.contoso.com`): `/owa`,
    /// `/Microsoft-Server-ActiveSync`, `/EWS/Exchange.asmx`, ... Unset: the site is not
    /// Internet-facing and is reached by CAS-CAS proxying (R8).
    pub external_url: Option<String>,
    /// Per-virtual-directory ExternalURLs that differ from `external_url`'s.
    #[serde(default)]
    pub external_urls: VdirUrls,
    /// Redirection to this site is allowed (switch off while its Internet link is down).
    #[serde(default = "yes")]
    pub redirect: bool,
    /// The site's array of Client Access nodes.
    pub nodes: Vec<Node>,
    /// Mailbox back ends (for this node's site, R7) or 2003 back-end servers (R13).
    #[serde(default)]
    pub backends: Vec<Backend>,
}

fn default_version() -> Version {
    Version::Exchange2010
}
fn yes() -> bool {
    true
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Node {
    /// Stable id in 1..1024, unique in the site (like NLB's host priority): the data plane's
    /// tables and connection records name nodes by it.
    pub id: u32,
    pub name: String,
    /// Underlay address for IPv4-in-IPv4 from peers; needed if any VIP is IPv4.
    pub underlay_v4: Option<Ipv4Addr>,
    /// Underlay address for IPv6-in-IPv6 from peers; needed if any VIP is IPv6.
    pub underlay_v6: Option<Ipv6Addr>,
    /// The node's Client Access InternalURL (`https://cas-asia-1.contoso.internal`): where
    /// other sites proxy to it (R8-R11).
    pub internal_url: Option<String>,
    /// Where to connect for `internal_url` (else its host is resolved).
    pub connect: Option<std::net::SocketAddr>,
    /// Per-virtual-directory InternalURLs whose host differs from `internal_url`'s (requests
    /// keep their path; these are resolved, `connect` applies to `internal_url` only).
    #[serde(default)]
    pub internal_urls: VdirUrls,
}

impl Config {
    /// Reads, parses and validates a file.
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading the config file {}", path.display()))?;
        Self::parse(&text).with_context(|| format!("config file {}", path.display()))
    }

    /// Parses and validates TOML text.
    pub fn parse(text: &str) -> anyhow::Result<Self> {
        let config: Config = toml::from_str(text)?;
        config.validate()?;
        Ok(config)
    }

    /// This node's site.
    pub fn site(&self) -> &Site {
        self.sites
            .iter()
            .find(|s| s.name == self.node.site)
            .expect("validated")
    }

    /// This node's entry in its site.
    pub fn this_node(&self) -> &Node {
        self.site()
            .nodes
            .iter()
            .find(|n| n.name == self.node.name)
            .expect("validated")
    }

    /// Checks what the types cannot; every error names the field.
    pub fn validate(&self) -> anyhow::Result<()> {
        let d = &self.dataplane;
        if d.interfaces.is_empty() {
            bail!("dataplane.interfaces: empty; name the interfaces the VIP traffic arrives on");
        }
        if !crate::maglev::is_prime(d.ring_size) || d.ring_size < 2 {
            bail!(
                "dataplane.ring_size: {} is not a prime (Maglev needs one; 65537 is the default)",
                d.ring_size
            );
        }
        if d.conn_table_entries == 0 {
            bail!("dataplane.conn_table_entries: must be at least 1");
        }
        if d.directory_entries == 0 {
            bail!("dataplane.directory_entries: must be at least 1");
        }
        if d.vips.is_empty() {
            bail!("dataplane.vips: empty; configure at least one virtual IP");
        }
        let mut seen = HashSet::new();
        for (i, vip) in d.vips.iter().enumerate() {
            if vip.ports.is_empty() {
                bail!("dataplane.vips[{i}].ports: empty; list the TCP ports to steer (80 and 443 by default)");
            }
            for port in &vip.ports {
                if *port == 0 {
                    bail!("dataplane.vips[{i}].ports: port 0 is not a port");
                }
                if !seen.insert((vip.address, *port)) {
                    bail!(
                        "dataplane.vips[{i}]: {}:{port} is configured twice",
                        vip.address
                    );
                }
            }
        }
        let checks = &d.peer_checks;
        if checks.enabled {
            if checks.port == 0 {
                bail!("dataplane.peer_checks.port: port 0 is not a port");
            }
            if !checks.path.starts_with('/') {
                bail!(
                    "dataplane.peer_checks.path: {:?} must start with /",
                    checks.path
                );
            }
            if checks.rise == 0 || checks.fall == 0 {
                bail!("dataplane.peer_checks: rise and fall must be at least 1");
            }
            if checks.interval.is_zero() || checks.timeout.is_zero() {
                bail!("dataplane.peer_checks: interval and timeout must be more than 0");
            }
        }
        let vip_count: usize = d.vips.iter().map(|v| v.ports.len()).sum();
        let addresses: HashSet<IpAddr> = d.vips.iter().map(|v| v.address).collect();
        if vip_count + addresses.len() > balancer_common::maps::MAX_VIPS as usize {
            bail!("dataplane.vips: {vip_count} (address, port) pairs on {} addresses exceed the data plane's {} entries", addresses.len(), balancer_common::maps::MAX_VIPS);
        }
        let mut site_names = HashSet::new();
        for (s, site) in self.sites.iter().enumerate() {
            if !site_names.insert(&site.name) {
                bail!("sites[{s}].name: site {:?} is defined twice", site.name);
            }
            let (mut ids, mut names) = (HashSet::new(), HashSet::new());
            for (n, node) in site.nodes.iter().enumerate() {
                if node.id == 0 || node.id >= MAX_NODES {
                    bail!(
                        "sites[{s}].nodes[{n}].id: {} is out of range 1..{}",
                        node.id,
                        MAX_NODES
                    );
                }
                if !ids.insert(node.id) {
                    bail!(
                        "sites[{s}].nodes[{n}].id: {} is used twice in site {:?}",
                        node.id,
                        site.name
                    );
                }
                // Node names travel in the comma-separated via header (R20 loop detection).
                if node.name.is_empty()
                    || !node.name.bytes().all(|b| b.is_ascii_graphic() && b != b',')
                {
                    bail!(
                        "sites[{s}].nodes[{n}].name: {:?} must be printable ASCII with no space or comma (the X-Balancer-Via header lists it)",
                        node.name
                    );
                }
                if !names.insert(&node.name) {
                    bail!(
                        "sites[{s}].nodes[{n}].name: {:?} is used twice in site {:?}",
                        node.name,
                        site.name
                    );
                }
            }
        }
        let Some((s, site)) = self
            .sites
            .iter()
            .enumerate()
            .find(|(_, s)| s.name == self.node.site)
        else {
            bail!("node.site: {:?} is not one of the sites", self.node.site);
        };
        if !site.nodes.iter().any(|n| n.name == self.node.name) {
            bail!(
                "node.name: {:?} is not a node of site {:?}",
                self.node.name,
                site.name
            );
        }
        let needs_v4 = d.vips.iter().any(|v| v.address.is_ipv4());
        let needs_v6 = d.vips.iter().any(|v| v.address.is_ipv6());
        for (n, node) in site.nodes.iter().enumerate() {
            if needs_v4 && node.underlay_v4.is_none() {
                bail!("sites[{s}].nodes[{n}].underlay_v4: missing; IPv4 VIPs are forwarded IPv4-in-IPv4 between nodes");
            }
            if needs_v6 && node.underlay_v6.is_none() {
                bail!("sites[{s}].nodes[{n}].underlay_v6: missing; IPv6 VIPs are forwarded IPv6-in-IPv6 between nodes");
            }
        }
        self.validate_router()
    }
}

#[cfg(test)]
mod tests;
