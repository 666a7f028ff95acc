//! Checkpoint regions: the fixed-place record from which mount starts rolling forward.

use crate::device::SECTOR;
use crate::hash::hash64;
use crate::layout::{Geometry, NO_SEG};
use crate::stats::Stats;
use alloc::vec;
use alloc::vec::Vec;
use exo_format::le::*;

const CP_MAGIC: u32 = 0x4350_464c; // "LFSC"
const CP_VERSION: u32 = 1;
const HASH_AT: usize = 504;
const CP_SEED: u64 = 0xc4ec_4b01_c4ec_4b01;

/// Everything a checkpoint records.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Checkpoint {
    /// Counts checkpoints; the valid region with the larger value is the newer.
    pub serial: u64,
    /// Mount epoch: every PS written after this checkpoint carries it.
    pub epoch: u64,
    /// Serial of the first PS after the checkpoint.
    pub next_serial: u64,
    /// Sector where that PS starts (may equal the end of `cur_seg`).
    pub tail: u64,
    pub cur_seg: u32,
    pub next_seg: u32,
    /// Next inode generation to hand out.
    pub gen: u32,
    pub stats: Stats,
    /// Pointer to each inode-map block (0 = all entries free).
    pub imap: Vec<u64>,
    /// Live bytes per segment.
    pub live: Vec<u32>,
    /// Serial of the newest PS written into each segment (the cleaner's age).
    pub age: Vec<u64>,
}

impl Checkpoint {
    /// Encodes into a region image of `geo.cp_sectors` sectors.
    pub fn encode(&self, geo: &Geometry) -> Vec<u8> {
        let mut b = vec![0u8; geo.cp_sectors as usize * SECTOR];
        put_u32(&mut b, 0, CP_MAGIC);
        put_u32(&mut b, 4, CP_VERSION);
        put_u64(&mut b, 8, geo.fs_id);
        put_u64(&mut b, 16, self.serial);
        put_u64(&mut b, 24, self.epoch);
        put_u64(&mut b, 32, self.next_serial);
        put_u64(&mut b, 40, self.tail);
        put_u32(&mut b, 48, self.cur_seg);
        put_u32(&mut b, 52, self.next_seg);
        put_u32(&mut b, 56, self.gen);
        self.stats.encode(&mut b[64..64 + Stats::ENCODED]);
        let mut at = SECTOR;
        for p in &self.imap {
            put_u64(&mut b, at, *p);
            at += 8;
        }
        for (l, a) in self.live.iter().zip(&self.age) {
            put_u32(&mut b, at, *l);
            put_u64(&mut b, at + 8, *a);
            at += 16;
        }
        let h = region_hash(&b, geo.fs_id);
        put_u64(&mut b, HASH_AT, h);
        b
    }

    /// Decodes a region image; `None` if it is not a valid checkpoint of this file system.
    /// Values are range-checked so that nothing later can index out of bounds.
    pub fn decode(b: &[u8], geo: &Geometry) -> Option<Checkpoint> {
        if b.len() != geo.cp_sectors as usize * SECTOR
            || get_u32(b, 0) != CP_MAGIC
            || get_u32(b, 4) != CP_VERSION
        {
            return None;
        }
        if get_u64(b, 8) != geo.fs_id || region_hash(b, geo.fs_id) != get_u64(b, HASH_AT) {
            return None;
        }
        let n = geo.nsegs as usize;
        let mut cp = Checkpoint {
            serial: get_u64(b, 16),
            epoch: get_u64(b, 24),
            next_serial: get_u64(b, 32),
            tail: get_u64(b, 40),
            cur_seg: get_u32(b, 48),
            next_seg: get_u32(b, 52),
            gen: get_u32(b, 56),
            stats: Stats::decode(&b[64..64 + Stats::ENCODED]),
            imap: Vec::with_capacity(geo.imap_blocks() as usize),
            live: Vec::with_capacity(n),
            age: Vec::with_capacity(n),
        };
        let mut at = SECTOR;
        for _ in 0..geo.imap_blocks() {
            cp.imap.push(get_u64(b, at));
            at += 8;
        }
        for _ in 0..n {
            cp.live.push(get_u32(b, at));
            cp.age.push(get_u64(b, at + 8));
            at += 16;
        }
        let seg_ok = cp.cur_seg < geo.nsegs && (cp.next_seg < geo.nsegs || cp.next_seg == NO_SEG);
        let start = geo.seg_start(cp.cur_seg.min(geo.nsegs - 1));
        let tail_ok = cp.tail >= start && cp.tail <= start + geo.seg_sectors as u64;
        let live_ok = cp.live.iter().all(|&l| l as u64 <= geo.seg_bytes());
        let imap_ok = cp.imap.iter().all(|&p| p == 0 || geo.ptr_ok(p));
        (seg_ok && tail_ok && live_ok && imap_ok && cp.next_seg != cp.cur_seg).then_some(cp)
    }
}

/// The region hash: bytes 0..504 seed a hash of bytes 512.. (the stored hash is 504..512).
pub fn region_hash(b: &[u8], fs_id: u64) -> u64 {
    hash64(hash64(fs_id ^ CP_SEED, &b[..HASH_AT]), &b[SECTOR..])
}
