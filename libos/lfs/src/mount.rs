//! Format, mount and roll-forward: from the newest checkpoint through every committed group
//! written after it, stopping at the first torn, stale or foreign partial segment.

use crate::checkpoint::Checkpoint;
use crate::device::{BlockDevice, SECTOR};
use crate::dir::Dir;
use crate::error::{Corruption, Error, Result};
use crate::fs::{Clock, FormatOptions, Fs, Recovery};
use crate::icache::{Cached, InodeCache};
use crate::imap::{Imap, UNWRITTEN};
use crate::inode::{Inode, Kind};
use crate::layout::{iloc_make, Geometry, INODES_PER_SECTOR, INODE_SIZE, NO_SEG, ROOT_INO};
use crate::log::{item_bytes, Log};
use crate::nodes::NodeCache;
use crate::stats::Stats;
use crate::summary::{
    parse_direct, parse_header, parse_ps, Entry, EntryKind, Header, FLAG_COMMIT, FLAG_DIRECT,
};
use crate::usage::Usage;
use alloc::boxed::Box;
use alloc::vec;
use alloc::vec::Vec;

/// How to mount.
#[derive(Clone, Copy, Debug, Default)]
pub struct MountOptions {
    /// Never write: roll-forward happens in memory only (fsck and inspection use this).
    pub read_only: bool,
    pub clock: Option<Clock>,
}

/// One effect of a replayed group, in log order.
enum Effect {
    Add { seg: u32, bytes: u32, serial: u64 },
    Kill { sector: u64, bytes: u32 },
    Inode { ino: u32, loc: u64, gen: u32 },
    Free { ino: u32 },
    Imap { block: u32, ptr: u64 },
}

/// Most effects one uncommitted group may hold before mount gives up on it.
const GROUP_MAX: usize = 1 << 22;

/// Where roll-forward reads next: a sector `pos` of segment `seg`, the segment the writer
/// named to go on in, and the serial the next partial segment must carry.
#[derive(Clone, Copy)]
struct Cursor {
    seg: u32,
    pos: u32,
    next: u32,
    serial: u64,
}

/// Appends to `group` what the partial segment `ps` (header `h`, summary `entries`), read at
/// `at` in the segment starting at sector `start`, does: live bytes added and killed, inodes
/// written and freed, inode-map blocks moved.
fn effects(start: u64, at: &Cursor, h: &Header, entries: &[Entry], ps: &[u8], group: &mut Vec<Effect>) {
    let mut item = at.pos + 1;
    for e in entries {
        let abs = start + item as u64;
        match e.kind {
            EntryKind::Kill => group.push(Effect::Kill { sector: e.key, bytes: e.ino }),
            EntryKind::Free => group.push(Effect::Free { ino: e.ino }),
            _ => group.push(Effect::Add { seg: at.seg, bytes: item_bytes(e), serial: h.serial }),
        }
        if e.kind == EntryKind::Imap {
            group.push(Effect::Imap { block: e.ino, ptr: crate::layout::ptr_make(abs, e.sectors as u32) });
        }
        if e.kind == EntryKind::Inodes {
            let off = item as usize * SECTOR - at.pos as usize * SECTOR;
            for i in 0..e.sectors as usize * INODES_PER_SECTOR {
                let o = off + i * INODE_SIZE;
                if let Some(ino) = Inode::decode(&ps[o..o + INODE_SIZE]) {
                    let loc = iloc_make(abs + (i / INODES_PER_SECTOR) as u64, i % INODES_PER_SECTOR);
                    group.push(Effect::Inode { ino: ino.ino, loc, gen: ino.gen });
                }
            }
        }
        item += e.payload();
    }
}

impl<D: BlockDevice> Fs<D> {
    fn assemble(dev: D, geo: Geometry, cp: &Checkpoint, read_only: bool) -> Fs<D> {
        let fill = (cp.tail - geo.seg_start(cp.cur_seg)) as u32;
        Fs {
            dev,
            geo,
            log: Log::new(cp.cur_seg, cp.next_seg, fill, cp.next_serial, cp.epoch),
            usage: Usage::new(cp.live.clone(), cp.age.clone()),
            imap: Imap::new(cp.imap.clone(), geo.max_inodes),
            inodes: InodeCache::new(),
            nodes: NodeCache::default(),
            dirty_dirs: Vec::new(),
            stats: cp.stats,
            cp_serial: cp.serial,
            segs_since_cp: 0,
            gen: cp.gen,
            clock: Self::default_clock(),
            read_only,
            failed: false,
            ichunk: None,
            unflushed: false,
            recovery: Recovery::default(),
            unwritten_cp: None,
        }
    }

