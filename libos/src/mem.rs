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

/// Copies `src` into `dst`, which must be as long (as `copy_from_slice`, which panics
/// otherwise). From 256 bytes on it moves 256 bytes per 10 instructions through the FP/SIMD
/// registers (4 KiB in about 175, `memcpy`'s 550), then hands what is left to `memcpy`.
///
/// The FP/SIMD registers are the environment's own (the kernel keeps them apart from every
/// other environment's), but an upcall handler shares them with the code it interrupted,
/// which may be in the middle of a copy: on the libOS's upcall stack this is `memcpy`, and
/// no other libOS code uses them. The first use in a turn on the CPU traps once for the
/// kernel to load them (docs/abi.md), so this is for the copies of file data, not for
/// every small one.
pub fn copy(dst: &mut [u8], src: &[u8]) {
    assert_eq!(dst.len(), src.len(), "copy: lengths differ");
    // SAFETY: `dst` and `src` are valid for `len` bytes, and a `&mut` does not overlap a `&`.
    #[cfg(target_os = "none")]
    unsafe {
        exo_copy(dst.as_mut_ptr(), src.as_ptr(), dst.len())
    };
    #[cfg(not(target_os = "none"))]
    dst.copy_from_slice(src);
}

#[cfg(target_os = "none")]
unsafe extern "C" {
    fn exo_copy(dst: *mut u8, src: *const u8, len: usize);
}

#[cfg(target_os = "none")]
core::arch::global_asm!(
    ".section .text.exo_copy, \"ax\"",
    ".arch_extension simd",
    ".global exo_copy",
    ".p2align 4",
    "exo_copy:",
    "    cmp x2, #256",
    "    b.lo memcpy",                // short: `memcpy`
    "    mov x3, sp",
    "    adrp x4, {stack}",
    "    add x4, x4, :lo12:{stack}",
    "    sub x3, x3, x4",
    "    cmp x3, #{size}",
    "    b.ls memcpy",                // on the upcall stack (sp in [start, end]): `memcpy`
    "    sub x2, x2, #256",
    "1:  ld1 {{v0.16b-v3.16b}}, [x1], #64",
    "    ld1 {{v4.16b-v7.16b}}, [x1], #64",
    "    ld1 {{v16.16b-v19.16b}}, [x1], #64",
    "    ld1 {{v20.16b-v23.16b}}, [x1], #64",
    "    st1 {{v0.16b-v3.16b}}, [x0], #64",
    "    st1 {{v4.16b-v7.16b}}, [x0], #64",
    "    st1 {{v16.16b-v19.16b}}, [x0], #64",
    "    st1 {{v20.16b-v23.16b}}, [x0], #64",
    "    subs x2, x2, #256",
    "    b.hs 1b",
    "    adds x2, x2, #256",
    "    b.ne memcpy",                // the rest (x0, x1 moved on past what was copied)
    "    ret",
    stack = sym crate::upcall::UPCALL_STACK,
    size = const crate::upcall::STACK_SIZE,
);
