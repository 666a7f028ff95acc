//! Pipes: a ring buffer in frames that one environment (the pipe's *owner*, e.g. a shell's
//! job) allocates and then shares, explicitly, with the programs it gives an end to.
//!
//! A pipe is four kinds of frame, all the owner's:
//!
//! | page | what | mapped into |
//! |---|---|---|
//! | 0 | the [`Header`]: bytes written and read so far, the two token frames' addresses | both ends, read-write |
//! | 1 | a *token*: the read token for a read end, the write token for a write end | that end only, read-only |
//! | 2.. | the ring's data ([`RING_PAGES`] pages) | both ends, read-write |
//!
//! Nothing else is needed to know who holds an end: the kernel's public frame table counts
//! every mapping of a frame (`maps`), so the read token's count is the number of readers
//! and the write token's the number of writers. When a program exits or is killed, the
//! kernel's teardown removes its mappings, and the count drops: a reader whose ring is
//! empty and whose pipe has no writer left sees end of file; a writer whose pipe has no
//! reader gets [`Broken`]. A full ring makes the writer yield (to the reader, when it
//! knows it), an empty one the reader: back-pressure without spinning on the CPU, though
//! without a kernel wait queue a blocked end still gets a turn each round; once its peer
//! has been blocked for [`SPIN_US`], it sleeps a tick at a time instead.
//!
//! The sharing rule (`docs/memory-model.md`) decides who may map a pipe: the owner and
//! those of its descendants it (or a descendant holding an end) shared the frames with.
//! Programs outside the owner's subtree — another job's — are refused by the kernel.

use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use exo_abi::pte::Pte;
use exo_abi::{env_state, EnvId, Error};

use crate::sys;
use crate::vm::{self, PAGE, RO, RW, SHARED};

/// Data pages in a pipe's ring.
pub const RING_PAGES: usize = 8;
/// The ring's size in bytes.
pub const RING_BYTES: u64 = RING_PAGES as u64 * PAGE;
/// Pages a pipe end takes in an address space: header, token, ring.
pub const END_PAGES: u64 = 2 + RING_PAGES as u64;
/// How long (µs) an end waits on a blocked peer by yielding before it sleeps a tick at a
/// time: a peer blocked that long waits for something slow.
pub const SPIN_US: u64 = 1000;

/// A write to a pipe nobody reads any more (Unix's `EPIPE`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Broken;

/// The first page of a pipe.
#[repr(C)]
pub struct Header {
    /// Bytes ever written; only the writer advances it.
    pub written: AtomicU64,
    /// Bytes ever read; only the reader advances it.
    pub read: AtomicU64,
    /// The read token's and the write token's frame.
    pub read_token: u64,
    pub write_token: u64,
    /// The environments last seen reading and writing (0: none yet), to yield to.
    pub reader: AtomicU32,
    pub writer: AtomicU32,
}

/// Which end of a pipe.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum End {
    Read,
    Write,
}

/// A pipe, as its owner holds it: the frames, unmapped in the owner.
#[derive(Clone, Copy, Debug)]
pub struct Pipe {
    pub header: u64,
    pub read_token: u64,
    pub write_token: u64,
    pub ring: [u64; RING_PAGES],
}

impl Pipe {
    /// Allocates a pipe's frames (the caller's, under its quota) and writes its header.
    pub fn new() -> Result<Pipe, Error> {
        let me = vm::me();
        let mut p = Pipe { header: 0, read_token: 0, write_token: 0, ring: [0; RING_PAGES] };
        let r = (|| {
            p.read_token = sys::frame_alloc(me, None)?;
            p.write_token = sys::frame_alloc(me, None)?;
            for f in p.ring.iter_mut() {
                *f = sys::frame_alloc(me, None)?;
            }
            let (rt, wt) = (p.read_token, p.write_token);
            p.header = vm::fill_new_frame(|page| {
                page[16..24].copy_from_slice(&rt.to_le_bytes());
                page[24..32].copy_from_slice(&wt.to_le_bytes());
            })?;
            Ok(())
        })();
        match r {
            Ok(()) => Ok(p),
            Err(e) => {
                p.free();
                Err(e)
            }
        }
    }

