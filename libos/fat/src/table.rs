//! The file allocation table as the libOS reads it: checked chains, freeing, counting.
//!
//! Every chain is walked here, with every link checked (a data cluster of this volume, or
//! end-of-chain) and its length bounded by the cluster count, before `embedded-sdmmc`
//! follows it; so a damaged FAT gives [`Error::Corrupt`], never a panic or an endless walk.

use exo_format::le;
extern crate alloc;

use super::bpb::{FatType, Geometry};
use alloc::vec;
use alloc::vec::Vec;
use exo_libos::fs::disk::{BlockDevice, Partition, SectorBuf, SECTOR};
use exo_libos::fs::{Error, Result};

/// FAT sectors read at once when walking chains (from the mount's sector cache, usually:
/// a larger window only copies more). Eight hold 1,024 FAT32 entries: a 64 KiB transfer's
/// clusters even when they are 512 bytes.
const WINDOW: u32 = 8;
/// FAT sectors a [`Fat::link_ascending`] may span and still be mirrored as one range.
const SPREAD: u32 = 64;
/// FAT sectors read at once when counting free clusters.
const SCAN: u32 = 256;

/// A sector's bytes at a 512-aligned address (so entries are aligned words, and the
/// partition writes it without a bounce copy).
#[repr(align(512))]
struct AlignedSector([u8; SECTOR]);

/// A FAT window kept from one `Fat` to the next (see [`Fat::reuse`]): its buffer, the
/// first FAT sector it holds, and whether it equals the disk.
#[derive(Default)]
pub struct Window {
    buf: Vec<u8>,
    at: u32,
    pub valid: bool,
}

/// Cached access to the first FAT; writes go to every copy (but for
/// [`link_ascending`](Self::link_ascending)'s, whose copies its caller writes later).
pub struct Fat<'a, S: BlockDevice> {
    part: &'a Partition<S>,
    geo: &'a Geometry,
    /// First FAT sector (relative to the FAT) held in `win`, and the sectors themselves.
    win_at: u32,
    win: Vec<u8>,
    /// Whether `win` holds sectors read by this `Fat` (a reused buffer holds stale ones).
    loaded: bool,
}

impl<'a, S: BlockDevice> Fat<'a, S> {
    pub fn new(part: &'a Partition<S>, geo: &'a Geometry) -> Self {
        Self::reuse(part, geo, Window::default())
    }

    /// A `Fat` over the window an earlier one gave back ([`into_window`](Self::into_window)):
    /// not allocated and zeroed again, and not read again if `w.valid` (the caller's word
    /// that nothing wrote the FAT since: a `Fat`'s own writes keep its window up to date).
    pub fn reuse(part: &'a Partition<S>, geo: &'a Geometry, w: Window) -> Self {
        Fat { part, geo, win_at: w.at, win: w.buf, loaded: w.valid }
    }

    /// The window, for [`reuse`](Self::reuse): valid if it holds FAT sectors as they stand.
    pub fn into_window(self) -> Window {
        Window { buf: self.win, at: self.win_at, valid: self.loaded }
    }

    /// FAT sector `sector` (relative to the FAT) into `buf`: from the window if it holds it.
    fn read_sector(&mut self, sector: u32, buf: &mut [u8; SECTOR]) -> Result<()> {
        let have = self.win.len() as u32 / SECTOR as u32;
        if self.loaded && sector >= self.win_at && sector < self.win_at + have {
            let at = (sector - self.win_at) as usize * SECTOR;
            buf.copy_from_slice(&self.win[at..at + SECTOR]);
            return Ok(());
        }
        Ok(self.part.read(u64::from(self.geo.fat_start + sector), buf)?)
    }

    /// Writes FAT sector `sector` (relative to the FAT) to copies `copies`, and into the
    /// window if it holds it. A failed write leaves the window unloaded (the disk may or
    /// may not hold the sector now).
    fn write_sector(&mut self, sector: u32, buf: &[u8; SECTOR], copies: core::ops::Range<u32>) -> Result<()> {
        for copy in copies {
            let at = self.geo.fat_start + copy * self.geo.fat_size + sector;
            if let Err(e) = self.part.write(u64::from(at), buf) {
                self.loaded = false;
                return Err(e.into());
            }
        }
        let have = self.win.len() as u32 / SECTOR as u32;
        if self.loaded && sector >= self.win_at && sector < self.win_at + have {
            let at = (sector - self.win_at) as usize * SECTOR;
            self.win[at..at + SECTOR].copy_from_slice(buf);
        }
        Ok(())
    }

