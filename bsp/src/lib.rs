//! Board support for exo: the hardware below the kernel, and nothing about environments.
//!
//! - [`dt`] reads the device tree into a [`dt::BoardInfo`]: which board, where RAM and
//!   each controller are (bus addresses translated to CPU physical addresses).
//! - One driver file per piece of silicon under [`drivers`], each implementing one of the
//!   interface traits below.
//! - [`Board`] wires the drivers a given device tree asks for, so one kernel image serves
//!   QEMU `virt`, QEMU `raspi4b` and a real Raspberry Pi 4.
//!
//! Drivers take *virtual* base addresses: the kernel decides where device registers are
//! mapped and hands the mapped address in.
#![cfg_attr(not(test), no_std)]

pub mod board;
pub mod bootargs;
pub mod disk;
pub mod drivers;
pub mod dt;
pub mod fbcon;
pub mod hwcheck;
pub mod logger;
pub mod memmap;
pub mod platform;
pub mod smp;

pub use board::{Board, BoardError};

/// A byte-stream console (a UART).
pub trait Console {
    fn write_bytes(&self, bytes: &[u8]);
    /// A received byte, or `None` when nothing is waiting.
    fn read_byte(&self) -> Option<u8>;
}

/// Bytes received on a console and not yet read: a ring that drops what does not fit
/// (a person typing faster than anyone reads loses keystrokes, never older ones).
pub struct RxRing {
    buf: [u8; 256],
    head: usize,
    len: usize,
}

impl RxRing {
    pub const fn new() -> RxRing {
        RxRing { buf: [0; 256], head: 0, len: 0 }
    }

    /// Moves every byte `console` has waiting into the ring.
    pub fn drain(&mut self, console: &impl Console) {
        while let Some(byte) = console.read_byte() {
            if self.len < self.buf.len() {
                self.buf[(self.head + self.len) % self.buf.len()] = byte;
                self.len += 1;
            }
        }
    }

    pub fn pop(&mut self) -> Option<u8> {
        (self.len > 0).then(|| {
            let b = self.buf[self.head];
            self.head = (self.head + 1) % self.buf.len();
            self.len -= 1;
            b
        })
    }
}

impl Default for RxRing {
    fn default() -> RxRing {
        RxRing::new()
    }
}

/// An interrupt controller that delivers to one CPU.
pub trait IrqController {
    /// Lets interrupt `intid` through (level-triggered PPIs and SPIs alike).
    fn enable(&self, intid: u32);
    fn disable(&self, intid: u32);
    /// Acknowledges the highest-priority pending interrupt, or `None` if it was spurious.
    fn acknowledge(&self) -> Option<u32>;
    /// Signals the end of handling `intid`.
    fn end(&self, intid: u32);
}

/// Errors a block device reports. A device never hangs the caller: a command that does not
/// complete in time is a `Timeout`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BlockError {
    /// The request reaches past the end of the device or is not whole sectors.
    OutOfRange,
    /// The device did not answer in time.
    Timeout,
    /// The device reported an error.
    Io,
    /// No medium (card removed).
    NoMedium,
}

/// What the kernel answers EL0 for each.
impl From<BlockError> for exo_abi::Error {
    fn from(e: BlockError) -> Self {
        match e {
            BlockError::OutOfRange => exo_abi::Error::Invalid,
            BlockError::Timeout => exo_abi::Error::Timeout,
            BlockError::Io | BlockError::NoMedium => exo_abi::Error::Io,
        }
    }
}

/// A disk of 512-byte sectors. Transfers are scatter-gather: the buffers (each a whole
/// number of sectors) are filled or drained in order, from `lba` on, straight into the
/// caller's memory. A driver checks the range against the device size itself.
/// `docs/storage.md` says what a completed write and a flush mean for durability.
pub trait BlockDevice {
    /// Size in sectors.
    fn sectors(&self) -> u64;
    fn read(&mut self, lba: u64, bufs: &mut [&mut [u8]]) -> Result<(), BlockError>;
    /// Complete (and durable, modulo the device's write cache) when it returns.
    fn write(&mut self, lba: u64, bufs: &[&[u8]]) -> Result<(), BlockError>;
    /// Returns once every completed write is durable.
    fn flush(&mut self) -> Result<(), BlockError>;
}

/// Errors sending a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NetError {
    /// Shorter than an Ethernet header or longer than the driver's largest frame.
    BadLength,
    /// The device did not take the frame in time (the driver took its buffer back).
    Timeout,
    /// The device is unusable (it did not come back from a reset, or has no link).
    Io,
}

/// What the kernel answers EL0 for each (a bad length is checked before the driver sees it).
impl From<NetError> for exo_abi::Error {
    fn from(e: NetError) -> Self {
        match e {
            NetError::Timeout => exo_abi::Error::Timeout,
            NetError::BadLength | NetError::Io => exo_abi::Error::Io,
        }
    }
}

/// A network card: Ethernet frames in and out, no offloads (`docs/network.md`). The
/// kernel demultiplexes what `recv` hands it; each driver bounds every wait itself.
pub trait Nic {
    fn mac(&self) -> [u8; 6];
    /// Hands each frame received (at most one queue's worth) to `f`; how many there were.
    fn recv(&mut self, f: &mut dyn FnMut(&[u8])) -> usize;
    /// Sends one frame (14 to 1514 bytes) and waits, within a bound, for the device to take it.
    fn send(&mut self, frame: &[u8]) -> Result<(), NetError>;
}

#[cfg(test)]
mod tests {
    use super::{Console, RxRing};
    use core::cell::RefCell;

    struct Fifo(RefCell<Vec<u8>>);

    impl Console for Fifo {
        fn write_bytes(&self, _: &[u8]) {}
        fn read_byte(&self) -> Option<u8> {
            let mut v = self.0.borrow_mut();
            (!v.is_empty()).then(|| v.remove(0))
        }
    }

    #[test]
    fn input_ring_keeps_order_and_drops_what_does_not_fit() {
        let mut ring = RxRing::new();
        let fifo = Fifo(RefCell::new((0..=255u8).chain(0..10).collect()));
        ring.drain(&fifo);
        assert!(fifo.0.borrow().is_empty(), "the FIFO is always emptied");
        assert_eq!(ring.pop(), Some(0));
        fifo.0.borrow_mut().push(77);
        ring.drain(&fifo);
        let rest: Vec<u8> = core::iter::from_fn(|| ring.pop()).collect();
        assert_eq!(rest.len(), 256, "255 left plus the one that fitted after a read");
        assert_eq!(&rest[..3], &[1, 2, 3]);
        assert_eq!(rest[254..], [255, 77]);
    }
}
