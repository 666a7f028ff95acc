//! The segment cleaner: cost-benefit selection (Rosenblum & Ousterhout) and relocation of
//! live blocks, checked block by block against the inode map and the block trees.

use crate::device::{BlockDevice, SECTOR};
use crate::error::{Error, Result};
use crate::fs::Fs;
use crate::inode::{tree_slot, Inode, Kind, MAX_BLOCKS};
use crate::layout::{iloc_make, ptr_make, INODES_PER_SECTOR, INODE_SIZE};
use crate::summary::{partial_segments, Entry, EntryKind};
use alloc::vec;
use alloc::vec::Vec;

/// What one explicit cleaning pass did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CleanReport {
    pub segments_cleaned: u32,
    pub free_segments: u32,
}

/// Most segments cleaned per round (each round ends with a checkpoint).
const ROUND_MAX: usize = 8;

impl<D: BlockDevice> Fs<D> {
    /// Cleans until a comfortable number of segments is free or no more progress is possible.
    pub fn clean(&mut self) -> Result<CleanReport> {
        self.writable()?;
        let before = self.stats.segments_cleaned;
        self.commit()?;
        self.checkpoint()?;
        let want = self.reserve_segs() * 2 + 4;
        for _ in 0..self.geo.nsegs {
            if self.usage.nfree as u64 >= want || self.clean_round(false)? == 0 {
                break;
            }
        }
        Ok(CleanReport {
            segments_cleaned: (self.stats.segments_cleaned - before) as u32,
            free_segments: self.usage.nfree,
        })
    }

    /// Cleans until the log has `need` sectors of room, or no progress is possible.
    pub(crate) fn clean_until(&mut self, need: u64) -> Result<()> {
        for _ in 0..self.geo.nsegs {
            if self.log_room() >= need || self.clean_round(true)? == 0 {
                break;
            }
        }
        Ok(())
    }

    /// One round if a worthwhile segment exists (used when free segments run low).
    pub(crate) fn clean_some(&mut self) -> Result<()> {
        if self.usage.pending(self.log.seg, self.log.next_seg) > 0 {
            return self.checkpoint();
        }
        self.clean_round(false).map(|_| ())
    }

    /// Picks segments by benefit/cost = (1 - u) * age / (1 + u), relocates their live
    /// blocks and checkpoints. Returns how many segments became free.
    fn clean_round(&mut self, desperate: bool) -> Result<u32> {
        self.commit()?;
        let seg_bytes = self.geo.seg_bytes();
        let now = self.log.serial;
        let mut cands: Vec<(u128, u32)> = Vec::new();
        for s in 0..self.geo.nsegs {
            let live = self.usage.live[s as usize] as u64;
            if s == self.log.seg || s == self.log.next_seg || self.usage.free[s as usize] || live == 0 {
                continue;
            }
            // Nearly full segments cost a segment to clean and give back almost nothing.
            let limit = if desperate { seg_bytes * 97 / 100 } else { seg_bytes * 9 / 10 };
            if live > limit {
                continue;
            }
            let age = now.saturating_sub(self.usage.age[s as usize]) as u128 + 1;
            let score = (seg_bytes - live) as u128 * age * 1024 / (seg_bytes + live) as u128;
            cands.push((score, s));
        }
        if cands.is_empty() {
            return Ok(0);
        }
        cands.sort_unstable_by(|a, b| b.cmp(a));
        // Live data copied forward must fit in the log with room left for the metadata.
        let margin = (self.geo.imap_blocks() as u64 * 9).min(self.geo.seg_sectors as u64) + 64;
        let mut budget = self.log_room().saturating_sub(margin) * SECTOR as u64;
        let mut picked = Vec::new();
        for &(_, s) in &cands {
            let cost = self.usage.live[s as usize] as u64 * 9 / 8 + 4096;
            if cost > budget || picked.len() == ROUND_MAX {
                break;
            }
            budget -= cost;
            picked.push(s);
        }
        if picked.is_empty() {
            return Ok(0);
        }
        for &s in &picked {
            self.clean_segment(s)?;
        }
        self.checkpoint()?;
        let freed = picked.iter().filter(|&&s| self.usage.free[s as usize]).count() as u32;
        self.stats.segments_cleaned += freed as u64;
        Ok(freed)
    }

