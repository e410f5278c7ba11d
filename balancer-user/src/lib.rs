//! Userspace of the edge balancer.
//!
//! ## Layout
//! - [`maglev`]: consistent-hash tables for the array (pure; unit-tested).
//! - [`dataplane`]: loads the XDP program, pins its maps, attaches and detaches it, and
//!   writes VIPs, nodes and tables into the maps.
//! - [`config`]: the node's configuration file (TOML).
//! - [`router`]: the L7 Client Access logic (identity, decision).
#![deny(unsafe_code)]

pub mod config;
pub mod dataplane;
pub mod maglev;
pub mod router;
