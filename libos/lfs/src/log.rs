//! The log writer: the in-memory segment buffer, partial segments, kills and segment switches.
//!
//! Items are laid out in a buffer that mirrors the current segment. A partial segment (PS)
//! is opened lazily, grows as items are appended, and is written with one device transfer
//! when a commit needs it on disk or the segment is full.

use crate::device::{BlockDevice, SECTOR};
use crate::error::{Error, Result};
use crate::fs::Fs;
use crate::layout::BLOCK;
use crate::layout::{ptr_len, ptr_sector, NO_SEG};
use crate::summary::{
    seal, seal_direct, trailer_sectors, Entry, EntryKind, Header, FLAG_COMMIT, FLAG_DIRECT, HEADER_ENTRIES,
};
use alloc::vec;
use alloc::vec::Vec;

pub(crate) struct Log {
    pub seg: u32,
    pub next_seg: u32,
    /// Mirrors the current segment from sector `mem_from` up to `fill`. Empty until the
    /// log's first item (`room_for`, `write_direct`): a mount that never writes (the boot's,
    /// a program that only reads) neither zeroes nor maps a segment's worth of memory.
    pub buf: Vec<u8>,
    pub mem_from: u32,
    /// Next free sector of the segment (relative).
    pub fill: u32,
    /// Header sector (relative) of the open PS.
    pub ps: Option<u32>,
    pub entries: Vec<Entry>,
    /// Serial the open (or next) PS gets.
    pub serial: u64,
    pub epoch: u64,
    /// PSs were written since the last commit.
    pub group_open: bool,
    /// Direct PSs of this segment whose data is written and whose header (sealed in `buf`
    /// at this relative sector) is not yet: written after one flush for them all, before
    /// anything else goes into the log.
    pub headers: Vec<u32>,
}

impl Log {
    pub fn new(seg: u32, next_seg: u32, fill: u32, serial: u64, epoch: u64) -> Log {
        Log {
            seg,
            next_seg,
            buf: Vec::new(),
            mem_from: fill,
            fill,
            ps: None,
            entries: Vec::new(),
            serial,
            epoch,
            group_open: false,
            headers: Vec::new(),
        }
    }
}

/// Live bytes an item adds to its segment.
pub(crate) fn item_bytes(e: &Entry) -> u32 {
    match e.kind {
        EntryKind::Inodes => e.ino * crate::layout::INODE_SIZE as u32,
        _ => e.payload() * SECTOR as u32,
    }
}

impl<D: BlockDevice> Fs<D> {
    /// Makes room in the open PS for an item of `sectors` plus `entries` summary entries,
    /// closing the PS and moving to the next segment if it does not fit.
    pub(crate) fn room_for(&mut self, sectors: u32, entries: usize) -> Result<()> {
        let seg_sectors = self.geo.seg_sectors;
        self.segment_buffer();
        loop {
            match self.log.ps {
                None => {
                    let need = 1 + sectors + trailer_sectors(entries);
                    if self.log.fill + need > seg_sectors {
                        self.switch_segment()?;
                        continue;
                    }
                    self.log.ps = Some(self.log.fill);
                    self.log.fill += 1;
                    return Ok(());
                }
                Some(_) => {
                    let end = self.log.fill + sectors + trailer_sectors(self.log.entries.len() + entries);
                    if end <= seg_sectors {
                        return Ok(());
                    }
                    self.close_ps(false)?;
                }
            }
        }
    }

    /// Gives the log its segment buffer, zeroed, before its first item ([`Log::buf`]).
    fn segment_buffer(&mut self) {
        if self.log.buf.is_empty() {
            self.log.buf = vec![0; self.geo.seg_sectors as usize * SECTOR];
        }
    }

    /// Appends an item; returns its absolute sector. The caller fills all its sectors in
    /// `log.buf` at the returned relative position.
    pub(crate) fn append(&mut self, e: Entry) -> Result<(u64, u32)> {
        let n = e.payload();
        self.room_for(n, 1)?;
        let rel = self.log.fill;
        self.log.fill += n;
        self.log.entries.push(e);
        let (seg, serial) = (self.log.seg, self.log.serial);
        self.usage.add(seg, item_bytes(&e), serial);
        Ok((self.geo.seg_start(seg) + rel as u64, rel))
    }

