//! Kernel output: `kprintln!`, the `log` backend (`exo_bsp::logger`, timestamped), and the emergency path
//! used by faults and panics.
//!
//! The console is the board's UART, mirrored on the screen where there is one (a Pi's HDMI
//! framebuffer, drawn by `exo_bsp::fbcon`). Output has a lock of its own (`SCREEN`, which
//! also holds the screen's cursor): one writer's bytes come out together, and an
//! environment's `ConsoleWrite` transmits without the kernel lock, so a slow UART (a 64-byte
//! write is about 5.5 ms at 115200 baud) holds up only other writers, not the kernel.

use core::fmt::{self, Write};

use exo_bsp::drivers::bcm2835_mbox::Framebuffer;
use exo_bsp::{fbcon::FbConsole, Console};

use exo_abi::Error;

use crate::{cell::Global, mm, uaccess};

/// The console as a `fmt::Write`.
pub struct Out;

impl Write for Out {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        write_raw(s.as_bytes());
        Ok(())
    }
}

pub fn print(args: fmt::Arguments) {
    let _ = Out.write_fmt(args);
}

/// Raw bytes to the console (the EL0 debug-console call): the UART, and the screen if any
/// until its holder maps it.
pub fn write_raw(bytes: &[u8]) {
    let taken = mm::uvm::SCREEN_TAKEN.load(core::sync::atomic::Ordering::Relaxed);
    SCREEN.with(|s| {
        if let Some(b) = crate::platform::board() {
            b.uart.write_bytes(bytes);
        }
        s.as_mut().filter(|_| !taken).map(|(c, _)| c.write_bytes(bytes))
    });
}

/// `ConsoleWrite`, for an environment allowed to write (`Env::speaks`): up to
/// `CONSOLE_CHUNK` bytes copied out of the caller's memory under the
/// kernel lock, then sent without it: a polled transmit takes ms on hardware, and only
/// other writers of the console wait for it (docs/multicore.md).
pub extern "C" fn console_write(ptr: u64, len: u64, _: u64, _: u64, _: u64, _: u64) -> i64 {
    let buf = &mut [0u8; exo_abi::CONSOLE_CHUNK as usize][..len.min(exo_abi::CONSOLE_CHUNK) as usize];
    let copied = crate::env::kernel(|k| {
        let e = k.envs.get(k.current).ok_or(Error::NotFound)?; // destroyed meanwhile
        refuse_if!(!e.speaks, Error::Denied); // never allowed, or taken back (`ConsoleAllow`)
        let r = if len > 64 * 1024 { Err(Error::Invalid) } else { uaccess::copy_in(e.root, ptr, buf) };
        r.map(|_| buf.len() as u64)
    });
    if copied.is_ok() {
        write_raw(buf);
    }
    crate::syscall::ret(copied)
}

/// The console's own lock (taken without the kernel lock, or inside it, never around it):
/// the screen the console is mirrored on, and its framebuffer.
static SCREEN: Global<Option<(FbConsole, Framebuffer)>> = Global::new(None);

/// Mirrors the console on a screen, where the board has one (a Pi's framebuffer).
pub fn init_screen(info: &exo_bsp::dt::BoardInfo) {
    // SAFETY: every device region, the VideoCore's memory among them, is mapped in the
    // physmap as Device memory; only core 0 runs yet, so nothing else draws or calls the
    // mailbox now; `kva_to_pa` translates kernel addresses.
    let screen = unsafe { FbConsole::probe(info, |pa| mm::phys_to_virt(pa) as usize, mm::kva_to_pa) };
    SCREEN.with(|s| *s = screen);
}

/// The framebuffer the console is mirrored on.
pub fn screen() -> Option<Framebuffer> {
    SCREEN.with(|s| s.as_ref().map(|s| s.1))
}

/// Bytes received but not yet read by an environment.
static INPUT: Global<exo_bsp::RxRing> = Global::new(exo_bsp::RxRing::new());

/// Moves everything in the UART's receive FIFO into the input buffer (from the interrupt
/// handler; also clears the UART's interrupt). When the buffer is full, new bytes are
/// dropped: a slow reader loses typing, the kernel never blocks on it.
pub fn drain_input() {
    if let Some(b) = crate::platform::board() {
        INPUT.with(|i| i.drain(&b.uart));
    }
}

/// The next received byte, if any.
pub fn read_byte() -> Option<u8> {
    drain_input();
    INPUT.with(|i| i.pop())
}

/// Output for faults and panics: the same UART, with no dependency on the logger.
pub use self::print as emergency;

#[macro_export]
macro_rules! kprintln {
    () => { $crate::console::print(format_args!("\n")) };
    ($($arg:tt)*) => { $crate::console::print(format_args!("{}\n", format_args!($($arg)*))) };
}

static LOGGER: exo_bsp::logger::Logger = exo_bsp::logger::Logger { print };

pub fn init_logging(level: log::LevelFilter) {
    let _ = log::set_logger(&LOGGER);
    log::set_max_level(level);
}
