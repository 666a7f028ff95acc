//! Ending the machine with a status: ARM semihosting (QEMU with `-semihosting`). PSCI
//! `SYSTEM_OFF` and the Pi's watchdog are the board's (`exo_bsp::Board::power_off`).

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
