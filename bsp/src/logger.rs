//! A `log` backend that stamps each record with the generic timer's time since reset and
//! hands the line to whatever prints (the kernel's console).

use core::fmt;

use crate::drivers::generic_timer;

/// Prints `[seconds.micros] LEVEL message` lines through `print`, up to `log::max_level()`.
pub struct Logger {
    pub print: fn(fmt::Arguments),
}

impl log::Log for Logger {
    fn enabled(&self, meta: &log::Metadata) -> bool {
        meta.level() <= log::max_level()
    }

    fn log(&self, record: &log::Record) {
        if self.enabled(record.metadata()) {
            let us = generic_timer::to_micros(generic_timer::now());
            let (s, us) = (us / 1_000_000, us % 1_000_000);
            (self.print)(format_args!("[{s:>5}.{us:06}] {:<5} {}\n", record.level(), record.args()));
        }
    }

    fn flush(&self) {}
}
