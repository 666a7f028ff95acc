//! `statfs`: capacity, free space and the write-amplification counters.

use crate::device::BlockDevice;
use crate::fs::{Fs, FsStat};
use crate::layout::BLOCK;

impl<D: BlockDevice> Fs<D> {
    /// File-system-wide usage (what `df` prints).
    pub fn statfs(&self) -> FsStat {
        let cap = self.capacity_bytes();
        FsStat {
            block_size: BLOCK as u32,
            segment_bytes: self.geo.seg_bytes(),
            segments: self.geo.nsegs,
            free_segments: self.usage.nfree,
            avail_bytes: cap.saturating_sub(self.usage.total_live),
            used_bytes: self.usage.total_live,
            capacity_bytes: cap,
            inodes_used: self.imap.used,
            inodes_max: self.imap.max,
            stats: self.stats,
        }
    }
}