    /// Creates a new, empty file system on `dev` (all of it) and returns it mounted.
    pub fn format(mut dev: D, opts: FormatOptions) -> Result<Fs<D>> {
        let mut geo = Geometry::new(dev.sectors(), opts.segment_bytes, opts.max_inodes, opts.fs_id)?;
        geo.created = opts.now;
        let zero = vec![0u8; geo.cp_sectors as usize * SECTOR];
        let mut sb = [0u8; SECTOR];
        geo.encode(&mut sb);
        dev.write(geo.cp_at[0], &zero)?;
        dev.write(geo.cp_at[1], &zero)?;
        dev.write(0, &sb)?;
        dev.flush()?;
        let n = geo.nsegs as usize;
        let cp = Checkpoint {
            serial: 0,
            epoch: 1,
            next_serial: 1,
            tail: geo.seg_start(0),
            cur_seg: 0,
            next_seg: 1,
            gen: 0,
            stats: Stats::default(),
            imap: vec![0; geo.imap_blocks() as usize],
            live: vec![0; n],
            age: vec![0; n],
        };
        let mut fs = Fs::assemble(dev, geo, &cp, false);
        fs.usage.refresh_free(0, 1);
        let now = opts.now;
        let mut root = Inode::new(Kind::Dir, ROOT_INO, 1, ROOT_INO, now);
        root.mode = 0o755;
        fs.gen = 1;
        fs.inodes.insert(Cached { inode: root, dirty: false, dir: Some(Box::new(Dir::new())) });
        fs.inodes.mark_dirty(ROOT_INO);
        fs.imap.set(ROOT_INO, UNWRITTEN);
        fs.checkpoint()?;
        Ok(fs)
    }

    /// Mounts the file system on `dev`: newest valid checkpoint, then roll-forward. A
    /// writable mount starts a new epoch and records it in a checkpoint: at once if
    /// roll-forward replayed anything (the inode map it rebuilt must reach the disk), else
    /// just before the mount's first write (`record_epoch`), so that a mount of a clean file
    /// system that changes nothing writes nothing.
    pub fn mount(mut dev: D, opts: MountOptions) -> Result<Fs<D>> {
        let mut sb = [0u8; SECTOR];
        dev.read(0, &mut sb)?;
        let geo = Geometry::decode(&sb, dev.sectors())?;
        let mut best: Option<(Checkpoint, u8)> = None;
        let mut valid = 0;
        let mut img = vec![0u8; geo.cp_sectors as usize * SECTOR];
        for r in 0..2u8 {
            dev.read(geo.cp_at[r as usize], &mut img)?;
            if let Some(cp) = Checkpoint::decode(&img, &geo) {
                valid += 1;
                if best.as_ref().is_none_or(|(b, _)| cp.serial > b.serial) {
                    best = Some((cp, r));
                }
            }
        }
        let (cp, region) = best.ok_or(Error::Corrupt(Corruption::NoCheckpoint))?;
        let mut fs = Fs::assemble(dev, geo, &cp, opts.read_only);
        if let Some(c) = opts.clock {
            fs.clock = c;
        }
        fs.recovery.region = region;
        fs.recovery.other_valid = valid == 2;
        fs.load_imap()?;
        fs.roll_forward()?;
        fs.load_dir(ROOT_INO).map_err(|e| match e {
            Error::NotFound | Error::NotDir => Error::Corrupt(Corruption::Inode(ROOT_INO)),
            e => e,
        })?;
        fs.usage.refresh_free(fs.log.seg, fs.log.next_seg);
        if !opts.read_only {
            fs.log.epoch += 1;
            if fs.recovery.replayed == 0 {
                fs.unwritten_cp = Some(fs.next_checkpoint()); // the state found: nothing to write
            } else {
                fs.checkpoint()?; // what roll-forward rebuilt (the inode map) goes out first
            }
        }
        Ok(fs)
    }

