//! virtio-blk over virtio-mmio: QEMU `virt`'s natural disk. Both the modern (version 2)
//! and the legacy (version 1) transport are driven; requests are polled to completion.
//!
//! Requests use one virtqueue of [`QSIZE`] descriptors in two pages of DMA memory the
//! kernel hands over at probe time: descriptor table and available ring in the first
//! page, the used ring and the request header/status area in the second (the legacy
//! transport wants the used ring page-aligned). Data moves straight between the device and
//! the caller's buffers (scatter-gather), never through a bounce buffer.
// TODO(regs branch): remove
#![allow(clippy::multiple_unsafe_ops_per_block)]

use core::sync::atomic::{fence, Ordering};

use tock_registers::interfaces::{Readable, Writeable};
use tock_registers::register_structs;
use tock_registers::registers::{ReadOnly, ReadWrite, WriteOnly};

use crate::drivers::generic_timer;
use crate::{BlockDevice, BlockError};

register_structs! {
    Regs {
        (0x000 => magic: ReadOnly<u32>),
        (0x004 => version: ReadOnly<u32>),
        (0x008 => device_id: ReadOnly<u32>),
        (0x00c => _vendor),
        (0x010 => device_features: ReadOnly<u32>),
        (0x014 => device_features_sel: WriteOnly<u32>),
        (0x018 => _r0),
        (0x020 => driver_features: WriteOnly<u32>),
        (0x024 => driver_features_sel: WriteOnly<u32>),
        (0x028 => guest_page_size: WriteOnly<u32>),
        (0x02c => _r1),
        (0x030 => queue_sel: WriteOnly<u32>),
        (0x034 => queue_num_max: ReadOnly<u32>),
        (0x038 => queue_num: WriteOnly<u32>),
        (0x03c => queue_align: WriteOnly<u32>),
        (0x040 => queue_pfn: ReadWrite<u32>),
        (0x044 => queue_ready: ReadWrite<u32>),
        (0x048 => _r2),
        (0x050 => queue_notify: WriteOnly<u32>),
        (0x054 => _r3),
        (0x060 => interrupt_status: ReadOnly<u32>),
        (0x064 => interrupt_ack: WriteOnly<u32>),
        (0x068 => _r4),
        (0x070 => status: ReadWrite<u32>),
        (0x074 => _r5),
        (0x080 => queue_desc_low: WriteOnly<u32>),
        (0x084 => queue_desc_high: WriteOnly<u32>),
        (0x088 => _r6),
        (0x090 => queue_driver_low: WriteOnly<u32>),
        (0x094 => queue_driver_high: WriteOnly<u32>),
        (0x098 => _r7),
        (0x0a0 => queue_device_low: WriteOnly<u32>),
        (0x0a4 => queue_device_high: WriteOnly<u32>),
        (0x0a8 => _r8),
        (0x100 => capacity_low: ReadOnly<u32>),
        (0x104 => capacity_high: ReadOnly<u32>),
        (0x108 => @END),
    }
}

/// Descriptors in the queue; a request uses 2 plus one per buffer piece.
pub const QSIZE: usize = 128;
/// Bytes of DMA memory the driver needs (two pages, physically contiguous).
pub const DMA_BYTES: usize = 8192;

const STATUS_ACK: u32 = 1;
const STATUS_DRIVER: u32 = 2;
const STATUS_DRIVER_OK: u32 = 4;
const STATUS_FEATURES_OK: u32 = 8;
const F_FLUSH: u32 = 1 << 9;
const F_VERSION_1: u32 = 1; // feature bit 32: word 1, bit 0

const T_IN: u32 = 0;
const T_OUT: u32 = 1;
const T_FLUSH: u32 = 4;

const DESC_NEXT: u16 = 1;
const DESC_WRITE: u16 = 2;

#[repr(C)]
#[derive(Clone, Copy)]
struct Desc {
    addr: u64,
    len: u32,
    flags: u16,
    next: u16,
}

