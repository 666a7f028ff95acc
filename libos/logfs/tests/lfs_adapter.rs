//! The log-structured file system behind the common interface: round trip, remount, flags.
// An integration test sees every dependency of its package; the library target is the
// one that must use them all (see `[workspace.lints]` in the root Cargo.toml).
#![allow(unused_crate_dependencies)]

use exo_lfs::FormatOptions;
use exo_libos::fs::{Error, FileKind, FileSystem, OpenFlags, Partition};
use exo_logfs::{LfsFs, LfsOptions};

const SECTORS: u64 = 16384; // 8 MiB

fn clock() -> i64 {
    1_700_000_000_123_456_789
}

fn format() -> LfsFs<Partition<Vec<u8>>> {
    // The partition starts 100 sectors into the disk: the LFS only ever sees its extent.
    let disk = vec![0xeeu8; (SECTORS as usize + 200) * 512];
    let opts = FormatOptions { segment_bytes: 64 * 1024, ..Default::default() };
    LfsFs::format(Partition::new(disk, 100, SECTORS), opts, clock).unwrap()
}

#[test]
fn round_trip_then_remount() {
    let mut fs = format();
    assert_eq!(fs.fs_type(), "lfs");
    fs.mkdir("/docs").unwrap();
    fs.mkdir("/docs/deep").unwrap();
    let data: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let h = fs.create("/docs/deep/big.bin").unwrap();
    for (i, c) in data.chunks(10_000).enumerate() {
        assert_eq!(fs.write(h, i as u64 * 10_000, c).unwrap(), c.len());
    }
    fs.close(h).unwrap();
    let h = fs.open("/notes", OpenFlags::WRITE | OpenFlags::CREATE).unwrap();
    fs.write(h, 0, b"hello").unwrap();
    fs.close(h).unwrap();
    let st = fs.stat("/docs/deep/big.bin").unwrap();
    assert_eq!((st.kind, st.size, st.modified), (FileKind::File, 300_000, Some(clock())));
    assert_eq!(fs.stat("/docs").unwrap().kind, FileKind::Dir);
    fs.sync().unwrap();
    let stats = fs.statfs().unwrap();
    assert_eq!(stats.fs_type, "lfs");
    assert!(stats.free_bytes < stats.total_bytes && stats.total_bytes <= SECTORS * 512, "{stats:?}");

    // Remount: everything is back, and the disk outside the partition was never touched.
    let disk = fs.unmount().unwrap().into_inner();
    assert!(disk[..100 * 512].iter().chain(&disk[(100 + SECTORS as usize) * 512..]).all(|&b| b == 0xee));
    let mut fs =
        LfsFs::mount(Partition::new(disk, 100, SECTORS), LfsOptions { read_only: false, clock }).unwrap();
    let h = fs.open("/docs/deep/big.bin", OpenFlags::READ).unwrap();
    let mut back = vec![0u8; 300_001];
    assert_eq!(fs.read(h, 0, &mut back).unwrap(), 300_000);
    assert!(back[..300_000] == data[..]);
    assert_eq!(fs.read(h, 299_990, &mut back).unwrap(), 10);
    assert_eq!(fs.read(h, 400_000, &mut back).unwrap(), 0);
    fs.close(h).unwrap();
    let mut names: Vec<String> = fs.list_dir("/").unwrap().into_iter().map(|e| e.name).collect();
    names.sort();
    assert_eq!(names, ["docs", "notes"]);
    let l = fs.list_dir("/docs/deep/").unwrap();
    assert_eq!((l[0].name.as_str(), l[0].kind, l[0].size), ("big.bin", FileKind::File, 300_000));
    // Rename and remove, then a crash without sync: the LFS recovers what was committed.
    fs.rename("/notes", "/docs/notes2").unwrap();
    fs.remove("/docs/deep/big.bin").unwrap();
    fs.remove("/docs/deep").unwrap();
    fs.sync().unwrap();
    let disk = fs.inner().device().with_io(|v| v.clone());
    let mut fs = LfsFs::mount(Partition::new(disk, 100, SECTORS), LfsOptions::default()).unwrap();
    assert_eq!(fs.list_dir("/docs").unwrap().len(), 1);
    let h = fs.open("/docs/notes2", OpenFlags::READ).unwrap();
    let mut b = [0u8; 8];
    assert_eq!(fs.read(h, 0, &mut b).unwrap(), 5);
    assert_eq!(&b[..5], b"hello");
}

