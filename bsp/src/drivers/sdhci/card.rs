//! An SD card on an SDHCI controller: identification and initialisation, sector
//! transfers by PIO, and recovery after errors, over any [`HostOps`].

use super::host::{Host, BUSY_MS, DATA_MS, POWER_UP_MS};
use super::proto::{self, Cmd, State, OCR};
use super::{CardInfo, ClockSource, Controller, Event, HostOps, Probe, SdError};
use crate::drivers::bcm2835_mbox::MboxError;
use crate::{BlockDevice, BlockError};

/// Identification clock (≤ 400 kHz) and the default-speed transfer clock.
const IDENT_HZ: u32 = 400_000;
const TRANSFER_HZ: u32 = 25_000_000;
/// The block count register is 16 bits wide.
const MAX_BLOCKS: usize = 0xffff;

/// An initialised SD card and its controller.
pub struct Sdhci<H: HostOps = Host> {
    pub(super) host: H,
    pub(super) controller: Controller,
    pub(super) rca: u32,
    pub(super) high_capacity: bool,
    pub(super) sectors: u64,
    /// The controller's card-detect bit was set at probe time, so its clearing later
    /// means the card was removed (not a slot without a detect switch).
    pub(super) detect_works: bool,
    /// The card was seen removed. A card that comes back has lost power and forgotten its
    /// address and bus width, so every request fails with `NoMedium` until the disk is
    /// probed again.
    pub(super) gone: bool,
}

impl Sdhci<Host> {
    /// [`Sdhci::probe_with`] on the SDHCI registers at `base`.
    ///
    /// # Safety
    /// `base` must be the mapped address of `controller`'s registers, used by nothing else
    /// from now on.
    pub unsafe fn probe(
        base: usize,
        controller: Controller,
        firmware_hz: Option<Result<u32, MboxError>>,
    ) -> (Probe, Option<Self>) {
        // SAFETY: the caller's contract.
        Self::probe_with(unsafe { Host::new(base) }, controller, firmware_hz)
    }

    /// [`Starting::new`] on the SDHCI registers at `base`: the card's power-up begun.
    ///
    /// # Safety
    /// As for [`Sdhci::probe`].
    pub unsafe fn start(
        base: usize,
        controller: Controller,
        firmware_hz: Option<Result<u32, MboxError>>,
    ) -> Starting {
        // SAFETY: the caller's contract.
        Starting::new(unsafe { Host::new(base) }, controller, firmware_hz)
    }
}

/// A controller whose card has been given power and the identification clock, but not yet
/// spoken to: the card needs `POWER_RAMP_MS` before its first command. The wait is a
/// deadline, not a delay, so a caller can do other work meanwhile (the kernel sets up its
/// frame table) and [`Starting::finish`] waits only for what is left of it.
pub struct Starting<H: HostOps = Host> {
    pub(super) sd: Sdhci<H>,
    base_hz: u32,
    clock_source: ClockSource,
    /// The counter's value when the card may first be spoken to, or why it may not.
    ready_at: Result<u64, SdError>,
}

/// Power ramp-up and at least 74 clocks before the first command.
const POWER_RAMP_MS: u64 = 1;

impl<H: HostOps> Starting<H> {
    /// Picks the base clock (`firmware_hz`, the mailbox's answer when there is a mailbox;
    /// else, on the legacy controller, the capabilities register; else a default), resets
    /// the controller and powers its card up.
    pub fn new(host: H, controller: Controller, firmware_hz: Option<Result<u32, MboxError>>) -> Self {
        // Linux marks EMMC2's capabilities clock as wrong (SDHCI_QUIRK_CAP_CLOCK_BASE_BROKEN).
        let caps_hz = match controller {
            Controller::Emmc2 => 0,
            Controller::Legacy => host.capabilities_base_hz(),
        };
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
        let ready_at = sd.power(base_hz);
        Starting { sd, base_hz, clock_source, ready_at }
    }

    /// Looks for the card and initialises it, once its power has ramped up. A controller
    /// without a card fails in well under a second.
    pub fn finish(self) -> (Probe, Option<Sdhci<H>>) {
        let Starting { mut sd, base_hz, clock_source, ready_at } = self;
        let result = ready_at.and_then(|at| sd.identify(base_hz, at));
        let probe = Probe { controller: sd.controller, base_hz, clock_source, result };
        match result {
            Ok(_) => (probe, Some(sd)),
            Err(SdError::NoController) => (probe, None),
            Err(_) => {
                sd.quiet();
                (probe, None)
            }
        }
    }

    /// Leaves the controller quiet without looking for its card (another was chosen).
    pub fn abandon(mut self) {
        if self.ready_at.is_ok() {
            self.sd.quiet();
        }
    }
}

impl<H: HostOps> Sdhci<H> {
    /// Powers the card up, waits for it and initialises it ([`Starting`] in one step).
    pub fn probe_with(
        host: H,
        controller: Controller,
        firmware_hz: Option<Result<u32, MboxError>>,
    ) -> (Probe, Option<Self>) {
        Starting::new(host, controller, firmware_hz).finish()
    }

    /// Card clock and power off.
    fn quiet(&mut self) {
        let _ = self.host.reset_all();
    }

    pub fn controller(&self) -> Controller {
        self.controller
    }

