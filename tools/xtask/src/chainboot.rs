//! `cargo xtask chainboot`: send the kernel to a board running the chainloader, then be its
//! serial terminal.

use std::io::Write;
use std::path::PathBuf;

use exo_chainload::host::{self, Observer, Options, SendError};

use crate::build;
use crate::progress::Progress;
use crate::serial::{self, PortLink};

pub const HELP: &str = "\
cargo xtask chainboot --port DEV [options]
  Sends target/exo/kernel8.img (built first) to a board running the chainloader
  (config.txt: kernel=chainloader.img), then is its serial terminal: quit with Ctrl-].
      --port DEV          Serial port, e.g. /dev/ttyUSB0 (Linux), /dev/cu.usbserial-* (macOS)
      --baud N            Port speed (default 115200, what the loader and kernel use)
      --kernel FILE       Send FILE instead of building the kernel (for instance the test
                          image, target/exo/test/kernel8.img, see docs/apps.md)
      --wait SECS         How long to wait for the loader (default 60): reset the board now
      --no-terminal       Exit once the kernel is sent
";

struct Opts {
    port: String,
    baud: u32,
    kernel: Option<PathBuf>,
    wait_s: u32,
    terminal: bool,
}

fn parse(args: &[String]) -> Result<Opts, String> {
    let mut o = Opts { port: String::new(), baud: 115_200, kernel: None, wait_s: 60, terminal: true };
    let mut it = args.iter();
    let num = |v: Option<&String>, what: &str| -> Result<u32, String> {
        v.and_then(|v| v.parse().ok()).ok_or(format!("{what} needs a number"))
    };
    while let Some(a) = it.next() {
        match a.as_str() {
            "--port" => o.port = it.next().ok_or("--port needs a device")?.clone(),
            "--baud" => o.baud = num(it.next(), "--baud")?,
            "--kernel" => o.kernel = Some(it.next().ok_or("--kernel needs a file")?.into()),
            "--wait" => o.wait_s = num(it.next(), "--wait")?,
            "--no-terminal" => o.terminal = false,
            other => return Err(format!("unknown option `{other}`\n\n{HELP}")),
        }
    }
    if o.port.is_empty() {
        return Err(format!("--port is required\n\n{HELP}"));
    }
    Ok(o)
}

pub fn cmd_chainboot(args: &[String]) -> Result<(), String> {
    if args.iter().any(|a| a == "-h" || a == "--help") {
        print!("{HELP}");
        return Ok(());
    }
    let o = parse(args)?;
    // The port first: a missing or busy port is worth knowing before a build.
    let port = serial::open(&o.port, o.baud)?;
    let kernel = match &o.kernel {
        Some(k) => k.clone(),
        None => build::build_all()?.image,
    };
    let image = std::fs::read(&kernel).map_err(|e| format!("{}: {e}", kernel.display()))?;
    let mut link = PortLink::new(Box::new(port));
    eprintln!(
        "xtask: waiting up to {} s for the chainloader on {} at {} baud — reset or power on the board now",
        o.wait_s, o.port, o.baud
    );
    let options = Options { ready_ms: o.wait_s.saturating_mul(1000), ..Options::DEFAULT };
    send(&mut link, &image, &options, &o.port)?;
    if !o.terminal {
        return Ok(());
    }
    eprintln!("xtask: kernel sent; this is now the board's console (quit with Ctrl-])");
    serial::terminal(link)
}

/// Sends `image` with a progress bar, turning failures into advice.
pub fn send(link: &mut PortLink, image: &[u8], options: &Options, port: &str) -> Result<(), String> {
    let mut show = Show { bar: Progress::new("xtask: sending the kernel", image.len() as u64), line: vec![] };
    let result = host::send(link, image, options, &mut show);
    show.bar.finish();
    let crc = result.map_err(|e| advice(e, link, options, port))?;
    eprintln!("xtask: the loader checked {} bytes (CRC-32 {crc:#010x}) and boots them", image.len());
    Ok(())
}

