//! The file-system object and the public types a libOS sees.

use crate::device::BlockDevice;
use crate::error::{Error, Result};
use crate::imap::Imap;
use crate::inode::{Inode, Kind};
use crate::layout::Geometry;
use crate::log::Log;
use crate::nodes::NodeCache;
use crate::stats::Stats;
use crate::usage::Usage;
use alloc::boxed::Box;
use alloc::vec::Vec;

/// A reference to an open file or directory: inode number plus generation, so a handle to a
/// removed file fails with [`Error::Stale`] instead of reaching whatever reuses the number.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Handle {
    pub ino: u32,
    pub gen: u32,
}

/// What `stat` reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stat {
    pub ino: u32,
    pub kind: Kind,
    pub size: u64,
    /// Sectors the file's blocks occupy in the log (its share of inode sectors not counted).
    pub sectors: u64,
    pub mode: u32,
    pub mtime: i64,
    pub ctime: i64,
    pub btime: i64,
}

/// One directory entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DirEntry {
    pub name: Vec<u8>,
    pub ino: u32,
    pub kind: Kind,
}

/// What `statfs` (df) reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FsStat {
    pub block_size: u32,
    pub segment_bytes: u64,
    pub segments: u32,
    pub free_segments: u32,
    /// Bytes the caller may still fill (data plus metadata), at most.
    pub avail_bytes: u64,
    /// Bytes of live data and metadata.
    pub used_bytes: u64,
    /// Usable capacity: the log less the cleaner's reserve.
    pub capacity_bytes: u64,
    pub inodes_used: u32,
    pub inodes_max: u32,
    pub stats: Stats,
}

/// Options for `format`.
#[derive(Clone, Copy, Debug)]
pub struct FormatOptions {
    /// Segment size in bytes: a power of two from 64 KiB to 16 MiB; match the card's erase
    /// block (1–4 MiB) on real hardware.
    pub segment_bytes: u32,
    /// Maximum number of inodes (rounded up to a multiple of 512); default scales with size.
    pub max_inodes: Option<u32>,
    /// Distinguishes this file system from earlier ones formatted on the same medium; pass
    /// something that differs each time (the time of day is fine).
    pub fs_id: u64,
    /// Creation time stamped on the root directory.
    pub now: i64,
}

impl Default for FormatOptions {
    fn default() -> Self {
        FormatOptions { segment_bytes: 1 << 20, max_inodes: None, fs_id: 0x1f5e_ed00_0000_0001, now: 0 }
    }
}

/// Supplies the time (nanoseconds since an epoch the caller chooses) for timestamps.
pub type Clock = fn() -> i64;

fn no_clock() -> i64 {
    0
}

/// One mounted file system over a block device.
pub struct Fs<D: BlockDevice> {
    pub(crate) dev: D,
    pub(crate) geo: Geometry,
    pub(crate) log: Log,
    pub(crate) usage: Usage,
    pub(crate) imap: Imap,
    pub(crate) inodes: crate::icache::InodeCache,
    pub(crate) nodes: NodeCache,
    /// Directories with dirty blocks.
    pub(crate) dirty_dirs: Vec<u32>,
    pub(crate) stats: Stats,
    pub(crate) cp_serial: u64,
    /// Segments the log has entered since the last checkpoint.
    pub(crate) segs_since_cp: u32,
    pub(crate) gen: u32,
    pub(crate) clock: Clock,
    pub(crate) read_only: bool,
    pub(crate) failed: bool,
    /// A small read cache of one 4 KiB window of inode sectors.
    pub(crate) ichunk: Option<(u64, Box<[u8; 4096]>)>,
    /// Whether something was written since the last flush.
    pub(crate) unflushed: bool,
    /// How the last mount ended its roll-forward (for fsck and the tool).
    pub(crate) recovery: Recovery,
    /// A writable mount's checkpoint, which records its new epoch: built at mount, written
    /// before the mount's first write (`record_epoch`), so a mount that changes nothing
    /// leaves the medium as it found it. Its region and image.
    pub(crate) unwritten_cp: Option<(u64, Vec<u8>)>,
}

/// What mount found while rolling forward.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Recovery {
    /// Which checkpoint region was used (0 or 1).
    pub region: u8,
    /// Whether the other region held a valid (older) checkpoint.
    pub other_valid: bool,
    /// Partial segments replayed (committed groups only).
    pub replayed: u64,
    /// Partial segments read but discarded because their group never committed.
    pub discarded: u64,
}

impl<D: BlockDevice> Fs<D> {
    /// Sets the clock used for timestamps.
    pub fn set_clock(&mut self, clock: Clock) {
        self.clock = clock;
    }

    pub(crate) fn now(&self) -> i64 {
        (self.clock)()
    }

    pub(crate) fn default_clock() -> Clock {
        no_clock
    }

    /// The underlying device (for example to read its transfer counters).
    pub fn device(&self) -> &D {
        &self.dev
    }

    pub fn device_mut(&mut self) -> &mut D {
        &mut self.dev
    }

    pub fn geometry(&self) -> &Geometry {
        &self.geo
    }

    pub fn stats(&self) -> Stats {
        self.stats
    }

    pub fn recovery(&self) -> Recovery {
        self.recovery
    }

    /// Fails unless the file system may be modified.
    pub(crate) fn writable(&self) -> Result<()> {
        if self.failed {
            Err(Error::Failed)
        } else if self.read_only {
            Err(Error::ReadOnly)
        } else {
            Ok(())
        }
    }

    /// Runs a device operation, marking the file system failed if it errors.
    pub(crate) fn io<T>(&mut self, r: core::result::Result<T, crate::IoError>) -> Result<T> {
        r.map_err(|e| {
            self.failed = true;
            Error::Io(e)
        })
    }

    pub(crate) fn new_inode_value(&mut self, kind: Kind, ino: u32, parent: u32) -> Inode {
        self.gen = self.gen.wrapping_add(1).max(1);
        Inode::new(kind, ino, self.gen, parent, self.now())
    }
}
