//! Emulator tests of the network on `virt` (QEMU's raspi4b has no NIC): the host fetches
//! the card's files from `httpd` over a forwarded port and compares them byte for byte,
//! sends it malformed, oversized, slow and idle requests, and pings QEMU's gateway from
//! the shell. Traffic goes only to 127.0.0.1 and inside QEMU's restricted user network;
//! every wait is bounded.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream, UdpSocket};
use std::time::Duration;

use crate::qemu::{tail, Board, RunSpec, Session};
use crate::test_image::{built, card_copy, ensure, mread, Extra};

pub fn tests(boards: &[Board], out: &mut Vec<Extra>) {
    if boards.contains(&Board::Virt) {
        out.push(Extra::new("virt::http_serves_the_cards_files_and_refuses_bad_requests".into(), http));
        out.push(Extra::new("virt::a_killed_httpd_leaves_the_rest_running_and_its_port_free".into(), crash));
        out.push(Extra::new(
            "virt::garbage_frames_on_the_wire_leave_the_kernel_and_httpd_serving".into(),
            garbage,
        ));
    }
}

/// A run of `image` on `virt` with `bootargs` and the QEMU arguments `extra` (the card, the
/// network), four minutes at most.
fn virt_spec<'a>(image: &'a std::path::Path, bootargs: &str, extra: Vec<String>) -> RunSpec<'a> {
    RunSpec { board: Board::Virt, image, bootargs: bootargs.into(), timeout: Duration::from_secs(240), extra }
}

/// A port on 127.0.0.1 free right now (the kernel picks it), so parallel runs never collide.
fn free_port() -> Result<u16, String> {
    let l = TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    l.local_addr().map(|a| a.port()).map_err(|e| e.to_string())
}

fn connect(port: u16) -> Result<TcpStream, String> {
    let s = TcpStream::connect(("127.0.0.1", port)).map_err(|e| format!("connect: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(30))).map_err(|e| e.to_string())?;
    Ok(s)
}

/// Reads one response: (status, headers, body).
fn response(s: &mut TcpStream) -> Result<(u16, String, Vec<u8>), String> {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        ensure(buf.len() < 8192, || "a response head over 8 KiB".into())?;
        let n = s.read(&mut byte).map_err(|e| format!("reading the head: {e}"))?;
        ensure(n == 1, || format!("the connection closed mid-head: {:?}", String::from_utf8_lossy(&buf)))?;
        buf.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&buf).into_owned();
    let status = head.get(9..12).and_then(|s| s.parse().ok()).ok_or(format!("no status in {head:?}"))?;
    let len: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("Content-Length: "))
        .and_then(|n| n.trim().parse().ok())
        .ok_or(format!("no Content-Length in {head:?}"))?;
    let mut body = vec![0u8; len];
    s.read_exact(&mut body).map_err(|e| format!("reading {len} bytes of body: {e}"))?;
    Ok((status, head, body))
}

fn get(s: &mut TcpStream, path: &str) -> Result<(u16, String, Vec<u8>), String> {
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: exo\r\n\r\n").as_bytes()).map_err(|e| e.to_string())?;
    response(s).map_err(|e| format!("GET {path}: {e}"))
}

fn http() -> Result<(), String> {
    let card = card_copy("http-virt")?;
    crate::test_pipes::put_lfs(&card, "/my <notes> & more.txt", b"spaced\n")?;
    let port = free_port()?;
    let mut extra = Board::Virt.disk_args(&card);
    extra.extend(Board::Virt.net_args(Some(port)));
    let spec = virt_spec(&built()?.kernel, "", extra);
    let mut s = Session::start(&spec)?;
    // httpd's line may come before or after the shell's first prompt: ask for a fresh one.
    let shell: &[(&str, &str)] = &[
        ("", "\r"),
        ("exo> ", "run ping 10.0.2.2 2\r"),
        // At least one reply: in real time on a loaded host, the first (which waits for
        // ARP too) may miss ping's one-second patience.
        ("ping: reply from 10.0.2.2", ""),
        ("ping: 2 sent, ", ""),
        ("exo> ", "net\r"),
        ("tx denied", ""),
        // What httpd kept beside /log/www.txt goes to the card before the power goes.
        ("exo> ", "sync\r"),
        ("exo> ", "exit 0\r"),
    ];
    let result = s
        .expect("serving http on port 80")
        .and_then(|_| exchanges(port, &card))
        .and_then(|_| prepared(&mut s, port))
        .and_then(|_| s.script(shell));
    let (end, out) = if result.is_ok() { s.finish() } else { (crate::qemu::End::Hung, s.kill()) };
    let result = result
        .map_err(|e| format!("{e}\n{}", tail(&out, 20)))
        .and_then(|_| {
            ensure(end == crate::qemu::End::Exited(0), || format!("ended {end:?}:\n{}", tail(&out, 20)))
        })
        .and_then(|_| after_reboot(&spec, port));
    let _ = std::fs::remove_file(&card);
    result
}

