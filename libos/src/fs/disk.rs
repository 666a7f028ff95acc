//! A partition as a block device: sectors 0.. of one extent, over any [`BlockDevice`].
//!
//! The kernel moves sectors straight into the caller's frames, so a transfer needs a
//! 512-byte-aligned buffer and moves at most [`MAX_TRANSFER`] sectors. [`Partition`] takes
//! any buffer: aligned ones go to the device directly in batches of up to 2048 sectors, the
//! others through an aligned bounce buffer. The block-device trait is `exo-block`'s
//! ([`BlockDevice`], re-exported here), shared with the file-system crates, so the seam is
//! spelled once; a partition implements it, and both file systems run on it unchanged.

extern crate alloc;

use alloc::vec;
use alloc::vec::Vec;
use core::cell::RefCell;

/// Bytes per sector.
pub const SECTOR: usize = 512;
/// Most sectors one device call moves (`SectorRead`/`SectorWrite` accept 1 to 2048).
pub const MAX_TRANSFER: usize = exo_abi::SECTOR_MAX_COUNT as usize;
/// Sectors in the bounce buffer used for unaligned buffers (64 KiB).
pub const BOUNCE_SECTORS: usize = 128;

/// The code a [`Partition`] reports for a transfer outside it or not a whole sector count.
pub const OUT_OF_RANGE: i32 = -1;

/// The block-device seam the runtime and the file systems share (crate `exo-block`): `read`,
/// `write` and `flush` of whole 512-byte sectors numbered from 0, and `sectors`. [`SysSectors`] is the whole disk
/// through the system calls, [`Partition`] an extent of any device (itself a device), a
/// `Vec<u8>` a disk in memory.
pub use exo_block::BlockDevice;
/// A failed transfer: the kernel's error number (`exo_abi::Error`), or [`OUT_OF_RANGE`].
pub use exo_block::IoError;

/// A transfer the kernel refused for want of a write binding is [`Error::ReadOnly`](super::Error::ReadOnly);
/// every other failure is [`Error::Io`](super::Error::Io).
impl From<IoError> for super::Error {
    fn from(e: IoError) -> Self {
        if e.code == exo_abi::Error::Denied as i32 {
            super::Error::ReadOnly
        } else {
            super::Error::Io
        }
    }
}

/// The disk through exo's system calls (`sys::sector_*`); the kernel checks the caller's
/// sector bindings on every call.
#[derive(Clone, Copy, Debug, Default)]
pub struct SysSectors;

impl BlockDevice for SysSectors {
    /// Small reads go through the program's block cache ([`bcache`](super::bcache)).
    fn read(&mut self, sector: u64, buf: &mut [u8]) -> Result<(), IoError> {
        let raw = |sector, buf: &mut [u8]| {
            crate::sys::sector_read(sector, buf).map(drop).map_err(|e| IoError { code: e as i32 })
        };
        #[cfg(target_os = "none")]
        return super::bcache::read(sector, buf, raw);
        #[cfg(not(target_os = "none"))]
        raw(sector, buf)
    }
    fn write(&mut self, sector: u64, buf: &[u8]) -> Result<(), IoError> {
        #[cfg(target_os = "none")]
        super::bcache::forget(sector, (buf.len() / SECTOR) as u64);
        crate::sys::sector_write(sector, buf).map(drop).map_err(|e| IoError { code: e as i32 })
    }
    fn flush(&mut self) -> Result<(), IoError> {
        crate::sys::sector_flush().map_err(|e| IoError { code: e as i32 })
    }
    /// Small reads are copied out of the block cache, so they take any buffer.
    fn reads_any_buffer(&self, len: usize) -> bool {
        cfg!(target_os = "none") && len <= super::bcache::MAX_CACHED
    }
    /// The disk's size as the kernel found it at boot (0: no disk; on the host, always 0).
    fn sectors(&self) -> u64 {
        #[cfg(target_os = "none")]
        return crate::vm::kinfo().disk_sectors;
        #[cfg(not(target_os = "none"))]
        0
    }
}

/// Transfer counts, for tests and benchmarks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IoStats {
    /// Device calls made.
    pub reads: u64,
    pub writes: u64,
    pub flushes: u64,
    pub sectors_read: u64,
    pub sectors_written: u64,
    /// Device calls that went through the bounce buffer.
    pub bounced: u64,
}

/// One aligned sector of the bounce buffer.
#[derive(Clone, Copy)]
#[repr(C, align(512))]
struct AlignedSector([u8; SECTOR]);

