//! The virtio-mmio transport (modern version 2 and legacy version 1): feature negotiation,
//! queue setup, notification and reset, through the slot's registers.

use tock_registers::interfaces::{Readable, Writeable};
use tock_registers::registers::{ReadOnly, ReadWrite, WriteOnly};
use tock_registers::{register_bitfields, register_structs};

use super::queue::{QueueMem, QSIZE};
use super::{Config, Transport};
use crate::drivers::generic_timer;

register_bitfields! {u32,
    /// Device status (virtio 1.2, 2.1).
    STATUS [
        ACKNOWLEDGE OFFSET(0) NUMBITS(1) [],
        DRIVER OFFSET(1) NUMBITS(1) [],
        DRIVER_OK OFFSET(2) NUMBITS(1) [],
        FEATURES_OK OFFSET(3) NUMBITS(1) [],
    ],
    /// Feature bits 0–31 of a block device.
    FEATURES0 [
        /// `VIRTIO_BLK_F_FLUSH`: the device has a volatile write cache and a flush command.
        FLUSH OFFSET(9) NUMBITS(1) [],
    ],
    /// Feature bits 32–63.
    FEATURES1 [
        /// `VIRTIO_F_VERSION_1` (bit 32): a modern device.
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
        (0x100 => capacity_low: ReadOnly<u32>),
        (0x104 => capacity_high: ReadOnly<u32>),
        (0x108 => @END),
    }
}

/// "virt" in little-endian ASCII, and the block device's id.
const MAGIC: u32 = 0x7472_6976;
const DEVICE_BLOCK: u32 = 2;
/// How long a reset may take to be acknowledged (QEMU does it within the register write).
const RESET_MS: u64 = 100;

/// One virtio-mmio slot holding a block device.
pub struct Mmio {
    regs: *const Regs,
    modern: bool,
}

// SAFETY: the registers are reached only through this value, which the kernel keeps behind
// exclusive access.
unsafe impl Send for Mmio {}

impl Mmio {
    /// The slot at `base`, if a virtio block device of a version this driver knows sits there.
    ///
    /// # Safety
    /// `base` must map a virtio-mmio slot's registers, used by nothing else for the value's
    /// life.
    pub unsafe fn new(base: usize) -> Option<Self> {
        let m = Mmio { regs: base as *const Regs, modern: false };
        let r = m.regs();
        if r.magic.get() != MAGIC || r.device_id.get() != DEVICE_BLOCK {
            return None;
        }
        let modern = match r.version.get() {
            1 => false,
            2 => true,
            _ => return None,
        };
        Some(Mmio { modern, ..m })
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

    fn setup(&mut self, queue_pa: u64) -> Option<Config> {
        let r = self.regs();
        r.status.write(STATUS::ACKNOWLEDGE::SET);
        r.status.write(STATUS::ACKNOWLEDGE::SET + STATUS::DRIVER::SET);
        r.device_features_sel.set(0);
        let features = r.device_features.get();
        r.driver_features_sel.set(0);
        r.driver_features.set(features & FEATURES0::FLUSH::SET.value);
        let mut features_ok = STATUS::FEATURES_OK::CLEAR;
        if self.modern {
            r.device_features_sel.set(1);
            if !FEATURES1::VERSION_1.is_set(r.device_features.get()) {
                return None;
            }
            r.driver_features_sel.set(1);
            r.driver_features.set(FEATURES1::VERSION_1::SET.value);
            features_ok = STATUS::FEATURES_OK::SET;
            r.status.write(STATUS::ACKNOWLEDGE::SET + STATUS::DRIVER::SET + features_ok);
            if !r.status.is_set(STATUS::FEATURES_OK) {
                return None;
            }
        }
        r.queue_sel.set(0);
        if (r.queue_num_max.get() as usize) < QSIZE {
            return None;
        }
        r.queue_num.set(QSIZE as u32);
        if self.modern {
            let split = |pa: u64| (pa as u32, (pa >> 32) as u32);
            let (l, h) = split(queue_pa);
            r.queue_desc_low.set(l);
            r.queue_desc_high.set(h);
            let (l, h) = split(queue_pa + QueueMem::AVAIL);
            r.queue_driver_low.set(l);
            r.queue_driver_high.set(h);
            let (l, h) = split(queue_pa + QueueMem::USED);
            r.queue_device_low.set(l);
            r.queue_device_high.set(h);
            r.queue_ready.set(1);
        } else {
            r.guest_page_size.set(4096);
            r.queue_align.set(4096);
            r.queue_pfn.set((queue_pa >> 12) as u32);
        }
        let sectors = r.capacity_low.get() as u64 | (r.capacity_high.get() as u64) << 32;
        r.status.write(STATUS::ACKNOWLEDGE::SET + STATUS::DRIVER::SET + features_ok + STATUS::DRIVER_OK::SET);
        Some(Config { sectors, can_flush: FEATURES0::FLUSH.is_set(features) })
    }

    fn notify(&self) {
        self.regs().queue_notify.set(0);
    }

    fn ack_interrupt(&self) {
        let r = self.regs();
        r.interrupt_ack.set(r.interrupt_status.get());
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
    fn register_offsets() {
        // The offsets the virtio 1.2 spec gives (4.2.2, and 4.2.4 for the legacy ones).
        assert_eq!(core::mem::offset_of!(Regs, queue_pfn), 0x40);
        assert_eq!(core::mem::offset_of!(Regs, queue_notify), 0x50);
        assert_eq!(core::mem::offset_of!(Regs, status), 0x70);
        assert_eq!(core::mem::offset_of!(Regs, queue_device_high), 0xa4);
        assert_eq!(core::mem::offset_of!(Regs, capacity_low), 0x100);
    }

    #[test]
    fn status_and_feature_bits() {
        let all = STATUS::ACKNOWLEDGE::SET
            + STATUS::DRIVER::SET
            + STATUS::FEATURES_OK::SET
            + STATUS::DRIVER_OK::SET;
        assert_eq!(all.value, 0b1111);
        assert_eq!(FEATURES0::FLUSH::SET.value, 1 << 9);
        assert_eq!(FEATURES1::VERSION_1::SET.value, 1);
    }
}
