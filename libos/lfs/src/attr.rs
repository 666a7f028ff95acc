//! Attributes: a few bytes an application keeps *beside* a file, valid only for the file's
//! present contents (httpd keeps a prepared response head there, `docs/network.md`).
//!
//! A file's [`Version`] is its inode number and generation, its change time and its size.
//! Every change to a file (a write, a truncate, a rename, new permission bits) moves its
//! change time strictly forward ([`next_ctime`]: at least one nanosecond past the last,
//! whatever the clock says, even a clock that restarts at every boot), so it never takes a
//! value it had before; and the generation never repeats for an inode number (it is kept in the
//! checkpoint), so a version is never seen twice: once the file's bytes change, no earlier
//! version can match it again, not after a crash and not after a reboot.
//!
//! An attribute is stored as the file `/.attr/<inode number>`: the version it was made for
//! (24 bytes), then the value. [`Fs::attr`] returns the value only while that version is the
//! file's present one, so a stale attribute cannot be read, only ignored (and overwritten by
//! the next [`Fs::set_attr`]). Nothing needs invalidating on the write path. Removing a
//! file (or renaming another over it) removes its attribute in the same operation, so
//! attributes never outlive their files and take no space once those are gone.

use crate::device::BlockDevice;
use crate::error::{Error, Result};
use crate::fs::Fs;
use crate::inode::Kind;
use crate::layout::ROOT_INO;
use alloc::format;
use alloc::vec;
use alloc::vec::Vec;
use exo_format::le::{get_u64, put_u64};

/// The directory attributes live in.
pub const ATTR_DIR: &str = "/.attr";
/// Bytes of an attribute's value at most.
pub const ATTR_MAX: usize = 2048;
/// Bytes of a stored version.
const HEAD: usize = 24;

/// What identifies a file's present contents (see the module's comment).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Version {
    pub ino: u32,
    pub gen: u32,
    pub ctime: i64,
    pub size: u64,
}

impl Version {
    /// The version as three words (inode number and generation, change time, size).
    pub fn to_words(self) -> [u64; 3] {
        [(self.ino as u64) << 32 | self.gen as u64, self.ctime as u64, self.size]
    }

    pub fn from_words(w: [u64; 3]) -> Version {
        Version { ino: (w[0] >> 32) as u32, gen: w[0] as u32, ctime: w[1] as i64, size: w[2] }
    }
}

/// The change time a file gets when its bytes change at `now`: never earlier than, or
/// equal to, the one it had.
pub(crate) fn next_ctime(old: i64, now: i64) -> i64 {
    now.max(old.saturating_add(1))
}

impl<D: BlockDevice> Fs<D> {
    /// The present version of the file at `path` (`IsDir` for a directory).
    pub fn version(&mut self, path: &str) -> Result<Version> {
        let h = self.open(path)?;
        let st = self.fstat(h)?;
        if st.kind != Kind::File {
            return Err(Error::IsDir);
        }
        Ok(Version { ino: h.ino, gen: h.gen, ctime: st.ctime, size: st.size })
    }

    /// The file's present version and the attribute kept for it (empty when there is none,
    /// or only one made for an earlier version).
    pub fn attr(&mut self, path: &str) -> Result<(Version, Vec<u8>)> {
        let v = self.version(path)?;
        let Ok(h) = self.open(&format!("{ATTR_DIR}/{}", v.ino)) else { return Ok((v, Vec::new())) };
        let mut rec = vec![0u8; HEAD + ATTR_MAX];
        let n = self.read(h, 0, &mut rec)?;
        let stored = [get_u64(&rec, 0), get_u64(&rec, 8), get_u64(&rec, 16)];
        if n < HEAD || Version::from_words(stored) != v {
            return Ok((v, Vec::new()));
        }
        rec.truncate(n);
        rec.drain(..HEAD);
        Ok((v, rec))
    }

    /// Keeps `value` beside the file at `path`, for its version `v`: `Stale` if the file
    /// is no longer at that version (the value was made from contents that are gone),
    /// `InvalidArgument` for a value over [`ATTR_MAX`] or a path inside [`ATTR_DIR`].
    pub fn set_attr(&mut self, path: &str, v: Version, value: &[u8]) -> Result<()> {
        let top = path.trim_start_matches('/').split('/').next();
        if value.len() > ATTR_MAX || top == Some(&ATTR_DIR[1..]) {
            return Err(Error::InvalidArgument);
        }
        if self.version(path)? != v {
            return Err(Error::Stale);
        }
        match self.mkdir(ATTR_DIR) {
            Ok(_) | Err(Error::Exists) => {}
            Err(e) => return Err(e),
        }
        let side = format!("{ATTR_DIR}/{}", v.ino);
        let h = match self.create(&side) {
            Err(Error::Exists) => self.open(&side)?,
            r => r?,
        };
        let mut rec = vec![0u8; HEAD];
        for (i, w) in v.to_words().into_iter().enumerate() {
            put_u64(&mut rec, i * 8, w);
        }
        rec.extend_from_slice(value);
        self.truncate(h, 0)?;
        self.write(h, 0, &rec)?;
        Ok(())
    }

    /// Removes the attribute kept for inode `ino`, which was in directory `dir` and has just
    /// been removed: nothing when there is none (or `ino` was itself an attribute).
    pub(crate) fn drop_attr(&mut self, dir: u32, ino: u32) -> Result<()> {
        self.load_dir(ROOT_INO)?;
        let Some((side_dir, Kind::Dir)) = self.dir(ROOT_INO)?.lookup(&ATTR_DIR.as_bytes()[1..]) else {
            return Ok(());
        };
        if dir == side_dir {
            return Ok(());
        }
        self.load_dir(side_dir)?;
        let name = format!("{ino}");
        let Some((side, Kind::File)) = self.dir(side_dir)?.lookup(name.as_bytes()) else { return Ok(()) };
        self.dir_del(side_dir, name.as_bytes())?;
        self.free_inode(side)
    }
}
