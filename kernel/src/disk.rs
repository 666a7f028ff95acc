//! The disk, multiplexed by sector: secure bindings of extents to environments.
//!
//! The kernel reads the MBR once at boot and publishes the partition table; it never
//! interprets a file system. An environment holds up to eight bindings (start, count,
//! rights); init is born holding the whole disk and grants sub-extents, with equal or
//! fewer rights, to its descendants, who may grant onward. Every transfer is checked
//! against the caller's bindings and moves data straight between the device and the
//! caller's own frames — no buffer cache, no bounce buffer.

use core::sync::atomic::Ordering::{Acquire, Relaxed, Release};
use core::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize};

use exo_abi::{Error, SectorBinding, SECTOR_CHUNK, SECTOR_MAX_COUNT, SECTOR_READ, SECTOR_WRITE};
use exo_bsp::disk::Disk;
use exo_bsp::{BlockDevice, IrqController};

use crate::cell::Global;
use crate::env::{Kernel, Wait, MAX_ENVS, NONE};
use crate::uaccess;

static DISK: Global<Option<Disk>> = Global::new(None);

/// Installs the disk found at boot, reads its partition table into the kernel information
/// page, and returns its size in sectors.
pub fn attach(k: &mut Kernel, mut disk: Disk) -> u64 {
    let (sectors, (parts, summary)) = (disk.sectors(), disk.partitions());
    log::info!("disk: {summary}");
    if let Some(info) = k.info() {
        (info.disk_sectors, info.partitions) = (sectors, parts);
    }
    if let (Some(id), Some(b)) = (disk.intid(), crate::platform::board()) {
        INTID.store(id, Relaxed); // the device ends transfers in the background
        b.gic.enable(id);
    }
    DISK.with(|d| *d = Some(disk));
    sectors
}

/// Page pieces a chunk of at most `SECTOR_CHUNK` sectors can span.
const PIECES: usize = (SECTOR_CHUNK as usize * 512) / 4096 + 1;

/// The slot whose frames the disk's one transfer moves data to or from ([`NONE`]: none):
/// claimed by the transfer's checks under the kernel lock, let go when it ends — on return
/// from a synchronous one (the SD controllers' PIO), in [`complete`] for one the device does
/// in the background (virtio-blk).
static PINNED: AtomicUsize = AtomicUsize::new(NONE);
/// Per slot, for `SectorWait`: the id of the environment that last started a transfer there
/// (high half) and how its background transfer ended (low half: 0 or an error code).
static OUTCOME: [AtomicU64; MAX_ENVS] = [const { AtomicU64::new(0) }; MAX_ENVS];
/// The interrupt the disk raises when a background transfer ends (1023, the GIC's spurious
/// id, which is never delivered: none).
pub static INTID: AtomicU32 = AtomicU32::new(1023);

/// Waits until the disk moves no data for a slot `of` picks: before anything unmaps a page
/// of an environment or takes a binding from it. The caller holds the kernel lock, so no
/// new transfer can start: the wait is one chunk at most (or the device's timeout).
pub fn wait_unpinned(of: impl Fn(usize) -> bool) {
    while of(PINNED.load(Acquire)) {
        complete(); // the transfer's interrupt may be waiting for this very core
        core::hint::spin_loop(); // (under QEMU it hands the host thread to the other cores)
    }
}

/// Ends a background transfer if the device is done with it (from its interrupt, core 0's
/// tick, `SectorWait` and `wait_unpinned`): its outcome kept for `SectorWait`, the pin let go.
pub fn complete() {
    let polled = (INTID.load(Relaxed) != 1023).then(|| DISK.with(|d| d.as_mut()?.poll()));
    let Some(Some(r)) = polled else { return };
    let code = crate::syscall::ret(r.map(|_| 0).map_err(Error::from)) as u32 as u64;
    OUTCOME.get(PINNED.load(Relaxed)).map(|o| o.fetch_or(code, Relaxed)); // (never NONE here)
    PINNED.store(NONE, Release); // its sleeper wakes at the interrupt or the tick
}

/// `SectorRead` (`WRITE` false) and `SectorWrite`: checked, and the caller pinned, under
/// the kernel lock; started without it, so the other cores go on, and on `virt` left to
/// the device, so the caller's core goes on too (`SectorWait`; docs/multicore.md).
pub extern "C" fn sector_io<const WRITE: bool>(at: u64, count: u64, buf: u64, _: u64, _: u64, _: u64) -> i64 {
    let mut pieces: [&mut [u8]; PIECES] = Default::default();
    let checked = crate::env::kernel(|k| k.sector_check(at, count, buf, WRITE, &mut pieces));
    crate::syscall::ret(checked.and_then(|(n, count)| {
        let bufs = &mut pieces[..n]; // frames that stay mapped while the caller is pinned
        let r = DISK.with(|d| d.as_mut().ok_or(Error::NotFound)?.start(at, bufs, WRITE).map_err(Error::from));
        if r != Ok(true) {
            PINNED.store(NONE, Release); // done already, or refused
        }
        r.map(|background| count | if background { exo_abi::SECTOR_PENDING } else { 0 })
    }))
}

/// `SectorFlush`: only for a holder of some binding with the write right; without the lock.
pub extern "C" fn sector_flush(_: u64, _: u64, _: u64, _: u64, _: u64, _: u64) -> i64 {
    let allowed = crate::env::kernel(|k| {
        k.disk_sectors()?;
        let e = k.envs.get(k.current).ok_or(Error::NotFound)?;
        let writer = e.sectors.iter().any(|b| b.count != 0 && b.rights & SECTOR_WRITE != 0);
        writer.then_some(0).ok_or(Error::Denied)
    });
    let flush = |_| DISK.with(|d| d.as_mut().ok_or(Error::NotFound)?.flush().map(|_| 0).map_err(Error::from));
    crate::syscall::ret(allowed.and_then(flush))
}

