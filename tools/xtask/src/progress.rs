//! A progress bar on stderr for long work (a bar on a terminal, a few lines in a log).

use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

/// Set by the test runner: the card is made many times there, without a word.
pub static QUIET: AtomicBool = AtomicBool::new(false);

/// Prints a line of what xtask is doing (unless [`QUIET`]).
pub fn say(line: &str) {
    if !QUIET.load(Ordering::Relaxed) {
        eprintln!("{line}");
    }
}

pub struct Progress {
    label: String,
    total: u64,
    done: u64,
    started: Instant,
    tty: bool,
    /// Last quarter printed when stderr is not a terminal.
    quarter: u64,
    drawn: bool,
}

impl Progress {
    pub fn new(label: &str, total: u64) -> Progress {
        let tty = std::io::stderr().is_terminal();
        Progress {
            label: label.into(),
            total,
            done: 0,
            started: Instant::now(),
            tty,
            quarter: 0,
            drawn: false,
        }
    }

    pub fn set(&mut self, done: u64) {
        self.done = done.min(self.total);
        if QUIET.load(Ordering::Relaxed) {
            return;
        }
        if self.tty {
            self.draw();
        } else {
            let q = (self.done * 4).checked_div(self.total).unwrap_or(4);
            if q > self.quarter {
                self.quarter = q;
                eprintln!("{}: {}% ({})", self.label, q * 25, self.amounts());
            }
        }
    }

    fn amounts(&self) -> String {
        let secs = self.started.elapsed().as_secs_f64().max(1e-3);
        let rate = self.done as f64 / secs;
        let eta = if rate > 0.0 { (self.total - self.done) as f64 / rate } else { 0.0 };
        format!(
            "{}/{} KiB, {:.1} KiB/s, {:.0} s left",
            self.done.div_ceil(1024),
            self.total.div_ceil(1024),
            rate / 1024.0,
            eta
        )
    }

    fn draw(&mut self) {
        const W: u64 = 30;
        let filled = (self.done * W).checked_div(self.total).unwrap_or(W) as usize;
        let pct = (self.done * 100).checked_div(self.total).unwrap_or(100);
        eprint!(
            "\r\x1b[K{} [{}{}] {pct:3}% {}",
            self.label,
            "#".repeat(filled),
            "-".repeat(W as usize - filled),
            self.amounts()
        );
        let _ = std::io::stderr().flush();
        self.drawn = true;
    }

    /// Prints a line above the bar.
    pub fn note(&mut self, line: &str) {
        if self.drawn {
            eprint!("\r\x1b[K");
        }
        eprintln!("{line}");
        if self.drawn {
            self.draw();
        }
    }

    /// Ends the bar's line.
    pub fn finish(&mut self) {
        if self.drawn {
            eprintln!();
            self.drawn = false;
        }
    }
}
