//! File data: read and written along checked cluster runs in large transfers.
//!
//! The crate reads one sector per device call. Reads are done here instead: the file's
//! chain is walked once (and kept with the open file), then each run of consecutive
//! clusters is read in one transfer of up to 2048 sectors, straight into the caller's
//! buffer. Writes likewise: the clusters a write adds are found from a hint that moves on
//! (so a growing file stays in one run), its data goes out in the same large transfers,
//! then the first FAT links the clusters, then the entry gets the size and time; the other
//! FAT copies follow later, a run of sectors at a time (`FatFs::fat2`).

use super::table::{Chain, Fat};
use super::FatFs;
use exo_libos::fs::disk::{BlockDevice, Partition, SECTOR};
use exo_libos::fs::{Error, OpenFlags, Result};

/// A sector's bytes at a 512-aligned address.
#[repr(C, align(512))]
struct AlignedSector([u8; SECTOR]);

/// Largest file FAT can hold.
const MAX_SIZE: u64 = u32::MAX as u64;
/// FAT sectors whose other copies may wait to be written, as one range (64 KiB written on
/// the test card's 512-byte clusters links one or two FAT sectors).
const MIRROR_SPAN: u32 = 16;

/// Where byte `pos` of the file whose chain is `chain` lies: its sector, its offset in
/// that sector, and how many of the `left` bytes from it are contiguous on the disk.
fn place(g: &super::Geometry, chain: &Chain, pos: u64, left: usize) -> Result<(u64, usize, usize)> {
    let cb = u64::from(g.cluster_bytes());
    let (c, run) = chain.locate((pos / cb) as u32).ok_or(Error::Corrupt)?;
    let within = pos % cb;
    let want = (u64::from(run) * cb - within).min(left as u64) as usize;
    let sector = u64::from(g.cluster_sector(c)) + within / SECTOR as u64;
    Ok((sector, (pos % SECTOR as u64) as usize, want))
}

/// Copies bytes `off .. off + buf.len()` of the file whose chain is `chain` into `buf`.
fn read_runs<S: BlockDevice>(
    p: &Partition<S>,
    g: &super::Geometry,
    chain: &Chain,
    off: u64,
    buf: &mut [u8],
) -> Result<()> {
    let mut done = 0usize;
    while done < buf.len() {
        let (sector, skew, want) = place(g, chain, off + done as u64, buf.len() - done)?;
        if skew != 0 || want < SECTOR {
            let mut tmp = [0u8; SECTOR];
            p.read(sector, &mut tmp)?;
            let k = (SECTOR - skew).min(want);
            buf[done..done + k].copy_from_slice(&tmp[skew..skew + k]);
            done += k;
        } else {
            let whole = want / SECTOR * SECTOR;
            p.read(sector, &mut buf[done..done + whole])?;
            done += whole;
        }
    }
    Ok(())
}

impl<S: BlockDevice> FatFs<S> {
    /// Walks node `i`'s chain until `want` clusters are known or it ends (the FAT is not
    /// looked at when they are known already); fails with [`Error::Corrupt`] if fewer than
    /// `need` exist.
    fn chain_to(&mut self, i: usize, want: u32, need: u32) -> Result<()> {
        let c = &self.node_mut(i)?.chain;
        if c.len < want && !c.ended {
            let mut chain = core::mem::take(&mut self.node_mut(i)?.chain);
            let r = self.with_fat(|fat| chain.ensure(fat, want));
            self.node_mut(i)?.chain = chain;
            r?;
        }
        if self.node_mut(i)?.chain.len >= need {
            Ok(())
        } else {
            Err(Error::Corrupt)
        }
    }

    pub(super) fn read_at(&mut self, h: exo_libos::fs::Handle, offset: u64, buf: &mut [u8]) -> Result<usize> {
        let (i, flags) = self.node(h)?;
        if !flags.contains(OpenFlags::READ) {
            return Err(Error::BadHandle);
        }
        let size = u64::from(self.node_mut(i)?.size);
        if offset >= size || buf.is_empty() {
            return Ok(0);
        }
        let len = (size - offset).min(buf.len() as u64) as usize;
        let cb = u64::from(self.geo.cluster_bytes());
        let need = (offset + len as u64).div_ceil(cb) as u32;
        self.chain_to(i, need, need)?;
        let chain = &self.nodes.get(i).and_then(Option::as_ref).ok_or(Error::BadHandle)?.chain;
        self.with_part(|p, g| {
            // File data does not go through the mount's sector cache.
            p.with_io(|k| k.pass = true);
            let r = read_runs(p, g, chain, offset, &mut buf[..len]);
            p.with_io(|k| k.pass = false);
            r
        })?;
        Ok(len)
    }

