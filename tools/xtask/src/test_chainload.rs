//! Emulator tests of chainloading: QEMU boots the chainloader with its UART on a socket,
//! the host end of the protocol pushes the real kernel8.img, and the kernel must boot from
//! it exactly as it boots from the firmware (same EL, same load address, same bootargs).

use std::io::{Read, Write};
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use exo_chainload::host::{self, Endpoint, Observer, Options, SendError};
use exo_chainload::wire::{ErrorCode, Header, ReplyScanner};

use crate::qemu::Board;
use crate::serial::PortLink;
use crate::test_image::{built, Extra};

const BANNER: &str = "exo 0.1.0 — an exokernel for 64-bit ARM";
/// The shell's prompt, where init starts a shell.
const PROMPT: &str = "exo> ";

pub fn tests(boards: &[Board], out: &mut Vec<Extra>) {
    for &b in boards {
        out.push(Extra::new(format!("{}::chainload_then_boot", b.name()), move || chainload_then_boot(b)));
    }
    if boards.contains(&Board::Virt) {
        out.push(Extra::new(
            "virt::chainloader_refuses_a_bad_image_then_boots_a_good_one".into(),
            refuses_then_boots,
        ));
    }
}

/// QEMU running the chainloader, its UART on a socket we accepted.
struct Machine {
    child: Child,
    link: PortLink,
}

impl Machine {
    fn start(board: Board) -> Result<Machine, String> {
        let b = built()?;
        let card = crate::test_image::test_card()?;
        let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| format!("bind: {e}"))?;
        let port = listener.local_addr().map_err(|e| e.to_string())?.port();
        let mut child = Command::new("qemu-system-aarch64")
            .args(board.machine_args(&b.chainloader))
            .args(board.disk_args(&card))
            .args(["-display", "none", "-monitor", "none", "-no-reboot"])
            .args(["-semihosting-config", "enable=on,target=native"])
            .arg("-serial")
            // nodelay: the loader's answers are a few bytes each; Nagle would hold each one
            // back for a delayed ACK.
            .arg(format!("tcp:127.0.0.1:{port},nodelay=on"))
            .args(["-append", "exo.exit=semihosting"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("could not start qemu-system-aarch64: {e}"))?;
        listener.set_nonblocking(true).map_err(|e| e.to_string())?;
        let deadline = Instant::now() + Duration::from_secs(20);
        let stream = loop {
            match listener.accept() {
                Ok((s, _)) => break s,
                Err(_) if Instant::now() < deadline && child.try_wait().ok().flatten().is_none() => {
                    std::thread::sleep(Duration::from_millis(20))
                }
                Err(_) => {
                    let _ = child.kill();
                    let out =
                        child.wait_with_output().map(|o| String::from_utf8_lossy(&o.stderr).into_owned());
                    return Err(format!("QEMU never connected its serial port: {}", out.unwrap_or_default()));
                }
            }
        };
        stream.set_nonblocking(false).map_err(|e| e.to_string())?;
        stream.set_nodelay(true).map_err(|e| e.to_string())?;
        Ok(Machine { child, link: PortLink::new(Box::new(stream)) })
    }

    /// Reads the console until QEMU exits (or `limit` passes); returns it and the status.
    /// A shell prompt, where init starts one, is answered with `exit`.
    fn finish(mut self, limit: Duration) -> (String, Option<i32>) {
        let mut text = self.link.take_pending();
        let deadline = Instant::now() + limit;
        let mut buf = [0u8; 4096];
        let mut answered = false;
        let _ = self.link.port.set_timeout(Duration::from_millis(100));
        let status = loop {
            if !answered && String::from_utf8_lossy(&text).contains(PROMPT) {
                answered = true;
                let _ = self.link.port.write_all(b"exit\r");
            }
            match self.link.port.read(&mut buf) {
                Ok(n) if n > 0 => text.extend_from_slice(&buf[..n]),
                _ => {
                    if let Ok(Some(s)) = self.child.try_wait() {
                        break s.code();
                    }
                    if Instant::now() > deadline {
                        let _ = self.child.kill();
                        let _ = self.child.wait();
                        break None;
                    }
                }
            }
        };
        (String::from_utf8_lossy(&text).into_owned(), status)
    }
}

/// Keeps what the loader says outside its frames.
#[derive(Default)]
struct Keep(Vec<u8>);

impl Observer for Keep {
    fn text(&mut self, b: u8) {
        self.0.push(b);
    }
}

