//! The loader's end: wait for a header, take the chunks, check the image, say `B`.

use crate::wire::{ErrorCode, Header, Reply, HEADER_LEN, HEADER_MAGIC};
use crate::Link;
use exo_format::crc32::{crc32, Crc32};
use exo_format::le;

/// How long the loader waits for things, in milliseconds.
#[derive(Clone, Copy, Debug)]
pub struct Timing {
    /// Between two `R` frames while idle.
    pub beacon_ms: u32,
    /// Longest silence inside a header or a chunk.
    pub byte_ms: u32,
    /// Longest wait for the next chunk to begin; then the transfer is abandoned.
    pub chunk_start_ms: u32,
    /// After a damaged chunk: how long the line must be quiet before the `N`.
    pub drain_ms: u32,
    /// Damaged copies of one chunk in a row before the transfer is abandoned.
    pub max_naks: u32,
}

impl Timing {
    pub const DEFAULT: Timing =
        Timing { beacon_ms: 1000, byte_ms: 500, chunk_start_ms: 5000, drain_ms: 100, max_naks: 8 };
}

/// What a good transfer delivered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Loaded {
    pub size: usize,
    pub crc: u32,
}

/// A refused transfer, with the details the loader prints.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LoadError {
    BadHeader,
    Version,
    Empty,
    /// `needs` bytes (the image, or its arm64 header's `image_size`) but `capacity` are free.
    TooBig {
        needs: u64,
        capacity: usize,
    },
    /// `received` of `size` bytes had arrived when the data stopped.
    Stalled {
        received: usize,
        size: usize,
    },
    BadChunks {
        index: u32,
    },
    ImageCrc {
        expected: u32,
        actual: u32,
    },
}

impl LoadError {
    pub fn code(&self) -> ErrorCode {
        match self {
            LoadError::BadHeader => ErrorCode::BadHeader,
            LoadError::Version => ErrorCode::Version,
            LoadError::Empty => ErrorCode::Empty,
            LoadError::TooBig { .. } => ErrorCode::TooBig,
            LoadError::Stalled { .. } => ErrorCode::Stalled,
            LoadError::BadChunks { .. } => ErrorCode::BadChunks,
            LoadError::ImageCrc { .. } => ErrorCode::ImageCrc,
        }
    }
}

impl core::fmt::Display for LoadError {
    fn fmt(&self, f: &mut core::fmt::Formatter) -> core::fmt::Result {
        f.write_str(self.code().describe())?;
        match *self {
            LoadError::TooBig { needs, capacity } => write!(f, " ({needs} bytes; {capacity} free)"),
            LoadError::Stalled { received, size } => write!(f, " ({received} of {size} bytes arrived)"),
            LoadError::BadChunks { index } => write!(f, " (chunk {index})"),
            LoadError::ImageCrc { expected, actual } => {
                write!(f, " ({actual:#010x}, expected {expected:#010x})")
            }
            _ => Ok(()),
        }
    }
}

/// Bytes of memory an image needs once it runs: an arm64 `Image` header's `image_size`
/// (which counts BSS and stack), or just its length when it has no such header.
pub fn footprint(image_start: &[u8], size: usize) -> u64 {
    if image_start.len() >= 64 && image_start[56..60] == *b"ARM\x64" {
        let declared = le::get_u64(image_start, 16);
        return declared.max(size as u64);
    }
    size as u64
}

/// Serves one transfer: says `R` until a header arrives, then receives the image into
/// `dest` (whose length is the capacity). `Ok` only after the whole image in `dest` matched
/// its CRC-32 and `B` was sent; on `Err` an `E` frame has been sent and the caller should
/// report the error and call `serve` again.
pub fn serve<L: Link>(link: &mut L, dest: &mut [u8], t: &Timing) -> Result<Loaded, LoadError> {
    let header = match wait_header(link, dest.len(), t) {
        Ok(h) => h,
        Err(e) => return Err(refuse(link, e, t)),
    };
    receive(link, dest, &header, t).map_err(|e| refuse(link, e, t))
}

fn refuse<L: Link>(link: &mut L, e: LoadError, t: &Timing) -> LoadError {
    drain(link, t);
    link.send(&Reply::Error(e.code()).encode());
    e
}

/// Reads bytes until the line has been quiet for `drain_ms`.
fn drain<L: Link>(link: &mut L, t: &Timing) {
    while link.recv(t.drain_ms).is_some() {}
}

