//! The VideoCore mailbox's property interface (channel 8): asking the Pi's firmware for
//! facts only it knows, such as the rate of the clock feeding an SD controller.
//!
//! A property call is a message of 32-bit words in memory the VideoCore reads and rewrites
//! in place: total size, a request/response code, a list of tags (each: id, value-buffer
//! size, request/response code, value words) and an end tag. The ARM writes the message's
//! *bus* address, ORed with the channel, to mailbox 1 and waits for the same word to come
//! back in mailbox 0. The message must be 16-byte aligned.
//!
//! On a real Pi the buffer sits in normal cacheable memory, so its lines are cleaned before
//! the firmware reads it and invalidated before the ARM reads the answer. The VideoCore sees
//! RAM at bus addresses given by the device tree's `dma-ranges` (on the Pi 4, bus
//! `0xc000_0000` is ARM `0x0` for the first GiB).
// TODO(regs branch): remove
#![allow(clippy::multiple_unsafe_ops_per_block)]

use tock_registers::interfaces::{Readable, Writeable};
use tock_registers::register_structs;
use tock_registers::registers::{ReadOnly, WriteOnly};

use crate::drivers::generic_timer;

register_structs! {
    Regs {
        /// Mailbox 0: VideoCore to ARM.
        (0x00 => read: ReadOnly<u32>),
        (0x04 => _r0),
        (0x18 => read_status: ReadOnly<u32>),
        (0x1c => _r1),
        /// Mailbox 1: ARM to VideoCore.
        (0x20 => write: WriteOnly<u32>),
        (0x24 => _r2),
        (0x38 => write_status: ReadOnly<u32>),
        (0x3c => _r3),
        (0x40 => @END),
    }
}

const STATUS_FULL: u32 = 1 << 31;
const STATUS_EMPTY: u32 = 1 << 30;
/// The ARM-to-VideoCore property channel.
pub const CHANNEL_PROPERTY: u32 = 8;

/// Firmware clock ids for [`get_clock_rate`] (the firmware's own numbering).
pub const CLOCK_EMMC: u32 = 1;
pub const CLOCK_EMMC2: u32 = 12;

const TAG_GET_CLOCK_RATE: u32 = 0x0003_0002;
const CODE_REQUEST: u32 = 0;
const CODE_SUCCESS: u32 = 0x8000_0000;
const TAG_RESPONSE: u32 = 1 << 31;

/// Bytes of buffer a property call needs: the largest message built here, rounded up to a
/// cache line so that cache maintenance touches no neighbour.
pub const BUFFER_BYTES: usize = 64;

/// Why a property call gave no answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MboxError {
    /// The buffer is not 16-byte aligned, or the VideoCore cannot address it.
    BadBuffer,
    /// Mailbox 1 stayed full, or no answer came back in time.
    Timeout,
    /// The firmware answered, but not with a successful response to our tag.
    Refused,
}

/// The GET_CLOCK_RATE request for `clock_id`, as the words of a property message.
pub fn clock_rate_request(clock_id: u32) -> [u32; 8] {
    [32, CODE_REQUEST, TAG_GET_CLOCK_RATE, 8, 0, clock_id, 0, 0]
}

/// The rate in Hz from a GET_CLOCK_RATE response, if the firmware answered for this clock.
pub fn clock_rate_response(msg: &[u32; 8], clock_id: u32) -> Result<u32, MboxError> {
    let tag_ok = msg[2] == TAG_GET_CLOCK_RATE && msg[4] & TAG_RESPONSE != 0 && msg[4] & !TAG_RESPONSE >= 8;
    if msg[1] != CODE_SUCCESS || !tag_ok || msg[5] != clock_id || msg[6] == 0 {
        return Err(MboxError::Refused);
    }
    Ok(msg[6])
}

/// Memory for property messages: where the ARM sees it and the address the VideoCore uses.
#[derive(Clone, Copy, Debug)]
pub struct MboxBuffer {
    pub va: *mut u32,
    pub bus: u32,
}

/// The mailbox registers.
pub struct Mailbox {
    regs: *const Regs,
}

// SAFETY: MMIO reached only through volatile register accesses by the one owner.
unsafe impl Send for Mailbox {}

/// How long to wait for the firmware.
const TIMEOUT_MS: u64 = 50;

impl Mailbox {
    /// # Safety
    /// `base` must be the mapped address of the mailbox registers, valid for the value's life.
    pub const unsafe fn new(base: usize) -> Self {
        Self { regs: base as *const Regs }
    }

    fn regs(&self) -> &Regs {
        // SAFETY: `new`'s contract.
        unsafe { &*self.regs }
    }

