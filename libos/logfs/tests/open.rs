//! `open`'s flags on the log-structured libOS: create, exclusive, truncate, directories,
//! and paths that need normalising.
// An integration test sees every dependency of its package; the library target is the
// one that must use them all (see `[workspace.lints]` in the root Cargo.toml).
#![allow(unused_crate_dependencies)]

use exo_lfs::{FormatOptions, MemDevice};
use exo_libos::fs::{Error, FileSystem, OpenFlags};
use exo_logfs::LfsFs;

fn fresh() -> LfsFs<MemDevice> {
    let opts = FormatOptions { segment_bytes: 64 * 1024, max_inodes: Some(1024), fs_id: 3, now: 0 };
    LfsFs::format(MemDevice::new(4096), opts, || 0).unwrap()
}

const W: OpenFlags = OpenFlags::WRITE;
const R: OpenFlags = OpenFlags::READ;

fn contents(fs: &mut LfsFs<MemDevice>, path: &str) -> Vec<u8> {
    let h = fs.open(path, R).unwrap();
    let mut buf = vec![0u8; 64];
    let n = fs.read(h, 0, &mut buf).unwrap();
    fs.close(h).unwrap();
    buf.truncate(n);
    buf
}

#[test]
fn create_opens_an_existing_file_and_truncates_only_when_asked() {
    let mut fs = fresh();
    assert_eq!(fs.open("/f", W), Err(Error::NotFound));
    let h = fs.open("/f", W | OpenFlags::CREATE).unwrap();
    fs.write(h, 0, b"first").unwrap();
    fs.close(h).unwrap();
    let h = fs.open("/f", W | OpenFlags::CREATE).unwrap();
    fs.close(h).unwrap();
    assert_eq!(contents(&mut fs, "/f"), b"first");
    assert_eq!(fs.open("/f", W | OpenFlags::CREATE | OpenFlags::EXCLUSIVE), Err(Error::Exists));
    let h = fs.open("/f", W | OpenFlags::CREATE | OpenFlags::TRUNCATE).unwrap();
    fs.close(h).unwrap();
    assert_eq!(contents(&mut fs, "/f"), b"");
    let h = fs.open("/new", W | OpenFlags::CREATE | OpenFlags::EXCLUSIVE).unwrap();
    fs.write(h, 0, b"x").unwrap();
    fs.close(h).unwrap();
    assert_eq!(contents(&mut fs, "/new"), b"x");
}

#[test]
fn create_refuses_directories_and_missing_parents() {
    let mut fs = fresh();
    fs.mkdir("/d").unwrap();
    assert_eq!(fs.open("/d", W | OpenFlags::CREATE), Err(Error::IsDir));
    assert_eq!(fs.open("/", W | OpenFlags::CREATE), Err(Error::IsDir));
    assert_eq!(fs.open("/nope/f", W | OpenFlags::CREATE), Err(Error::NotFound));
    let h = fs.open("/d/f", W | OpenFlags::CREATE).unwrap();
    fs.write(h, 0, b"in d").unwrap();
    fs.close(h).unwrap();
    assert_eq!(fs.open("/d/f/g", W | OpenFlags::CREATE), Err(Error::NotDir));
    // Paths that need normalising reach the same file.
    assert_eq!(contents(&mut fs, "//d/./f"), b"in d");
    assert_eq!(contents(&mut fs, "/x/../d/f/"), b"in d");
}
