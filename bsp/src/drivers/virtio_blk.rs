//! virtio-blk over virtio-mmio: QEMU `virt`'s natural disk. Both the modern (version 2)
//! and the legacy (version 1) transport are driven. A request is either polled to
//! completion, or started ([`VirtioBlk::start`]) and left to the device, its end seen later
//! by [`VirtioBlk::poll`] (from the device's interrupt, or from whoever must wait for it).
//!
//! - `queue`: the virtqueue's memory as `#[repr(C)]` types.
//! - `mmio`: the transport's registers, feature negotiation, queue setup and reset.
//! - This file: requests over any [`Transport`] (the registers, or a simulated device in the
//!   host tests), and what happens when the device does not answer.
//!
//! Requests use one virtqueue of [`QSIZE`] descriptors in two pages of DMA memory the
//! kernel hands over at probe time ([`QueueMem`]). Data moves straight between the device
//! and the caller's buffers (scatter-gather), never through a bounce buffer.
//!
//! **A request that times out is taken back by resetting the device.** Until the device
//! returns a chain in the used ring, it may still read or write the caller's buffers; the
//! kernel, though, returns `Timeout` to the caller, who may then free those frames and see
//! them handed to another environment. So before `Timeout` is returned the device is reset
//! (status 0) and the driver waits until it reads back 0: from then on a virtio device may
//! not touch the queue or its buffers (virtio 1.2, 2.4; QEMU drains the request in the
//! register write). The queue is then cleared and set up again, and the next request starts
//! from a fresh ring. If the device does not acknowledge the reset, or does not come back
//! from it, the disk fails every later request with `Io` and never notifies the device again.
//! Keeping the frames pinned until the device returns them would have meant a kernel-side
//! pin in the frame table for a condition the device's own reset already ends.
//! `docs/storage.md` says what is tested and what holds by construction.

mod mmio;
mod queue;
#[cfg(test)]
mod tests;

use core::sync::atomic::{fence, Ordering};

use tock_registers::interfaces::{Readable, Writeable};

pub use self::mmio::Mmio;
pub use self::queue::{QueueMem, DMA_BYTES, QSIZE};
use self::queue::{ReqType, DESC_FLAGS, HEAD, S_OK, S_UNSUPP};
use crate::smp::relax;
use crate::{BlockDevice, BlockError};

/// How long a request may take before it is taken back.
const REQUEST_MS: u64 = 2000;

/// What the device said at setup.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Config {
    pub sectors: u64,
    /// `VIRTIO_BLK_F_FLUSH` was offered (and accepted).
    pub can_flush: bool,
}

/// What the request logic needs from a virtio transport. [`Mmio`] drives the registers; the
/// host tests drive a simulated device.
pub trait Transport {
    /// Resets the device and waits, within a bound, until it says it has let go of every
    /// queue and buffer. `false` if it did not.
    fn reset(&mut self) -> bool;
    /// Negotiates features and hands the device the queue whose pages start at physical
    /// `queue_pa`, then sets DRIVER_OK. `None` if the device is unusable.
    fn setup(&mut self, queue_pa: u64) -> Option<Config>;
    /// Tells the device the available ring has news.
    fn notify(&self);
    fn ack_interrupt(&self);
    /// The counter now, and counter ticks in `ms` milliseconds.
    fn now(&self) -> u64;
    fn ticks_ms(&self, ms: u64) -> u64;
}

pub struct VirtioBlk<T: Transport = Mmio> {
    dev: T,
    /// The DMA pages: the kernel's view, and the physical address the device uses.
    mem: &'static QueueMem,
    mem_pa: u64,
    virt_to_phys: fn(usize) -> u64,
    sectors: u64,
    can_flush: bool,
    avail_idx: u16,
    used_idx: u16,
    /// A timed-out request could not be taken back (or the device did not come back after
    /// the reset): the device is never notified again and every request fails with `Io`.
    failed: bool,
    /// The deadline of the request the device is working on, if any; and the outcome of
    /// one that ended while a synchronous request waited for the device, kept for `poll`.
    pending: Option<u64>,
    ended: Option<Result<(), BlockError>>,
    /// The interrupt the device raises when it returns a request (from the device tree).
    pub intid: Option<u32>,
}

// SAFETY: the registers (through `T`) and the DMA pages are reached only through this value,
// which the kernel keeps behind exclusive access; nothing else holds a reference to `mem`.
unsafe impl<T: Transport + Send> Send for VirtioBlk<T> {}

