//! ARM PrimeCell PL011 UART: the console on QEMU `virt` and the Pi 4's UART0.

use tock_registers::interfaces::{Readable, Writeable};
use tock_registers::registers::{ReadOnly, ReadWrite, WriteOnly};
use tock_registers::{register_bitfields, register_structs};

use crate::Console;

register_bitfields! {u32,
    FR [
        RXFE OFFSET(4) NUMBITS(1) [],
        TXFF OFFSET(5) NUMBITS(1) [],
    ],
    LCR_H [
        FEN OFFSET(4) NUMBITS(1) [],
        WLEN OFFSET(5) NUMBITS(2) [EightBits = 0b11],
    ],
    CR [
        UARTEN OFFSET(0) NUMBITS(1) [],
        TXE OFFSET(8) NUMBITS(1) [],
        RXE OFFSET(9) NUMBITS(1) [],
    ],
}

register_structs! {
    Regs {
        (0x00 => dr: ReadWrite<u32>),
        (0x04 => _r0),
        (0x18 => fr: ReadOnly<u32, FR::Register>),
        (0x1c => _r1),
        (0x24 => ibrd: ReadWrite<u32>),
        (0x28 => fbrd: ReadWrite<u32>),
        (0x2c => lcr_h: ReadWrite<u32, LCR_H::Register>),
        (0x30 => cr: ReadWrite<u32, CR::Register>),
        (0x34 => _r2),
        (0x38 => imsc: ReadWrite<u32>),
        (0x3c => _r3),
        (0x44 => icr: WriteOnly<u32>),
        (0x48 => @END),
    }
}

pub struct Pl011 {
    regs: *const Regs,
}

// SAFETY: the registers are MMIO reached only through volatile accesses, and every
// operation is one register access or a short polled sequence.
unsafe impl Send for Pl011 {}
// SAFETY: `&Pl011` only reaches the registers through volatile accesses and keeps no state
// of its own: operations from two cores at once can interleave bytes, never break memory.
unsafe impl Sync for Pl011 {}

impl Pl011 {
    /// # Safety
    /// `base` must be the mapped address of a PL011's registers, valid for the program's life.
    pub const unsafe fn new(base: usize) -> Self {
        Self { regs: base as *const Regs }
    }

    fn regs(&self) -> &Regs {
        // SAFETY: `new`'s contract: `regs` points at live PL011 registers.
        unsafe { &*self.regs }
    }

    /// 8N1 with FIFOs, at `baud` when the reference clock is known (the Pi's UART0 runs from
    /// a 48 MHz clock); with `None` the divisor the firmware or emulator set is kept.
    pub fn init(&self, clock_hz: Option<u32>, baud: u32) {
        let r = self.regs();
        r.cr.set(0);
        r.icr.set(0x7ff);
        if let Some(clk) = clock_hz {
            // Divisor in 1/64ths, rounded: IBRD.FBRD = clk / (16 * baud).
            let div64 = (clk as u64 * 4 + baud as u64 / 2) / baud as u64;
            r.ibrd.set((div64 >> 6) as u32);
            r.fbrd.set((div64 & 0x3f) as u32);
        }
        r.lcr_h.write(LCR_H::WLEN::EightBits + LCR_H::FEN::SET);
        r.imsc.set(0);
        r.cr.write(CR::UARTEN::SET + CR::TXE::SET + CR::RXE::SET);
    }

    /// Interrupts when bytes arrive (FIFO level reached, or a receive timeout).
    pub fn enable_rx_interrupt(&self) {
        self.regs().imsc.set((1 << 4) | (1 << 6)); // RXIM | RTIM
    }

    fn put(&self, b: u8) {
        let r = self.regs();
        while r.fr.is_set(FR::TXFF) {
            core::hint::spin_loop();
        }
        r.dr.set(b as u32);
    }
}

impl Console for Pl011 {
    fn write_bytes(&self, bytes: &[u8]) {
        for &b in bytes {
            if b == b'\n' {
                self.put(b'\r');
            }
            self.put(b);
        }
    }

    fn read_byte(&self) -> Option<u8> {
        let r = self.regs();
        (!r.fr.is_set(FR::RXFE)).then(|| r.dr.get() as u8)
    }
}
