//! The FAT libOS: FAT16 and FAT32 volumes on the `embedded-sdmmc` crate, behind the
//! runtime's [`FileSystem`] interface. An app that wants only FAT depends on this crate and
//! `exo-libos`, and links nothing of the log-structured file system (see `docs/libos.md`);
//! [`backend`] is what it hands to `exo_libos::fs::mount` to have FAT partitions mounted at
//! `/fat`, `/fat1`, ...
//!
//! # Who does what
//!
//! - `embedded-sdmmc` parses the volume and makes directories, and creates a file's entry
//!   when the directory has no free slot (it grows the directory).
//! - This module checks what the crate trusts (`bpb`: the boot sector; `table`: every chain
//!   before the crate follows it; `dir`: every entry before the crate is handed it), and
//!   does the rest: long names when reading (`dir`), file entries created in a free slot,
//!   rename and remove that free clusters and long-name slots (`ops`), file data read and
//!   written in large transfers along checked cluster runs, with its own cluster
//!   allocation (`io`), and the FSInfo free count and next-free hint (`dev`, `sync`).
//! - `dev`: the crate opens volumes only through an MBR, so it is shown a synthesised one
//!   in front of the partition.
//!
//! The crate's own handles live for one call: each operation opens the directories it needs
//! and closes them before returning, so `MAX_DIRS`/`MAX_FILES` bound the nesting of one
//! operation, and the libOS's handle table (up to [`MAX_OPEN`]) is what apps see.

#![cfg_attr(not(test), no_std)]

extern crate alloc;

mod bpb;
mod cache;
mod dev;
mod dir;
mod glue;
mod io;
mod name;
mod ops;
mod table;

// Dev-dependencies for the integration tests, which mount FAT beside the LFS; the unit
// tests see them too and do not use them.
#[cfg(test)]
use {exo_lfs as _, exo_logfs as _};

use alloc::boxed::Box;
use alloc::vec::Vec;
use bpb::Geometry;
use cache::Kept;
use dev::{FatClock, FatDev};
use dir::DirLoc;
use embedded_sdmmc::{RawVolume, VolumeIdx, VolumeManager};
use exo_libos::fs::disk::{BlockDevice, Partition};
use exo_libos::fs::mount::{Backend, FAT_TYPES};
use exo_libos::fs::{
    Clock, DirEntry, Error, FileKind, FileSystem, FsStats, Handle, Metadata, OpenFlags, Result,
};
use glue::sd;
use table::{Chain, Fat};

/// Crate directories open at once within one operation (a path walk holds two).
pub const MAX_DIRS: usize = 4;
/// Crate files open at once within one operation (one is ever used).
pub const MAX_FILES: usize = 2;
/// Handles an app may hold open at once (`fs::MAX_OPEN`, as every file system has).
pub const MAX_OPEN: usize = exo_libos::fs::MAX_OPEN;

/// 8.3 names from the root to a directory (how the crate is led to it).
type Names = Vec<[u8; 11]>;

type Vm<S> = VolumeManager<FatDev<Kept<S>>, FatClock, MAX_DIRS, MAX_FILES, 1>;

/// FAT as a back end of the mount layer: partitions of the FAT16/FAT32 MBR types, mounted
/// read-write at `/fat`, `/fat1`, ...
pub const fn backend<S: BlockDevice + 'static>() -> Backend<S> {
    Backend { at: "/fat", kinds: &FAT_TYPES, mount: mount_partition::<S> }
}

fn mount_partition<S: BlockDevice + 'static>(
    part: Partition<S>,
    clock: Clock,
) -> Result<Box<dyn FileSystem>> {
    Ok(Box::new(FatFs::mount(part, FatOptions { read_only: false, clock })?))
}

/// How to mount.
#[derive(Clone, Copy, Debug)]
pub struct FatOptions {
    /// Never write to the device.
    pub read_only: bool,
    /// Time stamps for created and modified files.
    pub clock: Clock,
}

impl Default for FatOptions {
    fn default() -> Self {
        FatOptions { read_only: false, clock: exo_libos::fs::time::uptime }
    }
}

/// An open file, shared by every handle on it.
struct Node {
    /// 8.3 names from the root to the file's directory (what `in_use` compares).
    dir_path: Names,
    /// Where its entry's slot is (partition sector, byte offset).
    pos: (u32, usize),
    cluster: u32,
    size: u32,
    mtime: Option<i64>,
    /// Its cluster chain as far as it has been checked.
    chain: Chain,
    refs: u32,
}