    /// The frames, page by page as an end maps them.
    fn pages(&self, end: End) -> impl Iterator<Item = (u64, bool)> + '_ {
        let token = if end == End::Read { self.read_token } else { self.write_token };
        [(self.header, true), (token, false)].into_iter().chain(self.ring.iter().map(|&f| (f, true)))
    }

    /// Maps `end` of this pipe into `env` (a descendant) at `va`: the explicit share.
    pub fn attach(&self, env: EnvId, va: u64, end: End) -> Result<(), Error> {
        for (i, (pa, writable)) in self.pages(end).enumerate() {
            let at = va + i as u64 * PAGE;
            vm::ensure_tables(env, at)?;
            let pte = Pte::user_page(pa, if writable { RW } else { RO }).0 | SHARED;
            sys::table_set(env, at, 3, pte)?;
        }
        Ok(())
    }

    /// Frees the frames that nothing maps any more (the owner's, after its readers and
    /// writers are gone; teardown frees them anyway when the owner exits).
    pub fn free(&self) {
        let me = vm::me();
        for pa in [self.header, self.read_token, self.write_token].into_iter().chain(self.ring) {
            if pa != 0 {
                let _ = sys::frame_free(me, pa);
            }
        }
    }
}

/// How many environments map frame `pa` (0 if it is not a frame).
fn holders(pa: u64) -> u16 {
    vm::frame_maps(pa)
}

/// One end of a pipe mapped at `va` in this space.
#[derive(Clone, Copy)]
pub struct Mapped {
    pub va: u64,
}

impl Mapped {
    fn header(&self) -> &Header {
        // SAFETY: an end's first page is the pipe's header, mapped read-write (the owner
        // wrote it before sharing it); `Header` is plain data and atomics, page-aligned.
        unsafe { &*(self.va as *const Header) }
    }

    fn ring(&self) -> *mut u8 {
        (self.va + 2 * PAGE) as *mut u8
    }

    /// Gives the other end a turn: `YieldTo` its last holder (`peer`), or to anyone. Once
    /// this wait has lasted [`SPIN_US`] (`since`: when it began, 0 before) and the peer is
    /// blocked, waiting for something slow (a key, another program), or still unknown (it
    /// has not used the pipe yet), it sleeps until the next tick instead (`NetWait`), so
    /// that a pipe end does not keep a core busy.
    fn wait_for(&self, peer: &AtomicU32, since: &mut u64) {
        let id = EnvId(peer.load(Ordering::Relaxed));
        let now = sys::now();
        if *since == 0 {
            *since = now;
        }
        let long = now - *since > vm::kinfo().counter_hz * SPIN_US / 1_000_000;
        let blocked = || vm::env_info(id).is_some_and(|e| e.id == id.0 && e.state == env_state::BLOCKED);
        if long && (id.0 == 0 || blocked()) {
            let _ = sys::net_wait();
        } else if id.0 == 0 || sys::yield_to(id).is_err() {
            sys::yield_now();
        }
    }

    /// Reads at least one byte, waiting while the ring is empty and a writer is left;
    /// 0 is end of file.
    pub fn read(&self, buf: &mut [u8]) -> usize {
        let h = self.header();
        h.reader.store(vm::me().0, Ordering::Relaxed);
        let mut since = 0;
        loop {
            // SAFETY: the ring is RING_BYTES bytes mapped read-write after the header.
            let n = unsafe { take(h, self.ring(), RING_BYTES, buf) };
            if n > 0 || buf.is_empty() {
                return n;
            }
            if holders(h.write_token) == 0 {
                // Written just before the last writer left?
                // SAFETY: as above.
                return unsafe { take(h, self.ring(), RING_BYTES, buf) };
            }
            self.wait_for(&h.writer, &mut since);
        }
    }

    /// Reads what is there (up to `buf`'s length), without waiting: 0 if the ring is empty.
    pub fn try_read(&self, buf: &mut [u8]) -> usize {
        // SAFETY: the ring is RING_BYTES bytes mapped read-write after the header.
        unsafe { take(self.header(), self.ring(), RING_BYTES, buf) }
    }

    /// Writes what fits of `data` without waiting, and says how much; [`Broken`] once no
    /// reader is left.
    pub fn offer(&self, data: &[u8]) -> Result<usize, Broken> {
        let h = self.header();
        if holders(h.read_token) == 0 {
            return Err(Broken);
        }
        // SAFETY: the ring is RING_BYTES bytes mapped read-write after the header.
        Ok(unsafe { put(h, self.ring(), RING_BYTES, data) })
    }

