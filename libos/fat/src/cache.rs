//! A sector cache for the crate's one-sector transfers, emptied at the end of every operation.
//!
//! `embedded-sdmmc` reads and writes one sector per call, and rewrites the same FAT sector
//! for every cluster it allocates. Between the start and the end of one libOS operation its
//! writes are kept here and then written in runs of consecutive sectors (one device call per
//! run, up to 2048 sectors), and FAT sectors are read ahead in windows. Before the libOS
//! touches the disk itself, and before any operation returns, the cache is written out and
//! dropped, so what an operation wrote is on the device when it returns, as before.

extern crate alloc;

use alloc::collections::BTreeMap;
use exo_libos::fs::disk::{BlockDevice, IoError, Partition, SectorBuf, MAX_TRANSFER, SECTOR};

/// Written sectors held before they are written out anyway (256 KiB).
const MAX_PENDING: usize = 512;
/// Read sectors kept before the clean part is dropped.
const MAX_CLEAN: usize = 1024;

type Sector = [u8; SECTOR];

#[derive(Default)]
pub struct SectorCache {
    /// Written, not yet on the device.
    pending: BTreeMap<u32, Sector>,
    /// Read and unchanged.
    clean: BTreeMap<u32, Sector>,
}

impl SectorCache {
    /// Sector `s` as the crate last wrote it or the device holds it. On a miss, reads
    /// `s .. ahead` (at least `s` itself) in one transfer.
    pub fn read<S: BlockDevice>(
        &mut self,
        part: &Partition<S>,
        s: u32,
        ahead: u32,
    ) -> Result<Sector, IoError> {
        if let Some(b) = self.pending.get(&s).or_else(|| self.clean.get(&s)) {
            return Ok(*b);
        }
        if self.clean.len() >= MAX_CLEAN {
            self.clean.clear();
        }
        let n = ahead.saturating_sub(s).clamp(1, MAX_TRANSFER as u32);
        // Stop the window at the first sector already held (it may be newer than the disk).
        let n = self.pending.range(s..s.saturating_add(n)).next().map_or(n, |(&p, _)| p - s).max(1);
        let mut buf = SectorBuf::new(n as usize * SECTOR);
        part.read(u64::from(s), &mut buf)?;
        for (i, b) in buf.chunks_exact(SECTOR).enumerate() {
            let mut sec = [0u8; SECTOR];
            sec.copy_from_slice(b);
            self.clean.entry(s + i as u32).or_insert(sec);
        }
        Ok(self.clean[&s])
    }

    /// Holds a write of sector `s`; writes everything out if too much is held.
    pub fn write<S: BlockDevice>(&mut self, part: &Partition<S>, s: u32, b: &Sector) -> Result<(), IoError> {
        self.clean.remove(&s);
        self.pending.insert(s, *b);
        if self.pending.len() >= MAX_PENDING {
            self.write_out(part)?;
        }
        Ok(())
    }

    /// Writes held sectors in runs of consecutive ones, one device call per run.
    fn write_out<S: BlockDevice>(&mut self, part: &Partition<S>) -> Result<(), IoError> {
        let pending = core::mem::take(&mut self.pending);
        let mut it = pending.iter().peekable();
        while let Some((&first, data)) = it.next() {
            let mut run = alloc::vec![*data];
            while let Some((&next, d)) = it.peek() {
                if next != first + run.len() as u32 || run.len() == MAX_TRANSFER {
                    break;
                }
                run.push(**d);
                it.next();
            }
            let mut buf = SectorBuf::new(run.len() * SECTOR);
            for (dst, src) in buf.chunks_exact_mut(SECTOR).zip(&run) {
                dst.copy_from_slice(src);
            }
            part.write(u64::from(first), &buf)?;
        }
        Ok(())
    }

    /// Writes everything out and forgets everything (the disk is about to change under it).
    pub fn flush<S: BlockDevice>(&mut self, part: &Partition<S>) -> Result<(), IoError> {
        self.clean.clear();
        self.write_out(part)
    }
}
