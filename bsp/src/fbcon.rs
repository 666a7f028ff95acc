//! A text console on a framebuffer: the kernel's console mirrored on a screen (HDMI on a
//! Raspberry Pi), so that a Pi without a serial cable still shows what exo says.
//!
//! Glyphs come from `noto-sans-mono-bitmap` (Noto Sans Mono, 16 pixels high, pre-rasterized
//! with 8-bit coverage, so the text is anti-aliased without any floating point). Each
//! glyph's coverage is drawn as a grey level, white on black, which reads the same whatever
//! the firmware's pixel order. Every write is one aligned 32-bit or 64-bit store (the
//! framebuffer is mapped as Device memory, where unaligned accesses fault).
//!
//! When the text reaches the bottom, the lower half of the screen moves to the top and the
//! rest is cleared: one copy every half screen of lines instead of one per line.

use noto_sans_mono_bitmap::{get_raster, get_raster_width, FontWeight, RasterHeight};

use crate::drivers::bcm2835_mbox::{Framebuffer, Mailbox, STATIC_BUFFER};
use crate::dt::{BoardInfo, Region};

const WEIGHT: FontWeight = FontWeight::Regular;
const SIZE: RasterHeight = RasterHeight::Size16;
/// A character cell, in pixels.
pub const CELL_W: usize = get_raster_width(WEIGHT, SIZE);
pub const CELL_H: usize = SIZE.val();
const _: () = assert!(CELL_W == 7, "`FbConsole::draw` writes a glyph's row as 7 pixels");

/// The pixel a glyph's coverage `c` becomes: grey `c` in every colour channel.
pub const fn grey(c: u8) -> u32 {
    let c = c as u32;
    (c << 16) | (c << 8) | c
}

/// The coverage of character `ch` at (`x`, `y`) of its cell: what [`FbConsole`] draws, for
/// tests that check a screen against the text it should show.
pub fn coverage(ch: char, x: usize, y: usize) -> u8 {
    let ch = if ch.is_ascii_graphic() || ch == ' ' { ch } else { '?' };
    get_raster(ch, WEIGHT, SIZE).and_then(|r| r.pixel(x, y)).unwrap_or(0)
}

pub struct FbConsole {
    base: *mut u32,
    /// Pixels from one row to the next.
    stride: usize,
    width: usize,
    height: usize,
    cols: usize,
    rows: usize,
    col: usize,
    row: usize,
}

// SAFETY: the console owns its framebuffer; it is reached only through `&mut self`.
unsafe impl Send for FbConsole {}

impl FbConsole {
    /// A console on `width`x`height` pixels of 32 bits at `base`, `stride` pixels apart.
    /// The screen is cleared.
    ///
    /// # Safety
    /// `[base, base + stride * height)` words must be mapped, writable memory that only this
    /// console touches, for the console's life; `stride >= width`.
    pub unsafe fn new(base: *mut u32, width: usize, height: usize, stride: usize) -> FbConsole {
        let (cols, rows) = (width / CELL_W, height / CELL_H);
        let mut c = FbConsole { base, stride, width, height, cols, rows, col: 0, row: 0 };
        c.clear_rows(0, height);
        c
    }

    /// Asks the Pi's firmware for a framebuffer and puts a console on it. `virt` maps a
    /// physical address of a device region to where it is mapped; `virt_to_phys` turns a
    /// kernel address into a physical one (for the property call's buffer).
    ///
    /// # Safety
    /// Every region of [`BoardInfo::device_regions`] (which include the VideoCore's memory)
    /// must be mapped at `virt(base)` as Device memory, and nothing else may draw on the
    /// screen or make property calls meanwhile.
    pub unsafe fn probe(
        info: &BoardInfo,
        virt: impl Fn(u64) -> usize,
        virt_to_phys: fn(usize) -> u64,
    ) -> Option<(FbConsole, Framebuffer)> {
        let (mbox, vc) = (info.mailbox?, info.videocore_memory()?);
        let buf = STATIC_BUFFER.get(virt_to_phys, info.soc_dma)?;
        // SAFETY: the mailbox is mapped (caller's contract).
        let mailbox = unsafe { Mailbox::new(virt(mbox.base)) };
        // SAFETY: nothing else makes property calls meanwhile (caller's contract), so the
        // static buffer is ours for the call; `buf.bus` is its VideoCore address.
        let fb = unsafe { mailbox.allocate_framebuffer(buf) }.ok()?;
        let inside = vc.base <= fb.pa && fb.pa + u64::from(fb.size) <= vc.base + vc.size;
        if !inside || !fb.pa.is_multiple_of(4) {
            return None;
        }
        let (w, h, stride) = (fb.width as usize, fb.height as usize, fb.pitch as usize / 4);
        // SAFETY: the buffer lies in the VideoCore's memory, mapped at `virt` (checked just
        // above), and the firmware gave it to us alone.
        Some((unsafe { FbConsole::new(virt(fb.pa) as *mut u32, w, h, stride) }, fb))
    }