    /// Writes all of `data`, waiting while the ring is full; [`Broken`] once no reader is
    /// left.
    pub fn write(&self, mut data: &[u8]) -> Result<(), Broken> {
        let h = self.header();
        h.writer.store(vm::me().0, Ordering::Relaxed);
        let mut since = 0;
        while !data.is_empty() {
            if holders(h.read_token) == 0 {
                return Err(Broken);
            }
            // SAFETY: the ring is RING_BYTES bytes mapped read-write after the header.
            let n = unsafe { put(h, self.ring(), RING_BYTES, data) };
            data = &data[n..];
            if n == 0 {
                self.wait_for(&h.reader, &mut since);
            }
        }
        Ok(())
    }
}

/// Copies what fits of `data` into the ring; returns how much.
///
/// # Safety
/// `ring` points at `size` writable bytes that only this pipe's writer writes.
pub unsafe fn put(h: &Header, ring: *mut u8, size: u64, data: &[u8]) -> usize {
    let w = h.written.load(Ordering::Relaxed);
    let r = h.read.load(Ordering::Acquire);
    let n = (size - (w - r)).min(data.len() as u64) as usize;
    for (i, &b) in data[..n].iter().enumerate() {
        // SAFETY: the index is below `size` (the caller's bound), and the bytes between
        // `read` and `written` + n are the writer's until it publishes them below.
        unsafe { ring.wrapping_add(((w + i as u64) % size) as usize).write_volatile(b) };
    }
    h.written.store(w + n as u64, Ordering::Release);
    n
}

/// Copies what there is (up to `buf`'s length) out of the ring; returns how much.
///
/// # Safety
/// `ring` points at `size` readable bytes that this pipe's writer fills.
pub unsafe fn take(h: &Header, ring: *const u8, size: u64, buf: &mut [u8]) -> usize {
    let r = h.read.load(Ordering::Relaxed);
    let w = h.written.load(Ordering::Acquire);
    let n = (w - r).min(buf.len() as u64) as usize;
    for (i, b) in buf[..n].iter_mut().enumerate() {
        // SAFETY: the index is below `size`, and the writer published these bytes before
        // it advanced `written` (acquired above); it does not touch them until `read`
        // moves past them below.
        *b = unsafe { ring.wrapping_add(((r + i as u64) % size) as usize).read_volatile() };
    }
    h.read.store(r + n as u64, Ordering::Release);
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header() -> Header {
        Header {
            written: AtomicU64::new(0),
            read: AtomicU64::new(0),
            read_token: 0,
            write_token: 0,
            reader: AtomicU32::new(0),
            writer: AtomicU32::new(0),
        }
    }

    #[test]
    fn a_full_ring_takes_nothing_more_until_it_is_read() {
        let h = header();
        let mut ring = [0u8; 8];
        // SAFETY: the ring is 8 bytes of this test's own.
        assert_eq!(unsafe { put(&h, ring.as_mut_ptr(), 8, b"0123456789") }, 8);
        // SAFETY: as above.
        assert_eq!(unsafe { put(&h, ring.as_mut_ptr(), 8, b"x") }, 0);
        let mut out = [0u8; 3];
        // SAFETY: as above.
        assert_eq!(unsafe { take(&h, ring.as_ptr(), 8, &mut out) }, 3);
        assert_eq!(&out, b"012");
        // SAFETY: as above.
        assert_eq!(unsafe { put(&h, ring.as_mut_ptr(), 8, b"89a") }, 3);
    }

    #[test]
    fn bytes_come_out_in_order_across_the_wrap() {
        let h = header();
        let mut ring = [0u8; 5];
        let input: Vec<u8> = (0..200u8).collect();
        let (mut sent, mut got) = (0, Vec::new());
        while got.len() < input.len() {
            // SAFETY: the ring is 5 bytes of this test's own.
            sent += unsafe { put(&h, ring.as_mut_ptr(), 5, &input[sent..(sent + 3).min(input.len())]) };
            let mut out = [0u8; 2];
            // SAFETY: as above.
            let n = unsafe { take(&h, ring.as_ptr(), 5, &mut out) };
            got.extend_from_slice(&out[..n]);
        }
        assert_eq!(got, input);
    }

    #[test]
    fn an_empty_ring_gives_nothing() {
        let h = header();
        let ring = [0u8; 4];
        let mut out = [0u8; 4];
        // SAFETY: the ring is 4 bytes of this test's own.
        assert_eq!(unsafe { take(&h, ring.as_ptr(), 4, &mut out) }, 0);
    }
}