#[test]
fn flags_and_errors() {
    let mut fs = format();
    let h = fs.create("/f").unwrap();
    fs.write(h, 0, b"0123456789").unwrap();
    assert_eq!(fs.read(h, 0, &mut [0u8; 4]).unwrap_err(), Error::BadHandle);
    fs.close(h).unwrap();
    assert_eq!(fs.close(h).unwrap_err(), Error::BadHandle);

    let ex = OpenFlags::WRITE | OpenFlags::CREATE | OpenFlags::EXCLUSIVE;
    assert_eq!(fs.open("/f", ex).unwrap_err(), Error::Exists);
    let g = fs.open("/g", ex).unwrap();
    fs.close(g).unwrap();
    assert_eq!(fs.open("/missing", OpenFlags::READ).unwrap_err(), Error::NotFound);
    assert_eq!(fs.open("/f", OpenFlags::empty()).unwrap_err(), Error::InvalidArgument);
    assert_eq!(fs.open("/f", OpenFlags::READ | OpenFlags::TRUNCATE).unwrap_err(), Error::InvalidArgument);
    fs.mkdir("/d").unwrap();
    assert_eq!(fs.open("/d", OpenFlags::READ).unwrap_err(), Error::IsDir);
    assert_eq!(fs.mkdir("/d").unwrap_err(), Error::Exists);
    assert_eq!(fs.mkdir("/").unwrap_err(), Error::Exists);
    assert_eq!(fs.stat("/f/x").unwrap_err(), Error::NotDir);
    assert_eq!(fs.remove("/").unwrap_err(), Error::Busy);
    fs.create("/d/inner").and_then(|h| fs.close(h)).unwrap();
    assert_eq!(fs.remove("/d").unwrap_err(), Error::NotEmpty);
    assert_eq!(fs.rename("/d", "/d/inner/x").unwrap_err(), Error::NotDir);
    assert_eq!(fs.create(&format!("/{}", "n".repeat(300))).unwrap_err(), Error::NameTooLong);

    // Append ignores the offset; truncate empties.
    let h = fs.open("/f", OpenFlags::RW | OpenFlags::APPEND).unwrap();
    fs.write(h, 0, b"AB").unwrap();
    let mut b = [0u8; 16];
    assert_eq!(fs.read(h, 0, &mut b).unwrap(), 12);
    assert_eq!(&b[..12], b"0123456789AB");
    fs.close(h).unwrap();
    let h = fs.open("/f", OpenFlags::RW | OpenFlags::TRUNCATE).unwrap();
    assert_eq!(fs.fstat(h).unwrap().size, 0);
    // A write past the end leaves zeros.
    fs.write(h, 4, b"x").unwrap();
    assert_eq!(fs.read(h, 0, &mut b).unwrap(), 5);
    assert_eq!(&b[..5], b"\0\0\0\0x");
    // A removed file's handle goes stale.
    fs.remove("/f").unwrap();
    assert_eq!(fs.read(h, 0, &mut b).unwrap_err(), Error::BadHandle);
    fs.close(h).unwrap();

    // Read-only mounts refuse every change.
    fs.sync().unwrap();
    let disk = fs.unmount().unwrap();
    let mut ro = LfsFs::mount(disk, LfsOptions { read_only: true, clock }).unwrap();
    assert_eq!(ro.open("/g", OpenFlags::WRITE).unwrap_err(), Error::ReadOnly);
    assert_eq!(ro.mkdir("/e").unwrap_err(), Error::ReadOnly);
    assert_eq!(ro.remove("/g").unwrap_err(), Error::ReadOnly);
    assert_eq!(ro.stat("/g").unwrap().size, 0);

    // Mounting never formats: a blank partition is refused.
    let blank = Partition::new(vec![0u8; SECTORS as usize * 512], 0, SECTORS);
    assert_eq!(LfsFs::mount(blank, LfsOptions::default()).err(), Some(Error::Corrupt));
}

#[test]
fn an_attribute_goes_through_the_interface_and_a_rewrite_hides_it() {
    let mut fs = format();
    let h = fs.create("/page.html").unwrap();
    fs.write(h, 0, b"<p>one</p>").unwrap();
    let (v, none) = fs.attr("/page.html").unwrap();
    assert!(none.is_empty());
    assert_eq!(v[2], 10);
    assert_eq!(fs.version("/page.html").unwrap(), v);
    fs.set_attr("/page.html", v, b"head").unwrap();
    assert_eq!(fs.attr("/page.html").unwrap(), (v, b"head".to_vec()));
    // The test clock never moves; a rewrite of the same length still changes the version.
    fs.write(h, 0, b"<p>two</p>").unwrap();
    let (w, value) = fs.attr("/page.html").unwrap();
    assert!(value.is_empty() && w != v);
    assert_eq!(fs.set_attr("/page.html", v, b"head"), Err(Error::BadHandle));
    assert_eq!(fs.attr("/").map(drop), Err(Error::IsDir));
}
