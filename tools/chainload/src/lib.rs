//! exo-chainload: the protocol that moves a kernel over a UART into a waiting loader.
//!
//! Both ends live here, as plain logic over a byte [`Link`], so the loader on the board
//! (`tools/chainloader`) and the host (`cargo xtask chainboot`) run exactly this code, and
//! `cargo test` runs them against each other through a simulated wire that corrupts, drops
//! and truncates (see `tests/`). The protocol is described in `docs/chainload.md`:
//!
//! 1. The loader says `[exo R <capacity>]` every second while it waits.
//! 2. The host sends a 20-byte [`wire::Header`] (size, CRC-32 of the image, chunk size,
//!    and a CRC-32 of the header itself); the loader answers `G` or `E <why>`.
//! 3. The host sends chunks (`index`, payload, CRC-32) one at a time; the loader answers
//!    `A <index>` or `N <index>` (send it again), writing good chunks straight to their place.
//! 4. After the last chunk the loader checks the CRC-32 of the image *in memory* and answers
//!    `B <crc>` before it jumps, or `E` and waits again. It never jumps to an image that did
//!    not check out.
//!
//! - [`wire`]: the bytes on the wire (checksummed with `exo_format::crc32`).
//! - [`target`]: the loader's end. [`host`]: the host's end.
//! - [`place`]: where the loader moves itself and how much room the kernel gets.
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

pub mod host;
pub mod place;
pub mod target;
pub mod wire;

/// A byte stream with receive timeouts: a UART on the board, a serial port or socket on the
/// host. Errors are not reported here: a dead link reads as silence, which every step of the
/// protocol already handles with a timeout.
pub trait Link {
    /// Sends bytes (blocking until they are handed to the hardware or OS).
    fn send(&mut self, bytes: &[u8]);
    /// The next byte, or `None` when none arrived within `timeout_ms` milliseconds.
    fn recv(&mut self, timeout_ms: u32) -> Option<u8>;
}