    /// Replays committed groups after the checkpoint; leaves the log positioned after the
    /// last committed partial segment.
    fn roll_forward(&mut self) -> Result<()> {
        let mut at = Cursor {
            seg: self.log.seg,
            pos: self.log.fill,
            next: self.log.next_seg,
            serial: self.log.serial,
        };
        let mut committed = at;
        let mut group: Vec<Effect> = Vec::new();
        let mut group_ps = 0u64;
        let mut jumped = false;
        let mut ps = Vec::new();
        let limit = self.geo.nsegs as u64 * self.geo.seg_sectors as u64;
        for _ in 0..limit {
            let Some((h, entries)) = self.read_partial(&at, &mut ps)? else {
                // The writer moves to the next segment when an item does not fit: look there once.
                if jumped || at.next == NO_SEG || at.next == at.seg {
                    break;
                }
                (at.seg, at.pos, jumped) = (at.next, 0, true);
                continue;
            };
            jumped = false;
            if h.next_seg != NO_SEG && (h.next_seg >= self.geo.nsegs || h.next_seg == at.seg) {
                break;
            }
            effects(self.geo.seg_start(at.seg), &at, &h, &entries, &ps, &mut group);
            group_ps += 1;
            at = Cursor { seg: at.seg, pos: at.pos + h.total, next: h.next_seg, serial: at.serial + 1 };
            if h.flags & FLAG_COMMIT != 0 {
                self.apply(&group);
                group.clear();
                self.recovery.replayed += group_ps;
                group_ps = 0;
                committed = at;
            } else if group.len() > GROUP_MAX {
                break;
            }
        }
        self.recovery.discarded = group_ps;
        (self.log.seg, self.log.fill, self.log.next_seg, self.log.serial) =
            (committed.seg, committed.pos, committed.next, committed.serial);
        self.log.mem_from = self.log.fill;
        Ok(())
    }

    /// The partial segment at `at`, read whole into `ps`, with its summary entries: `None`
    /// when no valid one of this epoch carrying the serial roll-forward expects is there.
    fn read_partial(&mut self, at: &Cursor, ps: &mut Vec<u8>) -> Result<Option<(Header, Vec<Entry>)>> {
        let s = self.geo.seg_sectors;
        if at.pos >= s {
            return Ok(None);
        }
        let (epoch, fs_id) = (self.log.epoch, self.geo.fs_id);
        let sector = self.geo.seg_start(at.seg) + at.pos as u64;
        let mut hdr = [0u8; SECTOR];
        self.dev.read(sector, &mut hdr)?;
        let Some(h) =
            parse_header(&hdr, fs_id, s - at.pos).filter(|h| h.epoch == epoch && h.serial == at.serial)
        else {
            return Ok(None);
        };
        if h.flags & FLAG_DIRECT != 0 {
            // Only file data follows the header, and it is not hashed: nothing more to read.
            return Ok(parse_direct(&hdr, &h, fs_id).map(|e| (h, e)));
        }
        ps.resize(h.total as usize * SECTOR, 0);
        self.dev.read(sector, ps)?;
        Ok(parse_ps(ps, &h, fs_id).map(|e| (h, e)))
    }

    fn apply(&mut self, group: &[Effect]) {
        for e in group {
            match *e {
                Effect::Add { seg, bytes, serial } => self.usage.add(seg, bytes, serial),
                Effect::Kill { sector, bytes } => match self.geo.seg_of(sector) {
                    Some(seg) => self.usage.sub(seg, bytes),
                    None => self.usage.underflows += 1,
                },
                Effect::Inode { ino, loc, gen } => {
                    if ino < self.imap.max {
                        self.imap.set(ino, loc);
                        self.gen = self.gen.max(gen);
                    }
                }
                Effect::Free { ino } => {
                    if ino < self.imap.max {
                        self.imap.set(ino, 0);
                    }
                }
                Effect::Imap { block, ptr } => {
                    if let Some(p) = self.imap.ptrs.get_mut(block as usize) {
                        *p = ptr;
                    }
                }
            }
        }
    }

    /// Writes everything and a checkpoint, and hands the device back.
    pub fn unmount(mut self) -> Result<D> {
        if !self.read_only && !self.failed {
            self.checkpoint()?;
        }
        Ok(self.dev)
    }

    /// Gives the device back without writing anything (what a crash looks like, or the end
    /// of a read-only mount).
    pub fn into_device(self) -> D {
        self.dev
    }
}
