//! Namespace operations: create, open, mkdir, unlink, rmdir, rename, stat, readdir.

use crate::device::BlockDevice;
use crate::error::{Error, Result};
use crate::fs::{DirEntry, Fs, Handle, Stat};
use crate::icache::Cached;
use crate::imap::UNWRITTEN;
use crate::inode::{Inode, Kind};
use crate::layout::{ptr_len, INODE_SIZE, NAME_MAX, ROOT_INO};
use alloc::boxed::Box;
use alloc::vec::Vec;

fn stat_of(i: &Inode, sectors: u64) -> Stat {
    Stat {
        ino: i.ino,
        kind: i.kind,
        size: i.size,
        sectors,
        mode: i.mode,
        mtime: i.mtime,
        ctime: i.ctime,
        btime: i.btime,
    }
}

impl<D: BlockDevice> Fs<D> {
    /// Opens an existing file or directory.
    pub fn open(&mut self, path: &str) -> Result<Handle> {
        self.safe_point();
        let ino = self.resolve(path)?;
        let c = self.inodes.get(ino).ok_or(Error::Failed)?;
        Ok(Handle { ino, gen: c.inode.gen })
    }

    /// Creates an empty file; fails with `Exists` if the name is taken.
    pub fn create(&mut self, path: &str) -> Result<Handle> {
        self.make(path, Kind::File)
    }

    /// Creates a directory.
    pub fn mkdir(&mut self, path: &str) -> Result<Handle> {
        self.make(path, Kind::Dir)
    }

    /// Opens a file or directory, or creates an empty file if the name is free (`open` with
    /// `O_CREAT`): the handle and whether it was created. The path is resolved once.
    pub fn open_or_create(&mut self, path: &str) -> Result<(Handle, bool)> {
        self.writable()?;
        self.safe_point();
        let Ok((dir, name)) = self.resolve_parent(path) else {
            // "/" and the like: whatever `open` makes of them.
            return self.open(path).map(|h| (h, false));
        };
        if let Some((ino, _)) = self.dir(dir)?.lookup(name) {
            self.load_inode(ino).map_err(|e| match e {
                Error::NotFound => Error::Corrupt(crate::Corruption::Inode(ino)),
                e => e,
            })?;
            let c = self.inodes.get(ino).ok_or(Error::Failed)?;
            return Ok((Handle { ino, gen: c.inode.gen }, false));
        }
        self.reserve(INODE_SIZE as u64, 0, false)?;
        // Making room may have cleaned, and dropped the directory from the cache.
        self.load_dir(dir)?;
        self.make_in(dir, name, Kind::File).map(|h| (h, true))
    }

    /// What an open handle names.
    pub fn kind(&mut self, h: Handle) -> Result<Kind> {
        Ok(self.open_handle(h)?.inode.kind)
    }

    fn make(&mut self, path: &str, kind: Kind) -> Result<Handle> {
        self.writable()?;
        self.reserve(INODE_SIZE as u64, 0, false)?;
        let (dir, name) = self.resolve_parent(path)?;
        if self.dir(dir)?.lookup(name).is_some() {
            return Err(Error::Exists);
        }
        self.make_in(dir, name, kind)
    }

    /// Creates `name` (absent) in the loaded directory `dir`.
    fn make_in(&mut self, dir: u32, name: &[u8], kind: Kind) -> Result<Handle> {
        let ino = self.imap.alloc().ok_or(Error::NoSpace)?;
        let inode = self.new_inode_value(kind, ino, dir);
        let gen = inode.gen;
        let dir_box = (kind == Kind::Dir).then(|| Box::new(crate::dir::Dir::new()));
        self.nodes.forget(); // a reused number: no pointer remembered for it may survive
        self.inodes.insert(Cached { inode, dirty: false, dir: dir_box });
        self.inodes.mark_dirty(ino);
        self.imap.set(ino, UNWRITTEN);
        self.dir_add(dir, name, ino, kind)?;
        self.after_op()?;
        Ok(Handle { ino, gen })
    }

    /// Releases a handle. Nothing is held open, so this only exists for symmetry.
    pub fn close(&mut self, _h: Handle) {}

    /// Removes a file.
    pub fn unlink(&mut self, path: &str) -> Result<()> {
        self.remove_kind(path, Some(Kind::File))
    }

    /// Removes an empty directory.
    pub fn rmdir(&mut self, path: &str) -> Result<()> {
        self.remove_kind(path, Some(Kind::Dir))
    }

    /// Removes a file or an empty directory.
    pub fn remove(&mut self, path: &str) -> Result<()> {
        self.remove_kind(path, None)
    }

    fn remove_kind(&mut self, path: &str, want: Option<Kind>) -> Result<()> {
        self.writable()?;
        self.reserve(0, 0, true)?;
        let (dir, name) = match self.resolve_parent(path) {
            Err(Error::InvalidArgument) if path.trim_matches('/').is_empty() => {
                return Err(Error::InvalidArgument)
            }
            r => r?,
        };
        let (ino, kind) = self.dir(dir)?.lookup(name).ok_or(Error::NotFound)?;
        match (want, kind) {
            (Some(Kind::File), Kind::Dir) => return Err(Error::IsDir),
            (Some(Kind::Dir), Kind::File) => return Err(Error::NotDir),
            _ => {}
        }
        if kind == Kind::Dir {
            self.load_dir(ino)?;
            if self.dir(ino)?.count != 0 {
                return Err(Error::NotEmpty);
            }
        }
        self.dir_del(dir, name)?;
        self.free_inode(ino)?;
        if kind == Kind::File {
            self.drop_attr(dir, ino)?;
        }
        self.after_op()
    }

