//! Writing an SD-card image: an MBR, a FAT32 boot partition with the given files, and a
//! partition formatted with exo's log-structured file system.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::process::Command;

use exo_format::mbr::{TYPE_EXO_LFS, TYPE_FAT32_LBA};

use crate::progress::Progress;

pub const SECTOR: u64 = 512;
/// The boot partition starts 1 MiB in (erase-block aligned, as card makers do).
pub const BOOT_START: u64 = 2048;
pub const BOOT_BYTES: u64 = 128 << 20;
/// The LFS partition follows, from here to the end of the card.
pub const LFS_START: u64 = BOOT_START + BOOT_BYTES / SECTOR;
/// The smallest card: boot partition plus an LFS partition of about the same size.
pub const MIN_CARD: u64 = 256 << 20;

/// One file for the boot partition: its path there (`/`-separated) and its bytes.
pub struct BootFile {
    pub path: String,
    pub data: Vec<u8>,
}

/// Creates (or, with `keep_lfs`, refreshes) the card at `out`: `size` bytes, a power of two.
/// A refresh rewrites the MBR and the boot partition and leaves the LFS partition's data.
/// The boot partition is made by dosfstools' `mkfs.fat` and filled by mtools' `mcopy`.
pub fn write(out: &Path, size: u64, files: &[BootFile], keep_lfs: bool) -> Result<(), String> {
    crate::sdtools::ensure()?;
    let err = |e: io::Error| format!("{}: {e}", out.display());
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(!keep_lfs)
        .open(out)
        .map_err(err)?;
    file.set_len(size).map_err(err)?; // sparse: only what is written takes space
    write_mbr(&file, size).map_err(err)?;
    crate::progress::say(&format!("xtask: formatting the boot partition: FAT32, {} MiB", BOOT_BYTES >> 20));
    crate::sdtools::run(
        Command::new("mkfs.fat")
            .args(["-F", "32", "-n", "EXO-BOOT", "--mbr=n", "--invariant"])
            .arg(format!("-h{BOOT_START}"))
            .arg(format!("--offset={BOOT_START}"))
            .arg(out)
            .arg((BOOT_BYTES / 1024).to_string()),
    )?;
    let total: u64 = files.iter().map(|f| f.data.len() as u64).sum();
    let mut bar = Progress::new("xtask: copying the boot files", total);
    let stage = tempdir("boot")?;
    let mut done = 0;
    let mut dirs = std::collections::BTreeSet::new();
    for f in files {
        if let Some((d, _)) = f.path.rsplit_once('/') {
            if dirs.insert(d.to_string()) {
                crate::sdtools::run(Command::new("mmd").arg("-i").arg(fat(out)).arg(format!("::{d}")))?;
            }
        }
        let src = stage.join(f.path.replace('/', "_"));
        std::fs::write(&src, &f.data).map_err(|e| format!("{}: {e}", src.display()))?;
        crate::sdtools::run(
            Command::new("mcopy").arg("-o").arg("-i").arg(fat(out)).arg(&src).arg(format!("::{}", f.path)),
        )?;
        done += f.data.len() as u64;
        bar.set(done);
    }
    bar.finish();
    let _ = std::fs::remove_dir_all(&stage);
    if keep_lfs {
        crate::progress::say("xtask: kept the LFS partition's contents (use --fresh to format it again)");
    } else {
        format_lfs(&file, size)?;
    }
    file.sync_all().map_err(err)
}

/// mtools' name for the boot partition of the image at `out`.
pub fn fat(out: &Path) -> String {
    format!("{}@@{}", out.display(), BOOT_START * SECTOR)
}

/// A fresh directory under target/exo/tmp.
pub fn tempdir(what: &str) -> Result<std::path::PathBuf, String> {
    let d = crate::util::out_dir().join("tmp").join(format!("{what}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).map_err(|e| format!("{}: {e}", d.display()))?;
    Ok(d)
}

/// Partition 1: FAT32 (LBA), bootable. Partition 2: exo LFS to the end of the card.
fn write_mbr(file: &File, size: u64) -> io::Result<()> {
    let mut f = file;
    let mut mbr = mbrman::MBR::new_from(&mut f, SECTOR as u32, *b"exo1").map_err(io::Error::other)?;
    let sectors = |b: u64| (b / SECTOR) as u32;
    mbr[1] = mbrman::MBRPartitionEntry {
        boot: mbrman::BOOT_ACTIVE,
        first_chs: mbrman::CHS::empty(),
        sys: TYPE_FAT32_LBA,
        last_chs: mbrman::CHS::empty(),
        starting_lba: BOOT_START as u32,
        sectors: sectors(BOOT_BYTES),
    };
    mbr[2] = mbrman::MBRPartitionEntry {
        boot: mbrman::BOOT_INACTIVE,
        first_chs: mbrman::CHS::empty(),
        sys: TYPE_EXO_LFS,
        last_chs: mbrman::CHS::empty(),
        starting_lba: LFS_START as u32,
        sectors: sectors(size) - LFS_START as u32,
    };
    mbr.write_into(&mut f).map_err(io::Error::other)
}

/// An exo-lfs block device over the LFS partition of the image.
pub struct LfsPart<'a> {
    pub file: &'a File,
    pub sectors: u64,
}

impl<'a> LfsPart<'a> {
    /// The LFS partition of the card image open in `file` (it runs to the card's end).
    pub fn of(file: &'a File) -> Result<LfsPart<'a>, String> {
        let sectors = file.metadata().map_err(|e| e.to_string())?.len() / SECTOR - LFS_START;
        Ok(LfsPart { file, sectors })
    }
}

impl exo_lfs::BlockDevice for LfsPart<'_> {
    fn read(&mut self, sector: u64, buf: &mut [u8]) -> Result<(), exo_lfs::IoError> {
        exo_lfs::device::check_range(sector, buf.len(), self.sectors)?;
        self.file.read_exact_at(buf, (LFS_START + sector) * SECTOR).map_err(io_err)
    }
    fn write(&mut self, sector: u64, buf: &[u8]) -> Result<(), exo_lfs::IoError> {
        exo_lfs::device::check_range(sector, buf.len(), self.sectors)?;
        self.file.write_all_at(buf, (LFS_START + sector) * SECTOR).map_err(io_err)
    }
    fn flush(&mut self) -> Result<(), exo_lfs::IoError> {
        self.file.sync_data().map_err(io_err)
    }
    fn sectors(&self) -> u64 {
        self.sectors
    }
}

fn io_err(e: io::Error) -> exo_lfs::IoError {
    exo_lfs::IoError { code: e.raw_os_error().unwrap_or(-5) }
}

fn format_lfs(file: &File, size: u64) -> Result<(), String> {
    let sectors = size / SECTOR - LFS_START;
    crate::progress::say(&format!(
        "xtask: formatting the LFS partition: {} MiB, 1 MiB segments",
        (sectors * SECTOR) >> 20
    ));
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    let opts = exo_lfs::FormatOptions {
        segment_bytes: 1 << 20,
        max_inodes: None,
        fs_id: now.as_nanos() as u64 ^ ((std::process::id() as u64) << 40),
        now: now.as_nanos() as i64,
    };
    let fs = exo_lfs::Fs::format(LfsPart { file, sectors }, opts)
        .map_err(|e| format!("formatting the LFS: {e}"))?;
    fs.unmount().map_err(|e| format!("writing the LFS checkpoint: {e}"))?;
    Ok(())
}
