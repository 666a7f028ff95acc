//! Broadcom GENET v5, the Raspberry Pi 4's Ethernet controller, behind the same [`Nic`]
//! interface as virtio-net.
//!
//! **Not yet run on hardware.** It is written from the register facts of the public GENET
//! drivers (Linux `bcmgenet`, U-Boot/barebox) and tested only against the register-level
//! model in `genet/tests.rs`; QEMU's `raspi4b` does not emulate the controller, so there
//! the kernel finds no NIC (`docs/network.md`).
//!
//! The controller keeps its DMA descriptors in its own registers (three words each: length
//! and status, address low, address high). This driver uses only the default queue (16),
//! with the first [`RING`] receive descriptors and the first [`RING`] transmit descriptors.
//! Each receive descriptor points at a [`BUF`]-byte buffer of the DMA memory the kernel
//! hands over ([`DMA_BYTES`]); the controller writes a frame there behind 2 bytes of
//! padding (`RBUF_ALIGN_2B`) and advances its producer index; the driver copies the frame
//! out and advances the consumer index, which gives the buffer back. A send copies the
//! frame into the transmit buffer, has the controller append the CRC, and waits, within
//! [`SEND_MS`], for the transmit consumer index to pass it. The PHY (a BCM54213PE at MDIO
//! address 1) is asked to autonegotiate at start; frames flow once it reports a link, and
//! the MAC's speed is set from what it negotiated.

#[cfg(test)]
mod tests;

use crate::{NetError, Nic};

/// Descriptors used in each direction (of the controller's 256).
pub const RING: usize = 32;
/// Bytes of one buffer.
pub const BUF: usize = 2048;
/// Bytes of DMA memory the driver needs: the receive buffers, then one transmit buffer.
pub const DMA_BYTES: usize = (RING + 1) * BUF;
/// The largest frame sent or accepted (no CRC: the controller adds and strips it).
pub const FRAME_MAX: usize = 1514;
/// How long the controller may take to send a frame.
pub const SEND_MS: u64 = 100;
/// How long an MDIO transaction may take.
const MDIO_MS: u64 = 10;

/// Register offsets and bits (GENET v5).
pub mod reg {
    pub const SYS_REV_CTRL: usize = 0x0000;
    pub const SYS_PORT_CTRL: usize = 0x0004;
    pub const PORT_MODE_EXT_GPHY: u32 = 3;
    pub const SYS_RBUF_FLUSH_CTRL: usize = 0x0008;
    pub const EXT_RGMII_OOB_CTRL: usize = 0x008c;
    pub const RGMII_LINK: u32 = 1 << 4;
    pub const OOB_DISABLE: u32 = 1 << 5;
    pub const RGMII_MODE_EN: u32 = 1 << 6;
    pub const ID_MODE_DIS: u32 = 1 << 16;
    pub const RBUF_CTRL: usize = 0x0300;
    pub const RBUF_ALIGN_2B: u32 = 1 << 1;
    pub const RBUF_TBUF_SIZE_CTRL: usize = 0x03b4;
    pub const UMAC_CMD: usize = 0x0808;
    pub const CMD_TX_EN: u32 = 1 << 0;
    pub const CMD_RX_EN: u32 = 1 << 1;
    pub const CMD_SPEED_SHIFT: u32 = 2;
    pub const CMD_SW_RESET: u32 = 1 << 13;
    pub const CMD_LCL_LOOP_EN: u32 = 1 << 15;
    pub const UMAC_MAC0: usize = 0x080c;
    pub const UMAC_MAC1: usize = 0x0810;
    pub const UMAC_MAX_FRAME_LEN: usize = 0x0814;
    pub const UMAC_TX_FLUSH: usize = 0x0b34;
    pub const UMAC_MIB_CTRL: usize = 0x0d80;
    pub const MDIO_CMD: usize = 0x0e14;
    pub const MDIO_START_BUSY: u32 = 1 << 29;
    pub const MDIO_READ_FAIL: u32 = 1 << 28;
    pub const MDIO_RD: u32 = 2 << 26;
    pub const MDIO_WR: u32 = 1 << 26;
    pub const MDIO_PMD_SHIFT: u32 = 21;
    pub const MDIO_REG_SHIFT: u32 = 16;
    /// Descriptors: receive at 0x2000, transmit at 0x4000, 12 bytes each.
    pub const RX_DESC: usize = 0x2000;
    pub const TX_DESC: usize = 0x4000;
    pub const DESC_SIZE: usize = 12;
    /// The default queue's ring registers, after 256 descriptors and 16 rings of 0x40.
    pub const RX_RING: usize = 0x2c00 + 16 * 0x40;
    pub const TX_RING: usize = 0x4c00 + 16 * 0x40;
    /// The DMA engine's own registers, after all 17 rings.
    pub const RDMA: usize = 0x2c00 + 17 * 0x40;
    pub const TDMA: usize = 0x4c00 + 17 * 0x40;
    /// Within a ring: (receive name / transmit name).
    pub const RING_WRITE_READ_PTR: usize = 0x00;
    pub const RING_PROD_CONS: usize = 0x08; // receive: producer; transmit: consumer
    pub const RING_CONS_PROD: usize = 0x0c; // receive: consumer; transmit: producer
    pub const RING_BUF_SIZE: usize = 0x10;
    pub const RING_START_ADDR: usize = 0x14;
    pub const RING_END_ADDR: usize = 0x1c;
    pub const RING_MBUF_DONE_THRESH: usize = 0x24;
    pub const RING_XON_XOFF_FLOW: usize = 0x28;
    pub const RING_READ_WRITE_PTR: usize = 0x2c;
    /// Within the DMA engine's registers.
    pub const DMA_RING_CFG: usize = 0x00;
    pub const DMA_CTRL: usize = 0x04;
    pub const DMA_SCB_BURST_SIZE: usize = 0x0c;
    pub const DMA_EN: u32 = 1;
    /// The default queue's enable bit in `DMA_CTRL` (ring 16, shifted by one).
    pub const DMA_RING16_EN: u32 = 1 << 17;
    /// Descriptor status bits.
    pub const DESC_LEN_SHIFT: u32 = 16;
    pub const DESC_LEN_MASK: u32 = 0x0fff;
    pub const DESC_OWN: u32 = 0x8000;
    pub const DESC_EOP: u32 = 0x4000;
    pub const DESC_SOP: u32 = 0x2000;
    pub const DESC_RX_ERRORS: u32 = 0x001f; // overrun, CRC, receive error, no-buffer, too long
    pub const DESC_TX_APPEND_CRC: u32 = 0x0040;
    pub const DESC_TX_QTAG: u32 = 0x3f << 7;
}

