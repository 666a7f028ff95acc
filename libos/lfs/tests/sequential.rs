//! The sequential paths: whole blocks lying one after another in the log are read with one
//! device call, and a read spanning blocks on the disk and blocks still only in the
//! segment buffer sees the bytes written.
mod common;
use common::*;
use exo_lfs::{Counting, FormatOptions, Fs, MemDevice, MountOptions};

fn pattern(len: usize, salt: u32) -> Vec<u8> {
    (0..len as u32).map(|i| (i.wrapping_mul(31).wrapping_add(salt) % 253) as u8).collect()
}

#[test]
fn adjacent_blocks_are_read_in_one_call_after_a_remount() {
    let mut fs = fresh(16, 1024);
    let h = fs.create("/big").unwrap();
    let data = pattern(512 * 1024, 1);
    for (i, chunk) in data.chunks(64 * 1024).enumerate() {
        fs.write(h, (i * 64 * 1024) as u64, chunk).unwrap();
    }
    fs.sync().unwrap();
    let dev = Counting::new(fs.into_device());
    let mut fs = Fs::mount(dev, MountOptions::default()).unwrap();
    let h = fs.open("/big").unwrap();
    let mut got = vec![0u8; 64 * 1024];
    // The first read past the direct blocks brings the indirect block in.
    fs.read(h, 64 * 1024, &mut got[..4096]).unwrap();
    let before = fs.device().counts;
    assert_eq!(fs.read(h, 128 * 1024, &mut got).unwrap(), got.len());
    let after = fs.device().counts;
    assert_eq!(&got[..], &data[128 * 1024..192 * 1024]);
    // The 16 data blocks take one call.
    assert_eq!((after.reads - before.reads, after.sectors_read - before.sectors_read), (1, 128));
    // Unaligned and partial reads still see the right bytes.
    for (off, len) in [(1, 4095), (4095, 70_000), (300_000, 212_288), (511 * 1024, 4096)] {
        let mut b = vec![0u8; len];
        let n = fs.read(h, off as u64, &mut b).unwrap();
        assert_eq!(&b[..n], &data[off..off + n], "at {off}");
        assert_eq!(n, len.min(data.len() - off));
    }
}

#[test]
fn a_read_across_disk_and_segment_buffer_sees_both_parts() {
    // A mount starts the log's memory part mid-segment: blocks written before it are on the
    // disk, those written after it only in the buffer.
    let dev = MemDevice::new(16 * 2048);
    let opts = FormatOptions { segment_bytes: 1 << 20, max_inodes: Some(4096), fs_id: 7, now: 1 };
    let mut fs = Fs::format(dev, opts).unwrap();
    let h = fs.create("/f").unwrap();
    let first = pattern(64 * 1024, 2);
    fs.write(h, 0, &first).unwrap();
    fs.sync().unwrap();
    let mut fs = Fs::mount(fs.into_device(), MountOptions::default()).unwrap();
    let h = fs.open("/f").unwrap();
    let second = pattern(64 * 1024, 3);
    fs.write(h, 64 * 1024, &second).unwrap();
    let mut got = vec![0u8; 128 * 1024];
    assert_eq!(fs.read(h, 0, &mut got).unwrap(), got.len());
    assert_eq!(&got[..64 * 1024], &first[..]);
    assert_eq!(&got[64 * 1024..], &second[..]);
    assert_clean(&mut fs, "after the mixed read");
}
