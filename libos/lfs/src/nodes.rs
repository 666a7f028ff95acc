//! The block tree of a file: finding, setting and freeing block pointers through indirect
//! blocks, which are cached and written bottom-up at commit.

use crate::device::{BlockDevice, SECTOR};
use crate::error::{Corruption, Error, Result};
use crate::fs::Fs;
use crate::inode::{span, tree_slot, FANOUT, NDIRECT};
use crate::layout::{ptr_len, ptr_make, ptr_sector, BLOCK};
use crate::summary::{Entry, EntryKind};
use alloc::boxed::Box;
use alloc::collections::BTreeMap;
use alloc::vec::Vec;
use exo_format::le::*;

/// Names an indirect block: its file, its level (1 = points at data) and the first file
/// block it covers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct NodeKey {
    pub ino: u32,
    pub level: u8,
    pub base: u64,
}

pub(crate) struct Node {
    pub ptrs: Box<[u64; FANOUT as usize]>,
    pub dirty: bool,
}

/// Memo slots for block pointers found through indirect blocks (direct-mapped by block).
const MEMO: usize = 16;

/// One remembered pointer: block `blk` of file `ino` was `ptr` while `epoch` was current.
#[derive(Clone, Copy, Default)]
struct Memo {
    ino: u32,
    blk: u64,
    ptr: u64,
    epoch: u64,
}

#[derive(Default)]
pub(crate) struct NodeCache {
    pub map: BTreeMap<NodeKey, Node>,
    pub dirty: Vec<NodeKey>,
    /// Pointers `block_ptr` found through the tree, so that a read of a cached file skips
    /// the walk. Valid only while `epoch` is unchanged: every change of a pointer (of a
    /// file block, a node or an inode's root) goes through `set_block_ptr`, `set_block_run`,
    /// `set_parent` or `truncate_tree`, and each of them bumps it (as does `drop_file`), so
    /// a memo never outlives the pointer it copied.
    memo: [Memo; MEMO],
    /// Starts at 0 and is bumped before any use, so a zeroed slot never matches.
    epoch: u64,
}

impl NodeCache {
    /// Forgets every remembered pointer (some pointer is about to change).
    pub fn forget(&mut self) {
        self.epoch = self.epoch.wrapping_add(1);
    }

    #[inline]
    pub(crate) fn recall(&self, ino: u32, blk: u64) -> Option<u64> {
        let m = &self.memo[blk as usize % MEMO];
        (m.epoch == self.epoch && self.epoch != 0 && m.ino == ino && m.blk == blk).then_some(m.ptr)
    }

    fn remember(&mut self, ino: u32, blk: u64, ptr: u64) {
        if self.epoch == 0 {
            self.epoch = 1;
        }
        self.memo[blk as usize % MEMO] = Memo { ino, blk, ptr, epoch: self.epoch };
    }

    /// Forgets every cached node of a file (its blocks were freed).
    pub fn drop_file(&mut self, ino: u32) {
        self.forget();
        let lo = NodeKey { ino, level: 0, base: 0 };
        let hi = NodeKey { ino: ino.wrapping_add(1), level: 0, base: 0 };
        let keys: Vec<NodeKey> = if ino == u32::MAX {
            self.map.range(lo..).map(|(k, _)| *k).collect()
        } else {
            self.map.range(lo..hi).map(|(k, _)| *k).collect()
        };
        for k in keys {
            self.map.remove(&k);
        }
    }

    /// Drops clean nodes when the cache is large (called when nothing is dirty).
    pub fn trim(&mut self, limit: usize) {
        if self.map.len() > limit {
            self.map.retain(|_, n| n.dirty);
        }
    }
}

/// A block's bytes at an 8-aligned address.
#[repr(align(8))]
struct Aligned([u8; BLOCK]);

/// Covered blocks of a node at `level`.
fn node_span(level: u8) -> u64 {
    span(level) * FANOUT
}

