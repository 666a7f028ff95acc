//! What travels on the wire: the host's header and chunks, the loader's reply frames.
//!
//! Host → loader is binary (little-endian). Loader → host is short ASCII frames a person can
//! read on a plain terminal: `[exo R 01e00000]`, one per line.

use exo_format::crc32::{crc32, Crc32};
use exo_format::le;

/// First four bytes of a header. The loader ignores everything else while it waits.
pub const HEADER_MAGIC: [u8; 4] = *b"EXO!";
/// The protocol version this crate speaks, in the header's byte 4.
pub const VERSION: u8 = 1;
/// Bytes in a header.
pub const HEADER_LEN: usize = 20;
/// Chunk sizes a loader accepts: at least the 64-byte arm64 header, so the first chunk can
/// be checked before the rest is sent.
pub const MIN_CHUNK: usize = 64;
pub const MAX_CHUNK: usize = 4096;
pub const DEFAULT_CHUNK: usize = 1024;

/// The transfer's header: what is coming, and how to check it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    /// Image size in bytes.
    pub size: u32,
    /// CRC-32 of the whole image.
    pub crc: u32,
    /// Payload bytes per chunk (the last chunk holds the rest).
    pub chunk: u16,
}

impl Header {
    /// `magic[4] version flags chunk:u16 size:u32 crc:u32 header_crc:u32`, where
    /// `header_crc` is the CRC-32 of the 16 bytes before it.
    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let mut h = [0u8; HEADER_LEN];
        h[..4].copy_from_slice(&HEADER_MAGIC);
        h[4] = VERSION;
        h[5] = 0;
        le::put_u16(&mut h, 6, self.chunk);
        le::put_u32(&mut h, 8, self.size);
        le::put_u32(&mut h, 12, self.crc);
        let c = crc32(&h[..16]);
        le::put_u32(&mut h, 16, c);
        h
    }

    /// Checks and reads a header (magic included).
    pub fn decode(h: &[u8; HEADER_LEN]) -> Result<Header, ErrorCode> {
        if h[..4] != HEADER_MAGIC || crc32(&h[..16]) != le::get_u32(h, 16) {
            return Err(ErrorCode::BadHeader);
        }
        if h[4] != VERSION {
            return Err(ErrorCode::Version);
        }
        let chunk = le::get_u16(h, 6);
        if h[5] != 0 || !(MIN_CHUNK..=MAX_CHUNK).contains(&(chunk as usize)) {
            return Err(ErrorCode::BadHeader);
        }
        Ok(Header { size: le::get_u32(h, 8), crc: le::get_u32(h, 12), chunk })
    }

    /// Number of chunks the image is sent in.
    pub fn chunks(&self) -> u32 {
        (self.size as u64).div_ceil(self.chunk as u64) as u32
    }

    /// Byte range of chunk `index` in the image.
    pub fn chunk_range(&self, index: u32) -> core::ops::Range<usize> {
        let start = index as usize * self.chunk as usize;
        start..(start + self.chunk as usize).min(self.size as usize)
    }
}

/// The CRC a chunk frame carries: over its index (little-endian) and its payload.
pub fn chunk_crc(index: u32, data: &[u8]) -> u32 {
    let mut c = Crc32::new();
    c.update(&index.to_le_bytes());
    c.update(data);
    c.finish()
}

/// Why a loader refused a transfer; the number goes on the wire in an `E` frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum ErrorCode {
    BadHeader = 1,
    Version = 2,
    Empty = 3,
    TooBig = 4,
    Stalled = 5,
    BadChunks = 6,
    ImageCrc = 7,
}

impl ErrorCode {
    pub fn from_u32(v: u32) -> Option<ErrorCode> {
        use ErrorCode::*;
        [BadHeader, Version, Empty, TooBig, Stalled, BadChunks, ImageCrc].into_iter().find(|c| *c as u32 == v)
    }

    pub const fn describe(self) -> &'static str {
        match self {
            ErrorCode::BadHeader => "the header was corrupt or incomplete",
            ErrorCode::Version => "the host speaks another protocol version",
            ErrorCode::Empty => "the image is empty",
            ErrorCode::TooBig => "the image does not fit in the memory free at the load address",
            ErrorCode::Stalled => "the transfer stopped: no data for too long",
            ErrorCode::BadChunks => "a chunk arrived corrupted too many times in a row",
            ErrorCode::ImageCrc => "the CRC-32 of the whole image in memory did not match the header",
        }
    }

    /// Whether sending the same image again can succeed.
    pub const fn retryable(self) -> bool {
        matches!(self, ErrorCode::BadHeader | ErrorCode::Stalled | ErrorCode::BadChunks | ErrorCode::ImageCrc)
    }
}