fn with_tail(r: Result<(), String>, text: &str) -> Result<(), String> {
    r.map_err(|e| format!("{e}\n{}", crate::qemu::tail(text, 25)))
}

fn boots_the_kernel(board: Board, loader_text: &str, m: Machine) -> Result<(), String> {
    let (console, status) = m.finish(Duration::from_secs(90));
    let all = format!("{loader_text}{console}");
    let (el, load) = match board {
        Board::Virt => (1, "0x40080000"),
        Board::Rpi4 => (2, "0x80000"),
    };
    let r = (|| {
        crate::test_image::contains(&all, &format!("exo chainloader 0.1.0 on {}, EL{el}", board.name()))?;
        crate::test_image::contains(&all, "exo chainloader: booting ")?;
        crate::test_image::contains(&all, BANNER)?;
        // The loader kept the entry EL, loaded the kernel where the firmware would have, and
        // passed the DTB (with QEMU's /chosen/bootargs) through untouched.
        crate::test_image::contains(
            &all,
            &format!("board {}, entered at EL{el}, loaded at {load}", board.name()),
        )?;
        crate::test_image::contains(&all, "bootargs: \"exo.exit=semihosting\"")?;
        crate::test_image::contains(&all, "init exited with status 0")?;
        match status {
            Some(0) => Ok(()),
            other => Err(format!("QEMU ended with {other:?}, expected status 0")),
        }
    })();
    with_tail(r, &all)
}

fn chainload_then_boot(board: Board) -> Result<(), String> {
    let kernel = std::fs::read(&built()?.kernel).map_err(|e| e.to_string())?;
    let mut m = Machine::start(board)?;
    let mut keep = Keep::default();
    let sent = host::send(&mut m.link, &kernel, &Options::DEFAULT, &mut keep);
    let text = String::from_utf8_lossy(&keep.0).into_owned();
    if let Err(e) = sent {
        let (console, _) = m.finish(Duration::from_secs(1));
        return with_tail(Err(format!("transfer failed: {e}")), &format!("{text}{console}"));
    }
    boots_the_kernel(board, &text, m)
}

fn refuses_then_boots() -> Result<(), String> {
    let kernel = std::fs::read(&built()?.kernel).map_err(|e| e.to_string())?;
    let mut m = Machine::start(Board::Virt)?;
    let mut keep = Keep::default();
    let crc = exo_format::crc32::crc32(&kernel);
    // The first 16 KiB of the kernel under a header whose CRC-32 is off by one bit: every
    // chunk arrives intact, the image does not check out.
    let part = &kernel[..16 << 10];
    let lie = Header { size: part.len() as u32, crc: exo_format::crc32::crc32(part) ^ 1, chunk: 1024 };
    let refused = {
        let mut ep = Endpoint { link: &mut m.link, scan: ReplyScanner::new(), obs: &mut keep };
        ep.wait_ready(20_000).and_then(|_| ep.transfer(part, &lie, &Options::DEFAULT))
    };
    let oversized = {
        let mut ep = Endpoint { link: &mut m.link, scan: ReplyScanner::new(), obs: &mut keep };
        let huge = Header { size: 1 << 30, crc, chunk: 1024 };
        ep.wait_ready(20_000).and_then(|_| ep.transfer(&kernel, &huge, &Options::DEFAULT))
    };
    let good = host::send(&mut m.link, &kernel, &Options::DEFAULT, &mut keep);
    let text = String::from_utf8_lossy(&keep.0).into_owned();
    let r = (|| {
        if refused != Err(SendError::Refused(ErrorCode::ImageCrc)) {
            return Err(format!("a wrong image CRC gave {refused:?}, expected a refusal"));
        }
        if oversized != Err(SendError::Refused(ErrorCode::TooBig)) {
            return Err(format!("a 1 GiB header gave {oversized:?}, expected a refusal"));
        }
        crate::test_image::contains(&text, "transfer refused: the CRC-32 of the whole image")?;
        crate::test_image::contains(&text, "transfer refused: the image does not fit")?;
        good.map(|_| ()).map_err(|e| format!("the good transfer after the bad ones failed: {e}"))
    })();
    if r.is_err() {
        let (console, _) = m.finish(Duration::from_secs(1));
        return with_tail(r, &format!("{text}{console}"));
    }
    boots_the_kernel(Board::Virt, &text, m)
}
