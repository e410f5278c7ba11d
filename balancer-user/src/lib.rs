//! Userspace of the edge balancer.
//!
//! ## Layout
//! - [`maglev`]: consistent-hash tables for the array (pure; unit-tested).
//! - [`dataplane`]: loads the XDP program, pins its maps, attaches and detaches it, and
//!   writes VIPs, nodes and tables into the maps.
//! - [`config`]: the node's configuration file (TOML).
//! - [`router`]: the L7 Client Access logic (identity, decision, proxy, HTTPS front).
//! - [`health`]: rise/fall verdicts of active health checks (upstreams and array peers).
//! - [`busy_poll`]: `balancer run --busy-poll`, spinning after wake-ups instead of sleeping.
//! - [`node`]: `balancer run`, the data plane and the router together, with reload and
//!   restart.
#![deny(unsafe_code)]

pub mod busy_poll;
pub mod config;
pub mod dataplane;
pub mod health;
pub mod maglev;
pub mod node;
pub mod router;
