//! Host tests of the GENET driver against a register-level model of the controller: its
//! registers, the descriptors in them, DMA into and out of the driver's memory, the MDIO
//! bus with a PHY behind it, and the indices that cannot be reset to zero.

use std::boxed::Box;
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::vec::Vec;

use super::reg::*;
use super::{Genet, Regs, BUF, DMA_BYTES, RING};
use crate::{NetError, Nic};

const MAC: [u8; 6] = [0xdc, 0xa6, 0x32, 1, 2, 3];
const RX_PROD: usize = RX_RING + RING_PROD_CONS;
const RX_CONS: usize = RX_RING + RING_CONS_PROD;
const TX_CONS: usize = TX_RING + RING_PROD_CONS;
const TX_PROD: usize = TX_RING + RING_CONS_PROD;

struct Model {
    regs: RefCell<HashMap<usize, u32>>,
    phy: RefCell<[u16; 32]>,
    /// Whether a cable is in: autonegotiation then completes at once.
    cable: Cell<bool>,
    /// Whether the controller sends what it is given.
    answers: Cell<bool>,
    sent: RefCell<Vec<Vec<u8>>>,
    now: Cell<u64>,
}

impl Model {
    fn get(&self, off: usize) -> u32 {
        *self.regs.borrow().get(&off).unwrap_or(&0)
    }
    fn set(&self, off: usize, v: u32) {
        self.regs.borrow_mut().insert(off, v);
    }
    fn dma_on(&self, dma: usize) -> bool {
        self.get(dma + DMA_CTRL) & (DMA_EN | DMA_RING16_EN) == DMA_EN | DMA_RING16_EN
    }

    /// A frame arrives from the wire: DMA into the next buffer, behind 2 bytes of padding,
    /// then the producer index moves. False if receiving is off or no buffer is free.
    fn receive(&self, frame: &[u8], status: u32) -> bool {
        if !self.dma_on(RDMA) || self.get(UMAC_CMD) & CMD_RX_EN == 0 {
            return false;
        }
        let size = self.get(RX_RING + RING_BUF_SIZE) >> 16;
        let (prod, cons) = (self.get(RX_PROD) as u16, self.get(RX_CONS) as u16);
        if prod.wrapping_sub(cons) as u32 >= size {
            return false;
        }
        let d = RX_DESC + (prod as usize % size as usize) * DESC_SIZE;
        let addr = self.get(d + 4) as u64 | (self.get(d + 8) as u64) << 32;
        assert_eq!(self.get(RX_RING + RING_BUF_SIZE) & 0xffff, BUF as u32);
        // SAFETY: `addr` is a buffer of the test's DMA memory (the driver put it in the
        // descriptor), BUF bytes long; the driver does not touch it until the index moves.
        let buf = unsafe { core::slice::from_raw_parts_mut(addr as *mut u8, BUF) };
        buf[2..2 + frame.len()].copy_from_slice(frame);
        self.set(d, ((frame.len() as u32 + 2) << DESC_LEN_SHIFT) | status);
        self.set(RX_PROD, prod.wrapping_add(1) as u32);
        true
    }

    fn mdio(&self, v: u32) -> u32 {
        let (op, pmd, reg) =
            (v & (3 << 26), (v >> MDIO_PMD_SHIFT) & 0x1f, (v >> MDIO_REG_SHIFT) as usize & 0x1f);
        if pmd != 1 {
            return MDIO_READ_FAIL;
        }
        let mut phy = self.phy.borrow_mut();
        if op == MDIO_WR {
            phy[reg] = v as u16;
            if reg == 0 && v & 0x0200 != 0 && self.cable.get() {
                phy[1] |= 0x0024; // link up, autonegotiation complete
            }
            return v & 0xffff;
        }
        phy[reg] as u32
    }

    /// The transmit producer moved: send every descriptor up to it.
    fn transmit(&self) {
        if !self.answers.get() || !self.dma_on(TDMA) || self.get(UMAC_CMD) & CMD_TX_EN == 0 {
            return;
        }
        let size = self.get(TX_RING + RING_BUF_SIZE) >> 16;
        while self.get(TX_CONS) as u16 != self.get(TX_PROD) as u16 {
            let cons = self.get(TX_CONS) as u16;
            let d = TX_DESC + (cons as usize % size as usize) * DESC_SIZE;
            let status = self.get(d);
            assert_eq!(
                status & (DESC_SOP | DESC_EOP | DESC_TX_APPEND_CRC),
                DESC_SOP | DESC_EOP | DESC_TX_APPEND_CRC
            );
            let len = ((status >> DESC_LEN_SHIFT) & DESC_LEN_MASK) as usize;
            let addr = self.get(d + 4) as u64 | (self.get(d + 8) as u64) << 32;
            // SAFETY: `addr` is the test's DMA memory (the driver's transmit buffer).
            let bytes = unsafe { core::slice::from_raw_parts(addr as *const u8, len) };
            self.sent.borrow_mut().push(bytes.to_vec());
            self.set(TX_CONS, cons.wrapping_add(1) as u32);
        }
    }
}

