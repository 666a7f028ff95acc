//! The BCM2835-family watchdog in the power-management block: the Pi's only way to reset
//! or halt itself (it has no PSCI).

use tock_registers::interfaces::{Readable, Writeable};
use tock_registers::register_structs;
use tock_registers::registers::ReadWrite;

register_structs! {
    Regs {
        (0x00 => _r0),
        (0x1c => rstc: ReadWrite<u32>),
        (0x20 => rsts: ReadWrite<u32>),
        (0x24 => wdog: ReadWrite<u32>),
        (0x28 => @END),
    }
}

const PASSWORD: u32 = 0x5a00_0000;
const RSTC_FULL_RESET: u32 = 0x20;
const RSTC_WRCFG_MASK: u32 = 0x30;
/// RSTS partition 63 tells the firmware to halt instead of booting again.
const RSTS_HALT_PARTITION: u32 = 0x555;

pub struct Watchdog {
    regs: *const Regs,
}

// SAFETY: MMIO reached only through volatile register accesses.
unsafe impl Send for Watchdog {}
// SAFETY: `&Watchdog` only reaches the PM block through volatile accesses, each a complete
// register write; the kernel resets through it from one core, while powering off.
unsafe impl Sync for Watchdog {}

impl Watchdog {
    /// # Safety
    /// `base` must be the mapped address of the PM block, valid for the program's life.
    pub const unsafe fn new(base: usize) -> Self {
        Self { regs: base as *const Regs }
    }

    /// Resets the board in about 150 µs; with `halt`, the firmware stops instead of booting.
    pub fn reset(&self, halt: bool) {
        // SAFETY: `new` was given the mapped address of the PM block, valid for the
        // program's life, and the registers are only reached through volatile accesses.
        let r = unsafe { &*self.regs };
        if halt {
            r.rsts.set(PASSWORD | (r.rsts.get() & !0xfff) | RSTS_HALT_PARTITION);
        }
        r.wdog.set(PASSWORD | 10);
        r.rstc.set(PASSWORD | (r.rstc.get() & !RSTC_WRCFG_MASK) | RSTC_FULL_RESET);
    }
}
