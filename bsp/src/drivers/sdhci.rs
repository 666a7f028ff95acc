//! SD cards behind the Raspberry Pi 4's SDHCI controllers (EMMC2, and the legacy Arasan
//! EMMC that QEMU `raspi4b` puts the card on), driven by PIO through the buffer data port.
//!
//! - [`proto`]: the SD protocol as pure, host-tested functions (command words, CSD
//!   capacity, clock divisors).
//! - [`host`]: the controller's registers, resets, clock, command issue and data port.
//! - This file: finding and initialising a card, moving sectors, recovering from errors.
//!
//! Nothing here waits without a deadline: a command, a buffer or a busy card that does not
//! come in time is [`BlockError::Timeout`], and the command and data lines are reset (and
//! the card, if it is stuck in a data state, told to stop) before the error is returned, so
//! the next request starts clean. `docs/sd-controllers.md` describes the whole driver.

pub mod host;
pub mod proto;

use core::fmt;

use self::host::{Host, BUSY_MS, DATA_MS, INT_DATA_DONE, INT_READ_READY, INT_WRITE_READY};
use self::proto::Cmd;
use crate::drivers::bcm2835_mbox::{self, MboxError};
use crate::{BlockDevice, BlockError};

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

/// Identification clock (≤ 400 kHz) and the default-speed transfer clock.
const IDENT_HZ: u32 = 400_000;
const TRANSFER_HZ: u32 = 25_000_000;
/// The block count register is 16 bits wide.
const MAX_BLOCKS: usize = 0xffff;

/// An initialised SD card and its controller.
pub struct Sdhci {
    host: Host,
    controller: Controller,
    rca: u32,
    high_capacity: bool,
    sectors: u64,
    /// The controller's card-detect bit was set at probe time, so its clearing later
    /// means the card was removed (not a slot without a detect switch).
    detect_works: bool,
    /// The card was seen removed. A card that comes back has lost power and forgotten its
    /// address and bus width, so every request fails with `NoMedium` until the disk is
    /// probed again.
    gone: bool,
}

// SAFETY: the registers are reached only through this value, which the kernel keeps behind
// exclusive access.
unsafe impl Send for Sdhci {}

impl Sdhci {
    /// Picks the base clock (`firmware_hz`, the mailbox's answer when there is a mailbox;
    /// else the capabilities register; else a default), then looks for a card and
    /// initialises it. A controller without a card fails in well under a second.
    ///
    /// # Safety
    /// `base` must be the mapped address of `controller`'s registers, used by nothing else
    /// from now on.
    pub unsafe fn probe(
        base: usize,
        controller: Controller,
        firmware_hz: Option<Result<u32, MboxError>>,
    ) -> (Probe, Option<Sdhci>) {
        // SAFETY: the caller's contract.
        let host = unsafe { Host::new(base) };
        let caps_hz = host.capabilities_base_hz();
        let why = firmware_hz.and_then(|r| r.err());
        let (base_hz, clock_source) = match firmware_hz {
            Some(Ok(hz)) => (hz, ClockSource::Mailbox),
            _ if caps_hz != 0 => (caps_hz, ClockSource::Capabilities(why)),
            _ => (controller.default_base_hz(), ClockSource::Default(why)),
        };
        let mut sd = Sdhci {
            host,
            controller,
            rca: 0,
            high_capacity: false,
            sectors: 0,
            detect_works: false,
            gone: false,
        };
        let result = sd.init(base_hz);
        let probe = Probe { controller, base_hz, clock_source, result };
        match result {
            Ok(_) => (probe, Some(sd)),
            Err(SdError::NoController) => (probe, None),
            Err(_) => {
                // Leave the controller quiet: card clock and power off.
                let _ = sd.host.reset_all();
                (probe, None)
            }
        }
    }

    pub fn controller(&self) -> Controller {
        self.controller
    }

