//! virtio-net over the modern virtio-mmio transport (version 2): QEMU `virt`'s NIC.
//!
//! - `mmio`: the transport's registers, feature negotiation and the two queues' setup.
//! - This file: the queues' memory, receiving and sending over any [`Transport`] (the
//!   registers, or a simulated device in the host tests).
//!
//! The driver owns [`DMA_BYTES`] of memory the kernel hands over at probe time ([`NetMem`]):
//! the receive queue's [`QSIZE`] buffers of [`BUF`] bytes each, always offered to the device,
//! and one transmit buffer. The device writes received frames there; the kernel then copies
//! each into the ring of the environment whose filter it matches (`kernel/src/net.rs`). A
//! frame is sent by copying it into the transmit buffer and waiting, within a bound, for the
//! device to give the buffer back. No offloads are negotiated: frames are plain Ethernet
//! frames behind the 12-byte virtio-net header, checksums done by the sender.
//!
//! A send the device does not finish in time is taken back as virtio-blk does: a reset,
//! after which the device may not touch the queues, then a fresh setup.

mod mmio;
#[cfg(test)]
mod tests;

use core::mem::{offset_of, size_of};
use core::sync::atomic::{fence, Ordering};

use tock_registers::registers::InMemoryRegister;

use crate::dt::Region;

pub use self::mmio::Mmio;
use tock_registers::interfaces::{Readable, Writeable};

/// Descriptors (and receive buffers) in each queue.
pub const QSIZE: usize = 16;
/// Bytes of one buffer: the virtio-net header and a whole Ethernet frame.
pub const BUF: usize = 2048;
/// The virtio-net header that precedes every frame (virtio 1.2, 5.1.6; `num_buffers`
/// included, as a modern device always has it).
pub const HDR: usize = 12;
/// The largest frame the driver sends or accepts.
pub const FRAME_MAX: usize = 1514;
/// Bytes of DMA memory the driver needs (physically contiguous, page-aligned).
pub const DMA_BYTES: usize = size_of::<NetMem>();
/// How long the device may take to give a transmit buffer back.
const SEND_MS: u64 = 100;
/// A descriptor flag: the device writes the buffer.
const WRITE: u16 = 2;

#[repr(C)]
pub struct Desc {
    pub addr: InMemoryRegister<u64>,
    pub len: InMemoryRegister<u32>,
    pub flags: InMemoryRegister<u16>,
    pub next: InMemoryRegister<u16>,
}

#[repr(C)]
pub struct UsedElem {
    pub id: InMemoryRegister<u32>,
    pub len: InMemoryRegister<u32>,
}

/// One split virtqueue: descriptors, the driver's ring and the device's ring.
#[repr(C, align(64))]
pub struct Queue {
    pub desc: [Desc; QSIZE],
    pub avail_flags: InMemoryRegister<u16>,
    pub avail_idx: InMemoryRegister<u16>,
    pub avail_ring: [InMemoryRegister<u16>; QSIZE],
    _avail_event: InMemoryRegister<u16>,
    /// The used ring starts 4-byte aligned (virtio 1.2, 2.7).
    _pad: u16,
    pub used_flags: InMemoryRegister<u16>,
    pub used_idx: InMemoryRegister<u16>,
    pub used_ring: [UsedElem; QSIZE],
    _used_event: InMemoryRegister<u16>,
}

impl Queue {
    pub const AVAIL: u64 = offset_of!(Queue, avail_flags) as u64;
    pub const USED: u64 = offset_of!(Queue, used_flags) as u64;

    fn clear(&self) {
        for d in &self.desc {
            d.addr.set(0);
            d.len.set(0);
            d.flags.set(0);
            d.next.set(0);
        }
        self.avail_flags.set(0);
        self.avail_idx.set(0);
        self.avail_ring.iter().for_each(|e| e.set(0));
        self.used_flags.set(0);
        self.used_idx.set(0);
        for e in &self.used_ring {
            e.id.set(0);
            e.len.set(0);
        }
    }
}

/// The driver's DMA memory: both queues in the first page, then the buffers.
#[repr(C, align(4096))]
pub struct NetMem {
    pub rx: Queue,
    pub tx: Queue,
    _pad: [u8; 4096 - 2 * size_of::<Queue>()],
    pub rx_buf: [[InMemoryRegister<u8>; BUF]; QSIZE],
    pub tx_buf: [InMemoryRegister<u8>; BUF],
}

