//! Where a file system lives: an image file, a byte offset in it, or an MBR partition.

use exo_format::mbr;
use exo_lfs::{BlockDevice, IoError, SECTOR};
use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;

/// A file system's extent inside a host file, as a block device.
pub struct ImageDev {
    file: File,
    offset: u64,
    sectors: u64,
}

impl BlockDevice for ImageDev {
    fn read(&mut self, sector: u64, buf: &mut [u8]) -> Result<(), IoError> {
        exo_lfs::device::check_range(sector, buf.len(), self.sectors)?;
        self.file.read_exact_at(buf, self.offset + sector * SECTOR as u64).map_err(io_err)
    }
    fn write(&mut self, sector: u64, buf: &[u8]) -> Result<(), IoError> {
        exo_lfs::device::check_range(sector, buf.len(), self.sectors)?;
        self.file.write_all_at(buf, self.offset + sector * SECTOR as u64).map_err(io_err)
    }
    fn flush(&mut self) -> Result<(), IoError> {
        self.file.sync_data().map_err(io_err)
    }
    fn sectors(&self) -> u64 {
        self.sectors
    }
}

fn io_err(e: std::io::Error) -> IoError {
    IoError { code: e.raw_os_error().unwrap_or(-5) }
}

/// `IMAGE`, `IMAGE@OFFSET` (bytes) or `IMAGE#N` (MBR primary partition N, 1–4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spec {
    pub path: String,
    pub at: Place,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Place {
    Whole,
    Offset(u64),
    Partition(u8),
}

impl Spec {
    pub fn parse(s: &str) -> Result<Spec, String> {
        if let Some((p, n)) = s.rsplit_once('#') {
            let n: u8 = n.parse().map_err(|_| format!("bad partition number in {s:?}"))?;
            if !(1..=4).contains(&n) {
                return Err(format!("partition must be 1 to 4 in {s:?}"));
            }
            return Ok(Spec { path: p.into(), at: Place::Partition(n) });
        }
        if let Some((p, off)) = s.rsplit_once('@') {
            let off = size_arg(off)?;
            if off % SECTOR as u64 != 0 {
                return Err(format!("offset {off} is not a multiple of 512"));
            }
            return Ok(Spec { path: p.into(), at: Place::Offset(off) });
        }
        Ok(Spec { path: s.into(), at: Place::Whole })
    }

    /// Opens the extent. `size` (bytes) sets its length and grows the file if needed
    /// (mkfs); otherwise it runs to the end of the file or partition.
    pub fn open(&self, writable: bool, size: Option<u64>) -> Result<ImageDev, String> {
        let file = OpenOptions::new()
            .read(true)
            .write(writable)
            .create(writable && size.is_some())
            .truncate(false)
            .open(&self.path)
            .map_err(|e| format!("{}: {e}", self.path))?;
        let len = file.metadata().map_err(|e| e.to_string())?.len();
        let (offset, avail) = match self.at {
            Place::Whole => (0, len),
            Place::Offset(o) => (o, len.saturating_sub(o)),
            Place::Partition(n) => {
                let mut s0 = [0u8; 512];
                file.read_exact_at(&mut s0, 0).map_err(|e| format!("{}: reading the MBR: {e}", self.path))?;
                let parts =
                    mbr::parse(&s0, Some(len / 512)).map_err(|e| format!("{}: MBR: {e:?}", self.path))?;
                let p = parts[n as usize - 1].ok_or(format!("{}: partition {n} is empty", self.path))?;
                if p.kind != mbr::TYPE_EXO_LFS {
                    eprintln!(
                        "lfs: warning: partition {n} has type {:#04x}, not exo-lfs ({:#04x})",
                        p.kind,
                        mbr::TYPE_EXO_LFS
                    );
                }
                let bytes = p.sectors * 512;
                if size.is_some_and(|s| s > bytes) {
                    return Err(format!("--size is larger than partition {n} ({bytes} bytes)"));
                }
                (p.start * 512, bytes)
            }
        };
        let bytes = match size {
            Some(s) => {
                if writable && offset + s > len {
                    file.set_len(offset + s).map_err(|e| e.to_string())?;
                }
                s
            }
            None => avail,
        };
        Ok(ImageDev { file, offset, sectors: bytes / SECTOR as u64 })
    }
}

/// A size argument: `123`, `64K`, `16M`, `2G` (powers of 1024), or a usage error.
pub fn size_arg(s: &str) -> Result<u64, String> {
    exo_format::size::parse_size(s).ok_or(format!("bad size {s:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_and_sizes() {
        assert_eq!(Spec::parse("a.img").unwrap().at, Place::Whole);
        assert_eq!(
            Spec::parse("a.img@1M").unwrap(),
            Spec { path: "a.img".into(), at: Place::Offset(1 << 20) }
        );
        assert_eq!(Spec::parse("x/a.img#2").unwrap().at, Place::Partition(2));
        assert!(Spec::parse("a.img#5").is_err());
        assert!(Spec::parse("a.img@100").is_err());
        assert_eq!(size_arg("64K").unwrap(), 65536);
        assert!(size_arg("12Q").is_err());
    }
}
