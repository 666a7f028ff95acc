//! The block device `embedded-sdmmc` sees: a synthesised MBR, then the partition.
//!
//! The crate only opens volumes through an MBR, but an environment holds its partition, not
//! the disk's sector 0. So the crate is shown a disk whose block 0 is a made-up MBR with one
//! FAT32-LBA entry starting at block 1, and whose block `n + 1` is partition sector `n`.
//!
//! Three more things are arranged here, all to keep the crate's view consistent:
//!
//! - The FAT32 FSInfo sector (a free-cluster count and an allocation hint) belongs to the
//!   libOS: the crate is shown a count of "unknown" (so it never keeps one, nor underflows
//!   one on a damaged volume), and its writes to that sector are dropped. The libOS writes
//!   the exact count itself at `sync`.
//! - The crate's free-cluster search scans whole FAT sectors and can hand out entries past
//!   the volume's last cluster; those entries are shown to it as bad clusters (and written
//!   back as they were on disk).
//! - Every FAT write by the crate is compared with what it read, so the libOS knows exactly
//!   how many clusters it allocated or freed, and keeps the free count without rescanning.
//! - The crate's writes, held for the operation, go out in an order that a power cut
//!   cannot make harmful ([`FatDev::write_key`]): the crate writes a new directory's entry
//!   before the directory's cluster, and links a cluster to a directory before zeroing it,
//!   so that a cut could show a removed file's stale bytes as directory entries (which
//!   `fsck.vfat` may take for files sharing another file's clusters, and cut that file).
//!
//! Transfers outside the volume are refused.

use super::bpb::Geometry;
use super::cache::SectorCache;
use core::cell::{Cell, RefCell};
use embedded_sdmmc::{Block, BlockCount, BlockIdx, TimeSource, Timestamp};
use exo_format::le;
use exo_libos::fs::disk::{BlockDevice, IoError, Partition, OUT_OF_RANGE, SECTOR};
use exo_libos::fs::Clock;

/// FAT sectors read at once when the crate reads one. One: the mount's sector cache
/// underneath reads ahead on a miss, and every sector taken here is copied into the
/// operation's cache, which starts empty at every operation.
const FAT_AHEAD: u32 = 1;

const FSINFO_LEAD: u32 = 0x4161_5252;
const FSINFO_STRUC: u32 = 0x6141_7272;
const FSINFO_TRAIL: u32 = 0xaa55_0000;

/// Whether `b` carries FSInfo's three signatures.
pub fn fsinfo_valid(b: &[u8]) -> bool {
    let at = |i: usize| le::get_u32(b, i);
    at(0) == FSINFO_LEAD && at(484) == FSINFO_STRUC && at(508) == FSINFO_TRAIL
}

/// Fills `b` as an FSInfo sector with the given free count and next-free hint.
pub fn fsinfo_fill(b: &mut [u8], free: u32, next: u32) {
    if !fsinfo_valid(b) {
        b.fill(0);
        b[0..4].copy_from_slice(&FSINFO_LEAD.to_le_bytes());
        b[484..488].copy_from_slice(&FSINFO_STRUC.to_le_bytes());
        b[508..512].copy_from_slice(&FSINFO_TRAIL.to_le_bytes());
    }
    b[488..492].copy_from_slice(&free.to_le_bytes());
    b[492..496].copy_from_slice(&next.to_le_bytes());
}

/// The partition as `embedded-sdmmc` sees it.
pub struct FatDev<S: BlockDevice> {
    pub part: Partition<S>,
    geo: Geometry,
    mbr: [u8; SECTOR],
    /// The last sector the crate read, as it was shown (its one-block cache holds it).
    last: RefCell<Option<(u32, [u8; SECTOR])>>,
    /// Clusters the crate allocated and freed since [`FatDev::take_counts`].
    allocated: Cell<u32>,
    freed: Cell<u32>,
    /// The crate's transfers within one operation.
    cache: RefCell<SectorCache>,
}

impl<S: BlockDevice> FatDev<S> {
    /// Wraps `part` (at most `u32::MAX - 1` sectors) holding the volume `geo` describes.
    pub fn new(part: Partition<S>, geo: Geometry) -> FatDev<S> {
        let mut mbr = [0u8; SECTOR];
        let entry = &mut mbr[446..462];
        entry[4] = exo_format::mbr::TYPE_FAT32_LBA;
        entry[8..12].copy_from_slice(&1u32.to_le_bytes());
        entry[12..16].copy_from_slice(&(part.sectors() as u32).to_le_bytes());
        mbr[510] = 0x55;
        mbr[511] = 0xaa;
        FatDev {
            part,
            geo,
            mbr,
            last: RefCell::new(None),
            allocated: Cell::new(0),
            freed: Cell::new(0),
            cache: RefCell::new(SectorCache::default()),
        }
    }

