//! The veth bench's traffic programs (bench-only: they live in the eBPF package's second
//! object, `bench-traffic`, never in the production object that `balancer` loads).
//!
//! - [`GENERATOR_PROGRAM`] is run through BPF_PROG_TEST_RUN in live-frames mode: each run
//!   writes [`TrafficPlan::frame`] over the packet, then, for each of its [`Rewrite`]s, 16
//!   random bits into a field and a compensating value into the field's *companion*, and
//!   returns XDP_TX.
//! - [`SINK_PROGRAM`] drops: a veth end takes XDP_TX frames only if it runs an XDP program.
//!
//! Userspace computes the plan (which fields, which companions, their sums) and writes it
//! whole into [`TRAFFIC_PLAN`]; the program only copies and applies it.
//!
//! ## The checksum trick
//! A rewritten field and its companion are both covered by the same checksums (IPv4 header,
//! TCP with its pseudo-header). One's complement sums do not depend on where the words lie,
//! so if the field takes `v` and the companion takes `sum + !v`, where `sum` is the
//! one's complement sum of the two in the template, the pair adds up to `sum` again (`v + !v`
//! is zero in one's complement) and every checksum stays valid without being recomputed.
//! The sum is the same in either byte order, so the words are taken as they lie in memory.

/// `Array<TrafficPlan>` of one entry: what the generator writes.
pub const TRAFFIC_PLAN: &str = "TRAFFIC_PLAN";
/// Name of the generator program in the `bench-traffic` object.
pub const GENERATOR_PROGRAM: &str = "bench_generator";
/// Name of the sink program (XDP_DROP) in the `bench-traffic` object.
pub const SINK_PROGRAM: &str = "bench_sink";

/// Length of every generated frame: Ethernet (14), IPv4 without options (20), TCP without
/// options or payload (20). Fixed, so that the program copies the template in whole words
/// after a single bounds check.
pub const FRAME_LEN: usize = 54;
/// Capacity of [`TrafficPlan::rewrites`].
pub const MAX_REWRITES: usize = 4;

/// One random field of the frame and the companion that keeps the checksums valid.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Rewrite {
    /// Offset in the frame of the 16-bit field that takes random bits (even, at most
    /// `FRAME_LEN - 2`). A byte: the verifier follows a variable offset into the packet only
    /// while it is small.
    pub field_offset: u8,
    /// Offset of its companion (even, at most `FRAME_LEN - 2`).
    pub companion_offset: u8,
    /// One's complement sum of the field and the companion in the template, as 16-bit words
    /// read in memory order.
    pub sum: u16,
    /// Which 16 bits of the run's random word the field takes: the word's right shift (0 or 16).
    pub random_shift: u8,
    pub _pad: u8,
}
const _: () = assert!(core::mem::size_of::<Rewrite>() == 6);

impl Rewrite {
    /// The field's value for the run's random word.
    #[inline(always)]
    pub const fn value(&self, random: u32) -> u16 {
        (random >> (self.random_shift & 31)) as u16
    }

    /// The companion's value when the field holds `value`: the pair sums to [`Self::sum`].
    #[inline(always)]
    pub const fn companion(&self, value: u16) -> u16 {
        ones_complement_add(self.sum, !value)
    }
}

/// The single entry of [`TRAFFIC_PLAN`] (aligned to 8: the frame is copied in whole words).
#[repr(C, align(8))]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TrafficPlan {
    /// The frame every run starts from, before the random fields.
    pub frame: [u8; FRAME_LEN],
    pub _pad0: [u8; 2],
    /// The first [`Self::rewrite_count`] are applied, in order.
    pub rewrites: [Rewrite; MAX_REWRITES],
    pub rewrite_count: u32,
    pub _pad1: u32,
}
const _: () = assert!(core::mem::size_of::<TrafficPlan>() == 88);

/// One's complement addition of 16-bit words (end-around carry), as in Internet checksums.
#[inline(always)]
pub const fn ones_complement_add(a: u16, b: u16) -> u16 {
    let sum = a as u32 + b as u32;
    ((sum & 0xffff) + (sum >> 16)) as u16
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_and_companion_keep_their_sum() {
        for (field, companion) in [(0u16, 0u16), (0x1234, 0xabcd), (0xffff, 0x0001)] {
            let rewrite = Rewrite {
                sum: ones_complement_add(field, companion),
                ..Rewrite::default()
            };
            for value in [0u16, 1, 0x8000, 0xfffe, 0xffff] {
                let sum = ones_complement_add(value, rewrite.companion(value));
                // One's complement sums are equal modulo 0xffff (0 and 0xffff are both zero).
                assert_eq!(
                    sum % 0xffff,
                    rewrite.sum % 0xffff,
                    "{field:#x} {companion:#x} {value:#x}"
                );
            }
        }
    }

    #[test]
    fn value_takes_the_chosen_half() {
        let low = Rewrite::default();
        let high = Rewrite {
            random_shift: 16,
            ..Rewrite::default()
        };
        assert_eq!(low.value(0x1234_5678), 0x5678);
        assert_eq!(high.value(0x1234_5678), 0x1234);
    }
}
