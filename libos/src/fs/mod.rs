//! Files for apps: one interface ([`FileSystem`]), a mount table ([`Vfs`]), and the mount
//! layer the file-system libOSes plug into.
//!
//! # Layers
//!
//! ```text
//!   app ──► Vfs (vfs.rs): mount points, paths (path.rs), descriptors with a position
//!             │  Box<dyn FileSystem>
//!             ├──► exo_fat::FatFs (crate exo-fat): FAT16/FAT32 on embedded-sdmmc
//!             ├──► exo_logfs::LfsFs (crate exo-logfs): the log-structured file system
//!             └──► service::Remote: a file server (fsd) over IPC
//!                        │
//!                  Partition (disk.rs): one granted extent as sectors 0.., bounce buffer,
//!                        │              batched transfers
//!                  BlockDevice (crate exo-block): sys::sector_* on exo, a Vec or a file in
//!                                                 host tests
//! ```
//!
//! The runtime names no file system: an app depends on the file-system crates it wants and
//! hands their [`mount::Backend`]s to [`mount::mount_disk`], or calls one back end directly
//! (both implement [`FileSystem`]), so a FAT-only app links no LFS code and the reverse
//! (`docs/libos.md`). Paths given to a [`FileSystem`] are absolute within that file system.
//!
//! Nothing here may run in the upcall handler (it allocates). See `docs/filesystems.md`.
//!
//! # Example
//!
//! On exo, `mount::mount_disk(&mut vfs, &[exo_fat::backend(), exo_logfs::backend()])`
//! mounts the disk's FAT and LFS partitions at `/fat` and `/log`. Here a toy file system
//! stands in for them (the file-system crates' tests use the real ones):
//!
//! ```
//! use exo_libos::fs::{DirEntry, Error, FileKind, FileSystem, FsStats, Handle, Metadata};
//! use exo_libos::fs::{OpenFlags, Result, Vfs};
//!
//! /// One file, `/motd`, read-only.
//! struct Motd;
//! impl FileSystem for Motd {
//!     fn fs_type(&self) -> &'static str { "motd" }
//!     fn open(&mut self, p: &str, _: OpenFlags) -> Result<Handle> {
//!         if p == "/motd" { Ok(Handle(0)) } else { Err(Error::NotFound) }
//!     }
//!     fn read(&mut self, _: Handle, off: u64, buf: &mut [u8]) -> Result<usize> {
//!         let rest = b"hello, exo".get(off as usize..).unwrap_or(&[]);
//!         let n = rest.len().min(buf.len());
//!         buf[..n].copy_from_slice(&rest[..n]);
//!         Ok(n)
//!     }
//!     fn write(&mut self, _: Handle, _: u64, _: &[u8]) -> Result<usize> { Err(Error::ReadOnly) }
//!     fn close(&mut self, _: Handle) -> Result<()> { Ok(()) }
//!     fn fstat(&mut self, _: Handle) -> Result<Metadata> {
//!         Ok(Metadata { kind: FileKind::File, size: 10, modified: None })
//!     }
//!     fn stat(&mut self, p: &str) -> Result<Metadata> { self.open(p, OpenFlags::READ)?; self.fstat(Handle(0)) }
//!     fn list_dir(&mut self, _: &str) -> Result<Vec<DirEntry>> {
//!         Ok(vec![DirEntry { name: "motd".into(), kind: FileKind::File, size: 10 }])
//!     }
//!     fn mkdir(&mut self, _: &str) -> Result<()> { Err(Error::ReadOnly) }
//!     fn remove(&mut self, _: &str) -> Result<()> { Err(Error::ReadOnly) }
//!     fn rename(&mut self, _: &str, _: &str) -> Result<()> { Err(Error::ReadOnly) }
//!     fn sync(&mut self) -> Result<()> { Ok(()) }
//!     fn statfs(&mut self) -> Result<FsStats> {
//!         Ok(FsStats { fs_type: "motd", total_bytes: 10, free_bytes: 0, block_size: 1 })
//!     }
//! }
//!
//! let mut vfs = Vfs::new();
//! vfs.mount("/etc", Box::new(Motd))?;
//! assert_eq!(vfs.read_to_vec("/etc/motd")?, b"hello, exo");
//! assert_eq!(vfs.write_file("/etc/motd", b"x"), Err(Error::ReadOnly));
//! # Ok::<(), exo_libos::fs::Error>(())
//! ```

