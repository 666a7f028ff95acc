//! The sector caches: one under everything, kept for the life of the mount ([`Kept`]),
//! and one for the crate's one-sector transfers, emptied at the end of every operation.
//!
//! [`Kept`] is write-through: every write reaches the device before it returns, and what
//! it holds always equals the device, so the order in which the libOS writes (entry before
//! clusters, and so on) and what a power cut leaves are exactly as without it. It keeps
//! the small transfers (FAT windows, directory clusters, entries): the libOS re-reads
//! those at every operation, and without it each create and each cold open read the FAT
//! and the directory from the card again (the profile: most of FAT's instructions went
//! into the SD driver's copy loop). File data moved in large transfers passes by it.
//!
//! `embedded-sdmmc` reads and writes one sector per call, and rewrites the same FAT sector
//! for every cluster it allocates. Between the start and the end of one libOS operation its
//! writes are kept here and then written in runs of consecutive sectors (one device call per
//! run, up to 2048 sectors), and FAT sectors are read ahead in windows. Before the libOS
//! touches the disk itself, and before any operation returns, the cache is written out and
//! dropped, so what an operation wrote is on the device when it returns, as before. The
//! order they go out in is the caller's (a key for each sector, see
//! `FatDev::write_key`), not the crate's: it puts a new directory's cluster before the
//! entry naming it, which the crate does not.

extern crate alloc;

use alloc::boxed::Box;
use alloc::collections::BTreeMap;
use exo_libos::fs::disk::{BlockDevice, IoError, Partition, SectorBuf, MAX_TRANSFER, SECTOR};

/// Sectors [`Kept`] holds at most (1 MiB); when full it starts again empty.
const KEEP: usize = 2048;
/// Transfers of more sectors than this (file data) are not kept.
const KEEP_RUN: usize = 64;
/// Sectors read at once when a read of at most this many is missing (the next FAT or
/// directory sectors are usually wanted next).
const KEEP_AHEAD: u64 = 16;

/// A device with a write-through cache of recently used sectors in front (see above).
pub struct Kept<S> {
    io: S,
    held: BTreeMap<u64, Box<Sector>>,
    /// Reads go straight to the device, kept or not (file data: what is held equals the
    /// device, so reading past the cache is safe).
    pub pass: bool,
    /// Writes so far (what was read before the last one may be out of date).
    pub writes: u64,
    /// The device's sectors holding the FATs, and writes so far that touched them (a FAT
    /// window read before the last one may be out of date).
    pub fat: (u64, u64),
    pub fat_writes: u64,
    /// Every sector held since the last time the cache was emptied lies in `lo..hi`: a write
    /// outside (file data going to new clusters) skips the look-up in `held`.
    lo: u64,
    hi: u64,
}

impl<S: BlockDevice> Kept<S> {
    /// `part` with the cache in front of its device.
    pub fn wrap(part: Partition<S>) -> Partition<Kept<S>> {
        let (start, count) = (part.start(), part.sectors());
        Partition::new(
            Kept {
                io: part.into_inner(),
                held: BTreeMap::new(),
                pass: false,
                writes: 0,
                fat: (0, 0),
                fat_writes: 0,
                lo: u64::MAX,
                hi: 0,
            },
            start,
            count,
        )
    }

    /// The partition without the cache.
    pub fn unwrap(part: Partition<Kept<S>>) -> Partition<S> {
        let (start, count) = (part.start(), part.sectors());
        Partition::new(part.into_inner().io, start, count)
    }

    fn keep(&mut self, sector: u64, data: &[u8]) {
        if self.held.len() + data.len() / SECTOR > KEEP {
            self.held.clear();
            (self.lo, self.hi) = (u64::MAX, 0);
        }
        self.lo = self.lo.min(sector);
        self.hi = self.hi.max(sector + (data.len() / SECTOR) as u64);
        for (i, b) in data.chunks_exact(SECTOR).enumerate() {
            let mut sec = Box::new([0u8; SECTOR]);
            sec.copy_from_slice(b);
            self.held.insert(sector + i as u64, sec);
        }
    }
}

impl<S: BlockDevice> BlockDevice for Kept<S> {
    fn read(&mut self, sector: u64, buf: &mut [u8]) -> Result<(), IoError> {
        if self.pass {
            return self.io.read(sector, buf);
        }
        let n = (buf.len() / SECTOR) as u64;
        if n == 1 {
            if let Some(b) = self.held.get(&sector) {
                buf.copy_from_slice(&b[..]);
                return Ok(());
            }
        }
        let held = self.held.range(sector..sector + n);
        if n > 1 && held.clone().count() as u64 == n {
            for ((_, b), dst) in held.zip(buf.chunks_exact_mut(SECTOR)) {
                dst.copy_from_slice(&b[..]);
            }
            return Ok(());
        }
        if n <= KEEP_AHEAD {
            let ahead = KEEP_AHEAD.min(self.io.sectors().saturating_sub(sector)).max(n);
            let ahead =
                self.held.range(sector..sector + ahead).next().map_or(ahead, |(&h, _)| h - sector).max(n);
            let mut tmp = SectorBuf::new(ahead as usize * SECTOR);
            self.io.read(sector, &mut tmp)?;
            buf.copy_from_slice(&tmp[..buf.len()]);
            self.keep(sector, &tmp);
            return Ok(());
        }
        self.io.read(sector, buf)?;
        if n as usize <= KEEP_RUN {
            self.keep(sector, buf);
        }
        Ok(())
    }

