//! `cargo xtask image`: the SD card a Raspberry Pi 4 boots, also the card QEMU attaches.
//! The layout and every config.txt line are explained in docs/sdcard.md.

use std::path::{Path, PathBuf};

use crate::card::{self, BootFile, MIN_CARD};
use crate::{build, loader, util};

pub const HELP: &str = "\
cargo xtask image [options]
  Writes target/exo/sdcard.img: an MBR, a FAT32 boot partition (firmware, config.txt,
  kernel8.img, chainloader.img, the apps) and an exo-lfs partition (type 0x7f).
      --firmware DIR      Raspberry Pi firmware files (start4.elf, fixup4.dat,
                          bcm2711-rpi-4-b.dtb, overlays/disable-bt.dtbo). Repeat to look in
                          several places. Without it the card boots QEMU only, and says so.
      --boot kernel|chainloader   What the Pi boots: exo itself (default) or the chainloader
      --size SIZE         Card size, a power of two of at least 256M (default 256M)
      --out FILE          Where to write it (default target/exo/sdcard.img)
      --fresh             Format the LFS partition again (a rebuild keeps its contents)
      --test-image        Put the test image's kernel8.img on the card (exo.test=NAME in
                          cmdline.txt runs a test suite or the benchmarks on the board)
";

/// Firmware files a Pi 4 cannot boot without; overlays live in `overlays/`.
pub const FIRMWARE: &[&str] =
    &["start4.elf", "fixup4.dat", "bcm2711-rpi-4-b.dtb", "overlays/disable-bt.dtbo"];
/// Copied when present: the Pi 400 and CM4 device trees, the overlay map newer firmware
/// reads, and the licence the firmware is distributed under.
pub const FIRMWARE_OPTIONAL: &[&str] =
    &["bcm2711-rpi-400.dtb", "bcm2711-rpi-cm4.dtb", "overlays/overlay_map.dtb", "LICENCE.broadcom"];

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Opts {
    pub firmware: Vec<PathBuf>,
    pub chainload: bool,
    pub size: u64,
    pub out: PathBuf,
    pub fresh: bool,
    /// The card's kernel8.img is the test image.
    pub test_image: bool,
}

impl Default for Opts {
    fn default() -> Self {
        Opts {
            firmware: vec![],
            chainload: false,
            size: MIN_CARD,
            out: default_out(),
            fresh: false,
            test_image: false,
        }
    }
}

pub fn default_out() -> PathBuf {
    util::out_dir().join("sdcard.img")
}

fn parse(args: &[String]) -> Result<Opts, String> {
    let mut o = Opts::default();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut val = || it.next().ok_or(format!("{a} needs a value"));
        match a.as_str() {
            "--firmware" => o.firmware.push(val()?.into()),
            "--boot" => {
                o.chainload = match val()?.as_str() {
                    "kernel" => false,
                    "chainloader" => true,
                    other => return Err(format!("--boot {other}: use kernel or chainloader")),
                }
            }
            "--size" => o.size = size_arg(val()?)?,
            "--out" => o.out = val()?.into(),
            "--fresh" => o.fresh = true,
            "--test-image" => o.test_image = true,
            other => return Err(format!("unknown option `{other}`\n\n{HELP}")),
        }
    }
    if !o.size.is_power_of_two() || o.size < MIN_CARD || o.size > 1 << 41 {
        return Err(format!(
            "--size must be a power of two from 256M to 2T (QEMU's SD card needs one), not {}",
            o.size
        ));
    }
    Ok(o)
}

fn size_arg(s: &str) -> Result<u64, String> {
    exo_format::size::parse_size(s).ok_or(format!("bad size {s:?} (like 256M or 1G)"))
}

pub fn cmd_image(args: &[String]) -> Result<(), String> {
    if args.iter().any(|a| a == "-h" || a == "--help") {
        print!("{HELP}");
        return Ok(());
    }
    let o = parse(args)?;
    let mut built = Built::build()?;
    if o.test_image {
        built.kernel = build::build_test()?.image;
    }
    make(&o, &built)
}

/// Programs copied to `apps/` besides `build::APPS`, when the build made them (init is
/// embedded in the kernel too, and may embed others).
const SYSTEM_PROGRAMS: &[&str] = &["init", "shell"];

/// What the card is made from, besides the firmware.
pub struct Built {
    pub kernel: PathBuf,
    pub chainloader: PathBuf,
    /// (name, ELF) for each app.
    pub apps: Vec<(String, PathBuf)>,
}

impl Built {
    pub fn build() -> Result<Built, String> {
        let kernel = build::build_all()?.image;
        let chainloader = loader::build()?;
        let mut names: Vec<&str> = build::APPS.to_vec();
        names.extend(build::OWN_PACKAGE_APPS.iter().map(|(_, program)| *program));
        for p in SYSTEM_PROGRAMS {
            if !names.contains(p) && util::out_dir().join(p).is_file() {
                names.push(p);
            }
        }
        let apps = names.iter().map(|a| (a.to_string(), util::out_dir().join(a))).collect();
        Ok(Built { kernel, chainloader, apps })
    }
}

