//! The server's side of the file service ([`Server`], run by the `fsd` program): it owns
//! the file systems, and a handle it gives out is checked against its caller on every use.

extern crate alloc;

use alloc::string::String;
use alloc::vec::Vec;

use exo_abi::EnvId;
use exo_format::le;

use super::protocol::{op, pack_metadata, put_entry, type_code, BUF, NEED_BUFFER, WINDOWS};
use crate::fs::{Error, FileSystem, Handle, MountRef, OpenFlags, Result, Vfs};
use crate::vm;

/// Files one client may hold open through the service at once. All the clients there can
/// be (every environment slot but the server's) hold fewer together than a mount may have
/// open ([`crate::fs::MAX_OPEN`]), so that no client, nor any family of clients, can take
/// every open file of a mount from the others.
pub const OPEN_PER_CLIENT: usize = 16;
/// Clients there can be at once: the kernel's 64 environment slots (`KernelInfo::max_envs`,
/// which the fs suite checks), but the server's own.
pub const CLIENTS: usize = 63;
const _: () = assert!(OPEN_PER_CLIENT * CLIENTS < crate::fs::MAX_OPEN);

/// The server's side: a `Vfs` of its own, and the handles it gave each client.
pub struct Server {
    pub vfs: Vfs,
    /// Per handle given out: its client, the mount it is on, and the file system's own
    /// handle.
    handles: Vec<Option<(EnvId, MountRef, Handle)>>,
    /// [`WINDOWS`] pages where clients' buffers are mapped, whose each is which (the
    /// caller and its frame; a caller named by the kernel, so nobody reaches another's),
    /// and the page to give the next newcomer.
    window: u64,
    buffers: [(EnvId, u64); WINDOWS],
    next: usize,
    /// The page the last call used.
    last: usize,
}

impl Server {
    pub fn new(vfs: Vfs) -> Server {
        let window = vm::alloc_va(WINDOWS as u64);
        // A client destroyed mid-call then costs that call, not the server (`ipc`).
        let _ = crate::ipc::set_grant_window(window, WINDOWS as u64);
        Server { vfs, handles: Vec::new(), window, buffers: [(EnvId(0), 0); WINDOWS], next: 0, last: 0 }
    }

