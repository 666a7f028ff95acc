//! A file system shared over protected control transfer: the protocol, the server's side
//! ([`Server`], run by the `fsd` program) and the client's ([`RemoteFs`], a [`FileSystem`]
//! like any other, so an app mounts it in its `Vfs` and cannot tell the difference).
//!
//! Each call carries an operation and up to three numbers in registers, and grants the
//! server the client's one-page buffer read-write: paths, directory listings and file data
//! travel there (at most one page per call). Replies are a status (0, or an
//! [`Error`] code) and up to three numbers. The server owns the file systems; clients only
//! ever see handles the server gave *them* — a handle is checked against its caller.

extern crate alloc;

use alloc::boxed::Box;
use alloc::string::String;
use alloc::vec::Vec;

use exo_abi::{EnvId, PCT_GRANT_RW};

use super::{DirEntry, Error, FileKind, FileSystem, FsStats, Handle, Metadata, OpenFlags, Result, Vfs};
use crate::{sys, vm};

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
}

/// Bytes of the shared buffer (one page).
pub const BUF: usize = 4096;

const FS_TYPES: [&str; 4] = ["fat16", "fat32", "lfs", "remote"];

fn type_code(t: &str) -> u64 {
    FS_TYPES.iter().position(|x| *x == t).unwrap_or(3) as u64
}

fn error_from(code: u64) -> Error {
    i32::try_from(code).ok().and_then(Error::from_code).unwrap_or(Error::Io)
}

/// One file system served by `server`, seen from a client: `prefix` is its mount point
/// on the server (e.g. `/fat`).
pub struct RemoteFs {
    server: EnvId,
    prefix: String,
    fs_type: &'static str,
    buf_va: u64,
    buf_pa: u64,
}

impl RemoteFs {
    /// The file systems `server` offers, each as a `RemoteFs` ready to mount (at the same
    /// path locally, usually). The caller must hold the right to call `server`.
    pub fn discover(server: EnvId) -> Result<Vec<(String, RemoteFs)>> {
        let mut probe = RemoteFs::new(server, String::new(), "remote")?;
        let r = probe.call(op::MOUNTS, [0, 0, 0])?;
        let list = String::from_utf8_lossy(&probe.buf()[..r[0] as usize]).into_owned();
        let mut out = Vec::new();
        for line in list.lines() {
            if let Some((at, t)) = line.split_once(' ') {
                let fs_type = FS_TYPES.iter().find(|x| **x == t).copied().unwrap_or("remote");
                out.push((String::from(at), RemoteFs::new(server, String::from(at), fs_type)?));
            }
        }
        Ok(out)
    }

    fn new(server: EnvId, prefix: String, fs_type: &'static str) -> Result<RemoteFs> {
        let buf_va = vm::alloc_va(1);
        let buf_pa = vm::map_new(buf_va, vm::RW).map_err(|_| Error::NoSpace)?;
        Ok(RemoteFs { server, prefix, fs_type, buf_va, buf_pa })
    }

    fn buf(&mut self) -> &mut [u8] {
        // SAFETY: buf_va maps one page read-write, owned by this value.
        unsafe { core::slice::from_raw_parts_mut(self.buf_va as *mut u8, BUF) }
    }

    fn call(&mut self, op: u64, a: [u64; 3]) -> Result<[u64; 3]> {
        let r = sys::pct_call(self.server, [op, a[0], a[1], a[2]], self.buf_pa | PCT_GRANT_RW)
            .map_err(|_| Error::Io)?;
        if r[0] != 0 {
            return Err(error_from(r[0]));
        }
        Ok([r[1], r[2], r[3]])
    }

    /// Puts `prefix + path` (and an optional second path) in the buffer; returns lengths.
    fn put_paths(&mut self, a: &str, b: Option<&str>) -> Result<(u64, u64)> {
        let full = |p: &str| alloc::format!("{}{}", self.prefix, if p == "/" { "" } else { p });
        let (fa, fb) = (full(a), b.map(full).unwrap_or_default());
        if fa.len() + fb.len() > BUF {
            return Err(Error::NameTooLong);
        }
        let buf = self.buf();
        buf[..fa.len()].copy_from_slice(fa.as_bytes());
        buf[fa.len()..fa.len() + fb.len()].copy_from_slice(fb.as_bytes());
        Ok((fa.len() as u64, fb.len() as u64))
    }
}

