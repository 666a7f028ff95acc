//! The HDMI console on QEMU `raspi4b`: the emulated screen must show exactly what the
//! console printed, drawn as `exo_bsp::fbcon` draws it.
//!
//! The test boots to the shell's prompt, asks QEMU's monitor for a `screendump` (a PPM of
//! the emulated display), then replays the console output through the same console code
//! on a host framebuffer and compares the two pixel for pixel.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

use exo_bsp::drivers::bcm2835_mbox::{FB_HEIGHT, FB_WIDTH};
use exo_bsp::fbcon::FbConsole;

use crate::qemu::{self, Board, RunSpec, Session};
use crate::test_image::{scratch, Extra};

pub fn tests(boards: &[Board], v: &mut Vec<Extra>) {
    if boards.contains(&Board::Rpi4) {
        v.push(Extra::new(
            "rpi4::screen_shows_the_console_text_pixel_for_pixel".into(),
            screen_shows_console,
        ));
    }
}

fn screen_shows_console() -> Result<(), String> {
    let image = crate::build::build_all()?.image;
    // A Unix socket's path is limited to about 100 bytes: keep it short.
    let sock = std::env::temp_dir().join(format!("exo-screen-{}.sock", std::process::id()));
    let _ = std::fs::remove_file(&sock);
    let spec = RunSpec {
        board: Board::Rpi4,
        image: &image,
        bootargs: String::new(),
        timeout: Duration::from_secs(90),
        extra: vec!["-monitor".into(), format!("unix:{},server=on,wait=off", sock.display())],
    };
    let mut session = Session::start(&spec)?;
    let prompt = session.expect("exo> ");
    let shot = scratch().join("screen.ppm");
    let mut last = Err("no screendump taken".to_string());
    if prompt.is_ok() {
        // The UART shows the prompt a moment before the screen has drawn it: retry briefly.
        let until = Instant::now() + Duration::from_secs(10);
        while Instant::now() < until {
            std::thread::sleep(Duration::from_millis(300));
            last = screendump(&sock, &shot);
            if last.is_ok() {
                break;
            }
        }
    }
    let out = session.kill();
    let _ = std::fs::remove_file(&sock);
    prompt.map_err(|e| format!("{e}\n{}", qemu::tail(&out, 15)))?;
    let got = last?;
    // The console bytes, without QEMU's own warnings (stderr shares the capture).
    let console: String =
        out.lines().filter(|l| !l.starts_with("qemu-system-aarch64:")).map(|l| format!("{l}\n")).collect();
    let console = console.strip_suffix('\n').unwrap_or(&console);
    let want = render(console.as_bytes());
    compare(&want, &got)
}

/// The console's bytes drawn on a host framebuffer the size the kernel asks for, as RGB.
fn render(bytes: &[u8]) -> Vec<[u8; 3]> {
    let (w, h) = (FB_WIDTH as usize, FB_HEIGHT as usize);
    let mut px = vec![0u32; w * h];
    // SAFETY: `px` holds w * h pixels, stride w, and outlives the console.
    let mut c = unsafe { FbConsole::new(px.as_mut_ptr(), w, h, w) };
    c.write_bytes(bytes);
    px.iter().map(|p| [(p >> 16) as u8, (p >> 8) as u8, *p as u8]).collect()
}

fn compare(want: &[[u8; 3]], got: &[[u8; 3]]) -> Result<(), String> {
    if want.len() != got.len() {
        return Err(format!("the screen has {} pixels, expected {}", got.len(), want.len()));
    }
    let lit = got.iter().filter(|p| **p != [0, 0, 0]).count();
    if lit < 1000 {
        return Err(format!("the screen is (nearly) blank: {lit} pixels lit"));
    }
    let w = FB_WIDTH as usize;
    let diff: Vec<usize> = (0..want.len()).filter(|&i| want[i] != got[i]).collect();
    match diff.first() {
        None => Ok(()),
        Some(&i) => Err(format!(
            "{} pixels differ from the console text; the first at x {} y {} (text row {})",
            diff.len(),
            i % w,
            i / w,
            i / w / exo_bsp::fbcon::CELL_H
        )),
    }
}

/// Asks QEMU's monitor for a screendump and reads the PPM back as RGB pixels.
pub(crate) fn screendump(sock: &Path, file: &Path) -> Result<Vec<[u8; 3]>, String> {
    let _ = std::fs::remove_file(file);
    let mut s = UnixStream::connect(sock).map_err(|e| format!("monitor {}: {e}", sock.display()))?;
    s.set_read_timeout(Some(Duration::from_secs(5))).map_err(|e| e.to_string())?;
    s.write_all(format!("screendump {}\n", file.display()).as_bytes()).map_err(|e| e.to_string())?;
    // The monitor answers with a fresh prompt once the command is done.
    let mut seen = Vec::new();
    let mut chunk = [0u8; 4096];
    let until = Instant::now() + Duration::from_secs(10);
    while Instant::now() < until && seen.windows(7).filter(|w| w == b"(qemu) ").count() < 2 {
        match s.read(&mut chunk) {
            Ok(0) | Err(_) => break,
            Ok(n) => seen.extend_from_slice(&chunk[..n]),
        }
    }
    let data = std::fs::read(file).map_err(|e| format!("no screendump: {e}"))?;
    parse_ppm(&data)
}

/// A binary PPM (P6, 8-bit) as pixels.
fn parse_ppm(data: &[u8]) -> Result<Vec<[u8; 3]>, String> {
    let mut fields = Vec::new();
    let mut i = 0;
    while fields.len() < 4 {
        while data.get(i).is_some_and(|b| b.is_ascii_whitespace()) {
            i += 1;
        }
        let start = i;
        while data.get(i).is_some_and(|b| !b.is_ascii_whitespace()) {
            i += 1;
        }
        if start == i {
            return Err("a truncated PPM header".into());
        }
        fields.push(String::from_utf8_lossy(&data[start..i]).into_owned());
    }
    let num = |s: &str| s.parse::<usize>().map_err(|_| format!("bad PPM header field {s:?}"));
    let (w, h) = (num(&fields[1])?, num(&fields[2])?);
    if fields[0] != "P6" || fields[3] != "255" {
        return Err(format!("not an 8-bit P6 PPM: {fields:?}"));
    }
    let px = data.get(i + 1..i + 1 + w * h * 3).ok_or("a truncated PPM")?;
    Ok(px.chunks_exact(3).map(|c| [c[0], c[1], c[2]]).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ppm_is_parsed_and_text_is_rendered() {
        let ppm = b"P6\n2 1\n255\n\x01\x02\x03\x04\x05\x06";
        assert_eq!(parse_ppm(ppm).unwrap(), vec![[1, 2, 3], [4, 5, 6]]);
        assert!(parse_ppm(b"P6\n2 1\n255\n\x01").is_err());
        let text = "exo 0.1.0 — an exokernel for 64-bit ARM\n".repeat(40);
        let screen = render(text.as_bytes());
        assert_eq!(screen.len(), (FB_WIDTH * FB_HEIGHT) as usize);
        assert!(compare(&screen, &screen).is_ok());
        let other = render(text.replace("ARM", "arm").as_bytes());
        assert!(compare(&screen, &other).unwrap_err().contains("pixels differ"));
        assert!(compare(&render(b"exo"), &render(b"exo")).unwrap_err().contains("blank"));
    }
}
