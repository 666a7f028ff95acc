//! The block-device contract the file system runs on, plus an in-memory device and a counter.

use crate::error::IoError;
use alloc::vec;
use alloc::vec::Vec;

/// The seam itself lives in `exo-block`, shared with the libOS runtime and the FAT libOS;
/// it is re-exported here so that this crate reads as before.
pub use exo_block::{check_range, BlockDevice, SECTOR};

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
