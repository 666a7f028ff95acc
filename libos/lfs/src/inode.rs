//! The 128-byte on-disk inode and the shape of its block tree.

use crate::layout::INODE_SIZE;
use exo_format::le::*;

/// Direct block pointers in an inode.
pub const NDIRECT: usize = 6;
/// Pointers per indirect block.
pub const FANOUT: u64 = 512;
/// Pointer slots: six direct, then single, double and triple indirect.
pub const NPTR: usize = 9;
/// File blocks addressable through the tree.
pub const MAX_BLOCKS: u64 = NDIRECT as u64 + FANOUT + FANOUT * FANOUT + FANOUT * FANOUT * FANOUT;

/// What an inode is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    File = 1,
    Dir = 2,
}

impl Kind {
    pub fn from_u8(v: u8) -> Option<Kind> {
        match v {
            1 => Some(Kind::File),
            2 => Some(Kind::Dir),
            _ => None,
        }
    }
}

/// An inode as held in memory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Inode {
    pub kind: Kind,
    pub ino: u32,
    /// Changes whenever an inode number is reused; handles carry it.
    pub gen: u32,
    /// Permission bits, opaque to the file system.
    pub mode: u32,
    pub size: u64,
    /// Last data change, nanoseconds since the caller's epoch.
    pub mtime: i64,
    /// Last data or metadata change.
    pub ctime: i64,
    /// Creation.
    pub btime: i64,
    /// For a directory, the directory that holds it (the root holds itself).
    pub parent: u32,
    pub ptr: [u64; NPTR],
}

impl Inode {
    pub fn new(kind: Kind, ino: u32, gen: u32, parent: u32, now: i64) -> Inode {
        Inode {
            kind,
            ino,
            gen,
            mode: 0o644,
            size: 0,
            mtime: now,
            ctime: now,
            btime: now,
            parent,
            ptr: [0; NPTR],
        }
    }

    /// Writes the inode into a 128-byte slot.
    pub fn encode(&self, b: &mut [u8]) {
        b[..INODE_SIZE].fill(0);
        b[0] = self.kind as u8;
        put_u32(b, 4, self.ino);
        put_u32(b, 8, self.gen);
        put_u32(b, 12, self.mode);
        put_u64(b, 16, self.size);
        put_u64(b, 24, self.mtime as u64);
        put_u64(b, 32, self.ctime as u64);
        put_u64(b, 40, self.btime as u64);
        put_u32(b, 48, self.parent);
        for (i, p) in self.ptr.iter().enumerate() {
            put_u64(b, 56 + 8 * i, *p);
        }
    }

    /// Reads a 128-byte slot; `None` for an empty or malformed slot.
    pub fn decode(b: &[u8]) -> Option<Inode> {
        let kind = Kind::from_u8(b[0])?;
        if b[1] != 0 || get_u16(b, 2) != 0 || get_u32(b, 52) != 0 {
            return None;
        }
        let mut ptr = [0u64; NPTR];
        for (i, p) in ptr.iter_mut().enumerate() {
            *p = get_u64(b, 56 + 8 * i);
        }
        let ino = get_u32(b, 4);
        let size = get_u64(b, 16);
        if ino == 0 || size > MAX_BLOCKS * 4096 {
            return None;
        }
        Some(Inode {
            kind,
            ino,
            gen: get_u32(b, 8),
            mode: get_u32(b, 12),
            size,
            mtime: get_u64(b, 24) as i64,
            ctime: get_u64(b, 32) as i64,
            btime: get_u64(b, 40) as i64,
            parent: get_u32(b, 48),
            ptr,
        })
    }
}

/// Where file block `blk` hangs in the tree: the inode slot, the depth below it (0 = the
/// slot points at data), and the first file block that slot's subtree covers.
pub fn tree_slot(blk: u64) -> Option<(usize, u8, u64)> {
    if blk < NDIRECT as u64 {
        return Some((blk as usize, 0, blk));
    }
    let mut base = NDIRECT as u64;
    let mut span = FANOUT;
    for depth in 1..=3u8 {
        if blk < base + span {
            return Some((NDIRECT + depth as usize - 1, depth, base));
        }
        base += span;
        span *= FANOUT;
    }
    None
}

/// File blocks covered by one pointer of a node at `level` (level 1 entries are data blocks).
pub fn span(level: u8) -> u64 {
    FANOUT.pow(level as u32 - 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inode_round_trips() {
        let mut i = Inode::new(Kind::Dir, 77, 3, 1, -5);
        i.size = 123456;
        i.ptr[8] = 0xdead;
        let mut b = [0u8; 128];
        i.encode(&mut b);
        assert_eq!(Inode::decode(&b), Some(i));
        assert_eq!(Inode::decode(&[0u8; 128]), None);
    }

    #[test]
    fn tree_slots_cover_every_level() {
        assert_eq!(tree_slot(0), Some((0, 0, 0)));
        assert_eq!(tree_slot(5), Some((5, 0, 5)));
        assert_eq!(tree_slot(6), Some((6, 1, 6)));
        assert_eq!(tree_slot(517), Some((6, 1, 6)));
        assert_eq!(tree_slot(518), Some((7, 2, 518)));
        assert_eq!(tree_slot(MAX_BLOCKS - 1).map(|t| t.1), Some(3));
        assert_eq!(tree_slot(MAX_BLOCKS), None);
    }
}
