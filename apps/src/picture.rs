//! The picture `fbdemo` draws: the frame table by owner and the disk's sector bindings, read
//! from the kernel's public tables (frame table, environment table with each
//! environment's bindings), with a legend. The layout is fixed so that a screen check can
//! find its parts (`tools/xtask/src/test_demo.rs` looks at the legend and the header).
//!
//! ```text
//! y 4    header: frames, free frames, refresh count
//! y 28   the frame table, one CELL x CELL square per block of frames
//! y 276  the disk, one bar: each bound extent in its holder's colour
//! y 300  legend: one line per live environment (swatch, id, frames, sector bindings),
//!        then the colours of free, kernel and public frames
//! ```

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use noto_sans_mono_bitmap::{get_raster, get_raster_width, FontWeight, RasterHeight};

use exo_libos::abi::{env_state, frame, EnvId, EnvInfo, SECTOR_WRITE};
use exo_libos::screen::Screen;
use exo_libos::vm::{self, PAGE};

pub const MARGIN: usize = 8;
pub const HEADER_Y: usize = 4;
pub const GRID_Y: usize = 28;
/// A block's square, in pixels.
pub const CELL: usize = 4;
pub const GRID_ROWS: usize = 60;
pub const DISK_Y: usize = 276;
pub const DISK_H: usize = 12;
pub const LEGEND_Y: usize = 300;
pub const LINE_H: usize = 18;
/// The legend's colour squares.
pub const SWATCH: usize = 12;
/// The smallest screen the layout above fits on (a legend of at least two lines).
pub const MIN_WIDTH: usize = 2 * MARGIN + 64 * CELL;
pub const MIN_HEIGHT: usize = LEGEND_Y + 2 * LINE_H;
const TEXT_X: usize = MARGIN + SWATCH + 8;
const FONT: RasterHeight = RasterHeight::Size16;
const TEXT_W: usize = get_raster_width(FontWeight::Regular, FONT);

pub const FREE: u32 = 0x20_2020;
pub const KERNEL: u32 = 0x50_5050;
pub const PUBLIC: u32 = 0x90_9090;
const ABSENT: u32 = 0;
const WHITE: u32 = 0xff_ffff;
/// Environments' colours, by slot.
pub const PALETTE: [u32; 12] = [
    0xe6_194b, 0x3c_b44b, 0xff_e119, 0x43_63d8, 0xf5_8231, 0x91_1eb4, 0x46_f0f0, 0xf0_32e6, 0xbc_f60c,
    0xfa_bebe, 0x00_8080, 0xe6_beff,
];

/// The colour of environment `id`.
pub fn colour(id: u32) -> u32 {
    PALETTE[EnvId(id).slot() % PALETTE.len()]
}

/// The screen and what was drawn last (cells are redrawn only when they change).
pub struct Picture {
    pub screen: Screen,
    cells: Vec<u32>,
    pub refreshes: u64,
}

impl Picture {
    pub fn new(mut screen: Screen) -> Picture {
        let (w, h) = (screen.width, screen.height);
        screen.fill(0, 0, w, h, 0);
        Picture { screen, cells: Vec::new(), refreshes: 0 }
    }

    /// Draws everything from the tables as they are now.
    pub fn refresh(&mut self) {
        self.refreshes += 1;
        let k = vm::kinfo();
        let envs: Vec<EnvInfo> = (0..k.max_envs as u32)
            .filter_map(|s| vm::env_info(EnvId(s)))
            .filter(|e| matches!(e.state, env_state::BLANK | env_state::RUNNABLE | env_state::BLOCKED))
            .collect();
        let cols = (self.screen.width - 2 * MARGIN) / CELL;
        let blocks = cols * GRID_ROWS;
        let per = k.frames.div_ceil(blocks as u64).max(1);
        self.cells.resize(blocks, u32::MAX);
        for b in 0..blocks {
            let first = b as u64 * per;
            let c = if first >= k.frames { 0 } else { block_colour(first, (first + per).min(k.frames)) };
            if self.cells[b] != c {
                self.cells[b] = c;
                let (x, y) = (MARGIN + (b % cols) * CELL, GRID_Y + (b / cols) * CELL);
                self.screen.fill(x, y, CELL - 1, CELL - 1, c);
            }
        }
        let header = format!(
            "exo frame table: {} frames, {} free, {} per square | refresh {}",
            k.frames, k.free_frames, per, self.refreshes
        );
        self.line(HEADER_Y, &header);
        self.disk(&envs);
        let me = vm::me().0;
        let mut y = LEGEND_Y;
        for e in &envs {
            if y + 2 * LINE_H > self.screen.height {
                break;
            }
            let name = if e.id == me {
                " fbdemo"
            } else if e.parent == 0 {
                " init"
            } else {
                ""
            };
            let mut text = format!("env {:#x}{name}: {} frames", e.id, e.frames);
            for s in e.sectors.iter().filter(|s| s.count != 0) {
                let rw = if s.rights & SECTOR_WRITE != 0 { "rw" } else { "r" };
                text += &format!(", sectors {}+{} {rw}", s.start, s.count);
            }
            self.screen.fill(MARGIN, y + 2, SWATCH, SWATCH, colour(e.id));
            self.text_line(TEXT_X, y, &text);
            y += LINE_H;
        }
        let mut x = MARGIN;
        for (c, name) in [(FREE, "free"), (KERNEL, "kernel"), (PUBLIC, "public")] {
            self.screen.fill(x, y + 2, SWATCH, SWATCH, c);
            x += SWATCH + 4;
            self.text(x, y, name, WHITE);
            x += (name.len() + 2) * TEXT_W;
        }
        // Clear what a longer legend left below.
        let (w, h) = (self.screen.width, self.screen.height);
        self.screen.fill(0, y + LINE_H, w, h.saturating_sub(y + LINE_H), 0);
    }

