//! Host-side stub: the eBPF crate's code is in its binary target, built only for
//! `bpfel-unknown-none`. `balancer-user`'s build script depends on this library so that cargo
//! rebuilds the object when this crate changes.
#![no_std]
