//! The screen, for whoever holds it: the framebuffer's frames are `frame::DEVICE` frames
//! (see `KernelInfo::fb_base`), bound to one environment at a time. Init holds them when
//! it starts; [`give`] hands the ones the caller holds to a child (the spawn option
//! `screen` does it for a program run in the foreground); [`Screen::map`] maps them, which
//! only their owner may do, after which the kernel no longer draws its console there.

use exo_abi::pte::{attr, bits, Pte};
use exo_abi::{frame, EnvId, Error};

use crate::sys;
use crate::vm::{self, PAGE, RW};

/// The framebuffer's frames (none without a screen).
pub fn frames() -> impl Iterator<Item = u64> {
    let k = vm::kinfo();
    let n = if k.fb_bytes == 0 { 0 } else { k.fb_bytes.div_ceil(PAGE) };
    (0..n).map(move |i| k.fb_base + i * PAGE)
}

/// Whether the caller holds every frame of the screen (false without one).
pub fn held() -> bool {
    let me = vm::me().0;
    vm::kinfo().fb_bytes != 0
        && frames().all(|pa| vm::frame_entry(pa).is_some_and(|f| f.kind == frame::DEVICE && f.owner == me))
}

/// Gives `to` (a strict descendant) every frame of the screen the caller holds; returns
/// how many. Frames the caller has mapped stay its own (`Busy`).
pub fn give(to: EnvId) -> Result<u64, Error> {
    let me = vm::me().0;
    let mut given = 0;
    for pa in frames() {
        if vm::frame_entry(pa).is_some_and(|f| f.kind == frame::DEVICE && f.owner == me) {
            sys::frame_give(pa, to)?;
            given += 1;
        }
    }
    Ok(given)
}

/// A page entry mapping device frame `pa` read-write for its owner: non-cacheable and not
/// executable, as the kernel requires of device frames.
pub fn device_pte(pa: u64) -> u64 {
    (Pte::user_page(pa, RW).0 & !bits::ATTR_MASK) | (attr::NORMAL_NC << bits::ATTR_SHIFT)
}

/// The screen mapped into this environment: 32-bit pixels, `0x00RRGGBB`.
pub struct Screen {
    base: u64,
    pub width: usize,
    pub height: usize,
    /// Pixels from one row to the next.
    pub stride: usize,
}

impl Screen {
    /// Maps the whole framebuffer. `NotFound` without a screen; `Denied` unless the
    /// caller holds it.
    pub fn map() -> Result<Screen, Error> {
        let k = vm::kinfo();
        if k.fb_bytes == 0 {
            return Err(Error::NotFound);
        }
        let (width, height, pitch) = (k.fb_size[0] as usize, k.fb_size[1] as usize, k.fb_size[2] as usize);
        if pitch < width * 4 || (pitch * height) as u64 > k.fb_bytes || !held() {
            return Err(if held() { Error::Invalid } else { Error::Denied });
        }
        let base = vm::alloc_va(k.fb_bytes.div_ceil(PAGE));
        for (i, pa) in frames().enumerate() {
            vm::map(base + i as u64 * PAGE, device_pte(pa))?;
        }
        Ok(Screen { base, width, height, stride: pitch / 4 })
    }

    /// Sets one pixel (ignored outside the screen).
    pub fn put(&mut self, x: usize, y: usize, rgb: u32) {
        if x < self.width && y < self.height {
            let p = (self.base as usize + (y * self.stride + x) * 4) as *mut u32;
            // SAFETY: `map` mapped the whole framebuffer, `stride * height` pixels, writable
            // at `base`, for this environment's life; (x, y) is inside it and `p` 4-aligned.
            // Device memory takes only aligned accesses, and a volatile u32 store is one.
            unsafe { p.write_volatile(rgb) };
        }
    }

    /// Fills a rectangle, clipped to the screen.
    pub fn fill(&mut self, x: usize, y: usize, w: usize, h: usize, rgb: u32) {
        for yy in y..(y + h).min(self.height) {
            for xx in x..(x + w).min(self.width) {
                self.put(xx, yy, rgb);
            }
        }
    }
}
