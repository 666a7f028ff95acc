//! `httpd bench`: instructions per HTTP GET, the plain path against prepared responses.
//!
//! Run by the test image's benchmark mode (`exo.test=bench exo.filter=http`) under QEMU's
//! `-icount`, where the cycle counter counts guest instructions. httpd writes a 1 KiB and a
//! 64 KiB file into the log-structured file system (through the file service, as it serves
//! them), then a client stack and the server stack, each a smoltcp interface of its own,
//! exchange Ethernet frames over an in-memory wire inside this environment: every figure is
//! one whole request on a kept-alive connection — the client's request, the server's TCP/IP,
//! `serve` with its file-service calls, the response back through the client's stack —
//! without the kernel's network device (whose cost per frame is not part of the difference).

use alloc::collections::VecDeque;
use alloc::rc::Rc;
use alloc::vec::Vec;
use core::cell::RefCell;

use exo_libos::{println, sys};
use exo_net::http;
use exo_net::smoltcp::iface::{Config, Interface, SocketHandle, SocketSet};
use exo_net::smoltcp::phy::{self, Device, DeviceCapabilities, Medium};
use exo_net::smoltcp::socket::tcp;
use exo_net::smoltcp::time::Instant;
use exo_net::smoltcp::wire::{EthernetAddress, HardwareAddress, IpAddress, IpCidr, Ipv4Address};

use crate::{prepared::Prepared, serve, Conn, Server};

/// Requests measured per figure (after one that warms up: ARP, the connection, and the
/// preparing of the response).
const N: u64 = 20;
/// Turns of the exchange loop one request may take at most.
const TURNS: u32 = 20_000;

type Queue = Rc<RefCell<VecDeque<Vec<u8>>>>;

/// One end of the wire: frames sent go into the other end's inbox.
struct Wire {
    inbox: Queue,
    outbox: Queue,
}

struct Rx(Vec<u8>);
struct Tx(Queue);

impl phy::RxToken for Rx {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        f(&self.0)
    }
}

impl phy::TxToken for Tx {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let mut frame = alloc::vec![0u8; len];
        let r = f(&mut frame);
        self.0.borrow_mut().push_back(frame);
        r
    }
}

impl Device for Wire {
    type RxToken<'a> = Rx;
    type TxToken<'a> = Tx;

    fn receive(&mut self, _: Instant) -> Option<(Rx, Tx)> {
        let f = self.inbox.borrow_mut().pop_front()?;
        Some((Rx(f), Tx(self.outbox.clone())))
    }

    fn transmit(&mut self, _: Instant) -> Option<Tx> {
        Some(Tx(self.outbox.clone()))
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut c = DeviceCapabilities::default();
        c.medium = Medium::Ethernet;
        c.max_transmission_unit = 1514; // as the real NIC: checksums computed, 1460-byte segments
        c
    }
}

/// One side: an interface on its end of the wire, with its sockets.
struct Side {
    iface: Interface,
    wire: Wire,
    sockets: SocketSet<'static>,
}

impl Side {
    fn new(mac: u8, ip: Ipv4Address, inbox: &Queue, outbox: &Queue) -> Side {
        let mut wire = Wire { inbox: inbox.clone(), outbox: outbox.clone() };
        let hw = HardwareAddress::Ethernet(EthernetAddress([2, 0, 0, 0, 0, mac]));
        let mut iface = Interface::new(Config::new(hw), &mut wire, exo_net::now());
        iface.update_ip_addrs(|a| {
            let _ = a.push(IpCidr::new(IpAddress::Ipv4(ip), 24));
        });
        Side { iface, wire, sockets: SocketSet::new(Vec::new()) }
    }

    fn poll(&mut self) {
        self.iface.poll(exo_net::now(), &mut self.wire, &mut self.sockets);
    }
}

const SERVER: Ipv4Address = Ipv4Address::new(10, 9, 0, 1);
const CLIENT: Ipv4Address = Ipv4Address::new(10, 9, 0, 2);

fn quick(s: &mut tcp::Socket) {
    s.set_ack_delay(None);
    s.set_nagle_enabled(false);
}

/// A server side and a client side with `clients` connections to it.
struct Pair {
    server: Side,
    conns: Vec<Conn>,
    client: Side,
    handles: Vec<SocketHandle>,
}

