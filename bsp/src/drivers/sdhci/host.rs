//! The SDHCI host controller itself: its registers, resets, clock, command issue, the PIO
//! data port and error recovery. Every access is 32 bits wide, which is all the BCM2835
//! Arasan controller accepts (16-bit registers are written in their 32-bit pairs).
// TODO(regs branch): remove
#![allow(clippy::multiple_unsafe_ops_per_block)]

use tock_registers::interfaces::{Readable, Writeable};
use tock_registers::register_structs;
use tock_registers::registers::{ReadOnly, ReadWrite};

use super::pio::{pio_in, pio_out};
use super::proto::{self, Cmd, Data, Resp};
use super::{HostOps, SdError};
use crate::drivers::generic_timer;

register_structs! {
    pub Regs {
        (0x00 => _arg2),
        /// Block size (11:0) and block count (31:16).
        (0x04 => block: ReadWrite<u32>),
        (0x08 => arg: ReadWrite<u32>),
        /// Transfer mode (15:0) and command (31:16); writing it issues the command.
        (0x0c => command: ReadWrite<u32>),
        (0x10 => resp: [ReadOnly<u32>; 4]),
        (0x20 => data: ReadWrite<u32>),
        (0x24 => present: ReadOnly<u32>),
        /// Host control 1 (7:0), power control (15:8), block gap (23:16), wakeup (31:24).
        (0x28 => control0: ReadWrite<u32>),
        /// Clock control (15:0), timeout control (19:16), software reset (26:24).
        (0x2c => control1: ReadWrite<u32>),
        /// Normal (15:0) and error (31:16) interrupt status; write 1 to clear.
        (0x30 => interrupt: ReadWrite<u32>),
        (0x34 => interrupt_enable: ReadWrite<u32>),
        (0x38 => interrupt_signal: ReadWrite<u32>),
        /// Auto CMD error status (15:0), host control 2 (31:16).
        (0x3c => control2: ReadWrite<u32>),
        (0x40 => capabilities: ReadOnly<u32>),
        (0x44 => capabilities1: ReadOnly<u32>),
        (0x48 => _r0),
        /// Slot interrupt status (15:0), host controller version (31:16).
        (0xfc => version: ReadOnly<u32>),
        (0x100 => @END),
    }
}

// Present state.
const PS_CMD_INHIBIT: u32 = 1 << 0;
const PS_DAT_INHIBIT: u32 = 1 << 1;
const PS_CARD_INSERTED: u32 = 1 << 16;
const PS_DAT0: u32 = 1 << 20;

// Host control 1 and power control (in `control0`).
const HC_4BIT: u32 = 1 << 1;
const HC_CD_TEST_INSERTED: u32 = 1 << 6;
const HC_CD_TEST_SELECT: u32 = 1 << 7;
const POWER_ON_3V3: u32 = 0b1111 << 8;

// Clock control, timeout and resets (in `control1`).
const CLK_INTERNAL_ON: u32 = 1 << 0;
const CLK_INTERNAL_STABLE: u32 = 1 << 1;
const CLK_CARD_ON: u32 = 1 << 2;
const CLK_DIVIDER_MASK: u32 = 0xffc0;
const TIMEOUT_MAX: u32 = 0xe << 16;
const RESET_ALL: u32 = 1 << 24;
const RESET_CMD: u32 = 1 << 25;
const RESET_DAT: u32 = 1 << 26;

