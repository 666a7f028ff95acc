//! Register hygiene across a direct switch (hostile suite): what one environment left in
//! its registers must not show in another's, beyond what the ABI carries — a call's four
//! argument words, the caller's id and the options into the server; the status and four
//! result words back to the caller. Each side fills every register it can with a mark of
//! its own, then the other side dumps its registers and looks for that mark.

use exo_libos::abi::{EnvId, Sys};
use exo_libos::process::{self, Fork};
use exo_libos::{sys, vm};

use crate::runner::check;

/// The caller's mark, `| n` in register xn; the server's likewise.
const CALLER: u64 = 0xca11_e700_0000_0000;
const SERVER: u64 = 0x5e7e_e700_0000_0000;
const MARK: u64 = 0xffff_ff00_0000_0000;

// `probe_call(server, dump)`: x1-x4, x6-x28, x29 and x30 marked CALLER | n, x5 (options)
// 0, a `wfi` (as in `probe_yield` below: the kernel saves the whole marked context), then
// `PctCall` to `server`; afterwards x0-x30 go to `dump` (31 words). Callee-saved registers
// are restored before it returns.
//
// `probe_yield(target, dump, mark)`: the same around a `YieldTo`, with x1-x30 (x8 aside)
// marked `mark | n`, and a `wfi` first: it traps, and the kernel saves the whole context
// marked so, which makes the marks the "older values of its own" the ABI promises in x6, x7
// and x9-x17 after the yield (the other registers it keeps or carries).
//
// `probe_entry`: the server's registered entry. It dumps x0-x30 on its call stack, asks
// `probe_check` which registers hold anything of the caller's they should not, and replies
// with that mask and three SERVER words, every other register marked SERVER | n.
core::arch::global_asm!(
    ".section .text.probe_call, \"ax\"",
    ".global probe_call",
    "probe_call:",
    "    stp x29, x30, [sp, #-112]!",
    "    stp x27, x28, [sp, #16]",
    "    stp x25, x26, [sp, #32]",
    "    stp x23, x24, [sp, #48]",
    "    stp x21, x22, [sp, #64]",
    "    stp x19, x20, [sp, #80]",
    "    stp x18, x1, [sp, #96]",
    ".irp n, 1,2,3,4,6,7,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30",
    "    movz x\\n, #0xca11, lsl #48",
    "    movk x\\n, #0xe700, lsl #32",
    "    movk x\\n, #\\n",
    ".endr",
    "    mov x5, xzr",
    "    mov x8, #{call}",
    "    wfi",
    "    svc #0",
    "probe_dump:",
    "    stp x0, x1, [sp, #-16]!",
    "    ldr x0, [sp, #120]", // the dump's address (x1 at entry)
    "    ldp x1, x8, [sp], #16",
    "    stp x1, x8, [x0]", // (x8 is the caller's to lose: its word below is not checked)
    ".irp n, 2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30",
    "    str x\\n, [x0, #(\\n * 8)]",
    ".endr",
    "    ldp x18, x1, [sp, #96]",
    "    ldp x19, x20, [sp, #80]",
    "    ldp x21, x22, [sp, #64]",
    "    ldp x23, x24, [sp, #48]",
    "    ldp x25, x26, [sp, #32]",
    "    ldp x27, x28, [sp, #16]",
    "    ldp x29, x30, [sp], #112",
    "    ret",
    ".section .text.probe_entry, \"ax\"",
    ".global probe_entry",
    "probe_entry:",
    "    sub sp, sp, #(32 * 8)",
    ".irp n, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30",
    "    str x\\n, [sp, #(\\n * 8)]",
    ".endr",
    "    mov x0, sp",
    "    bl probe_check",
    "    mov x1, x0",
    ".irp n, 0,2,3,4,5,6,7,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30",
    "    movz x\\n, #0x5e7e, lsl #48",
    "    movk x\\n, #0xe700, lsl #32",
    "    movk x\\n, #\\n",
    ".endr",
    "    mov x8, #{reply}",
    "    svc #0",
    "    brk #1",
    ".section .text.probe_yield, \"ax\"",
    ".global probe_yield",
    "probe_yield:",
    "    stp x29, x30, [sp, #-112]!",
    "    stp x27, x28, [sp, #16]",
    "    stp x25, x26, [sp, #32]",
    "    stp x23, x24, [sp, #48]",
    "    stp x21, x22, [sp, #64]",
    "    stp x19, x20, [sp, #80]",
    "    stp x18, x1, [sp, #96]",
    ".irp n, 1,3,4,5,6,7,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30",
    "    add x\\n, x2, #\\n",
    ".endr",
    "    add x2, x2, #2",
    "    mov x8, #{yield_to}",
    "    wfi",
    "    svc #0",
    "    b probe_dump",
    call = const Sys::PctCall as u64,
    yield_to = const Sys::YieldTo as u64,
    reply = const Sys::PctReply as u64,
);

