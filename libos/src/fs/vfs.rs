//! The mount table: file systems mounted at paths, and descriptors with a position.

extern crate alloc;

use super::path::{self, normalize};
use super::{DirEntry, Error, FileKind, FileSystem, FsStats, Handle, Metadata, OpenFlags, Result};
use alloc::boxed::Box;
use alloc::string::{String, ToString};
use alloc::vec;
use alloc::vec::Vec;

/// A file descriptor of a [`Vfs`]: the lowest free number is handed out first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Fd(pub u32);

/// Where [`Vfs::seek`] counts from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SeekFrom {
    Start(u64),
    Current(i64),
    End(i64),
}

/// Most descriptors open at once.
pub const MAX_FDS: usize = 64;
/// Buffer size of [`Vfs::copy`].
const COPY_CHUNK: usize = 64 * 1024;

struct Mount {
    at: String,
    fs: Box<dyn FileSystem>,
    /// This mount's number, never reused by another ([`MountRef`]).
    id: u64,
}

/// One mount of a [`Vfs`], as [`Vfs::mount_ref`] names it: its slot, and the mount's
/// number, which a remount in the same slot does not share (so a stale one finds nothing).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MountRef {
    slot: usize,
    id: u64,
}

struct OpenFile {
    mount: usize,
    handle: Handle,
    pos: u64,
    flags: OpenFlags,
}

/// File systems mounted at absolute paths (`/fat`, `/log`, ...), one namespace over them.
///
/// A path belongs to the longest mount point it lies within, and the rest of it is what that
/// file system sees. Mount points (and their ancestors, if nothing is mounted above them)
/// appear as directories in listings.
#[derive(Default)]
pub struct Vfs {
    mounts: Vec<Option<Mount>>,
    fds: Vec<Option<OpenFile>>,
    mounted: u64,
    /// The directory relative paths start from ([`Vfs::set_cwd`]); none: they are refused.
    cwd: Option<String>,
}

impl Vfs {
    pub fn new() -> Vfs {
        Vfs::default()
    }

    /// Takes relative paths from directory `dir` (absolute; normalised here, not checked
    /// against what is mounted) from now on. Until this is called they are refused
    /// ([`Error::InvalidArgument`]), as a server taking paths from its clients wants.
    pub fn set_cwd(&mut self, dir: &str) -> Result<()> {
        self.cwd = Some(normalize(dir)?);
        Ok(())
    }

    /// `p` normalised, taken from the current directory if it is relative.
    fn norm(&self, p: &str) -> Result<String> {
        match &self.cwd {
            Some(cwd) if !p.is_empty() && !p.starts_with('/') => normalize(&alloc::format!("{cwd}/{p}")),
            _ => normalize(p),
        }
    }

    /// Mounts `fs` at `at` (normalised). Fails with [`Error::Exists`] if something is
    /// mounted there already.
    pub fn mount(&mut self, at: &str, fs: Box<dyn FileSystem>) -> Result<()> {
        let at = normalize(at)?;
        if self.mount_points().any(|(_, m)| m == at) {
            return Err(Error::Exists);
        }
        self.mounted += 1;
        let slot = Some(Mount { at, fs, id: self.mounted });
        match self.mounts.iter().position(Option::is_none) {
            Some(i) => self.mounts[i] = slot,
            None => self.mounts.push(slot),
        }
        Ok(())
    }

    /// Syncs and removes the file system mounted at `at`, and gives it back. Fails with
    /// [`Error::Busy`] while a descriptor is open on it (and keeps it mounted if the sync
    /// fails).
    pub fn unmount(&mut self, at: &str) -> Result<Box<dyn FileSystem>> {
        let at = normalize(at)?;
        let i = self.mount_points().find(|(_, m)| *m == at).map(|(i, _)| i).ok_or(Error::NotFound)?;
        if self.fds.iter().flatten().any(|f| f.mount == i) {
            return Err(Error::Busy);
        }
        self.mounts[i].as_mut().ok_or(Error::NotFound)?.fs.sync()?;
        Ok(self.mounts[i].take().ok_or(Error::NotFound)?.fs)
    }

    /// The mount points and their back ends' names, in mount order.
    pub fn mounts(&self) -> impl Iterator<Item = (&str, &'static str)> {
        self.mounts.iter().flatten().map(|m| (m.at.as_str(), m.fs.fs_type()))
    }