// Interrupt status bits.
pub const INT_CMD_DONE: u32 = 1 << 0;
pub const INT_DATA_DONE: u32 = 1 << 1;
pub const INT_WRITE_READY: u32 = 1 << 4;
pub const INT_READ_READY: u32 = 1 << 5;
const INT_CARD_REMOVED: u32 = 1 << 7;
const INT_ERROR: u32 = 1 << 15;
const INT_CMD_TIMEOUT: u32 = 1 << 16;
const INT_DATA_TIMEOUT: u32 = 1 << 20;
/// Every status we use: command/transfer complete, buffer ready, card insert/remove, and
/// every error (command, data, current limit, auto CMD, ADMA).
const INT_ENABLED: u32 = 0x03ff_00f3;

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
    fn write(&self, reg: &ReadWrite<u32>, v: u32) {
        reg.set(v);
        // Also while the clock is off (0), as Linux's iProc driver does. The interrupt
        // status is cleared with plain writes: two clears of it are always a command or a
        // block apart, far more than two clocks.
        if self.card_hz <= 400_000 {
            let clocks4 = if self.card_hz == 0 { 0 } else { 4_000_000 / self.card_hz as u64 };
            delay_us(clocks4.max(10));
        }
    }

    fn wait_reset(&self, bits: u32) -> Result<(), SdError> {
        let deadline = generic_timer::now() + ticks_ms(RESET_MS);
        while self.regs().control1.get() & bits != 0 {
            if generic_timer::now() > deadline {
                return Err(SdError::Timeout { cmd: None });
            }
        }
        Ok(())
    }
}

impl HostOps for Host {
    fn spec_version(&self) -> Option<u8> {
        let v = self.regs().version.get();
        (v != 0xffff_ffff).then_some((v >> 16) as u8)
    }

    fn capabilities_base_hz(&self) -> u32 {
        let caps = self.regs().capabilities.get();
        let mhz = if self.spec_version().unwrap_or(0) >= 2 { (caps >> 8) & 0xff } else { (caps >> 8) & 0x3f };
        mhz * 1_000_000
    }

    fn card_inserted(&self) -> bool {
        self.regs().present.get() & PS_CARD_INSERTED != 0
    }

    fn force_card_detect(&self) {
        let c = self.regs().control0.get();
        self.write(&self.regs().control0, c | HC_CD_TEST_SELECT | HC_CD_TEST_INSERTED);
    }

    fn reset_all(&mut self) -> Result<(), SdError> {
        self.card_hz = 0;
        let r = self.regs();
        self.write(&r.control1, RESET_ALL);
        self.wait_reset(RESET_ALL)?;
        self.write(&r.control0, 0);
        self.write(&r.control1, TIMEOUT_MAX);
        self.write(&r.control2, 0);
        self.write(&r.interrupt_signal, 0);
        self.write(&r.interrupt_enable, INT_ENABLED);
        self.write(&r.interrupt, u32::MAX);
        Ok(())
    }

    fn reset_lines(&self) -> Result<(), SdError> {
        let r = self.regs();
        let c = r.control1.get() & !(RESET_ALL | RESET_CMD | RESET_DAT);
        self.write(&r.control1, c | RESET_CMD | RESET_DAT);
        self.wait_reset(RESET_CMD | RESET_DAT)?;
        self.write(&r.interrupt, u32::MAX);
        Ok(())
    }

    fn power_on(&self) {
        let c = self.regs().control0.get() & 0xff;
        self.write(&self.regs().control0, (c & !HC_4BIT) | POWER_ON_3V3);
    }

    fn set_bus_4bit(&self) {
        let c = self.regs().control0.get();
        self.write(&self.regs().control0, c | HC_4BIT);
    }

    fn set_clock(&mut self, base_hz: u32, target_hz: u32) -> Result<u32, SdError> {
        let v3 = self.spec_version().unwrap_or(0) >= 2;
        let div = proto::clock_divider(base_hz, target_hz, v3);
        let keep = self.regs().control1.get() & !(RESET_ALL | RESET_CMD | RESET_DAT | 0xffff);
        self.write(&self.regs().control1, keep);
        self.card_hz = div.hz;
        let r = self.regs();
        let c = keep | (div.bits & CLK_DIVIDER_MASK) | CLK_INTERNAL_ON;
        self.write(&r.control1, c);
        let deadline = generic_timer::now() + ticks_ms(20);
        while r.control1.get() & CLK_INTERNAL_STABLE == 0 {
            if generic_timer::now() > deadline {
                return Err(SdError::Timeout { cmd: None });
            }
        }
        self.write(&r.control1, c | CLK_CARD_ON);
        Ok(div.hz)
    }

