//! The frame table: one entry per 4 KiB frame of RAM saying who owns it and as what.
//!
//! Ownership is the secure binding for memory: every later use (mapping, binding a table,
//! DMA into it) checks the entry. Every transition goes through a method here that checks
//! the state it starts from. The table itself lives in public frames that any environment
//! may map read-only; free frames are a doubly linked list threaded through their entries
//! (see `exo_abi::FrameEntry`), so allocating any frame, or one particular frame, is O(1).

use exo_abi::{frame, EnvId, Error, FrameEntry};

/// Head (index + 1, 0 for none) and length of the free list. The kernel copies them into
/// the public `KernelInfo` page after every change.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FreeList {
    pub head: u32,
    pub count: u32,
}

pub struct FrameTable {
    entries: &'static mut [FrameEntry],
    /// Physical address of entry 0.
    base: u64,
    pub free: FreeList,
}

const PAGE_SHIFT: u32 = 12;

impl FrameTable {
    /// A table over no frames at all (before boot sets it up).
    pub const fn empty() -> FrameTable {
        FrameTable { entries: &mut [], base: 0, free: FreeList { head: 0, count: 0 } }
    }

    /// A table over `entries.len()` frames from `base`. `entries` must be all zero (boot's
    /// tables are), which reads as free frames on no list yet: the caller marks every frame
    /// with `set_range` (boot: all but free memory as the kernel's, holes absent, then free).
    pub fn new(entries: &'static mut [FrameEntry], base: u64) -> Self {
        FrameTable { entries, base, free: FreeList::default() }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Index of the frame at `pa`: `NotFound` outside the table, `Invalid` if unaligned.
    #[inline(always)]
    pub fn index(&self, pa: u64) -> Result<usize, Error> {
        refuse_if!(pa & 0xfff != 0, Error::Invalid);
        let i = pa.checked_sub(self.base).ok_or(Error::NotFound)? >> PAGE_SHIFT;
        refuse_if!(i as usize >= self.entries.len(), Error::NotFound);
        Ok(i as usize)
    }

    pub fn pa(&self, index: usize) -> u64 {
        self.base + ((index as u64) << PAGE_SHIFT)
    }

    /// The entry for `pa`, if `pa` is a frame of RAM.
    #[inline(always)]
    pub fn get(&self, pa: u64) -> Result<&FrameEntry, Error> {
        Some(&self.entries[self.index(pa)?]).filter(|e| e.kind != frame::ABSENT).ok_or(Error::NotFound)
    }

    #[inline(always)]
    pub fn get_mut(&mut self, pa: u64) -> Result<&mut FrameEntry, Error> {
        let i = self.index(pa)?;
        Some(&mut self.entries[i]).filter(|e| e.kind != frame::ABSENT).ok_or(Error::NotFound)
    }

    /// The entry at `index` (from [`FrameTable::index`]).
    pub fn at(&mut self, index: usize) -> &mut FrameEntry {
        &mut self.entries[index]
    }

    /// One page entry fewer points at `pa` (public frames are not counted, nor free ones: a
    /// table that teardown freed before the page entry mapping it went).
    pub fn uncount(&mut self, pa: u64) {
        if let Some(e) = self.get_mut(pa).ok().filter(|e| e.kind != frame::PUBLIC && e.kind != frame::FREE) {
            e.maps -= 1;
        }
    }

    /// Boot only: marks `[pa, pa + len)` as `kind`. A FREE range goes on the free list
    /// whole, as pushing its frames one by one would, in time independent of its length: it
    /// must lie over entries never marked (all zero), which already read as a run threaded
    /// downwards (`next`), so only its ends are written. Boot's do: `frame_marks` marks the
    /// free ranges last, and over nothing else. Other kinds write three fields an entry.
    pub fn set_range(&mut self, pa: u64, len: u64, kind: u8) {
        // (Clipped to the table: a range partly or wholly outside it marks only what is in.)
        let end = (pa.saturating_add(len).div_ceil(4096).saturating_sub(self.base >> PAGE_SHIFT) as usize)
            .min(self.len());
        let first = ((pa >> PAGE_SHIFT).saturating_sub(self.base >> PAGE_SHIFT) as usize).min(end);
        if kind == frame::FREE && first < end {
            debug_assert!(self.entries[first..end].iter().all(|e| *e == FrameEntry::default()));
            self.entries[first].link = self.free.head ^ first as u32; // (`next`)
            self.set_prev(end - 1, 0);
            if self.free.head != 0 {
                self.set_prev(self.free.head as usize - 1, first as u32 + 1);
            }
            (self.free.head, self.free.count) = (end as u32, self.free.count + (end - first) as u32);
            return;
        }
        // Free frames in the range leave the list first (none can be, before the first FREE
        // range: a pass over the kernel's gaps saved at boot).
        for i in if self.free.count > 0 { first..end } else { 0..0 } {
            if self.entries[i].kind == frame::FREE {
                self.unlink(i);
            }
        }
        self.entries[first..end].iter_mut().for_each(|e| (e.owner, e.kind, e.link) = (0, kind, 0));
    }

    /// A free frame's neighbours on the list, as index + 1 (0: none), are stored relative
    /// to its own index (`exo_abi::FrameEntry::link`): next `link ^ i`, previous
    /// `owner ^ (i + 2)`, so that an all-zero entry links to the frames below and above it.
    fn next(&self, i: usize) -> u32 {
        self.entries[i].free_next(i)
    }
    fn prev(&self, i: usize) -> u32 {
        self.entries[i].free_prev(i)
    }
    fn set_prev(&mut self, i: usize, prev: u32) {
        self.entries[i].owner = prev ^ (i as u32 + 2);
    }

    fn push(&mut self, i: usize) {
        let head = self.free.head;
        self.entries[i] = FrameEntry { owner: i as u32 + 2, link: head ^ i as u32, ..FrameEntry::default() };
        if head != 0 {
            self.set_prev(head as usize - 1, i as u32 + 1);
        }
        self.free.head = i as u32 + 1;
        self.free.count += 1;
    }

    fn unlink(&mut self, i: usize) {
        let (prev, next) = (self.prev(i), self.next(i));
        match prev {
            0 => self.free.head = next,
            p => self.entries[p as usize - 1].link = next ^ (p - 1),
        }
        if next != 0 {
            self.set_prev(next as usize - 1, prev);
        }
        self.free.count -= 1;
    }

    /// Takes frame `pa` (or the first free one, for `None`) as data owned by `owner`, marked
    /// [`frame::ZEROED`] if `zeroed`: the caller then zeroes it before anyone else can see it
    /// (it holds the kernel lock).
    pub fn alloc(&mut self, owner: EnvId, pa: Option<u64>, zeroed: bool) -> Result<u64, Error> {
        let i = match pa {
            Some(pa) if self.get(pa)?.kind != frame::FREE => return Err(Error::Busy),
            Some(pa) => self.index(pa)?,
            None => match self.free.head {
                0 => return Err(Error::NoMemory),
                h => h as usize - 1,
            },
        };
        self.unlink(i);
        self.entries[i] = FrameEntry {
            owner: owner.0,
            kind: frame::DATA,
            flags: frame::ZEROED * zeroed as u8,
            ..FrameEntry::default()
        };
        Ok(self.pa(i))
    }

    /// Checks that `pa` is a data frame of `owner` that nothing maps.
    pub fn check_unmapped_data(&self, owner: EnvId, pa: u64) -> Result<usize, Error> {
        let i = self.index(pa)?;
        let e = &self.entries[i];
        match e.kind {
            frame::DATA if e.owner != owner.0 => Err(Error::Denied),
            frame::DATA if e.maps != 0 => Err(Error::Busy),
            frame::DATA => Ok(i),
            frame::ABSENT => Err(Error::NotFound),
            frame::TABLE if e.owner == owner.0 => Err(Error::Busy),
            _ => Err(Error::Denied),
        }
    }

    /// Checks that `pa` is a data frame of `owner` (mapped or not).
    #[inline(always)]
    pub fn check_owned_data(&self, owner: EnvId, pa: u64) -> Result<(), Error> {
        match self.get(pa)? {
            e if e.kind == frame::DATA && e.owner == owner.0 => Ok(()),
            _ => Err(Error::Denied),
        }
    }

    /// Returns `owner`'s unmapped data frame to the free list.
    pub fn free(&mut self, owner: EnvId, pa: u64) -> Result<(), Error> {
        self.check_unmapped_data(owner, pa).map(|i| self.push(i))
    }

    /// Hands `from`'s unmapped data frame to `to`. Its shares and grants end (so do they
    /// whenever a frame changes hands: `push` and `bind_table` clear the flags too).
    /// An unmapped device frame of `from` changes hands the same way.
    pub fn give(&mut self, from: EnvId, pa: u64, to: EnvId) -> Result<(), Error> {
        let device =
            matches!(self.get(pa)?, e if e.kind == frame::DEVICE && e.owner == from.0 && e.maps == 0);
        let i = if device { self.index(pa)? } else { self.check_unmapped_data(from, pa)? };
        (self.entries[i].owner, self.entries[i].flags) = (to.0, 0);
        Ok(())
    }

    /// Turns `owner`'s unmapped data frame into a table at `level`. Returns whether it is
    /// still all zeros ([`frame::ZEROED`]); if not, the caller zeroes it.
    pub fn bind_table(&mut self, owner: EnvId, pa: u64, level: u8) -> Result<bool, Error> {
        refuse_if!(level > 3, Error::Invalid);
        let i = self.check_unmapped_data(owner, pa)?;
        let e = &mut self.entries[i];
        let zeroed = e.flags & frame::ZEROED != 0;
        (e.kind, e.level, e.flags) = (frame::TABLE, level, 0);
        Ok(zeroed)
    }

    /// Teardown: a table whose links and mappings are gone goes back on the free list.
    pub fn free_table(&mut self, pa: u64) {
        if let Some(i) = self.index(pa).ok().filter(|&i| self.entries[i].kind == frame::TABLE) {
            self.push(i);
        }
    }

    /// Turns an empty, unlinked, unmapped (and unshared) table of `owner` back into data.
    pub fn unbind_table(&mut self, owner: EnvId, pa: u64) -> Result<u8, Error> {
        let e = self.get_mut(pa)?;
        refuse_if!(e.kind != frame::TABLE || e.owner != owner.0, Error::Denied);
        refuse_if!(
            e.entries != 0 || e.maps != 0 || e.flags & (frame::LINKED | frame::FROZEN) != 0,
            Error::Busy
        );
        let level = e.level;
        *e = FrameEntry { owner: owner.0, kind: frame::DATA, ..FrameEntry::default() };
        Ok(level)
    }

    /// Every frame `owner` holds goes back on the free list, its device frames to `heir`
    /// (environment teardown: the caller has already removed every mapping of them).
    /// `within`: the frame indices it may hold any at (`Env::span`). Returns how many went
    /// on the free list.
    pub fn reclaim(&mut self, owner: EnvId, heir: EnvId, within: core::ops::Range<usize>) -> u32 {
        let mut n = 0;
        for i in within {
            let e = &mut self.entries[i];
            if e.owner == owner.0 && e.kind == frame::DEVICE {
                e.owner = heir.0;
            } else if e.owner == owner.0 && (e.kind == frame::DATA || e.kind == frame::TABLE) {
                self.push(i);
                n += 1;
            }
        }
        n
    }
}

#[cfg(test)]
#[path = "frames_tests.rs"]
pub(crate) mod tests;