    /// Records that `bytes` at pointer/sector `sector` are no longer live.
    pub(crate) fn kill_at(&mut self, sector: u64, bytes: u32) -> Result<()> {
        let Some(seg) = self.geo.seg_of(sector) else {
            self.usage.underflows += 1;
            return Ok(());
        };
        self.usage.sub(seg, bytes);
        self.room_for(0, 1)?;
        self.log.entries.push(Entry { kind: EntryKind::Kill, sectors: 0, level: 0, ino: bytes, key: sector });
        Ok(())
    }

    /// Kills the block a pointer names (no-op for a hole).
    pub(crate) fn kill_ptr(&mut self, p: u64) -> Result<()> {
        if p == 0 {
            return Ok(());
        }
        self.kill_at(ptr_sector(p), ptr_len(p) * SECTOR as u32)
    }

    /// Records that inode `ino` was freed.
    pub(crate) fn record_free(&mut self, ino: u32) -> Result<()> {
        self.room_for(0, 1)?;
        self.log.entries.push(Entry { kind: EntryKind::Free, sectors: 0, level: 0, ino, key: 0 });
        Ok(())
    }

    /// Whether absolute `sector` is in the unwritten open PS (so it may be changed in place).
    pub(crate) fn in_open_ps(&self, sector: u64) -> bool {
        let start = self.geo.seg_start(self.log.seg);
        match self.log.ps {
            Some(ps) => sector > start + ps as u64 && sector < start + self.log.fill as u64,
            None => false,
        }
    }

    /// Writes the open PS. With `commit`, also ends the atomic group (writing an empty PS if
    /// an uncommitted group is on disk and nothing is open).
    pub(crate) fn close_ps(&mut self, commit: bool) -> Result<()> {
        self.write_headers()?;
        if self.log.ps.is_none() {
            if !(commit && self.log.group_open) {
                return Ok(());
            }
            self.room_for(0, 0)?;
        }
        let start = self.log.ps.unwrap_or(self.log.fill);
        if self.log.entries.is_empty() && !(commit && self.log.group_open) {
            self.log.fill = start;
            self.log.ps = None;
            return Ok(());
        }
        let total = self.log.fill + trailer_sectors(self.log.entries.len()) - start;
        let h = Header {
            flags: if commit { FLAG_COMMIT } else { 0 },
            epoch: self.log.epoch,
            serial: self.log.serial,
            total,
            nentries: self.log.entries.len() as u32,
            next_seg: self.log.next_seg,
        };
        let range = start as usize * SECTOR..(start + total) as usize * SECTOR;
        seal(&mut self.log.buf[range.clone()], &h, &self.log.entries, self.geo.fs_id);
        let at = self.geo.seg_start(self.log.seg) + start as u64;
        self.record_epoch()?;
        let r = self.dev.write(at, &self.log.buf[range]);
        self.io(r)?;
        self.unflushed = true;
        self.stats.log_sectors += total as u64;
        self.stats.partial_segments += 1;
        self.log.fill = start + total;
        self.log.ps = None;
        self.log.entries.clear();
        self.log.serial += 1;
        self.log.group_open = !commit;
        if let Some((w, _)) = &self.ichunk {
            if *w < at + total as u64 && at < *w + 8 {
                self.ichunk = None;
            }
        }
        Ok(())
    }

    /// Writes the headers of the direct PSs whose data is on its way: one flush (the data
    /// must be durable before a header can reach the medium), then each header.
    pub(crate) fn write_headers(&mut self) -> Result<()> {
        if self.log.headers.is_empty() {
            return Ok(());
        }
        let r = self.dev.flush();
        self.io(r)?;
        let start = self.geo.seg_start(self.log.seg);
        for i in 0..self.log.headers.len() {
            let rel = self.log.headers[i] as usize;
            let r = self.dev.write(start + rel as u64, &self.log.buf[rel * SECTOR..(rel + 1) * SECTOR]);
            self.io(r)?;
        }
        self.log.headers.clear();
        self.unflushed = true;
        Ok(())
    }

