//! Stopping the machine: with a status for the test runner, or plainly off.

use crate::platform;

/// Ends the machine reporting success (status 0) where a status can be carried.
#[cfg(feature = "test-modes")]
pub fn pass() -> ! {
    power_off(0)
}

/// Ends the machine reporting failure (status 1). Never a silent hang: if no way to stop
/// the machine works, the core parks after saying so.
pub fn fail() -> ! {
    power_off(1)
}

/// Semihosting is tried once: its `hlt` traps when the host has it off (`exo.exit=semihosting`
/// under a QEMU without `-semihosting`), and the fault's own power-off then goes without it.
pub fn power_off(status: u32) -> ! {
    use core::sync::atomic::{AtomicBool, Ordering::Relaxed};
    static TRIED: AtomicBool = AtomicBool::new(false);
    let semihosting = platform::config().semihosting && !TRIED.swap(true, Relaxed);
    if let Some(board) = platform::board() {
        board.power_off(semihosting, status);
    }
    crate::kprintln!("exo: could not power off (status {status}); halting this core");
    loop {
        aarch64_cpu::asm::wfe();
    }
}
