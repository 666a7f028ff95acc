//! A damaged FAT volume gives errors, never a panic or a hang: seeded random damage to the
//! boot sector, FSInfo, the FAT, the root directory and the first data clusters of a volume
//! the host tools made, then a workload that reads, lists and writes everything it can.
//!
//! `FAT_FUZZ_ITERS=N` runs N seeds per volume instead of the default (seeds 1 to N);
//! `FAT_FUZZ_SEEDS=A..B` (inclusive) or `FAT_FUZZ_SEEDS=A` runs only those seeds, to
//! reproduce one failure without replaying every seed before it.
// An integration test sees every dependency of its package; the library target is the
// one that must use them all (see `[workspace.lints]` in the root Cargo.toml).
#![allow(unused_crate_dependencies)]

mod common;

use common::sparse::{file_slot, Sparse};
use common::*;
use exo_fat::{FatFs, FatOptions};
use exo_format::le;
use exo_libos::fs::disk::{BlockDevice, IoError};
use exo_libos::fs::{FileKind, FileSystem, OpenFlags, Partition};
use std::collections::HashMap;
use std::panic::AssertUnwindSafe;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Duration;

/// A shared base image with private changes on top, so each seed starts from a clean copy
/// without copying 40 MiB.
struct Overlay {
    base: Rc<Vec<u8>>,
    changed: HashMap<u64, Vec<u8>>,
}

impl Overlay {
    fn sector(&mut self, s: u64) -> &mut Vec<u8> {
        let base = &self.base;
        self.changed.entry(s).or_insert_with(|| base[s as usize * 512..][..512].to_vec())
    }
}

impl BlockDevice for Overlay {
    fn read(&mut self, sector: u64, buf: &mut [u8]) -> Result<(), IoError> {
        for (i, b) in buf.chunks_mut(512).enumerate() {
            let s = sector + i as u64;
            match self.changed.get(&s) {
                Some(c) => b.copy_from_slice(c),
                None => b.copy_from_slice(
                    self.base.get(s as usize * 512..s as usize * 512 + 512).ok_or(IoError { code: -1 })?,
                ),
            }
        }
        Ok(())
    }
    fn write(&mut self, sector: u64, buf: &[u8]) -> Result<(), IoError> {
        for (i, b) in buf.chunks(512).enumerate() {
            self.sector(sector + i as u64).copy_from_slice(b);
        }
        Ok(())
    }
    fn flush(&mut self) -> Result<(), IoError> {
        Ok(())
    }
    fn sectors(&self) -> u64 {
        (self.base.len() / 512) as u64
    }
}

/// Where things are on the base volume (read from its boot sector by hand).
struct Layout {
    fsinfo: u64,
    fat: u64,
    fat_sectors: u64,
    root: u64,
    data: u64,
}

fn layout(img: &[u8]) -> Layout {
    let u16_at = |at: usize| u64::from(le::get_u16(img, at));
    let u32_at = |at: usize| u64::from(le::get_u32(img, at));
    let reserved = u16_at(14);
    let fat_size = if u16_at(22) != 0 { u16_at(22) } else { u32_at(36) };
    let nfats = u64::from(img[16]);
    let root_sectors = (u16_at(17) * 32).div_ceil(512);
    let root = reserved + nfats * fat_size;
    Layout { fsinfo: u16_at(48), fat: reserved, fat_sectors: fat_size, root, data: root + root_sectors }
}

