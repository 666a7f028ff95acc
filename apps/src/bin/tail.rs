//! tail: the last lines (`-n N`, default 10) of a file or of stdin.
// A program beside the `exo-apps` library sees that library and its dependencies; the
// library target is the one that must use them all (see the root Cargo.toml).
#![allow(unused_crate_dependencies)]
#![no_std]
#![no_main]

extern crate alloc;

use alloc::collections::VecDeque;
use alloc::vec::Vec;

use exo_apps::tool::{each_chunk, out, Args, Lines};

fn main(args: &str) -> i32 {
    let mut a = Args::parse(args);
    let Some(n) = a.number("tail", "-n", 10) else { return 2 };
    let n = n as usize;
    let inputs = a.words.clone();
    let mut last: VecDeque<Vec<u8>> = VecDeque::new();
    let mut lines = Lines::new();
    let mut keep = |line: &[u8]| {
        if n > 0 {
            if last.len() == n {
                last.pop_front();
            }
            last.push_back(line.to_vec());
        }
    };
    let ok = each_chunk(&a, &inputs, |_, chunk| lines.feed(chunk, &mut keep));
    lines.finish(&mut keep);
    for l in &last {
        out(l);
        out(b"\n");
    }
    if ok {
        0
    } else {
        1
    }
}

exo_libos::entry!(main);
