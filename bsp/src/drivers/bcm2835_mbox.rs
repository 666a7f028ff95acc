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

use tock_registers::interfaces::{Readable, Writeable};
use tock_registers::registers::{ReadOnly, WriteOnly};
use tock_registers::{register_bitfields, register_structs};

use crate::drivers::generic_timer;
use crate::dt::DmaWindow;

register_bitfields! {u32,
    /// A mailbox's status.
    STATUS [
        EMPTY OFFSET(30) NUMBITS(1) [],
        FULL OFFSET(31) NUMBITS(1) [],
    ],
    /// A mailbox word: a channel, and the top 28 bits of a 16-byte-aligned bus address.
    MAIL [
        CHANNEL OFFSET(0) NUMBITS(4) [
            /// The ARM-to-VideoCore property channel.
            Property = 8
        ],
        ADDRESS OFFSET(4) NUMBITS(28) [],
    ],
    /// A tag's request/response code word: the response flag and the value's length.
    TAG_CODE [
        LENGTH OFFSET(0) NUMBITS(31) [],
        RESPONSE OFFSET(31) NUMBITS(1) [],
    ],
}

register_structs! {
    Regs {
        /// Mailbox 0: VideoCore to ARM.
        (0x00 => read: ReadOnly<u32, MAIL::Register>),
        (0x04 => _r0),
        (0x18 => read_status: ReadOnly<u32, STATUS::Register>),
        (0x1c => _r1),
        /// Mailbox 1: ARM to VideoCore.
        (0x20 => write: WriteOnly<u32, MAIL::Register>),
        (0x24 => _r2),
        (0x38 => write_status: ReadOnly<u32, STATUS::Register>),
        (0x3c => _r3),
        (0x40 => @END),
    }
}

/// Firmware clock ids for [`Mailbox::get_clock_rate`] (the firmware's own numbering).
pub const CLOCK_EMMC: u32 = 1;
pub const CLOCK_EMMC2: u32 = 12;

const TAG_GET_CLOCK_RATE: u32 = 0x0003_0002;
const CODE_REQUEST: u32 = 0;
const CODE_SUCCESS: u32 = 0x8000_0000;

/// Bytes of buffer a property call needs: the largest message built here (the framebuffer
/// request), rounded up to a cache line so that cache maintenance touches no neighbour.
pub const BUFFER_BYTES: usize = 128;

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
    let tag_ok = msg[2] == TAG_GET_CLOCK_RATE
        && TAG_CODE::RESPONSE.is_set(msg[4])
        && TAG_CODE::LENGTH.read(msg[4]) >= 8;
    if msg[1] != CODE_SUCCESS || !tag_ok || msg[5] != clock_id || msg[6] == 0 {
        return Err(MboxError::Refused);
    }
    Ok(msg[6])
}

/// The framebuffer the console asks for: 640x480 at 32 bits per pixel, which QEMU shows
/// as is and a Pi's firmware scales to the screen.
pub const FB_WIDTH: u32 = 640;
pub const FB_HEIGHT: u32 = 480;

/// The request for a framebuffer: physical and virtual size, depth, pixel order (RGB),
/// then allocate (16-byte aligned) and get the pitch. 30 words.
pub fn framebuffer_request() -> [u32; 30] {
    let (w, h) = (FB_WIDTH, FB_HEIGHT);
    #[rustfmt::skip]
    let msg = [
        120, CODE_REQUEST,
        0x0004_8003, 8, 0, w, h, // set physical width and height
        0x0004_8004, 8, 0, w, h, // set virtual width and height
        0x0004_8005, 4, 0, 32, // set depth
        0x0004_8006, 4, 0, 1, // set pixel order: RGB
        0x0004_0001, 8, 0, 16, 0, // allocate buffer: alignment in, bus address and size out
        0x0004_0008, 4, 0, 0, // get pitch
        0,
    ];
    msg
}

