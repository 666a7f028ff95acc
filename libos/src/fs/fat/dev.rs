//! The block device `embedded-sdmmc` sees: a synthesised MBR, then the partition.
//!
//! The crate only opens volumes through an MBR, but an environment holds its partition, not
//! the disk's sector 0. So the crate is shown a disk whose block 0 is a made-up MBR with one
//! FAT32-LBA entry starting at block 1, and whose block `n + 1` is partition sector `n`.
//!
//! The FAT32 FSInfo sector (a free-cluster count and an allocation hint) belongs to the FAT
//! libOS, not to the crate: the crate is shown a count of "unknown" (so it never keeps one,
//! and never underflows one on a damaged volume), and its writes to that sector are dropped.
//! The libOS writes the exact count itself at `sync`.

use crate::fs::disk::{DiskError, Partition, SectorIo, OUT_OF_RANGE, SECTOR};
use crate::fs::Clock;
use embedded_sdmmc::{Block, BlockCount, BlockDevice, BlockIdx, TimeSource, Timestamp};

const FSINFO_LEAD: u32 = 0x4161_5252;
const FSINFO_STRUC: u32 = 0x6141_7272;
const FSINFO_TRAIL: u32 = 0xaa55_0000;

/// Whether `b` carries FSInfo's three signatures.
pub fn fsinfo_valid(b: &[u8]) -> bool {
    let at = |i: usize| u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
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
pub struct FatDev<S: SectorIo> {
    pub part: Partition<S>,
    mbr: [u8; SECTOR],
    fsinfo: Option<u32>,
}

impl<S: SectorIo> FatDev<S> {
    /// Wraps `part` (at most `u32::MAX - 1` sectors); `fsinfo` is the FSInfo sector if any.
    pub fn new(part: Partition<S>, fsinfo: Option<u32>) -> FatDev<S> {
        let mut mbr = [0u8; SECTOR];
        let entry = &mut mbr[446..462];
        entry[4] = exo_abi::mbr::TYPE_FAT32_LBA;
        entry[8..12].copy_from_slice(&1u32.to_le_bytes());
        entry[12..16].copy_from_slice(&(part.sectors() as u32).to_le_bytes());
        mbr[510] = 0x55;
        mbr[511] = 0xaa;
        FatDev { part, mbr, fsinfo }
    }

    /// Partition sector of crate block `b`, or `None` for the synthesised MBR.
    fn sector(b: u32) -> Option<u64> {
        b.checked_sub(1).map(u64::from)
    }
}

impl<S: SectorIo> BlockDevice for FatDev<S> {
    type Error = DiskError;

    fn read(&self, blocks: &mut [Block], start: BlockIdx) -> Result<(), DiskError> {
        for (i, blk) in blocks.iter_mut().enumerate() {
            let idx = start.0.checked_add(i as u32).ok_or(DiskError { code: OUT_OF_RANGE })?;
            let Some(sector) = Self::sector(idx) else {
                blk.contents = self.mbr;
                continue;
            };
            BlockDevice::read(&self.part, core::slice::from_mut(blk), BlockIdx(sector as u32))?;
            if Some(sector as u32) == self.fsinfo {
                let next = u32::from_le_bytes([blk[492], blk[493], blk[494], blk[495]]);
                let next = if fsinfo_valid(&blk.contents) { next } else { u32::MAX };
                fsinfo_fill(&mut blk.contents, u32::MAX, next);
            }
        }
        Ok(())
    }

    fn write(&self, blocks: &[Block], start: BlockIdx) -> Result<(), DiskError> {
        for (i, blk) in blocks.iter().enumerate() {
            let idx = start.0.checked_add(i as u32).ok_or(DiskError { code: OUT_OF_RANGE })?;
            let sector = Self::sector(idx).ok_or(DiskError { code: OUT_OF_RANGE })?;
            if Some(sector as u32) == self.fsinfo {
                continue;
            }
            BlockDevice::write(&self.part, core::slice::from_ref(blk), BlockIdx(sector as u32))?;
        }
        Ok(())
    }

    fn num_blocks(&self) -> Result<BlockCount, DiskError> {
        Ok(BlockCount(self.part.sectors() as u32 + 1))
    }
}

/// The libOS clock as the crate's time source.
pub struct FatClock(pub Clock);

impl TimeSource for FatClock {
    fn get_timestamp(&self) -> Timestamp {
        let (date, time) = crate::fs::time::to_fat((self.0)());
        Timestamp::from_fat(date, time)
    }
}