    /// Reads a segment, walks its partial segments in order and relocates what is live.
    fn clean_segment(&mut self, seg: u32) -> Result<()> {
        let n = self.geo.seg_sectors;
        let start = self.geo.seg_start(seg);
        let mut buf = vec![0u8; n as usize * SECTOR];
        self.dev.read(start, &mut buf).map_err(Error::Io)?;
        for (pos, _, entries) in partial_segments(&buf, self.geo.fs_id) {
            let mut item = pos + 1;
            for e in entries {
                self.relocate(&e, start + item as u64, &buf[item as usize * SECTOR..])?;
                item += e.payload();
            }
        }
        Ok(())
    }

    /// Moves one item forward if it is still live; dead items are simply dropped.
    fn relocate(&mut self, e: &Entry, abs: u64, bytes: &[u8]) -> Result<()> {
        let ptr = match e.kind {
            EntryKind::Kill | EntryKind::Free => return Ok(()),
            _ => ptr_make(abs, e.sectors as u32),
        };
        match e.kind {
            EntryKind::Data => self.relocate_data(e, ptr, &bytes[..e.sectors as usize * SECTOR]),
            EntryKind::Indirect => {
                if self.live_inode(e.ino) && tree_slot(e.key).is_some_and(|t| t.1 >= e.level) {
                    if let Some(k) = self.node_if_at(e.ino, e.level, e.key, ptr)? {
                        self.mark_node_dirty(k);
                    }
                }
                Ok(())
            }
            EntryKind::Inodes => {
                for i in 0..e.sectors as usize * INODES_PER_SECTOR {
                    let Some(inode) = Inode::decode(&bytes[i * INODE_SIZE..(i + 1) * INODE_SIZE]) else {
                        continue;
                    };
                    let loc = iloc_make(abs + (i / INODES_PER_SECTOR) as u64, i % INODES_PER_SECTOR);
                    if self.imap.get(inode.ino) == loc && self.load_inode(inode.ino).is_ok() {
                        self.inodes.mark_dirty(inode.ino);
                    }
                }
                Ok(())
            }
            EntryKind::Imap => {
                if self.imap.ptrs.get(e.ino as usize) == Some(&ptr) {
                    self.imap.mark(e.ino as usize);
                }
                Ok(())
            }
            EntryKind::Kill | EntryKind::Free => Ok(()),
        }
    }

    /// Whether inode `ino` exists and can be read (a damaged one is left where it is).
    fn live_inode(&mut self, ino: u32) -> bool {
        ino < self.imap.max && self.imap.get(ino) != 0 && self.load_inode(ino).is_ok()
    }

    fn relocate_data(&mut self, e: &Entry, ptr: u64, bytes: &[u8]) -> Result<()> {
        if e.key >= MAX_BLOCKS || !self.live_inode(e.ino) || self.block_ptr(e.ino, e.key)? != ptr {
            return Ok(());
        }
        let c = self.inodes.get_mut(e.ino).ok_or(Error::Failed)?;
        if c.inode.kind == Kind::Dir {
            if let Some(d) = c.dir.as_deref_mut() {
                // The cached directory writes its current copy of the block.
                if let Some(b) = d.blocks.get_mut(e.key as usize) {
                    b.dirty = true;
                    if !d.dirty {
                        d.dirty = true;
                        self.dirty_dirs.push(e.ino);
                    }
                    return Ok(());
                }
            }
        }
        let n = e.sectors as u32;
        let (new, rel) = self.append(Entry {
            kind: EntryKind::Data,
            sectors: e.sectors,
            level: 0,
            ino: e.ino,
            key: e.key,
        })?;
        let at = rel as usize * SECTOR;
        self.log.buf[at..at + bytes.len()].copy_from_slice(bytes);
        self.set_block_ptr(e.ino, e.key, ptr_make(new, n))?;
        self.kill_ptr(ptr)?;
        self.stats.cleaner_sectors += n as u64;
        Ok(())
    }
}
