//! Standard descriptors: a program's stdin (0), stdout (1) and stderr (2), each the
//! console, nothing, or one end of a pipe.
//!
//! A parent chooses them when it starts a program (`spawn::Options::stdio`): it maps the
//! pipe end's pages at [`slot_va`] in the child and writes the kinds into the child's
//! `StartInfo`. `print!`/`println!` write to stdout, `eprint!`/`eprintln!` to stderr. A
//! program started by the kernel (init), or by a parent that said nothing, has the console
//! on all three. A forked child keeps its parent's (the pages are mapped `SHARED`).

use exo_abi::pte::Pte;
use exo_abi::{EnvId, Error};

use crate::pipe::{self, Mapped, Pipe};
use crate::private::Private;
use crate::sys;
use crate::vm::{self, PAGE};

/// Where the pipe ends behind the descriptors are mapped: one 64 KiB slot each, all in one
/// 2 MiB region.
pub const FD_BASE: u64 = 0x1800_0000;
const SLOT: u64 = 0x1_0000;
/// The standard descriptors.
pub const STDIN: usize = 0;
pub const STDOUT: usize = 1;
pub const STDERR: usize = 2;
pub const COUNT: usize = 3;

/// What a descriptor is (as `StartInfo::fds` carries it; zero is the console).
pub mod kind {
    pub const CONSOLE: u32 = 0;
    /// Reads see end of file, writes vanish.
    pub const NULL: u32 = 1;
    pub const PIPE_READ: u32 = 2;
    pub const PIPE_WRITE: u32 = 3;
    /// The read end of a pipe that carries keystrokes as they were typed (a shell's job
    /// relays the console into it): reads edit and echo them as the console's do.
    pub const TTY: u32 = 4;
}

/// Whether a descriptor of kind `k` is a pipe end mapped at its slot.
fn is_pipe(k: u32) -> bool {
    matches!(k, kind::PIPE_READ | kind::PIPE_WRITE | kind::TTY)
}

const _: () = assert!(pipe::END_PAGES * PAGE <= SLOT);

/// Where descriptor `fd`'s pipe end is mapped.
pub fn slot_va(fd: usize) -> u64 {
    FD_BASE + fd as u64 * SLOT
}

#[unsafe(link_section = ".private")]
static FDS: Private<[u32; COUNT]> = Private::new([kind::CONSOLE; COUNT]);

/// This program's descriptor `fd`'s kind.
pub fn kind_of(fd: usize) -> u32 {
    // SAFETY: single-threaded; FDS is only written at start and by `close`, never from an
    // upcall.
    unsafe { (*FDS.get()).get(fd).copied().unwrap_or(kind::NULL) }
}

fn set_kind(fd: usize, k: u32) {
    // SAFETY: as in `kind_of`.
    unsafe { (*FDS.get())[fd] = k };
}

/// At start: the descriptors a parent gave (their pipe pages are already mapped).
pub(crate) fn adopt(kinds: [u32; COUNT]) -> Result<(), Error> {
    for (fd, &k) in kinds.iter().enumerate() {
        let k = if k > kind::TTY { kind::NULL } else { k };
        set_kind(fd, k);
        if is_pipe(k) {
            // Adopt the table the parent built there, so this space's bookkeeping (and a
            // fork) sees the pages.
            vm::reserve(slot_va(fd))?;
        }
    }
    Ok(())
}

/// What went wrong reading or writing a descriptor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IoError {
    /// Written to a pipe no one reads any more.
    Broken,
    /// The descriptor is not open for that (reading a write end, a closed one).
    BadFd,
    /// The console refused (this program does not hold its input).
    Console(Error),
}

/// Reads into `buf`: at least one byte, or 0 at end of file. The console (and a pipe of
/// keystrokes, [`kind::TTY`]) gives a line at most (echoed, `\r` read as `\n`; Ctrl-D on its
/// own ends the input).
pub fn read(fd: usize, buf: &mut [u8]) -> Result<usize, IoError> {
    let pipe = Mapped { va: slot_va(fd) };
    match kind_of(fd) {
        kind::PIPE_READ => Ok(pipe.read(buf)),
        kind::NULL => Ok(0),
        kind::CONSOLE => typed(buf, || sys::console_read(true).map_err(IoError::Console)),
        kind::TTY => typed(buf, || {
            let mut c = [0x04]; // the pipe's end of file, as Ctrl-D
            pipe.read(&mut c);
            Ok(c[0])
        }),
        _ => Err(IoError::BadFd),
    }
}

/// A key already typed on `fd` (the console, or a pipe of keystrokes), without waiting.
pub fn key(fd: usize) -> Option<u8> {
    let mut c = [0];
    match kind_of(fd) {
        kind::CONSOLE => sys::console_read(false).ok(),
        kind::TTY => (Mapped { va: slot_va(fd) }.try_read(&mut c) == 1).then_some(c[0]),
        _ => None,
    }
}