    /// Frees an inode and all its blocks.
    pub(crate) fn free_inode(&mut self, ino: u32) -> Result<()> {
        self.load_inode(ino)?;
        self.truncate_tree(ino, 0)?;
        self.nodes.drop_file(ino);
        let v = self.imap.get(ino);
        if let Some((sector, _)) = self.geo.iloc(v) {
            self.kill_at(sector, INODE_SIZE as u32)?;
            self.record_free(ino)?;
        }
        self.imap.set(ino, 0);
        self.inodes.remove(ino);
        Ok(())
    }

    /// Renames `from` to `to`, replacing a file or an empty directory at `to` (POSIX rules).
    pub fn rename(&mut self, from: &str, to: &str) -> Result<()> {
        self.writable()?;
        self.reserve(0, 0, true)?;
        let (sdir, sname) = self.resolve_parent(from)?;
        let (ino, kind) = self.dir(sdir)?.lookup(sname).ok_or(Error::NotFound)?;
        let (ddir, dname) = self.resolve_parent(to)?;
        if kind == Kind::Dir && self.is_ancestor(ino, ddir)? {
            return Err(Error::InvalidArgument);
        }
        let sname = sname.to_vec();
        let dname_v = dname.to_vec();
        if let Some((victim, vkind)) = self.dir(ddir)?.lookup(dname) {
            if victim == ino {
                return Ok(());
            }
            match (kind, vkind) {
                (Kind::File, Kind::Dir) => return Err(Error::IsDir),
                (Kind::Dir, Kind::File) => return Err(Error::NotDir),
                _ => {}
            }
            if vkind == Kind::Dir {
                self.load_dir(victim)?;
                if self.dir(victim)?.count != 0 {
                    return Err(Error::NotEmpty);
                }
            }
            self.dir_del(ddir, &dname_v)?;
            self.free_inode(victim)?;
            if vkind == Kind::File {
                self.drop_attr(ddir, victim)?;
            }
        }
        self.dir_del(sdir, &sname)?;
        self.dir_add(ddir, &dname_v, ino, kind)?;
        let now = self.now();
        self.load_inode(ino)?;
        let c = self.inodes.get_mut(ino).ok_or(Error::Failed)?;
        c.inode.ctime = crate::attr::next_ctime(c.inode.ctime, now);
        if kind == Kind::Dir {
            c.inode.parent = ddir;
        }
        self.inodes.mark_dirty(ino);
        self.after_op()
    }

    /// Status of a path.
    pub fn stat(&mut self, path: &str) -> Result<Stat> {
        self.safe_point();
        let ino = self.resolve(path)?;
        self.stat_ino(ino)
    }

    /// Status of an open handle.
    pub fn fstat(&mut self, h: Handle) -> Result<Stat> {
        self.open_handle(h)?;
        self.stat_ino(h.ino)
    }

    fn stat_ino(&mut self, ino: u32) -> Result<Stat> {
        let size = self.inodes.get(ino).ok_or(Error::Failed)?.inode.size;
        let mut sectors = 0;
        let nblocks = size.div_ceil(crate::layout::BLOCK as u64);
        // Counting is cheap for small files; large files report an estimate from the size.
        if nblocks <= 64 {
            for b in 0..nblocks {
                let p = self.block_ptr(ino, b)?;
                sectors += if p == 0 { 0 } else { ptr_len(p) as u64 };
            }
        } else {
            sectors = size.div_ceil(512);
        }
        let c = self.inodes.get(ino).ok_or(Error::Failed)?;
        Ok(stat_of(&c.inode, sectors))
    }

    /// Sets the permission bits (opaque to the file system) of an open handle.
    pub fn set_mode(&mut self, h: Handle, mode: u32) -> Result<()> {
        self.writable()?;
        let now = self.now();
        let c = self.open_handle(h)?;
        c.inode.mode = mode;
        c.inode.ctime = crate::attr::next_ctime(c.inode.ctime, now);
        self.inodes.mark_dirty(h.ino);
        Ok(())
    }

    /// Sets the modification time of an open handle.
    pub fn set_mtime(&mut self, h: Handle, mtime: i64) -> Result<()> {
        self.writable()?;
        let c = self.open_handle(h)?;
        c.inode.mtime = mtime;
        self.inodes.mark_dirty(h.ino);
        Ok(())
    }

    /// Lists a directory by path.
    pub fn read_dir(&mut self, path: &str) -> Result<Vec<DirEntry>> {
        self.safe_point();
        let ino = self.resolve(path)?;
        self.list(ino)
    }

    /// Lists an open directory.
    pub fn read_dir_handle(&mut self, h: Handle) -> Result<Vec<DirEntry>> {
        self.open_handle(h)?;
        self.list(h.ino)
    }

    fn list(&mut self, ino: u32) -> Result<Vec<DirEntry>> {
        self.load_dir(ino)?;
        let d = self.dir(ino)?;
        let mut out = Vec::with_capacity(d.count as usize);
        d.for_each(|name, ino, kind| out.push(DirEntry { name: name.to_vec(), ino, kind }));
        Ok(out)
    }

    /// Start of a read-only entry point: nothing is borrowed from the caches yet, so clean
    /// entries may be dropped if the caches grew large (read-only mounts never commit).
    fn safe_point(&mut self) {
        if self.inodes.len() > self.inodes.limit {
            self.inodes.trim();
        }
        if self.nodes.dirty.is_empty() {
            self.nodes.trim(4096);
        }
    }

    /// The root directory's handle.
    pub fn root(&mut self) -> Result<Handle> {
        self.open("/")
    }
}

/// Longest name, re-exported for wrappers.
pub const MAX_NAME: usize = NAME_MAX;
/// The root's inode number.
pub const ROOT: u32 = ROOT_INO;