    /// (clusters allocated, clusters freed) by the crate since the last call.
    pub fn take_counts(&self) -> (u32, u32) {
        (self.allocated.replace(0), self.freed.replace(0))
    }

    /// Writes out what the crate wrote and forgets what it read: the operation is over, or
    /// the libOS is about to use the disk itself.
    pub fn settle(&self) -> Result<(), IoError> {
        *self.last.borrow_mut() = None;
        self.cache.borrow_mut().flush(&self.part, &|s, b| self.write_key(s, b))
    }

    /// Where sector `s`, which the crate wrote as `new`, goes in the order its held writes
    /// go out (lowest first; sectors of one key that follow each other go in one transfer):
    /// what nothing points at yet before what points at it.
    ///
    /// 0. sectors of clusters free in the first FAT on disk: a new directory's cluster, a
    ///    directory's new cluster (zeroed, maybe with the new entry);
    /// 1. first-FAT sectors that take a free cluster into use, each alone, the last first;
    /// 2. the other first-FAT sectors (a link from a chain's old end), likewise;
    /// 3. the other FAT copies;
    /// 4. the rest: entries in directories already linked, a new directory's among them.
    ///
    /// A sector the disk cannot read goes last.
    fn write_key(&self, s: u32, new: &[u8; SECTOR]) -> u64 {
        const LAST: u64 = 4 << 32;
        let g = &self.geo;
        let mut disk = [0u8; SECTOR];
        match self.fat_sector(s) {
            Some((0, idx)) => {
                if self.part.read(u64::from(s), &mut disk).is_err() {
                    return LAST;
                }
                let (first, eb) = self.entries(idx);
                let takes = (0..SECTOR / eb).any(|k| {
                    g.valid_cluster(first + k as u32)
                        && Self::value(&disk, k, eb) == 0
                        && Self::value(new, k, eb) != 0
                });
                // Each alone (a distinct key), the last first.
                (if takes { 1 } else { 2 }) << 32 | u64::from(u32::MAX - s)
            }
            Some(_) => 3 << 32,
            None if s >= g.data_start => {
                // Whether the sector's cluster is free in the first FAT on disk.
                let c = (s - g.data_start) / g.spc + 2;
                let eb = g.entry_bytes();
                let (idx, k) = (c * eb / SECTOR as u32, (c % (SECTOR as u32 / eb)) as usize);
                let read =
                    g.valid_cluster(c) && self.part.read(u64::from(g.fat_start + idx), &mut disk).is_ok();
                if read && Self::value(&disk, k, eb as usize) == 0 {
                    0
                } else {
                    LAST
                }
            }
            None => LAST,
        }
    }

    /// Sector `s` as the crate's writes left it; FAT sectors are read ahead.
    fn raw(&self, s: u32) -> Result<[u8; SECTOR], IoError> {
        let ahead = match self.fat_sector(s) {
            Some((copy, _)) => (s + FAT_AHEAD).min(self.geo.fat_start + (copy + 1) * self.geo.fat_size),
            None => s + 1,
        };
        self.cache.borrow_mut().read(&self.part, s, ahead)
    }

    /// Which FAT copy and which sector of it partition sector `s` is, if any.
    fn fat_sector(&self, s: u32) -> Option<(u32, u32)> {
        let g = &self.geo;
        let i = s.checked_sub(g.fat_start)?;
        (i < g.nfats * g.fat_size).then(|| (i / g.fat_size, i % g.fat_size))
    }

    /// The clusters whose entries sector `idx` of a FAT holds, and each entry's size.
    fn entries(&self, idx: u32) -> (u32, usize) {
        let eb = self.geo.entry_bytes();
        (idx * (SECTOR as u32 / eb), eb as usize)
    }

    /// Entry `k` of a FAT sector, masked to its meaningful bits.
    fn value(b: &[u8], k: usize, eb: usize) -> u32 {
        let e = &b[k * eb..(k + 1) * eb];
        if eb == 2 {
            u32::from(le::get_u16(e, 0))
        } else {
            le::get_u32(e, 0) & 0x0fff_ffff
        }
    }

    /// Whether sector `idx` of a FAT holds entries past the last cluster.
    fn has_tail(&self, idx: u32) -> bool {
        let (first, eb) = self.entries(idx);
        first + (SECTOR / eb) as u32 > self.geo.clusters + 2
    }

    /// Shows entries past the last cluster as bad, so the crate's free-cluster search
    /// (which scans whole sectors) never hands out a cluster the volume does not have.
    fn mask(&self, idx: u32, b: &mut [u8]) {
        if !self.has_tail(idx) {
            return;
        }
        let (first, eb) = self.entries(idx);
        let last = self.geo.clusters + 1;
        for (k, e) in b.chunks_exact_mut(eb).enumerate() {
            if first + k as u32 > last {
                let bad: u32 = if eb == 2 { 0xfff7 } else { 0x0fff_fff7 };
                e.copy_from_slice(&bad.to_le_bytes()[..eb]);
            }
        }
    }

