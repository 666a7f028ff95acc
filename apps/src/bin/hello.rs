//! hello: the smallest exo program. Prints its arguments and who it is.
// A program beside the `exo-apps` library sees that library and its dependencies; the
// library target is the one that must use them all (see the root Cargo.toml).
#![allow(unused_crate_dependencies)]
#![no_std]
#![no_main]

use exo_libos::println;

fn main(args: &str) -> i32 {
    println!("hello from env {:#x}: {args}", exo_libos::vm::me().0);
    0
}

exo_libos::entry!(main);