unsafe extern "C" {
    fn probe_call(server: u64, dump: *mut [u64; 31]);
    fn probe_entry();
    fn probe_yield(target: u64, dump: *mut [u64; 31], mark: u64);
}

/// In the server, on entry: the registers (bit n: xn) that are wrong. x0 is the caller's
/// id, x1-x4 its x1-x4 and x5 the options (0); x29 and x30 are zero; no other register
/// holds the caller's mark.
#[unsafe(no_mangle)]
extern "C" fn probe_check(x: &[u64; 31]) -> u64 {
    let mut bad = 0;
    for (n, &v) in x.iter().enumerate() {
        let ok = match n {
            0 => v != 0 && v & MARK != CALLER,
            1..=4 => v == CALLER | n as u64,
            5 | 29 | 30 => v == 0,
            _ => v & MARK != CALLER,
        };
        bad |= (!ok as u64) << n;
    }
    bad
}

/// A call and its reply switched directly (caller and server on core 0, so neither is
/// taken by another core): the server sees none of the caller's registers beyond the
/// message, and the caller gets back the results and every other register its own.
pub fn call_registers() -> Result<(), &'static str> {
    let mine = vm::env_info(vm::me()).map_or(0, |e| e.affinity);
    let s = match process::fork().map_err(|_| "fork")? {
        Fork::Child => {
            let stack = vm::alloc_va(1);
            let _ = vm::map_new(stack, vm::RW);
            let _ = sys::pct_register(probe_entry as *const () as u64, stack + vm::PAGE);
            sys::exit(-(sys::pct_wait() as i32))
        }
        Fork::Parent(s) => s,
    };
    while vm::env_info(s).is_none_or(|i| i.state != exo_libos::abi::env_state::BLOCKED) {
        sys::yield_now();
    }
    sys::pct_allow(EnvId::SELF, s).map_err(|_| "allow")?;
    let pinned =
        mine & 1 != 0 && sys::env_set_affinity(s, 1).is_ok() && sys::env_set_affinity(EnvId::SELF, 1).is_ok();
    let mut x = [0u64; 31];
    let mut rounds_ok = true;
    for _ in 0..3 {
        // SAFETY: a call through the kernel's ABI: the routine keeps the callee-saved
        // registers and writes only the 31 words of `x`.
        unsafe { probe_call(s.0 as u64, &mut x) };
        rounds_ok &= x[0] == 0;
        if !rounds_ok {
            break;
        }
    }
    let _ = sys::env_destroy(s);
    let _ = sys::env_set_affinity(EnvId::SELF, mine);
    check(pinned, "could not keep caller and server on core 0")?;
    check(rounds_ok, "the call failed")?;
    check(x[1] == 0, "the server saw a register of the caller's beyond the message")?;
    let results = (2..=4).all(|n| x[n] == SERVER | n as u64);
    check(results, "the reply's words did not arrive")?;
    // x5-x18: its own, as the `wfi` saved them (the direct reply, `el0_reply`, computes in
    // x5-x17 and loads them back from the caller's context); x19-x30 kept.
    let own = x[5] == 0 && (6..=30).filter(|&n| n != 8).all(|n| x[n] == CALLER | n as u64);
    check(own, "the caller did not get all its own registers back")
}