    /// The SD Physical Layer's initialisation, from reset to a card powered at the
    /// identification clock: returns the counter's value at which it may be spoken to.
    pub(super) fn power(&mut self, base_hz: u32) -> Result<u64, SdError> {
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
        Ok(self.host.now() + self.host.ticks_ms(POWER_RAMP_MS))
    }

    /// The rest of the initialisation, once the counter has reached `ready_at`: to a
    /// selected 4-bit card.
    pub(super) fn identify(&mut self, base_hz: u32, ready_at: u64) -> Result<CardInfo, SdError> {
        let left = ready_at.saturating_sub(self.host.now());
        if left > 0 {
            self.host.delay_us(left * 1000 / self.host.ticks_ms(1).max(1));
        }
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
        self.high_capacity = v2 && OCR::HIGH_CAPACITY.is_set(ocr);
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

    /// ACMD41 until the card has powered up (at most [`POWER_UP_MS`]); returns its OCR.
    /// HCS is offered to version 2 cards; 1.8 V signalling (S18R) is not asked for.
    fn power_up(&self, v2: bool) -> Result<u32, SdError> {
        let arg = (OCR::VOLTAGE_WINDOW::V2_7To3_6 + OCR::HIGH_CAPACITY.val(v2 as u32)).value;
        let deadline = self.host.now() + self.host.ticks_ms(POWER_UP_MS);
        loop {
            // The card status here may carry ILLEGAL_COMMAND from a CMD8 a 1.x card did
            // not know, so it is not checked.
            self.host.command(proto::APP_CMD, 0)?;
            let ocr = self.host.command(proto::SD_SEND_OP_COND, arg)?[0];
            if OCR::POWERED_UP.is_set(ocr) {
                return Ok(ocr);
            }
            if self.host.now() > deadline {
                return Err(SdError::Timeout { cmd: Some(41) });
            }
            self.host.delay_us(2000);
        }
    }

    /// Issues a command with an R1/R1b answer and checks the card status in it.
    fn r1(&self, cmd: Cmd, arg: u32) -> Result<u32, SdError> {
        let status = self.host.command(cmd, arg)?[0];
        if proto::r1_failed(status) {
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
                return Err(self.recover(e));
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
        // A write's next buffer comes once the card has programmed the previous block.
        let (ready, ms) = if write { (Event::WriteReady, BUSY_MS) } else { (Event::ReadReady, DATA_MS) };
        for _ in 0..n {
            let block = blocks.next().ok_or(SdError::Io { cmd: Some(cmd.index) })?;
            self.host.wait(ready, ms, cmd.index)?;
            if write {
                // SAFETY: `block` is 512 readable bytes of the caller's buffer (the
                // `BlockDevice` impl below cuts the buffers into whole blocks).
                unsafe { self.host.write_block(block) };
            } else {
                // SAFETY: `block` is 512 writable bytes of the caller's buffer (the
                // `BlockDevice` impl below cuts the buffers into whole blocks).
                unsafe { self.host.read_block(block) };
            }
        }
        // For a write the controller signals completion once the card has released DAT0
        // (busy) after the last block, and after the automatic CMD12's busy.
        self.host.wait(Event::DataDone, if write { BUSY_MS } else { DATA_MS }, cmd.index)?;
        // Errors found during a multi-block transfer (a read running past the end of the
        // card, say) are reported in the answer to the CMD12 that ended it.
        if n > 1 && proto::r1_failed(self.host.auto_cmd12_status()) {
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
    /// to report: command and data lines reset; then, by the card's own account (CMD13), a
    /// card still sending or receiving is stopped (CMD12, whose busy wait also covers the
    /// programming of what it received) and one still programming is waited for. Every
    /// step is bounded; a card that answers nothing costs two command timeouts.
    fn recover(&mut self, e: SdError) -> BlockError {
        if e == SdError::NoCard {
            self.gone = true;
        }
        if let Err(gone) = self.check_present() {
            return gone;
        }
        if self.host.reset_lines().is_err() {
            return BlockError::Timeout;
        }
        match self.host.command(proto::SEND_STATUS, self.rca).map(|s| proto::r1_state(s[0])) {
            Ok(Some(State::Data | State::Rcv)) => {
                if self.host.command(proto::STOP_TRANSMISSION, 0).is_err() {
                    let _ = self.host.reset_lines();
                }
                // Also clears the error bits the failed transfer left in the card status.
                let _ = self.host.command(proto::SEND_STATUS, self.rca);
            }
            Ok(Some(State::Prg)) => {
                let _ = self.host.wait_not_busy(BUSY_MS);
            }
            Ok(_) => {}
            Err(_) => {
                let _ = self.host.reset_lines();
            }
        }
        e.into()
    }
}

impl<H: HostOps> BlockDevice for Sdhci<H> {
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
        self.host.wait_not_busy(BUSY_MS).map_err(|e| self.recover(e))?;
        match self.host.command(proto::SEND_STATUS, self.rca) {
            Ok(s) if proto::r1_state(s[0]) == Some(State::Tran) => Ok(()),
            Ok(_) => Err(self.recover(SdError::Io { cmd: Some(13) })),
            Err(e) => Err(self.recover(e)),
        }
    }
}
