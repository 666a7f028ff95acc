//! hexdump: a file (or stdin) as offsets, hex bytes and printable characters, the way
//! `hexdump -C` shows them.
// A program beside the `exo-apps` library sees that library and its dependencies; the
// library target is the one that must use them all (see the root Cargo.toml).
#![allow(unused_crate_dependencies)]
#![no_std]
#![no_main]

extern crate alloc;

use alloc::string::String;
use core::fmt::Write;

use exo_apps::tool::{each_chunk, out, Args};

fn line(offset: u64, bytes: &[u8]) -> String {
    let mut s = String::new();
    let _ = write!(s, "{offset:08x} ");
    for i in 0..16 {
        if i == 8 {
            s.push(' ');
        }
        match bytes.get(i) {
            Some(b) => {
                let _ = write!(s, " {b:02x}");
            }
            None => s.push_str("   "),
        }
    }
    s.push_str("  |");
    s.extend(bytes.iter().map(|&b| if (0x20..0x7f).contains(&b) { b as char } else { '.' }));
    s.push_str("|\n");
    s
}

fn main(args: &str) -> i32 {
    let a = Args::parse(args);
    let inputs = a.words.clone();
    let (mut offset, mut row, mut n) = (0u64, [0u8; 16], 0usize);
    let ok = each_chunk(&a, &inputs, |_, chunk| {
        for &b in chunk {
            row[n] = b;
            n += 1;
            if n == 16 {
                out(line(offset, &row).as_bytes());
                offset += 16;
                n = 0;
            }
        }
    });
    if n > 0 {
        out(line(offset, &row[..n]).as_bytes());
    }
    out(alloc::format!("{:08x}\n", offset + n as u64).as_bytes());
    if ok {
        0
    } else {
        1
    }
}

exo_libos::entry!(main);