    /// Entry `c` (any number below `clusters + 2`), masked to its meaningful bits.
    pub fn get(&mut self, c: u32) -> Result<u32> {
        let byte = u64::from(c) * u64::from(self.geo.entry_bytes());
        let sector = (byte / SECTOR as u64) as u32;
        if sector >= self.geo.fat_size {
            return Err(Error::Corrupt);
        }
        let have = self.win.len() as u32 / SECTOR as u32;
        if !self.loaded || sector < self.win_at || sector >= self.win_at + have {
            // Windows start at multiples of WINDOW, so the next `Fat` asks the mount's
            // cache for the same sectors again (a window at any sector would miss it).
            let at = sector / WINDOW * WINDOW;
            let n = WINDOW.min(self.geo.fat_size - at);
            self.win.resize(n as usize * SECTOR, 0);
            self.loaded = false;
            self.part.read(u64::from(self.geo.fat_start + at), &mut self.win)?;
            self.win_at = at;
            self.loaded = true;
        }
        let at = (byte - u64::from(self.win_at) * SECTOR as u64) as usize;
        let w = &self.win;
        Ok(match self.geo.fat_type {
            FatType::Fat16 => u32::from(le::get_u16(w, at)),
            FatType::Fat32 => le::get_u32(w, at) & 0x0fff_ffff,
        })
    }

    /// The window's entries `lo..hi` (cluster numbers) as they stand, read into the window
    /// that holds `c`'s entry first; `hi` is clipped to the window's end. For scans that
    /// test entries in a tight loop instead of one `get` each.
    fn span(&mut self, c: u32, hi: u32) -> Result<(u32, u32)> {
        self.get(c)?;
        let eb = self.geo.entry_bytes();
        let first = self.win_at * SECTOR as u32 / eb;
        let end = first + self.win.len() as u32 / eb;
        Ok((c, hi.min(end)))
    }

    /// The window's bytes holding entries `lo..hi`, which [`span`](Self::span) put there.
    fn entries(&self, lo: u32, hi: u32) -> &[u8] {
        let eb = self.geo.entry_bytes() as usize;
        let at = lo as usize * eb - self.win_at as usize * SECTOR;
        &self.win[at..at + (hi - lo) as usize * eb]
    }

    /// How many clusters from `c` on each link to the one after (`c` → `c + 1` → ...),
    /// at most `max`, as far as the window holding `c`'s entry reaches: a chain laid out
    /// in one run is walked in a tight loop rather than a checked `next` per cluster. The
    /// links counted are to valid clusters by construction.
    pub fn consecutive(&mut self, c: u32, max: u32) -> Result<u32> {
        // `c + 1` must itself be a cluster of the volume: the last is `clusters + 1`.
        let last = self.geo.clusters + 1;
        let (lo, hi) = self.span(c, c.saturating_add(max).min(last))?;
        let b = self.entries(lo, hi);
        let mut want = lo + 1;
        match self.geo.fat_type {
            FatType::Fat16 => {
                for e in b.chunks_exact(2) {
                    if u32::from(u16::from_le_bytes([e[0], e[1]])) != want {
                        break;
                    }
                    want += 1;
                }
            }
            FatType::Fat32 => {
                for e in b.chunks_exact(4) {
                    if u32::from_le_bytes([e[0], e[1], e[2], e[3]]) & 0x0fff_ffff != want {
                        break;
                    }
                    want += 1;
                }
            }
        }
        Ok(want - 1 - c)
    }

    /// The cluster after `c` in its chain, `None` at the end; a free, bad, reserved or
    /// out-of-range link is [`Error::Corrupt`].
    pub fn next(&mut self, c: u32) -> Result<Option<u32>> {
        let v = self.get(c)?;
        let eoc = match self.geo.fat_type {
            FatType::Fat16 => 0xfff8,
            FatType::Fat32 => 0x0fff_fff8,
        };
        if v >= eoc {
            Ok(None)
        } else if self.geo.valid_cluster(v) {
            Ok(Some(v))
        } else {
            Err(Error::Corrupt)
        }
    }

