//! The SDHCI host controller itself: its registers, resets, clock, command issue, the PIO
//! data port and error recovery. Every access is 32 bits wide, which is all the BCM2835
//! Arasan controller accepts (16-bit registers are written in their 32-bit pairs).

use tock_registers::fields::{Field, FieldValue};
use tock_registers::interfaces::{Readable, Writeable};
use tock_registers::registers::{ReadOnly, ReadWrite};
use tock_registers::{register_bitfields, register_structs, RegisterLongName};

use super::pio::{pio_in, pio_out};
use super::proto::{self, Cmd, Data, Resp};
use super::{Event, HostOps, SdError};
use crate::drivers::generic_timer;

register_bitfields! {u32,
    /// Block size (11:0) and block count (31:16).
    pub BLOCK [
        SIZE OFFSET(0) NUMBITS(12) [],
        COUNT OFFSET(16) NUMBITS(16) [],
    ],
    /// Present state.
    pub PRESENT [
        CMD_INHIBIT OFFSET(0) NUMBITS(1) [],
        DAT_INHIBIT OFFSET(1) NUMBITS(1) [],
        CARD_INSERTED OFFSET(16) NUMBITS(1) [],
        /// The DAT0 line's level: low while the card is busy.
        DAT0 OFFSET(20) NUMBITS(1) [],
    ],
    /// Host control 1 (7:0) and power control (15:8).
    pub CONTROL0 [
        HOST_CONTROL OFFSET(0) NUMBITS(8) [],
        BUS_4BIT OFFSET(1) NUMBITS(1) [],
        CD_TEST_INSERTED OFFSET(6) NUMBITS(1) [],
        CD_TEST_SELECT OFFSET(7) NUMBITS(1) [],
        BUS_POWER OFFSET(8) NUMBITS(1) [],
        VOLTAGE OFFSET(9) NUMBITS(3) [V3_3 = 0b111],
    ],
    /// Clock control (15:0), data timeout (19:16), software resets (26:24).
    pub CONTROL1 [
        CLOCK_CONTROL OFFSET(0) NUMBITS(16) [],
        CLK_INTERNAL_ON OFFSET(0) NUMBITS(1) [],
        CLK_INTERNAL_STABLE OFFSET(1) NUMBITS(1) [],
        CLK_CARD_ON OFFSET(2) NUMBITS(1) [],
        /// The 10-bit divisor: its low 8 bits in 15:8, its top 2 in 7:6.
        CLK_DIVIDER OFFSET(6) NUMBITS(10) [],
        DATA_TIMEOUT OFFSET(16) NUMBITS(4) [Max = 0xe],
        RESET_ALL OFFSET(24) NUMBITS(1) [],
        RESET_CMD OFFSET(25) NUMBITS(1) [],
        RESET_DAT OFFSET(26) NUMBITS(1) [],
    ],
    /// Normal (15:0) and error (31:16) interrupt status, enable and signal; write 1 to clear.
    pub INTERRUPT [
        CMD_DONE OFFSET(0) NUMBITS(1) [],
        DATA_DONE OFFSET(1) NUMBITS(1) [],
        WRITE_READY OFFSET(4) NUMBITS(1) [],
        READ_READY OFFSET(5) NUMBITS(1) [],
        CARD_INSERTED OFFSET(6) NUMBITS(1) [],
        CARD_REMOVED OFFSET(7) NUMBITS(1) [],
        /// Some error bit (31:16) is set.
        ERROR OFFSET(15) NUMBITS(1) [],
        ERROR_STATUS OFFSET(16) NUMBITS(16) [],
        CMD_TIMEOUT OFFSET(16) NUMBITS(1) [],
        CMD_CRC OFFSET(17) NUMBITS(1) [],
        CMD_END_BIT OFFSET(18) NUMBITS(1) [],
        CMD_INDEX OFFSET(19) NUMBITS(1) [],
        DATA_TIMEOUT OFFSET(20) NUMBITS(1) [],
        DATA_CRC OFFSET(21) NUMBITS(1) [],
        DATA_END_BIT OFFSET(22) NUMBITS(1) [],
        CURRENT_LIMIT OFFSET(23) NUMBITS(1) [],
        AUTO_CMD OFFSET(24) NUMBITS(1) [],
        ADMA OFFSET(25) NUMBITS(1) [],
    ],
    /// Capabilities: the base clock in MHz (8 bits from spec 3.0 on, 6 before).
    pub CAPABILITIES [
        BASE_CLOCK OFFSET(8) NUMBITS(8) [],
        BASE_CLOCK_6BIT OFFSET(8) NUMBITS(6) [],
    ],
    /// Slot interrupt status (15:0), host controller version (31:16).
    pub VERSION [
        SPEC OFFSET(16) NUMBITS(8) [],
    ],
}

