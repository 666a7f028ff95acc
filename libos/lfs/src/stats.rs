//! Counters a benchmark or `lfs df` reports: write amplification and cleaner work.

use exo_format::le::*;

/// Cumulative counters. Persisted at each checkpoint (so after a crash they may lag by the
/// work done since the last one).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Sectors of file data the caller asked to write (rounded up to sectors per block).
    pub user_sectors: u64,
    /// Every sector written to the log, headers, metadata and cleaner copies included.
    pub log_sectors: u64,
    /// Sectors written to checkpoint regions.
    pub checkpoint_sectors: u64,
    /// Segments the cleaner reclaimed.
    pub segments_cleaned: u64,
    /// Live sectors the cleaner copied forward.
    pub cleaner_sectors: u64,
    /// Checkpoints written.
    pub checkpoints: u64,
    /// Partial segments written.
    pub partial_segments: u64,
}

impl Stats {
    pub const ENCODED: usize = 56;

    pub fn encode(&self, b: &mut [u8]) {
        let v = [
            self.user_sectors,
            self.log_sectors,
            self.checkpoint_sectors,
            self.segments_cleaned,
            self.cleaner_sectors,
            self.checkpoints,
            self.partial_segments,
        ];
        for (i, x) in v.iter().enumerate() {
            put_u64(b, i * 8, *x);
        }
    }

    pub fn decode(b: &[u8]) -> Stats {
        Stats {
            user_sectors: get_u64(b, 0),
            log_sectors: get_u64(b, 8),
            checkpoint_sectors: get_u64(b, 16),
            segments_cleaned: get_u64(b, 24),
            cleaner_sectors: get_u64(b, 32),
            checkpoints: get_u64(b, 40),
            partial_segments: get_u64(b, 48),
        }
    }

    /// Total sectors written divided by user data sectors, times 100 (0 if nothing written).
    pub fn write_amplification_pct(&self) -> u64 {
        (self.log_sectors + self.checkpoint_sectors)
            .saturating_mul(100)
            .checked_div(self.user_sectors)
            .unwrap_or(0)
    }
}
