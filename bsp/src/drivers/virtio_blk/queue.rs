//! The virtqueue's memory as types: descriptor table, available and used rings, and the
//! virtio-blk request header and status byte, laid out in the driver's two DMA pages.
//!
//! The device reads and writes this memory behind the compiler's back, so every field is an
//! [`InMemoryRegister`]: each access is a single volatile load or store, and a shared
//! reference to the whole is sound (the cells are `UnsafeCell`s).

use core::mem::{offset_of, size_of};

use tock_registers::interfaces::Writeable;
use tock_registers::register_bitfields;
use tock_registers::registers::InMemoryRegister;

/// Descriptors in the queue; a request uses 2 plus one per buffer piece.
pub const QSIZE: usize = 128;
/// Bytes of DMA memory the driver needs (two pages, physically contiguous).
pub const DMA_BYTES: usize = 8192;

register_bitfields! {u16,
    /// A descriptor's flags (virtio 1.2, 2.7.5).
    pub DESC_FLAGS [
        /// The chain continues at `next`.
        NEXT OFFSET(0) NUMBITS(1) [],
        /// The device writes this buffer (otherwise it only reads it).
        WRITE OFFSET(1) NUMBITS(1) [],
    ],
}

/// One buffer of a request: where it is (physical address), how long, and what follows.
#[repr(C)]
pub struct Desc {
    pub addr: InMemoryRegister<u64>,
    pub len: InMemoryRegister<u32>,
    pub flags: InMemoryRegister<u16, DESC_FLAGS::Register>,
    pub next: InMemoryRegister<u16>,
}

/// The driver's ring: heads of the chains it offers, and how many it has offered.
#[repr(C)]
pub struct AvailRing {
    pub flags: InMemoryRegister<u16>,
    pub idx: InMemoryRegister<u16>,
    pub ring: [InMemoryRegister<u16>; QSIZE],
    pub used_event: InMemoryRegister<u16>,
}

/// One finished chain: its head, and the bytes the device wrote into it.
#[repr(C)]
pub struct UsedElem {
    pub id: InMemoryRegister<u32>,
    pub len: InMemoryRegister<u32>,
}

/// The device's ring: the chains it has finished, and how many.
#[repr(C)]
pub struct UsedRing {
    pub flags: InMemoryRegister<u16>,
    pub idx: InMemoryRegister<u16>,
    pub ring: [UsedElem; QSIZE],
    pub avail_event: InMemoryRegister<u16>,
}

/// What a virtio-blk request does (virtio 1.2, 5.2.6).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum ReqType {
    In = 0,
    Out = 1,
    Flush = 4,
}

/// The first buffer of every virtio-blk request.
#[repr(C)]
pub struct ReqHeader {
    pub kind: InMemoryRegister<u32>,
    pub reserved: InMemoryRegister<u32>,
    pub sector: InMemoryRegister<u64>,
}

/// The request status byte the device writes last.
pub const S_OK: u8 = 0;
pub const S_UNSUPP: u8 = 2;

/// The two DMA pages: descriptors and available ring in the first, the used ring (which the
/// legacy transport wants page-aligned) and the request header and status in the second.
#[repr(C, align(4096))]
pub struct QueueMem {
    pub desc: [Desc; QSIZE],
    pub avail: AvailRing,
    _pad0: [u8; 4096 - QSIZE * size_of::<Desc>() - size_of::<AvailRing>()],
    pub used: UsedRing,
    _pad1: [u8; 2048 - size_of::<UsedRing>()],
    pub header: ReqHeader,
    pub status: InMemoryRegister<u8>,
    _pad2: [u8; 2048 - size_of::<ReqHeader>() - 1],
}

const _: () = {
    assert!(size_of::<Desc>() == 16 && size_of::<ReqHeader>() == 16);
    assert!(size_of::<QueueMem>() == DMA_BYTES);
    assert!(offset_of!(QueueMem, avail) == QSIZE * 16);
    assert!(offset_of!(QueueMem, used) == 4096);
    assert!(offset_of!(QueueMem, header) == 4096 + 2048);
    assert!(offset_of!(QueueMem, status) == 4096 + 2048 + 16);
};

impl QueueMem {
    /// Byte offsets of the parts the device is told about, from the start of the pages.
    pub const AVAIL: u64 = offset_of!(QueueMem, avail) as u64;
    pub const USED: u64 = offset_of!(QueueMem, used) as u64;
    pub const HEADER: u64 = offset_of!(QueueMem, header) as u64;
    pub const STATUS: u64 = offset_of!(QueueMem, status) as u64;

    /// Zeroes both rings and every descriptor, as a device expects a new queue to be.
    pub fn clear(&self) {
        for d in &self.desc {
            d.addr.set(0);
            d.len.set(0);
            d.flags.set(0);
            d.next.set(0);
        }
        self.avail.flags.set(0);
        self.avail.idx.set(0);
        self.avail.ring.iter().for_each(|e| e.set(0));
        self.avail.used_event.set(0);
        self.used.flags.set(0);
        self.used.idx.set(0);
        for e in &self.used.ring {
            e.id.set(0);
            e.len.set(0);
        }
        self.used.avail_event.set(0);
    }

    /// A zeroed queue, for the host tests.
    #[cfg(test)]
    pub fn zeroed() -> std::boxed::Box<QueueMem> {
        let layout = std::alloc::Layout::new::<QueueMem>();
        // SAFETY: the layout has a non-zero size.
        let p = unsafe { std::alloc::alloc_zeroed(layout) } as *mut QueueMem;
        assert!(!p.is_null());
        // SAFETY: `p` was allocated with `QueueMem`'s layout by the global allocator, and
        // all-zero bytes are a valid `QueueMem` (integers and cells of integers only).
        unsafe { std::boxed::Box::from_raw(p) }
    }
}

/// Where the chain of every request starts (one request is in flight at a time).
pub const HEAD: u16 = 0;