    /// The file system mounted exactly at `at`, to use it directly.
    pub fn fs_at(&mut self, at: &str) -> Option<&mut dyn FileSystem> {
        // A mount point as the mount table spells it (what a server keeps) needs no
        // normalising, which would allocate.
        let i = match self.mount_points().find(|(_, m)| *m == at) {
            Some((i, _)) => i,
            None => {
                let at = normalize(at).ok()?;
                self.mount_points().find(|(_, m)| *m == at)?.0
            }
        };
        Some(self.mounts[i].as_mut()?.fs.as_mut())
    }

    /// The file system `m` names, if it is still mounted (a server keeps a `MountRef` per
    /// open file: it saves the look-up by name on every use).
    pub fn fs_of(&mut self, m: MountRef) -> Option<&mut dyn FileSystem> {
        let mount = self.mounts.get_mut(m.slot)?.as_mut().filter(|x| x.id == m.id)?;
        Some(mount.fs.as_mut())
    }

    /// The mount of the file system mounted exactly at `at` (see [`Vfs::fs_of`]).
    pub fn mount_ref(&self, at: &str) -> Option<MountRef> {
        let slot = self.mount_points().find(|(_, m)| *m == at)?.0;
        Some(MountRef { slot, id: self.mounts[slot].as_ref()?.id })
    }

    fn mount_points(&self) -> impl Iterator<Item = (usize, &str)> {
        self.mounts.iter().enumerate().filter_map(|(i, m)| m.as_ref().map(|m| (i, m.at.as_str())))
    }

    /// Normalises `p` and finds its mount: (mount index, normalised path, path in the fs).
    fn locate(&self, p: &str) -> Result<(usize, String, String)> {
        let norm = self.norm(p)?;
        let mounts: Vec<(usize, &str)> = self.mount_points().collect();
        let (k, rest) = path::resolve(mounts.iter().map(|(_, m)| *m), &norm).ok_or(Error::NotFound)?;
        let rest = rest.to_string();
        Ok((mounts[k].0, norm, rest))
    }

    fn fs(&mut self, i: usize) -> Result<&mut dyn FileSystem> {
        Ok(self.mounts.get_mut(i).and_then(Option::as_mut).ok_or(Error::BadHandle)?.fs.as_mut())
    }

    /// Whether a normalised path is a mount point or has one below it.
    fn holds_mount(&self, norm: &str) -> bool {
        self.mount_points().any(|(_, m)| path::is_within(m, norm))
    }

