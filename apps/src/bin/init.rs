//! init: the first environment. For now it runs the EL0 test suites the bootargs ask for
//! (`exo.test=core`, optionally `exo.filter=NAME`) and exits with their verdict.
#![no_std]
#![no_main]

use exo_libos::println;

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
        Some("hang") => {
            println!("init: idling forever (for the test runner's hang detection)");
            loop {
                exo_libos::sys::yield_now();
            }
        }
        _ => {
            println!("init: env {:#x} started; nothing else to run yet", exo_libos::vm::me().0);
            0
        }
    }
}

exo_libos::entry!(main);