    pub(super) fn write_at(&mut self, h: exo_libos::fs::Handle, offset: u64, data: &[u8]) -> Result<usize> {
        let (i, flags) = self.node(h)?;
        if !flags.contains(OpenFlags::WRITE) {
            return Err(Error::BadHandle);
        }
        if data.is_empty() {
            return Ok(0);
        }
        let size = self.node_mut(i)?.size;
        let off = if flags.contains(OpenFlags::APPEND) { u64::from(size) } else { offset };
        if off.checked_add(data.len() as u64).is_none_or(|end| end > MAX_SIZE) {
            return Err(Error::FileTooLarge);
        }
        self.begin_change()?;
        // The chain is known (and checked) as far as the write reaches; the clusters the
        // file's size says exist must be there.
        let cb = u64::from(self.geo.cluster_bytes());
        let end = off + data.len() as u64;
        let want = end.div_ceil(cb) as u32;
        self.chain_to(i, want, want.min(u64::from(size).div_ceil(cb) as u32))?;
        let mut chain = self.node_mut(i)?.chain.clone();
        let new = match want.checked_sub(chain.len) {
            Some(k) if k > 0 => {
                // One cluster stays free, as for the crate's allocations (`reserve`).
                self.reserve(k)?;
                let hint = self.next_free;
                self.with_fat(|fat| fat.find_free(hint, k))?
            }
            _ => alloc::vec::Vec::new(),
        };
        let tail = chain.last();
        chain.append(&new);
        let w0 = self.writes()?;
        // Data first, into clusters still free on disk; then the FAT links them; then the
        // entry gets the size. A crash in between leaves free clusters written, or a chain
        // longer than the size (`fsck.vfat` trims it): never a size over unlinked clusters.
        let r = self.with_part(|p, g| {
            // File data does not go through the mount's sector cache (a partial sector is
            // read from the device: what the cache holds equals it).
            p.with_io(|k| k.pass = true);
            let r = (|| {
                if off > u64::from(size) {
                    write_runs(p, g, &chain, u64::from(size), Src::Zeros((off - u64::from(size)) as usize))?;
                }
                write_runs(p, g, &chain, off, Src::Data(data))
            })();
            p.with_io(|k| k.pass = false);
            r
        });
        let r = r.and_then(|_| self.with_fat(|fat| link(fat, tail, &new)));
        // The other FAT copies of what was linked are written later, a run of sectors at a
        // time (see `FatFs::fat2`).
        let r = r.and_then(|lag| match (lag, self.fat2) {
            (Some((lo, hi)), Some((a, b))) if lo.min(a) + MIRROR_SPAN > hi.max(b) => {
                self.fat2 = Some((lo.min(a), hi.max(b)));
                Ok(())
            }
            (Some(range), _) => {
                self.mirror_fat()?;
                self.fat2 = Some(range);
                Ok(())
            }
            (None, _) => Ok(()),
        });
        if let Err(e) = r {
            // The links may or may not be on disk: walk the chain again next time.
            let geo = self.geo;
            let n = self.node_mut(i)?;
            n.chain = Chain::new(&geo, n.cluster)?;
            self.free = None;
            return Err(e);
        }
        if let Some(&(s, n)) = new.last() {
            self.next_free = s + n;
            if let Some(f) = &mut self.free {
                *f -= new.iter().map(|r| r.1).sum::<u32>();
            }
        }
        let first = chain.runs.first().map_or(0, |r| r.0);
        let size = (end as u32).max(size);
        let (date, time) = exo_libos::fs::time::to_fat((self.clock)());
        let pos = self.node_mut(i)?.pos;
        let ft = self.geo.fat_type;
        let e = self.with_part(|p, _| {
            // Aligned, so the partition moves it without a bounce copy.
            let mut b = AlignedSector([0u8; SECTOR]);
            let b = &mut b.0;
            p.read(u64::from(pos.0), b)?;
            let e = &mut b[pos.1..pos.1 + 32];
            e[11] |= super::dir::ATTR_ARCHIVE;
            super::dir::set_cluster(e, ft, first);
            e[22..24].copy_from_slice(&time.to_le_bytes());
            e[24..26].copy_from_slice(&date.to_le_bytes());
            e[28..32].copy_from_slice(&size.to_le_bytes());
            p.write(u64::from(pos.0), b)?;
            let mut e = [0u8; 32];
            e.copy_from_slice(&b[pos.1..pos.1 + 32]);
            Ok(e)
        })?;
        // The directories parsed lately stay valid: this write changed file data (in
        // this chain's clusters), the FAT and this one entry.
        let w1 = self.writes()?;
        let g = self.geo;
        let ours = |s: u32| {
            chain
                .runs
                .iter()
                .any(|&(a, n)| (g.cluster_sector(a)..g.cluster_sector(a) + n * g.spc).contains(&s))
        };
        self.dirs.get_mut().carry_entry(w0, w1, pos, &e, ft, ours);
        let n = self.node_mut(i)?;
        n.cluster = first;
        n.size = size;
        n.mtime = exo_libos::fs::time::from_fat(date, time);
        n.chain = chain;
        Ok(data.len())
    }
}