fn damage(ov: &mut Overlay, l: &Layout, rng: &mut Rng) {
    let kinds = 1 + rng.below(3);
    for _ in 0..kinds {
        match rng.below(7) {
            0 => {
                // Boot-sector fields.
                let at =
                    [11, 12, 13, 14, 16, 17, 19, 21, 22, 32, 36, 42, 44, 48, 510][rng.below(15) as usize];
                let v = rng.next_u64() as u8;
                ov.sector(0)[at] =
                    if rng.below(2) == 0 { v } else { [0, 1, 0xff, 0x80][rng.below(4) as usize] };
            }
            1 => {
                let s = if rng.below(2) == 0 { l.fsinfo } else { 0 };
                let at = rng.below(512) as usize;
                ov.sector(s)[at] = rng.next_u64() as u8;
            }
            2 => {
                // FAT entries in the used part: loops, free links, wild values.
                for _ in 0..1 + rng.below(20) {
                    let s = l.fat + rng.below(4.min(l.fat_sectors));
                    let e = rng.below(128) as usize * 4;
                    let v: u32 = match rng.below(5) {
                        0 => rng.next_u64() as u32,
                        1 => 0,
                        2 => (s - l.fat) as u32 * 128 + e as u32 / 4,
                        3 => 2 + rng.below(200) as u32,
                        _ => 0x0fff_fff7,
                    };
                    ov.sector(s)[e..e + 4].copy_from_slice(&v.to_le_bytes());
                }
            }
            3 | 4 => {
                // Directory slots: the root's, or early data clusters' (subdirectories).
                let s = if rng.below(2) == 0 { l.root } else { l.data + rng.below(64) };
                for _ in 0..1 + rng.below(6) {
                    let slot = rng.below(16) as usize * 32;
                    let field = [0usize, 11, 12, 13, 20, 21, 26, 27, 28, 31, 1, 5][rng.below(12) as usize];
                    let v = match rng.below(4) {
                        0 => rng.next_u64() as u8,
                        1 => 0,
                        2 => 0xff,
                        _ => [0xe5, 0x05, b'.', 0x41, 0x0f, 0x10][rng.below(6) as usize],
                    };
                    ov.sector(s)[slot + field] = v;
                }
            }
            5 => {
                let s = [0, l.fsinfo, l.fat, l.root, l.data + rng.below(64)][rng.below(5) as usize];
                let junk = rng.bytes(512);
                ov.sector(s).copy_from_slice(&junk);
            }
            _ => {
                let s = rng.below(l.data + 256);
                let at = rng.below(512) as usize;
                ov.sector(s)[at] ^= 1 << rng.below(8);
            }
        }
    }
}

/// Reads, lists and writes whatever it can; every result is allowed to be an error.
fn workload(fs: &mut dyn FileSystem, rng: &mut Rng) {
    let mut dirs = vec![(String::from("/"), 0)];
    let mut files = Vec::new();
    let mut visited = 0;
    while let Some((d, depth)) = dirs.pop() {
        visited += 1;
        if visited > 40 {
            break;
        }
        let Ok(list) = fs.list_dir(&d) else { continue };
        for e in list.into_iter().take(50) {
            let p = if d == "/" { format!("/{}", e.name) } else { format!("{d}/{}", e.name) };
            let _ = fs.stat(&p);
            match e.kind {
                // A damaged directory can point back at its ancestors: go only so deep.
                FileKind::Dir if depth < 4 => dirs.push((p, depth + 1)),
                FileKind::Dir => {}
                FileKind::File => files.push(p),
            }
        }
    }
    let mut buf = vec![0u8; 64 * 1024];
    for p in files.iter().take(20) {
        if let Ok(h) = fs.open(p, OpenFlags::READ) {
            let size = fs.fstat(h).map(|m| m.size).unwrap_or(0);
            let mut off = 0;
            while off < size.min(1 << 20) {
                match fs.read(h, off, &mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => off += n as u64,
                }
            }
            let _ = fs.read(h, size.saturating_sub(100), &mut buf);
            let _ = fs.close(h);
        }
    }
    let data = rng.bytes(10_000);
    for p in ["/NEW.TXT", "/docs/new2.txt", "/sub/deeper/n3.bin"] {
        if let Ok(h) = fs.create(p) {
            let _ = fs.write(h, 0, &data);
            let _ = fs.write(h, 20_000, &data[..100]);
            let _ = fs.close(h);
        }
    }
    if let Some(p) = files.first() {
        if let Ok(h) = fs.open(p, OpenFlags::WRITE | OpenFlags::APPEND) {
            let _ = fs.write(h, 0, &data[..3000]);
            let _ = fs.close(h);
        }
        let _ = fs.open(p, OpenFlags::WRITE | OpenFlags::TRUNCATE).map(|h| fs.close(h));
    }
    let _ = fs.mkdir("/made");
    let _ = fs.mkdir("/docs/made2");
    let _ = fs.rename("/NEW.TXT", "/made/moved.txt");
    let _ = fs.rename("/docs", "/made/docs");
    // Long names: made, renamed to in one directory and across, renamed over.
    let _ = fs.create("/a new long name.txt").map(|h| fs.close(h));
    let _ = fs.mkdir("/made/a long directory");
    let _ = fs.rename("/made/moved.txt", "/made/moved, long named.txt");
    let _ = fs.rename("/made/moved, long named.txt", "/A New Long Name.txt");
    for p in files.iter().skip(4).take(2) {
        let _ = fs.rename(p, &format!("{p} renamed"));
        let _ = fs.rename(&format!("{p} renamed"), "/made/a long directory/from elsewhere.bin");
    }
    for p in files.iter().skip(1).take(3) {
        let _ = fs.remove(p);
    }
    let _ = fs.remove("/emptydir");
    let _ = fs.statfs();
    let _ = fs.sync();
    let _ = fs.list_dir("/");
}

