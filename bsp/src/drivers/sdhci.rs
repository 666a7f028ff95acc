//! SD cards behind the Raspberry Pi 4's SDHCI controllers (EMMC2, and the legacy Arasan
//! EMMC that QEMU `raspi4b` puts the card on), driven by PIO through the buffer data port.
//!
//! - [`proto`]: the SD protocol as pure, host-tested functions (command words, CSD
//!   capacity, clock divisors).
//! - [`host`]: the controller's registers, resets, clock, command issue and data port.
//! - `card`: finding and initialising a card, moving sectors, recovering from errors,
//!   over any [`HostOps`] (the registers, or a simulated card in the host tests).
//! - This file: the types the rest of the kernel sees, and the [`HostOps`] boundary.
//!
//! Nothing here waits without a deadline: a command, a buffer or a busy card that does not
//! come in time is [`BlockError::Timeout`], and the command and data lines are reset (and
//! the card, if it is stuck in a data state, told to stop) before the error is returned, so
//! the next request starts clean. `docs/sd-controllers.md` describes the whole driver.

mod card;
#[cfg(test)]
mod fake;
pub mod host;
mod pio;
pub mod proto;
#[cfg(test)]
mod tests;

use core::fmt;

pub use self::card::{Sdhci, Starting};
use self::proto::Cmd;
use crate::drivers::bcm2835_mbox::{self, MboxError};
use crate::BlockError;

/// Which of the Pi's two SDHCI controllers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Controller {
    /// EMMC2 at `0xfe340000`: the SD slot on a real Pi 4.
    Emmc2,
    /// The legacy Arasan EMMC at `0xfe300000`: the SD card on QEMU `raspi4b` (Wi-Fi on a Pi 4).
    Legacy,
}

impl Controller {
    pub const fn name(self) -> &'static str {
        match self {
            Controller::Emmc2 => "emmc2",
            Controller::Legacy => "legacy emmc",
        }
    }

    /// The firmware's id for the clock that feeds this controller.
    pub const fn firmware_clock(self) -> u32 {
        match self {
            Controller::Emmc2 => bcm2835_mbox::CLOCK_EMMC2,
            Controller::Legacy => bcm2835_mbox::CLOCK_EMMC,
        }
    }

    /// The base clock assumed when neither the firmware nor the controller says.
    pub const fn default_base_hz(self) -> u32 {
        match self {
            Controller::Emmc2 => 100_000_000,
            Controller::Legacy => 50_000_000,
        }
    }
}

/// What went wrong while finding or using a card; `cmd` is the command that failed, if any.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SdError {
    /// Nothing that looks like an SDHCI controller at that address.
    NoController,
    /// No card answered.
    NoCard,
    /// A command, data phase or the controller did not finish in time.
    Timeout { cmd: Option<u8> },
    /// CRC, end-bit or index errors, or the card reported an error in its status.
    Io { cmd: Option<u8> },
    /// The card answered something this driver cannot use (wrong CMD8 echo, SDUC, ...).
    Unusable { cmd: Option<u8> },
}

impl From<SdError> for BlockError {
    fn from(e: SdError) -> BlockError {
        match e {
            SdError::NoController | SdError::NoCard => BlockError::NoMedium,
            SdError::Timeout { .. } => BlockError::Timeout,
            SdError::Io { .. } | SdError::Unusable { .. } => BlockError::Io,
        }
    }
}

/// Where the base clock's rate came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClockSource {
    Mailbox,
    /// The mailbox did not answer (why), so the capabilities register's value.
    Capabilities(Option<MboxError>),
    /// Neither answered: [`Controller::default_base_hz`].
    Default(Option<MboxError>),
}

/// The card found, for the boot log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CardInfo {
    pub sectors: u64,
    /// SDHC/SDXC (block addressed) rather than SDSC (byte addressed).
    pub high_capacity: bool,
    pub rca: u16,
    /// The card clock for transfers, in Hz.
    pub clock_hz: u32,
}

/// One controller's probe, for the boot log: what it was, its clock, and what was found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Probe {
    pub controller: Controller,
    pub base_hz: u32,
    pub clock_source: ClockSource,
    pub result: Result<CardInfo, SdError>,
}