/// A FAT16 or FAT32 volume filling one partition.
pub struct FatFs<S: BlockDevice> {
    vm: Vm<S>,
    vol: RawVolume,
    geo: Geometry,
    read_only: bool,
    clock: Clock,
    /// Whether the FSInfo sector was valid at mount (only then is it kept up to date).
    fsinfo_ok: bool,
    /// Changed since the last sync (FSInfo's count then reads "unknown" on disk).
    dirty: bool,
    /// Free clusters, once counted; then kept up to date (the crate's allocations are
    /// counted by [`FatDev`], the libOS's own frees here).
    free: Option<u32>,
    /// Where the next search for free clusters for file data starts (after the last one
    /// handed out; kept in FSInfo's next-free field at `sync`).
    next_free: u32,
    nodes: Vec<Option<Node>>,
    handles: Vec<Option<(usize, OpenFlags)>>,
    /// Directories parsed lately.
    dirs: core::cell::RefCell<dir::Memo>,
    /// The FAT window of the walks, searches and links of file data, kept from one call to
    /// the next (see [`with_fat`](Self::with_fat)).
    fat_win: table::Window,
    /// [`Kept::fat_writes`] when `fat_win` was put back: it still holds the FAT as it
    /// stands while the count has not moved.
    fat_seen: u64,
    /// FAT sectors (relative to the FAT) that file writes linked in the first FAT and whose
    /// other copies are not written yet: written when the next link falls outside the
    /// range, and at `sync`. Only the first FAT is read (here, by the crate, by Linux and by
    /// `fsck.vfat -a`); until then the copy is the first FAT as it was before.
    fat2: Option<(u32, u32)>,
}

impl<S: BlockDevice> FatFs<S> {
    /// Mounts the FAT16/FAT32 volume that fills `part`, after checking its boot sector.
    pub fn mount(part: Partition<S>, opts: FatOptions) -> Result<Self> {
        if part.sectors() >= u64::from(u32::MAX) {
            return Err(Error::Unsupported);
        }
        let mut b = [0u8; 512];
        part.read(0, &mut b)?;
        let geo = Geometry::parse(&b, part.sectors())?;
        let (mut fsinfo_ok, mut next_free) = (false, 2);
        if let Some(s) = geo.fsinfo {
            part.read(u64::from(s), &mut b)?;
            fsinfo_ok = dev::fsinfo_valid(&b);
            if fsinfo_ok {
                // Only a hint: `find_free` starts from 2 if it is not a cluster.
                next_free = exo_format::le::get_u32(&b, 492);
            }
        }
        let part = Kept::wrap(part);
        let fat = part.start() + u64::from(geo.fat_start);
        part.with_io(|k| k.fat = (fat, fat + u64::from(geo.nfats * geo.fat_size)));
        let vm: Vm<S> = VolumeManager::new_with_limits(FatDev::new(part, geo), FatClock(opts.clock), 1);
        let vol = vm.open_raw_volume(VolumeIdx(0)).map_err(sd)?;
        Ok(FatFs {
            vm,
            vol,
            geo,
            read_only: opts.read_only,
            clock: opts.clock,
            fsinfo_ok,
            dirty: false,
            free: None,
            next_free,
            nodes: Vec::new(),
            handles: Vec::new(),
            dirs: Default::default(),
            fat_win: Default::default(),
            fat_seen: 0,
            fat2: None,
        })
    }

    /// Syncs, closes the volume and gives the partition back.
    pub fn unmount(mut self) -> Result<Partition<S>> {
        self.sync()?;
        self.vm.close_volume(self.vol).map_err(sd)?;
        self.settle()?;
        Ok(Kept::unwrap(self.vm.free().0.part))
    }

    /// Transfer counts of the partition underneath.
    pub fn io_stats(&self) -> exo_libos::fs::disk::IoStats {
        self.vm.device(|d| d.part.stats())
    }

    /// Runs `f` on the partition, after the crate's writes still held in [`FatDev`]'s cache
    /// went out (and its one-block cache was dropped).
    fn with_part<R>(&self, f: impl FnOnce(&Partition<Kept<S>>, &Geometry) -> Result<R>) -> Result<R> {
        let geo = self.geo;
        self.vm.device(|d| {
            d.settle()?;
            f(&d.part, &geo)
        })
    }

