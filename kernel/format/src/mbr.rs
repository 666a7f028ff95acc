//! The MBR partition table: the persistent record of which sector extent is which.
//!
//! The kernel reads it once at boot and exposes the result to environments; libOSes and host
//! tools parse it the same way. Only the four primary entries are read: exo does not follow
//! extended-partition chains.

use crate::le;

/// One primary partition as the MBR records it; the kernel hands environments these in
/// [`exo_abi::KernelInfo::partitions`], so the record itself is part of the ABI.
pub use exo_abi::Partition;

/// The MBR type byte exo uses for a log-structured file system partition. 0x7f is set aside
/// for experimental systems by convention, so no other OS claims it.
pub const TYPE_EXO_LFS: u8 = 0x7f;
/// FAT32 with LBA addressing.
pub const TYPE_FAT32_LBA: u8 = 0x0c;

/// Why a sector 0 is not a usable partition table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MbrError {
    /// Fewer than 512 bytes were given.
    TooShort,
    /// The 0x55AA signature at offset 510 is missing.
    NoSignature,
    /// An entry's extent wraps around or overlaps another entry's.
    BadEntry(u8),
}

/// Parses sector 0 of a disk. Empty entries (type 0 or zero length) come back as `None`.
/// Entries must not wrap or overlap each other; `disk_sectors`, when known, bounds them too.
pub fn parse(sector0: &[u8], disk_sectors: Option<u64>) -> Result<[Option<Partition>; 4], MbrError> {
    if sector0.len() < 512 {
        return Err(MbrError::TooShort);
    }
    if sector0[510] != 0x55 || sector0[511] != 0xaa {
        return Err(MbrError::NoSignature);
    }
    let mut out = [None; 4];
    for (i, slot) in out.iter_mut().enumerate() {
        let e = &sector0[446 + 16 * i..446 + 16 * (i + 1)];
        let kind = e[4];
        let start = le::get_u32(e, 8) as u64;
        let sectors = le::get_u32(e, 12) as u64;
        if kind == 0 || sectors == 0 {
            continue;
        }
        let end = start + sectors; // cannot overflow: both are below 2^32
        if start == 0 || disk_sectors.is_some_and(|n| end > n) {
            return Err(MbrError::BadEntry(i as u8));
        }
        *slot = Some(Partition {
            start,
            sectors,
            kind,
            index: i as u8,
            bootable: e[0] & 0x80 != 0,
            _reserved: [0; 5],
        });
    }
    for a in out.iter().flatten() {
        for b in out.iter().flatten() {
            if a.index < b.index && a.start < b.start + b.sectors && b.start < a.start + a.sectors {
                return Err(MbrError::BadEntry(b.index));
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(buf: &mut [u8], i: usize, kind: u8, start: u32, len: u32) {
        let e = &mut buf[446 + 16 * i..446 + 16 * (i + 1)];
        e[4] = kind;
        e[8..12].copy_from_slice(&start.to_le_bytes());
        e[12..16].copy_from_slice(&len.to_le_bytes());
    }

    fn blank() -> [u8; 512] {
        let mut b = [0u8; 512];
        b[510] = 0x55;
        b[511] = 0xaa;
        b
    }

    #[test]
    fn reads_two_partitions_and_skips_empty_slots() {
        let mut b = blank();
        entry(&mut b, 0, TYPE_FAT32_LBA, 2048, 1000);
        entry(&mut b, 2, TYPE_EXO_LFS, 4096, 50);
        b[446] = 0x80;
        let p = parse(&b, Some(5000)).unwrap();
        assert_eq!(p[0].unwrap().start, 2048);
        assert!(p[0].unwrap().bootable);
        assert!(p[1].is_none());
        assert_eq!(p[2].unwrap().kind, TYPE_EXO_LFS);
        assert_eq!(p[2].unwrap().sectors, 50);
    }

    #[test]
    fn refuses_missing_signature_overlap_and_overrun() {
        assert_eq!(parse(&[0u8; 512], None), Err(MbrError::NoSignature));
        assert_eq!(parse(&[0u8; 100], None), Err(MbrError::TooShort));
        let mut b = blank();
        entry(&mut b, 0, 0x83, 100, 100);
        entry(&mut b, 1, 0x83, 150, 100);
        assert_eq!(parse(&b, None), Err(MbrError::BadEntry(1)));
        let mut b = blank();
        entry(&mut b, 3, 0x83, 100, 100);
        assert_eq!(parse(&b, Some(150)), Err(MbrError::BadEntry(3)));
        let mut b = blank();
        entry(&mut b, 0, 0x83, 0, 100);
        assert_eq!(parse(&b, None), Err(MbrError::BadEntry(0)));
    }
}