fn advice(e: SendError, link: &PortLink, options: &Options, port: &str) -> String {
    let io = link.error.as_ref().map(|e| format!(" (port error: {e})")).unwrap_or_default();
    match e {
        SendError::NoLoader => format!(
            "no chainloader answered on {port} within {} s{io}; received {} byte(s) that were not its \
             `[exo R ...]` lines.\n  Check: the card's config.txt says kernel=chainloader.img \
             (`cargo xtask image --boot chainloader`); the board was reset after this started; \
             the adapter's TX goes to pin 10 (GPIO 15) and RX to pin 8 (GPIO 14), GND to pin 6; \
             the baud rate is 115200 (garbage means a wrong rate). See README.md, \"On a real Raspberry Pi 4\".",
            options.ready_ms / 1000,
            link.received
        ),
        other => format!("{other}{io}"),
    }
}

/// Shows the loader's messages and the transfer's progress.
struct Show {
    bar: Progress,
    line: Vec<u8>,
}

impl Observer for Show {
    fn progress(&mut self, done: usize, _total: usize) {
        self.bar.set(done as u64);
    }
    fn text(&mut self, b: u8) {
        match b {
            b'\n' => {
                let line = String::from_utf8_lossy(&self.line).trim_end().to_string();
                if !line.is_empty() {
                    self.bar.note(&format!("  | {line}"));
                }
                self.line.clear();
            }
            b'\r' => {}
            _ if self.line.len() < 200 => self.line.push(b),
            _ => {}
        }
    }
    fn retry(&mut self, why: &SendError, attempt: u32) {
        self.bar.note(&format!("xtask: attempt {attempt} failed: {why}; trying again"));
    }
    fn resend(&mut self, index: u32) {
        self.bar.note(&format!("xtask: chunk {index} arrived damaged; sending it again"));
        let _ = std::io::stderr().flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serialport::SerialPort;

    fn err(args: &[&str]) -> String {
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        cmd_chainboot(&args).unwrap_err()
    }

    #[test]
    fn a_missing_port_is_named() {
        let e = err(&["--port", "/dev/ttyEXO-NOPE", "--kernel", "/dev/null"]);
        assert!(e.contains("no serial port /dev/ttyEXO-NOPE"), "{e}");
    }

    #[test]
    fn a_busy_port_is_reported() {
        use std::os::fd::AsRawFd;
        let (_master, slave) = serialport::TTYPort::pair().unwrap();
        let name = slave.name().unwrap();
        // Another program holds the port, with the lock picocom, tio and serialport take.
        let other = std::fs::OpenOptions::new().read(true).write(true).open(&name).unwrap();
        // SAFETY: flock on a file descriptor this test owns.
        assert_eq!(unsafe { libc::flock(other.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) }, 0);
        let e = err(&["--port", &name, "--kernel", "/dev/null"]);
        assert!(e.contains("is busy"), "{e}");
    }

    #[test]
    fn a_silent_loader_is_reported_with_advice() {
        let (_master, slave) = serialport::TTYPort::pair().unwrap();
        let name = slave.name().unwrap();
        drop(slave);
        let kernel = std::env::temp_dir().join(format!("exo-chainboot-test-{}", std::process::id()));
        std::fs::write(&kernel, b"a kernel").unwrap();
        let e = err(&["--port", &name, "--kernel", kernel.to_str().unwrap(), "--wait", "1", "--no-terminal"]);
        let _ = std::fs::remove_file(&kernel);
        assert!(e.contains("no chainloader answered on"), "{e}");
        assert!(e.contains("kernel=chainloader.img"), "{e}");
    }

    #[test]
    fn options_are_checked() {
        assert!(err(&[]).contains("--port is required"));
        assert!(err(&["--port", "x", "--baud", "fast"]).contains("--baud needs a number"));
    }
}