    /// Text size in characters: columns and rows.
    pub fn size(&self) -> (usize, usize) {
        (self.cols, self.rows)
    }

    fn put(&mut self, x: usize, y: usize, pixel: u32) {
        debug_assert!(x < self.width && y < self.height);
        let word = self.base.wrapping_add(y * self.stride + x);
        // SAFETY: callers pass on-screen coordinates, so `word` lies in the framebuffer
        // `new`'s caller gave us, mapped, writable and touched by no one else.
        unsafe { word.write_volatile(pixel) };
    }

    fn get(&self, x: usize, y: usize) -> u32 {
        let word = self.base.wrapping_add(y * self.stride + x);
        // SAFETY: callers pass on-screen coordinates, so `word` lies in the framebuffer
        // `new`'s caller gave us, mapped and touched by no one else.
        unsafe { word.read_volatile() }
    }

    /// Clears whole pixel rows: each row's 16-byte aligned middle in 64-byte blocks (four
    /// paired stores a turn, [`zero_blocks`]), the few pixels either side one at a time. A
    /// per-pixel loop over the 640x480 screen was a tenth of the boot on QEMU `raspi4b`,
    /// two pixels a store still 0.8 million instructions.
    fn clear_rows(&mut self, from: usize, to: usize) {
        for y in from..to {
            let row = self.base.wrapping_add(y * self.stride);
            let mut x = 0;
            while x < self.width && !(row.wrapping_add(x) as usize).is_multiple_of(16) {
                self.put(x, y, 0);
                x += 1;
            }
            let blocks = (self.width - x) / 16;
            // SAFETY: pixels `x..x + 16 * blocks` of on-screen row `y` are in the
            // framebuffer (as for `put`), and `row + x` is 16-byte aligned.
            unsafe { zero_blocks(row.wrapping_add(x) as *mut u8, blocks) };
            for x in x + 16 * blocks..self.width {
                self.put(x, y, 0);
            }
        }
    }

    /// Draws `ch` in the cursor's cell, a row of the glyph at a time (the boot log's text
    /// was a tenth of the boot's instructions on QEMU `raspi4b` drawn a pixel at a time),
    /// each row's pixels by hand: the release profile optimizes for size and keeps a loop,
    /// 7 instructions a pixel, where the written-out row takes 3.
    fn draw(&mut self, ch: char) {
        let (x0, y0) = (self.col * CELL_W, self.row * CELL_H);
        let ch = if ch.is_ascii_graphic() || ch == ' ' { ch } else { '?' };
        let pixels = get_raster(ch, WEIGHT, SIZE).map_or(&[][..], |g| g.pixels());
        for y in 0..CELL_H {
            debug_assert!(x0 + CELL_W <= self.width && y0 + y < self.height);
            let dst = self.base.wrapping_add((y0 + y) * self.stride + x0);
            let row = pixels.get(y * CELL_W..(y + 1) * CELL_W).and_then(|r| <&[u8; 7]>::try_from(r).ok());
            let src = row.unwrap_or(&[0; 7]);
            macro_rules! pixels {
                ($($x:literal)*) => {$(
                    // SAFETY: the cursor's cell lies on the screen (`col < cols`, `row <
                    // rows`), so pixel `x` of its row `y` is in the framebuffer, as for `put`.
                    unsafe { dst.wrapping_add($x).write_volatile(grey(src[$x])) };
                )*};
            }
            pixels!(0 1 2 3 4 5 6);
        }
    }

