//! httpd: an HTTP/1.1 server for every file system the file service mounts, read-only, at
//! URL paths equal to file paths (`GET /fat/config.txt`), with directory listings.
//!
//! It links its own TCP/IP stack (`exo-net`) and binds TCP port 80 and nothing else. Up to
//! [`CONNS`] connections at once, each with its own socket; the loop gives each at most
//! [`SLICE`] bytes of a response per turn, so one large download or one slow reader cannot
//! starve the others. A request head may have at most `http::MAX_HEAD` bytes (431 past
//! that); a connection that sends nothing for [`IDLE_MS`] is closed (408 if it was partway
//! through a request). A small LFS file's response head is prepared once and kept beside
//! the file in the LFS, its whole response in memory ([`prepared`]; `httpd plain` turns
//! that off); `httpd bench` measures the paths (`bench.rs`). `docs/network.md`.
#![allow(unused_crate_dependencies)]
#![no_std]
#![forbid(unsafe_code)]
#![no_main]

extern crate alloc;

mod bench;
mod prepared;

use alloc::format;
use alloc::rc::Rc;
use alloc::string::String;
use alloc::vec::Vec;

use exo_libos::abi::EnvId;
use exo_libos::fs::{service, FileKind, OpenFlags, Vfs};
use exo_libos::nic::{self, IP_TCP};
use exo_libos::println;
use exo_net::http::{self, Parse};
use exo_net::smoltcp::iface::SocketSet;
use exo_net::smoltcp::socket::tcp;
use exo_net::smoltcp::time::Duration;
use exo_net::Stack;
use prepared::Prepared;

/// Connections served at once.
const CONNS: usize = 8;
/// Bytes of a response one connection may send per turn of the loop.
const SLICE: usize = 8192;
/// A connection quiet for this long is closed.
const IDLE_MS: i64 = 5000;
/// Ticks to wait for a DHCP lease.
const DHCP_TICKS: u32 = 500;

/// What is left to send of a response: bytes in memory (a head, or a whole prepared
/// response), then a file's.
pub struct Conn {
    handle: exo_net::smoltcp::iface::SocketHandle,
    req: Vec<u8>,
    out: Rc<[u8]>,
    sent: usize,
    file: Option<(exo_libos::fs::Fd, u64)>,
    keep_alive: bool,
    last: i64,
}

impl Conn {
    /// A connection on a fresh listening-to-be socket in `sockets`.
    pub fn new(sockets: &mut SocketSet<'static>) -> Conn {
        let s = tcp::Socket::new(
            tcp::SocketBuffer::new(alloc::vec![0; 4096]),
            tcp::SocketBuffer::new(alloc::vec![0; 16384]),
        );
        let handle = sockets.add(s);
        Conn { handle, req: Vec::new(), out: empty(), sent: 0, file: None, keep_alive: true, last: 0 }
    }

    fn busy(&self) -> bool {
        self.sent < self.out.len() || self.file.is_some()
    }
}

/// The files served, and the prepared responses (None: every request takes the plain path).
pub struct Server {
    pub vfs: Vfs,
    pub prepared: Option<Prepared>,
}

fn empty() -> Rc<[u8]> {
    Rc::from(&[][..])
}

