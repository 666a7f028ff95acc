//! The buffer data port loops: one 512-byte block in or out by 32-bit port accesses.
// TODO(regs branch): remove
#![allow(clippy::multiple_unsafe_ops_per_block)]

/// 128 words from the data port to `dst`: sixteen 32-bit port loads and eight paired
/// stores per turn, 26 instructions per 64 bytes. (At `opt-level = "s"` the compiler
/// turns the same loop in Rust into `memcpy` calls.)
///
/// # Safety
/// `port` must be the mapped data port; `dst` 512 writable bytes, 4-byte aligned.
#[cfg(target_arch = "aarch64")]
pub(super) unsafe fn pio_in(port: *const u32, dst: *mut u32) {
    // SAFETY: each `ldr` reads the device register the caller named; the `stp`s write
    // exactly the 512 bytes at `dst` the caller gave (8 turns of 64 bytes).
    unsafe {
        core::arch::asm!(
            "2:",
            "ldr {a:w}, [{port}]", "ldr {b:w}, [{port}]", "ldr {c:w}, [{port}]", "ldr {d:w}, [{port}]",
            "stp {a:w}, {b:w}, [{dst}], #8", "stp {c:w}, {d:w}, [{dst}], #8",
            "ldr {a:w}, [{port}]", "ldr {b:w}, [{port}]", "ldr {c:w}, [{port}]", "ldr {d:w}, [{port}]",
            "stp {a:w}, {b:w}, [{dst}], #8", "stp {c:w}, {d:w}, [{dst}], #8",
            "ldr {a:w}, [{port}]", "ldr {b:w}, [{port}]", "ldr {c:w}, [{port}]", "ldr {d:w}, [{port}]",
            "stp {a:w}, {b:w}, [{dst}], #8", "stp {c:w}, {d:w}, [{dst}], #8",
            "ldr {a:w}, [{port}]", "ldr {b:w}, [{port}]", "ldr {c:w}, [{port}]", "ldr {d:w}, [{port}]",
            "stp {a:w}, {b:w}, [{dst}], #8", "stp {c:w}, {d:w}, [{dst}], #8",
            "subs {n}, {n}, #1",
            "b.ne 2b",
            port = in(reg) port,
            dst = inout(reg) dst => _,
            n = inout(reg) 8usize => _,
            a = out(reg) _, b = out(reg) _, c = out(reg) _, d = out(reg) _,
            options(nostack)
        );
    }
}

/// 128 words from `src` to the data port: paired loads, single 32-bit port stores.
///
/// # Safety
/// `port` must be the mapped data port; `src` 512 readable bytes, 4-byte aligned.
#[cfg(target_arch = "aarch64")]
pub(super) unsafe fn pio_out(port: *mut u32, src: *const u32) {
    // SAFETY: the `ldp`s read exactly the caller's 512 bytes at `src`; each `str` writes
    // the device register the caller named.
    unsafe {
        core::arch::asm!(
            "2:",
            "ldp {a:w}, {b:w}, [{src}], #8", "ldp {c:w}, {d:w}, [{src}], #8",
            "str {a:w}, [{port}]", "str {b:w}, [{port}]", "str {c:w}, [{port}]", "str {d:w}, [{port}]",
            "ldp {a:w}, {b:w}, [{src}], #8", "ldp {c:w}, {d:w}, [{src}], #8",
            "str {a:w}, [{port}]", "str {b:w}, [{port}]", "str {c:w}, [{port}]", "str {d:w}, [{port}]",
            "ldp {a:w}, {b:w}, [{src}], #8", "ldp {c:w}, {d:w}, [{src}], #8",
            "str {a:w}, [{port}]", "str {b:w}, [{port}]", "str {c:w}, [{port}]", "str {d:w}, [{port}]",
            "ldp {a:w}, {b:w}, [{src}], #8", "ldp {c:w}, {d:w}, [{src}], #8",
            "str {a:w}, [{port}]", "str {b:w}, [{port}]", "str {c:w}, [{port}]", "str {d:w}, [{port}]",
            "subs {n}, {n}, #1",
            "b.ne 2b",
            port = in(reg) port,
            src = inout(reg) src => _,
            n = inout(reg) 8usize => _,
            a = out(reg) _, b = out(reg) _, c = out(reg) _, d = out(reg) _,
            options(nostack)
        );
    }
}

/// Host builds (unit tests) have no data port; the same moves as plain volatile accesses.
///
/// # Safety
/// As for the aarch64 version.
#[cfg(not(target_arch = "aarch64"))]
pub(super) unsafe fn pio_in(port: *const u32, dst: *mut u32) {
    for i in 0..128 {
        // SAFETY: the caller's contract.
        unsafe { dst.add(i).write(port.read_volatile()) };
    }
}

/// # Safety
/// As for the aarch64 version.
#[cfg(not(target_arch = "aarch64"))]
pub(super) unsafe fn pio_out(port: *mut u32, src: *const u32) {
    for i in 0..128 {
        // SAFETY: the caller's contract.
        unsafe { port.write_volatile(src.add(i).read()) };
    }
}
