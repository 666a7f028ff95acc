//! The Vfs over two back ends: descriptors and positions, the namespace, cross-FS copies.
// An integration test sees every dependency of its package; the library target is the
// one that must use them all (see `[workspace.lints]` in the root Cargo.toml).
#![allow(unused_crate_dependencies)]

mod common;

use common::*;
use exo_fat::{FatFs, FatOptions};
use exo_lfs::FormatOptions;
use exo_libos::fs::vfs::MAX_FDS;
use exo_libos::fs::{Error, Fd, FileKind, FileSystem, OpenFlags, Partition, SeekFrom, Vfs};
use exo_logfs::LfsFs;

fn lfs(sectors: u64) -> Box<dyn FileSystem> {
    let opts = FormatOptions { segment_bytes: 64 * 1024, ..Default::default() };
    Box::new(
        LfsFs::format(Partition::new(vec![0u8; sectors as usize * 512], 0, sectors), opts, || 0).unwrap(),
    )
}

fn two_logs() -> Vfs {
    let mut v = Vfs::new();
    v.mount("/log", lfs(8192)).unwrap();
    v.mount("/log2//", lfs(8192)).unwrap();
    v
}

fn names(v: &mut Vfs, p: &str) -> Vec<String> {
    let mut n: Vec<String> = v.list_dir(p).unwrap().into_iter().map(|e| e.name).collect();
    n.sort();
    n
}

#[test]
fn descriptors_keep_their_positions() {
    let mut v = two_logs();
    let rwc = OpenFlags::RW | OpenFlags::CREATE;
    let fd = v.open("/log/a.txt", rwc).unwrap();
    assert_eq!(fd, Fd(0));
    assert_eq!(v.write(fd, b"hello").unwrap(), 5);
    assert_eq!(v.write(fd, b" world").unwrap(), 6);
    let mut b = [0u8; 32];
    assert_eq!(v.read(fd, &mut b).unwrap(), 0);
    assert_eq!(v.seek(fd, SeekFrom::Start(0)).unwrap(), 0);
    assert_eq!(v.read(fd, &mut b[..5]).unwrap(), 5);
    assert_eq!(&b[..5], b"hello");
    assert_eq!(v.seek(fd, SeekFrom::Current(1)).unwrap(), 6);
    assert_eq!(v.read(fd, &mut b).unwrap(), 5);
    assert_eq!(&b[..5], b"world");
    assert_eq!(v.seek(fd, SeekFrom::End(-5)).unwrap(), 6);
    assert_eq!(v.seek(fd, SeekFrom::Current(-100)).unwrap_err(), Error::InvalidArgument);
    // A second descriptor on the same file has its own position.
    let fd2 = v.open("/log/a.txt", OpenFlags::READ).unwrap();
    assert_eq!(fd2, Fd(1));
    assert_eq!(v.read(fd2, &mut b[..3]).unwrap(), 3);
    assert_eq!(&b[..3], b"hel");
    assert_eq!(v.read(fd, &mut b[..3]).unwrap(), 3);
    assert_eq!(&b[..3], b"wor");
    assert_eq!(v.write(fd2, b"x").unwrap_err(), Error::BadHandle);
    // Past the end: a write there leaves zeros between.
    v.seek(fd, SeekFrom::Start(13)).unwrap();
    v.write(fd, b"!").unwrap();
    assert_eq!(v.fstat(fd).unwrap().size, 14);
    v.close(fd).unwrap();
    assert_eq!(v.read(fd, &mut b).unwrap_err(), Error::BadHandle);
    assert_eq!(v.close(fd).unwrap_err(), Error::BadHandle);
    assert_eq!(v.read_to_vec("/log/a.txt").unwrap(), b"hello world\0\0!");
    // The lowest free number is reused.
    assert_eq!(v.open("/log2/b", rwc).unwrap(), Fd(0));
    let ap = v.open("/log2/b", OpenFlags::WRITE | OpenFlags::APPEND).unwrap();
    assert_eq!(ap, Fd(2));
    v.write(Fd(0), b"12345").unwrap();
    v.write(ap, b"ab").unwrap();
    v.seek(ap, SeekFrom::Start(0)).unwrap();
    v.write(ap, b"cd").unwrap();
    assert_eq!(v.seek(ap, SeekFrom::Current(0)).unwrap(), 9);
    assert_eq!(v.read_to_vec("/log2/b").unwrap(), b"12345abcd");
}