fn main(args: &str) -> i32 {
    let mut vfs = Vfs::new();
    if let Some(id) = args.split_whitespace().find_map(|w| w.strip_prefix("fsd=0x")) {
        let id = u32::from_str_radix(id, 16).unwrap_or(0);
        if service::mount_remote(&mut vfs, EnvId(id)).is_err() {
            println!("httpd: the file service did not answer; serving nothing");
        }
    }
    let plain = args.split_whitespace().any(|w| w == "plain");
    let mut srv = Server { vfs, prepared: (!plain).then(Prepared::default) };
    if args.split_whitespace().any(|w| w == "bench") {
        return bench::run(&mut srv);
    }
    let port80 = (nic::ipv4_port(IP_TCP, 80, true), nic::ipv4_port(IP_TCP, 80, false));
    let mut stack = match Stack::new(&[port80]) {
        Ok(s) => s,
        Err(e) => {
            println!("httpd: no network ({e:?}); not serving");
            return 0;
        }
    };
    let addr = match stack.dhcp(DHCP_TICKS) {
        Ok(a) => a,
        Err(e) => {
            println!("httpd: no address ({e:?}); not serving");
            stack.close();
            return 1;
        }
    };
    let mut conns: Vec<Conn> = (0..CONNS).map(|_| Conn::new(&mut stack.sockets)).collect();
    // A first turn puts every socket in LISTEN, so that the line below is true when read: a
    // client that connects on seeing it is never reset for being early.
    let now = exo_net::now().total_millis();
    for c in conns.iter_mut() {
        serve(&mut stack.sockets, &mut srv, c, now);
    }
    println!("httpd: {addr}, serving http on port 80");
    loop {
        stack.poll();
        let now = exo_net::now().total_millis();
        let mut progress = false;
        for c in conns.iter_mut() {
            progress |= serve(&mut stack.sockets, &mut srv, c, now);
        }
        stack.poll();
        if !progress {
            stack.wait();
        }
    }
}

/// One turn for one connection; whether anything moved.
pub fn serve(sockets: &mut SocketSet<'static>, srv: &mut Server, c: &mut Conn, now: i64) -> bool {
    let s = sockets.get_mut::<tcp::Socket>(c.handle);
    if !s.is_open() {
        finish(&mut srv.vfs, c);
        c.req.clear();
        c.last = now;
        s.set_timeout(Some(Duration::from_millis(IDLE_MS as u64 * 2)));
        let _ = s.listen(80);
        return false;
    }
    if !s.is_active() || s.state() == tcp::State::SynReceived {
        c.last = now; // listening, or still shaking hands
        return false;
    }
    let mut progress = false;
    if s.can_recv() && c.req.len() < http::MAX_HEAD {
        let room = http::MAX_HEAD - c.req.len();
        let mut buf = [0u8; 1024];
        if let Ok(n) = s.recv_slice(&mut buf[..room.min(1024)]) {
            c.req.extend_from_slice(&buf[..n]);
            progress |= n > 0;
            c.last = now;
        }
    }
    if !c.busy() && !c.req.is_empty() {
        progress |= respond(srv, c);
    }
    if c.busy() {
        progress |= send(&mut srv.vfs, c, s);
        c.last = if progress { now } else { c.last };
    } else if !c.keep_alive || (!s.may_recv() && c.req.is_empty()) {
        s.close();
    } else if now - c.last > IDLE_MS {
        if !c.req.is_empty() {
            let _ = s.send_slice(http::head(408, "text/plain", 0, false).as_bytes());
        }
        s.close();
    }
    progress
}

/// Answers the request at the head of `c.req`, if it is whole.
fn respond(srv: &mut Server, c: &mut Conn) -> bool {
    let vfs = &mut srv.vfs;
    let (status, head_only, path, used) = match http::parse(&c.req) {
        Parse::Incomplete => return false,
        Parse::Error(status) => (status, false, String::new(), c.req.len()),
        Parse::Request(r, used) => {
            c.keep_alive = r.keep_alive;
            (200, r.head_only, r.path.into_owned(), used)
        }
    };
    c.req.drain(..used);
    c.sent = 0;
    let mut out = Vec::new();
    if status != 200 {
        c.keep_alive = false;
        let body = format!("{status} {}\n", http::reason(status));
        out.extend_from_slice(http::head(status, "text/plain", body.len() as u64, false).as_bytes());
        out.extend_from_slice(body.as_bytes());
        c.out = out.into();
        return true;
    }
    let path = path.trim_end_matches('/');
    if let (Some(p), false, true) = (&mut srv.prepared, head_only, c.keep_alive) {
        if let Some(bytes) = p.get(vfs, path) {
            c.out = bytes;
            return true;
        }
    }
    let stat = if path.is_empty() { None } else { vfs.stat(path).ok() };
    if path.is_empty() || stat.is_some_and(|m| m.kind == FileKind::Dir) {
        let body = listing(vfs, path);
        out.extend_from_slice(
            http::head(200, "text/html; charset=utf-8", body.len() as u64, c.keep_alive).as_bytes(),
        );
        if !head_only {
            out.extend_from_slice(body.as_bytes());
        }
        c.out = out.into();
        return true;
    }
    match (stat, vfs.open(path, OpenFlags::READ)) {
        (Some(m), Ok(fd)) => {
            out.extend_from_slice(http::head(200, http::content_type(path), m.size, c.keep_alive).as_bytes());
            if head_only {
                let _ = vfs.close(fd);
            } else {
                c.file = Some((fd, m.size));
            }
        }
        _ => {
            let body = "404 Not Found\n";
            out.extend_from_slice(http::head(404, "text/plain", body.len() as u64, c.keep_alive).as_bytes());
            out.extend_from_slice(body.as_bytes());
        }
    }
    c.out = out.into();
    true
}