register_structs! {
    pub Regs {
        (0x00 => _arg2),
        (0x04 => block: ReadWrite<u32, BLOCK::Register>),
        (0x08 => arg: ReadWrite<u32>),
        /// Transfer mode (15:0) and command (31:16); writing it issues the command
        /// ([`proto::CMDTM`]).
        (0x0c => command: ReadWrite<u32, proto::CMDTM::Register>),
        (0x10 => resp: [ReadOnly<u32>; 4]),
        (0x20 => data: ReadWrite<u32>),
        (0x24 => present: ReadOnly<u32, PRESENT::Register>),
        /// Host control 1, power control, block gap (23:16), wakeup (31:24).
        (0x28 => control0: ReadWrite<u32, CONTROL0::Register>),
        (0x2c => control1: ReadWrite<u32, CONTROL1::Register>),
        (0x30 => interrupt: ReadWrite<u32, INTERRUPT::Register>),
        (0x34 => interrupt_enable: ReadWrite<u32, INTERRUPT::Register>),
        (0x38 => interrupt_signal: ReadWrite<u32, INTERRUPT::Register>),
        /// Auto CMD error status (15:0), host control 2 (31:16).
        (0x3c => control2: ReadWrite<u32>),
        (0x40 => capabilities: ReadOnly<u32, CAPABILITIES::Register>),
        (0x44 => capabilities1: ReadOnly<u32>),
        (0x48 => _r0),
        (0xfc => version: ReadOnly<u32, VERSION::Register>),
        (0x100 => @END),
    }
}

/// Every status we use: command/transfer complete, buffer ready, card insert/remove, and
/// every error (command, data, current limit, auto CMD, ADMA).
fn enabled() -> FieldValue<u32, INTERRUPT::Register> {
    use INTERRUPT::*;
    CMD_DONE::SET
        + DATA_DONE::SET
        + WRITE_READY::SET
        + READ_READY::SET
        + CARD_INSERTED::SET
        + CARD_REMOVED::SET
        + CMD_TIMEOUT::SET
        + CMD_CRC::SET
        + CMD_END_BIT::SET
        + CMD_INDEX::SET
        + DATA_TIMEOUT::SET
        + DATA_CRC::SET
        + DATA_END_BIT::SET
        + CURRENT_LIMIT::SET
        + AUTO_CMD::SET
        + ADMA::SET
}

/// The interrupt status bit that signals `e`.
fn event_bit(e: Event) -> Field<u32, INTERRUPT::Register> {
    match e {
        Event::CmdDone => INTERRUPT::CMD_DONE,
        Event::DataDone => INTERRUPT::DATA_DONE,
        Event::WriteReady => INTERRUPT::WRITE_READY,
        Event::ReadReady => INTERRUPT::READ_READY,
    }
}

