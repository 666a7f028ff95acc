//! A simulated SDHCI controller with an SD card behind it, for the host tests: enough of
//! the SD Physical Layer's state machine to answer the driver, and switches that make the
//! card misbehave.

use std::cell::{Cell, RefCell};
use std::vec::Vec;

use super::proto::{self, Cmd, Resp, CARD_STATUS, OCR};
use super::{Event, HostOps, SdError};

pub(super) const IDLE: u32 = 0;
pub(super) const READY: u32 = 1;
pub(super) const IDENT: u32 = 2;
pub(super) const STBY: u32 = 3;
pub(super) const TRAN: u32 = 4;
pub(super) const DATA: u32 = 5;
pub(super) const RCV: u32 = 6;
pub(super) const OUT_OF_RANGE: u32 = CARD_STATUS::OUT_OF_RANGE::SET.value;
pub(super) const RCA: u32 = 0x4567;

/// A data transfer in progress on the card.
#[derive(Clone, Copy, Debug)]
pub(super) struct Xfer {
    pub(super) write: bool,
    pub(super) next: u64,
    pub(super) left: u16,
}

/// One SD card: enough of the SD Physical Layer's state machine to answer the driver.
pub(super) struct Card {
    pub(super) v2: bool,
    pub(super) high_capacity: bool,
    pub(super) data: Vec<u8>,
    pub(super) state: u32,
    pub(super) app: bool,
    /// ACMD41s answered "busy" before the card reports powered up.
    pub(super) busy_polls: u32,
    /// ILLEGAL_COMMAND waiting to be reported in the next response.
    pub(super) illegal: bool,
    pub(super) xfer: Option<Xfer>,
}

impl Card {
    fn sectors(&self) -> u64 {
        self.data.len() as u64 / 512
    }

    fn status(&mut self) -> u32 {
        let s = CARD_STATUS::CURRENT_STATE.val(self.state)
            + CARD_STATUS::READY_FOR_DATA::SET
            + CARD_STATUS::ILLEGAL_COMMAND.val(self.illegal as u32);
        self.illegal = false;
        s.value
    }

    /// The CSD in the four response registers, as an SDHCI controller presents it.
    fn csd(&self) -> [u32; 4] {
        let csd: u128 = if self.high_capacity {
            1 << 126 | ((self.sectors() / 1024 - 1) as u128) << 48
        } else {
            // READ_BL_LEN = 9, C_SIZE_MULT = 7: (C_SIZE + 1) * 512 sectors.
            9 << 80 | ((self.sectors() / 512 - 1) as u128) << 62 | 7 << 47
        };
        let v = csd >> 8;
        [v as u32, (v >> 32) as u32, (v >> 64) as u32, (v >> 96) as u32]
    }
}

/// The simulated controller. `None` in `card` is an empty slot.
pub(super) struct Fake {
    pub(super) card: RefCell<Option<Card>>,
    /// What the card-detect bit says.
    pub(super) inserted: Cell<bool>,
    pub(super) forced_detect: Cell<bool>,
    pub(super) log: RefCell<Vec<(u8, u32)>>,
    pub(super) blocks: Cell<u16>,
    pub(super) block_counts: RefCell<Vec<u16>>,
    pub(super) clocks: RefCell<Vec<u32>>,
    pub(super) bus4: Cell<bool>,
    pub(super) resets_all: Cell<u32>,
    pub(super) resets_lines: Cell<u32>,
    pub(super) now: Cell<u64>,
    pub(super) moved: Cell<u64>,
    /// Faults: the card stops moving data after this many blocks in all; answers nothing
    /// at all; adds these status bits to the next data command's answer (or the automatic
    /// CMD12's); holds DAT0 low for ever.
    pub(super) stall_after: Cell<Option<u64>>,
    pub(super) dead: Cell<bool>,
    pub(super) next_status_error: Cell<u32>,
    pub(super) cmd12_error: Cell<u32>,
    pub(super) busy: Cell<bool>,
}

