//! A power cut during FAT writes, at every write the libOS makes. Before any repair, the
//! image shows the libOS's write order: in the first FAT no link points at a free cluster,
//! no root entry's first cluster is free, no file's size runs past its chain, a new
//! directory starts with its `.` entry, and FSInfo's free count is "unknown" or the FAT's.
//! Then, after `fsck.vfat -a`, the volume is clean and a file synced before is whole. For
//! file writes, the file being written holds a prefix of what was written (its size never
//! runs ahead of its data); for directories the crate makes and grows over stale bytes that
//! read as entries, none of those bytes shows as an entry.
// An integration test sees every dependency of its package; the library target is the
// one that must use them all (see `[workspace.lints]` in the root Cargo.toml).
#![allow(unused_crate_dependencies)]

mod common;

use common::raw_fat::RawFat;
use common::*;
use exo_fat::{FatFs, FatOptions};
use exo_libos::fs::disk::{BlockDevice, IoError};
use exo_libos::fs::{FileSystem, OpenFlags, Partition};
use std::cell::RefCell;
use std::path::Path;
use std::rc::Rc;

/// A disk in memory that loses power after `left` more write calls: the call that runs out
/// is torn (only its first half of sectors lands) and every later write fails.
struct Cut {
    disk: Rc<RefCell<Vec<u8>>>,
    left: Option<usize>,
    writes: usize,
}

impl BlockDevice for Cut {
    fn read(&mut self, sector: u64, buf: &mut [u8]) -> Result<(), IoError> {
        self.disk.borrow_mut().read(sector, buf)
    }
    fn write(&mut self, sector: u64, buf: &[u8]) -> Result<(), IoError> {
        self.writes += 1;
        match &mut self.left {
            Some(0) => Err(IoError { code: -5 }),
            Some(n) if *n == 1 => {
                *n = 0;
                let half = buf.len() / 512 / 2 * 512;
                if half > 0 {
                    self.disk.borrow_mut().write(sector, &buf[..half])?;
                }
                Err(IoError { code: -5 })
            }
            Some(n) => {
                *n -= 1;
                self.disk.borrow_mut().write(sector, buf)
            }
            None => self.disk.borrow_mut().write(sector, buf),
        }
    }
    fn flush(&mut self) -> Result<(), IoError> {
        Ok(())
    }
    fn sectors(&self) -> u64 {
        self.disk.borrow().sectors()
    }
}

/// What the file under test holds when every write has gone through: pieces written in
/// order, then one past the end (a zero-filled gap).
fn expected(keep: &[u8], piece: usize) -> Vec<u8> {
    let mut v: Vec<u8> = (0..6 * piece as u32).map(|i| (i * 7 + 3) as u8).collect();
    v.resize(v.len() + 3000, 0);
    v.extend_from_slice(&keep[..700]);
    v
}

/// The writes that may be cut: a new file grown in pieces that cross clusters, then a
/// write past its end. Stops at the first error (the power is gone).
fn writes(fs: &mut FatFs<Cut>, grow: &[u8], n: usize) -> exo_libos::fs::Result<()> {
    let h = fs.create("/grow.bin")?;
    for (i, piece) in grow[..6 * n].chunks(n).enumerate() {
        fs.write(h, (i * n) as u64, piece)?;
    }
    fs.write(h, (6 * n + 3000) as u64, &grow[6 * n + 3000..])?;
    fs.close(h)?;
    fs.sync()
}

/// What a cut at write `k` of `total` left on `disk`: first its write order, on the image as
/// the cut left it (`fsck.vfat -a` would repair what a wrong order leaves); then
/// `fsck.vfat -a` repairs it, through the file `img`, and must leave it clean. Returns the
/// repaired image.
fn repaired_after_cut(k: usize, total: usize, disk: &RefCell<Vec<u8>>, img: &Path) -> Rc<RefCell<Vec<u8>>> {
    let faults = RawFat::parse(&disk.borrow()).order_faults();
    assert!(
        faults.is_empty(),
        "cut at write {k} of {total}: the image before fsck shows writes out of order:\n{}",
        faults.join("\n")
    );
    std::fs::write(img, &*disk.borrow()).unwrap();
    let imgs = img.to_str().unwrap();
    run_status("fsck.vfat", &["-a", imgs]);
    fsck_clean(imgs);
    Rc::new(RefCell::new(std::fs::read(img).unwrap()))
}

