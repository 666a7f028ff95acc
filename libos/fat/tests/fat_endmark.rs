//! A new entry written into a directory's end-of-directory mark (the first slot whose
//! first byte is 0x00) must leave a new mark behind it. FAT readers stop at the mark, so
//! whatever follows it is never looked at: a directory cluster reused without zeroing, a
//! damaged volume, or another implementation's leftovers. If the slot after the one taken
//! is not already zero, those stale bytes become entries the moment the mark is gone: on
//! the image below, garbage that reads as a file with an impossible cluster made a later
//! mount's `list_dir("/")` and `stat` of existing files fail as `Corrupt`.
//!
//! The volumes are built by hand in memory (no host tools): the smallest FAT32 volume,
//! whose root holds `KEEP.TXT` (100 bytes), directory `SUB` (holding `MOVE.TXT`) and empty
//! files, then the end mark, then stale
//! slots (garbage, and empty-file entries) in the same sector, in the next sector of the
//! same cluster, or in the next cluster of the root's chain.
// An integration test sees every dependency of its package; the library target is the
// one that must use them all (see `[workspace.lints]` in the root Cargo.toml).
#![allow(unused_crate_dependencies)]

mod common;

use common::sparse::{file_slot, Sparse};
use exo_fat::{FatFs, FatOptions};
use exo_libos::fs::{FileSystem, OpenFlags, Partition};
use std::collections::BTreeSet;

/// Cluster holding `KEEP.TXT`'s bytes.
const KEEP_CLUSTER: u32 = 10;
/// Directory `SUB`'s cluster.
const SUB_CLUSTER: u32 = 11;

fn keep_bytes() -> Vec<u8> {
    (0..100u8).map(|i| i.wrapping_mul(7)).collect()
}

/// Where the stale bytes after the end mark lie.
#[derive(Clone, Copy, Debug)]
enum Stale {
    /// The same sector: the mark is slot 6 of the root's only cluster.
    SameSector,
    /// The next sector of the same cluster (2 sectors per cluster): the mark is slot 15.
    NextSector,
    /// The next cluster of the root's chain 2 → 3 (1 sector per cluster): the mark is the
    /// last slot of cluster 2.
    NextCluster,
}

