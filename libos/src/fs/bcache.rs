//! The program's disk block cache: recently read 4 KiB blocks of the disk, kept in a
//! `reclaim` cache region so that the kernel can have them back.
//!
//! [`SysSectors`](super::disk::SysSectors) reads through it: a read of at most
//! [`MAX_CACHED`] bytes is served block by block from the cache, and a block not there (or
//! given back since) is read whole from the disk into its page first. Larger reads (the
//! sequential ones) go straight to the disk. Every write through `SysSectors` forgets the
//! blocks it touches, so the cache never holds what this program overwrote; a
//! [`Partition`](super::disk::Partition) being opened (a mount) forgets everything, since
//! another program may have written the disk meanwhile.
//!
//! Blocks are 8 sectors aligned on the disk (sector `8 g` .. `8 g + 8` is block `g`),
//! direct-mapped onto [`PAGES`] pages: block `g` lives in page `g % PAGES`. The pages are
//! mapped on first use and marked droppable (`vm::DROPPABLE`): on `REVOKE` the libOS gives
//! them back before anything else, and a forced repossession takes them before any other
//! mapped page. A page that went is simply a miss, found without walking the page
//! table: reading from a page that is gone faults it back in (the region is lazy) as a
//! zero page, which shows as a new cache fault ([`reclaim::cache_faults`]), so a copy is
//! trusted only if the count did not move during it, and otherwise the block is forgotten
//! and the read done from the disk. Copies run under [`reclaim::pinned`], so the libOS's own
//! handler gives nothing back meanwhile; the kernel's forced repossession is caught the
//! same way.
//!
//! The state is in `.private`: a forked child starts with an empty cache of its own. If no
//! cache region can be had, reads go to the disk as before.

use exo_block::IoError;

use crate::private::Private;
use crate::reclaim::{self, CacheRegion};

/// Pages (4 KiB blocks) the cache holds at most: 256 KiB.
pub const PAGES: u64 = 64;
/// Reads of up to this many bytes go through the cache; larger ones straight to the disk.
pub const MAX_CACHED: usize = 16 * 512;
/// Reads in a row, each starting where the last ended (or at most a block further), after
/// which small reads are taken for a sequential scan and go straight to the disk (a scan
/// would only churn the cache and pay a copy per block), until one starts elsewhere.
pub const STREAK: u64 = 32;
const BLOCK_SECTORS: u64 = 8;
const BLOCK: usize = 4096;
/// The cached path's own failure: a page was taken from under a copy.
const TAKEN: i32 = -2;

/// What the cache did, since the program started.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Blocks served from the cache.
    pub hits: u64,
    /// Blocks read from the disk into the cache.
    pub misses: u64,
    /// Reads that went straight to the disk (too large, or no cache).
    pub bypassed: u64,
}

struct State {
    /// Start of the cache region; 0 before the first read.
    start: u64,
    /// No cache region could be had: read straight from the disk.
    off: bool,
    /// Block number + 1 held by each page (0: none).
    tags: [u64; PAGES as usize],
    /// Where the last read ended, and how many reads in a row began there (or a block on).
    prev_end: u64,
    streak: u64,
    stats: Stats,
}

#[unsafe(link_section = ".private")]
static STATE: Private<State> = Private::new(State {
    start: 0,
    off: false,
    tags: [0; PAGES as usize],
    prev_end: 0,
    streak: 0,
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

/// Forgets every block (what a mount does: another program may have written the disk).
pub fn clear() {
    state().tags = [0; PAGES as usize];
}

/// Forgets the blocks that sectors `sector .. sector + count` touch (they are being written).
pub fn forget(sector: u64, count: u64) {
    let s = state();
    if count == 0 {
        return;
    }
    let (first, last) = (sector / BLOCK_SECTORS, (sector + count - 1) / BLOCK_SECTORS);
    for t in s.tags.iter_mut() {
        if *t != 0 && (first..=last).contains(&(*t - 1)) {
            *t = 0;
        }
    }
}

fn region() -> Option<CacheRegion> {
    let s = state();
    if s.start == 0 && !s.off {
        match reclaim::add_cache_region(PAGES) {
            Ok(r) => s.start = r.start,
            Err(_) => s.off = true,
        }
    }
    (s.start != 0).then_some(CacheRegion { start: s.start, pages: PAGES })
}

/// Reads `buf.len() / 512` sectors at disk sector `sector`, through the cache when the read
/// is small; `raw` reads from the disk (into a 512-byte-aligned buffer).
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
    let st = state();
    let in_order = sector >= st.prev_end && sector <= st.prev_end + BLOCK_SECTORS;
    st.streak = if in_order { st.streak + 1 } else { 0 };
    st.prev_end = sector + (buf.len() / 512) as u64;
    if st.streak >= STREAK {
        st.stats.bypassed += 1;
        return aligned(sector, buf, raw);
    }
    let cached = reclaim::pinned(|| {
        let mut at = 0;
        let mut s = sector;
        while at < buf.len() {
            let block = s / BLOCK_SECTORS;
            let slot = block % PAGES;
            let page = r.page(slot);
            // No `resident` check (a page-table walk): a page given back since it was
            // filled faults when copied from, which the fault count below catches.
            if state().tags[slot as usize] != block + 1 {
                state().tags[slot as usize] = 0;
                // SAFETY: the page lies in this program's cache region, which nothing else
                // uses; `sector_read` faults it in (the region is lazy) before the kernel
                // fills it, and it stays mapped while pinned. The slice ends here.
                let dst = unsafe { core::slice::from_raw_parts_mut(page as *mut u8, BLOCK) };
                raw(block * BLOCK_SECTORS, dst)?;
                state().tags[slot as usize] = block + 1;
                state().stats.misses += 1;
            } else {
                state().stats.hits += 1;
            }
            let faults = reclaim::cache_faults();
            let from = ((s % BLOCK_SECTORS) as usize) * 512;
            let len = (BLOCK - from).min(buf.len() - at);
            // SAFETY: the page is mapped (resident, or just filled) and pinned: nothing
            // unmaps it before this shared slice ends, and nothing writes it meanwhile.
            let src = unsafe { core::slice::from_raw_parts((page + from as u64) as *const u8, len) };
            buf[at..at + len].copy_from_slice(src);
            if reclaim::cache_faults() != faults {
                // The kernel took the page by force during the copy (it came back as zeros).
                state().tags[slot as usize] = 0;
                return Err(IoError { code: TAKEN });
            }
            at += len;
            s = (block + 1) * BLOCK_SECTORS;
        }
        Ok(())
    });
    // A block the program may not read whole (past the end of its binding or the disk), or
    // a page taken by force mid-copy: read what was asked, uncached.
    cached.or_else(|_: IoError| {
        state().stats.bypassed += 1;
        aligned(sector, buf, raw)
    })
}

#[repr(C, align(512))]
struct Aligned([u8; MAX_CACHED]);

/// `raw(sector, buf)`, through an aligned buffer on the stack if `buf` is not aligned to
/// 512 bytes (the device takes small reads in any buffer: `SysSectors::reads_any_buffer`).
fn aligned(
    sector: u64,
    buf: &mut [u8],
    mut raw: impl FnMut(u64, &mut [u8]) -> Result<(), IoError>,
) -> Result<(), IoError> {
    if (buf.as_ptr() as usize).is_multiple_of(512) || buf.len() > MAX_CACHED {
        return raw(sector, buf);
    }
    let mut tmp = Aligned([0; MAX_CACHED]);
    let tmp = &mut tmp.0[..buf.len()];
    raw(sector, tmp)?;
    buf.copy_from_slice(tmp);
    Ok(())
}
