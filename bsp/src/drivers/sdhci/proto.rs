//! SD protocol facts as pure functions: commands encoded for the SDHCI command register,
//! card-status errors, OCR bits, CSD capacity and SD clock divisors. Host-tested.

use tock_registers::fields::FieldValue;
use tock_registers::register_bitfields;

/// How the card answers a command (SD Physical Layer spec, 4.9).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Resp {
    None,
    /// Card status, 48 bits.
    R1,
    /// Card status, then busy on DAT0 until the card is done.
    R1b,
    /// CID or CSD, 136 bits.
    R2,
    /// OCR, 48 bits, no CRC.
    R3,
    /// Published RCA.
    R6,
    /// Interface condition echo.
    R7,
}

/// The data phase that follows a command.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Data {
    None,
    /// Card to host, one block.
    Read,
    /// Card to host, several blocks, ended by an automatic CMD12.
    ReadMulti,
    /// Host to card, one block.
    Write,
    /// Host to card, several blocks, ended by an automatic CMD12.
    WriteMulti,
}

/// A command as the driver issues it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cmd {
    pub index: u8,
    pub resp: Resp,
    pub data: Data,
    /// An abort command (CMD12 sent by hand): the controller frees the data lines after it.
    pub abort: bool,
}

const fn cmd(index: u8, resp: Resp) -> Cmd {
    Cmd { index, resp, data: Data::None, abort: false }
}

const fn data(index: u8, data: Data) -> Cmd {
    Cmd { index, resp: Resp::R1, data, abort: false }
}

pub const GO_IDLE_STATE: Cmd = cmd(0, Resp::None);
pub const ALL_SEND_CID: Cmd = cmd(2, Resp::R2);
pub const SEND_RELATIVE_ADDR: Cmd = cmd(3, Resp::R6);
/// ACMD6.
pub const SET_BUS_WIDTH: Cmd = cmd(6, Resp::R1);
pub const SELECT_CARD: Cmd = cmd(7, Resp::R1b);
pub const SEND_IF_COND: Cmd = cmd(8, Resp::R7);
pub const SEND_CSD: Cmd = cmd(9, Resp::R2);
pub const STOP_TRANSMISSION: Cmd = Cmd { index: 12, resp: Resp::R1b, data: Data::None, abort: true };
pub const SEND_STATUS: Cmd = cmd(13, Resp::R1);
pub const SET_BLOCKLEN: Cmd = cmd(16, Resp::R1);
pub const READ_SINGLE_BLOCK: Cmd = data(17, Data::Read);
pub const READ_MULTIPLE_BLOCK: Cmd = data(18, Data::ReadMulti);
pub const WRITE_BLOCK: Cmd = data(24, Data::Write);
pub const WRITE_MULTIPLE_BLOCK: Cmd = data(25, Data::WriteMulti);
/// ACMD41.
pub const SD_SEND_OP_COND: Cmd = cmd(41, Resp::R3);
pub const APP_CMD: Cmd = cmd(55, Resp::R1);

/// CMD8's argument: 2.7–3.6 V supplied, check pattern 0xaa. The card echoes it.
pub const IF_COND_ARG: u32 = 0x1aa;
/// ACMD6's argument for a 4-bit bus.
pub const BUS_WIDTH_4: u32 = 2;

