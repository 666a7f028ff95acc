//! Prepared responses, the Cheetah trick as far as this stack allows, in two layers:
//!
//! - **Beside the file, in the LFS.** The response head of a small file of the
//!   log-structured file system is formatted once and kept as the file's *attribute*
//!   (`exo_lfs::attr`, through the file service): it survives httpd's restarts and reboots,
//!   and the LFS hands it back only while the file's version (inode, generation, a change
//!   time that every write moves strictly forward, size) is the one it was made for.
//! - **In memory.** The whole response (that head, the file's bytes behind it) is kept in
//!   httpd's memory, keyed by the same version. A request then costs one `version` call
//!   through the file service instead of a `stat`, an `open`, a `read` per piece and a
//!   `close`, and no head is formatted again.
//!
//! Stale bytes cannot be served: versions never repeat, and both layers are used only for
//! the version the file has now. FAT keeps no versions, so FAT files always take the plain
//! path. `docs/network.md`.

use alloc::rc::Rc;
use alloc::string::String;
use alloc::vec::Vec;

use exo_libos::fs::{OpenFlags, Version, Vfs};
use exo_libos::println;
use exo_net::http;

/// Files larger than this are always streamed.
pub const FILE_MAX: u64 = 64 * 1024;
/// Bytes of prepared responses kept at most (the oldest go first).
const BUDGET: usize = 1024 * 1024;
/// Where files may be prepared: the log-structured file system's mount.
const LFS: &str = "/log/";

struct Entry {
    path: String,
    version: Version,
    bytes: Rc<[u8]>,
}

/// The prepared responses, oldest first.
#[derive(Default)]
pub struct Prepared {
    entries: Vec<Entry>,
    held: usize,
    /// Keep nothing in memory: every request is built from the head kept in the LFS (the
    /// benchmark's measure of a first request after a restart).
    pub stored_only: bool,
    /// Responses built from a head found in the LFS.
    pub from_lfs: u64,
}

/// The attribute httpd keeps: the path it was made for (the type depends on it, and a
/// rename keeps the version), a newline, the head.
fn record(path: &str, head: &[u8]) -> Vec<u8> {
    let mut r = Vec::with_capacity(path.len() + 1 + head.len());
    r.extend_from_slice(path.as_bytes());
    r.push(b'\n');
    r.extend_from_slice(head);
    r
}

impl Prepared {
    /// The whole kept-alive response for the file at `path`, prepared now if it was not;
    /// None if it does not qualify (not on the LFS, a directory, missing, over
    /// [`FILE_MAX`]) or could not be read whole: then the plain path answers.
    pub fn get(&mut self, vfs: &mut Vfs, path: &str) -> Option<Rc<[u8]>> {
        if !path.starts_with(LFS) {
            return None;
        }
        let i = self.entries.iter().position(|e| e.path == path);
        if let Some(i) = i {
            if vfs.version(path).ok()? == self.entries[i].version {
                return Some(self.entries[i].bytes.clone());
            }
            self.held -= self.entries.remove(i).bytes.len();
        }
        let (version, stored) = vfs.attr(path).ok()?;
        let size = version[2];
        if size > FILE_MAX {
            return None;
        }
        let kept = stored.strip_prefix(path.as_bytes()).and_then(|r| r.strip_prefix(b"\n"));
        let mut bytes = match kept {
            Some(head) if !head.is_empty() => {
                self.from_lfs += 1;
                if self.from_lfs == 1 {
                    println!("httpd: {path}: response head kept beside the file in the LFS");
                }
                head.to_vec()
            }
            _ => {
                let head = http::head(200, http::content_type(path), size, true).into_bytes();
                // Refused if the file changed meanwhile; this request is answered anyway.
                let _ = vfs.set_attr(path, version, &record(path, &head));
                head
            }
        };
        // Read after the version was taken: if the file changes in between, these bytes
        // are newer than the version and the entry is never matched again.
        // The size is known: an `open`, the `read`s, a `close` (no `fstat`).
        let at = bytes.len();
        bytes.resize(at + size as usize, 0);
        let fd = vfs.open(path, OpenFlags::READ).ok()?;
        let got = vfs.read(fd, &mut bytes[at..]);
        let _ = vfs.close(fd);
        if got != Ok(size as usize) {
            return None;
        }
        let bytes: Rc<[u8]> = bytes.into();
        if self.stored_only {
            return Some(bytes);
        }
        while self.held + bytes.len() > BUDGET && !self.entries.is_empty() {
            self.held -= self.entries.remove(0).bytes.len();
        }
        self.held += bytes.len();
        self.entries.push(Entry { path: String::from(path), version, bytes: bytes.clone() });
        Some(bytes)
    }
}
