//! fatnote: an app that links the runtime and the FAT libOS only. Started by init with its
//! own partition (`disk=fat /fat/apps/fatnote demo` in `/init.cfg`), it works on it with
//! no file server in between: `demo` writes a note under `/fat/notes`, reads it back and
//! lists the directory; `parts` says which partitions its sector bindings reach.
#![no_std]
#![no_main]
#![forbid(unsafe_code)]

extern crate alloc;

use exo_libos::fs::disk::SysSectors;
use exo_libos::fs::mount::Backend;

/// The one file system this app links.
const BACKEND: Backend<SysSectors> = exo_fat::backend();
/// Where it is mounted.
const ROOT: &str = "/fat";

include!("../../note/note.rs");

fn main(args: &str) -> i32 {
    run("fatnote", args)
}

exo_libos::entry!(main);