    /// Checks that the chain from `first` reaches its end mark within `max` clusters, every
    /// link to a cluster of the volume. A loop never does, so a walk that passes this check
    /// ends, however it is made (for `embedded-sdmmc`'s directory walks, which follow a
    /// chain for as long as it goes on).
    pub fn check_chain(&mut self, first: u32, max: u32) -> Result<()> {
        if !self.geo.valid_cluster(first) {
            return Err(Error::Corrupt);
        }
        let mut c = first;
        for _ in 0..max {
            match self.next(c)? {
                None => return Ok(()),
                Some(n) => c = n,
            }
        }
        Err(Error::Corrupt)
    }

    /// Sets entries (cluster, value) in every FAT copy. As `embedded-sdmmc` does, each changed
    /// sector of the first FAT is written to the same place in the others.
    pub fn set(&mut self, updates: Vec<(u32, u32)>) -> Result<()> {
        self.set_in_order(updates, false)
    }

    /// [`set`](Self::set), the changed sectors written from the last to the first when
    /// `descending` (so that a chain of ascending clusters is whole on disk before the
    /// sector linking to its start is written), else from the first.
    pub fn set_in_order(&mut self, mut updates: Vec<(u32, u32)>, descending: bool) -> Result<()> {
        if !updates.is_sorted() {
            updates.sort_unstable();
        }
        let eb = self.geo.entry_bytes() as usize;
        let sector_of = |c: u32| (c as usize * eb / SECTOR) as u32;
        // The updates of each sector: `updates[from..to]`.
        let mut groups = Vec::new();
        let mut from = 0;
        for i in 1..=updates.len() {
            if i == updates.len() || sector_of(updates[i].0) != sector_of(updates[from].0) {
                groups.push((from, i));
                from = i;
            }
        }
        if descending {
            groups.reverse();
        }
        // 8-aligned, and entries indexed by a shift, so that the compiler sees each aligned
        // and moves it whole (in a byte slice of unknown alignment it moves single bytes).
        let mut buf = AlignedSector([0u8; SECTOR]);
        for (from, to) in groups {
            let sector = sector_of(updates[from].0);
            if sector >= self.geo.fat_size {
                return Err(Error::Corrupt);
            }
            self.read_sector(sector, &mut buf.0)?;
            let b = &mut buf.0;
            match self.geo.fat_type {
                FatType::Fat16 => {
                    for &(c, v) in &updates[from..to] {
                        let at = (c as usize % (SECTOR / 2)) << 1;
                        b[at..at + 2].copy_from_slice(&(v as u16).to_le_bytes());
                    }
                }
                FatType::Fat32 => {
                    for &(c, v) in &updates[from..to] {
                        let at = (c as usize % (SECTOR / 4)) << 2;
                        let old = le::get_u32(b, at);
                        let new = (old & 0xf000_0000) | (v & 0x0fff_ffff);
                        b[at..at + 4].copy_from_slice(&new.to_le_bytes());
                    }
                }
            }
            self.write_sector(sector, &buf.0, 0..self.geo.nfats)?;
        }
        Ok(())
    }

    /// The end-of-chain mark this FAT type writes.
    pub fn eoc(&self) -> u32 {
        match self.geo.fat_type {
            FatType::Fat16 => 0xffff,
            FatType::Fat32 => 0x0fff_ffff,
        }
    }

