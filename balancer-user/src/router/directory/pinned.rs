//! The directory as the pinned BPF map `DIRECTORY`. A name is looked up with one
//! `BPF_MAP_LOOKUP_ELEM`; the router keeps the names it looked up in a bounded cache
//! ([`PinnedDirectory::with_cache`]), each entry valid while the directory's [`Generation`] is
//! the one read before the lookup. Every write ([`PinnedDirectory::apply`]) bumps it, so a
//! change made by `balancer directory` is seen by the next request, without a restart and
//! without a syscall per request. Each name is replaced atomically by the kernel.
//!
//! A change made by hand (`bpftool map update` of `DIRECTORY`) is seen by the router once the
//! generation is bumped too (any `balancer directory` write does it).

use super::generation::Generation;
use super::plan::Plan;
use super::{Directory, DirectoryError, NameEntry};
use crate::router::decision::Mailbox;
use crate::router::version::Version;
use anyhow::Context as _;
use aya::maps::{HashMap, Map, MapData, MapError};
use balancer_common::directory::{field_text, text_field, MailboxEntry, MailboxName, FLAG_ALIAS};
use balancer_common::maps::{DIRECTORY, DIRECTORY_GENERATION};
use quick_cache::sync::Cache;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

/// A name looked up (found or not), with the generation read before its lookup.
type Cached = (u64, Option<Arc<Mailbox>>);

pub struct PinnedDirectory {
    map: HashMap<MapData, MailboxName, MailboxEntry>,
    generation: Generation,
    cache: Option<Cache<String, Cached>>,
    capacity: usize,
}

impl PinnedDirectory {
    /// Opens the map pinned under `pin_dir` by `balancer run` or `balancer xdp attach`.
    pub fn open(pin_dir: &Path) -> anyhow::Result<Self> {
        let open = |name: &str| {
            let path = pin_dir.join(name);
            MapData::from_pin(&path).with_context(|| {
                format!(
                    "opening the pinned map {}: is the data plane attached (`balancer run`)?",
                    path.display()
                )
            })
        };
        let directory = Map::from_map_data(open(DIRECTORY)?)?;
        Self::from_maps(directory, open(DIRECTORY_GENERATION)?)
    }

    /// The directory in `map`, with its generation counter in `generation`. No cache.
    pub fn from_maps(map: Map, generation: MapData) -> anyhow::Result<Self> {
        let Map::HashMap(data) = &map else {
            anyhow::bail!("{DIRECTORY} is not a hash map");
        };
        let capacity = data.info()?.max_entries() as usize;
        Ok(Self {
            map: HashMap::try_from(map)?,
            generation: Generation::map(generation)?,
            cache: None,
            capacity,
        })
    }

    /// Keeps up to `names` looked-up names in memory for [`Directory::resolve`] (0: none).
    pub fn with_cache(mut self, names: usize) -> Self {
        self.cache = (names > 0).then(|| Cache::new(names));
        self
    }

    /// The map's capacity, in names.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// The number of names (a walk over the keys).
    pub fn count(&self) -> anyhow::Result<usize> {
        let mut n = 0;
        for key in self.map.keys() {
            key?;
            n += 1;
        }
        Ok(n)
    }

    /// The entry of one name.
    pub fn get(&self, name: &str) -> anyhow::Result<Option<NameEntry>> {
        let Ok(key) = key(name) else {
            return Ok(None);
        };
        match self.map.get(&key, 0) {
            Ok(entry) => Ok(Some(
                decode(&entry).with_context(|| format!("the entry of {name}"))?,
            )),
            Err(MapError::KeyNotFound) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Every name and its entry. Entries that do not decode (written by something else) are
    /// reported as errors.
    pub fn entries(&self) -> anyhow::Result<BTreeMap<String, NameEntry>> {
        let mut all = BTreeMap::new();
        for item in self.map.iter() {
            let (key, entry) = item?;
            let name = field_text(&key.name).context("a directory key is not UTF-8")?;
            let entry = decode(&entry).with_context(|| format!("the entry of {name}"))?;
            all.insert(name.to_string(), entry);
        }
        Ok(all)
    }

    /// Writes, then deletes, what `plan` says, then bumps the generation (also when a write
    /// failed half-way: what was written is then seen).
    pub fn apply(&mut self, plan: &Plan) -> anyhow::Result<()> {
        let applied = self.write(plan);
        self.generation.bump();
        applied
    }

    fn write(&mut self, plan: &Plan) -> anyhow::Result<()> {
        for (name, entry) in &plan.writes {
            let value = encode(entry).with_context(|| format!("encoding {name}"))?;
            self.map
                .insert(key(name)?, value, 0)
                .with_context(|| format!("writing {name}"))?;
        }
        for name in &plan.deletes {
            match self.map.remove(&key(name)?) {
                Ok(()) | Err(MapError::KeyNotFound) => {}
                Err(e) => return Err(e).with_context(|| format!("removing {name}")),
            }
        }
        Ok(())
    }
}

impl Directory for PinnedDirectory {
    fn resolve(&self, name: &str) -> Result<Option<Arc<Mailbox>>, DirectoryError> {
        let lookup = || {
            self.get(name)
                .map(|entry| entry.map(|e| Arc::new(e.mailbox)))
                .map_err(|e| DirectoryError::Unavailable(format!("{e:#}")))
        };
        let Some(cache) = &self.cache else {
            return lookup();
        };
        // Read before the lookup: a change made meanwhile bumps it past this value.
        let generation = self.generation.current();
        if let Some((seen, mailbox)) = cache.get(name) {
            if seen == generation {
                return Ok(mailbox);
            }
        }
        let mailbox = lookup()?;
        cache.insert(name.to_string(), (generation, mailbox.clone()));
        Ok(mailbox)
    }
}

fn key(name: &str) -> anyhow::Result<MailboxName> {
    let name = text_field(name).map_err(|e| anyhow::anyhow!("name {name:?}: {e:?}"))?;
    Ok(MailboxName { name })
}

fn encode(entry: &NameEntry) -> anyhow::Result<MailboxEntry> {
    let field = |what: &str, text: &str| {
        anyhow::anyhow!("{what} {text:?} does not fit the directory's layout")
    };
    let m = &entry.mailbox;
    Ok(MailboxEntry {
        address: text_field(&m.address).map_err(|_| field("address", &m.address))?,
        site: text_field(&m.site).map_err(|_| field("site", &m.site))?,
        server: text_field(&m.server).map_err(|_| field("server", &m.server))?,
        version: u32::from(m.version.code()),
        flags: if entry.alias { FLAG_ALIAS } else { 0 },
    })
}

fn decode(entry: &MailboxEntry) -> anyhow::Result<NameEntry> {
    let text = |field: &[u8], what: &str| {
        field_text(field)
            .map(str::to_string)
            .with_context(|| format!("{what} is not UTF-8"))
    };
    let version = u8::try_from(entry.version)
        .ok()
        .and_then(Version::from_code)
        .with_context(|| format!("unknown version code {}", entry.version))?;
    Ok(NameEntry {
        mailbox: Mailbox {
            address: text(&entry.address, "address")?,
            site: text(&entry.site, "site")?,
            server: text(&entry.server, "server")?,
            version,
        },
        alias: entry.flags & FLAG_ALIAS != 0,
    })
}