extern crate alloc;

use alloc::string::String;
use alloc::vec::Vec;

pub mod bcache;
pub mod disk;
mod error;
pub mod mount;
pub mod parts;
pub mod path;
pub mod service;
pub mod time;
pub mod vfs;

pub use disk::{BlockDevice, Partition};

/// Handles a file-system libOS may have open at once: more than every client of the file
/// service together can hold ([`service::server::OPEN_PER_CLIENT`] each, from at most 63
/// clients: every environment slot but the server's own), so that no family of clients can
/// fill a mount's table. A handle costs a few words until it is used.
pub const MAX_OPEN: usize = 1024;
pub use error::Error;
pub use vfs::{Fd, MountRef, SeekFrom, Vfs};

/// Shorthand for this module's results.
pub type Result<T> = core::result::Result<T, Error>;

/// The time source of a back end: nanoseconds since 1970-01-01 00:00 UTC. On exo there is no
/// real-time clock, so the default ([`time::uptime`]) counts from 1980-01-01 at boot.
pub type Clock = fn() -> i64;

/// What identifies a file's present bytes, for [`FileSystem::attr`]: the last word is the
/// file's size.
pub type Version = [u64; 3];

/// An open file of one [`FileSystem`]; meaningless to any other.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Handle(pub u32);

/// How to open a file: a set of flags combined with `|`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OpenFlags(u8);

impl OpenFlags {
    /// Reads are allowed.
    pub const READ: OpenFlags = OpenFlags(1);
    /// Writes are allowed.
    pub const WRITE: OpenFlags = OpenFlags(2);
    /// Create the file if it does not exist (needs `WRITE`).
    pub const CREATE: OpenFlags = OpenFlags(4);
    /// Cut an existing file to length 0 (needs `WRITE`).
    pub const TRUNCATE: OpenFlags = OpenFlags(8);
    /// Every write goes to the end of the file, whatever offset is given (needs `WRITE`).
    pub const APPEND: OpenFlags = OpenFlags(16);
    /// With `CREATE`: fail with [`Error::Exists`] if the file exists.
    pub const EXCLUSIVE: OpenFlags = OpenFlags(32);
    /// Read and write.
    pub const RW: OpenFlags = OpenFlags(3);

    pub const fn empty() -> OpenFlags {
        OpenFlags(0)
    }

    pub const fn bits(self) -> u8 {
        self.0
    }

    /// Flags from [`OpenFlags::bits`] (unknown bits are kept, and refused by `check`).
    pub const fn from_bits(bits: u8) -> OpenFlags {
        OpenFlags(bits)
    }

    /// Whether every flag of `other` is set.
    pub const fn contains(self, other: OpenFlags) -> bool {
        self.0 & other.0 == other.0
    }

    /// Fails with [`Error::InvalidArgument`] for combinations that make no sense: neither
    /// read nor write, or create/truncate/append without write.
    pub fn check(self) -> Result<()> {
        let needs_write = OpenFlags::CREATE.0 | OpenFlags::TRUNCATE.0 | OpenFlags::APPEND.0;
        if self.0 & 3 == 0 || (self.0 & needs_write != 0 && !self.contains(OpenFlags::WRITE)) || self.0 >= 64
        {
            return Err(Error::InvalidArgument);
        }
        Ok(())
    }
}

impl core::ops::BitOr for OpenFlags {
    type Output = OpenFlags;
    fn bitor(self, rhs: OpenFlags) -> OpenFlags {
        OpenFlags(self.0 | rhs.0)
    }
}

/// What a directory entry is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileKind {
    File,
    Dir,
}

/// What `stat` reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Metadata {
    pub kind: FileKind,
    /// Bytes (0 for a directory).
    pub size: u64,
    /// Last modification, nanoseconds since 1970-01-01 UTC (see [`Clock`]), where the back
    /// end keeps one: FAT to 2 s, LFS to the nanosecond. `None` for FAT's root directory.
    pub modified: Option<i64>,
}

