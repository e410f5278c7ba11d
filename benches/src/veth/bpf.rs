//! XDP programs from raw instructions, without an object file: the few-instruction programs
//! of the veth bench (the generator, the sink) are assembled here and loaded, attached and run
//! (BPF_PROG_TEST_RUN in live-frames mode) with the `bpf` system call.

use anyhow::bail;
use nix::libc;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_PROG_TEST_RUN: libc::c_long = 10;
const BPF_LINK_CREATE: libc::c_long = 28;
const BPF_PROG_TYPE_XDP: u32 = 6;
/// `enum bpf_attach_type`'s BPF_XDP.
const BPF_XDP: u32 = 37;
const XDP_FLAGS_DRV_MODE: u32 = 1 << 2;
const BPF_F_TEST_XDP_LIVE_FRAMES: u32 = 1 << 1;

/// One BPF instruction (`struct bpf_insn`).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct Insn {
    code: u8,
    /// dst in the low nibble, src in the high one.
    regs: u8,
    off: i16,
    imm: i32,
}

fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Insn {
    Insn {
        code,
        regs: dst | src << 4,
        off,
        imm,
    }
}

pub fn mov_reg(dst: u8, src: u8) -> Insn {
    insn(0xbf, dst, src, 0, 0)
}
pub fn mov_imm(dst: u8, imm: i32) -> Insn {
    insn(0xb7, dst, 0, 0, imm)
}
pub fn add_imm(dst: u8, imm: i32) -> Insn {
    insn(0x07, dst, 0, 0, imm)
}
pub fn xor_imm(dst: u8, imm: i32) -> Insn {
    insn(0xa7, dst, 0, 0, imm)
}
pub fn and_imm(dst: u8, imm: i32) -> Insn {
    insn(0x57, dst, 0, 0, imm)
}
pub fn rsh_imm(dst: u8, imm: i32) -> Insn {
    insn(0x77, dst, 0, 0, imm)
}
pub fn add_reg(dst: u8, src: u8) -> Insn {
    insn(0x0f, dst, src, 0, 0)
}
pub fn load_u32(dst: u8, src: u8, off: i16) -> Insn {
    insn(0x61, dst, src, off, 0)
}
/// `*(size *)(dst + off) = src`, size 8, 4, 2 or 1 bytes.
pub fn store(size: usize, dst: u8, src: u8, off: i16) -> Insn {
    let code = match size {
        8 => 0x7b,
        4 => 0x63,
        2 => 0x6b,
        _ => 0x73,
    };
    insn(code, dst, src, off, 0)
}
/// `dst = imm64`: two instructions.
pub fn load_imm64(dst: u8, value: u64) -> [Insn; 2] {
    [
        insn(0x18, dst, 0, 0, value as u32 as i32),
        insn(0, 0, 0, 0, (value >> 32) as u32 as i32),
    ]
}
pub fn call(helper: i32) -> Insn {
    insn(0x85, 0, 0, 0, helper)
}
pub fn jump_if_greater(dst: u8, src: u8, off: i16) -> Insn {
    insn(0x2d, dst, src, off, 0)
}
pub fn exit() -> Insn {
    insn(0x95, 0, 0, 0, 0)
}

fn bpf(cmd: libc::c_long, attr: &mut [u64]) -> libc::c_long {
    // SAFETY: `attr` is a zero-padded `union bpf_attr` prefix of the given size, laid out
    // for `cmd`; the pointers inside it point at live buffers of the caller.
    unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            attr.as_mut_ptr(),
            std::mem::size_of_val(attr) as u32,
        )
    }
}

/// An XDP program loaded from raw instructions.
pub struct RawXdp {
    fd: OwnedFd,
}

impl RawXdp {
    pub fn load(name: &str, insns: &[Insn]) -> anyhow::Result<Self> {
        let license = c"GPL";
        let mut log = vec![0u8; 65536];
        let mut attr = [0u64; 16];
        attr[0] = u64::from(BPF_PROG_TYPE_XDP) | (insns.len() as u64) << 32;
        attr[1] = insns.as_ptr() as u64;
        attr[2] = license.as_ptr() as u64;
        attr[3] = 1 | (log.len() as u64) << 32; // log_level 1, log_size
        attr[4] = log.as_mut_ptr() as u64;
        let mut prog_name = [0u8; 16];
        prog_name[..name.len().min(15)].copy_from_slice(&name.as_bytes()[..name.len().min(15)]);
        attr[6] = u64::from_ne_bytes(prog_name[..8].try_into().expect("8 bytes"));
        attr[7] = u64::from_ne_bytes(prog_name[8..].try_into().expect("8 bytes"));
        let fd = bpf(BPF_PROG_LOAD, &mut attr);
        if fd < 0 {
            let err = std::io::Error::last_os_error();
            let end = log.iter().position(|b| *b == 0).unwrap_or(log.len());
            bail!(
                "loading the {name} XDP program: {err}\n{}",
                String::from_utf8_lossy(&log[..end])
            );
        }
        // SAFETY: a new descriptor the kernel just returned, owned by nobody else.
        Ok(Self {
            fd: unsafe { OwnedFd::from_raw_fd(fd as i32) },
        })
    }

    /// Attaches in native mode to the interface `ifindex` of the calling thread's network
    /// namespace, for as long as the returned link lives.
    pub fn attach(&self, ifindex: u32) -> anyhow::Result<OwnedFd> {
        let mut attr = [0u64; 8];
        attr[0] = self.fd.as_raw_fd() as u64 | u64::from(ifindex) << 32;
        attr[1] = u64::from(BPF_XDP) | u64::from(XDP_FLAGS_DRV_MODE) << 32;
        let fd = bpf(BPF_LINK_CREATE, &mut attr);
        if fd < 0 {
            bail!(
                "attaching an XDP program to ifindex {ifindex}: {}",
                std::io::Error::last_os_error()
            );
        }
        // SAFETY: a new descriptor the kernel just returned.
        Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
    }

    /// Runs the program in live-frames mode on `frame`, `repeat` times, as if received on
    /// `ifindex` (of the calling thread's network namespace).
    pub fn run_live(&self, frame: &[u8], ifindex: u32, repeat: u32) -> anyhow::Result<()> {
        let ctx = balancer_tests::fixture::xdp_md(ifindex, frame.len());
        let mut attr = [0u64; 10];
        attr[0] = self.fd.as_raw_fd() as u64;
        attr[1] = frame.len() as u64; // data_size_in, data_size_out 0
        attr[2] = frame.as_ptr() as u64;
        attr[4] = u64::from(repeat);
        attr[5] = ctx.len() as u64; // ctx_size_in, ctx_size_out 0
        attr[6] = ctx.as_ptr() as u64;
        attr[8] = u64::from(BPF_F_TEST_XDP_LIVE_FRAMES);
        attr[9] = 256; // batch_size: the largest
        if bpf(BPF_PROG_TEST_RUN, &mut attr) < 0 {
            bail!(
                "BPF_PROG_TEST_RUN in live-frames mode: {}",
                std::io::Error::last_os_error()
            );
        }
        Ok(())
    }
}
