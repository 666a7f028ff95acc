//! The file service's wire format, shared by both sides: operation numbers, the one-page
//! buffer, and how metadata, file-system types and directory entries are packed.
//!
//! A call is `[op, a0, a1, a2]` in registers plus the client's buffer page granted
//! read-write; a reply is `[status, r0, r1, r2]`, status 0 or an [`Error`] code, or
//! [`NEED_BUFFER`]. The operation's word carries the buffer's frame in its upper bits (the
//! page's address; operations are below 4096), so that a call may leave the grant out once
//! the server holds that buffer mapped for that caller (the client's first call grants
//! it): such a call takes the kernel's fast path, which a call carrying a frame does not.
//! The caller is the kernel's word, so naming a frame reaches only the caller's own.

extern crate alloc;

use alloc::string::String;

use exo_format::le;

use crate::fs::{DirEntry, Error, FileKind, Metadata};

/// Operations (the first argument word of a call).
pub mod op {
    pub const OPEN: u64 = 1;
    pub const READ: u64 = 2;
    pub const WRITE: u64 = 3;
    pub const CLOSE: u64 = 4;
    pub const FSTAT: u64 = 5;
    pub const STAT: u64 = 6;
    pub const LIST: u64 = 7;
    pub const MKDIR: u64 = 8;
    pub const REMOVE: u64 = 9;
    pub const RENAME: u64 = 10;
    pub const SYNC: u64 = 11;
    pub const STATFS: u64 = 12;
    pub const MOUNTS: u64 = 13;
    /// A file's version in the reply words; its attribute in the buffer, after 2 bytes of
    /// length.
    pub const ATTR: u64 = 14;
    /// The buffer holds the path, the version (24 bytes) and the value.
    pub const SET_ATTR: u64 = 15;
    /// A file's version in the reply words.
    pub const VERSION: u64 = 16;
}

/// Bytes of the shared buffer (one page).
pub const BUF: usize = 4096;

/// The status of a call that left the grant out while the server does not hold the
/// buffer it names for that caller (never granted, withdrawn, or its window page given to
/// another buffer since): nothing was done, and the client asks again with the grant. (Not
/// an [`Error`] code: those fit a byte.)
pub const NEED_BUFFER: u64 = 0x100;

/// Clients whose buffers the server keeps mapped at once, a window page each.
pub const WINDOWS: usize = 8;

/// The file-system types a reply can name; anything else travels as `remote`.
pub const FS_TYPES: [&str; 4] = ["fat16", "fat32", "lfs", "remote"];

/// The number `t` travels as (its index in [`FS_TYPES`], `remote` when unknown).
pub fn type_code(t: &str) -> u64 {
    FS_TYPES.iter().position(|x| *x == t).unwrap_or(3) as u64
}

/// The type a reply's number names (`remote` when out of range).
pub fn type_name(code: u64) -> &'static str {
    FS_TYPES[code.min(3) as usize]
}

/// The error a non-zero reply status names ([`Error::Io`] when it names none).
pub fn error_from(code: u64) -> Error {
    i32::try_from(code).ok().and_then(Error::from_code).unwrap_or(Error::Io)
}

/// Metadata as three reply words: flags (bit 0 directory, bit 1 has a time), size, time.
pub fn pack_metadata(m: Metadata) -> [u64; 3] {
    let flags = (m.kind == FileKind::Dir) as u64 | if m.modified.is_some() { 2 } else { 0 };
    [flags, m.size, m.modified.unwrap_or(0) as u64]
}

/// The inverse of [`pack_metadata`].
pub fn unpack_metadata(r: [u64; 3]) -> Metadata {
    let kind = if r[0] & 1 != 0 { FileKind::Dir } else { FileKind::File };
    let modified = (r[0] & 2 != 0).then_some(r[2] as i64);
    Metadata { kind, size: r[1], modified }
}

/// Bytes of a directory entry's record before its name: kind (1), size (8), name length (2).
pub const ENTRY_HEAD: usize = 11;

/// Puts `e` (its name cut to 255 bytes) at the start of `buf`; returns the record's length,
/// or `None` when it does not fit.
pub fn put_entry(buf: &mut [u8], e: &DirEntry) -> Option<usize> {
    let len = e.name.len().min(255);
    let rec = buf.get_mut(..ENTRY_HEAD + len)?;
    rec[0] = (e.kind == FileKind::Dir) as u8;
    le::put_u64(rec, 1, e.size);
    le::put_u16(rec, 9, len as u16);
    rec[ENTRY_HEAD..].copy_from_slice(&e.name.as_bytes()[..len]);
    Some(ENTRY_HEAD + len)
}

/// The entry recorded at the start of `page` and its record's length, or `None` when the
/// page ends before its head does (a name cut short by the page end comes back shorter).
pub fn get_entry(page: &[u8]) -> Option<(DirEntry, usize)> {
    let head = page.get(..ENTRY_HEAD)?;
    let kind = if head[0] == 1 { FileKind::Dir } else { FileKind::File };
    let size = le::get_u64(head, 1);
    let len = le::get_u16(head, 9) as usize;
    let name = String::from_utf8_lossy(page.get(ENTRY_HEAD..ENTRY_HEAD + len).unwrap_or(&[])).into_owned();
    Some((DirEntry { name, kind, size }, ENTRY_HEAD + len))
}
