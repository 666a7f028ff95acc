//! Tests of the SD-card image (checked with dosfstools, mtools and exo-lfs's fsck), and what
//! the tests that boot from a card share: `Extra`, the built images, private card copies.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use exo_format::mbr;

use crate::card::{self, LfsPart, BOOT_START, LFS_START, MIN_CARD, SECTOR};
use crate::image::{self, Built, Opts};
use crate::sdtools;

/// A test `cargo xtask test` runs by name.
pub struct Extra {
    pub name: String,
    pub run: Box<dyn Fn() -> Result<(), String>>,
}

impl Extra {
    pub fn new(name: String, run: impl Fn() -> Result<(), String> + 'static) -> Extra {
        Extra { name, run: Box::new(run) }
    }
}

/// The card's own tests.
pub fn tests(out: &mut Vec<Extra>) {
    out.extend([
        Extra::new("sdcard::layout_fsck_and_every_file_read_back".into(), layout_and_files),
        Extra::new("sdcard::rebuild_keeps_the_lfs_and_qemu_only_cards_say_so".into(), rebuild_and_qemu_only),
        Extra::new("sdcard::incomplete_firmware_is_refused_by_name".into(), incomplete_firmware),
        Extra::new("sdcard::qemu_makes_the_card_when_missing_or_stale".into(), made_when_missing_or_stale),
    ]);
}

/// Fails unless the console output `out` shows `needle`.
pub fn contains(out: &str, needle: &str) -> Result<(), String> {
    out.contains(needle).then_some(()).ok_or_else(|| format!("console never showed {needle:?}"))
}

/// The kernel, chainloader and apps, built once per run.
pub fn built() -> Result<&'static Built, String> {
    static B: OnceLock<Result<Built, String>> = OnceLock::new();
    B.get_or_init(Built::build).as_ref().map_err(|e| e.clone())
}

/// A private copy of the test card (sparse: the card is mostly empty).
pub fn card_copy(name: &str) -> Result<PathBuf, String> {
    let src = test_card()?;
    let dst = scratch().join(format!("{name}.img"));
    let ok =
        Command::new("cp").arg("--sparse=always").arg(&src).arg(&dst).status().map_err(|e| e.to_string())?;
    ensure(ok.success(), || format!("cannot copy {}", src.display()))?;
    Ok(dst)
}

/// A QEMU-only card for the emulator tests (their own, so a `cargo xtask qemu` running on the
/// default card does not lock them out).
pub fn test_card() -> Result<PathBuf, String> {
    static C: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    C.get_or_init(|| {
        let out = scratch().join("qemu-card.img");
        image::make(&Opts { out: out.clone(), fresh: true, ..Opts::default() }, built()?)?;
        Ok(out)
    })
    .clone()
}

pub(crate) fn scratch() -> PathBuf {
    let d = crate::util::out_dir().join("tmp").join("tests");
    let _ = std::fs::create_dir_all(&d);
    d
}

/// A firmware directory with stand-in files (distinct bytes each; not the real firmware).
fn fake_firmware(names: &[&str]) -> Result<PathBuf, String> {
    let d = scratch().join("firmware");
    let _ = std::fs::remove_dir_all(&d);
    for (i, n) in names.iter().enumerate() {
        let p = d.join(n);
        std::fs::create_dir_all(p.parent().unwrap()).map_err(|e| e.to_string())?;
        let data: Vec<u8> = (0..5000 + 977 * i).map(|j| (j * 31 + i * 7) as u8).collect();
        std::fs::write(&p, data).map_err(|e| e.to_string())?;
    }
    Ok(d)
}

pub(crate) fn ensure(cond: bool, why: impl FnOnce() -> String) -> Result<(), String> {
    if cond {
        Ok(())
    } else {
        Err(why())
    }
}

/// A file of the boot partition, read back with mtools.
pub(crate) fn mread(img: &Path, path: &str) -> Result<Vec<u8>, String> {
    let out = Command::new("mcopy")
        .env("MTOOLS_SKIP_CHECK", "1")
        .arg("-n")
        .arg("-i")
        .arg(card::fat(img))
        .arg(format!("::{path}"))
        .arg("-")
        .output()
        .map_err(|e| format!("mcopy: {e}"))?;
    ensure(out.status.success(), || format!("mcopy ::{path}: {}", String::from_utf8_lossy(&out.stderr)))?;
    Ok(out.stdout)
}