#[test]
fn one_namespace_over_mount_points() {
    let mut v = two_logs();
    assert_eq!(v.mounts().collect::<Vec<_>>(), [("/log", "lfs"), ("/log2", "lfs")]);
    assert_eq!(names(&mut v, "/"), ["log", "log2"]);
    assert_eq!(v.stat("/").unwrap().kind, FileKind::Dir);
    assert_eq!(v.stat("/nothing").unwrap_err(), Error::NotFound);
    assert_eq!(v.open("/nothing/x", OpenFlags::READ).unwrap_err(), Error::NotFound);
    assert_eq!(v.open("/log", OpenFlags::READ).unwrap_err(), Error::IsDir);
    assert_eq!(v.open("/", OpenFlags::READ).unwrap_err(), Error::IsDir);
    assert_eq!(v.open("relative", OpenFlags::READ).unwrap_err(), Error::InvalidArgument);
    assert_eq!(v.mkdir("/log").unwrap_err(), Error::Exists);
    assert_eq!(v.remove("/log").unwrap_err(), Error::Busy);
    assert_eq!(v.mount("/log/", lfs(4096)).unwrap_err(), Error::Exists);

    v.mkdir("/log/d").unwrap();
    v.write_file("/log/d/f", b"data").unwrap();
    // `..` is resolved before the mount: it moves between file systems, never above a root.
    assert_eq!(v.read_to_vec("/log2/../log/./d//f").unwrap(), b"data");
    assert_eq!(v.read_to_vec("/log/../../../log/d/f").unwrap(), b"data");
    assert_eq!(v.rename("/log/d/f", "/log2/f").unwrap_err(), Error::CrossDevice);
    v.rename("/log/d/f", "/log/g").unwrap();
    assert_eq!(names(&mut v, "/log"), ["d", "g"]);
    assert_eq!(v.rename("/log/g", "/log2").unwrap_err(), Error::Busy);

    // A mount inside another shadows what is there and shows in its listing.
    v.mkdir("/log/inner").unwrap();
    v.write_file("/log/inner/hidden", b"x").unwrap();
    v.mount("/log/inner", lfs(4096)).unwrap();
    assert_eq!(names(&mut v, "/log/inner"), Vec::<String>::new());
    v.write_file("/log/inner/top", b"on the inner fs").unwrap();
    assert_eq!(names(&mut v, "/log"), ["d", "g", "inner"]);
    assert_eq!(v.remove("/log/inner").unwrap_err(), Error::Busy);
    assert_eq!(v.rename("/log/d", "/log/inner/d").unwrap_err(), Error::CrossDevice);
    let fd = v.open("/log/inner/top", OpenFlags::READ).unwrap();
    assert_eq!(v.unmount("/log/inner").err(), Some(Error::Busy));
    v.close(fd).unwrap();
    let inner = v.unmount("/log/inner").unwrap();
    assert_eq!(inner.fs_type(), "lfs");
    assert_eq!(names(&mut v, "/log/inner"), ["hidden"]);
    assert_eq!(v.unmount("/log/inner").err(), Some(Error::NotFound));
    // Mount points under a directory nothing is mounted on still list.
    v.mount("/mnt/deep/x", lfs(4096)).unwrap();
    assert_eq!(names(&mut v, "/"), ["log", "log2", "mnt"]);
    assert_eq!(names(&mut v, "/mnt"), ["deep"]);
    assert_eq!(v.stat("/mnt/deep").unwrap().kind, FileKind::Dir);
    assert_eq!(v.statfs("/mnt/deep/x/").unwrap().fs_type, "lfs");
    assert!(v.fs_at("/mnt/deep/x").is_some());
    v.sync().unwrap();
}

#[test]
fn relative_paths_start_from_the_current_directory_once_there_is_one() {
    let mut v = two_logs();
    v.mkdir("/log/d").unwrap();
    v.write_file("/log/d/f", b"data").unwrap();
    assert_eq!(v.read_to_vec("d/f").unwrap_err(), Error::InvalidArgument);
    v.set_cwd("/log//").unwrap();
    assert_eq!(v.read_to_vec("d/f").unwrap(), b"data");
    assert_eq!(v.read_to_vec("./d/../d/f").unwrap(), b"data");
    // `..` climbs out of the directory and across mounts, as in an absolute path.
    v.set_cwd("/log/d").unwrap();
    v.write_file("../../log2/g", b"there").unwrap();
    assert_eq!(names(&mut v, "/log2"), ["g"]);
    assert_eq!(names(&mut v, ".."), ["d"]);
    assert_eq!(v.stat("f").unwrap().size, 4);
    assert_eq!(v.copy("f", "/log/d/f").unwrap_err(), Error::InvalidArgument);
    v.rename("f", "h").unwrap();
    assert_eq!(names(&mut v, "."), ["h"]);
    v.remove("h").unwrap();
    assert_eq!(v.stat("h").unwrap_err(), Error::NotFound);
    // An empty path is no path, current directory or not; the directory must be absolute.
    assert_eq!(v.stat("").unwrap_err(), Error::InvalidArgument);
    assert_eq!(v.set_cwd("log").unwrap_err(), Error::InvalidArgument);
}