/// Time limits, in milliseconds. A card answers a command within 64 clocks (the controller
/// reports silence as a command timeout long before [`CMD_MS`]); it delivers a read block
/// within 100 ms and is busy after a written block for at most 250 ms (SDHC) or 500 ms
/// (SDXC) (SD Physical Layer spec 4.6.2). The limits leave margin over those, and are
/// small enough that a request fails within two seconds even when recovery must wait too
/// (`docs/sd-controllers.md` adds them up).
pub const RESET_MS: u64 = 100;
pub const CMD_MS: u64 = 50;
/// A read block, or the end of a read.
pub const DATA_MS: u64 = 500;
/// Busy after a written block (the next block's buffer, the end of a write, an R1b
/// command's busy).
pub const BUSY_MS: u64 = 750;
/// How long a card may take to power up (ACMD41 answering "busy"): the spec's 1 s.
pub const POWER_UP_MS: u64 = 1000;

pub struct Host {
    regs: *const Regs,
    /// The SD clock now (0 while off); register writes at ≤ 400 kHz get a pause.
    pub card_hz: u32,
}

/// Counter ticks in `ms` milliseconds.
fn ticks_ms(ms: u64) -> u64 {
    generic_timer::frequency() * ms / 1000
}

/// Busy-waits `us` microseconds.
fn delay_us(us: u64) {
    let end = generic_timer::now() + generic_timer::frequency() * us / 1_000_000;
    while generic_timer::now() < end {
        core::hint::spin_loop();
    }
}

// SAFETY: the registers are reached only through this value, which the kernel keeps behind
// exclusive access.
unsafe impl Send for Host {}

impl Host {
    /// # Safety
    /// `base` must be the mapped address of an SDHCI register block (256 bytes), used by
    /// nothing else for the value's life.
    pub const unsafe fn new(base: usize) -> Self {
        Self { regs: base as *const Regs, card_hz: 0 }
    }

    #[inline(always)]
    pub fn regs(&self) -> &Regs {
        // SAFETY: `new`'s contract.
        unsafe { &*self.regs }
    }

    /// Writes a register, pausing four SD clocks when the clock is slow: the BCM2835's
    /// Arasan core can lose a write that follows another within two card clocks.
    fn write<R: RegisterLongName>(&self, reg: &ReadWrite<u32, R>, v: impl Into<u32>) {
        reg.set(v.into());
        // Also while the clock is off (0), as Linux's iProc driver does. The interrupt
        // status is cleared with plain writes: two clears of it are always a command or a
        // block apart, far more than two clocks.
        if self.card_hz <= 400_000 {
            let clocks4 = if self.card_hz == 0 { 0 } else { 4_000_000 / self.card_hz as u64 };
            delay_us(clocks4.max(10));
        }
    }

    fn wait_reset(&self, resets: FieldValue<u32, CONTROL1::Register>) -> Result<(), SdError> {
        let deadline = generic_timer::now() + ticks_ms(RESET_MS);
        while self.regs().control1.any_matching_bits_set(resets) {
            if generic_timer::now() > deadline {
                return Err(SdError::Timeout { cmd: None });
            }
        }
        Ok(())
    }
}

impl HostOps for Host {
    fn spec_version(&self) -> Option<u8> {
        let v = self.regs().version.extract();
        (v.get() != 0xffff_ffff).then_some(v.read(VERSION::SPEC) as u8)
    }

    fn capabilities_base_hz(&self) -> u32 {
        let caps = self.regs().capabilities.extract();
        let mhz = if self.spec_version().unwrap_or(0) >= 2 {
            caps.read(CAPABILITIES::BASE_CLOCK)
        } else {
            caps.read(CAPABILITIES::BASE_CLOCK_6BIT)
        };
        mhz * 1_000_000
    }

    fn card_inserted(&self) -> bool {
        self.regs().present.is_set(PRESENT::CARD_INSERTED)
    }

    fn force_card_detect(&self) {
        let c = self.regs().control0.get();
        let v = (CONTROL0::CD_TEST_SELECT::SET + CONTROL0::CD_TEST_INSERTED::SET).modify(c);
        self.write(&self.regs().control0, v);
    }

