//! What the FAT libOS writes is read back by `mtools` and passes `fsck.vfat -n` on the host.
// An integration test sees every dependency of its package; the library target is the
// one that must use them all (see `[workspace.lints]` in the root Cargo.toml).
#![allow(unused_crate_dependencies)]

mod common;

use common::*;
use exo_fat::{FatFs, FatOptions};
use exo_libos::fs::{Error, FileKind, FileSystem, OpenFlags, Partition};
use std::collections::BTreeMap;

type Model = BTreeMap<String, Option<Vec<u8>>>; // path -> contents (None: a directory)

fn write_all(fs: &mut dyn FileSystem, path: &str, data: &[u8], chunk: usize) {
    let h = fs.create(path).unwrap_or_else(|e| panic!("create {path}: {e}"));
    let mut at = 0;
    for piece in data.chunks(chunk.max(1)) {
        assert_eq!(fs.write(h, at, piece).unwrap(), piece.len());
        at += piece.len() as u64;
    }
    fs.close(h).unwrap();
}

fn read_all(fs: &mut dyn FileSystem, path: &str) -> Vec<u8> {
    let h = fs.open(path, OpenFlags::READ).unwrap_or_else(|e| panic!("open {path}: {e}"));
    let size = fs.fstat(h).unwrap().size as usize;
    let mut v = vec![0u8; size];
    assert_eq!(fs.read(h, 0, &mut v).unwrap(), size, "{path}");
    fs.close(h).unwrap();
    v
}

/// Checks the file system holds exactly `model` (walking it from the root).
fn check_model(fs: &mut dyn FileSystem, model: &Model) {
    let mut seen = Model::new();
    let mut todo = vec![String::from("/")];
    while let Some(d) = todo.pop() {
        for e in fs.list_dir(&d).unwrap() {
            let p = if d == "/" { format!("/{}", e.name) } else { format!("{d}/{}", e.name) };
            match e.kind {
                FileKind::Dir => {
                    seen.insert(p.clone(), None);
                    todo.push(p);
                }
                FileKind::File => {
                    let data = read_all(fs, &p);
                    assert_eq!(e.size, data.len() as u64, "{p}");
                    seen.insert(p, Some(data));
                }
            }
        }
    }
    let names = |m: &Model| m.keys().cloned().collect::<Vec<_>>();
    assert_eq!(names(&seen), names(model));
    for (p, v) in model {
        assert!(seen[p] == *v, "{p} differs");
    }
}