    /// Writes whole blocks of file `ino` from `blk` on as a direct PS ([`FLAG_DIRECT`]): the
    /// data goes from `data` (whole blocks) straight to the disk; its header is sealed in
    /// the segment buffer and written later, after a flush ([`write_headers`](Self::write_headers),
    /// before anything else enters the log). Nothing is copied and nothing is hashed but
    /// the header. Writes as many blocks as fit in one header sector's entries and in the
    /// segment; returns how many (at least 1). The file's pointers are set in memory, the
    /// old blocks killed.
    pub(crate) fn write_direct(&mut self, ino: u32, blk: u64, data: &[u8]) -> Result<usize> {
        let per = (BLOCK / SECTOR) as u32;
        self.segment_buffer();
        // The open PS goes first: the direct PS takes the log's next sectors. (With none
        // open, nothing is written: earlier direct PSs' headers may wait on.)
        if self.log.ps.is_some() {
            self.close_ps(false)?;
        }
        if self.log.fill + 1 + per > self.geo.seg_sectors {
            self.switch_segment()?;
        }
        let room = ((self.geo.seg_sectors - self.log.fill - 1) / per) as usize;
        let n = (data.len() / BLOCK).min(HEADER_ENTRIES).min(room);
        let rel = self.log.fill;
        let total = 1 + n as u32 * per;
        let at = self.geo.seg_start(self.log.seg) + rel as u64;
        self.record_epoch()?;
        let r = self.dev.write(at + 1, &data[..n * BLOCK]);
        self.io(r)?;
        let h = Header {
            flags: FLAG_DIRECT,
            epoch: self.log.epoch,
            serial: self.log.serial,
            total,
            nentries: n as u32,
            next_seg: self.log.next_seg,
        };
        // The header waits where it lies in the segment buffer (which mirrors the segment
        // only from `mem_from` on: the data is not there). It must not reach the medium
        // before the data it vouches for: it is written after a flush.
        let hdr = &mut self.log.buf[rel as usize * SECTOR..(rel as usize + 1) * SECTOR];
        let entries = (0..n as u64).map(|i| Entry {
            kind: EntryKind::Data,
            sectors: per as u8,
            level: 0,
            ino,
            key: blk + i,
        });
        seal_direct(hdr, &h, entries, self.geo.fs_id);
        self.log.headers.push(rel);
        self.unflushed = true;
        self.stats.log_sectors += total as u64;
        self.stats.partial_segments += 1;
        let (seg, serial) = (self.log.seg, self.log.serial);
        self.usage.add(seg, n as u32 * BLOCK as u32, serial);
        self.log.fill = rel + total;
        self.log.mem_from = self.log.fill;
        self.log.serial += 1;
        self.log.group_open = true;
        if let Some((w, _)) = &self.ichunk {
            if *w < at + total as u64 && at < *w + 8 {
                self.ichunk = None;
            }
        }
        // Point the file at the new blocks, a structure (inode or indirect block) at a time,
        // and kill what they replace.
        let mut done = 0;
        let mut old = [0u64; HEADER_ENTRIES];
        while done < n {
            let k = self.set_block_run(
                ino,
                blk + done as u64,
                at + 1 + (done as u32 * per) as u64,
                &mut old[..n - done],
            )?;
            for &p in &old[..k] {
                // Past the end of a damaged file a stray pointer that names no block of the
                // log is dropped without a kill.
                if p != 0 && self.geo.ptr_ok(p) {
                    self.kill_ptr(p)?;
                }
            }
            done += k;
        }
        Ok(n)
    }

    /// Moves the log into its next segment and reserves the one after.
    fn switch_segment(&mut self) -> Result<()> {
        // Waiting headers live in the buffer, which is about to mirror the next segment.
        self.write_headers()?;
        if self.log.next_seg == NO_SEG {
            // Only reachable if the space reserve was miscounted; the in-memory state may be
            // mid-operation, so stop writing rather than commit half of it.
            self.failed = true;
            return Err(Error::NoSpace);
        }
        self.log.seg = self.log.next_seg;
        self.log.next_seg = self.usage.take_free(self.log.seg);
        self.log.fill = 0;
        self.log.mem_from = 0;
        self.segs_since_cp += 1;
        Ok(())
    }

