//! wc: counts the lines, words and bytes of the files named on its command line — the
//! example program of `docs/apps.md`.
// A program beside the `exo-apps` library sees that library and its dependencies; the
// library target is the one that must use them all (see the root Cargo.toml).
#![allow(unused_crate_dependencies)]
#![no_std]
#![no_main]

extern crate alloc;

use exo_libos::fs::{self, service, Vfs};
use exo_libos::println;

fn main(args: &str) -> i32 {
    // Files come through the file service when the shell passed its id (`fsd=0x...`),
    // else straight from the partitions this program was granted.
    let mut vfs = Vfs::new();
    match args.split_whitespace().find_map(|w| w.strip_prefix("fsd=0x")) {
        Some(id) => {
            let id = u32::from_str_radix(id, 16).unwrap_or(0);
            let _ = service::mount_remote(&mut vfs, exo_libos::abi::EnvId(id));
        }
        None => {
            fs::mount::mount_disk(&mut vfs, &[exo_fat::backend(), exo_logfs::backend()]);
        }
    }
    let mut status = 0;
    for path in args.split_whitespace().filter(|w| w.starts_with('/')) {
        match vfs.read_to_vec(path) {
            Ok(data) => {
                let text = core::str::from_utf8(&data).unwrap_or("");
                println!(
                    "{} {} {} {path}",
                    text.lines().count(),
                    text.split_whitespace().count(),
                    data.len()
                );
            }
            Err(e) => {
                println!("wc: {path}: {e}");
                status = 1;
            }
        }
    }
    status
}

exo_libos::entry!(main);
