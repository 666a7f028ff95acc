//! Helpers shared by the host tests: the host's FAT tools, image files, a seeded RNG, and a
//! FAT image read straight from its bytes (`raw_fat`).
#![allow(dead_code, unused_imports)] // (each test file uses some of these)

pub mod raw_fat;
pub mod sparse;

use exo_libos::fs::disk::{BlockDevice, IoError};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A disk image file as sectors.
pub struct FileSectors(pub std::fs::File);

impl BlockDevice for FileSectors {
    fn read(&mut self, sector: u64, buf: &mut [u8]) -> Result<(), IoError> {
        self.0.read_exact_at(buf, sector * 512).map_err(|_| IoError { code: -11 })
    }
    fn write(&mut self, sector: u64, buf: &[u8]) -> Result<(), IoError> {
        self.0.write_all_at(buf, sector * 512).map_err(|_| IoError { code: -11 })
    }
    fn flush(&mut self) -> Result<(), IoError> {
        Ok(())
    }
    fn sectors(&self) -> u64 {
        self.0.metadata().map_or(0, |m| m.len() / 512)
    }
}

/// Opens an image file for reading and writing.
pub fn open_image(path: &Path) -> FileSectors {
    FileSectors(std::fs::OpenOptions::new().read(true).write(true).open(path).expect("open image"))
}

/// Where a host tool lives (PATH, then the sbin directories mkfs.vfat is usually in).
pub fn tool(name: &str) -> Option<PathBuf> {
    let path = std::env::var("PATH").unwrap_or_default();
    let found = path
        .split(':')
        .chain(["/sbin", "/usr/sbin", "/usr/local/sbin"])
        .map(|d| Path::new(d).join(name))
        .find(|p| p.is_file());
    found
}

/// Whether dosfstools and mtools are installed. If not, the caller skips its test (see
/// `skip`).
pub fn have_fat_tools(test: &str) -> bool {
    let missing: Vec<&str> = ["mkfs.vfat", "fsck.vfat", "mcopy", "mdir", "mmd", "mtype"]
        .into_iter()
        .filter(|t| tool(t).is_none())
        .collect();
    if missing.is_empty() {
        return true;
    }
    skip(
        test,
        &format!(
            "{} not found; install them with `apt-get install -y dosfstools mtools`",
            missing.join(", ")
        ),
    );
    false
}

/// Records that `test` did not run, and why. cargo counts a test that returns early as
/// passed, so the skip is also appended to the file `EXO_SKIP_LOG` names: `cargo xtask test`
/// sets it, reports every skip in its final count, and fails a CI run that has any.
pub fn skip(test: &str, why: &str) {
    eprintln!("SKIPPED {test}: {why}");
    if let Some(log) = std::env::var_os("EXO_SKIP_LOG") {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new().create(true).append(true).open(log).expect("EXO_SKIP_LOG");
        writeln!(f, "{test}: {why}").expect("EXO_SKIP_LOG");
    }
}

/// A fresh, empty scratch directory for one test.
pub fn scratch(test: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("exo-fs-{test}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("scratch dir");
    d
}

/// Runs a host tool; panics with its output unless it succeeds.
pub fn run(name: &str, args: &[&str]) -> String {
    let out = run_status(name, args);
    assert!(out.0, "{name} {args:?} failed:\n{}", out.1);
    out.1
}

/// Runs a host tool (mtools with its checks relaxed and times in UTC); returns whether it
/// succeeded and its stdout followed by its stderr.
pub fn run_status(name: &str, args: &[&str]) -> (bool, String) {
    let bin = tool(name).unwrap_or_else(|| panic!("{name} not installed"));
    let out = Command::new(bin)
        .args(args)
        .env("MTOOLS_SKIP_CHECK", "1")
        .env("TZ", "UTC")
        .output()
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    let mut s = String::from_utf8_lossy(&out.stdout).into_owned();
    s.push_str(&String::from_utf8_lossy(&out.stderr));
    (out.status.success(), s)
}

/// Makes an image file of `kib` KiB holding a FAT volume (`fat` = 16 or 32, `spc` sectors
/// per cluster).
pub fn mkfs(path: &Path, kib: u32, fat: u32, spc: u32) {
    let _ = std::fs::remove_file(path);
    let p = path.to_str().unwrap();
    run(
        "mkfs.vfat",
        &["-C", "-F", &fat.to_string(), "-s", &spc.to_string(), "-n", "EXOTEST", p, &kib.to_string()],
    );
}

/// `fsck.vfat -n` on an image: panics with its report unless it is clean (exit 0, and no
/// line other than the banner and the summary).
pub fn fsck_clean(image: &str) {
    let (ok, out) = run_status("fsck.vfat", &["-n", image]);
    let noise: Vec<&str> = out
        .lines()
        .filter(|l| !l.starts_with("fsck.fat ") && !l.contains(" files, ") && !l.trim().is_empty())
        .collect();
    assert!(ok && noise.is_empty(), "fsck.vfat -n {image} reports problems:\n{out}");
}

pub use exo_format::rng::Rng;