    /// Sectors the log can still take: the rest of this segment, the next one, and the free ones.
    pub(crate) fn log_room(&self) -> u64 {
        let s = self.geo.seg_sectors as u64;
        let next = (self.log.next_seg != NO_SEG) as u64;
        (s - self.log.fill as u64) + (next + self.usage.nfree as u64) * s
    }

    /// Reads sectors of a block the log holds, from the segment buffer when they are there.
    /// A range reaching from the disk into the buffer is read in two parts (adjacent blocks
    /// are read as one range; today a PS header always separates the two sides).
    pub(crate) fn read_log(&mut self, sector: u64, buf: &mut [u8]) -> Result<()> {
        self.read_log_inline(sector, buf)
    }

    /// [`Fs::read_log`] inlined where it is called (a cached block's read), the split read
    /// excepted.
    #[inline(always)]
    pub(crate) fn read_log_inline(&mut self, sector: u64, buf: &mut [u8]) -> Result<()> {
        let start = self.geo.seg_start(self.log.seg);
        let n = (buf.len() / SECTOR) as u64;
        let mem = start + self.log.mem_from as u64;
        if sector >= mem && sector + n <= start + self.log.fill as u64 {
            let at = (sector - start) as usize * SECTOR;
            // (Always there but for an empty read before the log's first item: no buffer.)
            if let Some(from) = self.log.buf.get(at..at + buf.len()) {
                buf.copy_from_slice(from);
                return Ok(());
            }
        }
        if sector < mem && sector + n > mem {
            return self.read_log_split(sector, mem, buf);
        }
        if sector + n > self.geo.total_sectors {
            return Err(Error::Corrupt(crate::Corruption::Summary));
        }
        match self.dev.read(sector, buf) {
            Ok(()) => Ok(()),
            Err(e) => Err(io_error(e)),
        }
    }

    /// The part of `sector..` before `mem` from the disk, the rest from the buffer.
    #[inline(never)]
    fn read_log_split(&mut self, sector: u64, mem: u64, buf: &mut [u8]) -> Result<()> {
        let (disk, rest) = buf.split_at_mut((mem - sector) as usize * SECTOR);
        self.read_log(sector, disk)?;
        self.read_log(mem, rest)
    }
}

/// A device's failure as the LFS's error, out of line: the read's success path then tests
/// the device's result once, with no error value built on the way.
#[cold]
#[inline(never)]
fn io_error(e: crate::error::IoError) -> Error {
    Error::Io(e)
}

#[cfg(test)]
mod tests {
    use crate::{FormatOptions, Fs, MemDevice, MountOptions};

    /// The segment buffer is made at the log's first item, not at mount: a mount that
    /// only reads never holds one, and the first write (small, or direct) makes it.
    #[test]
    fn the_segment_buffer_waits_for_the_first_write() {
        let opts = FormatOptions { segment_bytes: 64 * 1024, ..Default::default() };
        let mut fs = Fs::format(MemDevice::new(8192), opts).unwrap();
        let f = fs.create("/a").unwrap();
        fs.write(f, 0, &[7; 5000]).unwrap();
        let clean = fs.unmount().unwrap();
        for direct in [false, true] {
            let dev = MemDevice { data: clean.data.clone() };
            let mut fs = Fs::mount(dev, MountOptions::default()).unwrap();
            assert!(fs.log.buf.is_empty(), "a clean mount holds no segment buffer");
            let (h, mut buf) = (fs.open("/a").unwrap(), [0u8; 5000]);
            assert_eq!(fs.read(h, 0, &mut buf).unwrap(), 5000);
            assert!(buf.iter().all(|&b| b == 7) && fs.log.buf.is_empty(), "a read made one");
            // Four whole blocks go out as a direct partial segment; a few bytes are copied.
            let data = vec![9u8; if direct { 4 * crate::layout::BLOCK } else { 10 }];
            fs.write(h, 0, &data).unwrap();
            assert_eq!(fs.log.buf.len(), 64 * 1024, "the first write (direct: {direct})");
            fs.sync().unwrap();
            let mut back = vec![0u8; data.len()];
            assert_eq!(fs.read(h, 0, &mut back).unwrap(), data.len());
            assert_eq!(back, data);
        }
    }
}