    /// The SD Physical Layer's initialisation, from reset to a selected 4-bit card.
    fn init(&mut self, base_hz: u32) -> Result<CardInfo, SdError> {
        if self.host.spec_version().is_none() {
            return Err(SdError::NoController);
        }
        self.host.reset_all()?;
        self.detect_works = self.host.card_inserted();
        if !self.detect_works {
            // Maybe a slot without a detect switch: try anyway, and let silence decide.
            self.host.force_card_detect();
        }
        self.host.power_on();
        self.host.set_clock(base_hz, IDENT_HZ)?;
        // Power ramp-up and at least 74 clocks before the first command.
        host::delay_us(1000);
        // From here on, no answer at all means no card.
        let silent = |e: SdError| match e {
            SdError::Timeout { .. } => SdError::NoCard,
            e => e,
        };
        self.host.command(proto::GO_IDLE_STATE, 0)?;
        let v2 = match self.host.command(proto::SEND_IF_COND, proto::IF_COND_ARG) {
            Ok(r) if r[0] & 0xfff == proto::IF_COND_ARG => true,
            Ok(_) => return Err(SdError::Unusable { cmd: Some(8) }),
            // A version 1.x card does not know CMD8 (or no card is there: ACMD41 tells).
            Err(SdError::Timeout { .. }) => {
                self.host.reset_lines()?;
                false
            }
            Err(e) => return Err(e),
        };
        let ocr = self.power_up(v2).map_err(silent)?;
        self.high_capacity = v2 && ocr & proto::OCR_CCS != 0;
        self.host.command(proto::ALL_SEND_CID, 0)?;
        let mut rca = 0;
        for _ in 0..4 {
            rca = self.host.command(proto::SEND_RELATIVE_ADDR, 0)?[0] >> 16;
            if rca != 0 {
                break;
            }
        }
        if rca == 0 {
            return Err(SdError::Unusable { cmd: Some(3) });
        }
        self.rca = rca << 16;
        let csd = proto::r2_to_u128(self.host.command(proto::SEND_CSD, self.rca)?);
        self.sectors = proto::csd_sectors(csd).ok_or(SdError::Unusable { cmd: Some(9) })?;
        if !self.high_capacity && self.sectors > (u32::MAX as u64 + 1) / 512 {
            return Err(SdError::Unusable { cmd: Some(9) }); // byte addresses would not fit
        }
        self.r1(proto::SELECT_CARD, self.rca)?;
        if !self.high_capacity {
            self.r1(proto::SET_BLOCKLEN, 512)?;
        }
        self.r1(proto::APP_CMD, self.rca)?;
        self.r1(proto::SET_BUS_WIDTH, proto::BUS_WIDTH_4)?;
        self.host.set_bus_4bit();
        let clock_hz = self.host.set_clock(base_hz, TRANSFER_HZ)?;
        Ok(CardInfo { sectors: self.sectors, high_capacity: self.high_capacity, rca: rca as u16, clock_hz })
    }

    /// ACMD41 until the card has powered up (at most [`BUSY_MS`]); returns its OCR.
    /// HCS is offered to version 2 cards; 1.8 V signalling (S18R) is not asked for.
    fn power_up(&self, v2: bool) -> Result<u32, SdError> {
        let arg = proto::OCR_VOLTAGE_WINDOW | if v2 { proto::OCR_HCS } else { 0 };
        let deadline = crate::drivers::generic_timer::now() + host::ticks_ms(BUSY_MS);
        loop {
            // The card status here may carry ILLEGAL_COMMAND from a CMD8 a 1.x card did
            // not know, so it is not checked.
            self.host.command(proto::APP_CMD, 0)?;
            let ocr = self.host.command(proto::SD_SEND_OP_COND, arg)?[0];
            if ocr & proto::OCR_POWERED_UP != 0 {
                return Ok(ocr);
            }
            if crate::drivers::generic_timer::now() > deadline {
                return Err(SdError::Timeout { cmd: Some(41) });
            }
            host::delay_us(2000);
        }
    }

    /// Issues a command with an R1/R1b answer and checks the card status in it.
    fn r1(&self, cmd: Cmd, arg: u32) -> Result<u32, SdError> {
        let status = self.host.command(cmd, arg)?[0];
        if status & proto::R1_ERRORS != 0 {
            return Err(SdError::Io { cmd: Some(cmd.index) });
        }
        Ok(status)
    }

    /// The command argument for sector `lba`: block address, or byte address on SDSC.
    fn address(&self, lba: u64) -> u32 {
        if self.high_capacity {
            lba as u32
        } else {
            (lba * 512) as u32
        }
    }

    /// Moves whole sectors between the card and `blocks` (one pointer per 512-byte block,
    /// in order), in commands of at most [`MAX_BLOCKS`] blocks; one block uses the
    /// single-block command, more the multi-block one with an automatic CMD12.
    fn transfer(
        &mut self,
        write: bool,
        lba: u64,
        count: u64,
        mut blocks: impl Iterator<Item = *mut u8>,
    ) -> Result<(), BlockError> {
        if lba.checked_add(count).is_none_or(|end| end > self.sectors) {
            return Err(BlockError::OutOfRange);
        }
        self.check_present()?;
        let mut done = 0;
        while done < count {
            let n = (count - done).min(MAX_BLOCKS as u64) as u16;
            if let Err(e) = self.run(write, lba + done, n, &mut blocks) {
                return Err(self.recover(e, write));
            }
            done += n as u64;
        }
        Ok(())
    }

