//! The board's disk: whichever block controller the device tree and a probe find.

use crate::drivers::virtio_blk::VirtioBlk;
use crate::dt::BoardInfo;
use crate::{BlockDevice, BlockError};

/// Memory a disk driver may use for DMA: physically contiguous, zeroed, cache-coherent
/// (QEMU's virtio) — [`DMA_BYTES`] of it, owned by the driver for good.
pub struct Dma {
    pub va: *mut u8,
    pub pa: u64,
}

pub const DMA_BYTES: usize = crate::drivers::virtio_blk::DMA_BYTES;

pub enum Disk {
    Virtio(VirtioBlk),
}

impl Disk {
    /// Finds the disk: the first virtio block device on `virt`. `virt` maps a physical MMIO
    /// address to where the kernel mapped it; `virt_to_phys` turns a kernel address of
    /// RAM into a physical one (for DMA).
    ///
    /// # Safety
    /// Every region of [`BoardInfo::device_regions`] must be mapped at `virt(base)`; `dma`
    /// must satisfy [`Dma`]'s description; `virt_to_phys` must be right for every buffer
    /// later passed to the disk.
    pub unsafe fn probe(
        info: &BoardInfo,
        virt: impl Fn(u64) -> usize,
        dma: Dma,
        virt_to_phys: fn(usize) -> u64,
    ) -> Option<Disk> {
        for slot in info.virtio_mmio.as_slice() {
            // SAFETY: the slot is mapped (caller's contract) and the DMA memory is ours.
            if let Some(d) = unsafe { VirtioBlk::probe(virt(slot.base), dma.va, dma.pa, virt_to_phys) } {
                return Some(Disk::Virtio(d));
            }
        }
        None
    }

    /// What kind of controller this is, for the boot log.
    pub fn name(&self) -> &'static str {
        match self {
            Disk::Virtio(_) => "virtio-blk",
        }
    }
}

impl BlockDevice for Disk {
    fn sectors(&self) -> u64 {
        match self {
            Disk::Virtio(d) => d.sectors(),
        }
    }

    fn read(&mut self, lba: u64, bufs: &mut [&mut [u8]]) -> Result<(), BlockError> {
        match self {
            Disk::Virtio(d) => d.read(lba, bufs),
        }
    }

    fn write(&mut self, lba: u64, bufs: &[&[u8]]) -> Result<(), BlockError> {
        match self {
            Disk::Virtio(d) => d.write(lba, bufs),
        }
    }

    fn flush(&mut self) -> Result<(), BlockError> {
        match self {
            Disk::Virtio(d) => d.flush(),
        }
    }
}
