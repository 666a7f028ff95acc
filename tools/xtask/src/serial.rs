//! Serial ports (and sockets, for QEMU) as a chainload [`Link`], and the terminal that
//! follows a boot.

use std::io::{self, IsTerminal, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use exo_chainload::Link;
use serialport::{SerialPort, TTYPort};

/// A byte stream with a read timeout.
pub trait Port: Read + Write + Send {
    fn set_timeout(&mut self, d: Duration) -> io::Result<()>;
    fn try_clone_port(&self) -> io::Result<Box<dyn Port>>;
}

impl Port for TTYPort {
    fn set_timeout(&mut self, d: Duration) -> io::Result<()> {
        SerialPort::set_timeout(self, d).map_err(io::Error::other)
    }
    fn try_clone_port(&self) -> io::Result<Box<dyn Port>> {
        Ok(Box::new(self.try_clone_native().map_err(io::Error::other)?))
    }
}

impl Port for TcpStream {
    fn set_timeout(&mut self, d: Duration) -> io::Result<()> {
        self.set_read_timeout(Some(d.max(Duration::from_millis(1))))
    }
    fn try_clone_port(&self) -> io::Result<Box<dyn Port>> {
        Ok(Box::new(self.try_clone()?))
    }
}

/// Opens a serial port at `baud`, 8N1, exclusively, or says plainly why not.
pub fn open(path: &str, baud: u32) -> Result<TTYPort, String> {
    use serialport::ErrorKind as K;
    serialport::new(path, baud).timeout(Duration::from_millis(100)).open_native().map_err(|e| match e.kind {
        K::Io(io::ErrorKind::NotFound) => {
            let ports = serialport::available_ports().unwrap_or_default();
            let names: Vec<_> = ports.iter().map(|p| p.port_name.as_str()).collect();
            format!(
                "no serial port {path}: is the USB-serial adapter plugged in? Ports here: {}",
                if names.is_empty() { "none found".into() } else { names.join(", ") }
            )
        }
        K::NoDevice => format!(
            "{path} is busy: another program has it open (screen, minicom, picocom, tio, \
             ModemManager, another chainboot). Close it and try again"
        ),
        K::Io(io::ErrorKind::PermissionDenied) => format!(
            "no permission to open {path}: add yourself to its group (`sudo usermod -aG dialout $USER`, \
             then log in again)"
        ),
        _ => format!("cannot open {path} at {baud} baud: {e}"),
    })
}

/// A [`Port`] as a protocol link. I/O errors read as silence (the protocol's timeouts
/// report them); the first one is kept for the error message.
pub struct PortLink {
    pub port: Box<dyn Port>,
    buf: Vec<u8>,
    pos: usize,
    timeout: Option<Duration>,
    pub error: Option<io::Error>,
    /// Bytes received so far (to tell "silent" from "noise" when nothing makes sense).
    pub received: usize,
}

impl PortLink {
    pub fn new(port: Box<dyn Port>) -> PortLink {
        PortLink { port, buf: vec![0; 4096], pos: 0, timeout: None, error: None, received: 0 }
    }

    /// Bytes already read from the port but not yet consumed.
    pub fn take_pending(&mut self) -> Vec<u8> {
        let v = self.buf[self.pos..].to_vec();
        self.buf.truncate(self.pos);
        v
    }
}

impl Link for PortLink {
    fn send(&mut self, bytes: &[u8]) {
        if let Err(e) = self.port.write_all(bytes).and_then(|_| self.port.flush()) {
            self.error.get_or_insert(e);
        }
    }

    fn recv(&mut self, timeout_ms: u32) -> Option<u8> {
        if self.pos < self.buf.len() {
            self.pos += 1;
            return Some(self.buf[self.pos - 1]);
        }
        let t = Duration::from_millis(timeout_ms.max(1) as u64);
        if self.timeout != Some(t) {
            if let Err(e) = self.port.set_timeout(t) {
                self.error.get_or_insert(e);
            }
            self.timeout = Some(t);
        }
        self.buf.resize(4096, 0);
        match self.port.read(&mut self.buf) {
            Ok(0) => {
                self.error.get_or_insert(io::Error::new(io::ErrorKind::UnexpectedEof, "the port closed"));
                std::thread::sleep(t); // a closed port is silence, not a busy loop
                self.buf.clear();
                self.pos = 0;
                None
            }
            Ok(n) => {
                self.buf.truncate(n);
                self.received += n;
                self.pos = 1;
                Some(self.buf[0])
            }
            Err(e) => {
                if !matches!(e.kind(), io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock) {
                    self.error.get_or_insert(e);
                    std::thread::sleep(t);
                }
                self.buf.clear();
                self.pos = 0;
                None
            }
        }
    }
}

/// Puts this terminal in raw mode until dropped (so Ctrl-C and friends go to the board).
struct RawMode(Option<libc::termios>);

impl RawMode {
    fn enter() -> RawMode {
        if !io::stdin().is_terminal() {
            return RawMode(None);
        }
        let mut t = std::mem::MaybeUninit::<libc::termios>::uninit();
        // SAFETY: fd 0 is a terminal; tcgetattr fills the struct on success.
        if unsafe { libc::tcgetattr(0, t.as_mut_ptr()) } != 0 {
            return RawMode(None);
        }
        // SAFETY: initialised by the successful tcgetattr above.
        let saved = unsafe { t.assume_init() };
        let mut raw = saved;
        // SAFETY: `raw` is a valid, initialised termios that cfmakeraw only rewrites.
        unsafe { libc::cfmakeraw(&mut raw) };
        // SAFETY: fd 0 is a terminal and `raw` a valid termios that tcsetattr only reads.
        unsafe { libc::tcsetattr(0, libc::TCSANOW, &raw) };
        RawMode(Some(saved))
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        if let Some(t) = self.0 {
            // SAFETY: restores the settings tcgetattr returned for the same fd.
            unsafe { libc::tcsetattr(0, libc::TCSANOW, &t) };
        }
    }
}

/// Ctrl-]: leaves the terminal (as in telnet).
const QUIT: u8 = 0x1d;

/// Copies the port to this terminal and the keyboard to the port until Ctrl-] or until the
/// port goes away. Without a keyboard (stdin at its end) the board is shown until then.
pub fn terminal(mut link: PortLink) -> Result<(), String> {
    let pending = link.take_pending();
    let mut reader = link.port.try_clone_port().map_err(|e| format!("cannot clone the port: {e}"))?;
    reader.set_timeout(Duration::from_millis(200)).map_err(|e| e.to_string())?;
    let _raw = RawMode::enter();
    let out = std::thread::spawn(move || {
        let mut stdout = io::stdout();
        let _ = stdout.write_all(&pending).and_then(|_| stdout.flush());
        let mut buf = [0u8; 4096];
        loop {
            match reader.read(&mut buf) {
                Ok(0) => return "the port closed".to_string(),
                Ok(n) => {
                    let _ = stdout.write_all(&buf[..n]).and_then(|_| stdout.flush());
                }
                Err(e) if matches!(e.kind(), io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock) => {}
                Err(e) => return format!("the port failed: {e}"),
            }
        }
    });
    let mut stdin = io::stdin().lock();
    let mut key = [0u8; 64];
    loop {
        if out.is_finished() {
            let why = out.join().unwrap_or_default();
            eprint!("\r\nxtask: {why} (the board powered off or reset, or the adapter was unplugged)\r\n");
            return Ok(());
        }
        let mut fds = libc::pollfd { fd: 0, events: libc::POLLIN, revents: 0 };
        // SAFETY: one valid pollfd, for the duration of the call.
        if unsafe { libc::poll(&mut fds, 1, 200) } <= 0 {
            continue; // no key yet: look at the port again
        }
        match stdin.read(&mut key) {
            Ok(0) | Err(_) => {
                // No keyboard (a pipe that ended): keep showing the board until the port closes.
                let why = out.join().unwrap_or_default();
                eprint!("\r\nxtask: {why}\r\n");
                return Ok(());
            }
            Ok(n) => {
                if let Some(q) = key[..n].iter().position(|&b| b == QUIT) {
                    let _ = link.port.write_all(&key[..q]);
                    eprint!("\r\nxtask: left the terminal (Ctrl-])\r\n");
                    return Ok(());
                }
                link.port.write_all(&key[..n]).map_err(|e| format!("writing to the port: {e}"))?;
            }
        }
    }
}
