//! Path names: resolving them to inodes, one hashed directory lookup per component.

use crate::device::BlockDevice;
use crate::dir::valid_name;
use crate::error::{Corruption, Error, Result};
use crate::fs::Fs;
use crate::inode::Kind;
use crate::layout::{NAME_MAX, ROOT_INO};

/// Longest path accepted, in bytes.
pub const PATH_MAX: usize = 4096;

/// Splits a path into its final name and the part before it. `"/a/b"` → (`"/a"`, `"b"`).
fn split_last(path: &str) -> (&str, &str) {
    let t = path.trim_end_matches('/');
    match t.rfind('/') {
        Some(i) => (&t[..i], &t[i + 1..]),
        None => ("", t),
    }
}

impl<D: BlockDevice> Fs<D> {
    /// Looks `name` up in directory `dir`.
    pub(crate) fn lookup(&mut self, dir: u32, name: &[u8]) -> Result<Option<(u32, Kind)>> {
        self.load_dir(dir)?;
        Ok(self.dir(dir)?.lookup(name))
    }

    /// Resolves a path to an inode number. Paths are taken from the root; "." and ".." work.
    pub(crate) fn resolve(&mut self, path: &str) -> Result<u32> {
        if path.len() > PATH_MAX {
            return Err(Error::NameTooLong);
        }
        let mut cur = ROOT_INO;
        for comp in path.split('/') {
            match comp {
                "" | "." => {
                    self.load_dir(cur)?;
                }
                ".." => {
                    self.load_dir(cur)?;
                    cur = self.inodes.get(cur).map_or(ROOT_INO, |c| c.inode.parent);
                }
                name => {
                    if name.len() > NAME_MAX {
                        return Err(Error::NameTooLong);
                    }
                    match self.lookup(cur, name.as_bytes())? {
                        Some((ino, _)) => cur = ino,
                        None => return Err(Error::NotFound),
                    }
                }
            }
        }
        self.load_inode(cur).map_err(|e| match e {
            Error::NotFound => Error::Corrupt(Corruption::Inode(cur)),
            e => e,
        })?;
        Ok(cur)
    }

    /// Resolves everything but the last component, which must be a plain name:
    /// (parent directory, name).
    pub(crate) fn resolve_parent<'p>(&mut self, path: &'p str) -> Result<(u32, &'p [u8])> {
        if path.len() > PATH_MAX {
            return Err(Error::NameTooLong);
        }
        let (dir, name) = split_last(path);
        valid_name(name.as_bytes())?;
        let d = self.resolve(dir)?;
        self.load_dir(d)?;
        Ok((d, name.as_bytes()))
    }

    /// Whether directory `anc` is `ino` or one of its ancestors (bounded: a damaged tree
    /// with a parent cycle reports corruption).
    pub(crate) fn is_ancestor(&mut self, anc: u32, mut ino: u32) -> Result<bool> {
        for _ in 0..PATH_MAX {
            if ino == anc {
                return Ok(true);
            }
            if ino == ROOT_INO {
                return Ok(false);
            }
            self.load_inode(ino)?;
            ino = self.inodes.get(ino).ok_or(Error::Failed)?.inode.parent;
        }
        Err(Error::Corrupt(Corruption::Cycle))
    }
}

#[cfg(test)]
mod tests {
    use super::split_last;

    #[test]
    fn splits() {
        assert_eq!(split_last("/a/b"), ("/a", "b"));
        assert_eq!(split_last("/a/b/"), ("/a", "b"));
        assert_eq!(split_last("b"), ("", "b"));
        assert_eq!(split_last("/"), ("", ""));
    }
}