register_bitfields! {u32,
    /// The OCR: ACMD41's argument, and the card's answer to it.
    pub OCR [
        /// Supported voltages; the driver offers 2.7–3.6 V, every window from 2.7–2.8 V to
        /// 3.5–3.6 V.
        VOLTAGE_WINDOW OFFSET(15) NUMBITS(9) [V2_7To3_6 = 0x1ff],
        /// Switching to 1.8 V signalling requested (argument) or accepted (answer); never
        /// asked for by this driver.
        S18R OFFSET(24) NUMBITS(1) [],
        /// In the argument: the host takes SDHC/SDXC (HCS). In the answer: the card is one,
        /// block addressed (CCS).
        HIGH_CAPACITY OFFSET(30) NUMBITS(1) [],
        /// In the answer: the card has finished powering up.
        POWERED_UP OFFSET(31) NUMBITS(1) [],
    ],
    /// The card status an R1 answer carries (SD Physical Layer spec, 4.10.1).
    pub CARD_STATUS [
        AKE_SEQ_ERROR OFFSET(3) NUMBITS(1) [],
        APP_CMD OFFSET(5) NUMBITS(1) [],
        /// The card's buffer is free.
        READY_FOR_DATA OFFSET(8) NUMBITS(1) [],
        CURRENT_STATE OFFSET(9) NUMBITS(4) [
            Idle = 0, Ready = 1, Ident = 2, Stby = 3, Tran = 4, Data = 5, Rcv = 6, Prg = 7, Dis = 8
        ],
        WP_ERASE_SKIP OFFSET(15) NUMBITS(1) [],
        CSD_OVERWRITE OFFSET(16) NUMBITS(1) [],
        ERROR OFFSET(19) NUMBITS(1) [],
        CC_ERROR OFFSET(20) NUMBITS(1) [],
        CARD_ECC_FAILED OFFSET(21) NUMBITS(1) [],
        ILLEGAL_COMMAND OFFSET(22) NUMBITS(1) [],
        COM_CRC_ERROR OFFSET(23) NUMBITS(1) [],
        LOCK_UNLOCK_FAILED OFFSET(24) NUMBITS(1) [],
        WP_VIOLATION OFFSET(26) NUMBITS(1) [],
        ERASE_PARAM OFFSET(27) NUMBITS(1) [],
        ERASE_SEQ_ERROR OFFSET(28) NUMBITS(1) [],
        BLOCK_LEN_ERROR OFFSET(29) NUMBITS(1) [],
        ADDRESS_ERROR OFFSET(30) NUMBITS(1) [],
        OUT_OF_RANGE OFFSET(31) NUMBITS(1) [],
    ],
}

/// A card's state, from the CURRENT_STATE field of its status.
pub use CARD_STATUS::CURRENT_STATE::Value as State;

/// Whether a card status reports that the command failed: any of the error bits set.
pub fn r1_failed(status: u32) -> bool {
    use CARD_STATUS::*;
    let errors = OUT_OF_RANGE::SET
        + ADDRESS_ERROR::SET
        + BLOCK_LEN_ERROR::SET
        + ERASE_SEQ_ERROR::SET
        + ERASE_PARAM::SET
        + WP_VIOLATION::SET
        + LOCK_UNLOCK_FAILED::SET
        + COM_CRC_ERROR::SET
        + ILLEGAL_COMMAND::SET
        + CARD_ECC_FAILED::SET
        + CC_ERROR::SET
        + ERROR::SET
        + CSD_OVERWRITE::SET
        + WP_ERASE_SKIP::SET
        + AKE_SEQ_ERROR::SET;
    errors.any_matching_bits_set(status)
}

/// The card's state in a card status (`None` for the reserved values).
pub fn r1_state(status: u32) -> Option<State> {
    CARD_STATUS::CURRENT_STATE.read_as_enum(status)
}

register_bitfields! {u32,
    /// The SDHCI Transfer Mode (15:0) and Command (31:16) registers, written together as one
    /// 32-bit word at offset 0x0c (the BCM2835 controllers accept only 32-bit writes).
    pub CMDTM [
        BLOCK_COUNT_ENABLE OFFSET(1) NUMBITS(1) [],
        AUTO_CMD12 OFFSET(2) NUMBITS(1) [],
        /// Card to host.
        READ OFFSET(4) NUMBITS(1) [],
        MULTI_BLOCK OFFSET(5) NUMBITS(1) [],
        RESPONSE OFFSET(16) NUMBITS(2) [None = 0, Bits136 = 1, Bits48 = 2, Bits48Busy = 3],
        CRC_CHECK OFFSET(19) NUMBITS(1) [],
        INDEX_CHECK OFFSET(20) NUMBITS(1) [],
        DATA_PRESENT OFFSET(21) NUMBITS(1) [],
        TYPE OFFSET(22) NUMBITS(2) [Normal = 0, Abort = 3],
        INDEX OFFSET(24) NUMBITS(6) [],
    ],
}

