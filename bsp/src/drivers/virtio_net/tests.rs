//! Host tests of the frame logic ([`VirtioNet`] over [`Transport`]) against a simulated
//! network device that walks the real queue structures.

use std::boxed::Box;
use std::cell::{Cell, RefCell};
use std::vec::Vec;

use tock_registers::interfaces::{Readable, Writeable};

use super::{NetError, NetMem, Transport, VirtioNet, BUF, FRAME_MAX, HDR, QSIZE};

const MAC: [u8; 6] = [0x52, 0x54, 0, 0x12, 0x34, 0x56];

struct Fake {
    mem: &'static NetMem,
    /// Frames the device took from the transmit queue.
    sent: RefCell<Vec<Vec<u8>>>,
    /// Whether it gives transmit buffers back.
    answers: Cell<bool>,
    tx_seen: Cell<u16>,
    rx_taken: Cell<u16>,
    resets: Cell<u32>,
    now: Cell<u64>,
}

impl Fake {
    /// The device receives `frame`: into the next buffer the driver offered. False if none.
    fn receive(&self, frame: &[u8]) -> bool {
        let q = &self.mem.rx;
        if self.rx_taken.get() == q.avail_idx.get() {
            return false;
        }
        let id = q.avail_ring[self.rx_taken.get() as usize % QSIZE].get() as usize;
        self.rx_taken.set(self.rx_taken.get().wrapping_add(1));
        let d = &q.desc[id];
        let base = self.mem as *const NetMem as u64;
        let at = (d.addr.get() - base - NetMem::RX_BUF) as usize;
        assert_eq!((at % BUF, d.len.get(), d.flags.get()), (0, BUF as u32, 2));
        let buf = &self.mem.rx_buf[at / BUF];
        buf[..HDR].iter().for_each(|c| c.set(0));
        buf[HDR..HDR + frame.len()].iter().zip(frame).for_each(|(c, b)| c.set(*b));
        let used = q.used_idx.get();
        q.used_ring[used as usize % QSIZE].id.set(id as u32);
        q.used_ring[used as usize % QSIZE].len.set((HDR + frame.len()) as u32);
        q.used_idx.set(used.wrapping_add(1));
        true
    }
}

impl Transport for &Fake {
    fn reset(&mut self) -> bool {
        self.resets.set(self.resets.get() + 1);
        self.tx_seen.set(0);
        self.rx_taken.set(0);
        true
    }
    fn setup(&mut self, mem_pa: u64) -> Option<[u8; 6]> {
        assert_eq!(mem_pa, self.mem as *const NetMem as u64);
        Some(MAC)
    }
    fn notify(&self, q: u32) {
        if q != 1 || !self.answers.get() {
            return;
        }
        let t = &self.mem.tx;
        while self.tx_seen.get() != t.avail_idx.get() {
            let id = t.avail_ring[self.tx_seen.get() as usize % QSIZE].get() as usize;
            let d = &t.desc[id];
            let base = self.mem as *const NetMem as u64;
            assert_eq!(d.addr.get(), base + NetMem::TX_BUF);
            let bytes: Vec<u8> = self.mem.tx_buf[..d.len.get() as usize].iter().map(|c| c.get()).collect();
            assert!(bytes[..HDR].iter().all(|b| *b == 0), "a zero virtio-net header");
            self.sent.borrow_mut().push(bytes[HDR..].to_vec());
            let used = t.used_idx.get();
            t.used_ring[used as usize % QSIZE].id.set(id as u32);
            t.used_idx.set(used.wrapping_add(1));
            self.tx_seen.set(self.tx_seen.get().wrapping_add(1));
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

fn fake() -> &'static Fake {
    Box::leak(Box::new(Fake {
        mem: Box::leak(NetMem::zeroed()),
        sent: RefCell::new(Vec::new()),
        answers: Cell::new(true),
        tx_seen: Cell::new(0),
        rx_taken: Cell::new(0),
        resets: Cell::new(0),
        now: Cell::new(0),
    }))
}

fn net(f: &'static Fake) -> VirtioNet<&'static Fake> {
    VirtioNet::new(f, f.mem, f.mem as *const NetMem as u64).expect("setup")
}

#[test]
fn setup_offers_every_receive_buffer_and_reads_the_mac() {
    let f = fake();
    let n = net(f);
    assert_eq!(n.mac(), MAC);
    assert_eq!(f.mem.rx.avail_idx.get(), QSIZE as u16);
}

#[test]
fn received_frames_come_out_in_order_and_buffers_go_back() {
    let f = fake();
    let mut n = net(f);
    for round in 0..3u8 {
        for i in 0..QSIZE as u8 {
            assert!(f.receive(&[round, i, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]));
        }
        assert!(!f.receive(&[0; 14]), "every buffer is in use until the driver reads");
        let mut got = Vec::new();
        assert_eq!(n.recv(|fr| got.push((fr[0], fr[1], fr.len()))), QSIZE);
        assert_eq!(got, (0..QSIZE as u8).map(|i| (round, i, 14)).collect::<Vec<_>>());
    }
    assert_eq!(n.recv(|_| panic!("nothing more")), 0);
}

#[test]
fn a_sent_frame_reaches_the_device_behind_a_zero_header() {
    let f = fake();
    let mut n = net(f);
    let frame: Vec<u8> = (0..60).collect();
    for _ in 0..40 {
        n.send(&frame).unwrap();
    }
    assert_eq!(f.sent.borrow().len(), 40);
    assert_eq!(f.sent.borrow()[39], frame);
    assert_eq!(n.send(&[0; 13]), Err(NetError::BadLength));
    assert_eq!(n.send(&[0; 1515]), Err(NetError::BadLength));
}

#[test]
fn a_send_the_device_sits_on_is_taken_back_by_a_reset() {
    let f = fake();
    let mut n = net(f);
    f.answers.set(false);
    assert_eq!(n.send(&[1; 60]), Err(NetError::Timeout));
    assert_eq!(f.resets.get(), 2, "one at setup, one to take the buffer back");
    f.answers.set(true);
    n.send(&[2; 60]).unwrap();
    assert_eq!(f.sent.borrow().last().unwrap(), &[2u8; 60].to_vec());
    assert!(f.receive(&[3; 20]), "receive buffers are offered again after the reset");
    assert_eq!(n.recv(|fr| assert_eq!(fr, &[3; 20])), 1);
}

#[test]
fn garbage_from_the_device_is_bounded_or_dropped_never_a_panic() {
    let f = fake();
    let mut n = net(f);
    // A device that reports nonsense in the used ring: a buffer id past the queue, a length
    // of zero, a header alone, a length far past the buffer.
    let q = &f.mem.rx;
    (0..4).for_each(|_| assert!(f.receive(&[1; 60])));
    for (i, (id, len)) in [(9999u32, 0u32), (3, HDR as u32), (5, u32::MAX), (0, 77)].iter().enumerate() {
        q.used_ring[i].id.set(*id);
        q.used_ring[i].len.set(*len);
    }
    let mut lens = Vec::new();
    assert_eq!(n.recv(|fr| lens.push(fr.len())), 4, "every used entry is consumed");
    assert_eq!(lens, [FRAME_MAX, 77 - HDR], "empty ones are dropped, long ones cut to the buffer");
    // The driver still works: every buffer was offered again.
    assert!(f.receive(&[7; 60]));
    assert_eq!(n.recv(|fr| assert_eq!(fr, &[7; 60])), 1);
}