    /// Names inside normalised `dir` that lead to mount points (a mount point itself, or a
    /// directory that only exists because one lies below it).
    fn child_mounts(&self, dir: &str) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for (_, m) in self.mount_points() {
            let below = path::strip_dir(m, dir).and_then(|rest| path::components(rest).next());
            if let Some(name) = below.filter(|_| m != dir) {
                if !out.iter().any(|n| n == name) {
                    out.push(name.to_string());
                }
            }
        }
        out
    }

    /// Opens a file; the descriptor starts at offset 0.
    pub fn open(&mut self, p: &str, flags: OpenFlags) -> Result<Fd> {
        flags.check()?;
        let free = match self.fds.iter().position(Option::is_none) {
            Some(i) => i,
            None if self.fds.len() < MAX_FDS => {
                self.fds.push(None);
                self.fds.len() - 1
            }
            None => return Err(Error::TooManyOpenFiles),
        };
        let (mount, norm, rest) = match self.locate(p) {
            Err(Error::NotFound) if self.holds_mount(&self.norm(p)?) => return Err(Error::IsDir),
            r => r?,
        };
        if self.holds_mount(&norm) {
            return Err(Error::IsDir);
        }
        let handle = self.fs(mount)?.open(&rest, flags)?;
        self.fds[free] = Some(OpenFile { mount, handle, pos: 0, flags });
        Ok(Fd(free as u32))
    }

    fn file(&mut self, fd: Fd) -> Result<&mut OpenFile> {
        self.fds.get_mut(fd.0 as usize).and_then(Option::as_mut).ok_or(Error::BadHandle)
    }

    /// The open file `fd` and the file system it is on, found once.
    #[inline]
    fn file_fs(&mut self, fd: Fd) -> Result<(&mut OpenFile, &mut dyn FileSystem)> {
        let f = self.fds.get_mut(fd.0 as usize).and_then(Option::as_mut).ok_or(Error::BadHandle)?;
        let m = self.mounts.get_mut(f.mount).and_then(Option::as_mut).ok_or(Error::BadHandle)?;
        Ok((f, m.fs.as_mut()))
    }

    /// Reads at the descriptor's position and advances it; 0 at the end of the file.
    pub fn read(&mut self, fd: Fd, buf: &mut [u8]) -> Result<usize> {
        let (f, fs) = self.file_fs(fd)?;
        let n = fs.read(f.handle, f.pos, buf)?;
        f.pos += n as u64;
        Ok(n)
    }

    /// Writes all of `data` at the descriptor's position (at the end with `APPEND`) and
    /// advances it.
    pub fn write(&mut self, fd: Fd, data: &[u8]) -> Result<usize> {
        let (mount, h, mut pos, flags) = self.file(fd).map(|f| (f.mount, f.handle, f.pos, f.flags))?;
        let fs = self.fs(mount)?;
        if flags.contains(OpenFlags::APPEND) {
            pos = fs.fstat(h)?.size;
        }
        let n = fs.write(h, pos, data)?;
        self.file(fd)?.pos = pos + n as u64;
        Ok(n)
    }

    /// Moves the position; returns the new one. Positions past the end are allowed (a write
    /// there leaves zeros between), before the start are not.
    pub fn seek(&mut self, fd: Fd, to: SeekFrom) -> Result<u64> {
        let size = match to {
            SeekFrom::End(_) => {
                let (f, fs) = self.file_fs(fd)?;
                fs.fstat(f.handle)?.size
            }
            _ => 0,
        };
        let f = self.file(fd)?;
        let new = match to {
            SeekFrom::Start(n) => Some(n),
            SeekFrom::Current(d) => f.pos.checked_add_signed(d),
            SeekFrom::End(d) => size.checked_add_signed(d),
        };
        f.pos = new.ok_or(Error::InvalidArgument)?;
        Ok(f.pos)
    }

    /// Closes a descriptor. The number is free again even if the file system reports an error.
    pub fn close(&mut self, fd: Fd) -> Result<()> {
        let f = self.fds.get_mut(fd.0 as usize).and_then(Option::take).ok_or(Error::BadHandle)?;
        self.fs(f.mount)?.close(f.handle)
    }

    /// Status of an open descriptor.
    pub fn fstat(&mut self, fd: Fd) -> Result<Metadata> {
        let (mount, h) = self.file(fd).map(|f| (f.mount, f.handle))?;
        self.fs(mount)?.fstat(h)
    }

    /// Status of a path. A directory that only exists because mount points lie below it
    /// reports as an empty directory with no time.
    pub fn stat(&mut self, p: &str) -> Result<Metadata> {
        let r = self.locate(p).and_then(|(mount, _, rest)| self.fs(mount)?.stat(&rest));
        match r {
            Err(Error::NotFound) if self.holds_mount(&self.norm(p)?) => {
                Ok(Metadata { kind: FileKind::Dir, size: 0, modified: None })
            }
            r => r,
        }
    }

    /// A file's version ([`FileSystem::version`]).
    pub fn version(&mut self, p: &str) -> Result<crate::fs::Version> {
        let (mount, _, rest) = self.locate(p)?;
        self.fs(mount)?.version(&rest)
    }

    /// A file's version and the attribute kept beside it ([`FileSystem::attr`]).
    pub fn attr(&mut self, p: &str) -> Result<(crate::fs::Version, Vec<u8>)> {
        let (mount, _, rest) = self.locate(p)?;
        self.fs(mount)?.attr(&rest)
    }

    /// Keeps an attribute beside a file ([`FileSystem::set_attr`]).
    pub fn set_attr(&mut self, p: &str, v: crate::fs::Version, value: &[u8]) -> Result<()> {
        let (mount, _, rest) = self.locate(p)?;
        self.fs(mount)?.set_attr(&rest, v, value)
    }

    /// Lists a directory, with the mount points inside it (or the directories leading to
    /// them) added as directories.
    pub fn list_dir(&mut self, p: &str) -> Result<Vec<DirEntry>> {
        let norm = self.norm(p)?;
        let r = self.locate(&norm).and_then(|(mount, _, rest)| self.fs(mount)?.list_dir(&rest));
        let mut out = match r {
            Err(Error::NotFound) if self.holds_mount(&norm) => Vec::new(),
            r => r?,
        };
        for name in self.child_mounts(&norm) {
            out.retain(|e| e.name != name);
            out.push(DirEntry { name, kind: FileKind::Dir, size: 0 });
        }
        Ok(out)
    }

    /// Creates a directory.
    pub fn mkdir(&mut self, p: &str) -> Result<()> {
        let (mount, norm, rest) = self.locate(p)?;
        if self.holds_mount(&norm) {
            return Err(Error::Exists);
        }
        self.fs(mount)?.mkdir(&rest)
    }

    /// Removes a file or an empty directory (never a mount point: [`Error::Busy`]).
    pub fn remove(&mut self, p: &str) -> Result<()> {
        let (mount, norm, rest) = self.locate(p)?;
        if self.holds_mount(&norm) {
            return Err(Error::Busy);
        }
        self.fs(mount)?.remove(&rest)
    }

    /// Renames within one file system; [`Error::CrossDevice`] across two.
    pub fn rename(&mut self, from: &str, to: &str) -> Result<()> {
        let (m1, n1, r1) = self.locate(from)?;
        let (m2, n2, r2) = self.locate(to)?;
        if self.holds_mount(&n1) || self.holds_mount(&n2) {
            return Err(Error::Busy);
        }
        if m1 != m2 {
            return Err(Error::CrossDevice);
        }
        self.fs(m1)?.rename(&r1, &r2)
    }

    /// Syncs every mounted file system; returns the first error after trying them all.
    pub fn sync(&mut self) -> Result<()> {
        let mut first = Ok(());
        for m in self.mounts.iter_mut().flatten() {
            let r = m.fs.sync();
            if first.is_ok() {
                first = r;
            }
        }
        first
    }

    /// Capacity and free space of the file system holding `p`.
    pub fn statfs(&mut self, p: &str) -> Result<FsStats> {
        let (mount, _, _) = self.locate(p)?;
        self.fs(mount)?.statfs()
    }

    /// Whether `p` names something.
    pub fn exists(&mut self, p: &str) -> bool {
        self.stat(p).is_ok()
    }

    /// Reads a whole file (an ELF to spawn, a script to run).
    pub fn read_to_vec(&mut self, p: &str) -> Result<Vec<u8>> {
        let fd = self.open(p, OpenFlags::READ)?;
        let r = self.read_all(fd);
        let c = self.close(fd);
        let v = r?;
        c.map(|_| v)
    }

    fn read_all(&mut self, fd: Fd) -> Result<Vec<u8>> {
        let size = self.fstat(fd)?.size;
        let mut v = vec![0u8; usize::try_from(size).map_err(|_| Error::FileTooLarge)?];
        let mut got = 0;
        while got < v.len() {
            let n = self.read(fd, &mut v[got..])?;
            if n == 0 {
                break;
            }
            got += n;
        }
        v.truncate(got);
        Ok(v)
    }

    /// Creates (or truncates) `p` and writes `data` to it.
    pub fn write_file(&mut self, p: &str, data: &[u8]) -> Result<()> {
        let fd = self.open(p, OpenFlags::WRITE | OpenFlags::CREATE | OpenFlags::TRUNCATE)?;
        let r = self.write(fd, data).map(drop);
        let c = self.close(fd);
        r.and(c)
    }

    /// Copies file `from` to `to` (created or truncated), across file systems if need be, in
    /// 64 KiB pieces; returns the bytes copied.
    pub fn copy(&mut self, from: &str, to: &str) -> Result<u64> {
        if self.norm(from)? == self.norm(to)? {
            return Err(Error::InvalidArgument);
        }
        let src = self.open(from, OpenFlags::READ)?;
        let dst = match self.open(to, OpenFlags::WRITE | OpenFlags::CREATE | OpenFlags::TRUNCATE) {
            Ok(d) => d,
            Err(e) => {
                let _ = self.close(src);
                return Err(e);
            }
        };
        let r = self.pump(src, dst);
        let c1 = self.close(src);
        let c2 = self.close(dst);
        let n = r?;
        c1.and(c2).map(|_| n)
    }

    fn pump(&mut self, src: Fd, dst: Fd) -> Result<u64> {
        // Aligned, so that back ends reading straight into it skip the bounce buffer.
        let mut buf = super::disk::SectorBuf::new(COPY_CHUNK);
        let mut total = 0u64;
        loop {
            let n = self.read(src, &mut buf)?;
            if n == 0 {
                return Ok(total);
            }
            self.write(dst, &buf[..n])?;
            total += n as u64;
        }
    }
}
