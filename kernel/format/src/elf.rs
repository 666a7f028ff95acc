//! Reading ELF64 executables for AArch64: just enough to load one.
//!
//! The kernel loads `init` with it and libOSes load every other program, so it must refuse
//! any malformed file with an error — never panic, never index out of bounds, never trust
//! an offset or size without checking it against the file.

use crate::le;
use exo_abi::pte::Perm;
use exo_abi::USER_VA_LIMIT;

const PAGE: u64 = 4096;

/// A loadable segment (`PT_LOAD`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Segment {
    pub vaddr: u64,
    /// Bytes in memory (the tail past `file_size` is zero).
    pub mem_size: u64,
    /// Where its bytes are in the file, and how many.
    pub offset: u64,
    pub file_size: u64,
    pub read: bool,
    pub write: bool,
    pub exec: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ElfError {
    /// Not an ELF file, or not 64-bit little-endian.
    NotElf,
    /// Not an AArch64 executable (ET_EXEC or ET_DYN).
    WrongKind,
    /// A header, table or segment lies outside the file or overflows.
    Truncated,
    /// A segment is inconsistent: file size above memory size, overflowing or kernel-half
    /// addresses, overlapping another segment, or no segment at all.
    BadSegment,
    /// A segment is both writable and executable (every loader here keeps W^X).
    WriteExec,
}

impl ElfError {
    /// What is wrong, in words (for a log line).
    pub fn why(self) -> &'static str {
        match self {
            ElfError::NotElf => "not a 64-bit little-endian ELF file",
            ElfError::WrongKind => "not an AArch64 executable",
            ElfError::Truncated => "a header, table or segment lies outside the file",
            ElfError::BadSegment => "a segment's addresses are inconsistent, or there is none",
            ElfError::WriteExec => "a segment is writable and executable",
        }
    }
}

/// One page of a program as loaded: mapped at `va` with `perm`, holding `bytes` from the file
/// at offset `at` within the page and zeros everywhere else.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Page<'a> {
    pub va: u64,
    pub perm: Perm,
    pub at: usize,
    pub bytes: &'a [u8],
}

/// A checked ELF image.
#[derive(Clone, Copy, Debug)]
pub struct Elf<'a> {
    data: &'a [u8],
    pub entry: u64,
    phoff: usize,
    phnum: usize,
}

fn u16_at(d: &[u8], at: usize) -> Result<u16, ElfError> {
    le::read_u16(d, at).ok_or(ElfError::Truncated)
}

fn u32_at(d: &[u8], at: usize) -> Result<u32, ElfError> {
    le::read_u32(d, at).ok_or(ElfError::Truncated)
}

fn u64_at(d: &[u8], at: usize) -> Result<u64, ElfError> {
    le::read_u64(d, at).ok_or(ElfError::Truncated)
}

/// At most this many program headers are looked at.
const MAX_PHDRS: usize = 64;

impl<'a> Elf<'a> {
    /// Checks the header and every program header; after this, [`Elf::segments`] only yields
    /// segments whose file bytes are inside `data` and whose memory range is below
    /// [`USER_VA_LIMIT`] and disjoint from the others.
    pub fn parse(data: &'a [u8]) -> Result<Elf<'a>, ElfError> {
        if data.get(0..4) != Some(b"\x7fELF".as_slice()) || data.get(4) != Some(&2) || data.get(5) != Some(&1)
        {
            return Err(ElfError::NotElf);
        }
        let kind = u16_at(data, 16)?;
        if !(kind == 2 || kind == 3) || u16_at(data, 18)? != 183 {
            return Err(ElfError::WrongKind);
        }
        let entry = u64_at(data, 24)?;
        let phoff = usize::try_from(u64_at(data, 32)?).map_err(|_| ElfError::Truncated)?;
        let phentsize = u16_at(data, 54)? as usize;
        let phnum = u16_at(data, 56)? as usize;
        if phentsize != 56 || phnum > MAX_PHDRS {
            return Err(ElfError::Truncated);
        }
        let end = phoff.checked_add(phnum * 56).ok_or(ElfError::Truncated)?;
        if end > data.len() {
            return Err(ElfError::Truncated);
        }
        let elf = Elf { data, entry, phoff, phnum };
        let mut count = 0;
        for (i, s) in elf.raw_segments().enumerate() {
            let s = s?;
            let file_end = s.offset.checked_add(s.file_size).ok_or(ElfError::Truncated)?;
            let mem_end = s.vaddr.checked_add(s.mem_size).ok_or(ElfError::BadSegment)?;
            if file_end > data.len() as u64 {
                return Err(ElfError::Truncated);
            }
            if s.file_size > s.mem_size || mem_end > USER_VA_LIMIT {
                return Err(ElfError::BadSegment);
            }
            if s.write && s.exec {
                return Err(ElfError::WriteExec);
            }
            for t in elf.raw_segments().take(i) {
                let t = t?;
                if s.vaddr < t.vaddr + t.mem_size && t.vaddr < mem_end {
                    return Err(ElfError::BadSegment);
                }
            }
            count += 1;
        }
        if count == 0 || entry >= USER_VA_LIMIT {
            return Err(ElfError::BadSegment);
        }
        Ok(elf)
    }

    fn raw_segments(&self) -> impl Iterator<Item = Result<Segment, ElfError>> + '_ {
        (0..self.phnum).filter_map(move |i| {
            let at = self.phoff + i * 56;
            let seg = || -> Result<Option<Segment>, ElfError> {
                if u32_at(self.data, at)? != 1 {
                    return Ok(None); // not PT_LOAD
                }
                let flags = u32_at(self.data, at + 4)?;
                let mem_size = u64_at(self.data, at + 40)?;
                if mem_size == 0 {
                    return Ok(None);
                }
                Ok(Some(Segment {
                    offset: u64_at(self.data, at + 8)?,
                    vaddr: u64_at(self.data, at + 16)?,
                    file_size: u64_at(self.data, at + 32)?,
                    mem_size,
                    exec: flags & 1 != 0,
                    write: flags & 2 != 0,
                    read: flags & 4 != 0,
                }))
            };
            seg().transpose()
        })
    }

