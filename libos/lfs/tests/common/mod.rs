//! Shared test helpers: a seeded PRNG, image builders and a tree dump for comparisons.
#![allow(dead_code)]

pub mod fault;

use exo_lfs::{BlockDevice, FormatOptions, Fs, Kind, MemDevice};
use std::collections::BTreeMap;

pub use exo_format::rng::Rng;
// The block-device seam is `exo-block`'s; the tests name it through `exo_lfs`'s re-exports.
use exo_block as _;

/// `LFS_TEST_SCALE` multiplies iteration counts (default 1).
pub fn scale() -> u64 {
    std::env::var("LFS_TEST_SCALE").ok().and_then(|s| s.parse().ok()).unwrap_or(1).max(1)
}

/// `LFS_TEST_SEED` shifts every test's seeds, to explore new cases (default 0).
pub fn seed_base() -> u64 {
    std::env::var("LFS_TEST_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(0)
}

/// A formatted RAM disk of `mib` MiB with `seg_kib` KiB segments.
pub fn fresh(mib: u64, seg_kib: u32) -> Fs<MemDevice> {
    let dev = MemDevice::new(mib * 2048);
    let opts = FormatOptions { segment_bytes: seg_kib * 1024, max_inodes: Some(4096), fs_id: 0xfeed, now: 1 };
    Fs::format(dev, opts).expect("format")
}

/// What a tree holds: path → None for a directory, Some(contents) for a file.
pub type Tree = BTreeMap<String, Option<Vec<u8>>>;

/// Reads the whole tree out of a file system.
pub fn dump<D: BlockDevice>(fs: &mut Fs<D>) -> Tree {
    let mut out = Tree::new();
    let mut stack = vec![String::new()];
    while let Some(dir) = stack.pop() {
        let path = if dir.is_empty() { "/".to_string() } else { dir.clone() };
        for e in fs.read_dir(&path).expect("read_dir") {
            let p = format!("{}/{}", dir, String::from_utf8(e.name).unwrap());
            match e.kind {
                Kind::Dir => {
                    out.insert(p.clone(), None);
                    stack.push(p);
                }
                Kind::File => {
                    let h = fs.open(&p).expect("open");
                    let size = fs.fstat(h).expect("fstat").size as usize;
                    let mut buf = vec![0u8; size];
                    assert_eq!(fs.read(h, 0, &mut buf).expect("read"), size);
                    out.insert(p, Some(buf));
                }
            }
        }
    }
    out
}

/// Asserts fsck is clean, printing what it found otherwise.
pub fn assert_clean<D: BlockDevice>(fs: &mut Fs<D>, what: &str) {
    let r = fs.check();
    assert!(r.is_clean(), "{what}: fsck found {} problem(s): {:#?}", r.problems, r.errors);
}