    /// The caller's buffer `want` (the frame it grants with this call, else the one its
    /// first word names): the window page that maps it for this caller, or, granted now,
    /// one mapped in the page it had or the next newcomer's. `None` if the call left the
    /// grant out and that buffer is not mapped for it: the caller asks again with it.
    #[inline]
    fn buffer(&mut self, caller: EnvId, want: u64, granted: bool) -> Option<Result<&'static mut [u8; BUF]>> {
        // The last call's page first, here: a client's calls come in runs.
        let last = self.last;
        let page = self.window + last as u64 * 4096;
        if self.buffers[last] == (caller, want) && vm::entry(page) != 0 {
            // SAFETY: that page maps the caller's granted frame read-write; one call at a time.
            return Some(Ok(unsafe { &mut *(page as *mut [u8; BUF]) }));
        }
        self.find_buffer(caller, want, granted)
    }

    /// [`Server::buffer`] when the last call's page is not this caller's buffer, or no
    /// longer maps it.
    #[inline(never)]
    fn find_buffer(
        &mut self,
        caller: EnvId,
        want: u64,
        granted: bool,
    ) -> Option<Result<&'static mut [u8; BUF]>> {
        let page = |i: usize| self.window + i as u64 * 4096;
        let last = self.last;
        let held = if self.buffers[last] == (caller, want) {
            Some(last)
        } else {
            self.buffers.iter().position(|&b| b == (caller, want))
        };
        let i = match held.filter(|&i| vm::entry(page(i)) != 0) {
            Some(i) => i,
            None if !granted => return None,
            None => {
                let i = held.unwrap_or_else(|| {
                    let i = self.next;
                    self.next = (i + 1) % WINDOWS;
                    i
                });
                // Whatever that page mapped (another buffer) goes, and its record with it:
                // a call naming that buffer without its grant is refused from now on.
                self.buffers[i] = (EnvId(0), 0);
                if vm::map_frame(page(i), want, vm::RW).is_err() {
                    return Some(Err(Error::InvalidArgument));
                }
                self.buffers[i] = (caller, want);
                i
            }
        };
        self.last = i;
        // SAFETY: that page maps the caller's granted frame read-write; one call at a time.
        Some(Ok(unsafe { &mut *(page(i) as *mut [u8; BUF]) }))
    }

    /// Answers one call: `[status, r0, r1, r2]`. The first word is the operation, with the
    /// caller's buffer's frame in its upper bits (the page's address; see [`NEED_BUFFER`]).
    pub fn handle(&mut self, caller: EnvId, args: [u64; 4], frame: u64) -> [u64; 4] {
        let want = if frame != 0 { frame } else { args[0] & !0xfff };
        let Some(buf) = self.buffer(caller, want, frame != 0) else { return [NEED_BUFFER, 0, 0, 0] };
        let a = [args[0] & 0xfff, args[1], args[2], args[3]];
        // A read (the common call) here, the rest out of line: `dispatch` takes a large frame.
        let r = match buf {
            Ok(buf) if a[0] == op::READ => self.read(caller, a, buf),
            buf => buf.and_then(|buf| self.dispatch(caller, a, buf)),
        };
        match r {
            Ok(r) => [0, r[0], r[1], r[2]],
            Err(e) => [e.code() as u64, 0, 0, 0],
        }
    }

    fn path(buf: &[u8], from: u64, len: u64) -> Result<String> {
        let (a, b) = (from as usize, from.saturating_add(len) as usize);
        let bytes = buf.get(a..b).ok_or(Error::InvalidArgument)?;
        core::str::from_utf8(bytes).map(String::from).map_err(|_| Error::InvalidName)
    }

    /// The file system and handle behind the caller's handle `h` (no look-up by name).
    #[inline]
    fn owned(&mut self, caller: EnvId, h: u64) -> Result<(&mut dyn FileSystem, Handle)> {
        match self.handles.get(h as usize) {
            Some(&Some((c, m, hd))) if c == caller => Ok((self.vfs.fs_of(m).ok_or(Error::NotFound)?, hd)),
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

    /// `READ`: up to `a[3]` bytes (at most the buffer) of the caller's handle `a[1]` at
    /// offset `a[2]`, into the buffer.
    #[inline]
    fn read(&mut self, caller: EnvId, a: [u64; 4], buf: &mut [u8; BUF]) -> Result<[u64; 3]> {
        let (fs, h) = self.owned(caller, a[1])?;
        let n = (a[3] as usize).min(BUF);
        let got = fs.read(h, a[2], &mut buf[..n])?;
        Ok([got as u64, 0, 0])
    }

    #[inline(never)]
    fn dispatch(&mut self, caller: EnvId, a: [u64; 4], buf: &mut [u8; BUF]) -> Result<[u64; 3]> {
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
                if self.handles.iter().flatten().filter(|x| x.0 == caller).count() >= OPEN_PER_CLIENT {
                    return Err(Error::TooManyOpenFiles);
                }
                let (at, p) = self.split(&Self::path(buf, 0, a[1])?)?;
                let flags = OpenFlags::from_bits(a[2] as u8);
                let m = self.vfs.mount_ref(&at).ok_or(Error::NotFound)?;
                let h = self.vfs.fs_of(m).ok_or(Error::NotFound)?.open(&p, flags)?;
                let slot = self.handles.iter().position(|x| x.is_none()).unwrap_or(self.handles.len());
                if slot == self.handles.len() {
                    self.handles.push(None);
                }
                self.handles[slot] = Some((caller, m, h));
                Ok([slot as u64, 0, 0])
            }
            op::READ => self.read(caller, a, buf),
            op::WRITE => {
                let n = (a[3] as usize).min(BUF);
                // The caller's bytes, taken before anything is written: if its grant vanished
                // during the copy (the caller was destroyed mid-call), what was read is a
                // stand-in page's zeros (`ipc::set_grant_window`), and nothing is written.
                let data = buf[..n].to_vec();
                if crate::ipc::grant_lost() {
                    return Err(Error::Io);
                }
                let (fs, h) = self.owned(caller, a[1])?;
                let wrote = fs.write(h, a[2], &data)?;
                Ok([wrote as u64, 0, 0])
            }
            op::CLOSE => {
                let (fs, h) = self.owned(caller, a[1])?;
                let r = fs.close(h);
                self.handles[a[1] as usize] = None;
                r.map(|_| [0; 3])
            }
            op::FSTAT => {
                let (fs, h) = self.owned(caller, a[1])?;
                fs.fstat(h).map(pack_metadata)
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
                    let Some(len) = put_entry(&mut buf[used..], e) else {
                        next = i as u64;
                        break;
                    };
                    used += len;
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
            op::ATTR => {
                let (at, p) = self.split(&Self::path(buf, 0, a[1])?)?;
                let (v, value) = self.fs(&at)?.attr(&p)?;
                let n = value.len().min(BUF - 2);
                le::put_u16(buf, 0, n as u16);
                buf[2..2 + n].copy_from_slice(&value[..n]);
                Ok(v)
            }
            op::VERSION => {
                let (at, p) = self.split(&Self::path(buf, 0, a[1])?)?;
                self.fs(&at)?.version(&p)
            }
            op::SET_ATTR => {
                let (path, len) = (Self::path(buf, 0, a[1])?, a[2] as usize);
                let at = a[1] as usize;
                let rec =
                    buf.get(at..at.saturating_add(24).saturating_add(len)).ok_or(Error::InvalidArgument)?;
                let v = [le::get_u64(rec, 0), le::get_u64(rec, 8), le::get_u64(rec, 16)];
                let value = rec[24..].to_vec();
                if crate::ipc::grant_lost() {
                    return Err(Error::Io);
                }
                let (at, p) = self.split(&path)?;
                self.fs(&at)?.set_attr(&p, v, &value).map(|_| [0; 3])
            }
            _ => Err(Error::Unsupported),
        }
    }

    /// Closes the handles of clients that no longer exist.
    fn forget_departed(&mut self) {
        for i in 0..self.handles.len() {
            if let Some((c, m, h)) = self.handles[i] {
                if vm::env_info(c).is_none_or(|e| e.id != c.0) {
                    self.handles[i] = None;
                    if let Some(fs) = self.vfs.fs_of(m) {
                        let _ = fs.close(h);
                    }
                }
            }
        }
    }
}
