//! Names and sizes of the maps the XDP program declares.
//!
//! The eBPF crate names its statics exactly as below; userspace finds, sizes and pins the maps
//! by these names, and a test in `balancer-user` checks that the object declares every one.
//! All are pinned under one directory (default [`DEFAULT_PIN_DIR`]), one file per map, so that
//! `bpftool map dump pinned /sys/fs/bpf/balancer/<MAP>` works.

/// Default bpffs directory of the pinned maps and the pinned XDP links.
pub const DEFAULT_PIN_DIR: &str = "/sys/fs/bpf/balancer";

/// `HashMap<VipKey, VipInfo>`: the (virtual IP, port, protocol) triples that are steered.
pub const VIPS: &str = "VIPS";
/// `Array<NodeInfo>`, indexed by node id: the nodes of this site's array.
pub const NODES: &str = "NODES";
/// `Array<u32>` of [`crate::node::RING_SLOTS`] consistent-hash rings laid end to end; each
/// entry is a node id.
pub const RING: &str = "RING";
/// `Array<DataplaneConfig>` with one entry: this node's identity and the ring selector.
pub const CONFIG: &str = "CONFIG";
/// `LruHashMap<FlowKey, FlowEntry>`: established flows and the node that owns them.
pub const CONN_TABLE: &str = "CONN_TABLE";
/// `PerCpuArray<Counters>`, indexed by VIP index; the last entry counts what belongs to no VIP.
pub const VIP_STATS: &str = "VIP_STATS";
/// `PerCpuArray<Counters>`, indexed by the node id the packets were steered to.
pub const NODE_STATS: &str = "NODE_STATS";

/// `HashMap<MailboxName, MailboxEntry>`: the mailbox directory (R6). The XDP program does not
/// use it; it is declared in the object so that it is created, sized and pinned with the
/// others, and carries BTF for bpftool. See [`crate::directory`].
pub const DIRECTORY: &str = "DIRECTORY";
/// `Array<u64>` of one entry, memory-mapped (`BPF_F_MMAPABLE`): the directory's generation,
/// bumped by every writer of [`DIRECTORY`] once its change is made, so that the router's cache
/// of names drops what it read before (the XDP program does not use it).
pub const DIRECTORY_GENERATION: &str = "DIRECTORY_GENERATION";

/// `Array<RouterCounters>` of one entry: the L7 router's counters, written by `balancer run`
/// (the XDP program does not use it). See [`crate::router_stats`].
pub const ROUTER_STATS: &str = "ROUTER_STATS";

/// Every map, for pinning and for the object-contents check.
pub const ALL: [&str; 10] = [
    VIPS,
    NODES,
    RING,
    CONFIG,
    CONN_TABLE,
    VIP_STATS,
    NODE_STATS,
    DIRECTORY,
    DIRECTORY_GENERATION,
    ROUTER_STATS,
];

/// Name of the steering XDP program in the object.
pub const PROGRAM: &str = "balancer_xdp";
/// Name of the minimal XDP_PASS program, used as the benchmark baseline and on veth peers
/// (a veth end must run an XDP program to receive frames sent with XDP_TX / redirect).
pub const PASS_PROGRAM: &str = "balancer_xdp_pass";

/// Capacity of [`VIPS`] (each (address, port, protocol) triple is one entry).
pub const MAX_VIPS: u32 = 512;
/// Capacity of [`VIP_STATS`]: one entry per VIP index plus the unattributed entry.
pub const VIP_STATS_ENTRIES: u32 = MAX_VIPS + 1;
/// Index in [`VIP_STATS`] for packets that belong to no configured VIP (malformed, or
/// encapsulated packets whose inner packet is not ours).
pub const UNATTRIBUTED_STATS_INDEX: u32 = MAX_VIPS;
/// Capacity of [`NODES`] and [`NODE_STATS`]; node ids are `1..MAX_NODES` (0 means "none").
pub const MAX_NODES: u32 = 1024;
/// Default capacity of [`CONN_TABLE`]; userspace may set another at load time.
pub const DEFAULT_CONN_TABLE_ENTRIES: u32 = 262_144;
