//! Per-packet cost of each path of the XDP program through BPF_PROG_TEST_RUN, next to the
//! minimal XDP_PASS program measured the same way in the same run.
//!
//! How: the kernel times the program itself (`duration`, nanoseconds, excluding the syscall).
//! With `repeat > 1` it runs the program again on the *same* buffer: a path that rewrites the
//! packet (encapsulation, decapsulation) would be timed once and then on its own output. So
//! every path is timed as many single runs (repeat = 1), averaging the kernel's figure; the
//! constant timer overhead is in the baseline too, so ratios compare like with like. For the
//! paths that leave the packet alone, the amortized figure (one call, large repeat) is also
//! reported.

use crate::report::Results;
use anyhow::{ensure, Context as _};
use aya::programs::{TestRun, TestRunOptions, Xdp};
use balancer_common::node::{active_slot, ring_select};
use balancer_tests::{fixture, packets};
use balancer_user::{
    config::Config,
    dataplane::{self, sync, LoadOptions},
};
use std::net::IpAddr;

/// One path: a packet, the ring it runs under, and the action it must take.
struct Path {
    name: &'static str,
    frame: Vec<u8>,
    /// Every ring slot names this node (1 is this node).
    owner: u32,
    action: u32,
    /// Leaves the packet as it is (so that the amortized repeat measure is valid).
    read_only: bool,
}

fn paths() -> Vec<Path> {
    const PASS: u32 = 2;
    const TX: u32 = 3;
    let client_v4: IpAddr = "192.0.2.7".parse().unwrap();
    let client_v6: IpAddr = "2001:db8::7".parse().unwrap();
    let (vip_v4, vip_v6) = (IpAddr::from(fixture::VIP_V4), IpAddr::from(fixture::VIP_V6));
    // Each path has its own flow: the connection table remembers a flow's node.
    let segment = |client, vip, port| {
        packets::Tcp::new(client, port, vip, 443)
            .payload(vec![0; 64])
            .packet()
    };
    let frame = |ip: &[u8]| packets::ethernet(fixture::PEER_MAC, fixture::SELF_MAC, &[], ip);
    let not_ours = segment(client_v4, "198.51.100.1".parse().unwrap(), 40000);
    let from_peer = packets::ipip(
        fixture::underlay_v4(2),
        fixture::underlay_v4(1),
        0,
        &segment(client_v4, vip_v4, 40005),
    );
    let path = |name, ip: &[u8], owner, action, read_only| Path {
        name,
        frame: frame(ip),
        owner,
        action,
        read_only,
    };
    vec![
        path("pass_through", &not_ours, 1, PASS, true),
        path(
            "local_v4",
            &segment(client_v4, vip_v4, 40001),
            1,
            PASS,
            true,
        ),
        path(
            "local_v6",
            &segment(client_v6, vip_v6, 40002),
            1,
            PASS,
            true,
        ),
        path(
            "forward_v4",
            &segment(client_v4, vip_v4, 40003),
            2,
            TX,
            false,
        ),
        path(
            "forward_v6",
            &segment(client_v6, vip_v6, 40004),
            2,
            TX,
            false,
        ),
        path("decap_v4", &from_peer, 1, PASS, false),
    ]
}

/// One path's figures: name, ours and the baseline (single runs), and the amortized pair.
type Measured = (String, f64, f64, Option<(f64, f64)>);

/// Mean of the kernel's timing over `calls` single runs, and the action of the last.
fn single_runs(prog: &Xdp, frame: &[u8], ctx: &[u8], calls: u32) -> anyhow::Result<(f64, u32)> {
    let mut out = vec![0u8; frame.len() + 256];
    let (mut total, mut action) = (0u128, 0);
    for _ in 0..calls {
        let r = prog.test_run(TestRunOptions {
            data_in: Some(frame),
            data_out: Some(&mut out),
            ctx_in: Some(ctx),
            ..TestRunOptions::new()
        })?;
        total += r.duration.as_nanos();
        action = r.return_value;
    }
    Ok((total as f64 / calls as f64, action))
}

