//! Cost of building a Maglev table and publishing it into the ring map.

use crate::report::Results;
use balancer_user::{
    dataplane::{self, LoadOptions},
    maglev::{self, Member, MemberState},
};
use std::time::Instant;

fn members(n: u32) -> Vec<Member> {
    (1..=n)
        .map(|id| Member {
            id,
            name: format!("node-{id}"),
            state: MemberState::Up,
        })
        .collect()
}

pub fn run(results: &mut Results, quick: bool) -> anyhow::Result<()> {
    let size = balancer_common::node::DEFAULT_RING_SIZE;
    let rounds = if quick { 1 } else { 5 };
    let mut loaded = dataplane::load(&LoadOptions {
        pin_dir: None,
        ring_size: size,
        conn_table_entries: 1024,
        directory_entries: 1024,
    })?;
    let mut cfg = loaded.maps.config()?;
    cfg.ring_size = size;
    loaded.maps.set_config(cfg)?;
    for n in [2u32, 16, 256] {
        let m = members(n);
        let start = Instant::now();
        for _ in 0..rounds {
            std::hint::black_box(maglev::build(&m, size)?);
        }
        let build_ms = start.elapsed().as_secs_f64() * 1e3 / rounds as f64;
        // Publishing alternates two tables so that every round really writes a ring.
        let other = {
            let mut m = m.clone();
            m[0].state = MemberState::Down;
            maglev::build(&m, size)?
        };
        let table = maglev::build(&m, size)?;
        let start = Instant::now();
        for i in 0..rounds {
            loaded
                .maps
                .publish_ring(if i % 2 == 0 { &table } else { &other })?;
        }
        let publish_ms = start.elapsed().as_secs_f64() * 1e3 / rounds as f64;
        results.figure(
            &format!("l4.table.build.{n}_nodes"),
            "ms",
            build_ms,
            "Maglev, 65537 slots, in userspace",
        );
        results.figure(
            &format!("l4.table.publish.{n}_nodes"),
            "ms",
            publish_ms,
            "compare with the active ring, write a free slot, flip (one syscall per slot)",
        );
    }
    Ok(())
}