impl fmt::Display for Probe {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "{}: base clock {} kHz ", self.controller.name(), self.base_hz / 1000)?;
        match self.clock_source {
            ClockSource::Mailbox => write!(f, "(firmware)")?,
            ClockSource::Capabilities(e) => write!(f, "(capabilities; mailbox: {e:?})")?,
            ClockSource::Default(e) => write!(f, "(assumed; mailbox: {e:?})")?,
        }
        match self.result {
            Ok(c) => write!(
                f,
                ", {} card, {} sectors ({} MiB), RCA {:#x}, 4-bit at {} kHz",
                if c.high_capacity { "SDHC/SDXC" } else { "SDSC" },
                c.sectors,
                c.sectors >> 11,
                c.rca,
                c.clock_hz / 1000
            ),
            Err(e) => write!(f, ": {e:?}"),
        }
    }
}

/// What a data or command phase waits for: one of the controller's normal interrupt
/// statuses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    /// Command complete.
    CmdDone,
    /// Transfer complete (and, for R1b or a write, the card no longer busy).
    DataDone,
    /// The buffer can take the next block.
    WriteReady,
    /// The buffer holds the next block.
    ReadReady,
}

/// What the SD protocol code ([`Sdhci`]) needs from a host controller. [`Host`](host::Host)
/// drives the SDHCI registers; host unit tests drive a simulated controller and card.
pub trait HostOps {
    /// Host controller spec version: 0 = 1.0, 1 = 2.0, 2 = 3.0, ...; `None` when nothing
    /// answers at the address.
    fn spec_version(&self) -> Option<u8>;
    /// The base clock the capabilities register declares, in Hz (0 if it declares none).
    fn capabilities_base_hz(&self) -> u32;
    /// Resets the whole controller and sets it up for polling.
    fn reset_all(&mut self) -> Result<(), SdError>;
    /// Resets the command and data state machines (not the card, clock or bus width).
    fn reset_lines(&self) -> Result<(), SdError>;
    fn card_inserted(&self) -> bool;
    /// Makes the controller act as if a card were inserted, for slots whose card-detect
    /// line is not wired (the Pi 4's EMMC2 has `broken-cd` in its device tree).
    fn force_card_detect(&self);
    /// 3.3 V on the card, 1-bit bus, default speed.
    fn power_on(&self);
    fn set_bus_4bit(&self);
    /// Runs the card clock at the fastest rate not above `target_hz` from `base_hz`;
    /// returns the clock now running.
    fn set_clock(&mut self, base_hz: u32, target_hz: u32) -> Result<u32, SdError>;
    /// Issues `cmd` with `arg` and waits for its response (and, for R1b without data, the
    /// end of busy). Returns the four response registers. Data commands return after the
    /// response; the caller moves the data. On error the caller recovers with
    /// [`HostOps::reset_lines`].
    fn command(&self, cmd: Cmd, arg: u32) -> Result<[u32; 4], SdError>;
    /// Block size 512 and `count` blocks for the next data command.
    fn set_blocks(&self, count: u16);
    /// Waits until the controller reports `want`, and clears that status; an error status,
    /// the card's removal or `ms` milliseconds without news is an error.
    fn wait(&self, want: Event, ms: u64, cmd: u8) -> Result<(), SdError>;
    /// The card status the automatic CMD12 after a multi-block transfer answered with.
    fn auto_cmd12_status(&self) -> u32;
    /// Waits until the card releases DAT0 (it signals busy while programming).
    fn wait_not_busy(&self, ms: u64) -> Result<(), SdError>;
    /// Moves one 512-byte block from the buffer data port to `dst`.
    ///
    /// # Safety
    /// `dst` must be valid for 512 bytes of writes.
    unsafe fn read_block(&self, dst: *mut u8);
    /// Moves one 512-byte block from `src` to the buffer data port.
    ///
    /// # Safety
    /// `src` must be valid for 512 bytes of reads.
    unsafe fn write_block(&self, src: *const u8);
    /// The counter now, and counter ticks in `ms` milliseconds.
    fn now(&self) -> u64;
    fn ticks_ms(&self, ms: u64) -> u64;
    /// Busy-waits `us` microseconds.
    fn delay_us(&self, us: u64);
}
