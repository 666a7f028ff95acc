//! lognote: an app that links the runtime and the log-structured libOS only. Started by init with its
//! own partition (`disk=log /fat/apps/lognote demo` in `/init.cfg`), it works on it with
//! no file server in between: `demo` writes a note under `/log/notes`, reads it back and
//! lists the directory; `parts` says which partitions its sector bindings reach.
#![no_std]
#![no_main]
#![forbid(unsafe_code)]

extern crate alloc;

use exo_libos::fs::disk::SysSectors;
use exo_libos::fs::mount::Backend;

/// The one file system this app links.
const BACKEND: Backend<SysSectors> = exo_logfs::backend();
/// Where it is mounted.
const ROOT: &str = "/log";

include!("../../note/note.rs");

fn main(args: &str) -> i32 {
    run("lognote", args)
}

exo_libos::entry!(main);