/// A framebuffer the firmware allocated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Framebuffer {
    /// Its VideoCore bus address with the cache-alias bits cleared: the ARM physical
    /// address on a Pi 4, whose VideoCore sees the first GiB of RAM at `0xc000_0000`.
    pub pa: u64,
    pub size: u32,
    pub width: u32,
    pub height: u32,
    /// Bytes from one row to the next.
    pub pitch: u32,
}

/// The framebuffer from the firmware's answer, if it granted what was asked (32 bpp, a
/// buffer big enough for the rows it says it has).
pub fn framebuffer_response(msg: &[u32; 30]) -> Result<Framebuffer, MboxError> {
    let answered = |i: usize| TAG_CODE::RESPONSE.is_set(msg[i]);
    let fb = Framebuffer {
        pa: u64::from(msg[23] & 0x3fff_ffff),
        size: msg[24],
        width: msg[5],
        height: msg[6],
        pitch: msg[28],
    };
    let tags_ok = [4, 9, 14, 22, 27].into_iter().all(answered);
    let fits = fb.width > 0
        && fb.height > 0
        && fb.pitch >= fb.width * 4
        && u64::from(fb.size) >= u64::from(fb.pitch) * u64::from(fb.height);
    if msg[1] != CODE_SUCCESS || !tags_ok || msg[15] != 32 || msg[23] == 0 || !fits {
        return Err(MboxError::Refused);
    }
    Ok(fb)
}

/// Memory for property messages: where the ARM sees it and the address the VideoCore uses.
#[derive(Clone, Copy, Debug)]
pub struct MboxBuffer {
    pub va: *mut u32,
    pub bus: u32,
}

/// A property-call buffer in the program image, for callers with no DMA memory of their
/// own (the screen console's set-up, `hwcheck`). Whoever uses it for a call must be its only
/// user during that call ([`Mailbox::call`]'s contract).
#[repr(C, align(64))]
pub struct StaticBuffer(core::cell::UnsafeCell<[u8; BUFFER_BYTES]>);

// SAFETY: the bytes are only reached through `Mailbox::call`, whose callers promise to be
// the buffer's only user for the call.
unsafe impl Sync for StaticBuffer {}

pub static STATIC_BUFFER: StaticBuffer = StaticBuffer(core::cell::UnsafeCell::new([0; BUFFER_BYTES]));

impl StaticBuffer {
    /// The buffer as the ARM and the VideoCore see it: `virt_to_phys` turns its address
    /// into a physical one, `window` is how the VideoCore sees RAM. `None` if it cannot.
    pub fn get(&self, virt_to_phys: fn(usize) -> u64, window: Option<DmaWindow>) -> Option<MboxBuffer> {
        let va = self.0.get().cast::<u32>();
        let bus = window?.to_bus(virt_to_phys(va as usize), BUFFER_BYTES as u64)?;
        Some(MboxBuffer { va, bus: u32::try_from(bus).ok()? })
    }
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
            // SAFETY: word i lies within the caller's buffer (the length was checked above).
            let at = unsafe { buf.va.add(i) };
            // SAFETY: `at` is an aligned word of the caller's buffer, which no one else
            // touches during the call.
            unsafe { at.write_volatile(*w) };
        }
        clean_and_invalidate(buf.va as usize, BUFFER_BYTES);
        let r = self.regs();
        let deadline = generic_timer::now() + generic_timer::frequency() * TIMEOUT_MS / 1000;
        // Answers to calls we no longer wait for (a timed-out earlier call) are dropped.
        while !r.read_status.is_set(STATUS::EMPTY) {
            let _ = r.read.get();
            if generic_timer::now() > deadline {
                return Err(MboxError::Timeout);
            }
        }
        while r.write_status.is_set(STATUS::FULL) {
            if generic_timer::now() > deadline {
                return Err(MboxError::Timeout);
            }
        }
        let word = MAIL::ADDRESS.val(buf.bus >> MAIL::ADDRESS.shift) + MAIL::CHANNEL::Property;
        r.write.write(word);
        loop {
            if !r.read_status.is_set(STATUS::EMPTY) && r.read.get() == word.value {
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
            // SAFETY: word i lies within the caller's buffer (the length was checked above).
            let at = unsafe { buf.va.add(i) };
            // SAFETY: `at` is an aligned word of the caller's buffer, which the firmware has
            // finished rewriting (its answer came back) and no one else touches.
            *w = unsafe { at.read_volatile() };
        }
        Ok(())
    }

    /// The rate of firmware clock `clock_id` in Hz.
    ///
    /// # Safety
    /// As for [`Mailbox::call`].
    pub unsafe fn get_clock_rate(&self, buf: MboxBuffer, clock_id: u32) -> Result<u32, MboxError> {
        let mut msg = clock_rate_request(clock_id);
        // SAFETY: the caller's contract is `call`'s: `buf` is its own, untouched by others,
        // and `buf.bus` is the VideoCore's address for it.
        unsafe { self.call(buf, &mut msg)? };
        clock_rate_response(&msg, clock_id)
    }
}