    /// Runs one property call: `msg` is copied into `buf`, handed to the firmware, and the
    /// firmware's rewritten message copied back into `msg`.
    ///
    /// # Safety
    /// `buf.va` must point at [`BUFFER_BYTES`] of memory owned by the caller and not touched
    /// by anyone else during the call, and `buf.bus` must be its VideoCore bus address.
    pub unsafe fn call(&self, buf: MboxBuffer, msg: &mut [u32]) -> Result<(), MboxError> {
        if !(buf.va as usize).is_multiple_of(16)
            || !buf.bus.is_multiple_of(16)
            || msg.len() * 4 > BUFFER_BYTES
        {
            return Err(MboxError::BadBuffer);
        }
        for (i, w) in msg.iter().enumerate() {
            // SAFETY: within the caller's buffer (length checked above).
            unsafe { buf.va.add(i).write_volatile(*w) };
        }
        clean_and_invalidate(buf.va as usize, BUFFER_BYTES);
        let r = self.regs();
        let deadline = generic_timer::now() + generic_timer::frequency() * TIMEOUT_MS / 1000;
        // Answers to calls we no longer wait for (a timed-out earlier call) are dropped.
        while r.read_status.get() & STATUS_EMPTY == 0 {
            let _ = r.read.get();
            if generic_timer::now() > deadline {
                return Err(MboxError::Timeout);
            }
        }
        while r.write_status.get() & STATUS_FULL != 0 {
            if generic_timer::now() > deadline {
                return Err(MboxError::Timeout);
            }
        }
        let word = buf.bus | CHANNEL_PROPERTY;
        r.write.set(word);
        loop {
            if r.read_status.get() & STATUS_EMPTY == 0 && r.read.get() == word {
                break;
            }
            if generic_timer::now() > deadline {
                return Err(MboxError::Timeout);
            }
            core::hint::spin_loop();
        }
        // The VideoCore wrote the answer to memory behind the ARM's caches.
        clean_and_invalidate(buf.va as usize, BUFFER_BYTES);
        for (i, w) in msg.iter_mut().enumerate() {
            // SAFETY: within the caller's buffer.
            *w = unsafe { buf.va.add(i).read_volatile() };
        }
        Ok(())
    }

    /// The rate of firmware clock `clock_id` in Hz.
    ///
    /// # Safety
    /// As for [`Mailbox::call`].
    pub unsafe fn get_clock_rate(&self, buf: MboxBuffer, clock_id: u32) -> Result<u32, MboxError> {
        let mut msg = clock_rate_request(clock_id);
        // SAFETY: the caller's contract.
        unsafe { self.call(buf, &mut msg)? };
        clock_rate_response(&msg, clock_id)
    }
}

/// Cleans and invalidates the data-cache lines over `[va, va + len)` to the point of
/// coherency, so that a non-coherent observer (the VideoCore) and the ARM agree on it.
fn clean_and_invalidate(va: usize, len: usize) {
    #[cfg(target_arch = "aarch64")]
    {
        // Cortex-A72 lines are 64 bytes; CTR_EL0.DminLine says so, but a smaller step is
        // always safe and these buffers are one or two lines.
        const LINE: usize = 64;
        let mut a = va & !(LINE - 1);
        // SAFETY: `dc civac` on mapped memory the caller owns has no effect other than
        // writing dirty lines back and dropping them; the barriers order it with the
        // surrounding accesses.
        unsafe {
            core::arch::asm!("dsb sy", options(nostack, preserves_flags));
            while a < va + len {
                core::arch::asm!("dc civac, {}", in(reg) a, options(nostack, preserves_flags));
                a += LINE;
            }
            core::arch::asm!("dsb sy", options(nostack, preserves_flags));
        }
    }
    #[cfg(not(target_arch = "aarch64"))]
    let _ = (va, len);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_layout() {
        let m = clock_rate_request(CLOCK_EMMC2);
        assert_eq!(m[0] as usize, m.len() * 4, "size covers the whole message");
        assert_eq!(m[1], 0, "a request");
        assert_eq!(m[2], 0x0003_0002, "GET_CLOCK_RATE");
        assert_eq!(m[3], 8, "value buffer: clock id and rate");
        assert_eq!(m[4], 0, "tag request code");
        assert_eq!(m[5], 12);
        assert_eq!(m[7], 0, "end tag");
    }

    fn answered(id: u32, rate: u32) -> [u32; 8] {
        [32, 0x8000_0000, 0x0003_0002, 8, 0x8000_0008, id, rate, 0]
    }

    #[test]
    fn response_accepted() {
        assert_eq!(clock_rate_response(&answered(12, 100_000_000), 12), Ok(100_000_000));
    }

    #[test]
    fn response_refused() {
        // Untouched request (firmware never ran), error code, tag not answered, wrong clock,
        // zero rate: all refused.
        assert_eq!(clock_rate_response(&clock_rate_request(1), 1), Err(MboxError::Refused));
        let mut m = answered(1, 50_000_000);
        m[1] = 0x8000_0001;
        assert_eq!(clock_rate_response(&m, 1), Err(MboxError::Refused));
        let mut m = answered(1, 50_000_000);
        m[4] = 8;
        assert_eq!(clock_rate_response(&m, 1), Err(MboxError::Refused));
        assert_eq!(clock_rate_response(&answered(2, 3_000_000), 1), Err(MboxError::Refused));
        assert_eq!(clock_rate_response(&answered(1, 0), 1), Err(MboxError::Refused));
    }
}
