//! The log-structured libOS: the LFS engine (crate `exo-lfs`) behind the runtime's
//! [`FileSystem`] interface. An app that wants only the log-structured file system depends
//! on this crate and `exo-libos`, and links nothing of FAT (see `docs/libos.md`).
//!
//! A thin adapter: paths are normalised here, handles map to the LFS's (inode, generation)
//! handles, open flags are enforced here, and errors become [`Error`]s. Mounting never
//! formats; [`LfsFs::format`] does, and only when called. [`backend`] is what an app hands
//! to `exo_libos::fs::mount` to have LFS partitions mounted at `/log`, `/log1`, ...
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

extern crate alloc;

use alloc::borrow::Cow;
use alloc::boxed::Box;
use alloc::string::String;
use alloc::vec::Vec;
use exo_lfs::{BlockDevice, Kind, MountOptions};
use exo_libos::fs::mount::Backend;
use exo_libos::fs::path::{is_normal, normalize};
use exo_libos::fs::{
    Clock, DirEntry, Error, FileKind, FileSystem, FsStats, Handle, Metadata, OpenFlags, Partition, Result,
    Version,
};

/// The LFS as a back end of the mount layer: partitions of MBR type
/// [`exo_libos::format::mbr::TYPE_EXO_LFS`], mounted read-write at `/log`, `/log1`, ...
pub const fn backend<S: BlockDevice + 'static>() -> Backend<S> {
    Backend { at: "/log", kinds: &[exo_libos::format::mbr::TYPE_EXO_LFS], mount: mount_partition::<S> }
}

fn mount_partition<S: BlockDevice + 'static>(
    part: Partition<S>,
    clock: Clock,
) -> Result<Box<dyn FileSystem>> {
    Ok(Box::new(LfsFs::mount(part, LfsOptions { read_only: false, clock })?))
}

/// The engine's error as the runtime's (the two crates cannot name each other's types in a
/// `From`, so the adapter converts with this).
pub fn error(e: exo_lfs::Error) -> Error {
    use exo_lfs::Error as L;
    match e {
        L::NotFound => Error::NotFound,
        L::Exists => Error::Exists,
        L::NotDir => Error::NotDir,
        L::IsDir => Error::IsDir,
        L::NotEmpty => Error::NotEmpty,
        L::NoSpace => Error::NoSpace,
        L::NameTooLong => Error::NameTooLong,
        L::InvalidArgument => Error::InvalidArgument,
        L::FileTooBig => Error::FileTooLarge,
        L::ReadOnly => Error::ReadOnly,
        L::Stale => Error::BadHandle,
        L::Corrupt(_) => Error::Corrupt,
        L::Version { .. } => Error::Unsupported,
        L::Io(_) | L::Failed => Error::Io,
    }
}

/// Most handles open at once (`fs::MAX_OPEN`, as every file system has).
pub const MAX_OPEN: usize = exo_libos::fs::MAX_OPEN;

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
        LfsOptions { read_only: false, clock: exo_libos::fs::time::uptime }
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
        let fs = exo_lfs::Fs::mount(dev, MountOptions { read_only: opts.read_only, clock: Some(opts.clock) })
            .map_err(error)?;
        Ok(LfsFs { fs, read_only: opts.read_only, open: Vec::new() })
    }

    /// Creates an empty LFS on all of `dev` and mounts it. Erases whatever `dev` held.
    pub fn format(dev: D, format: exo_lfs::FormatOptions, clock: Clock) -> Result<Self> {
        let mut fs = exo_lfs::Fs::format(dev, format).map_err(error)?;
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
        self.fs.fsync(lh).map_err(error)
    }

    /// Checkpoints (unless read-only) and gives the device back.
    pub fn unmount(self) -> Result<D> {
        if self.read_only {
            return Ok(self.fs.into_device());
        }
        self.fs.unmount().map_err(error)
    }

    fn get(&self, h: Handle) -> Result<&Open> {
        self.open.get(h.0 as usize).and_then(Option::as_ref).ok_or(Error::BadHandle)
    }

    fn metadata(st: &exo_lfs::Stat) -> Metadata {
        let size = if st.kind == Kind::Dir { 0 } else { st.size };
        Metadata { kind: kind(st.kind), size, modified: Some(st.mtime) }
    }

    fn open_inner(&mut self, p: &str, flags: OpenFlags) -> Result<exo_lfs::Handle> {
        let (h, created) = if flags.contains(OpenFlags::CREATE) {
            match self.fs.open_or_create(p).map_err(error)? {
                (_, false) if flags.contains(OpenFlags::EXCLUSIVE) => return Err(Error::Exists),
                found => found,
            }
        } else {
            (self.fs.open(p).map_err(error)?, false)
        };
        if self.fs.kind(h).map_err(error)? == Kind::Dir {
            return Err(Error::IsDir);
        }
        // A file created just now is empty already.
        if flags.contains(OpenFlags::TRUNCATE) && !created {
            self.fs.truncate(h, 0).map_err(error)?;
        }
        Ok(h)
    }

    /// `path` normalised; borrowed when it already is (the common case), saving a copy.
    fn norm(path: &str) -> Result<Cow<'_, str>> {
        if is_normal(path) {
            Ok(Cow::Borrowed(path))
        } else {
            normalize(path).map(Cow::Owned)
        }
    }
}

