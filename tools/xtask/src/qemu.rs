//! Running exo under QEMU: interactively on this terminal, or captured for tests.

use std::io::{Read, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use crate::build::Variant;
use crate::{image, util};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Board {
    Virt,
    Rpi4,
}

impl Board {
    pub const ALL: [Board; 2] = [Board::Virt, Board::Rpi4];

    pub fn parse(s: &str) -> Result<Board, String> {
        match s {
            "virt" => Ok(Board::Virt),
            "rpi4" | "raspi4b" => Ok(Board::Rpi4),
            _ => Err(format!("unknown board `{s}` (use virt or rpi4)")),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Board::Virt => "virt",
            Board::Rpi4 => "rpi4",
        }
    }

    /// RAM the kernel should find, in MiB. raspi4b's DTB lists only the first 960 MiB of
    /// its 2 GiB (the rest sits above the VideoCore split QEMU models).
    pub fn expected_ram_mib(self) -> u64 {
        match self {
            Board::Virt => 256,
            Board::Rpi4 => 960,
        }
    }

    /// QEMU arguments that attach `image` as this board's disk: the SD slot on the Pi,
    /// a modern virtio-blk device on `virt`.
    pub fn disk_args(self, image: &Path) -> Vec<String> {
        self.disk_args_with(image, true)
    }

    /// The same, on `virt` with the modern virtio-mmio transport or (not `modern`) the
    /// legacy one (version 1, QEMU's own default). A run on the legacy transport gets no
    /// NIC: the network driver takes modern slots only.
    pub fn disk_args_with(self, image: &Path, modern: bool) -> Vec<String> {
        let file = image.display();
        match self {
            Board::Virt => {
                let mut a = vec![
                    "-drive".into(),
                    format!("file={file},if=none,format=raw,id=disk0"),
                    "-device".into(),
                    "virtio-blk-device,drive=disk0".into(),
                ];
                a.extend(["-global".into(), if modern { MODERN } else { LEGACY }.into()]);
                a
            }
            Board::Rpi4 => vec!["-drive".into(), format!("file={file},if=sd,format=raw")],
        }
    }

    /// QEMU arguments that attach a NIC: on `virt`, a modern virtio-net device on QEMU's
    /// user network, restricted (the guest reaches nothing outside QEMU's virtual network),
    /// with host TCP port `http_port` on 127.0.0.1 forwarded to the guest's port 80. QEMU's
    /// `raspi4b` emulates no NIC (the Pi 4's GENET): nothing there.
    pub fn net_args(self, http_port: Option<u16>) -> Vec<String> {
        if self == Board::Rpi4 {
            return vec![];
        }
        let fwd = http_port.map_or(String::new(), |p| format!(",hostfwd=tcp:127.0.0.1:{p}-:80"));
        ["-netdev", &format!("user,id=n0,restrict=on{fwd}"), "-device", "virtio-net-device,netdev=n0"]
            .into_iter()
            .chain(["-global", MODERN])
            .map(String::from)
            .collect()
    }

    /// The machine, the kernel and what the board needs to boot it: four cores (raspi4b
    /// always has four; `virt` gets `-smp 4`).
    pub fn machine_args(self, image: &Path) -> Vec<String> {
        self.machine_args_smp(image, 4)
    }

    /// The same with `smp` cores on `virt` (raspi4b has four whatever is asked).
    pub fn machine_args_smp(self, image: &Path, smp: u32) -> Vec<String> {
        let mut a: Vec<String> = match self {
            Board::Virt => ["-M", "virt", "-cpu", "cortex-a72", "-m", "256M", "-smp", &smp.to_string()]
                .map(String::from)
                .to_vec(),
            Board::Rpi4 => {
                let dtb = util::root().join("bsp/testdata/bcm2711-rpi-4-b.dtb");
                vec!["-M".into(), "raspi4b".into(), "-dtb".into(), dtb.display().to_string()]
            }
        };
        a.push("-kernel".into());
        a.push(image.display().to_string());
        a
    }
}

/// Parsed options shared by `qemu` and `gdb`.
struct Opts {
    board: Board,
    gdb: bool,
    /// Boot the test image (`--test-image`): the kernel's self-tests, init's suites.
    variant: Variant,
    append: String,
    /// Cores on `virt` (`--smp N`, 4 by default).
    smp: u32,
    /// Host port forwarded to the guest's port 80 (`--http-port`).
    http_port: u16,
    extra: Vec<String>,
}

fn parse_opts(args: &[String]) -> Result<Opts, String> {
    let mut o = Opts {
        board: Board::Virt,
        gdb: false,
        variant: Variant::Production,
        append: String::new(),
        smp: 4,
        http_port: 8080,
        extra: vec![],
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--board" => o.board = Board::parse(it.next().ok_or("--board needs a value")?)?,
            "--gdb" => o.gdb = true,
            "--test-image" => o.variant = Variant::Test,
            "--smp" => {
                let n = it.next().ok_or("--smp needs a value")?;
                o.smp = n.parse().ok().filter(|n| (1..=4).contains(n)).ok_or("--smp takes 1 to 4")?;
            }
            "--append" => o.append = it.next().ok_or("--append needs a value")?.clone(),
            "--http-port" => {
                let p = it.next().ok_or("--http-port needs a value")?;
                o.http_port = p.parse().map_err(|_| format!("--http-port: `{p}` is not a port"))?;
            }
            "--" => o.extra.extend(it.by_ref().cloned()),
            other => return Err(format!("unknown option `{other}` (see `cargo xtask help`)")),
        }
    }
    Ok(o)
}

