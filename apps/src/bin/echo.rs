//! echo: writes its arguments, joined by spaces, and a newline: the shell's `echo` as a
//! program, so that it can feed a pipeline (`echo hello | wc`).
// A program beside the `exo-apps` library sees that library and its dependencies; the
// library target is the one that must use them all (see the root Cargo.toml).
#![allow(unused_crate_dependencies)]
#![no_std]
#![no_main]

extern crate alloc;

use exo_apps::tool::{out, Args};

fn main(args: &str) -> i32 {
    let mut line = Args::parse(args).words.join(" ");
    line.push('\n');
    out(line.as_bytes());
    0
}

exo_libos::entry!(main);
