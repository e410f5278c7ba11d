//! What every eBPF object of this crate needs besides its programs: a panic handler (the
//! verifier rejects code that could reach one, so it is never called) and the license section
//! the kernel reads (bpf_fib_lookup and the socket lookups are GPL-only helpers).

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
