//! Mounting a partitioned disk by MBR type with the back ends an app links: FAT at /fat,
//! the LFS at /log, others skipped; a back end left out leaves its partitions alone.
// An integration test sees every dependency of its package; the library target is the
// one that must use them all (see `[workspace.lints]` in the root Cargo.toml).
#![allow(unused_crate_dependencies)]

mod common;

use common::*;
use exo_format::mbr;
use exo_lfs::FormatOptions;
use exo_libos::fs::mount::{mount_partitions, Backend};
use exo_libos::fs::{Error, Partition, Vfs};
use exo_logfs::LfsFs;

fn both() -> [Backend<FileSectors>; 2] {
    [exo_fat::backend(), exo_logfs::backend()]
}

fn entry(disk: &mut [u8], i: usize, kind: u8, start: u32, len: u32) {
    let e = &mut disk[446 + 16 * i..446 + 16 * (i + 1)];
    e[4] = kind;
    e[8..12].copy_from_slice(&start.to_le_bytes());
    e[12..16].copy_from_slice(&len.to_le_bytes());
}

#[test]
fn back_ends_name_their_mount_points_and_types() {
    let [fat, log] = both();
    assert_eq!((fat.mount_point(0), fat.mount_point(2)), ("/fat".into(), "/fat2".into()));
    assert_eq!((log.mount_point(0), log.mount_point(1)), ("/log".into(), "/log1".into()));
    assert!(fat.kinds.contains(&0x0c) && fat.kinds.contains(&0x0e) && !fat.kinds.contains(&0x83));
    assert_eq!(log.kinds, &[mbr::TYPE_EXO_LFS]);
}

#[test]
fn partitions_mount_where_their_type_says() {
    let fat = have_fat_tools("partitions_mount_where_their_type_says");
    let dir = scratch("mount");
    // Disk: MBR; 2048: FAT32 (40 MiB, if the tools are here); then an LFS (8 MiB); a Linux
    // partition; and a "FAT" partition holding junk.
    let fat_len: u32 = if fat { 81920 } else { 0 };
    let lfs_at = 2048 + fat_len;
    let (lfs_len, linux_at, junk_at) = (16384u32, lfs_at + 16384, lfs_at + 16384 + 2048);
    let total = junk_at + 2048;
    let img = dir.join("disk.img");
    let mut disk = vec![0u8; total as usize * 512];
    disk[510] = 0x55;
    disk[511] = 0xaa;
    if fat {
        let vol = dir.join("vol.img");
        mkfs(&vol, fat_len / 2, 32, 1);
        let v = std::fs::read(&vol).unwrap();
        disk[2048 * 512..2048 * 512 + v.len()].copy_from_slice(&v);
        entry(&mut disk, 0, 0x0c, 2048, fat_len);
    }
    entry(&mut disk, 1, mbr::TYPE_EXO_LFS, lfs_at, lfs_len);
    entry(&mut disk, 2, 0x83, linux_at, 2048);
    entry(&mut disk, 3, 0x0b, junk_at, 2048);
    let mut rng = Rng::from_state(3);
    let junk = rng.bytes(2048 * 512);
    disk[junk_at as usize * 512..].copy_from_slice(&junk);
    std::fs::write(&img, &disk).unwrap();
    let opts = FormatOptions { segment_bytes: 64 * 1024, ..Default::default() };
    let part = Partition::new(open_image(&img), u64::from(lfs_at), u64::from(lfs_len));
    LfsFs::format(part, opts, || 0).unwrap().unmount().unwrap();

    let table: Vec<mbr::Partition> =
        mbr::parse(&disk[..512], Some(u64::from(total))).unwrap().into_iter().flatten().collect();
    let mut vfs = Vfs::new();
    // An app that links only the LFS mounts only the LFS.
    let only_log = mount_partitions(&mut vfs, &table, || open_image(&img), || 0, &[exo_logfs::backend()]);
    assert_eq!(only_log, vec![(1, String::from("/log"), Ok("lfs"))]);
    assert_eq!(vfs.mounts().collect::<Vec<_>>(), vec![("/log", "lfs")]);
    vfs.unmount("/log").unwrap();
    let got = mount_partitions(&mut vfs, &table, || open_image(&img), || 0, &both());
    let mut want = vec![];
    if fat {
        want.push((0u8, String::from("/fat"), Ok("fat32")));
    }
    want.push((1, String::from("/log"), Ok("lfs")));
    want.push((3, String::from(if fat { "/fat1" } else { "/fat" }), Err(Error::Corrupt)));
    assert_eq!(got, want);
    vfs.write_file("/log/hello", b"on the log").unwrap();
    if fat {
        vfs.copy("/log/hello", "/fat/hello.txt").unwrap();
        assert_eq!(vfs.read_to_vec("/fat/HELLO.TXT").unwrap(), b"on the log");
    }
    vfs.sync().unwrap();
    // Nothing outside the mounted partitions was written.
    let after = std::fs::read(&img).unwrap();
    assert!(after[linux_at as usize * 512..]
        .iter()
        .zip(&disk[linux_at as usize * 512..])
        .all(|(a, b)| a == b));
    assert_eq!(after[..512], disk[..512]);
    let _ = std::fs::remove_dir_all(&dir);
}