/// A line edited as it is typed, from keys that `next` gives one at a time.
fn typed(buf: &mut [u8], mut next: impl FnMut() -> Result<u8, IoError>) -> Result<usize, IoError> {
    let mut n = 0;
    while n < buf.len() {
        let c = next()?;
        match c {
            0x04 => break,
            b'\r' | b'\n' => {
                let _ = sys::console_write(b"\n");
                buf[n] = b'\n';
                n += 1;
                break;
            }
            0x7f | 0x08 => {
                if n > 0 {
                    n -= 1;
                    let _ = sys::console_write(b"\x08 \x08");
                }
            }
            c => {
                let _ = sys::console_write(&[c]);
                buf[n] = c;
                n += 1;
            }
        }
    }
    Ok(n)
}

/// Writes all of `data`.
pub fn write(fd: usize, data: &[u8]) -> Result<(), IoError> {
    match kind_of(fd) {
        kind::PIPE_WRITE => Mapped { va: slot_va(fd) }.write(data).map_err(|_| IoError::Broken),
        kind::NULL => Ok(()),
        kind::CONSOLE => sys::console_write(data).map(drop).map_err(IoError::Console),
        _ => Err(IoError::BadFd),
    }
}

/// Closes `fd`: a pipe end's pages are unmapped, so its peer sees one holder fewer (end of
/// file for a reader, [`IoError::Broken`] for a writer).
pub fn close(fd: usize) {
    if fd >= COUNT {
        return;
    }
    let k = kind_of(fd);
    if is_pipe(k) {
        let peer = Mapped { va: slot_va(fd) }.peer(k == kind::PIPE_WRITE);
        for p in 0..pipe::END_PAGES {
            let _ = vm::unmap(slot_va(fd) + p * PAGE);
        }
        // The other end, if asleep, wakes now rather than at the next tick, and finds one
        // holder fewer (end of file, or `Broken`).
        if let Some(peer) = peer {
            let _ = sys::yield_to(peer);
        }
    }
    set_kind(fd, kind::NULL);
}

/// Closes every descriptor: what a program does as it exits ([`crate::rt::exit`]).
pub fn close_all() {
    (0..COUNT).for_each(close);
}

/// What a child's descriptor is to be.
#[derive(Clone, Copy, Default)]
pub enum Stdio<'a> {
    /// The same as the parent's own.
    #[default]
    Inherit,
    Console,
    Null,
    /// The read end of a pipe the parent owns.
    Read(&'a Pipe),
    /// The write end of a pipe the parent owns.
    Write(&'a Pipe),
    /// The read end of a pipe the parent owns and writes keystrokes into ([`kind::TTY`]).
    Tty(&'a Pipe),
}

/// Gives `child` (blank, with a root table) its descriptors; returns their kinds for its
/// `StartInfo`.
pub(crate) fn give(child: EnvId, stdio: &[Stdio; COUNT]) -> Result<[u32; COUNT], Error> {
    let mut kinds = [kind::CONSOLE; COUNT];
    for (fd, s) in stdio.iter().enumerate() {
        let va = slot_va(fd);
        kinds[fd] = match *s {
            Stdio::Console => kind::CONSOLE,
            Stdio::Null => kind::NULL,
            Stdio::Read(p) => {
                p.attach(child, va, pipe::End::Read)?;
                kind::PIPE_READ
            }
            Stdio::Write(p) => {
                p.attach(child, va, pipe::End::Write)?;
                kind::PIPE_WRITE
            }
            Stdio::Tty(p) => {
                p.attach(child, va, pipe::End::Read)?;
                kind::TTY
            }
            Stdio::Inherit => {
                let k = kind_of(fd);
                if is_pipe(k) {
                    // Our own mapping of the end, passed on: the frames are an ancestor's,
                    // shared read-write with its descendants, which the child is.
                    for p in 0..pipe::END_PAGES {
                        let e = vm::entry(va + p * PAGE);
                        if Pte(e).is_valid() {
                            vm::ensure_tables(child, va + p * PAGE)?;
                            sys::table_set(child, va + p * PAGE, 3, e)?;
                        }
                    }
                }
                k
            }
        };
    }
    Ok(kinds)
}

/// Writes formatted text to `fd` (through a small buffer: one write per 512 bytes).
pub fn write_fmt(fd: usize, args: core::fmt::Arguments) -> Result<(), IoError> {
    use core::fmt::Write;
    struct Buf {
        fd: usize,
        b: [u8; 512],
        n: usize,
        err: Option<IoError>,
    }
    impl Buf {
        fn flush(&mut self) {
            if self.err.is_none() && self.n > 0 {
                self.err = write(self.fd, &self.b[..self.n]).err();
            }
            self.n = 0;
        }
    }
    impl Write for Buf {
        fn write_str(&mut self, s: &str) -> core::fmt::Result {
            for &c in s.as_bytes() {
                if self.n == self.b.len() {
                    self.flush();
                }
                self.b[self.n] = c;
                self.n += 1;
            }
            Ok(())
        }
    }
    let mut buf = Buf { fd, b: [0; 512], n: 0, err: None };
    let _ = buf.write_fmt(args);
    buf.flush();
    buf.err.map_or(Ok(()), Err)
}