/// Every file on the boot partition, as paths (`mdir -/ -b` lists them recursively).
fn mlist(img: &Path) -> Result<Vec<String>, String> {
    let text = sdtools::run(Command::new("mdir").args(["-/", "-b", "-i"]).arg(card::fat(img)).arg("::"))?;
    let mut v: Vec<String> = text
        .lines()
        .map(|l| l.trim().trim_start_matches("::/").to_string())
        .filter(|l| !l.ends_with('/'))
        .collect();
    v.retain(|l| !l.is_empty());
    v.sort();
    Ok(v)
}

/// `fsck.fat -n` over the boot partition (copied out: fsck.fat takes no offset).
pub(crate) fn fsck_fat(img: &Path) -> Result<(), String> {
    let data = std::fs::read(img).map_err(|e| e.to_string())?;
    let start = (BOOT_START * SECTOR) as usize;
    let part = scratch().join("boot-partition.img");
    std::fs::write(&part, &data[start..start + card::BOOT_BYTES as usize]).map_err(|e| e.to_string())?;
    let r = sdtools::run(Command::new("fsck.fat").arg("-n").arg(&part));
    let _ = std::fs::remove_file(&part);
    r.map(|_| ())
}

pub(crate) fn lfs_clean(img: &Path) -> Result<(), String> {
    let f = std::fs::File::open(img).map_err(|e| e.to_string())?;
    let report = exo_lfs::fsck::check_device(&mut LfsPart::of(&f)?);
    ensure(report.is_clean(), || format!("exo-lfs fsck found problems: {:?}", report.errors))
}

fn layout_and_files() -> Result<(), String> {
    let b = built()?;
    let fw = fake_firmware(&[image::FIRMWARE, &["LICENCE.broadcom", "bcm2711-rpi-400.dtb"]].concat())?;
    let img = scratch().join("pi-card.img");
    image::make(
        &Opts { firmware: vec![fw.clone()], chainload: true, out: img.clone(), ..Opts::default() },
        b,
    )?;

    let len = std::fs::metadata(&img).map_err(|e| e.to_string())?.len();
    ensure(len == MIN_CARD && len.is_power_of_two(), || format!("card is {len} bytes"))?;
    let s0 = std::fs::read(&img).map_err(|e| e.to_string())?[..512].to_vec();
    let parts = mbr::parse(&s0, Some(len / SECTOR)).map_err(|e| format!("MBR: {e:?}"))?;
    let (boot, lfs) = (parts[0].ok_or("no partition 1")?, parts[1].ok_or("no partition 2")?);
    ensure(boot.kind == mbr::TYPE_FAT32_LBA && boot.bootable && boot.start == BOOT_START, || {
        format!("{boot:?}")
    })?;
    ensure(
        lfs.kind == mbr::TYPE_EXO_LFS && lfs.start == LFS_START && lfs.start + lfs.sectors == len / SECTOR,
        || format!("{lfs:?}"),
    )?;
    ensure(parts[2].is_none() && parts[3].is_none(), || "extra partitions".into())?;

    fsck_fat(&img)?;
    lfs_clean(&img)?;

    let mut expect: Vec<(String, Vec<u8>)> = vec![
        ("kernel8.img".into(), std::fs::read(&b.kernel).map_err(|e| e.to_string())?),
        ("chainloader.img".into(), std::fs::read(&b.chainloader).map_err(|e| e.to_string())?),
        (
            "config.txt".into(),
            image::config_txt(&Opts { firmware: vec![fw.clone()], chainload: true, ..Opts::default() })
                .into_bytes(),
        ),
        ("cmdline.txt".into(), b"\n".to_vec()),
    ];
    for (name, elf) in &b.apps {
        expect.push((format!("apps/{name}"), std::fs::read(elf).map_err(|e| e.to_string())?));
    }
    for n in image::FIRMWARE.iter().chain(&["LICENCE.broadcom", "bcm2711-rpi-400.dtb"]) {
        expect.push((n.to_string(), std::fs::read(fw.join(n)).map_err(|e| e.to_string())?));
    }
    for (path, want) in &expect {
        let got = mread(&img, path)?;
        ensure(&got == want, || {
            format!("{path} on the card differs from its source ({} vs {} bytes)", got.len(), want.len())
        })?;
    }
    let mut names: Vec<String> = expect.iter().map(|e| e.0.to_lowercase()).collect();
    names.sort();
    let mut listed: Vec<String> = mlist(&img)?.iter().map(|l| l.to_lowercase()).collect();
    listed.sort();
    ensure(listed == names, || format!("the boot partition holds {listed:?}, expected {names:?}"))?;
    let config = String::from_utf8(mread(&img, "config.txt")?).map_err(|e| e.to_string())?;
    ensure(config.lines().any(|l| l == "kernel=chainloader.img"), || {
        "config.txt does not boot the chainloader".into()
    })?;
    let _ = std::fs::remove_file(&img);
    Ok(())
}

