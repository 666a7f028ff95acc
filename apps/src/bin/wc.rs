//! wc: counts the lines, words and bytes of the files named on its command line, or of
//! stdin — the example program of `docs/apps.md`.
// A program beside the `exo-apps` library sees that library and its dependencies; the
// library target is the one that must use them all (see the root Cargo.toml).
#![allow(unused_crate_dependencies)]
#![no_std]
#![no_main]

extern crate alloc;

use alloc::format;

use exo_apps::tool::{each_chunk, out, Args};

/// Lines, words and bytes, counted a chunk at a time.
#[derive(Default)]
struct Count {
    lines: u64,
    words: u64,
    bytes: u64,
    in_word: bool,
}

impl Count {
    fn feed(&mut self, chunk: &[u8]) {
        self.bytes += chunk.len() as u64;
        for &b in chunk {
            let space = b.is_ascii_whitespace();
            if b == b'\n' {
                self.lines += 1;
            }
            if !space && !self.in_word {
                self.words += 1;
            }
            self.in_word = !space;
        }
    }
}

fn main(args: &str) -> i32 {
    let a = Args::parse(args);
    if a.words.is_empty() {
        let mut c = Count::default();
        let ok = each_chunk(&a, &[], |_, chunk| c.feed(chunk));
        out(format!("{} {} {}\n", c.lines, c.words, c.bytes).as_bytes());
        return if ok { 0 } else { 1 };
    }
    let mut status = 0;
    for path in &a.words {
        let mut c = Count::default();
        if each_chunk(&a, core::slice::from_ref(path), |_, chunk| c.feed(chunk)) {
            out(format!("{} {} {} {path}\n", c.lines, c.words, c.bytes).as_bytes());
        } else {
            status = 1;
        }
    }
    status
}

exo_libos::entry!(main);
