//! yes: writes a line (`y`, or its arguments) forever, until no one reads it.
// A program beside the `exo-apps` library sees that library and its dependencies; the
// library target is the one that must use them all (see the root Cargo.toml).
#![allow(unused_crate_dependencies)]
#![no_std]
#![no_main]

extern crate alloc;

use alloc::string::String;

use exo_apps::tool::{out, Args};

fn main(args: &str) -> i32 {
    let a = Args::parse(args);
    let mut text = if a.words.is_empty() { String::from("y") } else { a.words.join(" ") };
    text.push('\n');
    let block = text.repeat((1024 / text.len()).max(1));
    loop {
        out(block.as_bytes());
    }
}

exo_libos::entry!(main);
