//! Directory lookups (R6) with a million mailboxes in the BPF map: what the router pays per
//! request to find a mailbox (one `BPF_MAP_LOOKUP_ELEM`), next to the same lookups in a
//! process-local hash map (the `MemoryDirectory` the tests use) holding the same names.

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
    let map = loaded
        .ebpf
        .take_map(balancer_common::maps::DIRECTORY)
        .ok_or_else(|| anyhow::anyhow!("the object has no directory map"))?;
    let mut pinned = PinnedDirectory::from_map(map)?;
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
    // The same pseudo-random names for both (a multiplicative walk over the mailboxes).
    let names: Vec<String> = (0..lookups)
        .map(|i: usize| address(i.wrapping_mul(2_654_435_761) % mailboxes))
        .collect();
    let ns_per_lookup = |directory: &dyn Directory| -> anyhow::Result<f64> {
        let start = Instant::now();
        for name in &names {
            anyhow::ensure!(directory.resolve(name)?.is_some(), "{name} not found");
        }
        Ok(start.elapsed().as_nanos() as f64 / names.len() as f64)
    };
    let in_map = ns_per_lookup(&pinned)?;
    let in_memory = ns_per_lookup(&memory)?;
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
    results.figure(
        "directory.import",
        "s",
        import_s,
        &format!("planning and writing {mailboxes} mailboxes into the map"),
    );
    Ok(())
}