/// The volume for `stale`, and the names listed in its root.
fn stale_root(stale: Stale) -> (Sparse, BTreeSet<String>) {
    const CLUSTERS: u64 = 66_000;
    const RESERVED: u64 = 32;
    let spc: u64 = if matches!(stale, Stale::NextSector) { 2 } else { 1 };
    let fat_size = ((CLUSTERS + 2) * 4).div_ceil(512);
    let data = RESERVED + 2 * fat_size;
    let total = data + CLUSTERS * spc;
    let mut v = Sparse { total, ..Default::default() };
    let b = v.sector(0);
    b[..11].copy_from_slice(b"\xeb\x58\x90MSWIN4.1");
    b[11..13].copy_from_slice(&512u16.to_le_bytes());
    b[13] = spc as u8;
    b[14..16].copy_from_slice(&(RESERVED as u16).to_le_bytes());
    b[16] = 2; // FAT copies
    b[21] = 0xf8;
    b[32..36].copy_from_slice(&(total as u32).to_le_bytes());
    b[36..40].copy_from_slice(&(fat_size as u32).to_le_bytes());
    b[44..48].copy_from_slice(&2u32.to_le_bytes()); // root cluster
    b[48..50].copy_from_slice(&1u16.to_le_bytes()); // FSInfo sector
    b[510] = 0x55;
    b[511] = 0xaa;
    let end = 0x0fff_ffffu32;
    let mut links =
        vec![(0, 0x0fff_fff8), (1, end), (KEEP_CLUSTER as usize, end), (SUB_CLUSTER as usize, end)];
    match stale {
        Stale::NextCluster => links.extend([(2, 3), (3, end)]),
        _ => links.push((2, end)),
    }
    for copy in 0..2 {
        let fat = v.sector(RESERVED + copy * fat_size);
        for &(c, x) in &links {
            fat[c * 4..c * 4 + 4].copy_from_slice(&x.to_le_bytes());
        }
    }
    let cluster_sector = |c: u64| data + (c - 2) * spc;
    v.sector(cluster_sector(u64::from(KEEP_CLUSTER)))[..100].copy_from_slice(&keep_bytes());
    // The root's slots as one run of bytes over its clusters' sectors.
    let root_sectors: Vec<u64> = match stale {
        Stale::SameSector => vec![cluster_sector(2)],
        Stale::NextSector => vec![cluster_sector(2), cluster_sector(2) + 1],
        Stale::NextCluster => vec![cluster_sector(2), cluster_sector(3)],
    };
    let mark = match stale {
        Stale::SameSector => 6,
        Stale::NextSector | Stale::NextCluster => 15,
    };
    let mut root = vec![0u8; root_sectors.len() * 512];
    let mut names = BTreeSet::new();
    root[..32].copy_from_slice(&file_slot(b"KEEP    TXT", KEEP_CLUSTER, 100));
    names.insert("KEEP.TXT".to_string());
    // A subdirectory holding `MOVE.TXT`, to move into the root.
    let mut sub = file_slot(b"SUB        ", SUB_CLUSTER, 0);
    sub[11] = 0x10;
    root[32..64].copy_from_slice(&sub);
    names.insert("SUB".to_string());
    let s = v.sector(cluster_sector(u64::from(SUB_CLUSTER)));
    let mut dot = file_slot(b".          ", SUB_CLUSTER, 0);
    dot[11] = 0x10;
    s[..32].copy_from_slice(&dot);
    let mut dotdot = file_slot(b"..         ", 0, 0);
    dotdot[11] = 0x10;
    s[32..64].copy_from_slice(&dotdot);
    s[64..96].copy_from_slice(&file_slot(b"MOVE    TXT", 0, 0));
    for i in 2..mark {
        let name = format!("F{i:02}     TXT");
        root[i * 32..i * 32 + 32].copy_from_slice(&file_slot(name.as_bytes().try_into().unwrap(), 0, 0));
        names.insert(format!("F{i:02}.TXT"));
    }
    // Slot `mark` stays zero: the end mark. After it, stale slots to the end of the root:
    // garbage (a "file" whose cluster is past the volume), and entries of empty files.
    for (k, slot) in root.chunks_exact_mut(32).enumerate().skip(mark + 1) {
        if k % 2 == 0 {
            slot.fill(0xa5);
        } else {
            let name = format!("G{:02}     TXT", k % 100);
            slot.copy_from_slice(&file_slot(name.as_bytes().try_into().unwrap(), 0, 0));
        }
    }
    for (s, bytes) in root_sectors.iter().zip(root.chunks_exact(512)) {
        v.sector(*s).copy_from_slice(bytes);
    }
    (v, names)
}

fn mount(v: Sparse) -> FatFs<Sparse> {
    let n = v.total;
    FatFs::mount(Partition::new(v, 0, n), FatOptions::default()).expect("mount")
}

fn remount(fs: FatFs<Sparse>) -> FatFs<Sparse> {
    mount(fs.unmount().expect("unmount").into_inner())
}

/// After a fresh mount: the root lists exactly `want`, `KEEP.TXT` reads whole, and every
/// other file listed stats (so none of the stale slots shows).
fn check_root(fs: &mut FatFs<Sparse>, want: &BTreeSet<String>, what: &str) {
    let listed: BTreeSet<String> = fs
        .list_dir("/")
        .unwrap_or_else(|e| panic!("{what}: list_dir: {e:?}"))
        .into_iter()
        .map(|e| e.name)
        .collect();
    assert_eq!(&listed, want, "{what}: the root's names");
    for name in want {
        fs.stat(&format!("/{name}")).unwrap_or_else(|e| panic!("{what}: stat {name}: {e:?}"));
    }
    let h = fs.open("/KEEP.TXT", OpenFlags::READ).expect("open KEEP.TXT");
    let mut buf = [0u8; 200];
    assert_eq!(fs.read(h, 0, &mut buf), Ok(100), "{what}: KEEP.TXT's size");
    assert_eq!(&buf[..100], &keep_bytes()[..], "{what}: KEEP.TXT's bytes");
    fs.close(h).unwrap();
}

