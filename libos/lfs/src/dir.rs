//! Directory blocks and their in-memory hash index (no linear scans on lookup or insert).
//!
//! A directory's data blocks hold packed entries `ino u32 | kind u8 | name_len u8 | name`,
//! ended by a zero `ino` or the end of the block. In memory every block is kept, and an
//! open-addressing table maps a name's hash to (block, offset).
//!
//! Removing an entry only marks it dead in memory (kind byte [`DEAD`]); a block's dead
//! entries are squeezed out when it is next written ([`Dir::compact`], called by the
//! writer) or when an insert needs their room. So a run of removals costs one pass over
//! each block per commit instead of one per removal, and no dead entry ever reaches the
//! disk.

use crate::error::{Corruption, Error, Result};
use crate::hash::name_hash;
use crate::inode::Kind;
use crate::layout::{BLOCK, NAME_MAX};
use alloc::boxed::Box;
use alloc::vec;
use alloc::vec::Vec;
use exo_format::le::*;

/// Bytes before the name in an entry.
pub const ENTRY_HDR: usize = 6;
/// Largest directory, in blocks (16 MiB, several hundred thousand entries).
pub const MAX_DIR_BLOCKS: usize = 4096;
/// The kind byte of an entry removed in memory but not yet squeezed out (never on disk).
const DEAD: u8 = 0;

pub(crate) struct DirBlock {
    pub data: Box<[u8; BLOCK]>,
    pub used: u16,
    /// Bytes of `..used` held by dead entries.
    dead: u16,
    pub dirty: bool,
}

pub(crate) struct Dir {
    pub blocks: Vec<DirBlock>,
    index: Vec<u64>,
    pub count: u32,
    pub dirty: bool,
}

fn tag_of(name: &[u8]) -> u32 {
    (name_hash(name) >> 32) as u32
}

fn slot_value(tag: u32, block: usize, off: usize) -> u64 {
    ((tag as u64) << 32) | (((block + 1) as u64) << 12) | off as u64
}

fn slot_place(v: u64) -> (usize, usize) {
    ((((v >> 12) & 0xf_ffff) - 1) as usize, (v & 0xfff) as usize)
}

/// Whether `name` may be stored in a directory.
pub fn valid_name(name: &[u8]) -> Result<()> {
    if name.len() > NAME_MAX {
        return Err(Error::NameTooLong);
    }
    if name.is_empty() || name == b"." || name == b".." || name.iter().any(|&c| c == b'/' || c == 0) {
        return Err(Error::InvalidArgument);
    }
    Ok(())
}

impl Dir {
    pub fn new() -> Dir {
        Dir { blocks: Vec::new(), index: vec![0; 16], count: 0, dirty: false }
    }

    fn mask(&self) -> usize {
        self.index.len() - 1
    }

    fn name_at(&self, block: usize, off: usize) -> &[u8] {
        let d = &self.blocks[block].data;
        let n = d[off + 5] as usize;
        &d[off + ENTRY_HDR..off + ENTRY_HDR + n]
    }

    /// Finds `name`: (index slot, block, offset).
    fn find(&self, name: &[u8]) -> Option<(usize, usize, usize)> {
        let tag = tag_of(name);
        let mut i = tag as usize & self.mask();
        loop {
            let v = self.index[i];
            if v == 0 {
                return None;
            }
            if (v >> 32) as u32 == tag {
                let (b, off) = slot_place(v);
                if self.name_at(b, off) == name {
                    return Some((i, b, off));
                }
            }
            i = (i + 1) & self.mask();
        }
    }

    fn index_insert(&mut self, v: u64) {
        if (self.count as usize + 1) * 2 > self.index.len() {
            self.grow();
        }
        let mut i = (v >> 32) as usize & self.mask();
        while self.index[i] != 0 {
            i = (i + 1) & self.mask();
        }
        self.index[i] = v;
    }

    fn grow(&mut self) {
        let n = self.index.len() * 2;
        let old = core::mem::replace(&mut self.index, vec![0; n]);
        for v in old.into_iter().filter(|&v| v != 0) {
            let mut i = (v >> 32) as usize & self.mask();
            while self.index[i] != 0 {
                i = (i + 1) & self.mask();
            }
            self.index[i] = v;
        }
    }

    /// Empties slot `hole`, shifting later members of its probe run back.
    fn index_remove(&mut self, mut hole: usize) {
        let m = self.mask();
        self.index[hole] = 0;
        let mut j = hole;
        loop {
            j = (j + 1) & m;
            let v = self.index[j];
            if v == 0 {
                return;
            }
            let home = (v >> 32) as usize & m;
            // Move v into the hole unless its home lies cyclically in (hole, j].
            let stays = if hole <= j { home > hole && home <= j } else { home > hole || home <= j };
            if !stays {
                self.index[hole] = v;
                self.index[j] = 0;
                hole = j;
            }
        }
    }

