//! The loader's UART: the board's PL011 as a protocol [`Link`], timed by the generic counter.

use aarch64_cpu::registers::{CNTFRQ_EL0, CNTPCT_EL0};
use core::fmt;
use core::sync::atomic::{AtomicUsize, Ordering};
use exo_bsp::drivers::pl011::Pl011;
use exo_bsp::Console;
use exo_chainload::Link;
use tock_registers::interfaces::Readable;

/// The UART's base once known, for the panic handler. Plain loads and stores only.
static BASE: AtomicUsize = AtomicUsize::new(0);

pub struct Uart {
    dev: Pl011,
    base: usize,
    ticks_per_ms: u64,
    /// Bytes taken from the FIFO and not yet handed out (a ring).
    buf: [u8; 32],
    head: usize,
    len: usize,
}

impl Uart {
    /// # Safety
    /// `base` must be the physical address of a PL011 (the MMU is off).
    pub unsafe fn new(base: usize, clock_hz: Option<u32>) -> Uart {
        // SAFETY: the caller's promise.
        let dev = unsafe { Pl011::new(base) };
        dev.init(clock_hz, exo_bsp::board::CONSOLE_BAUD);
        BASE.store(base, Ordering::Relaxed);
        let ticks_per_ms = (CNTFRQ_EL0.get() / 1000).max(1);
        Uart { dev, base, ticks_per_ms, buf: [0; 32], head: 0, len: 0 }
    }

    /// The UART the loader already set up, if any (for the panic handler).
    pub fn existing() -> Option<Uart> {
        let base = BASE.load(Ordering::Relaxed);
        if base == 0 {
            return None;
        }
        // SAFETY: BASE only ever holds the address `new` was given.
        let dev = unsafe { Pl011::new(base) };
        Some(Uart { dev, base, ticks_per_ms: 1, buf: [0; 32], head: 0, len: 0 })
    }

    fn pop(&mut self) -> Option<u8> {
        if self.len == 0 {
            return None;
        }
        let b = self.buf[self.head];
        self.head = (self.head + 1) % self.buf.len();
        self.len -= 1;
        Some(b)
    }

    /// Waits until the last byte has left the wire: the kernel's first act is to reset
    /// the UART, which would cut off whatever is still in the transmit FIFO.
    pub fn flush(&self) {
        const FR_BUSY: u32 = 1 << 3;
        let fr = (self.base + 0x18) as *const u32;
        // SAFETY: the flag register of the PL011 `new` was given; a volatile read has no
        // side effects.
        while unsafe { fr.read_volatile() } & FR_BUSY != 0 {
            core::hint::spin_loop();
        }
    }
}

impl Link for Uart {
    fn send(&mut self, bytes: &[u8]) {
        self.dev.write_bytes(bytes);
    }

    fn recv(&mut self, timeout_ms: u32) -> Option<u8> {
        if let Some(b) = self.pop() {
            return Some(b);
        }
        let start = CNTPCT_EL0.get();
        let ticks = timeout_ms as u64 * self.ticks_per_ms;
        loop {
            // Empty the receive FIFO in one go. Under QEMU each read of the data register
            // wakes the thread that refills the FIFO; reading it empty in a burst lets that
            // thread refill it 16 bytes at a time instead of one, which makes a transfer
            // many times faster. On hardware it is simply the cheapest way to keep up.
            while self.len < self.buf.len() {
                let Some(b) = self.dev.read_byte() else { break };
                self.buf[(self.head + self.len) % self.buf.len()] = b;
                self.len += 1;
            }
            if let Some(b) = self.pop() {
                return Some(b);
            }
            let now = CNTPCT_EL0.get();
            if now.wrapping_sub(start) >= ticks {
                return None;
            }
            // Poll every few microseconds, not back to back: under QEMU a register read takes
            // the lock the thread feeding the UART needs. (A byte takes 87 µs at 115200.)
            while CNTPCT_EL0.get().wrapping_sub(now) < self.ticks_per_ms / 200 {
                core::hint::spin_loop();
            }
        }
    }
}

impl fmt::Write for Uart {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.dev.write_bytes(s.as_bytes());
        Ok(())
    }
}
