//! File data: read, write at an offset, truncate. Small writes go into the segment buffer,
//! runs of whole blocks straight to the disk (direct partial segments).

use crate::device::{BlockDevice, SECTOR};
use crate::error::{Corruption, Error, Result};
use crate::fs::{Fs, Handle};
use crate::inode::{Kind, MAX_BLOCKS, NDIRECT};
use crate::layout::{ptr_len, ptr_make, ptr_sector, BLOCK};
use crate::summary::{Entry, EntryKind};

/// Largest file size in bytes.
pub const MAX_FILE: u64 = MAX_BLOCKS * BLOCK as u64;
/// Most blocks one read of adjacent blocks moves (1 MiB).
const MAX_RUN: usize = 256;
/// Whole blocks a write must cover, at least, to go to the disk straight from the caller's
/// buffer as a direct partial segment (16 KiB): fewer are copied into the segment buffer.
const DIRECT_MIN: u64 = 4;

impl<D: BlockDevice> Fs<D> {
    fn file_handle(&mut self, h: Handle) -> Result<u64> {
        // The common case, the handle's inode cached: one look-up (`open_handle` loads it).
        let c = match self.inodes.get(h.ino) {
            Some(c) if c.inode.gen == h.gen => c,
            _ => &*self.open_handle(h)?,
        };
        if c.inode.kind == Kind::Dir {
            return Err(Error::IsDir);
        }
        Ok(c.inode.size)
    }

    /// Reads up to `buf.len()` bytes at `off`; returns how many (0 at or past the end).
    #[inline(always)]
    pub fn read(&mut self, h: Handle, off: u64, buf: &mut [u8]) -> Result<usize> {
        // The common read first, inlined into the caller: one aligned block of a file whose
        // inode is cached, found without a walk and stored whole in the log. Anything else,
        // and every error, is the general path's.
        if let Some(p) = self.cached_block(h, off, buf.len()) {
            self.read_log_inline(ptr_sector(p), &mut buf[..BLOCK])?;
            return Ok(BLOCK);
        }
        self.read_any(h, off, buf)
    }

    /// The pointer of the block a read of `len` bytes at `off` covers exactly, when that
    /// read is one aligned block (what [`Fs::read_any`] would read with one `read_log`):
    /// the handle's inode cached with its generation, not a directory, the block below
    /// its size, its pointer a direct one or one the memo holds, and the block stored in
    /// full in the log. `None` when any of that does not hold.
    #[inline(always)]
    fn cached_block(&self, h: Handle, off: u64, len: usize) -> Option<u64> {
        let i = &self.inodes.get(h.ino)?.inode;
        if i.gen != h.gen || i.kind == Kind::Dir || off >= i.size || !off.is_multiple_of(BLOCK as u64) {
            return None;
        }
        if (i.size - off).min(len as u64) != BLOCK as u64 {
            return None;
        }
        let blk = off / BLOCK as u64;
        let p = if blk < NDIRECT as u64 { i.ptr[blk as usize] } else { self.nodes.recall(h.ino, blk)? };
        self.whole(p).then_some(p)
    }

