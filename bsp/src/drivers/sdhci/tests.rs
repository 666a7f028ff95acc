//! Host tests of the SD protocol logic ([`Sdhci`] over [`HostOps`]) against a simulated
//! controller and card: the initialisation sequence, addressing, transfers, and what
//! happens when the card misbehaves — stops answering mid-transfer, dies, reports errors,
//! or is pulled out.

use std::cell::{Cell, RefCell};
use std::vec::Vec;

use super::host::{INT_DATA_DONE, INT_READ_READY, INT_WRITE_READY};
use super::proto::{self, Cmd, Resp};
use super::{ClockSource, Controller, HostOps, SdError, Sdhci};
use crate::drivers::bcm2835_mbox::MboxError;
use crate::{BlockDevice, BlockError};

const IDLE: u32 = 0;
const READY: u32 = 1;
const IDENT: u32 = 2;
const STBY: u32 = 3;
const TRAN: u32 = 4;
const DATA: u32 = 5;
const RCV: u32 = 6;
const OUT_OF_RANGE: u32 = 1 << 31;
const ILLEGAL_COMMAND: u32 = 1 << 22;
const RCA: u32 = 0x4567;

/// A data transfer in progress on the card.
#[derive(Clone, Copy, Debug)]
struct Xfer {
    write: bool,
    next: u64,
    left: u16,
}

/// One SD card: enough of the SD Physical Layer's state machine to answer the driver.
struct Card {
    v2: bool,
    high_capacity: bool,
    data: Vec<u8>,
    state: u32,
    app: bool,
    /// ACMD41s answered "busy" before the card reports powered up.
    busy_polls: u32,
    /// ILLEGAL_COMMAND waiting to be reported in the next response.
    illegal: bool,
    xfer: Option<Xfer>,
}

impl Card {
    fn sectors(&self) -> u64 {
        self.data.len() as u64 / 512
    }