impl<D: BlockDevice> Fs<D> {
    /// Makes sure node `key` is cached, reading it through `ptr` or creating it empty.
    /// Returns false when it does not exist and `create` is false.
    fn load_node(&mut self, key: NodeKey, ptr: u64, create: bool) -> Result<bool> {
        if self.nodes.map.contains_key(&key) {
            return Ok(true);
        }
        let mut ptrs = Box::new([0u64; FANOUT as usize]);
        if ptr == 0 {
            if !create {
                return Ok(false);
            }
        } else {
            if !self.geo.ptr_ok(ptr) {
                return Err(Error::Corrupt(Corruption::BlockPointer(key.ino)));
            }
            // Read into an 8-aligned array and decoded at offsets from its start, so that
            // the compiler loads each pointer whole (from a byte slice of unknown alignment
            // it assembles each from eight byte loads on this target).
            let mut raw = Aligned([0u8; BLOCK]);
            let n = ptr_len(ptr) as usize * SECTOR;
            self.read_log(ptr_sector(ptr), &mut raw.0[..n])?;
            for (i, p) in ptrs.iter_mut().enumerate() {
                *p = get_u64(&raw.0, i * 8);
            }
        }
        self.nodes.map.insert(key, Node { ptrs, dirty: false });
        Ok(true)
    }

    fn root_ptr(&self, ino: u32, slot: usize) -> Result<u64> {
        self.inodes.get(ino).map(|c| c.inode.ptr[slot]).ok_or(Error::Failed)
    }

    /// Walks from the inode down to the node at `level` covering `blk`.
    fn node_for(&mut self, ino: u32, blk: u64, level: u8, create: bool) -> Result<Option<NodeKey>> {
        let (slot, depth, base) = tree_slot(blk).ok_or(Error::FileTooBig)?;
        debug_assert!(level >= 1 && level <= depth);
        let mut key = NodeKey { ino, level: depth, base };
        let mut ptr = self.root_ptr(ino, slot)?;
        loop {
            if !self.load_node(key, ptr, create)? {
                return Ok(None);
            }
            if key.level == level {
                return Ok(Some(key));
            }
            let idx = ((blk - key.base) / span(key.level)) as usize;
            ptr = self.nodes.map.get(&key).map_or(0, |n| n.ptrs[idx]);
            key = NodeKey { ino, level: key.level - 1, base: key.base + idx as u64 * span(key.level) };
        }
    }

    pub(crate) fn mark_node_dirty(&mut self, key: NodeKey) {
        if let Some(n) = self.nodes.map.get_mut(&key) {
            if !n.dirty {
                n.dirty = true;
                self.nodes.dirty.push(key);
            }
        }
    }

    /// The pointer of file block `blk` (0 for a hole). The inode must be cached.
    pub(crate) fn block_ptr(&mut self, ino: u32, blk: u64) -> Result<u64> {
        let (slot, depth, _) = tree_slot(blk).ok_or(Error::FileTooBig)?;
        if depth == 0 {
            return self.root_ptr(ino, slot);
        }
        if let Some(p) = self.nodes.recall(ino, blk) {
            return Ok(p);
        }
        let p = match self.node_for(ino, blk, 1, false)? {
            Some(k) => self.nodes.map.get(&k).map_or(0, |n| n.ptrs[(blk - k.base) as usize]),
            None => 0,
        };
        self.nodes.remember(ino, blk, p);
        Ok(p)
    }

    /// The pointers of file blocks `blk..`, as many as `out` holds and the structure holding
    /// `blk`'s pointer (the inode's direct pointers, or one level-1 node) has: one tree walk
    /// for a run of blocks. Returns how many were filled (at least 1 when `out` is not empty).
    pub(crate) fn block_ptrs(&mut self, ino: u32, blk: u64, out: &mut [u64]) -> Result<usize> {
        let (slot, depth, _) = tree_slot(blk).ok_or(Error::FileTooBig)?;
        if out.is_empty() {
            return Ok(0);
        }
        if depth == 0 {
            let c = self.inodes.get(ino).ok_or(Error::Failed)?;
            let n = out.len().min(NDIRECT - slot);
            out[..n].copy_from_slice(&c.inode.ptr[slot..slot + n]);
            return Ok(n);
        }
        let Some(k) = self.node_for(ino, blk, 1, false)? else {
            out[0] = 0;
            return Ok(1);
        };
        let node = self.nodes.map.get(&k).ok_or(Error::Failed)?;
        let i = (blk - k.base) as usize;
        let n = out.len().min(FANOUT as usize - i);
        out[..n].copy_from_slice(&node.ptrs[i..i + n]);
        Ok(n)
    }

