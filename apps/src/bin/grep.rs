//! grep: the lines of the files named (or of stdin) that contain a text; `-v` those that
//! do not, `-c` only how many.
// A program beside the `exo-apps` library sees that library and its dependencies; the
// library target is the one that must use them all (see the root Cargo.toml).
#![allow(unused_crate_dependencies)]
#![no_std]
#![no_main]

extern crate alloc;

use alloc::format;

use exo_apps::tool::{each_chunk, out, Args, Lines};
use exo_libos::eprintln;

/// Whether `needle` occurs in `hay` (plain bytes, no patterns).
fn contains(hay: &[u8], needle: &[u8]) -> bool {
    needle.is_empty() || hay.windows(needle.len()).any(|w| w == needle)
}

fn main(args: &str) -> i32 {
    let mut a = Args::parse(args);
    let (invert, count) = (a.flag("-v"), a.flag("-c"));
    let Some((pattern, inputs)) = a.words.split_first() else {
        eprintln!("usage: grep [-v] [-c] TEXT [FILE...]");
        return 2;
    };
    let (inputs, needle) = (inputs.to_vec(), pattern.as_bytes());
    let (mut lines, mut found) = (Lines::new(), 0u64);
    let mut each = |line: &[u8]| {
        if contains(line, needle) != invert {
            found += 1;
            if !count {
                out(line);
                out(b"\n");
            }
        }
    };
    let ok = each_chunk(&a, &inputs, |_, chunk| lines.feed(chunk, &mut each));
    lines.finish(&mut each);
    if count {
        out(format!("{found}\n").as_bytes());
    }
    match (ok, found) {
        (false, _) => 2,
        (true, 0) => 1,
        (true, _) => 0,
    }
}

exo_libos::entry!(main);
