//! hello: the smallest exo program. Prints its arguments and who it is.
#![no_std]
#![no_main]

use exo_libos::println;

fn main(args: &str) -> i32 {
    println!("hello from env {:#x}: {args}", exo_libos::vm::me().0);
    0
}

exo_libos::entry!(main);