impl Regs for &Model {
    fn read(&self, off: usize) -> u32 {
        self.get(off)
    }
    fn write(&self, off: usize, v: u32) {
        match off {
            MDIO_CMD if v & MDIO_START_BUSY != 0 => {
                let r = self.mdio(self.get(MDIO_CMD));
                self.set(MDIO_CMD, r);
            }
            // The indices the controller owns cannot be written.
            RX_PROD | TX_CONS => {}
            TX_PROD => {
                self.set(off, v);
                self.transmit();
            }
            _ => self.set(off, v),
        }
    }
    fn now(&self) -> u64 {
        self.now.set(self.now.get() + 1);
        self.now.get()
    }
    fn ticks_ms(&self, ms: u64) -> u64 {
        ms
    }
}

/// A model of a GENET v5 whose indices start at awkward values (the receive producer
/// just short of wrapping), with a cable in; and the driver's DMA memory.
fn model() -> (&'static Model, &'static mut [u8], u64) {
    let m = Box::leak(Box::new(Model {
        regs: RefCell::new(HashMap::new()),
        phy: RefCell::new([0; 32]),
        cable: Cell::new(true),
        answers: Cell::new(true),
        sent: RefCell::new(Vec::new()),
        now: Cell::new(0),
    }));
    m.set(SYS_REV_CTRL, 0x0600_0000);
    m.set(RX_PROD, 0xfff0);
    m.set(TX_CONS, 0x0ff3);
    m.phy.borrow_mut()[10] = 0x0800; // the partner does 1000BASE-T full duplex
    let mem = Box::leak(std::vec![0u8; DMA_BYTES].into_boxed_slice());
    let pa = mem.as_ptr() as u64;
    (m, mem, pa)
}

fn genet() -> (&'static Model, Genet<&'static Model>) {
    let (m, mem, pa) = model();
    (m, Genet::new(m, mem, pa, MAC).expect("a GENET v5"))
}

#[test]
fn setup_programs_the_mac_and_rings_and_asks_the_phy_to_autonegotiate() {
    let (m, mem, pa) = model();
    let g = Genet::new(m, mem, pa, MAC).unwrap();
    assert_eq!(g.mac(), MAC);
    assert_eq!((m.get(UMAC_MAC0), m.get(UMAC_MAC1)), (0xdca6_3201, 0x0203));
    assert_ne!(m.get(RBUF_CTRL) & RBUF_ALIGN_2B, 0, "frames come 2 bytes in");
    assert_eq!(m.get(RX_CONS), 0xfff0, "the consumer follows the producer it cannot reset");
    assert_eq!(m.get(TX_PROD), 0x0ff3, "the producer follows the consumer");
    for i in 0..RING {
        let d = RX_DESC + i * DESC_SIZE;
        assert_eq!(m.get(d + 4) as u64 | (m.get(d + 8) as u64) << 32, pa + (i * BUF) as u64);
    }
    assert_eq!(m.get(RX_RING + RING_END_ADDR), (RING * 3 - 1) as u32);
    assert!(m.dma_on(RDMA) && m.dma_on(TDMA));
    assert_eq!(m.phy.borrow()[0], 0x1200, "autonegotiation enabled and restarted");
    assert_eq!(m.get(UMAC_CMD) & (CMD_RX_EN | CMD_TX_EN), 0, "nothing flows before a link");
}

#[test]
fn anything_but_a_genet_v5_is_refused() {
    let (m, mem, pa) = model();
    m.set(SYS_REV_CTRL, 0x0500_0000); // GENET v4
    assert!(Genet::new(m, mem, pa, MAC).is_none());
    let (m, mem, pa) = model();
    assert!(Genet::new(m, &mut mem[..DMA_BYTES - 1], pa, MAC).is_none(), "too little DMA memory");
    let (m, mem, pa) = model();
    m.set(SYS_REV_CTRL, 0); // nothing there (QEMU raspi4b reads zero)
    assert!(Genet::new(m, mem, pa, MAC).is_none());
}

