//! exo-format: the byte formats more than one part of exo reads, written once.
//!
//! The kernel loads `init` with [`elf`] and reads the partition table with [`mbr`]; the libOS
//! loads programs and mounts partitions with the same two; the host tools (`xtask`, `lfs`)
//! check the images they build with them. [`crc32`] is the checksum of the chainload protocol
//! and the shell's `sum`; [`le`] reads and writes the little-endian fields of every on-disk
//! and on-wire structure (ELF, MBR, LFS, FAT, chainload). [`size`] reads `64M`-style sizes for
//! the host tools, and [`rng`] is the one small seeded generator behind the fuzzer and the
//! randomised tests. [`netfilter`] is the network's packet-filter language, its checker and
//! the binding table the kernel demultiplexes frames with (`docs/network.md`).
//!
//! Everything here is plain safe logic over byte slices (no `unsafe`, no allocation outside
//! the `alloc` feature), so it compiles for the kernel, for EL0 and for the host, and is
//! tested on the host with `cargo test -p exo-format`. The ABI itself (system calls, shared
//! records such as [`exo_abi::Partition`]) stays in `exo-abi`.
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

#[cfg(feature = "alloc")]
extern crate alloc;

pub mod crc32;
pub mod elf;
pub mod le;
pub mod mbr;
pub mod netfilter;
pub mod rng;
pub mod size;