    fn index_replace(&mut self, old: u64, new: u64) {
        let mut i = (old >> 32) as usize & self.mask();
        while self.index[i] != 0 {
            if self.index[i] == old {
                self.index[i] = new;
                return;
            }
            i = (i + 1) & self.mask();
        }
    }

    /// Adds a block read from disk, checking every entry. `dir_ino` names errors.
    pub fn push_block(&mut self, mut data: Box<[u8; BLOCK]>, dir_ino: u32) -> Result<()> {
        let bad = Error::Corrupt(Corruption::Directory(dir_ino));
        let b = self.blocks.len();
        if b >= MAX_DIR_BLOCKS {
            return Err(bad);
        }
        let mut off = 0;
        let mut found = Vec::new();
        while off + ENTRY_HDR <= BLOCK {
            let ino = get_u32(&data[..], off);
            if ino == 0 {
                break;
            }
            let n = data[off + 5] as usize;
            let name = data.get(off + ENTRY_HDR..off + ENTRY_HDR + n).ok_or(bad)?;
            if Kind::from_u8(data[off + 4]).is_none() || valid_name(name).is_err() {
                return Err(bad);
            }
            found.push(off);
            off += ENTRY_HDR + n;
        }
        data[off.min(BLOCK)..].fill(0);
        self.blocks.push(DirBlock { data, used: off as u16, dead: 0, dirty: false });
        for o in found {
            let name = self.name_at(b, o);
            if self.find(name).is_some() {
                return Err(bad);
            }
            let v = slot_value(tag_of(name), b, o);
            self.index_insert(v);
            self.count += 1;
        }
        Ok(())
    }

    /// Looks a name up: (inode number, kind).
    pub fn lookup(&self, name: &[u8]) -> Option<(u32, Kind)> {
        let (_, b, off) = self.find(name)?;
        Some(self.entry_at(b, off))
    }

    /// The inode number and kind of the entry at `off` in block `b`.
    fn entry_at(&self, b: usize, off: usize) -> (u32, Kind) {
        let d = &self.blocks[b].data;
        (get_u32(&d[..], off), Kind::from_u8(d[off + 4]).unwrap_or(Kind::File))
    }

    /// Adds an entry (the caller checked that the name is absent). Returns true when a
    /// block was added (the directory grew).
    pub fn insert(&mut self, name: &[u8], ino: u32, kind: Kind) -> Result<bool> {
        let need = ENTRY_HDR + name.len();
        let fits = |b: &DirBlock| (b.used - b.dead) as usize + need <= BLOCK;
        let mut grew = false;
        let b = match self.blocks.last() {
            Some(l) if fits(l) => self.blocks.len() - 1,
            _ => match self.blocks.iter().position(fits) {
                Some(b) => b,
                None => {
                    if self.blocks.len() >= MAX_DIR_BLOCKS {
                        return Err(Error::NoSpace);
                    }
                    self.blocks.push(DirBlock { data: Box::new([0; BLOCK]), used: 0, dead: 0, dirty: true });
                    grew = true;
                    self.blocks.len() - 1
                }
            },
        };
        if self.blocks[b].used as usize + need > BLOCK {
            self.compact(b);
        }
        let blk = &mut self.blocks[b];
        let off = blk.used as usize;
        put_u32(&mut blk.data[..], off, ino);
        blk.data[off + 4] = kind as u8;
        blk.data[off + 5] = name.len() as u8;
        blk.data[off + ENTRY_HDR..off + need].copy_from_slice(name);
        blk.used += need as u16;
        blk.dirty = true;
        self.dirty = true;
        self.index_insert(slot_value(tag_of(name), b, off));
        self.count += 1;
        Ok(grew)
    }

    /// Removes an entry; returns what it named. The entry stays in its block, dead, until
    /// the block is compacted.
    pub fn remove(&mut self, name: &[u8]) -> Option<(u32, Kind)> {
        let (slot, b, off) = self.find(name)?;
        let found = self.entry_at(b, off);
        self.index_remove(slot);
        self.count -= 1;
        let blk = &mut self.blocks[b];
        blk.data[off + 4] = DEAD;
        blk.dead += (ENTRY_HDR + name.len()) as u16;
        blk.dirty = true;
        self.dirty = true;
        Some(found)
    }

    /// Squeezes block `b`'s dead entries out, moving the live ones down (and their index
    /// slots with them). Returns the block's bytes in use: what is to be stored.
    pub fn compact(&mut self, b: usize) -> usize {
        let (used, dead) = (self.blocks[b].used as usize, self.blocks[b].dead);
        if dead == 0 {
            return used;
        }
        let (mut from, mut to) = (0, 0);
        while from < used {
            let d = &self.blocks[b].data;
            let len = ENTRY_HDR + d[from + 5] as usize;
            if d[from + 4] != DEAD {
                if to != from {
                    let tag = tag_of(self.name_at(b, from));
                    self.blocks[b].data.copy_within(from..from + len, to);
                    self.index_replace(slot_value(tag, b, from), slot_value(tag, b, to));
                }
                to += len;
            }
            from += len;
        }
        let blk = &mut self.blocks[b];
        blk.data[to..used].fill(0);
        blk.used = to as u16;
        blk.dead = 0;
        to
    }

