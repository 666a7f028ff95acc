//! save: writes stdin into a file (`-a` appends) — what the shell runs for `> FILE`,
//! `>> FILE` and `2> FILE`.
// A program beside the `exo-apps` library sees that library and its dependencies; the
// library target is the one that must use them all (see the root Cargo.toml).
#![allow(unused_crate_dependencies)]
#![no_std]
#![no_main]

extern crate alloc;

use exo_apps::tool::{each_chunk, Args};
use exo_libos::eprintln;
use exo_libos::fs::{OpenFlags, SeekFrom};

fn main(args: &str) -> i32 {
    let mut a = Args::parse(args);
    let append = a.flag("-a");
    let [path] = &a.words[..] else {
        eprintln!("usage: save [-a] FILE");
        return 2;
    };
    let mut vfs = a.files();
    let mode = if append { OpenFlags::APPEND } else { OpenFlags::TRUNCATE };
    let h = match vfs.open(path, OpenFlags::WRITE | OpenFlags::CREATE | mode) {
        Ok(h) => h,
        Err(e) => {
            eprintln!("{path}: {e}");
            return 1;
        }
    };
    let mut r = vfs.seek(h, SeekFrom::End(0)).map(drop);
    each_chunk(&a, &[], |_, chunk| {
        if r.is_ok() {
            r = vfs.write(h, chunk).map(drop);
        }
    });
    let r = r.and(vfs.close(h));
    match r {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("{path}: {e}");
            1
        }
    }
}

exo_libos::entry!(main);
