//! The checker: walks the tree from the root and verifies every invariant of the format,
//! down to exact live-byte accounting per segment. Used by `lfs fsck` and by the tests.

use crate::device::{BlockDevice, SECTOR};
use crate::fs::Fs;
use crate::inode::{span, Inode, Kind, FANOUT, NDIRECT};
use crate::layout::{ptr_len, ptr_sector, BLOCK, INODE_SIZE, ROOT_INO};
use crate::mount::MountOptions;
use crate::summary::partial_segments;
use alloc::collections::BTreeSet;
use alloc::format;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;

/// Most problems recorded (the count keeps going).
const MAX_REPORTED: usize = 200;

/// What `fsck` found.
#[derive(Clone, Debug, Default)]
pub struct Report {
    /// Violated invariants. Empty means the file system is consistent.
    pub errors: Vec<String>,
    /// Total number of problems (may exceed `errors.len()`).
    pub problems: u64,
    /// Notes that are not errors (e.g. an uncommitted group discarded by roll-forward).
    pub notes: Vec<String>,
    pub files: u64,
    pub dirs: u64,
    pub live_bytes: u64,
}

impl Report {
    pub fn is_clean(&self) -> bool {
        self.problems == 0
    }

    fn err(&mut self, s: String) {
        self.problems += 1;
        if self.errors.len() < MAX_REPORTED {
            self.errors.push(s);
        }
    }
}

/// Mounts `dev` read-only and checks it. Never writes.
pub fn check_device<D: BlockDevice>(dev: &mut D) -> Report {
    match Fs::mount(dev, MountOptions { read_only: true, clock: None }) {
        Ok(mut fs) => fs.check(),
        Err(e) => {
            let mut r = Report::default();
            r.err(format!("mount failed: {e}"));
            r
        }
    }
}

struct Walk {
    r: Report,
    /// (first sector, sectors) of every referenced extent.
    extents: Vec<(u64, u32)>,
    inode_slots: BTreeSet<u64>,
    live: Vec<u64>,
}

impl<D: BlockDevice> Fs<D> {
    /// Checks the mounted file system (committing first if it is writable).
    pub fn check(&mut self) -> Report {
        if let Err(e) = self.commit() {
            let mut r = Report::default();
            r.err(format!("commit before check failed: {e}"));
            return r;
        }
        let mut w = Walk {
            r: Report::default(),
            extents: Vec::new(),
            inode_slots: BTreeSet::new(),
            live: vec![0; self.geo.nsegs as usize],
        };
        if self.recovery.discarded > 0 {
            w.r.notes.push(format!(
                "roll-forward discarded {} uncommitted partial segment(s)",
                self.recovery.discarded
            ));
        }
        for b in 0..self.imap.ptrs.len() {
            let p = self.imap.ptrs[b];
            if p != 0 {
                self.extent(&mut w, p, "inode-map block");
            }
        }
        let mut seen = BTreeSet::new();
        let mut stack = vec![(ROOT_INO, ROOT_INO, 0u32)];
        while let Some((ino, parent, depth)) = stack.pop() {
            if !seen.insert(ino) {
                w.r.err(format!("inode {ino} is reachable twice (hard link or cycle)"));
                continue;
            }
            if depth > 4096 {
                w.r.err(format!("directory tree deeper than 4096 at inode {ino}"));
                continue;
            }
            self.check_inode(&mut w, ino, parent, depth, &mut stack);
        }
        for (ino, &v) in self.imap.entries.iter().enumerate() {
            if v != 0 && !seen.contains(&(ino as u32)) {
                w.r.err(format!("inode {ino} is allocated in the inode map but in no directory"));
            }
        }
        self.check_space(&mut w);
        w.r
    }

    fn extent(&mut self, w: &mut Walk, p: u64, what: &str) -> bool {
        if !self.geo.ptr_ok(p) {
            w.r.err(format!("{what}: pointer {p:#x} is outside the log"));
            return false;
        }
        let (s, n) = (ptr_sector(p), ptr_len(p));
        if let Some(seg) = self.geo.seg_of(s) {
            w.live[seg as usize] += n as u64 * SECTOR as u64;
        }
        w.extents.push((s, n));
        true
    }