    /// The loadable segments (checked by `parse`).
    pub fn segments(&self) -> impl Iterator<Item = Segment> + '_ {
        self.raw_segments().filter_map(Result::ok)
    }

    /// A segment's bytes from the file (`file_size` of them).
    pub fn bytes(&self, s: &Segment) -> &'a [u8] {
        let (from, len) = (s.offset as usize, s.file_size as usize);
        self.data.get(from..from + len).unwrap_or(&[])
    }

    /// Every page the loadable segments cover, segment by segment in address order within
    /// each, with its share of the file: what a loader allocates, copies and maps.
    pub fn pages(&self) -> impl Iterator<Item = Page<'a>> + '_ {
        self.segments().flat_map(move |seg| {
            let bytes = self.bytes(&seg);
            let (start, end, file_end) = (seg.vaddr, seg.vaddr + seg.mem_size, seg.vaddr + seg.file_size);
            (start & !(PAGE - 1)..end).step_by(PAGE as usize).map(move |va| {
                // This page's share of the file, as addresses: [from, to).
                let (from, to) = (va.max(start), (va + PAGE).min(file_end));
                let part =
                    if to > from { &bytes[(from - start) as usize..(to - start) as usize] } else { &[] };
                let perm = Perm { write: seg.write, exec: seg.exec };
                Page { va, perm, at: (from - va) as usize, bytes: part }
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal valid executable: one text and one data segment.
    pub(crate) fn sample() -> Vec<u8> {
        let mut f = vec![0u8; 0x200];
        f[0..4].copy_from_slice(b"\x7fELF");
        f[4] = 2;
        f[5] = 1;
        f[16..18].copy_from_slice(&2u16.to_le_bytes());
        f[18..20].copy_from_slice(&183u16.to_le_bytes());
        f[24..32].copy_from_slice(&0x40_0010u64.to_le_bytes());
        f[32..40].copy_from_slice(&64u64.to_le_bytes());
        f[54..56].copy_from_slice(&56u16.to_le_bytes());
        f[56..58].copy_from_slice(&2u16.to_le_bytes());
        let ph = |f: &mut Vec<u8>, at: usize, flags: u32, off: u64, va: u64, fsz: u64, msz: u64| {
            f[at..at + 4].copy_from_slice(&1u32.to_le_bytes());
            f[at + 4..at + 8].copy_from_slice(&flags.to_le_bytes());
            f[at + 8..at + 16].copy_from_slice(&off.to_le_bytes());
            f[at + 16..at + 24].copy_from_slice(&va.to_le_bytes());
            f[at + 32..at + 40].copy_from_slice(&fsz.to_le_bytes());
            f[at + 40..at + 48].copy_from_slice(&msz.to_le_bytes());
        };
        ph(&mut f, 64, 5, 0x100, 0x40_0000, 0x80, 0x80);
        ph(&mut f, 120, 6, 0x180, 0x41_0000, 0x40, 0x2000);
        f
    }

    #[test]
    fn reads_segments_and_entry() {
        let f = sample();
        let e = Elf::parse(&f).unwrap();
        assert_eq!(e.entry, 0x40_0010);
        let s: Vec<_> = e.segments().collect();
        assert_eq!(s.len(), 2);
        assert!(s[0].exec && !s[0].write && s[0].read);
        assert!(s[1].write && !s[1].exec);
        assert_eq!(s[1].mem_size, 0x2000);
        assert_eq!(e.bytes(&s[0]).len(), 0x80);
    }

    #[test]
    fn refuses_malformed_files() {
        let good = sample();
        let mut f = good.clone();
        f[0] = 0;
        assert_eq!(Elf::parse(&f).err(), Some(ElfError::NotElf));
        let mut f = good.clone();
        f[18] = 62; // x86-64
        assert_eq!(Elf::parse(&f).err(), Some(ElfError::WrongKind));
        let mut f = good.clone();
        f[120 + 8..120 + 16].copy_from_slice(&0x1000u64.to_le_bytes()); // data past the end
        assert_eq!(Elf::parse(&f).err(), Some(ElfError::Truncated));
        let mut f = good.clone();
        f[120 + 16..120 + 24].copy_from_slice(&0x40_0040u64.to_le_bytes()); // overlaps text
        assert_eq!(Elf::parse(&f).err(), Some(ElfError::BadSegment));
        let mut f = good.clone();
        f[120 + 16..120 + 24].copy_from_slice(&0xffff_0000_0000_0000u64.to_le_bytes());
        assert_eq!(Elf::parse(&f).err(), Some(ElfError::BadSegment));
        let mut f = good.clone();
        f[120 + 16..120 + 24].copy_from_slice(&(u64::MAX - 10).to_le_bytes()); // wraps
        assert_eq!(Elf::parse(&f).err(), Some(ElfError::BadSegment));
        assert!(Elf::parse(&good[..100]).is_err());
    }

    #[test]
    fn pages_cover_each_segment_with_its_share_of_the_file() {
        let mut f = sample();
        // Data starts mid-page and its file bytes cross into a second page.
        f[120 + 16..120 + 24].copy_from_slice(&0x41_0ff0u64.to_le_bytes());
        let e = Elf::parse(&f).unwrap();
        let p: Vec<_> = e.pages().collect();
        let (ro_x, rw) = (Perm { write: false, exec: true }, Perm { write: true, exec: false });
        assert_eq!(p.len(), 4, "one text page, three data pages");
        assert_eq!((p[0].va, p[0].perm, p[0].at, p[0].bytes), (0x40_0000, ro_x, 0, &f[0x100..0x180]));
        assert_eq!((p[1].va, p[1].perm, p[1].at, p[1].bytes), (0x41_0000, rw, 0xff0, &f[0x180..0x190]));
        assert_eq!((p[2].va, p[2].at, p[2].bytes), (0x41_1000, 0, &f[0x190..0x1c0]));
        assert_eq!((p[3].va, p[3].at, p[3].bytes.len()), (0x41_2000, 0, 0), "bss only");
    }

    #[test]
    fn refuses_a_writable_executable_segment() {
        let mut f = sample();
        f[64 + 4..64 + 8].copy_from_slice(&7u32.to_le_bytes()); // text: read, write, execute
        assert_eq!(Elf::parse(&f).err(), Some(ElfError::WriteExec));
        assert_eq!(ElfError::WriteExec.why(), "a segment is writable and executable");
    }

    #[test]
    fn every_truncation_is_refused_with_an_error() {
        let good = sample();
        for len in 0..0x1c0 {
            assert!(Elf::parse(&good[..len]).is_err(), "accepted {len} bytes of a 0x1c0-byte image");
        }
        assert!(Elf::parse(&good[..0x1c0]).is_ok());
    }

    #[test]
    fn random_corruption_never_panics() {
        // A seeded corrupter over the sample; parse must return, not panic, and whatever it
        // accepts must stay inside the file.
        let good = sample();
        let mut r = crate::rng::Rng::new(0xe1f);
        for _ in 0..20_000 {
            let mut f = good.clone();
            for _ in 0..4 {
                let x = r.next_u64();
                let at = (x % f.len() as u64) as usize;
                f[at] = (x >> 32) as u8;
            }
            if let Ok(e) = Elf::parse(&f) {
                for s in e.segments() {
                    assert_eq!(e.bytes(&s).len() as u64, s.file_size);
                    assert!(s.vaddr + s.mem_size <= USER_VA_LIMIT);
                    assert!(!(s.write && s.exec));
                }
                // Bounded, so that a huge bss does not walk millions of pages here.
                for p in e.pages().take(64) {
                    assert!(p.va.is_multiple_of(PAGE) && p.va < USER_VA_LIMIT);
                    assert!(p.at + p.bytes.len() <= PAGE as usize, "a page's bytes overflow it");
                }
            }
        }
    }
}