/// The same card booted again: the first GET of the file prepared before is answered with
/// the response head httpd kept beside it in the LFS, byte for byte the file; a rewrite
/// after that is served new.
fn after_reboot(spec: &RunSpec, port: u16) -> Result<(), String> {
    let mut s = Session::start(spec)?;
    let result = s
        .expect("serving http on port 80")
        .and_then(|_| {
            let (status, head, body) = get(&mut connect(port)?, "/log/www.txt")?;
            ensure(status == 200 && body == b"version two\n", || format!("after a reboot: {head}"))
        })
        .and_then(|_| s.expect("httpd: /log/www.txt: response head kept beside the file in the LFS"))
        .and_then(|_| s.send("\recho version three > /log/www.txt\r"))
        .and_then(|_| until_body(port, "/log/www.txt", b"version three\n"))
        .and_then(|_| s.send("exit 0\r"));
    let (end, out) = if result.is_ok() { s.finish() } else { (crate::qemu::End::Hung, s.kill()) };
    result.map_err(|e| format!("after the reboot: {e}\n{}", tail(&out, 20)))?;
    ensure(end == crate::qemu::End::Exited(0), || {
        format!("after the reboot, ended {end:?}:\n{}", tail(&out, 20))
    })
}

/// What the host asks of httpd, once it is serving.
fn exchanges(port: u16, card: &std::path::Path) -> Result<(), String> {
    // A slow client that never finishes its request holds one connection meanwhile.
    let mut slow = connect(port)?;
    slow.write_all(b"GET /fat/config.txt HTTP/1.1\r\nHo").map_err(|e| e.to_string())?;
    // Two files over one kept-alive connection, byte for byte the card's.
    let mut c = connect(port)?;
    for (path, file) in [("/fat/config.txt", "config.txt"), ("/fat/kernel8.img", "kernel8.img")] {
        let (status, head, body) = get(&mut c, path)?;
        ensure(status == 200, || format!("GET {path}: {head}"))?;
        ensure(body == mread(card, file)?, || format!("GET {path}: the body differs from the card's file"))?;
        ensure(head.contains("Connection: keep-alive"), || format!("GET {path}: not kept alive: {head}"))?;
    }
    let (status, head, _) = get(&mut c, "/fat/config.txt")?;
    ensure(status == 200 && head.contains("Content-Type: text/plain"), || {
        format!("a text file's type: {head}")
    })?;
    let (status, _, body) = get(&mut c, "/fat/")?;
    ensure(status == 200 && String::from_utf8_lossy(&body).contains("kernel8.img"), || "no listing".into())?;
    let (status, _, _) = get(&mut c, "/fat/no-such-file")?;
    ensure(status == 404, || format!("a missing file got {status}"))?;
    // A name with spaces and HTML's own characters: listed escaped, linked encoded, and
    // served when asked for by that link.
    let (status, _, body) = get(&mut c, "/log/")?;
    let link = "<a href=\"/log/my%20%3Cnotes%3E%20%26%20more.txt\">my &lt;notes&gt; &amp; more.txt</a>";
    ensure(status == 200 && String::from_utf8_lossy(&body).contains(link), || {
        format!("the listing of /log/ has no {link:?}: {}", String::from_utf8_lossy(&body))
    })?;
    let (status, _, body) = get(&mut c, "/log/my%20%3Cnotes%3E%20%26%20more.txt")?;
    ensure(status == 200 && body == b"spaced\n", || format!("the escaped name got {status}"))?;
    // Each bad request gets its error, then the connection is closed.
    let oversized = format!("GET / HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(4000));
    for (req, want) in [
        ("POST /fat/config.txt HTTP/1.1\r\n\r\n", 405),
        ("BLAH\r\n\r\n", 400),
        ("GET /fat/../x HTTP/1.1\r\n\r\n", 400),
        ("GET /fat/%2E%2E/x HTTP/1.1\r\n\r\n", 400),
        (oversized.as_str(), 431),
    ] {
        let mut b = connect(port)?;
        b.write_all(req.as_bytes()).map_err(|e| e.to_string())?;
        let (status, _, _) = response(&mut b).map_err(|e| format!("{:?}...: {e}", &req[..12]))?;
        ensure(status == want, || format!("{:?}... got {status}, not {want}", &req[..12]))?;
    }
    // The slow client was never answered, and gets 408 once it has idled long enough.
    let (status, _, _) = response(&mut slow)?;
    ensure(status == 408, || format!("the slow client got {status}, not 408"))?;
    // And everyone else is still served (once a slot is free: the bad requests' sockets
    // linger a moment after httpd closes them).
    served(port).map_err(|e| format!("after the bad requests: {e}"))?;
    flood(port)
}

/// Polls GET `path` until its body is `want` (at most 40 tries, half a second apart): the
/// shell writes the file meanwhile, and the host cannot see when it is done.
fn until_body(port: u16, path: &str, want: &[u8]) -> Result<(), String> {
    let mut last = Vec::new();
    for _ in 0..40 {
        if let Ok((200, _, body)) = connect(port).and_then(|mut c| get(&mut c, path)) {
            if body == want {
                return Ok(());
            }
            last = body;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    Err(format!(
        "GET {path}: never {:?}; last {:?}",
        String::from_utf8_lossy(want),
        String::from_utf8_lossy(&last)
    ))
}

/// Prepared responses (a small LFS file's whole response kept by httpd) are served again
/// and again, and never stale: the shell rewrites the file with as many bytes, and the
/// next request gets the new ones.
fn prepared(s: &mut Session, port: u16) -> Result<(), String> {
    s.send("\recho version one > /log/www.txt\r")?;
    until_body(port, "/log/www.txt", b"version one\n")?;
    for _ in 0..3 {
        let (status, head, body) = get(&mut connect(port)?, "/log/www.txt")?;
        ensure(status == 200 && body == b"version one\n", || format!("a prepared response: {head}"))?;
    }
    s.send("echo version two > /log/www.txt\r")?;
    until_body(port, "/log/www.txt", b"version two\n")
}

/// A flood: twice as many idle connections as httpd serves at once. They hold every slot
/// until httpd's idle timeout closes them; a real client asking meanwhile may be refused
/// (a reset) but is served within a bounded number of tries, and so is one asking after.
fn flood(port: u16) -> Result<(), String> {
    let idle: Vec<TcpStream> = (0..16).map(|_| connect(port)).collect::<Result<_, _>>()?;
    let during = served(port);
    drop(idle);
    during.map_err(|e| format!("during a flood of idle connections: {e}"))?;
    served(port).map_err(|e| format!("after a flood of idle connections: {e}"))
}

/// GET /fat/config.txt until it is served, at most 20 tries a second apart.
fn served(port: u16) -> Result<(), String> {
    let mut last = String::new();
    for _ in 0..20 {
        match connect(port).and_then(|mut c| get(&mut c, "/fat/config.txt")) {
            Ok((200, _, _)) => return Ok(()),
            Ok((status, _, _)) => last = format!("status {status}"),
            Err(e) => last = e,
        }
        std::thread::sleep(Duration::from_secs(1));
    }
    Err(format!("never served in 20 tries (last: {last})"))
}

/// The test image's `exo.test=webcrash` (`apps/src/webcrash.rs`): httpd is killed with a
/// download half-read and an idle connection open; fsd still serves, and a new httpd binds
/// port 80 again and serves the same bytes.
fn crash() -> Result<(), String> {
    let card = card_copy("http-crash-virt")?;
    let port = free_port()?;
    let mut extra = Board::Virt.disk_args(&card);
    extra.extend(Board::Virt.net_args(Some(port)));
    let image = crate::build::build_test()?.image;
    let spec = virt_spec(&image, "exo.test=webcrash", extra);
    let mut s = Session::start(&spec)?;
    let config = mread(&card, "config.txt")?;
    let big = mread(&card, "kernel8.img")?;
    let result = (|| {
        s.expect("serving http on port 80")?;
        let mut c = connect(port)?;
        let (status, _, body) = get(&mut c, "/fat/config.txt")?;
        ensure(status == 200 && body == config, || "the first httpd did not serve config.txt".into())?;
        // A download left half-read, and an idle connection, when httpd dies: killed in the
        // middle of a file-service call, its granted buffer vanishes under fsd (docs/ipc.md).
        c.write_all(b"GET /fat/kernel8.img HTTP/1.1\r\n\r\n").map_err(|e| e.to_string())?;
        let mut part = [0u8; 4096];
        c.read_exact(&mut part).map_err(|e| format!("the download did not start: {e}"))?;
        let _idle = connect(port)?;
        s.send("k")?;
        s.expect("webcrash: httpd killed (gone)")?;
        s.expect("webcrash: fsd still serves")?;
        s.expect("serving http on port 80")?;
        let mut c = connect(port)?;
        for (path, want) in [("/fat/config.txt", &config), ("/fat/kernel8.img", &big)] {
            let (status, _, body) = get(&mut c, path)?;
            ensure(status == 200 && body == *want, || format!("the new httpd: GET {path} got {status}"))?;
        }
        s.send("q")
    })();
    let (end, out) = if result.is_ok() { s.finish() } else { (crate::qemu::End::Hung, s.kill()) };
    let _ = std::fs::remove_file(&card);
    result.map_err(|e| format!("{e}\n{}", tail(&out, 20)))?;
    ensure(end == crate::qemu::End::Exited(0), || format!("ended {end:?}:\n{}", tail(&out, 20)))
}

/// Garbage on the wire, end to end. QEMU's restricted user network only ever hands the
/// guest well-formed frames, so the guest's NIC is put on a QEMU hub with two ports
/// besides: the user network (DHCP, the forwarded HTTP port) and a UDP socket on 127.0.0.1,
/// each datagram sent to which QEMU delivers to the hub as one Ethernet frame. The host
/// sends 1,500 frames (random bytes of every length, then frames addressed to the guest's
/// MAC and port 80 with every header field after the Ethernet header scrambled, then
/// broken ARP), all to 127.0.0.1. The kernel counts them (the shell's `net` shows the
/// unmatched count grow), and httpd keeps serving the card's bytes on a connection opened
/// before them and on new ones.
fn garbage() -> Result<(), String> {
    let card = card_copy("http-garbage-virt")?;
    let port = free_port()?;
    // The host's end of the wire, and a free port on 127.0.0.1 for QEMU's end.
    let wire = UdpSocket::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    let host_end = wire.local_addr().map_err(|e| e.to_string())?.port();
    let qemu_end =
        UdpSocket::bind("127.0.0.1:0").and_then(|s| s.local_addr()).map_err(|e| e.to_string())?.port();
    let mut extra = Board::Virt.disk_args(&card);
    let args = [
        format!("user,id=n0,restrict=on,hostfwd=tcp:127.0.0.1:{port}-:80"),
        format!("socket,id=n1,udp=127.0.0.1:{host_end},localaddr=127.0.0.1:{qemu_end}"),
        "hubport,id=p0,hubid=0,netdev=n0".into(),
        "hubport,id=p1,hubid=0,netdev=n1".into(),
        "hubport,id=p2,hubid=0".into(),
    ];
    for a in args {
        extra.extend(["-netdev".into(), a]);
    }
    extra.extend(
        ["-device", "virtio-net-device,netdev=p2", "-global", "virtio-mmio.force-legacy=false"]
            .map(String::from),
    );
    let spec = virt_spec(&built()?.kernel, "", extra);
    let mut s = Session::start(&spec)?;
    let config = mread(&card, "config.txt")?;
    let unmatched = |s: &mut Session| -> Result<u64, String> {
        s.send("net\r")?;
        let out = s.read_until(" unmatched")?;
        let n = out.rsplit("dropped").next().unwrap_or("").trim();
        n.parse().map_err(|_| format!("no unmatched count in {out:?}"))
    };
    let result = (|| {
        s.expect("serving http on port 80")?;
        let mut kept = connect(port)?;
        let (status, _, body) = get(&mut kept, "/fat/config.txt")?;
        ensure(status == 200 && body == config, || "before the garbage: config.txt not served".into())?;
        s.send("\r")?;
        s.expect("exo> ")?;
        let before = unmatched(&mut s)?;
        let sent = send_garbage(&wire, qemu_end)?;
        // The frames are in flight on QEMU's side: the count grows as they arrive.
        let mut after = before;
        for _ in 0..20 {
            s.expect("exo> ")?;
            after = unmatched(&mut s)?;
            if after - before >= 400 {
                break;
            }
            std::thread::sleep(Duration::from_millis(500));
        }
        println!("    {sent} garbage frames sent; the kernel counted {} unmatched", after - before);
        // The 500 random frames match no binding (nor do most of the rest).
        ensure(after - before >= 400, || {
            format!("only {} garbage frames were counted unmatched", after - before)
        })?;
        let (status, _, body) = get(&mut kept, "/fat/config.txt")?;
        ensure(status == 200 && body == config, || "the kept-alive connection broke".into())?;
        let (status, _, body) = get(&mut connect(port)?, "/fat/kernel8.img")?;
        ensure(status == 200 && body == mread(&card, "kernel8.img")?, || {
            "a new connection after the garbage".into()
        })?;
        s.expect("exo> ")?;
        s.send("exit 0\r")
    })();
    let (end, out) = if result.is_ok() { s.finish() } else { (crate::qemu::End::Hung, s.kill()) };
    let _ = std::fs::remove_file(&card);
    result.map_err(|e| format!("{e}\n{}", tail(&out, 20)))?;
    ensure(end == crate::qemu::End::Exited(0), || format!("ended {end:?}:\n{}", tail(&out, 20)))
}

/// Sends the garbage of [`garbage`] to QEMU's end of the wire, all on 127.0.0.1: 1,500
/// datagrams from a fixed seed, a short pause every 50 so that QEMU's socket keeps up.
fn send_garbage(wire: &UdpSocket, qemu_end: u16) -> Result<usize, String> {
    const GUEST: [u8; 6] = [0x52, 0x54, 0x00, 0x12, 0x34, 0x56];
    const GATEWAY: [u8; 6] = [0x52, 0x55, 0x0a, 0x00, 0x02, 0x02];
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let mut rand = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let mut sent = 0;
    for i in 0..1500usize {
        let len = match i {
            0..500 => 1 + rand() as usize % 1600,
            _ => 14 + rand() as usize % 1500,
        };
        let mut f: Vec<u8> = (0..len).map(|_| rand() as u8).collect();
        if i >= 500 {
            f[..6].copy_from_slice(&GUEST);
            f[6..12].copy_from_slice(&GATEWAY);
        }
        if (500..1200).contains(&i) && len >= 54 {
            // IPv4 to 10.0.2.15, TCP to port 80; everything else as random as it came.
            f[12..14].copy_from_slice(&[0x08, 0x00]);
            f[14] = 0x40 | (f[14] & 0x0f);
            f[23] = 6;
            f[30..34].copy_from_slice(&[10, 0, 2, 15]);
            let ihl = ((f[14] & 0x0f) as usize * 4).clamp(20, len - 34);
            f[14 + ihl + 2..14 + ihl + 4].copy_from_slice(&80u16.to_be_bytes());
        } else if i >= 1200 {
            f[12..14].copy_from_slice(&[0x08, 0x06]);
        }
        wire.send_to(&f, ("127.0.0.1", qemu_end)).map_err(|e| format!("sending garbage: {e}"))?;
        sent += 1;
        if i % 50 == 49 {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    Ok(sent)
}