struct Inner<S> {
    io: S,
    bounce: Vec<AlignedSector>,
    stats: IoStats,
}

/// Sectors `start .. start + count` of a [`BlockDevice`], seen as sectors `0 .. count`.
///
/// It only ever passes the device buffers that are 512-byte aligned and hold 1 to
/// [`MAX_TRANSFER`] whole sectors, as the sector system calls want.
///
/// Methods take `&self` (the state sits in a `RefCell`) so that the FAT libOS can share one
/// partition between `embedded-sdmmc`'s `&self` device and its own reads; a libOS
/// environment is single-threaded.
pub struct Partition<S> {
    start: u64,
    count: u64,
    inner: RefCell<Inner<S>>,
}

impl<S: BlockDevice> Partition<S> {
    /// The extent `(start, count)` of `io`.
    /// Opening a partition (a mount) empties the program's block cache: another program
    /// may have written the disk since.
    pub fn new(io: S, start: u64, count: u64) -> Partition<S> {
        #[cfg(target_os = "none")]
        super::bcache::clear();
        let bounce = vec![AlignedSector([0; SECTOR]); BOUNCE_SECTORS];
        Partition { start, count, inner: RefCell::new(Inner { io, bounce, stats: IoStats::default() }) }
    }

    /// First sector of the extent on the underlying device.
    pub fn start(&self) -> u64 {
        self.start
    }

    /// Size in sectors.
    pub fn sectors(&self) -> u64 {
        self.count
    }

    pub fn stats(&self) -> IoStats {
        self.inner.borrow().stats
    }

    /// Gives the underlying device back.
    pub fn into_inner(self) -> S {
        self.inner.into_inner().io
    }

    /// Runs `f` on the underlying device.
    pub fn with_io<R>(&self, f: impl FnOnce(&mut S) -> R) -> R {
        f(&mut self.inner.borrow_mut().io)
    }

    #[inline]
    fn check(&self, sector: u64, len: usize) -> Result<u64, IoError> {
        let n = (len / SECTOR) as u64;
        if !len.is_multiple_of(SECTOR) || sector.checked_add(n).is_none_or(|end| end > self.count) {
            return Err(IoError { code: OUT_OF_RANGE });
        }
        Ok(self.start + sector)
    }

    /// Reads `buf.len() / 512` sectors at partition sector `sector`.
    #[inline]
    pub fn read(&self, sector: u64, buf: &mut [u8]) -> Result<(), IoError> {
        let abs = self.check(sector, buf.len())?;
        // The common read (a file system's block, say), inlined into the caller: one device
        // call, straight into `buf`. The rest (a long read, an empty one, a buffer that needs
        // the bounce buffer) takes `read_chunks`.
        {
            let inner = &mut *self.inner.borrow_mut();
            let len = buf.len();
            if len != 0
                && len <= MAX_TRANSFER * SECTOR
                && ((buf.as_ptr() as usize).is_multiple_of(SECTOR) || inner.io.reads_any_buffer(len))
            {
                inner.stats.reads += 1;
                inner.stats.sectors_read += (len / SECTOR) as u64;
                return inner.io.read(abs, buf);
            }
        }
        self.read_chunks(abs, buf)
    }

    /// [`Partition::read`] of a checked extent starting at device sector `abs`, in pieces.
    #[inline(never)]
    fn read_chunks(&self, abs: u64, buf: &mut [u8]) -> Result<(), IoError> {
        let inner = &mut *self.inner.borrow_mut();
        if (buf.as_ptr() as usize).is_multiple_of(SECTOR) || inner.io.reads_any_buffer(buf.len()) {
            for (i, chunk) in buf.chunks_mut(MAX_TRANSFER * SECTOR).enumerate() {
                inner.stats.reads += 1;
                inner.stats.sectors_read += (chunk.len() / SECTOR) as u64;
                inner.io.read(abs + (i * MAX_TRANSFER) as u64, chunk)?;
            }
            return Ok(());
        }
        for (i, chunk) in buf.chunks_mut(BOUNCE_SECTORS * SECTOR).enumerate() {
            inner.stats.reads += 1;
            inner.stats.bounced += 1;
            inner.stats.sectors_read += (chunk.len() / SECTOR) as u64;
            let b = &mut bytes_mut(&mut inner.bounce)[..chunk.len()];
            inner.io.read(abs + (i * BOUNCE_SECTORS) as u64, b)?;
            crate::mem::copy(chunk, b);
        }
        Ok(())
    }

