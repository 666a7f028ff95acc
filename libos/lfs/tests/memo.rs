//! The block-pointer memo (`block_ptr` remembers pointers found through indirect blocks):
//! a write, truncate, rename, delete, create or clean between two reads of the same block
//! must never let the second read see the old bytes.
mod common;
use common::*;
use exo_lfs::{Error, Handle, MemDevice};

const B: usize = 4096;
/// Blocks per test file: past the inode's six direct pointers, into the first indirect block.
const N: u64 = 24;

fn block(tag: u8, b: u64) -> Vec<u8> {
    (0..B).map(|i| tag ^ (b as u8).wrapping_mul(31) ^ (i as u8)).collect()
}

fn fill(fs: &mut exo_lfs::Fs<MemDevice>, h: Handle, tag: u8) {
    for b in 0..N {
        fs.write(h, b * B as u64, &block(tag, b)).unwrap();
    }
}

/// Reads every block twice (the second pass through the memo) and checks the bytes.
fn check(fs: &mut exo_lfs::Fs<MemDevice>, h: Handle, want: impl Fn(u64) -> Vec<u8>, what: &str) {
    let mut buf = vec![0u8; B];
    for pass in 0..2 {
        for b in 0..N {
            assert_eq!(fs.read(h, b * B as u64, &mut buf).unwrap(), B, "{what}: block {b} pass {pass}");
            assert!(buf == want(b), "{what}: block {b} pass {pass} has stale bytes");
        }
    }
}

#[test]
fn memo_never_returns_old_data() {
    let mut fs = fresh(16, 64);
    let h = fs.create("/a").unwrap();
    fill(&mut fs, h, 1);
    check(&mut fs, h, |b| block(1, b), "first write");
    // Overwrite in place (new pointers for the same blocks), before and after a sync.
    fill(&mut fs, h, 2);
    check(&mut fs, h, |b| block(2, b), "overwrite");
    fs.sync().unwrap();
    check(&mut fs, h, |b| block(2, b), "after sync");
    fs.write(h, 10 * B as u64, &block(3, 10)).unwrap();
    check(&mut fs, h, |b| block(if b == 10 { 3 } else { 2 }, b), "one block overwritten");
    // Truncate into the indirect range and grow again: the cut blocks read as zeros.
    fs.truncate(h, 8 * B as u64).unwrap();
    fs.truncate(h, N * B as u64).unwrap();
    check(&mut fs, h, |b| if b < 8 { block(2, b) } else { vec![0; B] }, "truncate then grow");
    // Rename another file over it: the old handle is stale, the name reads the new bytes.
    let g = fs.create("/b").unwrap();
    fill(&mut fs, g, 4);
    check(&mut fs, g, |b| block(4, b), "second file");
    fs.rename("/b", "/a").unwrap();
    let mut buf = vec![0u8; B];
    assert_eq!(fs.read(h, 10 * B as u64, &mut buf), Err(Error::Stale));
    let a = fs.open("/a").unwrap();
    check(&mut fs, a, |b| block(4, b), "renamed over");
    // Delete and create (the inode number may come back): the new file's bytes only.
    fs.unlink("/a").unwrap();
    let c = fs.create("/c").unwrap();
    fs.truncate(c, N * B as u64).unwrap();
    check(&mut fs, c, |_| vec![0; B], "created after a delete");
    fill(&mut fs, c, 5);
    check(&mut fs, c, |b| block(5, b), "filled after a delete");
    // The cleaner moves live blocks: reads still see the same bytes.
    fs.sync().unwrap();
    fs.clean().unwrap();
    check(&mut fs, c, |b| block(5, b), "after clean");
    fs.sync().unwrap();
    check(&mut fs, c, |b| block(5, b), "after clean and sync");
}
