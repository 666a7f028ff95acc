//! The modern virtio-mmio transport for a network device: feature negotiation (only
//! `VIRTIO_F_VERSION_1` and `VIRTIO_NET_F_MAC`), both queues' setup, notification, reset.

use tock_registers::interfaces::{Readable, Writeable};
use tock_registers::registers::{ReadOnly, ReadWrite, WriteOnly};
use tock_registers::{register_bitfields, register_structs};

use super::{NetMem, Queue, Transport, QSIZE};
use crate::drivers::generic_timer;

register_bitfields! {u32,
    /// Device status (virtio 1.2, 2.1).
    STATUS [
        ACKNOWLEDGE OFFSET(0) NUMBITS(1) [],
        DRIVER OFFSET(1) NUMBITS(1) [],
        DRIVER_OK OFFSET(2) NUMBITS(1) [],
        FEATURES_OK OFFSET(3) NUMBITS(1) [],
    ],
    /// Feature bits 0–31 of a network device.
    FEATURES0 [
        /// `VIRTIO_NET_F_MAC`: the device has a MAC address in its configuration.
        MAC OFFSET(5) NUMBITS(1) [],
    ],
    /// Feature bits 32–63.
    FEATURES1 [
        /// `VIRTIO_F_VERSION_1`: a modern device.
        VERSION_1 OFFSET(0) NUMBITS(1) [],
    ],
}

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
        (0x028 => _r1),
        (0x030 => queue_sel: WriteOnly<u32>),
        (0x034 => queue_num_max: ReadOnly<u32>),
        (0x038 => queue_num: WriteOnly<u32>),
        (0x03c => _r2),
        (0x044 => queue_ready: ReadWrite<u32>),
        (0x048 => _r3),
        (0x050 => queue_notify: WriteOnly<u32>),
        (0x054 => _r4),
        (0x070 => status: ReadWrite<u32, STATUS::Register>),
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
        (0x100 => mac: [ReadOnly<u8>; 6]),
        (0x106 => @END),
    }
}

/// "virt" in little-endian ASCII, and the network device's id.
const MAGIC: u32 = 0x7472_6976;
const DEVICE_NET: u32 = 1;
const RESET_MS: u64 = 100;

/// One virtio-mmio slot holding a modern network device.
pub struct Mmio {
    regs: *const Regs,
}

// SAFETY: the registers are reached only through this value, which the kernel keeps behind
// exclusive access.
unsafe impl Send for Mmio {}

impl Mmio {
    /// The slot at `base`, if a modern (version 2) virtio network device sits there.
    ///
    /// # Safety
    /// `base` must map a virtio-mmio slot's registers, used by nothing else for the value's
    /// life.
    pub unsafe fn new(base: usize) -> Option<Self> {
        let m = Mmio { regs: base as *const Regs };
        let r = m.regs();
        (r.magic.get() == MAGIC && r.version.get() == 2 && r.device_id.get() == DEVICE_NET).then_some(m)
    }

    fn regs(&self) -> &Regs {
        // SAFETY: `new`'s contract: `regs` maps a virtio-mmio slot for this value's life.
        unsafe { &*self.regs }
    }
}

impl Transport for Mmio {
    fn reset(&mut self) -> bool {
        let r = self.regs();
        r.status.set(0);
        let deadline = generic_timer::now() + self.ticks_ms(RESET_MS);
        while r.status.get() != 0 {
            if generic_timer::now() > deadline {
                return false;
            }
            core::hint::spin_loop();
        }
        true
    }

    fn setup(&mut self, mem_pa: u64) -> Option<[u8; 6]> {
        let r = self.regs();
        r.status.write(STATUS::ACKNOWLEDGE::SET + STATUS::DRIVER::SET);
        r.device_features_sel.set(0);
        let low = r.device_features.get() & FEATURES0::MAC::SET.value;
        r.device_features_sel.set(1);
        if !FEATURES1::VERSION_1.is_set(r.device_features.get()) || low == 0 {
            return None;
        }
        r.driver_features_sel.set(0);
        r.driver_features.set(low);
        r.driver_features_sel.set(1);
        r.driver_features.set(FEATURES1::VERSION_1::SET.value);
        r.status.write(STATUS::ACKNOWLEDGE::SET + STATUS::DRIVER::SET + STATUS::FEATURES_OK::SET);
        if !r.status.is_set(STATUS::FEATURES_OK) {
            return None;
        }
        for (q, at) in [(0, 0), (1, NetMem::TX)] {
            r.queue_sel.set(q);
            if (r.queue_num_max.get() as usize) < QSIZE {
                return None;
            }
            r.queue_num.set(QSIZE as u32);
            let split = |pa: u64| (pa as u32, (pa >> 32) as u32);
            let base = mem_pa + at;
            let (l, h) = split(base);
            r.queue_desc_low.set(l);
            r.queue_desc_high.set(h);
            let (l, h) = split(base + Queue::AVAIL);
            r.queue_driver_low.set(l);
            r.queue_driver_high.set(h);
            let (l, h) = split(base + Queue::USED);
            r.queue_device_low.set(l);
            r.queue_device_high.set(h);
            r.queue_ready.set(1);
        }
        let mut mac = [0; 6];
        mac.iter_mut().zip(&r.mac).for_each(|(m, reg)| *m = reg.get());
        r.status.write(
            STATUS::ACKNOWLEDGE::SET
                + STATUS::DRIVER::SET
                + STATUS::FEATURES_OK::SET
                + STATUS::DRIVER_OK::SET,
        );
        Some(mac)
    }

    fn notify(&self, q: u32) {
        self.regs().queue_notify.set(q);
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
    fn register_offsets_follow_the_spec() {
        assert_eq!(core::mem::offset_of!(Regs, queue_ready), 0x44);
        assert_eq!(core::mem::offset_of!(Regs, status), 0x70);
        assert_eq!(core::mem::offset_of!(Regs, queue_device_high), 0xa4);
        assert_eq!(core::mem::offset_of!(Regs, mac), 0x100);
        assert_eq!(FEATURES0::MAC::SET.value, 1 << 5);
    }
}
