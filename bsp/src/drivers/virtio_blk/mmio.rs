//! The block device on the virtio-mmio transport (`virtio_mmio`, modern or legacy): the
//! features it takes, its one queue, and its capacity.

use tock_registers::register_bitfields;

use super::queue::{QueueMem, QSIZE};
use super::{Config, Transport};
use crate::drivers::generic_timer;
use crate::drivers::virtio_mmio::Slot;

register_bitfields! {u32,
    /// Feature bits 0–31 of a block device.
    FEATURES0 [
        /// `VIRTIO_BLK_F_FLUSH`: the device has a volatile write cache and a flush command.
        FLUSH OFFSET(9) NUMBITS(1) [],
    ],
}

/// The block device's virtio id.
const DEVICE_BLOCK: u32 = 2;
/// Where its configuration space holds the capacity: 512-byte sectors, 64 bits (5.2.4).
const CAPACITY: usize = 0;

/// One virtio-mmio slot holding a block device.
pub struct Mmio(Slot);

impl Mmio {
    /// The slot at `base`, if a virtio block device of a version this driver knows sits there.
    ///
    /// # Safety
    /// `base` must map a virtio-mmio slot's registers, used by nothing else for the value's
    /// life.
    pub unsafe fn new(base: usize) -> Option<Self> {
        // SAFETY: the caller's contract is `probe`'s.
        unsafe { Slot::probe(base, DEVICE_BLOCK, true) }.map(Mmio)
    }

    /// Whether the slot speaks the legacy transport (version 1).
    pub fn legacy(&self) -> bool {
        self.0.legacy()
    }
}

impl Transport for Mmio {
    fn reset(&mut self) -> bool {
        self.0.reset()
    }

    fn setup(&mut self, queue_pa: u64) -> Option<Config> {
        let s = &self.0;
        let features = s.negotiate(FEATURES0::FLUSH::SET.value, 0)?;
        if !s.queue(0, QSIZE, queue_pa, QueueMem::AVAIL, QueueMem::USED) {
            return None;
        }
        let sectors = s.config_u32(CAPACITY) as u64 | (s.config_u32(CAPACITY + 4) as u64) << 32;
        s.start();
        Some(Config { sectors, can_flush: FEATURES0::FLUSH.is_set(features) })
    }

    fn notify(&self) {
        self.0.notify(0);
    }

    fn ack_interrupt(&self) {
        self.0.ack_interrupt();
    }

    fn now(&self) -> u64 {
        generic_timer::now()
    }

    fn ticks_ms(&self, ms: u64) -> u64 {
        generic_timer::frequency() * ms / 1000
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flush_is_feature_bit_9() {
        assert_eq!(FEATURES0::FLUSH::SET.value, 1 << 9);
    }
}
