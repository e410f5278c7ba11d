//! Typed handles on the data plane's maps, opened from the loaded object or from their pins.

use anyhow::{bail, Context as _};
use aya::maps::{Array, HashMap, Map, MapData, PerCpuArray};
use balancer_common::{
    conn::{FlowEntry, FlowKey},
    hash::{affinity_hash, FlowTuple},
    maps as names,
    node::{
        active_slot, previous_slot, ring_select, DataplaneConfig, NodeInfo, NO_NODE, RING_SLOTS,
    },
    stats::Counters,
    vip::{VipInfo, VipKey},
};
use nix::fcntl::{Flock, FlockArg};
use std::{fs::File, path::Path};

/// The maps of one loaded (or pinned) XDP program.
pub struct DataplaneMaps {
    pub vips: HashMap<MapData, VipKey, VipInfo>,
    pub nodes: Array<MapData, NodeInfo>,
    pub ring: Array<MapData, u32>,
    pub config: Array<MapData, DataplaneConfig>,
    pub conn_table: HashMap<MapData, FlowKey, FlowEntry>,
    pub vip_stats: PerCpuArray<MapData, Counters>,
    pub node_stats: PerCpuArray<MapData, Counters>,
    /// Held by a writer of pinned maps ([`DataplaneMaps::open_for_write`]).
    _writer: Option<Flock<File>>,
}

impl DataplaneMaps {
    /// Takes the maps out of a freshly loaded object.
    pub fn from_ebpf(ebpf: &mut aya::Ebpf) -> anyhow::Result<Self> {
        let mut take = |name: &str| {
            ebpf.take_map(name).with_context(|| {
                format!("the XDP object has no map {name}: rebuild with `cargo xtask build`")
            })
        };
        Self::from_maps(&mut take)
    }

    /// Opens the maps pinned under `pin_dir` by a running or earlier `balancer`.
    pub fn open(pin_dir: &Path) -> anyhow::Result<Self> {
        let mut open = |name: &str| {
            let path = pin_dir.join(name);
            let data = MapData::from_pin(&path).with_context(|| {
                format!("opening the pinned map {}: is the data plane attached (`balancer xdp attach`)?", path.display())
            })?;
            Ok(Map::from_map_data(data)?)
        };
        Self::from_maps(&mut open)
    }

    /// As [`DataplaneMaps::open`], holding the pin directory's writer lock until dropped: the
    /// table is published in several steps (write a free ring slot, then flip the selector),
    /// so two writers (`balancer run`'s peer checks, a reload, `balancer xdp health`) must
    /// not interleave. Waits for a running writer to finish.
    pub fn open_for_write(pin_dir: &Path) -> anyhow::Result<Self> {
        let lock = writer_lock(pin_dir)?;
        let mut maps = Self::open(pin_dir)?;
        maps._writer = Some(lock);
        Ok(maps)
    }

    fn from_maps(get: &mut dyn FnMut(&str) -> anyhow::Result<Map>) -> anyhow::Result<Self> {
        Ok(Self {
            vips: HashMap::try_from(get(names::VIPS)?)?,
            nodes: Array::try_from(get(names::NODES)?)?,
            ring: Array::try_from(get(names::RING)?)?,
            config: Array::try_from(get(names::CONFIG)?)?,
            conn_table: HashMap::try_from(get(names::CONN_TABLE)?)?,
            vip_stats: PerCpuArray::try_from(get(names::VIP_STATS)?)?,
            node_stats: PerCpuArray::try_from(get(names::NODE_STATS)?)?,
            _writer: None,
        })
    }

    pub fn config(&self) -> anyhow::Result<DataplaneConfig> {
        Ok(self.config.get(&0, 0)?)
    }

    pub fn set_config(&mut self, config: DataplaneConfig) -> anyhow::Result<()> {
        Ok(self.config.set(0, config, 0)?)
    }

    /// Entries the ring map holds per slot, from its size.
    pub fn ring_capacity(&self) -> u32 {
        self.ring.len() / RING_SLOTS
    }

    /// One ring slot's table.
    pub fn ring_table(&self, slot: u32, ring_size: u32) -> anyhow::Result<Vec<u32>> {
        (0..ring_size)
            .map(|i| Ok(self.ring.get(&(slot * ring_size + i), 0)?))
            .collect()
    }

    /// Makes `table` the active ring, atomically for the XDP program: it is written into a
    /// slot that is neither active nor previous, then the selector flips in one store, and the
    /// ring it replaces becomes the previous one (for second-chance forwarding). Returns
    /// whether anything changed (publishing the active table again keeps the previous ring).
    pub fn publish_ring(&mut self, table: &[u32]) -> anyhow::Result<bool> {
        let mut cfg = self.config()?;
        let size = cfg.ring_size;
        if table.len() != size as usize {
            bail!(
                "table has {} entries, the data plane's ring size is {size}",
                table.len()
            );
        }
        let active = active_slot(cfg.ring_select);
        let previous = previous_slot(cfg.ring_select);
        if self.ring_table(active, size)? == table {
            return Ok(false);
        }
        let free = (0..RING_SLOTS)
            .find(|s| *s != active && *s != previous)
            .expect("three slots");
        for (i, node) in table.iter().enumerate() {
            self.ring.set(free * size + i as u32, node, 0)?;
        }
        cfg.ring_select = ring_select(free, active);
        self.set_config(cfg)?;
        Ok(true)
    }

    /// The node that owns a packet's flow under the active ring (what the XDP program computes
    /// before its connection table).
    pub fn ring_owner(&self, affinity: u32, tuple: &FlowTuple) -> anyhow::Result<u32> {
        let cfg = self.config()?;
        if cfg.ring_size == 0 {
            return Ok(NO_NODE);
        }
        let hash = affinity_hash(cfg.hash_seed, affinity, tuple);
        let index = active_slot(cfg.ring_select) * cfg.ring_size + hash % cfg.ring_size;
        Ok(self.ring.get(&index, 0)?)
    }

    /// A VIP's counters, summed over CPUs.
    pub fn vip_counters(&self, index: u32) -> anyhow::Result<Counters> {
        Ok(sum(self.vip_stats.get(&index, 0)?.iter()))
    }

    /// A node's counters, summed over CPUs.
    pub fn node_counters(&self, id: u32) -> anyhow::Result<Counters> {
        Ok(sum(self.node_stats.get(&id, 0)?.iter()))
    }
}

/// The pin directory's writer lock (an exclusive `flock` on the directory), held while the
/// maps are written; waits for a running writer to finish.
pub fn writer_lock(pin_dir: &Path) -> anyhow::Result<Flock<File>> {
    let dir = File::open(pin_dir).with_context(|| {
        format!(
            "opening {}: is the data plane attached (`balancer xdp attach`)?",
            pin_dir.display()
        )
    })?;
    Flock::lock(dir, FlockArg::LockExclusive)
        .map_err(|(_, e)| e)
        .with_context(|| format!("locking {} for writing", pin_dir.display()))
}

/// Sums per-CPU counters.
pub fn sum<'a>(per_cpu: impl Iterator<Item = &'a Counters>) -> Counters {
    per_cpu.fold(Counters::default(), |mut t, c| {
        t.packets += c.packets;
        t.bytes += c.bytes;
        t.passed_local += c.passed_local;
        t.forwarded += c.forwarded;
        t.decapsulated += c.decapsulated;
        t.dropped_malformed += c.dropped_malformed;
        t.continuity_hits += c.continuity_hits;
        t.second_chance += c.second_chance;
        t.fib_failures += c.fib_failures;
        t
    })
}