fn wait_header<L: Link>(link: &mut L, capacity: usize, t: &Timing) -> Result<Header, LoadError> {
    let ready = Reply::Ready(capacity.min(u32::MAX as usize) as u32).encode();
    link.send(&ready);
    let mut h = [0u8; HEADER_LEN];
    let mut matched = 0;
    while matched < HEADER_MAGIC.len() {
        let Some(b) = link.recv(t.beacon_ms) else {
            link.send(&ready);
            continue;
        };
        // The magic has no repeated first byte, so a restart only ever begins at `b`.
        matched = if b == HEADER_MAGIC[matched] { matched + 1 } else { usize::from(b == HEADER_MAGIC[0]) };
    }
    h[..4].copy_from_slice(&HEADER_MAGIC);
    for slot in &mut h[4..] {
        *slot = link.recv(t.byte_ms).ok_or(LoadError::BadHeader)?;
    }
    let header = Header::decode(&h).map_err(|c| match c {
        ErrorCode::Version => LoadError::Version,
        _ => LoadError::BadHeader,
    })?;
    if header.size == 0 {
        return Err(LoadError::Empty);
    }
    if header.size as usize > capacity {
        return Err(LoadError::TooBig { needs: header.size as u64, capacity });
    }
    link.send(&Reply::Go(header.size).encode());
    Ok(header)
}

/// How one chunk frame went.
enum Chunk {
    /// Intact, with this index (already written to its place if it was the expected one).
    Good(u32),
    /// Damaged, cut short, or padded with noise.
    Damaged,
    /// Nothing began within `chunk_start_ms`.
    Silent,
}

fn receive<L: Link>(link: &mut L, dest: &mut [u8], h: &Header, t: &Timing) -> Result<Loaded, LoadError> {
    let size = h.size as usize;
    let (mut next, mut naks) = (0u32, 0u32);
    while next < h.chunks() {
        match read_chunk(link, dest, h, next, t) {
            Chunk::Silent => {
                let received = h.chunk_range(next).start;
                return Err(LoadError::Stalled { received, size });
            }
            Chunk::Good(i) if i == next => {
                let needs = footprint(&dest[..size.min(64)], size);
                if i == 0 && needs > dest.len() as u64 {
                    return Err(LoadError::TooBig { needs, capacity: dest.len() });
                }
                link.send(&Reply::Ack(i).encode());
                next += 1;
                naks = 0;
            }
            // Our `A` for the previous chunk was lost and the host sent it again.
            Chunk::Good(i) if i + 1 == next => link.send(&Reply::Ack(i).encode()),
            Chunk::Good(_) | Chunk::Damaged => {
                naks += 1;
                if naks > t.max_naks {
                    return Err(LoadError::BadChunks { index: next });
                }
                drain(link, t);
                link.send(&Reply::Nak(next).encode());
            }
        }
    }
    let actual = crc32(&dest[..size]);
    if actual != h.crc {
        return Err(LoadError::ImageCrc { expected: h.crc, actual });
    }
    link.send(&Reply::Booting(actual).encode());
    Ok(Loaded { size, crc: actual })
}

/// Reads one frame `index:u32 payload crc:u32`. The payload of the expected chunk goes
/// straight to its place in `dest`; nothing runs from `dest` before the final check.
fn read_chunk<L: Link>(link: &mut L, dest: &mut [u8], h: &Header, next: u32, t: &Timing) -> Chunk {
    let Some(first) = link.recv(t.chunk_start_ms) else {
        return Chunk::Silent;
    };
    let mut idx = [first, 0, 0, 0];
    for b in &mut idx[1..] {
        match link.recv(t.byte_ms) {
            Some(x) => *b = x,
            None => return Chunk::Damaged,
        }
    }
    let index = u32::from_le_bytes(idx);
    // A frame's length follows from its index; an index past the end is damage.
    if index >= h.chunks() {
        return Chunk::Damaged;
    }
    let range = h.chunk_range(index);
    let mut crc = Crc32::new();
    crc.update(&idx);
    let store = index == next;
    for at in range.clone() {
        let Some(b) = link.recv(t.byte_ms) else {
            return Chunk::Damaged;
        };
        crc.update(&[b]);
        if store {
            dest[at] = b;
        }
    }
    let mut sum = [0u8; 4];
    for b in &mut sum {
        match link.recv(t.byte_ms) {
            Some(x) => *b = x,
            None => return Chunk::Damaged,
        }
    }
    if le::get_u32(&sum, 0) == crc.finish() {
        Chunk::Good(index)
    } else {
        Chunk::Damaged
    }
}
