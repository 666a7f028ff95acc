//! Ending the machine with a status: ARM semihosting (QEMU with `-semihosting`), PSCI
//! `SYSTEM_OFF` (QEMU virt), or the watchdog (Raspberry Pi).

use core::arch::asm;

/// Asks the debugger or emulator to end the program with `code` (semihosting `SYS_EXIT`,
/// reason `ADP_Stopped_ApplicationExit`). Only call it when a semihosting host is known to be
/// there: without one, `hlt #0xf000` is an undefined instruction.
pub fn semihosting_exit(code: u32) {
    let block: [u64; 2] = [0x20026, code as u64];
    // SAFETY: SYS_EXIT reads the two-word block through x1 and does not return when a host
    // is attached; the block outlives the call.
    unsafe {
        asm!("hlt #0xf000", in("x0") 0x18u64, in("x1") &block as *const _ as u64, options(nostack));
    }
}

/// PSCI `SYSTEM_OFF` through the conduit the device tree names.
pub fn psci_system_off(conduit: exo_bsp::dt::PsciConduit) {
    const SYSTEM_OFF: u64 = 0x8400_0008;
    match conduit {
        // SAFETY: a PSCI call with no arguments, to the hypervisor the device tree names as
        // the conduit; on success it does not return.
        exo_bsp::dt::PsciConduit::Hvc => unsafe { asm!("hvc #0", inout("x0") SYSTEM_OFF => _) },
        // SAFETY: the same call to the secure monitor (the conduit the device tree names).
        exo_bsp::dt::PsciConduit::Smc => unsafe { asm!("smc #0", inout("x0") SYSTEM_OFF => _) },
    }
}