/// The seeds to run: `FAT_FUZZ_SEEDS` (`A..B` inclusive, or one seed `A`), else 1 to
/// `FAT_FUZZ_ITERS`, else 1 to `default_iters`.
fn seeds(default_iters: u64) -> std::ops::RangeInclusive<u64> {
    let var = |k: &str| std::env::var(k).ok();
    if let Some(v) = var("FAT_FUZZ_SEEDS") {
        let (a, b) = v.split_once("..").unwrap_or((&v, &v));
        let parse = |x: &str| x.trim().parse::<u64>().expect("FAT_FUZZ_SEEDS: A..B or A");
        let (a, b) = (parse(a), parse(b));
        assert!(1 <= a && a <= b, "FAT_FUZZ_SEEDS: empty range {v}");
        return a..=b;
    }
    let iters = var("FAT_FUZZ_ITERS").and_then(|v| v.parse().ok()).unwrap_or(default_iters);
    1..=iters
}

fn fuzz(test: &str, fat: u32, spc: u32, kib: u32, default_iters: u64) {
    if !have_fat_tools(test) {
        return;
    }
    let dir = scratch(test);
    let img = dir.join("vol.img");
    let imgs = img.to_str().unwrap().to_string();
    mkfs(&img, kib, fat, spc);
    run("mmd", &["-i", &imgs, "::/docs", "::/docs/deep", "::/sub", "::/sub/deeper", "::/emptydir"]);
    let mut rng = Rng::from_state(99);
    let host = dir.join("h");
    for (i, name) in
        ["Long Name One.txt", "README.TXT", "docs/Report 2024.doc", "docs/deep/x.bin", "sub/deeper/z.dat"]
            .iter()
            .enumerate()
    {
        std::fs::write(&host, rng.bytes(500 + i * 40_000)).unwrap();
        run("mcopy", &["-i", &imgs, host.to_str().unwrap(), &format!("::/{name}")]);
    }
    let base = std::fs::read(&img).unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    let seeds = seeds(default_iters);
    let iters = seeds.end() - seeds.start() + 1;
    let range = seeds.clone();

    let current = Arc::new(AtomicU64::new(0));
    let (done_tx, done_rx) = mpsc::channel();
    let cur = current.clone();
    std::thread::spawn(move || {
        let base = Rc::new(base);
        let l = layout(&base);
        let sectors = base.len() as u64 / 512;
        let mut mounted = 0;
        for seed in seeds {
            cur.store(seed, Ordering::Relaxed);
            let r = std::panic::catch_unwind(AssertUnwindSafe(|| {
                let mut rng = Rng::new(seed);
                let mut ov = Overlay { base: base.clone(), changed: HashMap::new() };
                damage(&mut ov, &l, &mut rng);
                match FatFs::mount(Partition::new(ov, 0, sectors), FatOptions::default()) {
                    Ok(mut fs) => {
                        workload(&mut fs, &mut rng);
                        let _ = fs.unmount();
                        1
                    }
                    Err(_) => 0,
                }
            }));
            match r {
                Ok(m) => mounted += m,
                Err(_) => {
                    let _ = done_tx.send(Err(format!("seed {seed} panicked")));
                    return;
                }
            }
        }
        let _ = done_tx.send(Ok(mounted));
    });
    match done_rx.recv_timeout(Duration::from_secs(120 + iters / 10)) {
        Ok(Ok(mounted)) => {
            eprintln!("{test}: {iters} damaged volumes (seeds {range:?}), {mounted} of them mounted");
            // Most damage leaves the volume mountable, so the workload really ran (a few
            // seeds picked to reproduce one failure may all leave it unmountable).
            assert!(iters < 100 || mounted * 2 > iters, "only {mounted} of {iters} mounted");
        }
        Ok(Err(why)) => panic!("{why}"),
        Err(_) => panic!("hung at seed {}", current.load(Ordering::Relaxed)),
    }
}