    /// Calls `f(name, ino, kind)` for every entry, in on-disk order.
    pub fn for_each(&self, mut f: impl FnMut(&[u8], u32, Kind)) {
        for blk in &self.blocks {
            let mut off = 0;
            while off < blk.used as usize {
                let d = &blk.data;
                let n = d[off + 5] as usize;
                if let Some(kind) = Kind::from_u8(d[off + 4]) {
                    f(&d[off + ENTRY_HDR..off + ENTRY_HDR + n], get_u32(&d[..], off), kind);
                }
                off += ENTRY_HDR + n;
            }
        }
    }

    pub fn is_dirty(&self) -> bool {
        self.dirty
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::format;

    #[test]
    fn insert_lookup_remove_many() {
        let mut d = Dir::new();
        for i in 0..3000u32 {
            let n = format!("name-{i}");
            assert!(d.lookup(n.as_bytes()).is_none());
            d.insert(n.as_bytes(), i + 2, Kind::File).unwrap();
        }
        for i in (0..3000u32).step_by(3) {
            assert_eq!(d.remove(format!("name-{i}").as_bytes()), Some((i + 2, Kind::File)));
        }
        for i in 0..3000u32 {
            let got = d.lookup(format!("name-{i}").as_bytes());
            assert_eq!(got.is_some(), i % 3 != 0, "{i}");
            if let Some((ino, _)) = got {
                assert_eq!(ino, i + 2);
            }
        }
        assert_eq!(d.count, 2000);
        let mut seen = 0;
        d.for_each(|_, _, _| seen += 1);
        assert_eq!(seen, 2000);
    }

    /// 256 entries of 16 bytes: exactly one full block.
    fn full_block() -> Dir {
        let mut d = Dir::new();
        for i in 0..256u32 {
            d.insert(format!("entry-{i:04}").as_bytes(), i + 2, Kind::File).unwrap();
        }
        assert_eq!((d.blocks.len(), d.blocks[0].used as usize), (1, BLOCK));
        d
    }

    #[test]
    fn removed_entries_are_squeezed_out_by_compaction() {
        let mut d = full_block();
        for i in (0..256u32).step_by(2) {
            assert!(d.remove(format!("entry-{i:04}").as_bytes()).is_some());
        }
        assert!(d.remove(b"entry-0000").is_none());
        let mut listed = 0;
        d.for_each(|_, ino, _| {
            assert_eq!(ino % 2, 1, "a removed entry was listed");
            listed += 1;
        });
        assert_eq!(listed, 128);
        assert_eq!(d.compact(0), BLOCK / 2);
        for i in 0..256u32 {
            let got = d.lookup(format!("entry-{i:04}").as_bytes());
            assert_eq!(got, (i % 2 == 1).then_some((i + 2, Kind::File)), "{i}");
        }
        // What is stored holds exactly the survivors.
        let mut e = Dir::new();
        e.push_block(d.blocks[0].data.clone(), 1).unwrap();
        assert_eq!(e.count, 128);
        assert_eq!(e.lookup(b"entry-0255"), Some((257, Kind::File)));
    }

    #[test]
    fn an_insert_reuses_the_room_of_removed_entries() {
        let mut d = full_block();
        d.remove(b"entry-0007").unwrap();
        assert!(!d.insert(b"other-0001", 999, Kind::Dir).unwrap(), "the directory grew");
        assert_eq!((d.blocks.len(), d.blocks[0].used as usize), (1, BLOCK));
        assert_eq!(d.lookup(b"other-0001"), Some((999, Kind::Dir)));
        assert_eq!(d.lookup(b"entry-0008"), Some((10, Kind::File)));
        assert_eq!(d.lookup(b"entry-0007"), None);
    }

    #[test]
    fn reloaded_blocks_rebuild_the_index_and_refuse_duplicates() {
        let mut d = Dir::new();
        d.insert(b"a", 5, Kind::Dir).unwrap();
        d.insert(b"bb", 6, Kind::File).unwrap();
        let mut e = Dir::new();
        e.push_block(d.blocks[0].data.clone(), 1).unwrap();
        assert_eq!(e.lookup(b"a"), Some((5, Kind::Dir)));
        assert_eq!(e.lookup(b"bb"), Some((6, Kind::File)));
        let mut dup = d.blocks[0].data.clone();
        dup.copy_within(0..6, 7);
        dup[13] = b'a';
        assert!(Dir::new().push_block(dup, 1).is_err());
    }
}