/// An HTML list of a directory (or of the mounts, for `/`). Names are escaped as text and
/// percent-encoded as links: a file called `<b>` or `my notes` lists as itself.
fn listing(vfs: &mut Vfs, path: &str) -> String {
    let title = http::escape(path);
    let mut body = format!("<!DOCTYPE html>\n<title>{title}/</title>\n<h1>{title}/</h1>\n<ul>\n");
    let link = |to: &str, text: &str| format!("<a href=\"{}\">{}</a>", http::encode(to), http::escape(text));
    if path.is_empty() {
        let mounts: Vec<String> = vfs.mounts().map(|(at, _)| String::from(at)).collect();
        for at in mounts {
            body += &format!("<li>{}</li>\n", link(&format!("{at}/"), &format!("{at}/")));
        }
    } else if let Ok(entries) = vfs.list_dir(path) {
        for e in entries {
            let name = if e.kind == FileKind::Dir { format!("{}/", e.name) } else { e.name };
            body += &format!("<li>{} {}</li>\n", link(&format!("{path}/{name}"), &name), e.size);
        }
    }
    body + "</ul>\n"
}

/// Sends up to SLICE bytes of what is left; whether any went.
fn send(vfs: &mut Vfs, c: &mut Conn, s: &mut tcp::Socket) -> bool {
    let mut budget = SLICE;
    let start = budget;
    while budget > 0 && s.can_send() {
        if c.sent < c.out.len() {
            let end = c.out.len().min(c.sent + budget);
            match s.send_slice(&c.out[c.sent..end]) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    c.sent += n;
                    budget -= n;
                }
            }
            continue;
        }
        let Some((fd, left)) = c.file else { break };
        let room = (s.send_capacity() - s.send_queue()).min(budget).min(left as usize);
        if room == 0 {
            break;
        }
        let mut chunk = alloc::vec![0u8; room];
        let n = match vfs.read(fd, &mut chunk) {
            Ok(n) if n > 0 => n,
            _ => {
                s.abort(); // the file shrank or failed: the length promised cannot be kept
                finish(vfs, c);
                return true;
            }
        };
        let sent = s.send_slice(&chunk[..n]).unwrap_or(0);
        if sent < n {
            let _ = vfs.seek(fd, exo_libos::fs::SeekFrom::Current(-((n - sent) as i64)));
        }
        budget -= sent;
        c.file = (left > sent as u64).then_some((fd, left - sent as u64));
        if c.file.is_none() {
            let _ = vfs.close(fd);
        }
    }
    if !c.busy() {
        (c.out, c.sent) = (empty(), 0);
    }
    budget < start
}

/// Drops whatever response was in progress.
fn finish(vfs: &mut Vfs, c: &mut Conn) {
    if let Some((fd, _)) = c.file.take() {
        let _ = vfs.close(fd);
    }
    (c.out, c.sent) = (empty(), 0);
    c.keep_alive = true;
}

exo_libos::entry!(main);
