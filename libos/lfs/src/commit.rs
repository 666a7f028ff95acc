//! Commit (an atomic group ends on disk), sync, checkpoint, and the space reserve that keeps
//! the cleaner able to work on a full disk.

use crate::checkpoint::Checkpoint;
use crate::device::{BlockDevice, SECTOR};
use crate::error::{Error, Result};
use crate::fs::Fs;
use crate::layout::{iloc_make, INODES_PER_SECTOR, INODE_SIZE};
use crate::summary::{Entry, EntryKind};
use alloc::vec::Vec;

/// Inodes per inode item (one 4 KiB block's worth).
const INODES_PER_ITEM: usize = 32;

impl<D: BlockDevice> Fs<D> {
    /// Packs every dirty inode into inode items and points the inode map at them.
    fn write_inodes(&mut self) -> Result<()> {
        let list: Vec<u32> = core::mem::take(&mut self.inodes.dirty)
            .into_iter()
            .filter(|&ino| match self.inodes.get_mut(ino) {
                Some(c) if c.dirty => {
                    c.dirty = false;
                    true
                }
                _ => false,
            })
            .collect();
        for group in list.chunks(INODES_PER_ITEM) {
            let sectors = group.len().div_ceil(INODES_PER_SECTOR);
            let e = Entry {
                kind: EntryKind::Inodes,
                sectors: sectors as u8,
                level: 0,
                ino: group.len() as u32,
                key: 0,
            };
            let (abs, rel) = self.append(e)?;
            let at = rel as usize * SECTOR;
            self.log.buf[at..at + sectors * SECTOR].fill(0);
            // Fill the whole item before any kill: a kill may close (write) the PS.
            for (i, &ino) in group.iter().enumerate() {
                if let Some(c) = self.inodes.get(ino) {
                    let o = at + i * INODE_SIZE;
                    c.inode.encode(&mut self.log.buf[o..o + INODE_SIZE]);
                }
            }
            for (i, &ino) in group.iter().enumerate() {
                let new = iloc_make(abs + (i / INODES_PER_SECTOR) as u64, i % INODES_PER_SECTOR);
                let old = self.imap.get(ino);
                if let Some((sector, _)) = self.geo.iloc(old) {
                    self.kill_at(sector, INODE_SIZE as u32)?;
                }
                self.imap.set(ino, new);
            }
        }
        Ok(())
    }

    /// Writes all dirty state as one atomic group (no flush).
    pub(crate) fn commit(&mut self) -> Result<()> {
        if self.read_only || self.failed {
            return Ok(());
        }
        self.write_dirs()?;
        self.write_nodes()?;
        self.write_inodes()?;
        self.close_ps(true)?;
        self.inodes.trim();
        self.nodes.trim(4096);
        Ok(())
    }

    /// Makes every completed operation durable (POSIX `sync`).
    pub fn sync(&mut self) -> Result<()> {
        if self.read_only {
            return Ok(());
        }
        self.writable()?;
        self.commit()?;
        self.flush_dev()
    }

    /// Makes the file durable. Commits are whole-file-system, so this is `sync`.
    pub fn fsync(&mut self, h: crate::Handle) -> Result<()> {
        self.open_handle(h)?;
        self.sync()
    }

    pub(crate) fn flush_dev(&mut self) -> Result<()> {
        if self.unflushed {
            let r = self.dev.flush();
            self.io(r)?;
            self.unflushed = false;
        }
        Ok(())
    }

    /// Commits, writes the inode map, and records a checkpoint; then segments that became
    /// empty since the previous checkpoint are free again.
    pub fn checkpoint(&mut self) -> Result<()> {
        self.writable()?;
        self.write_dirs()?;
        self.write_nodes()?;
        self.write_inodes()?;
        self.write_imap()?;
        self.close_ps(true)?;
        self.flush_dev()?;
        self.write_checkpoint_region()?;
        self.usage.refresh_free(self.log.seg, self.log.next_seg);
        Ok(())
    }

    /// Writes the checkpoint region not holding the newest checkpoint, and flushes.
    pub(crate) fn write_checkpoint_region(&mut self) -> Result<()> {
        self.record_epoch()?;
        let (at, img) = self.next_checkpoint();
        self.write_region(at, &img)
    }

