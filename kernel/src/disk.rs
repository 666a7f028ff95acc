//! The disk, multiplexed by sector: secure bindings of extents to environments.
//!
//! The kernel reads the MBR once at boot and publishes the partition table; it never
//! interprets a file system. An environment holds up to eight bindings (start, count,
//! rights); init is born holding the whole disk and grants sub-extents, with equal or
//! fewer rights, to its descendants, who may grant onward. Every transfer is checked
//! against the caller's bindings and moves data straight between the device and the
//! caller's own frames — no buffer cache, no bounce buffer.

use core::mem::MaybeUninit;
use exo_abi::{EnvId, Error, SectorBinding, SECTOR_MAX_COUNT, SECTOR_READ, SECTOR_WRITE};
use exo_bsp::disk::Disk;
use exo_format::mbr;

use exo_bsp::{BlockDevice, BlockError};

use crate::cell::Global;
use crate::env::{Kernel, MAX_ENVS};
use crate::uaccess;

static DISK: Global<Option<Disk>> = Global::new(None);

fn io_error(e: BlockError) -> Error {
    match e {
        BlockError::OutOfRange => Error::Invalid,
        BlockError::Timeout => Error::Timeout,
        BlockError::Io | BlockError::NoMedium => Error::Io,
    }
}

/// Installs the disk found at boot, reads its partition table into the kernel information
/// page, and returns its size in sectors.
pub fn attach(k: &mut Kernel, mut disk: Disk) -> u64 {
    let sectors = disk.sectors();
    let mut sector0 = [0u8; 512];
    let table = disk
        .read(0, &mut [&mut sector0[..]])
        .map_err(|_| "unreadable")
        .and_then(|_| mbr::parse(&sector0, Some(sectors)).map_err(|_| "no valid MBR"));
    let info = k.info();
    match (table, info) {
        (Ok(parts), Some(info)) => {
            info.disk_sectors = sectors;
            for (slot, p) in info.partitions.iter_mut().zip(parts) {
                *slot = p.unwrap_or_default();
            }
            let n = parts.iter().flatten().count();
            log::info!("disk: {} ({} MiB), {n} partition(s)", disk.name(), sectors >> 11);
        }
        (Err(why), info) => {
            if let Some(info) = info {
                info.disk_sectors = sectors;
            }
            log::info!("disk: {} ({} MiB), partition table: {why}", disk.name(), sectors >> 11);
        }
        (Ok(_), None) => {}
    }
    DISK.with(|d| *d = Some(disk));
    sectors
}

/// Page pieces a transfer of at most SECTOR_MAX_COUNT sectors can span.
const PIECES: usize = (SECTOR_MAX_COUNT as usize * 512) / 4096 + 1;

fn check_range(start: u64, count: u64, disk_sectors: u64) -> Result<(), Error> {
    if count == 0 || count > SECTOR_MAX_COUNT || start.checked_add(count).is_none_or(|e| e > disk_sectors) {
        return Err(Error::Invalid);
    }
    Ok(())
}

impl Kernel {
    fn disk_sectors(&mut self) -> Result<u64, Error> {
        match self.info().map(|i| i.disk_sectors) {
            Some(n) if n > 0 => Ok(n),
            _ => Err(Error::NotFound),
        }
    }

