//! The log-structured file system (crate `exo-lfs`) behind the [`FileSystem`] interface.
//!
//! A thin adapter: paths are normalised here, handles map to the LFS's (inode, generation)
//! handles, open flags are enforced here, and errors become [`Error`]s. Mounting never
//! formats; [`LfsFs::format`] does, and only when called.

extern crate alloc;

use super::path::normalize;
use super::{Clock, DirEntry, Error, FileKind, FileSystem, FsStats, Handle, Metadata, OpenFlags, Result};
use alloc::string::String;
use alloc::vec::Vec;
use exo_lfs::{BlockDevice, Kind, MountOptions};

/// Most handles open at once.
pub const MAX_OPEN: usize = 256;

/// How to mount.
#[derive(Clone, Copy, Debug)]
pub struct LfsOptions {
    /// Never write to the device.
    pub read_only: bool,
    /// Time stamps for modified files.
    pub clock: Clock,
}

impl Default for LfsOptions {
    fn default() -> Self {
        LfsOptions { read_only: false, clock: super::time::uptime }
    }
}

struct Open {
    h: exo_lfs::Handle,
    flags: OpenFlags,
}

/// An `exo_lfs::Fs` as a [`FileSystem`].
pub struct LfsFs<D: BlockDevice> {
    fs: exo_lfs::Fs<D>,
    read_only: bool,
    open: Vec<Option<Open>>,
}

fn kind(k: Kind) -> FileKind {
    match k {
        Kind::File => FileKind::File,
        Kind::Dir => FileKind::Dir,
    }
}

impl<D: BlockDevice> LfsFs<D> {
    /// Mounts the LFS on `dev` (rolling forward after a crash). Never formats.
    pub fn mount(dev: D, opts: LfsOptions) -> Result<Self> {
        let fs =
            exo_lfs::Fs::mount(dev, MountOptions { read_only: opts.read_only, clock: Some(opts.clock) })?;
        Ok(LfsFs { fs, read_only: opts.read_only, open: Vec::new() })
    }

    /// Creates an empty LFS on all of `dev` and mounts it. Erases whatever `dev` held.
    pub fn format(dev: D, format: exo_lfs::FormatOptions, clock: Clock) -> Result<Self> {
        let mut fs = exo_lfs::Fs::format(dev, format)?;
        fs.set_clock(clock);
        Ok(LfsFs { fs, read_only: false, open: Vec::new() })
    }

    /// The LFS itself, for what only it offers (`clean`, `checkpoint`, `stats`, `fsck`).
    pub fn inner(&mut self) -> &mut exo_lfs::Fs<D> {
        &mut self.fs
    }

    /// Makes one open file's data and metadata durable (POSIX `fsync`).
    pub fn fsync(&mut self, h: Handle) -> Result<()> {
        let lh = self.get(h)?.h;
        Ok(self.fs.fsync(lh)?)
    }

    /// Checkpoints (unless read-only) and gives the device back.
    pub fn unmount(self) -> Result<D> {
        if self.read_only {
            return Ok(self.fs.into_device());
        }
        Ok(self.fs.unmount()?)
    }

    fn get(&self, h: Handle) -> Result<&Open> {
        self.open.get(h.0 as usize).and_then(Option::as_ref).ok_or(Error::BadHandle)
    }

    fn metadata(st: &exo_lfs::Stat) -> Metadata {
        let size = if st.kind == Kind::Dir { 0 } else { st.size };
        Metadata { kind: kind(st.kind), size, modified: Some(st.mtime) }
    }

    fn open_inner(&mut self, p: &str, flags: OpenFlags) -> Result<exo_lfs::Handle> {
        let h = match self.fs.open(p) {
            Ok(_) if flags.contains(OpenFlags::CREATE | OpenFlags::EXCLUSIVE) => return Err(Error::Exists),
            Ok(h) => h,
            Err(exo_lfs::Error::NotFound) if flags.contains(OpenFlags::CREATE) => self.fs.create(p)?,
            Err(e) => return Err(e.into()),
        };
        if self.fs.fstat(h)?.kind == Kind::Dir {
            return Err(Error::IsDir);
        }
        if flags.contains(OpenFlags::TRUNCATE) {
            self.fs.truncate(h, 0)?;
        }
        Ok(h)
    }
}

