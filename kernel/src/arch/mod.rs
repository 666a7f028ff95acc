//! The AArch64 specifics: boot and vector assembly, trap entry, and a few CPU operations.

use core::arch::{asm, global_asm};

pub mod power;
pub mod trap;

global_asm!(include_str!("boot.S"));
global_asm!(include_str!("vectors.S"));

/// Turns off TTBR0 walks (the boot identity map is gone) and flushes the TLB. From here on
/// the low half holds only environments' mappings. Also switches to 16-bit ASIDs where the
/// CPU has them.
pub fn drop_identity_map() {
    // SAFETY: after `finish_boot_map` nothing the kernel runs or touches lives in the low
    // half, so turning off TTBR0 walks cannot pull anything out from under us.
    unsafe {
        let mut tcr: u64;
        let mmfr0: u64;
        asm!("mrs {}, tcr_el1", out(reg) tcr);
        asm!("mrs {}, id_aa64mmfr0_el1", out(reg) mmfr0);
        tcr |= 1 << 7; // EPD0
        if (mmfr0 >> 4) & 0xf == 2 {
            tcr |= 1 << 36; // AS: 16-bit ASIDs
        }
        asm!(
            "msr tcr_el1, {tcr}",
            "msr ttbr0_el1, xzr",
            "isb",
            "tlbi vmalle1",
            "dsb nsh",
            "isb",
            tcr = in(reg) tcr,
        );
    }
}

/// Sleeps until an interrupt arrives, lets it be taken, and masks interrupts again.
pub fn wait_for_interrupt() {
    // SAFETY: interrupts are only ever unmasked here, where the kernel holds no state that
    // an interrupt handler could touch (the idle loop owns nothing).
    unsafe { asm!("msr daifclr, #2", "wfi", "msr daifset, #2") };
}

/// The syndrome (ESR_EL1) and fault address (FAR_EL1) of the exception being handled.
pub fn fault_registers() -> (u64, u64) {
    let (esr, far): (u64, u64);
    // SAFETY: reading EL1 syndrome registers has no side effects.
    unsafe { asm!("mrs {}, esr_el1", "mrs {}, far_el1", out(reg) esr, out(reg) far) };
    (esr, far)
}

unsafe extern "C" {
    fn secondary_park();
}

/// Moves the cores waiting in the firmware's spin table (Pi) into `secondary_park`, where
/// they sleep in `wfi` instead of polling memory.
pub fn park_secondaries(release: &[exo_bsp::dt::Region], phys_base: u64) {
    let entry = phys_base + (secondary_park as *const () as u64 - crate::mm::KERNEL_VMA);
    for r in release {
        let slot = crate::mm::phys_to_virt(r.base) as *mut u64;
        // SAFETY: release addresses are RAM the device tree names for exactly this
        // handshake, mapped in the physmap. The core polls it with its caches off, so the
        // line is cleaned to the point of coherency before the wake-up event.
        unsafe {
            slot.write_volatile(entry);
            asm!("dc civac, {}", "dsb sy", "sev", in(reg) slot);
        }
    }
}
