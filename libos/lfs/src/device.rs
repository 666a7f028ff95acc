//! The block-device contract the file system runs on, plus an in-memory device and a counter.

use crate::error::IoError;
use alloc::vec;
use alloc::vec::Vec;

/// Bytes per sector. Every transfer is a whole number of sectors.
pub const SECTOR: usize = 512;

/// A disk (or partition) of 512-byte sectors numbered from 0: the one block-device seam of
/// EL0. The LFS runs on it, and so does the libOS (`exo_libos::fs::disk`: the sector system
/// calls, partitions, FAT). The kernel's drivers implement `exo_bsp`'s own `BlockDevice`,
/// which the libOS cannot name (it never depends on the bsp).
///
/// Durability contract the file system relies on (and nothing more):
/// - a `write` that returned, followed by a `flush` that returned, is durable;
/// - at power loss, a write not yet followed by a completed flush may have reached the medium
///   in any subset of its sectors, each sector wholly old or wholly new;
/// - writes not separated by a flush may reach the medium in any order.
///
/// On exo each call is one system call, so the file system issues few, large transfers.
pub trait BlockDevice {
    /// Reads `buf.len() / 512` sectors starting at `sector`.
    fn read(&mut self, sector: u64, buf: &mut [u8]) -> Result<(), IoError>;
    /// Writes `buf.len() / 512` sectors starting at `sector`.
    fn write(&mut self, sector: u64, buf: &[u8]) -> Result<(), IoError>;
    /// Returns once every completed write is durable.
    fn flush(&mut self) -> Result<(), IoError>;
    /// The device size in sectors.
    fn sectors(&self) -> u64;
}

impl<D: BlockDevice + ?Sized> BlockDevice for &mut D {
    fn read(&mut self, sector: u64, buf: &mut [u8]) -> Result<(), IoError> {
        (**self).read(sector, buf)
    }
    fn write(&mut self, sector: u64, buf: &[u8]) -> Result<(), IoError> {
        (**self).write(sector, buf)
    }
    fn flush(&mut self) -> Result<(), IoError> {
        (**self).flush()
    }
    fn sectors(&self) -> u64 {
        (**self).sectors()
    }
}

/// Checks a transfer against a device of `sectors` sectors.
pub fn check_range(sector: u64, len: usize, sectors: u64) -> Result<(), IoError> {
    let n = (len / SECTOR) as u64;
    if !len.is_multiple_of(SECTOR) || sector.checked_add(n).is_none_or(|end| end > sectors) {
        return Err(IoError { code: -22 });
    }
    Ok(())
}

/// A disk held in memory (a RAM disk, or a host test's image): sector `n` is bytes
/// `n * 512 ..`.
impl BlockDevice for Vec<u8> {
    fn read(&mut self, sector: u64, buf: &mut [u8]) -> Result<(), IoError> {
        check_range(sector, buf.len(), self.sectors())?;
        let at = sector as usize * SECTOR;
        buf.copy_from_slice(&self[at..at + buf.len()]);
        Ok(())
    }
    fn write(&mut self, sector: u64, buf: &[u8]) -> Result<(), IoError> {
        check_range(sector, buf.len(), self.sectors())?;
        let at = sector as usize * SECTOR;
        self[at..at + buf.len()].copy_from_slice(buf);
        Ok(())
    }
    fn flush(&mut self) -> Result<(), IoError> {
        Ok(())
    }
    fn sectors(&self) -> u64 {
        (self.len() / SECTOR) as u64
    }
}

/// A device held in memory: the test suite's disk, and a RAM disk for a libOS.
#[derive(Clone)]
pub struct MemDevice {
    pub data: Vec<u8>,
}

impl MemDevice {
    pub fn new(sectors: u64) -> Self {
        MemDevice { data: vec![0; sectors as usize * SECTOR] }
    }
}

impl BlockDevice for MemDevice {
    fn read(&mut self, sector: u64, buf: &mut [u8]) -> Result<(), IoError> {
        self.data.read(sector, buf)
    }
    fn write(&mut self, sector: u64, buf: &[u8]) -> Result<(), IoError> {
        self.data.write(sector, buf)
    }
    fn flush(&mut self) -> Result<(), IoError> {
        Ok(())
    }
    fn sectors(&self) -> u64 {
        self.data.sectors()
    }
}

/// Transfer counts, for benchmarks and the host tool.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IoCounts {
    pub reads: u64,
    pub writes: u64,
    pub flushes: u64,
    pub sectors_read: u64,
    pub sectors_written: u64,
}

/// Wraps a device and counts its calls and sectors.
pub struct Counting<D> {
    pub inner: D,
    pub counts: IoCounts,
}

impl<D: BlockDevice> Counting<D> {
    pub fn new(inner: D) -> Self {
        Counting { inner, counts: IoCounts::default() }
    }
}

impl<D: BlockDevice> BlockDevice for Counting<D> {
    fn read(&mut self, sector: u64, buf: &mut [u8]) -> Result<(), IoError> {
        self.counts.reads += 1;
        self.counts.sectors_read += (buf.len() / SECTOR) as u64;
        self.inner.read(sector, buf)
    }
    fn write(&mut self, sector: u64, buf: &[u8]) -> Result<(), IoError> {
        self.counts.writes += 1;
        self.counts.sectors_written += (buf.len() / SECTOR) as u64;
        self.inner.write(sector, buf)
    }
    fn flush(&mut self) -> Result<(), IoError> {
        self.counts.flushes += 1;
        self.inner.flush()
    }
    fn sectors(&self) -> u64 {
        self.inner.sectors()
    }
}
