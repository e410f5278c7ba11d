//! Harness for the privileged tests and the demo: network namespaces, veth links, the L4 lab
//! topology, and packet fixtures. Everything it creates it removes on drop, panics included,
//! and it sends traffic only inside namespaces it created.
//!
//! ## Layout
//! - [`netns`]: a network namespace (created, entered, removed) and veth links.
//! - [`privileges`]: the loud check that a test can do what it needs (root, bpffs).
//! - [`packets`]: packet builders (Ethernet, VLAN, IPv4/IPv6, TCP, UDP, ICMP errors, ARP, the
//!   IP-in-IP outer headers) for the BPF_PROG_TEST_RUN fixtures, with valid checksums.
//! - [`lab`]: one site's array in namespaces (client, router, nodes running the data plane).
//! - [`echo`]: the stand-in for the router on a lab node (says who it is, echoes).
//! - [`client`]: lab clients connecting from chosen source addresses.
//! - [`pki`]: a CA made at test time, and the certificates it issues.
//! - [`upstream`]: a stand-in back end that says who it is (the router's tests, the lab).
//! - [`contoso`]: the default Contoso topology with `balancer run` on every node (the demo,
//!   `cargo xtask lab`).
//! - [`fixture`]: the namespace and configuration of the BPF_PROG_TEST_RUN fixtures and benches.

pub mod client;
pub mod contoso;
pub mod echo;
pub mod fixture;
pub mod lab;
pub mod netns;
pub mod packets;
pub mod pki;
pub mod privileges;
pub mod upstream;
