//! Reading a line from the console: echo, backspace, Ctrl-C / Ctrl-U, and history on the
//! up and down arrows.

use alloc::collections::VecDeque;
use alloc::string::String;
use alloc::vec::Vec;

use exo_libos::{print, sys};

pub struct Editor {
    history: Vec<String>,
    /// Keys typed ahead, read before the console's (`feed`).
    ahead: VecDeque<u8>,
}

const MAX_HISTORY: usize = 50;

fn erase(n: usize) {
    for _ in 0..n {
        print!("\x08 \x08");
    }
}

impl Editor {
    pub fn new() -> Editor {
        Editor { history: Vec::new(), ahead: VecDeque::new() }
    }

    /// Keys typed while a job ran that none of its programs read: they come before the
    /// console's, after any fed earlier and not yet read (typed before them).
    pub fn feed(&mut self, keys: Vec<u8>) {
        self.ahead.extend(keys);
    }

    fn key(&mut self) -> Result<u8, exo_libos::abi::Error> {
        self.ahead.pop_front().map_or_else(|| sys::console_read(true), Ok)
    }

    /// Reads one line after printing `prompt`. `None` when input ends (Ctrl-D on an empty
    /// line).
    pub fn read_line(&mut self, prompt: &str) -> Option<String> {
        print!("{prompt}");
        let mut line = String::new();
        let mut back = self.history.len(); // position while walking the history
        let mut after_cr = false;
        loop {
            let Ok(c) = self.key() else { return None };
            match c {
                b'\n' if after_cr => {} // \r\n from a terminal: one line end, not two
                b'\r' | b'\n' => {
                    print!("\n");
                    if !line.trim().is_empty() && self.history.last() != Some(&line) {
                        if self.history.len() == MAX_HISTORY {
                            self.history.remove(0);
                        }
                        self.history.push(line.clone());
                    }
                    return Some(line);
                }
                0x7f | 0x08 if line.pop().is_some() => erase(1),
                0x03 => {
                    print!("^C\n{prompt}");
                    line.clear();
                }
                0x15 => {
                    erase(line.chars().count());
                    line.clear();
                }
                0x04 if line.is_empty() => return None,
                0x1b => {
                    // An escape sequence: ESC [ A (up) or ESC [ B (down); others ignored.
                    if self.key() != Ok(b'[') {
                        continue;
                    }
                    let dir = self.key().unwrap_or(0);
                    let next = match dir {
                        b'A' if back > 0 => back - 1,
                        b'B' if back < self.history.len() => back + 1,
                        _ => continue,
                    };
                    back = next;
                    erase(line.chars().count());
                    line = self.history.get(back).cloned().unwrap_or_default();
                    print!("{line}");
                }
                c if (0x20..0x7f).contains(&c) => {
                    line.push(c as char);
                    print!("{}", c as char);
                }
                _ => {}
            }
            after_cr = c == b'\r';
        }
    }
}