    fn newline(&mut self) {
        self.col = 0;
        self.row += 1;
        if self.row < self.rows {
            return;
        }
        let keep = self.rows / 2;
        let shift = (self.rows - keep) * CELL_H;
        for y in 0..keep * CELL_H {
            for x in 0..self.width {
                let p = self.get(x, y + shift);
                self.put(x, y, p);
            }
        }
        self.clear_rows(keep * CELL_H, self.height);
        self.row = keep;
    }

    /// Writes console bytes: UTF-8 text with `\n`, `\r`, `\t` and backspace. A character
    /// the font lacks shows as `?`.
    pub fn write_bytes(&mut self, bytes: &[u8]) {
        if self.rows == 0 || self.cols == 0 {
            return;
        }
        for &b in bytes {
            match b {
                b'\n' => self.newline(),
                b'\r' => self.col = 0,
                b'\t' => self.col = (self.col / 8 + 1) * 8,
                0x08 => self.col = self.col.saturating_sub(1),
                // UTF-8: a lead byte stands for its character, continuation bytes vanish.
                0x80..=0xbf => continue,
                0x20..=0x7e | 0xc0.. => {
                    if self.col >= self.cols {
                        self.newline();
                    }
                    self.draw(if b < 0x80 { b as char } else { '?' });
                    self.col += 1;
                }
                _ => {}
            }
            if self.col > self.cols {
                self.newline();
            }
        }
    }
}

impl BoardInfo {
    /// The VideoCore's share of the RAM it sees (on a Pi 4 the first GiB): the part of the
    /// `/soc` DMA window above the RAM the device tree gives the ARM. The firmware puts the
    /// framebuffer there, so the kernel maps it with the devices.
    pub fn videocore_memory(&self) -> Option<Region> {
        self.mailbox?;
        let w = self.soc_dma?;
        let end = w.cpu + w.size;
        let ram_end = self
            .memory
            .as_slice()
            .iter()
            .filter(|m| m.base <= w.cpu && m.base + m.size > w.cpu)
            .map(|m| m.base + m.size)
            .next()?;
        (ram_end < end).then(|| Region { base: ram_end, size: end - ram_end })
    }
}

