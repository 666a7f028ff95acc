//! Hostile images: a seeded corrupter damages a populated image (random bytes, random
//! sectors, checkpoints and partial segments re-sealed with valid checksums around wild
//! values, truncation), then fsck, a read-only walk and a writable mount with a few
//! operations must all return — no panic, no hang, no runaway allocation.
mod common;
use common::*;
use exo_lfs::checkpoint::region_hash;
use exo_lfs::layout::Geometry;
use exo_lfs::summary::{parse_header, ps_hash};
use exo_lfs::{fsck, BlockDevice, Fs, Kind, MemDevice, MountOptions, SECTOR};

fn populated() -> Vec<u8> {
    let mut fs = fresh(4, 64);
    let mut r = Rng::new(5);
    fs.mkdir("/d").unwrap();
    fs.mkdir("/d/e").unwrap();
    for i in 0..40 {
        let p = if i % 3 == 0 { format!("/d/e/f{i}") } else { format!("/f{i}") };
        let h = fs.create(&p).unwrap();
        let len = r.below(9000) as usize;
        fs.write(h, 0, &r.bytes(len)).unwrap();
    }
    let h = fs.create("/d/sparse").unwrap();
    fs.write(h, 3_000_000, b"far away").unwrap();
    fs.write(h, 40_000, &r.bytes(5000)).unwrap();
    for i in (0..40).step_by(4) {
        let _ = fs.unlink(&format!("/f{i}"));
    }
    let dev = fs.unmount().unwrap();
    // More work after the checkpoint, so mount has something to roll forward.
    let mut fs = Fs::mount(dev, MountOptions::default()).unwrap();
    for i in 0..10 {
        let h = fs.create(&format!("/d/late{i}")).unwrap();
        fs.write(h, 0, &r.bytes(700)).unwrap();
        fs.sync().unwrap();
    }
    fs.rename("/d/e", "/moved").unwrap();
    fs.sync().unwrap();
    fs.into_device().data
}

/// Re-seals the newest valid checkpoint region after changing it.
fn reseal_cp(img: &mut [u8], geo: &Geometry, r: &mut Rng) {
    let region = r.below(2) as usize;
    let at = geo.cp_at[region] as usize * SECTOR;
    let len = geo.cp_sectors as usize * SECTOR;
    let reg = &mut img[at..at + len];
    for _ in 0..1 + r.below(4) {
        let off = match r.below(3) {
            0 => 16 + r.below(48) as usize,
            1 => SECTOR + r.below((len - SECTOR) as u64) as usize,
            _ => r.below(504) as usize,
        };
        reg[off] = r.next_u64() as u8;
    }
    let h = region_hash(reg, geo.fs_id);
    reg[504..512].copy_from_slice(&h.to_le_bytes());
}

/// Finds a partial segment in the log, damages its entries or payload and re-seals it.
fn reseal_ps(img: &mut [u8], geo: &Geometry, r: &mut Rng) {
    for _ in 0..200 {
        let seg = r.below(geo.nsegs as u64) as u32;
        let start = geo.seg_start(seg) as usize;
        let mut pos = 0usize;
        let mut candidates = Vec::new();
        while pos < geo.seg_sectors as usize {
            let at = (start + pos) * SECTOR;
            let Some(h) = parse_header(&img[at..at + SECTOR], geo.fs_id, geo.seg_sectors - pos as u32) else {
                break;
            };
            candidates.push((at, h.total as usize));
            pos += h.total as usize;
        }
        if candidates.is_empty() {
            continue;
        }
        let (at, total) = candidates[r.below(candidates.len() as u64) as usize];
        let ps = &mut img[at..at + total * SECTOR];
        for _ in 0..1 + r.below(6) {
            let off =
                if r.chance(50) { 64 + r.below(448) as usize } else { r.below(ps.len() as u64) as usize };
            if !(56..64).contains(&off) {
                ps[off] = r.next_u64() as u8;
            }
        }
        let h = ps_hash(ps, geo.fs_id);
        ps[56..64].copy_from_slice(&h.to_le_bytes());
        return;
    }
}

fn corrupt(base: &[u8], geo: &Geometry, r: &mut Rng) -> Vec<u8> {
    let mut img = base.to_vec();
    match r.below(6) {
        0 => {
            for _ in 0..1 + r.below(30) {
                let i = r.below(img.len() as u64) as usize;
                img[i] ^= 1 << r.below(8);
            }
        }
        1 => {
            for _ in 0..1 + r.below(4) {
                let s = r.below((img.len() / SECTOR) as u64) as usize;
                let junk = r.bytes(SECTOR);
                img[s * SECTOR..(s + 1) * SECTOR].copy_from_slice(&junk);
            }
        }
        2 => reseal_cp(&mut img, geo, r),
        3 | 4 => reseal_ps(&mut img, geo, r),
        _ => {
            let keep = r.below((img.len() / SECTOR) as u64) as usize * SECTOR;
            img.truncate(keep.max(SECTOR));
        }
    }
    img
}

