//! The virtio-mmio transport both virtio drivers sit on (virtio 1.2, 4.2): a slot's
//! registers, the probe, reset, feature negotiation, a queue's set-up and notification.
//! Modern slots (version 2) and, for drivers that accept them, legacy ones (version 1,
//! 4.2.4). A device's own configuration space starts at 0x100 (`config_u32`, `config_u8`).

use tock_registers::interfaces::{Readable, Writeable};
use tock_registers::registers::{ReadOnly, ReadWrite, WriteOnly};
use tock_registers::{register_bitfields, register_structs};

use crate::drivers::generic_timer;

register_bitfields! {u32,
    /// Device status (virtio 1.2, 2.1).
    STATUS [
        ACKNOWLEDGE OFFSET(0) NUMBITS(1) [],
        DRIVER OFFSET(1) NUMBITS(1) [],
        DRIVER_OK OFFSET(2) NUMBITS(1) [],
        FEATURES_OK OFFSET(3) NUMBITS(1) [],
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
        (0x100 => @END),
    }
}

/// "virt" in little-endian ASCII.
const MAGIC: u32 = 0x7472_6976;
/// Where a device's configuration space starts.
const CONFIG: usize = 0x100;
/// How long a reset may take to be acknowledged (QEMU does it within the register write).
const RESET_MS: u64 = 100;

/// One virtio-mmio slot, holding a device of the kind its driver probed for.
pub struct Slot {
    base: usize,
    modern: bool,
}

// SAFETY: the registers are reached only through this value, which the kernel keeps behind
// exclusive access.
unsafe impl Send for Slot {}

impl Slot {
    /// The slot at `base`, if a device with virtio id `device` sits there, modern (version
    /// 2) or, where `legacy` allows, legacy (version 1).
    ///
    /// # Safety
    /// `base` must map a virtio-mmio slot's registers and configuration space, used by
    /// nothing else for the value's life.
    pub unsafe fn probe(base: usize, device: u32, legacy: bool) -> Option<Slot> {
        let s = Slot { base, modern: true };
        let r = s.regs();
        if r.magic.get() != MAGIC || r.device_id.get() != device {
            return None;
        }
        match r.version.get() {
            2 => Some(s),
            1 if legacy => Some(Slot { modern: false, ..s }),
            _ => None,
        }
    }

    fn regs(&self) -> &Regs {
        // SAFETY: `probe`'s contract: `base` maps a virtio-mmio slot for this value's life.
        unsafe { &*(self.base as *const Regs) }
    }

    /// Whether the slot speaks the legacy transport (version 1).
    pub fn legacy(&self) -> bool {
        !self.modern
    }

    /// Resets the device: false if it does not acknowledge in time.
    pub fn reset(&self) -> bool {
        let r = self.regs();
        r.status.set(0);
        let deadline = generic_timer::now() + generic_timer::frequency() * RESET_MS / 1000;
        while r.status.get() != 0 {
            if generic_timer::now() > deadline {
                return false;
            }
            core::hint::spin_loop();
        }
        true
    }

    /// Acknowledges the device and agrees on features: of bits 0–31, those of `wanted` the
    /// device offers, and on a modern slot `VIRTIO_F_VERSION_1`. Returns the bits 0–31
    /// agreed, or `None` (the device is left for a reset) if it lacks any of `required`, or a
    /// modern one lacks `VERSION_1` or refuses the set.
    pub fn negotiate(&self, wanted: u32, required: u32) -> Option<u32> {
        let r = self.regs();
        r.status.write(STATUS::ACKNOWLEDGE::SET);
        r.status.write(STATUS::ACKNOWLEDGE::SET + STATUS::DRIVER::SET);
        r.device_features_sel.set(0);
        let low = r.device_features.get() & wanted;
        if low & required != required {
            return None;
        }
        r.driver_features_sel.set(0);
        r.driver_features.set(low);
        if self.modern {
            r.device_features_sel.set(1);
            if !FEATURES1::VERSION_1.is_set(r.device_features.get()) {
                return None;
            }
            r.driver_features_sel.set(1);
            r.driver_features.set(FEATURES1::VERSION_1::SET.value);
            r.status.write(STATUS::ACKNOWLEDGE::SET + STATUS::DRIVER::SET + STATUS::FEATURES_OK::SET);
            if !r.status.is_set(STATUS::FEATURES_OK) {
                return None;
            }
        }
        Some(low)
    }

