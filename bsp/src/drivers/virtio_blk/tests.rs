//! Host tests of the request logic ([`VirtioBlk`] over [`Transport`]) against a simulated
//! virtio block device that walks the real ring structures: requests, scatter-gather, and
//! above all what a request that times out leaves behind.

use std::boxed::Box;
use std::cell::{Cell, RefCell};
use std::vec::Vec;

use tock_registers::interfaces::{Readable, Writeable};

use super::queue::{QueueMem, DESC_FLAGS, QSIZE, S_OK};
use super::{Config, Transport, VirtioBlk};
use crate::{BlockDevice, BlockError};

/// A request the device has taken from the ring: the chain's buffers as it read them.
struct Taken {
    kind: u32,
    sector: u64,
    /// (address, length, device writes) of each data buffer.
    data: Vec<(u64, u32, bool)>,
    status: u64,
}

struct Fake {
    mem: &'static QueueMem,
    disk: RefCell<Vec<u8>>,
    /// Whether the device finishes requests when notified, or takes them and sits on them.
    answers: Cell<bool>,
    /// A device that does not acknowledge a reset.
    ignores_reset: Cell<bool>,
    flush: bool,
    /// Requests taken and not yet finished.
    held: RefCell<Vec<Taken>>,
    last_avail: Cell<u16>,
    resets: Cell<u32>,
    setups: Cell<u32>,
    notifies: Cell<u32>,
    now: Cell<u64>,
    log: RefCell<Vec<(u32, u64, usize)>>,
}

impl Fake {
    /// The chains the driver made available since the last look, taken off the ring.
    fn take(&self) {
        let m = self.mem;
        while self.last_avail.get() != m.avail.idx.get() {
            let mut i = m.avail.ring[self.last_avail.get() as usize % QSIZE].get() as usize;
            self.last_avail.set(self.last_avail.get().wrapping_add(1));
            let mut chain = Vec::new();
            loop {
                let d = &m.desc[i];
                chain.push((d.addr.get(), d.len.get(), d.flags.is_set(DESC_FLAGS::WRITE)));
                if !d.flags.is_set(DESC_FLAGS::NEXT) {
                    break;
                }
                i = d.next.get() as usize;
            }
            let (header, status) = (chain[0], chain[chain.len() - 1]);
            let base = m as *const QueueMem as u64;
            assert_eq!((header.0, header.1, header.2), (base + QueueMem::HEADER, 16, false));
            assert_eq!((status.0, status.1, status.2), (base + QueueMem::STATUS, 1, true));
            let t = Taken {
                kind: m.header.kind.get(),
                sector: m.header.sector.get(),
                data: chain[1..chain.len() - 1].to_vec(),
                status: status.0,
            };
            self.log.borrow_mut().push((t.kind, t.sector, t.data.len()));
            self.held.borrow_mut().push(t);
        }
    }

    /// Finishes every held request: moves the data, writes the status, returns the chain.
    fn finish(&self) {
        let m = self.mem;
        for t in self.held.borrow_mut().drain(..) {
            let mut at = t.sector as usize * 512;
            let mut disk = self.disk.borrow_mut();
            for &(addr, len, device_writes) in &t.data {
                let len = len as usize;
                assert_eq!(device_writes, t.kind == 0);
                // SAFETY: the address is a buffer the test passed in (identity translation)
                // and still owns; the tests keep every buffer alive to the end.
                let buf = unsafe { core::slice::from_raw_parts_mut(addr as *mut u8, len) };
                match t.kind {
                    0 => buf.copy_from_slice(&disk[at..at + len]),
                    1 => disk[at..at + len].copy_from_slice(buf),
                    k => panic!("request type {k} with data"),
                }
                at += len;
            }
            assert_eq!(t.status, m as *const QueueMem as u64 + QueueMem::STATUS);
            m.status.set(S_OK);
            let u = m.used.idx.get();
            m.used.ring[u as usize % QSIZE].id.set(0);
            m.used.idx.set(u.wrapping_add(1));
        }
    }
}

impl Transport for &Fake {
    fn reset(&mut self) -> bool {
        self.resets.set(self.resets.get() + 1);
        if self.ignores_reset.get() {
            return false;
        }
        // What the spec asks of a device: after the reset, no buffer is touched again.
        self.held.borrow_mut().clear();
        self.last_avail.set(0);
        true
    }

