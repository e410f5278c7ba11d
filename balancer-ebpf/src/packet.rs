//! Bounds-checked access to the packet: the only place that turns offsets into pointers.

use aya_ebpf::programs::XdpContext;
use core::mem::size_of;

/// Start of the packet. A volatile load, so LLVM cannot hoist it into a caller and pass it
/// across a BPF-to-BPF call as a 32-bit value: the verifier refuses the zero-extension shift
/// that would then be applied to a packet pointer.
#[inline(always)]
fn data(ctx: &XdpContext) -> usize {
    // SAFETY: `ctx.ctx` is the kernel's `xdp_md` for this run.
    unsafe { core::ptr::read_volatile(&(*ctx.ctx).data) as usize }
}

/// End of the packet (volatile for the same reason as [`data`]).
#[inline(always)]
fn data_end(ctx: &XdpContext) -> usize {
    // SAFETY: as above.
    unsafe { core::ptr::read_volatile(&(*ctx.ctx).data_end) as usize }
}

/// A pointer to a `T` at `offset` bytes into the packet, if the packet is long enough.
#[inline(always)]
pub fn ptr_at<T>(ctx: &XdpContext, offset: usize) -> Option<*const T> {
    let start = data(ctx);
    if start + offset + size_of::<T>() > data_end(ctx) {
        return None;
    }
    Some((start + offset) as *const T)
}

/// A mutable pointer to a `T` at `offset` bytes into the packet, if the packet is long enough.
#[inline(always)]
pub fn ptr_at_mut<T>(ctx: &XdpContext, offset: usize) -> Option<*mut T> {
    ptr_at::<T>(ctx, offset).map(|p| p as *mut T)
}

/// Reads a `T` (a plain header struct) at `offset`.
#[inline(always)]
pub fn read<T: Copy>(ctx: &XdpContext, offset: usize) -> Option<T> {
    // SAFETY: `ptr_at` checked that `size_of::<T>()` bytes at `offset` are inside the packet;
    // header structs are byte arrays, so any alignment is fine with `read_unaligned`.
    ptr_at::<T>(ctx, offset).map(|p| unsafe { p.read_unaligned() })
}

/// Length of the packet in bytes.
#[inline(always)]
pub fn len(ctx: &XdpContext) -> usize {
    data_end(ctx) - data(ctx)
}

/// A 16-byte address as four words in memory order: what the kernel's `__be32[4]` fields
/// (socket tuples, fib lookups) hold.
#[inline(always)]
pub fn address_words(addr: &[u8; 16]) -> [u32; 4] {
    [
        u32::from_ne_bytes([addr[0], addr[1], addr[2], addr[3]]),
        u32::from_ne_bytes([addr[4], addr[5], addr[6], addr[7]]),
        u32::from_ne_bytes([addr[8], addr[9], addr[10], addr[11]]),
        u32::from_ne_bytes([addr[12], addr[13], addr[14], addr[15]]),
    ]
}