/// Writes the card (refreshing an existing one of the same size unless `--fresh`).
pub fn make(o: &Opts, b: &Built) -> Result<(), String> {
    let files = boot_files(o, b)?;
    let keep = !o.fresh && std::fs::metadata(&o.out).is_ok_and(|m| m.len() == o.size) && has_our_mbr(&o.out);
    card::write(&o.out, o.size, &files, keep)?;
    std::fs::write(stamp_path(&o.out), stamp(o, b)).map_err(|e| format!("writing the stamp: {e}"))?;
    crate::progress::say(&format!("xtask: {} ({} MiB)", o.out.display(), o.size >> 20));
    if o.firmware.is_empty() {
        crate::progress::say(
            "xtask: note: no --firmware given: this card boots QEMU only, not a Raspberry Pi \
             (see docs/sdcard.md)",
        );
    } else {
        crate::progress::say(&format!(
            "xtask: write it with `sudo dd if={} of=/dev/sdX bs=4M conv=fsync` (or Raspberry Pi Imager, \
             balenaEtcher); the Pi boots {}",
            o.out.display(),
            if o.chainload { "the chainloader" } else { "exo" }
        ));
    }
    Ok(())
}

fn has_our_mbr(path: &Path) -> bool {
    let mut s0 = [0u8; 512];
    let ok =
        std::fs::File::open(path).and_then(|f| std::os::unix::fs::FileExt::read_exact_at(&f, &mut s0, 0));
    ok.is_ok()
        && exo_format::mbr::parse(&s0, None).is_ok_and(|p| {
            p[1].is_some_and(|p| p.kind == exo_format::mbr::TYPE_EXO_LFS && p.start == card::LFS_START)
        })
}

fn read(p: &Path) -> Result<Vec<u8>, String> {
    std::fs::read(p).map_err(|e| format!("{}: {e}", p.display()))
}

/// Every file of the boot partition, firmware included; refuses a firmware set that could
/// not boot a Pi.
fn boot_files(o: &Opts, b: &Built) -> Result<Vec<BootFile>, String> {
    let mut files = vec![
        BootFile { path: "config.txt".into(), data: config_txt(o).into_bytes() },
        BootFile { path: "cmdline.txt".into(), data: b"\n".to_vec() },
        BootFile { path: "kernel8.img".into(), data: read(&b.kernel)? },
        BootFile { path: "chainloader.img".into(), data: read(&b.chainloader)? },
    ];
    for (name, elf) in &b.apps {
        files.push(BootFile { path: format!("apps/{name}"), data: read(elf)? });
    }
    if o.firmware.is_empty() {
        let dtb = util::root().join("bsp/testdata/bcm2711-rpi-4-b.dtb");
        files.push(BootFile { path: "bcm2711-rpi-4-b.dtb".into(), data: read(&dtb)? });
        files.push(BootFile { path: "QEMU-ONLY.TXT".into(), data: QEMU_ONLY.as_bytes().to_vec() });
        return Ok(files);
    }
    let find = |name: &str| o.firmware.iter().map(|d| d.join(name)).find(|p| p.is_file());
    let missing: Vec<&str> = FIRMWARE.iter().copied().filter(|n| find(n).is_none()).collect();
    if !missing.is_empty() {
        return Err(format!(
            "the firmware is incomplete: no {} in {}.\n  A Raspberry Pi 4 cannot boot without them, so no card was \
             written. Get them from the Raspberry Pi firmware repository's boot/ folder \
             (github.com/raspberrypi/firmware, `boot/` and `boot/overlays/`), or on Debian from the \
             raspi-firmware package (non-free-firmware; start4.elf and fixup4.dat in /usr/lib/raspi-firmware) \
             plus that repository's overlays. See docs/sdcard.md.",
            missing.join(", "),
            o.firmware.iter().map(|d| d.display().to_string()).collect::<Vec<_>>().join(" or ")
        ));
    }
    for name in FIRMWARE.iter().chain(FIRMWARE_OPTIONAL) {
        if let Some(p) = find(name) {
            files.push(BootFile { path: name.to_string(), data: read(&p)? });
        }
    }
    Ok(files)
}

const QEMU_ONLY: &str = "\
This card was made without the Raspberry Pi firmware (start4.elf, fixup4.dat), so a real
Raspberry Pi 4 cannot boot it. QEMU does not need the firmware. To make a card for a Pi:
    cargo xtask image --firmware DIR
where DIR holds the firmware (see docs/sdcard.md in the exo repository).
";

