//! Partial-segment headers and summary entries: how each log write describes itself.
//!
//! A partial segment (PS) is one device write: a header sector, the payload items, then
//! trailer sectors holding the summary entries that did not fit in the header sector.

use crate::device::SECTOR;
use crate::hash::hash64;
use alloc::vec::Vec;
use exo_format::le::*;

pub const PS_MAGIC: u32 = 0x5053_464c; // "LFSP"
/// The PS ends an atomic group: roll-forward applies the group only when it sees this flag.
pub const FLAG_COMMIT: u32 = 1;
/// A direct PS: file data written straight from the caller's buffer, before its header and
/// with a flush between. It holds only Data entries, all in the header sector (no trailer),
/// and its hash covers the header sector alone: the data is not hashed.
pub const FLAG_DIRECT: u32 = 2;
/// Summary entries that fit in the header sector.
pub const HEADER_ENTRIES: usize = (SECTOR - 64) / ENTRY_SIZE;
pub const ENTRY_SIZE: usize = 16;
const HASH_AT: usize = 56;

/// What a summary entry describes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EntryKind {
    /// A file or directory data block: `ino`, file block `key`, `sectors` long.
    Data = 1,
    /// An indirect block of `ino` at `level`, covering file blocks from `key`.
    Indirect = 2,
    /// `sectors` sectors of packed inodes; `ino` holds the count.
    Inodes = 3,
    /// Inode-map block number `ino`.
    Imap = 4,
    /// No payload: `ino` bytes at sector `key` stopped being live.
    Kill = 5,
    /// No payload: inode `ino` was freed.
    Free = 6,
}

/// One 16-byte summary entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Entry {
    pub kind: EntryKind,
    pub sectors: u8,
    pub level: u8,
    pub ino: u32,
    pub key: u64,
}

impl Entry {
    pub fn encode(&self, b: &mut [u8]) {
        b[0] = self.kind as u8;
        b[1] = self.sectors;
        b[2] = self.level;
        b[3] = 0;
        put_u32(b, 4, self.ino);
        put_u64(b, 8, self.key);
    }

    pub fn decode(b: &[u8]) -> Option<Entry> {
        let kind = match b[0] {
            1 => EntryKind::Data,
            2 => EntryKind::Indirect,
            3 => EntryKind::Inodes,
            4 => EntryKind::Imap,
            5 => EntryKind::Kill,
            6 => EntryKind::Free,
            _ => return None,
        };
        let e = Entry { kind, sectors: b[1], level: b[2], ino: get_u32(b, 4), key: get_u64(b, 8) };
        let payload = !matches!(kind, EntryKind::Kill | EntryKind::Free);
        let ok = b[3] == 0
            && if payload { (1..=8).contains(&e.sectors) } else { e.sectors == 0 }
            && (kind == EntryKind::Indirect) == (1..=3).contains(&e.level)
            && (kind != EntryKind::Inodes || (1..=32).contains(&e.ino));
        ok.then_some(e)
    }

    /// Payload sectors the entry's item occupies.
    pub fn payload(&self) -> u32 {
        match self.kind {
            EntryKind::Kill | EntryKind::Free => 0,
            _ => self.sectors as u32,
        }
    }
}

/// Trailer sectors needed for `n` entries.
pub fn trailer_sectors(n: usize) -> u32 {
    (n.saturating_sub(HEADER_ENTRIES) * ENTRY_SIZE).div_ceil(SECTOR) as u32
}

/// The fixed fields of a PS header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    pub flags: u32,
    pub epoch: u64,
    pub serial: u64,
    /// Sectors in the PS, header and trailer included.
    pub total: u32,
    pub nentries: u32,
    /// The segment the log moves to when it leaves the current one.
    pub next_seg: u32,
}

/// The header's fixed fields (its first 44 bytes).
fn put_fields(hdr: &mut [u8], h: &Header, fs_id: u64) {
    put_u32(hdr, 0, PS_MAGIC);
    put_u32(hdr, 4, h.flags);
    put_u64(hdr, 8, fs_id);
    put_u64(hdr, 16, h.epoch);
    put_u64(hdr, 24, h.serial);
    put_u32(hdr, 32, h.total);
    put_u32(hdr, 36, h.nentries);
    put_u32(hdr, 40, h.next_seg);
}