    /// Runs `f` on a `Fat` over the window kept from the last call, read again only if
    /// something wrote the FAT since (the crate, a free, a failed write: anything but a
    /// kept `Fat`'s own writes, which update its window as they go).
    fn with_fat<R>(&mut self, f: impl FnOnce(&mut Fat<'_, Kept<S>>) -> Result<R>) -> Result<R> {
        let mut win = core::mem::take(&mut self.fat_win);
        let seen = self.fat_seen;
        let (r, win, now) = self.with_part(|p, g| {
            win.valid &= p.with_io(|k| k.fat_writes) == seen;
            let mut fat = Fat::reuse(p, g, win);
            let r = f(&mut fat);
            Ok((r, fat.into_window(), p.with_io(|k| k.fat_writes)))
        })?;
        (self.fat_win, self.fat_seen) = (win, now);
        r
    }

    /// Brings the other FAT copies up to date with the first (see [`fat2`](Self::fat2)).
    fn mirror_fat(&mut self) -> Result<()> {
        let Some((lo, hi)) = self.fat2 else { return Ok(()) };
        self.with_part(|p, g| Fat::new(p, g).mirror(lo, hi))?;
        self.fat2 = None;
        Ok(())
    }

    /// The count of sector writes to the volume so far (after the crate's went out).
    fn writes(&self) -> Result<u64> {
        self.with_part(|p, _| Ok(p.with_io(|k| k.writes)))
    }

    /// Reads directory `loc`.
    fn read_dir(&self, loc: DirLoc) -> Result<dir::Dir> {
        self.with_part(|p, g| {
            let writes = p.with_io(|k| k.writes);
            self.dirs.borrow_mut().read(p, g, loc, writes)
        })
    }

    /// Walks normalised path components from the root to a directory; returns it and the
    /// 8.3 names leading to it.
    fn walk<'p>(&self, comps: impl Iterator<Item = &'p str>) -> Result<(dir::Dir, Names)> {
        let mut d = self.read_dir(DirLoc::Root)?;
        let mut names = Vec::new();
        for c in comps {
            let e = d.find(c).ok_or(Error::NotFound)?;
            if !e.is_dir() {
                return Err(Error::NotDir);
            }
            d.check(e, &self.geo)?;
            names.push(e.sfn);
            let loc = DirLoc::Cluster(e.cluster);
            d = self.read_dir(loc)?;
        }
        Ok((d, names))
    }

    /// The directory holding normalised `path`'s last component, the 8.3 names leading to
    /// it, and that component (`None` for the root).
    fn parent<'p>(&self, path: &'p str) -> Result<(dir::Dir, Names, Option<&'p str>)> {
        match exo_libos::fs::path::split_last(path) {
            None => Ok((self.read_dir(DirLoc::Root)?, Vec::new(), None)),
            Some((p, name)) => {
                let (d, names) = self.walk(exo_libos::fs::path::components(p))?;
                Ok((d, names, Some(name)))
            }
        }
    }

    /// Before the first change after a sync: FSInfo's count becomes "unknown" on disk, so a
    /// crash leaves a consistent volume.
    fn begin_change(&mut self) -> Result<()> {
        if self.read_only {
            return Err(Error::ReadOnly);
        }
        if !self.dirty {
            if self.fsinfo_ok {
                self.write_fsinfo(u32::MAX, u32::MAX)?;
            }
            self.dirty = true;
        }
        Ok(())
    }

    fn write_fsinfo(&self, free: u32, next: u32) -> Result<()> {
        let Some(s) = self.geo.fsinfo else { return Ok(()) };
        self.with_part(|p, _| {
            let mut b = [0u8; 512];
            p.read(u64::from(s), &mut b)?;
            dev::fsinfo_fill(&mut b, free, next);
            p.write(u64::from(s), &b).map_err(Error::from)
        })
    }

    fn free_clusters(&mut self) -> Result<u32> {
        if let Some(f) = self.free {
            return Ok(f);
        }
        let (f, _) = self.with_part(|p, g| Fat::new(p, g).count_free())?;
        self.free = Some(f);
        Ok(f)
    }

    /// Fails with [`Error::NoSpace`] unless `k` clusters can be allocated with one to
    /// spare: the crate's allocator, after taking a cluster, looks for the next free one
    /// and fails (with the cluster already linked) if there is none.
    fn reserve(&mut self, k: u32) -> Result<()> {
        if k > 0 && self.free_clusters()? < k + 1 {
            return Err(Error::NoSpace);
        }
        Ok(())
    }

    /// After the crate's part of an operation: writes out what it left in the cache, and
    /// takes in the clusters it allocated and freed.
    fn settle(&mut self) -> Result<()> {
        let r = self.vm.device(|d| d.settle());
        let (allocated, freed) = self.vm.device(|d| d.take_counts());
        if let Some(f) = &mut self.free {
            *f = (*f + freed).saturating_sub(allocated);
        }
        Ok(r?)
    }

    /// Takes in clusters the libOS freed itself.
    fn freed(&mut self, n: u32) {
        if let Some(f) = &mut self.free {
            *f += n;
        }
    }

    fn node(&self, h: Handle) -> Result<(usize, OpenFlags)> {
        self.handles.get(h.0 as usize).copied().flatten().ok_or(Error::BadHandle)
    }

    fn node_mut(&mut self, i: usize) -> Result<&mut Node> {
        self.nodes.get_mut(i).and_then(Option::as_mut).ok_or(Error::BadHandle)
    }

    /// Whether an open file's entry is at `pos`, or, for a directory at 8.3 path `prefix`,
    /// below it.
    fn in_use(&self, pos: (u32, usize), prefix: Option<&[[u8; 11]]>) -> bool {
        self.nodes.iter().flatten().any(|n| n.pos == pos || prefix.is_some_and(|p| n.dir_path.starts_with(p)))
    }
}