/// The PHY's MDIO address on a Pi 4, and the MII registers used.
const PHY: u32 = 1;
const MII_BMCR: u32 = 0;
const MII_BMSR: u32 = 1;
const MII_LPA: u32 = 5;
const MII_STAT1000: u32 = 10;
const BMCR_ANENABLE_RESTART: u16 = 0x1200;
const BMSR_LINK_ANDONE: u16 = 0x0024;

/// What the driver needs from the controller: its registers, and a clock for bounds.
pub trait Regs {
    fn read(&self, off: usize) -> u32;
    fn write(&self, off: usize, v: u32);
    fn now(&self) -> u64;
    fn ticks_ms(&self, ms: u64) -> u64;
}

/// The controller's registers at a virtual address.
pub struct Mmio {
    base: usize,
}

impl Mmio {
    /// # Safety
    /// `base` must be the controller's 64 KiB of registers, mapped as device memory and
    /// used by nothing else.
    pub unsafe fn new(base: usize) -> Mmio {
        Mmio { base }
    }
}

impl Regs for Mmio {
    fn read(&self, off: usize) -> u32 {
        // SAFETY: `off` is one of the register offsets above, inside the 64 KiB the
        // constructor's caller mapped for this driver alone.
        unsafe { ((self.base + off) as *const u32).read_volatile() }
    }
    fn write(&self, off: usize, v: u32) {
        // SAFETY: as in `read`.
        unsafe { ((self.base + off) as *mut u32).write_volatile(v) }
    }
    fn now(&self) -> u64 {
        super::generic_timer::now()
    }
    fn ticks_ms(&self, ms: u64) -> u64 {
        super::generic_timer::frequency() * ms / 1000
    }
}

pub struct Genet<R: Regs = Mmio> {
    regs: R,
    /// The DMA memory: [`RING`] receive buffers, then the transmit buffer.
    mem: &'static mut [u8],
    mem_pa: u64,
    mac: [u8; 6],
    rx_cons: u16,
    tx_prod: u16,
    link: bool,
}