impl VirtioBlk<Mmio> {
    /// Sets the device at `base` up, if it is a virtio block device.
    ///
    /// # Safety
    /// `base` must map a virtio-mmio slot's registers; `dma`/`dma_pa` must be [`DMA_BYTES`]
    /// of page-aligned, physically contiguous, zeroed, cache-coherent memory the driver owns
    /// for good; `virt_to_phys` must give the physical address of any buffer later passed in.
    pub unsafe fn probe(
        base: usize,
        dma: *mut u8,
        dma_pa: u64,
        virt_to_phys: fn(usize) -> u64,
    ) -> Option<Self> {
        // SAFETY: the caller's contract: `base` maps a virtio-mmio slot that only we use.
        let dev = unsafe { Mmio::new(base) }?;
        if !(dma as usize).is_multiple_of(4096) {
            return None;
        }
        // SAFETY: the caller gives us DMA_BYTES of page-aligned memory for good, and all-zero
        // bytes are a valid `QueueMem` (integer cells only); nothing else refers to it.
        let mem = unsafe { &*(dma as *const QueueMem) };
        VirtioBlk::new(dev, mem, dma_pa, virt_to_phys)
    }

    /// Whether the device sits on a legacy (version 1) virtio-mmio slot.
    pub fn legacy(&self) -> bool {
        self.dev.legacy()
    }
}

impl<T: Transport> VirtioBlk<T> {
    /// Resets the device behind `dev` and sets it up with the queue in `mem` (physical
    /// address `mem_pa`).
    pub fn new(
        mut dev: T,
        mem: &'static QueueMem,
        mem_pa: u64,
        virt_to_phys: fn(usize) -> u64,
    ) -> Option<Self> {
        if !dev.reset() {
            return None;
        }
        mem.clear();
        let Some(c) = dev.setup(mem_pa) else {
            dev.reset();
            return None;
        };
        Some(VirtioBlk {
            dev,
            mem,
            mem_pa,
            virt_to_phys,
            sectors: c.sectors,
            can_flush: c.can_flush,
            avail_idx: 0,
            used_idx: 0,
            failed: false,
            pending: None,
            ended: None,
            intid: None,
        })
    }

    fn desc(&self, i: usize, addr: u64, len: u32, last: bool, device_writes: bool, next: u16) {
        let d = &self.mem.desc[i];
        d.addr.set(addr);
        d.len.set(len);
        d.flags.write(DESC_FLAGS::NEXT.val(!last as u16) + DESC_FLAGS::WRITE.val(device_writes as u16));
        d.next.set(next);
    }

    /// Runs one request: header, then `pieces` (address, length), then the status byte.
    fn request(&mut self, kind: ReqType, lba: u64, pieces: &[(u64, u32)]) -> Result<(), BlockError> {
        self.submit(kind, lba, pieces)?;
        self.wait()
    }

    /// Polls the request in flight to its end. Each turn ends with `yield` ([`relax`]), which
    /// a real core ignores: under QEMU, where the device works on a host thread and `-icount`
    /// counts every turn of the loop, it gives the host thread up each turn, so that far
    /// fewer turns run while the device works (the flush of fsd's LFS mount at boot:
    /// 1.1-2.1 million instructions with `isb`, `spin_loop`'s, 0.15-0.8 million with
    /// `yield`).
    fn wait(&mut self) -> Result<(), BlockError> {
        loop {
            if let Some(r) = self.check() {
                return r;
            }
            relax();
        }
    }

    /// Hands one request to the device, once the one in flight (if any) has ended.
    fn submit(&mut self, kind: ReqType, lba: u64, pieces: &[(u64, u32)]) -> Result<(), BlockError> {
        if self.pending.is_some() {
            self.ended = Some(self.wait());
        }
        if self.failed {
            return Err(BlockError::Io);
        }
        let m = self.mem;
        m.header.kind.set(kind as u32);
        m.header.reserved.set(0);
        m.header.sector.set(lba);
        m.status.set(0xff);
        self.desc(0, self.mem_pa + QueueMem::HEADER, 16, false, false, 1);
        for (i, &(addr, len)) in pieces.iter().enumerate() {
            self.desc(1 + i, addr, len, false, kind == ReqType::In, 2 + i as u16);
        }
        self.desc(1 + pieces.len(), self.mem_pa + QueueMem::STATUS, 1, true, true, 0);
        m.avail.ring[self.avail_idx as usize % QSIZE].set(HEAD);
        fence(Ordering::SeqCst);
        self.avail_idx = self.avail_idx.wrapping_add(1);
        m.avail.idx.set(self.avail_idx);
        fence(Ordering::SeqCst);
        self.pending = Some(self.dev.now() + self.dev.ticks_ms(REQUEST_MS));
        self.dev.notify();
        Ok(())
    }