/// Fills in header and trailer of a PS laid out in `ps` (whole PS, payload already in place)
/// and stamps its hash.
pub fn seal(ps: &mut [u8], h: &Header, entries: &[Entry], fs_id: u64) {
    let hdr = &mut ps[..SECTOR];
    hdr.fill(0);
    put_fields(hdr, h, fs_id);
    let t = trailer_sectors(entries.len()) as usize;
    let tstart = ps.len() - t * SECTOR;
    ps[tstart..].fill(0);
    for (i, e) in entries.iter().enumerate() {
        let at =
            if i < HEADER_ENTRIES { 64 + i * ENTRY_SIZE } else { tstart + (i - HEADER_ENTRIES) * ENTRY_SIZE };
        e.encode(&mut ps[at..at + ENTRY_SIZE]);
    }
    let hash = ps_hash(ps, fs_id);
    put_u64(ps, HASH_AT, hash);
}

/// Reads a header sector; `None` unless the magic and file-system id match and the sizes
/// are plausible for a PS of at most `room` sectors.
pub fn parse_header(s: &[u8], fs_id: u64, room: u32) -> Option<Header> {
    if get_u32(s, 0) != PS_MAGIC || get_u64(s, 8) != fs_id || get_u32(s, 44) != 0 || get_u64(s, 48) != 0 {
        return None;
    }
    let h = Header {
        flags: get_u32(s, 4),
        epoch: get_u64(s, 16),
        serial: get_u64(s, 24),
        total: get_u32(s, 32),
        nentries: get_u32(s, 36),
        next_seg: get_u32(s, 40),
    };
    let fits =
        h.total >= 1 && h.total <= room && (h.nentries as usize) <= room as usize * (SECTOR / ENTRY_SIZE);
    let direct_ok = h.flags & FLAG_DIRECT == 0 || h.nentries as usize <= HEADER_ENTRIES;
    let flags_ok = h.flags & !(FLAG_COMMIT | FLAG_DIRECT) == 0 && direct_ok;
    (fits && flags_ok && trailer_sectors(h.nentries as usize) < h.total).then_some(h)
}

/// The intact partial segments a segment's contents `seg` begins with, in log order: each
/// one's first sector within the segment, its header and its entries. The walk stops at the
/// first sector that is not a plausible header, a PS that fails its checksum, or a break in
/// the sequence (serials must follow one another and epochs never go back).
pub fn partial_segments(seg: &[u8], fs_id: u64) -> impl Iterator<Item = (u32, Header, Vec<Entry>)> + '_ {
    let n = (seg.len() / SECTOR) as u32;
    let mut pos = 0u32;
    let mut prev: Option<(u64, u64)> = None;
    core::iter::from_fn(move || {
        if pos >= n {
            return None;
        }
        let at = pos as usize * SECTOR;
        let h = parse_header(&seg[at..at + SECTOR], fs_id, n - pos)?;
        if prev.is_some_and(|(e, s)| h.serial != s + 1 || h.epoch < e) {
            return None;
        }
        let entries = parse_ps(&seg[at..at + h.total as usize * SECTOR], &h, fs_id)?;
        let item = (pos, h, entries);
        prev = Some((h.epoch, h.serial));
        pos += h.total;
        Some(item)
    })
}

/// Checks a whole PS's hash and decodes its entries. `None` if the PS is torn, stale or
/// its entries do not exactly fill its payload.
pub fn parse_ps(ps: &[u8], h: &Header, fs_id: u64) -> Option<Vec<Entry>> {
    if h.flags & FLAG_DIRECT != 0 {
        return parse_direct(&ps[..SECTOR], h, fs_id);
    }
    if ps_hash(ps, fs_id) != get_u64(ps, HASH_AT) {
        return None;
    }
    let n = h.nentries as usize;
    let t = trailer_sectors(n) as usize;
    let tstart = ps.len() - t * SECTOR;
    let mut out = Vec::with_capacity(n);
    let mut payload = 0u32;
    for i in 0..n {
        let at =
            if i < HEADER_ENTRIES { 64 + i * ENTRY_SIZE } else { tstart + (i - HEADER_ENTRIES) * ENTRY_SIZE };
        let e = Entry::decode(&ps[at..at + ENTRY_SIZE])?;
        payload += e.payload();
        out.push(e);
    }
    (payload as usize + 1 + t == ps.len() / SECTOR).then_some(out)
}

/// Checks a direct PS's header sector `hdr` (its hash and entries: Data only, exactly
/// filling the payload); its payload need not be read.
pub fn parse_direct(hdr: &[u8], h: &Header, fs_id: u64) -> Option<Vec<Entry>> {
    if h.flags & FLAG_DIRECT == 0 || ps_hash(&hdr[..SECTOR], fs_id) != get_u64(hdr, HASH_AT) {
        return None;
    }
    let n = h.nentries as usize;
    let mut out = Vec::with_capacity(n);
    let mut payload = 0u32;
    for i in 0..n.min(HEADER_ENTRIES) {
        let at = 64 + i * ENTRY_SIZE;
        let e = Entry::decode(&hdr[at..at + ENTRY_SIZE]).filter(|e| e.kind == EntryKind::Data)?;
        payload += e.payload();
        out.push(e);
    }
    (n <= HEADER_ENTRIES && payload + 1 == h.total).then_some(out)
}

