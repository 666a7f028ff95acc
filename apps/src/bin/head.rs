//! head: the first lines (`-n N`, default 10) of a file or of stdin. It stops reading
//! there: a program writing into its pipe then finds no reader.
// A program beside the `exo-apps` library sees that library and its dependencies; the
// library target is the one that must use them all (see the root Cargo.toml).
#![allow(unused_crate_dependencies)]
#![no_std]
#![no_main]

extern crate alloc;

use exo_apps::tool::{each_chunk, out, Args};
use exo_libos::{fd, sys};

fn main(args: &str) -> i32 {
    let mut a = Args::parse(args);
    let Some(n) = a.number("head", "-n", 10) else { return 2 };
    let inputs = a.words.clone();
    let mut left = n;
    each_chunk(&a, &inputs, |_, chunk| {
        let mut end = 0;
        while left > 0 && end < chunk.len() {
            if chunk[end] == b'\n' {
                left -= 1;
            }
            end += 1;
        }
        out(&chunk[..end]);
        if left == 0 {
            fd::close(fd::STDIN);
            sys::exit(0);
        }
    });
    0
}

exo_libos::entry!(main);
