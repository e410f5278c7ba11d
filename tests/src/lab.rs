//! The L4 lab: one site's array in network namespaces, wired as in production.
//!
//! ```text
//!  client ns                  router ns                      node ns (one per node)
//!  lo: 10.10.x.y (clients)    r-c  10.9.0.1/30               eth0 10.100.i.2/24 (underlay)
//!  c0  10.9.0.2/30  <------>  r-n<i> 10.100.i.1/24  <------> lo   10.200.0.10/32 (the VIP)
//!                             ECMP 10.200.0.10 via every up node (L4 hash)
//! ```
//! The router spreads client packets over the nodes by ECMP, like an upstream router in front
//! of an array; each node's XDP program sends every packet to its client's owner (IPv4-in-IPv4
//! through the router), and the owner answers the client directly. Each node runs the real
//! data plane (`dataplane::bring_up`, as `balancer xdp attach` does) and an [`EchoServer`] on
//! the VIP standing in for the router. Router-side veth ends run the XDP_PASS program: a veth
//! end receives XDP_TX frames only if it runs an XDP program itself.

use crate::{
    client,
    echo::EchoServer,
    netns::{run, veth, Netns},
};
use anyhow::Context as _;
use balancer_common::{hash::FlowTuple, vip::PROTO_TCP};
use balancer_user::{
    config::Config,
    dataplane::{self, neighbours, sync, DataplaneMaps, LoadOptions, Loaded},
};
use std::{
    net::{IpAddr, Ipv4Addr, SocketAddr},
    path::PathBuf,
    process::Command,
    sync::atomic::{AtomicU32, Ordering},
};

/// The site's virtual IP in the lab.
pub const VIP: Ipv4Addr = Ipv4Addr::new(10, 200, 0, 10);
static NEXT_LAB: AtomicU32 = AtomicU32::new(0);

/// What to build.
pub struct LabSpec {
    /// Nodes that form the array at the start.
    pub nodes: u32,
    /// Extra node namespaces, wired but not yet in the array (for joins).
    pub spare_nodes: u32,
    /// Client source addresses.
    pub clients: u32,
}

pub struct LabNode {
    pub id: u32,
    pub name: String,
    pub ns: Netns,
    pin_dir: PathBuf,
    server: Vec<EchoServer>,
    /// In the router's ECMP set and in the array's configuration.
    pub active: bool,
}

pub struct Lab {
    pub clients: Vec<IpAddr>,
    pub nodes: Vec<LabNode>,
    /// Keeps the XDP_PASS program attached on the router's veth ends.
    _router_xdp: Loaded,
    pin_root: PathBuf,
    pub client: Netns,
    pub router: Netns,
}

/// The i-th client address (1-based): 10.10.<i / 250>.<i % 250 + 1>.
pub fn client_addr(i: u32) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(10, 10, (i / 250) as u8, (i % 250 + 1) as u8))
}

impl Lab {
    pub fn new(spec: LabSpec) -> anyhow::Result<Self> {
        crate::privileges::require_root_and_bpffs()?;
        let client = Netns::new("lab-c")?;
        let router = Netns::new("lab-r")?;
        wire_client_and_router(&client, &router)?;
        let clients: Vec<IpAddr> = (0..spec.clients).map(client_addr).collect();
        let batch: String = clients
            .iter()
            .map(|c| format!("addr add {c}/32 dev lo\n"))
            .collect();
        let mut add = Command::new("ip");
        add.args(["-n", client.name(), "-batch", "-"]);
        pipe(&mut add, &batch)?;

        let lab_id = format!(
            "{}-{}",
            std::process::id(),
            NEXT_LAB.fetch_add(1, Ordering::Relaxed)
        );
        let pin_root = PathBuf::from(format!("/sys/fs/bpf/balancer-lab-{lab_id}"));
        let mut nodes = Vec::new();
        for id in 1..=spec.nodes + spec.spare_nodes {
            let ns = Netns::new(&format!("lab-n{id}"))?;
            let router_if = format!("r-n{id}");
            veth(&ns, "eth0", &router, &router_if)?;
            for (n, i) in [(&ns, "eth0"), (&router, router_if.as_str())] {
                n.ip(&format!("link set {i} mtu 1600"))?; // room for the outer header
            }
            ns.ip(&format!("addr add 10.100.{id}.2/24 dev eth0"))?;
            router.ip(&format!("addr add 10.100.{id}.1/24 dev {router_if}"))?;
            ns.ip(&format!("route add default via 10.100.{id}.1"))?;
            ns.ip(&format!("addr add {VIP}/32 dev lo"))?;
            nodes.push(LabNode {
                id,
                name: format!("n{id}"),
                ns,
                pin_dir: pin_root.join(format!("n{id}")),
                server: Vec::new(),
                active: id <= spec.nodes,
            });
        }
        let router_ifs: Vec<String> = nodes.iter().map(|n| format!("r-n{}", n.id)).collect();
        let router_xdp = router.run_in(move || -> anyhow::Result<Loaded> {
            let mut loaded = dataplane::load(&LoadOptions {
                pin_dir: None,
                ring_size: 13,
                conn_table_entries: 16,
                directory_entries: 16,
            })?;
            for i in &router_ifs {
                loaded
                    .pass_program()
                    .attach(i, aya::programs::XdpMode::Driver)
                    .with_context(|| format!("XDP_PASS on {i}"))?;
            }
            Ok(loaded)
        })??;
        let mut lab = Self {
            clients,
            nodes,
            _router_xdp: router_xdp,
            pin_root,
            client,
            router,
        };
        for i in 0..lab.nodes.len() {
            if lab.nodes[i].active {
                lab.start_node(i, false)?;
            }
        }
        lab.route_vip()?;
        Ok(lab)
    }