/// What [`write_runs`] writes.
enum Src<'a> {
    Data(&'a [u8]),
    /// This many zero bytes.
    Zeros(usize),
}

impl Src<'_> {
    fn len(&self) -> usize {
        match self {
            Src::Data(d) => d.len(),
            Src::Zeros(n) => *n,
        }
    }
}

/// Zero bytes written at once for a gap.
const ZEROS: usize = 64 * SECTOR;

/// Writes `src` at byte `off` of the file whose chain (long enough) is `chain`: each run of
/// consecutive clusters in whole-sector transfers, a partial sector read and rewritten.
fn write_runs<S: BlockDevice>(
    p: &Partition<S>,
    g: &super::Geometry,
    chain: &Chain,
    off: u64,
    src: Src,
) -> Result<()> {
    let len = src.len();
    let zeros = match src {
        Src::Zeros(_) => alloc::vec![0u8; ZEROS.min(len.next_multiple_of(SECTOR))],
        Src::Data(_) => alloc::vec::Vec::new(),
    };
    let bytes = |from: usize, n: usize| match src {
        Src::Data(d) => &d[from..from + n],
        Src::Zeros(_) => &zeros[..n],
    };
    let mut done = 0usize;
    while done < len {
        let (sector, skew, want) = place(g, chain, off + done as u64, len - done)?;
        if skew != 0 || want < SECTOR {
            let mut tmp = [0u8; SECTOR];
            p.read(sector, &mut tmp)?;
            let k = (SECTOR - skew).min(want);
            tmp[skew..skew + k].copy_from_slice(bytes(done, k));
            p.write(sector, &tmp)?;
            done += k;
        } else {
            let mut whole = want / SECTOR * SECTOR;
            if matches!(src, Src::Zeros(_)) {
                whole = whole.min(ZEROS);
            }
            p.write(sector, bytes(done, whole))?;
            done += whole;
        }
    }
    Ok(())
}

/// Links `new` (runs of free clusters, first and count) into a chain after `tail` (none:
/// they are a new file's first), in every FAT copy: the new clusters' own links first, then
/// the old end's link to them, so a crash never leaves the file's chain linking to a free
/// cluster. When the old end and the new runs ascend (the usual case: the allocation hint
/// moves on), [`Fat::link_ascending`] writes the sectors from the last to the first, which
/// keeps that order and writes the sector shared by the old end and the first new clusters
/// once, and no link points at a free cluster at any moment. Otherwise the new clusters'
/// own links go out in ascending sector order, so for a moment one of them, not yet reached
/// from the file, may link to a cluster still free (lost clusters to `fsck.vfat`).
fn link<S: BlockDevice>(
    fat: &mut Fat<'_, S>,
    tail: Option<u32>,
    new: &[(u32, u32)],
) -> Result<Option<(u32, u32)>> {
    let Some(&(first, _)) = new.first() else { return Ok(None) };
    let ascending = tail.is_none_or(|t| t < first) && new.windows(2).all(|w| w[0].0 + w[0].1 <= w[1].0);
    if ascending {
        return fat.link_ascending(tail, new);
    }
    let mut links = alloc::vec::Vec::new();
    for (j, &(s, n)) in new.iter().enumerate() {
        links.extend((s..s + n - 1).map(|c| (c, c + 1)));
        links.push((s + n - 1, new.get(j + 1).map_or(fat.eoc(), |r| r.0)));
    }
    fat.set(links)?;
    if let Some(t) = tail {
        fat.set(alloc::vec![(t, first)])?;
    }
    Ok(None)
}
