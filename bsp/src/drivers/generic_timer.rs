//! The ARM generic timer: the counter every timestamp comes from, and the EL1 virtual timer
//! that drives time slices (a PPI on both boards).

use aarch64_cpu::registers::{CNTFRQ_EL0, CNTVCT_EL0, CNTV_CTL_EL0, CNTV_TVAL_EL0};
use tock_registers::interfaces::{Readable, Writeable};

/// Counter ticks per second (62.5 MHz on QEMU, 54 MHz on a real Pi 4).
pub fn frequency() -> u64 {
    CNTFRQ_EL0.get()
}

/// The virtual counter (equal to the physical one: CNTVOFF is zeroed at boot).
pub fn now() -> u64 {
    CNTVCT_EL0.get()
}

/// Fires the timer interrupt `ticks` counter ticks from now.
pub fn arm(ticks: u64) {
    CNTV_TVAL_EL0.set(ticks.min(u32::MAX as u64));
    CNTV_CTL_EL0.write(CNTV_CTL_EL0::ENABLE::SET + CNTV_CTL_EL0::IMASK::CLEAR);
}

/// Counter ticks to microseconds.
pub fn to_micros(ticks: u64) -> u64 {
    (ticks as u128 * 1_000_000 / frequency().max(1) as u128) as u64
}