fn exercise(fs: &mut dyn FileSystem, model: &mut Model, rng: &mut Rng) {
    let put = |fs: &mut dyn FileSystem, m: &mut Model, p: &str, d: Vec<u8>, chunk: usize| {
        write_all(fs, p, &d, chunk);
        m.insert(p.to_string(), Some(d));
    };
    fs.mkdir("/dir").unwrap();
    fs.mkdir("/dir/sub").unwrap();
    fs.mkdir("/dir2").unwrap();
    for d in ["/dir", "/dir/sub", "/dir2"] {
        model.insert(d.into(), None);
    }
    put(fs, model, "/notes.txt", rng.bytes(1234), 100);
    put(fs, model, "/dir/DATA.BIN", rng.bytes(1 << 20), 7919);
    put(fs, model, "/dir/sub/e.txt", Vec::new(), 1);
    put(fs, model, "/dir/sub/one.txt", rng.bytes(512), 512);
    put(fs, model, "/a.txt", b"aaaa".to_vec(), 3);
    put(fs, model, "/b.txt", b"bbbbbbbb".to_vec(), 3);
    for size in [1usize, 511, 513, 4096, 70_000] {
        put(fs, model, &format!("/dir2/s{size}.dat"), rng.bytes(size), 4000);
    }

    // Appending, overwriting inside, writing past the end.
    let h = fs.open("/notes.txt", OpenFlags::WRITE | OpenFlags::APPEND).unwrap();
    let extra = rng.bytes(3000);
    for c in extra.chunks(1000) {
        fs.write(h, 0, c).unwrap();
    }
    fs.close(h).unwrap();
    model.get_mut("/notes.txt").unwrap().as_mut().unwrap().extend_from_slice(&extra);
    let h = fs.open("/dir/DATA.BIN", OpenFlags::RW).unwrap();
    let patch = rng.bytes(5000);
    fs.write(h, 100_000, &patch).unwrap();
    fs.close(h).unwrap();
    model.get_mut("/dir/DATA.BIN").unwrap().as_mut().unwrap()[100_000..105_000].copy_from_slice(&patch);
    let h = fs.open("/hole.bin", OpenFlags::WRITE | OpenFlags::CREATE).unwrap();
    fs.write(h, 10_000, b"x").unwrap();
    fs.close(h).unwrap();
    let mut hole = vec![0u8; 10_001];
    hole[10_000] = b'x';
    model.insert("/hole.bin".into(), Some(hole));

    // Two handles on one file see each other's writes.
    let w = fs.open("/a.txt", OpenFlags::WRITE).unwrap();
    let r = fs.open("/a.txt", OpenFlags::READ).unwrap();
    fs.write(w, 4, b"AAAA").unwrap();
    let mut buf = [0u8; 16];
    assert_eq!(fs.read(r, 0, &mut buf).unwrap(), 8);
    assert_eq!(&buf[..8], b"aaaaAAAA");
    assert_eq!(fs.remove("/a.txt").unwrap_err(), Error::Busy);
    assert_eq!(fs.rename("/a.txt", "/c.txt").unwrap_err(), Error::Busy);
    assert_eq!(fs.write(r, 0, b"no").unwrap_err(), Error::BadHandle);
    fs.close(w).unwrap();
    fs.close(r).unwrap();
    model.insert("/a.txt".into(), Some(b"aaaaAAAA".to_vec()));

    // Truncating what the host wrote.
    let h = fs.open("/KEEP.TXT", OpenFlags::WRITE | OpenFlags::TRUNCATE).unwrap();
    assert_eq!(fs.fstat(h).unwrap().size, 0);
    fs.write(h, 0, b"kept, but new").unwrap();
    fs.close(h).unwrap();
    model.insert("/KEEP.TXT".into(), Some(b"kept, but new".to_vec()));

    // Renames: across directories (a file and a directory), in place, over a file, and of
    // a host file with a long name.
    let mv = |fs: &mut dyn FileSystem, m: &mut Model, from: &str, to: &str| {
        fs.rename(from, to).unwrap_or_else(|e| panic!("rename {from} {to}: {e}"));
        let moved: Vec<(String, Option<Vec<u8>>)> = m
            .iter()
            .filter(|(k, _)| *k == from || k.starts_with(&format!("{from}/")))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        for (k, v) in moved {
            m.remove(&k);
            m.insert(format!("{to}{}", &k[from.len()..]), v);
        }
    };
    mv(fs, model, "/notes.txt", "/dir/notes2.txt");
    mv(fs, model, "/dir/sub", "/moved");
    mv(fs, model, "/hole.bin", "/HOLE2.BIN");
    mv(fs, model, "/a.txt", "/b.txt");
    mv(fs, model, "/Old Long Name.txt", "/short.txt");
    mv(fs, model, "/olddir/Inner Long.txt", "/dir2/inner.txt");
    assert_eq!(fs.rename("/dir", "/dir/x/y").unwrap_err(), Error::NotFound);
    assert_eq!(fs.rename("/dir", "/dir/inside").unwrap_err(), Error::InvalidArgument);
    assert_eq!(fs.rename("/b.txt", "/dir").unwrap_err(), Error::IsDir);
    assert_eq!(fs.rename("/dir", "/b.txt").unwrap_err(), Error::NotDir);
    assert_eq!(fs.rename("/dir", "/dir2").unwrap_err(), Error::NotEmpty);

    // Removing: a host file with a long name, a file, an emptied host directory.
    for p in ["/Another Long One.dat", "/dir2/s1.dat"] {
        fs.remove(p).unwrap();
        model.remove(p);
    }
    assert_eq!(fs.remove("/olddir").unwrap(), ());
    model.remove("/olddir");
    assert_eq!(fs.remove("/dir").unwrap_err(), Error::NotEmpty);
    assert_eq!(fs.remove("/nothing").unwrap_err(), Error::NotFound);

    // Names with no 8.3 form, stored as long names: a space, a long base (two that would
    // share an alias), two dots, characters 8.3 has not, and 255 characters (20 long-name
    // slots and the alias: more than a cluster of the FAT32 volume's, so `/dir2` grows).
    let longest = format!("/dir2/{}lon.txt", "long".repeat(62));
    for (p, n) in [
        ("/a name.txt", 100),
        ("/muchtoolong.txt", 5000),
        ("/muchtoolong2.txt", 10),
        ("/x.tar.gz", 70),
        ("/semi;colon+plus=1,2.dat", 1),
        (&longest, 4097),
    ] {
        put(fs, model, p, rng.bytes(n), 999);
    }
    // A directory with a long name, and files in it (one with a long name too).
    fs.mkdir("/a long directory name").unwrap();
    model.insert("/a long directory name".into(), None);
    put(fs, model, "/a long directory name/in.txt", rng.bytes(300), 999);
    put(fs, model, "/a long directory name/also long.txt", rng.bytes(3), 999);
    // Renames to long names: in one directory (another name, then the same one in another
    // case), across directories (a file, and a directory with files: its `..` changes),
    // over a file with a long name (spelled the same, and in another case: the kept long
    // name is respelled), and the refusals.
    mv(fs, model, "/a name.txt", "/A Name, Renamed.txt");
    mv(fs, model, "/semi;colon+plus=1,2.dat", "/SEMI;colon+plus=1,2.dat");
    mv(fs, model, "/x.tar.gz", "/a long directory name/x.tar.gz");
    mv(fs, model, "/a long directory name/in.txt", "/In Long Form.txt");
    mv(fs, model, "/moved", "/a long directory name/a moved directory");
    mv(fs, model, "/muchtoolong2.txt", "/muchtoolong.txt");
    put(fs, model, "/Target Name.txt", rng.bytes(20), 999);
    mv(fs, model, "/HOLE2.BIN", "/target name.txt");
    model.remove("/Target Name.txt");
    assert_eq!(fs.rename("/In Long Form.txt", "/bad*name").unwrap_err(), Error::InvalidName);
    let too_long = format!("/{}", "x".repeat(256));
    assert_eq!(fs.rename("/In Long Form.txt", &too_long).unwrap_err(), Error::NameTooLong);
    assert_eq!(fs.rename("/In Long Form.txt", "/a long directory name").unwrap_err(), Error::IsDir);
    // Names FAT cannot hold, and other refusals.
    assert_eq!(fs.create("/bad*name").unwrap_err(), Error::InvalidName);
    assert_eq!(fs.create("/trailing.").unwrap_err(), Error::InvalidName);
    assert_eq!(fs.create(&format!("/{}", "x".repeat(256))).unwrap_err(), Error::NameTooLong);
    assert_eq!(fs.mkdir("/dir2").unwrap_err(), Error::Exists);
    assert_eq!(
        fs.open("/b.txt", OpenFlags::WRITE | OpenFlags::CREATE | OpenFlags::EXCLUSIVE).unwrap_err(),
        Error::Exists
    );
    assert_eq!(fs.open("/b.txt", OpenFlags::CREATE).unwrap_err(), Error::InvalidArgument);
}

