//! The client's side of the file service: [`RemoteFs`], a [`FileSystem`] like any other,
//! so an app mounts it in its `Vfs` and cannot tell the difference.

extern crate alloc;

use alloc::boxed::Box;
use alloc::string::String;
use alloc::vec::Vec;

use exo_abi::{EnvId, PCT_GRANT_RW};
use exo_format::le;

use super::protocol::{error_from, get_entry, op, type_name, unpack_metadata, BUF, FS_TYPES, NEED_BUFFER};
use crate::fs::{DirEntry, Error, FileSystem, FsStats, Handle, Metadata, OpenFlags, Result, Version, Vfs};
use crate::{sys, vm};

/// One file system served by `server`, seen from a client: `prefix` is its mount point
/// on the server (e.g. `/fat`).
pub struct RemoteFs {
    server: EnvId,
    prefix: String,
    fs_type: &'static str,
    buf_va: u64,
    buf_pa: u64,
    /// The buffer was granted with an earlier call: calls may leave the grant out (the
    /// server answers [`NEED_BUFFER`] if it no longer holds it).
    granted: bool,
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
        // Shared, not copy-on-write, with a forked child (a shell's job): the server keeps
        // the frame mapped, so a copy made on write would leave `buf_pa` naming a stale
        // frame.
        let shared = exo_abi::pte::Pte::user_page(buf_pa, vm::RW).0 | vm::SHARED;
        vm::map(buf_va, shared).map_err(|_| Error::NoSpace)?;
        Ok(RemoteFs { server, prefix, fs_type, buf_va, buf_pa, granted: false })
    }

    fn buf(&mut self) -> &mut [u8] {
        // SAFETY: buf_va maps one page read-write, owned by this value.
        unsafe { core::slice::from_raw_parts_mut(self.buf_va as *mut u8, BUF) }
    }

    /// One call to the server; inlined where it is made (its retry with the grant is not).
    #[inline]
    fn call(&mut self, op: u64, a: [u64; 3]) -> Result<[u64; 3]> {
        let mut r = self.call_once(op, a, !self.granted)?;
        if r[0] == NEED_BUFFER {
            r = self.call_granted(op, a)?;
        }
        self.granted = r[0] != NEED_BUFFER;
        if r[0] != 0 {
            return Err(error_from(r[0]));
        }
        Ok([r[1], r[2], r[3]])
    }

    /// The call as made: the buffer's frame names it in the first word, for a call that
    /// leaves its grant out.
    #[inline]
    fn call_once(&self, op: u64, a: [u64; 3], grant: bool) -> Result<[u64; 4]> {
        let frame = if grant { self.buf_pa | PCT_GRANT_RW } else { 0 };
        sys::pct_call(self.server, [op | self.buf_pa, a[0], a[1], a[2]], frame).map_err(|_| Error::Io)
    }

    /// The call again, with the grant (the server did not hold the buffer).
    #[inline(never)]
    fn call_granted(&self, op: u64, a: [u64; 3]) -> Result<[u64; 4]> {
        self.call_once(op, a, true)
    }

    /// [`RemoteFs::read`] of more than a page (or of nothing): a call per page.
    #[inline(never)]
    fn read_pages(&mut self, h: Handle, offset: u64, buf: &mut [u8]) -> Result<usize> {
        let mut done = 0;
        while done < buf.len() {
            let want = (buf.len() - done).min(BUF);
            let n = self.call(op::READ, [h.0 as u64, offset + done as u64, want as u64])?[0] as usize;
            let n = n.min(want);
            crate::mem::copy(&mut buf[done..done + n], &self.buf()[..n]); // the server just filled it
            done += n;
            if n < want {
                break;
            }
        }
        Ok(done)
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

impl FileSystem for RemoteFs {
    fn fs_type(&self) -> &'static str {
        self.fs_type
    }

    fn open(&mut self, path: &str, flags: OpenFlags) -> Result<Handle> {
        let (n, _) = self.put_paths(path, None)?;
        self.call(op::OPEN, [n, flags.bits() as u64, 0]).map(|r| Handle(r[0] as u32))
    }

    fn read(&mut self, h: Handle, offset: u64, buf: &mut [u8]) -> Result<usize> {
        if !buf.is_empty() && buf.len() <= BUF {
            // One call (the common read, a page or less), as the loop below would make it.
            let want = buf.len();
            let n = (self.call(op::READ, [h.0 as u64, offset, want as u64])?[0] as usize).min(want);
            crate::mem::copy(&mut buf[..n], &self.buf()[..n]); // the server just filled it
            return Ok(n);
        }
        self.read_pages(h, offset, buf)
    }

    fn write(&mut self, h: Handle, offset: u64, data: &[u8]) -> Result<usize> {
        let mut done = 0;
        while done < data.len() {
            let n = (data.len() - done).min(BUF);
            crate::mem::copy(&mut self.buf()[..n], &data[done..done + n]);
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
        self.call(op::FSTAT, [h.0 as u64, 0, 0]).map(unpack_metadata)
    }

    fn stat(&mut self, path: &str) -> Result<Metadata> {
        let (n, _) = self.put_paths(path, None)?;
        self.call(op::STAT, [n, 0, 0]).map(unpack_metadata)
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
                let Some((e, len)) = get_entry(page.get(at..).unwrap_or(&[])) else { break };
                out.push(e);
                at += len;
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

    fn version(&mut self, path: &str) -> Result<Version> {
        let (n, _) = self.put_paths(path, None)?;
        self.call(op::VERSION, [n, 0, 0])
    }

    fn attr(&mut self, path: &str) -> Result<(Version, Vec<u8>)> {
        let (n, _) = self.put_paths(path, None)?;
        let v = self.call(op::ATTR, [n, 0, 0])?;
        let buf = self.buf();
        let len = (le::get_u16(buf, 0) as usize).min(BUF - 2);
        Ok((v, buf[2..2 + len].to_vec()))
    }

    fn set_attr(&mut self, path: &str, v: Version, value: &[u8]) -> Result<()> {
        let (n, _) = self.put_paths(path, None)?;
        let at = n as usize;
        let rec = self.buf().get_mut(at..at + 24 + value.len()).ok_or(Error::InvalidArgument)?;
        for (i, w) in v.into_iter().enumerate() {
            le::put_u64(rec, i * 8, w);
        }
        rec[24..].copy_from_slice(value);
        self.call(op::SET_ATTR, [n, value.len() as u64, 0]).map(drop)
    }

    fn statfs(&mut self) -> Result<FsStats> {
        let (n, _) = self.put_paths("/", None)?;
        let r = self.call(op::STATFS, [n, 0, 0])?;
        let fs_type = type_name(r[2] >> 32);
        Ok(FsStats { fs_type, total_bytes: r[0], free_bytes: r[1], block_size: r[2] as u32 })
    }
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