/// Creates a file in the end mark's slot of `stale`'s root, then another in the new mark's.
fn create_in_the_end_mark(stale: Stale) {
    let what = format!("{stale:?}");
    let (v, mut want) = stale_root(stale);
    let mut fs = mount(v);
    // The files as built are all reachable, and nothing stale shows.
    check_root(&mut fs, &want, &format!("{what}, as built"));
    let h = fs.create("/NEW.TXT").expect("create in the end-mark slot");
    assert_eq!(fs.write(h, 0, b"new"), Ok(3));
    fs.close(h).unwrap();
    want.insert("NEW.TXT".to_string());
    check_root(&mut fs, &want, &format!("{what}, same mount"));
    let mut fs = remount(fs);
    check_root(&mut fs, &want, &format!("{what}, remounted"));
    let h = fs.open("/NEW.TXT", OpenFlags::READ).unwrap();
    let mut buf = [0u8; 8];
    assert_eq!(fs.read(h, 0, &mut buf), Ok(3));
    assert_eq!(&buf[..3], b"new");
    fs.close(h).unwrap();
    // A second file takes the new mark's slot: the same again.
    let h = fs.create("/TWO.TXT").expect("create in the new end mark's slot");
    fs.close(h).unwrap();
    want.insert("TWO.TXT".to_string());
    let mut fs = remount(fs);
    check_root(&mut fs, &want, &format!("{what}, second file, remounted"));
}

#[test]
fn a_file_created_in_the_end_mark_keeps_stale_bytes_later_in_its_sector_hidden() {
    create_in_the_end_mark(Stale::SameSector);
}

#[test]
fn a_file_created_in_the_end_mark_keeps_stale_bytes_in_the_next_sector_hidden() {
    create_in_the_end_mark(Stale::NextSector);
}

#[test]
fn a_file_created_in_the_end_mark_keeps_stale_bytes_in_the_next_cluster_hidden() {
    create_in_the_end_mark(Stale::NextCluster);
}

/// Makes a directory (the crate writes its entry) in the end mark's slot of `stale`'s root.
fn mkdir_in_the_end_mark(stale: Stale) {
    let what = format!("{stale:?}, mkdir");
    let (v, mut want) = stale_root(stale);
    let mut fs = mount(v);
    fs.mkdir("/NEWDIR").expect("mkdir in the end-mark slot");
    want.insert("NEWDIR".to_string());
    check_root(&mut fs, &want, &what);
    let mut fs = remount(fs);
    check_root(&mut fs, &want, &format!("{what}, remounted"));
    assert_eq!(fs.list_dir("/NEWDIR").map(|l| l.len()), Ok(0));
}

#[test]
fn a_directory_made_in_the_end_mark_keeps_stale_bytes_later_in_its_sector_hidden() {
    mkdir_in_the_end_mark(Stale::SameSector);
}

#[test]
fn a_directory_made_in_the_end_mark_keeps_stale_bytes_in_the_next_sector_hidden() {
    mkdir_in_the_end_mark(Stale::NextSector);
}

#[test]
fn a_directory_made_in_the_end_mark_keeps_stale_bytes_in_the_next_cluster_hidden() {
    mkdir_in_the_end_mark(Stale::NextCluster);
}

/// Moves `/SUB/MOVE.TXT` into the end mark's slot of `stale`'s root.
fn move_into_the_end_mark(stale: Stale) {
    let what = format!("{stale:?}, rename");
    let (v, mut want) = stale_root(stale);
    let mut fs = mount(v);
    fs.rename("/SUB/MOVE.TXT", "/MOVED.TXT").expect("rename into the end-mark slot");
    want.insert("MOVED.TXT".to_string());
    check_root(&mut fs, &want, &what);
    let mut fs = remount(fs);
    check_root(&mut fs, &want, &format!("{what}, remounted"));
    assert_eq!(fs.list_dir("/SUB").map(|l| l.len()), Ok(0));
}

#[test]
fn a_file_moved_into_the_end_mark_keeps_stale_bytes_later_in_its_sector_hidden() {
    move_into_the_end_mark(Stale::SameSector);
}

#[test]
fn a_file_moved_into_the_end_mark_keeps_stale_bytes_in_the_next_sector_hidden() {
    move_into_the_end_mark(Stale::NextSector);
}

#[test]
fn a_file_moved_into_the_end_mark_keeps_stale_bytes_in_the_next_cluster_hidden() {
    move_into_the_end_mark(Stale::NextCluster);
}