impl Kernel {
    fn disk_sectors(&mut self) -> Result<u64, Error> {
        self.info().map(|i| i.disk_sectors).filter(|&n| n > 0).ok_or(Error::NotFound)
    }

    /// A transfer's checks: the whole range lies on the disk and in one of the caller's
    /// bindings with the right; the first chunk's pages are mapped for the caller (writable
    /// for a read). Writes them to `pieces`, pins the caller, returns the pieces and sectors.
    fn sector_check(
        &mut self,
        start: u64,
        count: u64,
        buf: u64,
        write: bool,
        pieces: &mut [&mut [u8]; PIECES],
    ) -> Result<(usize, u64), Error> {
        let disk = self.disk_sectors()?;
        let end = start.saturating_add(count);
        refuse_if!(count == 0 || count > SECTOR_MAX_COUNT || end > disk, Error::Invalid);
        refuse_if!(!buf.is_multiple_of(512), Error::Invalid);
        let e = self.envs.get(self.current).ok_or(Error::NotFound)?; // destroyed meanwhile
        let rights = if write { SECTOR_WRITE } else { SECTOR_READ };
        refuse_if!(!e.sectors.iter().any(|b| b.covers(start, count, rights)), Error::Denied);
        let (count, mut n) = (count.min(SECTOR_CHUNK), 0);
        uaccess::with_user(e.root, buf, count * 512, !write, |chunk| {
            // SAFETY: `chunk` is a physmap slice of a frame the caller has mapped with the
            // needed permission; it stays valid past this closure, and the pieces do not
            // overlap. They are used only for this one transfer.
            pieces[n] = unsafe { core::slice::from_raw_parts_mut(chunk.as_mut_ptr(), chunk.len()) };
            n += 1;
        })?;
        PINNED.compare_exchange(NONE, self.current, Relaxed, Relaxed).or(Err(Error::Busy))?;
        OUTCOME[self.current].store((e.id.0 as u64) << 32, Relaxed); // published by the unlock
        Ok((n, count))
    }

    /// `SectorWait`: while the caller's transfer is in flight, it sleeps if another
    /// environment its core may run is runnable, else it polls (calls again at once, after a
    /// `yield`: an idle core would gain nothing, and under `-icount` its clock would run at
    /// host speed); then how the transfer ended (0 if it was collected already).
    pub fn sector_wait(&mut self, cur: usize) -> Result<Option<u64>, Error> {
        complete();
        if PINNED.load(Acquire) == cur {
            self.envs[cur].frame().pc -= 4; // repeated when it runs again
            let alone = self.runnable() & !self.excluded[self.cpu] & !(1 << cur) == 0;
            // `yield` when alone: fewer counted polls while QEMU's device works.
            if alone { exo_bsp::smp::relax_cold() } else { self.block(cur, Wait::Disk) }
            return Ok(None);
        }
        let o = OUTCOME[cur].swap(0, Relaxed); // published before the unpin
        let mine = o >> 32 == self.envs[cur].id.0 as u64;
        exo_abi::result(if mine { o as u32 as i32 as i64 as u64 } else { 0 }).map(Some)
    }

    /// `SectorGrant`: a sub-extent of one of the caller's bindings to a descendant, `t`.
    pub fn sector_grant(&mut self, t: usize, start: u64, count: u64, rights: u64) -> Result<u64, Error> {
        let rights = u32::try_from(rights).ok().filter(|r| *r != 0 && r & !(SECTOR_READ | SECTOR_WRITE) == 0);
        let (Some(rights), Ok(count32)) = (rights, u32::try_from(count)) else { return Err(Error::Invalid) };
        refuse_if!(count == 0 || t == self.current, Error::Invalid);
        let mine = &self.envs[self.current].sectors;
        refuse_if!(!mine.iter().any(|b| b.covers(start, count, rights)), Error::Denied);
        let slot = self.envs[t].sectors.iter_mut().find(|b| b.count == 0).ok_or(Error::NoSlot)?;
        *slot = SectorBinding { start, count: count32, rights };
        self.publish(t);
        Ok(0)
    }

    /// `SectorRevoke`: removes a binding of exactly this extent from `t` (the caller or a
    /// descendant), and from every descendant of that one whatever part of the extent its
    /// remaining bindings no longer cover (so what was granted onward goes too).
    pub fn sector_revoke(&mut self, t: usize, start: u64, count: u64) -> Result<u64, Error> {
        wait_unpinned(|s| crate::env::is_ancestor_or_self(&self.envs, t, s)); // nothing in flight
        let b = self.envs[t]
            .sectors
            .iter_mut()
            .find(|b| b.count != 0 && b.start == start && b.count as u64 == count);
        *b.ok_or(Error::NotFound)? = SectorBinding::default();
        let kept = self.envs[t].sectors;
        for d in 0..MAX_ENVS {
            // (`t` itself loses nothing more: `kept` covers each of its own bindings.)
            if crate::env::is_ancestor_or_self(&self.envs, t, d) {
                SectorBinding::revoke_uncovered(&mut self.envs[d].sectors, start, count, &kept);
                self.publish(d);
            }
        }
        Ok(0)
    }

    /// Gives `slot` the whole disk (init, at boot).
    pub fn bind_whole_disk(&mut self, slot: usize, sectors: u64) {
        let count = sectors.min(u32::MAX as u64) as u32;
        self.envs[slot].sectors[0] = SectorBinding { start: 0, count, rights: SECTOR_READ | SECTOR_WRITE };
        self.publish(slot);
    }
}