pub fn cmd_qemu(args: &[String]) -> Result<(), String> {
    let o = parse_opts(args)?;
    let built = image::Built::build()?;
    let card = image::for_qemu(&built)?; // a newcomer's first run makes the SD card too
    let kernel = o.variant.build()?.image;
    util::ensure_qemu()?;
    let mut cmd = Command::new("qemu-system-aarch64");
    cmd.args(o.board.machine_args_smp(&kernel, o.smp)).args(o.board.disk_args(&card)).arg("-nographic");
    cmd.args(o.board.net_args(Some(o.http_port)));
    if !o.append.is_empty() {
        cmd.arg("-append").arg(&o.append);
    }
    if o.gdb {
        cmd.args(["-S", "-gdb", "tcp::1234"]);
        eprintln!("xtask: QEMU waits for gdb on localhost:1234: run `cargo xtask gdb` in another terminal");
    }
    cmd.args(&o.extra);
    let what = if o.variant == Variant::Test { " (the test image)" } else { "" };
    eprintln!("xtask: booting exo{what} on QEMU {} — quit with Ctrl-A then X", o.board.name());
    util::run(&mut cmd)
}

pub fn cmd_gdb(args: &[String]) -> Result<(), String> {
    let o = parse_opts(args)?;
    let elf = o.variant.artifacts().elf;
    if !elf.exists() {
        return Err("no kernel ELF yet: run `cargo xtask qemu --gdb` first".into());
    }
    let gdb = ["gdb-multiarch", "aarch64-linux-gnu-gdb", "gdb"]
        .into_iter()
        .find(|g| Command::new(g).arg("--version").stdout(Stdio::null()).status().is_ok())
        .ok_or("no gdb found: install it with `sudo apt-get install gdb-multiarch`")?;
    util::run(Command::new(gdb).arg(&elf).args([
        "-ex",
        "set architecture aarch64",
        "-ex",
        "target remote localhost:1234",
    ]))
}

/// How a captured run ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum End {
    /// QEMU exited with this status (the kernel's semihosting exit code).
    Exited(i32),
    /// Nothing ended the run before the deadline; QEMU was killed.
    Hung,
}

/// A QEMU run whose console is captured and can be typed into.
pub struct Session {
    child: Child,
    output: Arc<(Mutex<Vec<u8>>, Condvar)>,
    /// The threads copying QEMU's stdout and stderr into `output`.
    pumps: Vec<std::thread::JoinHandle<()>>,
    /// How much of the output `expect` has consumed.
    seen: usize,
    deadline: Instant,
}

/// What a test boots.
pub struct RunSpec<'a> {
    pub board: Board,
    pub image: &'a Path,
    pub bootargs: String,
    pub timeout: Duration,
    pub extra: Vec<String>,
}

/// The virtio-mmio transport every run asks for, and the one `disk_args_with` can ask for.
const MODERN: &str = "virtio-mmio.force-legacy=false";
const LEGACY: &str = "virtio-mmio.force-legacy=true";

/// Instruction counting: every run the same.
const ICOUNT: [&str; 4] = ["-icount", "shift=0,align=off,sleep=off", "-seed", "1"];