/// Offsets inside the two DMA pages.
const AVAIL: usize = QSIZE * 16;
const USED: usize = 4096;
const HEADER: usize = 4096 + 2048;
const STATUS: usize = HEADER + 16;

pub struct VirtioBlk {
    regs: *const Regs,
    /// DMA memory: kernel address and the physical address the device uses.
    dma: *mut u8,
    dma_pa: u64,
    virt_to_phys: fn(usize) -> u64,
    sectors: u64,
    can_flush: bool,
    avail_idx: u16,
    used_idx: u16,
}

// SAFETY: the registers and DMA pages are reached only through this value, which the
// kernel keeps behind exclusive access.
unsafe impl Send for VirtioBlk {}

impl VirtioBlk {
    /// Sets the device at `base` up, if it is a virtio block device.
    ///
    /// # Safety
    /// `base` must map a virtio-mmio slot's registers; `dma`/`dma_pa` must be [`DMA_BYTES`]
    /// of physically contiguous, zeroed, cache-coherent memory the driver owns for good;
    /// `virt_to_phys` must give the physical address of any buffer later passed in.
    pub unsafe fn probe(
        base: usize,
        dma: *mut u8,
        dma_pa: u64,
        virt_to_phys: fn(usize) -> u64,
    ) -> Option<Self> {
        // SAFETY: per the contract, `base` maps virtio-mmio registers.
        let r = unsafe { &*(base as *const Regs) };
        if r.magic.get() != 0x7472_6976 || r.device_id.get() != 2 {
            return None;
        }
        let modern = match r.version.get() {
            1 => false,
            2 => true,
            _ => return None,
        };
        r.status.set(0);
        r.status.set(STATUS_ACK);
        r.status.set(STATUS_ACK | STATUS_DRIVER);
        r.device_features_sel.set(0);
        let features = r.device_features.get();
        r.driver_features_sel.set(0);
        r.driver_features.set(features & F_FLUSH);
        if modern {
            r.device_features_sel.set(1);
            if r.device_features.get() & F_VERSION_1 == 0 {
                return None;
            }
            r.driver_features_sel.set(1);
            r.driver_features.set(F_VERSION_1);
            r.status.set(STATUS_ACK | STATUS_DRIVER | STATUS_FEATURES_OK);
            if r.status.get() & STATUS_FEATURES_OK == 0 {
                return None;
            }
        }
        r.queue_sel.set(0);
        if (r.queue_num_max.get() as usize) < QSIZE {
            return None;
        }
        r.queue_num.set(QSIZE as u32);
        if modern {
            let split = |pa: u64| (pa as u32, (pa >> 32) as u32);
            let (l, h) = split(dma_pa);
            r.queue_desc_low.set(l);
            r.queue_desc_high.set(h);
            let (l, h) = split(dma_pa + AVAIL as u64);
            r.queue_driver_low.set(l);
            r.queue_driver_high.set(h);
            let (l, h) = split(dma_pa + USED as u64);
            r.queue_device_low.set(l);
            r.queue_device_high.set(h);
            r.queue_ready.set(1);
        } else {
            r.guest_page_size.set(4096);
            r.queue_align.set(4096);
            r.queue_pfn.set((dma_pa >> 12) as u32);
        }
        let sectors = r.capacity_low.get() as u64 | (r.capacity_high.get() as u64) << 32;
        let status = if modern { STATUS_FEATURES_OK } else { 0 };
        r.status.set(STATUS_ACK | STATUS_DRIVER | status | STATUS_DRIVER_OK);
        Some(VirtioBlk {
            regs: base as *const Regs,
            dma,
            dma_pa,
            virt_to_phys,
            sectors,
            can_flush: features & F_FLUSH != 0,
            avail_idx: 0,
            used_idx: 0,
        })
    }

    fn regs(&self) -> &Regs {
        // SAFETY: `probe`'s contract.
        unsafe { &*self.regs }
    }

    fn desc(&mut self, i: usize, d: Desc) {
        // SAFETY: i < QSIZE, so the descriptor lies in the first DMA page, which we own.
        unsafe { (self.dma as *mut Desc).add(i).write_volatile(d) };
    }