impl<D: BlockDevice> FileSystem for LfsFs<D> {
    fn fs_type(&self) -> &'static str {
        "lfs"
    }

    fn open(&mut self, path: &str, flags: OpenFlags) -> Result<Handle> {
        flags.check()?;
        let p = Self::norm(path)?;
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
        self.fs.read(lh, offset, buf).map_err(error)
    }

    fn write(&mut self, h: Handle, offset: u64, data: &[u8]) -> Result<usize> {
        let o = self.get(h)?;
        if !o.flags.contains(OpenFlags::WRITE) {
            return Err(Error::BadHandle);
        }
        let (lh, append) = (o.h, o.flags.contains(OpenFlags::APPEND));
        let offset = if append { self.fs.fstat(lh).map_err(error)?.size } else { offset };
        self.fs.write(lh, offset, data).map_err(error)
    }

    fn close(&mut self, h: Handle) -> Result<()> {
        let o = self.open.get_mut(h.0 as usize).and_then(Option::take).ok_or(Error::BadHandle)?;
        self.fs.close(o.h);
        Ok(())
    }

    fn fstat(&mut self, h: Handle) -> Result<Metadata> {
        let lh = self.get(h)?.h;
        Ok(Self::metadata(&self.fs.fstat(lh).map_err(error)?))
    }

    fn stat(&mut self, path: &str) -> Result<Metadata> {
        let p = Self::norm(path)?;
        Ok(Self::metadata(&self.fs.stat(&p).map_err(error)?))
    }

    fn list_dir(&mut self, path: &str) -> Result<Vec<DirEntry>> {
        let p = Self::norm(path)?;
        let list = self.fs.read_dir(&p).map_err(error)?;
        let mut out = Vec::with_capacity(list.len());
        for e in list {
            let size = match e.kind {
                // A name that is not UTF-8 cannot be reached by path: its size shows as 0.
                Kind::File => self
                    .fs
                    .stat(&exo_libos::fs::path::join(&p, &String::from_utf8_lossy(&e.name)))
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
        let p = Self::norm(path)?;
        if p == "/" {
            return Err(Error::Exists);
        }
        self.fs.mkdir(&p).map(drop).map_err(error)
    }

    fn remove(&mut self, path: &str) -> Result<()> {
        let p = Self::norm(path)?;
        if p == "/" {
            return Err(Error::Busy);
        }
        self.fs.remove(&p).map_err(error)
    }

    fn rename(&mut self, from: &str, to: &str) -> Result<()> {
        let (f, t) = (Self::norm(from)?, Self::norm(to)?);
        if f == "/" || t == "/" {
            return Err(Error::Busy);
        }
        self.fs.rename(&f, &t).map_err(error)
    }

    fn sync(&mut self) -> Result<()> {
        self.fs.sync().map_err(error)
    }

    fn version(&mut self, path: &str) -> Result<Version> {
        Ok(self.fs.version(&normalize(path)?).map_err(error)?.to_words())
    }

    fn attr(&mut self, path: &str) -> Result<(Version, Vec<u8>)> {
        let (v, value) = self.fs.attr(&normalize(path)?).map_err(error)?;
        Ok((v.to_words(), value))
    }

    fn set_attr(&mut self, path: &str, v: Version, value: &[u8]) -> Result<()> {
        let v = exo_lfs::Version::from_words(v);
        self.fs.set_attr(&normalize(path)?, v, value).map_err(error)
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
