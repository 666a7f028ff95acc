//! exo's applications and their shared pieces (test suites run by init).
#![no_std]

extern crate alloc;

pub mod bench;
pub mod disktest;
pub mod fsbench;
pub mod fstest;
pub mod fuzz;
pub mod hostile;
pub mod ipctest;
pub mod ktest;
pub mod logcrash;
pub mod oracle;