impl Mailbox {
    /// Asks the firmware for a framebuffer ([`framebuffer_request`]).
    ///
    /// # Safety
    /// As for [`Mailbox::call`].
    pub unsafe fn allocate_framebuffer(&self, buf: MboxBuffer) -> Result<Framebuffer, MboxError> {
        let mut msg = framebuffer_request();
        // SAFETY: the caller's contract is `call`'s: `buf` is its own, untouched by others
        // during the call, and `buf.bus` is its VideoCore address.
        unsafe { self.call(buf, &mut msg)? };
        framebuffer_response(&msg)
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
        // SAFETY: a barrier only orders memory accesses; it changes no memory.
        unsafe { core::arch::asm!("dsb sy", options(nostack, preserves_flags)) };
        while a < va + len {
            // SAFETY: `dc civac` on a line of mapped memory the caller owns writes it back
            // if dirty and drops it from the cache: the memory's contents do not change.
            unsafe { core::arch::asm!("dc civac, {}", in(reg) a, options(nostack, preserves_flags)) };
            a += LINE;
        }
        // SAFETY: a barrier only orders memory accesses (the cache maintenance before what
        // follows); it changes no memory.
        unsafe { core::arch::asm!("dsb sy", options(nostack, preserves_flags)) };
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
    fn mailbox_word_and_status_bits() {
        let word = MAIL::ADDRESS.val(0xc012_3450 >> 4) + MAIL::CHANNEL::Property;
        assert_eq!(word.value, 0xc012_3458);
        assert_eq!((STATUS::FULL::SET + STATUS::EMPTY::SET).value, 0xc000_0000);
    }

    #[test]
    fn framebuffer_request_and_answer() {
        let m = framebuffer_request();
        assert_eq!(m[0] as usize, m.len() * 4);
        assert!(m.len() * 4 <= BUFFER_BYTES);
        assert_eq!((m[20], m[25], m[29]), (0x0004_0001, 0x0004_0008, 0));
        // What QEMU answers: every tag flagged, a bus address with the alias bits set.
        let mut a = m;
        a[1] = CODE_SUCCESS;
        for i in [4, 9, 14, 19, 22, 27] {
            a[i] = 0x8000_0000 | m[i - 1];
        }
        a[23] = 0xc000_0000 | 0x3c10_0000;
        a[24] = 640 * 480 * 4;
        a[28] = 640 * 4;
        let fb = framebuffer_response(&a).unwrap();
        assert_eq!(
            fb,
            Framebuffer { pa: 0x3c10_0000, size: 640 * 480 * 4, width: 640, height: 480, pitch: 2560 }
        );
        // Untouched, a depth not granted, a buffer too small for its rows: refused.
        assert_eq!(framebuffer_response(&m), Err(MboxError::Refused));
        let mut b = a;
        b[15] = 16;
        assert_eq!(framebuffer_response(&b), Err(MboxError::Refused));
        let mut b = a;
        b[24] = 640 * 4;
        assert_eq!(framebuffer_response(&b), Err(MboxError::Refused));
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