    /// The configuration of `node` for the current array (active nodes, and `extra`).
    pub fn config(&self, node: &LabNode, extra: Option<u32>) -> anyhow::Result<Config> {
        let members: String = self
            .nodes
            .iter()
            .filter(|n| n.active || Some(n.id) == extra)
            .map(|n| {
                format!(
                    "[[sites.nodes]]\nid = {0}\nname = \"n{0}\"\nunderlay_v4 = \"10.100.{0}.2\"\n",
                    n.id
                )
            })
            .collect();
        Config::parse(&format!(
            "[node]\nsite = \"lab\"\nname = \"{}\"\n\n[dataplane]\ninterfaces = [\"eth0\"]\nxdp_mode = \"native\"\n\
             pin_dir = \"{}\"\n\n[[dataplane.vips]]\naddress = \"{VIP}\"\nports = [80, 443]\n\n[[sites]]\nname = \"lab\"\n{members}",
            node.name,
            node.pin_dir.display()
        ))
    }

    fn start_node(&mut self, i: usize, join: bool) -> anyhow::Result<()> {
        let config = self.config(&self.nodes[i], None)?;
        let node = &mut self.nodes[i];
        node.ns
            .run_in(|| dataplane::bring_up(&config, join).map(drop))??;
        for port in [80, 443] {
            node.server.push(EchoServer::start(
                &node.ns,
                SocketAddr::new(VIP.into(), port),
                &node.name,
            )?);
        }
        Ok(())
    }

    /// Points the router's ECMP route for the VIP at the active nodes.
    fn route_vip(&self) -> anyhow::Result<()> {
        let hops: String = self
            .nodes
            .iter()
            .filter(|n| n.active)
            .map(|n| format!(" nexthop via 10.100.{0}.2 dev r-n{0}", n.id))
            .collect();
        self.router.ip(&format!("route replace {VIP}/32{hops}"))?;
        Ok(())
    }

    pub fn node(&self, name: &str) -> &LabNode {
        self.nodes
            .iter()
            .find(|n| n.name == name)
            .expect("lab node")
    }

    /// The maps of a node, as its pins hold them.
    pub fn maps(&self, name: &str) -> anyhow::Result<DataplaneMaps> {
        DataplaneMaps::open(&self.node(name).pin_dir)
    }

    pub fn vip(&self, port: u16) -> SocketAddr {
        SocketAddr::new(VIP.into(), port)
    }

    /// One connection from each source to the VIP: the node that served it.
    pub fn who_serves(
        &self,
        sources: &[IpAddr],
        port: u16,
    ) -> anyhow::Result<Vec<anyhow::Result<String>>> {
        client::who_serves(&self.client, sources, self.vip(port))
    }

    /// The owner the active table names for a client, read from a node's maps.
    pub fn table_owner(
        &self,
        maps: &DataplaneMaps,
        client: IpAddr,
        port: u16,
    ) -> anyhow::Result<String> {
        let tuple = FlowTuple {
            src: sync::map_addr(client),
            dst: sync::map_addr(VIP.into()),
            sport_be: 0,
            dport_be: port.to_be(),
            proto: PROTO_TCP,
            is_v4: true,
        };
        let id = maps.ring_owner(balancer_common::vip::AFFINITY_SINGLE, &tuple)?;
        Ok(format!("n{id}"))
    }

