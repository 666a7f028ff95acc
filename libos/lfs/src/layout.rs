//! Geometry, the superblock (sector 0) and the two pointer encodings of the format.

use crate::device::SECTOR;
use crate::error::{Corruption, Error, Result};
use crate::hash::hash64;
use exo_format::le::*;

/// Bytes per file-system block (file data, directory, indirect and inode-map blocks).
pub const BLOCK: usize = 4096;
/// Sectors per block.
pub const BLOCK_SECTORS: u32 = 8;
/// Bytes per on-disk inode; four share a sector.
pub const INODE_SIZE: usize = 128;
/// Inodes per sector.
pub const INODES_PER_SECTOR: usize = SECTOR / INODE_SIZE;
/// Inode-map entries per inode-map block.
pub const IMAP_PER_BLOCK: u32 = (BLOCK / 8) as u32;
/// The root directory's inode number. Inode 0 does not exist.
pub const ROOT_INO: u32 = 1;
/// Longest name in a directory, in bytes.
pub const NAME_MAX: usize = 255;
/// "No segment" in a `next_seg` field.
pub const NO_SEG: u32 = u32::MAX;

const SB_MAGIC: &[u8; 8] = b"EXO-LFS1";
/// The format version this crate writes and reads. Version 2 added direct partial segments
/// (`docs/lfs-format.md`), which a version-1 reader would take for the log's end: an image
/// of the other version is refused with [`Error::Version`] rather than half read.
pub const SB_VERSION: u32 = 2;
const SB_HASH_SEED: u64 = 0x5b5b_5b5b;
const MIN_SEG: u32 = 64 * 1024;
const MAX_SEG: u32 = 16 * 1024 * 1024;
/// Fewest segments a file system may have (the cleaner needs room to work).
pub const MIN_SEGS: u32 = 12;
/// Most inodes a file system may have (bounds the inode map held in memory).
pub const MAX_INODES: u32 = 1 << 24;

/// A block pointer: bits 0..48 the first sector (absolute within the file system), bits
/// 48..51 the stored length in sectors minus one. A block is stored as its first 1..=8
/// sectors; the rest of its 4096 bytes are zero. 0 means "no block" (a hole).
pub fn ptr_make(sector: u64, sectors: u32) -> u64 {
    debug_assert!((1..=8).contains(&sectors));
    sector | ((sectors as u64 - 1) << 48)
}

/// The first sector of a non-zero pointer.
pub fn ptr_sector(p: u64) -> u64 {
    p & ((1 << 48) - 1)
}

/// The stored length, in sectors, of a non-zero pointer.
pub fn ptr_len(p: u64) -> u32 {
    ((p >> 48) & 7) as u32 + 1
}

/// Inode-map value: where an inode lives, `(sector << 2) | slot`. 0 means free; 1 means
/// allocated in memory but not yet written (never on disk).
pub fn iloc_make(sector: u64, slot: usize) -> u64 {
    (sector << 2) | slot as u64
}

/// Most inodes a file system of `total_sectors` may have: one per sector (at least 4096),
/// capped at [`MAX_INODES`]. Bounds the memory a mount of a hostile image can ask for.
pub fn inode_limit(total_sectors: u64) -> u32 {
    total_sectors.clamp(4096, MAX_INODES as u64) as u32 / IMAP_PER_BLOCK * IMAP_PER_BLOCK
}

/// The fixed shape of one file system, from its superblock.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Geometry {
    pub total_sectors: u64,
    pub seg_sectors: u32,
    pub first_seg: u64,
    pub nsegs: u32,
    pub cp_sectors: u32,
    pub cp_at: [u64; 2],
    pub max_inodes: u32,
    pub fs_id: u64,
    pub created: i64,
}

