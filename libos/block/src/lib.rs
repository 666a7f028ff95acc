//! The block-device seam of EL0: 512-byte sectors numbered from 0, and the error a transfer
//! returns.
//!
//! It has a crate of its own so that the pieces above it depend on it and not on each
//! other: the runtime (`exo-libos`: the sector system calls, partitions), the FAT libOS
//! (`exo-fat`) and the log-structured file system (`exo-lfs`, and its libOS `exo-logfs`)
//! all speak [`BlockDevice`], and an app that links one file system links nothing of the
//! other. The kernel's drivers implement `exo_bsp`'s own `BlockDevice`, which EL0 code
//! cannot name (it never depends on the bsp).
#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

use alloc::vec::Vec;

/// Bytes per sector. Every transfer is a whole number of sectors.
pub const SECTOR: usize = 512;

/// A failed transfer: the kernel's error number (`exo_abi::Error`) on exo, or a code the
/// device chose (negative).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IoError {
    pub code: i32,
}

impl core::fmt::Display for IoError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "disk error {}", self.code)
    }
}

impl core::error::Error for IoError {}

/// A disk (or partition) of 512-byte sectors numbered from 0.
///
/// Durability contract the file systems rely on (and nothing more):
/// - a `write` that returned, followed by a `flush` that returned, is durable;
/// - at power loss, a write not yet followed by a completed flush may have reached the medium
///   in any subset of its sectors, each sector wholly old or wholly new;
/// - writes not separated by a flush may reach the medium in any order.
///
/// On exo each call is one system call, so file systems issue few, large transfers.
pub trait BlockDevice {
    /// Reads `buf.len() / 512` sectors starting at `sector`.
    fn read(&mut self, sector: u64, buf: &mut [u8]) -> Result<(), IoError>;
    /// Writes `buf.len() / 512` sectors starting at `sector`.
    fn write(&mut self, sector: u64, buf: &[u8]) -> Result<(), IoError>;
    /// Returns once every completed write is durable.
    fn flush(&mut self) -> Result<(), IoError>;
    /// The device size in sectors.
    fn sectors(&self) -> u64;
    /// Whether a read of `len` bytes may be handed to this device in a buffer at any
    /// alignment (a partition otherwise bounces a buffer not aligned to 512 bytes, as the
    /// sector system calls want). A device that copies from memory says yes.
    fn reads_any_buffer(&self, len: usize) -> bool {
        let _ = len;
        false
    }
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
    fn reads_any_buffer(&self, len: usize) -> bool {
        (**self).reads_any_buffer(len)
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

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    #[test]
    fn transfers_outside_the_device_or_of_part_sectors_are_refused() {
        let mut d = vec![0u8; 4 * SECTOR];
        let mut b = [7u8; SECTOR];
        assert!(d.write(3, &b).is_ok());
        assert_eq!(d.write(4, &b), Err(IoError { code: -22 }));
        assert_eq!(d.read(0, &mut b[..100]), Err(IoError { code: -22 }));
        assert_eq!(check_range(u64::MAX, SECTOR, 4), Err(IoError { code: -22 }));
        d.read(3, &mut b).unwrap();
        assert_eq!(b, [7u8; SECTOR]);
    }
}