/// The value for the Transfer Mode + Command registers that issues `c`.
pub fn command_word(c: Cmd) -> FieldValue<u32, CMDTM::Register> {
    use CMDTM::*;
    let checked = CRC_CHECK::SET + INDEX_CHECK::SET;
    let resp = match c.resp {
        Resp::None => RESPONSE::None,
        Resp::R2 => RESPONSE::Bits136 + CRC_CHECK::SET,
        Resp::R3 => RESPONSE::Bits48,
        Resp::R1b => RESPONSE::Bits48Busy + checked,
        Resp::R1 | Resp::R6 | Resp::R7 => RESPONSE::Bits48 + checked,
    };
    let multi = MULTI_BLOCK::SET + BLOCK_COUNT_ENABLE::SET + AUTO_CMD12::SET;
    let mode = match c.data {
        Data::None => DATA_PRESENT::CLEAR,
        Data::Read => DATA_PRESENT::SET + READ::SET,
        Data::Write => DATA_PRESENT::SET,
        Data::ReadMulti => DATA_PRESENT::SET + READ::SET + multi,
        Data::WriteMulti => DATA_PRESENT::SET + multi,
    };
    let kind = if c.abort { TYPE::Abort } else { TYPE::Normal };
    INDEX.val(c.index as u32) + resp + mode + kind
}

/// The CSD (or CID) as one 128-bit number with the register's bit numbering, from the four
/// SDHCI response registers. The controller drops the CRC byte (bits 7:0) and shifts the
/// rest down by 8; this undoes the shift (bits 7:0 come back as zero).
pub const fn r2_to_u128(resp: [u32; 4]) -> u128 {
    let raw = (resp[3] as u128) << 96 | (resp[2] as u128) << 64 | (resp[1] as u128) << 32 | resp[0] as u128;
    raw << 8
}

const fn field(csd: u128, hi: u32, lo: u32) -> u64 {
    ((csd >> lo) & ((1u128 << (hi - lo + 1)) - 1)) as u64
}

/// Card capacity in 512-byte sectors from its CSD, or `None` for a structure this driver
/// does not know (SDUC's version 3) or nonsense values.
///
/// - CSD 1.0 (SDSC): `(C_SIZE + 1) << (C_SIZE_MULT + 2)` blocks of `2^READ_BL_LEN` bytes.
/// - CSD 2.0 (SDHC, SDXC): `(C_SIZE + 1)` units of 512 KiB.
pub const fn csd_sectors(csd: u128) -> Option<u64> {
    match field(csd, 127, 126) {
        0 => {
            let read_bl_len = field(csd, 83, 80);
            let c_size = field(csd, 73, 62);
            let c_size_mult = field(csd, 49, 47);
            if read_bl_len < 9 || read_bl_len > 11 {
                return None;
            }
            let bytes = (c_size + 1) << (c_size_mult + 2 + read_bl_len);
            Some(bytes / 512)
        }
        1 => Some((field(csd, 69, 48) + 1) * 1024),
        _ => None,
    }
}

/// An SD clock setting: the Clock Control register's divisor bits (15:6) and the clock
/// they give.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClockDivider {
    pub bits: u32,
    pub hz: u32,
}