fn cut_everywhere(test: &str, fat: u32, spc: u32, kib: u32, piece: usize) {
    if !have_fat_tools(test) {
        return;
    }
    let dir = scratch(test);
    let img = dir.join("vol.img");
    let imgs = img.to_str().unwrap();
    mkfs(&img, kib, fat, spc);
    let keep = Rng::from_state(u64::from(fat)).bytes(3000);
    let disk = std::fs::read(&img).unwrap();
    let sectors = disk.len() as u64 / 512;
    let dev = |disk: &Rc<RefCell<Vec<u8>>>, left| {
        Partition::new(Cut { disk: disk.clone(), left, writes: 0 }, 0, sectors)
    };
    let disk = Rc::new(RefCell::new(disk));
    let mut fs = FatFs::mount(dev(&disk, None), FatOptions::default()).unwrap();
    let h = fs.create("/keep.txt").unwrap();
    fs.write(h, 0, &keep).unwrap();
    fs.close(h).unwrap();
    fs.unmount().unwrap();
    let base = disk.borrow().clone();
    let grow = expected(&keep, piece);

    // How many write calls the whole sequence makes.
    let mut fs =
        FatFs::mount(dev(&Rc::new(RefCell::new(base.clone())), None), FatOptions::default()).unwrap();
    writes(&mut fs, &grow, piece).unwrap();
    let all = fs.unmount().unwrap().into_inner();
    let total = all.writes;
    // The raw reading sees the whole file where the libOS put it (so its checks below look
    // at something), and nothing out of order.
    let done = all.disk.borrow();
    let raw = RawFat::parse(&done);
    let e = raw.root().into_iter().find(|e| e.name == "GROW    BIN").expect("GROW.BIN in the root");
    assert_eq!(e.size as usize, grow.len());
    assert_eq!(raw.chain(e.cluster).len() as u64, (grow.len() as u64).div_ceil(raw.cluster_bytes()));
    assert_eq!(raw.fsinfo_free().is_some(), fat == 32, "FSInfo read");
    assert_eq!(raw.order_faults(), Vec::<String>::new(), "uncut run");
    drop(done);
    assert!(total > 10, "{total} writes");

    for k in 1..=total {
        let disk = Rc::new(RefCell::new(base.clone()));
        let mut fs = FatFs::mount(dev(&disk, Some(k)), FatOptions::default()).unwrap();
        let _ = writes(&mut fs, &grow, piece);
        // The power is gone: what is on the disk is what the test checks (no unmount).
        drop(fs);
        let disk = repaired_after_cut(k, total, &disk, &img);
        let mut fs = FatFs::mount(dev(&disk, None), FatOptions::default()).unwrap();
        let read = |fs: &mut FatFs<Cut>, p: &str| {
            let h = fs.open(p, OpenFlags::READ).ok()?;
            let mut v = vec![0u8; fs.fstat(h).unwrap().size as usize];
            assert_eq!(fs.read(h, 0, &mut v).unwrap(), v.len());
            fs.close(h).unwrap();
            Some(v)
        };
        assert!(
            read(&mut fs, "/keep.txt").as_deref() == Some(&keep[..]),
            "cut at write {k}: keep.txt damaged"
        );
        if let Some(v) = read(&mut fs, "/grow.bin") {
            assert!(grow.starts_with(&v), "cut at write {k}: grow.bin ({} bytes) is not a prefix", v.len());
        }
    }
    fsck_clean(imgs);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn fat16_power_cut_at_any_write_leaves_synced_files_whole_and_written_ones_a_prefix() {
    cut_everywhere("fat16_power_cut_at_any_write", 16, 4, 16 * 1024, 1500);
}

#[test]
fn fat32_power_cut_at_any_write_leaves_synced_files_whole_and_written_ones_a_prefix() {
    cut_everywhere("fat32_power_cut_at_any_write", 32, 1, 40 * 1024, 1500);
}

/// Writes of 80 clusters or more: each links clusters across two FAT sectors (written one
/// at a time, the last first) and writes the second FAT's two in one transfer, which a
/// cut may tear.
#[test]
fn fat32_power_cut_during_large_writes_leaves_synced_files_whole_and_written_ones_a_prefix() {
    cut_everywhere("fat32_power_cut_during_large_writes", 32, 1, 40 * 1024, 40_000);
}

#[test]
fn fat16_power_cut_during_large_writes_leaves_synced_files_whole_and_written_ones_a_prefix() {
    cut_everywhere("fat16_power_cut_during_large_writes", 16, 1, 16 * 1024, 140_000);
}

/// Directories the crate writes: `mkdir` and a create in a full directory (which grows it
/// by a cluster) over clusters a removed file left full of stale bytes that read as
/// directory entries claiming a synced file's clusters. A cut must never let those bytes
/// show as a directory's content, or `fsck.vfat -a`, finding them first, would cut the
/// synced file short.
fn cut_crate_dirs(test: &str, fat: u32, spc: u32, kib: u32) {
    if !have_fat_tools(test) {
        return;
    }
    let dir = scratch(test);
    let img = dir.join("vol.img");
    mkfs(&img, kib, fat, spc);
    let disk = std::fs::read(&img).unwrap();
    let sectors = disk.len() as u64 / 512;
    let dev = |disk: &Rc<RefCell<Vec<u8>>>, left| {
        Partition::new(Cut { disk: disk.clone(), left, writes: 0 }, 0, sectors)
    };
    let disk = Rc::new(RefCell::new(disk));
    let cb = spc as usize * 512;
    let keep = Rng::from_state(u64::from(fat) + 7).bytes(5000);
    // stale.bin first, so that its clusters are the lowest free ones once it is removed
    // (where the crate looks first) and its root slot the first free one (so /d comes
    // before /sub, and fsck.vfat looks in /d first).
    let mut fs = FatFs::mount(dev(&disk, None), FatOptions::default()).unwrap();
    let h = fs.create("/stale.bin").unwrap();
    fs.write(h, 0, &vec![0u8; 4 * cb]).unwrap();
    fs.close(h).unwrap();
    fs.mkdir("/sub").unwrap();
    let h = fs.create("/sub/keep.txt").unwrap();
    fs.write(h, 0, &keep).unwrap();
    fs.close(h).unwrap();
    fs.unmount().unwrap();
    let kc = {
        let b = disk.borrow();
        let raw = RawFat::parse(&b);
        let sub = raw.root().into_iter().find(|e| e.name == "SUB        ").expect("SUB").cluster;
        raw.dir(sub).into_iter().find(|e| e.name == "KEEP    TXT").expect("KEEP.TXT").cluster
    };
    let mut junk = Vec::new();
    for i in 0..4 * cb / 32 {
        let mut e = [0u8; 32];
        e[..11].copy_from_slice(format!("JUNK{i:04}BIN").as_bytes());
        e[11] = 0x20;
        e[20..22].copy_from_slice(&((kc >> 16) as u16).to_le_bytes());
        e[26..28].copy_from_slice(&(kc as u16).to_le_bytes());
        e[28..32].copy_from_slice(&(keep.len() as u32).to_le_bytes());
        junk.extend_from_slice(&e);
    }
    let mut fs = FatFs::mount(dev(&disk, None), FatOptions::default()).unwrap();
    let h = fs.open("/stale.bin", OpenFlags::WRITE).unwrap();
    fs.write(h, 0, &junk).unwrap();
    fs.close(h).unwrap();
    fs.remove("/stale.bin").unwrap();
    fs.unmount().unwrap();
    let base = disk.borrow().clone();

    // /d, then files in it until one more needs a second cluster.
    let files = cb / 32 - 1;
    let work = |fs: &mut FatFs<Cut>| -> exo_libos::fs::Result<()> {
        fs.mkdir("/d")?;
        for i in 0..files {
            let h = fs.create(&format!("/d/f{i}"))?;
            fs.close(h)?;
        }
        fs.sync()
    };
    let mut fs =
        FatFs::mount(dev(&Rc::new(RefCell::new(base.clone())), None), FatOptions::default()).unwrap();
    work(&mut fs).unwrap();
    let all = fs.unmount().unwrap().into_inner();
    let total = all.writes;
    {
        let b = all.disk.borrow();
        let raw = RawFat::parse(&b);
        let d = raw.root().into_iter().find(|e| e.name == "D          ").expect("D in the root");
        assert_eq!(raw.chain(d.cluster).len(), 2, "/d grew to two clusters");
        assert!(d.slot < raw.root().into_iter().find(|e| e.name == "SUB        ").unwrap().slot);
        assert_eq!(raw.order_faults(), Vec::<String>::new(), "uncut run");
    }

    for k in 1..=total {
        let disk = Rc::new(RefCell::new(base.clone()));
        let mut fs = FatFs::mount(dev(&disk, Some(k)), FatOptions::default()).unwrap();
        let _ = work(&mut fs);
        drop(fs);
        let disk = repaired_after_cut(k, total, &disk, &img);
        let mut fs = FatFs::mount(dev(&disk, None), FatOptions::default()).unwrap();
        let h = fs.open("/sub/keep.txt", OpenFlags::READ).unwrap();
        let mut v = vec![0u8; fs.fstat(h).unwrap().size as usize];
        assert_eq!(fs.read(h, 0, &mut v).unwrap(), v.len());
        assert!(v == keep, "cut at write {k} of {total}: /sub/keep.txt damaged ({} bytes)", v.len());
        if let Ok(list) = fs.list_dir("/d") {
            let stray: Vec<&str> = list
                .iter()
                .map(|e| e.name.as_str())
                .filter(|n| !n.to_ascii_lowercase().starts_with('f'))
                .collect();
            assert!(stray.is_empty(), "cut at write {k} of {total}: /d shows stale bytes as {stray:?}");
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn fat16_power_cut_while_the_crate_makes_and_grows_a_directory_leaves_other_files_whole() {
    cut_crate_dirs("fat16_power_cut_crate_dirs", 16, 4, 16 * 1024);
}

#[test]
fn fat32_power_cut_while_the_crate_makes_and_grows_a_directory_leaves_other_files_whole() {
    cut_crate_dirs("fat32_power_cut_crate_dirs", 32, 1, 40 * 1024);
}
