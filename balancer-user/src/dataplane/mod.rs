//! The L4 data plane from userspace: load the XDP program, pin its maps, attach it, and keep
//! the maps in step with the configuration and the array's health.
//!
//! The kernel looks things up; this module computes: VIP entries, node entries and Maglev
//! tables are built here ([`sync`]) and written whole into the pinned maps ([`maps`]).
//! Attachments are pinned links, so steering goes on while no balancer process runs (R18),
//! and a new program replaces an attached one atomically ([`loader`]).

mod bpffs;
mod bring_up;
pub mod kernel_log;
pub mod loader;
pub mod maps;
pub mod neighbours;
mod object;
pub mod sync;

pub use bring_up::{bring_up, BringUpReport};
pub use loader::{attach, attach_pass, detach, load, AttachedMode, LoadOptions, Loaded};
pub use maps::DataplaneMaps;
pub use object::{BENCH_TRAFFIC_OBJECT, OBJECT};
