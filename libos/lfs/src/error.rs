//! Errors: one enum, never a panic.

/// A block device failed a transfer (the type is `exo-block`'s, shared with the libOS).
pub use exo_block::IoError;

/// Which structure was found damaged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Corruption {
    /// Sector 0 is not an exo-lfs superblock, or its fields are inconsistent.
    Superblock,
    /// Neither checkpoint region holds a valid checkpoint.
    NoCheckpoint,
    /// A checkpoint with a good checksum holds impossible values.
    Checkpoint,
    /// An inode-map entry or block is impossible.
    Imap,
    /// The inode with this number is damaged or is not where the inode map says.
    Inode(u32),
    /// The directory with this inode number holds a malformed entry.
    Directory(u32),
    /// A block pointer of the inode with this number points outside the log.
    BlockPointer(u32),
    /// A segment summary is malformed.
    Summary,
    /// The directory tree has a cycle or is deeper than any real tree.
    Cycle,
}

/// Every way an operation can fail.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Error {
    NotFound,
    Exists,
    NotDir,
    IsDir,
    NotEmpty,
    NoSpace,
    NameTooLong,
    InvalidArgument,
    /// The offset or size is beyond the largest file the inode tree can address.
    FileTooBig,
    /// The file system was mounted read-only.
    ReadOnly,
    /// The handle names an inode that was removed (or reused) since it was opened.
    Stale,
    Corrupt(Corruption),
    /// Sector 0 is an exo-lfs superblock of format version `found`, not the one this crate
    /// reads (`reads`: [`crate::layout::SB_VERSION`]).
    Version {
        found: u32,
        reads: u32,
    },
    Io(IoError),
    /// An earlier device error left the in-memory state unusable; remount to recover the
    /// last committed state.
    Failed,
}

impl From<IoError> for Error {
    fn from(e: IoError) -> Self {
        Error::Io(e)
    }
}

impl core::fmt::Display for Error {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Error::Corrupt(c) => write!(f, "file system corrupt: {c:?}"),
            Error::Version { found, reads } => write!(
                f,
                "exo-lfs format version {found}; this build reads version {reads} only (re-create it with mkfs)"
            ),
            Error::Io(e) => write!(f, "device error {}", e.code),
            other => write!(f, "{other:?}"),
        }
    }
}

/// Shorthand used throughout the crate.
pub type Result<T> = core::result::Result<T, Error>;
