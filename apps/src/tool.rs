//! What the small tools (`cat`, `grep`, `head`, `tail`, `wc`, `hexdump`, `yes`, `echo`,
//! `save`) share: their arguments, their input (files named on the command line, else
//! stdin) and their output (stdout, ending the program quietly once no one reads it).

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use exo_libos::abi::EnvId;
use exo_libos::eprintln;
use exo_libos::fd::{self, IoError};
use exo_libos::fs::{self, service, OpenFlags, Vfs};

/// Exit status of a tool whose output pipe lost its reader (128 + Unix's SIGPIPE).
pub const BROKEN_PIPE_STATUS: i32 = 141;

/// A tool's command line: options (`-x`, `-n N`), operands, and what the shell appends to
/// every program's: the file service's id (`fsd=0x...`) and, when it is not `/`, the
/// current directory (`cwd=PATH`), which relative paths start from. Words are split as the
/// shell splits them ([`exo_libos::args`]: "double quotes" keep spaces).
pub struct Args {
    pub words: Vec<String>,
    fsd: Option<EnvId>,
    cwd: Option<String>,
}

impl Args {
    pub fn parse(args: &str) -> Args {
        let mut a = Args { words: Vec::new(), fsd: None, cwd: None };
        for w in exo_libos::args::split(args) {
            if let Some(id) = w.strip_prefix("fsd=0x") {
                a.fsd = u32::from_str_radix(id, 16).ok().map(EnvId);
            } else if let Some(dir) = w.strip_prefix("cwd=") {
                a.cwd = Some(dir.into());
            } else {
                a.words.push(w);
            }
        }
        a
    }

    /// The words the shell appended (`fsd=`, `cwd=`), for a program started in this one's
    /// place (`exec`): joined, to follow its own words.
    pub fn passed_on(&self) -> String {
        let fsd = self.fsd.map(|id| format!("fsd={:#x}", id.0));
        let cwd = self.cwd.as_ref().map(|d| format!("cwd={d}"));
        exo_libos::args::join(&fsd.into_iter().chain(cwd).collect::<Vec<_>>())
    }

    /// Takes the flag `-x` out of the words; true if it was there.
    pub fn flag(&mut self, name: &str) -> bool {
        let before = self.words.len();
        self.words.retain(|w| w != name);
        self.words.len() != before
    }

    /// Takes `-n N` out of the words (`default` when absent). A flag without a number is
    /// reported as `TOOL: -n needs a number` and gives `None`: the tool exits with 2.
    pub fn number(&mut self, tool: &str, name: &str, default: u64) -> Option<u64> {
        let Some(i) = self.words.iter().position(|w| w == name) else { return Some(default) };
        let Some(v) = self.words.get(i + 1).and_then(|v| v.parse().ok()) else {
            eprintln!("{tool}: {name} needs a number");
            return None;
        };
        self.words.drain(i..i + 2);
        Some(v)
    }

    /// The file systems: through the file service when the shell named one, else the
    /// partitions this program was granted; relative paths start from the current
    /// directory (`/` if the shell named none).
    pub fn files(&self) -> Vfs {
        let mut vfs = Vfs::new();
        if vfs.set_cwd(self.cwd.as_deref().unwrap_or("/")).is_err() {
            eprintln!("cwd={}: not a directory's path", self.cwd.as_deref().unwrap_or_default());
        }
        match self.fsd {
            Some(id) => {
                if let Err(e) = service::mount_remote(&mut vfs, id) {
                    eprintln!("the file service did not answer: {e}");
                }
            }
            None => {
                fs::mount::mount_disk(&mut vfs, &[exo_fat::backend(), exo_logfs::backend()]);
            }
        }
        vfs
    }
}

/// Calls `f` on each chunk of each input in turn: the files named (`inputs`), or stdin
/// when there are none. Returns false if a file could not be read (reported on stderr).
pub fn each_chunk(args: &Args, inputs: &[String], mut f: impl FnMut(&str, &[u8])) -> bool {
    let mut buf = alloc::vec![0u8; 16 * 1024];
    if inputs.is_empty() {
        loop {
            match fd::read(fd::STDIN, &mut buf) {
                Ok(0) => return true,
                Ok(n) => f("", &buf[..n]),
                Err(e) => {
                    eprintln!("stdin: {e:?}");
                    return false;
                }
            }
        }
    }
    let mut vfs = args.files();
    let mut ok = true;
    for path in inputs.iter().map(String::as_str) {
        let h = match vfs.open(path, OpenFlags::READ) {
            Ok(h) => h,
            Err(e) => {
                eprintln!("{path}: {e}");
                ok = false;
                continue;
            }
        };
        loop {
            match vfs.read(h, &mut buf) {
                Ok(0) => break,
                Ok(n) => f(path, &buf[..n]),
                Err(e) => {
                    eprintln!("{path}: {e}");
                    ok = false;
                    break;
                }
            }
        }
        let _ = vfs.close(h);
    }
    ok
}

/// Writes `data` to stdout; ends the program if the pipe there has no reader any more.
pub fn out(data: &[u8]) {
    match fd::write(fd::STDOUT, data) {
        Ok(()) => {}
        Err(IoError::Broken) => exo_libos::rt::exit(BROKEN_PIPE_STATUS),
        Err(_) => exo_libos::rt::exit(1),
    }
}

/// Calls `line` on each complete line of the input (without its `\n`; a last line without
/// one counts too). Lines longer than 64 KiB are cut there.
pub struct Lines {
    partial: Vec<u8>,
}

impl Lines {
    pub fn new() -> Lines {
        Lines { partial: Vec::new() }
    }

    pub fn feed(&mut self, mut chunk: &[u8], mut line: impl FnMut(&[u8])) {
        while let Some(i) = chunk.iter().position(|&b| b == b'\n') {
            if self.partial.is_empty() {
                line(&chunk[..i]);
            } else {
                self.partial.extend_from_slice(&chunk[..i]);
                line(&self.partial);
                self.partial.clear();
            }
            chunk = &chunk[i + 1..];
        }
        self.partial.extend_from_slice(chunk);
        if self.partial.len() > 64 * 1024 {
            line(&self.partial);
            self.partial.clear();
        }
    }

    pub fn finish(&mut self, mut line: impl FnMut(&[u8])) {
        if !self.partial.is_empty() {
            line(&self.partial);
            self.partial.clear();
        }
    }
}

impl Default for Lines {
    fn default() -> Lines {
        Lines::new()
    }
}