    fn reset_all(&mut self) -> Result<(), SdError> {
        self.card_hz = 0;
        let r = self.regs();
        self.write(&r.control1, CONTROL1::RESET_ALL::SET);
        self.wait_reset(CONTROL1::RESET_ALL::SET)?;
        self.write(&r.control0, 0u32);
        self.write(&r.control1, CONTROL1::DATA_TIMEOUT::Max);
        self.write(&r.control2, 0u32);
        self.write(&r.interrupt_signal, 0u32);
        self.write(&r.interrupt_enable, enabled());
        self.write(&r.interrupt, u32::MAX);
        Ok(())
    }

    fn reset_lines(&self) -> Result<(), SdError> {
        let r = self.regs();
        let v = (CONTROL1::RESET_ALL::CLEAR + CONTROL1::RESET_CMD::SET + CONTROL1::RESET_DAT::SET)
            .modify(r.control1.get());
        self.write(&r.control1, v);
        self.wait_reset(CONTROL1::RESET_CMD::SET + CONTROL1::RESET_DAT::SET)?;
        self.write(&r.interrupt, u32::MAX);
        Ok(())
    }

    fn power_on(&self) {
        let host_control = self.regs().control0.get() & CONTROL0::HOST_CONTROL::SET.value;
        let v = (CONTROL0::BUS_4BIT::CLEAR + CONTROL0::BUS_POWER::SET + CONTROL0::VOLTAGE::V3_3)
            .modify(host_control);
        self.write(&self.regs().control0, v);
    }

    fn set_bus_4bit(&self) {
        let c = self.regs().control0.get();
        self.write(&self.regs().control0, CONTROL0::BUS_4BIT::SET.modify(c));
    }

    fn set_clock(&mut self, base_hz: u32, target_hz: u32) -> Result<u32, SdError> {
        use CONTROL1::*;
        let v3 = self.spec_version().unwrap_or(0) >= 2;
        let div = proto::clock_divider(base_hz, target_hz, v3);
        let keep = (RESET_ALL::CLEAR + RESET_CMD::CLEAR + RESET_DAT::CLEAR + CLOCK_CONTROL::CLEAR)
            .modify(self.regs().control1.get());
        self.write(&self.regs().control1, keep);
        self.card_hz = div.hz;
        let r = self.regs();
        let c = (CLK_DIVIDER.val(div.bits >> CLK_DIVIDER.shift) + CLK_INTERNAL_ON::SET).modify(keep);
        self.write(&r.control1, c);
        let deadline = generic_timer::now() + ticks_ms(20);
        while !r.control1.is_set(CLK_INTERNAL_STABLE) {
            if generic_timer::now() > deadline {
                return Err(SdError::Timeout { cmd: None });
            }
        }
        self.write(&r.control1, CLK_CARD_ON::SET.modify(c));
        Ok(div.hz)
    }

    fn command(&self, cmd: Cmd, arg: u32) -> Result<[u32; 4], SdError> {
        let r = self.regs();
        let busy = cmd.resp == Resp::R1b || cmd.data != Data::None;
        let inhibit = if busy && !cmd.abort {
            PRESENT::CMD_INHIBIT::SET + PRESENT::DAT_INHIBIT::SET
        } else {
            PRESENT::CMD_INHIBIT::SET
        };
        if r.present.any_matching_bits_set(inhibit) {
            let deadline = generic_timer::now() + ticks_ms(CMD_MS);
            while r.present.any_matching_bits_set(inhibit) {
                if generic_timer::now() > deadline {
                    return Err(SdError::Timeout { cmd: Some(cmd.index) });
                }
            }
        }
        self.write(&r.arg, arg);
        self.write(&r.command, proto::command_word(cmd));
        self.wait(Event::CmdDone, CMD_MS, cmd.index)?;
        let resp = match cmd.resp {
            Resp::None => [0; 4],
            Resp::R2 => [r.resp[0].get(), r.resp[1].get(), r.resp[2].get(), r.resp[3].get()],
            _ => [r.resp[0].get(), 0, 0, 0],
        };
        if cmd.resp == Resp::R1b && cmd.data == Data::None {
            self.wait(Event::DataDone, BUSY_MS, cmd.index)?;
        }
        // The card status's error bits are the caller's to judge (`Sdhci::r1`): some
        // commands expect them set, or want the card's state regardless.
        Ok(resp)
    }

