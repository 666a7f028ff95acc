//! The program's disk block cache: recent small reads of the disk, kept in a `reclaim`
//! cache region so that the kernel can have them back.
//!
//! [`SysSectors`](super::disk::SysSectors) reads through it: a read of at most
//! [`MAX_CACHED`] bytes (a page: a file system's block, an inode, one FAT sector) is kept
//! in a page of its own, found again by its first sector, and a later read of the same
//! sectors (or fewer) is a copy from it. A miss reads exactly what was asked, into the
//! page: nothing is read ahead, so a cold read costs no more transfer than without the
//! cache. Larger reads go straight to the disk, and so do small ones in a sequential scan
//! ([`STREAK`]). Every write through `SysSectors` forgets the reads it overlaps, so the
//! cache never holds what this program overwrote; a
//! [`Partition`](super::disk::Partition) being opened (a mount) forgets everything, since
//! another program may have written the disk meanwhile.
//!
//! Reads are placed by a hash of their first sector onto [`PAGES`] pages, one read per
//! page (a later read that hashes there replaces it). The pages are mapped on first use and marked droppable (`vm::DROPPABLE`): on `REVOKE` the libOS gives
//! them back before anything else, and a forced repossession takes them before any other
//! mapped page. A page that went is simply a miss, found without walking the page
//! table: reading from a page that is gone faults it back in (the region is lazy) as a
//! zero page, which shows as a new cache fault ([`reclaim::cache_faults`]), so a copy is
//! trusted only if the count did not move during it, and otherwise the page is forgotten
//! and the read done from the disk. Copies run under [`reclaim::pinned`], so the libOS's own
//! handler gives nothing back meanwhile; the kernel's forced repossession is caught the
//! same way.
//!
//! The state is in `.private`: a forked child starts with an empty cache of its own. If no
//! cache region can be had, reads go to the disk as before.

extern crate alloc;

use alloc::boxed::Box;
use exo_block::IoError;

use crate::private::Private;
use crate::reclaim::{self, CacheRegion};

/// Pages (one read of up to 4 KiB each) the cache holds at most: 256 KiB.
pub const PAGES: u64 = 64;
/// Reads of up to this many bytes (a page) go through the cache; larger ones straight to
/// the disk.
pub const MAX_CACHED: usize = 4096;
/// Reads in a row, each starting where the last ended or at most [`GAP`] sectors further
/// (a log's summaries sit between a file's blocks), after which small reads are taken for a
/// sequential scan and go straight to the disk (a scan would only churn the cache and pay a
/// copy per block), until one starts elsewhere. So the first 64 KiB of a file read in
/// order are cached, and the rest of a longer scan is not.
pub const STREAK: u64 = 16;
/// Sectors a read may skip and still count as in order.
pub const GAP: u64 = 64;
/// The cached path's own failure: a page was taken from under a copy.
const TAKEN: i32 = -2;

/// What the cache did, since the program started.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Reads served from the cache.
    pub hits: u64,
    /// Reads made from the disk into the cache.
    pub misses: u64,
    /// Reads that went straight to the disk (too large, or no cache).
    pub bypassed: u64,
}

struct State {
    /// Start of the cache region; 0 before the first read.
    start: u64,
    /// No cache region could be had: read straight from the disk.
    off: bool,
    /// The first sector + 1 of the read each page holds (0: none), and its length in sectors.
    tags: [u64; PAGES as usize],
    lens: [u64; PAGES as usize],
    /// Where the last read ended, and how many reads in a row began there (or a block on).
    prev_end: u64,
    streak: u64,
    /// Every sector a page has held since the last `clear` lies in `lo..hi`: a write
    /// outside it (a log's head, file data going to new places) forgets nothing and
    /// skips the look at every page.
    lo: u64,
    hi: u64,
    stats: Stats,
}

#[unsafe(link_section = ".private")]
static STATE: Private<State> = Private::new(State {
    start: 0,
    off: false,
    tags: [0; PAGES as usize],
    lens: [0; PAGES as usize],
    prev_end: 0,
    streak: 0,
    lo: u64::MAX,
    hi: 0,
    stats: Stats { hits: 0, misses: 0, bypassed: 0 },
});

fn state() -> &'static mut State {
    // SAFETY: one thread of control; the upcall handler never touches this state (it only
    // unmaps the region's pages, which is why every use checks `resident` while pinned).
    // No reference outlives the short calls below.
    unsafe { &mut *STATE.get() }
}

/// What the cache did so far.
pub fn stats() -> Stats {
    state().stats
}

/// Forgets everything (what a mount does: another program may have written the disk).
pub fn clear() {
    let s = state();
    s.tags = [0; PAGES as usize];
    (s.lo, s.hi) = (u64::MAX, 0);
}

/// Forgets what sectors `sector .. sector + count` overlap (they are being written).
pub fn forget(sector: u64, count: u64) {
    let s = state();
    if sector >= s.hi || sector + count <= s.lo {
        return;
    }
    for (t, &n) in s.tags.iter_mut().zip(s.lens.iter()) {
        if *t != 0 && *t - 1 < sector + count && sector < *t - 1 + n {
            *t = 0;
        }
    }
}

#[inline]
fn region() -> Option<CacheRegion> {
    let s = state();
    if s.start == 0 && !s.off {
        open_region();
    }
    let s = state();
    (s.start != 0).then_some(CacheRegion { start: s.start, pages: PAGES })
}

