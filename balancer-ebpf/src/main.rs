//! The XDP program of every node of a site's array (R1-R4 of MISSION.md).
//!
//! `balancer_xdp` steers TCP to the site's virtual IPs and ports: parse ([`parse`]), look the
//! VIP up, choose the owner ([`steer`]), then pass locally or encapsulate to the owner
//! ([`tunnel`]). Everything else passes untouched. Maps are in [`maps`], counters in
//! [`counters`], rare events for the logs in [`events`]; their types come from
//! `balancer-common`.
//!
//! `balancer_xdp_pass` only passes: the baseline in benchmarks, and the program put on veth
//! peers so that they accept frames sent with XDP_TX.
#![no_std]
#![no_main]

mod counters;
mod events;
mod maps;
mod next_hop;
mod object;
mod packet;
mod parse;
mod steer;
mod tunnel;

use aya_ebpf::{bindings::xdp_action, macros::xdp, programs::XdpContext};

#[xdp]
pub fn balancer_xdp(ctx: XdpContext) -> u32 {
    steer::balance(&ctx)
}

#[xdp]
pub fn balancer_xdp_pass(_ctx: XdpContext) -> u32 {
    xdp_action::XDP_PASS
}