    /// Finds `k` free clusters, looking from cluster `from` to the last one and then from
    /// cluster 2 (the allocation hint, as Linux keeps one: each search goes on where the
    /// last one stopped); returns them as runs (first cluster, count) in the order found.
    /// Nothing is written; fails with [`Error::NoSpace`] if there are fewer than `k`.
    pub fn find_free(&mut self, from: u32, k: u32) -> Result<Vec<(u32, u32)>> {
        let last = self.geo.clusters + 1;
        let from = if self.geo.valid_cluster(from) { from } else { 2 };
        let mut found: Vec<(u32, u32)> = Vec::new();
        let mut n = 0;
        for (mut c, end) in [(from, last + 1), (2, from)] {
            // A window at a time, its entries tested in a tight loop.
            while c < end && n < k {
                let (lo, hi) = self.span(c, end)?;
                let eb = self.geo.entry_bytes() as usize;
                let fat16 = self.geo.fat_type == FatType::Fat16;
                let b = self.entries(lo, hi);
                // The first entry from `at` (among `m`) that is free (or used, if `!free`),
                // in a tight loop over the window's bytes.
                let seek = |at: usize, m: usize, free: bool| {
                    let e = &b[at * eb..(at + m) * eb];
                    let p = if fat16 {
                        e.chunks_exact(2).position(|e| (e[0] | e[1] == 0) == free)
                    } else {
                        e.chunks_exact(4).position(|e| (e[0] | e[1] | e[2] | (e[3] & 0x0f) == 0) == free)
                    };
                    at + p.unwrap_or(m)
                };
                // Runs of free entries, each taken whole.
                let (mut i, len) = (0, (hi - lo) as usize);
                while i < len && n < k {
                    i = seek(i, len - i, true);
                    let from = i;
                    i = seek(i, ((k - n) as usize).min(len - i), false);
                    if i > from {
                        let (x, m) = (lo + from as u32, (i - from) as u32);
                        match found.last_mut() {
                            Some((s, r)) if *s + *r == x => *r += m,
                            _ => found.push((x, m)),
                        }
                        n += m;
                    }
                }
                c = hi;
            }
        }
        if n < k {
            return Err(Error::NoSpace);
        }
        Ok(found)
    }

    /// Links `runs` (free clusters, ascending, each run after the one before) into a chain
    /// after `tail` (which lies before them; none: they are a new file's first) with the
    /// end mark after the last. The first FAT's sectors are written from the last to the
    /// first, so the new clusters' links are on disk before the sector linking the old end
    /// to them (a crash never leaves a link to a free cluster). The other copies: when the
    /// sectors touched are consecutive (they are, but for gaps of whole sectors of used
    /// clusters), they are left to the caller, who mirrors them later ([`mirror`](Self::mirror)),
    /// and their range is returned; otherwise they are written here, one at a time.
    pub fn link_ascending(&mut self, tail: Option<u32>, runs: &[(u32, u32)]) -> Result<Option<(u32, u32)>> {
        let (Some(&(s0, _)), Some(&(sl, nl))) = (runs.first(), runs.last()) else { return Ok(None) };
        let epb = (SECTOR / self.geo.entry_bytes() as usize) as u32;
        let (lo, hi) = (tail.unwrap_or(s0) / epb, (sl + nl - 1) / epb);
        if hi >= self.geo.fat_size {
            return Err(Error::Corrupt);
        }
        let (eoc, fat16) = (self.eoc(), self.geo.fat_type == FatType::Fat16);
        if hi - lo >= SPREAD {
            // Runs spread far apart: one sector at a time.
            let mut links = Vec::new();
            if let Some(t) = tail {
                links.push((t, s0));
            }
            for (j, &(s, n)) in runs.iter().enumerate() {
                links.extend((s..s + n - 1).map(|c| (c, c + 1)));
                links.push((s + n - 1, runs.get(j + 1).map_or(eoc, |r| r.0)));
            }
            return self.set_in_order(links, true).map(|_| None);
        }
        let mut buf = AlignedSector([0u8; SECTOR]);
        let mut touched = Vec::new();
        for sector in (lo..=hi).rev() {
            let (first, end) = (sector * epb, (sector + 1) * epb);
            self.read_sector(sector, &mut buf.0)?;
            let b = &mut buf.0;
            let put = |b: &mut [u8; SECTOR], c: u32, v: u32| {
                let i = (c - first) as usize;
                if fat16 {
                    b[i * 2..i * 2 + 2].copy_from_slice(&(v as u16).to_le_bytes());
                } else {
                    let old = le::get_u32(b, i * 4);
                    b[i * 4..i * 4 + 4]
                        .copy_from_slice(&((old & 0xf000_0000) | (v & 0x0fff_ffff)).to_le_bytes());
                }
            };
            let mut changed = false;
            if let Some(t) = tail.filter(|t| (first..end).contains(t)) {
                put(b, t, s0);
                changed = true;
            }
            for (j, &(s, n)) in runs.iter().enumerate() {
                let (a, z) = (s.max(first), (s + n).min(end));
                if a >= z {
                    continue;
                }
                changed = true;
                // Each cluster but the run's last links to the next, in a tight loop.
                let body = (a - first) as usize..(z.min(s + n - 1).max(a) - first) as usize;
                if fat16 {
                    for (e, v) in b[body.start * 2..body.end * 2].chunks_exact_mut(2).zip(a + 1..) {
                        e.copy_from_slice(&(v as u16).to_le_bytes());
                    }
                } else {
                    for (e, v) in b[body.start * 4..body.end * 4].chunks_exact_mut(4).zip(a + 1..) {
                        let v = v | u32::from(e[3] & 0xf0) << 24;
                        e.copy_from_slice(&v.to_le_bytes());
                    }
                }
                if z == s + n {
                    put(b, s + n - 1, runs.get(j + 1).map_or(eoc, |r| r.0));
                }
            }
            if changed {
                self.write_sector(sector, &buf.0, 0..1)?;
                touched.push(sector);
            }
        }
        if touched.len() as u32 == hi - lo + 1 {
            return Ok(Some((lo, hi)));
        }
        for &sector in &touched {
            self.mirror(sector, sector)?;
        }
        Ok(None)
    }

