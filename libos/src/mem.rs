//! `memcpy` and `memset` for every EL0 program, in place of the compiler's; the kernel
//! links the same two (`kernel/abi/src/mem.S`, where they are written).
//!
//! The compiler's own (`compiler_builtins`, generic Rust) moves 8 bytes per 4 instructions
//! when source and destination share their alignment, and assembles each word from single
//! bytes (about 20 instructions per 8 bytes) when they do not: a 4 KiB copy cost 2,000 to
//! 10,000 instructions, which was most of a cached file read. This one moves 256 bytes per
//! 34 instructions whatever the alignment (EL0 runs with alignment checking off, so `ldp`
//! and `stp` may be unaligned on normal memory, the only kind EL0 can map), then 64 bytes
//! per 10, then 8 bytes, then single bytes: 4 KiB in about 550 (650 with the 64-byte loop
//! alone). `memset` likewise stores 64 bytes per 7
//! instructions (the compiler's stored 8 bytes per 3 or 4: zeroing a 512-byte buffer cost
//! about 220). `memmove` stays the compiler's.
//!
//! Written in assembly so that the compiler cannot turn the loop back into a call to
//! `memcpy`. The strong symbol here takes precedence over the builtins' weak one. The
//! file sits with the ABI crate because both sides include it.

#[cfg(target_os = "none")]
core::arch::global_asm!(include_str!("../../kernel/abi/src/mem.S"));