    /// Points file block `blk` at `new`; returns the old pointer (the caller kills it).
    pub(crate) fn set_block_ptr(&mut self, ino: u32, blk: u64, new: u64) -> Result<u64> {
        self.nodes.forget();
        let (slot, depth, _) = tree_slot(blk).ok_or(Error::FileTooBig)?;
        if depth == 0 {
            let c = self.inodes.get_mut(ino).ok_or(Error::Failed)?;
            let old = core::mem::replace(&mut c.inode.ptr[slot], new);
            self.inodes.mark_dirty(ino);
            return Ok(old);
        }
        let k = self.node_for(ino, blk, 1, true)?.ok_or(Error::Failed)?;
        let n = self.nodes.map.get_mut(&k).ok_or(Error::Failed)?;
        let old = core::mem::replace(&mut n.ptrs[(blk - k.base) as usize], new);
        self.mark_node_dirty(k);
        Ok(old)
    }

    /// Points file blocks `blk..` at whole blocks stored one after another from `sector`, as
    /// many as `old` holds and the structure holding `blk`'s pointer (the inode's direct
    /// pointers, or one level-1 node) has: one tree walk for a run. The old pointers go
    /// into `old` (the caller kills them); returns how many were set (at least 1 when `old`
    /// is not empty).
    pub(crate) fn set_block_run(
        &mut self,
        ino: u32,
        blk: u64,
        sector: u64,
        old: &mut [u64],
    ) -> Result<usize> {
        self.nodes.forget();
        let (slot, depth, _) = tree_slot(blk).ok_or(Error::FileTooBig)?;
        if old.is_empty() {
            return Ok(0);
        }
        let ptrs = if depth == 0 {
            self.inodes.get(ino).ok_or(Error::Failed)?;
            self.inodes.mark_dirty(ino);
            &mut self.inodes.get_mut(ino).ok_or(Error::Failed)?.inode.ptr[slot..NDIRECT]
        } else {
            let k = self.node_for(ino, blk, 1, true)?.ok_or(Error::Failed)?;
            self.mark_node_dirty(k);
            let n = self.nodes.map.get_mut(&k).ok_or(Error::Failed)?;
            &mut n.ptrs[(blk - k.base) as usize..]
        };
        let n = old.len().min(ptrs.len());
        for (i, (p, o)) in ptrs[..n].iter_mut().zip(old.iter_mut()).enumerate() {
            *o = core::mem::replace(p, ptr_make(sector + (i * 8) as u64, 8));
        }
        Ok(n)
    }

    /// Points the parent of node `key` (a node or the inode) at `new`; returns the old value.
    fn set_parent(&mut self, key: NodeKey, new: u64) -> Result<u64> {
        self.nodes.forget();
        let (slot, depth, _) = tree_slot(key.base).ok_or(Error::Failed)?;
        if key.level == depth {
            let c = self.inodes.get_mut(key.ino).ok_or(Error::Failed)?;
            let old = core::mem::replace(&mut c.inode.ptr[slot], new);
            self.inodes.mark_dirty(key.ino);
            return Ok(old);
        }
        let p = self.node_for(key.ino, key.base, key.level + 1, true)?.ok_or(Error::Failed)?;
        let idx = ((key.base - p.base) / span(p.level)) as usize;
        let n = self.nodes.map.get_mut(&p).ok_or(Error::Failed)?;
        let old = core::mem::replace(&mut n.ptrs[idx], new);
        self.mark_node_dirty(p);
        Ok(old)
    }

    /// Writes every dirty indirect block, lowest level first (a write dirties the parent).
    pub(crate) fn write_nodes(&mut self) -> Result<()> {
        for level in 1..=3u8 {
            let keys: Vec<NodeKey> = self.nodes.dirty.iter().filter(|k| k.level == level).copied().collect();
            self.nodes.dirty.retain(|k| k.level != level);
            for key in keys {
                let Some(node) = self.nodes.map.get_mut(&key) else {
                    continue;
                };
                if !node.dirty {
                    continue;
                }
                node.dirty = false;
                let used = node.ptrs.iter().rposition(|&p| p != 0).map_or(0, |i| i + 1);
                let new = if used == 0 {
                    self.nodes.map.remove(&key);
                    0
                } else {
                    let sectors = (used * 8).div_ceil(SECTOR) as u32;
                    let e = Entry {
                        kind: EntryKind::Indirect,
                        sectors: sectors as u8,
                        level,
                        ino: key.ino,
                        key: key.base,
                    };
                    let (abs, rel) = self.append(e)?;
                    let at = rel as usize * SECTOR;
                    let out = &mut self.log.buf[at..at + sectors as usize * SECTOR];
                    out.fill(0);
                    if let Some(node) = self.nodes.map.get(&key) {
                        for (i, p) in node.ptrs[..used].iter().enumerate() {
                            put_u64(out, i * 8, *p);
                        }
                    }
                    ptr_make(abs, sectors)
                };
                let old = self.set_parent(key, new)?;
                self.kill_ptr(old)?;
            }
        }
        Ok(())
    }

