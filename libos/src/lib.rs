//! The exo library operating system: what an application programmer links against.
//!
//! Everything here runs at EL0 and talks to the kernel only through [`sys`] (the ABI in
//! `exo-abi`). The libOS decides what the kernel refuses to: where things go in the
//! address space ([`vm`]), how memory is handed out ([`heap`]), what happens on a page
//! fault ([`upcall`]), what is given back when the kernel wants memory ([`reclaim`]), and
//! how processes are made ([`process`]: copy-on-write `fork`).
#![cfg_attr(not(test), no_std)]

pub mod args;
pub mod exec;
pub mod fd;
pub mod fs;
pub mod heap;
pub mod ipc;
pub mod mem;
pub mod nic;
mod owed;
pub mod pipe;
pub mod private;
pub mod process;
pub mod reclaim;
pub mod rt;
pub mod screen;
pub mod spawn;
pub mod sys;
pub mod upcall;
pub mod vm;

pub use exo_abi as abi;
pub use exo_format as format;