    fn write(&mut self, sector: u64, buf: &[u8]) -> Result<(), IoError> {
        let n = (buf.len() / SECTOR) as u64;
        self.writes += 1;
        if sector < self.fat.1 && sector + n > self.fat.0 {
            self.fat_writes += 1;
        }
        let r = self.io.write(sector, buf);
        if sector >= self.hi || sector + n <= self.lo {
            return r; // nothing held there
        }
        if n == 1 && r.is_ok() {
            if let Some(held) = self.held.get_mut(&sector) {
                held.copy_from_slice(buf);
            }
            return r;
        }
        if r.is_err() || n as usize > KEEP_RUN {
            // Unknown on the device now, or file data: drop what is held of it.
            let stale: alloc::vec::Vec<u64> = self.held.range(sector..sector + n).map(|(&k, _)| k).collect();
            stale.iter().for_each(|k| drop(self.held.remove(k)));
        } else {
            // Only what is held already is updated: a written sector (file data, mostly)
            // is not read again soon enough to earn a place.
            for (k, held) in self.held.range_mut(sector..sector + n) {
                let at = (k - sector) as usize * SECTOR;
                held.copy_from_slice(&buf[at..at + SECTOR]);
            }
        }
        r
    }

    fn flush(&mut self) -> Result<(), IoError> {
        self.io.flush()
    }

    fn sectors(&self) -> u64 {
        self.io.sectors()
    }
}

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

    /// Holds a write of sector `s`; writes everything out (in the order `key` gives, see
    /// [`flush`](Self::flush)) if too much is held.
    pub fn write<S: BlockDevice>(
        &mut self,
        part: &Partition<S>,
        s: u32,
        b: &Sector,
        key: &dyn Fn(u32, &Sector) -> u64,
    ) -> Result<(), IoError> {
        self.clean.remove(&s);
        self.pending.insert(s, *b);
        if self.pending.len() >= MAX_PENDING {
            self.write_out(part, key)?;
        }
        Ok(())
    }

    /// Writes held sectors, those with the lowest `key` (of the sector's number and its
    /// bytes) first; sectors of one key that follow each other go in one device call.
    fn write_out<S: BlockDevice>(
        &mut self,
        part: &Partition<S>,
        key: &dyn Fn(u32, &Sector) -> u64,
    ) -> Result<(), IoError> {
        let pending = core::mem::take(&mut self.pending);
        let mut order: alloc::vec::Vec<(u64, u32, &Sector)> =
            pending.iter().map(|(&s, b)| (key(s, b), s, b)).collect();
        order.sort_unstable_by_key(|&(k, s, _)| (k, s));
        let mut it = order.into_iter().peekable();
        while let Some((k, first, data)) = it.next() {
            let mut run = alloc::vec![*data];
            while let Some(&(nk, next, d)) = it.peek() {
                if nk != k || next != first + run.len() as u32 || run.len() == MAX_TRANSFER {
                    break;
                }
                run.push(*d);
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

    /// Writes everything out, in the order `key` gives (lowest first), and forgets
    /// everything (the disk is about to change under it).
    pub fn flush<S: BlockDevice>(
        &mut self,
        part: &Partition<S>,
        key: &dyn Fn(u32, &Sector) -> u64,
    ) -> Result<(), IoError> {
        if self.pending.is_empty() && self.clean.is_empty() {
            return Ok(()); // the libOS's own operations leave nothing here: the common case
        }
        self.clean.clear();
        self.write_out(part, key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A disk in memory that counts the transfers reaching it.
    struct Counting(alloc::vec::Vec<u8>, u32);

    impl BlockDevice for Counting {
        fn read(&mut self, sector: u64, buf: &mut [u8]) -> Result<(), IoError> {
            self.1 += 1;
            self.0.read(sector, buf)
        }
        fn write(&mut self, sector: u64, buf: &[u8]) -> Result<(), IoError> {
            self.1 += 1;
            self.0.write(sector, buf)
        }
        fn flush(&mut self) -> Result<(), IoError> {
            Ok(())
        }
        fn sectors(&self) -> u64 {
            self.0.sectors()
        }
    }

    #[test]
    fn kept_sectors_are_read_once_and_writes_reach_the_device_at_once() {
        let disk: alloc::vec::Vec<u8> = (0..128 * SECTOR).map(|i| (i / SECTOR) as u8).collect();
        let part = Kept::wrap(Partition::new(Counting(disk, 0), 8, 100));
        let calls = |p: &Partition<Kept<Counting>>| p.with_io(|k| k.io.1);
        let mut b = [0u8; SECTOR];
        part.read(0, &mut b).unwrap(); // one transfer, reading ahead
        assert_eq!((b[0], calls(&part)), (8, 1));
        part.read(5, &mut b).unwrap();
        assert_eq!((b[0], calls(&part)), (13, 1)); // from the cache
        part.write(5, &[0xee; SECTOR]).unwrap();
        assert_eq!(calls(&part), 2); // written through
        part.read(5, &mut b).unwrap();
        assert_eq!((b[0], calls(&part)), (0xee, 2));
        // File data in large transfers passes by, and drops what the cache held of it.
        part.write(0, &alloc::vec![0x11u8; (KEEP_RUN + 1) * SECTOR]).unwrap();
        part.read(5, &mut b).unwrap();
        assert_eq!((b[0], calls(&part)), (0x11, 4));
        let dev = Kept::unwrap(part).into_inner();
        let end = 8 + KEEP_RUN + 1;
        assert!(dev.0[8 * SECTOR..end * SECTOR].iter().all(|&x| x == 0x11));
        assert_eq!(dev.0[end * SECTOR], end as u8);
    }
}
