//! cat: copies the files named (or stdin) to stdout.
// A program beside the `exo-apps` library sees that library and its dependencies; the
// library target is the one that must use them all (see the root Cargo.toml).
#![allow(unused_crate_dependencies)]
#![no_std]
#![no_main]

extern crate alloc;

use exo_apps::tool::{each_chunk, out, Args};

fn main(args: &str) -> i32 {
    let a = Args::parse(args);
    let inputs = a.words.clone();
    if each_chunk(&a, &inputs, |_, chunk| out(chunk)) {
        0
    } else {
        1
    }
}

exo_libos::entry!(main);