impl<R: Regs> Genet<R> {
    /// Resets the controller, programs `mac`, sets both rings up over `mem` (physical
    /// `mem_pa`, at least [`DMA_BYTES`]), starts DMA and asks the PHY to autonegotiate.
    /// `None` if the controller is not a GENET v5 (or `mem` is too small).
    pub fn new(regs: R, mem: &'static mut [u8], mem_pa: u64, mac: [u8; 6]) -> Option<Self> {
        use reg::*;
        // The major revision reads 6 on GENET v5 (BCM2711).
        if (regs.read(SYS_REV_CTRL) >> 24) & 0xf != 6 || mem.len() < DMA_BYTES {
            return None;
        }
        // The MAC: reset (with local loopback, for a stable receive clock), counters cleared.
        regs.write(SYS_RBUF_FLUSH_CTRL, 1 << 1);
        regs.write(SYS_RBUF_FLUSH_CTRL, 0);
        regs.write(UMAC_CMD, 0);
        regs.write(UMAC_CMD, CMD_SW_RESET | CMD_LCL_LOOP_EN);
        regs.write(UMAC_CMD, 0);
        regs.write(UMAC_MIB_CTRL, 0b111);
        regs.write(UMAC_MIB_CTRL, 0);
        regs.write(UMAC_MAX_FRAME_LEN, 1536);
        regs.write(RBUF_CTRL, regs.read(RBUF_CTRL) | RBUF_ALIGN_2B);
        regs.write(RBUF_TBUF_SIZE_CTRL, 1);
        let m = mac.map(u32::from);
        regs.write(UMAC_MAC0, m[0] << 24 | m[1] << 16 | m[2] << 8 | m[3]);
        regs.write(UMAC_MAC1, m[4] << 8 | m[5]);
        // DMA off, transmit queue flushed, both rings set up, DMA on.
        regs.write(RDMA + DMA_CTRL, 0);
        regs.write(TDMA + DMA_CTRL, 0);
        regs.write(UMAC_TX_FLUSH, 1);
        regs.write(UMAC_TX_FLUSH, 0);
        let mut g = Genet { regs, mem, mem_pa, mac, rx_cons: 0, tx_prod: 0, link: false };
        g.rings();
        g.regs.write(RDMA + DMA_CTRL, DMA_EN | DMA_RING16_EN);
        g.regs.write(TDMA + DMA_CTRL, DMA_EN | DMA_RING16_EN);
        g.mdio(MDIO_WR, MII_BMCR, BMCR_ANENABLE_RESTART);
        Some(g)
    }

    fn rings(&mut self) {
        use reg::*;
        let r = &self.regs;
        for (ring, dma) in [(RX_RING, RDMA), (TX_RING, TDMA)] {
            r.write(dma + DMA_SCB_BURST_SIZE, 8);
            r.write(ring + RING_START_ADDR, 0);
            r.write(ring + RING_WRITE_READ_PTR, 0);
            r.write(ring + RING_READ_WRITE_PTR, 0);
            r.write(ring + RING_END_ADDR, (RING * DESC_SIZE / 4 - 1) as u32);
            r.write(ring + RING_BUF_SIZE, (RING as u32) << 16 | BUF as u32);
            r.write(dma + DMA_RING_CFG, 1 << 16);
        }
        // The indices cannot be written to 0: the driver's side follows the controller's.
        self.rx_cons = r.read(RX_RING + RING_PROD_CONS) as u16;
        r.write(RX_RING + RING_CONS_PROD, self.rx_cons as u32);
        r.write(RX_RING + RING_XON_XOFF_FLOW, 5 << 16 | (RING as u32 >> 4).max(1));
        self.tx_prod = r.read(TX_RING + RING_PROD_CONS) as u16;
        r.write(TX_RING + RING_CONS_PROD, self.tx_prod as u32);
        r.write(TX_RING + RING_MBUF_DONE_THRESH, 1);
        r.write(TX_RING + RING_XON_XOFF_FLOW, 0);
        for i in 0..RING {
            let d = RX_DESC + i * DESC_SIZE;
            let pa = self.mem_pa + (i * BUF) as u64;
            r.write(d + 4, pa as u32);
            r.write(d + 8, (pa >> 32) as u32);
            r.write(d, (BUF as u32) << DESC_LEN_SHIFT | DESC_OWN);
        }
    }

    /// One MDIO transaction with the PHY; the register's value (reads), or None if it
    /// failed or did not finish in time.
    fn mdio(&self, op: u32, mii: u32, value: u16) -> Option<u16> {
        use reg::*;
        let r = &self.regs;
        r.write(MDIO_CMD, op | PHY << MDIO_PMD_SHIFT | mii << MDIO_REG_SHIFT | value as u32);
        r.write(MDIO_CMD, r.read(MDIO_CMD) | MDIO_START_BUSY);
        let deadline = r.now() + r.ticks_ms(MDIO_MS);
        loop {
            let v = r.read(MDIO_CMD);
            if v & MDIO_START_BUSY == 0 {
                return (v & MDIO_READ_FAIL == 0).then_some(v as u16);
            }
            if r.now() > deadline {
                return None;
            }
            core::hint::spin_loop();
        }
    }

