//! The network device on the virtio-mmio transport (`virtio_mmio`, modern only): the
//! features it takes (`VIRTIO_F_VERSION_1` and `VIRTIO_NET_F_MAC`), both queues, and its MAC.

use tock_registers::register_bitfields;

use super::{NetMem, Queue, Transport, QSIZE};
use crate::drivers::generic_timer;
use crate::drivers::virtio_mmio::Slot;

register_bitfields! {u32,
    /// Feature bits 0–31 of a network device.
    FEATURES0 [
        /// `VIRTIO_NET_F_MAC`: the device has a MAC address in its configuration.
        MAC OFFSET(5) NUMBITS(1) [],
    ],
}

/// The network device's virtio id.
const DEVICE_NET: u32 = 1;
/// Where its configuration space holds the MAC address (5.1.4).
const MAC_AT: usize = 0;

/// One virtio-mmio slot holding a modern network device.
pub struct Mmio(Slot);

impl Mmio {
    /// The slot at `base`, if a modern (version 2) virtio network device sits there.
    ///
    /// # Safety
    /// `base` must map a virtio-mmio slot's registers, used by nothing else for the value's
    /// life.
    pub unsafe fn new(base: usize) -> Option<Self> {
        // SAFETY: the caller's contract is `probe`'s.
        unsafe { Slot::probe(base, DEVICE_NET, false) }.map(Mmio)
    }
}

impl Transport for Mmio {
    fn reset(&mut self) -> bool {
        self.0.reset()
    }

    fn setup(&mut self, mem_pa: u64) -> Option<[u8; 6]> {
        let s = &self.0;
        let mac = FEATURES0::MAC::SET.value;
        s.negotiate(mac, mac)?;
        for (q, at) in [(0, 0), (1, NetMem::TX)] {
            if !s.queue(q, QSIZE, mem_pa + at, Queue::AVAIL, Queue::USED) {
                return None;
            }
        }
        let addr = core::array::from_fn(|i| s.config_u8(MAC_AT + i));
        s.start();
        Some(addr)
    }

    fn notify(&self, q: u32) {
        self.0.notify(q);
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
    fn mac_is_feature_bit_5() {
        assert_eq!(FEATURES0::MAC::SET.value, 1 << 5);
    }
}