/// Takes the cache region at the first read (or notes that none can be had).
#[inline(never)]
fn open_region() {
    let s = state();
    match reclaim::add_cache_region(PAGES) {
        Ok(r) => s.start = r.start,
        Err(_) => s.off = true,
    }
}

/// The page a read starting at `sector` lives in (a multiplicative hash, so that reads a
/// few sectors apart, as a file's blocks are, spread over the pages).
fn slot(sector: u64) -> u64 {
    sector.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> (64 - PAGES.trailing_zeros())
}

/// Reads `buf.len() / 512` sectors at disk sector `sector`, through the cache when the read
/// is small; `raw` reads from the disk (into a 512-byte-aligned buffer). A hit is a few
/// tests and the copy; a miss calls `fill`, out of line.
pub fn read(
    sector: u64,
    buf: &mut [u8],
    mut raw: impl FnMut(u64, &mut [u8]) -> Result<(), IoError>,
) -> Result<(), IoError> {
    let r = if buf.len() <= MAX_CACHED { region() } else { None };
    let Some(r) = r else {
        state().stats.bypassed += 1;
        return aligned(sector, buf, raw);
    };
    let n = (buf.len() / 512) as u64;
    let st = state();
    // At `prev_end` or at most `GAP` sectors past it (one unsigned compare: below it wraps).
    let in_order = sector.wrapping_sub(st.prev_end) <= GAP;
    st.streak = if in_order { st.streak + 1 } else { 0 };
    st.prev_end = sector + n;
    if st.streak >= STREAK {
        st.stats.bypassed += 1;
        return aligned(sector, buf, raw);
    }
    let i = slot(sector);
    let page = r.page(i);
    let cached = reclaim::pinned(|| {
        let st = state();
        // No `resident` check (a page-table walk): a page given back since it was filled
        // faults when copied from, which the fault count below catches.
        if st.tags[i as usize] != sector + 1 || st.lens[i as usize] < n {
            fill(st, i as usize, sector, page, buf.len(), &mut raw)?;
        } else {
            st.stats.hits += 1;
        }
        let faults = reclaim::cache_faults();
        // SAFETY: the page is mapped (it was filled) and pinned: nothing the program does
        // unmaps it before this shared slice ends, and nothing writes it meanwhile (a page
        // the kernel takes by force is caught by the fault count).
        let src = unsafe { core::slice::from_raw_parts(page as *const u8, buf.len()) };
        crate::mem::copy(buf, src);
        if reclaim::cache_faults() != faults {
            // The page was gone (given back, or taken by force during the copy): it came
            // back as zeros.
            st.tags[i as usize] = 0;
            return Err(IoError { code: TAKEN });
        }
        Ok(())
    });
    // A read the kernel refused into the page, or a page that was gone: read what was
    // asked, uncached.
    cached.or_else(|_: IoError| {
        state().stats.bypassed += 1;
        aligned(sector, buf, raw)
    })
}

/// A miss of [`read`] (called pinned, with the cache's state): reads `len` bytes at
/// `sector` into cache page `page`, slot `i`, and records it there.
#[inline(never)]
fn fill(
    st: &mut State,
    i: usize,
    sector: u64,
    page: u64,
    len: usize,
    raw: &mut impl FnMut(u64, &mut [u8]) -> Result<(), IoError>,
) -> Result<(), IoError> {
    let n = (len / 512) as u64;
    st.tags[i] = 0;
    // SAFETY: the page lies in this program's cache region, which nothing else uses;
    // `sector_read` faults it in (the region is lazy) before the kernel fills it, and it
    // stays mapped while pinned (the caller pins). The slice ends here.
    let dst = unsafe { core::slice::from_raw_parts_mut(page as *mut u8, len) };
    raw(sector, dst)?;
    st.tags[i] = sector + 1;
    st.lens[i] = n;
    st.lo = st.lo.min(sector);
    st.hi = st.hi.max(sector + n);
    st.stats.misses += 1;
    Ok(())
}

#[repr(C, align(512))]
struct Aligned([u8; MAX_CACHED]);

/// The bounce buffer of [`aligned`] (in `.private`: a forked child makes its own).
#[unsafe(link_section = ".private")]
static BOUNCE: Private<Option<Box<Aligned>>> = Private::new(None);

/// `raw(sector, buf)`, through an aligned buffer on the stack if `buf` is not aligned to
/// 512 bytes (the device takes small reads in any buffer: `SysSectors::reads_any_buffer`).
#[inline(never)]
fn aligned(
    sector: u64,
    buf: &mut [u8],
    mut raw: impl FnMut(u64, &mut [u8]) -> Result<(), IoError>,
) -> Result<(), IoError> {
    if (buf.as_ptr() as usize).is_multiple_of(512) || buf.len() > MAX_CACHED {
        return raw(sector, buf);
    }
    // One bounce buffer, made on first use (zeroing one on the stack at every read cost
    // as much as the copy).
    // SAFETY: one thread of control, and the upcall handler never reads from the disk;
    // the reference ends with this call.
    let slot = unsafe { &mut *BOUNCE.get() };
    let tmp = &mut slot.get_or_insert_with(|| Box::new(Aligned([0; MAX_CACHED]))).0[..buf.len()];
    raw(sector, tmp)?;
    crate::mem::copy(buf, tmp);
    Ok(())
}
