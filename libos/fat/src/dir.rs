//! Directories as the libOS reads them: raw 32-byte slots, long names, lookups, patches.
//!
//! A directory is read whole (it is at most 2 MiB by the FAT specification) with its chain
//! checked, then parsed here rather than by the crate: long names are decoded leniently (a
//! damaged sequence falls back to the 8.3 name), and the positions of every entry's slots
//! are kept so that removing or renaming an entry also removes its long-name slots.

use exo_format::le;
extern crate alloc;

use super::bpb::{FatType, Geometry};
use super::name::{checksum, display, short_name, LFN_UNITS_AT};
use super::table::Fat;
use alloc::rc::Rc;
use alloc::string::String;
use alloc::vec::Vec;
use exo_libos::fs::disk::{BlockDevice, Partition, SECTOR};
use exo_libos::fs::{Error, FileKind, Result};

/// Attribute bits.
pub const ATTR_READ_ONLY: u8 = 0x01;
pub const ATTR_VOLUME: u8 = 0x08;
pub const ATTR_DIR: u8 = 0x10;
pub const ATTR_ARCHIVE: u8 = 0x20;
/// Long-name slots have all four of these bits (the crate's test, kept identical).
const ATTR_LFN: u8 = 0x0f;
/// Largest directory accepted: 65536 entries, as the FAT specification allows.
const MAX_DIR_SECTORS: usize = 65536 * 32 / SECTOR;

/// Checks that directory `loc`'s cluster chain ends within the largest directory size
/// ([`MAX_DIR_SECTORS`]): before `embedded-sdmmc` walks it. The crate follows a directory's
/// chain until it finds a free slot (or the end-of-directory mark) or the chain ends, with
/// no bound of its own, so a chain that loops through clusters without a free slot keeps it
/// going for ever. [`read`] stops at the first cluster holding the end mark, so it need not
/// meet such a loop, and a new entry that takes the mark brings the loop into the crate's
/// reach.
pub fn check_chain<S: BlockDevice>(part: &Partition<S>, geo: &Geometry, loc: DirLoc) -> Result<()> {
    let first = match (loc, geo.fat_type) {
        // FAT16's root is a fixed area, not a chain.
        (DirLoc::Root, FatType::Fat16) => return Ok(()),
        (DirLoc::Root, FatType::Fat32) => geo.root_cluster,
        (DirLoc::Cluster(c), _) => c,
    };
    let max = (MAX_DIR_SECTORS as u32 / geo.spc).max(1);
    Fat::new(part, geo).check_chain(first, max)
}

/// Where a directory's slots live.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DirLoc {
    /// The root: FAT16's fixed area, or FAT32's root cluster chain.
    Root,
    /// A subdirectory starting at this cluster.
    Cluster(u32),
}

impl DirLoc {
    /// The cluster a `..` entry names for it: 0 for the root, on FAT32 too.
    pub fn dotdot(self) -> u32 {
        match self {
            DirLoc::Root => 0,
            DirLoc::Cluster(c) => c,
        }
    }
}

/// One live entry (never `.`, `..`, a long-name slot or a deleted one).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// The long name if a valid one precedes the entry, else the 8.3 name.
    pub name: String,
    pub sfn: [u8; 11],
    /// Byte 12: the lower-case flags.
    pub case: u8,
    pub attr: u8,
    pub cluster: u32,
    pub size: u32,
    pub mtime: Option<i64>,
    /// Index of the 8.3 slot in the directory.
    pub slot: usize,
    /// Index of its first slot (the first long-name slot, or `slot` itself).
    pub first: usize,
    /// A volume label, not a file (kept only for the duplicate-name check).
    pub label: bool,
}

impl Entry {
    pub fn is_dir(&self) -> bool {
        self.attr & ATTR_DIR != 0
    }

    pub fn kind(&self) -> FileKind {
        if self.is_dir() {
            FileKind::Dir
        } else {
            FileKind::File
        }
    }