#[test]
fn frames_flow_only_once_the_phy_has_a_link_and_the_speed_follows_it() {
    let (m, mem, pa) = model();
    m.cable.set(false);
    let mut g = Genet::new(m, mem, pa, MAC).unwrap();
    assert_eq!(g.send(&[0; 60]), Err(NetError::Io));
    assert_eq!(g.recv(&mut |_| panic!("no link, no frames")), 0);
    m.phy.borrow_mut()[1] |= 0x0024; // the cable goes in
    assert_eq!(g.recv(&mut |_| ()), 0);
    let cmd = m.get(UMAC_CMD);
    assert_eq!(cmd & (CMD_RX_EN | CMD_TX_EN), CMD_RX_EN | CMD_TX_EN);
    assert_eq!((cmd >> CMD_SPEED_SHIFT) & 3, 2, "1000 Mb/s, as negotiated");
    assert_ne!(m.get(EXT_RGMII_OOB_CTRL) & RGMII_LINK, 0);
    assert_eq!(m.get(SYS_PORT_CTRL), PORT_MODE_EXT_GPHY);
}

#[test]
fn received_frames_come_out_in_order_past_the_padding_as_the_index_wraps() {
    let (m, mut g) = genet();
    g.link_up();
    for round in 0..3u8 {
        for i in 0..RING as u8 {
            let frame: Vec<u8> = [round, i].iter().copied().chain(2..60).collect();
            assert!(m.receive(&frame, DESC_SOP | DESC_EOP));
        }
        assert!(!m.receive(&[0; 60], DESC_SOP | DESC_EOP), "every buffer is full until the driver reads");
        let mut got = Vec::new();
        assert_eq!(g.recv(&mut |f| got.push((f[0], f[1], f.len()))), RING);
        assert_eq!(got, (0..RING as u8).map(|i| (round, i, 60)).collect::<Vec<_>>());
    }
    assert!(m.get(RX_CONS) < 0xfff0, "the 16-bit indices wrapped");
    assert_eq!(g.recv(&mut |_| panic!("nothing more")), 0);
}

#[test]
fn damaged_or_impossible_frames_are_dropped_and_their_buffers_reused() {
    let (m, mut g) = genet();
    g.link_up();
    assert!(m.receive(&[1; 60], DESC_SOP | DESC_EOP | 0x2)); // CRC error
    assert!(m.receive(&[2; 60], DESC_SOP)); // no end of packet
    assert!(m.receive(&[3; 10], DESC_SOP | DESC_EOP)); // a runt
    m.set(RX_RING + RING_BUF_SIZE, (RING as u32) << 16 | BUF as u32);
    assert!(m.receive(&[4; 60], DESC_SOP | DESC_EOP));
    // A length past any frame, as a confused controller might report.
    let d = RX_DESC + ((m.get(RX_PROD) as u16).wrapping_sub(1) as usize % RING) * DESC_SIZE;
    m.set(d, 0xfff << DESC_LEN_SHIFT | DESC_SOP | DESC_EOP);
    assert!(m.receive(&[5; 60], DESC_SOP | DESC_EOP));
    let mut got = Vec::new();
    assert_eq!(g.recv(&mut |f| got.push(f[0])), 5, "every descriptor is consumed");
    assert_eq!(got, [5], "only the whole, error-free frame comes out");
}

#[test]
fn a_sent_frame_is_handed_over_with_the_crc_left_to_the_controller() {
    let (m, mut g) = genet();
    let frame: Vec<u8> = (0..60).collect();
    for _ in 0..(RING + 5) {
        g.send(&frame).unwrap();
    }
    assert_eq!(m.sent.borrow().len(), RING + 5);
    assert_eq!(m.sent.borrow()[RING + 4], frame);
    assert_eq!(g.send(&[0; 13]), Err(NetError::BadLength));
    assert_eq!(g.send(&[0; 1515]), Err(NetError::BadLength));
}

#[test]
fn a_send_the_controller_sits_on_times_out_and_the_buffer_is_taken_back() {
    let (m, mut g) = genet();
    m.answers.set(false);
    assert_eq!(g.send(&[1; 60]), Err(NetError::Timeout));
    assert!(m.dma_on(TDMA), "transmit DMA is on again after the flush");
    assert_eq!(m.get(TX_PROD), m.get(TX_CONS), "the ring starts over at the controller's index");
    m.answers.set(true);
    g.send(&[2; 60]).unwrap();
    assert_eq!(m.sent.borrow().as_slice(), &[std::vec![2u8; 60]]);
}