/// Two environments on core 0 yielding to each other, each with its registers marked: after
/// each switch back, each finds its own mark in x1-x30 (x8 aside) — not the other's, nor
/// anything the kernel computed (the direct switch, `el0_yield`, computes in x1-x7 and
/// x9-x16, and must leave the caller its own values there).
pub fn yield_registers() -> Result<(), &'static str> {
    let mine = vm::env_info(vm::me()).map_or(0, |e| e.affinity);
    if mine & 1 == 0 || sys::env_set_affinity(EnvId::SELF, 1).is_err() {
        return check(false, "could not keep to core 0");
    }
    let me = vm::me();
    let not_own = |x: &[u64; 31], mark: u64| (1..=30).filter(|&n| n != 8).any(|n| x[n] != mark | n as u64);
    let child = match process::fork().map_err(|_| "fork")? {
        Fork::Child => {
            let mut x = [0u64; 31];
            let mut bad = 0;
            for _ in 0..3 {
                // SAFETY: a system call through the kernel's ABI: the routine keeps the
                // callee-saved registers and writes only the 31 words of `x`.
                unsafe { probe_yield(me.0 as u64, &mut x, SERVER) };
                bad |= (x[0] != 0) as i32 | (not_own(&x, SERVER) as i32) << 1;
            }
            sys::exit(bad)
        }
        Fork::Parent(c) => c,
    };
    let mut x = [0u64; 31];
    let (mut switches, mut parent_bad) = (0, false);
    for _ in 0..20 {
        // SAFETY: as in the child: only `x` is written, callee-saved registers are kept.
        unsafe { probe_yield(child.0 as u64, &mut x, CALLER) };
        if x[0] != 0 {
            break; // the child has exited: no longer runnable
        }
        switches += 1;
        parent_bad |= not_own(&x, CALLER);
    }
    let status = process::wait(child);
    let _ = sys::env_set_affinity(EnvId::SELF, mine);
    check(switches >= 3, "the yields did not switch")?;
    check(status == Ok(0), "the child did not get all its own registers back")?;
    check(!parent_bad, "the parent did not get all its own registers back")
}

/// The thread-pointer register, TPIDR_EL0: EL0 writes it at will, so it is part of an
/// environment's context like x0-x30. Parent and child (both on core 0) each set their own
/// mark in it and yield to each other, directly (`el0_yield`), through a `wfi` (the general
/// path), and by calls both ways; each must always read back its own mark, never the other's.
pub fn thread_pointer() -> Result<(), &'static str> {
    let mine = vm::env_info(vm::me()).map_or(0, |e| e.affinity);
    if mine & 1 == 0 || sys::env_set_affinity(EnvId::SELF, 1).is_err() {
        return check(false, "could not keep to core 0");
    }
    let tp = || {
        let v: u64;
        // SAFETY: reads TPIDR_EL0, which EL0 may always read.
        unsafe { core::arch::asm!("mrs {}, tpidr_el0", out(reg) v) };
        v
    };
    // SAFETY: writes TPIDR_EL0, which EL0 may always write; nothing here relies on it.
    let set_tp = |v: u64| unsafe { core::arch::asm!("msr tpidr_el0, {}", in(reg) v) };
    let me = vm::me();
    let child = match process::fork().map_err(|_| "fork")? {
        Fork::Child => {
            let mut seen = 0;
            for _ in 0..20 {
                set_tp(SERVER | 0x7);
                let _ = sys::yield_to(me);
                // SAFETY: a `wfi` at EL0 traps to the kernel: a yield through the general path.
                unsafe { core::arch::asm!("wfi") };
                seen |= tp() ^ (SERVER | 0x7);
            }
            sys::exit((seen != 0) as i32)
        }
        Fork::Parent(c) => c,
    };
    let mut seen = 0;
    let mut switches = 0;
    for _ in 0..20 {
        set_tp(CALLER | 0x7);
        switches += sys::yield_to(child).is_ok() as u32;
        // SAFETY: as in the child.
        unsafe { core::arch::asm!("wfi") };
        seen |= tp() ^ (CALLER | 0x7);
    }
    let status = process::wait(child);
    set_tp(0);
    let _ = sys::env_set_affinity(EnvId::SELF, mine);
    check(switches >= 3, "the yields did not switch")?;
    check(seen == 0, "the parent read another environment's TPIDR_EL0")?;
    check(status == Ok(0), "the child read another environment's TPIDR_EL0")
}