    /// Frees every block of file `ino` from file block `from` on (the caller fixes the size).
    pub(crate) fn truncate_tree(&mut self, ino: u32, from: u64) -> Result<()> {
        self.nodes.forget();
        for slot in (from.min(NDIRECT as u64) as usize)..NDIRECT {
            let old = self.set_block_ptr(ino, slot as u64, 0)?;
            self.kill_ptr(old)?;
        }
        let mut base = NDIRECT as u64;
        for depth in 1..=3u8 {
            let end = base + node_span(depth);
            let slot = NDIRECT + depth as usize - 1;
            let key = NodeKey { ino, level: depth, base };
            if from <= base {
                let root = self.root_ptr(ino, slot)?;
                if root != 0 || self.nodes.map.contains_key(&key) {
                    self.free_subtree(key, root)?;
                    let c = self.inodes.get_mut(ino).ok_or(Error::Failed)?;
                    c.inode.ptr[slot] = 0;
                    self.inodes.mark_dirty(ino);
                }
            } else if from < end {
                let root = self.root_ptr(ino, slot)?;
                self.trim_node(key, root, from)?;
            }
            base = end;
        }
        self.nodes.forget();
        Ok(())
    }

    /// Frees a whole subtree: its data blocks, its nodes, and the node itself.
    fn free_subtree(&mut self, key: NodeKey, ptr: u64) -> Result<()> {
        if !self.load_node(key, ptr, false)? {
            return Ok(());
        }
        let Some(node) = self.nodes.map.remove(&key) else {
            return Ok(());
        };
        for (i, &child) in node.ptrs.iter().enumerate() {
            if key.level == 1 {
                self.kill_ptr(child)?;
                continue;
            }
            let ck =
                NodeKey { ino: key.ino, level: key.level - 1, base: key.base + i as u64 * span(key.level) };
            if child != 0 || self.nodes.map.contains_key(&ck) {
                self.free_subtree(ck, child)?;
            }
        }
        self.kill_ptr(ptr)
    }

    /// Frees the part of node `key`'s subtree at or after file block `from`.
    fn trim_node(&mut self, key: NodeKey, ptr: u64, from: u64) -> Result<()> {
        if !self.load_node(key, ptr, false)? {
            return Ok(());
        }
        let s = span(key.level);
        let first = ((from - key.base) / s) as usize;
        let mut changed = false;
        for i in first..FANOUT as usize {
            let cb = key.base + i as u64 * s;
            let child = self.nodes.map.get(&key).map_or(0, |n| n.ptrs[i]);
            if key.level == 1 {
                if child != 0 {
                    self.kill_ptr(child)?;
                    changed = true;
                }
            } else {
                let ck = NodeKey { ino: key.ino, level: key.level - 1, base: cb };
                if child == 0 && !self.nodes.map.contains_key(&ck) {
                    continue;
                }
                if cb >= from {
                    self.free_subtree(ck, child)?;
                } else {
                    self.trim_node(ck, child, from)?;
                    continue;
                }
                changed = true;
            }
            if let Some(n) = self.nodes.map.get_mut(&key) {
                n.ptrs[i] = 0;
            }
        }
        if changed {
            self.mark_node_dirty(key);
        }
        Ok(())
    }
}

impl<D: BlockDevice> Fs<D> {
    /// If the node (`level`, `base`) of `ino` is the one stored at `ptr`, caches it and
    /// returns its key (the cleaner then marks it dirty to move it).
    pub(crate) fn node_if_at(&mut self, ino: u32, level: u8, base: u64, ptr: u64) -> Result<Option<NodeKey>> {
        let Some((slot, depth, root_base)) = tree_slot(base) else {
            return Ok(None);
        };
        if level == 0 || level > depth || !(base - root_base).is_multiple_of(node_span(level)) {
            return Ok(None);
        }
        let cur = if level == depth {
            self.root_ptr(ino, slot)?
        } else {
            match self.node_for(ino, base, level + 1, false)? {
                Some(p) => {
                    let idx = ((base - p.base) / span(p.level)) as usize;
                    self.nodes.map.get(&p).map_or(0, |n| n.ptrs[idx])
                }
                None => 0,
            }
        };
        if cur != ptr {
            return Ok(None);
        }
        self.node_for(ino, base, level, false)
    }
}
