//! A power cut during FAT writes, at every write the libOS makes. Before any repair, the
//! image shows the libOS's write order: in the first FAT no link points at a free cluster,
//! no entry's first cluster (in any directory) is free, no file's size runs past its chain,
//! a new directory starts with its `.` entry, and FSInfo's free count is "unknown" or the
//! FAT's. Then, after `fsck.vfat -a`, the volume is clean and a file synced before is whole.
//! For file writes, the file being written holds a prefix of what was written (its size
//! never runs ahead of its data); for directories the crate makes and grows over stale
//! bytes that read as entries, and for entries written into a directory's end mark with
//! stale entries past it, none of those bytes shows as an entry; for removes,
//! truncates, renames and directory moves, the whole namespace is as before some operation
//! or after the last (`cut_steps`, with the one exception FAT imposes on a move across
//! directories).
// An integration test sees every dependency of its package; the library target is the
// one that must use them all (see `[workspace.lints]` in the root Cargo.toml).
#![allow(unused_crate_dependencies)]

mod common;

use common::raw_fat::RawFat;
use common::*;
use exo_fat::{FatFs, FatOptions};
use exo_libos::fs::disk::{BlockDevice, IoError};
use exo_libos::fs::{FileKind, FileSystem, OpenFlags, Partition};
use std::cell::RefCell;
use std::collections::BTreeMap;
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
    repaired_in(1, k, total, disk, img)
}

