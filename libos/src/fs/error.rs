//! The one error type every file system and the Vfs report, with stable numbers.

use core::fmt;

/// Every way a file-system operation can fail, whichever back end is behind it.
///
/// The discriminants are stable: [`Error::code`] returns them for an ABI or an exit status.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Error {
    /// No file or directory by that name.
    NotFound = 1,
    /// The name is taken (create with `EXCLUSIVE`, mkdir, mount).
    Exists = 2,
    /// A path component that must be a directory is a file.
    NotDir = 3,
    /// A directory was given where a file is needed.
    IsDir = 4,
    /// A directory to remove (or to rename over) still has entries.
    NotEmpty = 5,
    /// The file system is full.
    NoSpace = 6,
    /// A name is longer than the back end allows (on FAT, when creating: more than 8.3).
    NameTooLong = 7,
    /// A name the back end cannot store: a character it refuses, or (FAT) a name with no
    /// 8.3 form.
    InvalidName = 8,
    /// The file system, or the file, is read-only.
    ReadOnly = 9,
    /// The open-file table is full.
    TooManyOpenFiles = 10,
    /// The device failed a transfer.
    Io = 11,
    /// The on-disk structures are damaged.
    Corrupt = 12,
    /// This back end cannot do that.
    Unsupported = 13,
    /// A malformed request: a relative path, a bad seek, renaming a directory into itself.
    InvalidArgument = 14,
    /// The handle or descriptor is not open, or not open for that (writing a read-only one).
    BadHandle = 15,
    /// The file or directory is in use: open, or a mount point.
    Busy = 16,
    /// A rename between two different file systems (copy, then remove, instead).
    CrossDevice = 17,
    /// The offset or size is beyond the largest file the back end can hold.
    FileTooLarge = 18,
}

impl Error {
    /// A stable positive number for this error.
    pub fn code(self) -> i32 {
        self as u8 as i32
    }

    /// The error a [`Error::code`] stands for.
    pub fn from_code(code: i32) -> Option<Error> {
        use Error::*;
        let all = [
            NotFound,
            Exists,
            NotDir,
            IsDir,
            NotEmpty,
            NoSpace,
            NameTooLong,
            InvalidName,
            ReadOnly,
            TooManyOpenFiles,
            Io,
            Corrupt,
            Unsupported,
            InvalidArgument,
            BadHandle,
            Busy,
            CrossDevice,
            FileTooLarge,
        ];
        all.into_iter().find(|e| e.code() == code)
    }

    /// A short lower-case description, for messages such as `cat: /fat/x: not found`.
    pub fn as_str(self) -> &'static str {
        match self {
            Error::NotFound => "not found",
            Error::Exists => "already exists",
            Error::NotDir => "not a directory",
            Error::IsDir => "is a directory",
            Error::NotEmpty => "directory not empty",
            Error::NoSpace => "no space left",
            Error::NameTooLong => "name too long",
            Error::InvalidName => "invalid name",
            Error::ReadOnly => "read-only",
            Error::TooManyOpenFiles => "too many open files",
            Error::Io => "I/O error",
            Error::Corrupt => "file system corrupt",
            Error::Unsupported => "not supported",
            Error::InvalidArgument => "invalid argument",
            Error::BadHandle => "bad handle",
            Error::Busy => "busy",
            Error::CrossDevice => "cross-device rename",
            Error::FileTooLarge => "file too large",
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl core::error::Error for Error {}
