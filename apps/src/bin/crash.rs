//! crash: a program that faults on purpose (for the shell's crash report and its tests).
// A program beside the `exo-apps` library sees that library and its dependencies; the
// library target is the one that must use them all (see the root Cargo.toml).
#![allow(unused_crate_dependencies)]
#![no_std]
#![no_main]

fn main(_args: &str) -> i32 {
    // SAFETY: deliberately unsound: nothing is mapped at address 8, so this faults, the
    // libOS reports the fault, and the program ends with the killed status.
    unsafe { core::ptr::dangling::<u64>().read_volatile() as i32 }
}

exo_libos::entry!(main);