    /// Writes `buf.len() / 512` sectors at partition sector `sector`.
    pub fn write(&self, sector: u64, buf: &[u8]) -> Result<(), IoError> {
        let abs = self.check(sector, buf.len())?;
        let inner = &mut *self.inner.borrow_mut();
        if (buf.as_ptr() as usize).is_multiple_of(SECTOR) {
            for (i, chunk) in buf.chunks(MAX_TRANSFER * SECTOR).enumerate() {
                inner.stats.writes += 1;
                inner.stats.sectors_written += (chunk.len() / SECTOR) as u64;
                inner.io.write(abs + (i * MAX_TRANSFER) as u64, chunk)?;
            }
            return Ok(());
        }
        for (i, chunk) in buf.chunks(BOUNCE_SECTORS * SECTOR).enumerate() {
            inner.stats.writes += 1;
            inner.stats.bounced += 1;
            inner.stats.sectors_written += (chunk.len() / SECTOR) as u64;
            let b = &mut bytes_mut(&mut inner.bounce)[..chunk.len()];
            crate::mem::copy(b, chunk);
            inner.io.write(abs + (i * BOUNCE_SECTORS) as u64, b)?;
        }
        Ok(())
    }

    /// Makes every completed write durable.
    pub fn flush(&self) -> Result<(), IoError> {
        let inner = &mut *self.inner.borrow_mut();
        inner.stats.flushes += 1;
        inner.io.flush()
    }
}

fn bytes(s: &[AlignedSector]) -> &[u8] {
    // SAFETY: `AlignedSector` is `repr(C)` around a `[u8; 512]` with size 512 (no padding);
    // `s.len()` of them are `s.len() * 512` initialised bytes, borrowed shared like `s`.
    unsafe { core::slice::from_raw_parts(s.as_ptr().cast::<u8>(), s.len() * SECTOR) }
}

fn bytes_mut(s: &mut [AlignedSector]) -> &mut [u8] {
    // SAFETY: `AlignedSector` is `repr(C)` around a `[u8; 512]` with size 512 (its alignment
    // equals its size, so there is no padding); `s.len()` of them are `s.len() * 512`
    // initialised, exclusively borrowed bytes.
    unsafe { core::slice::from_raw_parts_mut(s.as_mut_ptr().cast::<u8>(), s.len() * SECTOR) }
}

/// A zeroed byte buffer at a 512-byte-aligned address: transfers into it skip the bounce
/// buffer (what [`Vfs::copy`](super::Vfs::copy) uses).
pub struct SectorBuf {
    sectors: Vec<AlignedSector>,
    len: usize,
}

impl SectorBuf {
    /// A buffer of `len` bytes (storage rounded up to whole sectors).
    pub fn new(len: usize) -> SectorBuf {
        SectorBuf { sectors: vec![AlignedSector([0; SECTOR]); len.div_ceil(SECTOR)], len }
    }
}

impl core::ops::Deref for SectorBuf {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &bytes(&self.sectors)[..self.len]
    }
}

impl core::ops::DerefMut for SectorBuf {
    fn deref_mut(&mut self) -> &mut [u8] {
        &mut bytes_mut(&mut self.sectors)[..self.len]
    }
}

/// A partition is a device of its own, sectors `0..count`: the LFS mounts one directly.
impl<S: BlockDevice> BlockDevice for Partition<S> {
    #[inline]
    fn read(&mut self, sector: u64, buf: &mut [u8]) -> Result<(), IoError> {
        Partition::read(self, sector, buf)
    }
    fn write(&mut self, sector: u64, buf: &[u8]) -> Result<(), IoError> {
        Partition::write(self, sector, buf)
    }
    fn flush(&mut self) -> Result<(), IoError> {
        Partition::flush(self)
    }
    fn sectors(&self) -> u64 {
        self.count
    }
    fn reads_any_buffer(&self, len: usize) -> bool {
        self.inner.borrow().io.reads_any_buffer(len)
    }
}

/// The partitions the kernel read from the disk's MBR at boot (empty slots left out).
#[cfg(target_os = "none")]
pub fn partitions() -> impl Iterator<Item = exo_abi::Partition> {
    crate::vm::kinfo().partitions.into_iter().filter(|p| p.sectors != 0)
}

/// Partition `index` (0..=3 in the MBR) over the sector system calls. The kernel checks
/// the environment's bindings on each transfer; this only checks that the slot is used.
#[cfg(target_os = "none")]
pub fn open_partition(index: usize) -> Option<Partition<SysSectors>> {
    let p = crate::vm::kinfo().partitions.get(index).copied().filter(|p| p.sectors != 0)?;
    Some(Partition::new(SysSectors, p.start, p.sectors))
}