#[test]
fn damaged_fat32_volumes_give_errors_not_panics() {
    fuzz("damaged_fat32_volumes_give_errors_not_panics", 32, 1, 40 * 1024, 300);
}

#[test]
fn damaged_fat16_volumes_give_errors_not_panics() {
    fuzz("damaged_fat16_volumes_give_errors_not_panics", 16, 4, 16 * 1024, 200);
}

/// The smallest FAT32 volume (one sector per cluster) whose root directory's chain is
/// 2 → 3 → 3 → ...: cluster 3 links to itself. Cluster 2 holds `KEEP.TXT` (100 bytes in
/// cluster 4), 14 empty files and, in its last slot, the end-of-directory mark; cluster 3
/// is full of empty files (stale entries past the mark). Reading the root stops at the
/// mark; a walk that goes on past it goes round cluster 3 for ever. Returns the volume and
/// `KEEP.TXT`'s bytes.
fn looping_root() -> (Sparse, Vec<u8>) {
    const CLUSTERS: u64 = 66_000;
    const RESERVED: u64 = 32;
    let fat_size = ((CLUSTERS + 2) * 4).div_ceil(512);
    let data = RESERVED + 2 * fat_size;
    let mut v = Sparse { total: data + CLUSTERS, ..Default::default() };
    let b = v.sector(0);
    b[..11].copy_from_slice(b"\xeb\x58\x90MSWIN4.1");
    b[11..13].copy_from_slice(&512u16.to_le_bytes());
    b[13] = 1; // sectors per cluster
    b[14..16].copy_from_slice(&(RESERVED as u16).to_le_bytes());
    b[16] = 2; // FAT copies
    b[21] = 0xf8;
    b[32..36].copy_from_slice(&((data + CLUSTERS) as u32).to_le_bytes());
    b[36..40].copy_from_slice(&(fat_size as u32).to_le_bytes());
    b[44..48].copy_from_slice(&2u32.to_le_bytes()); // root cluster
    b[48..50].copy_from_slice(&1u16.to_le_bytes()); // FSInfo sector
    b[510] = 0x55;
    b[511] = 0xaa;
    let links: [(usize, u32); 5] = [(0, 0x0fff_fff8), (1, 0x0fff_ffff), (2, 3), (3, 3), (4, 0x0fff_ffff)];
    for copy in 0..2 {
        let fat = v.sector(RESERVED + copy * fat_size);
        for (c, x) in links {
            fat[c * 4..c * 4 + 4].copy_from_slice(&x.to_le_bytes());
        }
    }
    let keep: Vec<u8> = (0..100u8).map(|i| i.wrapping_mul(7)).collect();
    v.sector(data + 2)[..100].copy_from_slice(&keep);
    let root = v.sector(data);
    root[..32].copy_from_slice(&file_slot(b"KEEP    TXT", 4, 100));
    for i in 1..15 {
        let name = format!("F{i:02}     TXT");
        root[i * 32..i * 32 + 32].copy_from_slice(&file_slot(name.as_bytes().try_into().unwrap(), 0, 0));
    }
    let stale = v.sector(data + 1);
    for i in 0..16 {
        let name = format!("G{i:02}     TXT");
        stale[i * 32..i * 32 + 32].copy_from_slice(&file_slot(name.as_bytes().try_into().unwrap(), 0, 0));
    }
    (v, keep)
}