impl Pair {
    fn new(clients: usize) -> Option<Pair> {
        let (a, b): (Queue, Queue) = Default::default();
        let mut server = Side::new(1, SERVER, &a, &b);
        let mut client = Side::new(2, CLIENT, &b, &a);
        let conns: Vec<Conn> = (0..clients).map(|_| Conn::new(&mut server.sockets)).collect();
        for c in &conns {
            quick(server.sockets.get_mut::<tcp::Socket>(c.handle));
        }
        let mut handles = Vec::new();
        for i in 0..clients {
            let mut s = tcp::Socket::new(
                tcp::SocketBuffer::new(alloc::vec![0; 96 * 1024]),
                tcp::SocketBuffer::new(alloc::vec![0; 1024]),
            );
            quick(&mut s);
            let h = client.sockets.add(s);
            let cx = client.iface.context();
            let sock = client.sockets.get_mut::<tcp::Socket>(h);
            sock.connect(cx, (IpAddress::Ipv4(SERVER), 80), 40000 + i as u16).ok()?;
            handles.push(h);
        }
        Some(Pair { server, conns, client, handles })
    }

    /// Each client asks for `path` once; the response bytes each received (0: it failed).
    fn round(&mut self, srv: &mut Server, path: &str, want: usize) -> Vec<usize> {
        let req = alloc::format!("GET {path} HTTP/1.1\r\nHost: bench\r\n\r\n");
        let mut got = alloc::vec![0usize; self.handles.len()];
        let mut asked = alloc::vec![false; self.handles.len()];
        let mut buf = alloc::vec![0u8; 8192];
        for _ in 0..TURNS {
            for (i, h) in self.handles.iter().enumerate() {
                let s = self.client.sockets.get_mut::<tcp::Socket>(*h);
                if !asked[i] && s.may_send() {
                    asked[i] = s.send_slice(req.as_bytes()).is_ok_and(|n| n == req.len());
                }
                while let Ok(n @ 1..) = s.recv_slice(&mut buf) {
                    got[i] += n;
                }
            }
            if got.iter().all(|g| *g >= want) {
                break;
            }
            self.client.poll();
            self.server.poll();
            let now = exo_net::now().total_millis();
            for c in self.conns.iter_mut() {
                serve(&mut self.server.sockets, srv, c, now);
            }
            self.server.poll();
        }
        got
    }
}

/// Instructions per GET of `path` (`size` bytes) with `clients` clients; None if a
/// response did not come whole.
fn measure(srv: &mut Server, path: &str, size: usize, clients: usize) -> Option<u64> {
    let mut pair = Pair::new(clients)?;
    let want = http::head(200, http::content_type(path), size as u64, true).len() + size;
    if pair.round(srv, path, want).iter().any(|g| *g != want) {
        return None; // the warm-up
    }
    let t0 = sys::cycles();
    for _ in 0..N {
        if pair.round(srv, path, want).iter().any(|g| *g != want) {
            return None;
        }
    }
    Some((sys::cycles() - t0) / (N * clients as u64))
}

/// The benchmark; its lines are `bench NAME ops=N per_op=X`.
pub fn run(srv: &mut Server) -> i32 {
    let files = [("1k", "/log/bench-1k.txt", 1024usize), ("64k", "/log/bench-64k.txt", 64 * 1024)];
    for (_, path, size) in files {
        let data: Vec<u8> = (0..size).map(|i| b'a' + (i % 26) as u8).collect();
        if srv.vfs.write_file(path, &data).is_err() {
            println!("bench http_get skipped: cannot write {path} (no LFS mounted?)");
            return 1;
        }
    }
    let mut failed = false;
    for (name, path, size) in files {
        for (mode, prepared, stored_only) in
            [("plain", false, false), ("stored_head", true, true), ("prepared", true, false)]
        {
            srv.prepared = prepared.then(|| {
                let mut p = Prepared::default();
                p.stored_only = stored_only;
                p
            });
            match measure(srv, path, size, 1) {
                Some(per) => println!("bench http_get_{name}_{mode} ops={N} per_op={per}"),
                None => {
                    println!("bench http_get_{name}_{mode} failed");
                    failed = true;
                }
            }
        }
    }
    // Several clients at once, each with its own connection: requests per million
    // instructions is 1,000,000 / per_op.
    for (mode, prepared) in [("plain", false), ("prepared", true)] {
        srv.prepared = prepared.then(Prepared::default);
        match measure(srv, files[0].1, files[0].2, 4) {
            Some(per) => println!(
                "bench http_get_1k_{mode}_4_clients ops={} per_op={per} requests_per_million={}",
                4 * N,
                1_000_000 / per.max(1)
            ),
            None => {
                println!("bench http_get_1k_{mode}_4_clients failed");
                failed = true;
            }
        }
    }
    for (_, path, _) in files {
        let _ = srv.vfs.remove(path);
    }
    failed as i32
}