const _: () = {
    assert!(2 * size_of::<Queue>() <= 4096 && offset_of!(NetMem, rx_buf) == 4096);
    assert!(Queue::USED.is_multiple_of(4) && offset_of!(Queue, used_ring) as u64 == Queue::USED + 4);
};

impl NetMem {
    pub const TX: u64 = offset_of!(NetMem, tx) as u64;
    pub const RX_BUF: u64 = offset_of!(NetMem, rx_buf) as u64;
    pub const TX_BUF: u64 = offset_of!(NetMem, tx_buf) as u64;

    /// A zeroed one, for the host tests.
    #[cfg(test)]
    pub fn zeroed() -> std::boxed::Box<NetMem> {
        let layout = std::alloc::Layout::new::<NetMem>();
        // SAFETY: the layout has a non-zero size.
        let p = unsafe { std::alloc::alloc_zeroed(layout) } as *mut NetMem;
        assert!(!p.is_null());
        // SAFETY: allocated with `NetMem`'s layout by the global allocator; all-zero bytes
        // are a valid `NetMem` (cells of integers only).
        unsafe { std::boxed::Box::from_raw(p) }
    }
}

pub use crate::NetError;

/// What the frame logic needs from a virtio transport.
pub trait Transport {
    /// Resets the device and waits, within a bound, until it has let go of the queues.
    fn reset(&mut self) -> bool;
    /// Negotiates features, hands the device both queues (the DMA memory at physical
    /// `mem_pa`), sets DRIVER_OK and returns the MAC address. `None` if unusable.
    fn setup(&mut self, mem_pa: u64) -> Option<[u8; 6]>;
    /// Tells the device queue `q` (0: receive, 1: transmit) has news.
    fn notify(&self, q: u32);
    fn now(&self) -> u64;
    fn ticks_ms(&self, ms: u64) -> u64;
}

pub struct VirtioNet<T: Transport = Mmio> {
    dev: T,
    mem: &'static NetMem,
    mem_pa: u64,
    mac: [u8; 6],
    rx_seen: u16,
    tx_idx: u16,
    failed: bool,
}

// SAFETY: the registers (through `T`) and the DMA memory are reached only through this
// value, which the kernel keeps behind exclusive access.
unsafe impl<T: Transport + Send> Send for VirtioNet<T> {}

impl VirtioNet<Mmio> {
    /// Sets up the first modern virtio network device among the virtio-mmio `slots`
    /// (physical regions, reached at `virt(base)`); slots holding anything else are only read.
    ///
    /// # Safety
    /// Every slot must be mapped as device memory at `virt(base)`, and a network device's
    /// slot used by nothing else; `dma`/`dma_pa` must be [`DMA_BYTES`] of page-aligned,
    /// physically contiguous, cache-coherent memory (any contents) the driver owns for good.
    pub unsafe fn find(
        slots: &[Region],
        virt: impl Fn(u64) -> usize,
        dma: *mut u8,
        dma_pa: u64,
    ) -> Option<Self> {
        if !(dma as usize).is_multiple_of(4096) {
            return None;
        }
        // SAFETY: the caller gives us DMA_BYTES of page-aligned memory for good; any bytes
        // are a valid `NetMem` (cells of integers only); nothing else refers to it.
        let mem = unsafe { &*(dma as *const NetMem) };
        slots.iter().find_map(|slot| {
            // SAFETY: the caller's contract: the slot is mapped at `virt(base)`; `new` only
            // reads the ids of a slot that holds another device.
            let dev = unsafe { Mmio::new(virt(slot.base)) }?;
            VirtioNet::new(dev, mem, dma_pa)
        })
    }
}

impl<T: Transport> VirtioNet<T> {
    /// Resets the device, sets it up with the queues in `mem` (physical `mem_pa`) and
    /// offers it every receive buffer.
    pub fn new(mut dev: T, mem: &'static NetMem, mem_pa: u64) -> Option<Self> {
        let mac = Self::start(&mut dev, mem, mem_pa)?;
        Some(VirtioNet { dev, mem, mem_pa, mac, rx_seen: 0, tx_idx: 0, failed: false })
    }

