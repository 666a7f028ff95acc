//! File data: reads along checked cluster runs in large transfers; writes through the crate.
//!
//! The crate reads one sector per device call. Reads are done here instead: the file's
//! chain is walked once (and kept with the open file), then each run of consecutive
//! clusters is read in one transfer of up to 2048 sectors, straight into the caller's
//! buffer. Writes go through the crate, which allocates clusters, keeps both FATs equal and
//! updates the entry; the chain it will follow is checked here first.

use super::table::{Chain, Fat};
use super::{sd, FatFs};
use embedded_sdmmc::Mode;
use exo_format::le;
use exo_libos::fs::disk::{BlockDevice, Partition, SECTOR};
use exo_libos::fs::{Error, OpenFlags, Result};

/// Largest file FAT can hold.
const MAX_SIZE: u64 = u32::MAX as u64;

/// Copies bytes `off .. off + buf.len()` of the file whose chain is `chain` into `buf`.
fn read_runs<S: BlockDevice>(
    p: &Partition<S>,
    g: &super::Geometry,
    chain: &Chain,
    off: u64,
    buf: &mut [u8],
) -> Result<()> {
    let cb = u64::from(g.cluster_bytes());
    let mut done = 0usize;
    while done < buf.len() {
        let pos = off + done as u64;
        let (c, run) = chain.locate((pos / cb) as u32).ok_or(Error::Corrupt)?;
        let within = pos % cb;
        let contiguous = u64::from(run) * cb - within;
        let want = contiguous.min((buf.len() - done) as u64) as usize;
        let sector = u64::from(g.cluster_sector(c)) + within / SECTOR as u64;
        let skew = (pos % SECTOR as u64) as usize;
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
    /// Walks node `i`'s chain until `want` clusters are known or it ends; fails with
    /// [`Error::Corrupt`] if fewer than `need` exist.
    fn chain_to(&mut self, i: usize, want: u32, need: u32) -> Result<Chain> {
        let mut chain = core::mem::take(&mut self.node_mut(i)?.chain);
        let r = self.with_part(|p, g| chain.ensure(&mut Fat::new(p, g), want));
        let ok = chain.len >= need;
        self.node_mut(i)?.chain = chain.clone();
        r?;
        if ok {
            Ok(chain)
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
        let chain = self.chain_to(i, need, need)?;
        self.with_part(|p, g| {
            // File data does not go through the mount's sector cache.
            p.with_io(|k| k.pass = true);
            let r = read_runs(p, g, &chain, offset, &mut buf[..len]);
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
        // The crate follows every link from the first cluster to the last one the write
        // touches (allocating where the chain ends): all of those links are checked first,
        // and the clusters the file's size says exist must be there.
        let cb = u64::from(self.geo.cluster_bytes());
        let end = off + data.len() as u64;
        let want = end.div_ceil(cb) as u32;
        let chain = self.chain_to(i, want, want.min(u64::from(size).div_ceil(cb) as u32))?;
        if chain.ended {
            self.reserve(want.saturating_sub(chain.len))?;
        }
        let (path, sfn) = {
            let n = self.node_mut(i)?;
            (n.dir_path.clone(), n.sfn)
        };
        let name = Self::crate_name(&sfn)?;
        let r = self.in_crate_dir(&path, |cd| {
            let f = self.vm.open_file_in_dir(cd, name, Mode::ReadWriteAppend).map_err(sd)?;
            let r = self.crate_write(f, u64::from(size), off, data);
            let c = self.vm.close_file(f).map_err(sd);
            r.and(c)
        });
        let settled = self.settle();
        self.refresh(i)?;
        settled?;
        r.map(|_| data.len())
    }

    /// Writes `data` at `off` of an open crate file of length `size`, zero-filling a gap.
    fn crate_write(&self, f: embedded_sdmmc::RawFile, size: u64, off: u64, data: &[u8]) -> Result<()> {
        if off > size {
            self.vm.file_seek_from_start(f, size as u32).map_err(sd)?;
            let zeros = [0u8; 4096];
            let mut gap = off - size;
            while gap > 0 {
                let k = gap.min(zeros.len() as u64) as usize;
                self.vm.write(f, &zeros[..k]).map_err(sd)?;
                gap -= k as u64;
            }
        } else {
            self.vm.file_seek_from_start(f, off as u32).map_err(sd)?;
        }
        self.vm.write(f, data).map_err(sd)
    }

    /// Re-reads node `i`'s entry after the crate wrote it (size, first cluster, time), and
    /// puts back the lower-case flags the crate clears when it rewrites an entry.
    fn refresh(&mut self, i: usize) -> Result<()> {
        let (pos, case) = {
            let n = self.node_mut(i)?;
            (n.pos, n.case)
        };
        let fat32 = self.geo.fat_type == super::bpb::FatType::Fat32;
        let e = self.with_part(|p, _| -> Result<[u8; 32]> {
            let mut b = [0u8; SECTOR];
            p.read(u64::from(pos.0), &mut b)?;
            if b[pos.1 + 12] != case {
                b[pos.1 + 12] = case;
                p.write(u64::from(pos.0), &b)?;
            }
            let mut e = [0u8; 32];
            e.copy_from_slice(&b[pos.1..pos.1 + 32]);
            Ok(e)
        })?;
        let hi = if fat32 { u32::from(le::get_u16(&e, 20)) } else { 0 };
        let cluster = hi << 16 | u32::from(le::get_u16(&e, 26));
        let geo = self.geo;
        let n = self.node_mut(i)?;
        n.size = le::get_u32(&e, 28);
        n.mtime = exo_libos::fs::time::from_fat(le::get_u16(&e, 24), le::get_u16(&e, 22));
        if cluster != n.cluster {
            n.cluster = cluster;
            n.chain = Chain::new(&geo, cluster)?;
        } else {
            n.chain.reopen();
        }
        Ok(())
    }
}