    /// Checks what the crate will compute with before it is handed this entry.
    pub fn check(&self, geo: &Geometry) -> Result<()> {
        let ok = if self.is_dir() {
            geo.valid_cluster(self.cluster)
        } else if self.cluster == 0 {
            self.size == 0
        } else {
            geo.valid_cluster(self.cluster)
        };
        if ok {
            Ok(())
        } else {
            Err(Error::Corrupt)
        }
    }
}

/// A directory read into memory. Its parts are shared with [`Memo`] (a patch copies the
/// bytes first if they are).
#[derive(Clone)]
pub struct Dir {
    pub loc: DirLoc,
    /// Partition sectors holding it, in order.
    pub sectors: Rc<Vec<u32>>,
    pub data: Rc<Vec<u8>>,
    /// Parsed from `data` as read.
    pub entries: Rc<Vec<Entry>>,
}

/// Reads and parses directory `loc`.
pub fn read<S: BlockDevice>(part: &Partition<S>, geo: &Geometry, loc: DirLoc) -> Result<Dir> {
    let (sectors, data) = read_raw(part, geo, loc)?;
    let entries = Rc::new(parse(&data, geo.fat_type));
    Ok(Dir { loc, sectors: Rc::new(sectors), data: Rc::new(data), entries })
}

/// Directories kept by [`Memo`].
const MEMO_DIRS: usize = 4;

/// The directories read lately, valid until the next write to the volume: a path walk
/// and an open read the same directories at every operation, and reading and parsing a
/// directory of a thousand entries costs far more than the lookup in it. `writes` is the
/// mount's count of sector writes (`cache::Kept` sees every one, the crate's and the
/// libOS's), so nothing here can be stale.
#[derive(Default)]
pub struct Memo {
    writes: u64,
    dirs: Vec<Dir>,
}

impl Memo {
    pub fn read<S: BlockDevice>(
        &mut self,
        part: &Partition<S>,
        geo: &Geometry,
        loc: DirLoc,
        writes: u64,
    ) -> Result<Dir> {
        if writes != self.writes {
            (self.writes, self.dirs) = (writes, Vec::new());
        }
        if let Some(d) = self.dirs.iter().find(|d| d.loc == loc) {
            return Ok(d.clone());
        }
        let d = read(part, geo, loc)?;
        if self.dirs.len() == MEMO_DIRS {
            self.dirs.remove(0);
        }
        self.dirs.push(d.clone());
        Ok(d)
    }
}

impl Memo {
    /// Drops what is kept of `loc` (so that a caller's copy is the only one, and changing
    /// it copies nothing).
    pub fn forget(&mut self, loc: DirLoc) {
        self.dirs.retain(|d| d.loc != loc);
    }

    /// After the libOS's own writes between counts `w0` and `w1`, which changed directory
    /// `d` (kept equal to what is on disk) and otherwise wrote only FAT sectors: `d` is kept
    /// as of `w1`, and what was valid at `w0` stays so, but for a directory sharing a
    /// sector with `d` (possible only on a cross-linked volume).
    pub fn carry(&mut self, w0: u64, w1: u64, d: Dir) {
        if self.writes != w0 {
            self.dirs.clear();
        }
        self.dirs.retain(|x| x.loc != d.loc && !x.sectors.iter().any(|s| d.sectors.contains(s)));
        self.writes = w1;
        if self.dirs.len() == MEMO_DIRS {
            self.dirs.remove(0);
        }
        self.dirs.push(d);
    }

    /// After the libOS's own writes between counts `w0` and `w1`, which wrote file data
    /// (to sectors for which `data` says true), FAT sectors, and the 32 bytes `e` of the
    /// entry at `pos`: a directory holding a written data sector is dropped (a cross-linked
    /// volume), the others keep their validity with the entry updated.
    pub fn carry_entry(
        &mut self,
        w0: u64,
        w1: u64,
        pos: (u32, usize),
        e: &[u8],
        fat_type: FatType,
        data: impl Fn(u32) -> bool,
    ) {
        if self.writes != w0 {
            return;
        }
        self.dirs.retain(|d| !d.sectors.iter().any(|&s| data(s)));
        for d in &mut self.dirs {
            let Some(i) = d.sectors.iter().position(|&s| s == pos.0) else { continue };
            let at = i * SECTOR + pos.1;
            Rc::make_mut(&mut d.data)[at..at + 32].copy_from_slice(e);
            if let Some(x) = Rc::make_mut(&mut d.entries).iter_mut().find(|x| x.slot == at / 32) {
                x.attr = e[11];
                let hi = if fat_type == FatType::Fat32 { u32::from(le::get_u16(e, 20)) } else { 0 };
                x.cluster = hi << 16 | u32::from(le::get_u16(e, 26));
                x.size = le::get_u32(e, 28);
                x.mtime = exo_libos::fs::time::from_fat(le::get_u16(e, 24), le::get_u16(e, 22));
            }
        }
        self.writes = w1;
    }
}

