//! Kernel output: `kprintln!`, the `log` backend with timestamps, and the emergency path
//! used by faults and panics.
//!
//! The console is the board's UART. Writes need no lock: the kernel is single-core and never
//! preempted, and a PL011 write is a polled register sequence that keeps no state.

use core::fmt::{self, Write};

use exo_bsp::drivers::generic_timer;
use exo_bsp::Console;

struct Uart;

impl Write for Uart {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        if let Some(b) = crate::platform::board() {
            b.uart.write_bytes(s.as_bytes());
        }
        Ok(())
    }
}

pub fn print(args: fmt::Arguments) {
    let _ = Uart.write_fmt(args);
}

/// Output for faults and panics: the same UART, with no dependency on the logger.
pub fn emergency(args: fmt::Arguments) {
    print(args);
}

#[macro_export]
macro_rules! kprintln {
    () => { $crate::console::print(format_args!("\n")) };
    ($($arg:tt)*) => { $crate::console::print(format_args!("{}\n", format_args!($($arg)*))) };
}

struct Logger;

impl log::Log for Logger {
    fn enabled(&self, meta: &log::Metadata) -> bool {
        meta.level() <= log::max_level()
    }

    fn log(&self, record: &log::Record) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let us = generic_timer::to_micros(generic_timer::now());
        print(format_args!(
            "[{:>5}.{:06}] {:<5} {}\n",
            us / 1_000_000,
            us % 1_000_000,
            record.level(),
            record.args()
        ));
    }

    fn flush(&self) {}
}

static LOGGER: Logger = Logger;

pub fn init_logging(level: log::LevelFilter) {
    let _ = log::set_logger(&LOGGER);
    log::set_max_level(level);
}