fn round_trip(test: &str, fat: u32, spc: u32, kib: u32) {
    if !have_fat_tools(test) {
        return;
    }
    let dir = scratch(test);
    let img = dir.join("vol.img");
    let imgs = img.to_str().unwrap();
    mkfs(&img, kib, fat, spc);
    let mut rng = Rng::from_state(fat as u64 * 1000 + spc as u64);
    let host = dir.join("host");
    let mut model = Model::new();
    run("mmd", &["-i", imgs, "::/olddir"]);
    for (name, data) in [
        ("Old Long Name.txt", rng.bytes(2000)),
        ("KEEP.TXT", rng.bytes(700)),
        ("Another Long One.dat", rng.bytes(9000)),
        ("olddir/Inner Long.txt", rng.bytes(50)),
    ] {
        std::fs::write(&host, &data).unwrap();
        run("mcopy", &["-i", imgs, host.to_str().unwrap(), &format!("::/{name}")]);
        model.insert(format!("/{name}"), Some(data));
    }
    model.insert("/olddir".into(), None);

    // The volume in memory (a Vec), written back to the file for the host tools.
    let disk = std::fs::read(&img).unwrap();
    let sectors = disk.len() as u64 / 512;
    let mut fs = FatFs::mount(Partition::new(disk, 0, sectors), FatOptions::default()).unwrap();
    exercise(&mut fs, &mut model, &mut rng);
    check_model(&mut fs, &model);
    let free = fs.statfs().unwrap().free_bytes;
    let disk = fs.unmount().unwrap().into_inner();
    std::fs::write(&img, &disk).unwrap();

    fsck_clean(imgs);
    let listing = run("mdir", &["-i", imgs, "-/", "-b", "::"]);
    let mut host_names: Vec<String> =
        listing.lines().map(|l| l.trim_start_matches("::").trim_end_matches('/').to_string()).collect();
    host_names.sort();
    assert_eq!(host_names, model.keys().cloned().collect::<Vec<_>>());
    for (p, v) in &model {
        if let Some(data) = v {
            let out = dir.join("out");
            let _ = std::fs::remove_file(&out);
            run("mcopy", &["-n", "-i", imgs, &format!("::{p}"), out.to_str().unwrap()]);
            assert!(std::fs::read(&out).unwrap() == *data, "mtools reads {p} differently");
        }
    }
    // fsck's summary line: "N files, used/total clusters".
    let (_, out) = run_status("fsck.vfat", &["-n", imgs]);
    let summary = out.lines().find(|l| l.contains(" clusters")).unwrap().to_string();
    let counts = summary.rsplit(", ").next().unwrap().trim_end_matches(" clusters");
    let (used, total) = counts.split_once('/').unwrap();
    let cb = u64::from(spc) * 512;
    // statfs leaves out the one cluster the FAT libOS keeps free.
    assert_eq!(free, (total.parse::<u64>().unwrap() - used.parse::<u64>().unwrap() - 1) * cb, "{summary}");

    // Mounted again, read-only: everything is still there, nothing can change, and not a
    // byte of the volume is written.
    let disk = std::fs::read(&img).unwrap();
    let ro = FatOptions { read_only: true, ..FatOptions::default() };
    let mut fs = FatFs::mount(Partition::new(disk.clone(), 0, sectors), ro).unwrap();
    check_model(&mut fs, &model);
    assert_eq!(fs.open("/b.txt", OpenFlags::WRITE).unwrap_err(), Error::ReadOnly);
    assert_eq!(fs.create("/new.txt").unwrap_err(), Error::ReadOnly);
    assert_eq!(fs.mkdir("/newdir").unwrap_err(), Error::ReadOnly);
    assert_eq!(fs.remove("/b.txt").unwrap_err(), Error::ReadOnly);
    assert_eq!(fs.rename("/b.txt", "/c.txt").unwrap_err(), Error::ReadOnly);
    fs.sync().unwrap();
    assert!(fs.unmount().unwrap().into_inner() == disk);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn fat32_files_written_here_pass_fsck_and_mtools() {
    round_trip("fat32_files_written_here_pass_fsck_and_mtools", 32, 1, 40 * 1024);
}

#[test]
fn fat16_files_written_here_pass_fsck_and_mtools() {
    round_trip("fat16_files_written_here_pass_fsck_and_mtools", 16, 4, 16 * 1024);
}

fn fill_up(test: &str, fat: u32, spc: u32, kib: u32) {
    if !have_fat_tools(test) {
        return;
    }
    let dir = scratch(test);
    let img = dir.join("vol.img");
    let imgs = img.to_str().unwrap();
    mkfs(&img, kib, fat, spc);
    let disk = std::fs::read(&img).unwrap();
    let sectors = disk.len() as u64 / 512;
    let mut fs = FatFs::mount(Partition::new(disk, 0, sectors), FatOptions::default()).unwrap();
    let stats = fs.statfs().unwrap();
    let (free, cb) = (stats.free_bytes, u64::from(stats.block_size));
    // Large writes until one does not fit (each write is all or nothing), then one cluster
    // at a time until none does.
    let mut written = 0u64;
    let mut n = 0;
    for piece in [256 * 1024, cb as usize] {
        let chunk = vec![0x5au8; piece];
        let err = 'fill: loop {
            let h = fs.create(&format!("/f{n}.bin")).unwrap();
            n += 1;
            for i in 0..8u64 {
                match fs.write(h, i * piece as u64, &chunk) {
                    Ok(k) => written += k as u64,
                    Err(e) => {
                        fs.close(h).unwrap();
                        break 'fill e;
                    }
                }
            }
            fs.close(h).unwrap();
        };
        assert_eq!(err, Error::NoSpace);
    }
    // All but the clusters the root directory grew by went to file data.
    assert!(written <= free && written + 16 * cb >= free, "wrote {written} of {free}");
    assert_eq!(fs.statfs().unwrap().free_bytes, 0);
    assert_eq!(fs.mkdir("/more").unwrap_err(), Error::NoSpace);
    fs.remove("/f0.bin").unwrap();
    assert!(fs.statfs().unwrap().free_bytes >= 2 << 20);
    let disk = fs.unmount().unwrap().into_inner();
    std::fs::write(&img, &disk).unwrap();
    fsck_clean(imgs);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn fat16_full_volume_says_no_space_and_stays_consistent() {
    fill_up("fat16_full_volume_says_no_space_and_stays_consistent", 16, 4, 16 * 1024);
}

#[test]
fn fat32_full_volume_says_no_space_and_stays_consistent() {
    fill_up("fat32_full_volume_says_no_space_and_stays_consistent", 32, 1, 40 * 1024);
}

/// A file grown in large writes while the crate allocates (directories made) and the libOS
/// frees (files removed) between them: the FAT window the writes keep from one call to the
/// next must be read again after those, or a write hands out a cluster a directory took
/// (fsck then finds it cross-linked) or misses one a removal freed.
fn grow_between_others(test: &str, fat: u32, spc: u32, kib: u32) {
    if !have_fat_tools(test) {
        return;
    }
    let dir = scratch(test);
    let img = dir.join("vol.img");
    let imgs = img.to_str().unwrap();
    mkfs(&img, kib, fat, spc);
    let disk = std::fs::read(&img).unwrap();
    let sectors = disk.len() as u64 / 512;
    let mut fs = FatFs::mount(Partition::new(disk, 0, sectors), FatOptions::default()).unwrap();
    let mut rng = Rng::from_state(u64::from(fat) * 7 + 1);
    let mut model = Model::new();
    let big = rng.bytes(8 * 65536);
    let h = fs.create("/big.bin").unwrap();
    for (i, piece) in big.chunks(65536).enumerate() {
        assert_eq!(fs.write(h, (i * 65536) as u64, piece).unwrap(), piece.len());
        let d = format!("/d{i}");
        fs.mkdir(&d).unwrap();
        model.insert(d.clone(), None);
        let small = rng.bytes(3000);
        write_all(&mut fs, &format!("{d}/s.bin"), &small, 3000);
        model.insert(format!("{d}/s.bin"), Some(small));
        if i % 2 == 1 {
            let p = format!("/d{}/s.bin", i - 1);
            fs.remove(&p).unwrap();
            model.remove(&p);
        }
    }
    fs.close(h).unwrap();
    model.insert("/big.bin".into(), Some(big));
    check_model(&mut fs, &model);
    let disk = fs.unmount().unwrap().into_inner();
    std::fs::write(&img, &disk).unwrap();
    fsck_clean(imgs);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn fat32_file_grown_between_allocations_and_frees_stays_consistent() {
    grow_between_others("fat32_file_grown_between_allocations_and_frees", 32, 1, 40 * 1024);
}

#[test]
fn fat16_file_grown_between_allocations_and_frees_stays_consistent() {
    grow_between_others("fat16_file_grown_between_allocations_and_frees", 16, 4, 16 * 1024);
}