/// Reads directory `loc` up to the cluster holding its end mark (or its chain's end): the
/// sectors holding it, and their bytes.
fn read_raw<S: BlockDevice>(part: &Partition<S>, geo: &Geometry, loc: DirLoc) -> Result<(Vec<u32>, Vec<u8>)> {
    let mut sectors = Vec::new();
    let mut data = Vec::new();
    let first = match (loc, geo.fat_type) {
        (DirLoc::Root, FatType::Fat16) => {
            data.resize(geo.root_sectors as usize * SECTOR, 0);
            part.read(u64::from(geo.root_start), &mut data)?;
            sectors.extend(geo.root_start..geo.root_start + geo.root_sectors);
            None
        }
        (DirLoc::Root, FatType::Fat32) => Some(geo.root_cluster),
        (DirLoc::Cluster(c), _) => Some(c),
    };
    if let Some(mut c) = first {
        if !geo.valid_cluster(c) {
            return Err(Error::Corrupt);
        }
        let mut fat = Fat::new(part, geo);
        loop {
            let at = data.len();
            data.resize(at + geo.cluster_bytes() as usize, 0);
            let s = geo.cluster_sector(c);
            part.read(u64::from(s), &mut data[at..])?;
            sectors.extend(s..s + geo.spc);
            if sectors.len() > MAX_DIR_SECTORS {
                return Err(Error::Corrupt);
            }
            if data[at..].chunks(32).any(|e| e[0] == 0) {
                break;
            }
            match fat.next(c)? {
                Some(n) => c = n,
                None => break,
            }
        }
    }
    Ok((sectors, data))
}

/// A long-name sequence being collected, last part first as stored.
struct Run {
    first: usize,
    csum: u8,
    expect: u8,
    units: Vec<[u16; 13]>,
}

fn lfn_units(e: &[u8]) -> [u16; 13] {
    let mut u = [0u16; 13];
    for (i, at) in LFN_UNITS_AT.into_iter().enumerate() {
        u[i] = le::get_u16(e, at);
    }
    u
}

fn decode(run: &Run) -> Option<String> {
    let units = run.units.iter().rev().flatten().copied().take_while(|&u| u != 0);
    let s: String = char::decode_utf16(units).map(|c| c.unwrap_or(char::REPLACEMENT_CHARACTER)).collect();
    // Trailing 0xFFFF padding without a terminator decodes to U+FFFF: drop it.
    let s = String::from(s.trim_end_matches('\u{ffff}'));
    (!s.is_empty() && !s.contains('/') && s != "." && s != "..").then_some(s)
}

