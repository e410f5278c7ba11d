//! Rebuild the eBPF object when the linker changes (it is not a cargo dependency).
use which::which;

fn main() {
    let bpf_linker = which("bpf-linker")
        .expect("bpf-linker not found on PATH: run `cargo xtask build`, which installs it");
    println!(
        "cargo:rerun-if-changed={}",
        bpf_linker.to_str().expect("utf-8 path")
    );
}