    /// The outcome of the request [`Self::start`] left with the device, once it has ended —
    /// returned by the device, or past its deadline taken back (`Timeout`) — and `None`
    /// before that, or if there is none. Also acknowledges the device's interrupt.
    pub fn poll(&mut self) -> Option<Result<(), BlockError>> {
        self.ended.take().or_else(|| self.check())
    }

    /// The request in flight's outcome, if it has ended.
    fn check(&mut self) -> Option<Result<(), BlockError>> {
        let deadline = self.pending?;
        let used = self.mem.used.idx.get();
        if used == self.used_idx {
            if self.dev.now() <= deadline {
                return None;
            }
            self.pending = None;
            self.take_back();
            return Some(Err(BlockError::Timeout));
        }
        (self.used_idx, self.pending) = (used, None);
        fence(Ordering::SeqCst);
        self.dev.ack_interrupt();
        Some(match self.mem.status.get() {
            S_OK => Ok(()),
            S_UNSUPP => Err(BlockError::OutOfRange),
            _ => Err(BlockError::Io),
        })
    }

    /// Takes a request the device did not finish back from it: a reset, then a fresh queue.
    /// The disk stays failed if either step does not work.
    fn take_back(&mut self) {
        self.failed = true;
        if !self.dev.reset() {
            return; // the device may still hold the buffers: never touch the ring again
        }
        self.mem.clear();
        (self.avail_idx, self.used_idx) = (0, 0);
        match self.dev.setup(self.mem_pa) {
            Some(c) if c.sectors == self.sectors => {
                self.can_flush = c.can_flush;
                self.failed = false;
            }
            // Not the disk it was: leave it reset and unused.
            _ => {
                self.dev.reset();
            }
        }
    }

    /// Moves `bufs` (kernel address, length) in order, in requests of at most QSIZE - 2
    /// pieces each; with `background`, the last request is only started (see [`Self::poll`]).
    fn transfer(
        &mut self,
        kind: ReqType,
        mut lba: u64,
        bufs: impl Iterator<Item = (usize, usize)> + Clone,
        background: bool,
    ) -> Result<(), BlockError> {
        let total: usize = bufs.clone().map(|b| b.1).sum();
        if bufs.clone().any(|b| b.1 % 512 != 0) || background && total == 0 {
            return Err(BlockError::OutOfRange);
        }
        if lba.checked_add(total as u64 / 512).is_none_or(|end| end > self.sectors) {
            return Err(BlockError::OutOfRange);
        }
        let mut pieces = [(0u64, 0u32); QSIZE - 2];
        let (mut n, mut sectors) = (0, 0);
        for (va, len) in bufs {
            pieces[n] = ((self.virt_to_phys)(va), len as u32);
            n += 1;
            sectors += len as u64 / 512;
            if n == pieces.len() {
                self.request(kind, lba, &pieces[..n])?;
                (lba, n, sectors) = (lba + sectors, 0, 0);
            }
        }
        match n {
            0 => Ok(()),
            _ if background => self.submit(kind, lba, &pieces[..n]),
            _ => self.request(kind, lba, &pieces[..n]),
        }
    }

    /// Starts moving `bufs` from `lba` into memory (or, `write`, from memory there) and
    /// returns without waiting: the device works on it until [`Self::poll`] reports its end.
    /// The buffers must stay put until then. A request already in flight is waited for first.
    pub fn start(&mut self, lba: u64, bufs: &[&mut [u8]], write: bool) -> Result<(), BlockError> {
        let kind = if write { ReqType::Out } else { ReqType::In };
        self.transfer(kind, lba, bufs.iter().map(|b| (b.as_ptr() as usize, b.len())), true)
    }
}

impl<T: Transport> BlockDevice for VirtioBlk<T> {
    fn sectors(&self) -> u64 {
        self.sectors
    }

    fn read(&mut self, lba: u64, bufs: &mut [&mut [u8]]) -> Result<(), BlockError> {
        self.transfer(ReqType::In, lba, bufs.iter().map(|b| (b.as_ptr() as usize, b.len())), false)
    }

    fn write(&mut self, lba: u64, bufs: &[&[u8]]) -> Result<(), BlockError> {
        self.transfer(ReqType::Out, lba, bufs.iter().map(|b| (b.as_ptr() as usize, b.len())), false)
    }

    fn flush(&mut self) -> Result<(), BlockError> {
        if self.can_flush {
            self.request(ReqType::Flush, 0, &[])
        } else {
            Ok(()) // no volatile write cache: a completed write is already durable
        }
    }
}