    /// Sets up queue `q` with `size` entries: its descriptor table at `pa`, its driver
    /// (available) ring at `pa + avail` and its device (used) ring at `pa + used`. A legacy
    /// slot takes the page number of `pa` instead, and finds the rings where the legacy
    /// layout puts them with 4 KiB alignment (the caller lays them out so). False if the
    /// queue is smaller than `size`.
    pub fn queue(&self, q: u32, size: usize, pa: u64, avail: u64, used: u64) -> bool {
        let r = self.regs();
        r.queue_sel.set(q);
        if (r.queue_num_max.get() as usize) < size {
            return false;
        }
        r.queue_num.set(size as u32);
        if self.modern {
            for (lo, hi, at) in [
                (&r.queue_desc_low, &r.queue_desc_high, pa),
                (&r.queue_driver_low, &r.queue_driver_high, pa + avail),
                (&r.queue_device_low, &r.queue_device_high, pa + used),
            ] {
                lo.set(at as u32);
                hi.set((at >> 32) as u32);
            }
            r.queue_ready.set(1);
        } else {
            r.guest_page_size.set(4096);
            r.queue_align.set(4096);
            r.queue_pfn.set((pa >> 12) as u32);
        }
        true
    }

    /// The device may run (`DRIVER_OK`).
    pub fn start(&self) {
        let ok = if self.modern { STATUS::FEATURES_OK::SET } else { STATUS::FEATURES_OK::CLEAR };
        self.regs()
            .status
            .write(STATUS::ACKNOWLEDGE::SET + STATUS::DRIVER::SET + ok + STATUS::DRIVER_OK::SET);
    }

    pub fn notify(&self, q: u32) {
        self.regs().queue_notify.set(q);
    }

    pub fn ack_interrupt(&self) {
        let r = self.regs();
        r.interrupt_ack.set(r.interrupt_status.get());
    }

    /// The 32-bit word at `off` in the device's configuration space.
    pub fn config_u32(&self, off: usize) -> u32 {
        // SAFETY: `probe`'s contract covers the configuration space; the driver names an
        // aligned field of its device's.
        unsafe { core::ptr::read_volatile((self.base + CONFIG + off) as *const u32) }
    }

    /// The byte at `off` in the device's configuration space.
    pub fn config_u8(&self, off: usize) -> u8 {
        // SAFETY: as for `config_u32`.
        unsafe { core::ptr::read_volatile((self.base + CONFIG + off) as *const u8) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn register_offsets_follow_the_spec() {
        // The offsets the virtio 1.2 spec gives (4.2.2, and 4.2.4 for the legacy ones).
        assert_eq!(core::mem::offset_of!(Regs, queue_pfn), 0x40);
        assert_eq!(core::mem::offset_of!(Regs, queue_ready), 0x44);
        assert_eq!(core::mem::offset_of!(Regs, queue_notify), 0x50);
        assert_eq!(core::mem::offset_of!(Regs, status), 0x70);
        assert_eq!(core::mem::offset_of!(Regs, queue_device_high), 0xa4);
        assert_eq!(core::mem::size_of::<Regs>(), CONFIG);
    }

    #[test]
    fn status_and_feature_bits() {
        let all = STATUS::ACKNOWLEDGE::SET
            + STATUS::DRIVER::SET
            + STATUS::FEATURES_OK::SET
            + STATUS::DRIVER_OK::SET;
        assert_eq!(all.value, 0b1111);
        assert_eq!(FEATURES1::VERSION_1::SET.value, 1);
    }
}
