//! exo's applications and their shared pieces (test suites run by init).
#![no_std]

pub mod bench;
pub mod disktest;
pub mod fuzz;
pub mod ipctest;
pub mod ktest;