    /// The next checkpoint, of the state in memory now: its region and image, counted as
    /// the newest from here on.
    pub(crate) fn next_checkpoint(&mut self) -> (u64, Vec<u8>) {
        let serial = self.cp_serial + 1;
        self.stats.checkpoints += 1;
        self.stats.checkpoint_sectors += self.geo.cp_sectors as u64;
        let cp = Checkpoint {
            serial,
            epoch: self.log.epoch,
            next_serial: self.log.serial,
            tail: self.geo.seg_start(self.log.seg) + self.log.fill as u64,
            cur_seg: self.log.seg,
            next_seg: self.log.next_seg,
            gen: self.gen,
            stats: self.stats,
            imap: self.imap.ptrs.clone(),
            live: self.usage.live.clone(),
            age: self.usage.age.clone(),
        };
        (self.cp_serial, self.segs_since_cp) = (serial, 0);
        (self.geo.cp_at[(serial % 2) as usize], cp.encode(&self.geo))
    }

    fn write_region(&mut self, at: u64, img: &[u8]) -> Result<()> {
        let r = self.dev.write(at, img);
        self.io(r)?;
        let r = self.dev.flush();
        self.io(r)
    }

    /// Writes the mount's checkpoint if it still waits (`Fs::unwritten_cp`). Every write to
    /// the medium comes after this, so no partial segment of the new epoch reaches the disk
    /// before the checkpoint that names the epoch is durable.
    pub(crate) fn record_epoch(&mut self) -> Result<()> {
        match self.unwritten_cp.take() {
            Some((at, img)) => self.write_region(at, &img),
            None => Ok(()),
        }
    }

    /// Segments kept back from ordinary writes so the cleaner and checkpoints can always run.
    pub(crate) fn reserve_segs(&self) -> u64 {
        let imap = (self.geo.imap_blocks() as u64 * 8).div_ceil(self.geo.seg_sectors as u64);
        (self.geo.nsegs as u64 / 32).max(4) + imap
    }

    /// Bytes of live data and metadata the file system accepts (keeps segments cleanable).
    pub fn capacity_bytes(&self) -> u64 {
        let usable = (self.geo.nsegs as u64).saturating_sub(self.reserve_segs() + 2);
        usable * self.geo.seg_bytes() / 20 * 17
    }

    /// Log sectors the next commit and checkpoint may need for what is dirty now.
    fn dirty_meta_sectors(&self) -> u64 {
        let inodes = self.inodes.dirty.len() as u64;
        let dir_blocks: u64 = self
            .dirty_dirs
            .iter()
            .filter_map(|&d| self.inodes.get(d).and_then(|c| c.dir.as_deref()))
            .map(|d| d.blocks.iter().filter(|b| b.dirty).count() as u64)
            .sum();
        let imap = (self.imap.ndirty as u64 + inodes).min(self.geo.imap_blocks() as u64);
        let blocks = self.nodes.dirty.len() as u64 + dir_blocks + imap;
        inodes.div_ceil(4) + blocks * 9 + self.log.entries.len() as u64 / 32 + 8
    }

    /// Checks (and if needed makes, by checkpointing and cleaning) room in the log for an
    /// operation that adds `grow` live bytes and writes `data` bytes. Runs only between
    /// operations, so cleaning here never splits an operation's atomic group.
    pub(crate) fn reserve(&mut self, grow: u64, data: u64, delete: bool) -> Result<()> {
        self.writable()?;
        if !delete && self.usage.total_live + grow > self.capacity_bytes() {
            return Err(Error::NoSpace);
        }
        let seg = self.geo.seg_sectors as u64;
        let mut keep = self.reserve_segs() * seg;
        if delete {
            keep /= 2;
        }
        let need = data.div_ceil(SECTOR as u64) + data / 4096 / 32 + 4 + self.dirty_meta_sectors() + keep;
        if self.log_room() >= need {
            return Ok(());
        }
        if self.usage.pending(self.log.seg, self.log.next_seg) > 0 {
            self.checkpoint()?;
        }
        if self.log_room() < need {
            self.clean_until(need)?;
        }
        if self.log_room() < need {
            return Err(Error::NoSpace);
        }
        Ok(())
    }

    /// Housekeeping at the end of a mutating operation (a safe point between operations).
    pub(crate) fn after_op(&mut self) -> Result<()> {
        if self.inodes.dirty.len() > 4096 || self.nodes.dirty.len() > 1024 || self.dirty_dirs.len() > 256 {
            self.commit()?;
        }
        if self.segs_since_cp as u64 >= (self.geo.nsegs as u64 / 8).clamp(2, 64) {
            self.checkpoint()?;
        }
        if (self.usage.nfree as u64) < self.reserve_segs() + 2 {
            self.clean_some()?;
        }
        Ok(())
    }
}