impl Fake {
    pub(super) fn new(card: Option<Card>) -> Fake {
        Fake {
            inserted: Cell::new(card.is_some()),
            card: RefCell::new(card),
            forced_detect: Cell::new(false),
            log: RefCell::new(Vec::new()),
            blocks: Cell::new(0),
            block_counts: RefCell::new(Vec::new()),
            clocks: RefCell::new(Vec::new()),
            bus4: Cell::new(false),
            resets_all: Cell::new(0),
            resets_lines: Cell::new(0),
            now: Cell::new(0),
            moved: Cell::new(0),
            stall_after: Cell::new(None),
            dead: Cell::new(false),
            next_status_error: Cell::new(0),
            cmd12_error: Cell::new(0),
            busy: Cell::new(false),
        }
    }

    fn card_answer(&self, cmd: Cmd, arg: u32) -> Option<[u32; 4]> {
        let mut slot = self.card.borrow_mut();
        let c = slot.as_mut()?;
        let app = core::mem::replace(&mut c.app, false);
        let r1 = |v: u32| Some([v, 0, 0, 0]);
        match (app, cmd.index) {
            (_, 0) => {
                c.state = IDLE;
                c.xfer = None;
                r1(0)
            }
            (_, 8) if c.v2 && c.state == IDLE => r1(arg & 0xfff),
            (_, 55) => {
                c.app = true;
                r1(c.status() | CARD_STATUS::APP_CMD::SET.value)
            }
            (true, 41) if c.state == IDLE => {
                let hcs = OCR::HIGH_CAPACITY.is_set(arg);
                // An SDHC card never powers up for a host that does not offer HCS.
                if c.busy_polls > 0 || (c.high_capacity && !hcs) {
                    c.busy_polls = c.busy_polls.saturating_sub(1);
                    return r1(OCR::VOLTAGE_WINDOW::V2_7To3_6.value);
                }
                c.state = READY;
                let ocr = OCR::POWERED_UP::SET
                    + OCR::HIGH_CAPACITY.val(c.high_capacity as u32)
                    + OCR::VOLTAGE_WINDOW::V2_7To3_6;
                r1(ocr.value)
            }
            (_, 2) if c.state == READY => {
                c.state = IDENT;
                Some([1, 2, 3, 4])
            }
            (_, 3) if c.state == IDENT || c.state == STBY => {
                c.state = STBY;
                r1(RCA << 16)
            }
            (_, 9) if c.state == STBY && arg == RCA << 16 => Some(c.csd()),
            (_, 7) if c.state == STBY && arg == RCA << 16 => {
                let s = c.status();
                c.state = TRAN;
                r1(s)
            }
            (_, 16) if c.state == TRAN && arg == 512 => r1(c.status()),
            (true, 6) if c.state == TRAN && arg == proto::BUS_WIDTH_4 => r1(c.status()),
            (_, 13) if c.state >= STBY && arg == RCA << 16 => r1(c.status()),
            (_, 12) if c.state == DATA || c.state == RCV => {
                let s = c.status();
                c.state = TRAN;
                c.xfer = None;
                r1(s)
            }
            (_, 17 | 18 | 24 | 25) if c.state == TRAN => {
                let lba = if c.high_capacity { arg as u64 } else { arg as u64 / 512 };
                let write = cmd.index >= 24;
                let mut s = c.status() | self.next_status_error.replace(0);
                if (!c.high_capacity && !arg.is_multiple_of(512))
                    || lba + self.blocks.get() as u64 > c.sectors()
                {
                    s |= OUT_OF_RANGE;
                }
                c.state = if write { RCV } else { DATA };
                c.xfer = Some(Xfer { write, next: lba, left: self.blocks.get() });
                r1(s)
            }
            _ => {
                c.illegal = true;
                None
            }
        }
    }

    pub(super) fn state(&self) -> u32 {
        self.card.borrow().as_ref().unwrap().state
    }

    pub(super) fn commands(&self) -> Vec<u8> {
        self.log.borrow().iter().map(|c| c.0).collect()
    }
}

impl HostOps for Fake {
    fn spec_version(&self) -> Option<u8> {
        Some(2)
    }

    fn capabilities_base_hz(&self) -> u32 {
        52_000_000
    }

    fn reset_all(&mut self) -> Result<(), SdError> {
        self.resets_all.set(self.resets_all.get() + 1);
        Ok(())
    }

    fn reset_lines(&self) -> Result<(), SdError> {
        self.resets_lines.set(self.resets_lines.get() + 1);
        Ok(())
    }

    fn card_inserted(&self) -> bool {
        self.inserted.get()
    }