impl Session {
    /// Starts QEMU with the console on pipes, semihosting on (so the kernel can exit with a
    /// status) and instruction counting on, so runs are deterministic.
    pub fn start(spec: &RunSpec) -> Result<Session, String> {
        let mut cmd = Command::new("qemu-system-aarch64");
        cmd.args(spec.board.machine_args(spec.image))
            .args(["-display", "none", "-serial", "stdio", "-monitor", "none", "-no-reboot"])
            .args(["-semihosting-config", "enable=on,target=native"])
            // A run the host talks to over a forwarded port keeps real time: the guest's
            // timeouts then mean what they say to the host's client.
            .args(if spec.extra.iter().any(|a| a.contains("hostfwd")) { &[][..] } else { &ICOUNT[..] })
            .arg("-append")
            .arg(format!("exo.exit=semihosting {}", spec.bootargs))
            .args(&spec.extra)
            .args(if spec.extra.iter().any(|a| a == "-netdev" || a == LEGACY) {
                vec![]
            } else {
                spec.board.net_args(None)
            })
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().map_err(|e| format!("could not start qemu-system-aarch64: {e}"))?;
        let output = Arc::new((Mutex::new(Vec::new()), Condvar::new()));
        let mut pumps = vec![];
        for stream in [
            child.stdout.take().map(|s| Box::new(s) as Box<dyn Read + Send>),
            child.stderr.take().map(|s| Box::new(s) as Box<dyn Read + Send>),
        ]
        .into_iter()
        .flatten()
        {
            let out = output.clone();
            pumps.push(std::thread::spawn(move || pump(stream, out)));
        }
        Ok(Session { child, output, pumps, seen: 0, deadline: Instant::now() + spec.timeout })
    }

    /// Waits until `needle` appears in output not yet consumed; consumes through it.
    pub fn expect(&mut self, needle: &str) -> Result<(), String> {
        let (lock, cv) = &*self.output;
        let mut buf = lock.lock().unwrap();
        loop {
            let text = String::from_utf8_lossy(&buf[self.seen..]);
            if let Some(i) = text.find(needle) {
                self.seen += text[..i + needle.len()].len();
                return Ok(());
            }
            let now = Instant::now();
            if now >= self.deadline {
                return Err(format!("timed out waiting for {needle:?}"));
            }
            buf = cv.wait_timeout(buf, self.deadline - now).unwrap().0;
        }
    }

    /// Waits until `end` appears in output not yet consumed; consumes through it and
    /// returns what came before it.
    pub fn read_until(&mut self, end: &str) -> Result<String, String> {
        let from = self.seen;
        self.expect(end)?;
        let buf = self.output.0.lock().unwrap();
        let text = String::from_utf8_lossy(&buf[from..self.seen]).into_owned();
        Ok(text[..text.len() - end.len()].to_string())
    }

    /// Plays a script: for each step, waits for its text, then types its answer (if any).
    /// On failure the error ends with the console's last lines.
    pub fn script(&mut self, steps: &[(&str, &str)]) -> Result<(), String> {
        for (wait_for, answer) in steps {
            let step =
                self.expect(wait_for)
                    .and_then(|_| if answer.is_empty() { Ok(()) } else { self.send(answer) });
            if let Err(e) = step {
                let out = String::from_utf8_lossy(&self.output.0.lock().unwrap()).into_owned();
                return Err(format!(
                    "{e}
{}",
                    tail(&out, 25)
                ));
            }
        }
        Ok(())
    }

    /// Types `text` on the console.
    pub fn send(&mut self, text: &str) -> Result<(), String> {
        let stdin = self.child.stdin.as_mut().ok_or("QEMU's stdin is closed")?;
        stdin.write_all(text.as_bytes()).and_then(|_| stdin.flush()).map_err(|e| format!("send: {e}"))
    }

    /// Pulls the plug: kills QEMU at once (a power cut, as far as the disk is concerned) and
    /// returns the console output.
    pub fn kill(mut self) -> String {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.drain()
    }

    /// Waits for QEMU to exit, or kills it at the deadline.
    pub fn finish(mut self) -> (End, String) {
        let end = loop {
            match self.child.try_wait() {
                Ok(Some(status)) => break End::Exited(status.code().unwrap_or(-1)),
                Ok(None) if Instant::now() < self.deadline => std::thread::sleep(Duration::from_millis(20)),
                _ => {
                    let _ = self.child.kill();
                    let _ = self.child.wait();
                    break End::Hung;
                }
            }
        };
        (end, self.drain())
    }

    /// Everything QEMU wrote, once it has exited and the pipes have run dry.
    fn drain(self) -> String {
        for p in self.pumps {
            let _ = p.join();
        }
        String::from_utf8_lossy(&self.output.0.lock().unwrap()).into_owned()
    }
}

fn pump(mut from: Box<dyn Read + Send>, to: Arc<(Mutex<Vec<u8>>, Condvar)>) {
    let mut chunk = [0u8; 4096];
    while let Ok(n) = from.read(&mut chunk) {
        if n == 0 {
            break;
        }
        to.0.lock().unwrap().extend_from_slice(&chunk[..n]);
        to.1.notify_all();
    }
}

/// The last `n` lines of console output, indented, for a failure report.
pub fn tail(out: &str, n: usize) -> String {
    let lines: Vec<&str> = out.lines().collect();
    let from = lines.len().saturating_sub(n);
    let mut s = format!("        --- last {} console lines ---\n", lines.len() - from);
    for l in &lines[from..] {
        s.push_str("        | ");
        s.push_str(l);
        s.push('\n');
    }
    s
}