    /// [`Fs::read`] in general: any length and offset, a handle whose inode is not cached.
    #[inline(never)]
    fn read_any(&mut self, h: Handle, off: u64, buf: &mut [u8]) -> Result<usize> {
        let size = self.file_handle(h)?;
        if off >= size {
            return Ok(0);
        }
        let n = (size - off).min(buf.len() as u64) as usize;
        let mut done = 0;
        let mut next = None;
        if n == BLOCK && off.is_multiple_of(BLOCK as u64) {
            // One aligned block (a page's worth, the common read): no run to look for.
            let p = self.block_ptr(h.ino, off / BLOCK as u64)?;
            if self.whole(p) {
                self.read_log(ptr_sector(p), &mut buf[..BLOCK])?;
                return Ok(BLOCK);
            }
            next = Some(p);
        }
        while done < n {
            let pos = off + done as u64;
            let blk = pos / BLOCK as u64;
            let lo = (pos % BLOCK as u64) as usize;
            let hi = (lo + (n - done)).min(BLOCK);
            let p = match next.take() {
                Some(p) => p,
                None => self.block_ptr(h.ino, blk)?,
            };
            if lo == 0 && hi == BLOCK && self.whole(p) {
                // Whole blocks stored in full, one after another in the log (as a sequential
                // write leaves them): one device read, straight into the caller's buffer.
                let want = ((n - done) / BLOCK).min(MAX_RUN);
                let mut run = 1;
                'run: while run < want {
                    let mut ptrs = [0u64; 32];
                    let got = self.block_ptrs(h.ino, blk + run as u64, &mut ptrs[..(want - run).min(32)])?;
                    for &q in &ptrs[..got] {
                        // The next block in the log (its pointer checked with the run's last).
                        if q != ptr_make(ptr_sector(p) + (run * 8) as u64, 8) {
                            next = Some(q);
                            break 'run;
                        }
                        run += 1;
                    }
                }
                // The first and the last block lie in the log, and so every one between.
                let last = ptr_make(ptr_sector(p) + ((run - 1) * 8) as u64, 8);
                if run > 1
                    && (!self.geo.ptr_ok(last)
                        || self.geo.seg_of(ptr_sector(p)) != self.geo.seg_of(ptr_sector(last)))
                {
                    return Err(Error::Corrupt(Corruption::BlockPointer(h.ino)));
                }
                self.read_log(ptr_sector(p), &mut buf[done..done + run * BLOCK])?;
                done += run * BLOCK;
                continue;
            }
            let dst = &mut buf[done..done + hi - lo];
            self.read_block_part(h.ino, p, lo, dst)?;
            done += hi - lo;
        }
        Ok(n)
    }

    /// Whether `p` names a block stored in full (all eight sectors) inside the log.
    #[inline(always)]
    fn whole(&self, p: u64) -> bool {
        p != 0 && ptr_len(p) == 8 && self.geo.ptr_ok(p)
    }

    /// Copies bytes `lo..lo + dst.len()` of the block at `p` into `dst`.
    fn read_block_part(&mut self, ino: u32, p: u64, lo: usize, dst: &mut [u8]) -> Result<()> {
        if p == 0 {
            dst.fill(0);
            return Ok(());
        }
        if !self.geo.ptr_ok(p) {
            return Err(Error::Corrupt(Corruption::BlockPointer(ino)));
        }
        let stored = ptr_len(p) as usize * SECTOR;
        let hi = lo + dst.len();
        let end = hi.min(stored);
        if lo >= end {
            dst.fill(0);
            return Ok(());
        }
        let (head, tail) = dst.split_at_mut(end - lo);
        tail.fill(0);
        if lo.is_multiple_of(SECTOR) && end.is_multiple_of(SECTOR) {
            return self.read_log(ptr_sector(p) + (lo / SECTOR) as u64, head);
        }
        let s0 = lo / SECTOR;
        let s1 = end.div_ceil(SECTOR);
        let mut tmp = [0u8; BLOCK];
        self.read_log(ptr_sector(p) + s0 as u64, &mut tmp[..(s1 - s0) * SECTOR])?;
        let from = lo - s0 * SECTOR;
        head.copy_from_slice(&tmp[from..from + head.len()]);
        Ok(())
    }

    /// Writes `data` at `off`, extending the file (with a hole) if needed.
    pub fn write(&mut self, h: Handle, off: u64, data: &[u8]) -> Result<usize> {
        self.writable()?;
        let size = self.file_handle(h)?;
        let end = off.checked_add(data.len() as u64).filter(|&e| e <= MAX_FILE).ok_or(Error::FileTooBig)?;
        if data.is_empty() {
            return Ok(0);
        }
        self.reserve(end.saturating_sub(size.max(off)) + data.len() as u64, data.len() as u64, false)?;
        self.file_handle(h)?;
        let new_size = size.max(end);
        // Blocks from here on lie wholly past the old end: none is stored (truncation frees
        // them), so they need no look-up before being set.
        let past_end = size.div_ceil(BLOCK as u64);
        let mut pos = off;
        // Once a run of whole blocks has started going out direct, its rest does too (a
        // segment's end may split it into a short tail).
        let mut direct = false;
        while pos < end {
            let blk = pos / BLOCK as u64;
            let bstart = blk * BLOCK as u64;
            let whole = (end - pos) / BLOCK as u64;
            if pos == bstart && (whole >= DIRECT_MIN || direct && whole > 0) {
                direct = true;
                let from = (pos - off) as usize;
                let n = self.write_direct(h.ino, blk, &data[from..from + whole as usize * BLOCK])?;
                pos += (n * BLOCK) as u64;
                continue;
            }
            let lo = (pos - bstart) as usize;
            let hi = ((end - bstart) as usize).min(BLOCK);
            let keep = ((new_size - bstart) as usize).min(BLOCK);
            let src = &data[(pos - off) as usize..(bstart + hi as u64 - off) as usize];
            self.write_block(h.ino, blk, lo, src, keep, blk >= past_end)?;
            pos = bstart + hi as u64;
        }
        self.stats.user_sectors += (data.len() as u64).div_ceil(SECTOR as u64);
        let now = self.now();
        let c = self.inodes.get_mut(h.ino).ok_or(Error::Failed)?;
        c.inode.size = new_size;
        c.inode.mtime = now;
        c.inode.ctime = crate::attr::next_ctime(c.inode.ctime, now);
        self.inodes.mark_dirty(h.ino);
        self.after_op()?;
        Ok(data.len())
    }

    /// Puts `src` at byte `lo` of file block `blk`, whose stored part must cover `keep`
    /// bytes (the rest of the block lies past the end of the file). `past_end`: the block
    /// lies wholly past the file's old end, so it holds nothing yet.
    fn write_block(
        &mut self,
        ino: u32,
        blk: u64,
        lo: usize,
        src: &[u8],
        keep: usize,
        past_end: bool,
    ) -> Result<()> {
        let hi = lo + src.len();
        let nsec = keep.div_ceil(SECTOR) as u32;
        let old = if past_end { 0 } else { self.block_ptr(ino, blk)? };
        if old != 0 && !self.geo.ptr_ok(old) {
            return Err(Error::Corrupt(Corruption::BlockPointer(ino)));
        }
        let seg_start = self.geo.seg_start(self.log.seg);
        // Rewrite in place when the old copy is still unwritten and long enough.
        if old != 0 && self.in_open_ps(ptr_sector(old)) && ptr_len(old) >= nsec {
            let at = (ptr_sector(old) - seg_start) as usize * SECTOR;
            self.log.buf[at + lo..at + hi].copy_from_slice(src);
            return Ok(());
        }
        let e = Entry { kind: EntryKind::Data, sectors: nsec as u8, level: 0, ino, key: blk };
        let (abs, rel) = self.append(e)?;
        let at = rel as usize * SECTOR;
        let n = nsec as usize * SECTOR;
        let whole = lo == 0 && hi >= keep;
        if !whole {
            // Bring the old bytes around the written range along.
            let mut tmp = [0u8; BLOCK];
            self.read_block_part(ino, old, 0, &mut tmp[..n])?;
            self.log.buf[at..at + n].copy_from_slice(&tmp[..n]);
        } else {
            self.log.buf[at + hi..at + n].fill(0);
        }
        self.log.buf[at + lo..at + hi].copy_from_slice(src);
        let was = self.set_block_ptr(ino, blk, ptr_make(abs, nsec))?;
        // `was` is `old`, except past the end of a damaged file: a stray pointer there that
        // names no block of the log is dropped without a kill.
        if was != 0 && !self.geo.ptr_ok(was) {
            return Ok(());
        }
        self.kill_ptr(was)
    }

    /// Sets the file's size: shrinking frees blocks and zeroes the tail of the last one;
    /// growing leaves a hole.
    pub fn truncate(&mut self, h: Handle, size: u64) -> Result<()> {
        self.writable()?;
        let old = self.file_handle(h)?;
        if size > MAX_FILE {
            return Err(Error::FileTooBig);
        }
        self.reserve(0, 0, true)?;
        self.file_handle(h)?;
        if size < old {
            self.truncate_tree(h.ino, size.div_ceil(BLOCK as u64))?;
            let tail = (size % BLOCK as u64) as usize;
            let blk = size / BLOCK as u64;
            if tail != 0 {
                let p = self.block_ptr(h.ino, blk)?;
                if p != 0 && ptr_len(p) as usize * SECTOR > tail {
                    // Re-store the block cut at the new end so no stale byte survives it.
                    let mut tmp = [0u8; BLOCK];
                    self.read_block_part(h.ino, p, 0, &mut tmp[..tail])?;
                    self.set_block_ptr(h.ino, blk, 0)?;
                    self.kill_ptr(p)?;
                    self.write_block(h.ino, blk, 0, &tmp[..tail], tail, false)?;
                }
            }
        }
        let now = self.now();
        let c = self.inodes.get_mut(h.ino).ok_or(Error::Failed)?;
        c.inode.size = size;
        c.inode.mtime = now;
        c.inode.ctime = crate::attr::next_ctime(c.inode.ctime, now);
        self.inodes.mark_dirty(h.ino);
        self.after_op()
    }
}
