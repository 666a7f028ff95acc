//! The exo chainloader: a `kernel8.img` that waits on the UART for the real kernel.
//!
//! It runs with the MMU off at the exception level it was entered at (so the kernel it
//! loads sees the entry state it would have seen from the firmware: same EL, x0 = the DTB).
//! `start.S` moves it out of the way (see `exo_chainload::place`), it finds its UART from the
//! device tree, then serves transfers with `exo_chainload::target::serve` until one checks
//! out, and jumps. Nothing here takes a lock or uses an atomic read-modify-write: with the
//! MMU off all memory is Device memory, where exclusive accesses are not guaranteed.
#![cfg_attr(target_os = "none", no_std)]
#![cfg_attr(target_os = "none", no_main)]

#[cfg(target_os = "none")]
mod board;
#[cfg(target_os = "none")]
mod uart;

#[cfg(not(target_os = "none"))]
fn main() {
    eprintln!("exo-chainloader runs on the board; `cargo xtask build` makes target/exo/chainloader.img");
}