    /// A node dies: its server stops, its link goes down, the router withdraws it, and the
    /// other nodes mark it down (only its clients move).
    pub fn fail_node(&mut self, name: &str) -> anyhow::Result<()> {
        let i = self
            .nodes
            .iter()
            .position(|n| n.name == name)
            .context("no such node")?;
        self.nodes[i].server.clear();
        self.router
            .ip(&format!("link set r-n{} down", self.nodes[i].id))?;
        self.nodes[i].active = false;
        self.route_vip()?;
        for n in self.nodes.iter().filter(|n| n.active) {
            let config = self.config(n, Some(self.nodes[i].id))?;
            sync::set_health(
                &config,
                &mut DataplaneMaps::open_for_write(&n.pin_dir)?,
                name,
                false,
                sync::By::Operator,
            )?;
        }
        Ok(())
    }

    /// A node joins the running array: added to every configuration (joining: the table does
    /// not change), brought up with `join`, marked up on every node (its share moves to it,
    /// one table change everywhere from the same previous table), then added to ECMP.
    pub fn join_node(&mut self, name: &str) -> anyhow::Result<()> {
        let i = self
            .nodes
            .iter()
            .position(|n| n.name == name)
            .context("no such node")?;
        let id = self.nodes[i].id;
        for n in self.nodes.iter().filter(|n| n.active) {
            let config = self.config(n, Some(id))?;
            let mut maps = DataplaneMaps::open_for_write(&n.pin_dir)?;
            sync::apply(&config, &mut maps, sync::NewMembers::Joining)?;
            n.ns.run_in(|| neighbours::prime(&config))?;
        }
        self.nodes[i].active = true;
        self.start_node(i, true)?;
        for n in &self.nodes {
            if n.active {
                let config = self.config(n, None)?;
                sync::set_health(
                    &config,
                    &mut DataplaneMaps::open_for_write(&n.pin_dir)?,
                    name,
                    true,
                    sync::By::Operator,
                )?;
            }
        }
        self.route_vip()
    }

    /// TCP resets a node's stack has sent (`Tcp: OutRsts` of its /proc/net/snmp).
    pub fn resets_sent(&self, name: &str) -> anyhow::Result<u64> {
        let snmp = self
            .node(name)
            .ns
            .run_in(|| std::fs::read_to_string("/proc/thread-self/net/snmp"))??;
        let mut tcp = snmp.lines().filter(|l| l.starts_with("Tcp:"));
        let (names, values) = (tcp.next().context("snmp")?, tcp.next().context("snmp")?);
        let i = names
            .split_whitespace()
            .position(|f| f == "OutRsts")
            .context("OutRsts")?;
        Ok(values
            .split_whitespace()
            .nth(i)
            .context("OutRsts value")?
            .parse()?)
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for n in &self.nodes {
            let _ = dataplane::detach(&n.pin_dir);
        }
        let _ = std::fs::remove_dir(&self.pin_root);
    }
}

/// The router namespace forwards (ECMP hashing on ports), and the client namespace reaches it
/// over `c0` (10.9.0.2/30), with routes both ways for the client addresses (10.10.0.0/16).
pub fn wire_client_and_router(client: &Netns, router: &Netns) -> anyhow::Result<()> {
    for (key, value) in [
        ("net.ipv4.ip_forward", "1"),
        ("net.ipv4.fib_multipath_hash_policy", "1"),
        ("net.ipv4.conf.all.rp_filter", "0"),
        ("net.ipv4.conf.default.rp_filter", "0"),
    ] {
        router.sysctl(key, value)?;
    }
    veth(client, "c0", router, "r-c")?;
    // A veth leaves TCP checksums to be finished by "hardware" (CHECKSUM_PARTIAL); a frame
    // a node forwards with XDP_TX loses that state and the owner would see a bad checksum.
    // Real NICs deliver complete checksums: make the lab's client compute them in full.
    run(client.command("ethtool").args(["-K", "c0", "tx", "off"]))?;
    client.ip("addr add 10.9.0.2/30 dev c0")?;
    router.ip("addr add 10.9.0.1/30 dev r-c")?;
    client.ip("route add default via 10.9.0.1")?;
    router.ip("route add 10.10.0.0/16 via 10.9.0.2")?;
    Ok(())
}

/// Runs `cmd` with `input` on its standard input.
fn pipe(cmd: &mut Command, input: &str) -> anyhow::Result<()> {
    use std::io::Write as _;
    let mut child = cmd.stdin(std::process::Stdio::piped()).spawn()?;
    child
        .stdin
        .take()
        .context("stdin")?
        .write_all(input.as_bytes())?;
    anyhow::ensure!(child.wait()?.success(), "{cmd:?} failed");
    Ok(())
}