    /// `SectorRead` (`write` false) and `SectorWrite`.
    pub fn sector_io(&mut self, start: u64, count: u64, buf: u64, write: bool) -> Result<u64, Error> {
        check_range(start, count, self.disk_sectors()?)?;
        if !buf.is_multiple_of(512) {
            return Err(Error::Invalid);
        }
        let e = &self.envs[self.current];
        let right = if write { SECTOR_WRITE } else { SECTOR_READ };
        if !e.sectors.iter().any(|b| b.covers(start, count, right)) {
            return Err(Error::Denied);
        }
        // The caller's pages, checked all at once (for a read they must be writable), as
        // slices of its frames in the physmap. Only the first `n` entries are ever read.
        let mut pieces: [MaybeUninit<&mut [u8]>; PIECES] = [const { MaybeUninit::uninit() }; PIECES];
        let mut n = 0;
        uaccess::with_user(e.root, buf, count * 512, !write, |chunk| {
            // SAFETY: `chunk` is a physmap slice of a frame the caller has mapped with the
            // needed permission; it stays valid past this closure, and the pieces do not
            // overlap. They are used only for this one transfer.
            pieces[n].write(unsafe { core::slice::from_raw_parts_mut(chunk.as_mut_ptr(), chunk.len()) });
            n += 1;
        })?;
        // SAFETY: entries 0..n were written just above.
        let bufs = unsafe { core::slice::from_raw_parts_mut(pieces.as_mut_ptr() as *mut &mut [u8], n) };
        DISK.with(|d| {
            let d = d.as_mut().ok_or(Error::NotFound)?;
            if write {
                // SAFETY: `&mut [u8]` and `&[u8]` have the same layout; the data is only read.
                let bufs = unsafe { core::slice::from_raw_parts(bufs.as_ptr() as *const &[u8], n) };
                d.write(start, bufs).map_err(io_error)?;
            } else {
                d.read(start, bufs).map_err(io_error)?;
            }
            Ok(count)
        })
    }

    /// `SectorFlush`: only for a holder of some binding with the write right.
    pub fn sector_flush(&mut self) -> Result<u64, Error> {
        self.disk_sectors()?;
        if !self.envs[self.current].sectors.iter().any(|b| b.count != 0 && b.rights & SECTOR_WRITE != 0) {
            return Err(Error::Denied);
        }
        DISK.with(|d| d.as_mut().ok_or(Error::NotFound)?.flush().map(|_| 0).map_err(io_error))
    }

    /// `SectorGrant`: a sub-extent of one of the caller's bindings to a descendant.
    pub fn sector_grant(&mut self, env: EnvId, start: u64, count: u64, rights: u64) -> Result<u64, Error> {
        let t = self.target(env)?;
        let rights = u32::try_from(rights).ok().filter(|r| *r != 0 && r & !(SECTOR_READ | SECTOR_WRITE) == 0);
        let (Some(rights), Ok(count32)) = (rights, u32::try_from(count)) else { return Err(Error::Invalid) };
        if count == 0 || t == self.current {
            return Err(Error::Invalid);
        }
        if !self.envs[self.current].sectors.iter().any(|b| b.covers(start, count, rights)) {
            return Err(Error::Denied);
        }
        let slot = self.envs[t].sectors.iter_mut().find(|b| b.count == 0).ok_or(Error::NoSlot)?;
        *slot = SectorBinding { start, count: count32, rights };
        self.publish(t);
        Ok(0)
    }

    /// `SectorRevoke`: removes a binding of exactly this extent from the caller or a
    /// descendant, and from every descendant of that one whatever part of the extent its
    /// remaining bindings no longer cover (so what was granted onward goes too).
    pub fn sector_revoke(&mut self, env: EnvId, start: u64, count: u64) -> Result<u64, Error> {
        let t = self.target(env)?;
        let b = self.envs[t]
            .sectors
            .iter_mut()
            .find(|b| b.count != 0 && b.start == start && b.count as u64 == count);
        *b.ok_or(Error::NotFound)? = SectorBinding::default();
        let kept = self.envs[t].sectors;
        for d in 0..MAX_ENVS {
            if d == t || !crate::env::is_ancestor_or_self(&self.envs, t, d) {
                continue;
            }
            for b in self.envs[d].sectors.iter_mut() {
                let overlaps = b.count != 0 && b.start < start + count && start < b.start + b.count as u64;
                if overlaps && !kept.iter().any(|k| k.covers(b.start, b.count as u64, b.rights)) {
                    *b = SectorBinding::default();
                }
            }
            self.publish(d);
        }
        self.publish(t);
        Ok(0)
    }

    /// Gives `slot` the whole disk (init, at boot).
    pub fn bind_whole_disk(&mut self, slot: usize, sectors: u64) {
        let count = sectors.min(u32::MAX as u64) as u32;
        self.envs[slot].sectors[0] = SectorBinding { start: 0, count, rights: SECTOR_READ | SECTOR_WRITE };
        self.publish(slot);
    }
}
