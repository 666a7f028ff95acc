//! Reading inodes into the cache, and loading and writing back directories.

use crate::device::{BlockDevice, SECTOR};
use crate::dir::{Dir, MAX_DIR_BLOCKS};
use crate::error::{Corruption, Error, Result};
use crate::fs::{Fs, Handle};
use crate::icache::Cached;
use crate::imap::UNWRITTEN;
use crate::inode::{Inode, Kind};
use crate::layout::{ptr_len, ptr_make, ptr_sector, BLOCK, INODE_SIZE};
use crate::summary::{Entry, EntryKind};
use alloc::boxed::Box;

impl<D: BlockDevice> Fs<D> {
    /// Makes sure inode `ino` is cached.
    pub(crate) fn load_inode(&mut self, ino: u32) -> Result<()> {
        if self.inodes.get(ino).is_some() {
            return Ok(());
        }
        if ino == 0 || ino >= self.imap.max {
            return Err(Error::NotFound);
        }
        let v = self.imap.get(ino);
        if v == 0 {
            return Err(Error::NotFound);
        }
        let bad = Error::Corrupt(Corruption::Inode(ino));
        if v == UNWRITTEN {
            return Err(bad);
        }
        let (sector, slot) = self.geo.iloc(v).ok_or(bad)?;
        let mut s = [0u8; SECTOR];
        self.read_inode_sector(sector, &mut s)?;
        let inode = Inode::decode(&s[slot * INODE_SIZE..(slot + 1) * INODE_SIZE])
            .filter(|i| i.ino == ino)
            .ok_or(bad)?;
        self.inodes.insert(Cached { inode, dirty: false, dir: None });
        Ok(())
    }

    /// Reads one sector of inodes through a one-block read-ahead window: inodes written
    /// together are read together.
    fn read_inode_sector(&mut self, sector: u64, out: &mut [u8; SECTOR]) -> Result<()> {
        let start = self.geo.seg_start(self.log.seg);
        if sector >= start + self.log.mem_from as u64 && sector < start + self.log.fill as u64 {
            return self.read_log(sector, out);
        }
        if let Some((w, data)) = &self.ichunk {
            if sector >= *w && sector < *w + 8 {
                let at = (sector - w) as usize * SECTOR;
                out.copy_from_slice(&data[at..at + SECTOR]);
                return Ok(());
            }
        }
        let w = sector & !7;
        if w + 8 > self.geo.total_sectors
            || (w < start + self.log.fill as u64 && w + 8 > start + self.log.mem_from as u64)
        {
            return self.read_log(sector, out);
        }
        let mut data = match self.ichunk.take() {
            Some((_, d)) => d,
            None => Box::new([0u8; BLOCK]),
        };
        self.dev.read(w, &mut data[..]).map_err(Error::Io)?;
        let at = (sector - w) as usize * SECTOR;
        out.copy_from_slice(&data[at..at + SECTOR]);
        self.ichunk = Some((w, data));
        Ok(())
    }

    /// Checks a handle and caches its inode.
    pub(crate) fn open_handle(&mut self, h: Handle) -> Result<&mut Cached> {
        match self.load_inode(h.ino) {
            Ok(()) => {}
            Err(Error::NotFound) => return Err(Error::Stale),
            Err(e) => return Err(e),
        }
        let c = self.inodes.get_mut(h.ino).ok_or(Error::Failed)?;
        if c.inode.gen != h.gen {
            return Err(Error::Stale);
        }
        Ok(c)
    }