impl Drop for RemoteFs {
    fn drop(&mut self) {
        let _ = sys::pct_ungrant(self.server, self.buf_pa);
        let _ = vm::unmap_free(self.buf_va);
    }
}

fn metadata(r: [u64; 3]) -> Metadata {
    let kind = if r[0] & 1 != 0 { FileKind::Dir } else { FileKind::File };
    let modified = (r[0] & 2 != 0).then_some(r[2] as i64);
    Metadata { kind, size: r[1], modified }
}

impl FileSystem for RemoteFs {
    fn fs_type(&self) -> &'static str {
        self.fs_type
    }

    fn open(&mut self, path: &str, flags: OpenFlags) -> Result<Handle> {
        let (n, _) = self.put_paths(path, None)?;
        self.call(op::OPEN, [n, flags.bits() as u64, 0]).map(|r| Handle(r[0] as u32))
    }

    fn read(&mut self, h: Handle, offset: u64, buf: &mut [u8]) -> Result<usize> {
        let mut done = 0;
        while done < buf.len() {
            let want = (buf.len() - done).min(BUF);
            let n = self.call(op::READ, [h.0 as u64, offset + done as u64, want as u64])?[0] as usize;
            let n = n.min(want);
            buf[done..done + n].copy_from_slice(&self.buf()[..n]); // the server just filled it
            done += n;
            if n < want {
                break;
            }
        }
        Ok(done)
    }

    fn write(&mut self, h: Handle, offset: u64, data: &[u8]) -> Result<usize> {
        let mut done = 0;
        while done < data.len() {
            let n = (data.len() - done).min(BUF);
            self.buf()[..n].copy_from_slice(&data[done..done + n]);
            let wrote = self.call(op::WRITE, [h.0 as u64, offset + done as u64, n as u64])?[0] as usize;
            done += wrote;
            if wrote < n {
                break;
            }
        }
        Ok(done)
    }

    fn close(&mut self, h: Handle) -> Result<()> {
        self.call(op::CLOSE, [h.0 as u64, 0, 0]).map(drop)
    }

    fn fstat(&mut self, h: Handle) -> Result<Metadata> {
        self.call(op::FSTAT, [h.0 as u64, 0, 0]).map(metadata)
    }

    fn stat(&mut self, path: &str) -> Result<Metadata> {
        let (n, _) = self.put_paths(path, None)?;
        self.call(op::STAT, [n, 0, 0]).map(metadata)
    }

    fn list_dir(&mut self, path: &str) -> Result<Vec<DirEntry>> {
        let mut out = Vec::new();
        let mut next = 0;
        loop {
            let (n, _) = self.put_paths(path, None)?;
            let r = self.call(op::LIST, [n, next, 0])?;
            let (count, bytes) = (r[0], r[2] as usize);
            let page = self.buf()[..bytes.min(BUF)].to_vec();
            let mut at = 0;
            for _ in 0..count {
                let Some(head) = page.get(at..at + 11) else { break };
                let kind = if head[0] == 1 { FileKind::Dir } else { FileKind::File };
                let size = u64::from_le_bytes(head[1..9].try_into().unwrap_or_default());
                let len = u16::from_le_bytes([head[9], head[10]]) as usize;
                let name =
                    String::from_utf8_lossy(page.get(at + 11..at + 11 + len).unwrap_or(&[])).into_owned();
                out.push(DirEntry { name, kind, size });
                at += 11 + len;
            }
            if r[1] == 0 {
                return Ok(out);
            }
            next = r[1];
        }
    }

    fn mkdir(&mut self, path: &str) -> Result<()> {
        let (n, _) = self.put_paths(path, None)?;
        self.call(op::MKDIR, [n, 0, 0]).map(drop)
    }

    fn remove(&mut self, path: &str) -> Result<()> {
        let (n, _) = self.put_paths(path, None)?;
        self.call(op::REMOVE, [n, 0, 0]).map(drop)
    }

    fn rename(&mut self, from: &str, to: &str) -> Result<()> {
        let (a, b) = self.put_paths(from, Some(to))?;
        self.call(op::RENAME, [a, b, 0]).map(drop)
    }

    fn sync(&mut self) -> Result<()> {
        self.call(op::SYNC, [0, 0, 0]).map(drop)
    }

    fn statfs(&mut self) -> Result<FsStats> {
        let (n, _) = self.put_paths("/", None)?;
        let r = self.call(op::STATFS, [n, 0, 0])?;
        let fs_type = FS_TYPES[(r[2] >> 32).min(3) as usize];
        Ok(FsStats { fs_type, total_bytes: r[0], free_bytes: r[1], block_size: r[2] as u32 })
    }
}

