//! Trap entry from the vectors: the saved register frame, and what each kind of exception
//! from the kernel itself does. (Exceptions from EL0 are the environment code's business.)

use aarch64_cpu::registers::{Readable, ESR_EL1, FAR_EL1};

use crate::env::{kernel, NONE};

/// Registers as `vectors.S` saves them: the layout of the ABI's context, shared with the
/// assembly.
pub type TrapFrame = exo_abi::Context;

const _: () = assert!(core::mem::size_of::<TrapFrame>() == 34 * 8);

/// A vector slot's name: where the exception came from, and what it was.
fn slot_name(slot: u64) -> (&'static str, &'static str) {
    let from = ["EL1t", "EL1h", "EL0", "EL0 (AArch32)"];
    (from[(slot / 4 % 4) as usize], ["sync", "IRQ", "FIQ", "SError"][(slot % 4) as usize])
}

/// Called by `trap_common` in `vectors.S` with the saved frame; returns the frame to resume.
#[unsafe(no_mangle)]
extern "C" fn trap_entry(frame: &mut TrapFrame, slot: u64) -> *mut TrapFrame {
    match slot {
        5 => crate::irq::handle(), // an interrupt while idle (slot 5: EL1h IRQ)
        _ => kernel_fault(frame, slot),
    }
    frame
}

/// Called by the EL0 vectors once the environment's context is saved, for every exception
/// but a system call (`el0_svc`). `kind`: 0 a synchronous exception, 1 an interrupt, 2 or 3
/// a FIQ, SError or AArch32 exception. Returns the context to resume — possibly another
/// environment's.
#[unsafe(no_mangle)]
extern "C" fn el0_trap(kind: u64) -> *mut TrapFrame {
    if kind == 1 {
        crate::irq::handle();
    }
    let next = kernel(|k| {
        let cur = k.current;
        let give_up = match kind {
            _ if cur == NONE => true, // destroyed by another core meanwhile
            0 => {
                let esr = ESR_EL1.get();
                let class = (esr >> 26) & 0x3f;
                match class {
                    0x01 => k.envs[cur].frame().pc += 4, // wfi/wfe at EL0: a yield
                    // SAFETY: the running environment's own FpState, valid and aligned.
                    0x07 => unsafe { crate::arch::fp_enter(&k.envs[cur].fp) }, // FP/SIMD: `el0_fp` missed
                    _ => crate::upcall::fault(k, cur, esr, FAR_EL1.get()),
                }
                class == 0x01 // only the yield gives the CPU up
            }
            1 => false,
            _ => {
                killed(k, cur, kind);
                true
            }
        };
        // Only an interrupt raises events (the idle loop takes those it gets while idle).
        k.schedule(give_up, if kind == 1 { crate::irq::take_events() } else { 0 })
    });
    next.unwrap_or_else(idle)
}

/// Called by the EL0 vectors for a slow system call, once what survives it is saved
/// (`SAVE_SVC`; a `YieldTo`, `PctReply` or `PctCall` only after its fast path, `el0_yield`,
/// `el0_reply` or `el0_call`, missed). A `PctCall` or `PctReply` that this core may switch for runs the
/// environment it names at once (`Kernel::switch_to`: no pass of the scheduler).
#[unsafe(no_mangle)]
extern "C" fn el0_svc() -> *mut TrapFrame {
    let next = kernel(|k| {
        let cur = k.current;
        let give_up = cur == NONE || {
            let num = k.envs[cur].frame().x[8];
            k.switching(num, cur).unwrap_or_else(|| k.slow(num, cur))
        }; // NONE: destroyed by another core meanwhile
        match core::mem::replace(&mut k.switch_to, NONE) {
            NONE => k.schedule(give_up, 0),
            next => k.run(next), // a direct switch (`hand_over`)
        }
    });
    next.unwrap_or_else(idle)
}

/// A FIQ, an SError or an AArch32 exception from EL0 (`kind` 2 or 3) ends the environment.
#[cold]
#[inline(never)]
fn killed(k: &mut crate::env::Kernel, cur: usize, kind: u64) {
    let (from, what) = slot_name(8 + kind);
    log::warn!("env {:#x} killed: {from} {what}", k.envs[cur].id.0);
    k.destroy(cur, exo_abi::killed_status(exo_abi::upcall::OTHER));
}

/// Idles this core (`wfi`) until there is an environment for it to run; returns its context.
pub fn idle() -> *mut TrapFrame {
    loop {
        if let Some(frame) = kernel(|k| k.schedule(false, crate::irq::take_events())) {
            return frame;
        }
        super::wait_for_interrupt();
    }
}

/// An exception the kernel cannot have caused on purpose: report everything and stop the
/// machine with a failure status.
fn kernel_fault(frame: &TrapFrame, slot: u64) -> ! {
    let (esr, far) = (ESR_EL1.get(), FAR_EL1.get());
    let (from, what) = slot_name(slot);
    crate::console::emergency(format_args!(
        "\n*** KERNEL FAULT: {from} {what}: {}\n    ESR {esr:#018x}  FAR {far:#018x}\n    ELR {:#018x}  SPSR {:#018x}\n{frame}",
        exo_abi::upcall::describe(esr),
        frame.pc,
        frame.pstate,
    ));
    crate::panic::backtrace(frame.x[29], Some(frame.pc));
    crate::exit::fail()
}