    #[inline]
    fn wait(&self, want: Event, ms: u64, cmd: u8) -> Result<(), SdError> {
        let r = self.regs();
        let want = event_bit(want);
        let news = want.val(1) + INTERRUPT::ERROR::SET + INTERRUPT::CARD_REMOVED::SET;
        let mut deadline = 0;
        loop {
            let s = r.interrupt.extract();
            if s.any_matching_bits_set(news) {
                if s.is_set(INTERRUPT::ERROR) {
                    return Err(decode_error(s.get(), cmd));
                }
                if s.is_set(want) {
                    r.interrupt.write(want.val(1));
                    return Ok(());
                }
                // A bouncing detect switch is not a removal: believe the present state.
                r.interrupt.write(INTERRUPT::CARD_REMOVED::SET);
                if !self.card_inserted() {
                    return Err(SdError::NoCard);
                }
            }
            let now = generic_timer::now();
            if deadline == 0 {
                deadline = now + ticks_ms(ms);
            } else if now > deadline {
                return Err(SdError::Timeout { cmd: Some(cmd) });
            }
        }
    }

    fn auto_cmd12_status(&self) -> u32 {
        self.regs().resp[3].get()
    }

    fn wait_not_busy(&self, ms: u64) -> Result<(), SdError> {
        let r = self.regs();
        if r.present.is_set(PRESENT::DAT0) {
            return Ok(());
        }
        let deadline = generic_timer::now() + ticks_ms(ms);
        while !r.present.is_set(PRESENT::DAT0) {
            if generic_timer::now() > deadline {
                return Err(SdError::Timeout { cmd: None });
            }
        }
        Ok(())
    }

    fn set_blocks(&self, count: u16) {
        self.write(&self.regs().block, BLOCK::COUNT.val(count as u32) + BLOCK::SIZE.val(512));
    }

    #[inline]
    unsafe fn read_block(&self, dst: *mut u8) {
        let port = &self.regs().data;
        if (dst as usize).is_multiple_of(4) {
            // SAFETY: the caller gives 512 writable bytes, aligned here to 4.
            unsafe { pio_in(port as *const ReadWrite<u32> as *const u32, dst as *mut u32) };
        } else {
            for i in 0..128 {
                let w = port.get().to_le_bytes();
                // SAFETY: byte 4i lies within the caller's 512 bytes (i < 128).
                let at = unsafe { dst.add(4 * i) };
                // SAFETY: bytes 4i..4i+4 lie within the caller's 512 writable bytes, and `w`
                // is a local array that cannot overlap them.
                unsafe { core::ptr::copy_nonoverlapping(w.as_ptr(), at, 4) };
            }
        }
    }

    #[inline]
    unsafe fn write_block(&self, src: *const u8) {
        let port = &self.regs().data;
        if (src as usize).is_multiple_of(4) {
            // SAFETY: the caller gives 512 readable bytes, aligned here to 4.
            unsafe { pio_out(port as *const ReadWrite<u32> as *mut u32, src as *const u32) };
        } else {
            for i in 0..128 {
                let mut w = [0u8; 4];
                // SAFETY: byte 4i lies within the caller's 512 bytes (i < 128).
                let at = unsafe { src.add(4 * i) };
                // SAFETY: bytes 4i..4i+4 lie within the caller's 512 readable bytes, and `w`
                // is a local array that cannot overlap them.
                unsafe { core::ptr::copy_nonoverlapping(at, w.as_mut_ptr(), 4) };
                port.set(u32::from_le_bytes(w));
            }
        }
    }

    fn now(&self) -> u64 {
        generic_timer::now()
    }

    fn ticks_ms(&self, ms: u64) -> u64 {
        ticks_ms(ms)
    }

    fn delay_us(&self, us: u64) {
        delay_us(us)
    }
}