/// Fills in the header sector `hdr` of a direct PS (see [`FLAG_DIRECT`]) and stamps its
/// hash, which covers this sector alone.
pub fn seal_direct(hdr: &mut [u8], h: &Header, entries: impl IntoIterator<Item = Entry>, fs_id: u64) {
    debug_assert!(h.flags & FLAG_DIRECT != 0 && h.nentries as usize <= HEADER_ENTRIES);
    let hdr = &mut hdr[..SECTOR];
    // Every byte is written once: the fields, the entries, zeros for the rest.
    hdr[44..64].fill(0);
    hdr[64 + h.nentries as usize * ENTRY_SIZE..].fill(0);
    put_fields(hdr, h, fs_id);
    for (i, e) in entries.into_iter().take(h.nentries as usize).enumerate() {
        let at = 64 + i * ENTRY_SIZE;
        e.encode(&mut hdr[at..at + ENTRY_SIZE]);
    }
    let hash = ps_hash(hdr, fs_id);
    put_u64(hdr, HASH_AT, hash);
}

/// The PS hash: bytes 0..56 of the header seed a hash of everything from byte 64 on, so the
/// stored hash (bytes 56..64) is not part of its own input.
pub fn ps_hash(ps: &[u8], fs_id: u64) -> u64 {
    hash64(hash64(fs_id, &ps[..HASH_AT]), &ps[64..])
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    #[test]
    fn sealed_ps_parses_and_torn_ps_does_not() {
        let entries: Vec<Entry> = (0..40)
            .map(|i| Entry { kind: EntryKind::Data, sectors: 1, level: 0, ino: i, key: i as u64 })
            .collect();
        let t = trailer_sectors(entries.len());
        assert_eq!(t, 1);
        let total = 1 + 40 + t;
        let mut ps = vec![0u8; total as usize * SECTOR];
        for (i, b) in ps.iter_mut().enumerate() {
            *b = (i % 251) as u8;
        }
        let h = Header { flags: FLAG_COMMIT, epoch: 3, serial: 9, total, nentries: 40, next_seg: 2 };
        seal(&mut ps, &h, &entries, 77);
        let got = parse_header(&ps, 77, total).unwrap();
        assert_eq!(got, h);
        assert_eq!(parse_ps(&ps, &got, 77).unwrap(), entries);
        assert!(parse_header(&ps, 78, total).is_none());
        ps[SECTOR * 5] ^= 1;
        assert!(parse_ps(&ps, &got, 77).is_none());
    }

    #[test]
    fn direct_ps_hashes_its_header_only() {
        let entries: Vec<Entry> = (0..4)
            .map(|i| Entry { kind: EntryKind::Data, sectors: 8, level: 0, ino: 5, key: i as u64 })
            .collect();
        let total = 1 + 32;
        let mut ps = vec![0x33u8; total as usize * SECTOR];
        let h = Header { flags: FLAG_DIRECT, epoch: 1, serial: 4, total, nentries: 4, next_seg: 3 };
        seal_direct(&mut ps[..SECTOR], &h, entries.iter().copied(), 9);
        let got = parse_header(&ps, 9, total).unwrap();
        assert_eq!(got, h);
        assert_eq!(parse_ps(&ps, &got, 9).unwrap(), entries);
        assert_eq!(parse_direct(&ps[..SECTOR], &got, 9).unwrap(), entries);
        // The data is not hashed; the header is.
        ps[SECTOR * 3] ^= 1;
        assert!(parse_ps(&ps, &got, 9).is_some());
        ps[70] ^= 1;
        assert!(parse_ps(&ps, &got, 9).is_none());
        // Too short for its entries, or a non-Data entry: refused.
        let short = Header { total: 30, ..h };
        let mut ps2 = vec![0u8; SECTOR];
        seal_direct(&mut ps2, &short, entries.iter().copied(), 9);
        assert!(parse_direct(&ps2, &short, 9).is_none());
        let kill = [Entry { kind: EntryKind::Kill, sectors: 0, level: 0, ino: 512, key: 99 }];
        let k = Header { total: 1, nentries: 1, ..h };
        seal_direct(&mut ps2, &k, kill, 9);
        assert!(parse_direct(&ps2, &k, 9).is_none());
    }
}