    /// Writes the first FAT's sectors `lo..=hi` as they stand to the other copies, in one
    /// transfer each.
    pub fn mirror(&mut self, lo: u32, hi: u32) -> Result<()> {
        if self.geo.nfats < 2 || hi >= self.geo.fat_size || lo > hi {
            return Ok(());
        }
        let mut buf = SectorBuf::new((hi - lo + 1) as usize * SECTOR);
        self.part.read(u64::from(self.geo.fat_start + lo), &mut buf)?;
        for c in 1..self.geo.nfats {
            self.part.write(u64::from(self.geo.fat_start + c * self.geo.fat_size + lo), &buf)?;
        }
        Ok(())
    }

    /// Frees the whole chain starting at `first` (checked first: nothing is freed if it is
    /// damaged); returns how many clusters were freed.
    ///
    /// In the chain's own order, from its head: each run of clusters whose entries share a
    /// FAT sector is one write of that sector, so what a cut leaves in use is always the
    /// chain's rest, linking only to clusters in use. A chain that runs back to a lower
    /// sector, freed in ascending order, would leave clusters in use linking to free ones;
    /// one that comes back to a sector it left, freed a sector at a time, would too. Such a
    /// sector is written once for each run (a chain laid out in order takes one write a
    /// sector, as before).
    pub fn free_chain(&mut self, first: u32) -> Result<u32> {
        if first == 0 {
            return Ok(0);
        }
        let mut chain = Chain::new(self.geo, first)?;
        chain.ensure(self, u32::MAX)?;
        let eb = self.geo.entry_bytes() as usize;
        let sector_of = |c: u32| (c as usize * eb / SECTOR) as u32;
        let updates: Vec<(u32, u32)> = chain.clusters().map(|c| (c, 0)).collect();
        for run in updates.chunk_by(|a, b| sector_of(a.0) == sector_of(b.0)) {
            self.set(run.to_vec())?;
        }
        Ok(updates.len() as u32)
    }