    fn command(&self, cmd: Cmd, arg: u32) -> Result<[u32; 4], SdError> {
        let r = self.regs();
        let busy = cmd.resp == Resp::R1b || cmd.data != Data::None;
        let inhibit = if busy && !cmd.abort { PS_CMD_INHIBIT | PS_DAT_INHIBIT } else { PS_CMD_INHIBIT };
        if r.present.get() & inhibit != 0 {
            let deadline = generic_timer::now() + ticks_ms(CMD_MS);
            while r.present.get() & inhibit != 0 {
                if generic_timer::now() > deadline {
                    return Err(SdError::Timeout { cmd: Some(cmd.index) });
                }
            }
        }
        self.write(&r.arg, arg);
        self.write(&r.command, proto::command_word(cmd));
        self.wait(INT_CMD_DONE, CMD_MS, cmd.index)?;
        let resp = match cmd.resp {
            Resp::None => [0; 4],
            Resp::R2 => [r.resp[0].get(), r.resp[1].get(), r.resp[2].get(), r.resp[3].get()],
            _ => [r.resp[0].get(), 0, 0, 0],
        };
        if cmd.resp == Resp::R1b && cmd.data == Data::None {
            self.wait(INT_DATA_DONE, BUSY_MS, cmd.index)?;
        }
        // The card status's error bits are the caller's to judge (`Sdhci::r1`): some
        // commands expect them set, or want the card's state regardless.
        Ok(resp)
    }

    #[inline]
    fn wait(&self, want: u32, ms: u64, cmd: u8) -> Result<u32, SdError> {
        let r = self.regs();
        let mut deadline = 0;
        loop {
            let s = r.interrupt.get();
            if s & (want | INT_ERROR | INT_CARD_REMOVED) != 0 {
                if s & INT_ERROR != 0 {
                    return Err(decode_error(s, cmd));
                }
                if s & want != 0 {
                    r.interrupt.set(s & want);
                    return Ok(s);
                }
                // A bouncing detect switch is not a removal: believe the present state.
                r.interrupt.set(INT_CARD_REMOVED);
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
        if r.present.get() & PS_DAT0 != 0 {
            return Ok(());
        }
        let deadline = generic_timer::now() + ticks_ms(ms);
        while r.present.get() & PS_DAT0 == 0 {
            if generic_timer::now() > deadline {
                return Err(SdError::Timeout { cmd: None });
            }
        }
        Ok(())
    }

    fn set_blocks(&self, count: u16) {
        self.write(&self.regs().block, (count as u32) << 16 | 512);
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
                // SAFETY: bytes 4i..4i+4 lie within the caller's 512 bytes.
                unsafe { core::ptr::copy_nonoverlapping(w.as_ptr(), dst.add(4 * i), 4) };
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
                // SAFETY: bytes 4i..4i+4 lie within the caller's 512 bytes.
                unsafe { core::ptr::copy_nonoverlapping(src.add(4 * i), w.as_mut_ptr(), 4) };
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
    let errors = status >> 16;
    let timeouts = (INT_CMD_TIMEOUT | INT_DATA_TIMEOUT) >> 16;
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
        let err = INT_ERROR;
        assert_eq!(decode_error(err | INT_CMD_TIMEOUT, 8), SdError::Timeout { cmd: Some(8) });
        assert_eq!(decode_error(err | INT_DATA_TIMEOUT, 18), SdError::Timeout { cmd: Some(18) });
        // Command CRC error.
        assert_eq!(decode_error(err | 1 << 17, 2), SdError::Io { cmd: Some(2) });
        // Timeout together with CRC: a conflict on the CMD line, not silence.
        assert_eq!(decode_error(err | INT_CMD_TIMEOUT | 1 << 17, 2), SdError::Io { cmd: Some(2) });
        // Data CRC, auto CMD12 error.
        assert_eq!(decode_error(err | 1 << 21, 17), SdError::Io { cmd: Some(17) });
        assert_eq!(decode_error(err | 1 << 24, 25), SdError::Io { cmd: Some(25) });
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