impl Metadata {
    pub fn is_dir(&self) -> bool {
        self.kind == FileKind::Dir
    }
}

/// One entry of a directory listing (never `.` or `..`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DirEntry {
    pub name: String,
    pub kind: FileKind,
    /// Bytes (0 for a directory).
    pub size: u64,
}

/// What `statfs` reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FsStats {
    /// The back end: `"fat16"`, `"fat32"` or `"lfs"`.
    pub fs_type: &'static str,
    /// Usable capacity in bytes.
    pub total_bytes: u64,
    /// Bytes that can still be written (an upper bound on LFS, where metadata needs room too).
    pub free_bytes: u64,
    /// Allocation unit in bytes (cluster on FAT, block on LFS).
    pub block_size: u32,
}

/// A mounted file system. Object-safe, so a [`Vfs`] holds `Box<dyn FileSystem>`.
///
/// Paths are absolute within the file system (`/`, `/dir/file`); `.`, `..` and repeated
/// slashes are accepted and normalised, and `..` stops at the root. A [`Handle`] stays valid
/// until `close`.
pub trait FileSystem {
    /// The back end's name, as in [`FsStats::fs_type`].
    fn fs_type(&self) -> &'static str;

    /// Opens a file (never a directory: [`Error::IsDir`]) as `flags` say.
    fn open(&mut self, path: &str, flags: OpenFlags) -> Result<Handle>;

    /// Reads up to `buf.len()` bytes at `offset`; returns how many (0 at or past the end).
    fn read(&mut self, h: Handle, offset: u64, buf: &mut [u8]) -> Result<usize>;

    /// Writes all of `data` at `offset` (at the end if the handle was opened with
    /// `APPEND`), extending the file with zeros if `offset` is past its end; returns
    /// `data.len()`.
    fn write(&mut self, h: Handle, offset: u64, data: &[u8]) -> Result<usize>;

    /// Releases a handle.
    fn close(&mut self, h: Handle) -> Result<()>;

    /// Status of an open file.
    fn fstat(&mut self, h: Handle) -> Result<Metadata>;

    /// Status of a path.
    fn stat(&mut self, path: &str) -> Result<Metadata>;

    /// The entries of a directory, `.` and `..` left out, in the back end's order.
    fn list_dir(&mut self, path: &str) -> Result<Vec<DirEntry>>;

    /// Creates a directory.
    fn mkdir(&mut self, path: &str) -> Result<()>;

    /// Removes a file or an empty directory.
    fn remove(&mut self, path: &str) -> Result<()>;

    /// Renames within this file system, replacing a file or an empty directory at `to`.
    fn rename(&mut self, from: &str, to: &str) -> Result<()>;

    /// Makes every completed operation durable.
    fn sync(&mut self) -> Result<()>;

    /// Capacity and free space.
    fn statfs(&mut self) -> Result<FsStats>;

    /// The file's present version alone ([`FileSystem::attr`] without reading the attribute).
    fn version(&mut self, _path: &str) -> Result<Version> {
        Err(Error::Unsupported)
    }

    /// The file's present version (words that change whenever its bytes do, and never come
    /// back) and the attribute kept beside it for that version, empty if none
    /// (`docs/filesystems.md#attributes`). `Unsupported` where the back end keeps none.
    fn attr(&mut self, _path: &str) -> Result<(Version, Vec<u8>)> {
        Err(Error::Unsupported)
    }

    /// Keeps `value` beside the file for its version `v`; `BadHandle` if the file has
    /// changed since.
    fn set_attr(&mut self, _path: &str, _v: Version, _value: &[u8]) -> Result<()> {
        Err(Error::Unsupported)
    }

    /// Opens `path` for writing, creating it or cutting it to length 0.
    fn create(&mut self, path: &str) -> Result<Handle> {
        self.open(path, OpenFlags::WRITE | OpenFlags::CREATE | OpenFlags::TRUNCATE)
    }
}