    /// The disk as a bar, each bound extent in its holder's colour.
    fn disk(&mut self, envs: &[EnvInfo]) {
        let total = vm::kinfo().disk_sectors;
        let w = self.screen.width - 2 * MARGIN;
        self.screen.fill(MARGIN, DISK_Y, w, DISK_H, if total == 0 { 0 } else { FREE });
        if total == 0 {
            self.text(MARGIN, DISK_Y - 2, "no disk", WHITE);
            return;
        }
        for e in envs {
            for s in e.sectors.iter().filter(|s| s.count != 0) {
                let x0 = (s.start.min(total) as u128 * w as u128 / total as u128) as usize;
                let x1 = ((s.start + s.count as u64).min(total) as u128 * w as u128 / total as u128) as usize;
                self.screen.fill(MARGIN + x0, DISK_Y, (x1 - x0).max(1), DISK_H, colour(e.id));
            }
        }
    }

    /// A whole line of text at `y`, cleared to the right edge first.
    fn line(&mut self, y: usize, s: &str) {
        self.text_line(MARGIN, y, s)
    }

    fn text_line(&mut self, x: usize, y: usize, s: &str) {
        let w = self.screen.width;
        self.screen.fill(x, y, w - x, FONT.val(), 0);
        self.text(x, y, s, WHITE);
    }

    /// Draws `s` from (x, y), anti-aliased on black; characters the font lacks are `?`.
    fn text(&mut self, x: usize, y: usize, s: &str, rgb: u32) {
        for (i, ch) in s.chars().enumerate() {
            let g = get_raster(ch, FontWeight::Regular, FONT)
                .or_else(|| get_raster('?', FontWeight::Regular, FONT));
            let Some(g) = g else { continue };
            for (gy, row) in g.rows().enumerate() {
                for (gx, &c) in row.iter().enumerate() {
                    self.screen.put(x + i * TEXT_W + gx, y + gy, scale(rgb, c));
                }
            }
        }
    }
}

/// `rgb` at coverage `c` (0..=255) on black.
fn scale(rgb: u32, c: u8) -> u32 {
    let ch = |shift: u32| ((rgb >> shift & 0xff) * c as u32 / 255) << shift;
    ch(16) | ch(8) | ch(0)
}

/// A block's colour: the colour of the environment owning most of its frames if any is
/// owned, else that of its most common kind.
fn block_colour(first: u64, end: u64) -> u32 {
    let k = vm::kinfo();
    let mut owners: [(u32, u32); 8] = [(0, 0); 8];
    let mut kinds = [0u32; 8];
    for i in first..end {
        let Some(f) = vm::frame_entry(k.ram_base + i * PAGE) else { continue };
        kinds[(f.kind as usize).min(7)] += 1;
        if matches!(f.kind, frame::DATA | frame::TABLE | frame::DEVICE) {
            if let Some(o) = owners.iter_mut().find(|o| o.0 == f.owner || o.1 == 0) {
                *o = (f.owner, o.1 + 1);
            }
        }
    }
    if let Some(o) = owners.iter().filter(|o| o.1 > 0).max_by_key(|o| o.1) {
        return colour(o.0);
    }
    let kind = (0..kinds.len()).max_by_key(|&i| kinds[i]).unwrap_or(0) as u8;
    match kind {
        frame::FREE => FREE,
        frame::KERNEL => KERNEL,
        frame::PUBLIC => PUBLIC,
        _ => ABSENT,
    }
}

/// One line for the console when the picture cannot be drawn.
pub fn why_not(e: exo_libos::abi::Error) -> String {
    match e {
        exo_libos::abi::Error::NotFound => "this board has no screen (QEMU virt has none)".into(),
        exo_libos::abi::Error::Denied => "the screen is not this program's (run it from the shell)".into(),
        e => format!("cannot map the screen: {e:?}"),
    }
}