    /// Makes sure directory `ino` is cached with its blocks and index.
    pub(crate) fn load_dir(&mut self, ino: u32) -> Result<()> {
        self.load_inode(ino)?;
        let c = self.inodes.get(ino).ok_or(Error::Failed)?;
        if c.inode.kind != Kind::Dir {
            return Err(Error::NotDir);
        }
        if c.dir.is_some() {
            return Ok(());
        }
        let size = c.inode.size;
        let bad = Error::Corrupt(Corruption::Directory(ino));
        if size % BLOCK as u64 != 0 || size / BLOCK as u64 > MAX_DIR_BLOCKS as u64 {
            return Err(bad);
        }
        let mut dir = Box::new(Dir::new());
        for b in 0..size / BLOCK as u64 {
            let p = self.block_ptr(ino, b)?;
            let mut data = Box::new([0u8; BLOCK]);
            if p != 0 {
                if !self.geo.ptr_ok(p) {
                    return Err(bad);
                }
                self.read_log(ptr_sector(p), &mut data[..ptr_len(p) as usize * SECTOR])?;
            }
            dir.push_block(data, ino)?;
        }
        if let Some(c) = self.inodes.get_mut(ino) {
            c.dir = Some(dir);
        }
        Ok(())
    }

    /// The loaded directory `ino` (call `load_dir` first).
    pub(crate) fn dir(&mut self, ino: u32) -> Result<&mut Dir> {
        self.inodes.get_mut(ino).and_then(|c| c.dir.as_deref_mut()).ok_or(Error::Failed)
    }

    /// Adds an entry to directory `dir` and stamps it.
    pub(crate) fn dir_add(&mut self, dir: u32, name: &[u8], ino: u32, kind: Kind) -> Result<()> {
        let now = self.now();
        let was_dirty = self.dir(dir)?.dirty;
        let grew = self.dir(dir)?.insert(name, ino, kind)?;
        if !was_dirty {
            self.dirty_dirs.push(dir);
        }
        let c = self.inodes.get_mut(dir).ok_or(Error::Failed)?;
        if grew {
            c.inode.size += BLOCK as u64;
        }
        c.inode.mtime = now;
        c.inode.ctime = now;
        self.inodes.mark_dirty(dir);
        Ok(())
    }

    /// Removes an entry from directory `dir` and stamps it.
    pub(crate) fn dir_del(&mut self, dir: u32, name: &[u8]) -> Result<()> {
        let now = self.now();
        let was_dirty = self.dir(dir)?.dirty;
        self.dir(dir)?.remove(name).ok_or(Error::NotFound)?;
        if !was_dirty {
            self.dirty_dirs.push(dir);
        }
        let c = self.inodes.get_mut(dir).ok_or(Error::Failed)?;
        c.inode.mtime = now;
        c.inode.ctime = now;
        self.inodes.mark_dirty(dir);
        Ok(())
    }

    /// Writes the dirty blocks of every dirty directory into the log.
    pub(crate) fn write_dirs(&mut self) -> Result<()> {
        let dirs = core::mem::take(&mut self.dirty_dirs);
        for ino in dirs {
            let nblocks = match self.inodes.get_mut(ino).and_then(|c| c.dir.as_deref_mut()) {
                Some(d) if d.dirty => {
                    d.dirty = false;
                    d.blocks.len()
                }
                _ => continue,
            };
            for b in 0..nblocks {
                let d = self.dir(ino)?;
                let used = match d.blocks.get_mut(b) {
                    Some(blk) if blk.dirty => {
                        blk.dirty = false;
                        d.compact(b)
                    }
                    _ => continue,
                };
                let new = if used == 0 {
                    0
                } else {
                    let sectors = used.div_ceil(SECTOR) as u32;
                    let e =
                        Entry { kind: EntryKind::Data, sectors: sectors as u8, level: 0, ino, key: b as u64 };
                    let (abs, rel) = self.append(e)?;
                    let at = rel as usize * SECTOR;
                    let n = sectors as usize * SECTOR;
                    let src = self.inodes.get(ino).and_then(|c| c.dir.as_deref()).ok_or(Error::Failed)?;
                    self.log.buf[at..at + n].copy_from_slice(&src.blocks[b].data[..n]);
                    ptr_make(abs, sectors)
                };
                let old = self.set_block_ptr(ino, b as u64, new)?;
                self.kill_ptr(old)?;
            }
        }
        Ok(())
    }
}
