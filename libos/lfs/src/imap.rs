//! The inode map: inode number → where the newest copy of the inode lives in the log.

use crate::device::{BlockDevice, SECTOR};
use crate::error::{Corruption, Error, Result};
use crate::fs::Fs;
use crate::layout::{ptr_len, ptr_make, ptr_sector, BLOCK, IMAP_PER_BLOCK, ROOT_INO};
use crate::summary::{Entry, EntryKind};
use alloc::vec;
use alloc::vec::Vec;
use exo_format::le::*;

/// Value of an entry allocated in memory whose inode has not been written yet.
pub const UNWRITTEN: u64 = 1;

pub(crate) struct Imap {
    /// One value per inode number (0 free, [`UNWRITTEN`], or a location).
    pub entries: Vec<u64>,
    /// Log pointer of each inode-map block, as of the last checkpoint (or after it).
    pub ptrs: Vec<u64>,
    pub dirty: Vec<bool>,
    pub used: u32,
    pub max: u32,
    /// How many entries of `dirty` are set.
    pub ndirty: u32,
    hint: u32,
}

impl Imap {
    pub fn new(ptrs: Vec<u64>, max: u32) -> Imap {
        let n = ptrs.len();
        Imap { entries: Vec::new(), ptrs, dirty: vec![false; n], used: 0, max, ndirty: 0, hint: ROOT_INO + 1 }
    }

    pub fn get(&self, ino: u32) -> u64 {
        self.entries.get(ino as usize).copied().unwrap_or(0)
    }

    pub fn set(&mut self, ino: u32, v: u64) {
        let i = ino as usize;
        if i >= self.entries.len() {
            let blocks = i / IMAP_PER_BLOCK as usize + 1;
            self.entries.resize(blocks * IMAP_PER_BLOCK as usize, 0);
        }
        let old = self.entries[i];
        self.used = self.used + (v != 0) as u32 - (old != 0) as u32;
        if old == 0 && v == 0 {
            return;
        }
        self.entries[i] = v;
        self.mark(i / IMAP_PER_BLOCK as usize);
        if v == 0 && ino < self.hint {
            self.hint = ino;
        }
    }

    /// Marks inode-map block `b` for writing at the next checkpoint.
    pub fn mark(&mut self, b: usize) {
        if !self.dirty[b] {
            self.dirty[b] = true;
            self.ndirty += 1;
        }
    }

    /// Finds a free inode number.
    pub fn alloc(&mut self) -> Option<u32> {
        let start = self.hint.max(ROOT_INO + 1);
        for ino in (start..self.max).chain(ROOT_INO + 1..start) {
            if self.get(ino) == 0 {
                self.hint = ino + 1;
                return Some(ino);
            }
        }
        None
    }
}

impl<D: BlockDevice> Fs<D> {
    /// Reads every inode-map block the checkpoint names. Refuses impossible entries.
    pub(crate) fn load_imap(&mut self) -> Result<()> {
        let last = self.imap.ptrs.iter().rposition(|&p| p != 0);
        let Some(last) = last else { return Ok(()) };
        self.imap.entries = vec![0; (last + 1) * IMAP_PER_BLOCK as usize];
        let mut block = vec![0u8; BLOCK];
        let mut used = 0;
        for b in 0..=last {
            let p = self.imap.ptrs[b];
            if p == 0 {
                continue;
            }
            block.fill(0);
            let n = ptr_len(p) as usize * SECTOR;
            self.read_log(ptr_sector(p), &mut block[..n])?;
            for i in 0..IMAP_PER_BLOCK as usize {
                let v = get_u64(&block, i * 8);
                let ino = b * IMAP_PER_BLOCK as usize + i;
                if v != 0 && (ino == 0 || self.geo.iloc(v).is_none()) {
                    return Err(Error::Corrupt(Corruption::Imap));
                }
                used += (v != 0) as u32;
                self.imap.entries[ino] = v;
            }
        }
        self.imap.used = used;
        Ok(())
    }

    /// Writes the dirty inode-map blocks into the log (part of a checkpoint).
    pub(crate) fn write_imap(&mut self) -> Result<()> {
        for b in 0..self.imap.dirty.len() {
            if !self.imap.dirty[b] {
                continue;
            }
            self.imap.dirty[b] = false;
            self.imap.ndirty -= 1;
            let lo = b * IMAP_PER_BLOCK as usize;
            let hi = (lo + IMAP_PER_BLOCK as usize).min(self.imap.entries.len());
            let live = self
                .imap
                .entries
                .get(lo..hi)
                .map_or(0, |s| s.iter().rposition(|&v| v != 0).map_or(0, |i| i + 1));
            let old = self.imap.ptrs[b];
            self.kill_ptr(old)?;
            if live == 0 {
                self.imap.ptrs[b] = 0;
                continue;
            }
            let sectors = (live * 8).div_ceil(SECTOR) as u32;
            let e = Entry { kind: EntryKind::Imap, sectors: sectors as u8, level: 0, ino: b as u32, key: 0 };
            let (abs, rel) = self.append(e)?;
            let at = rel as usize * SECTOR;
            let out = &mut self.log.buf[at..at + sectors as usize * SECTOR];
            out.fill(0);
            for (i, v) in self.imap.entries[lo..lo + live].iter().enumerate() {
                put_u64(out, i * 8, *v);
            }
            self.imap.ptrs[b] = ptr_make(abs, sectors);
        }
        Ok(())
    }
}
