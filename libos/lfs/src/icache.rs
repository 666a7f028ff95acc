//! The inode cache: decoded inodes by number, dense and allocation-free on lookup.

use crate::dir::Dir;
use crate::inode::Inode;
use alloc::boxed::Box;
use alloc::vec::Vec;

pub(crate) struct Cached {
    pub inode: Inode,
    pub dirty: bool,
    /// The loaded directory, for directories that were looked into.
    pub dir: Option<Box<Dir>>,
}

/// Cached inodes in a slab, found through a dense index by inode number.
pub(crate) struct InodeCache {
    index: Vec<u32>,
    slab: Vec<Option<Cached>>,
    free: Vec<u32>,
    /// Inode numbers whose inode must be written at the next commit.
    pub dirty: Vec<u32>,
    /// Past this many cached inodes, clean ones are dropped after a commit.
    pub limit: usize,
}

impl InodeCache {
    pub fn new() -> InodeCache {
        InodeCache { index: Vec::new(), slab: Vec::new(), free: Vec::new(), dirty: Vec::new(), limit: 16384 }
    }

    pub fn len(&self) -> usize {
        self.slab.len() - self.free.len()
    }

    #[inline]
    pub fn get(&self, ino: u32) -> Option<&Cached> {
        let s = *self.index.get(ino as usize)?;
        if s == 0 {
            return None;
        }
        self.slab[s as usize - 1].as_ref()
    }

    #[inline]
    pub fn get_mut(&mut self, ino: u32) -> Option<&mut Cached> {
        let s = *self.index.get(ino as usize)?;
        if s == 0 {
            return None;
        }
        self.slab[s as usize - 1].as_mut()
    }

    pub fn insert(&mut self, c: Cached) -> &mut Cached {
        let ino = c.inode.ino as usize;
        if ino >= self.index.len() {
            self.index.resize((ino + 1).next_power_of_two().max(64), 0);
        }
        debug_assert_eq!(self.index[ino], 0);
        let s = match self.free.pop() {
            Some(s) => {
                self.slab[s as usize] = Some(c);
                s
            }
            None => {
                self.slab.push(Some(c));
                self.slab.len() as u32 - 1
            }
        };
        self.index[ino] = s + 1;
        self.slab[s as usize].as_mut().unwrap()
    }

    pub fn remove(&mut self, ino: u32) -> Option<Cached> {
        let s = *self.index.get(ino as usize)?;
        if s == 0 {
            return None;
        }
        self.index[ino as usize] = 0;
        self.free.push(s - 1);
        self.slab[s as usize - 1].take()
    }

    /// Marks an inode for writing at the next commit.
    pub fn mark_dirty(&mut self, ino: u32) {
        if let Some(c) = self.get_mut(ino) {
            if !c.dirty {
                c.dirty = true;
                self.dirty.push(ino);
            }
        }
    }

    /// Drops clean inodes (and their clean directories) when the cache is over its limit.
    pub fn trim(&mut self) {
        if self.len() <= self.limit {
            return;
        }
        let victims: Vec<u32> = self
            .slab
            .iter()
            .flatten()
            .filter(|c| !c.dirty && c.dir.as_ref().is_none_or(|d| !d.is_dirty()))
            .map(|c| c.inode.ino)
            .collect();
        for ino in victims {
            self.remove(ino);
        }
    }
}