    /// Counts free clusters; returns (free count, first free cluster or `u32::MAX`).
    pub fn count_free(&mut self) -> Result<(u32, u32)> {
        let eb = self.geo.entry_bytes() as usize;
        let mut buf = vec![0u8; SCAN as usize * SECTOR];
        let (mut free, mut first) = (0u32, u32::MAX);
        let mut c = 0u32;
        let last = self.geo.clusters + 1;
        let mut sector = 0;
        while c <= last {
            let n = SCAN.min(self.geo.fat_size - sector);
            if n == 0 {
                break;
            }
            let b = &mut buf[..n as usize * SECTOR];
            self.part.read(u64::from(self.geo.fat_start + sector), b)?;
            // Entries c .. c + k are in `b`; of them, clusters 2 ..= last count.
            let k = (b.len() / eb) as u32;
            let (lo, hi) = (c.max(2).min(c + k) - c, (last + 1).clamp(c, c + k) - c);
            let b = &b[lo as usize * eb..hi as usize * eb];
            let (n_free, at) = match self.geo.fat_type {
                FatType::Fat16 => zeros(b.chunks_exact(2).map(|e| e[0] | e[1])),
                FatType::Fat32 => zeros(b.chunks_exact(4).map(|e| e[0] | e[1] | e[2] | (e[3] & 0x0f))),
            };
            free += n_free;
            if let Some(at) = at {
                first = first.min(c + lo + at);
            }
            c += k;
            sector += n;
        }
        Ok((free, first))
    }
}

/// How many of `entries` are 0, and the index of the first that is.
fn zeros(entries: impl Iterator<Item = u8>) -> (u32, Option<u32>) {
    let (mut n, mut first) = (0u32, None);
    for (i, e) in entries.enumerate() {
        if e == 0 {
            n += 1;
            first = first.or(Some(i as u32));
        }
    }
    (n, first)
}

/// A file's or directory's chain as far as it has been walked and checked, as runs of
/// consecutive clusters.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Chain {
    /// (first cluster, count) of each run, in chain order.
    pub runs: Vec<(u32, u32)>,
    /// Clusters walked so far.
    pub len: u32,
    /// Whether the end-of-chain mark was reached.
    pub ended: bool,
}

impl Chain {
    /// The chain starting at `first` (0: an empty file's empty chain).
    pub fn new(geo: &Geometry, first: u32) -> Result<Chain> {
        if first == 0 {
            return Ok(Chain { runs: Vec::new(), len: 0, ended: true });
        }
        if !geo.valid_cluster(first) {
            return Err(Error::Corrupt);
        }
        Ok(Chain { runs: vec![(first, 1)], len: 1, ended: false })
    }

    /// Walks on until `need` clusters are known or the chain ends.
    pub fn ensure<S: BlockDevice>(&mut self, fat: &mut Fat<'_, S>, need: u32) -> Result<()> {
        while self.len < need && !self.ended {
            let &(start, n) = self.runs.last().ok_or(Error::Corrupt)?;
            let k = fat.consecutive(start + n - 1, need - self.len)?;
            if k > 0 {
                if self.len + k > fat.geo.clusters {
                    return Err(Error::Corrupt);
                }
                self.runs.last_mut().ok_or(Error::Corrupt)?.1 += k;
                self.len += k;
                continue;
            }
            match fat.next(start + n - 1)? {
                None => self.ended = true,
                Some(_) if self.len >= fat.geo.clusters => return Err(Error::Corrupt),
                Some(c) if c == start + n => self.runs.last_mut().ok_or(Error::Corrupt)?.1 += 1,
                Some(c) => self.runs.push((c, 1)),
            }
            if !self.ended {
                self.len += 1;
            }
        }
        Ok(())
    }

    /// Adds newly linked runs of clusters (first, count) at the end (the chain is known to
    /// its end).
    pub fn append(&mut self, runs: &[(u32, u32)]) {
        for &(c, k) in runs {
            match self.runs.last_mut() {
                Some((s, n)) if *s + *n == c => *n += k,
                _ => self.runs.push((c, k)),
            }
            self.len += k;
        }
    }

    /// The last cluster walked, if any.
    pub fn last(&self) -> Option<u32> {
        self.runs.last().map(|&(s, n)| s + n - 1)
    }

    /// Every cluster walked so far, in order.
    pub fn clusters(&self) -> impl Iterator<Item = u32> + '_ {
        self.runs.iter().flat_map(|&(s, n)| s..s + n)
    }

    /// The cluster at position `index` of the chain, and how many consecutive clusters
    /// (itself included) follow it on disk.
    pub fn locate(&self, mut index: u32) -> Option<(u32, u32)> {
        for &(s, n) in &self.runs {
            if index < n {
                return Some((s + index, n - index));
            }
            index -= n;
        }
        None
    }
}
