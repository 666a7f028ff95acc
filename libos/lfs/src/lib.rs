//! exo-lfs: a log-structured file system for SD cards, in the spirit of Sprite LFS
//! (Rosenblum & Ousterhout, TOCS 1992).
//!
//! # Why a log
//!
//! SD cards are slow and wear out under small random writes, and fast at long sequential
//! ones. So every change — file data, directory blocks, indirect blocks, inodes, the inode
//! map — is appended to the end of a log, in segments sized like the card's erase blocks,
//! and nothing is ever overwritten in place. A sync is one large write plus a flush.
//!
//! # The pieces (one file each)
//!
//! - [`device`]: the [`BlockDevice`] trait (512-byte sectors, explicit flush) and its
//!   durability contract; a RAM device and a transfer counter.
//! - `layout`: the superblock (sector 0), two checkpoint regions, then the segments. Block
//!   pointers carry their stored length: a 4 KiB block is stored as only the sectors it needs,
//!   so a 1 KiB file costs two data sectors, not eight.
//! - `summary`: a *partial segment* (PS) is one device write: header sector, payload items,
//!   summary entries describing every item (data, indirect, packed inodes, inode-map blocks)
//!   and every *kill* (bytes that stopped being live), all under one 64-bit hash (`hash`).
//!   A *direct* PS holds file data written straight from the caller's buffer, unhashed,
//!   and its header goes out after a flush.
//! - `log`: the segment buffer. Small writes' file data is copied once, straight into it
//!   (runs of four or more whole blocks go out as direct PSs instead); metadata is packed
//!   in at commit (inodes four to a sector).
//! - `nodes`, `file`: the block tree (6 direct, single, double and triple indirect) and
//!   file I/O. `dir`, `namei`, `ops`: directories with an in-memory hash index, paths, and
//!   the namespace operations.
//! - `commit`: an operation's changes stay in memory until a commit writes them as an
//!   *atomic group* (the last PS of the group carries the commit flag), between operations
//!   only, so every operation is atomic across power loss. `sync`/`fsync` = commit + flush.
//!   A checkpoint also writes the inode map and records positions in a checkpoint region.
//! - `mount`: newest valid checkpoint, then roll-forward through committed groups, stopping
//!   at the first PS whose hash, epoch or serial is wrong.
//! - `cleaner`: cost-benefit segment selection; live blocks are found through the summaries
//!   and checked against the inode map and block trees; segments become free at the next
//!   checkpoint. A reserve of segments keeps it able to run on a full disk.
//! - `fsck`: checks every invariant, including exact per-segment live-byte accounting.
//! - `attr`: attributes kept beside a file, valid only for its present bytes (a file's
//!   [`Version`] never repeats).
//!
//! The on-disk format is specified in `docs/lfs-format.md`; crash behaviour in
//! `docs/lfs-crash-safety.md`.
//!
//! # Using it
//!
//! ```
//! use exo_lfs::{Fs, MemDevice, FormatOptions, MountOptions};
//! let mut fs = Fs::format(MemDevice::new(8192), FormatOptions { segment_bytes: 64 * 1024, ..Default::default() }).unwrap();
//! let f = fs.create("/hello").unwrap();
//! fs.write(f, 0, b"hi").unwrap();
//! fs.sync().unwrap();
//! let dev = fs.into_device(); // power cut right here
//! let mut fs = Fs::mount(dev, MountOptions::default()).unwrap();
//! let mut buf = [0u8; 8];
//! let h = fs.open("/hello").unwrap();
//! assert_eq!(fs.read(h, 0, &mut buf).unwrap(), 2);
//! ```
//!
//! Everything is `no_std` + `alloc`; nothing panics on a damaged image (errors are
//! [`Error`] values). The `std` feature only adds `std::error::Error` for [`Error`].
#![cfg_attr(not(feature = "std"), no_std)]
#![forbid(unsafe_code)]
// The dev-dependency on this crate itself only turns `std` on for the unit tests, which
// therefore see an unused `exo_lfs`.
#![cfg_attr(test, allow(unused_crate_dependencies))]

extern crate alloc;

mod attr;
pub mod checkpoint;
mod cleaner;
mod commit;
pub mod device;
mod dir;
pub mod error;
mod file;
mod fs;
pub mod fsck;
pub mod hash;
mod icache;
mod iload;
mod imap;
pub mod inode;
pub mod layout;
mod log;
mod mount;
mod namei;
mod nodes;
mod ops;
mod statfs;
pub mod stats;
pub mod summary;
mod usage;

pub use attr::{Version, ATTR_DIR, ATTR_MAX};
pub use cleaner::CleanReport;
pub use device::{BlockDevice, Counting, IoCounts, MemDevice, SECTOR};
pub use error::{Corruption, Error, IoError, Result};
pub use file::MAX_FILE;
pub use fs::{Clock, DirEntry, FormatOptions, Fs, FsStat, Handle, Recovery, Stat};
pub use inode::Kind;
pub use mount::MountOptions;
pub use ops::{MAX_NAME, ROOT};
pub use stats::Stats;

#[cfg(feature = "std")]
impl std::error::Error for Error {}
