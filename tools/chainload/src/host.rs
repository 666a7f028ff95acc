//! The host's end: find the loader, send the header and the chunks, retry what can be retried.

use crate::wire::{chunk_crc, ErrorCode, Header, Reply, ReplyScanner, DEFAULT_CHUNK, MAX_CHUNK, MIN_CHUNK};
use crate::Link;
use exo_format::crc32::crc32;

/// Bytes a UART at 115200 baud carries in a second (8N1: ten bits a byte).
pub const BYTES_PER_SECOND: usize = 11_520;

/// Knobs for [`send`]; the defaults suit a real UART at 115200 baud.
#[derive(Clone, Copy, Debug)]
pub struct Options {
    /// Payload bytes per chunk (64..=4096).
    pub chunk: u16,
    /// Whole transfers to try before giving up.
    pub attempts: u32,
    /// How long to wait for the loader's first `R` (it says one every second).
    pub ready_ms: u32,
    /// How long to wait for each answer (`G`, `A`/`N`, `B`). Must exceed the loader's
    /// `byte_ms + drain_ms`, so that a chunk it found cut short is answered in time.
    pub reply_ms: u32,
    /// Copies of one chunk to send before the attempt is abandoned.
    pub max_resends: u32,
}

impl Options {
    pub const DEFAULT: Options = Options {
        chunk: DEFAULT_CHUNK as u16,
        attempts: 3,
        ready_ms: 30_000,
        reply_ms: 3000,
        max_resends: 10,
    };
}

/// Why a transfer failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SendError {
    /// No `R` frame arrived in time: no loader, a wrong port or baud rate.
    NoLoader,
    /// The loader says it has room for `capacity` bytes.
    TooBig {
        size: usize,
        capacity: u32,
    },
    Empty,
    /// The loader refused the transfer.
    Refused(ErrorCode),
    /// The loader stopped answering while chunk `index` was in flight.
    NoReply {
        index: u32,
    },
    /// Chunk `index` was asked for again too many times.
    TooManyResends {
        index: u32,
    },
    /// The loader started over (said `R`) in the middle of a transfer.
    LoaderRestarted,
    /// The loader confirmed a CRC-32 other than the image's.
    WrongCrc {
        expected: u32,
        confirmed: u32,
    },
}

impl SendError {
    fn retryable(&self) -> bool {
        match self {
            SendError::Refused(c) => c.retryable(),
            SendError::NoReply { .. }
            | SendError::TooManyResends { .. }
            | SendError::LoaderRestarted
            | SendError::WrongCrc { .. } => true,
            SendError::NoLoader | SendError::TooBig { .. } | SendError::Empty => false,
        }
    }
}

impl core::fmt::Display for SendError {
    fn fmt(&self, f: &mut core::fmt::Formatter) -> core::fmt::Result {
        match *self {
            SendError::NoLoader => f.write_str("the chainloader never said it was ready"),
            SendError::TooBig { size, capacity } => {
                write!(f, "the image ({size} bytes) is larger than the loader's room ({capacity} bytes)")
            }
            SendError::Empty => f.write_str("the image is empty"),
            SendError::Refused(c) => write!(f, "the loader refused the transfer: {}", c.describe()),
            SendError::NoReply { index } => write!(f, "the loader stopped answering (at chunk {index})"),
            SendError::TooManyResends { index } => write!(f, "chunk {index} was damaged on every try"),
            SendError::LoaderRestarted => {
                f.write_str("the loader started over in the middle of the transfer")
            }
            SendError::WrongCrc { expected, confirmed } => {
                write!(f, "the loader confirmed CRC-32 {confirmed:#010x}, expected {expected:#010x}")
            }
        }
    }
}

/// What the host wants to show while it sends.
pub trait Observer {
    /// `done` of `total` bytes are confirmed by the loader.
    fn progress(&mut self, _done: usize, _total: usize) {}
    /// A byte the loader sent that is not part of a frame (its own messages).
    fn text(&mut self, _b: u8) {}
    /// An attempt failed and another follows.
    fn retry(&mut self, _why: &SendError, _attempt: u32) {}
    /// Chunk `index` is being sent again.
    fn resend(&mut self, _index: u32) {}
}

/// An observer that shows nothing.
pub struct Quiet;
impl Observer for Quiet {}

/// Sends `image` to a loader on `link`. Returns its CRC-32 once the loader said `B`.
pub fn send<L: Link, O: Observer>(
    link: &mut L,
    image: &[u8],
    o: &Options,
    obs: &mut O,
) -> Result<u32, SendError> {
    if image.is_empty() {
        return Err(SendError::Empty);
    }
    let size =
        u32::try_from(image.len()).map_err(|_| SendError::TooBig { size: image.len(), capacity: 0 })?;
    let chunk = o.chunk.clamp(MIN_CHUNK as u16, MAX_CHUNK as u16);
    let header = Header { size, crc: crc32(image), chunk };
    let mut ep = Endpoint { link, scan: ReplyScanner::new(), obs };
    let mut attempt = 1;
    loop {
        let result = ep.wait_ready(o.ready_ms).and_then(|capacity| {
            if size > capacity {
                return Err(SendError::TooBig { size: image.len(), capacity });
            }
            ep.transfer(image, &header, o)
        });
        match result {
            Err(e) if e.retryable() && attempt < o.attempts => {
                ep.obs.retry(&e, attempt);
                attempt += 1;
            }
            other => return other,
        }
    }
}