impl<D: BlockDevice> FileSystem for LfsFs<D> {
    fn fs_type(&self) -> &'static str {
        "lfs"
    }

    fn open(&mut self, path: &str, flags: OpenFlags) -> Result<Handle> {
        flags.check()?;
        let p = normalize(path)?;
        if self.read_only && flags.contains(OpenFlags::WRITE) {
            return Err(Error::ReadOnly);
        }
        let slot = match self.open.iter().position(Option::is_none) {
            Some(i) => i,
            None if self.open.len() < MAX_OPEN => {
                self.open.push(None);
                self.open.len() - 1
            }
            None => return Err(Error::TooManyOpenFiles),
        };
        let h = self.open_inner(&p, flags)?;
        self.open[slot] = Some(Open { h, flags });
        Ok(Handle(slot as u32))
    }

    fn read(&mut self, h: Handle, offset: u64, buf: &mut [u8]) -> Result<usize> {
        let o = self.get(h)?;
        if !o.flags.contains(OpenFlags::READ) {
            return Err(Error::BadHandle);
        }
        let lh = o.h;
        Ok(self.fs.read(lh, offset, buf)?)
    }

    fn write(&mut self, h: Handle, offset: u64, data: &[u8]) -> Result<usize> {
        let o = self.get(h)?;
        if !o.flags.contains(OpenFlags::WRITE) {
            return Err(Error::BadHandle);
        }
        let (lh, append) = (o.h, o.flags.contains(OpenFlags::APPEND));
        let offset = if append { self.fs.fstat(lh)?.size } else { offset };
        Ok(self.fs.write(lh, offset, data)?)
    }

    fn close(&mut self, h: Handle) -> Result<()> {
        let o = self.open.get_mut(h.0 as usize).and_then(Option::take).ok_or(Error::BadHandle)?;
        self.fs.close(o.h);
        Ok(())
    }

    fn fstat(&mut self, h: Handle) -> Result<Metadata> {
        let lh = self.get(h)?.h;
        Ok(Self::metadata(&self.fs.fstat(lh)?))
    }

    fn stat(&mut self, path: &str) -> Result<Metadata> {
        let p = normalize(path)?;
        Ok(Self::metadata(&self.fs.stat(&p)?))
    }

    fn list_dir(&mut self, path: &str) -> Result<Vec<DirEntry>> {
        let p = normalize(path)?;
        let list = self.fs.read_dir(&p)?;
        let mut out = Vec::with_capacity(list.len());
        for e in list {
            let size = match e.kind {
                // A name that is not UTF-8 cannot be reached by path: its size shows as 0.
                Kind::File => self
                    .fs
                    .stat(&super::path::join(&p, &String::from_utf8_lossy(&e.name)))
                    .map_or(0, |s| s.size),
                Kind::Dir => 0,
            };
            out.push(DirEntry {
                name: String::from_utf8_lossy(&e.name).into_owned(),
                kind: kind(e.kind),
                size,
            });
        }
        Ok(out)
    }

    fn mkdir(&mut self, path: &str) -> Result<()> {
        let p = normalize(path)?;
        if p == "/" {
            return Err(Error::Exists);
        }
        self.fs.mkdir(&p).map(drop).map_err(Error::from)
    }

    fn remove(&mut self, path: &str) -> Result<()> {
        let p = normalize(path)?;
        if p == "/" {
            return Err(Error::Busy);
        }
        Ok(self.fs.remove(&p)?)
    }

    fn rename(&mut self, from: &str, to: &str) -> Result<()> {
        let (f, t) = (normalize(from)?, normalize(to)?);
        if f == "/" || t == "/" {
            return Err(Error::Busy);
        }
        Ok(self.fs.rename(&f, &t)?)
    }

    fn sync(&mut self) -> Result<()> {
        Ok(self.fs.sync()?)
    }

    fn statfs(&mut self) -> Result<FsStats> {
        let s = self.fs.statfs();
        Ok(FsStats {
            fs_type: "lfs",
            total_bytes: s.capacity_bytes,
            free_bytes: s.avail_bytes,
            block_size: s.block_size,
        })
    }
}
