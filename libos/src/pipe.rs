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
//! reader gets [`Broken`]. A full ring makes the writer wait, an empty one the reader: it
//! yields (to the other end, when it knows it) for [`SPIN_US`], then sleeps in `NetWait`
//! until the other end moves its index and wakes it with a `YieldTo` (or the next tick).
//!
//! The sharing rule (`docs/memory-model.md`) decides who may map a pipe: the owner and
//! those of its descendants it (or a descendant holding an end) shared the frames with.
//! Programs outside the owner's subtree — another job's — are refused by the kernel.

use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use exo_abi::pte::Pte;
use exo_abi::{EnvId, Error};

use crate::sys;
use crate::vm::{self, PAGE, RO, RW, SHARED};

/// Data pages in a pipe's ring.
pub const RING_PAGES: usize = 8;
/// The ring's size in bytes.
pub const RING_BYTES: u64 = RING_PAGES as u64 * PAGE;
/// Pages a pipe end takes in an address space: header, token, ring.
pub const END_PAGES: u64 = 2 + RING_PAGES as u64;
/// How long (µs) an end waits by yielding before it sleeps until the other end wakes it.
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
    /// 1 while the reader (the writer) sleeps, or is about to, until `written` (`read`)
    /// moves: the end that moves it wakes the sleeper (`Mapped::wake`).
    pub reader_asleep: AtomicU32,
    pub writer_asleep: AtomicU32,
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

    /// Waits for the other end to move `written` (a reader, `end` Read) or `read` (a
    /// writer), which this end last saw at `seen`: it yields, to the other end when it
    /// knows it (`YieldTo`: on one core, a direct switch), else to anyone. Once the wait has
    /// lasted [`SPIN_US`] (`began`: when it did, 0 before), it sleeps in `NetWait` instead,
    /// so that a pipe end does not keep a core busy while its peer waits for something
    /// slow (a key, the disk, another program). The kernel puts it to sleep only if the
    /// index still holds `seen`; and the other end, having moved it, sees the flag set
    /// first and wakes it (`wake`). So no wake is lost, and the next tick ends the sleep
    /// anyway (a peer that is killed, or calls `sys::exit` itself, wakes nobody; one that
    /// exits through `rt::exit` closes its ends, which wakes: `fd::close`).
    fn wait_for(&self, end: End, seen: u64, began: &mut u64) {
        let h = self.header();
        let (peer, asleep, index) = match end {
            End::Read => (&h.writer, &h.reader_asleep, &h.written),
            End::Write => (&h.reader, &h.writer_asleep, &h.read),
        };
        let now = sys::now();
        if *began == 0 {
            *began = now;
        }
        if now - *began > vm::kinfo().counter_hz * SPIN_US / 1_000_000 {
            asleep.store(1, Ordering::SeqCst);
            // The flag before the kernel's look at the index: the waker moves the index, then
            // reads the flag (both sequentially consistent).
            core::sync::atomic::fence(Ordering::SeqCst);
            let _ = sys::wait_on(index, seen);
            asleep.store(0, Ordering::Relaxed);
            return;
        }
        let id = EnvId(peer.load(Ordering::Relaxed));
        if id.0 == 0 || sys::yield_to(id).is_err() {
            sys::yield_now();
        }
    }

    /// The environment last seen at the other end (of a write end: the reader), if any.
    pub fn peer(&self, writing: bool) -> Option<EnvId> {
        let h = self.header();
        let id = if writing { &h.reader } else { &h.writer }.load(Ordering::Relaxed);
        (id != 0).then_some(EnvId(id))
    }

    /// After this end moved its index: wakes the other end if it sleeps waiting for that
    /// (`asleep`, `peer`; see `wait_for`).
    fn wake(asleep: &AtomicU32, peer: &AtomicU32) {
        if asleep.load(Ordering::SeqCst) != 0 && asleep.swap(0, Ordering::SeqCst) != 0 {
            let _ = sys::yield_to(EnvId(peer.load(Ordering::Relaxed)));
        }
    }

    /// Reads at least one byte, waiting while the ring is empty and a writer is left;
    /// 0 is end of file.
    pub fn read(&self, buf: &mut [u8]) -> usize {
        let h = self.header();
        h.reader.store(vm::me().0, Ordering::Relaxed);
        let mut began = 0;
        loop {
            let seen = h.written.load(Ordering::SeqCst);
            let n = self.try_read(buf);
            if n > 0 || buf.is_empty() {
                return n;
            }
            if holders(h.write_token) == 0 {
                return self.try_read(buf); // written just before the last writer left?
            }
            self.wait_for(End::Read, seen, &mut began);
        }
    }

    /// Reads what is there (up to `buf`'s length), without waiting: 0 if the ring is empty.
    pub fn try_read(&self, buf: &mut [u8]) -> usize {
        let h = self.header();
        // SAFETY: the ring is RING_BYTES bytes mapped read-write after the header.
        let n = unsafe { take(h, self.ring(), RING_BYTES, buf) };
        if n > 0 {
            Self::wake(&h.writer_asleep, &h.writer);
        }
        n
    }

    /// Writes what fits of `data` without waiting, and says how much; [`Broken`] once no
    /// reader is left.
    pub fn offer(&self, data: &[u8]) -> Result<usize, Broken> {
        let h = self.header();
        if holders(h.read_token) == 0 {
            return Err(Broken);
        }
        // SAFETY: the ring is RING_BYTES bytes mapped read-write after the header.
        let n = unsafe { put(h, self.ring(), RING_BYTES, data) };
        if n > 0 {
            Self::wake(&h.reader_asleep, &h.reader);
        }
        Ok(n)
    }

    /// Writes all of `data`, waiting while the ring is full; [`Broken`] once no reader is
    /// left.
    pub fn write(&self, mut data: &[u8]) -> Result<(), Broken> {
        let h = self.header();
        h.writer.store(vm::me().0, Ordering::Relaxed);
        let mut began = 0;
        while !data.is_empty() {
            let seen = h.read.load(Ordering::SeqCst);
            let n = self.offer(data)?;
            data = &data[n..];
            if n == 0 {
                self.wait_for(End::Write, seen, &mut began);
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
    // (Clamped: a reader that breaks the protocol cannot send a copy past the ring.)
    let n = (size - w.wrapping_sub(r).min(size)).min(data.len() as u64) as usize;
    if n == 0 {
        return 0;
    }
    let (at, first) = runs(size, w, n);
    let (a, b) = (&data[..first], &data[first..n]);
    // SAFETY: both runs lie inside the ring (`runs`); its bytes from `written` on, up to
    // `read` + `size`, are the writer's until it publishes them below.
    unsafe { core::ptr::copy_nonoverlapping(a.as_ptr(), ring.wrapping_add(at), a.len()) };
    if !b.is_empty() {
        // SAFETY: as above, from the ring's start.
        unsafe { core::ptr::copy_nonoverlapping(b.as_ptr(), ring, b.len()) };
    }
    h.written.store(w + n as u64, Ordering::SeqCst); // (release, and before `wake`'s look)
    n
}

/// Copies what there is (up to `buf`'s length) out of the ring; returns how much.
///
/// # Safety
/// `ring` points at `size` readable bytes that this pipe's writer fills.
pub unsafe fn take(h: &Header, ring: *const u8, size: u64, buf: &mut [u8]) -> usize {
    let r = h.read.load(Ordering::Relaxed);
    let w = h.written.load(Ordering::Acquire);
    let n = w.wrapping_sub(r).min(size).min(buf.len() as u64) as usize;
    if n == 0 {
        return 0;
    }
    let (at, first) = runs(size, r, n);
    let (a, b) = buf[..n].split_at_mut(first);
    // SAFETY: both runs lie inside the ring (`runs`); the writer published these bytes
    // before it advanced `written` (acquired above), and does not touch them until `read`
    // moves past them below. A writer that breaks that rule changes only which bytes come
    // out: the copy acts on none of them.
    unsafe { core::ptr::copy_nonoverlapping(ring.wrapping_add(at), a.as_mut_ptr(), a.len()) };
    if !b.is_empty() {
        // SAFETY: as above, from the ring's start.
        unsafe { core::ptr::copy_nonoverlapping(ring, b.as_mut_ptr(), b.len()) };
    }
    h.read.store(r + n as u64, Ordering::SeqCst); // (release, and before `wake`'s look)
    n
}

/// Where `n` bytes (at most `size`) from stream offset `from` lie in a ring of `size`: the
/// first run's offset in the ring and its length; the rest, if any, is at the ring's start.
fn runs(size: u64, from: u64, n: usize) -> (usize, usize) {
    let at = (from % size) as usize;
    (at, n.min(size as usize - at))
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
            reader_asleep: AtomicU32::new(0),
            writer_asleep: AtomicU32::new(0),
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
    fn indices_a_peer_set_wrong_keep_every_copy_inside_the_ring() {
        let h = header();
        // Guard bytes on both sides of an 8-byte ring.
        let mut mem = [0xeeu8; 24];
        let ring = mem[8..].as_mut_ptr();
        for (w, r) in [(3, 10), (100, 0), (u64::MAX, 1), (5, 5 + 8 + 3)] {
            h.written.store(w, Ordering::Relaxed);
            h.read.store(r, Ordering::Relaxed);
            // SAFETY: the ring is 8 bytes of this test's own, inside `mem`.
            let put_n = unsafe { put(&h, ring, 8, &[1; 64]) };
            h.written.store(w, Ordering::Relaxed);
            let mut out = [0u8; 64];
            // SAFETY: as above.
            let took = unsafe { take(&h, ring, 8, &mut out) };
            assert!(put_n <= 8 && took <= 8, "({w}, {r}): put {put_n}, took {took}");
        }
        assert!(mem[..8].iter().chain(&mem[16..]).all(|&b| b == 0xee), "a copy left the ring");
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
