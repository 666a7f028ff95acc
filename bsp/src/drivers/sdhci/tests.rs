//! Host tests of the SD protocol logic ([`Sdhci`] over [`HostOps`]) against a simulated
//! controller and card: the initialisation sequence, addressing, transfers, and what
//! happens when the card misbehaves — stops answering mid-transfer, dies, reports errors,
//! or is pulled out.

use std::vec::Vec;

use super::fake::{card, Fake, OUT_OF_RANGE, RCA, TRAN};
use super::proto;
use super::{ClockSource, Controller, SdError, Sdhci, Starting};
use crate::drivers::bcm2835_mbox::MboxError;
use crate::{BlockDevice, BlockError};

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
    let hcs = (proto::OCR::HIGH_CAPACITY::SET + proto::OCR::VOLTAGE_WINDOW::V2_7To3_6).value;
    let mut want = vec![(0, 0), (8, 0x1aa)];
    for _ in 0..4 {
        want.extend([(55, 0), (41, hcs)]); // three busy answers, then powered up
    }
    want.extend([(2, 0), (3, 0), (9, RCA << 16), (7, RCA << 16), (55, RCA << 16), (6, 2)]);
    assert_eq!(log, want);
    // No 1.8 V switch request (S18R, bit 24) in ACMD41; no CMD16 for a block-addressed card.
    assert!(log.iter().all(|&(i, a)| i != 41 || !proto::OCR::S18R.is_set(a)));
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
    assert!(log.contains(&(41, proto::OCR::VOLTAGE_WINDOW::V2_7To3_6.value)));
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
    sd.host.next_status_error.set(proto::CARD_STATUS::CARD_ECC_FAILED::SET.value);
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
    assert_eq!(sd.power(100_000_000).and_then(|at| sd.identify(100_000_000, at)), Err(SdError::NoCard));
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

#[test]
fn timed_out_read_is_over_when_it_returns() {
    // PIO: only the driver moves data, so a transfer that failed can never land later. What
    // the test holds is that the blocks after the stall were not filled, and that nothing
    // later writes into the abandoned buffer.
    let mut sd = sdhc();
    sd.host.stall_after.set(Some(sd.host.moved.get() + 2));
    let mut abandoned = vec![0xaau8; 4 * 512];
    assert_eq!(sd.read(40, &mut [&mut abandoned]), Err(BlockError::Timeout));
    let card_data = sd.host.card.borrow().as_ref().unwrap().data.clone();
    assert_eq!(abandoned[..1024], card_data[40 * 512..42 * 512]);
    assert!(abandoned[1024..].iter().all(|&b| b == 0xaa));
    let snapshot = abandoned.clone();
    // Controller lines reset and the card back in the transfer state before the error.
    assert!(sd.host.resets_lines.get() >= 1);
    assert_eq!(sd.host.state(), TRAN);
    sd.host.stall_after.set(None);
    let mut fresh = vec![0u8; 4 * 512];
    sd.read(40, &mut [&mut fresh]).unwrap();
    sd.write(100, &[&fresh]).unwrap();
    assert_eq!(fresh[..], card_data[40 * 512..44 * 512]);
    assert_eq!(abandoned, snapshot, "the abandoned buffer changed after the timeout");
}

/// The card's power ramp is a deadline: time spent between [`Starting::new`] and
/// [`Starting::finish`] (the kernel sets up its frame table meanwhile) counts toward it,
/// and `finish` waits only for what is left, never sending the card a command earlier.
#[test]
fn power_ramp_counts_the_time_between_start_and_finish() {
    let finish_after = |work_us: u64| {
        let s =
            Starting::new(Fake::new(Some(card(true, true, 16384))), Controller::Legacy, Some(Ok(50_000_000)));
        assert!(s.sd.host.commands().is_empty(), "a command before the ramp");
        let now = &s.sd.host.now;
        now.set(now.get() + work_us);
        let before = now.get();
        let (p, sd) = s.finish();
        assert!(p.result.is_ok(), "{p:?}");
        sd.unwrap().host.now.get() - before
    };
    let (at_once, after_work) = (finish_after(0), finish_after(5000));
    assert!(at_once >= 1000, "finish at once waited only {at_once} µs");
    assert!(at_once - after_work >= 990, "waited {at_once} µs at once and {after_work} after 5 ms of work");
}