    /// Checks inode `ino` (found in directory `parent`, `depth` below the root): its place
    /// in the log, its kind and size, its block tree and, for a directory, its entries, whose
    /// inodes go on `stack` to be checked next.
    fn check_inode(
        &mut self,
        w: &mut Walk,
        ino: u32,
        parent: u32,
        depth: u32,
        stack: &mut Vec<(u32, u32, u32)>,
    ) {
        if !self.inode_slot(w, ino) {
            return;
        }
        if let Err(e) = self.load_inode(ino) {
            w.r.err(format!("inode {ino}: cannot be read: {e}"));
            return;
        }
        let Some(c) = self.inodes.get(ino) else {
            return;
        };
        let inode = c.inode.clone();
        Self::inode_fields(w, ino, parent, &inode);
        self.block_tree(w, ino, &inode);
        if inode.kind == Kind::Dir {
            self.dir_entries(w, ino, depth, stack);
        }
    }

    /// Counts the 128 bytes of inode `ino`'s slot as live; false when its inode-map entry
    /// is not a place in the log.
    fn inode_slot(&mut self, w: &mut Walk, ino: u32) -> bool {
        let v = self.imap.get(ino);
        let Some((s, _)) = self.geo.iloc(v) else {
            w.r.err(format!("inode {ino}: inode-map entry {v:#x} is not a location in the log"));
            return false;
        };
        if let Some(seg) = self.geo.seg_of(s) {
            w.live[seg as usize] += INODE_SIZE as u64;
        }
        w.inode_slots.insert(v);
        true
    }

    /// Counts the inode as a file or a directory; a directory must name `parent` and hold
    /// whole blocks.
    fn inode_fields(w: &mut Walk, ino: u32, parent: u32, inode: &Inode) {
        if inode.kind != Kind::Dir {
            w.r.files += 1;
            return;
        }
        w.r.dirs += 1;
        if inode.parent != parent {
            w.r.err(format!(
                "directory {ino}: parent field {} but it is in directory {parent}",
                inode.parent
            ));
        }
        if !inode.size.is_multiple_of(BLOCK as u64) {
            w.r.err(format!("directory {ino}: size {} is not whole blocks", inode.size));
        }
    }

    /// Walks every block pointer of the inode: direct blocks, then each indirect tree, which
    /// must start inside the file.
    fn block_tree(&mut self, w: &mut Walk, ino: u32, inode: &Inode) {
        let nblocks = inode.size.div_ceil(BLOCK as u64);
        for (slot, &p) in inode.ptr.iter().enumerate() {
            if p == 0 {
                continue;
            }
            if slot < NDIRECT {
                self.data_block(w, ino, inode.size, slot as u64, p);
                continue;
            }
            let level = (slot - NDIRECT + 1) as u8;
            let base = match level {
                1 => NDIRECT as u64,
                2 => NDIRECT as u64 + FANOUT,
                _ => NDIRECT as u64 + FANOUT + FANOUT * FANOUT,
            };
            if base >= nblocks {
                w.r.err(format!("inode {ino}: indirect tree at block {base} lies past the end of the file"));
            }
            self.node(w, ino, inode.size, level, base, p);
        }
    }

    /// Checks each entry of directory `ino` against the inode it names (allocated, readable,
    /// of the kind the entry says) and pushes the child to be checked.
    fn dir_entries(&mut self, w: &mut Walk, ino: u32, depth: u32, stack: &mut Vec<(u32, u32, u32)>) {
        if let Err(e) = self.load_dir(ino) {
            w.r.err(format!("directory {ino}: cannot be read: {e}"));
            return;
        }
        let mut kids = Vec::new();
        if let Ok(d) = self.dir(ino) {
            d.for_each(|name, child, kind| {
                kids.push((String::from_utf8_lossy(name).into_owned(), child, kind))
            });
        }
        for (name, child, kind) in kids {
            if child == 0 || child >= self.imap.max || self.imap.get(child) == 0 {
                w.r.err(format!("directory {ino}: entry {name:?} names free inode {child}"));
                continue;
            }
            if let Err(e) = self.load_inode(child) {
                w.r.err(format!("directory {ino}: entry {name:?}: inode {child}: {e}"));
                continue;
            }
            let k = self.inodes.get(child).map(|c| c.inode.kind);
            if k != Some(kind) {
                w.r.err(format!("directory {ino}: entry {name:?} says {kind:?}, inode says {k:?}"));
            }
            stack.push((child, ino, depth + 1));
        }
    }

    fn data_block(&mut self, w: &mut Walk, ino: u32, size: u64, blk: u64, p: u64) {
        if !self.extent(w, p, "data block") {
            w.r.err(format!("inode {ino}: block {blk} pointer is invalid"));
            return;
        }
        let start = blk * BLOCK as u64;
        if start >= size {
            w.r.err(format!("inode {ino}: block {blk} lies past the end of the file (size {size})"));
        } else if ((size - start) as usize) < BLOCK
            && ptr_len(p) as u64 > (size - start).div_ceil(SECTOR as u64)
        {
            w.r.err(format!("inode {ino}: last block {blk} stores sectors past the end of the file"));
        }
    }