    fn setup(&mut self, queue_pa: u64) -> Option<Config> {
        self.setups.set(self.setups.get() + 1);
        assert_eq!(queue_pa, self.mem as *const QueueMem as u64);
        assert_eq!(self.mem.avail.idx.get(), 0, "a new queue starts empty");
        assert_eq!(self.mem.used.idx.get(), 0, "a new queue starts empty");
        Some(Config { sectors: self.disk.borrow().len() as u64 / 512, can_flush: self.flush })
    }

    fn notify(&self) {
        self.notifies.set(self.notifies.get() + 1);
        self.take();
        if self.answers.get() {
            self.finish();
        }
    }

    fn ack_interrupt(&self) {}

    fn now(&self) -> u64 {
        if self.answers.get() {
            self.finish(); // time passes: a device that answers finishes what it holds
        }
        self.now.set(self.now.get() + 1);
        self.now.get()
    }

    fn ticks_ms(&self, ms: u64) -> u64 {
        ms
    }
}

/// A device with a 256-sector disk whose every byte is known.
fn fake(flush: bool) -> &'static Fake {
    let mem: &'static QueueMem = Box::leak(QueueMem::zeroed());
    let disk = (0..256 * 512).map(|i| (i / 512) as u8 ^ (i as u8)).collect();
    Box::leak(Box::new(Fake {
        mem,
        disk: RefCell::new(disk),
        answers: Cell::new(true),
        ignores_reset: Cell::new(false),
        flush,
        held: RefCell::new(Vec::new()),
        last_avail: Cell::new(0),
        resets: Cell::new(0),
        setups: Cell::new(0),
        notifies: Cell::new(0),
        now: Cell::new(0),
        log: RefCell::new(Vec::new()),
    }))
}

fn identity(va: usize) -> u64 {
    va as u64
}

