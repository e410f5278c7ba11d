//! The directory's generation: a counter in the pinned array `DIRECTORY_GENERATION`, mapped
//! into memory (`BPF_F_MMAPABLE`), so that reading it is a memory load, not a syscall.
//!
//! Every writer of the directory bumps it once its change is made ([`Generation::bump`]); the
//! router's cache keeps, with each name it read, the generation seen before reading it, and
//! uses the entry only while the generation is unchanged. An entry read before a change is
//! therefore never used after the change's bump. The kernel keeps the one value for every
//! process that maps it; `bpftool map dump pinned <pin_dir>/DIRECTORY_GENERATION` prints it.

use anyhow::Context as _;
use aya::maps::MapData;
use memmap2::{MmapOptions, MmapRaw};
use std::{
    os::fd::{AsFd as _, AsRawFd as _},
    sync::atomic::{AtomicU64, Ordering},
};

pub struct Generation {
    mapping: MmapRaw,
    /// The map, kept open while mapped.
    _map: MapData,
}

impl Generation {
    /// Maps the array's first (only) value.
    pub fn map(map: MapData) -> anyhow::Result<Self> {
        let fd = map.fd().as_fd().as_raw_fd();
        let mapping = MmapOptions::new()
            .len(std::mem::size_of::<u64>())
            .map_raw(fd)
            .context(
                "mapping the directory's generation into memory (the map must be an array \
                 created with BPF_F_MMAPABLE)",
            )?;
        Ok(Self { mapping, _map: map })
    }

    #[allow(unsafe_code)]
    fn counter(&self) -> &AtomicU64 {
        // SAFETY: the mapping is page-aligned, at least 8 bytes long, shared and writable, and
        // lives as long as `self`; every process reaches the value only through atomics.
        unsafe { AtomicU64::from_ptr(self.mapping.as_mut_ptr().cast()) }
    }

    pub fn current(&self) -> u64 {
        self.counter().load(Ordering::Acquire)
    }

    /// Marks every earlier read of the directory as out of date.
    pub fn bump(&self) {
        self.counter().fetch_add(1, Ordering::AcqRel);
    }
}