/// The server's side: a `Vfs` of its own, and the handles it gave each client.
pub struct Server {
    pub vfs: Vfs,
    handles: Vec<Option<(EnvId, String, Handle)>>,
    window: u64,
    mapped: u64,
}

impl Server {
    pub fn new(vfs: Vfs) -> Server {
        Server { vfs, handles: Vec::new(), window: vm::alloc_va(1), mapped: 0 }
    }

    /// The client's buffer, mapped at the server's window (kept mapped while the same
    /// frame comes back, as it does from one client).
    fn buffer(&mut self, frame: u64) -> Result<&'static mut [u8]> {
        if frame == 0 {
            return Err(Error::InvalidArgument);
        }
        if self.mapped != frame || vm::entry(self.window) == 0 {
            vm::map_frame(self.window, frame, vm::RW).map_err(|_| Error::InvalidArgument)?;
            self.mapped = frame;
        }
        // SAFETY: the window maps the granted frame read-write; one call at a time.
        Ok(unsafe { core::slice::from_raw_parts_mut(self.window as *mut u8, BUF) })
    }

    /// Answers one call: `[status, r0, r1, r2]`.
    pub fn handle(&mut self, caller: EnvId, args: [u64; 4], frame: u64) -> [u64; 4] {
        match self.dispatch(caller, args, frame) {
            Ok(r) => [0, r[0], r[1], r[2]],
            Err(e) => [e.code() as u64, 0, 0, 0],
        }
    }

    fn path(buf: &[u8], from: u64, len: u64) -> Result<String> {
        let (a, b) = (from as usize, (from + len) as usize);
        let bytes = buf.get(a..b).ok_or(Error::InvalidArgument)?;
        core::str::from_utf8(bytes).map(String::from).map_err(|_| Error::InvalidName)
    }

    fn owned(&mut self, caller: EnvId, h: u64) -> Result<(String, Handle)> {
        match self.handles.get(h as usize) {
            Some(Some((c, at, hd))) if *c == caller => Ok((at.clone(), *hd)),
            _ => Err(Error::BadHandle),
        }
    }

    fn fs(&mut self, at: &str) -> Result<&mut dyn FileSystem> {
        self.vfs.fs_at(at).ok_or(Error::NotFound)
    }

    /// Splits a served path into (mount point, path within it).
    fn split(&mut self, p: &str) -> Result<(String, String)> {
        let mounts: Vec<String> = self.vfs.mounts().map(|(m, _)| String::from(m)).collect();
        let m = mounts
            .into_iter()
            .filter(|m| p == m || p.starts_with(&alloc::format!("{m}/")))
            .max_by_key(|m| m.len())
            .ok_or(Error::NotFound)?;
        let rest = if p.len() == m.len() { String::from("/") } else { String::from(&p[m.len()..]) };
        Ok((m, rest))
    }

    fn dispatch(&mut self, caller: EnvId, a: [u64; 4], frame: u64) -> Result<[u64; 3]> {
        let buf = self.buffer(frame)?;
        match a[0] {
            op::MOUNTS => {
                let mut s = String::new();
                for (at, t) in self.vfs.mounts() {
                    s += &alloc::format!("{at} {t}\n");
                }
                let n = s.len().min(BUF);
                buf[..n].copy_from_slice(&s.as_bytes()[..n]);
                Ok([n as u64, 0, 0])
            }
            op::OPEN => {
                if self.handles.len() >= 32 {
                    self.forget_departed();
                }
                let (at, p) = self.split(&Self::path(buf, 0, a[1])?)?;
                let flags = OpenFlags::from_bits(a[2] as u8);
                let h = self.fs(&at)?.open(&p, flags)?;
                let slot = self.handles.iter().position(|x| x.is_none()).unwrap_or(self.handles.len());
                if slot == self.handles.len() {
                    self.handles.push(None);
                }
                self.handles[slot] = Some((caller, at, h));
                Ok([slot as u64, 0, 0])
            }
            op::READ => {
                let (at, h) = self.owned(caller, a[1])?;
                let n = (a[3] as usize).min(BUF);
                let got = self.fs(&at)?.read(h, a[2], &mut buf[..n])?;
                Ok([got as u64, 0, 0])
            }
            op::WRITE => {
                let (at, h) = self.owned(caller, a[1])?;
                let n = (a[3] as usize).min(BUF);
                let wrote = self.fs(&at)?.write(h, a[2], &buf[..n])?;
                Ok([wrote as u64, 0, 0])
            }
            op::CLOSE => {
                let (at, h) = self.owned(caller, a[1])?;
                self.handles[a[1] as usize] = None;
                self.fs(&at)?.close(h).map(|_| [0; 3])
            }
            op::FSTAT => {
                let (at, h) = self.owned(caller, a[1])?;
                self.fs(&at)?.fstat(h).map(pack_metadata)
            }
            op::STAT => {
                let (at, p) = self.split(&Self::path(buf, 0, a[1])?)?;
                self.fs(&at)?.stat(&p).map(pack_metadata)
            }
            op::LIST => {
                let (at, p) = self.split(&Self::path(buf, 0, a[1])?)?;
                let entries = self.fs(&at)?.list_dir(&p)?;
                let (mut used, mut count, mut next) = (0usize, 0u64, 0u64);
                for (i, e) in entries.iter().enumerate().skip(a[2] as usize) {
                    let len = e.name.len().min(255);
                    if used + 11 + len > BUF {
                        next = i as u64;
                        break;
                    }
                    buf[used] = (e.kind == FileKind::Dir) as u8;
                    buf[used + 1..used + 9].copy_from_slice(&e.size.to_le_bytes());
                    buf[used + 9..used + 11].copy_from_slice(&(len as u16).to_le_bytes());
                    buf[used + 11..used + 11 + len].copy_from_slice(&e.name.as_bytes()[..len]);
                    used += 11 + len;
                    count += 1;
                }
                Ok([count, next, used as u64])
            }
            op::MKDIR | op::REMOVE => {
                let (at, p) = self.split(&Self::path(buf, 0, a[1])?)?;
                let fs = self.fs(&at)?;
                if a[0] == op::MKDIR { fs.mkdir(&p) } else { fs.remove(&p) }.map(|_| [0; 3])
            }
            op::RENAME => {
                let (from, to) = (Self::path(buf, 0, a[1])?, Self::path(buf, a[1], a[2])?);
                let ((m1, p1), (m2, p2)) = (self.split(&from)?, self.split(&to)?);
                if m1 != m2 {
                    return Err(Error::CrossDevice);
                }
                self.fs(&m1)?.rename(&p1, &p2).map(|_| [0; 3])
            }
            op::SYNC => self.vfs.sync().map(|_| [0; 3]),
            op::STATFS => {
                let (at, _) = self.split(&Self::path(buf, 0, a[1])?)?;
                let s = self.fs(&at)?.statfs()?;
                Ok([s.total_bytes, s.free_bytes, s.block_size as u64 | type_code(s.fs_type) << 32])
            }
            _ => Err(Error::Unsupported),
        }
    }

    /// Closes the handles of clients that no longer exist.
    fn forget_departed(&mut self) {
        for i in 0..self.handles.len() {
            if let Some((c, at, h)) = self.handles[i].clone() {
                if vm::env_info(c).is_none_or(|e| e.id != c.0) {
                    self.handles[i] = None;
                    if let Ok(fs) = self.fs(&at) {
                        let _ = fs.close(h);
                    }
                }
            }
        }
    }
}

fn pack_metadata(m: Metadata) -> [u64; 3] {
    let flags = (m.kind == FileKind::Dir) as u64 | if m.modified.is_some() { 2 } else { 0 };
    [flags, m.size, m.modified.unwrap_or(0) as u64]
}

/// Mounts every file system `server` offers into `vfs`, at the same paths.
pub fn mount_remote(vfs: &mut Vfs, server: EnvId) -> Result<Vec<String>> {
    let mut mounted = Vec::new();
    for (at, fs) in RemoteFs::discover(server)? {
        vfs.mount(&at, Box::new(fs))?;
        mounted.push(at);
    }
    Ok(mounted)
}
