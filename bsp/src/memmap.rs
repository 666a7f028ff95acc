//! The physical memory map: RAM from the device tree minus everything already in use
//! ([`BoardInfo::taken`](crate::dt::BoardInfo)), which the kernel hands out from.
//!
//! What is left is the memory the kernel may hand out: page-aligned, sorted, disjoint ranges.

use crate::dt::Region;
use exo_abi::frame;

/// Enough for RAM split around the image, the DTB, an initrd and a dozen reservations.
pub const MAX_RANGES: usize = 32;

/// Sorted, disjoint, page-aligned free ranges of RAM.
#[derive(Clone, Copy, Debug)]
pub struct MemoryMap {
    ranges: [Region; MAX_RANGES],
    len: usize,
}

impl MemoryMap {
    /// RAM regions minus `taken` (any alignment: partial pages are given up).
    pub fn new(ram: &[Region], taken: &[Region]) -> MemoryMap {
        let mut map = MemoryMap { ranges: [Region::default(); MAX_RANGES], len: 0 };
        for r in ram {
            let base = r.base.next_multiple_of(4096);
            let end = r.end() & !4095;
            if end > base {
                map.insert(Region { base, size: end - base });
            }
        }
        for t in taken {
            map.remove(*t);
        }
        map
    }

    pub fn ranges(&self) -> &[Region] {
        &self.ranges[..self.len]
    }

    /// Free bytes in all.
    pub fn total(&self) -> u64 {
        self.ranges().iter().map(|r| r.size).sum()
    }

    /// How boot marks a frame table covering `[lo, hi)` (every RAM region inside it), as
    /// `(base, bytes, kind)` in the order to apply them, a later mark overriding an earlier
    /// one: what lies between the free ranges is the kernel's, then the holes after each RAM
    /// region are absent, then the free ranges are free.
    pub fn frame_marks<'a>(
        &'a self,
        ram: &'a [Region],
        lo: u64,
        hi: u64,
    ) -> impl Iterator<Item = (u64, u64, u8)> + 'a {
        let gap_starts = [lo].into_iter().chain(self.ranges().iter().map(Region::end));
        let gap_ends = self.ranges().iter().map(|r| r.base).chain([hi]);
        let kernel = gap_starts.zip(gap_ends).map(|(a, b)| (a, b.saturating_sub(a), frame::KERNEL));
        let holes = ram.iter().map(move |r| {
            let next = ram.iter().map(|n| n.base).filter(|&b| b >= r.end()).min().unwrap_or(hi);
            (r.end(), next.saturating_sub(r.end()), frame::ABSENT)
        });
        kernel.chain(holes).chain(self.ranges().iter().map(|r| (r.base, r.size, frame::FREE)))
    }

    /// Takes `size` bytes (page-aligned) from the first range that has them.
    pub fn take(&mut self, size: u64) -> Option<Region> {
        let size = size.next_multiple_of(4096);
        let i = self.ranges().iter().position(|r| r.size >= size)?;
        let r = &mut self.ranges[i];
        let taken = Region { base: r.base, size };
        r.base += size;
        r.size -= size;
        if r.size == 0 {
            self.ranges.copy_within(i + 1..self.len, i);
            self.len -= 1;
        }
        Some(taken)
    }

    fn insert(&mut self, r: Region) {
        if self.len == MAX_RANGES {
            return; // more fragments than we track: the memory is given up, not misused
        }
        let at = self.ranges().iter().position(|x| x.base > r.base).unwrap_or(self.len);
        self.ranges.copy_within(at..self.len, at + 1);
        self.ranges[at] = r;
        self.len += 1;
    }

    /// Removes `t` (rounded out to whole pages) from every range it touches.
    fn remove(&mut self, t: Region) {
        let lo = t.base & !4095;
        let hi = t.base.saturating_add(t.size).next_multiple_of(4096);
        let old = *self;
        self.len = 0;
        for r in old.ranges() {
            if hi <= r.base || lo >= r.end() {
                self.insert(*r);
                continue;
            }
            if lo > r.base {
                self.insert(Region { base: r.base, size: lo - r.base });
            }
            if hi < r.end() {
                self.insert(Region { base: hi, size: r.end() - hi });
            }
        }
    }
}

#[cfg(test)]
#[path = "memmap_tests.rs"]
mod tests;