/// config.txt; docs/sdcard.md explains each line.
pub fn config_txt(o: &Opts) -> String {
    let mut s = String::from("# exo: Raspberry Pi 4 boot configuration, written by `cargo xtask image`.\n");
    if o.firmware.is_empty() {
        s += "# QEMU ONLY: this card has no firmware (start4.elf, fixup4.dat); a Pi will not boot it.\n";
    }
    s += "\
# Start the Cortex-A72 cores in 64-bit mode.
arm_64bit=1
# The image the firmware loads and jumps to with the device tree in x0: exo itself
# (kernel8.img), or the chainloader (chainloader.img), which waits on the UART for
# `cargo xtask chainboot`. Switch by editing this line.
";
    s += if o.chainload { "kernel=chainloader.img\n" } else { "kernel=kernel8.img\n" };
    s += "\
# Turn the primary UART on: GPIO 14 (TXD, pin 8) and GPIO 15 (RXD, pin 10).
enable_uart=1
# Make the PL011 (UART0) the primary UART, on GPIO 14/15, by switching Bluetooth off:
# exo's console and the chainloader use the PL011, not the mini UART.
dtoverlay=disable-bt
# UART0's reference clock. exo programs 115200 baud from 48 MHz (the default, stated here
# so that nothing else changes it), and the firmware's own messages use the same speed.
init_uart_clock=48000000
init_uart_baud=115200
";
    s
}

fn stamp_path(out: &Path) -> PathBuf {
    let mut p = out.as_os_str().to_owned();
    p.push(".stamp");
    p.into()
}

/// What the card was made from: the options and every input's CRC-32 (contents, not times:
/// `cargo xtask build` rewrites kernel8.img even when nothing changed).
fn stamp(o: &Opts, b: &Built) -> String {
    let mut s = format!("size {}\nchainload {}\n", o.size, o.chainload);
    for d in &o.firmware {
        s += &format!("firmware {}\n", d.display());
    }
    let mut inputs = vec![b.kernel.clone(), b.chainloader.clone()];
    inputs.extend(b.apps.iter().map(|a| a.1.clone()));
    for d in &o.firmware {
        inputs.extend(FIRMWARE.iter().chain(FIRMWARE_OPTIONAL).map(|n| d.join(n)));
    }
    for p in inputs {
        let sum = std::fs::read(&p).map(|d| format!("{:08x}", exo_format::crc32::crc32(&d)));
        s += &format!("input {} {}\n", p.display(), sum.unwrap_or_else(|_| "absent".into()));
    }
    s
}

/// The card `cargo xtask qemu` attaches: the default one, made or brought up to date with
/// the options it was last made with.
pub fn for_qemu(b: &Built) -> Result<PathBuf, String> {
    let out = default_out();
    up_to_date(&out, b)?;
    Ok(out)
}

/// Makes the card at `out` when it is missing or its inputs changed; says whether it did.
pub fn up_to_date(out: &Path, b: &Built) -> Result<bool, String> {
    let old = std::fs::read_to_string(stamp_path(out)).unwrap_or_default();
    let mut o = Opts { out: out.to_path_buf(), ..Opts::default() };
    for line in old.lines() {
        match line.split_once(' ') {
            Some(("size", v)) => o.size = v.parse().unwrap_or(o.size),
            Some(("chainload", v)) => o.chainload = v == "true",
            Some(("firmware", v)) => o.firmware.push(v.into()),
            _ => {}
        }
    }
    if out.is_file() && old == stamp(&o, b) {
        return Ok(false);
    }
    crate::progress::say(&format!("xtask: {} is missing or older than its inputs: making it", out.display()));
    make(&o, b)?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options() {
        let a = |v: &[&str]| parse(&v.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        assert_eq!(a(&[]).unwrap().size, 256 << 20);
        assert_eq!(a(&["--size", "1G", "--boot", "chainloader"]).unwrap().size, 1 << 30);
        assert!(a(&["--boot", "chainloader"]).unwrap().chainload);
        assert!(a(&["--size", "300M"]).unwrap_err().contains("power of two"));
        assert!(a(&["--size", "128M"]).unwrap_err().contains("power of two"));
        assert!(a(&["--boot", "linux"]).is_err());
    }

    #[test]
    fn config_txt_boots_the_chosen_image() {
        let k = config_txt(&Opts { firmware: vec!["fw".into()], ..Opts::default() });
        for line in [
            "arm_64bit=1",
            "kernel=kernel8.img",
            "enable_uart=1",
            "dtoverlay=disable-bt",
            "init_uart_clock=48000000",
        ] {
            assert!(k.lines().any(|l| l == line), "config.txt lacks {line}");
        }
        assert!(!k.contains("QEMU ONLY"));
        let c = config_txt(&Opts { chainload: true, ..Opts::default() });
        assert!(c.lines().any(|l| l == "kernel=chainloader.img") && c.contains("QEMU ONLY"));
    }
}