    fn node(&mut self, w: &mut Walk, ino: u32, size: u64, level: u8, base: u64, p: u64) {
        if !self.extent(w, p, "indirect block") {
            w.r.err(format!("inode {ino}: indirect block (level {level}, base {base}) pointer invalid"));
            return;
        }
        let mut raw = vec![0u8; BLOCK];
        if let Err(e) = self.read_log(ptr_sector(p), &mut raw[..ptr_len(p) as usize * SECTOR]) {
            w.r.err(format!("inode {ino}: indirect block unreadable: {e}"));
            return;
        }
        let mut any = false;
        for i in 0..FANOUT as usize {
            let c = exo_format::le::get_u64(&raw, i * 8);
            if c == 0 {
                continue;
            }
            any = true;
            let cb = base + i as u64 * span(level);
            if level == 1 {
                self.data_block(w, ino, size, cb, c);
            } else {
                self.node(w, ino, size, level - 1, cb, c);
            }
        }
        if !any {
            w.r.err(format!("inode {ino}: empty indirect block at level {level} base {base}"));
        }
    }

    /// Every referenced sector must lie in a partial segment whose checksum still holds
    /// (this is how damaged file data is found: data blocks carry no checksum of their own).
    fn verify_log(&mut self, w: &mut Walk, ex: &[(u64, u32)]) {
        let n = self.geo.seg_sectors;
        let mut buf = vec![0u8; n as usize * SECTOR];
        let mut i = 0;
        while i < ex.len() {
            let Some(seg) = self.geo.seg_of(ex[i].0) else {
                i += 1;
                continue;
            };
            let start = self.geo.seg_start(seg);
            let end = start + n as u64;
            let mut ranges = Vec::new();
            if self.read_log(start, &mut buf).is_ok() {
                for (pos, h, _) in partial_segments(&buf, self.geo.fs_id) {
                    ranges.push((start + pos as u64, start + (pos + h.total) as u64));
                }
            }
            while i < ex.len() && ex[i].0 < end {
                let (s, len) = ex[i];
                if !ranges.iter().any(|&(a, b)| s > a && s + len as u64 <= b) {
                    w.r.err(format!(
                        "sectors {s:#x}+{len} are not inside an intact partial segment (damaged data?)"
                    ));
                }
                i += 1;
            }
        }
    }

    fn check_space(&mut self, w: &mut Walk) {
        // Extents must not overlap each other nor inode sectors.
        let mut ex = core::mem::take(&mut w.extents);
        let mut inode_sectors: Vec<u64> = w.inode_slots.iter().map(|v| v >> 2).collect();
        inode_sectors.dedup();
        ex.extend(inode_sectors.iter().map(|&s| (s, 1)));
        ex.sort_unstable();
        for pair in ex.windows(2) {
            if pair[0].0 + pair[0].1 as u64 > pair[1].0 {
                w.r.err(format!(
                    "sectors {:#x}+{} and {:#x}+{} are both in use",
                    pair[0].0, pair[0].1, pair[1].0, pair[1].1
                ));
            }
        }
        self.verify_log(w, &ex);
        // Nothing may point past the log tail into sectors not yet written.
        let tail = self.geo.seg_start(self.log.seg) + self.log.fill as u64;
        let seg_end = self.geo.seg_start(self.log.seg) + self.geo.seg_sectors as u64;
        for &(s, n) in &ex {
            if s + n as u64 > tail && s < seg_end {
                w.r.err(format!("sectors {s:#x}+{n} are referenced but lie past the log tail"));
            }
        }
        for seg in 0..self.geo.nsegs as usize {
            let (want, have) = (w.live[seg], self.usage.live[seg] as u64);
            w.r.live_bytes += want;
            if want != have {
                w.r.err(format!(
                    "segment {seg}: usage table says {have} live bytes, references add up to {want}"
                ));
            }
            if want != 0 && (self.usage.free[seg] || seg as u32 == self.log.next_seg) {
                w.r.err(format!("segment {seg} is free (or reserved as next) but holds {want} live bytes"));
            }
        }
        if self.usage.underflows != 0 {
            w.r.err(format!("{} kills referred to bytes that were not live", self.usage.underflows));
        }
        if self.failed {
            w.r.err(String::from("the file system is in the failed state"));
        }
    }
}