/// The divisor that brings `base_hz` down to at most `target_hz` (as close as the
/// controller allows). SDHCI 3.0 (`v3`) divides by `2N` for a 10-bit `N`; 1.0 and 2.0 by
/// `2N` for `N` a power of two up to 128. `N = 0` passes the base clock through.
/// If even the largest divisor is too fast, the slowest clock is returned.
pub const fn clock_divider(base_hz: u32, target_hz: u32, v3: bool) -> ClockDivider {
    let target = if target_hz == 0 { 1 } else { target_hz };
    let mut n = if base_hz <= target { 0 } else { base_hz.div_ceil(2 * target) };
    if v3 {
        if n > 0x3ff {
            n = 0x3ff;
        }
    } else if n > 0 {
        n = n.next_power_of_two();
        if n > 0x80 {
            n = 0x80;
        }
    }
    let hz = if n == 0 { base_hz } else { base_hz / (2 * n) };
    ClockDivider { bits: ((n & 0xff) << 8) | ((n >> 8) & 3) << 6, hz }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn card_status_and_ocr_bits() {
        // Exactly the error bits the spec lists: 0xfdf9_8008.
        for bit in 0..32 {
            assert_eq!(r1_failed(1 << bit), 0xfdf9_8008u32 & 1 << bit != 0, "bit {bit}");
        }
        assert_eq!(r1_state(5 << 9 | 1 << 8), Some(State::Data));
        assert_eq!(r1_state(15 << 9), None);
        assert_eq!(OCR::VOLTAGE_WINDOW::V2_7To3_6.value, 0x00ff_8000);
        assert_eq!((OCR::HIGH_CAPACITY::SET + OCR::POWERED_UP::SET).value, 0xc000_0000);
    }

    #[test]
    fn command_words() {
        // CMD0: index 0, no response, nothing else.
        assert_eq!(command_word(GO_IDLE_STATE).value, 0);
        // CMD8 (R7): 48-bit response with CRC and index checks.
        assert_eq!(command_word(SEND_IF_COND).value, 0x081a_0000);
        // ACMD41 (R3): 48-bit response, no CRC or index check.
        assert_eq!(command_word(SD_SEND_OP_COND).value, 0x2902_0000);
        // CMD2 (R2): 136-bit response, CRC check only.
        assert_eq!(command_word(ALL_SEND_CID).value, 0x0209_0000);
        // CMD7 (R1b): 48-bit with busy.
        assert_eq!(command_word(SELECT_CARD).value, 0x071b_0000);
        // CMD12 by hand: R1b and the abort command type.
        assert_eq!(command_word(STOP_TRANSMISSION).value, 0x0cdb_0000);
        // CMD17: data present, read, no block count or auto CMD12.
        assert_eq!(command_word(READ_SINGLE_BLOCK).value, 0x113a_0010);
        // CMD18: read, multi, block count enable, auto CMD12.
        assert_eq!(command_word(READ_MULTIPLE_BLOCK).value, 0x123a_0036);
        // CMD24: write (no read bit).
        assert_eq!(command_word(WRITE_BLOCK).value, 0x183a_0000);
        // CMD25: write, multi, block count, auto CMD12.
        assert_eq!(command_word(WRITE_MULTIPLE_BLOCK).value, 0x193a_0026);
    }

    /// Builds a CSD from hex as printed by Linux (`/sys/block/mmcblk0/device/csd`), CRC byte
    /// included, and passes it through the controller's view (CRC dropped, shifted by 8).
    fn csd_from_hex(hex: &str) -> u128 {
        let full = u128::from_str_radix(hex, 16).unwrap();
        let seen = full >> 8;
        let regs = [seen as u32, (seen >> 32) as u32, (seen >> 64) as u32, (seen >> 96) as u32];
        r2_to_u128(regs)
    }

    #[test]
    fn r2_keeps_every_bit_but_the_crc() {
        let csd = 0x400e_0032_5b59_0000_3b37_7f80_0a40_40afu128;
        assert_eq!(csd_from_hex("400e00325b5900003b377f800a4040af"), csd & !0xff);
    }

    #[test]
    fn sdsc_capacity() {
        // CSD 1.0, READ_BL_LEN = 10 (1 KiB), C_SIZE = 4095, C_SIZE_MULT = 7: 2 GiB.
        // Bytes: 00 26 00 32 | 5f 5a 83 ff | ff ff ff 80 | 16 80 00 01 (hand-assembled:
        // byte 5 low nibble = READ_BL_LEN, C_SIZE spans bytes 6–8, C_SIZE_MULT bytes 9–10).
        let csd = csd_from_hex("002600325f5a83ffffffff8016800001");
        assert_eq!(csd_sectors(csd), Some(2 << 30 >> 9));
        // READ_BL_LEN = 9, C_SIZE = 1023, C_SIZE_MULT = 7: 1024 * 512 * 512 = 256 MiB.
        let csd = csd_from_hex("00260032575900ffc003800016800001");
        assert_eq!(csd_sectors(csd), Some(256 << 20 >> 9));
        // READ_BL_LEN = 9, C_SIZE = 0, C_SIZE_MULT = 0: 4 blocks.
        let csd = csd_from_hex("00260032575900000000000016800001");
        assert_eq!(csd_sectors(csd), Some(4));
    }

    #[test]
    fn sdsc_nonsense_block_length_refused() {
        // READ_BL_LEN = 15 is reserved.
        let csd = csd_from_hex("002600325f5f83ffffffff8016800001");
        assert_eq!(csd_sectors(csd), None);
    }

    #[test]
    fn sdhc_and_sdxc_capacity() {
        // CSD 2.0: C_SIZE = 0x003b37 (bytes 7–9): 15160 * 512 KiB, an "8 GB" SDHC card.
        let csd = csd_from_hex("400e00325b5900003b377f800a4040af");
        assert_eq!(csd_sectors(csd), Some(15160 * 1024));
        // C_SIZE = 0x00ee5f: 61024 * 512 KiB, a "32 GB" SDHC card.
        let csd = csd_from_hex("400e00325b590000ee5f7f800a404001");
        assert_eq!(csd_sectors(csd), Some(61024 * 1024));
        // SDXC: C_SIZE = 0x01dc1f (22-bit field, upper bits used): a "64 GB" card.
        let csd = csd_from_hex("400e00325b590001dc1f7f800a404001");
        assert_eq!(csd_sectors(csd), Some(0x01dc20 * 1024));
        // The top of the 22-bit field: 2 TiB.
        let csd = csd_from_hex("400e00325b59003fffff7f800a404001");
        assert_eq!(csd_sectors(csd), Some(1 << 32));
    }

    #[test]
    fn sduc_refused() {
        let csd = csd_from_hex("800e00325b590000ee5f7f800a404001");
        assert_eq!(csd_sectors(csd), None);
    }

    #[test]
    fn divider_examples() {
        // EMMC2 on a Pi 4: 100 MHz base; identification at 400 kHz, transfer at 25 MHz.
        assert_eq!(clock_divider(100_000_000, 400_000, true), ClockDivider { bits: 125 << 8, hz: 400_000 });
        assert_eq!(
            clock_divider(100_000_000, 25_000_000, true),
            ClockDivider { bits: 2 << 8, hz: 25_000_000 }
        );
        // A 10-bit divisor puts its top bits at 7:6.
        let d = clock_divider(700_000_000, 400_000, true);
        assert_eq!(d.bits, (875 & 0xff) << 8 | (875 >> 8) << 6);
        assert_eq!(d.hz, 400_000);
        // Base at or below the target: divisor 0, the base clock itself.
        assert_eq!(clock_divider(25_000_000, 25_000_000, true), ClockDivider { bits: 0, hz: 25_000_000 });
        // SDHCI 2.0: powers of two only. 50 MHz / 400 kHz needs 62.5, so 64 → 390 625 Hz.
        assert_eq!(clock_divider(50_000_000, 400_000, false), ClockDivider { bits: 64 << 8, hz: 390_625 });
        // 2.0 cannot divide by more than 256: the slowest clock it has.
        assert_eq!(clock_divider(250_000_000, 400_000, false).bits, 0x80 << 8);
    }

    #[test]
    fn divider_never_exceeds_target_when_it_can_reach_it() {
        for base in (1_000_000..=300_000_000).step_by(997_001) {
            for target in [400_000u32, 25_000_000, 50_000_000] {
                for v3 in [false, true] {
                    let d = clock_divider(base, target, v3);
                    let n = (d.bits >> 8 & 0xff) | (d.bits >> 6 & 3) << 8;
                    let max_n = if v3 { 0x3ff } else { 0x80 };
                    assert!(d.hz <= target || n == max_n, "{base} -> {target}: {d:?}");
                    // Not needlessly slow: the next faster setting would exceed the target.
                    if n > 1 {
                        let faster = if v3 { n - 1 } else { n / 2 };
                        assert!(base / (2 * faster) > target, "{base} -> {target}: {d:?}");
                    }
                    if v3 || n == 0 {
                        assert_eq!(d.hz, if n == 0 { base } else { base / (2 * n) });
                    }
                }
            }
        }
    }
}
