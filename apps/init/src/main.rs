//! init: the first environment. It holds the whole disk and all the authority there is,
//! and decides what runs: the shell, by default, with each file-system partition the MBR
//! lists granted to it; or, when the bootargs say `exo.test=...`, one of the EL0 test
//! suites, whose verdict becomes init's exit status (and so the machine's).
#![no_std]
#![no_main]

use exo_libos::abi::{mbr, SECTOR_READ, SECTOR_WRITE};
use exo_libos::spawn::{self, Options};
use exo_libos::{println, process, sys, vm};

include!(concat!(env!("OUT_DIR"), "/embedded.rs"));

fn main(args: &str) -> i32 {
    let word = |key: &str| args.split_ascii_whitespace().find_map(|w| w.strip_prefix(key));
    let filter = word("exo.filter=").unwrap_or("");
    match word("exo.test=") {
        Some("core") => {
            println!("init: running the exokernel core tests");
            (exo_apps::ktest::run(filter) != 0) as i32
        }
        Some("fuzz") => exo_apps::fuzz::run(args),
        Some("disk") => {
            println!("init: running the disk tests");
            (exo_apps::disktest::run(filter) != 0) as i32
        }
        Some("bench") => exo_apps::bench::run(),
        Some("ipc") => {
            println!("init: running the protected control transfer tests");
            (exo_apps::ipctest::run(filter) != 0) as i32
        }
        Some("hang") => {
            println!("init: idling forever (for the test runner's hang detection)");
            loop {
                sys::yield_now();
            }
        }
        _ => start_shell(),
    }
}

/// Starts the shell with every FAT or LFS partition granted to it, and waits for it.
fn start_shell() -> i32 {
    let Some((_, shell)) = EMBEDDED.iter().find(|(n, _)| *n == "shell") else {
        println!("init: no shell in this image");
        return 1;
    };
    let mut grants = [(0u64, 0u64, 0u32); 4];
    let mut n = 0;
    for p in vm::kinfo().partitions.iter().filter(|p| p.sectors > 0) {
        if matches!(p.kind, mbr::TYPE_FAT32_LBA | 0x0b | mbr::TYPE_EXO_LFS) {
            grants[n] = (p.start, p.sectors, SECTOR_READ | SECTOR_WRITE);
            n += 1;
        }
    }
    match spawn::spawn(shell, "", Options { quota: 0, sectors: &grants[..n] }) {
        Ok(child) => {
            let status = process::wait(child).unwrap_or(-1);
            println!("init: the shell exited with status {status}");
            status
        }
        Err(e) => {
            println!("init: cannot start the shell: {e:?}");
            1
        }
    }
}

exo_libos::entry!(main);