/// Fuzz seed 338's hang, built by hand: a file created in the root's last free slot takes
/// the end-of-directory mark, so the directory goes on into its looping cluster; making a
/// directory there hands the root to `embedded-sdmmc`, whose walks follow the chain until a
/// free slot or its end and never reach either. The libOS checks the chain first, so this
/// test ends by construction (the check stops after the largest directory the FAT
/// specification allows); before the check it never did. The new mark the libOS writes
/// after a taken one lands in the looping cluster's first slot (over a stale entry, which
/// never shows); files fill that cluster until the mark is its last slot, whose next slot
/// would be the same cluster's first again: that create fails as corrupt, writing nothing.
#[test]
fn a_looping_directory_chain_makes_mkdir_and_create_fail_as_corrupt_and_keeps_other_files() {
    use exo_libos::fs::Error;
    let (v, keep) = looping_root();
    let sectors = v.total;
    let mut fs = FatFs::mount(Partition::new(v, 0, sectors), FatOptions::default()).expect("mount");
    // Takes the last free slot, which holds the end mark.
    let h = fs.create("/A.TXT").expect("create in the last free slot");
    fs.close(h).unwrap();
    assert_eq!(fs.mkdir("/B"), Err(Error::Corrupt));
    assert_eq!(fs.stat("/B").err(), Some(Error::NotFound));
    // The mark is now cluster 3's first slot: 15 files fit before it is its last.
    for i in 0..15 {
        let h = fs.create(&format!("/D{i:02}.TXT")).expect("create in the looping cluster");
        fs.close(h).unwrap();
    }
    assert_eq!(fs.create("/D15.TXT").err(), Some(Error::Corrupt));
    let mut names: Vec<String> =
        fs.list_dir("/").expect("list the root").into_iter().map(|e| e.name).collect();
    names.sort();
    let mut want: Vec<String> = ["KEEP.TXT".to_string(), "A.TXT".to_string()]
        .into_iter()
        .chain((1..15).map(|i| format!("F{i:02}.TXT")))
        .chain((0..15).map(|i| format!("D{i:02}.TXT")))
        .collect();
    want.sort();
    assert_eq!(names, want, "no stale entry of the looping cluster shows");
    // The other files are as they were.
    let h = fs.open("/KEEP.TXT", OpenFlags::READ).expect("open KEEP.TXT");
    let mut buf = [0u8; 200];
    assert_eq!(fs.read(h, 0, &mut buf), Ok(100));
    assert_eq!(&buf[..100], &keep[..]);
    fs.close(h).unwrap();
    assert_eq!(fs.stat("/A.TXT").map(|m| m.size), Ok(0));
    let part = fs.unmount().expect("unmount");
    // Nothing was allocated: the FAT's chains are as built.
    let mut fat = [0u8; 512];
    part.read(32, &mut fat).unwrap();
    let entry = |c: usize| u32::from_le_bytes(fat[c * 4..c * 4 + 4].try_into().unwrap()) & 0x0fff_ffff;
    assert_eq!((entry(2), entry(3), entry(4), entry(5)), (3, 3, 0x0fff_ffff, 0));
}
