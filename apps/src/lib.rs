//! The EL0 test suites, the system-call fuzzer and the benchmarks, with the runner they
//! share (`runner`) and the table init picks them from (`suites`). Only the test image
//! links them: its init is built with the `tests` feature (see `suites.rs` for adding one).
//! The package's programs (`src/bin/`) link none of this but `tool`, what the small tools
//! (`cat`, `grep`, `wc`, ...) share, and `picture`, with which `fbdemo` draws.
#![no_std]

extern crate alloc;

pub mod bench;
pub mod cachetest;
pub mod cores;
pub mod disktest;
pub mod fbtest;
pub mod fptest;
pub mod fsbench;
pub mod fstest;
pub mod fuzz;
pub mod hostile;
pub mod ipctest;
pub mod ktest;
pub mod logcrash;
pub mod meter;
pub mod nettest;
pub mod oracle;
pub mod pending;
pub mod picture;
pub mod pressure;
pub mod regtest;
pub mod runner;
pub mod sharing;
pub mod smpbench;
pub mod smptest;
pub mod suites;
pub mod tableat;
pub mod teardown;
pub mod tool;
pub mod webcrash;
pub mod xcoreyield;