    fn start(dev: &mut T, mem: &NetMem, mem_pa: u64) -> Option<[u8; 6]> {
        if !dev.reset() {
            return None;
        }
        mem.rx.clear();
        mem.tx.clear();
        for (i, d) in mem.rx.desc.iter().enumerate() {
            d.addr.set(mem_pa + NetMem::RX_BUF + (i * BUF) as u64);
            d.len.set(BUF as u32);
            d.flags.set(WRITE);
            mem.rx.avail_ring[i].set(i as u16);
        }
        mem.rx.avail_idx.set(QSIZE as u16);
        let Some(mac) = dev.setup(mem_pa) else {
            dev.reset();
            return None;
        };
        fence(Ordering::SeqCst);
        dev.notify(0);
        Some(mac)
    }

    pub fn mac(&self) -> [u8; 6] {
        self.mac
    }

    /// Hands each frame the device has received (at most one queue's worth) to `f`, then
    /// offers its buffer again. Returns how many there were.
    pub fn recv(&mut self, mut f: impl FnMut(&[u8])) -> usize {
        let q = &self.mem.rx;
        if self.failed || q.used_idx.get() == self.rx_seen {
            return 0; // the common case, each tick: nothing arrived (no frame buffer to clear)
        }
        let mut n = 0;
        let mut frame = [0u8; FRAME_MAX];
        while n < QSIZE && !self.failed && q.used_idx.get() != self.rx_seen {
            fence(Ordering::SeqCst);
            let e = &q.used_ring[self.rx_seen as usize % QSIZE];
            let (id, len) = (e.id.get() as usize % QSIZE, e.len.get() as usize);
            let body = len.saturating_sub(HDR).min(FRAME_MAX);
            for (b, cell) in frame[..body].iter_mut().zip(&self.mem.rx_buf[id][HDR..]) {
                *b = cell.get();
            }
            if len > HDR {
                f(&frame[..body]);
            }
            let at = q.avail_idx.get();
            q.avail_ring[at as usize % QSIZE].set(id as u16);
            fence(Ordering::SeqCst);
            q.avail_idx.set(at.wrapping_add(1));
            self.rx_seen = self.rx_seen.wrapping_add(1);
            n += 1;
        }
        if n > 0 {
            fence(Ordering::SeqCst);
            self.dev.notify(0);
        }
        n
    }

    /// Sends one Ethernet frame and waits for the device to take it.
    pub fn send(&mut self, frame: &[u8]) -> Result<(), NetError> {
        if !(14..=FRAME_MAX).contains(&frame.len()) {
            return Err(NetError::BadLength);
        }
        if self.failed {
            return Err(NetError::Io);
        }
        let (m, q) = (self.mem, &self.mem.tx);
        m.tx_buf[..HDR].iter().for_each(|c| c.set(0));
        m.tx_buf[HDR..HDR + frame.len()].iter().zip(frame).for_each(|(c, b)| c.set(*b));
        let d = &q.desc[0];
        d.addr.set(self.mem_pa + NetMem::TX_BUF);
        d.len.set((HDR + frame.len()) as u32);
        d.flags.set(0);
        d.next.set(0);
        q.avail_ring[self.tx_idx as usize % QSIZE].set(0);
        fence(Ordering::SeqCst);
        self.tx_idx = self.tx_idx.wrapping_add(1);
        q.avail_idx.set(self.tx_idx);
        fence(Ordering::SeqCst);
        self.dev.notify(1);
        let deadline = self.dev.now() + self.dev.ticks_ms(SEND_MS);
        while q.used_idx.get() != self.tx_idx {
            if self.dev.now() > deadline {
                self.take_back();
                return Err(NetError::Timeout);
            }
            core::hint::spin_loop();
        }
        Ok(())
    }

    /// After a send the device did not finish: a reset and a fresh start, or failed for good.
    fn take_back(&mut self) {
        (self.rx_seen, self.tx_idx) = (0, 0);
        self.failed = Self::start(&mut self.dev, self.mem, self.mem_pa) != Some(self.mac);
    }
}

impl<T: Transport> crate::Nic for VirtioNet<T> {
    fn mac(&self) -> [u8; 6] {
        self.mac
    }
    fn recv(&mut self, f: &mut dyn FnMut(&[u8])) -> usize {
        VirtioNet::recv(self, f)
    }
    fn send(&mut self, frame: &[u8]) -> Result<(), NetError> {
        VirtioNet::send(self, frame)
    }
}
