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

pub fn power_off(status: u32) -> ! {
    if let Some(board) = platform::board() {
        board.power_off(platform::config().semihosting, status);
    }
    crate::kprintln!("exo: could not power off (status {status}); halting this core");
    loop {
        aarch64_cpu::asm::wfe();
    }
}