/// [`repaired_after_cut`] with up to `passes` runs of `fsck.vfat -a` (the next only if the
/// last left the volume unclean).
fn repaired_in(
    passes: usize,
    k: usize,
    total: usize,
    disk: &RefCell<Vec<u8>>,
    img: &Path,
) -> Rc<RefCell<Vec<u8>>> {
    let faults = RawFat::parse(&disk.borrow()).order_faults();
    assert!(
        faults.is_empty(),
        "cut at write {k} of {total}: the image before fsck shows writes out of order:\n{}",
        faults.join("\n")
    );
    std::fs::write(img, &*disk.borrow()).unwrap();
    let imgs = img.to_str().unwrap();
    for _ in 0..passes {
        run_status("fsck.vfat", &["-a", imgs]);
        if run_status("fsck.vfat", &["-n", imgs]).0 {
            break;
        }
    }
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

/// The namespace as the libOS shows it after a repair: every path below the root, a
/// directory's with a `/` at the end and no bytes, a file's with its bytes.
type Tree = BTreeMap<String, Vec<u8>>;

fn tree(fs: &mut FatFs<Cut>) -> Tree {
    let mut out = Tree::new();
    let mut dirs = vec![String::new()];
    while let Some(d) = dirs.pop() {
        let list = fs.list_dir(if d.is_empty() { "/" } else { &d }).unwrap();
        for e in list {
            let p = format!("{d}/{}", e.name);
            if e.kind == FileKind::Dir {
                out.insert(format!("{p}/"), Vec::new());
                dirs.push(p);
            } else {
                let h = fs.open(&p, OpenFlags::READ).unwrap();
                let mut v = vec![0u8; fs.fstat(h).unwrap().size as usize];
                assert_eq!(fs.read(h, 0, &mut v).unwrap(), v.len(), "{p}");
                fs.close(h).unwrap();
                out.insert(p, v);
            }
        }
    }
    out
}

/// How `got` differs from `want`, one line a path.
fn tree_diff(want: &Tree, got: &Tree) -> String {
    let mut lines = Vec::new();
    for (p, v) in want {
        match got.get(p) {
            None => lines.push(format!("  {p}: missing")),
            Some(g) if g != v => lines.push(format!("  {p}: {} bytes, not its {} bytes", g.len(), v.len())),
            _ => {}
        }
    }
    for (p, g) in got {
        if !want.contains_key(p) {
            lines.push(format!("  {p}: there ({} bytes), and should not be", g.len()));
        }
    }
    lines.join("\n")
}

/// The volumes of the namespace tests: one sector a cluster, so a chain of a few hundred
/// KiB spans FAT sectors on both.
#[derive(Clone, Copy)]
struct Vol {
    fat: u32,
    spc: u32,
    kib: u32,
}

const FAT16: Vol = Vol { fat: 16, spc: 1, kib: 16 * 1024 };
const FAT32: Vol = Vol { fat: 32, spc: 1, kib: 40 * 1024 };

/// One step of a namespace test.
struct Step {
    what: &'static str,
    /// A move from one directory to another (see [`cut_steps`]).
    across: bool,
    run: fn(&mut FatFs<Cut>) -> exo_libos::fs::Result<()>,
}

const fn step(what: &'static str, run: fn(&mut FatFs<Cut>) -> exo_libos::fs::Result<()>) -> Step {
    Step { what, across: false, run }
}

const fn across(what: &'static str, run: fn(&mut FatFs<Cut>) -> exo_libos::fs::Result<()>) -> Step {
    Step { what, across: true, run }
}

/// A power cut at every write call of `steps` (namespace operations, one after the other,
/// then a sync) on a volume that `setup` filled through the libOS and `host` then changed
/// with mtools (given the image's path). After the cut, the raw image passes
/// `order_faults` and has no lost cluster but those a step frees or takes into use (a
/// file's own clusters lost would be data without a name), and after `fsck.vfat -a` the whole namespace, names
/// and bytes, is exactly what it was before some step or after the last: every file the
/// steps leave alone is whole, and the one a step works on is as before it or as after
/// it, under one name. `check` looks at the raw image of the uncut run.
///
/// Save at one write of each move `across` directories. FAT cannot change two directories
/// at once: the new entry goes first, and a cut before the old one is gone leaves two names
/// for one chain (the other order would leave the chain with no name, and
/// `fsck.vfat -a` would gather it into `FSCKnnnn.REC` files, a directory's contents among
/// them). `fsck.vfat -a` never drops either name: it cuts the one it reaches second to no
/// clusters, leaving an empty file, or, for a directory, an entry at cluster 0 that its next
/// run deletes (and a third removes that entry's long-name slots, which the second leaves
/// orphaned). So where the raw image shows one chain under two names (never more), three
/// runs are allowed, and the namespace must be what [`mid_move`] says of one such step:
/// the rest whole, the moved bytes whole under one of the names, the other name at most an
/// empty file (over an existing file, the replaced bytes are gone). That window must come
/// exactly once per such step: a second one (the new entry first written empty, or the
/// replaced entry removed first, say) fails.
fn cut_steps(
    test: &str,
    vol: Vol,
    setup: fn(&mut FatFs<Cut>),
    host: fn(&Path, &Path),
    steps: &[Step],
    check: fn(&RawFat),
) {
    if !have_fat_tools(test) {
        return;
    }
    let dir = scratch(test);
    let img = dir.join("vol.img");
    let imgs = img.to_str().unwrap();
    mkfs(&img, vol.kib, vol.fat, vol.spc);
    let disk = std::fs::read(&img).unwrap();
    let sectors = disk.len() as u64 / 512;
    let dev = |disk: &Rc<RefCell<Vec<u8>>>, left| {
        Partition::new(Cut { disk: disk.clone(), left, writes: 0 }, 0, sectors)
    };
    let disk = Rc::new(RefCell::new(disk));
    let mut fs = FatFs::mount(dev(&disk, None), FatOptions::default()).unwrap();
    setup(&mut fs);
    fs.unmount().unwrap();
    std::fs::write(&img, &*disk.borrow()).unwrap();
    host(&img, &dir);
    fsck_clean(imgs);
    let base = std::fs::read(&img).unwrap();

    // The states the namespace may be found in (before each step, and after the last), and
    // the clusters some step frees or takes into use: the only ones a cut may leave lost
    // (freed after their entry is gone, or taken before anything links to them).
    let uncut = Rc::new(RefCell::new(base.clone()));
    let mut fs = FatFs::mount(dev(&uncut, None), FatOptions::default()).unwrap();
    let mut states = vec![tree(&mut fs)];
    let mut changed = Vec::new();
    for st in steps {
        let before = uncut.borrow().clone();
        (st.run)(&mut fs).unwrap_or_else(|e| panic!("{}: {e:?}", st.what));
        let (b, a) = (RawFat::parse(&before), uncut.borrow().clone());
        let after = RawFat::parse(&a);
        changed.extend(
            (2..).take_while(|&c| b.valid(c)).filter(|&c| (b.entry(c) == 0) != (after.entry(c) == 0)),
        );
        let t = tree(&mut fs);
        assert!(&t != states.last().unwrap(), "{} changed nothing", st.what);
        states.push(t);
    }
    fs.sync().unwrap();
    let all = fs.unmount().unwrap().into_inner();
    let total = all.writes;
    {
        let b = all.disk.borrow();
        let raw = RawFat::parse(&b);
        assert_eq!(raw.order_faults(), Vec::<String>::new(), "uncut run");
        check(&raw);
    }
    std::fs::write(&img, &*all.disk.borrow()).unwrap();
    fsck_clean(imgs);

    let mut two_names = 0;
    for k in 1..=total {
        let disk = Rc::new(RefCell::new(base.clone()));
        let mut fs = FatFs::mount(dev(&disk, Some(k)), FatOptions::default()).unwrap();
        let _ = steps.iter().try_for_each(|st| (st.run)(&mut fs)).and_then(|()| fs.sync());
        drop(fs);
        let (stray, shared) = {
            let b = disk.borrow();
            let raw = RawFat::parse(&b);
            (
                raw.lost().into_iter().filter(|c| !changed.contains(c)).collect::<Vec<u32>>(),
                raw.shared_starts(),
            )
        };
        assert!(
            stray.is_empty(),
            "cut at write {k} of {total}: lost, and no step frees or takes them: {stray:?}"
        );
        assert!(shared.len() <= 1, "cut at write {k} of {total}: chains with two names: {shared:?}");
        two_names += shared.len();
        let disk = repaired_in(1 + 2 * shared.len(), k, total, &disk, &img);
        let mut fs = FatFs::mount(dev(&disk, None), FatOptions::default()).unwrap();
        // What `fsck.vfat -a` gathered from lost clusters (of a file or directory being
        // removed or truncated, as just checked) is no name of the namespace.
        let mut t = tree(&mut fs);
        t.retain(|p, _| !(p.starts_with("/FSCK") && p.ends_with(".REC")));
        if !shared.is_empty() {
            let mid = states.windows(2).zip(steps).any(|(w, st)| st.across && mid_move(&w[0], &w[1], &t));
            assert!(
                mid,
                "cut at write {k} of {total}: two names for one chain, and the namespace is not \
                 that of a move across directories cut between its two writes:\n{t:?}"
            );
            continue;
        }
        if !states.contains(&t) {
            let (i, near) =
                states.iter().enumerate().min_by_key(|(_, s)| tree_diff(s, &t).lines().count()).unwrap();
            let when = match steps.get(i) {
                Some(st) => format!("before step {} ({})", i + 1, st.what),
                None => String::from("after the last step"),
            };
            panic!(
                "cut at write {k} of {total}: the namespace is no step's state; nearest, {when}:\n{}",
                tree_diff(near, &t)
            );
        }
    }
    let moves = steps.iter().filter(|st| st.across).count();
    assert_eq!(two_names, moves, "cuts that left two names for one chain, and moves across directories");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Whether `t` is what a move across directories from namespace `before` to `after`, cut
/// between its two entry writes, leaves after `fsck.vfat -a` (see [`cut_steps`]): what the
/// move leaves alone whole, nothing but names of `before` and `after`, each as in one of
/// them but for at most one emptied file, and the bytes the move puts anywhere still there
/// under some name.
fn mid_move(before: &Tree, after: &Tree, t: &Tree) -> bool {
    let untouched =
        before.iter().filter(|(p, v)| after.get(*p) == Some(*v)).all(|(p, v)| t.get(p) == Some(v));
    let known = t
        .iter()
        .filter(|(p, v)| before.get(*p) != Some(*v) && after.get(*p) != Some(*v))
        .all(|(p, v)| v.is_empty() && (before.contains_key(p) || after.contains_key(p)));
    let emptied = t.iter().filter(|(p, v)| before.get(*p) != Some(*v) && after.get(*p) != Some(*v)).count();
    let moved =
        after.iter().filter(|(p, v)| before.get(*p) != Some(*v)).all(|(_, v)| t.values().any(|x| x == v));
    untouched && known && emptied <= 1 && moved
}

/// Bytes of file `name`, `len` long (the same at every call).
fn bytes_of(name: &str, len: usize) -> Vec<u8> {
    Rng::from_state(name.bytes().fold(7u64, |h, b| h.wrapping_mul(31).wrapping_add(u64::from(b)))).bytes(len)
}

fn put(fs: &mut FatFs<Cut>, path: &str, len: usize) {
    let h = fs.create(path).unwrap();
    fs.write(h, 0, &bytes_of(path, len)).unwrap();
    fs.close(h).unwrap();
}

/// The volume of the namespace tests: in the root, a file of 200 KiB (its chain spans
/// several FAT sectors, so freeing it takes several writes), small files (`x.txt` and
/// `y.txt` in one sector), a directory with a file, a directory whose one cluster is full,
/// and small files up to slot 13 (slot 0 is the volume label), so that the long name
/// `host_long_name` adds next has its two long-name slots at 14 and 15, at the end of the
/// directory's first sector, and its 8.3 entry at 16, in the next one.
fn names_setup(fs: &mut FatFs<Cut>) {
    put(fs, "/keep.txt", 5000);
    put(fs, "/big.bin", 200 * 1024);
    put(fs, "/a.txt", 700);
    put(fs, "/x.txt", 1500);
    put(fs, "/y.txt", 2500);
    fs.mkdir("/sub").unwrap();
    put(fs, "/sub/f.txt", 3000);
    // `.`, `..` and 14 files.
    fs.mkdir("/full").unwrap();
    for i in 0..14 {
        put(fs, &format!("/full/f{i}.txt"), 10 + i);
    }
    for i in fs.list_dir("/").unwrap().len() + 1..14 {
        put(fs, &format!("/pad{i}.txt"), 100 + i);
    }
}

/// Copies `/long-file-name.text` in with mtools (a long name the libOS did not write), and
/// checks that its slots straddle the directory's first sector boundary.
fn host_long_name(img: &Path, dir: &Path) {
    let host = dir.join("long");
    std::fs::write(&host, bytes_of("/long-file-name.text", 4000)).unwrap();
    let imgs = img.to_str().unwrap();
    run("mcopy", &["-i", imgs, host.to_str().unwrap(), "::/long-file-name.text"]);
    let b = std::fs::read(img).unwrap();
    let raw = RawFat::parse(&b);
    let e = raw.root().into_iter().find(|e| e.name.starts_with("LONG-F")).expect("the long name's 8.3 entry");
    assert_eq!(e.slot, 16, "the long name's 8.3 entry begins the second sector of the root");
    let slot = |name: &str| raw.root().into_iter().find(|e| e.name == name).expect(name).slot;
    assert_eq!(slot("X       TXT") / 16, slot("Y       TXT") / 16, "x.txt and y.txt share a sector");
}

fn no_check(_: &RawFat) {}

/// The same `cut_steps` test on FAT16 and on FAT32, as two tests (their names given, the
/// scratch images' after `label`), both with the doc comment given first.
macro_rules! cut_steps_on_both {
    ($(#[$doc:meta])* $fat16:ident, $fat32:ident, $label:literal, $setup:expr, $host:expr, $steps:expr, $check:expr) => {
        $(#[$doc])*
        #[test]
        fn $fat16() {
            cut_steps(concat!("fat16_", $label), FAT16, $setup, $host, $steps, $check);
        }

        $(#[$doc])*
        #[test]
        fn $fat32() {
            cut_steps(concat!("fat32_", $label), FAT32, $setup, $host, $steps, $check);
        }
    };
}

const REMOVES: &[Step] = &[
    step("remove /big.bin", |fs| fs.remove("/big.bin")),
    step("remove /long-file-name.text", |fs| fs.remove("/long-file-name.text")),
    step("remove /sub/f.txt", |fs| fs.remove("/sub/f.txt")),
    step("remove /sub", |fs| fs.remove("/sub")),
];

cut_steps_on_both! {
    /// Removes, one after the other: a file whose chain spans FAT sectors (its entry must go
    /// before any of its clusters is freed), a file whose long name's slots lie in the sector
    /// before its 8.3 entry (the entry must go first, or the file shows under its 8.3 alias),
    /// a file in a directory, and that directory once empty.
    fat16_power_cut_during_removes_leaves_each_file_whole_or_gone,
    fat32_power_cut_during_removes_leaves_each_file_whole_or_gone,
    "power_cut_during_removes",
    names_setup, host_long_name, REMOVES, no_check
}

fn truncate(fs: &mut FatFs<Cut>, path: &str) -> exo_libos::fs::Result<()> {
    let h = fs.open(path, OpenFlags::WRITE | OpenFlags::TRUNCATE)?;
    fs.close(h)
}

const TRUNCATES: &[Step] = &[
    step("truncate /big.bin", |fs| truncate(fs, "/big.bin")),
    step("truncate /long-file-name.text", |fs| truncate(fs, "/long-file-name.text")),
    step("truncate /sub/f.txt", |fs| truncate(fs, "/sub/f.txt")),
];

cut_steps_on_both! {
    /// Truncates to nothing (what the libOS's `TRUNCATE` does): the entry's cluster and size
    /// must be cleared before any cluster is freed, so a cut leaves the file whole or empty.
    fat16_power_cut_during_truncates_leaves_each_file_whole_or_empty,
    fat32_power_cut_during_truncates_leaves_each_file_whole_or_empty,
    "power_cut_during_truncates",
    names_setup, host_long_name, TRUNCATES, no_check
}

/// A file whose chain starts in a later FAT sector than the rest of it: 1 KiB written
/// after 300 KiB, then grown by 200 KiB when the only free clusters are those the 300 KiB
/// file gave back (a filler took all the others, and goes afterwards).
fn back_setup(fs: &mut FatFs<Cut>) {
    put(fs, "/keep.txt", 5000);
    put(fs, "/pad.bin", 300 * 1024);
    put(fs, "/back.bin", 1024);
    let free = fs.statfs().unwrap().free_bytes as usize;
    put(fs, "/filler.bin", free);
    fs.remove("/pad.bin").unwrap();
    let h = fs.open("/back.bin", OpenFlags::WRITE).unwrap();
    fs.write(h, 1024, &bytes_of("/back.bin+", 200 * 1024)).unwrap();
    fs.close(h).unwrap();
    fs.remove("/filler.bin").unwrap();
}

/// Checks that `/back.bin`'s chain starts in a later FAT sector than it ends in.
fn back_host(img: &Path, _: &Path) {
    let b = std::fs::read(img).unwrap();
    let raw = RawFat::parse(&b);
    let e = raw.root().into_iter().find(|e| e.name == "BACK    BIN").expect("BACK.BIN");
    let chain = raw.chain(e.cluster);
    assert_eq!(chain.len() as u64, (201 * 1024u64).div_ceil(raw.cluster_bytes()));
    let (head, end) = (chain[0], chain[chain.len() - 1]);
    assert!(raw.fat_sector(head) > raw.fat_sector(end), "a chain from cluster {head} to {end}");
}

const BACK: &[Step] = &[step("remove /back.bin", |fs| fs.remove("/back.bin"))];

cut_steps_on_both! {
    /// Removes a file whose chain runs from a later FAT sector back to earlier ones: its
    /// clusters must be freed from the head of the chain on, so that for no moment a cluster
    /// still in use (lost, once the entry is gone) links to one already free.
    fat16_power_cut_while_a_chain_running_back_is_freed_leaves_no_link_to_a_free_cluster,
    fat32_power_cut_while_a_chain_running_back_is_freed_leaves_no_link_to_a_free_cluster,
    "power_cut_back_chain",
    back_setup, back_host, BACK, no_check
}

/// A file whose chain leaves a FAT sector and comes back to it: `[spare, E-2, E, E-4]`,
/// where E is the first cluster of the second FAT sector's (FAT sectors `[last, 0, 1, 0]`).
/// A fresh volume hands clusters out in order from 2, so the next one is 2 plus the
/// clusters in use (`statfs` holds back the one free cluster never handed out). Each
/// cluster the chain gains is found from the allocator's hint, just after the cluster it
/// handed out last, once a removal has made two free (it keeps one back): the file there,
/// and one it finds after (the volume's last cluster, then the one the next step takes).
fn come_back_setup(fs: &mut FatFs<Cut>) {
    let st = fs.statfs().unwrap();
    let (cluster, e) = (st.block_size as u64, if st.fs_type == "fat32" { 128 } else { 256 });
    let one = cluster as usize;
    put(fs, "/keep.txt", 5000);
    let s = fs.statfs().unwrap();
    let next = 2 + (s.total_bytes - s.free_bytes) / cluster - 1;
    put(fs, "/lead.bin", ((e - 4 - next) * cluster) as usize);
    for name in ["/c.bin", "/y.bin", "/a.bin", "/x.bin", "/b.bin"] {
        put(fs, name, one); // E-4 .. E
    }
    let free = fs.statfs().unwrap().free_bytes as usize;
    put(fs, "/filler.bin", free); // all but the volume's last cluster
    for (i, gone) in ["/a.bin", "/b.bin", "/y.bin", "/c.bin"].into_iter().enumerate() {
        fs.remove(gone).unwrap();
        let h = fs.open("/back.bin", OpenFlags::WRITE | OpenFlags::CREATE).unwrap();
        fs.write(h, (i * one) as u64, &bytes_of("/back.bin+", 4 * one)[i * one..(i + 1) * one]).unwrap();
        fs.close(h).unwrap();
    }
    for gone in ["/filler.bin", "/lead.bin", "/x.bin"] {
        fs.remove(gone).unwrap();
    }
}

/// Checks that `/back.bin`'s chain runs through FAT sectors `[last, 0, 1, 0]`.
fn come_back_host(img: &Path, _: &Path) {
    let b = std::fs::read(img).unwrap();
    let raw = RawFat::parse(&b);
    let e = raw.root().into_iter().find(|e| e.name == "BACK    BIN").expect("BACK.BIN");
    let chain = raw.chain(e.cluster);
    let s: Vec<u32> = chain.iter().map(|&c| raw.fat_sector(c)).collect();
    assert!(s.len() == 4 && s[1..] == [0, 1, 0] && s[0] > 1, "chain {chain:?}, FAT sectors {s:?}");
}

cut_steps_on_both! {
    /// Removes a file whose chain comes back to a FAT sector it left: the sector must be
    /// written once for each run of the chain in it, in the chain's order, or for a moment
    /// a cluster still in use links to one already free.
    fat16_power_cut_while_a_chain_that_comes_back_to_a_sector_is_freed_leaves_no_link_to_a_free_cluster,
    fat32_power_cut_while_a_chain_that_comes_back_to_a_sector_is_freed_leaves_no_link_to_a_free_cluster,
    "power_cut_come_back_chain",
    come_back_setup, come_back_host, BACK, no_check
}

const RENAMES: &[Step] = &[
    step("rename /a.txt to /b.txt", |fs| fs.rename("/a.txt", "/b.txt")),
    step("rename /long-file-name.text to /short.txt", |fs| fs.rename("/long-file-name.text", "/short.txt")),
    across("rename /b.txt to /sub/b.txt", |fs| fs.rename("/b.txt", "/sub/b.txt")),
    across("rename /sub/f.txt to /f.txt", |fs| fs.rename("/sub/f.txt", "/f.txt")),
    step("rename /x.txt over /y.txt", |fs| fs.rename("/x.txt", "/y.txt")),
    across("rename /y.txt over /sub/b.txt", |fs| fs.rename("/y.txt", "/sub/b.txt")),
    across("rename /sub/b.txt to /full/b.txt", |fs| fs.rename("/sub/b.txt", "/full/b.txt")),
];

/// `/full` grew by a cluster to take `b.txt`.
fn full_grew(raw: &RawFat) {
    let full = raw.root().into_iter().find(|e| e.name == "FULL       ").expect("FULL").cluster;
    assert_eq!(raw.chain(full).len(), 2, "/full's clusters");
    assert!(raw.dir(full).iter().any(|e| e.name == "B       TXT"), "/full/b.txt");
}

cut_steps_on_both! {
    /// Renames within a directory (an 8.3 name, and a long name whose slots straddle a sector
    /// boundary), across directories both ways, over an existing file in the same directory
    /// (the moved entry takes the replaced one's slot, and the old slot is freed in the same
    /// write: both lie in one sector) and in another, and into a full directory (grown first,
    /// with no entry showing): after a cut the file is under exactly one of its names, whole,
    /// and a replaced file is whole until it is replaced (save the one write of a move across
    /// directories, see `cut_steps`).
    fat16_power_cut_during_renames_leaves_each_file_whole_under_one_name,
    fat32_power_cut_during_renames_leaves_each_file_whole_under_one_name,
    "power_cut_during_renames",
    names_setup, host_long_name, RENAMES, full_grew
}

/// Two directories, a directory with a file in the first, and a file beside.
fn dirs_setup(fs: &mut FatFs<Cut>) {
    put(fs, "/keep.txt", 5000);
    fs.mkdir("/d1").unwrap();
    fs.mkdir("/d1/d2").unwrap();
    put(fs, "/d1/d2/in.txt", 3000);
    fs.mkdir("/d3").unwrap();
}

fn no_host(_: &Path, _: &Path) {}

const DIR_MOVES: &[Step] = &[
    across("rename /d1/d2 to /d3/d2", |fs| fs.rename("/d1/d2", "/d3/d2")),
    step("rename /d3 to /d4", |fs| fs.rename("/d3", "/d4")),
    across("rename /d4/d2 to /d2", |fs| fs.rename("/d4/d2", "/d2")),
];

/// The moved directory's `..` names its new parent (the root: cluster 0).
fn dotdot_moved(raw: &RawFat) {
    let d2 = raw.root().into_iter().find(|e| e.name == "D2         ").expect("D2 in the root");
    let dotdot = raw.dir(d2.cluster).into_iter().find(|e| e.name == "..         ").expect("..");
    assert_eq!(dotdot.cluster, 0, "/d2/..");
}

cut_steps_on_both! {
    /// Moves a directory holding a file into another directory (its `..` entry changes too),
    /// renames that directory in place, and moves the first back to the root.
    fat16_power_cut_while_a_directory_moves_leaves_it_whole_under_one_name,
    fat32_power_cut_while_a_directory_moves_leaves_it_whole_under_one_name,
    "power_cut_dir_moves",
    dirs_setup, no_host, DIR_MOVES, dotdot_moved
}

/// A file to move, and directory `/d` grown to two clusters by 15 empty files (at one
/// sector a cluster: `.`, `..` and 14 fill the first, the 15th starts the second).
fn stale_setup(fs: &mut FatFs<Cut>) {
    put(fs, "/keep.txt", 5000);
    put(fs, "/move.txt", 700);
    fs.mkdir("/d").unwrap();
    for i in 0..15 {
        let h = fs.create(&format!("/d/f{i}.txt")).unwrap();
        fs.close(h).unwrap();
    }
}

/// Makes `/d`'s last slot in its first cluster the end mark, and fills its second cluster
/// with stale entries past that mark: empty files `STALEnnn.TXT`. The libOS never shows
/// them while the mark is in front; `fsck.vfat` (dosfstools 4.2) reads on past the mark
/// and takes them for files, so they are ones it finds clean (stale entries claiming
/// another file's clusters would not pass the check of the image before the steps).
fn stale_host(img: &Path, _: &Path) {
    let mut b = std::fs::read(img).unwrap();
    let at: Vec<usize> = {
        let raw = RawFat::parse(&b);
        let d = raw.root().into_iter().find(|e| e.name == "D          ").expect("D").cluster;
        let chain = raw.chain(d);
        assert_eq!(chain.len(), 2, "/d's clusters");
        chain.iter().map(|&c| raw.cluster_sector(c) * 512).collect()
    };
    b[at[0] + 15 * 32..at[0] + 16 * 32].fill(0);
    for i in 0..16 {
        let e = &mut b[at[1] + i * 32..at[1] + i * 32 + 32];
        e.fill(0);
        e[..11].copy_from_slice(format!("STALE{i:03}TXT").as_bytes());
        e[11] = 0x20;
    }
    std::fs::write(img, &b).unwrap();
}

/// No stale entry shows in `/d` after the uncut run.
fn no_stale(raw: &RawFat) {
    let d = raw.root().into_iter().find(|e| e.name == "D          ").expect("D").cluster;
    let stale: Vec<String> =
        raw.dir(d).into_iter().map(|e| e.name).filter(|n| n.starts_with("STALE")).collect();
    assert!(stale.is_empty(), "/d shows stale entries: {stale:?}");
}

fn create(fs: &mut FatFs<Cut>, path: &str) -> exo_libos::fs::Result<()> {
    let h = fs.create(path)?;
    fs.close(h)
}

const STALE: &[Step] = &[
    step("create /d/new1.txt in the end mark, the last slot of the first cluster", |fs| {
        create(fs, "/d/new1.txt")
    }),
    step("create /d/new2.txt in the end mark, the first slot of the second", |fs| create(fs, "/d/new2.txt")),
    // Upper case: a lower-case name's case flag is set in a write of its own after the
    // crate's entry, and a cut between shows `SUB` (the same name to FAT, not to `tree`).
    step("mkdir /d/SUB in the end mark", |fs| fs.mkdir("/d/SUB")),
    across("rename /move.txt to /d/move.txt in the end mark", |fs| fs.rename("/move.txt", "/d/move.txt")),
];

cut_steps_on_both! {
    /// Entries written into a directory's end mark with stale entries after it (in the next
    /// cluster of its chain, then in the same sector): creates, a directory the crate makes
    /// and a move into it. The new end mark goes out before each entry, so no cut lets a stale
    /// entry show (the namespace would hold a `STALEnnn.TXT` no step made).
    fat16_power_cut_while_entries_take_the_end_mark_shows_no_stale_entry_past_it,
    fat32_power_cut_while_entries_take_the_end_mark_shows_no_stale_entry_past_it,
    "power_cut_stale_end",
    stale_setup, stale_host, STALE, no_stale
}

fn write_new(fs: &mut FatFs<Cut>, path: &str, len: usize) -> exo_libos::fs::Result<()> {
    let h = fs.open(path, OpenFlags::WRITE)?;
    fs.write(h, 0, &bytes_of(path, len))?;
    fs.close(h)
}

/// 255 characters, the longest name: 20 long-name slots and the alias.
fn longest() -> String {
    format!("/d/{}.txt", "n".repeat(251))
}

const LONG_NAMES: &[Step] = &[
    step("create /d/a long name, past the mark.txt (4 slots from the mark, 3 of them stale)", |fs| {
        create(fs, "/d/a long name, past the mark.txt")
    }),
    step("write /d/a long name, past the mark.txt", |fs| {
        write_new(fs, "/d/a long name, past the mark.txt", 3000)
    }),
    step("create a 255-character name in /d (21 slots: /d grows by a cluster of the libOS's)", |fs| {
        create(fs, &longest())
    }),
    step("write the 255-character name", |fs| write_new(fs, &longest(), 700)),
    step("mkdir /d/a directory, long named (its cluster before its entry)", |fs| {
        fs.mkdir("/d/a directory, long named")
    }),
    step("create /d/a directory, long named/in it.txt", |fs| {
        create(fs, "/d/a directory, long named/in it.txt")
    }),
];

cut_steps_on_both! {
    /// Files created with long names (no 8.3 form): a run of slots from the end mark over
    /// stale entries and across a cluster boundary, then a 255-character name for which the
    /// directory grows by a cluster the libOS links itself, then a directory with a long
    /// name (its cluster written and marked in the FAT before its entry) and a file in it. The run's slots past the mark and
    /// the one after it are zeroed before anything else, the long-name slots go before the
    /// 8.3 slot, and a grown cluster is zeroed before it is linked, so no cut shows a stale
    /// entry, a file under its alias, or half a name.
    fat16_power_cut_while_files_with_long_names_are_created_shows_each_whole_or_not_at_all,
    fat32_power_cut_while_files_with_long_names_are_created_shows_each_whole_or_not_at_all,
    "power_cut_long_names",
    stale_setup, stale_host, LONG_NAMES, no_stale
}

const LONG_RENAMES: &[Step] = &[
    step("rename /long-file-name.text to /another long name.text (its 8.3 slot's sector)", |fs| {
        fs.rename("/long-file-name.text", "/another long name.text")
    }),
    across("rename /a.txt to /a file, renamed.txt (no room in its sector)", |fs| {
        fs.rename("/a.txt", "/a file, renamed.txt")
    }),
    step("rename /another long name.text over /a file, renamed.txt (one sector)", |fs| {
        fs.rename("/another long name.text", "/a file, renamed.txt")
    }),
    across("rename /sub/f.txt to /f, moved up with a long name.txt", |fs| {
        fs.rename("/sub/f.txt", "/f, moved up with a long name.txt")
    }),
    across("rename /sub to /full/a sub directory, long named (/full grows)", |fs| {
        fs.rename("/sub", "/full/a sub directory, long named")
    }),
    step("rename /f, moved up with a long name.txt to /F, Moved Up With A Long Name.txt", |fs| {
        fs.rename("/f, moved up with a long name.txt", "/F, Moved Up With A Long Name.txt")
    }),
];

/// `/full` grew by a cluster to take the moved directory, whose `..` names `/full`.
fn full_took_sub(raw: &RawFat) {
    let full = raw.root().into_iter().find(|e| e.name == "FULL       ").expect("FULL").cluster;
    assert_eq!(raw.chain(full).len(), 2, "/full's clusters");
    let sub = raw.dir(full).into_iter().find(|e| e.name == "ASUBDI~1   ").expect("/full/ASUBDI~1");
    let dotdot = raw.dir(sub.cluster).into_iter().find(|e| e.name == "..         ").expect("..");
    assert_eq!(dotdot.cluster, full, "the moved directory's ..");
}

cut_steps_on_both! {
    /// Renames to long names: in one directory where the new run's 8.3 slot can share the old
    /// one's sector (one write puts the new name in and the old one out), where it cannot
    /// (the new entry first: one chain under two names for one write, as for a move across
    /// directories), over a file with a long name (its 8.3 slot takes the moved entry),
    /// across directories (a file, and a directory, into a full one that grows), and a long
    /// name respelled in another case. After a cut the file is under one of its names,
    /// whole, save that one write.
    fat16_power_cut_during_renames_to_long_names_leaves_each_file_whole_under_one_name,
    fat32_power_cut_during_renames_to_long_names_leaves_each_file_whole_under_one_name,
    "power_cut_long_renames",
    names_setup, host_long_name, LONG_RENAMES, full_took_sub
}