impl Geometry {
    /// Lays out a new file system of `total_sectors` with `seg_bytes` segments.
    pub fn new(total_sectors: u64, seg_bytes: u32, max_inodes: Option<u32>, fs_id: u64) -> Result<Self> {
        if !seg_bytes.is_power_of_two() || !(MIN_SEG..=MAX_SEG).contains(&seg_bytes) {
            return Err(Error::InvalidArgument);
        }
        let seg_sectors = seg_bytes / SECTOR as u32;
        let rough = total_sectors / seg_sectors as u64;
        if rough < MIN_SEGS as u64 + 1 || rough > u32::MAX as u64 / 2 || total_sectors >= 1 << 47 {
            return Err(Error::InvalidArgument);
        }
        let want = max_inodes.unwrap_or((total_sectors / 16).clamp(1024, 1 << 20) as u32);
        let max_inodes = want.div_ceil(IMAP_PER_BLOCK).clamp(1, inode_limit(total_sectors) / IMAP_PER_BLOCK)
            * IMAP_PER_BLOCK;
        let mut g = Geometry {
            total_sectors,
            seg_sectors,
            first_seg: 0,
            nsegs: rough as u32,
            cp_sectors: 0,
            cp_at: [0; 2],
            max_inodes,
            fs_id,
            created: 0,
        };
        g.cp_sectors = g.cp_size(g.nsegs);
        g.cp_at = [1, 1 + g.cp_sectors as u64];
        g.first_seg = (1 + 2 * g.cp_sectors as u64).next_multiple_of(seg_sectors as u64);
        let n = (total_sectors.saturating_sub(g.first_seg)) / seg_sectors as u64;
        if n < MIN_SEGS as u64 {
            return Err(Error::InvalidArgument);
        }
        g.nsegs = n as u32;
        // Fewer segments than first guessed: the regions shrink and stay where they are.
        g.cp_sectors = g.cp_size(g.nsegs);
        g.cp_at = [1, 1 + g.cp_sectors as u64];
        Ok(g)
    }

    fn cp_size(&self, nsegs: u32) -> u32 {
        let body = self.imap_blocks() as u64 * 8 + nsegs as u64 * 16;
        1 + body.div_ceil(SECTOR as u64) as u32
    }

    /// How many inode-map blocks the checkpoint points to.
    pub fn imap_blocks(&self) -> u32 {
        self.max_inodes / IMAP_PER_BLOCK
    }

    pub fn seg_bytes(&self) -> u64 {
        self.seg_sectors as u64 * SECTOR as u64
    }

    /// First sector of segment `seg`.
    #[inline]
    pub fn seg_start(&self, seg: u32) -> u64 {
        self.first_seg + seg as u64 * self.seg_sectors as u64
    }

    /// The segment holding `sector`, if it is in the log area.
    #[inline(always)]
    pub fn seg_of(&self, sector: u64) -> Option<u32> {
        if sector < self.first_seg {
            return None;
        }
        let s = (sector - self.first_seg) / self.seg_sectors as u64;
        (s < self.nsegs as u64).then_some(s as u32)
    }

    /// Whether a non-zero pointer names sectors inside one segment.
    #[inline(always)]
    pub fn ptr_ok(&self, p: u64) -> bool {
        let s = ptr_sector(p);
        p >> 51 == 0
            && self
                .seg_of(s)
                .is_some_and(|seg| s + ptr_len(p) as u64 <= self.seg_start(seg) + self.seg_sectors as u64)
    }

    /// Decodes an inode-map value into (sector, slot), checking it lies in the log.
    pub fn iloc(&self, v: u64) -> Option<(u64, usize)> {
        let s = v >> 2;
        self.seg_of(s).map(|_| (s, (v & 3) as usize))
    }

    /// Encodes sector 0.
    pub fn encode(&self, out: &mut [u8; SECTOR]) {
        out.fill(0);
        out[0..8].copy_from_slice(SB_MAGIC);
        put_u32(out, 8, SB_VERSION);
        put_u32(out, 12, SECTOR as u32);
        put_u32(out, 16, BLOCK as u32);
        put_u32(out, 20, self.seg_sectors);
        put_u64(out, 24, self.total_sectors);
        put_u64(out, 32, self.first_seg);
        put_u32(out, 40, self.nsegs);
        put_u32(out, 44, self.cp_sectors);
        put_u64(out, 48, self.cp_at[0]);
        put_u64(out, 56, self.cp_at[1]);
        put_u32(out, 64, self.max_inodes);
        put_u64(out, 72, self.fs_id);
        put_u64(out, 80, self.created as u64);
        let h = hash64(SB_HASH_SEED, &out[..504]);
        put_u64(out, 504, h);
    }

