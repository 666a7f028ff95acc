//! The FAT libOS reads volumes made by `mkfs.vfat` and filled by `mtools` on the host.
// An integration test sees every dependency of its package; the library target is the
// one that must use them all (see `[workspace.lints]` in the root Cargo.toml).
#![allow(unused_crate_dependencies)]

mod common;

use common::*;
use exo_fat::{FatFs, FatOptions};
use exo_libos::fs::{Error, FileKind, FileSystem, OpenFlags, Partition};
use std::collections::BTreeMap;

/// The files the host puts on the volume: path (as mtools is given it) and contents.
fn host_files(rng: &mut Rng) -> Vec<(&'static str, Vec<u8>)> {
    vec![
        ("Long File Name.txt", b"hello from the host\n".to_vec()),
        ("README.TXT", b"upper case 8.3\n".to_vec()),
        ("lower.txt", b"lower case 8.3\n".to_vec()),
        ("empty.dat", Vec::new()),
        ("big.bin", rng.bytes(5 * 1024 * 1024 + 123)),
        ("docs/deep/er/nested file with spaces.dat", rng.bytes(100_000)),
        ("docs/deep/na\u{ef}ve caf\u{e9}.txt", b"unicode name\n".to_vec()),
        ("docs/a-name-that-is-quite-long-indeed-more-than-forty-characters.md", rng.bytes(3000)),
    ]
}

/// Builds the image at `img` (a bare volume, or with `@@offset` a partition of a disk).
fn fill(dir: &std::path::Path, target: &str, files: &[(&str, Vec<u8>)]) {
    run("mmd", &["-i", target, "::/docs", "::/docs/deep", "::/docs/deep/er", "::/emptydir"]);
    for (i, (name, data)) in files.iter().enumerate() {
        let host = dir.join(format!("f{i}"));
        std::fs::write(&host, data).unwrap();
        // A fixed modification time (2021-03-04 05:06:08 UTC), kept by `mcopy -m`.
        let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_614_834_368);
        std::fs::File::options().write(true).open(&host).unwrap().set_modified(t).unwrap();
        run("mcopy", &["-m", "-i", target, host.to_str().unwrap(), &format!("::/{name}")]);
    }
}

fn check_volume(fs: &mut dyn FileSystem, files: &[(&str, Vec<u8>)]) {
    // Every file reads back whole, through long and short names.
    for (name, data) in files {
        let p = format!("/{name}");
        let st = fs.stat(&p).unwrap_or_else(|e| panic!("stat {p}: {e}"));
        assert_eq!((st.kind, st.size), (FileKind::File, data.len() as u64), "{p}");
        // 2021-03-04 05:06:08 UTC, in nanoseconds.
        assert_eq!(st.modified, Some(1_614_834_368_000_000_000), "{p}");
        let h = fs.open(&p, OpenFlags::READ).unwrap();
        let mut got = vec![0u8; data.len() + 10];
        let mut n = 0;
        while n < got.len() {
            // Odd-sized reads at odd offsets cross sector and cluster edges.
            let k = fs.read(h, n as u64, &mut got[n..(n + 70_001).min(data.len() + 10)]).unwrap();
            if k == 0 {
                break;
            }
            n += k;
        }
        assert_eq!(n, data.len(), "{p}");
        assert!(got[..n] == data[..], "{p} differs");
        fs.close(h).unwrap();
    }
    let root: BTreeMap<String, (FileKind, u64)> =
        fs.list_dir("/").unwrap().into_iter().map(|e| (e.name, (e.kind, e.size))).collect();
    let want: BTreeMap<String, (FileKind, u64)> = [
        ("Long File Name.txt", (FileKind::File, 20)),
        ("README.TXT", (FileKind::File, 15)),
        ("lower.txt", (FileKind::File, 15)),
        ("empty.dat", (FileKind::File, 0)),
        ("big.bin", (FileKind::File, 5 * 1024 * 1024 + 123)),
        ("docs", (FileKind::Dir, 0)),
        ("emptydir", (FileKind::Dir, 0)),
    ]
    .into_iter()
    .map(|(n, v)| (n.to_string(), v))
    .collect();
    assert_eq!(root, want);
    let deep: Vec<String> = fs.list_dir("/docs/deep").unwrap().into_iter().map(|e| e.name).collect();
    assert_eq!(deep, ["er", "na\u{ef}ve caf\u{e9}.txt"]);
    assert!(fs.list_dir("/emptydir").unwrap().is_empty());
    // Names match in either case, and by their 8.3 alias.
    assert_eq!(fs.stat("/long file NAME.TXT").unwrap().size, 20);
    assert_eq!(fs.stat("/LONGFI~1.TXT").unwrap().size, 20);
    assert_eq!(fs.stat("/DOCS/Deep/./../deep/ER").unwrap().kind, FileKind::Dir);
    assert_eq!(fs.stat("/nope").unwrap_err(), Error::NotFound);
    assert_eq!(fs.stat("/big.bin/x").unwrap_err(), Error::NotDir);
    assert_eq!(fs.open("/docs", OpenFlags::READ).unwrap_err(), Error::IsDir);
    assert_eq!(fs.list_dir("/README.TXT").unwrap_err(), Error::NotDir);
}