fn parse(data: &[u8], fat_type: FatType) -> Vec<Entry> {
    let mut out = Vec::new();
    let mut run: Option<Run> = None;
    for (slot, e) in data.chunks_exact(32).enumerate() {
        match e[0] {
            0x00 => break,
            0xe5 => {
                run = None;
                continue;
            }
            _ => {}
        }
        let attr = e[11];
        if attr & ATTR_LFN == ATTR_LFN {
            let seq = e[0] & 0x1f;
            if e[0] & 0x40 != 0 && (1..=20).contains(&seq) {
                run =
                    Some(Run { first: slot, csum: e[13], expect: seq - 1, units: alloc::vec![lfn_units(e)] });
            } else {
                run = match run.take() {
                    Some(mut r) if r.expect == seq && seq != 0 && r.csum == e[13] && e[0] & 0x40 == 0 => {
                        r.expect = seq - 1;
                        r.units.push(lfn_units(e));
                        Some(r)
                    }
                    _ => None,
                };
            }
            continue;
        }
        let mut sfn = [0u8; 11];
        sfn.copy_from_slice(&e[..11]);
        let r = run.take();
        if sfn[0] == b'.' {
            continue;
        }
        let long = r.as_ref().filter(|r| r.expect == 0 && r.csum == checksum(&sfn)).and_then(decode);
        let hi = if fat_type == FatType::Fat32 { u32::from(le::get_u16(e, 20)) } else { 0 };
        out.push(Entry {
            name: long.unwrap_or_else(|| display(&sfn, e[12])),
            sfn,
            case: e[12],
            attr,
            cluster: hi << 16 | u32::from(le::get_u16(e, 26)),
            size: le::get_u32(e, 28),
            mtime: exo_libos::fs::time::from_fat(le::get_u16(e, 24), le::get_u16(e, 22)),
            slot,
            first: r.filter(|r| r.expect == 0 && r.csum == checksum(&sfn)).map_or(slot, |r| r.first),
            label: attr & ATTR_VOLUME != 0 && attr & ATTR_DIR == 0,
        });
    }
    out
}

impl Dir {
    /// The entries a listing shows.
    pub fn live(&self) -> impl Iterator<Item = &Entry> {
        self.entries.iter().filter(|e| !e.label)
    }

    /// Finds `name`: by long name or shown name (ASCII letters match either case), or by
    /// the 8.3 name it would be stored as.
    pub fn find(&self, name: &str) -> Option<&Entry> {
        let short = short_name(name).ok().map(|(s, _)| s);
        self.live().find(|e| e.name.eq_ignore_ascii_case(name) || Some(e.sfn) == short)
    }

    /// Fails with [`Error::Corrupt`] unless `e` is the first entry with its 8.3 name (the
    /// one the crate will find when given that name) and its fields are sane.
    pub fn check(&self, e: &Entry, geo: &Geometry) -> Result<()> {
        match self.entries.iter().find(|x| x.sfn == e.sfn) {
            Some(x) if x.slot == e.slot => e.check(geo),
            _ => Err(Error::Corrupt),
        }
    }

    /// The directory `embedded-sdmmc` opens when asked for 8.3 name `sfn` in this one: the
    /// first slot before the end mark, not deleted, whose 11 name bytes are `sfn` (the crate
    /// does not pass over long-name slots, as [`find`](Self::find) does); a cluster of 0
    /// is the root to it.
    pub fn crate_subdir(&self, sfn: &[u8; 11], geo: &Geometry) -> Result<DirLoc> {
        for s in self.data.chunks_exact(32) {
            match s[0] {
                0x00 => break,
                0xe5 => continue,
                _ if &s[..11] != sfn => continue,
                _ if s[11] & ATTR_DIR == 0 => return Err(Error::NotDir),
                _ => {}
            }
            let hi = if geo.fat_type == FatType::Fat32 { u32::from(le::get_u16(s, 20)) } else { 0 };
            return match hi << 16 | u32::from(le::get_u16(s, 26)) {
                0 => Ok(DirLoc::Root),
                c if geo.valid_cluster(c) => Ok(DirLoc::Cluster(c)),
                _ => Err(Error::Corrupt),
            };
        }
        Err(Error::NotFound)
    }

    /// (partition sector, byte offset in it) of slot `slot`.
    pub fn slot_pos(&self, slot: usize) -> Option<(u32, usize)> {
        let byte = slot * 32;
        Some((*self.sectors.get(byte / SECTOR)?, byte % SECTOR))
    }