fn blk(f: &'static Fake) -> VirtioBlk<&'static Fake> {
    VirtioBlk::new(f, f.mem, f.mem as *const QueueMem as u64, identity).expect("device set up")
}

#[test]
fn requests_walk_the_ring_and_move_the_data() {
    let f = fake(true);
    let mut d = blk(f);
    assert_eq!((f.resets.get(), f.setups.get()), (1, 1), "probe resets before setting up");
    assert_eq!(d.sectors(), 256);
    let data: Vec<u8> = (0..3 * 512).map(|i| (i * 13) as u8).collect();
    let (a, b) = data.split_at(512);
    d.write(5, &[a, b]).unwrap();
    assert_eq!(f.disk.borrow()[5 * 512..8 * 512], data[..]);
    let mut back = vec![0u8; 3 * 512];
    let (x, y) = back.split_at_mut(1024);
    d.read(5, &mut [x, y]).unwrap();
    assert_eq!(back, data);
    d.flush().unwrap();
    // Kind, sector and data pieces of each request, as the device saw them in the ring.
    assert_eq!(*f.log.borrow(), [(1, 5, 2), (0, 5, 2), (4, 0, 0)]);
    assert_eq!(f.mem.avail.idx.get(), 3);
    assert_eq!(d.read(255, &mut [&mut [0u8; 1024][..]]), Err(BlockError::OutOfRange));
    assert_eq!(f.notifies.get(), 3, "a refused range never reaches the device");
}

#[test]
fn more_pieces_than_descriptors_are_split_into_requests() {
    let f = fake(false);
    let mut d = blk(f);
    let mut bufs: Vec<Vec<u8>> = (0..QSIZE).map(|_| vec![0u8; 512]).collect();
    let mut refs: Vec<&mut [u8]> = bufs.iter_mut().map(|b| &mut b[..]).collect();
    d.read(0, &mut refs).unwrap();
    assert_eq!(*f.log.borrow(), [(0, 0, QSIZE - 2), (0, QSIZE as u64 - 2, 2)]);
    let disk = f.disk.borrow();
    assert!(bufs.iter().enumerate().all(|(i, b)| b[..] == disk[i * 512..(i + 1) * 512]));
    d.flush().unwrap();
    assert_eq!(f.notifies.get(), 2, "no flush command without the feature");
}

#[test]
fn timed_out_read_is_taken_back_and_never_lands_later() {
    let f = fake(true);
    let mut d = blk(f);
    f.answers.set(false);
    let mut stale = vec![0xaau8; 1024];
    assert_eq!(d.read(8, &mut [&mut stale[..]]), Err(BlockError::Timeout));
    // The device was reset before the error came back: it holds nothing any more, and the
    // queue was set up afresh.
    assert_eq!((f.resets.get(), f.setups.get()), (2, 2));
    assert!(f.held.borrow().is_empty());
    assert_eq!((f.mem.avail.idx.get(), f.mem.used.idx.get()), (0, 0));
    // The device answers again. Had the timed-out read stayed with it, finishing it now
    // would fill `stale` (memory its caller has given up) and the ring would be one behind.
    f.answers.set(true);
    let mut fresh = vec![0u8; 1024];
    d.read(20, &mut [&mut fresh[..]]).unwrap();
    assert!(stale.iter().all(|&b| b == 0xaa), "the timed-out buffer was written");
    assert_eq!(fresh[..], f.disk.borrow()[20 * 512..22 * 512]);
    assert_eq!(f.mem.avail.idx.get(), 1);
    d.write(30, &[&fresh]).unwrap();
    assert_eq!(f.disk.borrow()[30 * 512..32 * 512], fresh[..]);
}

#[test]
fn timed_out_write_is_taken_back_too() {
    let f = fake(true);
    let mut d = blk(f);
    f.answers.set(false);
    let before = f.disk.borrow().clone();
    assert_eq!(d.write(3, &[&[7u8; 512]]), Err(BlockError::Timeout));
    assert_eq!(d.flush(), Err(BlockError::Timeout));
    f.answers.set(true);
    d.flush().unwrap();
    assert_eq!(*f.disk.borrow(), before, "the abandoned write never reached the disk");
    assert_eq!(f.resets.get(), 3);
}

#[test]
fn device_that_ignores_the_reset_is_never_used_again() {
    let f = fake(true);
    let mut d = blk(f);
    f.answers.set(false);
    f.ignores_reset.set(true);
    let mut buf = vec![0u8; 512];
    assert_eq!(d.read(0, &mut [&mut buf[..]]), Err(BlockError::Timeout));
    let (notifies, avail) = (f.notifies.get(), f.mem.avail.idx.get());
    f.answers.set(true);
    assert_eq!(d.read(0, &mut [&mut buf[..]]), Err(BlockError::Io));
    assert_eq!(d.write(0, &[&buf]), Err(BlockError::Io));
    assert_eq!(d.flush(), Err(BlockError::Io));
    assert_eq!(f.notifies.get(), notifies, "the device was notified again");
    assert_eq!(f.mem.avail.idx.get(), avail, "the ring was touched again");
    assert_eq!(f.setups.get(), 1);
}

#[test]
fn ring_indices_wrap() {
    let f = fake(false);
    let mut d = blk(f);
    let mut buf = [0u8; 512];
    for i in 0..70_000u32 {
        d.read(i as u64 % 64, &mut [&mut buf[..]]).unwrap();
    }
    assert_eq!(f.mem.avail.idx.get(), (70_000u32 % 65_536) as u16);
    assert_eq!(buf[..], f.disk.borrow()[(69_999 % 64) * 512..(69_999 % 64 + 1) * 512]);
}

#[test]
fn started_request_ends_at_poll_and_a_synchronous_one_waits_for_it() {
    let f = fake(true);
    let mut d = blk(f);
    f.answers.set(false);
    let mut buf = vec![0u8; 1024];
    d.start(4, &[&mut buf[..]], false).unwrap();
    assert_eq!(d.poll(), None, "the device has not answered yet");
    f.finish();
    assert_eq!(d.poll(), Some(Ok(())));
    assert_eq!(buf[..], f.disk.borrow()[4 * 512..6 * 512]);
    assert_eq!(d.poll(), None, "an outcome is reported once");
    // A flush while a started write is in flight waits for it and keeps its outcome.
    let mut nines = [9u8; 512];
    d.start(10, &[&mut nines[..]], true).unwrap();
    f.answers.set(true);
    d.flush().unwrap();
    assert_eq!(f.disk.borrow()[10 * 512..11 * 512], [9u8; 512]);
    assert_eq!(*f.log.borrow(), [(0, 4, 1), (1, 10, 1), (4, 0, 0)]);
    assert_eq!(d.poll(), Some(Ok(())), "the started write's outcome was kept for poll");
    assert_eq!(d.poll(), None);
}

#[test]
fn started_request_that_times_out_is_taken_back_at_poll() {
    let f = fake(true);
    let mut d = blk(f);
    f.answers.set(false);
    let mut stale = vec![0xaau8; 512];
    d.start(8, &[&mut stale[..]], false).unwrap();
    assert_eq!((0..5000).find_map(|_| d.poll()), Some(Err(BlockError::Timeout)));
    assert!(f.held.borrow().is_empty(), "the device still holds the request");
    f.answers.set(true);
    f.finish();
    assert!(stale.iter().all(|&b| b == 0xaa), "the timed-out buffer was written");
    assert_eq!(d.start(8, &[], false), Err(BlockError::OutOfRange), "nothing to start");
}