#[test]
fn reads_a_fat32_volume_mtools_filled() {
    if !have_fat_tools("reads_a_fat32_volume_mtools_filled") {
        return;
    }
    let dir = scratch("read32");
    let img = dir.join("vol.img");
    mkfs(&img, 40 * 1024, 32, 1);
    let files = host_files(&mut Rng::from_state(7));
    fill(&dir, img.to_str().unwrap(), &files);
    let sectors = std::fs::metadata(&img).unwrap().len() / 512;
    let mut fs = FatFs::mount(Partition::new(open_image(&img), 0, sectors), FatOptions::default()).unwrap();
    assert_eq!(fs.fs_type(), "fat32");
    check_volume(&mut fs, &files);

    // A contiguous file is read in a few large transfers: 1 MiB reads into an aligned buffer
    // take one device call each (plus the FAT sectors its chain is in: 80 for 5 MiB of
    // 512-byte clusters, read in 8-sector windows, mostly from the mount's cache, and a
    // window again at each call), unaligned buffers one per 64 KiB bounce.
    let big = &files[4].1;
    for (aligned, most) in [(true, 6 + 16), (false, 5 * 16 + 1 + 16)] {
        let h = fs.open("/big.bin", OpenFlags::READ).unwrap();
        let before = fs.io_stats().reads;
        let mut sb = exo_libos::fs::disk::SectorBuf::new(1 << 20);
        let mut v = vec![0u8; (1 << 20) + 1];
        let buf: &mut [u8] = if aligned { &mut sb } else { &mut v[1..] };
        let mut off = 0;
        loop {
            let n = fs.read(h, off, buf).unwrap();
            if n == 0 {
                break;
            }
            assert!(buf[..n] == big[off as usize..off as usize + n]);
            off += n as u64;
        }
        let calls = fs.io_stats().reads - before;
        eprintln!("reading 5 MiB ({}aligned buffer): {calls} device calls", if aligned { "" } else { "un" });
        assert!(calls <= most, "{calls} device calls to read 5 MiB");
        fs.close(h).unwrap();
    }
    let st = fs.statfs().unwrap();
    assert_eq!(st.block_size, 512);
    let used: u64 = files.iter().map(|(_, d)| (d.len() as u64).div_ceil(512) * 512).sum();
    assert!(st.total_bytes > 39 << 20 && st.free_bytes + used < st.total_bytes, "{st:?}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn reads_a_fat16_partition_behind_an_mbr() {
    if !have_fat_tools("reads_a_fat16_partition_behind_an_mbr") {
        return;
    }
    let dir = scratch("read16");
    let vol = dir.join("vol.img");
    mkfs(&vol, 16 * 1024, 16, 4);
    // A disk: an MBR with the volume as partition 1 at sector 2048, and junk around it.
    let mut disk = vec![0xa5u8; 2048 * 512];
    let v = std::fs::read(&vol).unwrap();
    let count = (v.len() / 512) as u32;
    disk[446..462].fill(0);
    disk[446 + 4] = 0x0e;
    disk[446 + 8..446 + 12].copy_from_slice(&2048u32.to_le_bytes());
    disk[446 + 12..446 + 16].copy_from_slice(&count.to_le_bytes());
    disk[510] = 0x55;
    disk[511] = 0xaa;
    disk.extend_from_slice(&v);
    disk.extend_from_slice(&[0x5au8; 4096]);
    let img = dir.join("disk.img");
    std::fs::write(&img, &disk).unwrap();
    let files = host_files(&mut Rng::from_state(16));
    fill(&dir, &format!("{}@@1048576", img.display()), &files);
    let mut fs =
        FatFs::mount(Partition::new(open_image(&img), 2048, u64::from(count)), FatOptions::default())
            .unwrap();
    assert_eq!(fs.fs_type(), "fat16");
    check_volume(&mut fs, &files);
    assert_eq!(fs.statfs().unwrap().block_size, 2048);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn refuses_what_it_cannot_mount() {
    if !have_fat_tools("refuses_what_it_cannot_mount") {
        return;
    }
    let dir = scratch("refuse");
    let img = dir.join("fat12.img");
    mkfs(&img, 1024, 12, 1);
    let v = std::fs::read(&img).unwrap();
    let n = v.len() as u64 / 512;
    assert_eq!(
        FatFs::mount(Partition::new(v.clone(), 0, n), FatOptions::default()).err(),
        Some(Error::Unsupported)
    );
    // A partition smaller than the volume its boot sector describes.
    mkfs(&img, 16 * 1024, 16, 4);
    let v = std::fs::read(&img).unwrap();
    let n = v.len() as u64 / 512;
    assert_eq!(
        FatFs::mount(Partition::new(v.clone(), 0, n - 1), FatOptions::default()).err(),
        Some(Error::Corrupt)
    );
    // No boot sector at all.
    assert_eq!(
        FatFs::mount(Partition::new(vec![0u8; 1 << 20], 0, 2048), FatOptions::default()).err(),
        Some(Error::Corrupt)
    );
    let _ = std::fs::remove_dir_all(&dir);
}