    /// Puts back what the disk holds in the entries [`FatDev::mask`] replaced.
    fn unmask(&self, idx: u32, b: &mut [u8], disk: &[u8]) {
        if !self.has_tail(idx) {
            return;
        }
        let (first, eb) = self.entries(idx);
        let last = self.geo.clusters + 1;
        for (k, (e, d)) in b.chunks_exact_mut(eb).zip(disk.chunks_exact(eb)).enumerate() {
            if first + k as u32 > last {
                e.copy_from_slice(d);
            }
        }
    }

    /// Counts the crate's allocations and frees in a write of first-FAT sector `idx`.
    fn count(&self, idx: u32, old: &[u8], new: &[u8]) {
        if old == new {
            return;
        }
        let (first, eb) = self.entries(idx);
        let last = self.geo.clusters + 1;
        for k in 0..SECTOR / eb {
            let c = first + k as u32;
            if old[k * eb..(k + 1) * eb] == new[k * eb..(k + 1) * eb] || !(2..=last).contains(&c) {
                continue;
            }
            match (Self::value(old, k, eb), Self::value(new, k, eb)) {
                (0, n) if n != 0 => self.allocated.set(self.allocated.get() + 1),
                (o, 0) if o != 0 => self.freed.set(self.freed.get() + 1),
                _ => {}
            }
        }
    }

    /// Partition sector of crate block `b` inside the volume; `None` for the MBR.
    fn sector(&self, b: u32) -> Result<Option<u32>, IoError> {
        match b.checked_sub(1) {
            None => Ok(None),
            Some(s) if s < self.geo.total => Ok(Some(s)),
            Some(_) => Err(IoError { code: OUT_OF_RANGE }),
        }
    }

    fn read_one(&self, s: u32, b: &mut [u8; SECTOR]) -> Result<(), IoError> {
        *b = self.raw(s)?;
        if Some(s) == self.geo.fsinfo {
            let next = le::get_u32(b, 492);
            let next = if fsinfo_valid(b) { next } else { u32::MAX };
            fsinfo_fill(b, u32::MAX, next);
        }
        if let Some((_, idx)) = self.fat_sector(s) {
            self.mask(idx, b);
        }
        Ok(())
    }
}

impl<S: BlockDevice> embedded_sdmmc::BlockDevice for FatDev<S> {
    type Error = IoError;

    fn read(&self, blocks: &mut [Block], start: BlockIdx) -> Result<(), IoError> {
        for (i, blk) in blocks.iter_mut().enumerate() {
            let idx = start.0.checked_add(i as u32).ok_or(IoError { code: OUT_OF_RANGE })?;
            match self.sector(idx)? {
                None => blk.contents = self.mbr,
                Some(s) => {
                    self.read_one(s, &mut blk.contents)?;
                    *self.last.borrow_mut() = Some((s, blk.contents));
                }
            }
        }
        Ok(())
    }

    fn write(&self, blocks: &[Block], start: BlockIdx) -> Result<(), IoError> {
        for (i, blk) in blocks.iter().enumerate() {
            let idx = start.0.checked_add(i as u32).ok_or(IoError { code: OUT_OF_RANGE })?;
            let s = self.sector(idx)?.ok_or(IoError { code: OUT_OF_RANGE })?;
            if Some(s) == self.geo.fsinfo {
                continue;
            }
            let mut out = blk.contents;
            if let Some((copy, fidx)) = self.fat_sector(s) {
                let last = *self.last.borrow();
                let known = last.filter(|(ls, _)| *ls == s && copy == 0).map(|(_, b)| b);
                let mut disk = [0u8; SECTOR];
                if (copy == 0 && known.is_none()) || self.has_tail(fidx) {
                    disk = self.raw(s)?;
                }
                if copy == 0 {
                    let old = known.unwrap_or_else(|| {
                        let mut b = disk;
                        self.mask(fidx, &mut b);
                        b
                    });
                    self.count(fidx, &old, &out);
                    *self.last.borrow_mut() = Some((s, out));
                }
                self.unmask(fidx, &mut out, &disk);
            }
            self.cache.borrow_mut().write(&self.part, s, &out, &|s, b| self.write_key(s, b))?;
        }
        Ok(())
    }

    fn num_blocks(&self) -> Result<BlockCount, IoError> {
        Ok(BlockCount(self.part.sectors() as u32 + 1))
    }
}

/// The libOS clock as the crate's time source.
pub struct FatClock(pub Clock);

impl TimeSource for FatClock {
    fn get_timestamp(&self) -> Timestamp {
        let (date, time) = exo_libos::fs::time::to_fat((self.0)());
        Timestamp::from_fat(date, time)
    }
}