    /// Decodes and checks sector 0 against a device of `dev_sectors`.
    pub fn decode(b: &[u8], dev_sectors: u64) -> Result<Self> {
        let bad = Error::Corrupt(Corruption::Superblock);
        if b.len() < SECTOR || &b[0..8] != SB_MAGIC || hash64(SB_HASH_SEED, &b[..504]) != get_u64(b, 504) {
            return Err(bad);
        }
        if get_u32(b, 8) != SB_VERSION {
            return Err(Error::Version { found: get_u32(b, 8), reads: SB_VERSION });
        }
        if get_u32(b, 12) != SECTOR as u32 || get_u32(b, 16) != BLOCK as u32 {
            return Err(bad);
        }
        let g = Geometry {
            seg_sectors: get_u32(b, 20),
            total_sectors: get_u64(b, 24),
            first_seg: get_u64(b, 32),
            nsegs: get_u32(b, 40),
            cp_sectors: get_u32(b, 44),
            cp_at: [get_u64(b, 48), get_u64(b, 56)],
            max_inodes: get_u32(b, 64),
            fs_id: get_u64(b, 72),
            created: get_u64(b, 80) as i64,
        };
        let seg_ok = g.seg_sectors.is_power_of_two()
            && (MIN_SEG..=MAX_SEG).contains(&(g.seg_sectors.wrapping_mul(SECTOR as u32)))
            && g.seg_sectors >= 128;
        let ino_ok = g.max_inodes != 0
            && g.max_inodes <= inode_limit(g.total_sectors)
            && g.max_inodes.is_multiple_of(IMAP_PER_BLOCK);
        if !seg_ok
            || !ino_ok
            || g.nsegs < MIN_SEGS
            || g.total_sectors > dev_sectors
            || g.total_sectors >= 1 << 47
        {
            return Err(bad);
        }
        let end = g.first_seg as u128 + g.nsegs as u128 * g.seg_sectors as u128;
        let cp_ok = g.cp_sectors == g.cp_size(g.nsegs)
            && g.cp_at == [1, 1 + g.cp_sectors as u64]
            && g.cp_at[1] + g.cp_sectors as u64 <= g.first_seg;
        if !cp_ok || end > g.total_sectors as u128 {
            return Err(bad);
        }
        Ok(g)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn superblock_round_trips_and_rejects_damage() {
        let g = Geometry::new(64 * 1024 * 2, 256 * 1024, None, 42).unwrap();
        assert!(g.first_seg > 2 * g.cp_sectors as u64);
        assert_eq!(g.first_seg % g.seg_sectors as u64, 0);
        let mut s = [0u8; SECTOR];
        g.encode(&mut s);
        assert_eq!(Geometry::decode(&s, g.total_sectors).unwrap(), g);
        assert!(Geometry::decode(&s, g.total_sectors - 1).is_err());
        s[40] ^= 1;
        assert!(Geometry::decode(&s, g.total_sectors).is_err());
    }

    #[test]
    fn an_image_of_another_format_version_is_refused_by_name() {
        let g = Geometry::new(64 * 1024 * 2, 256 * 1024, None, 42).unwrap();
        let mut s = [0u8; SECTOR];
        g.encode(&mut s);
        for v in [1, SB_VERSION + 1] {
            put_u32(&mut s, 8, v);
            let h = hash64(SB_HASH_SEED, &s[..504]);
            put_u64(&mut s, 504, h);
            assert_eq!(
                Geometry::decode(&s, g.total_sectors),
                Err(Error::Version { found: v, reads: SB_VERSION })
            );
        }
    }

    #[test]
    fn pointers_encode_length() {
        let p = ptr_make(12345, 8);
        assert_eq!((ptr_sector(p), ptr_len(p)), (12345, 8));
        let p = ptr_make(7, 1);
        assert_eq!((ptr_sector(p), ptr_len(p)), (7, 1));
    }

    #[test]
    fn rejects_tiny_or_odd_geometry() {
        assert!(Geometry::new(1000, 64 * 1024, None, 0).is_err());
        assert!(Geometry::new(1 << 20, 3000, None, 0).is_err());
    }
}
