//! Prepared responses, the Cheetah trick as far as this stack allows: for a small file of
//! the log-structured file system, httpd keeps the whole HTTP response (its head formatted
//! once, the file's bytes behind it) in its own memory and sends a request straight from
//! it. A request then costs one `stat` through the file service instead of a `stat`, an
//! `open`, a `read` per piece and a `close`, and no head is formatted again.
//!
//! A prepared response is used only while the file's size and modification time (the LFS
//! keeps it to the nanosecond) are what they were when it was made; FAT's 2-second times
//! could miss a same-size rewrite, so FAT files always take the plain path. `docs/network.md`.

use alloc::rc::Rc;
use alloc::string::String;
use alloc::vec::Vec;

use exo_libos::fs::{Metadata, Vfs};
use exo_net::http;

/// Files larger than this are always streamed.
pub const FILE_MAX: u64 = 64 * 1024;
/// Bytes of prepared responses kept at most (the oldest go first).
const BUDGET: usize = 1024 * 1024;
/// Where files may be prepared: the log-structured file system's mount.
const LFS: &str = "/log/";

struct Entry {
    path: String,
    size: u64,
    modified: i64,
    bytes: Rc<[u8]>,
}

/// The prepared responses, oldest first.
#[derive(Default)]
pub struct Prepared {
    entries: Vec<Entry>,
    held: usize,
}

impl Prepared {
    /// The whole kept-alive response for `path` (whose metadata is `m`), prepared now if it
    /// was not; None if the file does not qualify or could not be read whole.
    pub fn get(&mut self, vfs: &mut Vfs, path: &str, m: &Metadata) -> Option<Rc<[u8]>> {
        let modified = m.modified.filter(|_| path.starts_with(LFS) && m.size <= FILE_MAX)?;
        if let Some(i) = self.entries.iter().position(|e| e.path == path) {
            let e = &self.entries[i];
            if e.size == m.size && e.modified == modified {
                return Some(e.bytes.clone());
            }
            self.held -= self.entries.remove(i).bytes.len();
        }
        let body = vfs.read_to_vec(path).ok().filter(|b| b.len() as u64 == m.size)?;
        let mut bytes = http::head(200, http::content_type(path), m.size, true).into_bytes();
        bytes.extend_from_slice(&body);
        let bytes: Rc<[u8]> = bytes.into();
        while self.held + bytes.len() > BUDGET && !self.entries.is_empty() {
            self.held -= self.entries.remove(0).bytes.len();
        }
        self.held += bytes.len();
        self.entries.push(Entry { path: String::from(path), size: m.size, modified, bytes: bytes.clone() });
        Some(bytes)
    }
}