impl<S: BlockDevice> FileSystem for FatFs<S> {
    fn fs_type(&self) -> &'static str {
        self.geo.name()
    }

    fn open(&mut self, path: &str, flags: OpenFlags) -> Result<Handle> {
        self.open_file(path, flags)
    }

    fn read(&mut self, h: Handle, offset: u64, buf: &mut [u8]) -> Result<usize> {
        self.read_at(h, offset, buf)
    }

    fn write(&mut self, h: Handle, offset: u64, data: &[u8]) -> Result<usize> {
        self.write_at(h, offset, data)
    }

    fn close(&mut self, h: Handle) -> Result<()> {
        let (i, _) = self.node(h)?;
        self.handles[h.0 as usize] = None;
        let n = self.node_mut(i)?;
        n.refs -= 1;
        if n.refs == 0 {
            self.nodes[i] = None;
        }
        Ok(())
    }

    fn fstat(&mut self, h: Handle) -> Result<Metadata> {
        let (i, _) = self.node(h)?;
        let n = self.node_mut(i)?;
        Ok(Metadata { kind: FileKind::File, size: u64::from(n.size), modified: n.mtime })
    }

    fn stat(&mut self, path: &str) -> Result<Metadata> {
        let p = exo_libos::fs::path::normalize(path)?;
        let (d, _, name) = self.parent(&p)?;
        let Some(name) = name else {
            return Ok(Metadata { kind: FileKind::Dir, size: 0, modified: None });
        };
        let e = d.find(name).ok_or(Error::NotFound)?;
        let size = if e.is_dir() { 0 } else { u64::from(e.size) };
        Ok(Metadata { kind: e.kind(), size, modified: e.mtime })
    }

    fn list_dir(&mut self, path: &str) -> Result<Vec<DirEntry>> {
        let p = exo_libos::fs::path::normalize(path)?;
        let (d, _) = self.walk(exo_libos::fs::path::components(&p))?;
        Ok(d.live()
            .map(|e| DirEntry {
                name: e.name.clone(),
                kind: e.kind(),
                size: if e.is_dir() { 0 } else { u64::from(e.size) },
            })
            .collect())
    }

    fn mkdir(&mut self, path: &str) -> Result<()> {
        self.make_dir(path)
    }

    fn remove(&mut self, path: &str) -> Result<()> {
        self.remove_path(path)
    }

    fn rename(&mut self, from: &str, to: &str) -> Result<()> {
        self.rename_path(from, to)
    }

    fn sync(&mut self) -> Result<()> {
        if self.read_only {
            return Ok(());
        }
        self.mirror_fat()?;
        if self.dirty {
            // The FSInfo sector must be exact, not an estimate. The count kept since it was
            // taken is (every allocation and free is counted as it happens), so the FAT is
            // scanned again only if it was never counted. The next-free hint is where the
            // libOS's next search starts (a hint only: the specification allows any value).
            let (free, first) = match self.free {
                Some(f) => {
                    (f, if self.geo.valid_cluster(self.next_free) { self.next_free } else { u32::MAX })
                }
                None => self.with_part(|p, g| Fat::new(p, g).count_free())?,
            };
            self.free = Some(free);
            if self.fsinfo_ok {
                self.write_fsinfo(free, first)?;
            }
            self.dirty = false;
        }
        self.with_part(|p, _| Ok(p.flush()?))
    }

    fn statfs(&mut self) -> Result<FsStats> {
        // One free cluster is never handed out (see `reserve`).
        let free = self.free_clusters()?.saturating_sub(1);
        let cb = u64::from(self.geo.cluster_bytes());
        Ok(FsStats {
            fs_type: self.geo.name(),
            total_bytes: u64::from(self.geo.clusters) * cb,
            free_bytes: u64::from(free) * cb,
            block_size: self.geo.cluster_bytes(),
        })
    }
}