/// The error an error interrupt status stands for: a command or data timeout alone is a
/// timeout (nothing answered); CRC, end-bit, index, current-limit and auto-CMD12 errors,
/// or a timeout together with a CRC error (two drivers on the line), are I/O errors.
pub fn decode_error(status: u32, cmd: u8) -> SdError {
    let errors = status & INTERRUPT::ERROR_STATUS::SET.value;
    let timeouts = (INTERRUPT::CMD_TIMEOUT::SET + INTERRUPT::DATA_TIMEOUT::SET).value;
    if errors & timeouts != 0 && errors & !timeouts == 0 {
        SdError::Timeout { cmd: Some(cmd) }
    } else {
        SdError::Io { cmd: Some(cmd) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_decoding() {
        use INTERRUPT::*;
        let decode = |s: FieldValue<u32, INTERRUPT::Register>, cmd| decode_error((ERROR::SET + s).value, cmd);
        assert_eq!(decode(CMD_TIMEOUT::SET, 8), SdError::Timeout { cmd: Some(8) });
        assert_eq!(decode(DATA_TIMEOUT::SET, 18), SdError::Timeout { cmd: Some(18) });
        assert_eq!(decode(CMD_CRC::SET, 2), SdError::Io { cmd: Some(2) });
        // Timeout together with CRC: a conflict on the CMD line, not silence.
        assert_eq!(decode(CMD_TIMEOUT::SET + CMD_CRC::SET, 2), SdError::Io { cmd: Some(2) });
        assert_eq!(decode(DATA_CRC::SET, 17), SdError::Io { cmd: Some(17) });
        assert_eq!(decode(AUTO_CMD::SET, 25), SdError::Io { cmd: Some(25) });
    }

    #[test]
    fn bits_are_where_the_spec_puts_them() {
        // The values the hand-written constants had, so the registers see the same words.
        assert_eq!(enabled().value, 0x03ff_00f3);
        assert_eq!(INTERRUPT::ERROR::SET.value, 1 << 15);
        assert_eq!((INTERRUPT::CMD_TIMEOUT::SET + INTERRUPT::DATA_TIMEOUT::SET).value, 1 << 16 | 1 << 20);
        assert_eq!((PRESENT::CARD_INSERTED::SET + PRESENT::DAT0::SET).value, 1 << 16 | 1 << 20);
        let power = CONTROL0::BUS_4BIT::CLEAR + CONTROL0::BUS_POWER::SET + CONTROL0::VOLTAGE::V3_3;
        assert_eq!(power.modify(0xff), 0xfd | 0b1111 << 8);
        assert_eq!(CONTROL1::DATA_TIMEOUT::Max.value, 0xe << 16);
        assert_eq!(CONTROL1::CLK_DIVIDER.val(0xffff_ffc0 >> 6).value, 0xffc0);
        let resets = CONTROL1::RESET_ALL::CLEAR + CONTROL1::RESET_CMD::SET + CONTROL1::RESET_DAT::SET;
        assert_eq!(resets.modify(u32::MAX), !(1 << 24));
        assert_eq!((BLOCK::COUNT.val(3) + BLOCK::SIZE.val(512)).value, 3 << 16 | 512);
        assert_eq!(CAPABILITIES::BASE_CLOCK.read(0xffff_c8ff), 0xc8);
        assert_eq!(CAPABILITIES::BASE_CLOCK_6BIT.read(0xffff_c8ff), 0x08);
    }

    #[test]
    fn register_offsets() {
        // The offsets the SD Host Controller spec gives.
        assert_eq!(core::mem::offset_of!(Regs, command), 0x0c);
        assert_eq!(core::mem::offset_of!(Regs, data), 0x20);
        assert_eq!(core::mem::offset_of!(Regs, interrupt), 0x30);
        assert_eq!(core::mem::offset_of!(Regs, capabilities), 0x40);
        assert_eq!(core::mem::offset_of!(Regs, version), 0xfc);
        assert_eq!(core::mem::size_of::<Regs>(), 0x100);
    }
}