/// Walks the tree without trusting it: bounded entries, bounded reads.
fn walk<D: BlockDevice>(fs: &mut Fs<D>) {
    let mut stack = vec!["/".to_string()];
    let mut budget = 2000;
    while let Some(dir) = stack.pop() {
        let Ok(entries) = fs.read_dir(&dir) else {
            continue;
        };
        for e in entries {
            budget -= 1;
            if budget == 0 {
                return;
            }
            let p = format!("{}/{}", dir.trim_end_matches('/'), String::from_utf8_lossy(&e.name));
            if e.kind == Kind::Dir {
                stack.push(p);
            } else if let Ok(h) = fs.open(&p) {
                let mut buf = vec![0u8; 64 * 1024];
                let _ = fs.read(h, 0, &mut buf);
                let _ = fs.read(h, 3_000_000, &mut buf);
                let _ = fs.stat(&p);
            }
        }
    }
}

#[test]
fn corrupted_images_are_refused_or_contained() {
    let base = populated();
    let geo = Geometry::decode(&base[..SECTOR], (base.len() / SECTOR) as u64).unwrap();
    assert!(fsck::check_device(&mut MemDevice { data: base.clone() }).is_clean());
    let mut r = Rng::new(0xf022);
    let (mut refused, mut flagged, mut clean) = (0, 0, 0);
    for _ in 0..250 * scale() {
        let img = corrupt(&base, &geo, &mut r);
        let report = fsck::check_device(&mut MemDevice { data: img.clone() });
        if report.is_clean() {
            clean += 1;
        } else {
            flagged += 1;
        }
        match Fs::mount(MemDevice { data: img.clone() }, MountOptions { read_only: true, clock: None }) {
            Ok(mut fs) => walk(&mut fs),
            Err(_) => refused += 1,
        }
        if let Ok(mut fs) = Fs::mount(MemDevice { data: img }, MountOptions::default()) {
            walk(&mut fs);
            let _ = fs.mkdir("/fuzz");
            if let Ok(h) = fs.create("/fuzz/x") {
                let _ = fs.write(h, 0, &[1u8; 5000]);
            }
            let _ = fs.unlink("/f1");
            let _ = fs.rename("/d", "/moved/d2");
            let _ = fs.sync();
            let _ = fs.clean();
            let _ = fs.check();
        }
    }
    println!("{flagged} flagged by fsck, {clean} judged clean, {refused} refused by mount");
    assert!(flagged > 50, "fsck flagged too few damaged images ({flagged})");
    assert!(refused > 10, "mount refused too few damaged images ({refused})");
}

/// Finds `pat` in the log, rewrites it with `f`, and re-seals the partial segment holding it,
/// so the damage passes every checksum.
fn patch_sealed(img: &mut [u8], geo: &Geometry, pat: &[u8], f: impl Fn(&mut [u8])) {
    let at = img.windows(pat.len()).rposition(|w| w == pat).expect("pattern in image");
    f(&mut img[at..at + pat.len()]);
    let mut s = at / SECTOR;
    loop {
        let room = (geo.seg_start(geo.seg_of(s as u64).unwrap()) + geo.seg_sectors as u64 - s as u64) as u32;
        if let Some(h) = parse_header(&img[s * SECTOR..(s + 1) * SECTOR], geo.fs_id, room) {
            if s + h.total as usize > at / SECTOR {
                let ps = &mut img[s * SECTOR..(s + h.total as usize) * SECTOR];
                let hash = ps_hash(ps, geo.fs_id);
                ps[56..64].copy_from_slice(&hash.to_le_bytes());
                return;
            }
        }
        s -= 1;
    }
}

#[test]
fn directory_cycle_with_valid_checksums_is_reported_and_contained() {
    let mut fs = fresh(4, 64);
    let a = fs.mkdir("/a").unwrap();
    fs.mkdir("/a/b").unwrap();
    let t = fs.mkdir("/a/b/cycle-target").unwrap();
    let dev = fs.unmount().unwrap();
    let mut img = dev.data;
    let geo = Geometry::decode(&img[..SECTOR], (img.len() / SECTOR) as u64).unwrap();
    // Point /a/b/cycle-target at /a: a -> b -> a -> ...
    let mut pat = t.ino.to_le_bytes().to_vec();
    pat.extend_from_slice(&[2, 12]);
    pat.extend_from_slice(b"cycle-target");
    patch_sealed(&mut img, &geo, &pat, |e| e[0..4].copy_from_slice(&a.ino.to_le_bytes()));
    let r = fsck::check_device(&mut MemDevice { data: img.clone() });
    assert!(!r.is_clean());
    assert!(r.errors.iter().any(|e| e.contains("reachable twice")), "{:#?}", r.errors);
    let mut fs = Fs::mount(MemDevice { data: img }, MountOptions::default()).unwrap();
    walk(&mut fs);
    // Walking round the cycle is bounded by the path length, not by the tree.
    let deep = format!("/a{}", "/b/cycle-target".repeat(250));
    assert_eq!(fs.stat(&deep).map(|s| s.ino), Ok(a.ino));
    let deeper = format!("/a{}", "/b/cycle-target".repeat(300));
    assert_eq!(fs.stat(&deeper), Err(exo_lfs::Error::NameTooLong));
    // Renaming /a into its own "child" must be refused, not loop.
    let _ = fs.rename("/a", "/a/b/cycle-target/new");
    let _ = fs.rmdir("/a/b/cycle-target");
    let _ = fs.sync();
}