    /// One data command of `n` blocks.
    fn run(
        &mut self,
        write: bool,
        lba: u64,
        n: u16,
        blocks: &mut impl Iterator<Item = *mut u8>,
    ) -> Result<(), SdError> {
        let cmd = match (write, n) {
            (false, 1) => proto::READ_SINGLE_BLOCK,
            (false, _) => proto::READ_MULTIPLE_BLOCK,
            (true, 1) => proto::WRITE_BLOCK,
            (true, _) => proto::WRITE_MULTIPLE_BLOCK,
        };
        self.host.set_blocks(n);
        self.r1(cmd, self.address(lba))?;
        let ready = if write { INT_WRITE_READY } else { INT_READ_READY };
        for _ in 0..n {
            let block = blocks.next().ok_or(SdError::Io { cmd: Some(cmd.index) })?;
            self.host.wait(ready, DATA_MS, cmd.index)?;
            // SAFETY: `block` is 512 bytes of the caller's buffer (see `BlockDevice` impl).
            unsafe {
                if write {
                    self.host.write_block(block);
                } else {
                    self.host.read_block(block);
                }
            }
        }
        // For a write the controller signals completion once the card has released DAT0
        // (busy) after the last block, and after the automatic CMD12's busy.
        self.host.wait(INT_DATA_DONE, if write { BUSY_MS } else { DATA_MS }, cmd.index)?;
        // Errors found during a multi-block transfer (a read running past the end of the
        // card, say) are reported in the answer to the CMD12 that ended it.
        if n > 1 && self.host.auto_cmd12_status() & proto::R1_ERRORS != 0 {
            return Err(SdError::Io { cmd: Some(12) });
        }
        if write {
            self.host.wait_not_busy(BUSY_MS)?;
        }
        Ok(())
    }

    /// `NoMedium` if the card is known to be gone, or the detect switch says so now.
    fn check_present(&mut self) -> Result<(), BlockError> {
        if self.detect_works && !self.gone && !self.host.card_inserted() {
            self.gone = true;
            let _ = self.host.reset_lines();
        }
        if self.gone {
            return Err(BlockError::NoMedium);
        }
        Ok(())
    }

    /// Brings controller and card back to a clean state after `e`, and returns the error
    /// to report: command and data lines reset, the card stopped if it is still sending
    /// or receiving, and its status read (which also clears its error bits).
    fn recover(&mut self, e: SdError, write: bool) -> BlockError {
        if e == SdError::NoCard {
            self.gone = true;
        }
        if let Err(gone) = self.check_present() {
            return gone;
        }
        if self.host.reset_lines().is_err() {
            return BlockError::Timeout;
        }
        if let Ok(status) = self.host.command(proto::SEND_STATUS, self.rca) {
            // 5 = sending data, 6 = receiving data: stop it.
            if matches!(proto::r1_state(status[0]), 5 | 6) {
                if self.host.command(proto::STOP_TRANSMISSION, 0).is_err() {
                    let _ = self.host.reset_lines();
                }
                let _ = self.host.command(proto::SEND_STATUS, self.rca);
            }
        } else {
            let _ = self.host.reset_lines();
        }
        if write {
            let _ = self.host.wait_not_busy(BUSY_MS);
        }
        e.into()
    }
}

impl BlockDevice for Sdhci {
    fn sectors(&self) -> u64 {
        self.sectors
    }

    fn read(&mut self, lba: u64, bufs: &mut [&mut [u8]]) -> Result<(), BlockError> {
        if bufs.iter().any(|b| b.len() % 512 != 0) {
            return Err(BlockError::OutOfRange);
        }
        let count = bufs.iter().map(|b| b.len() as u64 / 512).sum();
        let blocks = bufs.iter_mut().flat_map(|b| b.chunks_exact_mut(512).map(|c| c.as_mut_ptr()));
        self.transfer(false, lba, count, blocks)
    }

    fn write(&mut self, lba: u64, bufs: &[&[u8]]) -> Result<(), BlockError> {
        if bufs.iter().any(|b| b.len() % 512 != 0) {
            return Err(BlockError::OutOfRange);
        }
        let count = bufs.iter().map(|b| b.len() as u64 / 512).sum();
        // The pointers are only read through (`write_block`).
        let blocks = bufs.iter().flat_map(|b| b.chunks_exact(512).map(|c| c.as_ptr() as *mut u8));
        self.transfer(true, lba, count, blocks)
    }

    /// An SD card without the cache feature has no flush command: a write has reached the
    /// card when its busy signal ends, which every write already waits for. Flush only
    /// checks that the card is idle (DAT0 released) and in the transfer state.
    fn flush(&mut self) -> Result<(), BlockError> {
        self.check_present()?;
        self.host.wait_not_busy(BUSY_MS).map_err(|e| self.recover(e, false))?;
        match self.host.command(proto::SEND_STATUS, self.rca) {
            Ok(s) if proto::r1_state(s[0]) == proto::STATE_TRAN => Ok(()),
            Ok(_) => Err(self.recover(SdError::Io { cmd: Some(13) }, false)),
            Err(e) => Err(self.recover(e, false)),
        }
    }
}
