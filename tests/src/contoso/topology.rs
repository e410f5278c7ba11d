//! The default Contoso topology of MISSION.md, with the lab's addresses, and each node's
//! `balancer run` config.
//!
//! ```text
//!  client ns         router ns ("the Internet and the WAN")        node ns (one per node)
//!  c0 10.9.0.2  <->  r-c 10.9.0.1                                   eth0 10.10<s>.<n>.2/24
//!  lo 10.10.0.x      r-<node> 10.10<s>.<n>.1/24  <---------------> lo   the site's VIP
//!  (clients)         ECMP: each Internet-facing VIP over its nodes
//!                    r-srv 10.110.0.1  <->  servers ns: eth0 10.110.0.2, lo 10.110.1.x (back ends)
//! ```

use std::net::Ipv4Addr;

/// One site and its array.
pub struct SiteSpec {
    pub name: &'static str,
    /// `version` in the config.
    pub version: &'static str,
    /// The ExternalURL host, for Internet-facing sites.
    pub external_host: Option<&'static str>,
    /// The site's VIP (on every node's loopback).
    pub vip: Ipv4Addr,
    /// Third octet base of the node links: node n is 10.<net>.<n>.2.
    pub net: u8,
    pub nodes: u32,
    /// The site's mailbox back end (R7): name and address.
    pub backend: (&'static str, Ipv4Addr),
}

pub const SITES: [SiteSpec; 3] = [
    SiteSpec {
        name: "usa",
        version: "2010",
        external_host: Some("www.usa.contoso.com"),
        vip: Ipv4Addr::new(10, 200, 0, 10),
        net: 100,
        nodes: 2,
        backend: ("mbx-usa-1", Ipv4Addr::new(10, 110, 1, 1)),
    },
    SiteSpec {
        name: "europe",
        version: "2007sp1",
        external_host: Some("www.europe.contoso.com"),
        vip: Ipv4Addr::new(10, 200, 1, 10),
        net: 101,
        nodes: 2,
        backend: ("mbx-eu-1", Ipv4Addr::new(10, 110, 1, 2)),
    },
    SiteSpec {
        name: "asia",
        version: "2007sp1",
        external_host: None,
        vip: Ipv4Addr::new(10, 200, 2, 10),
        net: 102,
        nodes: 2,
        backend: ("mbx-asia-1", Ipv4Addr::new(10, 110, 1, 3)),
    },
];

/// The Exchange 2003 back end of the legacy site (R13), over HTTP.
pub const LEGACY_BACKEND: (&str, Ipv4Addr) = ("be-2003", Ipv4Addr::new(10, 110, 1, 4));

/// The directory (R6): at least one mailbox per site, some with aliases.
pub const MAILBOXES: &str = "\
address,aliases,site,server,version
alice@contoso.com,CONTOSO\\alice;alice.smith@contoso.com,usa,mbx-usa-1,2010
bob@contoso.com,CONTOSO\\bob,europe,mbx-eu-1,2007sp1
carol@contoso.com,CONTOSO\\carol,asia,mbx-asia-1,2007sp1
dave@contoso.com,CONTOSO\\dave,legacy,be-2003,2003
";

impl SiteSpec {
    pub fn node_names(&self) -> impl Iterator<Item = String> + '_ {
        (1..=self.nodes).map(move |n| format!("{}-{n}", self.name))
    }

    /// Node `n`'s (1-based) underlay address, and the router's end of its link.
    pub fn node_addr(&self, n: u32) -> (Ipv4Addr, Ipv4Addr) {
        (
            Ipv4Addr::new(10, self.net, n as u8, 2),
            Ipv4Addr::new(10, self.net, n as u8, 1),
        )
    }
}

pub fn site(name: &str) -> &'static SiteSpec {
    SITES
        .iter()
        .find(|s| s.name == name)
        .expect("a Contoso site")
}

/// The site and 1-based index of a node name (`usa-2`).
pub fn node(name: &str) -> (&'static SiteSpec, u32) {
    let (site_name, n) = name.rsplit_once('-').expect("<site>-<n>");
    (site(site_name), n.parse().expect("node number"))
}

/// Internal host name of a node or back end.
pub fn internal_host(name: &str) -> String {
    format!("{name}.contoso.internal")
}

/// Where the lab keeps a node's files.
pub struct NodePaths<'a> {
    pub dir: &'a std::path::Path,
    pub pin_dir: &'a std::path::Path,
}

/// `balancer run`'s config for node `name`: every site (R1: only its own array is steered),
/// the site's back end, the other sites' nodes by InternalURL, the legacy back end.
pub fn node_config(name: &str, paths: &NodePaths) -> String {
    let (me, _) = node(name);
    let dir = paths.dir.display();
    let mut certs = String::new();
    if let Some(host) = me.external_host {
        certs += &cert_section(host, paths.dir);
    }
    certs += &cert_section(&internal_host(name), paths.dir);
    let mut sites = String::new();
    for site in &SITES {
        sites += &format!(
            "\n[[sites]]\nname = \"{}\"\nversion = \"{}\"\n",
            site.name, site.version
        );
        if let Some(host) = site.external_host {
            sites += &format!("external_url = \"https://{host}\"\n");
        }
        for (i, node) in site.node_names().enumerate() {
            let (addr, _) = site.node_addr(i as u32 + 1);
            sites += &format!(
                "[[sites.nodes]]\nid = {}\nname = \"{node}\"\nunderlay_v4 = \"{addr}\"\n\
                 internal_url = \"https://{}\"\nconnect = \"{addr}:443\"\n",
                i + 1,
                internal_host(&node)
            );
        }
        if site.name == me.name {
            let (backend, addr) = site.backend;
            sites += &format!(
                "[[sites.backends]]\nname = \"{backend}\"\nurl = \"https://{}\"\nconnect = \"{addr}:443\"\n",
                internal_host(backend)
            );
        }
    }
    let (legacy, legacy_addr) = LEGACY_BACKEND;
    sites += &format!(
        "\n[[sites]]\nname = \"legacy\"\nversion = \"2003\"\nnodes = []\n\
         [[sites.backends]]\nname = \"{legacy}\"\nurl = \"http://{}\"\nconnect = \"{legacy_addr}:80\"\n",
        internal_host(legacy)
    );
    format!(
        r#"# Contoso lab: node {name} of site {site}
[node]
site = "{site}"
name = "{name}"

[dataplane]
interfaces = ["eth0"]
xdp_mode = "native"
pin_dir = "{pin}"
ring_size = 4099
conn_table_entries = 65536

[[dataplane.vips]]
address = "{vip}"

[dataplane.peer_checks]
interval = "1s"
timeout = "500ms"
fall = 2

[directory]
file = "{dir}/mailboxes.csv"

[router]
handover_socket = "{dir}/{name}.handover.sock"
cookie_secret = "contoso-lab-cookie-secret-0123456789"

[router.upstreams]
trust = ["{dir}/ca.pem"]
connect_timeout = "1s"
ejection = "5s"

[router.health]
interval = "1s"
timeout = "1s"

[router.limits]
drain_timeout = "2s"
{certs}{sites}"#,
        site = me.name,
        pin = paths.pin_dir.display(),
        vip = me.vip,
    )
}

fn cert_section(host: &str, dir: &std::path::Path) -> String {
    format!(
        "\n[[router.certificates]]\nnames = [\"{host}\"]\ncert = \"{0}/{host}.pem\"\nkey = \"{0}/{host}.key\"\n",
        dir.display()
    )
}