fn rebuild_and_qemu_only() -> Result<(), String> {
    let b = built()?;
    let img = scratch().join("qemu-only-card.img");
    let o = Opts { out: img.clone(), fresh: true, ..Opts::default() };
    image::make(&o, b)?;
    ensure(mread(&img, "QEMU-ONLY.TXT")?.starts_with(b"This card was made without"), || {
        "no QEMU-ONLY.TXT".into()
    })?;
    ensure(String::from_utf8_lossy(&mread(&img, "config.txt")?).contains("QEMU ONLY"), || {
        "config.txt is not marked".into()
    })?;
    ensure(mread(&img, "start4.elf").is_err(), || "a QEMU-only card has a start4.elf".into())?;

    // Something a libOS might have written to the LFS partition.
    let put = |img: &Path| -> Result<(), String> {
        let f = std::fs::OpenOptions::new().read(true).write(true).open(img).map_err(|e| e.to_string())?;
        let mut fs = exo_lfs::Fs::mount(LfsPart::of(&f)?, Default::default()).map_err(|e| e.to_string())?;
        let h = fs.create("/kept").map_err(|e| e.to_string())?;
        fs.write(h, 0, b"still here").map_err(|e| e.to_string())?;
        fs.unmount().map(|_| ()).map_err(|e| e.to_string())
    };
    let has = |img: &Path| -> Result<bool, String> {
        let f = std::fs::OpenOptions::new().read(true).write(true).open(img).map_err(|e| e.to_string())?;
        let mut fs = exo_lfs::Fs::mount(LfsPart::of(&f)?, Default::default()).map_err(|e| e.to_string())?;
        Ok(fs.open("/kept").is_ok())
    };
    put(&img)?;
    image::make(&Opts { fresh: false, ..o.clone() }, b)?;
    ensure(has(&img)?, || "a rebuild lost the LFS partition's file".into())?;
    fsck_fat(&img)?;
    lfs_clean(&img)?;
    image::make(&o, b)?;
    ensure(!has(&img)?, || "--fresh kept the LFS partition's file".into())?;
    let _ = std::fs::remove_file(&img);
    Ok(())
}

fn incomplete_firmware() -> Result<(), String> {
    let b = built()?;
    let fw = fake_firmware(&["start4.elf", "bcm2711-rpi-4-b.dtb"])?;
    let img = scratch().join("never-written.img");
    let _ = std::fs::remove_file(&img);
    let e = match image::make(&Opts { firmware: vec![fw], out: img.clone(), ..Opts::default() }, b) {
        Ok(()) => return Err("a card without fixup4.dat was written".into()),
        Err(e) => e,
    };
    for needle in
        ["fixup4.dat", "overlays/disable-bt.dtbo", "github.com/raspberrypi/firmware", "raspi-firmware"]
    {
        ensure(e.contains(needle), || format!("the error does not mention {needle}: {e}"))?;
    }
    ensure(!e.contains("start4.elf,"), || format!("the error names a file that is there: {e}"))?;
    ensure(!img.exists(), || "a card file was left behind".into())
}

fn made_when_missing_or_stale() -> Result<(), String> {
    let b = built()?;
    let img = scratch().join("qemu-default-card.img");
    let _ = std::fs::remove_file(&img);
    ensure(image::up_to_date(&img, b)?, || "a missing card was not made".into())?;
    ensure(!image::up_to_date(&img, b)?, || "an up-to-date card was made again".into())?;
    // A new kernel (same name, other bytes) makes the card stale.
    let mut other = b.apps.clone();
    let changed = scratch().join("init-changed");
    let init = other.iter().position(|(n, _)| n == "init").ok_or("no init among the card's programs")?;
    let mut elf = std::fs::read(&other[init].1).map_err(|e| e.to_string())?;
    elf.push(0);
    std::fs::write(&changed, &elf).map_err(|e| e.to_string())?;
    other[init].1 = changed;
    let b2 = Built { kernel: b.kernel.clone(), chainloader: b.chainloader.clone(), apps: other };
    ensure(image::up_to_date(&img, &b2)?, || "a card with a changed input was not made again".into())?;
    ensure(mread(&img, "apps/init")? == elf, || "the remade card does not hold the new file".into())?;
    let _ = std::fs::remove_file(&img);
    Ok(())
}