    /// Runs one request: header, then `pieces` (address, length), then the status byte.
    fn request(&mut self, kind: u32, lba: u64, pieces: &[(u64, u32)]) -> Result<(), BlockError> {
        let device_writes = kind == T_IN;
        // SAFETY: the header and status bytes lie in the second DMA page, which we own.
        unsafe {
            let h = self.dma.add(HEADER);
            (h as *mut u32).write_volatile(kind);
            (h.add(4) as *mut u32).write_volatile(0);
            (h.add(8) as *mut u64).write_volatile(lba);
            self.dma.add(STATUS).write_volatile(0xff);
        }
        self.desc(0, Desc { addr: self.dma_pa + HEADER as u64, len: 16, flags: DESC_NEXT, next: 1 });
        let data_flags = DESC_NEXT | if device_writes { DESC_WRITE } else { 0 };
        for (i, &(addr, len)) in pieces.iter().enumerate() {
            self.desc(1 + i, Desc { addr, len, flags: data_flags, next: 2 + i as u16 });
        }
        let last = 1 + pieces.len();
        self.desc(last, Desc { addr: self.dma_pa + STATUS as u64, len: 1, flags: DESC_WRITE, next: 0 });
        // SAFETY: the available ring lies in the first DMA page.
        unsafe {
            let ring = self.dma.add(AVAIL) as *mut u16;
            ring.add(2 + self.avail_idx as usize % QSIZE).write_volatile(0);
            fence(Ordering::SeqCst);
            self.avail_idx = self.avail_idx.wrapping_add(1);
            ring.add(1).write_volatile(self.avail_idx);
        }
        fence(Ordering::SeqCst);
        self.regs().queue_notify.set(0);
        let deadline = generic_timer::now() + generic_timer::frequency() * 2;
        loop {
            // SAFETY: the used ring's index lies in the second DMA page.
            let used = unsafe { (self.dma.add(USED + 2) as *const u16).read_volatile() };
            if used != self.used_idx {
                self.used_idx = used;
                break;
            }
            if generic_timer::now() > deadline {
                return Err(BlockError::Timeout);
            }
            core::hint::spin_loop();
        }
        fence(Ordering::SeqCst);
        let ack = self.regs().interrupt_status.get();
        self.regs().interrupt_ack.set(ack);
        // SAFETY: the status byte lies in the second DMA page.
        match unsafe { self.dma.add(STATUS).read_volatile() } {
            0 => Ok(()),
            2 => Err(BlockError::OutOfRange), // UNSUPP
            _ => Err(BlockError::Io),
        }
    }

    /// Moves `bufs` (kernel address, length) in order, in requests of at most QSIZE - 2
    /// pieces each.
    fn transfer(
        &mut self,
        kind: u32,
        mut lba: u64,
        bufs: impl Iterator<Item = (usize, usize)> + Clone,
    ) -> Result<(), BlockError> {
        let total: usize = bufs.clone().map(|b| b.1).sum();
        if bufs.clone().any(|b| b.1 % 512 != 0) {
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
        if n > 0 {
            self.request(kind, lba, &pieces[..n])?;
        }
        Ok(())
    }
}

impl BlockDevice for VirtioBlk {
    fn sectors(&self) -> u64 {
        self.sectors
    }

    fn read(&mut self, lba: u64, bufs: &mut [&mut [u8]]) -> Result<(), BlockError> {
        self.transfer(T_IN, lba, bufs.iter().map(|b| (b.as_ptr() as usize, b.len())))
    }

    fn write(&mut self, lba: u64, bufs: &[&[u8]]) -> Result<(), BlockError> {
        self.transfer(T_OUT, lba, bufs.iter().map(|b| (b.as_ptr() as usize, b.len())))
    }

    fn flush(&mut self) -> Result<(), BlockError> {
        if self.can_flush {
            self.request(T_FLUSH, 0, &[])
        } else {
            Ok(()) // no volatile write cache: a completed write is already durable
        }
    }
}
