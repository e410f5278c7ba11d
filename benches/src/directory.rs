//! Directory lookups (R6) with a million mailboxes in the BPF map: what a lookup in the map
//! costs (one `BPF_MAP_LOOKUP_ELEM` and decoding), and what the router pays per request with
//! its cache (a generation check and a cache hit) for a working set of active mailboxes, each
//! next to the same lookups in a process-local hash map (the `MemoryDirectory` the tests use)
//! holding the same names.

use crate::report::Results;
use balancer_user::{
    dataplane::{self, LoadOptions},
    router::{
        decision::Mailbox,
        directory::{
            plan::{self, Mode},
            records::MailboxRecord,
            Directory, MemoryDirectory, PinnedDirectory,
        },
        version::Version,
    },
};
use std::time::Instant;

/// The router's default cache size (`[router] directory_cache`), and the active mailboxes
/// looked up through it (fewer than it holds).
const CACHE_NAMES: usize = 64 * 1024;
const WORKING_SET: usize = 50_000;

fn address(i: usize) -> String {
    format!("user{i}@contoso.com")
}

pub fn run(results: &mut Results, quick: bool) -> anyhow::Result<()> {
    let mailboxes = if quick { 10_000 } else { 1_000_000 };
    let lookups = if quick { 20_000 } else { 1_000_000 };
    let mut loaded = dataplane::load(&LoadOptions {
        pin_dir: None,
        ring_size: 13,
        conn_table_entries: 16,
        directory_entries: mailboxes as u32 + 1024,
    })?;
    let mut take = |name| {
        loaded
            .ebpf
            .take_map(name)
            .ok_or_else(|| anyhow::anyhow!("the object has no map {name}"))
    };
    let map = take(balancer_common::maps::DIRECTORY)?;
    let aya::maps::Map::Array(generation) = take(balancer_common::maps::DIRECTORY_GENERATION)?
    else {
        anyhow::bail!("the directory's generation is not an array");
    };
    let mut pinned = PinnedDirectory::from_maps(map, generation)?;
    let records: Vec<MailboxRecord> = (0..mailboxes)
        .map(|i| MailboxRecord {
            address: address(i),
            aliases: Vec::new(),
            site: ["usa", "europe", "asia"][i % 3].into(),
            server: "mbx-1".into(),
            version: Version::Exchange2010,
        })
        .collect();
    let start = Instant::now();
    let planned = plan::import(
        &Default::default(),
        &records,
        Mode::Merge,
        pinned.capacity(),
    )?;
    pinned.apply(&planned)?;
    let import_s = start.elapsed().as_secs_f64();

    let mut memory = MemoryDirectory::default();
    for r in &records {
        let mailbox = Mailbox {
            address: r.address.clone(),
            site: r.site.clone(),
            server: r.server.clone(),
            version: r.version,
        };
        memory.insert(mailbox, &[]);
    }
    // The same pseudo-random names for both (a multiplicative walk over `among` mailboxes).
    let walk = |among: usize| -> Vec<String> {
        (0..lookups)
            .map(|i: usize| address(i.wrapping_mul(2_654_435_761) % among))
            .collect()
    };
    let ns_per_lookup = |directory: &dyn Directory, names: &[String]| -> anyhow::Result<f64> {
        let start = Instant::now();
        for name in names {
            anyhow::ensure!(directory.resolve(name)?.is_some(), "{name} not found");
        }
        Ok(start.elapsed().as_nanos() as f64 / names.len() as f64)
    };
    let names = walk(mailboxes);
    let in_map = ns_per_lookup(&pinned, &names)?;
    let in_memory = ns_per_lookup(&memory, &names)?;
    results.compare(
        "directory.lookup",
        "ns",
        in_map,
        "process hash map",
        in_memory,
        &format!(
            "{mailboxes} mailboxes; one BPF_MAP_LOOKUP_ELEM and decoding per lookup, next to an \
             AHashMap with the same names; lower is better"
        ),
    );
    let cached = pinned.with_cache(CACHE_NAMES);
    let working_set = WORKING_SET.min(mailboxes);
    let active = walk(working_set);
    ns_per_lookup(&cached, &active)?; // fills the cache
    let through_cache = ns_per_lookup(&cached, &active)?;
    results.compare(
        "directory.lookup_cached",
        "ns",
        through_cache,
        "process hash map",
        ns_per_lookup(&memory, &active)?,
        &format!(
            "the router's lookups of {working_set} active mailboxes among {mailboxes}, through \
             its cache of {CACHE_NAMES} names (a read of the memory-mapped generation and a \
             cache hit), next to an AHashMap holding every name; lower is better"
        ),
    );
    results.figure(
        "directory.import",
        "s",
        import_s,
        &format!("planning and writing {mailboxes} mailboxes into the map"),
    );
    Ok(())
}