#[test]
fn the_descriptor_table_has_a_limit() {
    let mut v = two_logs();
    v.write_file("/log/f", b"x").unwrap();
    let fds: Vec<Fd> = (0..MAX_FDS).map(|_| v.open("/log/f", OpenFlags::READ).unwrap()).collect();
    assert_eq!(v.open("/log/f", OpenFlags::READ).unwrap_err(), Error::TooManyOpenFiles);
    v.close(fds[10]).unwrap();
    assert_eq!(v.open("/log/f", OpenFlags::READ).unwrap(), Fd(10));
}

#[test]
fn copy_across_file_systems_and_move_within_one() {
    let mut rng = Rng::from_state(5);
    let data = rng.bytes(1_500_000);
    let mut v = two_logs();
    let dir = have_fat_tools("copy_across_file_systems_and_move_within_one").then(|| scratch("vfs-copy"));
    let (a, b) = match &dir {
        Some(d) => {
            let img = d.join("fat.img");
            mkfs(&img, 40 * 1024, 32, 1);
            let sectors = std::fs::metadata(&img).unwrap().len() / 512;
            let fat =
                FatFs::mount(Partition::new(open_image(&img), 0, sectors), FatOptions::default()).unwrap();
            v.mount("/fat", Box::new(fat)).unwrap();
            ("/fat", "/log2")
        }
        None => ("/log2", "/log2"),
    };
    v.write_file("/log/src.bin", &data).unwrap();
    v.mkdir(&format!("{a}/sub")).unwrap();
    assert_eq!(v.copy("/log/src.bin", &format!("{a}/DST.BIN")).unwrap(), data.len() as u64);
    // FAT finds a name in any case; the LFS only in the case it was written in.
    let read_back = if dir.is_some() { "dst.bin" } else { "DST.BIN" };
    assert!(v.read_to_vec(&format!("{a}/{read_back}")).unwrap() == data);
    v.rename(&format!("{a}/DST.BIN"), &format!("{a}/sub/moved.bin")).unwrap();
    assert_eq!(v.stat(&format!("{a}/DST.BIN")).unwrap_err(), Error::NotFound);
    assert_eq!(v.copy(&format!("{a}/sub/moved.bin"), &format!("{b}/back.bin")).unwrap(), data.len() as u64);
    assert!(v.read_to_vec(&format!("{b}/back.bin")).unwrap() == data);
    // Copying over an existing, longer file truncates it first.
    v.write_file("/log/short", b"tiny").unwrap();
    v.copy("/log/short", &format!("{b}/back.bin")).unwrap();
    assert_eq!(v.read_to_vec(&format!("{b}/back.bin")).unwrap(), b"tiny");
    assert_eq!(v.copy("/log/short", "/log//short").unwrap_err(), Error::InvalidArgument);
    assert_eq!(v.copy("/log/none", "/log/x").unwrap_err(), Error::NotFound);
    v.sync().unwrap();
    if let Some(d) = dir {
        let fat = v.unmount("/fat").unwrap();
        drop(fat);
        fsck_clean(d.join("fat.img").to_str().unwrap());
        let listing = run("mdir", &["-i", d.join("fat.img").to_str().unwrap(), "-/", "-b", "::"]);
        assert_eq!(listing.lines().collect::<Vec<_>>(), ["::/sub/", "::/sub/moved.bin"]);
        let _ = std::fs::remove_dir_all(&d);
    }
}

#[test]
fn a_root_mount_with_others_inside() {
    let mut v = Vfs::new();
    v.mount("/", lfs(4096)).unwrap();
    v.mount("/mnt/data", lfs(4096)).unwrap();
    v.write_file("/etc.txt", b"root fs").unwrap();
    v.write_file("/mnt/data/x", b"data fs").unwrap();
    assert_eq!(names(&mut v, "/"), ["etc.txt", "mnt"]);
    // "/mnt" does not exist on the root file system, but leads to a mount point.
    assert_eq!(v.stat("/mnt").unwrap().kind, FileKind::Dir);
    assert_eq!(names(&mut v, "/mnt"), ["data"]);
    assert_eq!(v.read_to_vec("/mnt/data/../../etc.txt").unwrap(), b"root fs");
    assert_eq!(v.statfs("/nowhere").unwrap().fs_type, "lfs");
    assert_eq!(v.stat("/nowhere").unwrap_err(), Error::NotFound);
}