    /// Whether the PHY has a link; when it first has one, the MAC's speed is set from what
    /// was negotiated and receiving and sending are switched on.
    pub fn link_up(&mut self) -> bool {
        use reg::*;
        if self.link {
            return true;
        }
        let up = self.mdio(MDIO_RD, MII_BMSR, 0).is_some_and(|s| s & BMSR_LINK_ANDONE == BMSR_LINK_ANDONE);
        if !up {
            return false;
        }
        let gig = self.mdio(MDIO_RD, MII_STAT1000, 0).is_some_and(|s| s & 0x0c00 != 0);
        let fast = self.mdio(MDIO_RD, MII_LPA, 0).is_some_and(|s| s & 0x0180 != 0);
        let speed = if gig { 2 } else { fast as u32 };
        let r = &self.regs;
        let oob = r.read(EXT_RGMII_OOB_CTRL) & !OOB_DISABLE;
        r.write(EXT_RGMII_OOB_CTRL, oob | RGMII_LINK | RGMII_MODE_EN | ID_MODE_DIS);
        r.write(SYS_PORT_CTRL, PORT_MODE_EXT_GPHY);
        r.write(UMAC_CMD, speed << CMD_SPEED_SHIFT | CMD_TX_EN | CMD_RX_EN);
        self.link = true;
        true
    }
}

impl<R: Regs> Nic for Genet<R> {
    fn mac(&self) -> [u8; 6] {
        self.mac
    }

    fn recv(&mut self, f: &mut dyn FnMut(&[u8])) -> usize {
        use reg::*;
        if !self.link_up() {
            return 0;
        }
        let prod = self.regs.read(RX_RING + RING_PROD_CONS) as u16;
        core::sync::atomic::fence(core::sync::atomic::Ordering::SeqCst);
        let mut n = 0;
        // At most one ring's worth, whatever the controller's index says.
        while self.rx_cons != prod && n < RING {
            let i = self.rx_cons as usize % RING;
            let status = self.regs.read(RX_DESC + i * DESC_SIZE);
            let len = ((status >> DESC_LEN_SHIFT) & DESC_LEN_MASK) as usize;
            let whole = status & (DESC_SOP | DESC_EOP) == DESC_SOP | DESC_EOP;
            // Behind the 2 bytes of padding; the length counts them.
            if whole && status & DESC_RX_ERRORS == 0 && (16..=FRAME_MAX + 2).contains(&len) {
                f(&self.mem[i * BUF + 2..i * BUF + len]);
            }
            self.rx_cons = self.rx_cons.wrapping_add(1);
            self.regs.write(RX_RING + RING_CONS_PROD, self.rx_cons as u32);
            n += 1;
        }
        n
    }

    fn send(&mut self, frame: &[u8]) -> Result<(), NetError> {
        use reg::*;
        if !(14..=FRAME_MAX).contains(&frame.len()) {
            return Err(NetError::BadLength);
        }
        if !self.link_up() {
            return Err(NetError::Io);
        }
        let at = RING * BUF;
        self.mem[at..at + frame.len()].copy_from_slice(frame);
        core::sync::atomic::fence(core::sync::atomic::Ordering::SeqCst);
        let d = TX_DESC + (self.tx_prod as usize % RING) * DESC_SIZE;
        let pa = self.mem_pa + at as u64;
        let r = &self.regs;
        r.write(d + 4, pa as u32);
        r.write(d + 8, (pa >> 32) as u32);
        let flags = DESC_SOP | DESC_EOP | DESC_TX_APPEND_CRC | DESC_TX_QTAG;
        r.write(d, (frame.len() as u32) << DESC_LEN_SHIFT | flags);
        self.tx_prod = self.tx_prod.wrapping_add(1);
        r.write(TX_RING + RING_CONS_PROD, self.tx_prod as u32);
        let deadline = r.now() + r.ticks_ms(SEND_MS);
        while r.read(TX_RING + RING_PROD_CONS) as u16 != self.tx_prod {
            if r.now() > deadline {
                self.take_back();
                return Err(NetError::Timeout);
            }
            core::hint::spin_loop();
        }
        Ok(())
    }
}

impl<R: Regs> Genet<R> {
    /// After a send the controller did not finish: transmit DMA stopped and its queue
    /// flushed, so the buffer is the driver's again; the ring starts over where the
    /// controller's consumer index stands.
    fn take_back(&mut self) {
        use reg::*;
        let r = &self.regs;
        r.write(TDMA + DMA_CTRL, 0);
        r.write(UMAC_TX_FLUSH, 1);
        r.write(UMAC_TX_FLUSH, 0);
        self.tx_prod = r.read(TX_RING + RING_PROD_CONS) as u16;
        r.write(TX_RING + RING_CONS_PROD, self.tx_prod as u32);
        r.write(TDMA + DMA_CTRL, DMA_EN | DMA_RING16_EN);
    }
}
