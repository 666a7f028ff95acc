//! The segment usage table: live bytes and age per segment, and which segments are free.

use crate::layout::NO_SEG;
use alloc::vec;
use alloc::vec::Vec;

pub(crate) struct Usage {
    /// Live bytes per segment.
    pub live: Vec<u32>,
    /// Serial of the newest PS written into the segment.
    pub age: Vec<u64>,
    /// Segments that were empty at the last checkpoint and have not been used since.
    pub free: Vec<bool>,
    pub nfree: u32,
    /// Sum of `live`.
    pub total_live: u64,
    /// Times a kill would have made a count negative (only a damaged image does that).
    pub underflows: u64,
}

impl Usage {
    pub fn new(live: Vec<u32>, age: Vec<u64>) -> Usage {
        let total_live = live.iter().map(|&l| l as u64).sum();
        let n = live.len();
        Usage { live, age, free: vec![false; n], nfree: 0, total_live, underflows: 0 }
    }

    pub fn add(&mut self, seg: u32, bytes: u32, serial: u64) {
        let s = seg as usize;
        self.live[s] = self.live[s].saturating_add(bytes);
        self.total_live += bytes as u64;
        if self.age[s] < serial {
            self.age[s] = serial;
        }
    }

    pub fn sub(&mut self, seg: u32, bytes: u32) {
        let s = seg as usize;
        if self.live[s] < bytes {
            self.underflows += 1;
            self.total_live -= self.live[s] as u64;
            self.live[s] = 0;
        } else {
            self.live[s] -= bytes;
            self.total_live -= bytes as u64;
        }
    }

    /// Recomputes the free set: every empty segment except the two the log is using.
    pub fn refresh_free(&mut self, cur: u32, next: u32) {
        self.nfree = 0;
        for (i, f) in self.free.iter_mut().enumerate() {
            *f = self.live[i] == 0 && i as u32 != cur && i as u32 != next;
            self.nfree += *f as u32;
        }
    }

    /// Segments with no live bytes that are not yet free (they become free at the next
    /// checkpoint).
    pub fn pending(&self, cur: u32, next: u32) -> u32 {
        let mut n = 0;
        for (i, &l) in self.live.iter().enumerate() {
            n += (l == 0 && !self.free[i] && i as u32 != cur && i as u32 != next) as u32;
        }
        n
    }

    /// Takes the first free segment after `after`, wrapping around, so the log sweeps the disk.
    pub fn take_free(&mut self, after: u32) -> u32 {
        let n = self.free.len();
        for k in 1..=n {
            let i = (after as usize + k) % n;
            if self.free[i] {
                self.free[i] = false;
                self.nfree -= 1;
                return i as u32;
            }
        }
        NO_SEG
    }
}
