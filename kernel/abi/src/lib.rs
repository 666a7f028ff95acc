//! The exo system-call ABI, shared by the kernel and every libOS. No dependencies.
#![cfg_attr(not(test), no_std)]

pub mod mbr;
pub mod pte;