    fn status(&mut self) -> u32 {
        let s = self.state << 9 | proto::R1_READY_FOR_DATA | if self.illegal { ILLEGAL_COMMAND } else { 0 };
        self.illegal = false;
        s
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
struct Fake {
    card: RefCell<Option<Card>>,
    /// What the card-detect bit says.
    inserted: Cell<bool>,
    forced_detect: Cell<bool>,
    log: RefCell<Vec<(u8, u32)>>,
    blocks: Cell<u16>,
    block_counts: RefCell<Vec<u16>>,
    clocks: RefCell<Vec<u32>>,
    bus4: Cell<bool>,
    resets_all: Cell<u32>,
    resets_lines: Cell<u32>,
    now: Cell<u64>,
    moved: Cell<u64>,
    /// Faults: the card stops moving data after this many blocks in all; answers nothing
    /// at all; adds these status bits to the next data command's answer (or the automatic
    /// CMD12's); holds DAT0 low for ever.
    stall_after: Cell<Option<u64>>,
    dead: Cell<bool>,
    next_status_error: Cell<u32>,
    cmd12_error: Cell<u32>,
    busy: Cell<bool>,
}

impl Fake {
    fn new(card: Option<Card>) -> Fake {
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
                r1(c.status() | 1 << 5)
            }
            (true, 41) if c.state == IDLE => {
                let hcs = arg & proto::OCR_HCS != 0;
                // An SDHC card never powers up for a host that does not offer HCS.
                if c.busy_polls > 0 || (c.high_capacity && !hcs) {
                    c.busy_polls = c.busy_polls.saturating_sub(1);
                    return r1(proto::OCR_VOLTAGE_WINDOW);
                }
                c.state = READY;
                let ccs = if c.high_capacity { proto::OCR_CCS } else { 0 };
                r1(proto::OCR_POWERED_UP | ccs | proto::OCR_VOLTAGE_WINDOW)
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

    fn state(&self) -> u32 {
        self.card.borrow().as_ref().unwrap().state
    }

    fn commands(&self) -> Vec<u8> {
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

    fn wait(&self, want: u32, _ms: u64, cmd: u8) -> Result<u32, SdError> {
        let timeout = Err(SdError::Timeout { cmd: Some(cmd) });
        let mut slot = self.card.borrow_mut();
        let Some(c) = slot.as_mut() else { return timeout };
        let Some(x) = c.xfer else { return timeout };
        if self.dead.get() {
            return timeout;
        }
        if want & (INT_READ_READY | INT_WRITE_READY) != 0 {
            let stalled = self.stall_after.get().is_some_and(|n| self.moved.get() >= n);
            return if stalled || x.left == 0 { timeout } else { Ok(want) };
        }
        assert_eq!(want, INT_DATA_DONE);
        if x.left != 0 {
            return timeout;
        }
        c.state = TRAN;
        c.xfer = None;
        Ok(want)
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

fn card(v2: bool, high_capacity: bool, sectors: u64) -> Card {
    // Every sector different: a fixed pattern with the sector number in its first bytes.
    let base: Vec<u8> = (0..512u32).map(|i| (i * 7) as u8).collect();
    let mut data = Vec::with_capacity(sectors as usize * 512);
    for s in 0..sectors {
        data.extend_from_slice(&(s as u32).to_le_bytes());
        data.extend_from_slice(&base[4..]);
    }
    Card { v2, high_capacity, data, state: IDLE, app: false, busy_polls: 3, illegal: false, xfer: None }
}

fn probe(
    fake: Fake,
    c: Controller,
    fw: Option<Result<u32, MboxError>>,
) -> (super::Probe, Option<Sdhci<Fake>>) {
    Sdhci::probe_with(fake, c, fw)
}

/// An SDHC card of 8 MiB, initialised on the legacy controller with a 50 MHz clock.
fn sdhc() -> Sdhci<Fake> {
    let (p, sd) = probe(Fake::new(Some(card(true, true, 16384))), Controller::Legacy, Some(Ok(50_000_000)));
    assert!(p.result.is_ok(), "{p:?}");
    sd.unwrap()
}

fn pattern(sectors: usize, seed: u8) -> Vec<u8> {
    (0..sectors * 512).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)).collect()
}

#[test]
fn sdhc_card_is_initialised_in_the_specified_order() {
    let sd = sdhc();
    let log = sd.host.log.borrow().clone();
    let hcs = proto::OCR_HCS | proto::OCR_VOLTAGE_WINDOW;
    let mut want = vec![(0, 0), (8, 0x1aa)];
    for _ in 0..4 {
        want.extend([(55, 0), (41, hcs)]); // three busy answers, then powered up
    }
    want.extend([(2, 0), (3, 0), (9, RCA << 16), (7, RCA << 16), (55, RCA << 16), (6, 2)]);
    assert_eq!(log, want);
    // No 1.8 V switch request (S18R, bit 24) in ACMD41; no CMD16 for a block-addressed card.
    assert!(log.iter().all(|&(i, a)| i != 41 || a & 1 << 24 == 0));
    // Identification at or below 400 kHz, then 25 MHz; 4-bit bus on both sides.
    assert_eq!(*sd.host.clocks.borrow(), [50_000_000 / 126, 25_000_000]);
    assert!(sd.host.bus4.get());
    assert_eq!(sd.host.state(), TRAN);
    assert_eq!(sd.sectors(), 16384);
}

#[test]
fn version_1_card_gets_byte_addresses_and_a_block_length() {
    let (p, sd) = probe(Fake::new(Some(card(false, false, 4096))), Controller::Legacy, None);
    let mut sd = sd.unwrap_or_else(|| panic!("{p:?}"));
    let info = p.result.unwrap();
    assert!(!info.high_capacity);
    assert_eq!(info.sectors, 4096);
    // CMD8 went unanswered: the lines were reset and ACMD41 offered no HCS.
    assert!(sd.host.resets_lines.get() >= 1);
    let log = sd.host.log.borrow().clone();
    assert!(log.contains(&(41, proto::OCR_VOLTAGE_WINDOW)));
    assert!(log.contains(&(16, 512)));
    sd.host.log.borrow_mut().clear();
    let mut one = [0u8; 512];
    sd.read(3, &mut [&mut one]).unwrap();
    let two = pattern(2, 1);
    sd.write(5, &[&two]).unwrap();
    assert_eq!(*sd.host.log.borrow(), [(17, 3 * 512), (25, 5 * 512)]);
    let card = sd.host.card.borrow();
    let data = &card.as_ref().unwrap().data;
    assert_eq!(one[..], data[3 * 512..4 * 512]);
    assert_eq!(two[..], data[5 * 512..7 * 512]);
}

#[test]
fn transfers_scatter_and_gather_in_order() {
    let mut sd = sdhc();
    let data = pattern(5, 9);
    let (a, rest) = data.split_at(512);
    let (b, c) = rest.split_at(1536);
    sd.write(10, &[a, b, c]).unwrap();
    assert_eq!(sd.host.card.borrow().as_ref().unwrap().data[10 * 512..15 * 512], data[..]);
    let mut back = vec![0u8; 5 * 512];
    let (x, rest) = back.split_at_mut(1024);
    let (y, z) = rest.split_at_mut(1024);
    sd.read(10, &mut [x, y, z]).unwrap();
    assert_eq!(back, data);
    let mut one = [0u8; 512];
    sd.read(12, &mut [&mut one]).unwrap();
    assert_eq!(one[..], data[1024..1536]);
    // Several sectors: one multi-block command each way; one sector: the single one.
    let cmds = sd.host.commands();
    assert_eq!(cmds[cmds.len() - 3..], [25, 18, 17]);
    assert_eq!(sd.host.state(), TRAN);
}

#[test]
fn huge_transfers_are_split_at_the_block_count_limit() {
    let (_, sd) = probe(Fake::new(Some(card(true, true, 70 * 1024))), Controller::Emmc2, None);
    let mut sd = sd.unwrap();
    let mut buf = vec![0u8; (65535 + 10) * 512];
    sd.read(100, &mut [&mut buf]).unwrap();
    assert_eq!(*sd.host.block_counts.borrow(), [65535, 10]);
    let log = sd.host.log.borrow().clone();
    assert_eq!(log[log.len() - 2..], [(18, 100), (18, 100 + 65535)]);
    assert_eq!(buf[..], sd.host.card.borrow().as_ref().unwrap().data[100 * 512..(100 + 65545) * 512]);
}

#[test]
fn card_that_stops_sending_mid_read_times_out_and_the_next_read_works() {
    let mut sd = sdhc();
    sd.host.stall_after.set(Some(sd.host.moved.get() + 2));
    let mut buf = vec![0u8; 4 * 512];
    assert_eq!(sd.read(40, &mut [&mut buf]), Err(BlockError::Timeout));
    // Recovery: lines reset, the card asked where it is (sending data), told to stop.
    assert!(sd.host.resets_lines.get() >= 1);
    let cmds = sd.host.commands();
    assert_eq!(cmds[cmds.len() - 4..], [18, 13, 12, 13]);
    assert_eq!(sd.host.state(), TRAN);
    sd.host.stall_after.set(None);
    sd.read(40, &mut [&mut buf]).unwrap();
    assert_eq!(buf[..], sd.host.card.borrow().as_ref().unwrap().data[40 * 512..44 * 512]);
}

#[test]
fn card_that_stops_taking_data_mid_write_times_out_and_the_next_write_works() {
    let mut sd = sdhc();
    sd.host.stall_after.set(Some(sd.host.moved.get() + 1));
    let data = pattern(3, 4);
    assert_eq!(sd.write(7, &[&data]), Err(BlockError::Timeout));
    assert_eq!(sd.host.state(), TRAN, "the card was stopped (CMD12) while receiving");
    sd.host.stall_after.set(None);
    sd.write(7, &[&data]).unwrap();
    assert_eq!(sd.host.card.borrow().as_ref().unwrap().data[7 * 512..10 * 512], data[..]);
}

#[test]
fn dead_card_fails_every_request_quickly_and_recovers_when_it_answers_again() {
    let mut sd = sdhc();
    sd.host.dead.set(true);
    let before = sd.host.now.get();
    let mut buf = [0u8; 1024];
    assert_eq!(sd.read(0, &mut [&mut buf]), Err(BlockError::Timeout));
    assert_eq!(sd.write(0, &[&buf]), Err(BlockError::Timeout));
    assert_eq!(sd.flush(), Err(BlockError::Timeout));
    // No software waiting on top of the controller's own timeouts.
    assert!(sd.host.now.get() - before < 100, "{} ticks", sd.host.now.get() - before);
    sd.host.dead.set(false);
    sd.read(0, &mut [&mut buf]).unwrap();
    sd.flush().unwrap();
}

#[test]
fn error_in_the_card_status_is_an_io_error_and_leaves_the_card_usable() {
    let mut sd = sdhc();
    sd.host.next_status_error.set(1 << 21); // CARD_ECC_FAILED
    let mut buf = [0u8; 1024];
    assert_eq!(sd.read(8, &mut [&mut buf]), Err(BlockError::Io));
    assert_eq!(sd.host.state(), TRAN);
    sd.host.cmd12_error.set(OUT_OF_RANGE);
    assert_eq!(sd.read(8, &mut [&mut buf]), Err(BlockError::Io), "auto-CMD12 status is checked");
    sd.read(8, &mut [&mut buf]).unwrap();
}

#[test]
fn removed_card_is_no_medium_until_probed_again() {
    let mut sd = sdhc();
    sd.host.inserted.set(false);
    let mut buf = [0u8; 512];
    let n = sd.host.log.borrow().len();
    assert_eq!(sd.read(0, &mut [&mut buf]), Err(BlockError::NoMedium));
    assert_eq!(sd.host.log.borrow().len(), n, "no command sent to an empty slot");
    // Put back: it lost power, so it stays unusable until the disk is probed again.
    sd.host.inserted.set(true);
    assert_eq!(sd.write(0, &[&buf]), Err(BlockError::NoMedium));
    assert_eq!(sd.flush(), Err(BlockError::NoMedium));
}

#[test]
fn requests_off_the_card_or_not_whole_sectors_touch_nothing() {
    let mut sd = sdhc();
    let n = sd.host.log.borrow().len();
    let mut buf = vec![0u8; 1024];
    assert_eq!(sd.read(16383, &mut [&mut buf]), Err(BlockError::OutOfRange));
    assert_eq!(sd.read(u64::MAX, &mut [&mut buf[..512]]), Err(BlockError::OutOfRange));
    assert_eq!(sd.write(0, &[&buf[..100]]), Err(BlockError::OutOfRange));
    assert_eq!(sd.host.log.borrow().len(), n);
    sd.read(16382, &mut [&mut buf]).unwrap();
}

#[test]
fn empty_slot_fails_fast_with_no_card() {
    let (p, sd) = probe(Fake::new(None), Controller::Emmc2, Some(Ok(100_000_000)));
    assert!(sd.is_none());
    assert_eq!(p.result, Err(SdError::NoCard));
    assert_eq!(BlockError::from(SdError::NoCard), BlockError::NoMedium);
    // What the controller saw: detection forced (the slot said empty), and only the
    // commands that went unanswered.
    let mut sd = Sdhci {
        host: Fake::new(None),
        controller: Controller::Emmc2,
        rca: 0,
        high_capacity: false,
        sectors: 0,
        detect_works: false,
        gone: false,
    };
    assert_eq!(sd.init(100_000_000), Err(SdError::NoCard));
    assert!(sd.host.forced_detect.get(), "an undetected card is still looked for");
    assert_eq!(sd.host.commands(), [0, 8, 55]);
    assert!(sd.host.now.get() < 5000, "{} µs", sd.host.now.get());
}

#[test]
fn clock_source_falls_back_per_controller() {
    let new = || Fake::new(Some(card(true, true, 16384)));
    let (p, _) = probe(new(), Controller::Emmc2, Some(Ok(200_000_000)));
    assert_eq!((p.base_hz, p.clock_source), (200_000_000, ClockSource::Mailbox));
    // EMMC2's capabilities clock is not trusted: 100 MHz.
    let (p, _) = probe(new(), Controller::Emmc2, Some(Err(MboxError::Timeout)));
    assert_eq!((p.base_hz, p.clock_source), (100_000_000, ClockSource::Default(Some(MboxError::Timeout))));
    // The legacy controller's capabilities say 52 MHz.
    let (p, _) = probe(new(), Controller::Legacy, None);
    assert_eq!((p.base_hz, p.clock_source), (52_000_000, ClockSource::Capabilities(None)));
}

#[test]
fn flush_waits_for_the_card_to_finish_programming() {
    let mut sd = sdhc();
    sd.host.busy.set(true);
    assert_eq!(sd.flush(), Err(BlockError::Timeout));
    sd.host.busy.set(false);
    let n = sd.host.log.borrow().len();
    sd.flush().unwrap();
    assert_eq!(sd.host.log.borrow()[n..], [(13, RCA << 16)]);
}