/// The kernel's mean over one call of `repeat` runs on the same buffer.
fn amortized(prog: &Xdp, frame: &[u8], ctx: &[u8], repeat: u32) -> anyhow::Result<f64> {
    let mut out = vec![0u8; frame.len() + 256];
    let r = prog.test_run(TestRunOptions {
        data_in: Some(frame),
        data_out: Some(&mut out),
        ctx_in: Some(ctx),
        repeat,
        ..TestRunOptions::new()
    })?;
    Ok(r.duration.as_nanos() as f64)
}

pub fn run(results: &mut Results, quick: bool) -> anyhow::Result<()> {
    let (calls, repeat) = if quick {
        (2_000, 100_000)
    } else {
        (200_000, 10_000_000)
    };
    let ns = fixture::fixture_netns()?;
    let ifindex = ns.ifindex("fx0")?;
    let measured = ns.run_in(|| -> anyhow::Result<Vec<Measured>> {
        let mut loaded = dataplane::load(&LoadOptions {
            pin_dir: None,
            ring_size: fixture::RING_SIZE,
            conn_table_entries: 1024,
            directory_entries: 1024,
        })?;
        sync::apply(
            &Config::parse(fixture::CONFIG)?,
            &mut loaded.maps,
            sync::NewMembers::Up,
        )?;
        let mut rows = Vec::new();
        for path in paths() {
            let ctx = fixture::xdp_md(ifindex, path.frame.len());
            // Every slot names the path's owner, and the previous ring is the active one, as in
            // steady state (no second-chance lookups).
            loaded
                .maps
                .publish_ring(&vec![path.owner; fixture::RING_SIZE as usize])?;
            let mut cfg = loaded.maps.config()?;
            let active = active_slot(cfg.ring_select);
            cfg.ring_select = ring_select(active, active);
            loaded.maps.set_config(cfg)?;
            let prog = loaded.program();
            // Warm the connection table (the flow's entry exists, as for an established flow).
            single_runs(prog, &path.frame, &ctx, 10)?;
            let (ours, action) = single_runs(prog, &path.frame, &ctx, calls)?;
            ensure!(
                action == path.action,
                "{}: action {action}, expected {}",
                path.name,
                path.action
            );
            let baseline = single_runs(loaded.pass_program(), &path.frame, &ctx, calls)?.0;
            let amortized = if path.read_only {
                let prog = loaded.program();
                let ours = amortized(prog, &path.frame, &ctx, repeat)?;
                Some((
                    ours,
                    amortized(loaded.pass_program(), &path.frame, &ctx, repeat)?,
                ))
            } else {
                None
            };
            rows.push((path.name.to_string(), ours, baseline, amortized));
        }
        Ok(rows)
    })??;
    for (name, ours, baseline, amortized) in measured {
        results.compare(
            &format!("l4.xdp.{name}"),
            "ns/pkt",
            ours,
            "xdp_pass",
            baseline,
            "BPF_PROG_TEST_RUN, mean of single runs",
        );
        if let Some((ours, baseline)) = amortized {
            results.compare(
                &format!("l4.xdp.{name}.amortized"),
                "ns/pkt",
                ours,
                "xdp_pass",
                baseline,
                &format!("one run of repeat={repeat}"),
            );
        }
    }
    let mut loaded = dataplane::load(&LoadOptions {
        pin_dir: None,
        ring_size: fixture::RING_SIZE,
        conn_table_entries: 1024,
        directory_entries: 1024,
    })?;
    let insns = loaded
        .program()
        .info()?
        .verified_instruction_count()
        .context("verified instruction count")?;
    results.figure(
        "l4.xdp.verified_instructions",
        "insns",
        insns as f64,
        "instructions the verifier processed for balancer_xdp",
    );
    Ok(())
}
