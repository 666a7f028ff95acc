//! The FAT libOS: FAT16 and FAT32 volumes on the `embedded-sdmmc` crate (work in progress).

extern crate alloc;

use super::disk::{Partition, SectorIo};
use super::{Clock, DirEntry, Error, FileSystem, FsStats, Handle, Metadata, OpenFlags, Result};
use alloc::vec::Vec;

/// How to mount.
#[derive(Clone, Copy, Debug)]
pub struct FatOptions {
    /// Never write to the device.
    pub read_only: bool,
    /// Time stamps for created and modified files.
    pub clock: Clock,
}

impl Default for FatOptions {
    fn default() -> Self {
        FatOptions { read_only: false, clock: super::time::uptime }
    }
}

/// A FAT volume on one partition.
pub struct FatFs<S: SectorIo> {
    part: Partition<S>,
}

impl<S: SectorIo> FatFs<S> {
    /// Mounts the FAT16/FAT32 volume that fills `part`.
    pub fn mount(part: Partition<S>, _opts: FatOptions) -> Result<Self> {
        Ok(FatFs { part })
    }

    /// Syncs and gives the partition back.
    pub fn unmount(self) -> Result<Partition<S>> {
        Ok(self.part)
    }
}

impl<S: SectorIo> FileSystem for FatFs<S> {
    fn fs_type(&self) -> &'static str {
        "fat32"
    }
    fn open(&mut self, _path: &str, _flags: OpenFlags) -> Result<Handle> {
        Err(Error::Unsupported)
    }
    fn read(&mut self, _h: Handle, _offset: u64, _buf: &mut [u8]) -> Result<usize> {
        Err(Error::Unsupported)
    }
    fn write(&mut self, _h: Handle, _offset: u64, _data: &[u8]) -> Result<usize> {
        Err(Error::Unsupported)
    }
    fn close(&mut self, _h: Handle) -> Result<()> {
        Err(Error::Unsupported)
    }
    fn fstat(&mut self, _h: Handle) -> Result<Metadata> {
        Err(Error::Unsupported)
    }
    fn stat(&mut self, _path: &str) -> Result<Metadata> {
        Err(Error::Unsupported)
    }
    fn list_dir(&mut self, _path: &str) -> Result<Vec<DirEntry>> {
        Err(Error::Unsupported)
    }
    fn mkdir(&mut self, _path: &str) -> Result<()> {
        Err(Error::Unsupported)
    }
    fn remove(&mut self, _path: &str) -> Result<()> {
        Err(Error::Unsupported)
    }
    fn rename(&mut self, _from: &str, _to: &str) -> Result<()> {
        Err(Error::Unsupported)
    }
    fn sync(&mut self) -> Result<()> {
        Err(Error::Unsupported)
    }
    fn statfs(&mut self) -> Result<FsStats> {
        Err(Error::Unsupported)
    }
}
