//! The veth bench's traffic programs (`benches/src/veth`), in an object of their own
//! (`bench-traffic`): `balancer` never loads them. What they do, and the plan userspace
//! writes, are described in `balancer_common::bench_traffic`.
//!
//! - `bench_generator`: run through BPF_PROG_TEST_RUN in live-frames mode; writes the plan's
//!   frame over the packet, its random fields with their checksum companions, XDP_TX.
//! - `bench_sink`: XDP_DROP, on the generator's veth end.
//!
//! The generator's offered rate is the bench's ceiling, so it stays as cheap as a hand-written
//! program: one array lookup, one random word, the frame copied in whole words after a single
//! bounds check, then two 16-bit stores per random field.
#![no_std]
#![no_main]

#[path = "../object.rs"]
mod object;

use aya_ebpf::{
    bindings::xdp_action,
    btf_maps::Array,
    helpers::bpf_get_prandom_u32,
    macros::{btf_map, xdp},
    programs::XdpContext,
};
use balancer_common::bench_traffic::{TrafficPlan, FRAME_LEN};

#[btf_map]
static TRAFFIC_PLAN: Array<TrafficPlan, 1> = Array::new();

#[xdp]
pub fn bench_generator(ctx: XdpContext) -> u32 {
    generate(&ctx).unwrap_or(xdp_action::XDP_DROP)
}

#[xdp]
pub fn bench_sink(_ctx: XdpContext) -> u32 {
    xdp_action::XDP_DROP
}

/// Writes the planned frame over the packet (which must be [`FRAME_LEN`] bytes or longer),
/// then the random fields; `None` (drop) without a plan or with a short packet.
#[inline(always)]
fn generate(ctx: &XdpContext) -> Option<u32> {
    let plan = TRAFFIC_PLAN.get(0)?;
    // SAFETY: a helper without arguments.
    let random = unsafe { bpf_get_prandom_u32() };
    let data = ctx.data();
    if data + FRAME_LEN > data_end(ctx) {
        return None;
    }
    copy_frame(&plan.frame, data);
    // Over every slot, each checking the count: LLVM unrolls this loop, so each access to the
    // plan has a constant offset (a loop over the first `rewrite_count` slots only is one the
    // verifier cannot bound).
    for (i, rewrite) in plan.rewrites.iter().enumerate() {
        if i as u32 >= plan.rewrite_count {
            break;
        }
        let value = rewrite.value(random);
        store_u16(ctx, data, rewrite.field_offset, value)?;
        store_u16(
            ctx,
            data,
            rewrite.companion_offset,
            rewrite.companion(value),
        )?;
    }
    Some(xdp_action::XDP_TX)
}

/// Copies `frame` to the packet at `data`, checked to hold [`FRAME_LEN`] bytes: 8-byte words,
/// then a 4- and a 2-byte store for the tail (54 = 6 * 8 + 4 + 2), unrolled at compile time.
/// Word stores: the packet starts 8-byte aligned in the test run's page (and misaligned packet
/// stores are allowed on this architecture anyway); byte stores would cost 54 instructions.
#[inline(always)]
fn copy_frame(frame: &[u8; FRAME_LEN], data: usize) {
    const WORDS: usize = FRAME_LEN / 8;
    const _: () = assert!(
        FRAME_LEN - WORDS * 8 == 6,
        "the tail is one u32 and one u16"
    );
    let src = frame.as_ptr();
    // SAFETY: the frame is at offset 0 of the 8-aligned `TrafficPlan`, so every source offset
    // below is aligned for its width; the caller checked the destination bytes are in the
    // packet.
    unsafe {
        for i in 0..WORDS {
            let word = src.add(i * 8).cast::<u64>().read();
            (data as *mut u64).add(i).write(word);
        }
        let at = WORDS * 8;
        let tail4 = src.add(at).cast::<u32>().read();
        ((data + at) as *mut u32).write(tail4);
        let tail2 = src.add(at + 4).cast::<u16>().read();
        ((data + at + 4) as *mut u16).write(tail2);
    }
}

/// Stores `value` (as it lies in memory) at `offset` of the packet, if inside it. The check
/// is on the pointer itself: the verifier forgets the checked length of the packet once a
/// variable offset is added to its start (and follows one only while it is small: a byte).
#[inline(always)]
fn store_u16(ctx: &XdpContext, data: usize, offset: u8, value: u16) -> Option<()> {
    let at = data + usize::from(offset);
    if at + 2 > data_end(ctx) {
        return None;
    }
    // SAFETY: the two bytes at `at` are inside the packet (checked just above); the plan's
    // offsets are even, so the store is aligned like the packet's start.
    unsafe { (at as *mut u16).write(value) };
    Some(())
}

/// End of the packet, read afresh (volatile) for each check. Read once, LLVM computes
/// `data_end - 2` once and compares pointers with that, and the verifier refuses arithmetic on
/// the end pointer. (Offsets are not checked against the frame either: LLVM would then prove
/// the pointer's check redundant and drop it.)
#[inline(always)]
fn data_end(ctx: &XdpContext) -> usize {
    // SAFETY: `ctx.ctx` is the kernel's `xdp_md` for this run.
    unsafe { core::ptr::read_volatile(&(*ctx.ctx).data_end) as usize }
}
