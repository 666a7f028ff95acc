//! Emulator tests of the network on `virt` (QEMU's raspi4b has no NIC): the host fetches
//! the card's files from `httpd` over a forwarded port and compares them byte for byte,
//! sends it malformed, oversized, slow and idle requests, and pings QEMU's gateway from
//! the shell. Traffic goes only to 127.0.0.1 and inside QEMU's restricted user network;
//! every wait is bounded.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::Duration;

use crate::qemu::{tail, Board, RunSpec, Session};
use crate::test_image::{built, card_copy, ensure, mread, Extra};

pub fn tests(boards: &[Board], out: &mut Vec<Extra>) {
    if boards.contains(&Board::Virt) {
        out.push(Extra::new("virt::http_serves_the_cards_files_and_refuses_bad_requests".into(), http));
        out.push(Extra::new("virt::a_killed_httpd_leaves_the_rest_running_and_its_port_free".into(), crash));
    }
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
    let port = free_port()?;
    let mut extra = Board::Virt.disk_args(&card);
    extra.extend(Board::Virt.net_args(Some(port)));
    let spec = RunSpec {
        board: Board::Virt,
        image: &built()?.kernel,
        bootargs: String::new(),
        timeout: Duration::from_secs(240),
        extra,
    };
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
    // Each bad request gets its error, then the connection is closed.
    let oversized = format!("GET / HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(4000));
    for (req, want) in [
        ("POST /fat/config.txt HTTP/1.1\r\n\r\n", 405),
        ("BLAH\r\n\r\n", 400),
        ("GET /fat/../x HTTP/1.1\r\n\r\n", 400),
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
    let spec = RunSpec {
        board: Board::Virt,
        image: &image,
        bootargs: "exo.test=webcrash".into(),
        timeout: Duration::from_secs(240),
        extra,
    };
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
