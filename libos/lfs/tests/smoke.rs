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
