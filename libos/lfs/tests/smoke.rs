//! Basic behaviour: files and directories survive sync + power cut + mount.
mod common;
use common::*;
use exo_lfs::{Error, Fs, MountOptions};

#[test]
fn create_write_read_remount() {
    let mut fs = fresh(8, 64);
    fs.mkdir("/d").unwrap();
    let f = fs.create("/d/a").unwrap();
    fs.write(f, 0, b"hello world").unwrap();
    let g = fs.create("/big").unwrap();
    let data: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect();
    fs.write(g, 0, &data).unwrap();
    assert_eq!(fs.create("/d/a"), Err(Error::Exists));
    assert_clean(&mut fs, "before sync");
    fs.sync().unwrap();
    let before = dump(&mut fs);
    let dev = fs.into_device();
    let mut fs = Fs::mount(dev, MountOptions::default()).unwrap();
    assert_eq!(dump(&mut fs), before);
    assert_clean(&mut fs, "after mount");
    fs.unlink("/big").unwrap();
    fs.rename("/d/a", "/b").unwrap();
    fs.rmdir("/d").unwrap();
    fs.sync().unwrap();
    let after = dump(&mut fs);
    assert_eq!(after.len(), 1);
    assert_eq!(after["/b"].as_deref(), Some(&b"hello world"[..]));
    let dev = fs.into_device();
    let mut fs = Fs::mount(dev, MountOptions::default()).unwrap();
    assert_eq!(dump(&mut fs), after);
    assert_clean(&mut fs, "after second mount");
}

static NOW: std::sync::atomic::AtomicI64 = std::sync::atomic::AtomicI64::new(0);

fn clock() -> i64 {
    NOW.load(std::sync::atomic::Ordering::Relaxed)
}

#[test]
fn timestamps_come_from_the_callers_clock_and_df_counts() {
    let mut fs = fresh(8, 64);
    fs.set_clock(clock);
    NOW.store(1_000, std::sync::atomic::Ordering::Relaxed);
    let f = fs.create("/t").unwrap();
    NOW.store(2_000, std::sync::atomic::Ordering::Relaxed);
    fs.write(f, 5000, b"x").unwrap();
    let s = fs.stat("/t").unwrap();
    assert_eq!((s.btime, s.mtime, s.size), (1_000, 2_000, 5001));
    let mut buf = [9u8; 5001];
    fs.read(f, 0, &mut buf).unwrap();
    assert!(buf[..5000].iter().all(|&b| b == 0) && buf[5000] == b'x', "hole reads as zeros");
    assert_eq!(fs.stat("/").unwrap().mtime, 1_000, "creating /t stamped the root");
    let before = fs.statfs();
    let g = fs.create("/big").unwrap();
    fs.write(g, 0, &vec![1u8; 100_000]).unwrap();
    let after = fs.statfs();
    assert!(after.used_bytes >= before.used_bytes + 100_000);
    assert!(after.stats.user_sectors >= before.stats.user_sectors + 195);
    assert_eq!(after.inodes_used, before.inodes_used + 1);
    fs.sync().unwrap();
    let mut fs = Fs::mount(fs.into_device(), MountOptions::default()).unwrap();
    assert_eq!(fs.stat("/t").unwrap().mtime, 2_000);
    assert_eq!(fs.open("/t").map(|h| h.ino), Ok(f.ino));
    fs.unlink("/t").unwrap();
    assert_eq!(fs.read(f, 0, &mut buf), Err(Error::Stale));
}