/// A frame the loader sends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reply {
    /// `R`: waiting for a header; the value is the largest image it takes (bytes).
    Ready(u32),
    /// `G`: header accepted, send the chunks; the value is the image size.
    Go(u32),
    /// `A`: chunk N arrived intact.
    Ack(u32),
    /// `N`: chunk N is needed (again).
    Nak(u32),
    /// `E`: transfer refused; the loader waits for a new header.
    Error(ErrorCode),
    /// `B`: the whole image checked out (the value is its CRC-32); the loader jumps to it.
    Booting(u32),
}

/// Bytes in a frame, without the newline that follows it.
pub const FRAME_LEN: usize = 16;
const PREFIX: &[u8; 5] = b"[exo ";

impl Reply {
    fn parts(self) -> (u8, u32) {
        match self {
            Reply::Ready(v) => (b'R', v),
            Reply::Go(v) => (b'G', v),
            Reply::Ack(v) => (b'A', v),
            Reply::Nak(v) => (b'N', v),
            Reply::Error(c) => (b'E', c as u32),
            Reply::Booting(v) => (b'B', v),
        }
    }

    /// `[exo C hhhhhhhh]` and a newline.
    pub fn encode(self) -> [u8; FRAME_LEN + 1] {
        let (code, v) = self.parts();
        let mut f = [0u8; FRAME_LEN + 1];
        f[..5].copy_from_slice(PREFIX);
        f[5] = code;
        f[6] = b' ';
        for i in 0..8 {
            f[7 + i] = b"0123456789abcdef"[(v >> (28 - 4 * i)) as usize & 0xf];
        }
        f[15] = b']';
        f[16] = b'\n';
        f
    }

    fn decode(f: &[u8; FRAME_LEN]) -> Option<Reply> {
        let mut v = 0u32;
        for &c in &f[7..15] {
            v = (v << 4) | (c as char).to_digit(16)?;
        }
        Some(match f[5] {
            b'R' => Reply::Ready(v),
            b'G' => Reply::Go(v),
            b'A' => Reply::Ack(v),
            b'N' => Reply::Nak(v),
            b'E' => Reply::Error(ErrorCode::from_u32(v)?),
            b'B' => Reply::Booting(v),
            _ => return None,
        })
    }
}

/// Finds reply frames in what the loader sends; everything else is passed on as text (the
/// loader's own messages, firmware chatter, noise).
#[derive(Default)]
pub struct ReplyScanner {
    buf: [u8; FRAME_LEN],
    len: usize,
    after_frame: bool,
}

impl ReplyScanner {
    pub fn new() -> Self {
        Self::default()
    }

    fn fits(&self, b: u8) -> bool {
        match self.len {
            0..=4 => b == PREFIX[self.len],
            5 => b.is_ascii_uppercase(),
            6 => b == b' ',
            7..=14 => b.is_ascii_hexdigit(),
            _ => b == b']',
        }
    }

    /// Feeds one byte. Returns a frame when `b` completes one; bytes that turn out not to
    /// belong to a frame go to `text`. The line end after a frame is swallowed.
    pub fn feed(&mut self, b: u8, text: &mut impl FnMut(u8)) -> Option<Reply> {
        if self.after_frame && (b == b'\r' || b == b'\n') {
            return None;
        }
        self.after_frame = false;
        if self.fits(b) {
            self.buf[self.len] = b;
            self.len += 1;
            if self.len == FRAME_LEN {
                self.len = 0;
                if let Some(r) = Reply::decode(&self.buf) {
                    self.after_frame = true;
                    return Some(r);
                }
                self.buf.iter().for_each(|&c| text(c));
            }
            return None;
        }
        // Only `[` can start a frame, and no frame holds a `[` after its first byte, so a
        // mismatch never hides the start of another frame inside the buffer.
        self.buf[..self.len].iter().for_each(|&c| text(c));
        self.len = 0;
        if b == PREFIX[0] {
            self.buf[0] = b;
            self.len = 1;
        } else {
            text(b);
        }
        None
    }
}