    fn force_card_detect(&self) {
        self.forced_detect.set(true);
    }

    fn power_on(&self) {}

    fn set_bus_4bit(&self) {
        self.bus4.set(true);
    }

    fn set_clock(&mut self, base_hz: u32, target_hz: u32) -> Result<u32, SdError> {
        let hz = proto::clock_divider(base_hz, target_hz, true).hz;
        self.clocks.borrow_mut().push(hz);
        Ok(hz)
    }

    fn command(&self, cmd: Cmd, arg: u32) -> Result<[u32; 4], SdError> {
        self.log.borrow_mut().push((cmd.index, arg));
        // A command without a response completes whether or not anything listens.
        let silent =
            if cmd.resp == Resp::None { Ok([0; 4]) } else { Err(SdError::Timeout { cmd: Some(cmd.index) }) };
        if self.dead.get() {
            return silent;
        }
        self.card_answer(cmd, arg).map_or(silent, Ok)
    }

    fn set_blocks(&self, count: u16) {
        self.blocks.set(count);
        self.block_counts.borrow_mut().push(count);
    }

    fn wait(&self, want: Event, _ms: u64, cmd: u8) -> Result<(), SdError> {
        let timeout = Err(SdError::Timeout { cmd: Some(cmd) });
        let mut slot = self.card.borrow_mut();
        let Some(c) = slot.as_mut() else { return timeout };
        let Some(x) = c.xfer else { return timeout };
        if self.dead.get() {
            return timeout;
        }
        if want == Event::ReadReady || want == Event::WriteReady {
            let stalled = self.stall_after.get().is_some_and(|n| self.moved.get() >= n);
            return if stalled || x.left == 0 { timeout } else { Ok(()) };
        }
        assert_eq!(want, Event::DataDone);
        if x.left != 0 {
            return timeout;
        }
        c.state = TRAN;
        c.xfer = None;
        Ok(())
    }

    fn auto_cmd12_status(&self) -> u32 {
        TRAN << 9 | self.cmd12_error.replace(0)
    }

    fn wait_not_busy(&self, _ms: u64) -> Result<(), SdError> {
        if self.busy.get() {
            return Err(SdError::Timeout { cmd: None });
        }
        Ok(())
    }

    unsafe fn read_block(&self, dst: *mut u8) {
        let mut slot = self.card.borrow_mut();
        let c = slot.as_mut().unwrap();
        let x = c.xfer.as_mut().unwrap();
        assert!(!x.write && x.left > 0);
        let at = x.next as usize * 512;
        // SAFETY: the trait's contract: 512 writable bytes.
        unsafe { core::ptr::copy_nonoverlapping(c.data[at..at + 512].as_ptr(), dst, 512) };
        x.next += 1;
        x.left -= 1;
        self.moved.set(self.moved.get() + 1);
    }

    unsafe fn write_block(&self, src: *const u8) {
        let mut slot = self.card.borrow_mut();
        let c = slot.as_mut().unwrap();
        let x = c.xfer.as_mut().unwrap();
        assert!(x.write && x.left > 0);
        let at = x.next as usize * 512;
        // SAFETY: the trait's contract: 512 readable bytes.
        unsafe { core::ptr::copy_nonoverlapping(src, c.data[at..at + 512].as_mut_ptr(), 512) };
        x.next += 1;
        x.left -= 1;
        self.moved.set(self.moved.get() + 1);
    }

    fn now(&self) -> u64 {
        self.now.set(self.now.get() + 1);
        self.now.get()
    }

    fn ticks_ms(&self, ms: u64) -> u64 {
        ms * 1000
    }

    fn delay_us(&self, us: u64) {
        self.now.set(self.now.get() + us);
    }
}

pub(super) fn card(v2: bool, high_capacity: bool, sectors: u64) -> Card {
    // Every sector different: a fixed pattern with the sector number in its first bytes.
    let base: Vec<u8> = (0..512u32).map(|i| (i * 7) as u8).collect();
    let mut data = Vec::with_capacity(sectors as usize * 512);
    for s in 0..sectors {
        data.extend_from_slice(&(s as u32).to_le_bytes());
        data.extend_from_slice(&base[4..]);
    }
    Card { v2, high_capacity, data, state: IDLE, app: false, busy_polls: 3, illegal: false, xfer: None }
}