    /// Changes slots with `f` and writes the sectors that hold them, the last first: an
    /// entry's 8.3 slot comes after its long-name slots, so when those lie in the sector
    /// before, a cut between the two writes leaves the entry removed or renamed with its
    /// long-name slots orphaned (their checksum no longer matches: readers skip them, and
    /// `fsck.vfat -a` removes them), never the entry live under its 8.3 alias without its
    /// long name.
    pub fn patch<S: BlockDevice>(
        &mut self,
        part: &Partition<S>,
        slots: core::ops::RangeInclusive<usize>,
        mut f: impl FnMut(usize, &mut [u8]),
    ) -> Result<()> {
        let mut dirty: Vec<usize> = Vec::new();
        for slot in slots {
            let at = slot * 32;
            let e = Rc::make_mut(&mut self.data).get_mut(at..at + 32).ok_or(Error::Corrupt)?;
            f(slot, e);
            let s = at / SECTOR;
            if dirty.last() != Some(&s) {
                dirty.push(s);
            }
        }
        for s in dirty.into_iter().rev() {
            part.write(u64::from(self.sectors[s]), &self.data[s * SECTOR..(s + 1) * SECTOR])?;
        }
        Ok(())
    }

    /// Writes an entry's slots, its `long`-name slots and then its 8.3 slot `short` (if
    /// any), into slots of this directory from `first`, one sector at a time from the first, and in the write
    /// of the run's last sector marks the slots of `gone` that lie in that sector deleted.
    /// Until that last write, the slots written are the start of a long name with no 8.3
    /// slot after it: an orphan that readers skip and `fsck.vfat -a` removes, never parts
    /// of a name without its start (which it will not touch). `patch` order, last sector
    /// first, would leave those.
    pub fn write_run<S: BlockDevice>(
        &mut self,
        part: &Partition<S>,
        first: usize,
        (long, short): (&[[u8; 32]], Option<&[u8; 32]>),
        gone: core::ops::RangeInclusive<usize>,
    ) -> Result<()> {
        let per = SECTOR / 32;
        let end = first + long.len() + short.is_some() as usize;
        let mut at = first;
        while at < end {
            let sector = at / per * per..(at / per + 1) * per;
            let to = sector.end.min(end);
            let mut slots = at..=to - 1;
            if to == end {
                let g = gone.clone().filter(|i| sector.contains(i));
                let lo = g.clone().min().map_or(at, |i| i.min(at));
                slots = lo..=g.max().map_or(to - 1, |i| i.max(to - 1));
            }
            let new = |k: usize| long.get(k).or(short.filter(|_| k == long.len()));
            self.patch(part, slots, |i, s| match i.checked_sub(first).and_then(new) {
                Some(new) => s.copy_from_slice(new),
                None if gone.contains(&i) => s[0] = 0xe5,
                None => {}
            })?;
            at = to;
        }
        Ok(())
    }

    /// The first slot free for a new entry (deleted, or the end mark), if the slots read
    /// have one: a deleted slot before the mark comes first. Before an entry goes into the
    /// mark, [`keep_end`](Self::keep_end) writes the next one.
    pub fn free_slot(&self) -> Option<usize> {
        self.data.chunks_exact(32).position(|s| s[0] == 0 || s[0] == 0xe5)
    }

    /// Makes free slot `slot` safe to write an entry into: when it is the end-of-directory
    /// mark (first byte 0x00) and the directory goes on after it, the slot after it becomes
    /// the new mark first (zeroed whole, unless its first byte is 0x00 already). Readers stop
    /// at the mark and never look past it, so whatever follows may be stale: a reused
    /// cluster, a damaged volume, another implementation's leftovers. Written over, the old
    /// mark would let those bytes show as entries (on a test image, garbage with a cluster
    /// past the volume made `list_dir` and `stat` of other files fail as corrupt). The new
    /// mark is written before the entry, on its own: a cut between the two leaves the old
    /// mark in front of it, and nothing after it shows. The slot after the last one read is
    /// in the next cluster of the chain, which is read and kept in `data` (and `sectors`).
    pub fn keep_end<S: BlockDevice>(
        &mut self,
        part: &Partition<S>,
        geo: &Geometry,
        slot: usize,
    ) -> Result<()> {
        self.keep_end_run(part, geo, slot..=slot)
    }