/// One end of the conversation: the link, the frame scanner, and who watches.
pub struct Endpoint<'a, L, O> {
    pub link: &'a mut L,
    pub scan: ReplyScanner,
    pub obs: &'a mut O,
}

impl<L: Link, O: Observer> Endpoint<'_, L, O> {
    /// The next frame within `timeout_ms` (text on the way goes to the observer). A line
    /// that never falls silent (a running kernel, a wrong baud rate) cannot hold this
    /// forever: every [`BYTES_PER_SECOND`] bytes without a frame count as a second.
    pub fn next_reply(&mut self, timeout_ms: u32) -> Option<Reply> {
        let budget = (timeout_ms as usize).div_ceil(1000).max(1) * BYTES_PER_SECOND;
        for _ in 0..budget {
            let b = self.link.recv(timeout_ms)?;
            let obs = &mut *self.obs;
            if let Some(r) = self.scan.feed(b, &mut |c| obs.text(c)) {
                return Some(r);
            }
        }
        None
    }

    /// Waits for an `R` frame; returns the loader's capacity.
    pub fn wait_ready(&mut self, timeout_ms: u32) -> Result<u32, SendError> {
        // Waited in steps of one beacon period: frames other than `R` (a loader finishing
        // an earlier transfer) and noise count too.
        let step = 1000.min(timeout_ms);
        let mut waited = 0u32;
        while waited < timeout_ms {
            match self.next_reply(step) {
                Some(Reply::Ready(capacity)) => return Ok(capacity),
                Some(_) => {}
                None => waited += step,
            }
        }
        Err(SendError::NoLoader)
    }

    /// Sends `header` and the chunks of `image` to a loader that just said `R`.
    pub fn transfer(&mut self, image: &[u8], header: &Header, o: &Options) -> Result<u32, SendError> {
        self.link.send(&header.encode());
        let mut crossed = false;
        loop {
            match self.next_reply(o.reply_ms) {
                Some(Reply::Go(_)) => break,
                Some(Reply::Error(c)) => return Err(SendError::Refused(c)),
                // One `R` may have crossed our header on the wire; a second one means the
                // loader is still waiting: the header never arrived.
                Some(Reply::Ready(_)) if !crossed => crossed = true,
                _ => return Err(SendError::NoReply { index: 0 }),
            }
        }
        let total = image.len().min(header.size as usize);
        for index in 0..header.chunks() {
            self.send_chunk(image, header, index, o)?;
            self.obs.progress(header.chunk_range(index).end.min(total), total);
        }
        match self.next_reply(o.reply_ms.saturating_mul(4)) {
            Some(Reply::Booting(c)) if c == header.crc => Ok(c),
            Some(Reply::Booting(c)) => Err(SendError::WrongCrc { expected: header.crc, confirmed: c }),
            Some(Reply::Error(c)) => Err(SendError::Refused(c)),
            Some(Reply::Ready(_)) => Err(SendError::LoaderRestarted),
            _ => Err(SendError::NoReply { index: header.chunks() }),
        }
    }

    fn send_chunk(&mut self, image: &[u8], h: &Header, index: u32, o: &Options) -> Result<(), SendError> {
        let range = h.chunk_range(index);
        // A header may promise more than the image holds (tests do that on purpose).
        let data = image.get(range.start..range.end.min(image.len())).unwrap_or(&[]);
        // One frame, one write: fewer, larger writes for the OS and USB adapter to carry.
        let mut frame = [0u8; 4 + MAX_CHUNK + 4];
        let n = data.len().min(MAX_CHUNK); // a larger chunk size is refused at the header
        let data = &data[..n];
        frame[..4].copy_from_slice(&index.to_le_bytes());
        frame[4..4 + n].copy_from_slice(data);
        frame[4 + n..8 + n].copy_from_slice(&chunk_crc(index, data).to_le_bytes());
        let frame = &frame[..8 + n];
        let mut silent = 0;
        for copy in 0..o.max_resends {
            if copy > 0 {
                self.obs.resend(index);
            }
            self.link.send(frame);
            loop {
                match self.next_reply(o.reply_ms) {
                    Some(Reply::Ack(i)) if i == index => return Ok(()),
                    Some(Reply::Nak(i)) if i == index => {
                        silent = 0;
                        break;
                    }
                    Some(Reply::Error(c)) => return Err(SendError::Refused(c)),
                    Some(Reply::Ready(_)) => return Err(SendError::LoaderRestarted),
                    Some(_) => {} // an answer to an earlier copy
                    // A lost answer: send again (the loader spots a duplicate), but twice
                    // silent in a row means nobody is there.
                    None => {
                        silent += 1;
                        if silent == 2 {
                            return Err(SendError::NoReply { index });
                        }
                        break;
                    }
                }
            }
        }
        Err(SendError::TooManyResends { index })
    }
}