/// Zeroes `blocks` 64-byte blocks at `p`.
///
/// # Safety
/// `p` is 16-byte aligned and the `64 * blocks` bytes from it are mapped, writable memory
/// (Device memory included: paired aligned stores are allowed there) that nothing else uses.
unsafe fn zero_blocks(p: *mut u8, blocks: usize) {
    #[cfg(target_arch = "aarch64")]
    if blocks > 0 {
        // SAFETY: the caller's contract; the loop stores exactly `64 * blocks` bytes from `p`.
        unsafe {
            core::arch::asm!(
                "2:",
                "stp xzr, xzr, [{p}]",
                "stp xzr, xzr, [{p}, #16]",
                "stp xzr, xzr, [{p}, #32]",
                "stp xzr, xzr, [{p}, #48]",
                "add {p}, {p}, #64",
                "subs {n}, {n}, #1",
                "b.ne 2b",
                p = inout(reg) p => _,
                n = inout(reg) blocks => _,
                options(nostack),
            )
        };
    }
    #[cfg(not(target_arch = "aarch64"))]
    for i in 0..blocks * 64 {
        // SAFETY: the caller's contract: byte `i` is within the blocks.
        unsafe { p.wrapping_add(i).write_volatile(0) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn screen(w: usize, h: usize) -> (Vec<u32>, FbConsole) {
        let mut px = vec![0x00ff_00ffu32; w * h];
        // SAFETY: the vector holds w * h pixels and outlives the console in each test.
        let c = unsafe { FbConsole::new(px.as_mut_ptr(), w, h, w) };
        (px, c)
    }

    /// The text of row `row` of the screen, read back by matching each cell's pixels.
    fn read_row(px: &[u32], w: usize, row: usize, cols: usize) -> String {
        (0..cols)
            .map(|col| {
                let cell = |ch: char| {
                    (0..CELL_H).all(|y| {
                        (0..CELL_W).all(|x| {
                            px[(row * CELL_H + y) * w + col * CELL_W + x] == grey(coverage(ch, x, y))
                        })
                    })
                };
                (' '..='~').find(|&c| cell(c)).unwrap_or('#')
            })
            .collect::<String>()
            .trim_end()
            .to_string()
    }

    #[test]
    fn clearing_covers_each_row_and_nothing_past_it_at_any_alignment() {
        // Rows of 33 pixels, 35 apart, starting one pixel past an 8-byte boundary and on one.
        for skew in [1, 0] {
            let (w, h, stride) = (33, 4, 35);
            let mut px = vec![u64::MAX; (stride * h + 2) / 2]; // 8-byte aligned storage
            let base = (px.as_mut_ptr() as *mut u32).wrapping_add(skew);
            // SAFETY: `px` holds more than skew + stride * h pixels and outlives the console.
            let _c = unsafe { FbConsole::new(base, w, h, stride) };
            // SAFETY: the same storage, read as the pixels it holds.
            let all = unsafe { core::slice::from_raw_parts(base, stride * h) };
            for (i, &p) in all.iter().enumerate() {
                assert_eq!(
                    p == 0,
                    i % stride < w,
                    "pixel {} of row {} (skew {skew})",
                    i % stride,
                    i / stride
                );
            }
        }
    }

    #[test]
    fn text_is_drawn_where_it_belongs() {
        let w = CELL_W * 20;
        let (px, mut c) = screen(w, CELL_H * 4);
        assert!(px.iter().all(|&p| p == 0), "the screen starts cleared");
        c.write_bytes(b"exo boots\r\nline 2\n\ttab");
        assert_eq!(c.size(), (20, 4));
        assert_eq!(read_row(&px, w, 0, 20), "exo boots");
        assert_eq!(read_row(&px, w, 1, 20), "line 2");
        assert_eq!(read_row(&px, w, 2, 20), "        tab");
        assert!(px.iter().any(|&p| p != 0 && p != 0x00ff_ffff), "anti-aliased grey levels");
    }

    #[test]
    fn unknown_characters_show_as_a_question_mark_and_long_lines_wrap() {
        let w = CELL_W * 8;
        let (px, mut c) = screen(w, CELL_H * 3);
        c.write_bytes("a—b 0123456789".as_bytes());
        assert_eq!(read_row(&px, w, 0, 8), "a?b 0123");
        assert_eq!(read_row(&px, w, 1, 8), "456789");
    }

    #[test]
    fn the_screen_scrolls_by_half_when_full() {
        let w = CELL_W * 10;
        let (px, mut c) = screen(w, CELL_H * 4);
        for i in 0..4 {
            c.write_bytes(format!("line {i}\n").as_bytes());
        }
        // Four lines and a newline overflow four rows: rows 2 and 3 moved to the top.
        assert_eq!(read_row(&px, w, 0, 10), "line 2");
        assert_eq!(read_row(&px, w, 1, 10), "line 3");
        assert_eq!(read_row(&px, w, 2, 10), "");
        c.write_bytes(b"line 4");
        assert_eq!(read_row(&px, w, 2, 10), "line 4");
    }

    #[test]
    fn videocore_memory_is_the_window_above_the_arm_ram() {
        let parse = |name: &str| {
            let mut dtb = std::fs::read(format!("{}/testdata/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap();
            BoardInfo::parse(&mut dtb).unwrap()
        };
        // QEMU raspi4b gives the ARM 960 MiB; the VideoCore keeps the rest of the first GiB.
        let vc = Region { base: 0x3c00_0000, size: 0x0400_0000 };
        let pi = parse("qemu-raspi4b.dtb");
        assert_eq!(pi.videocore_memory(), Some(vc));
        assert!(pi.device_regions().as_slice().contains(&vc));
        assert_eq!(parse("qemu-virt.dtb").videocore_memory(), None);
    }
}