    /// [`keep_end`](Self::keep_end) for a run of free slots (from [`free_run`](Self::free_run))
    /// that an entry with a long name goes into: when the mark lies in the run, every slot
    /// after it up to the one after the run is zeroed first, in one step. So the run's own
    /// slots past the mark are zero too, and its long-name slots, written before its 8.3
    /// slot, are followed by a mark until that slot goes in (an orphan that readers skip).
    pub fn keep_end_run<S: BlockDevice>(
        &mut self,
        part: &Partition<S>,
        geo: &Geometry,
        run: core::ops::RangeInclusive<usize>,
    ) -> Result<()> {
        let Some(mark) = run.clone().find(|&s| self.data.get(s * 32) == Some(&0)) else {
            return Ok(()); // deleted slots (before the mark): the mark stays where it is
        };
        let next = run.end() + 1;
        if next * 32 >= self.data.len() && !self.read_more(part, geo)? {
            // The run ends the directory: nothing follows it but its own slots.
            return match mark < *run.end() {
                true => self.patch(part, mark + 1..=*run.end(), |_, s| s.fill(0)),
                false => Ok(()),
            };
        }
        if (mark + 1..=next).all(|s| self.data[s * 32..s * 32 + 32].iter().all(|&b| b == 0)) {
            return Ok(());
        }
        self.patch(part, mark + 1..=next, |_, s| s.fill(0))
    }

    /// The first of `n` free slots in a row among those read (deleted ones, and every slot
    /// from the end mark on), if there is such a run.
    pub fn free_run(&self, n: usize) -> Option<usize> {
        let (mut past_mark, mut start, mut len) = (false, 0, 0);
        for (i, s) in self.data.chunks_exact(32).enumerate() {
            past_mark |= s[0] == 0;
            if !past_mark && s[0] != 0xe5 {
                len = 0;
                continue;
            }
            start = if len == 0 { i } else { start };
            len += 1;
            if len == n {
                return Some(start);
            }
        }
        None
    }

    /// The last cluster of the chain read so far; `None` for FAT16's root, a fixed area.
    pub fn last_cluster(&self, geo: &Geometry) -> Result<Option<u32>> {
        if self.loc == DirLoc::Root && geo.fat_type == FatType::Fat16 {
            return Ok(None);
        }
        let last = *self.sectors.last().ok_or(Error::Corrupt)?;
        Ok(Some(last.checked_sub(geo.data_start).ok_or(Error::Corrupt)? / geo.spc + 2))
    }

    /// Reads the cluster after the last one in `data`, if the directory's chain goes on
    /// (never for FAT16's root: its fixed area is read whole), and appends it; false if
    /// there is none.
    pub fn read_more<S: BlockDevice>(&mut self, part: &Partition<S>, geo: &Geometry) -> Result<bool> {
        let Some(c) = self.last_cluster(geo)? else { return Ok(false) };
        let Some(n) = Fat::new(part, geo).next(c)? else { return Ok(false) };
        let s = geo.cluster_sector(n);
        // A chain that comes back to a cluster read already loops (every cluster before
        // this one was read): its "next" slot would be one of the directory's first, maybe
        // a live entry, which must not be zeroed.
        if self.sectors.contains(&s) || self.sectors.len() + geo.spc as usize > MAX_DIR_SECTORS {
            return Err(Error::Corrupt);
        }
        let data = Rc::make_mut(&mut self.data);
        let at = data.len();
        data.resize(at + geo.cluster_bytes() as usize, 0);
        part.read(u64::from(s), &mut data[at..])?;
        Rc::make_mut(&mut self.sectors).extend(s..s + geo.spc);
        Ok(true)
    }

    /// Marks an entry's slots (its long-name slots too) deleted.
    pub fn delete<S: BlockDevice>(&mut self, part: &Partition<S>, e: &Entry) -> Result<()> {
        self.patch(part, e.first..=e.slot, |_, s| s[0] = 0xe5)
    }
}

/// Sets an entry's first cluster in its 32 bytes.
pub fn set_cluster(e: &mut [u8], fat_type: FatType, c: u32) {
    let hi = if fat_type == FatType::Fat32 { (c >> 16) as u16 } else { 0 };
    e[20..22].copy_from_slice(&hi.to_le_bytes());
    e[26..28].copy_from_slice(&(c as u16).to_le_bytes());
}
